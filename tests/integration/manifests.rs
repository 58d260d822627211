//! deploy/ renders with kustomize and says what it should.

use serde_json::Value;
use std::process::Command;

fn render(dir: &str) -> Vec<Value> {
    let out = Command::new("kubectl")
        .args([
            "kustomize",
            &format!("{}/{dir}", env!("CARGO_MANIFEST_DIR")),
        ])
        .output()
        .expect("kubectl is installed (.ci/run installs it)");
    assert!(
        out.status.success(),
        "kubectl kustomize {dir}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_saphyr::from_multiple(&String::from_utf8(out.stdout).unwrap()).unwrap()
}

fn find<'a>(docs: &'a [Value], kind: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind}"))
}

#[test]
fn the_base_installs_a_hardened_operator_and_a_scoped_webhook() {
    let docs = render("deploy/base");
    let kinds: Vec<&str> = docs.iter().map(|d| d["kind"].as_str().unwrap()).collect();
    for k in [
        "CustomResourceDefinition",
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Service",
        "Deployment",
        "MutatingWebhookConfiguration",
    ] {
        assert!(kinds.contains(&k), "{k} in {kinds:?}");
    }
    assert_eq!(
        kinds
            .iter()
            .filter(|k| **k == "CustomResourceDefinition")
            .count(),
        2,
        "both API groups"
    );
    let deploy = find(&docs, "Deployment");
    let pod = &deploy["spec"]["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(
        pod["securityContext"]["seccompProfile"]["type"],
        "RuntimeDefault"
    );
    let c = &pod["containers"][0];
    assert_eq!(c["securityContext"]["allowPrivilegeEscalation"], false);
    assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(c["securityContext"]["capabilities"]["drop"][0], "ALL");
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert!(
        c["resources"]["limits"]["memory"].is_string()
            && c["resources"]["requests"]["cpu"].is_string()
    );
    let svc = find(&docs, "Service");
    assert_eq!(
        (
            svc["spec"]["ports"][0]["port"].as_u64(),
            svc["spec"]["ports"][0]["targetPort"].as_u64()
        ),
        (Some(443), Some(8443))
    );
    let hook = &find(&docs, "MutatingWebhookConfiguration")["webhooks"][0];
    assert_eq!(
        hook,
        &quay_bridge_operator::webhook::registration::webhook(
            "openshift-operators",
            "quay-bridge-operator",
            false
        ),
        "deploy/base registers the webhook as the operator's one definition says"
    );
    assert_eq!(
        hook["rules"][0]["operations"],
        serde_json::json!(["CREATE"])
    );
    assert_eq!(
        hook["namespaceSelector"]["matchLabels"]["quay.redhat.com/bridged"],
        "true"
    );
    let ns = find(&docs, "Namespace");
    assert_eq!(ns["metadata"]["name"], "openshift-operators");
}

#[test]
fn the_kubernetes_1_30_overlay_narrows_the_webhook_with_match_conditions() {
    let docs = render("deploy/overlays/kubernetes-1.30");
    let hook = &find(&docs, "MutatingWebhookConfiguration")["webhooks"][0];
    assert_eq!(
        hook,
        &quay_bridge_operator::webhook::registration::webhook(
            "openshift-operators",
            "quay-bridge-operator",
            true
        )
    );
}

#[test]
fn the_openshift_overlay_uses_the_service_ca() {
    let docs = render("deploy/overlays/openshift");
    assert!(
        docs.iter().all(|d| d["kind"] != "Namespace"),
        "OpenShift has its own openshift-operators"
    );
    assert_eq!(
        find(&docs, "Service")["metadata"]["annotations"]["service.beta.openshift.io/serving-cert-secret-name"],
        "quay-bridge-operator-webhook-tls"
    );
    assert_eq!(
        find(&docs, "MutatingWebhookConfiguration")["metadata"]["annotations"]["service.beta.openshift.io/inject-cabundle"],
        "true"
    );
    let c = &find(&docs, "Deployment")["spec"]["template"]["spec"]["containers"][0];
    let env: Vec<(&str, &str)> = c["env"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| Some((e["name"].as_str()?, e["value"].as_str()?)))
        .collect();
    assert!(
        env.contains(&("WEBHOOK_CERTS", "files"))
            && env.contains(&("WEBHOOK_CERT_DIR", "/etc/webhook/certs")),
        "{env:?}"
    );
    let rules = find(&docs, "ClusterRole")["rules"]
        .as_array()
        .unwrap()
        .clone();
    assert!(
        rules
            .iter()
            .all(|r| r["apiGroups"][0] != "admissionregistration.k8s.io"),
        "no webhook configuration writes when the service CA injects"
    );
}

fn yaml_file(path: &str) -> Value {
    serde_saphyr::from_str(&std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}")))
        .unwrap()
}

fn manifest(rel: &str) -> String {
    format!("{}/{rel}", env!("CARGO_MANIFEST_DIR"))
}

/// Validates `obj` against a CRD version schema as the apiserver would,
/// strictly: nothing may be pruned as unknown.
fn strictly_valid(schema: &Value, obj: &Value) -> Vec<String> {
    let mut pruned = obj.clone();
    let found = kube_sandbox::schema::apply_to_resource(schema, &mut pruned);
    found
        .causes
        .into_iter()
        .map(|(f, m)| format!("{f}: {m}"))
        .chain(
            found
                .pruned
                .into_iter()
                .map(|f| format!("{f}: unknown field")),
        )
        .collect()
}

#[test]
#[ignore = "needs ../shared/schemas/olm-clusterserviceversion-crd.yaml (run by .ci/run)"]
fn the_bundle_csv_is_valid_for_olm() {
    let csv_crd = yaml_file(&format!(
        "{}/../shared/schemas/olm-clusterserviceversion-crd.yaml",
        env!("CARGO_MANIFEST_DIR")
    ));
    let mut schema = csv_crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone();
    // The apiserver validates metadata, apiVersion and kind itself, before the
    // structural schema sees the object; the schema check covers the rest.
    if let Some(required) = schema["required"].as_array_mut() {
        required.retain(|r| {
            !["metadata", "apiVersion", "kind"].contains(&r.as_str().unwrap_or_default())
        });
    }
    let csv = yaml_file(&manifest(
        "bundle/manifests/quay-bridge-operator.clusterserviceversion.yaml",
    ));
    assert!(
        csv["metadata"]["name"]
            .as_str()
            .is_some_and(|n| n.starts_with("quay-bridge-operator.v"))
    );
    let problems = strictly_valid(&schema, &csv);
    assert!(
        problems.is_empty(),
        "the CSV does not validate against OLM's schema: {problems:#?}"
    );
    let annotations = yaml_file(&manifest("bundle/metadata/annotations.yaml"));
    assert_eq!(
        annotations["annotations"]["operators.operatorframework.io.bundle.mediatype.v1"],
        "registry+v1"
    );
    assert_eq!(
        annotations["annotations"]["operators.operatorframework.io.bundle.manifests.v1"],
        "manifests/"
    );
    let hook = &csv["spec"]["webhookdefinitions"][0];
    assert_eq!(
        (hook["webhookPath"].as_str(), hook["type"].as_str()),
        (Some("/admissionwebhook"), Some("MutatingAdmissionWebhook"))
    );
    assert!(
        csv["spec"]["installModes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["type"] == "AllNamespaces" && m["supported"] == true)
    );
}

#[test]
fn the_bundle_agrees_with_deploy_and_the_generated_crds() {
    let csv = yaml_file(&manifest(
        "bundle/manifests/quay-bridge-operator.clusterserviceversion.yaml",
    ));
    let rbac: Vec<Value> = serde_saphyr::from_multiple(
        &std::fs::read_to_string(manifest("deploy/base/rbac.yaml")).unwrap(),
    )
    .unwrap();
    let cluster_role = rbac.iter().find(|d| d["kind"] == "ClusterRole").unwrap();
    // OLM injects the webhook CA itself: no webhook configuration writes.
    let expected: Vec<Value> = cluster_role["rules"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["apiGroups"][0] != "admissionregistration.k8s.io")
        .cloned()
        .collect();
    assert_eq!(
        csv["spec"]["install"]["spec"]["clusterPermissions"][0]["rules"]
            .as_array()
            .unwrap(),
        &expected
    );
    let role = rbac.iter().find(|d| d["kind"] == "Role").unwrap();
    assert_eq!(
        &csv["spec"]["install"]["spec"]["permissions"][0]["rules"],
        &role["rules"]
    );
    let generated = Command::new(env!("CARGO_BIN_EXE_quay-bridge-operator"))
        .arg("crd")
        .output()
        .unwrap();
    let docs: Vec<Value> =
        serde_saphyr::from_multiple(&String::from_utf8(generated.stdout).unwrap()).unwrap();
    for crd in docs {
        let name = crd["metadata"]["name"].as_str().unwrap();
        let bundled = yaml_file(&manifest(&format!("bundle/manifests/{name}.crd.yaml")));
        assert!(
            bundled == crd,
            "bundle/manifests/{name}.crd.yaml is stale: regenerate it from `quay-bridge-operator crd`"
        );
    }
}

#[test]
fn alm_examples_are_valid_quay_integrations() {
    let csv = yaml_file(&manifest(
        "bundle/manifests/quay-bridge-operator.clusterserviceversion.yaml",
    ));
    let examples: Vec<Value> = serde_json::from_str(
        csv["metadata"]["annotations"]["alm-examples"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(examples.len(), 2);
    for example in examples {
        let group = example["apiVersion"]
            .as_str()
            .unwrap()
            .split('/')
            .next()
            .unwrap()
            .to_owned();
        let crd = yaml_file(&manifest(&format!(
            "bundle/manifests/quayintegrations.{group}.crd.yaml"
        )));
        let problems = strictly_valid(
            &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"],
            &example,
        );
        assert!(problems.is_empty(), "{group} example: {problems:?}");
    }
}

#[test]
#[ignore = "needs kubernetes-validate from PyPI (installed and run by .ci/run)"]
fn built_in_kinds_pass_strict_schema_validation() {
    let dir = tempfile::tempdir().unwrap();
    for layout in ["deploy/base", "deploy/overlays/openshift"] {
        let out = Command::new("kubectl")
            .args(["kustomize", &manifest(layout)])
            .output()
            .unwrap();
        let file = dir.path().join("rendered.yaml");
        std::fs::write(&file, &out.stdout).unwrap();
        let result = Command::new("kubernetes-validate")
            .args(["--strict", "--quiet", "-k", "1.33.0"])
            .arg(&file)
            .output()
            .expect("kubernetes-validate is installed (.ci/run installs it from PyPI)");
        assert!(
            result.status.success(),
            "{layout}: {}{}",
            String::from_utf8_lossy(&result.stdout),
            String::from_utf8_lossy(&result.stderr)
        );
    }
}

/// A Swagger 2.0 check of an object against an OpenShift definition:
/// required fields, types, and no unknown fields.
fn openapi_problems(defs: &Value, def: &str, v: &Value, path: &str, out: &mut Vec<String>) {
    let schema = &defs[def];
    let props = schema["properties"].as_object();
    for req in schema["required"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
    {
        if v.get(req).is_none() {
            out.push(format!("{path}.{req}: required"));
        }
    }
    let Some(obj) = v.as_object() else { return };
    for (k, val) in obj {
        let Some(p) = props.and_then(|p| p.get(k)) else {
            out.push(format!("{path}.{k}: not a field of {def}"));
            continue;
        };
        let sub = format!("{path}.{k}");
        if let Some(r) = p["$ref"].as_str() {
            openapi_problems(defs, r.trim_start_matches("#/definitions/"), val, &sub, out);
        } else if let Some(r) = p["items"]["$ref"].as_str() {
            for (i, item) in val.as_array().into_iter().flatten().enumerate() {
                openapi_problems(
                    defs,
                    r.trim_start_matches("#/definitions/"),
                    item,
                    &format!("{sub}[{i}]"),
                    out,
                );
            }
        } else if let Some(t) = p["type"].as_str() {
            let ok = match t {
                "string" => val.is_string(),
                "boolean" => val.is_boolean(),
                "integer" => val.is_i64() || val.is_u64(),
                "array" => val.is_array(),
                "object" => val.is_object(),
                _ => true,
            };
            if !ok {
                out.push(format!("{sub}: not a {t}"));
            }
        }
    }
}

#[test]
#[ignore = "needs ../shared/schemas/openshift-openapi.json (run by .ci/run)"]
fn what_the_operator_writes_to_openshift_matches_openshifts_openapi() {
    let text = std::fs::read_to_string(format!(
        "{}/../shared/schemas/openshift-openapi.json",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    let doc: Value = serde_json::from_str(&text).unwrap();
    let defs = &doc["definitions"];
    let isi = quay_bridge_operator::plan::import::import_request(
        &quay_bridge_operator::plan::import::Import {
            prefix: "x",
            namespace: "team".into(),
            stream: "app".into(),
            tag: "v1".into(),
            image: "quay.example.com/openshift_team/app:v1".into(),
            insecure: true,
            scheduled: false,
        },
    );
    let mut problems = Vec::new();
    openapi_problems(
        defs,
        "com.github.openshift.api.image.v1.ImageStreamImport",
        &isi,
        "",
        &mut problems,
    );
    // status is required in the schema for answers; the request omits it, as OpenShift's clients do.
    problems.retain(|p| p != ".status: required");
    assert!(problems.is_empty(), "ImageStreamImport: {problems:?}");
    // A Build as the webhook rewrites it.
    let build = serde_json::json!({"apiVersion": "build.openshift.io/v1", "kind": "Build", "metadata": {"name": "app-1", "namespace": "team", "annotations": {"quay-registry-operator.quay.redhat.com/quay-registry-operator-managed": "true"}},
        "spec": {"strategy": {"type": "Source", "sourceStrategy": {"from": {"kind": "ImageStreamTag", "name": "httpd:2.4"}}},
            "output": {"to": {"kind": "DockerImage", "name": "quay.example.com/openshift_team/app:v1"}, "pushSecret": {"name": "builder-quay-openshift"}}}});
    let mut problems = Vec::new();
    openapi_problems(
        defs,
        "com.github.openshift.api.build.v1.Build",
        &build,
        "",
        &mut problems,
    );
    problems.retain(|p| p != ".status: required");
    assert!(problems.is_empty(), "Build: {problems:?}");
}

/// Paths present in `original` (with a non-null value) that a typed round
/// trip dropped: fields the typed Kubernetes structs do not know.
fn dropped_fields(original: &Value, round_trip: &Value, path: &str, out: &mut Vec<String>) {
    match (original, round_trip) {
        (Value::Object(o), Value::Object(r)) => {
            for (k, v) in o {
                let p = format!("{path}.{k}");
                match r.get(k) {
                    None if !v.is_null() => out.push(p),
                    None => {}
                    Some(rv) => dropped_fields(v, rv, &p, out),
                }
            }
        }
        (Value::Array(o), Value::Array(r)) => {
            for (i, (ov, rv)) in o.iter().zip(r).enumerate() {
                dropped_fields(ov, rv, &format!("{path}[{i}]"), out);
            }
        }
        _ => {}
    }
}

/// Deserialises `doc` as `T` and returns the fields the struct dropped.
fn unknown_fields<T: serde::de::DeserializeOwned + serde::Serialize>(doc: &Value) -> Vec<String> {
    let typed: T = serde_json::from_value(doc.clone())
        .unwrap_or_else(|e| panic!("{} does not deserialise: {e}", doc["kind"]));
    let mut out = Vec::new();
    dropped_fields(doc, &serde_json::to_value(typed).unwrap(), "", &mut out);
    out
}

/// The hermetic core of the manifest checks (the full schema validation,
/// which needs kubernetes-validate and ../shared, is in the ignored tier):
/// every manifest deploy/ and the bundle ship deserialises into the typed
/// Kubernetes structs with no field they do not know.
#[test]
fn every_manifest_is_a_typed_kubernetes_object_with_no_unknown_field() {
    use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
    use k8s_openapi::api::apps::v1::Deployment;
    use k8s_openapi::api::core::v1::{Namespace, Secret, Service, ServiceAccount};
    use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    let mut docs = render("deploy/base");
    docs.extend(render("deploy/overlays/openshift"));
    for crd in ["quay.redhat.com", "redhatcop.redhat.io"] {
        docs.push(yaml_file(&manifest(&format!(
            "bundle/manifests/quayintegrations.{crd}.crd.yaml"
        ))));
    }
    let csv = yaml_file(&manifest(
        "bundle/manifests/quay-bridge-operator.clusterserviceversion.yaml",
    ));
    // The CSV's install strategy: its Deployment spec and RBAC rules.
    for d in csv["spec"]["install"]["spec"]["deployments"]
        .as_array()
        .unwrap()
    {
        docs.push(serde_json::json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": d["name"]}, "spec": d["spec"],
        }));
    }
    for (key, kind) in [
        ("clusterPermissions", "ClusterRole"),
        ("permissions", "Role"),
    ] {
        for p in csv["spec"]["install"]["spec"][key].as_array().unwrap() {
            docs.push(serde_json::json!({
                "apiVersion": "rbac.authorization.k8s.io/v1", "kind": kind,
                "metadata": {"name": p["serviceAccountName"]}, "rules": p["rules"],
            }));
        }
    }
    let mut checked = 0;
    for doc in &docs {
        let kind = doc["kind"].as_str().unwrap();
        let unknown = match kind {
            "Namespace" => unknown_fields::<Namespace>(doc),
            "ServiceAccount" => unknown_fields::<ServiceAccount>(doc),
            "Secret" => unknown_fields::<Secret>(doc),
            "Service" => unknown_fields::<Service>(doc),
            "Deployment" => unknown_fields::<Deployment>(doc),
            "ClusterRole" => unknown_fields::<ClusterRole>(doc),
            "ClusterRoleBinding" => unknown_fields::<ClusterRoleBinding>(doc),
            "Role" => unknown_fields::<Role>(doc),
            "RoleBinding" => unknown_fields::<RoleBinding>(doc),
            "MutatingWebhookConfiguration" => unknown_fields::<MutatingWebhookConfiguration>(doc),
            "CustomResourceDefinition" => unknown_fields::<CustomResourceDefinition>(doc),
            other => panic!("a manifest of kind {other} has no typed check: add it here"),
        };
        assert!(
            unknown.is_empty(),
            "{kind} {}: fields the Kubernetes API does not know: {unknown:?}",
            doc["metadata"]["name"]
        );
        checked += 1;
    }
    assert!(checked >= 20, "{checked} manifests checked");
}

/// Every property name of a CRD schema, at any depth.
fn schema_properties(schema: &Value, out: &mut std::collections::BTreeSet<String>) {
    match schema {
        Value::Object(map) => {
            if let Some(Value::Object(props)) = map.get("properties") {
                out.extend(props.keys().cloned());
            }
            map.values().for_each(|v| schema_properties(v, out));
        }
        Value::Array(items) => items.iter().for_each(|v| schema_properties(v, out)),
        _ => {}
    }
}

/// The `camelCase` names in backticks of a text (field names, as the
/// README and the CRD descriptions write them).
fn field_names(text: &str) -> Vec<String> {
    regex::Regex::new(r"`([a-z]+[A-Z][A-Za-z]*)")
        .unwrap()
        .captures_iter(text)
        .map(|c| c[1].to_owned())
        .collect()
}

/// Every field the README's QuayIntegration table and the CRD descriptions
/// name exists in the schema: a misspelt one (`quayCABundle` for
/// `quayCaBundle`) makes `kubectl apply` of the documented YAML fail.
#[test]
fn every_field_the_docs_name_exists_in_the_crd_schema() {
    use kube::CustomResourceExt;
    use quay_bridge_operator::crd::{LegacyQuayIntegration, QuayIntegration};
    let mut known = std::collections::BTreeSet::new();
    let mut descriptions = String::new();
    for crd in [QuayIntegration::crd(), LegacyQuayIntegration::crd()] {
        let crd = serde_json::to_value(crd).unwrap();
        schema_properties(&crd, &mut known);
        fn collect(v: &Value, out: &mut String) {
            match v {
                Value::Object(m) => {
                    if let Some(Value::String(d)) = m.get("description") {
                        out.push_str(d);
                        out.push('\n');
                    }
                    m.values().for_each(|x| collect(x, out));
                }
                Value::Array(a) => a.iter().for_each(|x| collect(x, out)),
                _ => {}
            }
        }
        collect(&crd, &mut descriptions);
    }
    let readme = std::fs::read_to_string(manifest("README.md")).unwrap();
    let section = readme
        .split("\n## QuayIntegration")
        .nth(1)
        .and_then(|s| s.split("\n## ").next())
        .unwrap();
    let table: String = section
        .lines()
        .filter(|l| l.starts_with("| `"))
        .filter_map(|l| l.split('|').nth(1))
        .collect::<Vec<_>>()
        .join("\n");
    let mut unknown: Vec<String> = Vec::new();
    for (source, text) in [
        ("README table", table.as_str()),
        ("CRD descriptions", &descriptions),
    ] {
        for name in field_names(text) {
            if !known.contains(&name) {
                unknown.push(format!("{source}: {name}"));
            }
        }
    }
    // Troubleshooting and other prose name the same fields.
    for name in field_names(&readme) {
        let looks_like_ours = name.starts_with("quay") || name.starts_with("insecure");
        if looks_like_ours && !known.contains(&name) {
            unknown.push(format!("README: {name}"));
        }
    }
    assert!(known.contains("quayCaBundle"), "{known:?}");
    assert!(unknown.is_empty(), "not in the CRD schema: {unknown:?}");
}

/// Every leaf path of a schema (`a.b`, `list[].c`).
fn schema_paths(schema: &Value, prefix: &str, out: &mut std::collections::BTreeSet<String>) {
    for (name, field) in schema["properties"].as_object().into_iter().flatten() {
        let path = format!("{prefix}{name}");
        if field["type"] == "object" && field.get("properties").is_some() {
            schema_paths(field, &format!("{path}."), out);
        } else if field["type"] == "array" && field["items"]["type"] == "object" {
            schema_paths(&field["items"], &format!("{path}[]."), out);
        } else {
            out.insert(path);
        }
    }
}

/// The paths a value sets, written as `schema_paths` writes them.
fn value_paths(v: &Value, prefix: &str, out: &mut std::collections::BTreeSet<String>) {
    match v {
        Value::Object(map) => map
            .iter()
            .for_each(|(k, x)| value_paths(x, &format!("{prefix}{k}."), out)),
        Value::Array(items) if items.iter().all(Value::is_object) && !items.is_empty() => {
            let base = prefix.trim_end_matches('.');
            items
                .iter()
                .for_each(|x| value_paths(x, &format!("{base}[]."), out));
        }
        _ => {
            out.insert(prefix.trim_end_matches('.').to_owned());
        }
    }
}

/// examples/quayintegration.yaml sets every spec field, each commented, and
/// is valid for the CRD.
#[test]
fn the_commented_example_sets_every_field_and_is_valid() {
    let text = std::fs::read_to_string(manifest("examples/quayintegration.yaml")).unwrap();
    let example: Value = serde_saphyr::from_str(&text).unwrap();
    let crd = yaml_file(&manifest(
        "bundle/manifests/quayintegrations.quay.redhat.com.crd.yaml",
    ));
    let schema = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
    let problems = strictly_valid(schema, &example);
    assert!(problems.is_empty(), "{problems:?}");
    let mut expected = std::collections::BTreeSet::new();
    schema_paths(&schema["properties"]["spec"], "", &mut expected);
    let mut set = std::collections::BTreeSet::new();
    value_paths(&example["spec"], "", &mut set);
    let missing: Vec<&String> = expected.iter().filter(|p| !set.contains(*p)).collect();
    assert!(missing.is_empty(), "the example leaves out {missing:?}");
    // Each top-level field has a comment above it.
    let lines: Vec<&str> = text.lines().collect();
    for field in example["spec"].as_object().unwrap().keys() {
        let at = lines
            .iter()
            .position(|l| l.starts_with(&format!("  {field}:")))
            .unwrap();
        assert!(
            lines[at - 1].trim_start().starts_with('#'),
            "{field} has no comment"
        );
    }
}

/// Every metric the README's Metrics table and the PrometheusRule example
/// name is one the operator exports (with its labels, for the table).
#[test]
fn every_metric_the_docs_and_the_alerts_name_exists() {
    // The names the operator registers (`registry.register("name", …)`), a
    // counter's samples with `_total`. Read from the sources: a family with
    // no sample yet is not encoded.
    let mut exported = std::collections::BTreeSet::new();
    let register =
        regex::Regex::new(r#"register\(\s*"([a-z_]+)",\s*"[^"]*",\s*([a-z_.]+)"#).unwrap();
    let mut stack = vec![std::path::PathBuf::from(manifest("src"))];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).unwrap();
                for c in register.captures_iter(&text) {
                    let counter = [
                        "reconciles",
                        "reconcile_failures",
                        "quay_requests",
                        "webhook_decisions",
                        "robot_rotations",
                    ]
                    .contains(&&c[1]);
                    exported.insert(if counter {
                        format!("{}_total", &c[1])
                    } else {
                        c[1].to_owned()
                    });
                }
            }
        }
    }
    assert!(exported.len() >= 13, "{exported:?}");
    let readme = std::fs::read_to_string(manifest("README.md")).unwrap();
    let table: Vec<String> = readme
        .split("\n## Metrics\n")
        .nth(1)
        .and_then(|s| s.split("\n## ").next())
        .unwrap()
        .lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split('`').next().map(str::to_owned))
        .collect();
    assert_eq!(
        table
            .iter()
            .cloned()
            .collect::<std::collections::BTreeSet<_>>(),
        exported,
        "the README's Metrics table lists exactly the exported metrics"
    );
    let rules =
        std::fs::read_to_string(manifest("examples/monitoring/prometheusrule.yaml")).unwrap();
    let used: Vec<String> = regex::Regex::new(r"quay_bridge_operator_([a-z_]+)")
        .unwrap()
        .captures_iter(&rules)
        .map(|c| c[1].to_owned())
        .collect();
    assert!(used.len() >= 5);
    for name in used {
        assert!(
            exported.contains(&name),
            "the PrometheusRule uses {name}, which is not exported"
        );
    }
    // The ServiceMonitor selects the example Service's port.
    let service: Value = serde_saphyr::from_str(
        &std::fs::read_to_string(manifest("examples/monitoring/service.yaml")).unwrap(),
    )
    .unwrap();
    let monitor: Value = serde_saphyr::from_str(
        &std::fs::read_to_string(manifest("examples/monitoring/servicemonitor.yaml")).unwrap(),
    )
    .unwrap();
    for (k, v) in monitor["spec"]["selector"]["matchLabels"]
        .as_object()
        .unwrap()
    {
        assert_eq!(&service["metadata"]["labels"][k], v);
    }
    assert_eq!(
        monitor["spec"]["endpoints"][0]["port"],
        service["spec"]["ports"][0]["name"]
    );
    assert_eq!(service["spec"]["ports"][0]["targetPort"], 8081);
}

/// The image runs the binary with the measured malloc settings (see the
/// Dockerfile's comment), in the stage that ships.
#[test]
fn the_image_runs_with_the_measured_malloc_settings() {
    let dockerfile = std::fs::read_to_string(manifest("Dockerfile")).unwrap();
    let (_, shipped) = dockerfile
        .rsplit_once("\nFROM ")
        .expect("a multi-stage build");
    assert!(
        shipped
            .lines()
            .any(|l| l.trim() == "ENV MALLOC_ARENA_MAX=1 MALLOC_MMAP_THRESHOLD_=131072"),
        "{shipped}"
    );
}
