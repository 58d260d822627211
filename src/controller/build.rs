//! The post-build import: when a Build the webhook rewrote completes, its
//! ImageStream tag is imported from Quay, once.

use super::context::Context;
use super::error::Error;
use crate::openshift::Build;
use crate::plan::import::{BuildFacts, ImportDecision, import_request, imported_annotation};
use kube::api::{Api, DynamicObject, Patch};
use kube::core::{ApiResource, GroupVersionKind};
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};
use serde_json::{Value, json};
use std::sync::Arc;

const CONTROLLER: &str = "build";

/// Imports the tag of a completed, rewritten Build.
pub async fn reconcile(build: Arc<Build>, ctx: Arc<Context>) -> Result<Action, Error> {
    let result = reconcile_inner(&build, &ctx).await;
    ctx.metrics.reconciled(CONTROLLER, result.is_ok());
    result
}

async fn reconcile_inner(build: &Build, ctx: &Arc<Context>) -> Result<Action, Error> {
    // The namespace comes from the apiserver's key for the object; the
    // decision derives everything else from it and the integration.
    let Some(ns) = build.namespace() else {
        return Ok(Action::await_change());
    };
    let output = build.spec.rest.get("output").and_then(|o| o.get("to"));
    let facts = BuildFacts {
        namespace: &ns,
        annotations: build.annotations(),
        output_kind: output.and_then(|t| t.get("kind")).and_then(Value::as_str),
        output_name: output.and_then(|t| t.get("name")).and_then(Value::as_str),
        phase: build.status.as_ref().and_then(|s| s.phase.as_deref()),
    };
    let dest = match crate::plan::import::plan_import(&facts, &ctx.integrations()) {
        ImportDecision::Skip => return Ok(Action::await_change()),
        ImportDecision::Refuse(msg) => {
            ctx.build_event(build, true, "ImportRefused", msg).await;
            return Ok(Action::await_change());
        }
        ImportDecision::Import(dest) => dest,
    };
    let image = dest.image.clone();
    let isi_api: Api<DynamicObject> = Api::namespaced_with(
        ctx.client.clone(),
        &dest.namespace,
        &ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("image.openshift.io", "v1", "ImageStreamImport"),
            "imagestreamimports",
        ),
    );
    let isi: DynamicObject = serde_json::from_value(import_request(&dest))
        .map_err(|e| Error::Internal(e.to_string()))?;
    let answer = isi_api.create(&super::post_params(), &isi).await?;
    let status = answer
        .data
        .pointer("/status/images/0/status")
        .cloned()
        .unwrap_or(Value::Null);
    if status.get("status").and_then(Value::as_str) != Some("Success") {
        let message = status
            .get("message")
            .and_then(Value::as_str)
            .unwrap_or("the import did not report success")
            .to_owned();
        ctx.build_event(
            build,
            true,
            "ImportFailed",
            format!(
                "importing {image} into {}/{}:{} failed: {message}",
                dest.namespace, dest.stream, dest.tag
            ),
        )
        .await;
        return Err(Error::Import(message));
    }
    let builds: Api<Build> = Api::namespaced(ctx.client.clone(), &ns);
    let marked = json!({"metadata": {"annotations": {imported_annotation(&dest): "true"}}});
    builds
        .patch(
            &build.name_any(),
            &super::patch_params(),
            &Patch::Merge(marked),
        )
        .await?;
    ctx.build_event(
        build,
        false,
        "ImageImported",
        format!(
            "imported {image} into {}/{}:{}",
            dest.namespace, dest.stream, dest.tag
        ),
    )
    .await;
    Ok(Action::await_change())
}

/// Retries a failed import with backoff.
pub fn error_policy(build: Arc<Build>, err: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics.failed(CONTROLLER, err.category());
    let key = format!(
        "build/{}/{}",
        build.namespace().unwrap_or_default(),
        build.name_any()
    );
    kube::runtime::controller::Action::requeue(ctx.backoff(&key))
}

impl Context {
    /// An Event on a Build.
    pub async fn build_event(&self, build: &Build, warning: bool, reason: &str, note: String) {
        self.publish(&build.object_ref(&()), warning, reason, "Import", note)
            .await;
    }
}
