//! Partial typed OpenShift kinds (no crate serves them). Unknown fields are
//! kept in `rest`, and the operator only ever patches these objects, so it
//! never drops what it does not model.

use kube::CustomResource;
use serde::{Deserialize, Serialize};

/// `image.openshift.io/v1` ImageStream spec (only metadata is used today).
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "image.openshift.io",
    version = "v1",
    kind = "ImageStream",
    plural = "imagestreams",
    namespaced,
    schema = "disabled"
)]
pub struct ImageStreamSpec {
    /// Every field, as served.
    #[serde(flatten)]
    pub rest: serde_json::Map<String, serde_json::Value>,
}

/// `build.openshift.io/v1` Build spec (fields read by the operator are
/// looked up in `rest`).
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "build.openshift.io",
    version = "v1",
    kind = "Build",
    plural = "builds",
    namespaced,
    schema = "disabled",
    status = "BuildStatus"
)]
pub struct BuildSpec {
    /// Every field, as served.
    #[serde(flatten)]
    pub rest: serde_json::Map<String, serde_json::Value>,
}

/// Build status.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct BuildStatus {
    /// `New`, `Pending`, `Running`, `Complete`, `Failed`, `Error`, `Cancelled`.
    #[serde(default)]
    pub phase: Option<String>,
    /// Every other field, as served.
    #[serde(flatten)]
    pub rest: serde_json::Map<String, serde_json::Value>,
}
