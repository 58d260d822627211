//! Setup shared by the benches.

// Each bench uses part of this module.
#![allow(dead_code)]

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;
use kube::api::{Api, PostParams};
use kube_sandbox::{EmbeddedKube, EmbeddedKubeConfig};
use quay_bridge_operator::crd::{LegacyQuayIntegration, QuayIntegration};
use quay_sandbox::{EmbeddedQuay, EmbeddedQuayConfig};
use serde_json::json;
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
