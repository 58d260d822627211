//! The namespace controller: from a namespace and the integration that
//! selects it, converge its Quay organization, robots, default
//! permissions, repositories, Secrets and service-account links.

mod apply;
mod cached;
mod lifecycle;
mod rotation;
mod teams;

use apply::{Tokens, apply_kube, apply_quay};
pub(crate) use cached::CachedNamespace;
use lifecycle::{bridged, cleanup, ensure_namespace_metadata, release};

use super::context::{CachedView, NamespaceContext, NsOutcome, NsState, TeamMemory};
use super::error::Error;
use crate::config::{FINALIZER, IntegrationConfig, LEGACY_FINALIZER};
use crate::plan::names::{self, Marker};
use crate::plan::namespace::{
    ObservedSecret, ObservedServiceAccount, Ownership, QuayAction, QuayView, bridged_note,
    explicitly_granted, ownership, plan_kube, plan_quay, split_for_teams, unclaimed,
};
use crate::plan::rotation::SaPlan;
use crate::plan::selection::{self, Manager};
use crate::plan::view::{self, TokenSource};
use crate::quay::QuayClient;
use crate::secret::SecretString;
use k8s_openapi::api::core::v1::Namespace;
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Instant;

const CONTROLLER: &str = "namespace";

/// Reconciles one namespace.
pub(crate) async fn reconcile(
    cached: Arc<CachedNamespace>,
    ctx: Arc<NamespaceContext>,
) -> Result<Action, Error> {
    let ns = cached.namespace();
    let name = ns.name_any();
    ctx.queue.started(&name);
    let _running = ctx.metrics.in_flight(CONTROLLER);
    let result = reconcile_inner(&ns, &ctx).await;
    ctx.metrics.reconciled(CONTROLLER, result.is_ok());
    match &result {
        Ok(_) => ctx.backoff.succeeded(&name),
        Err(e) => tracing::debug!(namespace = %name, error = %e, "namespace reconcile failed"),
    }
    result
}

/// Retries a failed namespace with its own backoff; Quay outages are
/// reported once and recovered from by the probe.
pub(crate) fn error_policy(
    cached: Arc<CachedNamespace>,
    err: &Error,
    ctx: Arc<NamespaceContext>,
) -> Action {
    let name = cached.name_any();
    ctx.metrics.failed(CONTROLLER, err.category());
    let integrations = ctx.integrations.all();
    if let Manager::One(cfg) = selection::manager(&integrations, &name) {
        ctx.outcomes.set(
            &name,
            Some(NsOutcome {
                integrations: vec![cfg.id.clone()],
                state: NsState::Failing(err.to_string()),
            }),
        );
        let ctx2 = ctx.clone();
        let ns2 = cached.namespace();
        let note = err.to_string();
        let reason = match err {
            Error::QuayDown(_) => "QuayUnavailable",
            Error::Quay(q) if q.category() == crate::quay::Category::Unavailable => {
                "QuayUnavailable"
            }
            Error::Credentials(_) => "CredentialsInvalid",
            _ => "ReconcileFailed",
        };
        ctx.term.spawn(async move {
            ctx2.events
                .on_namespace(&ns2, true, reason, note, true)
                .await
        });
    }
    Action::requeue(ctx.backoff.next(&name))
}

fn has_finalizer(ns: &Namespace) -> bool {
    ns.finalizers()
        .iter()
        .any(|f| f == FINALIZER || f == LEGACY_FINALIZER)
}

async fn reconcile_inner(ns: &Namespace, ctx: &Arc<NamespaceContext>) -> Result<Action, Error> {
    let name = ns.name_any();
    let integrations = ctx.integrations.all();
    let manager = selection::manager(&integrations, &name);
    if selection::held(&manager, &ctx.integrations.invalid(), bridged(ns)) {
        tracing::info!(namespace = %name, "held as it is while a QuayIntegration is invalid");
        return Ok(Action::await_change());
    }
    if ns.meta().deletion_timestamp.is_some() {
        if !has_finalizer(ns) {
            ctx.forget(&name);
            return Ok(Action::await_change());
        }
        if let Manager::One(cfg) = &manager {
            cleanup(ns, cfg, ctx).await?;
        }
        release(ns, ctx).await?;
        ctx.forget(&name);
        return Ok(Action::await_change());
    }
    match manager {
        Manager::None => {
            if bridged(ns) {
                // No longer selected: let the namespace go, keep the organization.
                release(ns, ctx).await?;
                ctx.events.on_namespace(ns, false, "Released", "no QuayIntegration selects this namespace any more; its Quay organization is kept".into(), true).await;
            }
            ctx.forget(&name);
            Ok(Action::await_change())
        }
        Manager::Conflict(ids) => {
            let list = ids
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ");
            let msg = format!("selected by several QuayIntegrations ({list}); left alone");
            ctx.outcomes.set(
                &name,
                Some(NsOutcome {
                    integrations: ids,
                    state: NsState::Conflict(msg.clone()),
                }),
            );
            ctx.events
                .on_namespace(ns, true, "MultipleIntegrations", msg, true)
                .await;
            Ok(Action::await_change())
        }
        Manager::One(cfg) => manage(ns, cfg, ctx).await,
    }
}

fn conflict(ctx: &NamespaceContext, ns: &str, cfg: &IntegrationConfig, msg: String) {
    ctx.outcomes.set(
        ns,
        Some(NsOutcome {
            integrations: vec![cfg.id.clone()],
            state: NsState::Conflict(msg),
        }),
    );
}

async fn manage(
    ns: &Namespace,
    cfg: &IntegrationConfig,
    ctx: &Arc<NamespaceContext>,
) -> Result<Action, Error> {
    let name = ns.name_any();
    let org = match names::organization(cfg, &name) {
        Ok(org) => org,
        Err(e) => {
            // Nothing will make this name valid but a change of the
            // namespace or the integration, both of which reconcile again.
            let msg = format!("cannot bridge to Quay: {e}");
            ctx.outcomes.set(
                &name,
                Some(NsOutcome {
                    integrations: vec![cfg.id.clone()],
                    state: NsState::Failing(msg.clone()),
                }),
            );
            ctx.events
                .on_namespace(ns, true, "InvalidOrganizationName", msg, true)
                .await;
            return Ok(Action::await_change());
        }
    };
    ensure_namespace_metadata(ns, &org, ctx).await?;
    let client = ctx.quay.client(cfg).await?;
    let result = converge(ns, cfg, &org, &client, ctx).await;
    if let Err(e) = &result {
        if e.quay_unavailable() {
            ctx.quay.failed(cfg, &client);
        }
        if !view::kept_after(e.failure()) {
            ctx.views.drop_view(&name);
        }
    }
    result
}

async fn observe(client: &QuayClient, org: &str, team_sync: bool) -> Result<QuayView, Error> {
    let prototypes = match client.list_prototypes(org).await {
        Ok(p) => p,
        Err(e) if e.is_not_found() => return Ok(QuayView::default()),
        // Quay answers a user who is not a superuser 403 for an
        // organization that does not exist as for one it may not
        // administer; the organization itself (readable by anyone) tells.
        Err(e) if e.missing_scope().is_some() => {
            return match client.get_organization(org).await? {
                None => Ok(QuayView::default()),
                Some(_) => Err(Error::Quay(e)),
            };
        }
        Err(e) => return Err(e.into()),
    };
    let (robots, repos, teams) = tokio::join!(
        client.list_robots_with(org, true, true),
        client.list_repositories(org),
        async {
            if team_sync {
                teams::observe(client, org).await.map(Some)
            } else {
                Ok(None)
            }
        }
    );
    let mut view = QuayView::from_answers(robots?, prototypes, repos?);
    if let Some(teams) = teams? {
        view.teams.teams = teams;
    }
    Ok(view)
}

fn image_streams(ctx: &NamespaceContext, ns: &str) -> BTreeSet<String> {
    ctx.caches
        .image_streams
        .as_ref()
        .map(|index| index.names(ns))
        .unwrap_or_default()
}

/// One namespace's reconcile: what every step of it needs.
pub(super) struct Scope<'a> {
    /// The namespace.
    pub ns: &'a Namespace,
    /// The namespace's name (owned: events and caches key by it).
    pub name: String,
    /// The integration managing it.
    pub cfg: &'a IntegrationConfig,
    /// Its organization: the recorded one, or the computed name.
    pub org: &'a str,
    /// The integration's Quay client.
    pub client: &'a QuayClient,
    /// The marker of what this operator makes for the namespace.
    pub marker: Marker,
    /// Shared state.
    pub ctx: &'a Arc<NamespaceContext>,
}

/// A view of the namespace's organization, and where it came from.
struct ReadView {
    view: QuayView,
    fetched: Instant,
    from_cache: bool,
}

async fn converge(
    ns: &Namespace,
    cfg: &IntegrationConfig,
    org: &str,
    client: &QuayClient,
    ctx: &Arc<NamespaceContext>,
) -> Result<Action, Error> {
    let name = ns.name_any();
    let marker = Marker {
        cluster_id: cfg.cluster_id.clone(),
        cluster_uid: ctx.cluster_uid.clone(),
        namespace: name.clone(),
    };
    let s = Scope {
        ns,
        name,
        cfg,
        org,
        client,
        marker,
        ctx,
    };
    let ReadView {
        mut view,
        fetched,
        from_cache,
    } = read_view(&s).await?;
    if let Some((msg, reason)) = foreign_owner(&s, &view).await? {
        conflict(ctx, &s.name, cfg, msg.clone());
        ctx.events.on_namespace(ns, true, reason, msg, true).await;
        return Ok(Action::await_change());
    }
    let secrets = observed_secrets(ctx, cfg, &s.name);
    let robots = rotation::robot_plans(&s, &view, &secrets);
    let actions = plan_quay(
        cfg,
        org,
        &s.marker,
        &view,
        &image_streams(ctx, &s.name),
        &robots,
    );
    let team_report = apply_quay_and_teams(&s, &actions, &mut view).await;
    ctx.views.store(
        &s.name,
        CachedView {
            org: org.to_owned(),
            view: view.clone(),
            fetched,
            generation: cfg.generation,
        },
    );
    ctx.views.remember_teams(
        &s.name,
        TeamMemory {
            invited: view.teams.invited.clone(),
            reported: view.teams.reported.clone(),
            report: team_report.as_ref().ok().cloned().flatten(),
        },
    );
    team_report?;
    let applied = converge_kube(&s, &mut view, from_cache, &robots, &secrets).await?;
    rotation::record(&s, &robots).await;
    let action = report(&s, &actions, applied).await?;
    Ok(match rotation::requeue_in(&s, &robots) {
        Some(d) if d < ctx.options.resync => Action::requeue(d),
        _ => action,
    })
}

/// The namespace's organization as cached (a hint, until the resync or an
/// answer that contradicts it), or read from Quay. A cached view missing
/// a managed team is not used: a team is created only after a fresh read
/// shows it absent.
async fn read_view(s: &Scope<'_>) -> Result<ReadView, Error> {
    let cached = cached_view(s.ctx, &s.name, s.org, s.cfg)
        .filter(|(kept, _)| view::usable(&kept.teams, s.cfg.team_sync.as_ref()));
    Ok(match cached {
        Some((view, fetched)) => ReadView {
            view,
            fetched,
            from_cache: true,
        },
        None => {
            let mut view = observe(s.client, s.org, s.cfg.team_sync.is_some()).await?;
            teams::carry_over(s.ctx, &s.name, &mut view);
            ReadView {
                view,
                fetched: Instant::now(),
                from_cache: false,
            }
        }
    })
}

/// Why the organization is left alone (message, Event reason), or `None`
/// when it is this operator's to manage. An organization holding nothing
/// is checked for a person's team or member first.
async fn foreign_owner(
    s: &Scope<'_>,
    view: &QuayView,
) -> Result<Option<(String, &'static str)>, Error> {
    let mut owner = ownership(view, &s.cfg.cluster_id, &s.ctx.cluster_uid, &s.name);
    if owner == Ownership::Empty && !unclaimed_by_anyone(s.client, s.org).await? {
        owner = Ownership::Foreign;
    }
    Ok(not_ours(&owner, s.cfg, s.org))
}

/// Applies the Quay plan around team sync (`plan::namespace::split_for_teams`),
/// keeping `view` equal to what Quay holds; team sync's counts when on.
async fn apply_quay_and_teams(
    s: &Scope<'_>,
    actions: &[QuayAction],
    view: &mut QuayView,
) -> Result<Option<crate::crd::TeamSyncStatus>, Error> {
    let (first, last) = split_for_teams(actions, s.cfg.team_sync.is_some());
    apply_quay(s, &first, view).await?;
    let Some(ts) = &s.cfg.team_sync else {
        return Ok(None);
    };
    let report = teams::sync(s, ts, view, &explicitly_granted(&last)).await?;
    apply_quay(s, &last, view).await?;
    Ok(Some(report))
}

/// The namespace's Secrets and service-account links.
async fn converge_kube(
    s: &Scope<'_>,
    view: &mut QuayView,
    from_cache: bool,
    robots: &[SaPlan],
    secrets: &BTreeMap<String, ObservedSecret>,
) -> Result<apply::Applied, Error> {
    let accounts = observed_service_accounts(s.ctx, s.cfg, &s.name);
    let plan = plan_kube(
        s.cfg,
        s.org,
        &robot_tokens(view, robots),
        secrets,
        &accounts,
    );
    if !plan.waiting_for.is_empty() {
        tracing::debug!(namespace = %s.name, waiting_for = ?plan.waiting_for, "service accounts not created yet");
    }
    let tokens = match view::token_source(from_cache) {
        TokenSource::ReadAgain => Tokens::Reread {
            client: s.client,
            cfg: s.cfg,
            org: s.org,
        },
        TokenSource::View => Tokens::Fresh,
    };
    let applied = apply_kube(s.ns, &plan.actions, &tokens, s.ctx).await?;
    if !applied.refreshed.is_empty() {
        for (robot, token) in &applied.refreshed {
            if let Some(r) = view.robots.iter_mut().find(|r| &r.short == robot) {
                r.token = Some(token.clone());
            }
        }
        remember(s.ctx, &s.name, s.org, s.cfg, view);
    }
    Ok(applied)
}

/// Reports the reconcile: one Event if it created something, a conflict
/// for a user's Secret of our name, else the namespace as managed.
async fn report(
    s: &Scope<'_>,
    actions: &[QuayAction],
    applied: apply::Applied,
) -> Result<Action, Error> {
    let ctx = s.ctx;
    // One Event per reconcile that created something (not one per object):
    // Events are API writes, and kube-runtime keeps each one for minutes.
    if let Some(note) = bridged_note(s.org, actions, &applied.created) {
        ctx.events
            .on_namespace(s.ns, false, "Bridged", note, false)
            .await;
    }
    if !applied.foreign.is_empty() {
        let msg = format!(
            "Secret(s) {} exist without the label {}={}: they are not this operator's and are left as they are, unlinked; rename or delete them to let the operator create its own",
            applied.foreign.join(", "),
            crate::config::MANAGED_BY_LABEL,
            crate::config::MANAGED_BY
        );
        conflict(ctx, &s.name, s.cfg, msg.clone());
        ctx.events
            .on_namespace(s.ns, true, "SecretConflict", msg, true)
            .await;
        return Ok(Action::await_change());
    }
    ctx.outcomes.set(
        &s.name,
        Some(NsOutcome {
            integrations: vec![s.cfg.id.clone()],
            state: NsState::Managed,
        }),
    );
    ctx.events.clear_report(&s.name, "QuayUnavailable");
    ctx.events.clear_report(&s.name, "ReconcileFailed");
    // The periodic resync comes from its slot (`plan::resync`), not from
    // a timer per namespace.
    Ok(Action::await_change())
}

/// What this operator saw and did in Quay recently for the namespace,
/// unless the integration changed since: only the periodic resync goes
/// back to Quay, so a burst of Kubernetes events costs no Quay request.
fn cached_view(
    ctx: &NamespaceContext,
    namespace: &str,
    org: &str,
    cfg: &IntegrationConfig,
) -> Option<(QuayView, Instant)> {
    ctx.views.get(namespace, org, cfg.generation)
}

/// Whether an organization without robots, repositories or default
/// permissions has no team but `owners` and no member but the token's own
/// user (see `plan::namespace::unclaimed`): three reads, made only for an
/// organization that carries no marker.
async fn unclaimed_by_anyone(client: &QuayClient, org: &str) -> Result<bool, Error> {
    let (teams, me) = tokio::join!(teams::observe(client, org), client.current_user());
    Ok(unclaimed(&teams?, &me?.username))
}

/// Why an organization is left alone (message, Event reason), or `None`
/// when it is this operator's to manage.
fn not_ours(
    owner: &Ownership,
    cfg: &IntegrationConfig,
    org: &str,
) -> Option<(String, &'static str)> {
    match owner {
        Ownership::Absent | Ownership::Ours | Ownership::Empty => None,
        Ownership::Foreign if cfg.adopt => None,
        Ownership::Foreign => Some((
            format!(
                "Quay organization {org} exists and was not created by this operator; it is left untouched (set adoptExistingOrganizations to take it over)"
            ),
            "OrganizationConflict",
        )),
        Ownership::OtherCluster { cluster_uid } => Some((
            format!(
                "Quay organization {org} is managed by another cluster with the same clusterID {:?} (cluster UID {cluster_uid}); give each cluster its own clusterID",
                cfg.cluster_id
            ),
            "DuplicateClusterID",
        )),
        Ownership::OtherNamespace { namespace } => Some((
            format!(
                "Quay organization {org} was created by this operator for namespace {namespace}; it is left untouched"
            ),
            "OrganizationConflict",
        )),
    }
}

/// The robots' tokens by short name.
/// Per service account, the robot its Secret carries and that robot's
/// token (when Quay showed it).
fn robot_tokens(view: &QuayView, robots: &[SaPlan]) -> BTreeMap<String, (String, SecretString)> {
    robots
        .iter()
        .filter_map(|p| {
            let token = view
                .robots
                .iter()
                .find(|r| r.short == p.secret_robot)?
                .token
                .clone()?;
            Some((p.sa.clone(), (p.secret_robot.clone(), token)))
        })
        .collect()
}

/// Keeps the Quay view for the next reconciles of the namespace, until
/// the resync reads Quay again.
fn remember(ctx: &NamespaceContext, ns: &str, org: &str, cfg: &IntegrationConfig, view: &QuayView) {
    ctx.views.update(ns, org, cfg.generation, view);
}

/// The configured service accounts' Secrets as cached, looked up by name:
/// a reconcile reads its own namespace's few entries, never the whole cache.
fn observed_secrets(
    ctx: &NamespaceContext,
    cfg: &IntegrationConfig,
    ns: &str,
) -> BTreeMap<String, ObservedSecret> {
    cfg.service_accounts
        .iter()
        .map(|(sa, _)| names::secret_name(sa, &cfg.cluster_id))
        .filter_map(|name| ctx.caches.secrets.get(ns, &name).map(|s| (name, s)))
        .collect()
}

/// The configured service accounts as cached, looked up by name.
fn observed_service_accounts(
    ctx: &NamespaceContext,
    cfg: &IntegrationConfig,
    ns: &str,
) -> BTreeMap<String, ObservedServiceAccount> {
    cfg.service_accounts
        .iter()
        .filter_map(|(sa, _)| {
            ctx.caches
                .service_accounts
                .get(ns, sa)
                .map(|o| (sa.clone(), o))
        })
        .collect()
}
