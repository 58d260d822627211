//! What every reconcile shares: the client, caches, Quay clients, the
//! Quay health gate, per-namespace outcomes and backoff, Events, metrics.

use super::error::Error;
use crate::config::{IntegrationConfig, IntegrationId, SecretKeyRef, from_current, from_legacy};
use crate::crd::{CaBundleKind, LegacyQuayIntegration, QuayIntegration};
use crate::plan::namespace::QuayView;
use crate::quay::{QuayClient, QuayClientConfig, QuayMetrics, RetryPolicy};
use crate::secret::SecretString;
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret, ServiceAccount};
use kube::api::Api;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Client, Resource, ResourceExt};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use rand::Rng;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Operator settings.
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
    /// Quay connect timeout.
    pub quay_connect_timeout: Duration,
    /// Quay request timeout.
    pub quay_request_timeout: Duration,
    /// Quay retry policy.
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
        /// The directory.
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

/// The last outcome of a namespace.
#[derive(Debug, Clone, PartialEq)]
pub enum NsState {
    /// Bridged without error.
    Managed,
    /// The last reconcile failed.
    Failing(String),
    /// Left alone because of a conflict (several integrations, a foreign
    /// organization, another cluster with the same clusterID).
    Conflict(String),
}

/// A namespace's outcome and which integration it belongs to.
#[derive(Debug, Clone, PartialEq)]
pub struct NsOutcome {
    /// The integrations concerned (several for a conflict between them).
    pub integrations: Vec<IntegrationId>,
    /// What happened.
    pub state: NsState,
}

/// The result of checking a token against Quay.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct TokenCheck {
    pub creds_ok: bool,
    pub creds_reason: &'static str,
    pub creds_msg: String,
    pub reachable: bool,
    pub reach_reason: &'static str,
    pub reach_msg: String,
}

pub(crate) struct CachedView {
    pub org: String,
    pub view: QuayView,
    pub fetched: Instant,
    pub generation: Option<i64>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReconcileLabels {
    controller: &'static str,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FailureLabels {
    controller: &'static str,
    category: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct InFlightLabels {
    controller: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NamespaceLabels {
    state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct QuayLabels {
    quay: String,
}

/// Operator metrics.
#[derive(Clone, Debug, Default)]
pub struct Metrics {
    reconciles: Family<ReconcileLabels, Counter>,
    failures: Family<FailureLabels, Counter>,
    leader: Gauge,
    campaign_blocked: Gauge,
    quay_available: Family<QuayLabels, Gauge>,
    in_flight: Family<InFlightLabels, Gauge>,
    queue_depth: Family<InFlightLabels, Gauge>,
    namespaces: Family<NamespaceLabels, Gauge>,
    /// Quay client metrics.
    pub quay: QuayMetrics,
    /// Webhook metrics.
    pub webhook: crate::webhook::server::WebhookMetrics,
}

impl Metrics {
    /// Registers every series.
    pub fn register(registry: &mut prometheus_client::registry::Registry) -> Self {
        let m = Self {
            quay: QuayMetrics::register(registry),
            webhook: crate::webhook::server::WebhookMetrics::register(registry),
            ..Self::default()
        };
        registry.register(
            "reconcile_queue_depth",
            "Objects triggered (by a watch event, a resync or a changed integration) and waiting for their reconcile to start, by controller",
            m.queue_depth.clone(),
        );
        registry.register(
            "reconciles",
            "Reconciles by controller and result",
            m.reconciles.clone(),
        );
        registry.register(
            "reconcile_failures",
            "Failed reconciles by controller and error category",
            m.failures.clone(),
        );
        registry.register(
            "leader",
            "1 while this replica holds the leader Lease and runs the reconcilers",
            m.leader.clone(),
        );
        registry.register(
            "leader_election_blocked",
            "1 while this replica cannot campaign for leadership (Lease namespace missing, RBAC refusing): it reconciles nothing",
            m.campaign_blocked.clone(),
        );
        registry.register(
            "quay_available",
            "0 while calls to a Quay (by host) are paused because it does not answer",
            m.quay_available.clone(),
        );
        registry.register(
            "reconciles_in_flight",
            "Reconciles running now, by controller",
            m.in_flight.clone(),
        );
        registry.register(
            "namespaces",
            "Selected namespaces by last outcome (managed, failing: waiting for a retry, conflict)",
            m.namespaces.clone(),
        );
        m
    }

    /// Counts a reconcile as running until the guard is dropped.
    pub fn in_flight(&self, controller: &'static str) -> InFlight {
        let gauge = self
            .in_flight
            .get_or_create(&InFlightLabels { controller })
            .clone();
        gauge.inc();
        InFlight(gauge)
    }

    /// Sets the number of objects waiting for a reconcile.
    pub fn set_queue_depth(&self, controller: &'static str, depth: usize) {
        self.queue_depth
            .get_or_create(&InFlightLabels { controller })
            .set(i64::try_from(depth).unwrap_or(i64::MAX));
    }

    /// The number of objects waiting for a reconcile.
    pub fn queue_depth(&self, controller: &'static str) -> i64 {
        self.queue_depth
            .get_or_create(&InFlightLabels { controller })
            .get()
    }

    /// Namespaces managed, failing and in conflict.
    pub fn namespace_states(&self, managed: i64, failing: i64, conflict: i64) {
        for (state, n) in [
            ("managed", managed),
            ("failing", failing),
            ("conflict", conflict),
        ] {
            self.namespaces
                .get_or_create(&NamespaceLabels { state })
                .set(n);
        }
    }

    /// The `namespaces{state}` value.
    pub fn namespaces_in(&self, state: &'static str) -> i64 {
        self.namespaces
            .get_or_create(&NamespaceLabels { state })
            .get()
    }

    /// Records whether this replica leads.
    pub fn set_leader(&self, leading: bool) {
        self.leader.set(i64::from(leading));
    }

    /// Whether this replica leads (as last reported).
    pub fn is_leader(&self) -> bool {
        self.leader.get() == 1
    }

    /// Records whether this replica cannot campaign.
    pub fn set_campaign_blocked(&self, blocked: bool) {
        self.campaign_blocked.set(i64::from(blocked));
    }

    /// Whether this replica cannot campaign (as last reported).
    pub fn is_campaign_blocked(&self) -> bool {
        self.campaign_blocked.get() == 1
    }

    /// Records whether a Quay answers (labelled by host only).
    pub fn set_quay_available(&self, url: &str, up: bool) {
        self.quay_available
            .get_or_create(&QuayLabels {
                quay: quay_host(url),
            })
            .set(i64::from(up));
    }

    /// The `quay_available` value for a Quay URL (0 until recorded).
    pub fn quay_available(&self, url: &str) -> i64 {
        self.quay_available
            .get_or_create(&QuayLabels {
                quay: quay_host(url),
            })
            .get()
    }

    /// Counts a reconcile.
    pub fn reconciled(&self, controller: &'static str, ok: bool) {
        self.reconciles
            .get_or_create(&ReconcileLabels {
                controller,
                result: if ok { "ok" } else { "error" },
            })
            .inc();
    }

    /// Counts a failure by category.
    pub fn failed(&self, controller: &'static str, category: super::error::Category) {
        self.failures
            .get_or_create(&FailureLabels {
                controller,
                category: category.as_str(),
            })
            .inc();
    }
}

/// Decrements `reconciles_in_flight` when the reconcile ends (or is
/// cancelled).
pub struct InFlight(Gauge);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}

fn quay_host(url: &str) -> String {
    reqwest::Url::parse(url)
        .ok()
        .and_then(|u| u.host_str().map(str::to_owned))
        .unwrap_or_else(|| "unknown".to_owned())
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

struct Health {
    down: bool,
    client: QuayClient,
}

/// Shared state.
pub struct Context {
    /// The Kubernetes client.
    pub client: Client,
    /// Settings.
    pub options: Options,
    /// UID of the `kube-system` namespace: tells clusters apart.
    pub cluster_uid: String,
    /// QuayIntegrations (`quay.redhat.com`).
    pub current: Store<QuayIntegration>,
    /// QuayIntegrations (`redhatcop.redhat.io`), when that CRD is installed.
    pub legacy: Option<Store<LegacyQuayIntegration>>,
    /// Service accounts.
    pub service_accounts: Store<ServiceAccount>,
    /// Secrets this operator manages (label-selected).
    pub secrets: Store<Secret>,
    /// ImageStream metadata, when the kind is served.
    pub image_streams: Option<Arc<super::index::NameIndex>>,
    /// Metrics.
    pub metrics: Metrics,
    pub(crate) credentials: Mutex<HashMap<(String, String), Store<Secret>>>,
    clients: Mutex<HashMap<String, QuayClient>>,
    pub(crate) views: Mutex<HashMap<String, CachedView>>,
    health: Mutex<HashMap<String, Health>>,
    outcomes: Mutex<BTreeMap<String, NsOutcome>>,
    failures: Mutex<HashMap<String, u32>>,
    reported: Mutex<HashSet<(String, String)>>,
    pub(crate) generations: Mutex<HashMap<String, i64>>,
    pub(crate) token_checks: Mutex<HashMap<String, (Instant, TokenCheck)>>,
    trigger: watch::Sender<u64>,
    recorder: Recorder,
    reporter: Reporter,
    /// Namespaces triggered and not yet picked up by a reconcile.
    queued: Mutex<HashSet<String>>,
    /// The valid integrations, parsed once per change of their caches.
    parsed: std::sync::RwLock<Arc<Vec<IntegrationConfig>>>,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("cluster_uid", &self.cluster_uid)
            .finish_non_exhaustive()
    }
}

/// The stores a Context reads.
pub struct Stores {
    /// QuayIntegrations.
    pub current: Store<QuayIntegration>,
    /// Legacy QuayIntegrations.
    pub legacy: Option<Store<LegacyQuayIntegration>>,
    /// Service accounts.
    pub service_accounts: Store<ServiceAccount>,
    /// Managed Secrets.
    pub secrets: Store<Secret>,
    /// ImageStream metadata.
    pub image_streams: Option<Arc<super::index::NameIndex>>,
}

impl Context {
    /// Builds the context.
    pub fn new(
        client: Client,
        options: Options,
        cluster_uid: String,
        stores: Stores,
        metrics: Metrics,
    ) -> Arc<Self> {
        let (trigger, _) = watch::channel(0);
        let reporter = Reporter {
            controller: crate::config::FIELD_MANAGER.into(),
            instance: Some(options.instance.clone()),
        };
        let recorder = Recorder::new(client.clone(), reporter.clone());
        let Stores {
            current,
            legacy,
            service_accounts,
            secrets,
            image_streams,
        } = stores;
        let ctx = Self {
            client,
            options,
            cluster_uid,
            current,
            legacy,
            service_accounts,
            secrets,
            image_streams,
            metrics,
            credentials: Mutex::default(),
            clients: Mutex::default(),
            views: Mutex::default(),
            health: Mutex::default(),
            outcomes: Mutex::default(),
            failures: Mutex::default(),
            reported: Mutex::default(),
            generations: Mutex::default(),
            token_checks: Mutex::default(),
            trigger,
            parsed: std::sync::RwLock::default(),
            recorder,
            reporter,
            queued: Mutex::default(),
        };
        Arc::new(ctx)
    }

    /// Every valid integration that is not being deleted, sorted by id:
    /// parsed once per change of the QuayIntegration caches (see
    /// [`Context::refresh_integrations`]), not on every reconcile and
    /// admission.
    pub fn integrations(&self) -> Arc<Vec<IntegrationConfig>> {
        self.parsed
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Parses the QuayIntegration caches again; the feeds of both caches
    /// call it after every change they apply.
    pub fn refresh_integrations(&self) {
        let mut out: Vec<IntegrationConfig> = self
            .current
            .state()
            .iter()
            .filter(|q| q.meta().deletion_timestamp.is_none())
            .filter_map(|q| from_current(q).ok())
            .collect();
        if let Some(legacy) = &self.legacy {
            out.extend(
                legacy
                    .state()
                    .iter()
                    .filter(|q| q.meta().deletion_timestamp.is_none())
                    .filter_map(|q| from_legacy(q).ok()),
            );
        }
        out.sort_by(|a, b| a.id.cmp(&b.id));
        *self
            .parsed
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(out);
    }

    /// Notes namespaces as waiting for a reconcile (the queue-depth gauge).
    pub fn queued<'a>(&self, names: impl IntoIterator<Item = &'a str>) {
        let mut q = lock(&self.queued);
        for n in names {
            if !q.contains(n) {
                q.insert(n.to_owned());
            }
        }
        self.metrics.set_queue_depth("namespace", q.len());
    }

    /// A namespace's reconcile started.
    pub fn dequeued(&self, name: &str) {
        let mut q = lock(&self.queued);
        q.remove(name);
        self.metrics.set_queue_depth("namespace", q.len());
    }

    /// Forgets queued namespaces that no longer exist (the controller drops
    /// a trigger for an object its cache does not hold).
    pub fn queue_retain(&self, exists: impl Fn(&str) -> bool) {
        let mut q = lock(&self.queued);
        q.retain(|n| exists(n));
        self.metrics.set_queue_depth("namespace", q.len());
    }

    /// A stream that yields whenever every namespace should be reconciled.
    pub fn trigger_stream(&self) -> impl futures::Stream<Item = ()> + Send + 'static {
        futures::stream::unfold(self.trigger.subscribe(), |mut rx| async move {
            rx.changed().await.ok().map(|()| ((), rx))
        })
    }

    /// Re-reconciles every namespace (integration or credentials changed,
    /// Quay came back).
    pub fn trigger_all(&self) {
        self.trigger.send_modify(|g| *g += 1);
    }

    /// Reads the token.
    pub(crate) async fn token(&self, creds: &SecretKeyRef) -> Result<SecretString, Error> {
        let cached = lock(&self.credentials)
            .get(&(creds.namespace.clone(), creds.name.clone()))
            .cloned();
        let from_cache = cached
            .and_then(|store| store.get(&ObjectRef::new(&creds.name).within(&creds.namespace)));
        let secret = match from_cache {
            Some(s) => Some((*s).clone()),
            // Not watched yet, or not there: ask the API server.
            None => {
                Api::<Secret>::namespaced(self.client.clone(), &creds.namespace)
                    .get_opt(&creds.name)
                    .await?
            }
        };
        let Some(secret) = secret else {
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

    async fn ca_bundle(&self, cfg: &IntegrationConfig) -> Result<Option<Vec<u8>>, Error> {
        let Some(r) = &cfg.ca_bundle else {
            return Ok(None);
        };
        let pem = match r.kind {
            CaBundleKind::ConfigMap => {
                Api::<ConfigMap>::namespaced(self.client.clone(), &r.namespace)
                    .get_opt(&r.name)
                    .await?
                    .and_then(|c| c.data.and_then(|d| d.get(&r.key).cloned()))
                    .map(String::into_bytes)
            }
            CaBundleKind::Secret => Api::<Secret>::namespaced(self.client.clone(), &r.namespace)
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
    pub async fn quay(&self, cfg: &IntegrationConfig) -> Result<QuayClient, Error> {
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
        let mut config = QuayClientConfig::new(url.clone(), token);
        config.insecure = cfg.insecure_tls;
        config.ca_bundle_pem = self.ca_bundle(cfg).await?;
        config.connect_timeout = self.options.quay_connect_timeout;
        config.request_timeout = self.options.quay_request_timeout;
        config.retry = self.options.retry.clone();
        let client = QuayClient::new(config, self.metrics.quay.clone())?;
        // Available until a call says otherwise.
        self.metrics.set_quay_available(&url, true);
        lock(&self.clients).insert(key, client.clone());
        Ok(client)
    }

    /// Records that a Quay call failed because Quay seems down: namespaces
    /// stop calling it until the probe sees it back.
    pub fn quay_failed(&self, cfg: &IntegrationConfig, client: &QuayClient) {
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
    pub fn quay_is_down(&self, cfg: &IntegrationConfig) -> bool {
        lock(&self.health)
            .get(&cfg.quay_url.to_string())
            .is_some_and(|h| h.down)
    }

    /// Probes every Quay believed down; those that answer are back: their
    /// namespaces' backoff is reset and everything is reconciled.
    pub async fn probe(&self) {
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
        if recovered {
            lock(&self.failures).clear();
            self.trigger_all();
        }
    }

    /// The delay before retrying a failed namespace: exponential per
    /// namespace, with jitter, capped.
    pub fn backoff(&self, key: &str) -> Duration {
        let mut failures = lock(&self.failures);
        let n = failures.entry(key.to_owned()).or_insert(0);
        *n = n.saturating_add(1);
        let base = Duration::from_millis(250).saturating_mul(1u32 << (*n - 1).min(16));
        let capped = base.min(self.options.max_backoff);
        let jitter = rand::rng().random_range(0.8..1.2);
        capped.mul_f64(jitter)
    }

    /// Forgets a namespace's failures.
    pub fn succeeded(&self, key: &str) {
        lock(&self.failures).remove(key);
    }

    /// Records a namespace outcome.
    pub fn set_outcome(&self, namespace: &str, outcome: Option<NsOutcome>) {
        let mut outcomes = lock(&self.outcomes);
        match outcome {
            Some(o) => {
                outcomes.insert(namespace.to_owned(), o);
            }
            None => {
                outcomes.remove(namespace);
            }
        }
        let (mut managed, mut failing, mut conflict) = (0, 0, 0);
        for o in outcomes.values() {
            match o.state {
                NsState::Managed => managed += 1,
                NsState::Failing(_) => failing += 1,
                NsState::Conflict(_) => conflict += 1,
            }
        }
        drop(outcomes);
        self.metrics.namespace_states(managed, failing, conflict);
    }

    /// Outcomes of the namespaces an integration is concerned with.
    pub fn outcomes_of(&self, id: &IntegrationId) -> Vec<(String, NsOutcome)> {
        lock(&self.outcomes)
            .iter()
            .filter(|(_, o)| o.integrations.contains(id))
            .map(|(n, o)| (n.clone(), o.clone()))
            .collect()
    }

    /// Forgets everything about a namespace.
    pub fn forget(&self, namespace: &str) {
        self.set_outcome(namespace, None);
        lock(&self.views).remove(namespace);
        lock(&self.failures).remove(namespace);
        lock(&self.reported).retain(|(n, _)| n != namespace);
    }

    /// Publishes an Event on a namespace. With `once`, an identical reason
    /// is published only the first time (until the namespace is forgotten).
    pub async fn event(
        &self,
        ns: &Namespace,
        warning: bool,
        reason: &str,
        note: String,
        once: bool,
    ) {
        if once && !lock(&self.reported).insert((ns.name_any(), reason.to_owned())) {
            return;
        }
        // Normal Events here summarise what one reconcile created: they never
        // repeat, so the shared recorder's aggregation cache (kept for six
        // minutes, scanned on every publish) would only hold them. Warnings
        // repeat and aggregate into a series.
        let reference = ns.object_ref(&());
        if warning {
            self.publish(&reference, true, reason, "Reconcile", note)
                .await;
        } else {
            let fresh = Recorder::new(self.client.clone(), self.reporter.clone());
            publish_with(&fresh, &reference, false, reason, "Reconcile", note).await;
        }
    }

    /// Publishes an Event about any object with the shared recorder, which
    /// aggregates repeats into a series.
    pub async fn publish(
        &self,
        reference: &ObjectReference,
        warning: bool,
        reason: &str,
        action: &str,
        note: String,
    ) {
        publish_with(&self.recorder, reference, warning, reason, action, note).await;
    }

    /// The Event recorder.
    pub fn recorder(&self) -> &Recorder {
        &self.recorder
    }

    /// Clears a once-only report, so it is published again if it recurs.
    pub fn clear_report(&self, namespace: &str, reason: &str) {
        lock(&self.reported).remove(&(namespace.to_owned(), reason.to_owned()));
    }
}

impl crate::webhook::server::FactsSource for Context {
    fn facts(&self) -> Box<dyn crate::webhook::decision::Facts + '_> {
        Box::new(WebhookFacts {
            integrations: self.integrations(),
            ctx: self,
        })
    }
}

struct WebhookFacts<'a> {
    integrations: Arc<Vec<IntegrationConfig>>,
    ctx: &'a Context,
}

impl crate::webhook::decision::Facts for WebhookFacts<'_> {
    fn integrations(&self) -> &[IntegrationConfig] {
        &self.integrations
    }

    fn secret_linked(&self, namespace: &str, account: &str, name: &str) -> bool {
        let secret = self
            .ctx
            .secrets
            .get(&ObjectRef::new(name).within(namespace))
            .is_some();
        let linked = self
            .ctx
            .service_accounts
            .get(&ObjectRef::new(account).within(namespace))
            .is_some_and(|sa| {
                sa.secrets
                    .iter()
                    .flatten()
                    .any(|r| r.name.as_deref() == Some(name))
            });
        secret && linked
    }
}

async fn publish_with(
    recorder: &Recorder,
    reference: &ObjectReference,
    warning: bool,
    reason: &str,
    action: &str,
    note: String,
) {
    let ev = Event {
        type_: if warning {
            EventType::Warning
        } else {
            EventType::Normal
        },
        reason: reason.into(),
        note: Some(note),
        action: action.into(),
        secondary: None,
    };
    if let Err(e) = recorder.publish(&ev, reference).await {
        tracing::debug!(error = %e, "event not published");
    }
}

pub(crate) fn token_fingerprint(token: &SecretString) -> u64 {
    // Not a secret: a key to notice the token changed.
    let d = ring::digest::digest(&ring::digest::SHA256, token.expose().as_bytes());
    let mut b = [0u8; 8];
    b.copy_from_slice(&d.as_ref()[..8]);
    u64::from_le_bytes(b)
}

impl crate::leader::CampaignReport for Context {
    fn blocked(&self, reason: Option<String>) {
        self.metrics.set_campaign_blocked(reason.is_some());
        *lock(&self.options.campaign_problem) = reason;
    }
}
