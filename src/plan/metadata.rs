//! Patches of an object's metadata that touch only the operator's own
//! keys: the namespace's finalizer, organization annotation and bridged
//! label. Each is a JSON patch guarded by what it was computed from, so a
//! key another client wrote since is never overwritten: the apiserver
//! refuses the patch and the caller reads the object again.

use super::patch::{self, Op};
use crate::config::{BRIDGED_LABEL, FINALIZER, LEGACY_FINALIZER, ORGANIZATION_ANNOTATION};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde_json::json;

/// Sets `key` to `value` in the map `map` (`labels` or `annotations`) of
/// the metadata; `present` says whether the map exists. When it is absent
/// it is created with the key alone, guarded by a test that it is still
/// absent.
fn set_key(ops: &mut Vec<Op>, map: &str, present: bool, key: &str, value: &str) {
    if present {
        ops.push(patch::add(&["metadata", map, key], json!(value)));
    } else {
        ops.push(patch::test(&["metadata", map], json!(null)));
        ops.push(patch::add(&["metadata", map], json!({ key: value })));
    }
}

/// What a bridged namespace must carry: our finalizer (in place of the
/// legacy one), the organization annotation and the bridged label (the
/// webhook registration selects namespaces by it). The patch is guarded by
/// the resourceVersion `meta` was read at; empty when nothing is missing.
pub fn claim_ops(meta: &ObjectMeta, org: &str) -> Vec<Op> {
    let current = meta.finalizers.clone().unwrap_or_default();
    let mut wanted: Vec<String> = current
        .iter()
        .filter(|f| *f != LEGACY_FINALIZER)
        .cloned()
        .collect();
    if !wanted.iter().any(|f| f == FINALIZER) {
        wanted.push(FINALIZER.into());
    }
    let annotations = meta.annotations.as_ref();
    let labels = meta.labels.as_ref();
    let mut ops = Vec::new();
    if wanted != current {
        if meta.finalizers.is_none() {
            ops.push(patch::test(&["metadata", "finalizers"], json!(null)));
            ops.push(patch::add(&["metadata", "finalizers"], json!(wanted)));
        } else {
            ops.push(patch::test(&["metadata", "finalizers"], json!(current)));
            ops.push(patch::replace(&["metadata", "finalizers"], json!(wanted)));
        }
    }
    if annotations
        .and_then(|a| a.get(ORGANIZATION_ANNOTATION))
        .map(String::as_str)
        != Some(org)
    {
        set_key(
            &mut ops,
            "annotations",
            annotations.is_some(),
            ORGANIZATION_ANNOTATION,
            org,
        );
    }
    if labels
        .and_then(|l| l.get(BRIDGED_LABEL))
        .map(String::as_str)
        != Some("true")
    {
        set_key(&mut ops, "labels", labels.is_some(), BRIDGED_LABEL, "true");
    }
    guarded(meta, ops)
}

/// Removes `finalizers` and `label` from an object; empty when it carries
/// neither. Guarded by the resourceVersion `meta` was read at.
pub fn release_ops(meta: &ObjectMeta, finalizers: &[&str], label: Option<&str>) -> Vec<Op> {
    let current = meta.finalizers.clone().unwrap_or_default();
    let kept: Vec<&String> = current
        .iter()
        .filter(|f| !finalizers.contains(&f.as_str()))
        .collect();
    let mut ops = Vec::new();
    if kept.len() != current.len() {
        ops.push(patch::test(&["metadata", "finalizers"], json!(current)));
        ops.push(patch::replace(&["metadata", "finalizers"], json!(kept)));
    }
    if let Some(key) = label.filter(|l| meta.labels.as_ref().is_some_and(|m| m.contains_key(*l))) {
        ops.push(patch::remove(&["metadata", "labels", key]));
    }
    guarded(meta, ops)
}

fn guarded(meta: &ObjectMeta, mut ops: Vec<Op>) -> Vec<Op> {
    if !ops.is_empty() {
        ops.insert(
            0,
            patch::test(
                &["metadata", "resourceVersion"],
                json!(meta.resource_version.clone().unwrap_or_default()),
            ),
        );
    }
    ops
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;
    use std::collections::BTreeMap;

    fn meta(
        finalizers: Option<&[&str]>,
        annotations: Option<&[(&str, &str)]>,
        labels: Option<&[(&str, &str)]>,
    ) -> ObjectMeta {
        let map = |kv: &[(&str, &str)]| -> BTreeMap<String, String> {
            kv.iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect()
        };
        ObjectMeta {
            name: Some("team".into()),
            resource_version: Some("42".into()),
            finalizers: finalizers.map(|f| f.iter().map(|s| (*s).to_owned()).collect()),
            annotations: annotations.map(map),
            labels: labels.map(map),
            ..Default::default()
        }
    }

    fn apply(meta: &ObjectMeta, ops: &[Op]) -> Result<Value, String> {
        let mut doc = json!({"metadata": serde_json::to_value(meta).unwrap()});
        // The apiserver's JSON patch (a test for null passes on an absent key).
        kube_sandbox::patch::json_patch(&mut doc, &patch::to_json(ops))
            .map_err(|e| format!("{e:?}"))?;
        Ok(doc)
    }

    #[test]
    fn claiming_adds_only_our_keys() {
        let m = meta(None, None, Some(&[("kubernetes.io/metadata.name", "team")]));
        let ops = claim_ops(&m, "openshift_team");
        assert_eq!(
            patch::to_json(&ops[..1]),
            json!([{"op": "test", "path": "/metadata/resourceVersion", "value": "42"}])
        );
        let doc = apply(&m, &ops).unwrap();
        assert_eq!(doc["metadata"]["finalizers"], json!([FINALIZER]));
        assert_eq!(
            doc["metadata"]["annotations"],
            json!({ORGANIZATION_ANNOTATION: "openshift_team"})
        );
        assert_eq!(
            doc["metadata"]["labels"],
            json!({"kubernetes.io/metadata.name": "team", BRIDGED_LABEL: "true"})
        );
        // Other keys, and a legacy finalizer's neighbours, are kept.
        let m = meta(
            Some(&["a/b", LEGACY_FINALIZER]),
            Some(&[("owner", "alice")]),
            None,
        );
        let doc = apply(&m, &claim_ops(&m, "openshift_team")).unwrap();
        assert_eq!(doc["metadata"]["finalizers"], json!(["a/b", FINALIZER]));
        assert_eq!(
            doc["metadata"]["annotations"],
            json!({"owner": "alice", ORGANIZATION_ANNOTATION: "openshift_team"})
        );
        assert_eq!(doc["metadata"]["labels"], json!({BRIDGED_LABEL: "true"}));
        // Nothing missing: no patch.
        let done = meta(
            Some(&[FINALIZER]),
            Some(&[(ORGANIZATION_ANNOTATION, "openshift_team")]),
            Some(&[(BRIDGED_LABEL, "true")]),
        );
        assert!(claim_ops(&done, "openshift_team").is_empty());
        // Another organization recorded: replaced with the current one.
        let doc = apply(&done, &claim_ops(&done, "p_team")).unwrap();
        assert_eq!(
            doc["metadata"]["annotations"][ORGANIZATION_ANNOTATION],
            "p_team"
        );
    }

    /// A patch computed from a stale read fails instead of overwriting
    /// what another client wrote since.
    #[test]
    fn a_stale_read_never_overwrites() {
        let read = meta(None, None, None);
        let ops = claim_ops(&read, "openshift_team");
        let mut live = meta(None, Some(&[("owner", "alice")]), None);
        assert!(apply(&live, &ops).is_err(), "the map is no longer absent");
        live.resource_version = Some("43".into());
        live.annotations = None;
        assert!(apply(&live, &ops).is_err(), "the resourceVersion moved");
    }

    #[test]
    fn releasing_removes_only_ours() {
        let m = meta(
            Some(&["a/b", FINALIZER, LEGACY_FINALIZER]),
            None,
            Some(&[(BRIDGED_LABEL, "true"), ("team", "x")]),
        );
        let doc = apply(
            &m,
            &release_ops(&m, &[FINALIZER, LEGACY_FINALIZER], Some(BRIDGED_LABEL)),
        )
        .unwrap();
        assert_eq!(doc["metadata"]["finalizers"], json!(["a/b"]));
        assert_eq!(doc["metadata"]["labels"], json!({"team": "x"}));
        assert!(
            release_ops(
                &meta(Some(&["a/b"]), None, None),
                &[FINALIZER],
                Some(BRIDGED_LABEL)
            )
            .is_empty()
        );
    }
}
