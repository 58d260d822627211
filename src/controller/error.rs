//! Reconcile errors, with a small set of categories for metrics and Events.

use crate::quay::QuayError;

/// A reconcile failure.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The Kubernetes API failed.
    #[error("Kubernetes API: {}", kube_message(.0))]
    Kube(#[from] kube::Error),
    /// Quay answered with an error.
    #[error(transparent)]
    Quay(#[from] QuayError),
    /// Quay is down; nothing is sent until the probe sees it back.
    #[error("Quay at {0} is unavailable; waiting for it to come back")]
    QuayDown(String),
    /// The credentials Secret is missing or unusable.
    #[error("credentials: {0}")]
    Credentials(String),
    /// The QuayIntegration is unusable.
    #[error("invalid QuayIntegration: {0}")]
    Config(String),
    /// An ImageStream import did not succeed.
    #[error("image import failed: {0}")]
    Import(String),
}

/// A Kubernetes error as one readable line: `500 InternalError: message`
/// for an API answer (not the Debug dump of its Status).
fn kube_message(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(status) => {
            format!("{} {}: {}", status.code, status.reason, status.message)
        }
        other => other.to_string(),
    }
}

impl Error {
    /// A bounded label value.
    pub fn category(&self) -> &'static str {
        match self {
            Error::Kube(_) => "kubernetes",
            Error::Quay(q) => match q.category() {
                crate::quay::Category::Auth => "quay_auth",
                crate::quay::Category::RateLimited => "quay_rate_limited",
                crate::quay::Category::Unavailable => "quay_unavailable",
                crate::quay::Category::InvalidRequest
                | crate::quay::Category::NotFound
                | crate::quay::Category::AlreadyExists => "quay_rejected",
                crate::quay::Category::Protocol => "quay_protocol",
                crate::quay::Category::Config => "config",
            },
            Error::QuayDown(_) => "quay_unavailable",
            Error::Credentials(_) => "credentials",
            Error::Config(_) => "config",
            Error::Import(_) => "import",
        }
    }

    /// Whether Quay itself seems down (transport failures, 5xx).
    pub fn quay_unavailable(&self) -> bool {
        matches!(self, Error::Quay(q) if q.category() == crate::quay::Category::Unavailable)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubernetes_answers_read_as_one_line() {
        let status: kube::core::Status = serde_json::from_value(serde_json::json!({
            "status": "Failure", "code": 409, "reason": "Conflict",
            "message": "Operation cannot be fulfilled on namespaces \"a\": the object has been modified"
        }))
        .unwrap();
        let e = Error::Kube(kube::Error::Api(Box::new(status)));
        assert_eq!(
            e.to_string(),
            "Kubernetes API: 409 Conflict: Operation cannot be fulfilled on namespaces \"a\": the object has been modified"
        );
        assert_eq!(e.category(), "kubernetes");
    }
}
