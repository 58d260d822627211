//! `meta.k8s.io/v1` Table answers for kubectl, and the small JSONPath
//! subset CRD printer columns use.

use super::resources::ResourceDef;
use serde_json::{Value, json};

/// Evaluates `.a.b`, `.a[0].b` and `.a[?(@.k=="v")].b`.
pub fn json_path<'v>(obj: &'v Value, path: &str) -> Option<&'v Value> {
    let mut cur = obj;
    let mut rest = path
        .trim()
        .trim_start_matches('{')
        .trim_end_matches('}')
        .trim_start_matches('$');
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix('.') {
            let end = r.find(['.', '[']).unwrap_or(r.len());
            cur = cur.get(&r[..end])?;
            rest = &r[end..];
        } else if let Some(r) = rest.strip_prefix('[') {
            let end = r.find(']')?;
            let inner = &r[..end];
            if let Some(filter) = inner.strip_prefix("?(@.").and_then(|f| f.strip_suffix(')')) {
                let (key, value) = filter.split_once("==")?;
                let value = value.trim().trim_matches('"').trim_matches('\'');
                cur = cur
                    .as_array()?
                    .iter()
                    .find(|item| item.get(key.trim()).and_then(Value::as_str) == Some(value))?;
            } else {
                cur = cur.get(inner.parse::<usize>().ok()?)?;
            }
            rest = &r[end + 1..];
        } else {
            return None;
        }
    }
    Some(cur)
}

/// "5s", "3m", "2h", "4d", as kubectl prints ages.
pub fn age(created: Option<&str>) -> String {
    let Some(ts) = created.and_then(|c| c.parse::<jiff::Timestamp>().ok()) else {
        return "<unknown>".into();
    };
    let secs = jiff::Timestamp::now()
        .as_second()
        .saturating_sub(ts.as_second())
        .max(0);
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s if s < 172_800 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    }
}

fn cell(v: Option<&Value>) -> Value {
    match v {
        None | Some(Value::Null) => json!("<none>"),
        Some(Value::String(s)) => json!(s),
        Some(other) => other.clone(),
    }
}

/// Columns of a kind: name, extra columns (with JSONPath), age.
fn columns(def: &ResourceDef) -> Vec<(String, String, Option<String>)> {
    let mut cols = vec![("Name".to_owned(), "string".to_owned(), None)];
    let extra: Vec<(&str, &str)> = match (def.group.as_str(), def.plural.as_str()) {
        ("", "namespaces") => vec![("Status", ".status.phase")],
        ("", "secrets") => vec![("Type", ".type")],
        ("build.openshift.io", "builds") => vec![
            ("Status", ".status.phase"),
            ("Output", ".spec.output.to.name"),
        ],
        ("image.openshift.io", "imagestreams") => {
            vec![("Image Repository", ".status.dockerImageRepository")]
        }
        _ => vec![],
    };
    for (name, path) in extra {
        cols.push((name.to_owned(), "string".to_owned(), Some(path.to_owned())));
    }
    for (name, ty, path) in &def.printer_columns {
        cols.push((name.clone(), ty.clone(), Some(path.clone())));
    }
    if !cols.iter().any(|(n, _, _)| n == "Age") {
        cols.push(("Age".to_owned(), "date".to_owned(), None));
    }
    cols
}

/// A Table of the given objects.
pub fn table(def: &ResourceDef, objects: &[&Value], rv: u64) -> Value {
    let cols = columns(def);
    let definitions: Vec<Value> = cols
        .iter()
        .map(|(name, ty, _)| json!({"name": name, "type": ty, "format": if name == "Name" { "name" } else { "" }, "description": name, "priority": 0}))
        .collect();
    let rows: Vec<Value> = objects
        .iter()
        .map(|obj| {
            let cells: Vec<Value> = cols
                .iter()
                .map(|(name, ty, path)| match (name.as_str(), path) {
                    ("Name", None) => cell(obj.pointer("/metadata/name")),
                    ("Age", None) => json!(age(obj.pointer("/metadata/creationTimestamp").and_then(Value::as_str))),
                    // Like the apiserver's table convertor: dates show as ages.
                    (_, Some(p)) if ty == "date" => json!(age(json_path(obj, p).and_then(Value::as_str))),
                    (_, Some(p)) => cell(json_path(obj, p)),
                    _ => json!("<none>"),
                })
                .collect();
            json!({"cells": cells, "object": {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": obj.get("metadata").cloned().unwrap_or_default()}})
        })
        .collect();
    json!({"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": {"resourceVersion": rv.to_string()}, "columnDefinitions": definitions, "rows": rows})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_path_subset() {
        let obj = json!({"spec": {"host": "h"}, "status": {"conditions": [{"type": "Ready", "status": "True"}, {"type": "X", "status": "False"}]}, "l": [1, 2]});
        assert_eq!(json_path(&obj, ".spec.host"), Some(&json!("h")));
        assert_eq!(
            json_path(&obj, ".status.conditions[?(@.type==\"Ready\")].status"),
            Some(&json!("True"))
        );
        assert_eq!(json_path(&obj, ".l[1]"), Some(&json!(2)));
        assert_eq!(json_path(&obj, ".missing.x"), None);
    }

    #[test]
    fn ages() {
        assert_eq!(age(None), "<unknown>");
        let t = jiff::Timestamp::now()
            .checked_sub(jiff::SignedDuration::from_secs(3 * 3600))
            .unwrap();
        assert_eq!(
            age(Some(&t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())),
            "3h"
        );
    }
}
