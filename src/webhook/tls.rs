//! Serving certificates read from files and reloaded when they change
//! (polling: Secret volumes swap symlinks, which file events miss). A pair
//! that does not load leaves the previous one in service.

use crate::net::NetError;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// Builds a rustls key from PEM certificate chain and key.
pub fn certified_key(cert_pem: &[u8], key_pem: &[u8]) -> Result<CertifiedKey, NetError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| NetError::Tls(format!("certificate PEM: {e}")))?;
    if certs.is_empty() {
        return Err(NetError::Tls("no certificate in the PEM file".into()));
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem)
        .map_err(|e| NetError::Tls(format!("private key PEM: {e}")))?;
    let signing = rustls::crypto::ring::sign::any_supported_type(&key)
        .map_err(|e| NetError::Tls(format!("private key: {e}")))?;
    let ck = CertifiedKey::new(certs, signing);
    ck.keys_match()
        .map_err(|e| NetError::Tls(format!("certificate and key do not match: {e}")))?;
    Ok(ck)
}

/// Where the serving certificate is: `tls.crt`/`tls.key` (a Secret
/// volume, OpenShift's service CA) or `apiserver.crt`/`apiserver.key`
/// (OLM's webhook certificates) in `dir`.
pub fn cert_files(dir: &Path) -> (PathBuf, PathBuf) {
    let tls = (dir.join("tls.crt"), dir.join("tls.key"));
    if tls.0.exists() {
        tls
    } else {
        (dir.join("apiserver.crt"), dir.join("apiserver.key"))
    }
}

/// A certificate resolver that a polling task keeps current. Its Debug
/// output names the files, never the key.
pub struct Reloading {
    current: RwLock<Arc<CertifiedKey>>,
    files: Option<(PathBuf, PathBuf)>,
    loaded: RwLock<(Vec<u8>, Vec<u8>)>,
}

impl std::fmt::Debug for Reloading {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reloading")
            .field("files", &self.files)
            .finish_non_exhaustive()
    }
}

impl ResolvesServerCert for Reloading {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.current
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone(),
        )
    }
}

impl Reloading {
    /// Loads the pair once; fails fast at startup when it cannot.
    pub fn load(cert: PathBuf, key: PathBuf) -> Result<Arc<Self>, NetError> {
        let cert_pem =
            std::fs::read(&cert).map_err(|e| NetError::Tls(format!("{}: {e}", cert.display())))?;
        let key_pem =
            std::fs::read(&key).map_err(|e| NetError::Tls(format!("{}: {e}", key.display())))?;
        let ck = certified_key(&cert_pem, &key_pem)?;
        Ok(Arc::new(Self {
            current: RwLock::new(Arc::new(ck)),
            files: Some((cert, key)),
            loaded: RwLock::new((cert_pem, key_pem)),
        }))
    }

    /// Serves a pair held in memory (self-managed certificates).
    pub fn from_pem(cert_pem: &[u8], key_pem: &[u8]) -> Result<Arc<Self>, NetError> {
        let ck = certified_key(cert_pem, key_pem)?;
        Ok(Arc::new(Self {
            current: RwLock::new(Arc::new(ck)),
            files: None,
            loaded: RwLock::new((cert_pem.to_vec(), key_pem.to_vec())),
        }))
    }

    /// Swaps in a new pair; on error the current one stays.
    pub fn replace(&self, cert_pem: &[u8], key_pem: &[u8]) -> Result<bool, NetError> {
        if *self
            .loaded
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            == (cert_pem.to_vec(), key_pem.to_vec())
        {
            return Ok(false);
        }
        let ck = certified_key(cert_pem, key_pem)?;
        *self
            .current
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(ck);
        *self
            .loaded
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) =
            (cert_pem.to_vec(), key_pem.to_vec());
        Ok(true)
    }

    /// Reads the files again; swaps in a changed pair that loads. Returns
    /// whether the certificate changed.
    pub fn reload(&self) -> bool {
        let Some((cert, key)) = &self.files else {
            return false;
        };
        let (Ok(cert_pem), Ok(key_pem)) = (std::fs::read(cert), std::fs::read(key)) else {
            return false;
        };
        if *self
            .loaded
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            == (cert_pem.clone(), key_pem.clone())
        {
            return false;
        }
        match certified_key(&cert_pem, &key_pem) {
            Ok(ck) => {
                *self
                    .current
                    .write()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(ck);
                *self
                    .loaded
                    .write()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = (cert_pem, key_pem);
                tracing::info!(cert = %cert.display(), "webhook certificate reloaded");
                true
            }
            Err(e) => {
                // Often a half-written pair: keep serving the old one.
                tracing::warn!(error = %e, "new webhook certificate not loaded; keeping the current one");
                false
            }
        }
    }

    /// Polls the files every `interval` until the process ends.
    pub async fn watch(self: Arc<Self>, interval: Duration) {
        loop {
            tokio::time::sleep(interval).await;
            self.reload();
        }
    }

    /// A rustls server configuration serving through this resolver.
    pub fn server_config(self: &Arc<Self>) -> Result<Arc<rustls::ServerConfig>, NetError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| NetError::Tls(e.to_string()))?
            .with_no_client_auth()
            .with_cert_resolver(self.clone());
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }
}
