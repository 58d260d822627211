//! The apiserver's patch semantics: JSON patch as Go's evanphx/json-patch
//! applies it, JSON merge patch (RFC 7386) and server-side apply with per-manager field ownership.

use serde_json::{Map, Value};
use std::collections::{BTreeMap, BTreeSet};

/// Why a patch could not be applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PatchError {
    /// The patch document is malformed (HTTP 400).
    Malformed(String),
    /// The patch does not apply to the object (HTTP 422).
    Failed(String),
    /// A JSON patch operation that does not exist.
    UnknownOp(String),
}

// === JSON patch ===

fn unescape(token: &str) -> String {
    token.replace("~1", "/").replace("~0", "~")
}

fn tokens(path: &str) -> Result<Vec<String>, PatchError> {
    if path.is_empty() {
        return Ok(Vec::new());
    }
    let rest = path
        .strip_prefix('/')
        .ok_or_else(|| PatchError::Malformed(format!("invalid path {path:?}")))?;
    Ok(rest.split('/').map(unescape).collect())
}

fn get<'v>(doc: &'v Value, toks: &[String]) -> Option<&'v Value> {
    toks.iter().try_fold(doc, |cur, t| match cur {
        Value::Object(m) => m.get(t),
        Value::Array(a) => t.parse::<usize>().ok().and_then(|i| a.get(i)),
        _ => None,
    })
}

fn parent_mut<'v>(doc: &'v mut Value, toks: &[String]) -> Result<&'v mut Value, PatchError> {
    let mut cur = doc;
    for t in toks {
        cur = match cur {
            Value::Object(m) => m.get_mut(t),
            Value::Array(a) => t.parse::<usize>().ok().and_then(|i| a.get_mut(i)),
            _ => None,
        }
        .ok_or_else(|| {
            PatchError::Failed(format!("doc is missing path: \"/{}\"", toks.join("/")))
        })?;
    }
    Ok(cur)
}

fn add(doc: &mut Value, toks: &[String], value: Value) -> Result<(), PatchError> {
    let Some((last, parent)) = toks.split_last() else {
        *doc = value;
        return Ok(());
    };
    match parent_mut(doc, parent)? {
        Value::Object(m) => {
            m.insert(last.clone(), value);
            Ok(())
        }
        Value::Array(a) => {
            if last == "-" {
                a.push(value);
                return Ok(());
            }
            let i: usize = last
                .parse()
                .map_err(|_| PatchError::Failed(format!("invalid array index {last:?}")))?;
            if i > a.len() {
                return Err(PatchError::Failed(format!(
                    "add operation does not apply: index {i} out of bounds"
                )));
            }
            a.insert(i, value);
            Ok(())
        }
        _ => Err(PatchError::Failed(
            "add operation does not apply: parent is not a container".into(),
        )),
    }
}

fn remove(doc: &mut Value, toks: &[String]) -> Result<Value, PatchError> {
    let Some((last, parent)) = toks.split_last() else {
        return Err(PatchError::Failed(
            "cannot remove the whole document".into(),
        ));
    };
    let missing = || {
        PatchError::Failed(format!(
            "remove operation does not apply: doc is missing path: \"/{}\"",
            toks.join("/")
        ))
    };
    match parent_mut(doc, parent)? {
        Value::Object(m) => m.remove(last).ok_or_else(missing),
        Value::Array(a) => {
            let i: usize = last.parse().map_err(|_| missing())?;
            if i < a.len() {
                Ok(a.remove(i))
            } else {
                Err(missing())
            }
        }
        _ => Err(missing()),
    }
}

/// Applies an RFC 6902 patch with the apiserver's (Go) semantics: a `test`
/// of `null` passes on a missing path.
pub fn json_patch(doc: &mut Value, patch: &Value) -> Result<(), PatchError> {
    let ops = patch.as_array().ok_or_else(|| {
        PatchError::Malformed("a JSON patch must be an array of operations".into())
    })?;
    let mut work = doc.clone();
    for op in ops {
        let name = op
            .get("op")
            .and_then(Value::as_str)
            .ok_or_else(|| PatchError::Malformed("operation without \"op\"".into()))?;
        let path = op
            .get("path")
            .and_then(Value::as_str)
            .ok_or_else(|| PatchError::Malformed("operation without \"path\"".into()))?;
        let toks = tokens(path)?;
        let value = || {
            op.get("value")
                .cloned()
                .ok_or_else(|| PatchError::Malformed(format!("{name} operation without \"value\"")))
        };
        match name {
            "add" => add(&mut work, &toks, value()?)?,
            "remove" => {
                remove(&mut work, &toks)?;
            }
            "replace" => {
                let v = value()?;
                if toks.is_empty() {
                    work = v;
                } else {
                    // A missing key of an existing object is added
                    // (cm-patch-json-replace-missing); a missing parent or
                    // array index fails.
                    let parent_is_object =
                        get(&work, &toks[..toks.len() - 1]).is_some_and(Value::is_object);
                    if remove(&mut work, &toks).is_err() && !parent_is_object {
                        return Err(PatchError::Failed(format!(
                            "replace operation does not apply: doc is missing key: {path}"
                        )));
                    }
                    add(&mut work, &toks, v)?;
                }
            }
            "move" | "copy" => {
                let from = op.get("from").and_then(Value::as_str).ok_or_else(|| {
                    PatchError::Malformed(format!("{name} operation without \"from\""))
                })?;
                let from_toks = tokens(from)?;
                let v = if name == "move" {
                    remove(&mut work, &from_toks)?
                } else {
                    get(&work, &from_toks).cloned().ok_or_else(|| {
                        PatchError::Failed(format!(
                            "copy operation does not apply: doc is missing from path: {from}"
                        ))
                    })?
                };
                add(&mut work, &toks, v)?;
            }
            "test" => {
                let expected = op.get("value").cloned().unwrap_or(Value::Null);
                match get(&work, &toks) {
                    Some(actual) if *actual == expected => {}
                    None if expected.is_null() => {}
                    _ => {
                        return Err(PatchError::Failed(format!(
                            "testing value {path} failed: test failed"
                        )));
                    }
                }
            }
            other => {
                return Err(PatchError::UnknownOp(format!(
                    "unexpected operation {other:?}"
                )));
            }
        }
    }
    *doc = work;
    Ok(())
}

// === JSON merge patch ===

/// RFC 7386: objects merge, `null` deletes, anything else replaces.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(p) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    if let Value::Object(t) = target {
        for (k, v) in p {
            if v.is_null() {
                t.remove(k);
            } else {
                merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
    }
}

// === server-side apply ===

/// A field path (object keys; lists are atomic leaves).
pub type FieldPath = Vec<String>;

/// Fields only the server sets; nobody owns them.
fn server_owned(path: &FieldPath) -> bool {
    let first = path.first().map(String::as_str);
    let second = path.get(1).map(String::as_str);
    matches!(first, Some("apiVersion" | "kind"))
        || (first == Some("metadata")
            && matches!(
                second,
                Some(
                    "name"
                        | "namespace"
                        | "uid"
                        | "resourceVersion"
                        | "generation"
                        | "creationTimestamp"
                        | "managedFields"
                        | "deletionTimestamp"
                        | "deletionGracePeriodSeconds"
                        | "selfLink"
                        | "generateName"
                )
            ))
}

/// Leaf paths of an object (`metadata` name/namespace/uid and the like are
/// left out: nobody owns them).
pub fn leaves(v: &Value) -> BTreeSet<FieldPath> {
    fn walk(v: &Value, prefix: &mut FieldPath, out: &mut BTreeSet<FieldPath>) {
        match v {
            Value::Object(m) if !m.is_empty() => {
                for (k, child) in m {
                    prefix.push(k.clone());
                    walk(child, prefix, out);
                    prefix.pop();
                }
            }
            _ => {
                if !prefix.is_empty() {
                    out.insert(prefix.clone());
                }
            }
        }
    }
    let mut out = BTreeSet::new();
    walk(v, &mut Vec::new(), &mut out);
    out.retain(|p| !server_owned(p));
    out
}

fn value_at<'v>(v: &'v Value, path: &[String]) -> Option<&'v Value> {
    path.iter().try_fold(v, |cur, k| cur.get(k))
}

fn remove_at(v: &mut Value, path: &[String]) {
    let Some((last, parent)) = path.split_last() else {
        return;
    };
    let mut cur = &mut *v;
    for k in parent {
        match cur.get_mut(k) {
            Some(next) => cur = next,
            None => return,
        }
    }
    if let Value::Object(m) = cur {
        m.remove(last);
    }
    // Drop parents that became empty objects.
    if !parent.is_empty()
        && value_at(v, parent).is_some_and(|p| p.as_object().is_some_and(Map::is_empty))
    {
        remove_at(v, parent);
    }
}

/// Field ownership: manager → owned leaf paths.
pub type Ownership = BTreeMap<String, BTreeSet<FieldPath>>;

/// Converts ownership sets to `managedFields` entries (FieldsV1).
pub fn to_managed_fields(
    owners: &Ownership,
    operations: &BTreeMap<String, String>,
    api_version: &str,
    time: &str,
) -> Value {
    let entries: Vec<Value> = owners
        .iter()
        .filter(|(_, paths)| !paths.is_empty())
        .map(|(manager, paths)| {
            let mut fields = Map::new();
            for path in paths {
                let mut cur = &mut fields;
                for k in path {
                    let entry = cur
                        .entry(format!("f:{k}"))
                        .or_insert_with(|| Value::Object(Map::new()));
                    let Value::Object(next) = entry else { break };
                    cur = next;
                }
            }
            serde_json::json!({
                "manager": manager,
                "operation": operations.get(manager).map_or("Update", String::as_str),
                "apiVersion": api_version,
                "time": time,
                "fieldsType": "FieldsV1",
                "fieldsV1": fields,
            })
        })
        .collect();
    Value::Array(entries)
}

/// Reads ownership back from `managedFields`.
pub fn from_managed_fields(managed: Option<&Value>) -> (Ownership, BTreeMap<String, String>) {
    fn walk(m: &Map<String, Value>, prefix: &mut FieldPath, out: &mut BTreeSet<FieldPath>) {
        for (k, child) in m {
            let Some(name) = k.strip_prefix("f:") else {
                continue;
            };
            prefix.push(name.to_owned());
            match child.as_object() {
                Some(c) if !c.is_empty() => walk(c, prefix, out),
                _ => {
                    out.insert(prefix.clone());
                }
            }
            prefix.pop();
        }
    }
    let mut owners = Ownership::new();
    let mut ops = BTreeMap::new();
    for entry in managed.and_then(Value::as_array).into_iter().flatten() {
        let Some(manager) = entry.get("manager").and_then(Value::as_str) else {
            continue;
        };
        let mut set = BTreeSet::new();
        if let Some(f) = entry.get("fieldsV1").and_then(Value::as_object) {
            walk(f, &mut Vec::new(), &mut set);
        }
        owners.entry(manager.to_owned()).or_default().extend(set);
        ops.insert(
            manager.to_owned(),
            entry
                .get("operation")
                .and_then(Value::as_str)
                .unwrap_or("Update")
                .to_owned(),
        );
    }
    (owners, ops)
}

/// A field another manager owns with a different value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    /// The other manager.
    pub manager: String,
    /// The field, dotted.
    pub field: String,
}

/// Server-side apply of `config` by `manager` onto `current`: conflicts
/// unless `force`; fields the manager applied before and no longer applies
/// are removed when nobody else owns them.
pub fn apply(
    current: &mut Value,
    config: &Value,
    manager: &str,
    force: bool,
    owners: &mut Ownership,
) -> Result<(), Vec<Conflict>> {
    let applied = leaves(config);
    let mut conflicts = Vec::new();
    for path in &applied {
        let differs = value_at(current, path) != value_at(config, path);
        if !differs {
            continue;
        }
        for (other, owned) in owners.iter() {
            if other != manager
                && owned
                    .iter()
                    .any(|p| p.starts_with(path) || path.starts_with(p))
            {
                conflicts.push(Conflict {
                    manager: other.clone(),
                    field: format!(".{}", path.join(".")),
                });
            }
        }
    }
    if !conflicts.is_empty() && !force {
        return Err(conflicts);
    }
    let previously: BTreeSet<FieldPath> = owners.get(manager).cloned().unwrap_or_default();
    for (other, owned) in owners.iter_mut() {
        if other != manager {
            owned.retain(|p| {
                !applied.iter().any(|a| p.starts_with(a) || a.starts_with(p))
                    || value_at(current, p) == value_at(config, p)
            });
        }
    }
    merge_patch_keep_nulls(current, config);
    for path in previously.difference(&applied) {
        let shared = owners
            .iter()
            .any(|(other, owned)| other != manager && owned.contains(path));
        if !shared {
            remove_at(current, path);
        }
    }
    owners.insert(manager.to_owned(), applied);
    Ok(())
}

/// Deep merge of objects; lists and scalars replace (apply configs have no
/// deletion markers).
fn merge_patch_keep_nulls(target: &mut Value, patch: &Value) {
    match (target, patch) {
        (Value::Object(t), Value::Object(p)) => {
            for (k, v) in p {
                match t.get_mut(k) {
                    Some(existing) if existing.is_object() && v.is_object() => {
                        merge_patch_keep_nulls(existing, v)
                    }
                    _ => {
                        t.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (t, p) => *t = p.clone(),
    }
}

/// Records that a non-apply write by `manager` changed fields: they become
/// its own and leave other managers' sets.
pub fn record_update(old: &Value, new: &Value, manager: &str, owners: &mut Ownership) {
    let before = leaves(old);
    let after = leaves(new);
    let changed: BTreeSet<FieldPath> = after
        .iter()
        .filter(|p| value_at(old, p) != value_at(new, p))
        .cloned()
        .collect();
    let removed: BTreeSet<FieldPath> = before.difference(&after).cloned().collect();
    for (other, owned) in owners.iter_mut() {
        if other != manager {
            owned.retain(|p| !changed.contains(p) && !removed.contains(p));
        }
    }
    let mine = owners.entry(manager.to_owned()).or_default();
    mine.extend(changed);
    mine.retain(|p| !removed.contains(p));
    owners.retain(|_, owned| !owned.is_empty());
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn kube_finalizer_patches_apply_like_the_apiserver() {
        // kube::runtime::finalizer's first finalizer: test null on a missing path.
        let mut obj = json!({"metadata": {"name": "x"}});
        let add_first = json!([{"op": "test", "path": "/metadata/finalizers", "value": null}, {"op": "add", "path": "/metadata/finalizers", "value": ["f"]}]);
        json_patch(&mut obj, &add_first).unwrap();
        assert_eq!(obj["metadata"]["finalizers"], json!(["f"]));
        let add_more = json!([{"op": "test", "path": "/metadata/finalizers", "value": ["f"]}, {"op": "add", "path": "/metadata/finalizers/-", "value": "g"}]);
        json_patch(&mut obj, &add_more).unwrap();
        assert_eq!(obj["metadata"]["finalizers"], json!(["f", "g"]));
        let remove = json!([{"op": "test", "path": "/metadata/finalizers/0", "value": "f"}, {"op": "remove", "path": "/metadata/finalizers/0"}]);
        json_patch(&mut obj, &remove).unwrap();
        assert_eq!(obj["metadata"]["finalizers"], json!(["g"]));
        // A failed test changes nothing.
        let stale = json!([{"op": "test", "path": "/metadata/finalizers/0", "value": "f"}, {"op": "remove", "path": "/metadata/finalizers/0"}]);
        assert!(matches!(
            json_patch(&mut obj, &stale),
            Err(PatchError::Failed(_))
        ));
        assert_eq!(obj["metadata"]["finalizers"], json!(["g"]));
        // test null against a present value fails.
        assert!(
            json_patch(
                &mut obj,
                &json!([{"op": "test", "path": "/metadata/finalizers", "value": null}])
            )
            .is_err()
        );
    }

    #[test]
    fn json_patch_operations() {
        let mut obj = json!({"a": {"b": 1}, "l": [1, 2]});
        json_patch(
            &mut obj,
            &json!([
                {"op": "replace", "path": "/a/b", "value": 2},
                {"op": "add", "path": "/l/1", "value": 9},
                {"op": "copy", "from": "/a", "path": "/c"},
                {"op": "move", "from": "/c/b", "path": "/d"},
                {"op": "remove", "path": "/l/0"},
                {"op": "add", "path": "/e~1f", "value": true}
            ]),
        )
        .unwrap();
        assert_eq!(
            obj,
            json!({"a": {"b": 2}, "l": [9, 2], "c": {}, "d": 2, "e/f": true})
        );
        assert!(matches!(
            json_patch(&mut obj, &json!([{"op": "remove", "path": "/nope"}])),
            Err(PatchError::Failed(_))
        ));
        json_patch(
            &mut obj,
            &json!([{"op": "replace", "path": "/nope", "value": 1}]),
        )
        .unwrap();
        assert_eq!(obj["nope"], 1, "a missing key of an object is added");
        assert!(matches!(
            json_patch(
                &mut obj,
                &json!([{"op": "replace", "path": "/x/y", "value": 1}])
            ),
            Err(PatchError::Failed(_))
        ));
        assert!(matches!(
            json_patch(
                &mut obj,
                &json!([{"op": "add", "path": "/x/y", "value": 1}])
            ),
            Err(PatchError::Failed(_))
        ));
        assert!(matches!(
            json_patch(&mut obj, &json!({"op": "add"})),
            Err(PatchError::Malformed(_))
        ));
        assert!(matches!(
            json_patch(&mut obj, &json!([{"op": "frob", "path": "/a"}])),
            Err(PatchError::UnknownOp(_))
        ));
    }

    #[test]
    fn merge_patch_rfc7386() {
        let mut obj = json!({"a": "b", "c": {"d": "e", "f": "g"}});
        merge_patch(&mut obj, &json!({"a": "z", "c": {"f": null}}));
        assert_eq!(obj, json!({"a": "z", "c": {"d": "e"}}));
        merge_patch(&mut obj, &json!({"l": [1]}));
        merge_patch(&mut obj, &json!({"l": [2]}));
        assert_eq!(obj["l"], json!([2]));
    }

    #[test]
    fn server_side_apply_ownership_and_conflicts() {
        let mut owners = Ownership::new();
        let mut obj = json!({"metadata": {"name": "s"}});
        apply(
            &mut obj,
            &json!({"metadata": {"name": "s", "labels": {"a": "1"}}, "data": {"k": "v"}}),
            "op",
            false,
            &mut owners,
        )
        .unwrap();
        assert_eq!(obj["data"]["k"], "v");
        // The same values from another manager: shared, no conflict.
        apply(
            &mut obj,
            &json!({"data": {"k": "v"}}),
            "other",
            false,
            &mut owners,
        )
        .unwrap();
        // A different value: conflict, unless forced.
        let conflicts = apply(
            &mut obj,
            &json!({"data": {"k": "w"}}),
            "third",
            false,
            &mut owners,
        )
        .unwrap_err();
        assert!(
            conflicts
                .iter()
                .any(|c| c.manager == "op" && c.field == ".data.k"),
            "{conflicts:?}"
        );
        assert_eq!(obj["data"]["k"], "v");
        apply(
            &mut obj,
            &json!({"data": {"k": "w"}}),
            "third",
            true,
            &mut owners,
        )
        .unwrap();
        assert_eq!(obj["data"]["k"], "w");
        assert!(!owners["op"].contains(&vec!["data".to_owned(), "k".to_owned()]));
        // A field the manager stops applying is removed.
        apply(
            &mut obj,
            &json!({"metadata": {"name": "s"}}),
            "op",
            false,
            &mut owners,
        )
        .unwrap();
        assert!(obj["metadata"].get("labels").is_none(), "{obj}");
        // managedFields round trip.
        let ops: BTreeMap<String, String> = owners
            .keys()
            .map(|k| (k.clone(), "Apply".to_owned()))
            .collect();
        let mf = to_managed_fields(&owners, &ops, "v1", "t");
        let (back, back_ops) = from_managed_fields(Some(&mf));
        assert_eq!(back.get("third"), owners.get("third"));
        assert_eq!(back_ops.get("third").map(String::as_str), Some("Apply"));
    }

    #[test]
    fn updates_take_ownership() {
        let mut owners = Ownership::new();
        let mut obj = json!({});
        apply(
            &mut obj,
            &json!({"data": {"k": "v"}}),
            "op",
            false,
            &mut owners,
        )
        .unwrap();
        let old = obj.clone();
        obj["data"]["k"] = json!("edited");
        record_update(&old, &obj, "kubectl-edit", &mut owners);
        assert!(!owners.contains_key("op"));
        assert!(
            apply(
                &mut obj,
                &json!({"data": {"k": "v"}}),
                "op",
                false,
                &mut owners
            )
            .is_err()
        );
    }
}
