//! The operator's controllers: thin shells that read from caches, ask
//! `plan` what to do, apply it, and report.

pub mod build;
pub mod context;
pub mod error;
pub mod integration;
pub mod namespace;
pub mod uninstall;

use crate::config::{MANAGED_BY, MANAGED_BY_LABEL};
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
use tokio::sync::mpsc;

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

async fn served<K>(api: Api<K>) -> Result<bool, kube::Error>
where
    K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    match api.list(&ListParams::default().limit(1)).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(false),
        Err(e) => Err(e),
    }
}

/// Runs a reflector, sending the namespace of every touched object.
async fn namespace_feed<K, S>(stream: S, tx: mpsc::UnboundedSender<ObjectRef<Namespace>>)
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

/// Cached copies drop `managedFields`: nothing reads them, and they are
/// often the bulk of an object.
fn strip<K: ResourceExt>(obj: &mut K) {
    obj.managed_fields_mut().clear();
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
    let webhook_tls = match &options.webhook {
        Some(w) => {
            let resolver = match &w.certificates {
                context::CertSource::Files {
                    dir,
                    reload_interval,
                } => {
                    let (cert, key) = crate::webhook::tls::cert_files(dir);
                    let resolver = crate::webhook::tls::Reloading::load(cert, key)?;
                    tokio::spawn(resolver.clone().watch(*reload_interval));
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
                    tokio::spawn(crate::webhook::selfmanaged::maintain(
                        client.clone(),
                        cfg.clone(),
                        resolver.clone(),
                    ));
                    resolver
                }
            };
            Some((resolver, w.clone()))
        }
        None => None,
    };
    let (ns_tx, ns_rx) = mpsc::unbounded_channel::<ObjectRef<Namespace>>();
    let mut tasks = Vec::new();

    let (sa_store, sa_writer) = reflector::store::<ServiceAccount>();
    let sa_stream = reflector(
        sa_writer,
        watcher(Api::all(client.clone()), watcher::Config::default())
            .default_backoff()
            .modify(strip),
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

    let image_streams = if streams_served {
        let (store, writer) = reflector::store();
        let stream = reflector(
            writer,
            watcher(
                Api::<PartialObjectMeta<ImageStream>>::all(client.clone()),
                watcher::Config::default(),
            )
            .default_backoff()
            .modify(strip),
        )
        .touched_objects();
        tasks.push(tokio::spawn(namespace_feed(stream, ns_tx.clone())));
        Some(store)
    } else {
        None
    };

    let current = Controller::new(
        Api::<QuayIntegration>::all(client.clone()),
        watcher::Config::default(),
    );
    let legacy = legacy_served.then(|| {
        Controller::new(
            Api::<LegacyQuayIntegration>::all(client.clone()),
            watcher::Config::default(),
        )
    });
    let namespaces = Controller::new(
        Api::<Namespace>::all(client.clone()),
        watcher::Config::default(),
    )
    .with_config(kube::runtime::controller::Config::default().concurrency(options.concurrency));
    let stores = Stores {
        current: current.store(),
        legacy: legacy.as_ref().map(Controller::store),
        namespaces: namespaces.store(),
        service_accounts: sa_store.clone(),
        secrets: secret_store.clone(),
        image_streams: image_streams.clone(),
    };
    let (ctx, trigger) = Context::new(client.clone(), options, cluster_uid, stores, metrics);

    let current_run = current
        .graceful_shutdown_on(shutdown.clone())
        .run(
            integration::reconcile::<QuayIntegration>,
            integration::error_policy::<QuayIntegration>,
            ctx.clone(),
        )
        .for_each(|_| async {});
    tasks.push(tokio::spawn(current_run));
    let legacy_store: Option<Store<LegacyQuayIntegration>> = ctx.legacy.clone();
    if let Some(legacy) = legacy {
        let run = legacy
            .graceful_shutdown_on(shutdown.clone())
            .run(
                integration::reconcile::<LegacyQuayIntegration>,
                integration::error_policy::<LegacyQuayIntegration>,
                ctx.clone(),
            )
            .for_each(|_| async {});
        tasks.push(tokio::spawn(run));
    }
    let prober_ctx = Arc::downgrade(&ctx);
    let interval = ctx.options.probe_interval;
    tasks.push(tokio::spawn(async move {
        loop {
            tokio::time::sleep(interval).await;
            let Some(ctx) = prober_ctx.upgrade() else {
                return;
            };
            ctx.probe().await;
        }
    }));

    // Namespaces are reconciled only once every cache is complete: deciding
    // on a partial view could release finalizers or rewrite Secrets.
    let ready_ctx = ctx.clone();
    let readiness = async move {
        synced(&ready_ctx.current).await;
        tracing::debug!("QuayIntegration cache synced");
        if let Some(s) = &legacy_store {
            synced(s).await;
            tracing::debug!("legacy QuayIntegration cache synced");
        }
        synced(&sa_store).await;
        tracing::debug!("ServiceAccount cache synced");
        synced(&secret_store).await;
        tracing::debug!("Secret cache synced");
        if let Some(s) = &image_streams {
            synced(s).await;
            tracing::debug!("ImageStream cache synced");
        }
    };
    let all_trigger = futures::stream::unfold(trigger, |mut rx| async move {
        rx.changed().await.ok().map(|()| ((), rx))
    });
    let ns_triggers =
        futures::stream::unfold(
            ns_rx,
            |mut rx| async move { rx.recv().await.map(|r| (r, rx)) },
        );
    let shutdown_ns = shutdown.clone();
    let ns_ctx = ctx.clone();
    let ready = ctx.options.ready.clone();
    if builds_served {
        let builds = Controller::new(
            Api::<crate::openshift::Build>::all(client.clone()),
            watcher::Config::default(),
        );
        let run = builds
            .graceful_shutdown_on(shutdown.clone())
            .run(build::reconcile, build::error_policy, ctx.clone())
            .for_each(|_| async {});
        tasks.push(tokio::spawn(run));
    }
    let webhook_ctx = ctx.clone();
    let namespaces_run = async move {
        readiness.await;
        tracing::info!("caches synced; reconciling namespaces");
        // Decisions need complete caches: with none, builds would pass
        // unchanged to the internal registry.
        let _webhook = match webhook_tls {
            Some((resolver, options)) => {
                let config = resolver.server_config()?;
                let source: Arc<dyn crate::webhook::server::FactsSource> = webhook_ctx.clone();
                let router =
                    crate::webhook::server::router(source, webhook_ctx.metrics.webhook.clone());
                let server = crate::net::serve(&options.listen, Some(config), router).await?;
                tracing::info!(address = %server.local_addr(), "admission webhook serving");
                Some(server)
            }
            None => None,
        };
        ready.store(true, std::sync::atomic::Ordering::Relaxed);
        namespaces
            .reconcile_all_on(all_trigger)
            .reconcile_on(ns_triggers)
            .graceful_shutdown_on(shutdown_ns)
            .run(namespace::reconcile, namespace::error_policy, ns_ctx)
            .for_each(|_| async {})
            .await;
        Ok::<(), StartError>(())
    };
    let result = namespaces_run.await;
    for t in tasks {
        t.abort();
    }
    drop(ns_tx);
    result
}
