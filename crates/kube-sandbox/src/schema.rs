//! What the apiserver does with a CRD's structural schema on every write
//! of a custom resource: apply defaults, prune unknown fields, and validate
//! types, required fields, enums, patterns, lengths, bounds and list-map
//! keys. (CEL rules are not evaluated by the sandbox.)

use serde_json::{Map, Value};

/// One validation failure: (field path, message).
pub type Cause = (String, String);

fn type_ok(schema: &Value, v: &Value) -> bool {
    if v.is_null() {
        return schema
            .get("nullable")
            .and_then(Value::as_bool)
            .unwrap_or(false);
    }
    match schema.get("type").and_then(Value::as_str) {
        None => true,
        Some("object") => v.is_object(),
        Some("array") => v.is_array(),
        Some("string") => v.is_string(),
        Some("integer") => v.is_i64() || v.is_u64(),
        Some("number") => v.is_number(),
        Some("boolean") => v.is_boolean(),
        Some(_) => true,
    }
}

fn show(v: &Value) -> String {
    match v {
        Value::String(s) => format!("{s:?}"),
        other => other.to_string(),
    }
}

/// Defaults, prunes and validates `value` at `path` against `schema`.
pub fn apply(schema: &Value, value: &mut Value, path: &str, out: &mut Findings) {
    if !type_ok(schema, value) {
        let expected = schema.get("type").and_then(Value::as_str).unwrap_or("?");
        out.causes.push((
            path.to_owned(),
            format!(
                "Invalid value: {}: {path} in body must be of type {expected}",
                show(value)
            ),
        ));
        return;
    }
    if let Some(allowed) = schema.get("enum").and_then(Value::as_array)
        && !allowed.contains(value)
    {
        let list = allowed.iter().map(show).collect::<Vec<_>>().join(", ");
        out.causes.push((
            path.to_owned(),
            format!(
                "Unsupported value: {}: supported values: {list}",
                show(value)
            ),
        ));
    }
    let shown = show(value);
    match value {
        Value::String(s) => {
            let len = s.chars().count() as u64;
            if let Some(min) = schema.get("minLength").and_then(Value::as_u64)
                && len < min
            {
                out.causes.push((
                    path.to_owned(),
                    format!(
                        "Invalid value: {shown}: {path} in body should be at least {min} chars long"
                    ),
                ));
            }
            if let Some(max) = schema.get("maxLength").and_then(Value::as_u64)
                && len > max
            {
                out.causes.push((
                    path.to_owned(),
                    format!("Too long: may not be more than {max} bytes"),
                ));
            }
            if let Some(pattern) = schema.get("pattern").and_then(Value::as_str) {
                match regex::Regex::new(pattern) {
                    Ok(re) if !re.is_match(s) => {
                        out.causes.push((
                            path.to_owned(),
                            format!(
                                "Invalid value: {shown}: {path} in body should match '{pattern}'"
                            ),
                        ));
                    }
                    Ok(_) => {}
                    Err(e) => out.causes.push((
                        path.to_owned(),
                        format!("the schema's pattern does not compile: {e}"),
                    )),
                }
            }
        }
        Value::Number(n) => {
            if let (Some(min), Some(x)) =
                (schema.get("minimum").and_then(Value::as_f64), n.as_f64())
                && x < min
            {
                out.causes.push((path.to_owned(), format!("Invalid value: {n}: {path} in body should be greater than or equal to {min}")));
            }
            if let (Some(max), Some(x)) =
                (schema.get("maximum").and_then(Value::as_f64), n.as_f64())
                && x > max
            {
                out.causes.push((
                    path.to_owned(),
                    format!(
                        "Invalid value: {n}: {path} in body should be less than or equal to {max}"
                    ),
                ));
            }
        }
        Value::Array(items) => {
            if let Some(min) = schema.get("minItems").and_then(Value::as_u64)
                && (items.len() as u64) < min
            {
                out.causes.push((
                    path.to_owned(),
                    format!(
                        "Invalid value: {}: {path} in body should have at least {min} items",
                        items.len()
                    ),
                ));
            }
            if let Some(max) = schema.get("maxItems").and_then(Value::as_u64)
                && (items.len() as u64) > max
            {
                out.causes.push((
                    path.to_owned(),
                    format!("Too many: {}: must have at most {max} items", items.len()),
                ));
            }
            if let Some(item_schema) = schema.get("items") {
                for (i, item) in items.iter_mut().enumerate() {
                    apply(item_schema, item, &format!("{path}[{i}]"), out);
                }
            }
            if schema.get("x-kubernetes-list-type").and_then(Value::as_str) == Some("map") {
                let keys: Vec<&str> = schema
                    .get("x-kubernetes-list-map-keys")
                    .and_then(Value::as_array)
                    .map(|k| k.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default();
                let mut seen = Vec::new();
                for (i, item) in items.iter().enumerate() {
                    let id: Vec<Option<&Value>> = keys.iter().map(|k| item.get(*k)).collect();
                    if seen.contains(&id) {
                        out.causes.push((
                            format!("{path}[{i}]"),
                            format!("Duplicate value: {}", show(item)),
                        ));
                    }
                    seen.push(id);
                }
            }
        }
        Value::Object(obj) => apply_object(schema, obj, path, out),
        _ => {}
    }
}

fn apply_object(schema: &Value, obj: &mut Map<String, Value>, path: &str, out: &mut Findings) {
    let preserve = schema
        .get("x-kubernetes-preserve-unknown-fields")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let props = schema.get("properties").and_then(Value::as_object);
    if let Some(props) = props {
        for (k, sub) in props {
            if !obj.contains_key(k)
                && let Some(d) = sub.get("default")
            {
                obj.insert(k.clone(), d.clone());
            }
        }
        if !preserve {
            let unknown: Vec<String> = obj
                .keys()
                .filter(|k| !props.contains_key(*k))
                .cloned()
                .collect();
            for k in unknown {
                obj.remove(&k);
                out.pruned.push(if path.is_empty() {
                    k
                } else {
                    format!("{path}.{k}")
                });
            }
        }
        for (k, v) in obj.iter_mut() {
            if let Some(sub) = props.get(k) {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                apply(sub, v, &p, out);
            }
        }
    } else if let Some(additional) = schema.get("additionalProperties").filter(|a| a.is_object()) {
        for (k, v) in obj.iter_mut() {
            apply(additional, v, &format!("{path}[{k}]"), out);
        }
    }
    for req in schema
        .get("required")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
    {
        if !obj.contains_key(req) {
            let p = if path.is_empty() {
                req.to_owned()
            } else {
                format!("{path}.{req}")
            };
            out.causes.push((p, "Required value".into()));
        }
    }
}

/// Applies a CRD version's `openAPIV3Schema` to a whole custom resource;
/// `metadata`, `apiVersion` and `kind` are the apiserver's own.
pub fn apply_to_resource(schema: &Value, obj: &mut Value) -> Findings {
    let mut out = Findings::default();
    let Some(map) = obj.as_object_mut() else {
        out.causes.push((String::new(), "must be an object".into()));
        return out;
    };
    let mut body: Map<String, Value> = map
        .iter()
        .filter(|(k, _)| !matches!(k.as_str(), "metadata" | "apiVersion" | "kind"))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let mut root_schema = schema.clone();
    if let Some(props) = root_schema
        .get_mut("properties")
        .and_then(Value::as_object_mut)
    {
        for k in ["metadata", "apiVersion", "kind"] {
            props.remove(k);
        }
    }
    apply_object(&root_schema, &mut body, "", &mut out);
    map.retain(|k, _| matches!(k.as_str(), "metadata" | "apiVersion" | "kind"));
    map.extend(body);
    out
}

/// The formats the apiserver validates (apiextensions-apiserver's
/// supported formats); any other is accepted with a warning (crd-create).
const KNOWN_FORMATS: &[&str] = &[
    "bsonobjectid",
    "uri",
    "email",
    "hostname",
    "ipv4",
    "ipv6",
    "cidr",
    "mac",
    "uuid",
    "uuid3",
    "uuid4",
    "uuid5",
    "isbn",
    "isbn10",
    "isbn13",
    "creditcard",
    "ssn",
    "hexcolor",
    "rgbcolor",
    "byte",
    "password",
    "date",
    "duration",
    "datetime",
    "date-time",
    "int32",
    "int64",
    "float",
    "double",
];

/// The formats of a schema the apiserver does not know, in order met.
pub fn unrecognized_formats(schema: &Value) -> Vec<String> {
    fn walk(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                if let Some(f) = m.get("format").and_then(Value::as_str)
                    && !KNOWN_FORMATS.contains(&f)
                    && !out.iter().any(|o| o == f)
                {
                    out.push(f.to_owned());
                }
                m.values().for_each(|c| walk(c, out));
            }
            Value::Array(a) => a.iter().for_each(|c| walk(c, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(schema, &mut out);
    out
}

/// What applying a schema found: validation causes, and the unknown
/// fields it pruned (paths as the apiserver names them, `spec.extra`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Findings {
    /// (field, message) causes.
    pub causes: Vec<Cause>,
    /// Pruned unknown fields.
    pub pruned: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema() -> Value {
        json!({"type": "object", "required": ["spec"], "properties": {
            "spec": {"type": "object", "required": ["host"], "properties": {
                "host": {"type": "string", "pattern": "^https?://"},
                "id": {"type": "string", "default": "openshift", "maxLength": 10},
                "mode": {"type": "string", "enum": ["A", "B"]},
                "n": {"type": "integer", "minimum": 1},
                "list": {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"], "items": {"type": "object", "properties": {"name": {"type": "string"}}}},
                "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}
            }},
            "status": {"type": "object", "properties": {"ok": {"type": "boolean"}}}
        }})
    }

    #[test]
    fn defaults_and_pruning() {
        let mut obj = json!({"apiVersion": "x/v1", "kind": "K", "metadata": {"name": "a"}, "spec": {"host": "https://q", "typo": 1, "free": {"anything": true}}, "extra": 1});
        assert!(apply_to_resource(&schema(), &mut obj).causes.is_empty());
        assert_eq!(obj["spec"]["id"], "openshift");
        assert!(obj["spec"].get("typo").is_none() && obj.get("extra").is_none());
        assert_eq!(obj["spec"]["free"]["anything"], true);
        assert_eq!(obj["metadata"]["name"], "a");
    }

    #[test]
    fn every_rule_reports() {
        let mut obj = json!({"spec": {"host": "quay.example.com", "id": "far-too-long-id", "mode": "C", "n": 0, "list": [{"name": "x"}, {"name": "x"}]}, "status": {"ok": "yes"}});
        let causes = apply_to_resource(&schema(), &mut obj).causes;
        let fields: Vec<&str> = causes.iter().map(|(f, _)| f.as_str()).collect();
        for f in [
            "spec.host",
            "spec.id",
            "spec.mode",
            "spec.n",
            "spec.list[1]",
            "status.ok",
        ] {
            assert!(fields.contains(&f), "{f} in {causes:?}");
        }
        let mut missing = json!({"spec": {}});
        assert_eq!(
            apply_to_resource(&schema(), &mut missing).causes,
            vec![("spec.host".to_owned(), "Required value".to_owned())]
        );
        let mut no_spec = json!({});
        assert!(
            apply_to_resource(&schema(), &mut no_spec)
                .causes
                .iter()
                .any(|(f, _)| f == "spec")
        );
    }
}
