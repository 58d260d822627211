//! The namespace's own metadata (finalizer, organization annotation,
//! bridged label), its release, and the organization's deletion with it.

use crate::config::{
    BRIDGED_LABEL, FINALIZER, IntegrationConfig, LEGACY_FINALIZER, ORGANIZATION_ANNOTATION,
};
use crate::controller::context::Context;
use crate::controller::error::Error;
use crate::crd::NamespaceDeletionPolicy;
use crate::plan::names::{self};
use crate::plan::namespace::{Ownership, QuayView, ownership};
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, Patch};
use kube::{Resource, ResourceExt};
use serde_json::json;
use std::sync::Arc;

use super::{has_finalizer, observe};

/// Adds our finalizer (replacing the legacy one) and the organization
/// annotation, when missing.
pub(super) async fn ensure_namespace_metadata(
    ns: &Namespace,
    org: &str,
    ctx: &Context,
) -> Result<(), Error> {
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
            &crate::controller::patch_params(),
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
pub(super) fn bridged(ns: &Namespace) -> bool {
    has_finalizer(ns) || ns.labels().contains_key(BRIDGED_LABEL)
}

/// Removes our finalizers (current and legacy) and the bridged label from
/// the namespace.
pub(super) async fn release(ns: &Namespace, ctx: &Context) -> Result<(), Error> {
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
            &crate::controller::patch_params(),
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
