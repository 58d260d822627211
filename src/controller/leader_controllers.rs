//! The reconcilers, run only by the leader: both QuayIntegration
//! controllers on the shared caches, the import controller on rewritten
//! Builds, the namespace controller, and the Quay probe.

use super::caches::{shared_objects, strip_build};
use super::context::Context;
use super::namespace::CachedNamespace;
use super::{Tasks, build, integration, lenient, namespace};
use crate::crd::{LegacyQuayIntegration, QuayIntegration};
use futures::future::{BoxFuture, Shared};
use futures::{FutureExt, StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Namespace;
use kube::api::Api;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::{Controller, WatchStreamExt, reflector, watcher};
use kube::{Client, ResourceExt};
use std::sync::Arc;
use tokio::sync::broadcast;

/// What the shared caches hand the leader's controllers.
pub(super) struct Subscriptions {
    pub current: broadcast::Receiver<ObjectRef<QuayIntegration>>,
    pub legacy: Option<broadcast::Receiver<ObjectRef<LegacyQuayIntegration>>>,
    pub namespaces: broadcast::Receiver<ObjectRef<Namespace>>,
}

type Stop = Shared<BoxFuture<'static, ()>>;

/// Runs the reconcilers until `stopped`.
pub(super) async fn run(
    ctx: Arc<Context>,
    client: Client,
    feeds: Subscriptions,
    builds_served: bool,
    stopped: tokio::sync::oneshot::Receiver<()>,
) {
    let stop: Stop = async move {
        let _ = stopped.await;
    }
    .boxed()
    .shared();
    let mut tasks = Tasks::default();
    integration_controllers(&ctx, feeds.current, feeds.legacy, &stop, &mut tasks);
    if builds_served {
        build_controller(&ctx, &client, &stop, &mut tasks);
    }
    namespace_controller(ctx, client, feeds.namespaces, stop, &mut tasks).await;
    // The other controllers saw the same stop signal; give them a moment.
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    drop(tasks);
}

/// Both QuayIntegration controllers, on the shared caches (one watch per
/// kind).
fn integration_controllers(
    ctx: &Arc<Context>,
    current: broadcast::Receiver<ObjectRef<QuayIntegration>>,
    legacy: Option<broadcast::Receiver<ObjectRef<LegacyQuayIntegration>>>,
    stop: &Stop,
    tasks: &mut Tasks,
) {
    let controller = Controller::for_shared_stream(
        shared_objects(current, ctx.parts.caches.current.clone()),
        ctx.parts.caches.current.clone(),
    )
    .graceful_shutdown_on(stop.clone())
    .run(
        integration::reconcile::<QuayIntegration>,
        integration::error_policy::<QuayIntegration>,
        ctx.integration(),
    )
    .for_each(|_| async {});
    tasks.push(tokio::spawn(controller));
    if let (Some(rx), Some(store)) = (legacy, ctx.parts.caches.legacy.clone()) {
        let controller = Controller::for_shared_stream(shared_objects(rx, store.clone()), store)
            .graceful_shutdown_on(stop.clone())
            .run(
                integration::reconcile::<LegacyQuayIntegration>,
                integration::error_policy::<LegacyQuayIntegration>,
                ctx.integration(),
            )
            .for_each(|_| async {});
        tasks.push(tokio::spawn(controller));
    }
}

/// The Build controller: imports the tags of Builds the webhook rewrote,
/// and finds those that escaped it. It watches every Build (the escaped
/// ones carry no label of ours), cached stripped to what both read.
fn build_controller(ctx: &Arc<Context>, client: &Client, stop: &Stop, tasks: &mut Tasks) {
    let (store, writer) = reflector::store::<crate::openshift::Build>();
    ctx.escaped.watch(store.clone());
    let stream = reflector(
        writer,
        super::relist::in_place(
            lenient::lenient::<crate::openshift::Build>(client.clone(), watcher::Config::default())
                .default_backoff()
                .modify(strip_build),
            store.clone(),
        ),
    )
    .applied_objects();
    // A relist triggers only the Builds that changed (see `relist`). A
    // changed integration (spec.rebuildEscapedBuilds turned on, a
    // namespace selected) re-checks every Build.
    let controller = Controller::for_stream(stream, store)
        .reconcile_all_on(ctx.resync.stream())
        .graceful_shutdown_on(stop.clone())
        .run(build::reconcile, build::error_policy, ctx.builds())
        .for_each(|_| async {});
    tasks.push(tokio::spawn(controller));
}

/// The Quay probe, which also evicts stale Quay views and releases
/// queue places whose result never came.
fn prober(ctx: &Arc<Context>, tasks: &mut Tasks) {
    let weak = Arc::downgrade(ctx);
    let interval = ctx.parts.options.probe_interval;
    tasks.push(tokio::spawn(async move {
        loop {
            tokio::time::sleep(interval).await;
            let Some(ctx) = weak.upgrade() else {
                return;
            };
            if ctx.parts.quay.probe().await {
                // Quay is back: its namespaces retry now, from the start.
                ctx.parts.backoff.clear();
                ctx.resync.all();
            }
            ctx.parts.views.evict_stale();
            ctx.parts.queue.sweep();
        }
    }));
}

/// The namespace controller, until `stop`. Every trigger queues the
/// namespace's name (see `Queue`): its own watch (a relist only what
/// changed, see `relist`), the caches' feed (a changed service account,
/// Secret, RoleBinding or ImageStream), a resync of all (an integration
/// or credentials changed, Quay came back) and the periodic resync. The
/// controller is fed from the queue, a few at a time; its own retries
/// (error policy, rotation) go through its scheduler.
async fn namespace_controller(
    ctx: Arc<Context>,
    client: Client,
    feed: broadcast::Receiver<ObjectRef<Namespace>>,
    stop: Stop,
    tasks: &mut Tasks,
) {
    let (ns_store, ns_writer) = reflector::store::<CachedNamespace>();
    prober(&ctx, tasks);
    let queue = ctx.parts.queue.clone();
    tasks.push(tokio::spawn(async move {
        let mut feed = feed;
        loop {
            match feed.recv().await {
                Ok(r) => queue.add([r.name.as_str()]),
                // Missed events: the periodic resync and the triggers cover them.
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => return,
            }
        }
    }));
    // The namespace cache keeps what a reconcile reads (see
    // `CachedNamespace`): on a large cluster the rest is most of each
    // object.
    let queue = ctx.parts.queue.clone();
    let watch = reflector(
        ns_writer,
        super::relist::in_place(
            watcher(
                Api::<Namespace>::all(client.clone()),
                watcher::Config::default(),
            )
            .default_backoff()
            .map_ok(CachedNamespace::event),
            ns_store.clone(),
        ),
    )
    .applied_objects()
    .for_each(move |n| {
        match n {
            Ok(n) => queue.add([n.name_any().as_str()]),
            Err(e) => tracing::debug!(error = %e, "watch error (retried with backoff)"),
        }
        async {}
    });
    tasks.push(tokio::spawn(watch));
    let queue = ctx.parts.queue.clone();
    let all_store = ns_store.clone();
    tasks.push(tokio::spawn(ctx.resync.stream().for_each(move |()| {
        let names: Vec<String> = all_store.state().iter().map(|n| n.name_any()).collect();
        queue.add(names.iter().map(String::as_str));
        async {}
    })));
    let queue = ctx.parts.queue.clone();
    tasks.push(tokio::spawn(resync_ticks(&ctx, ns_store.clone()).for_each(
        move |due| {
            queue.add(due.iter().map(String::as_str));
            async {}
        },
    )));
    let queue = ctx.parts.queue.clone();
    let queued = futures::stream::unfold(queue.clone(), |queue| async move {
        let name = queue.next().await;
        Some((ObjectRef::<CachedNamespace>::new(&name), queue))
    });
    Controller::for_stream(futures::stream::pending(), ns_store)
        .with_config(
            kube::runtime::controller::Config::default().concurrency(ctx.parts.options.concurrency),
        )
        .reconcile_on(queued)
        .graceful_shutdown_on(stop)
        .run(
            namespace::reconcile,
            namespace::error_policy,
            ctx.parts.clone(),
        )
        .for_each(move |result| {
            // The queue hands out the next name as each one reports.
            if let Some(name) = reported(&result) {
                queue.done(name);
            }
            async {}
        })
        .await;
}

/// The namespace a controller result reports on.
fn reported<E, K: kube::Resource>(
    result: &Result<
        (ObjectRef<K>, kube::runtime::controller::Action),
        kube::runtime::controller::Error<E, watcher::Error>,
    >,
) -> Option<&str>
where
    E: std::error::Error + 'static,
{
    use kube::runtime::controller::Error;
    match result {
        Ok((r, _)) => Some(&r.name),
        Err(Error::ObjectNotFound(r) | Error::ReconcilerFailed(_, r)) => Some(&r.name),
        Err(_) => None,
    }
}

/// The periodic resync: from one interval after the start (the start
/// itself reconciles every namespace), each tick triggers the bridged
/// namespaces of one slot (`plan::resync`), so every one is reconciled
/// once per interval and Quay sees the reads spread evenly over it.
fn resync_ticks(
    ctx: &Context,
    namespaces: Store<CachedNamespace>,
) -> impl futures::Stream<Item = Vec<String>> + Send + 'static {
    let resync = ctx.parts.options.resync;
    let integrations = ctx.parts.integrations.clone();
    let mut interval = tokio::time::interval_at(
        tokio::time::Instant::now() + resync,
        crate::plan::resync::tick(resync),
    );
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    futures::stream::unfold((interval, 0u64), move |(mut interval, n)| {
        let namespaces = namespaces.clone();
        let integrations = integrations.clone();
        async move {
            interval.tick().await;
            let all = integrations.all();
            let due: Vec<String> = namespaces
                .state()
                .iter()
                .map(|ns| ns.name_any())
                .filter(|name| {
                    crate::plan::resync::due(name, n)
                        && matches!(
                            crate::plan::selection::manager(&all, name),
                            crate::plan::selection::Manager::One(_)
                        )
                })
                .collect();
            Some((due, (interval, n + 1)))
        }
    })
}
