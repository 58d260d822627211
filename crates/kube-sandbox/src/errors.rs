//! The apiserver's `Status` errors, with the codes and reasons clients test.

use super::resources::ResourceDef;
use serde_json::{Value, json};

/// The `details.causes[].reason` of a field error, from the text
/// apimachinery starts its message with.
pub fn cause_type(message: &str) -> &'static str {
    const TYPES: &[(&str, &str)] = &[
        ("Required value", "FieldValueRequired"),
        ("Invalid value", "FieldValueInvalid"),
        ("Unsupported value", "FieldValueNotSupported"),
        ("Forbidden", "FieldValueForbidden"),
        ("Duplicate value", "FieldValueDuplicate"),
        ("Not found", "FieldValueNotFound"),
        ("Too long", "FieldValueTooLong"),
        ("Too many", "FieldValueTooMany"),
        ("Internal error", "InternalError"),
    ];
    TYPES
        .iter()
        .find(|(prefix, _)| message.starts_with(prefix))
        .map_or("FieldValueInvalid", |(_, t)| t)
}

/// An error answered as a `Status` object.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    /// HTTP status.
    pub code: u16,
    /// `StatusReason`.
    pub reason: &'static str,
    /// Message.
    pub message: String,
    /// `details`.
    pub details: Option<Value>,
}

impl ApiError {
    fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            reason,
            message: message.into(),
            details: None,
        }
    }

    fn with_details(mut self, def: &ResourceDef, name: &str) -> Self {
        self.details = Some(json!({"name": name, "group": def.group, "kind": def.plural}));
        self
    }

    /// 404 for a missing object.
    pub fn not_found(def: &ResourceDef, name: &str) -> Self {
        Self::new(
            404,
            "NotFound",
            format!("{} \"{name}\" not found", def.group_resource()),
        )
        .with_details(def, name)
    }

    /// 404 for a missing namespace.
    pub fn namespace_not_found(ns: &str) -> Self {
        let mut e = Self::new(404, "NotFound", format!("namespaces \"{ns}\" not found"));
        e.details = Some(json!({"name": ns, "kind": "namespaces"}));
        e
    }

    /// 404 for an unknown path.
    pub fn path_not_found() -> Self {
        Self::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        )
    }

    /// 409 AlreadyExists.
    pub fn already_exists(def: &ResourceDef, name: &str) -> Self {
        Self::new(
            409,
            "AlreadyExists",
            format!("{} \"{name}\" already exists", def.group_resource()),
        )
        .with_details(def, name)
    }

    /// 409 Conflict on a stale resourceVersion.
    pub fn conflict(def: &ResourceDef, name: &str) -> Self {
        Self::new(
            409,
            "Conflict",
            format!("Operation cannot be fulfilled on {} \"{name}\": the object has been modified; please apply your changes to the latest version and try again", def.group_resource()),
        )
        .with_details(def, name)
    }

    /// 500 without a reason: a resourceVersion that is not a number
    /// (kube-api-recorded.md, cm-get-bad-rv, watch-rv-bad).
    pub fn bad_resource_version(rv: &str) -> Self {
        Self::new(
            500,
            "",
            format!(
                "resourceVersion: Invalid value: \"{rv}\": strconv.ParseUint: parsing \"{rv}\": invalid syntax"
            ),
        )
    }

    /// 422 for resourceVersionMatch without resourceVersion
    /// (list-rvmatch-without-rv).
    pub fn rv_match_without_rv() -> Self {
        let mut e = Self::new(
            422,
            "Invalid",
            "ListOptions.meta.k8s.io \"\" is invalid: resourceVersionMatch: Forbidden: resourceVersionMatch is forbidden unless resourceVersion is provided",
        );
        e.details = Some(
            json!({"group": "meta.k8s.io", "kind": "ListOptions", "causes": [
            {"reason": "FieldValueForbidden", "message": "Forbidden: resourceVersionMatch is forbidden unless resourceVersion is provided", "field": "resourceVersionMatch"}]}),
        );
        e
    }

    /// 504 for a list at a resourceVersion the store has not reached
    /// (list-rv-future).
    pub fn rv_too_large(asked: u64, current: u64) -> Self {
        let mut e = Self::new(
            504,
            "Timeout",
            format!("Timeout: Too large resource version: {asked}, current: {current}"),
        );
        e.details = Some(
            json!({"causes": [{"reason": "ResourceVersionTooLarge", "message": "Too large resource version"}], "retryAfterSeconds": 1}),
        );
        e
    }

    /// 409 for a delete whose UID precondition does not hold
    /// (cm-delete-uid-precondition).
    pub fn uid_precondition(def: &ResourceDef, name: &str, asked: &str, actual: &str) -> Self {
        Self::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {} \"{name}\": the UID in the precondition ({asked}) does not match the UID in record ({actual}). The object might have been deleted and then recreated",
                def.kind
            ),
        )
        .with_details(def, name)
    }

    /// 409 Conflict from server-side apply.
    /// Each conflict is (manager, field): one `FieldManagerConflict`
    /// cause each (ssa-conflict-m2).
    pub fn apply_conflict(
        def: &ResourceDef,
        name: &str,
        message: String,
        conflicts: &[(String, String)],
    ) -> Self {
        let mut e = Self::new(409, "Conflict", message).with_details(def, name);
        if let Some(d) = e.details.as_mut() {
            d["causes"] = json!(conflicts
                .iter()
                .map(|(manager, field)| json!({"reason": "FieldManagerConflict", "message": format!("conflict with {manager:?}"), "field": field}))
                .collect::<Vec<_>>());
        }
        e
    }

    /// 422 for request options (`CreateOptions`, `PatchOptions`, …):
    /// one (field, message) cause.
    pub fn invalid_options(options: &str, field: &str, message: &str) -> Self {
        Self::invalid_kind(
            &format!("{options}.meta.k8s.io"),
            "meta.k8s.io",
            "",
            &[(field.to_owned(), message.to_owned())],
        )
    }

    /// 415 for a body (POST, PUT) in a media type the kind does not take.
    pub fn unsupported_body(custom: bool) -> Self {
        let types = if custom {
            "application/json, application/yaml"
        } else {
            "application/json, application/yaml, application/vnd.kubernetes.protobuf"
        };
        Self::new(
            415,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format - accepted media types include: {types}"
            ),
        )
    }

    /// 422 Invalid. Each cause is (field, message); the message starts
    /// with the error type's text as apimachinery writes it ("Required
    /// value", "Invalid value: …", "Unsupported value: …", "Forbidden: …"),
    /// which gives the cause's type. The message lists the causes in order,
    /// each text once (apimachinery's aggregate).
    pub fn invalid(def: &ResourceDef, name: &str, causes: &[(String, String)]) -> Self {
        // events.k8s.io Events are validated as core Events: unqualified
        // (event-create-missing-fields).
        let kind = if def.group.is_empty() || def.group == "events.k8s.io" {
            def.kind.clone()
        } else {
            format!("{}.{}", def.kind, def.group)
        };
        Self::invalid_kind(&kind, &def.group, name, causes)
    }

    /// 422 Invalid for `kind` (already qualified), as [`ApiError::invalid`].
    pub fn invalid_kind(kind: &str, group: &str, name: &str, causes: &[(String, String)]) -> Self {
        let mut text: Vec<String> = Vec::new();
        for (field, msg) in causes {
            let line = format!("{field}: {msg}");
            if !text.contains(&line) {
                text.push(line);
            }
        }
        let text = if text.len() == 1 {
            text[0].clone()
        } else {
            format!("[{}]", text.join(", "))
        };
        let mut e = Self::new(
            422,
            "Invalid",
            format!("{kind} \"{name}\" is invalid: {text}"),
        );
        let bare_kind = kind.split('.').next().unwrap_or(kind);
        e.details = Some(json!({
            "name": name, "group": group, "kind": bare_kind,
            "causes": causes.iter().map(|(f, m)| json!({"reason": cause_type(m), "message": m, "field": f})).collect::<Vec<_>>(),
        }));
        e
    }

    /// 422 for a patch that does not apply.
    pub fn unprocessable(message: impl Into<String>) -> Self {
        Self::new(422, "Invalid", message)
    }

    /// 400 BadRequest.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message)
    }

    /// 403 for content created in a terminating namespace
    /// (ns2-create-in-terminating).
    pub fn namespace_terminating(def: &ResourceDef, name: &str, ns: &str) -> Self {
        let mut e = Self::new(
            403,
            "Forbidden",
            format!(
                "{} \"{name}\" is forbidden: unable to create new content in namespace {ns} because it is being terminated",
                def.group_resource()
            ),
        );
        e.details = Some(
            json!({"name": name, "group": def.group, "kind": def.plural, "causes": [
            {"reason": "NamespaceTerminating", "message": format!("namespace {ns} is being terminated"), "field": "metadata.namespace"}]}),
        );
        e
    }

    /// 403 Forbidden.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(403, "Forbidden", message)
    }

    /// 405 MethodNotAllowed.
    pub fn method_not_allowed() -> Self {
        Self::new(
            405,
            "MethodNotAllowed",
            "the server does not allow this method on the requested resource",
        )
    }

    /// 410 Expired.
    pub fn expired(message: impl Into<String>) -> Self {
        Self::new(410, "Expired", message)
    }

    /// 415 UnsupportedMediaType for a patch type the kind does not take
    /// (cr-patch-strategic), or a content type that is no patch type at
    /// all (cm-patch-unsupported-ctype).
    pub fn unsupported_media_type(content_type: &str) -> Self {
        let known = [
            "application/json-patch+json",
            "application/merge-patch+json",
            "application/strategic-merge-patch+json",
            "application/apply-patch+yaml",
        ];
        let message = if known.contains(&content_type) {
            "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml".to_owned()
        } else {
            "415: Unsupported Media Type".to_owned()
        };
        Self::new(415, "UnsupportedMediaType", message)
    }

    /// 429 TooManyRequests.
    pub fn too_many_requests() -> Self {
        Self::new(
            429,
            "TooManyRequests",
            "the server has received too many requests and has asked us to try again later",
        )
    }

    /// 500 InternalError.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(
            500,
            "InternalError",
            format!("Internal error occurred: {}", message.into()),
        )
    }

    /// The `Status` object.
    pub fn to_status(&self) -> Value {
        let mut s = json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": self.message, "code": self.code,
        });
        // Some answers carry no reason at all (a bad resourceVersion's 500).
        if !self.reason.is_empty() {
            s["reason"] = json!(self.reason);
        }
        if let Some(d) = &self.details {
            s["details"] = d.clone();
        }
        s
    }
}
