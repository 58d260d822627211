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
    assert_eq!(hook["sideEffects"], "None");
    assert_eq!(hook["clientConfig"]["service"]["path"], "/admissionwebhook");
    assert!(hook["timeoutSeconds"].as_u64().is_some_and(|t| t <= 30));
    assert_eq!(
        hook["admissionReviewVersions"],
        serde_json::json!(["v1", "v1beta1"])
    );
    assert_eq!(
        hook["rules"][0]["operations"],
        serde_json::json!(["CREATE", "UPDATE"])
    );
    assert_eq!(
        hook["namespaceSelector"]["matchExpressions"][0]["values"][0], "openshift-operators",
        "the operator's own namespace is excluded"
    );
}

#[test]
fn the_openshift_overlay_uses_the_service_ca() {
    let docs = render("deploy/overlays/openshift");
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
