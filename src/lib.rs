//! Quay Bridge Operator: OpenShift namespaces, ImageStreams and Builds bridged
//! to Red Hat Quay.

pub mod admin;
pub mod cli;
pub mod config;
pub mod controller;
pub mod crd;
pub mod leader;
pub mod net;
pub mod openshift;
pub mod plan;
pub mod quay;
#[cfg(feature = "sandbox")]
pub mod sandbox;
pub mod secret;
pub mod telemetry;
pub mod webhook;

/// Installs rustls' ring provider as the process default. Call it first in
/// `main` and in every test that makes TLS or HTTP clients; repeated calls
/// are harmless.
pub fn install_crypto_provider() {
    // Err only means a provider is installed already.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

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
