//! Access to Quay: one client per Quay (rebuilt when its credentials or
//! trust change), the token from its Secret, and the health gate that stops
//! calls while Quay is down and a probe that sees it come back.

use crate::config::{IntegrationConfig, SecretKeyRef};
use crate::controller::error::Error;
use crate::crd::CaBundleKind;
use crate::quay::{QuayClient, QuayClientConfig};
use crate::secret::SecretString;
use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::Api;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{WatchStreamExt, reflector, watcher};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::{Metrics, Options, Resync, Term, lock};

struct Health {
    down: bool,
    client: QuayClient,
}

/// How the operator reaches each Quay: one client per Quay and
/// credentials (see the module), the credentials Secrets' watches, and
/// whether each Quay is believed down.
pub(crate) struct QuayAccess {
    kube: kube::Client,
    connect_timeout: Duration,
    request_timeout: Duration,
    retry: crate::quay::RetryPolicy,
    metrics: Metrics,
    /// Owns the credential watches.
    term: Arc<Term>,
    /// Pulled when a watched credentials Secret changes.
    resync: Arc<Resync>,
    credentials: Mutex<HashMap<(String, String), reflector::Store<Secret>>>,
    clients: Mutex<HashMap<String, QuayClient>>,
    health: Mutex<HashMap<String, Health>>,
}

impl QuayAccess {
    /// No client yet; `options` gives the clients' deadlines and retries.
    pub fn new(
        kube: kube::Client,
        options: &Options,
        metrics: Metrics,
        term: Arc<Term>,
        resync: Arc<Resync>,
    ) -> Self {
        Self {
            kube,
            connect_timeout: options.quay_connect_timeout,
            request_timeout: options.quay_request_timeout,
            retry: options.retry.clone(),
            metrics,
            term,
            resync,
            credentials: Mutex::default(),
            clients: Mutex::default(),
            health: Mutex::default(),
        }
    }

    /// Stops using the credential watches (the term that ran them ended).
    pub fn forget_credentials(&self) {
        lock(&self.credentials).clear();
    }

    /// Watches the credentials Secret so a changed token reaches every
    /// namespace at once.
    pub(crate) fn watch_credentials(&self, namespace: &str, name: &str) {
        let key = (namespace.to_owned(), name.to_owned());
        let mut watched = lock(&self.credentials);
        if watched.contains_key(&key) {
            return;
        }
        let (reader, writer) = reflector::store();
        let api: Api<Secret> = Api::namespaced(self.kube.clone(), namespace);
        let stream = reflector(
            writer,
            watcher(
                api,
                watcher::Config::default().fields(&format!("metadata.name={name}")),
            ),
        )
        .default_backoff()
        .touched_objects();
        let resync = Arc::downgrade(&self.resync);
        self.term.spawn(async move {
            let mut stream = std::pin::pin!(stream);
            let mut first = true;
            while let Some(event) = stream.next().await {
                let Some(resync) = resync.upgrade() else {
                    return;
                };
                if event.is_ok() && !first {
                    resync.all();
                }
                first = false;
            }
        });
        watched.insert(key, reader);
    }

    /// The Quay token in the credentials Secret `creds` names: from its
    /// watch once one runs, else read from the apiserver.
    pub(crate) async fn token(&self, creds: &SecretKeyRef) -> Result<SecretString, Error> {
        let Some(secret) = self.credentials_secret(creds).await? else {
            return Err(Error::Credentials(format!(
                "Secret {}/{} not found",
                creds.namespace, creds.name
            )));
        };
        let value = secret
            .data
            .as_ref()
            .and_then(|d| d.get(&creds.key))
            .map(|b| String::from_utf8_lossy(&b.0).trim().to_owned());
        match value {
            Some(v) if !v.is_empty() => Ok(SecretString::new(v)),
            _ => Err(Error::Credentials(format!(
                "Secret {}/{} has no key {:?}",
                creds.namespace, creds.name, creds.key
            ))),
        }
    }

    /// The credentials Secret, from its watch or (not watched yet, or not
    /// there) the API server.
    pub(crate) async fn credentials_secret(
        &self,
        creds: &SecretKeyRef,
    ) -> Result<Option<Arc<Secret>>, Error> {
        let cached = lock(&self.credentials)
            .get(&(creds.namespace.clone(), creds.name.clone()))
            .cloned();
        let from_cache = cached
            .and_then(|store| store.get(&ObjectRef::new(&creds.name).within(&creds.namespace)));
        Ok(match from_cache {
            Some(s) => Some(s),
            None => Api::<Secret>::namespaced(self.kube.clone(), &creds.namespace)
                .get_opt(&creds.name)
                .await?
                .map(Arc::new),
        })
    }

    async fn ca_bundle(&self, cfg: &IntegrationConfig) -> Result<Option<Vec<u8>>, Error> {
        let Some(r) = &cfg.ca_bundle else {
            return Ok(None);
        };
        let pem = match r.kind {
            CaBundleKind::ConfigMap => {
                Api::<ConfigMap>::namespaced(self.kube.clone(), &r.namespace)
                    .get_opt(&r.name)
                    .await?
                    .and_then(|c| c.data.and_then(|d| d.get(&r.key).cloned()))
                    .map(String::into_bytes)
            }
            CaBundleKind::Secret => Api::<Secret>::namespaced(self.kube.clone(), &r.namespace)
                .get_opt(&r.name)
                .await?
                .and_then(|s| s.data.and_then(|d| d.get(&r.key).map(|b| b.0.clone()))),
        };
        pem.map(Some).ok_or_else(|| {
            Error::Config(format!(
                "CA bundle {}/{} key {:?} not found",
                r.namespace, r.name, r.key
            ))
        })
    }

    /// The Quay client of an integration (shared pool, rebuilt when the
    /// token or TLS settings change). Fails fast while Quay is down.
    pub async fn client(&self, cfg: &IntegrationConfig) -> Result<QuayClient, Error> {
        let url = cfg.quay_url.to_string();
        if lock(&self.health).get(&url).is_some_and(|h| h.down) {
            return Err(Error::QuayDown(url));
        }
        let token = self.token(&cfg.credentials).await?;
        let key = format!(
            "{url}|{}|{}|{:?}|{:x}",
            cfg.insecure_tls,
            cfg.credentials.key,
            cfg.ca_bundle,
            token_fingerprint(&token)
        );
        if let Some(c) = lock(&self.clients).get(&key) {
            return Ok(c.clone());
        }
        let client = self.with_token(cfg, token).await?;
        // Available until a call says otherwise.
        self.metrics.set_quay_available(&url, true);
        lock(&self.clients).insert(key, client.clone());
        Ok(client)
    }

    /// A client of an integration's Quay with this token (an empty one for
    /// anonymous calls such as sign-in), not shared.
    pub(crate) async fn with_token(
        &self,
        cfg: &IntegrationConfig,
        token: SecretString,
    ) -> Result<QuayClient, Error> {
        let mut config = QuayClientConfig::new(cfg.quay_url.to_string(), token);
        config.insecure = cfg.insecure_tls;
        config.ca_bundle_pem = self.ca_bundle(cfg).await?;
        config.connect_timeout = self.connect_timeout;
        config.request_timeout = self.request_timeout;
        config.retry = self.retry.clone();
        Ok(QuayClient::new(config, self.metrics.quay.clone())?)
    }

    /// Records that a Quay call failed because Quay seems down: namespaces
    /// stop calling it until the probe sees it back.
    pub fn failed(&self, cfg: &IntegrationConfig, client: &QuayClient) {
        let url = cfg.quay_url.to_string();
        let mut health = lock(&self.health);
        let entry = health.entry(url.clone()).or_insert_with(|| Health {
            down: false,
            client: client.clone(),
        });
        if !entry.down {
            tracing::warn!(quay = %url, "Quay is unavailable; pausing calls until it answers again");
        }
        entry.down = true;
        entry.client = client.clone();
        self.metrics.set_quay_available(&url, false);
    }

    /// Whether Quay is believed down.
    pub fn is_down(&self, cfg: &IntegrationConfig) -> bool {
        lock(&self.health)
            .get(&cfg.quay_url.to_string())
            .is_some_and(|h| h.down)
    }

    /// Probes every Quay believed down; whether one answered (it is back:
    /// the caller resets the backoff and reconciles everything).
    pub async fn probe(&self) -> bool {
        let down: Vec<(String, QuayClient)> = lock(&self.health)
            .iter()
            .filter(|(_, h)| h.down)
            .map(|(u, h)| (u.clone(), h.client.clone()))
            .collect();
        let mut recovered = false;
        for (url, client) in down {
            let answered = match client.current_user().await {
                Ok(_) => true,
                Err(e) => !matches!(
                    e.category(),
                    crate::quay::Category::Unavailable | crate::quay::Category::RateLimited
                ),
            };
            if answered {
                tracing::info!(quay = %url, "Quay answers again");
                if let Some(h) = lock(&self.health).get_mut(&url) {
                    h.down = false;
                }
                self.metrics.set_quay_available(&url, true);
                recovered = true;
            }
        }
        recovered
    }
}

pub(crate) fn token_fingerprint(token: &SecretString) -> u64 {
    // Not a secret: a key to notice the token changed.
    let d = ring::digest::digest(&ring::digest::SHA256, token.expose().as_bytes());
    let mut b = [0u8; 8];
    b.copy_from_slice(&d.as_ref()[..8]);
    u64::from_le_bytes(b)
}
