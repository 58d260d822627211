//! The namespace controller: from a namespace and the integration that
//! selects it, converge its Quay organization, robots, default
//! permissions, repositories, Secrets and service-account links.

use super::context::{CachedView, Context, NsOutcome, NsState};
use super::error::Error;
use crate::config::{
    BRIDGED_LABEL, FINALIZER, IntegrationConfig, LEGACY_FINALIZER, ORGANIZATION_ANNOTATION,
};
use crate::crd::NamespaceDeletionPolicy;
use crate::plan::names::{self, Marker, REPOSITORY_DESCRIPTION};
use crate::plan::namespace::{
    KubeAction, ObservedRepository, ObservedRobot, ObservedSecret, ObservedServiceAccount,
    Ownership, QuayAction, QuayView, desired_secret, link_ops, ownership, plan_kube, plan_quay,
    secret_up_to_date,
};
use crate::plan::selection::{self, Manager};
use crate::quay::QuayClient;
use crate::quay::types::NewRobot;
use crate::secret::SecretString;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::{Api, Patch};
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use kube::{Resource, ResourceExt};
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Instant;

const CONTROLLER: &str = "namespace";

/// Reconciles one namespace.
pub async fn reconcile(ns: Arc<Namespace>, ctx: Arc<Context>) -> Result<Action, Error> {
    let name = ns.name_any();
    ctx.dequeued(&name);
    let _running = ctx.metrics.in_flight(CONTROLLER);
    let result = reconcile_inner(&ns, &ctx).await;
    ctx.metrics.reconciled(CONTROLLER, result.is_ok());
    match &result {
        Ok(_) => ctx.succeeded(&name),
        Err(e) => tracing::debug!(namespace = %name, error = %e, "namespace reconcile failed"),
    }
    result
}

/// Retries a failed namespace with its own backoff; Quay outages are
/// reported once and recovered from by the probe.
pub fn error_policy(ns: Arc<Namespace>, err: &Error, ctx: Arc<Context>) -> Action {
    let name = ns.name_any();
    ctx.metrics.failed(CONTROLLER, err.category());
    let integrations = ctx.integrations();
    if let Manager::One(cfg) = selection::manager(&integrations, &name) {
        ctx.set_outcome(
            &name,
            Some(NsOutcome {
                integrations: vec![cfg.id.clone()],
                state: NsState::Failing(err.to_string()),
            }),
        );
        let ctx2 = ctx.clone();
        let ns2 = ns.clone();
        let note = err.to_string();
        let reason = match err {
            Error::QuayDown(_) => "QuayUnavailable",
            Error::Quay(q) if q.category() == crate::quay::Category::Unavailable => {
                "QuayUnavailable"
            }
            Error::Credentials(_) => "CredentialsInvalid",
            _ => "ReconcileFailed",
        };
        tokio::spawn(async move { ctx2.event(&ns2, true, reason, note, true).await });
    }
    Action::requeue(ctx.backoff(&name))
}

fn has_finalizer(ns: &Namespace) -> bool {
    ns.finalizers()
        .iter()
        .any(|f| f == FINALIZER || f == LEGACY_FINALIZER)
}

async fn reconcile_inner(ns: &Namespace, ctx: &Arc<Context>) -> Result<Action, Error> {
    let name = ns.name_any();
    let integrations = ctx.integrations();
    let manager = selection::manager(&integrations, &name);
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
                ctx.event(ns, false, "Released", "no QuayIntegration selects this namespace any more; its Quay organization is kept".into(), true).await;
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
            ctx.set_outcome(
                &name,
                Some(NsOutcome {
                    integrations: ids,
                    state: NsState::Conflict(msg.clone()),
                }),
            );
            ctx.event(ns, true, "MultipleIntegrations", msg, true).await;
            Ok(Action::await_change())
        }
        Manager::One(cfg) => manage(ns, cfg, ctx).await,
    }
}

fn conflict(ctx: &Context, ns: &str, cfg: &IntegrationConfig, msg: String) {
    ctx.set_outcome(
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
    ctx: &Arc<Context>,
) -> Result<Action, Error> {
    let name = ns.name_any();
    let org = match names::organization(cfg, &name) {
        Ok(org) => org,
        Err(e) => {
            // Nothing will make this name valid but a change of the
            // namespace or the integration, both of which reconcile again.
            let msg = format!("cannot bridge to Quay: {e}");
            ctx.set_outcome(
                &name,
                Some(NsOutcome {
                    integrations: vec![cfg.id.clone()],
                    state: NsState::Failing(msg.clone()),
                }),
            );
            ctx.event(ns, true, "InvalidOrganizationName", msg, true)
                .await;
            return Ok(Action::await_change());
        }
    };
    ensure_namespace_metadata(ns, &org, ctx).await?;
    let client = ctx.quay(cfg).await?;
    let result = converge(ns, cfg, &org, &client, ctx).await;
    if let Err(e) = &result
        && e.quay_unavailable()
    {
        ctx.quay_failed(cfg, &client);
        ctx.views
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&name);
    }
    result
}

async fn observe(client: &QuayClient, org: &str) -> Result<QuayView, Error> {
    let prototypes = match client.list_prototypes(org).await {
        Ok(p) => p,
        Err(e) if e.is_not_found() => return Ok(QuayView::default()),
        Err(e) => return Err(e.into()),
    };
    let (robots, repos) = tokio::join!(
        client.list_robots_with(org, true, true),
        client.list_repositories(org)
    );
    Ok(QuayView::from_answers(robots?, prototypes, repos?))
}

fn image_streams(ctx: &Context, ns: &str) -> BTreeSet<String> {
    ctx.image_streams
        .as_ref()
        .map(|index| index.names(ns))
        .unwrap_or_default()
}

async fn converge(
    ns: &Namespace,
    cfg: &IntegrationConfig,
    org: &str,
    client: &QuayClient,
    ctx: &Arc<Context>,
) -> Result<Action, Error> {
    let name = ns.name_any();
    // Reuse what this operator saw and did in Quay recently, unless the
    // integration changed: only the periodic resync goes back to Quay, so a
    // burst of Kubernetes events costs no Quay request.
    let fresh_for = ctx.options.resync.mul_f64(0.9);
    let cached = {
        let views = ctx
            .views
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        views
            .get(&name)
            .filter(|c| {
                c.org == org && c.generation == cfg.generation && c.fetched.elapsed() < fresh_for
            })
            .map(|c| (c.view.clone(), c.fetched))
    };
    let from_cache = cached.is_some();
    let (mut view, fetched) = match cached {
        Some(v) => v,
        None => (observe(client, org).await?, Instant::now()),
    };
    match ownership(&view, &cfg.cluster_id, &ctx.cluster_uid) {
        Ownership::Absent | Ownership::Ours | Ownership::Empty => {}
        Ownership::Foreign if cfg.adopt => {}
        Ownership::Foreign => {
            let msg = format!(
                "Quay organization {org} exists and was not created by this operator; it is left untouched (set adoptExistingOrganizations to take it over)"
            );
            conflict(ctx, &name, cfg, msg.clone());
            ctx.event(ns, true, "OrganizationConflict", msg, true).await;
            return Ok(Action::requeue(ctx.options.resync));
        }
        Ownership::OtherCluster { cluster_uid } => {
            let msg = format!(
                "Quay organization {org} is managed by another cluster with the same clusterID {:?} (cluster UID {cluster_uid}); give each cluster its own clusterID",
                cfg.cluster_id
            );
            conflict(ctx, &name, cfg, msg.clone());
            ctx.event(ns, true, "DuplicateClusterID", msg, true).await;
            return Ok(Action::requeue(ctx.options.resync));
        }
    }
    let marker = Marker {
        cluster_id: cfg.cluster_id.clone(),
        cluster_uid: ctx.cluster_uid.clone(),
        namespace: name.clone(),
    };
    let streams = image_streams(ctx, &name);
    let actions = plan_quay(cfg, org, &marker, &view, &streams);
    let applied = apply_quay(ns, cfg, org, client, &actions, &mut view, ctx).await;
    ctx.views
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .insert(
            name.clone(),
            CachedView {
                org: org.to_owned(),
                view: view.clone(),
                fetched,
                generation: cfg.generation,
            },
        );
    applied?;

    let secrets = observed_secrets(ctx, cfg, &name);
    let accounts = observed_service_accounts(ctx, cfg, &name);
    let mut plan = plan_kube(cfg, org, &robot_tokens(&view), &secrets, &accounts);
    // A Secret about to be created or restored gets the robot's current
    // token, never one remembered from an earlier reconcile: a person may
    // have regenerated it in Quay (after a leak) since.
    if from_cache && refresh_tokens(client, org, &plan.actions, &mut view).await? {
        plan = plan_kube(cfg, org, &robot_tokens(&view), &secrets, &accounts);
        remember(ctx, &name, org, cfg, &view);
    }
    let created_secrets = apply_kube(ns, &plan.actions, ctx).await?;
    // One Event per reconcile that created something (not one per object):
    // Events are API writes, and kube-runtime keeps each one for minutes.
    if let Some(note) = bridged_note(org, &actions, &created_secrets) {
        ctx.event(ns, false, "Bridged", note, false).await;
    }
    ctx.set_outcome(
        &name,
        Some(NsOutcome {
            integrations: vec![cfg.id.clone()],
            state: NsState::Managed,
        }),
    );
    ctx.clear_report(&name, "QuayUnavailable");
    ctx.clear_report(&name, "ReconcileFailed");
    if !plan.waiting_for.is_empty() {
        tracing::debug!(namespace = %name, waiting_for = ?plan.waiting_for, "service accounts not created yet");
    }
    Ok(Action::requeue(ctx.options.resync))
}

/// The robots' tokens by short name.
fn robot_tokens(view: &QuayView) -> BTreeMap<String, SecretString> {
    view.robots
        .iter()
        .filter_map(|r| r.token.clone().map(|t| (r.short.clone(), t)))
        .collect()
}

/// Reads from Quay the current token of each robot whose Secret `actions`
/// write (one GET each) into `view`; `true` when any token changed.
async fn refresh_tokens(
    client: &QuayClient,
    org: &str,
    actions: &[KubeAction],
    view: &mut QuayView,
) -> Result<bool, Error> {
    let mut changed = false;
    for action in actions {
        let KubeAction::ApplySecret {
            service_account, ..
        } = action
        else {
            continue;
        };
        let current = client
            .get_robot(org, service_account)
            .await?
            .and_then(|r| r.token);
        if let Some(r) = view.robots.iter_mut().find(|r| &r.short == service_account) {
            let same = match (&r.token, &current) {
                (Some(a), Some(b)) => a.expose() == b.expose(),
                (None, None) => true,
                _ => false,
            };
            if !same {
                r.token = current;
                changed = true;
            }
        }
    }
    Ok(changed)
}

/// Keeps the Quay view for the next reconciles of the namespace, until
/// the resync reads Quay again.
fn remember(ctx: &Context, ns: &str, org: &str, cfg: &IntegrationConfig, view: &QuayView) {
    let mut views = ctx
        .views
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(c) = views.get_mut(ns)
        && c.org == org
        && c.generation == cfg.generation
    {
        c.view = view.clone();
    }
}

/// What a reconcile created, for its Event; `None` when it created nothing.
fn bridged_note(org: &str, quay: &[QuayAction], secrets: &[String]) -> Option<String> {
    let mut parts = Vec::new();
    if quay
        .iter()
        .any(|a| matches!(a, QuayAction::CreateOrganization))
    {
        parts.push(format!("created Quay organization {org}"));
    }
    let robots = quay
        .iter()
        .filter(|a| matches!(a, QuayAction::CreateRobot { .. }))
        .count();
    if robots > 0 {
        parts.push(format!("{robots} robot account(s)"));
    }
    let repositories = quay
        .iter()
        .filter(|a| matches!(a, QuayAction::CreateRepository { .. }))
        .count();
    if repositories > 0 {
        parts.push(format!("{repositories} repositories"));
    }
    if !secrets.is_empty() {
        parts.push(format!("Secrets {}", secrets.join(", ")));
    }
    (!parts.is_empty()).then(|| parts.join("; "))
}

/// Applies Quay actions in order, keeping `view` equal to what Quay now holds.
async fn apply_quay(
    ns: &Namespace,
    cfg: &IntegrationConfig,
    org: &str,
    client: &QuayClient,
    actions: &[QuayAction],
    view: &mut QuayView,
    ctx: &Context,
) -> Result<(), Error> {
    for action in actions {
        match action {
            QuayAction::CreateOrganization => {
                match client.create_organization(org, None).await {
                    Ok(()) => {}
                    // Created concurrently (or by someone else): look again next time.
                    Err(e) if e.is_already_exists() => {
                        ctx.views
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner)
                            .remove(&ns.name_any());
                        return Err(e.into());
                    }
                    Err(e) => return Err(e.into()),
                }
                view.exists = true;
            }
            QuayAction::CreateRobot { short, description } => {
                let robot = client
                    .create_robot(
                        org,
                        short,
                        &NewRobot {
                            description: description.clone(),
                            unstructured_metadata: None,
                        },
                    )
                    .await?;
                view.robots.retain(|r| &r.short != short);
                view.robots.push(ObservedRobot {
                    short: short.clone(),
                    marker: Marker::parse(description),
                    token: robot.token,
                    repositories: robot.repositories.into_iter().collect(),
                });
            }
            QuayAction::CreatePrototype { short, role } => {
                let p = client.create_robot_prototype(org, short, *role).await?;
                view.prototypes.push((p.id, p.role, p.delegate.name));
            }
            QuayAction::DeletePrototype { id } => {
                match client.delete_prototype(org, id).await {
                    Ok(()) => {}
                    Err(e) if e.is_not_found() => {}
                    Err(e) => return Err(e.into()),
                }
                view.prototypes.retain(|(i, _, _)| i != id);
            }
            QuayAction::CreateRepository { name } => {
                match client
                    .create_repository(org, name, cfg.visibility, REPOSITORY_DESCRIPTION)
                    .await
                {
                    Ok(()) => {}
                    Err(e) if e.is_already_exists() => {}
                    Err(e) => return Err(e.into()),
                }
                // Created by a real user: Quay applied the default permissions.
                let delegates: BTreeSet<String> =
                    view.prototypes.iter().map(|(_, _, d)| d.clone()).collect();
                for r in &mut view.robots {
                    if delegates.contains(&names::robot_account(org, &r.short)) {
                        r.repositories.insert(name.clone());
                    }
                }
                view.repositories.push(ObservedRepository {
                    name: name.clone(),
                    managed: true,
                });
            }
            QuayAction::DeleteRepository { name } => {
                client.delete_repository(org, name).await?;
                view.repositories.retain(|r| &r.name != name);
                for r in &mut view.robots {
                    r.repositories.remove(name);
                }
            }
            QuayAction::GrantRepository { repo, short, role } => {
                client
                    .set_repository_permission(org, repo, &names::robot_account(org, short), *role)
                    .await?;
                if let Some(r) = view.robots.iter_mut().find(|r| &r.short == short) {
                    r.repositories.insert(repo.clone());
                }
            }
        }
    }
    Ok(())
}

/// The configured service accounts' Secrets as cached, looked up by name:
/// a reconcile reads its own namespace's few objects, never the whole cache.
fn observed_secrets(
    ctx: &Context,
    cfg: &IntegrationConfig,
    ns: &str,
) -> BTreeMap<String, ObservedSecret> {
    cfg.service_accounts
        .iter()
        .map(|(sa, _)| names::secret_name(sa, &cfg.cluster_id))
        .filter_map(|name| ctx.secrets.get(&ObjectRef::new(&name).within(ns)))
        .map(|s| (s.name_any(), observe_secret(&s)))
        .collect()
}

/// What the plan needs of a Secret.
fn observe_secret(s: &Secret) -> ObservedSecret {
    ObservedSecret {
        type_: s.type_.clone().unwrap_or_default(),
        dockerconfigjson: s
            .data
            .as_ref()
            .and_then(|d| d.get(".dockerconfigjson"))
            .map(|b| String::from_utf8_lossy(&b.0).into_owned()),
        labels: s.labels().clone(),
        annotations: s.annotations().clone(),
    }
}

/// The configured service accounts as cached, looked up by name.
fn observed_service_accounts(
    ctx: &Context,
    cfg: &IntegrationConfig,
    ns: &str,
) -> BTreeMap<String, ObservedServiceAccount> {
    cfg.service_accounts
        .iter()
        .filter_map(|(sa, _)| ctx.service_accounts.get(&ObjectRef::new(sa).within(ns)))
        .map(|sa| {
            let secrets = sa
                .secrets
                .iter()
                .flatten()
                .filter_map(|r| r.name.clone())
                .collect();
            let pulls = sa
                .image_pull_secrets
                .iter()
                .flatten()
                .map(|r| r.name.clone())
                .collect();
            (
                sa.name_any(),
                ObservedServiceAccount {
                    secrets,
                    image_pull_secrets: pulls,
                },
            )
        })
        .collect()
}

/// How many times a guarded service-account link is retried after the
/// account changed between the read and the patch.
const LINK_ATTEMPTS: usize = 5;

/// Applies Kubernetes actions; returns the Secrets it created.
async fn apply_kube(
    ns: &Namespace,
    actions: &[KubeAction],
    ctx: &Context,
) -> Result<Vec<String>, Error> {
    let name = ns.name_any();
    let mut created = Vec::new();
    for action in actions {
        match action {
            KubeAction::ApplySecret {
                name: secret_name,
                service_account,
                payload,
            } => {
                if apply_secret(ns, secret_name, service_account, payload, ctx).await? {
                    created.push(secret_name.clone());
                }
            }
            KubeAction::LinkServiceAccount {
                service_account,
                secret,
                ..
            } => link(&name, service_account, secret, ctx).await?,
        }
    }
    Ok(created)
}

/// Creates or restores one of our Secrets; `true` when it created it.
async fn apply_secret(
    ns: &Namespace,
    secret_name: &str,
    service_account: &str,
    payload: &SecretString,
    ctx: &Context,
) -> Result<bool, Error> {
    let name = ns.name_any();
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &name);
    let existing = match ctx.secrets.get(&ObjectRef::new(secret_name).within(&name)) {
        Some(c) => Some((*c).clone()),
        // Not in the label-selected cache: it may exist without our label.
        None => secrets.get_opt(secret_name).await?,
    };
    let Some(old) = existing else {
        let desired = desired_secret(&name, secret_name, service_account, payload, None);
        secrets.create(&super::post_params(), &desired).await?;
        return Ok(true);
    };
    let observed = observe_secret(&old);
    // The plan read the cache, which may not hold a Secret written a moment
    // ago: the plan's own rule decides whether this one is already right.
    if secret_up_to_date(&observed, service_account, payload.expose()) {
        return Ok(false);
    }
    let desired = desired_secret(
        &name,
        secret_name,
        service_account,
        payload,
        Some(&observed),
    );
    if old.type_.as_deref() == Some("kubernetes.io/dockerconfigjson") {
        let mut desired = desired;
        desired.metadata.resource_version = old.metadata.resource_version.clone();
        secrets
            .replace(secret_name, &super::post_params(), &desired)
            .await?;
    } else {
        // The type of a Secret cannot change: replace it.
        secrets.delete(secret_name, &Default::default()).await?;
        secrets.create(&super::post_params(), &desired).await?;
    }
    ctx.event(
        ns,
        false,
        "SecretUpdated",
        format!("restored Secret {secret_name} for service account {service_account}"),
        false,
    )
    .await;
    Ok(false)
}

/// Links `secret` to a service account as mountable and pull secret,
/// keeping every other entry: the live account is read and a JSON patch
/// appends what is missing, guarded by its resourceVersion (the lists are
/// atomic to a strategic merge patch, so one would replace them).
async fn link(ns: &str, service_account: &str, secret: &str, ctx: &Context) -> Result<(), Error> {
    let accounts: Api<k8s_openapi::api::core::v1::ServiceAccount> =
        Api::namespaced(ctx.client.clone(), ns);
    for attempt in 1..=LINK_ATTEMPTS {
        let Some(live) = accounts.get_opt(service_account).await? else {
            return Ok(());
        };
        let mounts: Option<Vec<String>> = live
            .secrets
            .as_ref()
            .map(|l| l.iter().filter_map(|r| r.name.clone()).collect());
        let pulls: Option<Vec<String>> = live
            .image_pull_secrets
            .as_ref()
            .map(|l| l.iter().map(|r| r.name.clone()).collect());
        let ops = link_ops(
            live.metadata
                .resource_version
                .as_deref()
                .unwrap_or_default(),
            mounts.as_deref(),
            pulls.as_deref(),
            secret,
        );
        if ops.is_empty() {
            return Ok(());
        }
        let patch: json_patch::Patch = serde_json::from_value(serde_json::Value::Array(ops))
            .map_err(|e| Error::Internal(format!("service-account link patch: {e}")))?;
        match accounts
            .patch(
                service_account,
                &super::patch_params(),
                &Patch::Json::<()>(patch),
            )
            .await
        {
            Ok(_) => return Ok(()),
            // The account changed since it was read (the test failed):
            // read it again.
            Err(kube::Error::Api(s))
                if (s.code == 422 || s.code == 409) && attempt < LINK_ATTEMPTS =>
            {
                tracing::debug!(namespace = %ns, service_account, "service account changed while linking; reading it again");
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Adds our finalizer (replacing the legacy one) and the organization
/// annotation, when missing.
async fn ensure_namespace_metadata(ns: &Namespace, org: &str, ctx: &Context) -> Result<(), Error> {
    let current = ns.finalizers().to_vec();
    let mut wanted: Vec<String> = current
        .iter()
        .filter(|f| *f != LEGACY_FINALIZER)
        .cloned()
        .collect();
    if !wanted.iter().any(|f| f == FINALIZER) {
        wanted.push(FINALIZER.into());
    }
    let annotated = ns
        .annotations()
        .get(ORGANIZATION_ANNOTATION)
        .map(String::as_str)
        == Some(org);
    let labelled = ns.labels().get(BRIDGED_LABEL).map(String::as_str) == Some("true");
    if wanted == current && annotated && labelled {
        return Ok(());
    }
    let mut ops = Vec::new();
    if wanted != current {
        if ns.meta().finalizers.is_none() {
            ops.push(json!({"op": "test", "path": "/metadata/finalizers", "value": null}));
            ops.push(json!({"op": "add", "path": "/metadata/finalizers", "value": wanted}));
        } else {
            ops.push(json!({"op": "test", "path": "/metadata/finalizers", "value": current}));
            ops.push(json!({"op": "replace", "path": "/metadata/finalizers", "value": wanted}));
        }
    }
    if !annotated {
        if ns.meta().annotations.is_none() {
            ops.push(json!({"op": "add", "path": "/metadata/annotations", "value": {ORGANIZATION_ANNOTATION: org}}));
        } else {
            ops.push(json!({"op": "add", "path": format!("/metadata/annotations/{}", pointer_token(ORGANIZATION_ANNOTATION)), "value": org}));
        }
    }
    // The webhook registration selects bridged namespaces by this label.
    if !labelled {
        if ns.meta().labels.is_none() {
            ops.push(
                json!({"op": "add", "path": "/metadata/labels", "value": {BRIDGED_LABEL: "true"}}),
            );
        } else {
            ops.push(json!({"op": "add", "path": format!("/metadata/labels/{}", pointer_token(BRIDGED_LABEL)), "value": "true"}));
        }
    }
    let patch: json_patch::Patch = serde_json::from_value(serde_json::Value::Array(ops))
        .map_err(|e| Error::Internal(e.to_string()))?;
    Api::<Namespace>::all(ctx.client.clone())
        .patch(
            &ns.name_any(),
            &super::patch_params(),
            &Patch::Json::<()>(patch),
        )
        .await?;
    Ok(())
}

/// A JSON pointer token for a key (`/` and `~` escaped).
fn pointer_token(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

/// Whether the namespace still carries anything of ours to release.
fn bridged(ns: &Namespace) -> bool {
    has_finalizer(ns) || ns.labels().contains_key(BRIDGED_LABEL)
}

/// Removes our finalizers (current and legacy) and the bridged label from
/// the namespace.
async fn release(ns: &Namespace, ctx: &Context) -> Result<(), Error> {
    let current = ns.finalizers().to_vec();
    let wanted: Vec<String> = current
        .iter()
        .filter(|f| *f != FINALIZER && *f != LEGACY_FINALIZER)
        .cloned()
        .collect();
    let label = ns.labels().get(BRIDGED_LABEL);
    if wanted == current && label.is_none() {
        return Ok(());
    }
    let mut ops = Vec::new();
    if wanted != current {
        ops.push(json!({"op": "test", "path": "/metadata/finalizers", "value": current}));
        ops.push(json!({"op": "replace", "path": "/metadata/finalizers", "value": wanted}));
    }
    if let Some(value) = label {
        let path = format!("/metadata/labels/{}", pointer_token(BRIDGED_LABEL));
        ops.push(json!({"op": "test", "path": path, "value": value}));
        ops.push(json!({"op": "remove", "path": path}));
    }
    let patch: json_patch::Patch = serde_json::from_value(serde_json::Value::Array(ops))
        .map_err(|e| Error::Internal(e.to_string()))?;
    match Api::<Namespace>::all(ctx.client.clone())
        .patch(
            &ns.name_any(),
            &super::patch_params(),
            &Patch::Json::<()>(patch),
        )
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// On namespace deletion: delete the organization if the policy says so
/// and it is ours.
async fn cleanup(ns: &Namespace, cfg: &IntegrationConfig, ctx: &Arc<Context>) -> Result<(), Error> {
    let name = ns.name_any();
    let Ok(org) = names::organization(cfg, &name) else {
        return Ok(());
    };
    if cfg.namespace_deletion == NamespaceDeletionPolicy::Retain {
        ctx.event(
            ns,
            false,
            "OrganizationRetained",
            format!("namespaceDeletionPolicy is Retain: Quay organization {org} is kept"),
            false,
        )
        .await;
        return Ok(());
    }
    let client = ctx.quay(cfg).await?;
    let result = async {
        // Ownership needs only the robots' descriptions (one GET without
        // tokens or permissions); the whole organization is read only when
        // no robot carries our marker (empty, foreign, another cluster's).
        let robots = match client.list_robots_with(&org, false, false).await {
            Ok(r) => r,
            Err(e) if e.is_not_found() => return Ok(()),
            Err(e) => return Err(Error::from(e)),
        };
        let marked = QuayView::from_answers(robots, Vec::new(), Vec::new());
        let view = match ownership(&marked, &cfg.cluster_id, &ctx.cluster_uid) {
            Ownership::Ours => marked,
            _ => observe(&client, &org).await?,
        };
        match ownership(&view, &cfg.cluster_id, &ctx.cluster_uid) {
            Ownership::Absent => Ok(()),
            Ownership::Ours | Ownership::Empty => match client.delete_organization(&org).await {
                Ok(()) => {
                    ctx.event(
                        ns,
                        false,
                        "OrganizationDeleted",
                        format!("deleted Quay organization {org}"),
                        false,
                    )
                    .await;
                    Ok(())
                }
                Err(e) if e.is_not_found() => Ok(()),
                Err(e) => Err(Error::from(e)),
            },
            Ownership::Foreign if cfg.adopt => client
                .delete_organization(&org)
                .await
                .or_else(|e| if e.is_not_found() { Ok(()) } else { Err(e) })
                .map_err(Error::from),
            Ownership::Foreign | Ownership::OtherCluster { .. } => {
                ctx.event(
                    ns,
                    true,
                    "OrganizationRetained",
                    format!("Quay organization {org} is not this operator's; it is not deleted"),
                    false,
                )
                .await;
                Ok(())
            }
        }
    }
    .await;
    if let Err(e) = &result
        && e.quay_unavailable()
    {
        ctx.quay_failed(cfg, &client);
    }
    result
}
