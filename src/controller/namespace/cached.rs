//! The namespace controller's cache entry. A cached `Namespace` cost about
//! 2 KiB (10,000 namespaces: 20 MiB), most of it two map nodes for labels
//! and annotations no decision reads. What is kept is what a reconcile
//! reads: the name, UID, resourceVersion (the guard of every patch),
//! deletion time, every finalizer (the claim and release patches test the
//! whole list), and of the labels and annotations only the operator's
//! keys, with whether each map exists at all (a patch that creates a map
//! tests that it is still absent). A reconcile works on the `Namespace`
//! this gives back ([`CachedNamespace::namespace`]).

use crate::config::{BRIDGED_LABEL, ORGANIZATION_ANNOTATION};
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::runtime::watcher;
use std::borrow::Cow;
use std::collections::BTreeMap;

/// The labels the namespace controller reads.
const LABELS: &[&str] = &[BRIDGED_LABEL];
/// The annotations the namespace controller reads.
const ANNOTATIONS: &[&str] = &[ORGANIZATION_ANNOTATION];

/// Some keys of a map, as (key, value); an empty one allocates nothing.
type Kept = Box<[(Box<str>, Box<str>)]>;

/// A namespace as the controller caches it (see the module).
#[derive(Clone, Debug, Default, serde::Deserialize, serde::Serialize)]
pub(crate) struct CachedNamespace {
    /// Name, UID, resourceVersion, creation and deletion times, finalizers.
    pub metadata: ObjectMeta,
    /// The operator's labels; `None`: the namespace has no labels map.
    #[serde(skip)]
    labels: Option<Kept>,
    /// The operator's annotations; `None`: no annotations map.
    #[serde(skip)]
    annotations: Option<Kept>,
}

fn keep(map: Option<BTreeMap<String, String>>, keys: &[&str]) -> Option<Kept> {
    map.map(|m| {
        m.into_iter()
            .filter(|(k, _)| keys.contains(&k.as_str()))
            .map(|(k, v)| (k.into_boxed_str(), v.into_boxed_str()))
            .collect()
    })
}

fn rebuild(kept: Option<&Kept>) -> Option<BTreeMap<String, String>> {
    kept.map(|k| {
        k.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    })
}

impl CachedNamespace {
    /// What is kept of `ns`.
    pub fn of(ns: Namespace) -> Self {
        let m = ns.metadata;
        Self {
            labels: keep(m.labels, LABELS),
            annotations: keep(m.annotations, ANNOTATIONS),
            metadata: ObjectMeta {
                name: m.name,
                uid: m.uid,
                resource_version: m.resource_version,
                creation_timestamp: m.creation_timestamp,
                deletion_timestamp: m.deletion_timestamp,
                deletion_grace_period_seconds: m.deletion_grace_period_seconds,
                finalizers: m.finalizers,
                ..ObjectMeta::default()
            },
        }
    }

    /// The namespace as a reconcile reads it: the kept metadata, with the
    /// operator's labels and annotations in maps that exist where the
    /// namespace's do.
    pub fn namespace(&self) -> Namespace {
        Namespace {
            metadata: ObjectMeta {
                labels: rebuild(self.labels.as_ref()),
                annotations: rebuild(self.annotations.as_ref()),
                ..self.metadata.clone()
            },
            spec: None,
            status: None,
        }
    }

    /// A watch event of namespaces as one of cache entries.
    pub fn event(event: watcher::Event<Namespace>) -> watcher::Event<Self> {
        match event {
            watcher::Event::Apply(ns) => watcher::Event::Apply(Self::of(ns)),
            watcher::Event::Delete(ns) => watcher::Event::Delete(Self::of(ns)),
            watcher::Event::Init => watcher::Event::Init,
            watcher::Event::InitApply(ns) => watcher::Event::InitApply(Self::of(ns)),
            watcher::Event::InitDone => watcher::Event::InitDone,
        }
    }
}

impl kube::Resource for CachedNamespace {
    type DynamicType = ();
    type Scope = k8s_openapi::ClusterResourceScope;

    fn kind(dt: &()) -> Cow<'_, str> {
        Namespace::kind(dt)
    }

    fn group(dt: &()) -> Cow<'_, str> {
        Namespace::group(dt)
    }

    fn version(dt: &()) -> Cow<'_, str> {
        Namespace::version(dt)
    }

    fn plural(dt: &()) -> Cow<'_, str> {
        Namespace::plural(dt)
    }

    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }

    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::FINALIZER;
    use serde_json::json;

    fn ns(v: serde_json::Value) -> Namespace {
        serde_json::from_value(v).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn only_what_a_reconcile_reads_is_kept() {
        let full = ns(json!({
            "metadata": {"name": "team", "uid": "u-1", "resourceVersion": "42",
                "creationTimestamp": "2026-01-01T00:00:00Z",
                "deletionTimestamp": "2026-01-02T00:00:00Z",
                "labels": {"kubernetes.io/metadata.name": "team", BRIDGED_LABEL: "true"},
                "annotations": {"openshift.io/sa.scc.uid-range": "1000/10000",
                    ORGANIZATION_ANNOTATION: "openshift_team"},
                "finalizers": ["kubernetes", FINALIZER, "someone.else/keep"],
                "managedFields": [{"manager": "m"}]},
            "spec": {"finalizers": ["kubernetes"]},
            "status": {"phase": "Active"}
        }));
        let seen = CachedNamespace::of(full.clone()).namespace();
        let m = &seen.metadata;
        assert_eq!(m.name, full.metadata.name);
        assert_eq!(m.uid, full.metadata.uid);
        assert_eq!(m.resource_version, full.metadata.resource_version);
        assert_eq!(m.creation_timestamp, full.metadata.creation_timestamp);
        assert_eq!(m.deletion_timestamp, full.metadata.deletion_timestamp);
        assert_eq!(
            m.finalizers, full.metadata.finalizers,
            "every finalizer: the patches test the whole list"
        );
        assert_eq!(
            m.labels,
            Some(BTreeMap::from([(BRIDGED_LABEL.into(), "true".into())]))
        );
        assert_eq!(
            m.annotations,
            Some(BTreeMap::from([(
                ORGANIZATION_ANNOTATION.into(),
                "openshift_team".into()
            )]))
        );
        assert!(m.managed_fields.is_none() && seen.spec.is_none() && seen.status.is_none());
    }

    #[test]
    fn a_map_without_our_keys_stays_a_map_and_a_missing_one_stays_missing() {
        let theirs = ns(json!({"metadata": {"name": "a", "labels": {"x": "y"}}}));
        let seen = CachedNamespace::of(theirs).namespace();
        assert_eq!(seen.metadata.labels, Some(BTreeMap::new()));
        assert_eq!(seen.metadata.annotations, None);
    }

    #[test]
    fn the_claim_patch_from_the_cache_guards_like_one_from_the_object() {
        use crate::plan::metadata::claim_ops;
        for v in [
            json!({"metadata": {"name": "a", "resourceVersion": "7"}}),
            json!({"metadata": {"name": "a", "resourceVersion": "7", "labels": {"x": "y"}}}),
            json!({"metadata": {"name": "a", "resourceVersion": "7", "annotations": {"x": "y"},
                "finalizers": ["kubernetes"]}}),
            json!({"metadata": {"name": "a", "resourceVersion": "7",
                "labels": {BRIDGED_LABEL: "true"}, "annotations": {ORGANIZATION_ANNOTATION: "o"},
                "finalizers": [FINALIZER]}}),
        ] {
            let full = ns(v);
            assert_eq!(
                claim_ops(&CachedNamespace::of(full.clone()).namespace().metadata, "o"),
                claim_ops(&full.metadata, "o"),
                "{:?}",
                full.metadata
            );
        }
    }

    #[test]
    fn events_keep_their_kind() {
        let n = ns(json!({"metadata": {"name": "a"}}));
        assert!(matches!(
            CachedNamespace::event(watcher::Event::Apply(n.clone())),
            watcher::Event::Apply(c) if c.metadata.name.as_deref() == Some("a")
        ));
        assert!(matches!(
            CachedNamespace::event(watcher::Event::Delete(n.clone())),
            watcher::Event::Delete(_)
        ));
        assert!(matches!(
            CachedNamespace::event(watcher::Event::InitApply(n)),
            watcher::Event::InitApply(_)
        ));
        assert!(matches!(
            CachedNamespace::event(watcher::Event::<Namespace>::Init),
            watcher::Event::Init
        ));
        assert!(matches!(
            CachedNamespace::event(watcher::Event::<Namespace>::InitDone),
            watcher::Event::InitDone
        ));
    }
}
