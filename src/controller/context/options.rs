//! The operator's settings.

use crate::quay::RetryPolicy;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The settings `run` and `sandbox` take from the command line;
/// [`Options::default`] is what the flags default to.
#[derive(Debug, Clone)]
pub struct Options {
    /// Namespaces reconciled at once.
    pub concurrency: u16,
    /// Periodic resync of a converged namespace against Quay.
    pub resync: Duration,
    /// How often QuayIntegration status is refreshed.
    pub status_interval: Duration,
    /// How often a down Quay is probed.
    pub probe_interval: Duration,
    /// Longest backoff of a failing namespace.
    pub max_backoff: Duration,
    /// How long a TCP and TLS connect to Quay may take.
    pub quay_connect_timeout: Duration,
    /// How long one Quay request may take, answer included.
    pub quay_request_timeout: Duration,
    /// Which Quay failures are retried, how often, and how long apart.
    pub retry: RetryPolicy,
    /// This replica's name (Events' reporting instance).
    pub instance: String,
    /// Serve the Build admission webhook.
    pub webhook: Option<WebhookOptions>,
    /// Elect a leader among replicas (`None`: this replica always leads).
    pub leader_election: Option<crate::leader::LeaseSettings>,
    /// Set once the caches are synced (and the webhook serves): `/readyz`.
    pub ready: Arc<std::sync::atomic::AtomicBool>,
    /// Why this replica cannot campaign for leadership, while it cannot:
    /// `/readyz` answers 503 with it.
    pub campaign_problem: Arc<Mutex<Option<String>>>,
}

/// Where and how the webhook serves.
#[derive(Debug, Clone)]
pub struct WebhookOptions {
    /// HTTPS listen address (port 0: any free port, see `serving`).
    pub listen: String,
    /// Where its serving certificate comes from.
    pub certificates: CertSource,
    /// The address the webhook serves on, once it does (what a sandbox
    /// registers as the webhook Service's endpoint).
    pub serving: Arc<tokio::sync::watch::Sender<Option<std::net::SocketAddr>>>,
}

impl WebhookOptions {
    /// Serves on `listen` with `certificates`.
    pub fn new(listen: impl Into<String>, certificates: CertSource) -> Self {
        Self {
            listen: listen.into(),
            certificates,
            serving: Arc::new(tokio::sync::watch::channel(None).0),
        }
    }

    /// Waits until the webhook serves; its address.
    pub async fn serving_at(&self) -> Option<std::net::SocketAddr> {
        let mut rx = self.serving.subscribe();
        rx.wait_for(Option::is_some).await.ok().and_then(|a| *a)
    }
}

/// Where the webhook's serving certificate comes from.
#[derive(Debug, Clone)]
pub enum CertSource {
    /// Files: `tls.crt`/`tls.key` (a Secret volume, OpenShift's service CA)
    /// or OLM's `apiserver.crt`/`apiserver.key`, reloaded when they change.
    Files {
        /// Where the certificate and key are mounted.
        dir: std::path::PathBuf,
        /// How often the files are checked.
        reload_interval: Duration,
    },
    /// Made and rotated by the operator, kept in a Secret, its CA injected
    /// into the MutatingWebhookConfiguration.
    SelfManaged(crate::webhook::selfmanaged::SelfManaged),
}

impl Default for Options {
    fn default() -> Self {
        Self {
            concurrency: 16,
            resync: Duration::from_secs(600),
            status_interval: Duration::from_secs(5),
            probe_interval: Duration::from_secs(1),
            max_backoff: Duration::from_secs(60),
            quay_connect_timeout: Duration::from_secs(5),
            quay_request_timeout: Duration::from_secs(30),
            retry: RetryPolicy::default(),
            instance: "quay-bridge-operator".into(),
            webhook: None,
            leader_election: None,
            ready: Arc::default(),
            campaign_problem: Arc::default(),
        }
    }
}
