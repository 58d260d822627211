//! The typed Quay REST client the operator talks through.

pub mod client;
pub mod endpoint;
pub mod error;
pub mod metrics;
pub mod retry;

// The model the client speaks, kept in `crate::model` (no I/O there).
pub use crate::model::{names, types};

pub use client::{MintedToken, QuayClient, QuayClientConfig, parse_base_url, registry_host};
pub use error::{Category, QuayError};
pub use metrics::QuayMetrics;
pub use retry::RetryPolicy;
pub use types::{Role, TeamRole, Visibility};
