//! The embedded Quay: an in-memory Quay that answers the REST API and a
//! Docker Registry v2 subset the way real Quay does.

pub mod api;
mod bootstrap;
pub mod faults;
pub mod names;
pub mod registry;
pub mod server;
pub mod state;
mod teams;

pub use faults::{FaultConfig, RequestRecord};
pub use names::Role;
pub use server::{EmbeddedQuay, EmbeddedQuayConfig};
pub use state::TeamRole;
