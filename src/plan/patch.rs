//! JSON patch operations, typed (`json_patch`), with paths built from
//! unescaped keys: escaping (RFC 6901, `~` and `/`) happens in one place,
//! jsonptr's.

use json_patch::jsonptr::PointerBuf;
use json_patch::{AddOperation, PatchOperation, RemoveOperation, ReplaceOperation, TestOperation};
use serde_json::Value;

/// One operation.
pub type Op = PatchOperation;

/// The pointer to the location named by these (unescaped) keys.
pub fn path(keys: &[&str]) -> PointerBuf {
    PointerBuf::from_tokens(keys.iter().copied())
}

/// `add`.
pub fn add(keys: &[&str], value: Value) -> Op {
    PatchOperation::Add(AddOperation {
        path: path(keys),
        value,
    })
}

/// `remove`.
pub fn remove(keys: &[&str]) -> Op {
    PatchOperation::Remove(RemoveOperation { path: path(keys) })
}

/// `replace`.
pub fn replace(keys: &[&str], value: Value) -> Op {
    PatchOperation::Replace(ReplaceOperation {
        path: path(keys),
        value,
    })
}

/// `test`.
pub fn test(keys: &[&str], value: Value) -> Op {
    PatchOperation::Test(TestOperation {
        path: path(keys),
        value,
    })
}

/// The patch as the JSON array the apiserver (and an AdmissionResponse)
/// carries.
pub fn to_json(ops: &[Op]) -> Value {
    serde_json::to_value(ops).unwrap_or(Value::Array(Vec::new()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keys_are_escaped_once_and_ops_serialise_as_rfc_6902() {
        assert_eq!(
            path(&["metadata", "labels", "a/b~c"]).as_str(),
            "/metadata/labels/a~1b~0c"
        );
        assert_eq!(path(&["secrets", "-"]).as_str(), "/secrets/-");
        assert_eq!(
            to_json(&[
                test(&["metadata", "resourceVersion"], json!("1")),
                add(
                    &["metadata", "annotations", "quay.redhat.com/x"],
                    json!("y")
                ),
                remove(&["spec", "output", "to", "namespace"]),
                replace(&["spec", "output", "to", "kind"], json!("DockerImage")),
            ]),
            json!([
                {"op": "test", "path": "/metadata/resourceVersion", "value": "1"},
                {"op": "add", "path": "/metadata/annotations/quay.redhat.com~1x", "value": "y"},
                {"op": "remove", "path": "/spec/output/to/namespace"},
                {"op": "replace", "path": "/spec/output/to/kind", "value": "DockerImage"},
            ])
        );
    }
}
