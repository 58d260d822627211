//! What every reconcile shares, one file per responsibility: the
//! settings (`options`), the metrics (`metrics`), access to Quay (client
//! pool, credentials, health gate: `quay_access`), what happened to each
//! namespace (outcomes, backoff, Events: `outcomes`), and here the caches
//! and the triggers that re-run reconciles.

pub mod escaped;
mod events;
mod integrations;
mod metrics;
mod options;
mod outcomes;
mod quay_access;
pub mod rotations;
mod views;
pub(crate) use integrations::{IntegrationMemory, SignInFailure};

pub(crate) use crate::plan::status::TokenCheck;
pub use crate::plan::status::{NsOutcome, NsState};
pub use metrics::{InFlight, Metrics};
pub use options::{CertSource, Options, WebhookOptions};
use quay_access::Health;
pub(crate) use quay_access::token_fingerprint;

use crate::config::{ApiGroup, IntegrationConfig, IntegrationId, from_current, from_legacy};
use crate::crd::{LegacyQuayIntegration, QuayIntegration};
use crate::plan::namespace::{ObservedSecret, ObservedServiceAccount};
use crate::quay::QuayClient;
use k8s_openapi::api::core::v1::Secret;
use kube::runtime::events::Reporter;
use kube::runtime::reflector::Store;
use kube::{Client, Resource, ResourceExt};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::watch;

pub(crate) use views::{CachedView, QuayViews, TeamMemory};

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// What every reconcile and admission shares: the caches, what the
/// current leadership term learnt, and the ways out (Kubernetes, Quay,
/// Events, metrics).
pub struct Context {
    /// Acts as the operator's service account; every call has a deadline.
    pub client: Client,
    /// From the command line, fixed for the process's life.
    pub options: Options,
    /// UID of the `kube-system` namespace: tells clusters apart.
    pub cluster_uid: String,
    /// QuayIntegrations (`quay.redhat.com`).
    pub current: Store<QuayIntegration>,
    /// QuayIntegrations (`redhatcop.redhat.io`), when that CRD is installed.
    pub legacy: Option<Store<LegacyQuayIntegration>>,
    /// Service accounts, as their links to bridge Secrets, by namespace.
    pub service_accounts: Arc<super::index::Index<ObservedServiceAccount>>,
    /// Secrets this operator manages (label-selected), as the plan reads
    /// them, by namespace.
    pub secrets: Arc<super::index::Index<ObservedSecret>>,
    /// ImageStream metadata, when the kind is served.
    pub image_streams: Option<Arc<super::index::NameIndex>>,
    /// RoleBindings (role and subjects), by namespace.
    pub role_bindings: Arc<super::index::Index<crate::plan::teams::ObservedBinding>>,
    /// OpenShift Groups, when the kind is served.
    pub groups: Option<Store<crate::openshift::Group>>,
    /// Counters and gauges `/metrics` serves; shared with the admin server.
    pub metrics: Metrics,
    /// Builds that escaped the webhook.
    pub escaped: escaped::EscapedBuilds,
    /// Robot-token rotation's memory.
    pub rotations: rotations::Rotations,
    credentials: Mutex<HashMap<(String, String), Store<Secret>>>,
    clients: Mutex<HashMap<String, QuayClient>>,
    /// Cached Quay views and team sync's memory, by namespace.
    pub(crate) views: QuayViews,
    health: Mutex<HashMap<String, Health>>,
    outcomes: Mutex<BTreeMap<String, NsOutcome>>,
    failures: Mutex<HashMap<String, u32>>,
    reported: Mutex<HashSet<(String, String)>>,
    /// Generations handled, token checks and refused sign-ins, by
    /// integration.
    pub(crate) integrations: IntegrationMemory,
    trigger: watch::Sender<u64>,
    events: events::EventSink,
    /// Namespaces triggered and not yet picked up by a reconcile.
    queued: Mutex<HashSet<String>>,
    /// The valid integrations, parsed once per change of their caches.
    parsed: std::sync::RwLock<Arc<Vec<IntegrationConfig>>>,
    /// The integrations that fail validation (not being deleted).
    invalid: std::sync::RwLock<Arc<Vec<IntegrationId>>>,
    /// Tasks the current leadership term started (Event writers,
    /// credential watchers): aborted when the term ends.
    term_tasks: Mutex<Vec<tokio::task::AbortHandle>>,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("cluster_uid", &self.cluster_uid)
            .finish_non_exhaustive()
    }
}

/// The caches a Context reads, each fed by one watch (see
/// `caches::Caches::start`), before the Context exists.
#[derive(Clone)]
pub struct Stores {
    /// `quay.redhat.com` QuayIntegrations, managedFields dropped.
    pub current: Store<QuayIntegration>,
    /// `redhatcop.redhat.io` QuayIntegrations, when that CRD is served.
    pub legacy: Option<Store<LegacyQuayIntegration>>,
    /// Every service account, as its links to bridge Secrets.
    pub service_accounts: Arc<super::index::Index<ObservedServiceAccount>>,
    /// The Secrets carrying the operator's label, as the plan compares them.
    pub secrets: Arc<super::index::Index<ObservedSecret>>,
    /// ImageStream names by namespace, when the kind is served.
    pub image_streams: Option<Arc<super::index::NameIndex>>,
    /// RoleBindings' roles, users and groups, for team sync.
    pub role_bindings: Arc<super::index::Index<crate::plan::teams::ObservedBinding>>,
    /// OpenShift Groups' users, when the kind is served.
    pub groups: Option<Store<crate::openshift::Group>>,
}

impl Context {
    /// A context over `stores`, with nothing learnt yet.
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
        let events = events::EventSink::new(client.clone(), reporter);
        let views = QuayViews::new(options.resync);
        let Stores {
            current,
            legacy,
            service_accounts,
            secrets,
            image_streams,
            role_bindings,
            groups,
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
            role_bindings,
            groups,
            metrics,
            escaped: escaped::EscapedBuilds::default(),
            rotations: rotations::Rotations::default(),
            credentials: Mutex::default(),
            clients: Mutex::default(),
            views,
            health: Mutex::default(),
            outcomes: Mutex::default(),
            failures: Mutex::default(),
            reported: Mutex::default(),
            integrations: IntegrationMemory::default(),
            trigger,
            parsed: std::sync::RwLock::default(),
            invalid: std::sync::RwLock::default(),
            term_tasks: Mutex::default(),
            events,

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

    /// Starts a task owned by the current leadership term.
    pub(crate) fn spawn_in_term(
        &self,
        task: impl std::future::Future<Output = ()> + Send + 'static,
    ) {
        let handle = tokio::spawn(task);
        let mut tasks = lock(&self.term_tasks);
        tasks.retain(|t| !t.is_finished());
        tasks.push(handle.abort_handle());
    }

    /// A leadership term begins: what an earlier term learnt (cached Quay
    /// views, generations handled, token checks, failure counts, Events
    /// already published) is not trusted; this term reads afresh.
    pub(crate) fn begin_term(&self) {
        self.views.clear();
        self.integrations.clear();
        lock(&self.failures).clear();
        lock(&self.reported).clear();
        self.escaped.clear();
    }

    /// A leadership term ends: every task it started stops, and its
    /// credential watchers with them (the next term starts its own).
    pub(crate) fn end_term(&self) {
        for t in lock(&self.term_tasks).drain(..) {
            t.abort();
        }
        lock(&self.credentials).clear();
    }

    /// The integrations that exist, are not being deleted, and fail
    /// validation: their namespaces are held as they are.
    pub fn invalid_integrations(&self) -> Arc<Vec<IntegrationId>> {
        self.invalid
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Parses the QuayIntegration caches again; the feeds of both caches
    /// call it after every change they apply.
    pub fn refresh_integrations(&self) {
        let mut out: Vec<IntegrationConfig> = Vec::new();
        let mut invalid: Vec<IntegrationId> = Vec::new();
        let mut sort =
            |id: IntegrationId, parsed: Result<IntegrationConfig, crate::config::ConfigError>| {
                match parsed {
                    Ok(cfg) => out.push(cfg),
                    Err(_) => invalid.push(id),
                }
            };
        for q in self
            .current
            .state()
            .iter()
            .filter(|q| q.meta().deletion_timestamp.is_none())
        {
            sort(
                IntegrationId {
                    group: ApiGroup::Current,
                    name: q.name_any(),
                },
                from_current(q),
            );
        }
        if let Some(legacy) = &self.legacy {
            for q in legacy
                .state()
                .iter()
                .filter(|q| q.meta().deletion_timestamp.is_none())
            {
                sort(
                    IntegrationId {
                        group: ApiGroup::Legacy,
                        name: q.name_any(),
                    },
                    from_legacy(q),
                );
            }
        }
        out.sort_by(|a, b| a.id.cmp(&b.id));
        invalid.sort();
        *self
            .invalid
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(invalid);
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

    /// Team sync's counts over the namespaces an integration manages.
    pub fn team_sync_status(
        &self,
        id: &crate::config::IntegrationId,
    ) -> crate::crd::TeamSyncStatus {
        let managed: HashSet<String> = self.outcomes_of(id).into_iter().map(|(n, _)| n).collect();
        self.views.team_report(|ns| managed.contains(ns))
    }

    /// Re-reconciles every namespace (integration or credentials changed,
    /// Quay came back).
    pub fn trigger_all(&self) {
        self.trigger.send_modify(|g| *g += 1);
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
        let secret = self.ctx.secrets.read(namespace, name, |_| ()).is_some();
        let linked = self
            .ctx
            .service_accounts
            .read(namespace, account, |sa| {
                sa.secrets.iter().any(|s| s == name)
            })
            .unwrap_or(false);
        secret && linked
    }
}

impl crate::leader::CampaignReport for Context {
    fn blocked(&self, reason: Option<String>) {
        self.metrics.set_campaign_blocked(reason.is_some());
        *lock(&self.options.campaign_problem) = reason;
    }
}
