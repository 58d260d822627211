//! Quay Bridge Operator: OpenShift namespaces, ImageStreams and Builds bridged
//! to Red Hat Quay.

pub mod admin;
pub mod backoff;
pub mod cli;
pub mod config;
pub mod controller;
pub mod crd;
pub mod leader;
pub mod model;
pub mod openshift;
pub mod plan;
pub mod quay;
pub mod telemetry;
pub mod webhook;

pub use bridge_common::{install_crypto_provider, net, secret};

/// The `User-Agent` of every request the operator sends, to Kubernetes and
/// to Quay, so audit logs and Quay's logs show who called.
pub const USER_AGENT: &str = concat!("quay-bridge-operator/", env!("CARGO_PKG_VERSION"));

/// A Kubernetes client from `config` that says who it is.
pub fn kube_client(mut config: kube::Config) -> Result<kube::Client, kube::Error> {
    config.headers.push((
        http::header::USER_AGENT,
        http::HeaderValue::from_static(USER_AGENT),
    ));
    kube::Client::try_from(config)
}
