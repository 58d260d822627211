//! Applying a namespace's plan: Quay actions in order, then its Secrets
//! and service-account links.

use crate::config::IntegrationConfig;
use crate::controller::context::NamespaceContext;
use crate::controller::error::Error;
use crate::plan::names::{self, Marker, REPOSITORY_DESCRIPTION};
use crate::plan::namespace::{
    KubeAction, ObservedRepository, ObservedRobot, ObservedSecret, QuayAction, QuayView,
    desired_secret, link_ops, secret_is_ours, secret_payload, secret_up_to_date,
};
use crate::quay::QuayClient;
use crate::quay::types::NewRobot;
use crate::secret::SecretString;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::ResourceExt;
use kube::api::Api;
use std::collections::BTreeSet;

use super::Scope;
use crate::controller::patch_guarded;

/// Applies Quay actions in order, keeping `view` equal to what Quay now holds.
pub(super) async fn apply_quay(
    s: &Scope<'_>,
    actions: &[QuayAction],
    view: &mut QuayView,
) -> Result<(), Error> {
    for action in actions {
        match action {
            QuayAction::CreateOrganization => create_organization(s, view).await?,
            QuayAction::CreateRobot { .. }
            | QuayAction::DeleteRobot { .. }
            | QuayAction::CreatePrototype { .. }
            | QuayAction::DeletePrototype { .. } => apply_robot_action(s, action, view).await?,
            QuayAction::CreateRepository { .. }
            | QuayAction::DeleteRepository { .. }
            | QuayAction::GrantRepository { .. } => {
                apply_repository_action(s, action, view).await?;
            }
        }
    }
    Ok(())
}

async fn create_organization(s: &Scope<'_>, view: &mut QuayView) -> Result<(), Error> {
    match s.client.create_organization(s.org, None).await {
        Ok(()) => {}
        // Created concurrently (or by someone else): look again next time.
        Err(e) if e.is_already_exists() => {
            s.ctx.views.drop_view(&s.name);
            return Err(e.into());
        }
        Err(e) => return Err(e.into()),
    }
    view.exists = true;
    Ok(())
}

/// Robots and their default permissions.
async fn apply_robot_action(
    s: &Scope<'_>,
    action: &QuayAction,
    view: &mut QuayView,
) -> Result<(), Error> {
    let (org, client) = (s.org, s.client);
    match action {
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
                created: Some(
                    robot
                        .created
                        .as_deref()
                        .and_then(crate::plan::namespace::quay_date)
                        .unwrap_or_else(jiff::Timestamp::now),
                ),
                token: robot.token,
                repositories: robot.repositories.into_iter().collect(),
            });
        }
        QuayAction::DeleteRobot { short } => {
            match client.delete_robot(org, short).await {
                Ok(()) => {}
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e.into()),
            }
            // Quay deletes its permissions and default permissions too.
            let delegate = names::robot_account(org, short);
            view.robots.retain(|r| &r.short != short);
            view.prototypes.retain(|(_, _, d)| d != &delegate);
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
        _ => {}
    }
    Ok(())
}

/// Repositories and explicit grants on them.
async fn apply_repository_action(
    s: &Scope<'_>,
    action: &QuayAction,
    view: &mut QuayView,
) -> Result<(), Error> {
    let (cfg, org, client) = (s.cfg, s.org, s.client);
    match action {
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
        _ => {}
    }
    Ok(())
}

/// Where a Secret's token comes from when the Secret must be written.
pub(super) enum Tokens<'a> {
    /// The view was read from Quay in this reconcile: its tokens are current.
    Fresh,
    /// The view was cached: ask Quay for the robot's current token first.
    Reread {
        client: &'a QuayClient,
        cfg: &'a IntegrationConfig,
        org: &'a str,
    },
}

/// What applying the Kubernetes actions did.
pub(super) struct Applied {
    /// Secrets created.
    pub created: Vec<String>,
    /// Robot tokens read again from Quay, by robot.
    pub refreshed: Vec<(String, SecretString)>,
    /// Secrets named like ours that are a user's: left alone, not linked.
    pub foreign: Vec<String>,
}

/// What became of one of our Secrets.
enum SecretOutcome {
    /// Created.
    Created,
    /// Already right, or restored in place.
    Kept,
    /// A Secret of that name without our label: a user's, left alone.
    Foreign,
}

/// Applies Kubernetes actions.
pub(super) async fn apply_kube(
    ns: &Namespace,
    actions: &[KubeAction],
    tokens: &Tokens<'_>,
    ctx: &NamespaceContext,
) -> Result<Applied, Error> {
    let name = ns.name_any();
    let mut applied = Applied {
        created: Vec::new(),
        refreshed: Vec::new(),
        foreign: Vec::new(),
    };
    for action in actions {
        match action {
            KubeAction::ApplySecret {
                name: secret_name,
                service_account,
                robot,
                payload,
            } => {
                let secret = SecretToApply {
                    name: secret_name,
                    service_account,
                    robot,
                    payload,
                };
                let (outcome, refreshed) = apply_secret(ns, &secret, tokens, ctx).await?;
                match outcome {
                    SecretOutcome::Created => applied.created.push(secret_name.clone()),
                    SecretOutcome::Foreign => applied.foreign.push(secret_name.clone()),
                    SecretOutcome::Kept => {}
                }
                if let Some(token) = refreshed {
                    applied.refreshed.push((robot.clone(), token));
                }
            }
            // A user's Secret of our name is never linked for them.
            KubeAction::LinkServiceAccount { secret, .. } if applied.foreign.contains(secret) => {}
            KubeAction::LinkServiceAccount {
                service_account,
                secret,
                ..
            } => link(&name, service_account, secret, ctx).await?,
        }
    }
    Ok(applied)
}

struct SecretToApply<'a> {
    name: &'a str,
    service_account: &'a str,
    robot: &'a str,
    payload: &'a SecretString,
}

/// The payload to write: the planned one, or, from a cached view, one with
/// the robot's current token read from Quay (a robot gone is `Stale`: the
/// view is dropped and the retry recreates it).
async fn current_payload(
    secret: &SecretToApply<'_>,
    tokens: &Tokens<'_>,
) -> Result<Option<(SecretString, Option<SecretString>)>, Error> {
    match tokens {
        Tokens::Fresh => Ok(Some((secret.payload.clone(), None))),
        Tokens::Reread { client, cfg, org } => {
            // The view held this robot: its absence contradicts it.
            let Some(token) = client
                .get_robot(org, secret.robot)
                .await?
                .and_then(|r| r.token)
            else {
                return Err(Error::Stale(format!(
                    "robot {} is gone",
                    names::robot_account(org, secret.robot)
                )));
            };
            let payload = secret_payload(cfg, org, secret.robot, &token);
            Ok(Some((SecretString::new(payload), Some(token))))
        }
    }
}

/// Creates or restores one of our Secrets: what became of it, and the
/// token it read again from Quay.
async fn apply_secret(
    ns: &Namespace,
    secret: &SecretToApply<'_>,
    tokens: &Tokens<'_>,
    ctx: &NamespaceContext,
) -> Result<(SecretOutcome, Option<SecretString>), Error> {
    let name = ns.name_any();
    let (secret_name, service_account) = (secret.name, secret.service_account);
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &name);
    // The cache holds what the plan compares: enough to keep a Secret that
    // is right without a request.
    if ctx
        .caches
        .secrets
        .read(&name, secret_name, |o| {
            secret_up_to_date(o, service_account, secret.payload.expose())
        })
        .unwrap_or(false)
    {
        return Ok((SecretOutcome::Kept, None));
    }
    // A write may follow: read the live Secret (the cache may be behind, or
    // not hold it: it may exist without our label), whose other labels and
    // annotations a replace keeps.
    let live = secrets.get_opt(secret_name).await?;
    let observed = live.as_ref().map(ObservedSecret::of);
    if observed.as_ref().is_some_and(|o| !secret_is_ours(o)) {
        return Ok((SecretOutcome::Foreign, None));
    }
    if observed
        .as_ref()
        .is_some_and(|o| secret_up_to_date(o, service_account, secret.payload.expose()))
    {
        return Ok((SecretOutcome::Kept, None));
    }
    let Some((payload, refreshed)) = current_payload(secret, tokens).await? else {
        return Ok((SecretOutcome::Kept, None));
    };
    let Some((live, observed)) = live.zip(observed) else {
        let desired = desired_secret(&name, secret_name, service_account, &payload, None);
        secrets
            .create(&crate::controller::post_params(), &desired)
            .await?;
        return Ok((SecretOutcome::Created, refreshed));
    };
    if secret_up_to_date(&observed, service_account, payload.expose()) {
        return Ok((SecretOutcome::Kept, refreshed));
    }
    let desired = desired_secret(
        &name,
        secret_name,
        service_account,
        &payload,
        Some(&live.metadata),
    );
    if observed.dockerconfigjson_type {
        let mut desired = desired;
        desired.metadata.resource_version = observed.resource_version.as_deref().map(str::to_owned);
        secrets
            .replace(secret_name, &crate::controller::post_params(), &desired)
            .await?;
    } else {
        // The type of a Secret cannot change: replace it.
        secrets.delete(secret_name, &Default::default()).await?;
        secrets
            .create(&crate::controller::post_params(), &desired)
            .await?;
    }
    ctx.events
        .on_namespace(
            ns,
            false,
            "SecretUpdated",
            format!("restored Secret {secret_name} for service account {service_account}"),
            false,
        )
        .await;
    Ok((SecretOutcome::Kept, refreshed))
}

/// Links `secret` to a service account as mountable and pull secret,
/// keeping every other entry: the live account is read and a JSON patch
/// appends what is missing, guarded by its resourceVersion (the lists are
/// atomic to a strategic merge patch, so one would replace them); if the
/// account changed in between, it is read again.
async fn link(
    ns: &str,
    service_account: &str,
    secret: &str,
    ctx: &NamespaceContext,
) -> Result<(), Error> {
    let accounts: Api<k8s_openapi::api::core::v1::ServiceAccount> =
        Api::namespaced(ctx.client.clone(), ns);
    patch_guarded(&accounts, service_account, None, |live| {
        let mounts: Option<Vec<String>> = live
            .secrets
            .as_ref()
            .map(|l| l.iter().filter_map(|r| r.name.clone()).collect());
        let pulls: Option<Vec<String>> = live
            .image_pull_secrets
            .as_ref()
            .map(|l| l.iter().map(|r| r.name.clone()).collect());
        link_ops(
            live.metadata
                .resource_version
                .as_deref()
                .unwrap_or_default(),
            mounts.as_deref(),
            pulls.as_deref(),
            secret,
        )
    })
    .await?;
    Ok(())
}
