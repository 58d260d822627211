//! The operator's controllers: thin shells that read from caches, ask
//! `plan` what to do, apply it, and report.

pub mod build;
pub mod context;
pub mod error;
pub mod index;
pub mod integration;
pub mod lenient;
pub mod namespace;
pub mod uninstall;

use crate::config::{BRIDGED_LABEL, MANAGED_BY, MANAGED_BY_LABEL};
use crate::crd::{LegacyQuayIntegration, QuayIntegration};
use crate::openshift::ImageStream;
use context::{Context, Metrics, Options, Stores};
use futures::{FutureExt, Stream, StreamExt};
use k8s_openapi::api::core::v1::{Namespace, Secret, ServiceAccount};
use kube::api::{Api, ListParams};
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::{Controller, WatchStreamExt, reflector, watcher};
use kube::{Client, Resource, ResourceExt};
use std::future::Future;
use std::sync::Arc;
use tokio::sync::{broadcast, watch};

/// Why the operator could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The API server refused or failed a startup read.
    #[error("startup: {0}")]
    Kube(#[from] kube::Error),
    /// The webhook could not start (certificates, address).
    #[error("webhook: {0}")]
    Webhook(#[from] crate::net::NetError),
    /// Self-managed certificates could not be set up.
    #[error("webhook certificates: {0}")]
    Certificates(String),
}

/// Whether the kind is served. Asks for metadata only: no object a user
/// can create (an ImageStream without `spec`) can make this fail.
async fn served<K>(api: Api<K>) -> Result<bool, kube::Error>
where
    K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    match api.list_metadata(&ListParams::default().limit(1)).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(false),
        Err(e) => Err(e),
    }
}

/// Aborts its tasks when dropped: whatever `run` starts ends with it, even
/// when `run` itself is cancelled.
#[derive(Default)]
struct Tasks(Vec<tokio::task::AbortHandle>);

impl Tasks {
    fn push<T>(&mut self, handle: tokio::task::JoinHandle<T>) -> tokio::task::JoinHandle<T> {
        self.0.push(handle.abort_handle());
        handle
    }
}

impl Drop for Tasks {
    fn drop(&mut self) {
        for t in &self.0 {
            t.abort();
        }
    }
}

/// Runs a reflector, sending the namespace of every touched object.
async fn namespace_feed<K, S>(stream: S, tx: broadcast::Sender<ObjectRef<Namespace>>)
where
    K: ResourceExt + Send,
    S: Stream<Item = Result<K, watcher::Error>> + Send,
{
    let mut stream = std::pin::pin!(stream);
    while let Some(event) = stream.next().await {
        match event {
            Ok(obj) => {
                if let Some(ns) = obj.namespace() {
                    let _ = tx.send(ObjectRef::new(&ns));
                }
            }
            Err(e) => tracing::debug!(error = %e, "watch error (retried with backoff)"),
        }
    }
}

/// Keeps a name index from a watch, sending the namespaces it changes.
async fn index_feed<K, S>(
    stream: S,
    index: Arc<index::NameIndex>,
    tx: broadcast::Sender<ObjectRef<Namespace>>,
) where
    K: ResourceExt + Send,
    S: Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send,
{
    let mut stream = std::pin::pin!(stream);
    while let Some(event) = stream.next().await {
        match event {
            Ok(event) => {
                for ns in index.apply(&event) {
                    let _ = tx.send(ObjectRef::new(&ns));
                }
            }
            Err(e) => tracing::debug!(error = %e, "watch error (retried with backoff)"),
        }
    }
}

/// Cached copies drop `managedFields`: nothing reads them, and they are
/// often the bulk of an object.
fn strip<K: ResourceExt>(obj: &mut K) {
    obj.managed_fields_mut().clear();
}

/// Create and replace parameters naming the operator as field manager.
pub(crate) fn post_params() -> kube::api::PostParams {
    kube::api::PostParams {
        field_manager: Some(crate::config::FIELD_MANAGER.into()),
        ..Default::default()
    }
}

/// Patch parameters naming the operator as field manager.
pub(crate) fn patch_params() -> kube::api::PatchParams {
    kube::api::PatchParams {
        field_manager: Some(crate::config::FIELD_MANAGER.into()),
        ..Default::default()
    }
}

/// Every service account is cached, but only for its links to the
/// operator's Secrets: annotations, labels, owner references and links to
/// other Secrets (OpenShift's dockercfg ones) are dropped.
fn strip_service_account(sa: &mut ServiceAccount) {
    strip(sa);
    sa.metadata.annotations = None;
    sa.metadata.labels = None;
    sa.metadata.owner_references = None;
    if let Some(refs) = sa.secrets.as_mut() {
        refs.retain(|r| {
            r.name
                .as_deref()
                .is_some_and(crate::plan::names::may_be_bridge_secret)
        });
    }
    if let Some(refs) = sa.image_pull_secrets.as_mut() {
        refs.retain(|r| crate::plan::names::may_be_bridge_secret(&r.name));
    }
}

/// Waits until a store has its first complete list. The store's readiness
/// signal wakes only its most recent waiter (a oneshot channel keeps one
/// waker), and a controller's own runner may be waiting on it too: poll
/// again periodically rather than rely on the wake-up.
pub async fn synced<K>(store: &Store<K>)
where
    K: kube::Resource + Clone + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    loop {
        if let Ok(result) = tokio::time::timeout(
            std::time::Duration::from_millis(50),
            store.wait_until_ready(),
        )
        .await
        {
            if result.is_err() {
                tracing::warn!("a cache writer stopped before its first list");
            }
            return;
        }
    }
}

/// Runs every controller until `shutdown` resolves.
pub async fn run(
    client: Client,
    options: Options,
    metrics: Metrics,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), StartError> {
    let shutdown = shutdown.boxed().shared();
    let cluster_uid = Api::<Namespace>::all(client.clone())
        .get("kube-system")
        .await?
        .uid()
        .unwrap_or_default();
    let legacy_served = served(Api::<LegacyQuayIntegration>::all(client.clone())).await?;
    let streams_served = served(Api::<ImageStream>::all(client.clone())).await?;
    let builds_served = served(Api::<crate::openshift::Build>::all(client.clone())).await?;
    // Load the serving certificate now: a bad one fails start-up, loudly.
    let mut webhook_watch: Option<tokio::task::AbortHandle> = None;
    let webhook_tls = match &options.webhook {
        Some(w) => {
            let resolver = match &w.certificates {
                context::CertSource::Files {
                    dir,
                    reload_interval,
                } => {
                    let (cert, key) = crate::webhook::tls::cert_files(dir);
                    let resolver = crate::webhook::tls::Reloading::load(cert, key)?;
                    webhook_watch =
                        Some(tokio::spawn(resolver.clone().watch(*reload_interval)).abort_handle());
                    resolver
                }
                context::CertSource::SelfManaged(cfg) => {
                    let current = crate::webhook::selfmanaged::ensure(&client, cfg)
                        .await
                        .map_err(|e| StartError::Certificates(e.to_string()))?;
                    let resolver = crate::webhook::tls::Reloading::from_pem(
                        current.cert_pem.as_bytes(),
                        current.key_pem.expose().as_bytes(),
                    )?;
                    webhook_watch = Some(
                        tokio::spawn(crate::webhook::selfmanaged::maintain(
                            client.clone(),
                            cfg.clone(),
                            resolver.clone(),
                        ))
                        .abort_handle(),
                    );
                    resolver
                }
            };
            Some((resolver, w.clone()))
        }
        None => None,
    };
    // Caches run in every replica: the webhook decides from them.
    let (ns_tx, _) = broadcast::channel::<ObjectRef<Namespace>>(4096);
    let mut tasks = Tasks::default();
    if let Some(w) = &webhook_watch {
        tasks.0.push(w.clone());
    }

    let (sa_store, sa_writer) = reflector::store::<ServiceAccount>();
    let sa_stream = reflector(
        sa_writer,
        watcher(Api::all(client.clone()), watcher::Config::default())
            .default_backoff()
            .modify(strip_service_account),
    )
    .touched_objects();
    tasks.push(tokio::spawn(namespace_feed(sa_stream, ns_tx.clone())));

    let (secret_store, secret_writer) = reflector::store::<Secret>();
    let managed = watcher::Config::default().labels(&format!("{MANAGED_BY_LABEL}={MANAGED_BY}"));
    let secret_stream = reflector(
        secret_writer,
        watcher(Api::all(client.clone()), managed)
            .default_backoff()
            .modify(strip),
    )
    .touched_objects();
    tasks.push(tokio::spawn(namespace_feed(secret_stream, ns_tx.clone())));

    // ImageStreams: only their names by namespace are kept, not the objects.
    let image_streams = if streams_served {
        let index = Arc::new(index::NameIndex::default());
        let stream = watcher(
            Api::<PartialObjectMeta<ImageStream>>::all(client.clone()),
            watcher::Config::default(),
        )
        .default_backoff();
        tasks.push(tokio::spawn(index_feed(
            stream,
            index.clone(),
            ns_tx.clone(),
        )));
        Some(index)
    } else {
        None
    };

    // QuayIntegrations: one watch per API group feeds its cache, the parsed
    // list every decision reads, and (in the leader) its controller.
    let (current_store, current_writer) = reflector::store::<QuayIntegration>();
    let current_stream = reflector(
        current_writer,
        lenient::lenient::<QuayIntegration>(client.clone(), watcher::Config::default())
            .default_backoff()
            .modify(strip),
    )
    .touched_objects();
    let (legacy_store, legacy_stream) = if legacy_served {
        let (store, writer) = reflector::store::<LegacyQuayIntegration>();
        let stream = reflector(
            writer,
            lenient::lenient::<LegacyQuayIntegration>(client.clone(), watcher::Config::default())
                .default_backoff()
                .modify(strip),
        )
        .touched_objects();
        (Some(store), Some(stream))
    } else {
        (None, None)
    };

    let stores = Stores {
        current: current_store.clone(),
        legacy: legacy_store.clone(),
        service_accounts: sa_store.clone(),
        secrets: secret_store.clone(),
        image_streams: image_streams.clone(),
    };
    let ctx = Context::new(client.clone(), options, cluster_uid, stores, metrics);
    let (current_tx, _) = broadcast::channel::<ObjectRef<QuayIntegration>>(256);
    tasks.push(tokio::spawn(integration_feed(
        current_stream,
        Arc::downgrade(&ctx),
        current_tx.clone(),
    )));
    let (legacy_tx, _) = broadcast::channel::<ObjectRef<LegacyQuayIntegration>>(256);
    if let Some(stream) = legacy_stream {
        tasks.push(tokio::spawn(integration_feed(
            stream,
            Arc::downgrade(&ctx),
            legacy_tx.clone(),
        )));
    }

    // Decisions need complete caches: with none, the webhook would pass
    // builds unchanged to the internal registry, and reconciles could
    // release finalizers or rewrite Secrets.
    synced(&current_store).await;
    if let Some(s) = &legacy_store {
        synced(s).await;
    }
    synced(&sa_store).await;
    synced(&secret_store).await;
    if let Some(index) = &image_streams {
        index.ready().await;
    }
    ctx.refresh_integrations();
    tracing::info!("caches synced");
    let _webhook = match webhook_tls {
        Some((resolver, options)) => {
            let config = resolver.server_config()?;
            let source: Arc<dyn crate::webhook::server::FactsSource> = ctx.clone();
            let router = crate::webhook::server::router(source, ctx.metrics.webhook.clone());
            let server = crate::net::serve(&options.listen, Some(config), router).await?;
            options.serving.send_replace(Some(server.local_addr()));
            tracing::info!(address = %server.local_addr(), "admission webhook serving");
            Some(server)
        }
        None => None,
    };
    ctx.options
        .ready
        .store(true, std::sync::atomic::Ordering::Relaxed);

    // Reconcilers run only in the leader.
    let (leading_tx, mut leading) = watch::channel(ctx.options.leader_election.is_none());
    let (stop_campaign, campaign_stopped) = watch::channel(false);
    // Without an election this replica leads for good; the sender is kept
    // so the loop below waits for shutdown instead of seeing it closed.
    let (campaign, _always_leading) = match ctx.options.leader_election.clone() {
        Some(settings) => (
            Some(tasks.push(tokio::spawn(crate::leader::campaign(
                client.clone(),
                settings,
                leading_tx,
                campaign_stopped,
                ctx.clone(),
            )))),
            None,
        ),
        None => (None, Some(leading_tx)),
    };
    let mut shutdown_wait = std::pin::pin!(shutdown.clone());
    let mut running: Option<(
        tokio::sync::oneshot::Sender<()>,
        tokio::task::JoinHandle<()>,
    )> = None;
    loop {
        let lead = *leading.borrow_and_update();
        match (lead, running.is_some()) {
            (true, false) => {
                ctx.metrics.set_leader(true);
                tracing::info!("leading: starting the controllers");
                let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
                running = Some((
                    stop,
                    tasks.push(tokio::spawn(leader_controllers(
                        ctx.clone(),
                        client.clone(),
                        Feeds {
                            current: current_tx.subscribe(),
                            legacy: legacy_served.then(|| legacy_tx.subscribe()),
                            namespaces: ns_tx.subscribe(),
                        },
                        builds_served,
                        stopped,
                    ))),
                ));
            }
            (false, true) => {
                // Another replica may lead already: no write after the
                // loss. Reconciles in flight get a moment to finish, then
                // everything is aborted, not detached.
                tracing::warn!("not leading any more: stopping the controllers");
                if let Some((stop, task)) = running.take() {
                    let _ = stop.send(());
                    let abort = task.abort_handle();
                    if tokio::time::timeout(LOSS_DRAIN, task).await.is_err() {
                        abort.abort();
                    }
                }
                ctx.metrics.set_leader(false);
            }
            _ => ctx.metrics.set_leader(lead),
        }
        tokio::select! {
            changed = leading.changed() => if changed.is_err() { break },
            () = &mut shutdown_wait => break,
        }
    }
    if let Some((stop, task)) = running.take() {
        let _ = stop.send(());
        let _ = tokio::time::timeout(std::time::Duration::from_secs(10), task).await;
    }
    let _ = stop_campaign.send(true);
    if let Some(c) = campaign {
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), c).await;
    }
    drop(tasks);
    Ok(())
}

/// How long reconciles in flight may finish after the lease is lost,
/// before the controllers are aborted.
const LOSS_DRAIN: std::time::Duration = std::time::Duration::from_millis(500);

/// What the shared caches hand the leader's controllers.
struct Feeds {
    current: broadcast::Receiver<ObjectRef<QuayIntegration>>,
    legacy: Option<broadcast::Receiver<ObjectRef<LegacyQuayIntegration>>>,
    namespaces: broadcast::Receiver<ObjectRef<Namespace>>,
}

/// Runs a QuayIntegration cache: after each change it applies, the parsed
/// integrations are refreshed, then the object is handed to the controller
/// (so a reconcile never reads an older cache than the one it was
/// triggered by).
async fn integration_feed<K, S>(
    stream: S,
    ctx: std::sync::Weak<Context>,
    tx: broadcast::Sender<ObjectRef<K>>,
) where
    K: Resource<DynamicType = ()> + Send,
    S: Stream<Item = Result<K, watcher::Error>> + Send,
{
    let mut stream = std::pin::pin!(stream);
    while let Some(event) = stream.next().await {
        match event {
            Ok(obj) => {
                let Some(ctx) = ctx.upgrade() else { return };
                ctx.refresh_integrations();
                let _ = tx.send(ObjectRef::from_obj(&obj));
            }
            Err(e) => tracing::debug!(error = %e, "watch error (retried with backoff)"),
        }
    }
}

/// The objects a shared cache hands a controller: all it holds now, then
/// each one as it changes (all again when the receiver fell behind).
fn shared_objects<K>(
    rx: broadcast::Receiver<ObjectRef<K>>,
    store: Store<K>,
) -> impl Stream<Item = Arc<K>> + Send + 'static
where
    K: Resource<DynamicType = ()> + Clone + Send + Sync + 'static,
{
    let initial = futures::stream::iter(store.state());
    let live = futures::stream::unfold((rx, store), |(mut rx, store)| async move {
        loop {
            match rx.recv().await {
                Ok(r) => {
                    if let Some(obj) = store.get(&r) {
                        return Some((vec![obj], (rx, store)));
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    let all = store.state();
                    return Some((all, (rx, store)));
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    })
    .flat_map(futures::stream::iter);
    initial.chain(live)
}

/// The Build cache keeps what the import reads: metadata (without
/// managedFields), `spec.output` and `status.phase`.
fn strip_build(build: &mut crate::openshift::Build) {
    strip(build);
    build.spec.rest.retain(|k, _| k == "output");
    if let Some(status) = build.status.as_mut() {
        status.rest.clear();
    }
}

/// The reconcilers: both QuayIntegration controllers, namespaces, builds,
/// and the Quay probe, until `stopped`. The QuayIntegration controllers
/// run on the shared caches (one watch per kind); the Build watch selects
/// only the Builds the webhook rewrote.
async fn leader_controllers(
    ctx: Arc<Context>,
    client: Client,
    feeds: Feeds,
    builds_served: bool,
    stopped: tokio::sync::oneshot::Receiver<()>,
) {
    let stop = async move {
        let _ = stopped.await;
    }
    .boxed()
    .shared();
    let mut tasks = Tasks::default();
    let current = Controller::for_shared_stream(
        shared_objects(feeds.current, ctx.current.clone()),
        ctx.current.clone(),
    )
    .graceful_shutdown_on(stop.clone())
    .run(
        integration::reconcile::<QuayIntegration>,
        integration::error_policy::<QuayIntegration>,
        ctx.clone(),
    )
    .for_each(|_| async {});
    tasks.push(tokio::spawn(current));
    if let (Some(rx), Some(store)) = (feeds.legacy, ctx.legacy.clone()) {
        let legacy = Controller::for_shared_stream(shared_objects(rx, store.clone()), store)
            .graceful_shutdown_on(stop.clone())
            .run(
                integration::reconcile::<LegacyQuayIntegration>,
                integration::error_policy::<LegacyQuayIntegration>,
                ctx.clone(),
            )
            .for_each(|_| async {});
        tasks.push(tokio::spawn(legacy));
    }
    if builds_served {
        let (store, writer) = reflector::store::<crate::openshift::Build>();
        let selected = watcher::Config::default().labels(&format!("{BRIDGED_LABEL}=true"));
        let stream = reflector(
            writer,
            lenient::lenient::<crate::openshift::Build>(client.clone(), selected)
                .default_backoff()
                .modify(strip_build),
        )
        .applied_objects();
        let builds = Controller::for_stream(stream, store)
            .graceful_shutdown_on(stop.clone())
            .run(build::reconcile, build::error_policy, ctx.clone())
            .for_each(|_| async {});
        tasks.push(tokio::spawn(builds));
    }
    let (ns_store, ns_writer) = reflector::store::<Namespace>();
    let queue_store = ns_store.clone();
    let prober_ctx = Arc::downgrade(&ctx);
    let interval = ctx.options.probe_interval;
    let prober = tasks.push(tokio::spawn(async move {
        loop {
            tokio::time::sleep(interval).await;
            let Some(ctx) = prober_ctx.upgrade() else {
                return;
            };
            ctx.probe().await;
            ctx.queue_retain(|name| queue_store.get(&ObjectRef::new(name)).is_some());
        }
    }));
    let queue_ctx = ctx.clone();
    let ns_triggers = futures::stream::unfold(feeds.namespaces, |mut rx| async move {
        loop {
            match rx.recv().await {
                Ok(r) => return Some((r, rx)),
                // Missed events: the periodic resync and the triggers cover them.
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    });
    // The namespace cache drops managedFields: on a large cluster they are
    // most of each cached object, and no decision reads them.
    let ns_stream = reflector(
        ns_writer,
        watcher(
            Api::<Namespace>::all(client.clone()),
            watcher::Config::default(),
        )
        .default_backoff()
        .modify(strip),
    )
    .applied_objects();
    // Queue depth: what the watch, the triggers and a resync of all hand
    // the controller, until the reconcile starts.
    let watch_ctx = ctx.clone();
    let ns_stream = ns_stream.inspect(move |n| {
        if let Ok(n) = n {
            watch_ctx.queued([n.name_any().as_str()]);
        }
    });
    let all_ctx = ctx.clone();
    let all_store = ns_store.clone();
    let all = ctx.trigger_stream().inspect(move |()| {
        let names: Vec<String> = all_store.state().iter().map(|n| n.name_any()).collect();
        all_ctx.queued(names.iter().map(String::as_str));
    });
    let ns_triggers = ns_triggers.inspect(move |r| queue_ctx.queued([r.name.as_str()]));
    Controller::for_stream(ns_stream, ns_store)
        .with_config(
            kube::runtime::controller::Config::default().concurrency(ctx.options.concurrency),
        )
        .reconcile_all_on(all)
        .reconcile_on(ns_triggers)
        .graceful_shutdown_on(stop)
        .run(namespace::reconcile, namespace::error_policy, ctx.clone())
        .for_each(|_| async {})
        .await;
    prober.abort();
    // The other controllers saw the same stop signal; give them a moment.
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    drop(tasks);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cached_service_accounts_keep_only_links_to_bridge_secrets() {
        let mut sa: ServiceAccount = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "builder", "namespace": "team",
                "annotations": {"openshift.io/internal-registry-pull-secret-ref": "builder-dockercfg-x7k2p"},
                "labels": {"a": "b"},
                "managedFields": [{"manager": "kube-controller-manager"}]},
            "secrets": [{"name": "builder-dockercfg-x7k2p"}, {"name": "builder-quay-openshift"}],
            "imagePullSecrets": [{"name": "builder-dockercfg-x7k2p"}, {"name": "builder-quay-openshift"}]
        }))
        .unwrap();
        strip_service_account(&mut sa);
        assert_eq!(sa.metadata.name.as_deref(), Some("builder"));
        assert_eq!(sa.metadata.namespace.as_deref(), Some("team"));
        assert!(sa.metadata.annotations.is_none() && sa.metadata.labels.is_none());
        assert!(sa.metadata.managed_fields.unwrap_or_default().is_empty());
        let secrets: Vec<_> = sa
            .secrets
            .unwrap()
            .into_iter()
            .filter_map(|r| r.name)
            .collect();
        assert_eq!(secrets, ["builder-quay-openshift"]);
        let pulls: Vec<_> = sa
            .image_pull_secrets
            .unwrap()
            .into_iter()
            .map(|r| r.name)
            .collect();
        assert_eq!(pulls, ["builder-quay-openshift"]);
    }
}
