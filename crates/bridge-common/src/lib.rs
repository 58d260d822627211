//! What the operator and both sandboxes really share: the HTTP(S) server
//! plumbing with its TLS helpers, a secret string that never prints, and
//! random identifiers and small encodings.

pub mod encoding;
pub mod net;
pub mod random;
pub mod secret;

/// Installs rustls' ring provider as the process default. Call it first in
/// `main` and in every test that makes TLS or HTTP clients; repeated calls
/// are harmless.
pub fn install_crypto_provider() {
    // Err only means a provider is installed already.
    let _ = rustls::crypto::ring::default_provider().install_default();
}
