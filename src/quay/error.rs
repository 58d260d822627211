//! What can go wrong talking to Quay, mapped from Quay's real answers.
//!
//! Quay's quirks are absorbed here so callers see one meaning per variant: a
//! missing robot answers HTTP 400 "Could not find robot" and becomes
//! [`QuayError::NotFound`]; duplicates answer 400 "already exists" / "Existing
//! robot" and become [`QuayError::AlreadyExists`].

use super::endpoint::Endpoint;
use super::names::InvalidName;
use super::types::ErrorBody;
use std::time::Duration;

/// A small, fixed set of error categories for metric labels, Event reasons
/// and requeue decisions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Category {
    /// The object does not exist.
    NotFound,
    /// The object exists already.
    AlreadyExists,
    /// Quay rejected the request as invalid; repeating it will not help.
    InvalidRequest,
    /// The token is missing, invalid, expired, or lacks a scope or permission.
    Auth,
    /// Quay asked us to slow down.
    RateLimited,
    /// Quay or the network failed; worth retrying later.
    Unavailable,
    /// Quay answered something the client cannot read.
    Protocol,
    /// The client was configured wrongly.
    Config,
}

impl Category {
    /// A stable label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Category::NotFound => "not_found",
            Category::AlreadyExists => "already_exists",
            Category::InvalidRequest => "invalid_request",
            Category::Auth => "auth",
            Category::RateLimited => "rate_limited",
            Category::Unavailable => "unavailable",
            Category::Protocol => "protocol",
            Category::Config => "config",
        }
    }
}

/// An error from the Quay client.
#[derive(Debug, thiserror::Error)]
pub enum QuayError {
    /// The object does not exist (404, or Quay's 400 "Could not find robot").
    #[error("{endpoint}: not found: {message}")]
    NotFound {
        /// The call.
        endpoint: Endpoint,
        /// Quay's own text (`detail`, `error_message`, `message` or
        /// `error`, whichever the answer had), first line only.
        message: String,
    },
    /// The object exists already (Quay answers duplicates with 400).
    #[error("{endpoint}: already exists: {message}")]
    AlreadyExists {
        /// The call.
        endpoint: Endpoint,
        /// Quay's own text (`detail`, `error_message`, `message` or
        /// `error`, whichever the answer had), first line only.
        message: String,
    },
    /// Quay rejected the request (400, 405, 415, 422 and other 4xx).
    #[error("{endpoint}: rejected with HTTP {status}: {message}")]
    InvalidRequest {
        /// The call.
        endpoint: Endpoint,
        /// The HTTP status Quay answered.
        status: u16,
        /// Quay's own text (`detail`, `error_message`, `message` or
        /// `error`, whichever the answer had), first line only.
        message: String,
    },
    /// 401: the token is missing, invalid or expired.
    #[error("{endpoint}: unauthorized (HTTP 401): {message}")]
    Unauthorized {
        /// The call.
        endpoint: Endpoint,
        /// Quay's own text (`detail`, `error_message`, `message` or
        /// `error`, whichever the answer had), first line only.
        message: String,
    },
    /// 403: the token lacks a scope or the user a permission (or, for writes,
    /// Quay did not accept the token at all and fell back to its CSRF check).
    #[error("{endpoint}: forbidden (HTTP 403): {message}")]
    Forbidden {
        /// The call.
        endpoint: Endpoint,
        /// Quay's own text (`detail`, `error_message`, `message` or
        /// `error`, whichever the answer had), first line only.
        message: String,
    },
    /// 409.
    #[error("{endpoint}: conflict (HTTP 409): {message}")]
    Conflict {
        /// The call.
        endpoint: Endpoint,
        /// Quay's own text (`detail`, `error_message`, `message` or
        /// `error`, whichever the answer had), first line only.
        message: String,
    },
    /// 429, with Quay's Retry-After when it sent one.
    #[error("{endpoint}: rate limited (HTTP 429){}", retry_after.map(|d| format!(", retry after {}s", d.as_secs())).unwrap_or_default())]
    RateLimited {
        /// The call.
        endpoint: Endpoint,
        /// How long Quay asked us to wait.
        retry_after: Option<Duration>,
    },
    /// 5xx.
    #[error("{endpoint}: Quay server error (HTTP {status}): {message}")]
    Server {
        /// The call.
        endpoint: Endpoint,
        /// The HTTP status Quay answered.
        status: u16,
        /// Quay's message, or the start of its HTML page.
        message: String,
    },
    /// The request did not get an answer (connect, TLS, timeout, reset).
    #[error("{endpoint}: request failed: {message}")]
    Transport {
        /// The call.
        endpoint: Endpoint,
        /// What failed.
        message: String,
        /// Whether the failure happened before the request was sent, so a
        /// non-idempotent request can be repeated safely.
        before_send: bool,
        /// Whether the request timed out.
        timeout: bool,
    },
    /// Quay answered with a body the client cannot decode.
    #[error("{endpoint}: unexpected answer (HTTP {status}): {message}")]
    Decode {
        /// The call.
        endpoint: Endpoint,
        /// The HTTP status Quay answered.
        status: u16,
        /// The decoding error.
        message: String,
    },
    /// An earlier call showed the token dead; no request was made.
    #[error(
        "{endpoint}: not sent: Quay refused this token earlier (revoked, expired or its user disabled)"
    )]
    TokenRejected {
        /// The call.
        endpoint: Endpoint,
    },
    /// A name Quay would reject; no request was made.
    #[error(transparent)]
    InvalidName(#[from] InvalidName),
    /// The client configuration is unusable.
    #[error("Quay client configuration: {0}")]
    Config(String),
}

impl QuayError {
    /// The category of the error.
    pub fn category(&self) -> Category {
        match self {
            QuayError::NotFound { .. } => Category::NotFound,
            QuayError::AlreadyExists { .. } => Category::AlreadyExists,
            QuayError::InvalidRequest { .. } | QuayError::Conflict { .. } => {
                Category::InvalidRequest
            }
            QuayError::InvalidName(_) => Category::InvalidRequest,
            QuayError::Unauthorized { .. }
            | QuayError::Forbidden { .. }
            | QuayError::TokenRejected { .. } => Category::Auth,
            QuayError::RateLimited { .. } => Category::RateLimited,
            QuayError::Server { .. } | QuayError::Transport { .. } => Category::Unavailable,
            QuayError::Decode { .. } => Category::Protocol,
            QuayError::Config(_) => Category::Config,
        }
    }

    /// Whether the object is missing.
    pub fn is_not_found(&self) -> bool {
        matches!(self, QuayError::NotFound { .. })
    }

    /// Whether Quay does not know the user a team member add named
    /// (`400 Unknown user`).
    pub fn is_unknown_user(&self) -> bool {
        matches!(self, QuayError::InvalidRequest { status: 400, message, .. } if message == "Unknown user")
    }

    /// Whether Quay answered as it answers a dead token
    /// (quay-api-bootstrap.md): 401 on the API, or — for a write, where
    /// Quay falls back to cookie auth — its CSRF refusal, which a valid
    /// Bearer token never gets. Not a missing scope (403
    /// `insufficient_scope`), not an outage.
    pub fn is_dead_token(&self) -> bool {
        match self {
            QuayError::Unauthorized { .. } | QuayError::TokenRejected { .. } => true,
            QuayError::Forbidden { message, .. } => is_csrf_message(message),
            _ => false,
        }
    }

    /// The scope Quay found missing: a 403 `insufficient_scope` answer to a
    /// call that needs this scope (or a permission the user lacks on the
    /// object; Quay answers both alike).
    pub fn missing_scope(&self) -> Option<&'static str> {
        match self {
            QuayError::Forbidden { endpoint, message }
                if message.starts_with(INSUFFICIENT_SCOPE) =>
            {
                endpoint.required_scope()
            }
            _ => None,
        }
    }

    /// Whether the object exists already.
    pub fn is_already_exists(&self) -> bool {
        matches!(self, QuayError::AlreadyExists { .. })
    }

    /// Whether the same request may succeed later without any change
    /// (429, 502, 503, 504, transport failures).
    pub fn is_transient(&self) -> bool {
        match self {
            QuayError::RateLimited { .. } | QuayError::Transport { .. } => true,
            QuayError::Server { status, .. } => matches!(status, 502..=504),
            _ => false,
        }
    }

    /// Whether Quay may have carried out the request although the client saw
    /// a failure (so a create must be verified before it is repeated).
    pub fn is_ambiguous(&self) -> bool {
        match self {
            QuayError::Transport { before_send, .. } => !before_send,
            QuayError::Server { .. } => true,
            _ => false,
        }
    }

    /// The wait Quay asked for, if any.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            QuayError::RateLimited { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// The endpoint the error came from, when a request was made.
    pub fn endpoint(&self) -> Option<Endpoint> {
        match self {
            QuayError::NotFound { endpoint, .. }
            | QuayError::AlreadyExists { endpoint, .. }
            | QuayError::InvalidRequest { endpoint, .. }
            | QuayError::Unauthorized { endpoint, .. }
            | QuayError::Forbidden { endpoint, .. }
            | QuayError::Conflict { endpoint, .. }
            | QuayError::RateLimited { endpoint, .. }
            | QuayError::Server { endpoint, .. }
            | QuayError::Transport { endpoint, .. }
            | QuayError::Decode { endpoint, .. }
            | QuayError::TokenRejected { endpoint } => Some(*endpoint),
            QuayError::InvalidName(_) | QuayError::Config(_) => None,
        }
    }

    /// Maps a non-success HTTP answer to an error, with Quay's quirks.
    pub fn from_response(
        endpoint: Endpoint,
        status: u16,
        retry_after: Option<Duration>,
        body: &[u8],
    ) -> QuayError {
        let parsed: ErrorBody = serde_json::from_slice(body).unwrap_or_default();
        let message = match parsed.text() {
            Some(text) => truncate(text),
            None => summarize_body(body),
        };
        match status {
            404 => QuayError::NotFound { endpoint, message },
            400 if is_not_found_message(&message) => QuayError::NotFound { endpoint, message },
            400 if is_already_exists_message(&message) => {
                QuayError::AlreadyExists { endpoint, message }
            }
            401 => QuayError::Unauthorized { endpoint, message },
            403 if parsed.error_type.as_deref() == Some("insufficient_scope") => {
                QuayError::Forbidden {
                    endpoint,
                    message: match endpoint.required_scope() {
                        Some(scope) => format!(
                            "{INSUFFICIENT_SCOPE}: the token lacks scope {scope}, or its user lacks permission on the object"
                        ),
                        None => {
                            format!("{INSUFFICIENT_SCOPE}: the user lacks permission on the object")
                        }
                    },
                }
            }
            403 => QuayError::Forbidden { endpoint, message },
            409 => QuayError::Conflict { endpoint, message },
            429 => QuayError::RateLimited {
                endpoint,
                retry_after,
            },
            500..=599 => QuayError::Server {
                endpoint,
                status,
                message,
            },
            _ => QuayError::InvalidRequest {
                endpoint,
                status,
                message,
            },
        }
    }

    /// Maps a reqwest failure; never includes headers (and so never a token).
    pub(crate) fn from_transport(endpoint: Endpoint, err: &reqwest::Error) -> QuayError {
        let timeout = err.is_timeout();
        // A connect failure means nothing reached Quay.
        let before_send = err.is_connect() && !timeout;
        let mut message = error_chain(err);
        if timeout {
            message = format!("timed out: {message}");
        }
        QuayError::Transport {
            endpoint,
            message,
            before_send,
            timeout,
        }
    }
}

/// The error and its causes as one line. URLs carry no credentials (the
/// token travels in a header), so the text is safe to log.
fn error_chain(err: &reqwest::Error) -> String {
    let mut text = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(inner) = source {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        source = inner.source();
    }
    text
}

/// How a 403 `insufficient_scope` answer starts.
const INSUFFICIENT_SCOPE: &str = "insufficient_scope";

/// Quay's CSRF refusal (`CSRF token was invalid or missing.`, with
/// `(authorized: …)` for cookie callers).
fn is_csrf_message(message: &str) -> bool {
    message.starts_with("CSRF token was invalid or missing")
}

/// Quay's 400 answers that mean "missing": robots and repository permissions.
fn is_not_found_message(message: &str) -> bool {
    message.starts_with("Could not find robot")
        || message.starts_with("Organization does not exist")
        || message.starts_with("User does not have permission for repo")
        // Team calls (quay-api-teams.md): removing a member who is not in
        // the team, a team that is gone.
        || message.contains("does not belong to team")
        || message.contains("is not a team in org")
}

/// Quay's 400 answers that mean "duplicate".
fn is_already_exists_message(message: &str) -> bool {
    message.contains("already exists")
        || message.starts_with("Existing robot with name")
        || message.contains("is already a member of team")
}

const MAX_MESSAGE: usize = 300;

fn truncate(text: &str) -> String {
    // jsonschema errors carry the whole schema; the first line says what failed.
    let first = text.split("\n\n").next().unwrap_or(text);
    if first.len() <= MAX_MESSAGE {
        return first.to_owned();
    }
    let mut end = MAX_MESSAGE;
    while !first.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &first[..end])
}

/// A short text for non-JSON bodies (Flask's HTML 500 page).
fn summarize_body(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let lower = text.to_ascii_lowercase();
    if let Some(start) = lower.find("<title>")
        && let Some(end) = lower[start..].find("</title>")
    {
        return text[start + 7..start + end].trim().to_owned();
    }
    let trimmed = text.trim();
    if trimmed.is_empty() {
        "(empty body)".to_owned()
    } else {
        truncate(trimmed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quay::endpoint::*;

    fn map(status: u16, body: &str) -> QuayError {
        QuayError::from_response(ROBOT_GET, status, None, body.as_bytes())
    }

    #[test]
    fn missing_robot_400_is_not_found() {
        let e = map(
            400,
            r#"{"message": "Could not find robot with specified username"}"#,
        );
        assert!(e.is_not_found(), "{e:?}");
        assert_eq!(e.category(), Category::NotFound);
    }

    #[test]
    fn robot_put_into_missing_org_is_not_found() {
        let e = map(
            400,
            r#"{"message": "Organization does not exist: nosuchorg"}"#,
        );
        assert!(e.is_not_found());
    }

    #[test]
    fn missing_repo_permission_is_not_found_in_both_shapes() {
        assert!(
            map(
                400,
                r#"{"message": "User does not have permission for repo."}"#
            )
            .is_not_found()
        );
        assert!(map(400, r#"{"detail": "User does not have permission for repo.", "error_message": "User does not have permission for repo.", "error_type": "invalid_request", "title": "invalid_request", "status": 400}"#).is_not_found());
    }

    #[test]
    fn duplicates_are_already_exists() {
        for body in [
            r#"{"detail": "A user or organization with this name already exists", "error_type": "invalid_request", "status": 400}"#,
            r#"{"detail": "Existing robot with name: peerorg+builder", "error_type": "invalid_request", "status": 400}"#,
            r#"{"detail": "Repository already exists", "error_type": "invalid_request", "status": 400}"#,
        ] {
            let e = map(400, body);
            assert!(e.is_already_exists(), "{body}");
            assert_eq!(e.category(), Category::AlreadyExists);
            assert!(!e.is_transient());
        }
    }

    #[test]
    fn deleted_name_not_yet_available_is_invalid_request() {
        let e = map(
            400,
            r#"{"detail": "Username is not available", "status": 400}"#,
        );
        assert!(
            matches!(e, QuayError::InvalidRequest { status: 400, ref message, .. } if message == "Username is not available")
        );
    }

    #[test]
    fn auth_answers_keep_quay_message() {
        let e = map(
            401,
            r#"{"session_required": false, "detail": "Requires authentication", "error_type": "invalid_token", "status": 401}"#,
        );
        assert!(
            matches!(e, QuayError::Unauthorized { ref message, .. } if message == "Requires authentication")
        );
        let e = map(403, r#"{"error": "CSRF token was invalid or missing."}"#);
        assert!(matches!(e, QuayError::Forbidden { ref message, .. } if message.contains("CSRF")));
        assert_eq!(e.category(), Category::Auth);
        let e = map(
            403,
            r#"{"detail": "Unauthorized", "error_type": "insufficient_scope", "status": 403}"#,
        );
        assert!(
            matches!(e, QuayError::Forbidden { ref message, .. } if message.contains("lacks scope org:admin")),
            "{e}"
        );
        // A missing scope is not a dead token; the scope is named.
        assert!(!e.is_dead_token());
        assert_eq!(e.missing_scope(), Some("org:admin"));
        // The recorded dead-token answers: 401 on a read, CSRF on a write.
        assert!(map(401, r#"{"error_type": "invalid_token"}"#).is_dead_token());
        assert!(map(403, r#"{"error": "CSRF token was invalid or missing."}"#).is_dead_token());
        // A 5xx or a 429 is not.
        assert!(!map(500, "<html></html>").is_dead_token());
        assert!(!map(429, "").is_dead_token());
    }

    #[test]
    fn not_found_404() {
        let e = QuayError::from_response(
            ORG_GET,
            404,
            None,
            br#"{"detail": "Not Found", "error_type": "not_found", "status": 404}"#,
        );
        assert!(e.is_not_found());
        assert_eq!(e.endpoint(), Some(ORG_GET));
    }

    #[test]
    fn conflict_and_other_4xx() {
        assert!(matches!(map(409, "{}"), QuayError::Conflict { .. }));
        let e = map(
            415,
            r#"{"message": "Did not attempt to load JSON data because the request Content-Type was not 'application/json'."}"#,
        );
        assert!(matches!(e, QuayError::InvalidRequest { status: 415, .. }));
        assert!(
            matches!(map(405, ""), QuayError::InvalidRequest { status: 405, ref message, .. } if message == "(empty body)")
        );
    }

    #[test]
    fn rate_limit_keeps_retry_after() {
        let e = QuayError::from_response(ORG_GET, 429, Some(Duration::from_secs(7)), b"");
        assert_eq!(e.retry_after(), Some(Duration::from_secs(7)));
        assert!(e.is_transient());
        assert_eq!(e.category(), Category::RateLimited);
        assert!(e.to_string().contains("retry after 7s"));
        assert!(!e.is_ambiguous(), "a 429 was not carried out");
    }

    #[test]
    fn server_errors() {
        let html = "<html>\n  <head>\n    <title>Internal Server Error</title>\n  </head><body></body></html>";
        let e = map(500, html);
        assert!(
            matches!(e, QuayError::Server { status: 500, ref message, .. } if message == "Internal Server Error")
        );
        assert!(!e.is_transient(), "500 is not retried automatically");
        assert!(e.is_ambiguous());
        for status in [502, 503, 504] {
            assert!(map(status, "").is_transient(), "{status}");
        }
        assert_eq!(map(503, "").category(), Category::Unavailable);
    }

    #[test]
    fn schema_dumps_are_cut_to_their_first_paragraph() {
        let body = serde_json::json!({"detail": "'name' is a required property\n\nFailed validating 'required' in schema:\n  {...}", "status": 400}).to_string();
        let e = map(400, &body);
        assert!(
            matches!(e, QuayError::InvalidRequest { ref message, .. } if message == "'name' is a required property")
        );
        let long = "x".repeat(5000);
        let e = map(400, &serde_json::json!({"detail": long}).to_string());
        assert!(e.to_string().len() < 500);
    }

    #[test]
    fn categories_have_stable_labels() {
        let all = [
            Category::NotFound,
            Category::AlreadyExists,
            Category::InvalidRequest,
            Category::Auth,
            Category::RateLimited,
            Category::Unavailable,
            Category::Protocol,
            Category::Config,
        ];
        let labels: std::collections::HashSet<_> = all.iter().map(|c| c.as_str()).collect();
        assert_eq!(labels.len(), all.len());
    }
}
