//! Builds go to Quay: the sandbox apiserver calls the operator's webhook
//! over TLS, the build runner pushes with the robot, the operator imports.

use crate::common;
use crate::harness::{
    converged, env_with_before, fast_options, image_stream, integration, namespace, wait_for,
};
use base64::Engine;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DynamicObject, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube_sandbox::registry_client::{Credentials, RegistryClient};
use quay_bridge_operator::controller::context::{CertSource, WebhookOptions};
use quay_bridge_operator::net::tls::CertificateAuthority;
use serde_json::{Value, json};
use std::time::Duration;

pub fn ar(group: &str, kind: &str, plural: &str) -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, "v1", kind), plural)
}

struct Webhook {
    _dir: tempfile::TempDir,
    ca: CertificateAuthority,
    dir: std::path::PathBuf,
}

fn webhook_certs() -> Webhook {
    common::init();
    let ca = CertificateAuthority::new("service CA").unwrap();
    let pair = ca
        .issue_server(&["quay-bridge-operator.openshift-operators.svc"])
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("tls.crt"), &pair.cert_pem).unwrap();
    std::fs::write(dir.path().join("tls.key"), pair.key_pem.expose()).unwrap();
    Webhook {
        dir: dir.path().to_owned(),
        _dir: dir,
        ca,
    }
}

async fn env_with_webhook(w: &Webhook) -> crate::harness::Env {
    let files = CertSource::Files {
        dir: w.dir.clone(),
        reload_interval: Duration::from_millis(100),
    };
    env_serving(files, Some(w.ca.cert_pem())).await
}

/// Operator with its webhook registered in the sandbox (service
/// openshift-operators/quay-bridge-operator), the configuration trusting
/// `ca` (or nothing, for self-managed certificates to inject).
async fn env_serving(certificates: CertSource, ca: Option<String>) -> crate::harness::Env {
    common::init();
    let mut options = fast_options();
    options.webhook = Some(WebhookOptions::new("127.0.0.1:0", certificates));
    // The configuration exists before the operator starts (as deploy/ installs it).
    let env =
        env_with_before(
            options,
            Duration::from_millis(50),
            move |client: kube::Client| async move {
                create_webhook_configuration_for(&client, ca).await
            },
        )
        .await;
    let host = env.host();
    env.kube.register_registry(&host, &env.quay.url());
    env.register_webhook().await;
    env
}

pub async fn create_webhook_configuration_for(client: &kube::Client, ca: Option<String>) {
    let mwc = Api::<DynamicObject>::all_with(
        client.clone(),
        &ar(
            "admissionregistration.k8s.io",
            "MutatingWebhookConfiguration",
            "mutatingwebhookconfigurations",
        ),
    );
    let mut config = quay_bridge_operator::webhook::registration::configuration(
        "quay-bridge-operator",
        "openshift-operators",
        "quay-bridge-operator",
        false,
    );
    if let Some(ca) = ca {
        config["webhooks"][0]["clientConfig"]["caBundle"] =
            json!(base64::engine::general_purpose::STANDARD.encode(ca));
    }
    let config: DynamicObject = serde_json::from_value(config).unwrap();
    mwc.create(&PostParams::default(), &config).await.unwrap();
}

async fn build_config(env: &crate::harness::Env, ns: &str, output: Value) {
    let bc = Api::<DynamicObject>::namespaced_with(
        env.client.clone(),
        ns,
        &ar("build.openshift.io", "BuildConfig", "buildconfigs"),
    );
    let obj: DynamicObject = serde_json::from_value(json!({"apiVersion": "build.openshift.io/v1", "kind": "BuildConfig", "metadata": {"name": "app"}, "spec": {
        "runPolicy": "Serial", "source": {"git": {"uri": "https://github.com/sclorg/httpd-ex.git"}},
        "strategy": {"type": "Source", "sourceStrategy": {"from": {"kind": "ImageStreamTag", "name": "httpd:2.4", "namespace": "openshift"}}},
        "output": output}}))
    .unwrap();
    bc.create(&PostParams::default(), &obj).await.unwrap();
}

/// An integration, namespace `demo` bridged with ImageStream `app`, and
/// BuildConfig `app` building into `app:latest`.
async fn bridged_demo_with_build_config(env: &crate::harness::Env) {
    integration(env, "quay", json!({})).await;
    namespace(env, "demo").await;
    image_stream(env, "demo", "app").await;
    wait_for("demo", || converged(env, "demo", &["app"])).await;
    build_config(
        env,
        "demo",
        json!({"to": {"kind": "ImageStreamTag", "name": "app:latest"}}),
    )
    .await;
}

pub async fn start_build_in(env: &crate::harness::Env, ns: &str) -> Result<Value, kube::Error> {
    let request = kube::core::Request::new(format!(
        "/apis/build.openshift.io/v1/namespaces/{ns}/buildconfigs/app/instantiate"
    ));
    let req = request.create(&PostParams::default(), serde_json::to_vec(&json!({"kind": "BuildRequest", "apiVersion": "build.openshift.io/v1", "metadata": {"name": "app"}})).unwrap()).unwrap();
    env.client.request::<Value>(req).await
}

pub async fn build_of(env: &crate::harness::Env, ns: &str, name: &str) -> Value {
    let builds = Api::<DynamicObject>::namespaced_with(
        env.client.clone(),
        ns,
        &ar("build.openshift.io", "Build", "builds"),
    );
    serde_json::to_value(builds.get(name).await.unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_app_builds_push_to_quay_and_the_tag_is_imported() {
    let w = webhook_certs();
    let env = env_with_webhook(&w).await;
    bridged_demo_with_build_config(&env).await;

    let created = start_build_in(&env, "demo").await.unwrap();
    let host = env.host();
    assert_eq!(
        created["spec"]["output"]["to"],
        json!({"kind": "DockerImage", "name": format!("{host}/openshift_demo/app:latest")}),
        "rewritten by the webhook over TLS"
    );
    assert_eq!(
        created["spec"]["output"]["pushSecret"]["name"],
        "builder-quay-openshift"
    );
    assert_eq!(
        created["metadata"]["annotations"]["quay-registry-operator.quay.redhat.com/destination-imagestream"],
        "demo/app:latest"
    );

    wait_for("the build to complete", || async {
        build_of(&env, "demo", "app-1").await["status"]["phase"] == "Complete"
    })
    .await;
    let done = build_of(&env, "demo", "app-1").await;
    let digest = done["status"]["output"]["to"]["imageDigest"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        env.quay.snapshot().organizations["openshift_demo"].repositories["app"].tags["latest"],
        digest,
        "pushed with the builder robot"
    );

    wait_for("the import to be marked", || async {
        build_of(&env, "demo", "app-1").await["metadata"]["annotations"]["quay-registry-operator.quay.redhat.com/destination-imagestreamtag-imported"] == "true"
    })
    .await;
    let streams = Api::<DynamicObject>::namespaced_with(
        env.client.clone(),
        "demo",
        &ar("image.openshift.io", "ImageStream", "imagestreams"),
    );
    let stream = serde_json::to_value(streams.get("app").await.unwrap()).unwrap();
    let latest = stream["status"]["tags"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["tag"] == "latest")
        .cloned()
        .unwrap();
    assert_eq!(
        latest["items"][0]["dockerImageReference"],
        format!("{host}/openshift_demo/app@{digest}"),
        "the tag points at the Quay image"
    );
    assert_eq!(
        stream["spec"]["tags"][0]["referencePolicy"]["type"],
        "Source"
    );
    assert_eq!(stream["spec"]["tags"][0]["importPolicy"]["insecure"], true);

    // A deployment-style pull with the default robot's Secret works.
    let secret = Api::<Secret>::namespaced(env.client.clone(), "demo")
        .get("default-quay-openshift")
        .await
        .unwrap();
    let cfg: Value = serde_json::from_slice(&secret.data.unwrap()[".dockerconfigjson"].0).unwrap();
    let auth = String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(cfg["auths"][&host]["auth"].as_str().unwrap())
            .unwrap(),
    )
    .unwrap();
    let (user, pass) = auth.split_once(':').unwrap();
    let registry = RegistryClient::new(reqwest::Client::new(), env.quay.url());
    let pulled = registry
        .manifest_digest(
            "openshift_demo/app",
            "latest",
            Some(&Credentials {
                username: user.into(),
                password: pass.into(),
            }),
        )
        .await
        .unwrap();
    assert_eq!(pulled, digest);

    // One import, even after a restart-like resync of every build.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let imports = env
        .kube
        .requests()
        .into_iter()
        .filter(|r| r.resource == "imagestreamimports")
        .count();
    assert_eq!(imports, 1, "imported once");
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn builds_outside_managed_namespaces_or_to_docker_images_pass_unchanged() {
    let w = webhook_certs();
    let env = env_with_webhook(&w).await;
    integration(&env, "quay", json!({"allowlistNamespaces": ["managed"]})).await;
    namespace(&env, "managed").await;
    namespace(&env, "plain").await;
    wait_for("managed", || converged(&env, "managed", &[])).await;
    image_stream(&env, "plain", "app").await;
    build_config(
        &env,
        "plain",
        json!({"to": {"kind": "ImageStreamTag", "name": "app:latest"}}),
    )
    .await;
    let created = start_build_in(&env, "plain").await.unwrap();
    assert_eq!(
        created["spec"]["output"]["to"]["kind"], "ImageStreamTag",
        "unmanaged namespace: unchanged"
    );
    build_config(
        &env,
        "managed",
        json!({"to": {"kind": "DockerImage", "name": "registry.example.com/x/y:1"}}),
    )
    .await;
    let created = start_build_in(&env, "managed").await.unwrap();
    assert_eq!(
        created["spec"]["output"]["to"]["name"], "registry.example.com/x/y:1",
        "DockerImage output: unchanged"
    );
    // The unbridged namespace's Build never reached the webhook (the
    // registration selects bridged namespaces); the DockerImage one did.
    assert_eq!(env.metrics_webhook_allowed(), 1);
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_webhook_certificate_is_reloaded_when_its_files_change() {
    let w = webhook_certs();
    let env = env_with_webhook(&w).await;
    integration(&env, "quay", json!({})).await;
    let addr = env.webhook_addr().await;
    wait_for("the webhook to serve", || async {
        tokio::net::TcpStream::connect(addr).await.is_ok()
    })
    .await;
    let fetch = |ca_pem: String| async move {
        let certs = reqwest::Certificate::from_pem_bundle(ca_pem.as_bytes()).unwrap();
        let client = reqwest::Client::builder()
            .tls_certs_only(certs)
            .resolve("quay-bridge-operator.openshift-operators.svc", addr)
            .build()
            .unwrap();
        client
            .post(format!(
                "https://quay-bridge-operator.openshift-operators.svc:{}/admissionwebhook",
                addr.port()
            ))
            .header("content-type", "application/json")
            .body("{}")
            .send()
            .await
    };
    assert_eq!(
        fetch(w.ca.cert_pem()).await.unwrap().status(),
        400,
        "serving with the first certificate; malformed review is a 400"
    );
    // Rotate to a certificate from a new CA.
    let new_ca = CertificateAuthority::new("rotated CA").unwrap();
    let pair = new_ca
        .issue_server(&["quay-bridge-operator.openshift-operators.svc"])
        .unwrap();
    std::fs::write(w.dir.join("tls.key"), pair.key_pem.expose()).unwrap();
    std::fs::write(w.dir.join("tls.crt"), &pair.cert_pem).unwrap();
    let new_pem = new_ca.cert_pem();
    wait_for("the new certificate to be served", || {
        let p = new_pem.clone();
        async move { fetch(p).await.is_ok() }
    })
    .await;
    assert!(
        fetch(w.ca.cert_pem()).await.is_err(),
        "the old certificate is gone"
    );
    // A broken pair keeps the current one in service.
    std::fs::write(w.dir.join("tls.crt"), "not a certificate").unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(fetch(new_ca.cert_pem()).await.is_ok());
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_import_is_retried_and_no_import_repeats_after_a_restart() {
    let w = webhook_certs();
    let mut env = env_with_webhook(&w).await;
    integration(&env, "quay", json!({})).await;
    namespace(&env, "retry").await;
    image_stream(&env, "retry", "app").await;
    wait_for("retry", || converged(&env, "retry", &["app"])).await;
    build_config(
        &env,
        "retry",
        json!({"to": {"kind": "ImageStreamTag", "name": "app:latest"}}),
    )
    .await;
    // Every pull of the first import fails (each pull secret, then anonymous).
    env.quay.set_faults(
        quay_sandbox::FaultConfig {
            fail_next: 4,
            error_status: Some(500),
            method: Some("GET".into()),
            path_prefix: Some("/v2/openshift_retry/app/manifests".into()),
            ..Default::default()
        },
        None,
    );
    start_build_in(&env, "retry").await.unwrap();
    wait_for("the import to succeed after a retry", || async {
        build_of(&env, "retry", "app-1").await["metadata"]["annotations"]["quay-registry-operator.quay.redhat.com/destination-imagestreamtag-imported"] == "true"
    })
    .await;
    let events =
        Api::<k8s_openapi::api::events::v1::Event>::namespaced(env.client.clone(), "retry")
            .list(&Default::default())
            .await
            .unwrap();
    assert!(
        events
            .items
            .iter()
            .any(|e| e.reason.as_deref() == Some("ImportFailed")),
        "the failure was reported"
    );
    // The success Event follows the Build's annotation: wait for it.
    wait_for("the ImageImported Event", || async {
        Api::<k8s_openapi::api::events::v1::Event>::namespaced(env.client.clone(), "retry")
            .list(&Default::default())
            .await
            .unwrap()
            .items
            .iter()
            .any(|e| e.reason.as_deref() == Some("ImageImported"))
    })
    .await;
    let imports = |k: &kube_sandbox::EmbeddedKube| {
        k.requests()
            .into_iter()
            .filter(|r| r.resource == "imagestreamimports")
            .count()
    };
    let before = imports(&env.kube);
    assert!(before >= 2, "retried: {before} imports");
    env.restart().await;
    namespace(&env, "after-restart").await;
    wait_for("the restarted operator to bridge a new namespace", || {
        converged(&env, "after-restart", &[])
    })
    .await;
    assert_eq!(
        imports(&env.kube),
        before,
        "no import again after a restart"
    );
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn image_stream_deletion_follows_the_policy_and_spares_foreign_repositories() {
    let w = webhook_certs();
    let env = env_with_webhook(&w).await;
    integration(&env, "quay", json!({"imageStreamDeletionPolicy": "Delete"})).await;
    namespace(&env, "isdel").await;
    image_stream(&env, "isdel", "app").await;
    image_stream(&env, "isdel", "web").await;
    wait_for("isdel", || converged(&env, "isdel", &["app", "web"])).await;
    // A repository someone created by hand in the organization.
    let quay = common::client(&env.quay);
    quay.create_repository(
        "openshift_isdel",
        "handmade",
        quay_bridge_operator::quay::Visibility::Private,
        "mine",
    )
    .await
    .unwrap();
    let streams = Api::<DynamicObject>::namespaced_with(
        env.client.clone(),
        "isdel",
        &ar("image.openshift.io", "ImageStream", "imagestreams"),
    );
    streams.delete("app", &Default::default()).await.unwrap();
    wait_for("the repository to go with its ImageStream", || async {
        !env.quay.snapshot().organizations["openshift_isdel"]
            .repositories
            .contains_key("app")
    })
    .await;
    let repos = env.quay.snapshot().organizations["openshift_isdel"]
        .repositories
        .clone();
    assert!(
        repos.contains_key("web") && repos.contains_key("handmade"),
        "{:?}",
        repos.keys().collect::<Vec<_>>()
    );
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn self_managed_certificates_are_issued_injected_and_rotated() {
    let mut cfg = quay_bridge_operator::webhook::selfmanaged::SelfManaged::new(
        "openshift-operators",
        "quay-bridge-operator",
        "quay-bridge-operator-webhook-tls",
        "quay-bridge-operator",
    );
    cfg.cert_validity = Duration::from_secs(4);
    cfg.renew_before = Duration::from_secs(2);
    cfg.check_interval = Duration::from_millis(200);
    let env = env_serving(CertSource::SelfManaged(cfg), None).await;
    integration(&env, "quay", json!({})).await;
    namespace(&env, "selfsigned").await;
    image_stream(&env, "selfsigned", "app").await;
    wait_for("selfsigned", || converged(&env, "selfsigned", &["app"])).await;
    let secrets: Api<Secret> = Api::namespaced(env.client.clone(), "openshift-operators");
    let first = secrets
        .get("quay-bridge-operator-webhook-tls")
        .await
        .unwrap();
    assert_eq!(first.type_.as_deref(), Some("kubernetes.io/tls"));
    let mwc = Api::<DynamicObject>::all_with(
        env.client.clone(),
        &ar(
            "admissionregistration.k8s.io",
            "MutatingWebhookConfiguration",
            "mutatingwebhookconfigurations",
        ),
    );
    let injected = serde_json::to_value(mwc.get("quay-bridge-operator").await.unwrap()).unwrap();
    let bundle = base64::engine::general_purpose::STANDARD
        .decode(
            injected["webhooks"][0]["clientConfig"]["caBundle"]
                .as_str()
                .unwrap(),
        )
        .unwrap();
    assert_eq!(
        bundle,
        first.data.as_ref().unwrap()["ca.crt"].0,
        "the CA was injected"
    );
    // The apiserver verifies the webhook against the injected CA.
    build_config(
        &env,
        "selfsigned",
        json!({"to": {"kind": "ImageStreamTag", "name": "app:latest"}}),
    )
    .await;
    let created = start_build_in(&env, "selfsigned").await.unwrap();
    assert_eq!(created["spec"]["output"]["to"]["kind"], "DockerImage");
    // The serving certificate is renewed before it expires, and keeps working.
    let first_cert = first.data.as_ref().unwrap()["tls.crt"].0.clone();
    wait_for("the serving certificate to rotate", || async {
        secrets
            .get("quay-bridge-operator-webhook-tls")
            .await
            .unwrap()
            .data
            .unwrap()["tls.crt"]
            .0
            != first_cert
    })
    .await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    let again = start_build_in(&env, "selfsigned").await.unwrap();
    assert_eq!(
        again["spec"]["output"]["to"]["kind"], "DockerImage",
        "served with the rotated certificate"
    );
    env.stop().await;
}

/// A Source BuildConfig `app` whose output is `app:latest`.
pub async fn with_build_config(env: &crate::harness::Env, ns: &str) {
    build_config(
        env,
        ns,
        json!({"to": {"kind": "ImageStreamTag", "name": "app:latest"}}),
    )
    .await;
}

/// A thousand clients connect to the webhook and never send a byte (nor a
/// TLS handshake): a Build review still gets its answer at once, while
/// they wait for the server's handshake deadline. An oversized review is
/// refused with a clear answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_do_not_hold_up_a_review_and_oversized_reviews_are_refused() {
    let w = webhook_certs();
    let env = env_with_webhook(&w).await;
    integration(&env, "quay", json!({})).await;
    namespace(&env, "busy").await;
    wait_for("busy", || converged(&env, "busy", &[])).await;
    let addr = env.webhook_addr().await;
    let mut idle = Vec::new();
    for _ in 0..1000 {
        idle.push(tokio::net::TcpStream::connect(addr).await.unwrap());
    }
    let certs = reqwest::Certificate::from_pem_bundle(w.ca.cert_pem().as_bytes()).unwrap();
    let client = reqwest::Client::builder()
        .tls_certs_only(certs)
        .resolve("quay-bridge-operator.openshift-operators.svc", addr)
        .build()
        .unwrap();
    let url = format!(
        "https://quay-bridge-operator.openshift-operators.svc:{}/admissionwebhook",
        addr.port()
    );
    let review = json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
        "uid": "u-1", "operation": "CREATE", "namespace": "busy",
        "kind": {"group": "build.openshift.io", "version": "v1", "kind": "Build"},
        "resource": {"group": "build.openshift.io", "version": "v1", "resource": "builds"},
        "object": {"metadata": {"name": "app-1", "namespace": "busy"}, "spec": {
            "strategy": {"type": "Docker", "dockerStrategy": {}},
            "output": {"to": {"kind": "ImageStreamTag", "name": "app:v1"}}}}}});
    let started = std::time::Instant::now();
    let answer: Value = client
        .post(&url)
        .json(&review)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    // Well before the 10 s handshake deadline would free any idle one.
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(answer["response"]["uid"], "u-1");
    assert_eq!(answer["response"]["allowed"], true, "{answer}");
    assert_eq!(answer["response"]["patchType"], "JSONPatch", "{answer}");
    // A review larger than any the apiserver sends.
    let huge = vec![b' '; quay_bridge_operator::webhook::server::MAX_BODY + 1];
    let refused = client
        .post(&url)
        .header("content-type", "application/json")
        .body(huge)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 413);
    drop(idle);
    env.stop().await;
}

/// The operator's webhook unreachable: a listener that takes each
/// connection and drops it (the TLS handshake fails at once).
pub async fn unreachable_webhook(env: &crate::harness::Env) -> tokio::task::JoinHandle<()> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    env.kube.register_service(
        "openshift-operators",
        "quay-bridge-operator",
        listener.local_addr().unwrap(),
    );
    tokio::spawn(async move {
        while let Ok((conn, _)) = listener.accept().await {
            drop(conn);
        }
    })
}

async fn quay_integration_status(env: &crate::harness::Env) -> Value {
    let api = Api::<quay_bridge_operator::crd::QuayIntegration>::all(env.client.clone());
    serde_json::to_value(api.get("quay").await.unwrap().status).unwrap()
}

/// Under OLM the webhook fails open: a Build created while the operator is
/// down keeps its ImageStreamTag output. The operator finds it when it is
/// back: a Warning Event, `status.escapedBuilds` and the metric count it;
/// with `rebuildEscapedBuilds` it is cancelled and started again from its
/// BuildConfig, and the new Build, admitted by the webhook, pushes to Quay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_build_that_escaped_the_webhook_is_reported_then_rebuilt_to_quay() {
    let w = webhook_certs();
    let mut options = fast_options();
    let files = CertSource::Files {
        dir: w.dir.clone(),
        reload_interval: Duration::from_millis(100),
    };
    options.webhook = Some(WebhookOptions::new("127.0.0.1:0", files));
    let ca = w.ca.cert_pem();
    // Builds run long enough to be caught running.
    let openshift = kube_sandbox::OpenShiftConfig {
        service_account_delay: Duration::from_millis(50),
        build_duration: Duration::from_secs(120),
        ..Default::default()
    };
    let mut env = crate::harness::env_with_openshift(options, openshift, move |client: kube::Client| async move {
        create_webhook_configuration_for(&client, Some(ca)).await;
        // As the CSV registers it.
        let mwc = Api::<DynamicObject>::all_with(client, &ar("admissionregistration.k8s.io", "MutatingWebhookConfiguration", "mutatingwebhookconfigurations"));
        let ignore = json!({"webhooks": [{"name": quay_bridge_operator::webhook::registration::WEBHOOK_NAME, "failurePolicy": "Ignore"}]});
        mwc.patch("quay-bridge-operator", &kube::api::PatchParams::default(), &kube::api::Patch::Strategic(ignore)).await.unwrap();
    })
    .await;
    let host = env.host();
    env.kube.register_registry(&host, &env.quay.url());
    env.register_webhook().await;
    bridged_demo_with_build_config(&env).await;

    // The outage: the Build is admitted unchanged.
    env.pause().await;
    let dead = unreachable_webhook(&env).await;
    let escaped = start_build_in(&env, "demo").await.unwrap();
    assert_eq!(
        escaped["spec"]["output"]["to"]["kind"], "ImageStreamTag",
        "it escaped the webhook"
    );
    let name = escaped["metadata"]["name"].as_str().unwrap().to_owned();
    env.resume().await;
    dead.abort();

    wait_for("a Warning on the escaped Build", || async {
        !crate::trust::events_on(&env, "demo", "Build", &name, "EscapedWebhook")
            .await
            .is_empty()
    })
    .await;
    wait_for("status.escapedBuilds = 1", || async {
        quay_integration_status(&env).await["escapedBuilds"] == 1
    })
    .await;
    assert_eq!(env.metrics.escaped_builds(), 1);
    let instantiated_by_operator = || {
        env.kube
            .requests()
            .into_iter()
            .filter(|r| r.subresource == "instantiate" && r.identity == crate::harness::OPERATOR)
            .count()
    };
    assert_eq!(
        instantiated_by_operator(),
        0,
        "not rebuilt while the integration does not opt in"
    );
    let phase = build_of(&env, "demo", &name).await["status"]["phase"].clone();
    assert!(
        phase == "New" || phase == "Running",
        "still building: {phase}"
    );

    // Opting in rebuilds it.
    let api = Api::<quay_bridge_operator::crd::QuayIntegration>::all(env.client.clone());
    api.patch(
        "quay",
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Merge(json!({"spec": {"rebuildEscapedBuilds": true}})),
    )
    .await
    .unwrap();
    wait_for("the escaped Build cancelled", || async {
        build_of(&env, "demo", &name).await["status"]["phase"] == "Cancelled"
    })
    .await;
    let cancelled = build_of(&env, "demo", &name).await;
    let rebuilt =
        cancelled["metadata"]["annotations"]["quay-registry-operator.quay.redhat.com/rebuilt-as"]
            .as_str()
            .unwrap()
            .to_owned();
    assert_ne!(rebuilt, name);
    let new = build_of(&env, "demo", &rebuilt).await;
    assert_eq!(
        new["spec"]["output"]["to"],
        json!({"kind": "DockerImage", "name": format!("{host}/openshift_demo/app:latest")}),
        "the Build started in its place pushes to Quay"
    );
    assert_eq!(
        new["spec"]["output"]["pushSecret"]["name"],
        "builder-quay-openshift"
    );
    wait_for("status.escapedBuilds = 0", || async {
        quay_integration_status(&env).await["escapedBuilds"] == 0
    })
    .await;
    assert_eq!(env.metrics.escaped_builds(), 0);
    assert!(
        !crate::trust::events_on(&env, "demo", "Build", &name, "EscapedBuildRebuilt")
            .await
            .is_empty()
    );
    // Once: later triggers (the integration changed again) start nothing more.
    api.patch(
        "quay",
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Merge(json!({"spec": {"scheduledImageStreamImport": true}})),
    )
    .await
    .unwrap();
    wait_for("the change observed", || async {
        quay_integration_status(&env).await["observedGeneration"] == 3
    })
    .await;
    assert_eq!(instantiated_by_operator(), 1, "one rebuild");
    env.stop().await;
}
