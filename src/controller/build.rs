//! The Build controller. When a Build the webhook rewrote completes, its
//! ImageStream tag is imported from Quay, once. A Build that escaped the
//! webhook (created while the operator was unreachable, under a webhook
//! that fails open) is reported, and rebuilt when the integration opts in.

use super::context::BuildContext;
use super::error::Error;
use crate::openshift::Build;
use crate::plan::escape::{Admission, EscapeDecision, EscapeFacts, plan_escape};
use crate::plan::import::{BuildFacts, ImportDecision, import_request, imported_annotation};
use crate::webhook::decision::Decision;
use kube::api::{Api, DynamicObject, Patch};
use kube::core::{ApiResource, GroupVersionKind};
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};
use serde_json::{Value, json};
use std::sync::Arc;

const CONTROLLER: &str = "build";

/// Imports the tag of a completed, rewritten Build.
pub(crate) async fn reconcile(build: Arc<Build>, ctx: Arc<BuildContext>) -> Result<Action, Error> {
    let result = reconcile_inner(&build, &ctx).await;
    ctx.metrics.reconciled(CONTROLLER, result.is_ok());
    result
}

async fn reconcile_inner(build: &Build, ctx: &Arc<BuildContext>) -> Result<Action, Error> {
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
    let dest = match crate::plan::import::plan_import(&facts, &ctx.integrations.all()) {
        ImportDecision::Skip => return escape(build, &ns, ctx).await,
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

/// What the webhook would answer for this Build now (its push secret
/// taken as linked: the question is whether it escaped, not whether it
/// could have been admitted a moment ago).
fn admission(
    build: &Build,
    ns: &str,
    integrations: &[crate::config::IntegrationConfig],
) -> Admission {
    struct Now<'a>(&'a [crate::config::IntegrationConfig]);
    impl crate::webhook::decision::Facts for Now<'_> {
        fn integrations(&self) -> &[crate::config::IntegrationConfig] {
            self.0
        }
        fn secret_linked(&self, _: &str, _: &str, _: &str) -> bool {
            true
        }
    }
    let request = json!({
        "operation": "CREATE",
        "namespace": ns,
        "resource": {"group": "build.openshift.io", "version": "v1", "resource": "builds"},
        "object": build,
    });
    match crate::webhook::decision::decide(&request, &Now(integrations)) {
        Decision::Allow => Admission::Pass,
        Decision::Patch(_) => Admission::Rewrite,
        Decision::Deny(_) => Admission::Refuse,
    }
}

/// Finds a Build that escaped the webhook: reports it once, and starts it
/// again from its BuildConfig and cancels it when the integration opts in.
async fn escape(build: &Build, ns: &str, ctx: &Arc<BuildContext>) -> Result<Action, Error> {
    let integrations = ctx.integrations.all();
    let status = build.status.as_ref();
    let facts = EscapeFacts {
        namespace: ns,
        annotations: build.annotations(),
        phase: status.and_then(|s| s.phase.as_deref()),
        cancelled: status
            .and_then(|s| s.rest.get("cancelled"))
            .and_then(Value::as_bool)
            .unwrap_or(false),
        build_config: status
            .and_then(|s| s.rest.get("config"))
            .and_then(|c| c.get("name"))
            .and_then(Value::as_str),
        admission: admission(build, ns, &integrations),
    };
    let name = build.name_any();
    let decision = plan_escape(&facts, &integrations);
    let Some(integration) = decision.integration() else {
        ctx.escaped.forget(ns, &name);
        ctx.metrics.set_escaped_builds(ctx.escaped.count(None));
        return Ok(Action::await_change());
    };
    if ctx.escaped.record(ns, &name, integration) {
        ctx.metrics.set_escaped_builds(ctx.escaped.count(None));
        ctx.build_event(
            build,
            true,
            "EscapedWebhook",
            format!(
                "this Build was created without the Quay Build webhook's rewrite (the operator was unreachable): it pushes to the integrated registry, not Quay{}",
                match &decision {
                    EscapeDecision::Report { why_not_rebuilt, .. } => format!("; not rebuilt: {why_not_rebuilt}"),
                    _ => "; it is cancelled and started again from its BuildConfig".to_owned(),
                }
            ),
        )
        .await;
    }
    let builds: Api<Build> = Api::namespaced(ctx.client.clone(), ns);
    match decision {
        EscapeDecision::None | EscapeDecision::Report { .. } => {}
        EscapeDecision::Rebuild {
            build_config,
            annotation,
            ..
        } => {
            let rebuilt = instantiate(ctx, ns, &build_config, &name).await?;
            let marked = json!({"metadata": {"annotations": {annotation: rebuilt}}});
            builds
                .patch(&name, &super::patch_params(), &Patch::Merge(marked))
                .await?;
            cancel(&builds, &name).await?;
            ctx.build_event(
                build,
                false,
                "EscapedBuildRebuilt",
                format!("cancelled; Build {rebuilt} started from BuildConfig {build_config} in its place pushes to Quay"),
            )
            .await;
        }
        EscapeDecision::Cancel { .. } => cancel(&builds, &name).await?,
    }
    Ok(Action::await_change())
}

/// `oc start-build <config>`: a new Build from the BuildConfig (it goes
/// through the webhook); its name.
async fn instantiate(
    ctx: &BuildContext,
    ns: &str,
    config: &str,
    escaped: &str,
) -> Result<String, Error> {
    let request = json!({
        "kind": "BuildRequest", "apiVersion": "build.openshift.io/v1",
        "metadata": {"name": config},
        "triggeredBy": [{"message": format!("Started again by quay-bridge-operator: Build {escaped} escaped the Quay Build webhook")}],
    });
    let body = serde_json::to_vec(&request).map_err(|e| Error::Internal(e.to_string()))?;
    let req = kube::core::Request::new(format!(
        "/apis/build.openshift.io/v1/namespaces/{ns}/buildconfigs/{config}/instantiate"
    ))
    .create(&super::post_params(), body)
    .map_err(|e| Error::Internal(e.to_string()))?;
    let created: Build = ctx.client.request(req).await?;
    created
        .metadata
        .name
        .ok_or_else(|| Error::Internal("the instantiated Build has no name".into()))
}

/// `oc cancel-build`: sets `status.cancelled`; OpenShift stops the Build.
async fn cancel(builds: &Api<Build>, name: &str) -> Result<(), Error> {
    let cancelled = json!({"status": {"cancelled": true}});
    builds
        .patch(name, &super::patch_params(), &Patch::Merge(cancelled))
        .await?;
    Ok(())
}

/// Retries a failed import with backoff.
pub(crate) fn error_policy(build: Arc<Build>, err: &Error, ctx: Arc<BuildContext>) -> Action {
    ctx.metrics.failed(CONTROLLER, err.category());
    let key = format!(
        "build/{}/{}",
        build.namespace().unwrap_or_default(),
        build.name_any()
    );
    kube::runtime::controller::Action::requeue(ctx.backoff.next(&key))
}

impl BuildContext {
    /// An Event on a Build.
    pub async fn build_event(&self, build: &Build, warning: bool, reason: &str, note: String) {
        self.events
            .publish(&build.object_ref(&()), warning, reason, "Import", note)
            .await;
    }
}
