//! Safe on a real cluster: what the operator does not own stays as it is.

use crate::harness::{converged, env, integration, namespace, wait_for};
use k8s_openapi::api::core::v1::{Namespace, Secret, ServiceAccount};
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use quay_bridge_operator::config::BRIDGED_LABEL;
use quay_bridge_operator::crd::QuayIntegration;
use serde_json::json;

fn names(refs: Option<Vec<String>>) -> Vec<String> {
    refs.unwrap_or_default()
}

/// `imagePullSecrets` is an atomic list on a real apiserver (a strategic
/// merge patch replaces it): linking must keep OpenShift's and the user's
/// entries, in their order, and add ours once at the end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn linking_keeps_every_pull_secret_the_account_already_had() {
    let env = env().await;
    namespace(&env, "keep").await;
    let sas: Api<ServiceAccount> = Api::namespaced(env.client.clone(), "keep");
    wait_for("OpenShift's builder account", || async {
        sas.get_opt("builder")
            .await
            .unwrap()
            .is_some_and(|sa| sa.image_pull_secrets.is_some())
    })
    .await;
    let builder = sas.get("builder").await.unwrap();
    let dockercfg = builder.image_pull_secrets.unwrap()[0].name.clone();
    assert!(dockercfg.starts_with("builder-dockercfg-"), "{dockercfg}");
    sas.patch(
        "builder",
        &PatchParams::default(),
        &Patch::Merge(json!({
            "secrets": [{"name": dockercfg}, {"name": "user-mount"}],
            "imagePullSecrets": [{"name": dockercfg}, {"name": "user-pull-creds"}],
        })),
    )
    .await
    .unwrap();

    integration(&env, "quay", json!({})).await;
    wait_for("keep", || converged(&env, "keep", &[])).await;
    let builder = sas.get("builder").await.unwrap();
    let pulls = names(
        builder
            .image_pull_secrets
            .map(|l| l.into_iter().map(|r| r.name).collect()),
    );
    assert_eq!(
        pulls,
        [
            dockercfg.as_str(),
            "user-pull-creds",
            "builder-quay-openshift"
        ]
    );
    let mounts = names(
        builder
            .secrets
            .map(|l| l.into_iter().filter_map(|r| r.name).collect()),
    );
    assert_eq!(
        mounts,
        [dockercfg.as_str(), "user-mount", "builder-quay-openshift"]
    );
    env.stop().await;
}

pub fn holds_token(secret: &Secret, robot: &str, token: &str) -> bool {
    use base64::Engine;
    secret.data.as_ref().is_some_and(|d| {
        String::from_utf8_lossy(&d[".dockerconfigjson"].0)
            .contains(&base64::engine::general_purpose::STANDARD.encode(format!("{robot}:{token}")))
    })
}

/// After a person regenerates a robot token in Quay (a leak), a deleted
/// Secret is restored with the current token, read from Quay, never with
/// the revoked one the operator saw earlier.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restored_secret_never_carries_a_revoked_token() {
    let env = env().await;
    integration(&env, "quay", json!({})).await;
    namespace(&env, "revoke").await;
    wait_for("revoke", || converged(&env, "revoke", &[])).await;
    let quay = crate::common::client(&env.quay);
    let current = quay
        .regenerate_robot_token("openshift_revoke", "builder")
        .await
        .unwrap()
        .token
        .unwrap();
    let secrets: Api<Secret> = Api::namespaced(env.client.clone(), "revoke");
    secrets
        .delete("builder-quay-openshift", &DeleteParams::default())
        .await
        .unwrap();
    wait_for("the Secret to be restored", || async {
        secrets
            .get_opt("builder-quay-openshift")
            .await
            .unwrap()
            .is_some()
    })
    .await;
    let restored = secrets.get("builder-quay-openshift").await.unwrap();
    assert!(
        holds_token(&restored, "openshift_revoke+builder", current.expose()),
        "the restored Secret holds the robot's current token"
    );
    env.stop().await;
}

/// The plan and the controller share one rule for an up-to-date Secret:
/// removing its service-account annotation is repaired.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_secret_annotation_is_restored() {
    let env = env().await;
    integration(&env, "quay", json!({})).await;
    namespace(&env, "annot").await;
    wait_for("annot", || converged(&env, "annot", &[])).await;
    let secrets: Api<Secret> = Api::namespaced(env.client.clone(), "annot");
    secrets
        .patch(
            "default-quay-openshift",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {"kubernetes.io/service-account.name": null}, "labels": {"team": "mine"}}})),
        )
        .await
        .unwrap();
    wait_for("the annotation to be restored", || async {
        let s = secrets.get("default-quay-openshift").await.unwrap();
        s.annotations()
            .get("kubernetes.io/service-account.name")
            .map(String::as_str)
            == Some("default")
    })
    .await;
    let s = secrets.get("default-quay-openshift").await.unwrap();
    assert_eq!(s.labels()["team"], "mine", "the user's label is kept");
    env.stop().await;
}

fn builds_in(env: &crate::harness::Env, ns: &str) -> Api<DynamicObject> {
    Api::namespaced_with(
        env.client.clone(),
        ns,
        &crate::builds::ar("build.openshift.io", "Build", "builds"),
    )
}

fn build(name: &str) -> DynamicObject {
    serde_json::from_value(json!({"apiVersion": "build.openshift.io/v1", "kind": "Build", "metadata": {"name": name},
        "spec": {"strategy": {"type": "Docker", "dockerStrategy": {}}, "output": {"to": {"kind": "ImageStreamTag", "name": "app:latest"}}}}))
    .unwrap()
}

/// With the operator's webhook unreachable (registered as deploy/ does,
/// failurePolicy Fail, but no endpoint), what it does not bridge is not
/// blocked: Builds in unbridged namespaces and updates of any Build are
/// admitted; a new Build in a bridged namespace is refused (fail closed
/// where it must push to Quay).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_webhook_blocks_only_new_builds_in_bridged_namespaces() {
    let env = env().await;
    integration(&env, "quay", json!({"denylistNamespaces": ["free"]})).await;
    namespace(&env, "bridged").await;
    namespace(&env, "free").await;
    wait_for("bridged", || converged(&env, "bridged", &[])).await;
    let namespaces: Api<Namespace> = Api::all(env.client.clone());
    let bridged = namespaces.get("bridged").await.unwrap();
    assert_eq!(
        bridged.labels().get(BRIDGED_LABEL).map(String::as_str),
        Some("true")
    );
    assert!(
        !namespaces
            .get("free")
            .await
            .unwrap()
            .labels()
            .contains_key(BRIDGED_LABEL)
    );
    // A Build from before the webhook was registered.
    let existing = builds_in(&env, "bridged")
        .create(&PostParams::default(), &build("before"))
        .await
        .unwrap();
    // The webhook is registered, and its service has no endpoint.
    crate::builds::create_webhook_configuration_for(&env.client, None).await;

    let refused = builds_in(&env, "bridged")
        .create(&PostParams::default(), &build("new"))
        .await;
    match refused {
        Err(kube::Error::Api(s)) => assert!(
            s.message.contains("failed calling webhook"),
            "{}",
            s.message
        ),
        other => panic!("a new Build in a bridged namespace must be refused: {other:?}"),
    }
    builds_in(&env, "free")
        .create(&PostParams::default(), &build("elsewhere"))
        .await
        .expect("a Build in an unbridged namespace is admitted");
    builds_in(&env, "bridged")
        .patch(
            &existing.name_any(),
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"touched": "yes"}}})),
        )
        .await
        .expect("an update of a Build is admitted");
    env.stop().await;
}

/// Releasing a namespace (no longer selected) removes the bridged label
/// with the finalizer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_released_namespace_loses_the_bridged_label() {
    let env = env().await;
    let qi = integration(&env, "quay", json!({})).await;
    namespace(&env, "leaving").await;
    wait_for("leaving", || converged(&env, "leaving", &[])).await;
    Api::<QuayIntegration>::all(env.client.clone())
        .patch(
            &qi.name_any(),
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"denylistNamespaces": ["leaving"]}})),
        )
        .await
        .unwrap();
    let namespaces: Api<Namespace> = Api::all(env.client.clone());
    wait_for("the label to go", || async {
        !namespaces
            .get("leaving")
            .await
            .unwrap()
            .labels()
            .contains_key(BRIDGED_LABEL)
    })
    .await;
    crate::harness::wait_released(&env, "leaving").await;
    env.stop().await;
}

/// No object a user can create stops the operator: an ImageStream without
/// `spec` (which the apiserver accepts) existed before it started, and the
/// operator starts, bridges, and gives that ImageStream its repository.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_stream_without_spec_does_not_stop_the_operator() {
    let env = crate::harness::env_with_before(
        crate::harness::fast_options(),
        std::time::Duration::from_millis(50),
        |client: kube::Client| async move {
            Api::<Namespace>::all(client.clone())
                .create(
                    &PostParams::default(),
                    &serde_json::from_value(json!({"metadata": {"name": "bare"}})).unwrap(),
                )
                .await
                .unwrap();
            Api::<DynamicObject>::namespaced_with(
                client,
                "bare",
                &crate::builds::ar("image.openshift.io", "ImageStream", "imagestreams"),
            )
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({"apiVersion": "image.openshift.io/v1", "kind": "ImageStream", "metadata": {"name": "nospec"}})).unwrap(),
            )
            .await
            .unwrap();
        },
    )
    .await;
    integration(&env, "quay", json!({})).await;
    wait_for("bare", || converged(&env, "bare", &["nospec"])).await;
    env.stop().await;
}

/// Two replicas starting together both try to create the self-managed
/// certificate Secret: the one that loses the race (409) uses the
/// winner's, instead of failing to start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_starting_together_share_one_self_managed_certificate() {
    use kube_sandbox::{EmbeddedKube, EmbeddedKubeConfig};
    use quay_bridge_operator::webhook::selfmanaged::{SelfManaged, ensure};
    crate::common::init();
    let kube = EmbeddedKube::start(EmbeddedKubeConfig::default())
        .await
        .unwrap();
    let admin = kube.client();
    crate::builds::create_webhook_configuration_for(&admin, None).await;
    let cfg = SelfManaged::new(
        "openshift-operators",
        "quay-bridge-operator",
        "quay-bridge-operator-webhook-tls",
        "quay-bridge-operator",
    );
    let secrets: Api<Secret> = Api::namespaced(admin.clone(), "openshift-operators");
    let (a, b) = (kube.client_as("replica-a"), kube.client_as("replica-b"));
    for round in 0..10 {
        let (first, second) = tokio::join!(ensure(&a, &cfg), ensure(&b, &cfg));
        let (first, second) = (
            first.unwrap_or_else(|e| panic!("round {round}, replica a: {e}")),
            second.unwrap_or_else(|e| panic!("round {round}, replica b: {e}")),
        );
        let stored = secrets
            .get("quay-bridge-operator-webhook-tls")
            .await
            .unwrap();
        let ca = String::from_utf8(stored.data.unwrap()["ca.crt"].0.clone()).unwrap();
        assert!(
            first.ca_bundle.contains(&ca) && second.ca_bundle.contains(&ca),
            "round {round}: both replicas trust the stored CA"
        );
        secrets
            .delete("quay-bridge-operator-webhook-tls", &DeleteParams::default())
            .await
            .unwrap();
    }
}
