//! Reconcile errors, with a small set of categories for metrics and Events.

use crate::quay::QuayError;

/// A reconcile failure.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The Kubernetes API failed.
    #[error("Kubernetes API: {0}")]
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
