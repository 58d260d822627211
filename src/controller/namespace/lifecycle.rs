//! The namespace's own metadata (finalizer, organization annotation,
//! bridged label), its release, and the organization's deletion with it.

use crate::config::{
    BRIDGED_LABEL, FINALIZER, IntegrationConfig, LEGACY_FINALIZER, ORGANIZATION_ANNOTATION,
};
use crate::controller::context::NamespaceContext;
use crate::controller::error::Error;
use crate::controller::patch_guarded;
use crate::crd::NamespaceDeletionPolicy;
use crate::plan::metadata::{claim_ops, release_ops};
use crate::plan::names::{self, Marker};
use crate::plan::namespace::{OnDeletion, QuayView, on_deletion, recorded_organization};
use k8s_openapi::api::core::v1::Namespace;
use kube::api::Api;
use kube::{Resource, ResourceExt};
use std::sync::Arc;

use super::has_finalizer;

/// Adds our finalizer (replacing the legacy one), the organization
/// annotation and the bridged label, when missing, touching no other key.
pub(super) async fn ensure_namespace_metadata(
    ns: &Namespace,
    org: &str,
    ctx: &NamespaceContext,
) -> Result<(), Error> {
    let api = Api::<Namespace>::all(ctx.client.clone());
    patch_guarded(&api, &ns.name_any(), Some(ns), |live| {
        claim_ops(live.meta(), org)
    })
    .await?;
    Ok(())
}

/// Whether the namespace still carries anything of ours to release.
pub(super) fn bridged(ns: &Namespace) -> bool {
    has_finalizer(ns) || ns.labels().contains_key(BRIDGED_LABEL)
}

/// Removes our finalizers (current and legacy) and the bridged label from
/// the namespace.
pub(super) async fn release(ns: &Namespace, ctx: &NamespaceContext) -> Result<(), Error> {
    let release = |n: &Namespace| {
        release_ops(
            n.meta(),
            &[FINALIZER, LEGACY_FINALIZER],
            Some(BRIDGED_LABEL),
        )
    };
    let api = Api::<Namespace>::all(ctx.client.clone());
    patch_guarded(&api, &ns.name_any(), Some(ns), release).await?;
    Ok(())
}

/// On namespace deletion: delete the organization recorded on the
/// namespace if the policy says so and `plan::namespace::on_deletion`
/// finds it ours, for this namespace, holding nothing foreign.
pub(super) async fn cleanup(
    ns: &Namespace,
    cfg: &IntegrationConfig,
    ctx: &Arc<NamespaceContext>,
) -> Result<(), Error> {
    let name = ns.name_any();
    let recorded = ns
        .annotations()
        .get(ORGANIZATION_ANNOTATION)
        .map(String::as_str);
    let Some(org) = recorded_organization(recorded, names::organization(cfg, &name).ok()) else {
        return Ok(());
    };
    if cfg.namespace_deletion == NamespaceDeletionPolicy::Retain {
        ctx.events
            .on_namespace(
                ns,
                false,
                "OrganizationRetained",
                format!("namespaceDeletionPolicy is Retain: Quay organization {org} is kept"),
                false,
            )
            .await;
        return Ok(());
    }
    let client = ctx.quay.client(cfg).await?;
    let marker = Marker {
        cluster_id: cfg.cluster_id.clone(),
        cluster_uid: ctx.cluster_uid.clone(),
        namespace: name.clone(),
    };
    let result = async {
        // What it holds: robots' descriptions (no tokens or permissions),
        // repositories and teams, read together.
        let (robots, repositories, organization) = tokio::join!(
            client.list_robots_with(&org, false, false),
            client.list_repositories(&org),
            client.get_organization(&org)
        );
        let robots = match robots {
            Ok(r) => r,
            Err(e) if e.is_not_found() => return Ok(()),
            Err(e) => return Err(Error::from(e)),
        };
        let mut view = QuayView::from_answers(robots, Vec::new(), repositories?);
        view.teams.teams = super::teams::teams_of(organization?);
        match on_deletion(&view, &marker, &org) {
            OnDeletion::Gone => Ok(()),
            OnDeletion::Delete => match client.delete_organization(&org).await {
                Ok(()) => {
                    ctx.events
                        .on_namespace(
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
            OnDeletion::Keep(why) => {
                ctx.events
                    .on_namespace(ns, true, "OrganizationRetained", why, false)
                    .await;
                Ok(())
            }
        }
    }
    .await;
    if let Err(e) = &result
        && e.quay_unavailable()
    {
        ctx.quay.failed(cfg, &client);
    }
    result
}
