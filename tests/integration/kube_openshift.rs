//! Admission over TLS, builds pushing to the embedded Quay with robot
//! credentials, and image imports, as OpenShift does them.

use crate::common;
use axum::Json;
use axum::extract::State;
use base64::Engine;
use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube_sandbox::registry_client::{Credentials, RegistryClient};
use kube_sandbox::{EmbeddedKube, EmbeddedKubeConfig};
use quay_bridge_operator::net::tls::{CertificateAuthority, server_config_from};
use quay_bridge_operator::net::{self, ServerHandle};
use quay_bridge_operator::quay::types::NewRobot;
use quay_bridge_operator::quay::{Role, Visibility};
use quay_sandbox::EmbeddedQuay;
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Rewrite,
    Deny,
}

#[derive(Clone)]
struct Hook {
    quay_host: String,
    mode: Arc<Mutex<Mode>>,
    seen: Arc<Mutex<Vec<String>>>,
}

/// A test webhook: rewrites ImageStreamTag outputs to the Quay repository.
async fn mutate(State(h): State<Hook>, Json(review): Json<Value>) -> Json<Value> {
    let version = review["apiVersion"].as_str().unwrap_or_default().to_owned();
    h.seen.lock().unwrap().push(version.clone());
    let uid = review["request"]["uid"].clone();
    let build = &review["request"]["object"];
    if *h.mode.lock().unwrap() == Mode::Deny {
        return Json(
            json!({"apiVersion": version, "kind": "AdmissionReview", "response": {"uid": uid, "allowed": false, "status": {"code": 403, "message": "builds are frozen"}}}),
        );
    }
    let mut response = json!({"uid": uid, "allowed": true});
    if build["spec"]["output"]["to"]["kind"] == "ImageStreamTag" {
        let name = build["spec"]["output"]["to"]["name"]
            .as_str()
            .unwrap_or_default();
        let (is, tag) = name.split_once(':').unwrap_or((name, "latest"));
        let ns = build["metadata"]["namespace"].as_str().unwrap_or_default();
        let patch = json!([
            {"op": "replace", "path": "/spec/output/to", "value": {"kind": "DockerImage", "name": format!("{}/openshift_{ns}/{is}:{tag}", h.quay_host)}},
            {"op": "add", "path": "/spec/output/pushSecret", "value": {"name": "builder-quay-openshift"}},
        ]);
        response["patchType"] = json!("JSONPatch");
        response["patch"] =
            json!(base64::engine::general_purpose::STANDARD.encode(patch.to_string()));
    }
    Json(json!({"apiVersion": version, "kind": "AdmissionReview", "response": response}))
}

async fn webhook(quay_host: &str) -> (ServerHandle, CertificateAuthority, Hook) {
    let ca = CertificateAuthority::new("webhook CA").unwrap();
    let cert = ca.issue_server(&["qbo-webhook.qbo.svc"]).unwrap();
    let hook = Hook {
        quay_host: quay_host.to_owned(),
        mode: Arc::new(Mutex::new(Mode::Rewrite)),
        seen: Arc::default(),
    };
    let router = axum::Router::new()
        .route("/admissionwebhook", axum::routing::post(mutate))
        .with_state(hook.clone());
    let server = net::serve(
        "127.0.0.1:0",
        Some(server_config_from(&cert).unwrap()),
        router,
    )
    .await
    .unwrap();
    (server, ca, hook)
}

fn ar(group: &str, kind: &str, plural: &str) -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, "v1", kind), plural)
}

fn dynamic(value: Value) -> DynamicObject {
    serde_json::from_value(value).unwrap()
}

async fn eventually<F: Fn() -> Fut, Fut: Future<Output = bool>>(what: &str, f: F) {
    for _ in 0..300 {
        if f().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("timed out waiting for {what}");
}

struct World {
    quay: EmbeddedQuay,
    kube: EmbeddedKube,
    hook: Hook,
    _webhook: ServerHandle,
    builder_token: String,
}

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// Quay org with builder (write) and default (read) robots and a repo; a
/// namespace whose builder account links a Quay secret; the webhook
/// registered with its CA.
async fn world(failure_policy: &str, versions: &[&str]) -> World {
    common::init();
    let quay = common::quay().await;
    let host = quay.url().trim_start_matches("http://").to_owned();
    let client = common::client(&quay);
    client
        .create_organization("openshift_demo", None)
        .await
        .unwrap();
    let builder = client
        .create_robot("openshift_demo", "builder", &NewRobot::default())
        .await
        .unwrap();
    client
        .create_robot("openshift_demo", "default", &NewRobot::default())
        .await
        .unwrap();
    client
        .create_repository("openshift_demo", "app", Visibility::Private, "")
        .await
        .unwrap();
    client
        .set_repository_permission(
            "openshift_demo",
            "app",
            "openshift_demo+builder",
            Role::Write,
        )
        .await
        .unwrap();
    client
        .set_repository_permission(
            "openshift_demo",
            "app",
            "openshift_demo+default",
            Role::Read,
        )
        .await
        .unwrap();

    let kube = EmbeddedKube::start(EmbeddedKubeConfig::default())
        .await
        .unwrap();
    kube.register_registry(&host, &quay.url());
    let kc = kube.client();
    let ns: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(kc.clone());
    ns.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": "demo"}})).unwrap(),
    )
    .await
    .unwrap();
    let sas: Api<ServiceAccount> = Api::namespaced(kc.clone(), "demo");
    eventually("the builder service account", || async {
        sas.get_opt("builder").await.unwrap().is_some()
    })
    .await;
    let token = builder.token.clone().unwrap().expose().to_owned();
    let cfg =
        json!({"auths": {host.clone(): {"auth": b64(&format!("openshift_demo+builder:{token}"))}}});
    let secrets: Api<Secret> = Api::namespaced(kc.clone(), "demo");
    secrets
        .create(&PostParams::default(), &serde_json::from_value(json!({"metadata": {"name": "builder-quay-openshift"}, "type": "kubernetes.io/dockerconfigjson", "data": {".dockerconfigjson": b64(&cfg.to_string())}})).unwrap())
        .await
        .unwrap();
    sas.patch(
        "builder",
        &PatchParams::default(),
        &Patch::Strategic(json!({"secrets": [{"name": "builder-quay-openshift"}]})),
    )
    .await
    .unwrap();

    let (server, ca, hook) = webhook(&host).await;
    kube.register_service("qbo", "qbo-webhook", server.local_addr());
    let mwc = Api::<DynamicObject>::all_with(
        kc.clone(),
        &ar(
            "admissionregistration.k8s.io",
            "MutatingWebhookConfiguration",
            "mutatingwebhookconfigurations",
        ),
    );
    mwc.create(
        &PostParams::default(),
        &dynamic(json!({
            "apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingWebhookConfiguration", "metadata": {"name": "qbo"},
            "webhooks": [{
                "name": "quayintegration.quay.redhat.com", "admissionReviewVersions": versions, "sideEffects": "None", "failurePolicy": failure_policy, "timeoutSeconds": 5,
                "clientConfig": {"service": {"namespace": "qbo", "name": "qbo-webhook", "path": "/admissionwebhook", "port": 443}, "caBundle": b64(&ca.cert_pem())},
                "rules": [{"operations": ["CREATE"], "apiGroups": ["build.openshift.io"], "apiVersions": ["v1"], "resources": ["builds"]}],
            }]
        })),
    )
    .await
    .unwrap();
    World {
        quay,
        kube,
        hook,
        _webhook: server,
        builder_token: token,
    }
}

async fn start_build(kube: &EmbeddedKube) -> Value {
    let kc = kube.client();
    let is = Api::<DynamicObject>::namespaced_with(
        kc.clone(),
        "demo",
        &ar("image.openshift.io", "ImageStream", "imagestreams"),
    );
    if is.get_opt("app").await.unwrap().is_none() {
        is.create(&PostParams::default(), &dynamic(json!({"apiVersion": "image.openshift.io/v1", "kind": "ImageStream", "metadata": {"name": "app"}}))).await.unwrap();
        let bc = Api::<DynamicObject>::namespaced_with(
            kc.clone(),
            "demo",
            &ar("build.openshift.io", "BuildConfig", "buildconfigs"),
        );
        bc.create(
            &PostParams::default(),
            &dynamic(json!({"apiVersion": "build.openshift.io/v1", "kind": "BuildConfig", "metadata": {"name": "app"}, "spec": {
                "runPolicy": "Serial", "source": {"git": {"uri": "https://example.com/app.git"}},
                "strategy": {"type": "Docker", "dockerStrategy": {}},
                "output": {"to": {"kind": "ImageStreamTag", "name": "app:latest"}}}})),
        )
        .await
        .unwrap();
    }
    let request = kube::core::Request::new(
        "/apis/build.openshift.io/v1/namespaces/demo/buildconfigs/app/instantiate",
    );
    let body = serde_json::to_vec(&json!({"kind": "BuildRequest", "apiVersion": "build.openshift.io/v1", "metadata": {"name": "app"}})).unwrap();
    let req = request.create(&PostParams::default(), body).unwrap();
    kc.request::<Value>(req).await.unwrap()
}

async fn wait_phase(kube: &EmbeddedKube, name: &str, phases: &[&str]) -> Value {
    let builds = Api::<DynamicObject>::namespaced_with(
        kube.client(),
        "demo",
        &ar("build.openshift.io", "Build", "builds"),
    );
    let mut last = Value::Null;
    for _ in 0..300 {
        last = serde_json::to_value(builds.get(name).await.unwrap()).unwrap();
        if phases.contains(&last["status"]["phase"].as_str().unwrap_or_default()) {
            return last;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("build {name} did not reach {phases:?}: {last}");
}

#[tokio::test]
async fn a_rewritten_build_pushes_to_quay_and_the_tag_imports() {
    let w = world("Fail", &["v1", "v1beta1"]).await;
    let build = start_build(&w.kube).await;
    assert_eq!(build["metadata"]["name"], "app-1");
    let host = w.quay.url().trim_start_matches("http://").to_owned();
    assert_eq!(
        build["spec"]["output"]["to"]["kind"], "DockerImage",
        "the webhook rewrote the build: {build}"
    );
    assert_eq!(
        build["spec"]["output"]["to"]["name"],
        format!("{host}/openshift_demo/app:latest")
    );
    assert_eq!(
        w.hook.seen.lock().unwrap().as_slice(),
        ["admission.k8s.io/v1"]
    );

    let done = wait_phase(&w.kube, "app-1", &["Complete", "Failed"]).await;
    assert_eq!(done["status"]["phase"], "Complete", "{done}");
    let digest = done["status"]["output"]["to"]["imageDigest"]
        .as_str()
        .unwrap()
        .to_owned();
    let repo = &w.quay.snapshot().organizations["openshift_demo"].repositories["app"];
    assert_eq!(
        repo.tags["latest"], digest,
        "the image was pushed with the builder robot"
    );

    // Import the Quay tag into the image stream, as the operator will.
    let kc = w.kube.client();
    let isi = Api::<DynamicObject>::namespaced_with(
        kc.clone(),
        "demo",
        &ar(
            "image.openshift.io",
            "ImageStreamImport",
            "imagestreamimports",
        ),
    );
    // The namespace's pull secret for the default robot.
    let default_token = w.quay.robot_token("openshift_demo", "default").unwrap();
    let cfg = json!({"auths": {host.clone(): {"auth": b64(&format!("openshift_demo+default:{}", default_token.expose()))}}});
    Api::<Secret>::namespaced(kc.clone(), "demo")
        .create(&PostParams::default(), &serde_json::from_value(json!({"metadata": {"name": "default-quay-openshift"}, "type": "kubernetes.io/dockerconfigjson", "data": {".dockerconfigjson": b64(&cfg.to_string())}})).unwrap())
        .await
        .unwrap();
    let imported = isi
        .create(
            &PostParams::default(),
            &dynamic(json!({"apiVersion": "image.openshift.io/v1", "kind": "ImageStreamImport", "metadata": {"name": "app", "namespace": "demo"},
                "spec": {"import": true, "images": [{"from": {"kind": "DockerImage", "name": format!("{host}/openshift_demo/app:latest")}, "to": {"name": "latest"},
                    "importPolicy": {"insecure": true, "scheduled": false}, "referencePolicy": {"type": "Source"}}]}})),
        )
        .await
        .unwrap();
    let status = &imported.data["status"];
    assert_eq!(
        status["images"][0]["status"]["status"], "Success",
        "{status}"
    );
    let stream = Api::<DynamicObject>::namespaced_with(
        kc.clone(),
        "demo",
        &ar("image.openshift.io", "ImageStream", "imagestreams"),
    )
    .get("app")
    .await
    .unwrap();
    let tags = &stream.data["status"]["tags"];
    let latest = tags
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["tag"] == "latest")
        .unwrap();
    assert_eq!(
        latest["items"][0]["dockerImageReference"],
        format!("{host}/openshift_demo/app@{digest}")
    );
    assert_eq!(
        stream.data["spec"]["tags"][0]["from"]["name"],
        format!("{host}/openshift_demo/app:latest")
    );

    // A pod's pull with the default robot's secret works.
    let registry = RegistryClient::new(reqwest::Client::new(), w.quay.url());
    let pulled = registry
        .manifest_digest(
            "openshift_demo/app",
            "latest",
            Some(&Credentials {
                username: "openshift_demo+default".into(),
                password: default_token,
            }),
        )
        .await
        .unwrap();
    assert_eq!(pulled, digest);
}

#[tokio::test]
async fn a_build_without_write_access_fails_at_push() {
    let w = world("Fail", &["v1"]).await;
    // The builder robot loses its write permission.
    let client = common::client(&w.quay);
    client
        .set_repository_permission(
            "openshift_demo",
            "app",
            "openshift_demo+builder",
            Role::Read,
        )
        .await
        .unwrap();
    start_build(&w.kube).await;
    let failed = wait_phase(&w.kube, "app-1", &["Complete", "Failed"]).await;
    assert_eq!(failed["status"]["phase"], "Failed");
    assert_eq!(failed["status"]["reason"], "PushImageToRegistryFailed");
    assert!(
        w.quay.snapshot().organizations["openshift_demo"].repositories["app"]
            .tags
            .is_empty()
    );
    assert!(!w.builder_token.is_empty());
}

#[tokio::test]
async fn webhook_failure_policy_and_denials() {
    let w = world("Fail", &["v1beta1"]).await;
    // v1beta1 when it is the only version listed.
    start_build(&w.kube).await;
    assert_eq!(
        w.hook.seen.lock().unwrap().as_slice(),
        ["admission.k8s.io/v1beta1"]
    );

    *w.hook.mode.lock().unwrap() = Mode::Deny;
    let kc = w.kube.client();
    let request = kube::core::Request::new(
        "/apis/build.openshift.io/v1/namespaces/demo/buildconfigs/app/instantiate",
    );
    let req = request
        .create(
            &PostParams::default(),
            serde_json::to_vec(&json!({"kind": "BuildRequest", "metadata": {"name": "app"}}))
                .unwrap(),
        )
        .unwrap();
    match kc.request::<Value>(req).await.unwrap_err() {
        kube::Error::Api(s) => {
            assert_eq!(s.code, 403);
            assert_eq!(
                s.message,
                "admission webhook \"quayintegration.quay.redhat.com\" denied the request: builds are frozen"
            );
        }
        other => panic!("{other:?}"),
    }
    drop(w._webhook);
}

#[tokio::test]
async fn a_webhook_that_is_down_blocks_under_fail_and_is_skipped_under_ignore() {
    for (policy, blocked) in [("Fail", true), ("Ignore", false)] {
        let w = world(policy, &["v1"]).await;
        w.kube
            .register_service("qbo", "qbo-webhook", "127.0.0.1:9".parse().unwrap());
        let kc = w.kube.client();
        let builds = Api::<DynamicObject>::namespaced_with(
            kc.clone(),
            "demo",
            &ar("build.openshift.io", "Build", "builds"),
        );
        let result = builds
            .create(
                &PostParams::default(),
                &dynamic(json!({"apiVersion": "build.openshift.io/v1", "kind": "Build", "metadata": {"name": "manual"},
                    "spec": {"strategy": {"type": "Docker", "dockerStrategy": {}}, "output": {"to": {"kind": "ImageStreamTag", "name": "app:latest"}}}})),
            )
            .await;
        match (blocked, result) {
            (true, Err(kube::Error::Api(s))) => {
                assert_eq!(s.code, 500);
                assert!(
                    s.message
                        .contains("failed calling webhook \"quayintegration.quay.redhat.com\""),
                    "{}",
                    s.message
                );
            }
            (false, Ok(b)) => assert_eq!(
                b.data["spec"]["output"]["to"]["kind"], "ImageStreamTag",
                "unchanged"
            ),
            (_, other) => panic!("{policy}: {other:?}"),
        }
    }
}

#[tokio::test]
async fn imports_fail_without_insecure_over_http_and_without_credentials() {
    let w = world("Ignore", &["v1"]).await;
    let host = w.quay.url().trim_start_matches("http://").to_owned();
    let kc = w.kube.client();
    let isi = Api::<DynamicObject>::namespaced_with(
        kc.clone(),
        "demo",
        &ar(
            "image.openshift.io",
            "ImageStreamImport",
            "imagestreamimports",
        ),
    );
    let import = |insecure: bool| {
        dynamic(
            json!({"apiVersion": "image.openshift.io/v1", "kind": "ImageStreamImport", "metadata": {"name": "app"},
            "spec": {"import": true, "images": [{"from": {"kind": "DockerImage", "name": format!("{host}/openshift_demo/app:latest")}, "to": {"name": "latest"}, "importPolicy": {"insecure": insecure}}]}}),
        )
    };
    let plain = isi
        .create(&PostParams::default(), &import(false))
        .await
        .unwrap();
    let st = &plain.data["status"]["images"][0]["status"];
    assert_eq!(st["status"], "Failure");
    assert!(
        st["message"]
            .as_str()
            .unwrap()
            .contains("server gave HTTP response to HTTPS client"),
        "{st}"
    );
    // No pull secret for the private repository: unauthorized, recorded on the stream.
    let denied = isi
        .create(&PostParams::default(), &import(true))
        .await
        .unwrap();
    assert_eq!(
        denied.data["status"]["images"][0]["status"]["reason"],
        "Unauthorized"
    );
    let stream = Api::<DynamicObject>::namespaced_with(
        kc.clone(),
        "demo",
        &ar("image.openshift.io", "ImageStream", "imagestreams"),
    )
    .get("app")
    .await
    .unwrap();
    let cond = &stream.data["status"]["tags"][0]["conditions"][0];
    assert_eq!(
        (cond["type"].as_str(), cond["status"].as_str()),
        (Some("ImportSuccess"), Some("False"))
    );
    // A required field missing is 422.
    let invalid = isi.create(&PostParams::default(), &dynamic(json!({"apiVersion": "image.openshift.io/v1", "kind": "ImageStreamImport", "metadata": {"name": "app"}, "spec": {"images": []}}))).await;
    assert!(matches!(invalid, Err(kube::Error::Api(s)) if s.code == 422));
}

#[test]
#[ignore = "needs ../shared/schemas/openshift-openapi.json (run by .ci/run)"]
fn required_fields_match_openshift_openapi() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../shared/schemas/openshift-openapi.json"
    );
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("OpenShift's OpenAPI is read from {path}: {e}"));
    let doc: Value = serde_json::from_str(&text).unwrap();
    let defs = &doc["definitions"];
    let required = |def: &str| -> Vec<String> {
        defs[def]["required"]
            .as_array()
            .map(|a| a.iter().map(|v| v.as_str().unwrap().to_owned()).collect())
            .unwrap_or_default()
    };
    for (plural, parent, field) in kube_sandbox::store::OPENSHIFT_REQUIRED {
        let def = match *plural {
            "builds" => "com.github.openshift.api.build.v1.BuildSpec",
            "buildconfigs" => "com.github.openshift.api.build.v1.BuildConfigSpec",
            "imagestreamimports" => "com.github.openshift.api.image.v1.ImageStreamImportSpec",
            other => panic!("no definition mapped for {other}"),
        };
        assert_eq!(*parent, "spec");
        assert!(
            required(def).contains(&(*field).to_owned()),
            "{def} requires {field}"
        );
    }
    assert!(
        required("com.github.openshift.api.image.v1.ImageImportSpec").contains(&"from".to_owned())
    );
}

/// The strategic-merge table the sandbox uses is generated from OpenShift's
/// OpenAPI; this fails when the committed table is stale. Regenerate with
/// `REGENERATE_SMP_TABLE=1 cargo test --test integration -- --ignored strategic_merge_table`.
#[test]
#[ignore = "needs ../shared/schemas/openshift-openapi.json (run by .ci/run)"]
fn strategic_merge_table_is_generated_from_the_openapi() {
    use kube_sandbox::{resources, smp};
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../shared/schemas/openshift-openapi.json"
    );
    let doc = openshift_openapi(path);
    let kinds: Vec<(String, String, String)> = resources::builtin()
        .into_iter()
        .map(|d| (d.group, d.version, d.kind))
        .collect();
    let generated = smp::generate(
        &doc,
        "openshift/api openapi/openapi.json (x-kubernetes-patch-strategy, x-kubernetes-patch-merge-key)",
        &kinds,
    );
    let out = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/crates/kube-sandbox/src/smp_table.json"
    );
    regenerate_if_asked(
        "REGENERATE_SMP_TABLE",
        out,
        serde_json::to_string_pretty(&generated).unwrap(),
    );
    assert!(
        &generated == smp::table(),
        "{out} is stale: regenerate it (see this test's doc comment)"
    );
    assert!(generated.kinds.contains_key("/v1/ServiceAccount"));
}

/// The sources of the `k8s-pb` crate (kube-rs's prost-generated Kubernetes
/// types), as (module, text), from cargo's registry (`.ci/run` fetches it).
fn k8s_pb_sources() -> Vec<(String, String)> {
    let home = std::env::var("CARGO_HOME").map_or_else(
        |_| std::path::PathBuf::from(std::env::var("HOME").unwrap()).join(".cargo"),
        std::path::PathBuf::from,
    );
    let root = std::fs::read_dir(home.join("registry/src"))
        .unwrap()
        .filter_map(Result::ok)
        .map(|d| {
            d.path()
                .join(format!("k8s-pb-{}", kube_sandbox::proto::K8S_PB_VERSION))
        })
        .find(|p| p.exists())
        .expect("the k8s-pb crate's sources in cargo's registry (.ci/run fetches them)")
        .join("src");
    let mut out = Vec::new();
    let mut stack = vec![root.clone()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().filter_map(Result::ok) {
            let p = entry.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.file_name().is_some_and(|n| n == "mod.rs") {
                let module = p
                    .parent()
                    .unwrap()
                    .strip_prefix(&root)
                    .unwrap()
                    .to_string_lossy()
                    .replace('/', ".");
                out.push((module, std::fs::read_to_string(&p).unwrap()));
            }
        }
    }
    out
}

/// The protobuf table the sandbox decodes and encodes bodies with is
/// generated from k8s-pb's prost types (JSON names checked against
/// OpenShift's OpenAPI); this fails when the committed table is stale.
/// Regenerate with
/// `REGENERATE_PROTO_TABLE=1 cargo test --test integration -- --ignored protobuf_table`.
#[test]
#[ignore = "needs ../shared/schemas/openshift-openapi.json and the k8s-pb sources (run by .ci/run)"]
fn protobuf_table_is_generated_from_k8s_pb() {
    use kube_sandbox::{proto, resources};
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../shared/schemas/openshift-openapi.json"
    );
    let doc = openshift_openapi(path);
    let names: std::collections::BTreeSet<String> = doc["definitions"]
        .as_object()
        .unwrap()
        .values()
        .filter_map(|d| d["properties"].as_object())
        .flat_map(|p| p.keys().cloned())
        .collect();
    let roots: Vec<String> = resources::builtin()
        .into_iter()
        .map(|d| proto::message_name(&d.group, &d.version, &d.kind))
        .chain(proto::EXTRA_ROOTS.iter().map(|s| (*s).to_owned()))
        .collect();
    let generated = proto::generate(
        &k8s_pb_sources(),
        &names,
        &roots,
        &format!(
            "k8s-pb {} prost types; JSON names from openshift/api openapi/openapi.json",
            proto::K8S_PB_VERSION
        ),
    );
    let out = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/crates/kube-sandbox/src/proto_table.json"
    );
    regenerate_if_asked(
        "REGENERATE_PROTO_TABLE",
        out,
        serde_json::to_string(&generated).unwrap(),
    );
    assert!(
        &generated == proto::table(),
        "{out} is stale: regenerate it (see this test's doc comment)"
    );
    assert!(generated.messages.contains_key("api.core.v1.Namespace"));
}

/// OpenShift's OpenAPI document (../shared).
fn openshift_openapi(path: &str) -> Value {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("OpenShift's OpenAPI is read from {path}: {e}"));
    serde_json::from_str(&text).unwrap()
}

/// Writes a generated table to `out` when the environment variable `var`
/// asks for it.
fn regenerate_if_asked(var: &str, out: &str, mut text: String) {
    if std::env::var_os(var).is_some() {
        text.push('\n');
        std::fs::write(out, text).unwrap();
    }
}
