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
    /// Quay no longer holds what the cached view of it did (an admin
    /// deleted it): the view is dropped and Quay read again.
    #[error("Quay changed behind the operator's view: {0}")]
    Stale(String),
    /// The operator could not build its own request (a bug, not bad input).
    #[error("internal error: {0}")]
    Internal(String),
}

/// What kind of failure an [`Error`] is: the `category` label of the
/// failure metrics, and what Events say.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Category {
    /// The Kubernetes API failed.
    Kubernetes,
    /// Quay refused the token.
    QuayAuth,
    /// Quay throttled the operator.
    QuayRateLimited,
    /// Quay is unreachable or failing.
    QuayUnavailable,
    /// Quay refused a request (invalid, missing, already there).
    QuayRejected,
    /// Quay answered something that is not Quay's API.
    QuayProtocol,
    /// The QuayIntegration or its references are unusable.
    Config,
    /// The credentials Secret is missing or unusable.
    Credentials,
    /// A post-build import failed.
    Import,
    /// A bug in the operator.
    Internal,
}

impl Category {
    /// The metric label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Category::Kubernetes => "kubernetes",
            Category::QuayAuth => "quay_auth",
            Category::QuayRateLimited => "quay_rate_limited",
            Category::QuayUnavailable => "quay_unavailable",
            Category::QuayRejected => "quay_rejected",
            Category::QuayProtocol => "quay_protocol",
            Category::Config => "config",
            Category::Credentials => "credentials",
            Category::Import => "import",
            Category::Internal => "internal",
        }
    }
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
    /// Its category.
    pub fn category(&self) -> Category {
        match self {
            Error::Kube(_) => Category::Kubernetes,
            Error::Quay(q) => match q.category() {
                crate::quay::Category::Auth => Category::QuayAuth,
                crate::quay::Category::RateLimited => Category::QuayRateLimited,
                crate::quay::Category::Unavailable => Category::QuayUnavailable,
                crate::quay::Category::InvalidRequest
                | crate::quay::Category::NotFound
                | crate::quay::Category::AlreadyExists => Category::QuayRejected,
                crate::quay::Category::Protocol => Category::QuayProtocol,
                crate::quay::Category::Config => Category::Config,
            },
            Error::QuayDown(_) => Category::QuayUnavailable,
            Error::Credentials(_) => Category::Credentials,
            Error::Config(_) => Category::Config,
            Error::Import(_) => Category::Import,
            Error::Stale(_) => Category::QuayRejected,
            Error::Internal(_) => Category::Internal,
        }
    }

    /// What this error says about Quay, for `plan::view::kept_after`:
    /// down (transport failures, 5xx), or contradicting what the operator
    /// believed of it (something it held is missing: 404; something it
    /// meant to create is there already: 409, 400; a write found the
    /// cache stale).
    pub fn failure(&self) -> crate::plan::view::Failure {
        use crate::plan::view::Failure;
        match self {
            Error::Stale(_) => Failure::Contradiction,
            Error::Quay(q) => match q.category() {
                crate::quay::Category::Unavailable => Failure::QuayUnavailable,
                crate::quay::Category::NotFound
                | crate::quay::Category::AlreadyExists
                | crate::quay::Category::InvalidRequest => Failure::Contradiction,
                _ => Failure::Other,
            },
            _ => Failure::Other,
        }
    }

    /// Whether Quay itself seems down (transport failures, 5xx).
    pub fn quay_unavailable(&self) -> bool {
        self.failure() == crate::plan::view::Failure::QuayUnavailable
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
        assert_eq!(e.category(), Category::Kubernetes);
        assert_eq!(e.category().as_str(), "kubernetes");
    }
}
