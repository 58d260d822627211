//! Certificates made at run time (a private CA and server certificates it
//! signs) and rustls server configurations.

use super::NetError;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::sync::Arc;

/// A certificate authority held in memory.
pub struct CertificateAuthority {
    issuer: rcgen::Issuer<'static, KeyPair>,
    cert_pem: String,
}

impl std::fmt::Debug for CertificateAuthority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertificateAuthority")
            .finish_non_exhaustive()
    }
}

/// A certificate and its private key, PEM encoded.
#[derive(Clone)]
pub struct CertifiedKeyPem {
    /// Certificate chain (leaf first).
    pub cert_pem: String,
    /// Private key.
    pub key_pem: crate::secret::SecretString,
}

impl std::fmt::Debug for CertifiedKeyPem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertifiedKeyPem")
            .field("key_pem", &self.key_pem)
            .finish_non_exhaustive()
    }
}

fn tls_err(e: impl std::fmt::Display) -> NetError {
    NetError::Tls(e.to_string())
}

fn ca_params(common_name: &str) -> Result<CertificateParams, NetError> {
    let mut params = CertificateParams::new(Vec::<String>::new()).map_err(tls_err)?;
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    Ok(params)
}

impl CertificateAuthority {
    /// A new CA with a fresh key (rcgen's default validity).
    pub fn new(common_name: &str) -> Result<Self, NetError> {
        let params = ca_params(common_name)?;
        let key = KeyPair::generate().map_err(tls_err)?;
        let cert_pem = params.self_signed(&key).map_err(tls_err)?.pem();
        Ok(Self {
            issuer: rcgen::Issuer::new(params, key),
            cert_pem,
        })
    }

    /// A CA with a fresh key, valid for `validity` from now.
    pub fn with_validity(
        common_name: &str,
        validity: std::time::Duration,
    ) -> Result<Self, NetError> {
        let mut params = ca_params(common_name)?;
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::minutes(5);
        params.not_after = now + validity;
        let key = KeyPair::generate().map_err(tls_err)?;
        let cert_pem = params.self_signed(&key).map_err(tls_err)?.pem();
        Ok(Self {
            issuer: rcgen::Issuer::new(params, key),
            cert_pem,
        })
    }

    /// A CA made by [`Self::with_validity`] with this `common_name`, loaded
    /// back from its PEM certificate and key (as kept in a Secret). The
    /// issuer is rebuilt from the same subject and key, so what it signs
    /// chains to the stored certificate.
    pub fn from_pem(common_name: &str, cert_pem: &str, key_pem: &str) -> Result<Self, NetError> {
        let key = KeyPair::from_pem(key_pem).map_err(tls_err)?;
        Ok(Self {
            issuer: rcgen::Issuer::new(ca_params(common_name)?, key),
            cert_pem: cert_pem.to_owned(),
        })
    }

    /// The CA's private key, PEM encoded.
    pub fn key_pem(&self) -> crate::secret::SecretString {
        crate::secret::SecretString::new(self.issuer.key().serialize_pem())
    }

    /// Signs a server certificate valid for `validity` from now.
    pub fn issue_server_for(
        &self,
        names: &[&str],
        validity: std::time::Duration,
    ) -> Result<CertifiedKeyPem, NetError> {
        self.issue(names, Some(validity))
    }

    /// Signs a server certificate for the given DNS names and IP addresses
    /// (rcgen's default validity).
    pub fn issue_server(&self, names: &[&str]) -> Result<CertifiedKeyPem, NetError> {
        self.issue(names, None)
    }

    fn issue(
        &self,
        names: &[&str],
        validity: Option<std::time::Duration>,
    ) -> Result<CertifiedKeyPem, NetError> {
        let sans: Vec<String> = names.iter().map(|s| (*s).to_owned()).collect();
        let mut params = CertificateParams::new(sans).map_err(tls_err)?;
        if let Some(first) = names.first() {
            params.distinguished_name.push(DnType::CommonName, *first);
        }
        params.is_ca = IsCa::NoCa;
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        if let Some(validity) = validity {
            let now = time::OffsetDateTime::now_utc();
            params.not_before = now - time::Duration::minutes(5);
            params.not_after = now + validity;
        }
        let key = KeyPair::generate().map_err(tls_err)?;
        let cert = params.signed_by(&key, &self.issuer).map_err(tls_err)?;
        Ok(CertifiedKeyPem {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem().into(),
        })
    }

    /// The CA certificate, PEM encoded (what a client trusts, or a webhook
    /// configuration's `caBundle` after base64).
    pub fn cert_pem(&self) -> String {
        self.cert_pem.clone()
    }
}

/// A rustls server configuration from PEM certificate chain and key.
pub fn server_config(
    cert_pem: &[u8],
    key_pem: &[u8],
) -> Result<Arc<rustls::ServerConfig>, NetError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| NetError::Tls(format!("certificate PEM: {e}")))?;
    if certs.is_empty() {
        return Err(NetError::Tls("no certificate in PEM".into()));
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem)
        .map_err(|e| NetError::Tls(format!("private key PEM: {e}")))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(tls_err)?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(tls_err)?;
    Ok(Arc::new(config))
}

/// A server configuration from a [`CertifiedKeyPem`].
pub fn server_config_from(pair: &CertifiedKeyPem) -> Result<Arc<rustls::ServerConfig>, NetError> {
    server_config(pair.cert_pem.as_bytes(), pair.key_pem.expose().as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::client::danger::ServerCertVerifier;

    #[test]
    fn ca_issues_loadable_server_certs() {
        crate::install_crypto_provider();
        let ca = CertificateAuthority::new("test CA").unwrap();
        assert!(ca.cert_pem().starts_with("-----BEGIN CERTIFICATE-----"));
        let pair = ca.issue_server(&["localhost", "127.0.0.1"]).unwrap();
        assert!(server_config_from(&pair).is_ok());
        assert!(!format!("{pair:?}").contains("PRIVATE KEY"));
        // A CA loaded back from its PEM signs certificates that chain to it.
        let ca =
            CertificateAuthority::with_validity("webhook CA", std::time::Duration::from_secs(3600))
                .unwrap();
        let again =
            CertificateAuthority::from_pem("webhook CA", &ca.cert_pem(), ca.key_pem().expose())
                .unwrap();
        assert_eq!(again.cert_pem(), ca.cert_pem());
        let pair = again
            .issue_server_for(&["svc.ns.svc"], std::time::Duration::from_secs(60))
            .unwrap();
        let roots = {
            let mut r = rustls::RootCertStore::empty();
            for c in CertificateDer::pem_slice_iter(ca.cert_pem().as_bytes()) {
                r.add(c.unwrap()).unwrap();
            }
            r
        };
        let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
            std::sync::Arc::new(roots),
            std::sync::Arc::new(rustls::crypto::ring::default_provider()),
        )
        .build()
        .unwrap();
        let leaf = CertificateDer::from_pem_slice(pair.cert_pem.as_bytes()).unwrap();
        let name = rustls_pki_types::ServerName::try_from("svc.ns.svc").unwrap();
        verifier
            .verify_server_cert(&leaf, &[], &name, &[], rustls_pki_types::UnixTime::now())
            .unwrap();
        assert!(server_config(b"junk", b"junk").is_err());
    }
}
