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
