//! The post-build import: when a Build the webhook rewrote completes, its
//! ImageStream tag is imported from Quay, once.

use super::context::Context;
use super::error::Error;
use crate::config::ApiGroup;
use crate::openshift::Build;
use crate::plan::selection::{self, Manager};
use kube::api::{Api, DynamicObject, Patch};
use kube::core::{ApiResource, GroupVersionKind};
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};
use serde_json::{Value, json};
use std::sync::Arc;

const CONTROLLER: &str = "build";

/// What a rewritten Build says about its destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    /// Annotation prefix of the integration group that rewrote it.
    pub prefix: &'static str,
    /// ImageStream namespace.
    pub namespace: String,
    /// ImageStream name.
    pub stream: String,
    /// Tag.
    pub tag: String,
    /// Already imported.
    pub imported: bool,
}

/// Reads the webhook's annotations (either group's prefix).
pub fn destination(
    annotations: &std::collections::BTreeMap<String, String>,
) -> Option<Result<Destination, String>> {
    for group in [ApiGroup::Current, ApiGroup::Legacy] {
        let prefix = group.annotation_prefix();
        if annotations
            .get(&format!("{prefix}/quay-registry-operator-managed"))
            .map(String::as_str)
            != Some("true")
        {
            continue;
        }
        let imported = annotations
            .get(&format!("{prefix}/destination-imagestreamtag-imported"))
            .map(String::as_str)
            == Some("true");
        let raw = annotations
            .get(&format!("{prefix}/destination-imagestream"))
            .cloned()
            .unwrap_or_default();
        let parsed = raw
            .split_once('/')
            .and_then(|(ns, rest)| rest.split_once(':').map(|(s, t)| (ns, s, t)));
        return Some(match parsed {
            Some((ns, s, t)) if !ns.is_empty() && !s.is_empty() && !t.is_empty() => {
                Ok(Destination {
                    prefix,
                    namespace: ns.into(),
                    stream: s.into(),
                    tag: t.into(),
                    imported,
                })
            }
            _ => Err(format!(
                "annotation {prefix}/destination-imagestream is {raw:?}, expected <namespace>/<imagestream>:<tag>"
            )),
        });
    }
    None
}

/// The ImageStreamImport that brings `image` into the destination tag
/// (upstream's shape: DockerImage source, `referencePolicy: Source`).
pub fn import_request(dest: &Destination, image: &str, insecure: bool, scheduled: bool) -> Value {
    json!({
        "apiVersion": "image.openshift.io/v1", "kind": "ImageStreamImport",
        "metadata": {"name": dest.stream, "namespace": dest.namespace},
        "spec": {"import": true, "images": [{
            "from": {"kind": "DockerImage", "name": image},
            "to": {"name": dest.tag},
            "importPolicy": {"insecure": insecure, "scheduled": scheduled},
            "referencePolicy": {"type": "Source"},
        }]}
    })
}

/// Imports the tag of a completed, rewritten Build.
pub async fn reconcile(build: Arc<Build>, ctx: Arc<Context>) -> Result<Action, Error> {
    let result = reconcile_inner(&build, &ctx).await;
    ctx.metrics.reconciled(CONTROLLER, result.is_ok());
    result
}

async fn reconcile_inner(build: &Build, ctx: &Arc<Context>) -> Result<Action, Error> {
    let Some(dest) = destination(build.annotations()) else {
        return Ok(Action::await_change());
    };
    let ns = build.namespace().unwrap_or_default();
    let dest = match dest {
        Ok(d) => d,
        Err(msg) => {
            ctx.build_event(build, true, "InvalidDestination", msg)
                .await;
            return Ok(Action::await_change());
        }
    };
    if dest.imported || build.status.as_ref().and_then(|s| s.phase.as_deref()) != Some("Complete") {
        return Ok(Action::await_change());
    }
    let integrations = ctx.integrations();
    let Manager::One(cfg) = selection::manager(&integrations, &dest.namespace) else {
        return Ok(Action::await_change());
    };
    let image = build
        .spec
        .rest
        .get("output")
        .and_then(|o| o.pointer("/to/name"))
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let isi_api: Api<DynamicObject> = Api::namespaced_with(
        ctx.client.clone(),
        &dest.namespace,
        &ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("image.openshift.io", "v1", "ImageStreamImport"),
            "imagestreamimports",
        ),
    );
    let isi: DynamicObject = serde_json::from_value(import_request(
        &dest,
        &image,
        cfg.insecure_registry,
        cfg.scheduled_import,
    ))
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
    let marked = json!({"metadata": {"annotations": {format!("{}/destination-imagestreamtag-imported", dest.prefix): "true"}}});
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn ann(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn destinations_from_either_prefix() {
        assert_eq!(destination(&ann(&[])), None);
        let d = destination(&ann(&[
            (
                "quay-registry-operator.quay.redhat.com/quay-registry-operator-managed",
                "true",
            ),
            (
                "quay-registry-operator.quay.redhat.com/destination-imagestream",
                "team/app:v1",
            ),
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(
            (
                d.namespace.as_str(),
                d.stream.as_str(),
                d.tag.as_str(),
                d.imported
            ),
            ("team", "app", "v1", false)
        );
        let legacy = destination(&ann(&[
            (
                "quay-registry-operator.redhatcop.redhat.io/quay-registry-operator-managed",
                "true",
            ),
            (
                "quay-registry-operator.redhatcop.redhat.io/destination-imagestream",
                "team/app:latest",
            ),
            (
                "quay-registry-operator.redhatcop.redhat.io/destination-imagestreamtag-imported",
                "true",
            ),
        ]))
        .unwrap()
        .unwrap();
        assert!(legacy.imported);
        assert_eq!(legacy.prefix, "quay-registry-operator.redhatcop.redhat.io");
        for bad in ["team/app", "app:v1", "/app:v1", "team/:v1", ""] {
            let r = destination(&ann(&[
                (
                    "quay-registry-operator.quay.redhat.com/quay-registry-operator-managed",
                    "true",
                ),
                (
                    "quay-registry-operator.quay.redhat.com/destination-imagestream",
                    bad,
                ),
            ]));
            assert!(matches!(r, Some(Err(_))), "{bad}");
        }
    }
}
