//! The composition root: what `run` starts, in order. The cluster is
//! probed, the webhook's certificate loaded (a bad one fails start-up,
//! loudly), the caches started and synced, the webhook served, and then
//! the reconcilers run while this replica leads.

use super::caches::{self, Caches, Feeds, Served};
use super::context::{CertSource, Context, Metrics, Options, WebhookOptions};
use super::leader_controllers::{self, Subscriptions};
use super::{StartError, Tasks};
use crate::net::ServerHandle;
use crate::webhook::tls::Reloading;
use futures::FutureExt;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::Api;
use kube::{Client, ResourceExt};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// How long reconciles in flight may finish after the lease is lost,
/// before the controllers are aborted.
const LOSS_DRAIN: Duration = Duration::from_millis(500);

/// A started operator: caches synced, webhook serving.
pub(super) struct Operator {
    ctx: Arc<Context>,
    client: Client,
    feeds: Feeds,
    builds_served: bool,
    tasks: Tasks,
    _webhook: Option<ServerHandle>,
}

/// The reconcilers while they run: how to stop them.
struct Running {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl Operator {
    /// Starts everything every replica runs.
    pub async fn start(
        client: Client,
        options: Options,
        metrics: Metrics,
    ) -> Result<Self, StartError> {
        // The cluster's identity goes into every ownership marker: an empty
        // one would make every cluster's organizations look alike.
        let cluster_uid = Api::<Namespace>::all(client.clone())
            .get("kube-system")
            .await?
            .uid()
            .filter(|u| !u.is_empty())
            .ok_or(StartError::ClusterIdentity)?;
        let served = Served::probe(&client).await?;
        let mut tasks = Tasks::default();
        let certificates = match &options.webhook {
            Some(w) => Some((certificates(&client, w, &mut tasks).await?, w.clone())),
            None => None,
        };
        // Caches run in every replica: the webhook decides from them.
        let caches = Caches::start(&client, served, &mut tasks);
        let stores = caches.stores.clone();
        let ctx = Context::new(client.clone(), options, cluster_uid, stores, metrics);
        let feeds = caches.feed(&ctx, &mut tasks);
        caches::all_synced(&ctx).await;
        tracing::info!("caches synced");
        let webhook = match certificates {
            Some((resolver, options)) => Some(serve_webhook(&ctx, &resolver, &options).await?),
            None => None,
        };
        ctx.parts
            .options
            .ready
            .store(true, std::sync::atomic::Ordering::Relaxed);
        Ok(Self {
            ctx,
            client,
            feeds,
            builds_served: served.builds,
            tasks,
            _webhook: webhook,
        })
    }

    /// Campaigns (when elected) and runs the reconcilers while this
    /// replica leads, until `shutdown`.
    pub async fn run(mut self, shutdown: impl Future<Output = ()> + Send + 'static) {
        let ctx = self.ctx.clone();
        let (leading_tx, mut leading) = watch::channel(ctx.parts.options.leader_election.is_none());
        let (stop_campaign, campaign_stopped) = watch::channel(false);
        // Without an election this replica leads for good; the sender is
        // kept so the loop below waits for shutdown instead of seeing it
        // closed.
        let (campaign, _always_leading) = match ctx.parts.options.leader_election.clone() {
            Some(settings) => (
                Some(self.tasks.push(tokio::spawn(crate::leader::campaign(
                    self.client.clone(),
                    settings,
                    leading_tx,
                    campaign_stopped,
                    Arc::new(super::context::CampaignReporter {
                        metrics: ctx.parts.metrics.clone(),
                        problem: ctx.parts.options.campaign_problem.clone(),
                    }),
                )))),
                None,
            ),
            None => (None, Some(leading_tx)),
        };
        let mut shutdown = std::pin::pin!(shutdown.boxed());
        let mut running: Option<Running> = None;
        loop {
            let lead = *leading.borrow_and_update();
            match (lead, running.take()) {
                (true, None) => {
                    ctx.parts.metrics.set_leader(true);
                    tracing::info!("leading: starting the controllers");
                    running = Some(self.start_reconcilers());
                }
                (false, Some(r)) => {
                    // Another replica may lead already: no write after the
                    // loss. Reconciles in flight get a moment to finish,
                    // then everything is aborted, not detached.
                    tracing::warn!("not leading any more: stopping the controllers");
                    r.stop_within(LOSS_DRAIN).await;
                    ctx.end_term();
                    ctx.parts.metrics.set_leader(false);
                }
                (lead, r) => {
                    running = r;
                    ctx.parts.metrics.set_leader(lead);
                }
            }
            tokio::select! {
                changed = leading.changed() => if changed.is_err() { break },
                () = &mut shutdown => break,
            }
        }
        if let Some(r) = running.take() {
            r.stop_within(Duration::from_secs(10)).await;
            ctx.end_term();
        }
        let _ = stop_campaign.send(true);
        if let Some(c) = campaign {
            let _ = tokio::time::timeout(Duration::from_secs(5), c).await;
        }
    }

    fn start_reconcilers(&mut self) -> Running {
        self.ctx.begin_term();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let subscriptions = Subscriptions {
            current: self.feeds.current.subscribe(),
            legacy: self.feeds.legacy.as_ref().map(|l| l.subscribe()),
            namespaces: self.feeds.namespaces.subscribe(),
        };
        let task = self.tasks.push(tokio::spawn(leader_controllers::run(
            self.ctx.clone(),
            self.client.clone(),
            subscriptions,
            self.builds_served,
            stopped,
        )));
        Running { stop, task }
    }
}

impl Running {
    /// Asks the reconcilers to stop, and aborts them if they have not
    /// within `drain`.
    async fn stop_within(self, drain: Duration) {
        let _ = self.stop.send(());
        let abort = self.task.abort_handle();
        if tokio::time::timeout(drain, self.task).await.is_err() {
            abort.abort();
        }
    }
}

/// Loads the webhook's serving certificate (from files, or made and kept
/// by the operator), and starts keeping it current.
async fn certificates(
    client: &Client,
    webhook: &WebhookOptions,
    tasks: &mut Tasks,
) -> Result<Arc<Reloading>, StartError> {
    Ok(match &webhook.certificates {
        CertSource::Files {
            dir,
            reload_interval,
        } => {
            let (cert, key) = crate::webhook::tls::cert_files(dir);
            let resolver = Reloading::load(cert, key)?;
            tasks.push(tokio::spawn(resolver.clone().watch(*reload_interval)));
            resolver
        }
        CertSource::SelfManaged(cfg) => {
            let current = crate::webhook::selfmanaged::ensure(client, cfg)
                .await
                .map_err(|e| StartError::Certificates(e.to_string()))?;
            let resolver = Reloading::from_pem(
                current.cert_pem.as_bytes(),
                current.key_pem.expose().as_bytes(),
            )?;
            tasks.push(tokio::spawn(crate::webhook::selfmanaged::maintain(
                client.clone(),
                cfg.clone(),
                resolver.clone(),
            )));
            resolver
        }
    })
}

/// Serves the admission webhook from the synced caches.
async fn serve_webhook(
    ctx: &Arc<Context>,
    resolver: &Arc<Reloading>,
    options: &WebhookOptions,
) -> Result<ServerHandle, StartError> {
    let config = resolver.server_config()?;
    let source: Arc<dyn crate::webhook::server::FactsSource> = Arc::new(ctx.admission());
    let router = crate::webhook::server::router(source, ctx.parts.metrics.webhook.clone());
    let server = crate::net::serve(&options.listen, Some(config), router).await?;
    options.serving.send_replace(Some(server.local_addr()));
    tracing::info!(address = %server.local_addr(), "admission webhook serving");
    Ok(server)
}
