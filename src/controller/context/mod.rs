//! What the reconciles and admission share, one part per
//! responsibility, each a type with the few methods its callers need: the
//! settings (`options`), the metrics (`metrics`), the integrations
//! (`integrations`), access to Quay (client pool, credentials, health
//! gate: `quay_access`), what became of each namespace and the retry
//! delays (`outcomes`), Events (`events`), the cached Quay views
//! (`views`), rotation's memory (`rotations`), escaped Builds
//! (`escaped`); here the root that holds them, the per-controller
//! contexts, the queue, the resync trigger and the term's tasks.

pub mod escaped;
mod events;
mod integrations;
mod metrics;
mod options;
mod outcomes;
mod quay_access;
mod queue;
pub mod rotations;
mod views;
pub(crate) use events::Events;
pub(crate) use integrations::{Integrations, SignInFailure};
pub(crate) use outcomes::{Backoff, Outcomes};
pub(crate) use quay_access::QuayAccess;
pub(crate) use queue::Queue;

pub(crate) use crate::plan::status::TokenCheck;
pub use crate::plan::status::{NsOutcome, NsState};
pub use metrics::{InFlight, Metrics};
pub use options::{CertSource, Options, WebhookOptions};
pub(crate) use quay_access::token_fingerprint;

use crate::config::IntegrationConfig;
use crate::crd::{LegacyQuayIntegration, QuayIntegration};
use crate::plan::namespace::{ObservedSecret, ObservedServiceAccount};
use kube::Client;
use kube::runtime::events::Reporter;
use kube::runtime::reflector::Store;
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::watch;

pub(crate) use views::{CachedView, QuayViews, TeamMemory};

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Everything the operator shares, as parts: the composition root
/// (`operator.rs`) builds it once, and each controller is handed only the
/// parts it uses: the namespace controller uses all but two
/// ([`NamespaceContext`], which this holds), the others fewer
/// ([`IntegrationContext`], [`BuildContext`]), the webhook only its facts
/// ([`AdmissionFacts`]). What a leadership term learnt is cleared when the
/// next one begins.
pub(crate) struct Context {
    /// The parts the namespace controller uses.
    pub parts: Arc<NamespaceContext>,
    /// Builds that escaped the webhook.
    pub escaped: Arc<escaped::EscapedBuilds>,
    /// The "reconcile everything" trigger.
    pub resync: Arc<Resync>,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("cluster_uid", &self.parts.cluster_uid)
            .finish_non_exhaustive()
    }
}

/// The caches a Context reads, each fed by one watch (see
/// `caches::Caches::start`), before the Context exists.
#[derive(Clone)]
pub(crate) struct Stores {
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
        caches: Stores,
        metrics: Metrics,
    ) -> Arc<Self> {
        let reporter = Reporter {
            controller: crate::config::FIELD_MANAGER.into(),
            instance: Some(options.instance.clone()),
        };
        let resync = Arc::new(Resync::default());
        let term = Arc::new(Term::default());
        let backoff = Arc::new(Backoff::new(options.max_backoff));
        let quay = Arc::new(QuayAccess::new(
            client.clone(),
            &options,
            metrics.clone(),
            term.clone(),
            resync.clone(),
        ));
        Arc::new(Self {
            parts: Arc::new(NamespaceContext {
                events: Arc::new(Events::new(client.clone(), reporter)),
                views: Arc::new(QuayViews::new(options.resync)),
                outcomes: Arc::new(Outcomes::new(metrics.clone())),
                // Two batches: the controller's runner has the next ready as
                // each reconcile ends.
                queue: Arc::new(Queue::new(
                    metrics.clone(),
                    2 * usize::from(options.concurrency.max(1)),
                )),
                integrations: Arc::new(Integrations::default()),
                rotations: Arc::default(),
                quay,
                backoff,
                term,
                client,
                options,
                cluster_uid,
                caches,
                metrics,
            }),
            escaped: Arc::default(),
            resync,
        })
    }

    /// The parts the QuayIntegration controllers use.
    pub fn integration(&self) -> Arc<IntegrationContext> {
        let p = &self.parts;
        Arc::new(IntegrationContext {
            client: p.client.clone(),
            status_interval: p.options.status_interval,
            cluster_uid: p.cluster_uid.clone(),
            metrics: p.metrics.clone(),
            integrations: p.integrations.clone(),
            quay: p.quay.clone(),
            outcomes: p.outcomes.clone(),
            backoff: p.backoff.clone(),
            events: p.events.clone(),
            views: p.views.clone(),
            rotations: p.rotations.clone(),
            escaped: self.escaped.clone(),
            resync: self.resync.clone(),
        })
    }

    /// The parts the Build controller uses.
    pub fn builds(&self) -> Arc<BuildContext> {
        let p = &self.parts;
        Arc::new(BuildContext {
            client: p.client.clone(),
            metrics: p.metrics.clone(),
            integrations: p.integrations.clone(),
            backoff: p.backoff.clone(),
            events: p.events.clone(),
            escaped: self.escaped.clone(),
        })
    }

    /// What admission reads: the parsed integrations and two caches.
    pub fn admission(&self) -> AdmissionFacts {
        AdmissionFacts {
            integrations: self.parts.integrations.clone(),
            service_accounts: self.parts.caches.service_accounts.clone(),
            secrets: self.parts.caches.secrets.clone(),
        }
    }

    /// A leadership term begins: what an earlier term learnt (cached Quay
    /// views, generations handled, token checks, failure counts, Events
    /// already published) is not trusted; this term reads afresh.
    pub(crate) fn begin_term(&self) {
        let p = &self.parts;
        p.views.clear();
        p.integrations.clear();
        p.backoff.clear();
        p.events.clear_reports();
        // What the last term's controller was handed never reports: the
        // new one starts from an empty queue (its first list queues every
        // namespace).
        p.queue.clear();
        self.escaped.clear();
    }

    /// A leadership term ends: every task it started stops, and its
    /// credential watchers with them (the next term starts its own).
    pub(crate) fn end_term(&self) {
        self.parts.term.end();
        self.parts.quay.forget_credentials();
    }

    /// Parses the QuayIntegration caches again; the feeds of both caches
    /// call it after every change they apply.
    pub fn refresh_integrations(&self) {
        let p = &self.parts;
        p.integrations
            .refresh(&p.caches.current, p.caches.legacy.as_ref());
    }
}

/// What the namespace controller uses: everything but the Build parts.
pub(crate) struct NamespaceContext {
    /// Acts as the operator's service account.
    pub client: Client,
    /// From the command line.
    pub options: Options,
    /// UID of the `kube-system` namespace.
    pub cluster_uid: String,
    /// The watch caches.
    pub caches: Stores,
    /// The operator's series.
    pub metrics: Metrics,
    /// The parsed integrations.
    pub integrations: Arc<Integrations>,
    /// Quay clients, credentials and health.
    pub quay: Arc<QuayAccess>,
    /// What became of each namespace.
    pub outcomes: Arc<Outcomes>,
    /// Failures per namespace, for retry delays.
    pub backoff: Arc<Backoff>,
    /// Events on namespaces.
    pub events: Arc<Events>,
    /// Cached Quay views and team sync's memory.
    pub views: Arc<QuayViews>,
    /// Robot-token rotation's memory.
    pub rotations: Arc<rotations::Rotations>,
    /// The namespaces waiting for a reconcile (and the queue-depth gauge).
    pub queue: Arc<Queue>,
    /// The current leadership term's tasks.
    pub term: Arc<Term>,
}

impl NamespaceContext {
    /// Forgets everything about a namespace.
    pub fn forget(&self, namespace: &str) {
        self.outcomes.set(namespace, None);
        self.views.forget(namespace);
        self.backoff.succeeded(namespace);
        self.events.forget(namespace);
        self.rotations.forget(namespace);
    }
}

/// What the QuayIntegration controllers use: no cache but their own.
pub(crate) struct IntegrationContext {
    /// Generations handled, token checks, refused sign-ins; resync on change.
    pub integrations: Arc<Integrations>,
    /// Re-reconciles every namespace when an integration changes.
    pub resync: Arc<Resync>,
    /// Checks and mints the token; watches the credentials Secret.
    pub quay: Arc<QuayAccess>,
    /// Goes into the OAuth application's marker when a token is minted.
    pub cluster_uid: String,
    /// Counted into the status (managed, failing, conflicts).
    pub outcomes: Arc<Outcomes>,
    /// Team sync's counts (read only).
    pub views: Arc<QuayViews>,
    /// Escaped Builds' counts (read only).
    pub escaped: Arc<escaped::EscapedBuilds>,
    /// Robot-token ages (read only).
    pub rotations: Arc<rotations::Rotations>,
    /// Writes the status, and the minted token into the credentials Secret.
    pub client: Client,
    /// Condition transitions and token Events on the integration.
    pub events: Arc<Events>,
    /// How often the status is refreshed.
    pub status_interval: std::time::Duration,
    /// Delays the retry of a failing integration.
    pub backoff: Arc<Backoff>,
    /// Reconcile counts, robot-token age.
    pub metrics: Metrics,
}

impl IntegrationContext {
    /// Team sync's counts over the namespaces an integration manages.
    pub fn team_sync_status(
        &self,
        id: &crate::config::IntegrationId,
    ) -> crate::crd::TeamSyncStatus {
        // Lock order: the team memories, then the outcomes.
        self.views.team_report(|ns| self.outcomes.concerns(ns, id))
    }
}

/// What the Build controller uses.
pub(crate) struct BuildContext {
    /// Imports tags, marks Builds imported, rebuilds escaped ones.
    pub client: Client,
    /// Reconcile counts, the escaped-Builds gauge.
    pub metrics: Metrics,
    /// Which integration manages a Build's namespace.
    pub integrations: Arc<Integrations>,
    /// Delays the retry of a failing import.
    pub backoff: Arc<Backoff>,
    /// Import and escape Events on the Build.
    pub events: Arc<Events>,
    /// Records the Builds found escaped.
    pub escaped: Arc<escaped::EscapedBuilds>,
}

/// The trigger that re-reconciles every namespace (an integration or its
/// credentials changed, Quay came back).
pub(crate) struct Resync(watch::Sender<u64>);

impl Default for Resync {
    fn default() -> Self {
        Self(watch::channel(0).0)
    }
}

impl Resync {
    /// Re-reconciles every namespace.
    pub fn all(&self) {
        self.0.send_modify(|g| *g += 1);
    }

    /// A stream that yields whenever every namespace should be reconciled.
    pub fn stream(&self) -> impl futures::Stream<Item = ()> + Send + 'static {
        futures::stream::unfold(self.0.subscribe(), |mut rx| async move {
            rx.changed().await.ok().map(|()| ((), rx))
        })
    }
}

/// Tasks the current leadership term started (Event writers, credential
/// watchers): aborted when the term ends.
#[derive(Default)]
pub(crate) struct Term {
    tasks: Mutex<Vec<tokio::task::AbortHandle>>,
}

impl Term {
    /// Starts a task owned by the current leadership term.
    pub(crate) fn spawn(&self, task: impl std::future::Future<Output = ()> + Send + 'static) {
        let handle = tokio::spawn(task);
        let mut tasks = lock(&self.tasks);
        tasks.retain(|t| !t.is_finished());
        tasks.push(handle.abort_handle());
    }

    /// Aborts every task of the term.
    fn end(&self) {
        for t in lock(&self.tasks).drain(..) {
            t.abort();
        }
    }
}

/// What admission decides from: the parsed integrations, and which bridge
/// Secrets exist and are linked.
pub(crate) struct AdmissionFacts {
    integrations: Arc<Integrations>,
    service_accounts: Arc<super::index::Index<ObservedServiceAccount>>,
    secrets: Arc<super::index::Index<ObservedSecret>>,
}

impl crate::webhook::server::FactsSource for AdmissionFacts {
    fn facts(&self) -> Box<dyn crate::webhook::decision::Facts + '_> {
        Box::new(WebhookFacts {
            integrations: self.integrations.all(),
            source: self,
        })
    }
}

struct WebhookFacts<'a> {
    integrations: Arc<Vec<IntegrationConfig>>,
    source: &'a AdmissionFacts,
}

impl crate::webhook::decision::Facts for WebhookFacts<'_> {
    fn integrations(&self) -> &[IntegrationConfig] {
        &self.integrations
    }

    fn secret_linked(&self, namespace: &str, account: &str, name: &str) -> bool {
        let secret = self.source.secrets.read(namespace, name, |_| ()).is_some();
        let linked = self
            .source
            .service_accounts
            .read(namespace, account, |sa| {
                sa.secrets.iter().any(|s| s == name)
            })
            .unwrap_or(false);
        secret && linked
    }
}

/// Reports a blocked leadership campaign (metric and readiness text).
pub(crate) struct CampaignReporter {
    /// Where the gauge goes.
    pub metrics: Metrics,
    /// Where `/readyz` reads the reason.
    pub problem: Arc<Mutex<Option<String>>>,
}

impl crate::leader::CampaignReport for CampaignReporter {
    fn blocked(&self, reason: Option<String>) {
        self.metrics.set_campaign_blocked(reason.is_some());
        *lock(&self.problem) = reason;
    }
}
