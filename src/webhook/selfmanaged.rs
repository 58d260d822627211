//! Self-managed webhook certificates, for clusters without a service CA or
//! OLM: a CA and a serving certificate for the webhook Service are kept in
//! a Secret, the CA is injected into the MutatingWebhookConfiguration, and
//! both are renewed before they expire.

use super::tls::Reloading;
use crate::net::tls::CertificateAuthority;
use base64::Engine;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DynamicObject, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The CA's subject; a CA loaded back from the Secret is rebuilt with it.
pub const CA_NAME: &str = "quay-bridge-operator webhook CA";
const CA_NOT_AFTER: &str = "quay.redhat.com/ca-not-after";
const CERT_NOT_AFTER: &str = "quay.redhat.com/serving-cert-not-after";

/// Where the certificates live and how long they last.
#[derive(Debug, Clone)]
pub struct SelfManaged {
    /// The operator's namespace (Service and Secret).
    pub namespace: String,
    /// The webhook Service name.
    pub service: String,
    /// The Secret holding `ca.crt`, `ca.key`, `tls.crt`, `tls.key`.
    pub secret: String,
    /// The MutatingWebhookConfiguration whose `caBundle` is kept current.
    pub webhook_configuration: String,
    /// CA lifetime.
    pub ca_validity: Duration,
    /// Serving certificate lifetime.
    pub cert_validity: Duration,
    /// Renew when less than this is left.
    pub renew_before: Duration,
    /// How often expiry is checked.
    pub check_interval: Duration,
}

impl SelfManaged {
    /// Defaults: CA 10 years, serving certificate 1 year, renewed 30 days
    /// before expiry, checked hourly.
    pub fn new(namespace: &str, service: &str, secret: &str, webhook_configuration: &str) -> Self {
        Self {
            namespace: namespace.into(),
            service: service.into(),
            secret: secret.into(),
            webhook_configuration: webhook_configuration.into(),
            ca_validity: Duration::from_secs(10 * 365 * 86_400),
            cert_validity: Duration::from_secs(365 * 86_400),
            renew_before: Duration::from_secs(30 * 86_400),
            check_interval: Duration::from_secs(3600),
        }
    }
}

/// Failures of certificate management.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    /// The API server failed.
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// A certificate could not be made or loaded.
    #[error(transparent)]
    Tls(#[from] crate::net::NetError),
}

/// The serving pair and the CA bundle to publish.
#[derive(Debug, Clone)]
pub struct Current {
    /// Serving certificate (PEM).
    pub cert_pem: String,
    /// Its key (PEM).
    pub key_pem: crate::secret::SecretString,
    /// CA bundle (PEM) for `caBundle`.
    pub ca_bundle: String,
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn text(data: &BTreeMap<String, ByteString>, key: &str) -> Option<String> {
    data.get(key)
        .map(|b| String::from_utf8_lossy(&b.0).into_owned())
}

fn fresh(annotations: &BTreeMap<String, String>, key: &str, renew_before: Duration) -> bool {
    annotations
        .get(key)
        .and_then(|v| v.parse::<u64>().ok())
        .is_some_and(|t| t > now() + renew_before.as_secs())
}

/// How many times a replica reads the Secret again after another replica
/// wrote it first.
const ENSURE_ATTEMPTS: usize = 5;

/// Makes sure the Secret holds a CA and a serving certificate that are not
/// due for renewal, and that the webhook configuration trusts the CA.
/// Replicas starting together race to write the Secret: the loser (a 409)
/// reads the winner's and uses it.
pub async fn ensure(client: &Client, cfg: &SelfManaged) -> Result<Current, CertError> {
    let mut attempt = 1;
    loop {
        match ensure_once(client, cfg).await {
            Err(CertError::Kube(kube::Error::Api(s)))
                if s.code == 409 && attempt < ENSURE_ATTEMPTS =>
            {
                tracing::debug!(secret = %cfg.secret, "another replica wrote the webhook certificate first; reading it");
                attempt += 1;
            }
            other => return other,
        }
    }
}

async fn ensure_once(client: &Client, cfg: &SelfManaged) -> Result<Current, CertError> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &cfg.namespace);
    let existing = secrets.get_opt(&cfg.secret).await?;
    let data = existing
        .as_ref()
        .and_then(|s| s.data.clone())
        .unwrap_or_default();
    let annotations = existing
        .as_ref()
        .map(|s| s.annotations().clone())
        .unwrap_or_default();
    let mut changed = false;
    let old_ca = text(&data, "ca.crt");
    let ca = match (&old_ca, text(&data, "ca.key")) {
        (Some(cert), Some(key)) if fresh(&annotations, CA_NOT_AFTER, cfg.renew_before) => {
            CertificateAuthority::from_pem(CA_NAME, cert, &key)?
        }
        _ => {
            changed = true;
            CertificateAuthority::with_validity(CA_NAME, cfg.ca_validity)?
        }
    };
    let (cert_pem, key_pem) = match (text(&data, "tls.crt"), text(&data, "tls.key")) {
        (Some(c), Some(k)) if !changed && fresh(&annotations, CERT_NOT_AFTER, cfg.renew_before) => {
            (c, crate::secret::SecretString::new(k))
        }
        _ => {
            changed = true;
            issue_serving(&ca, cfg)?
        }
    };
    // During a CA rotation the old CA stays trusted next to the new one.
    let mut ca_bundle = ca.cert_pem();
    if let Some(old) =
        old_ca.filter(|o| *o != ca.cert_pem() && fresh(&annotations, CA_NOT_AFTER, Duration::ZERO))
    {
        ca_bundle.push_str(&old);
    }
    if changed {
        let ca_after = if ca.cert_pem() == text(&data, "ca.crt").unwrap_or_default() {
            annotations.get(CA_NOT_AFTER).cloned().unwrap_or_default()
        } else {
            (now() + cfg.ca_validity.as_secs()).to_string()
        };
        let mut secret = tls_secret(cfg, &ca, &cert_pem, &key_pem, ca_after)?;
        match existing {
            Some(old) => {
                secret.metadata.resource_version = old.metadata.resource_version;
                secrets
                    .replace(&cfg.secret, &PostParams::default(), &secret)
                    .await?;
            }
            None => {
                secrets.create(&PostParams::default(), &secret).await?;
            }
        }
        tracing::info!(secret = %cfg.secret, "webhook serving certificate issued");
    }
    inject_ca(client, cfg, &ca_bundle).await?;
    Ok(Current {
        cert_pem,
        key_pem,
        ca_bundle,
    })
}

/// A serving certificate for the webhook Service's names, from `ca`.
fn issue_serving(
    ca: &CertificateAuthority,
    cfg: &SelfManaged,
) -> Result<(String, crate::secret::SecretString), CertError> {
    let svc = &cfg.service;
    let ns = &cfg.namespace;
    let names = [
        format!("{svc}.{ns}.svc"),
        format!("{svc}.{ns}.svc.cluster.local"),
        format!("{svc}.{ns}"),
        svc.clone(),
    ];
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let pair = ca.issue_server_for(&refs, cfg.cert_validity)?;
    Ok((pair.cert_pem, pair.key_pem))
}

/// The Secret holding the CA and the serving pair, with their expiries.
fn tls_secret(
    cfg: &SelfManaged,
    ca: &CertificateAuthority,
    cert_pem: &str,
    key_pem: &crate::secret::SecretString,
    ca_after: String,
) -> Result<Secret, CertError> {
    let mut secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": cfg.secret, "namespace": cfg.namespace,
            "labels": {crate::config::MANAGED_BY_LABEL: crate::config::MANAGED_BY},
            "annotations": {CA_NOT_AFTER: ca_after, CERT_NOT_AFTER: (now() + cfg.cert_validity.as_secs()).to_string()}},
        "type": "kubernetes.io/tls",
    }))
    .map_err(|e| crate::net::NetError::Tls(e.to_string()))?;
    secret.data = Some(
        [
            ("ca.crt".to_owned(), ByteString(ca.cert_pem().into_bytes())),
            (
                "ca.key".to_owned(),
                ByteString(ca.key_pem().expose().as_bytes().to_vec()),
            ),
            (
                "tls.crt".to_owned(),
                ByteString(cert_pem.as_bytes().to_vec()),
            ),
            (
                "tls.key".to_owned(),
                ByteString(key_pem.expose().as_bytes().to_vec()),
            ),
        ]
        .into(),
    );
    Ok(secret)
}

/// Sets `caBundle` of every webhook of the configuration that calls our
/// Service (when it differs).
async fn inject_ca(client: &Client, cfg: &SelfManaged, bundle: &str) -> Result<(), CertError> {
    let ar = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk(
            "admissionregistration.k8s.io",
            "v1",
            "MutatingWebhookConfiguration",
        ),
        "mutatingwebhookconfigurations",
    );
    let api: Api<DynamicObject> = Api::all_with(client.clone(), &ar);
    let Some(mut mwc) = api.get_opt(&cfg.webhook_configuration).await? else {
        tracing::debug!(name = %cfg.webhook_configuration, "webhook configuration not found; nothing to inject");
        return Ok(());
    };
    let encoded = base64::engine::general_purpose::STANDARD.encode(bundle);
    let mut touched = false;
    if let Some(hooks) = mwc.data.get_mut("webhooks").and_then(Value::as_array_mut) {
        for hook in hooks {
            let ours = hook
                .pointer("/clientConfig/service/name")
                .and_then(Value::as_str)
                == Some(cfg.service.as_str())
                && hook
                    .pointer("/clientConfig/service/namespace")
                    .and_then(Value::as_str)
                    == Some(cfg.namespace.as_str());
            if ours
                && hook
                    .pointer("/clientConfig/caBundle")
                    .and_then(Value::as_str)
                    != Some(encoded.as_str())
            {
                hook["clientConfig"]["caBundle"] = json!(encoded);
                touched = true;
            }
        }
    }
    if touched {
        api.replace(&cfg.webhook_configuration, &PostParams::default(), &mwc)
            .await?;
        tracing::info!(name = %cfg.webhook_configuration, "CA bundle injected into the webhook configuration");
    }
    Ok(())
}

/// Keeps certificates current: renews before expiry and swaps the served
/// pair in place.
pub async fn maintain(client: Client, cfg: SelfManaged, resolver: Arc<Reloading>) {
    loop {
        tokio::time::sleep(cfg.check_interval).await;
        match ensure(&client, &cfg).await {
            Ok(current) => match resolver.replace(
                current.cert_pem.as_bytes(),
                current.key_pem.expose().as_bytes(),
            ) {
                Ok(true) => tracing::info!("webhook serving certificate rotated"),
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "rotated certificate not loaded; keeping the current one")
                }
            },
            Err(e) => {
                tracing::warn!(error = %e, "webhook certificate check failed; retrying later")
            }
        }
    }
}
