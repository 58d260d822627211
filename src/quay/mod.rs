//! The typed Quay REST client the operator talks through.

pub mod client;
pub mod endpoint;
pub mod error;
pub mod metrics;
pub mod names;
pub mod retry;
pub mod types;

pub use client::{QuayClient, QuayClientConfig, parse_base_url, registry_host};
pub use error::{Category, QuayError};
pub use metrics::QuayMetrics;
pub use retry::RetryPolicy;
pub use types::{Role, TeamRole, Visibility};
