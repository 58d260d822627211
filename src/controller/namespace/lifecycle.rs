//! The namespace's own metadata (finalizer, organization annotation,
//! bridged label), its release, and the organization's deletion with it.

use crate::config::{BRIDGED_LABEL, FINALIZER, IntegrationConfig, LEGACY_FINALIZER};
use crate::controller::context::Context;
use crate::controller::error::Error;
use crate::controller::patch_guarded;
use crate::crd::NamespaceDeletionPolicy;
use crate::plan::metadata::{claim_ops, release_ops};
use crate::plan::names::{self};
use crate::plan::namespace::{Ownership, QuayView, ownership};
use k8s_openapi::api::core::v1::Namespace;
use kube::api::Api;
use kube::{Resource, ResourceExt};
use std::sync::Arc;

use super::{has_finalizer, observe};

/// Adds our finalizer (replacing the legacy one), the organization
/// annotation and the bridged label, when missing, touching no other key.
pub(super) async fn ensure_namespace_metadata(
    ns: &Namespace,
    org: &str,
    ctx: &Context,
) -> Result<(), Error> {
    if claim_ops(ns.meta(), org).is_empty() {
        return Ok(());
    }
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
pub(super) async fn release(ns: &Namespace, ctx: &Context) -> Result<(), Error> {
    let release = |n: &Namespace| {
        release_ops(
            n.meta(),
            &[FINALIZER, LEGACY_FINALIZER],
            Some(BRIDGED_LABEL),
        )
    };
    if release(ns).is_empty() {
        return Ok(());
    }
    let api = Api::<Namespace>::all(ctx.client.clone());
    patch_guarded(&api, &ns.name_any(), Some(ns), release).await?;
    Ok(())
}

/// On namespace deletion: delete the organization if the policy says so
/// and it is ours.
pub(super) async fn cleanup(
    ns: &Namespace,
    cfg: &IntegrationConfig,
    ctx: &Arc<Context>,
) -> Result<(), Error> {
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
            _ => observe(&client, &org, false).await?,
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
