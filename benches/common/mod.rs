//! Setup shared by the benches.

// Each bench uses part of this module.
#![allow(dead_code)]

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;
use kube::api::{Api, PostParams};
use kube_sandbox::store::{Store, WriteOptions};
use kube_sandbox::{EmbeddedKube, EmbeddedKubeConfig};
use quay_bridge_operator::crd::{LegacyQuayIntegration, QuayIntegration};
use quay_sandbox::{EmbeddedQuay, EmbeddedQuayConfig};
use serde_json::{Value, json};
use std::time::Duration;

/// A numeric setting from the environment.
pub fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The median of some timings.
pub fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// Installs both CRDs, the Quay token Secret and a QuayIntegration named
/// `bench` for the embedded Quay, as a cluster admin would.
pub async fn install_integration(admin: &kube::Client, quay: &EmbeddedQuay) {
    install_integration_with(admin, quay, json!({})).await;
}

/// The CRDs, the credentials Secret and a QuayIntegration "bench" whose
/// spec also has `extra` (e.g. `{"teamSync": …}`).
pub async fn install_integration_with(
    admin: &kube::Client,
    quay: &EmbeddedQuay,
    extra: serde_json::Value,
) {
    let crds: Api<CustomResourceDefinition> = Api::all(admin.clone());
    for crd in [QuayIntegration::crd(), LegacyQuayIntegration::crd()] {
        crds.create(&PostParams::default(), &crd).await.unwrap();
    }
    let secret: Secret = serde_json::from_value(json!({"metadata": {"name": "quay-integration", "namespace": "openshift-operators"}, "stringData": {"token": quay.admin_token().expose()}})).unwrap();
    Api::<Secret>::namespaced(admin.clone(), "openshift-operators")
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
    let mut spec = json!({"clusterID": "openshift", "credentialsSecret": {"name": "quay-integration", "namespace": "openshift-operators"}, "quayHostname": quay.url()});
    if let (Some(spec), Some(extra)) = (spec.as_object_mut(), extra.as_object()) {
        spec.extend(extra.clone());
    }
    let qi: QuayIntegration = serde_json::from_value(json!({"apiVersion": "quay.redhat.com/v1", "kind": "QuayIntegration", "metadata": {"name": "bench"},
        "spec": spec}))
    .unwrap();
    Api::<QuayIntegration>::all(admin.clone())
        .create(&PostParams::default(), &qi)
        .await
        .unwrap();
}

/// An embedded Quay and an in-process sandbox cluster with the integration
/// installed; the admin client.
pub async fn sandbox() -> (EmbeddedQuay, EmbeddedKube, kube::Client) {
    let quay = EmbeddedQuay::start(EmbeddedQuayConfig::default())
        .await
        .unwrap();
    let kube = EmbeddedKube::start(EmbeddedKubeConfig::default())
        .await
        .unwrap();
    let admin = kube.client();
    install_integration(&admin, &quay).await;
    (quay, kube, admin)
}

fn create(store: &mut Store, group: &str, resource: &str, ns: &str, obj: Value) {
    let def = store
        .registry
        .get(group, "v1", resource)
        .cloned()
        .expect(resource);
    let opts = WriteOptions {
        dry_run: false,
        manager: "bench".into(),
    };
    let obj = store.prepare_create(&def, ns, obj).expect("valid object");
    store.commit_create(&def, obj, &opts).expect("created");
}

/// Fills the sandbox with a project-like cluster, straight into its store:
/// `namespaces` namespaces `team-NNNNN`, each with 4 service accounts (the
/// three the operator manages and one it does not), `role_bindings`
/// RoleBindings and `streams` ImageStreams, and `secrets` unrelated
/// Secrets spread over them.
pub fn fill_cluster(
    kube: &EmbeddedKube,
    namespaces: usize,
    streams: usize,
    role_bindings: usize,
    secrets: usize,
) {
    let names: Vec<String> = (0..namespaces).map(|i| format!("team-{i:05}")).collect();
    {
        let mut store = kube.state().lock_store();
        for ns in &names {
            create(
                &mut store,
                "",
                "namespaces",
                "",
                json!({"metadata": {"name": ns}}),
            );
            // The three the operator manages and one it does not.
            for sa in ["builder", "default", "deployer", "pipeline"] {
                create(
                    &mut store,
                    "",
                    "serviceaccounts",
                    ns,
                    json!({"metadata": {"name": sa}}),
                );
            }
            // Bindings as a project has them: its users with the roles
            // team sync maps, and OpenShift's own system bindings.
            for r in 0..role_bindings {
                let (role, subject) = match r % 5 {
                    0 => (
                        "admin",
                        json!({"kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": format!("owner-{ns}")}),
                    ),
                    1 => (
                        "edit",
                        json!({"kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": format!("dev-{ns}")}),
                    ),
                    2 => (
                        "view",
                        json!({"kind": "Group", "apiGroup": "rbac.authorization.k8s.io", "name": "auditors"}),
                    ),
                    3 => (
                        "system:image-pullers",
                        json!({"kind": "Group", "apiGroup": "rbac.authorization.k8s.io", "name": format!("system:serviceaccounts:{ns}")}),
                    ),
                    _ => (
                        "system:image-builder",
                        json!({"kind": "ServiceAccount", "name": "builder", "namespace": ns}),
                    ),
                };
                create(
                    &mut store,
                    "rbac.authorization.k8s.io",
                    "rolebindings",
                    ns,
                    json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {"name": format!("binding-{r}")},
                        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role}, "subjects": [subject]}),
                );
            }
            for s in 0..streams {
                create(
                    &mut store,
                    "image.openshift.io",
                    "imagestreams",
                    ns,
                    json!({"apiVersion": "image.openshift.io/v1", "kind": "ImageStream", "metadata": {"name": format!("app-{s}")}}),
                );
            }
        }
        let per_ns = secrets.div_ceil(namespaces.max(1));
        let mut made = 0;
        'fill: for ns in &names {
            for i in 0..per_ns {
                if made == secrets {
                    break 'fill;
                }
                create(
                    &mut store,
                    "",
                    "secrets",
                    ns,
                    json!({"metadata": {"name": format!("app-secret-{i}")}, "type": "Opaque", "data": {"password": "c2VjcmV0LXZhbHVlLWZvci10aGUtYmVuY2htYXJr", "config": "a2V5PXZhbHVlCmFub3RoZXI9dmFsdWUK"}}),
                );
                made += 1;
            }
        }
    }
}
