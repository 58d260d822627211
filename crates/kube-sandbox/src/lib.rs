//! The embedded Kubernetes API server: real kube-rs clients and `kubectl`
//! run against it unchanged. It keeps objects in memory with the
//! apiserver's semantics (resource versions, watches with history and 410,
//! finalizers, status subresources, patch types, server-side apply),
//! calls mutating webhooks, and simulates the OpenShift controllers the
//! operator lives with.

pub mod admission;
pub mod errors;
pub mod events;
pub mod gojson;
pub mod http;
pub mod openshift;
pub mod patch;
pub mod proto;
pub mod registry_client;
pub mod resources;
pub mod schema;
pub mod scope;
pub mod selectors;
pub mod server;
pub mod smp;
pub mod store;
pub mod table;

pub use server::{
    ADMIN_IDENTITY, EmbeddedKube, EmbeddedKubeConfig, KubeFaultConfig, KubeRequest, LaggingWatch,
    OpenShiftConfig,
};
