//! Partial typed OpenShift kinds (no crate serves them). Unknown fields are
//! kept in `rest`, and the operator only ever patches these objects, so it
//! never drops what it does not model.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::{Deserialize, Serialize};
use std::borrow::Cow;

/// A namespaced OpenShift kind whose every part is optional: an object
/// missing `spec` (which the apiserver allows) still deserialises.
macro_rules! openshift_kind {
    ($(#[$doc:meta])* $kind:ident, $spec:ty, $status:ty, $group:literal, $plural:literal) => {
        $(#[$doc])*
        #[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
        pub struct $kind {
            /// Standard object metadata.
            #[serde(default)]
            pub metadata: ObjectMeta,
            /// The spec, as served.
            #[serde(default)]
            pub spec: $spec,
            /// The status, as served.
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub status: Option<$status>,
        }

        impl kube::Resource for $kind {
            type DynamicType = ();
            type Scope = k8s_openapi::NamespaceResourceScope;

            fn kind(_: &()) -> Cow<'_, str> {
                Cow::Borrowed(stringify!($kind))
            }
            fn group(_: &()) -> Cow<'_, str> {
                Cow::Borrowed($group)
            }
            fn version(_: &()) -> Cow<'_, str> {
                Cow::Borrowed("v1")
            }
            fn plural(_: &()) -> Cow<'_, str> {
                Cow::Borrowed($plural)
            }
            fn meta(&self) -> &ObjectMeta {
                &self.metadata
            }
            fn meta_mut(&mut self) -> &mut ObjectMeta {
                &mut self.metadata
            }
        }
    };
}

openshift_kind!(
    /// `image.openshift.io/v1` ImageStream (only metadata is used today).
    ImageStream,
    ImageStreamSpec,
    serde_json::Map<String, serde_json::Value>,
    "image.openshift.io",
    "imagestreams"
);

openshift_kind!(
    /// `build.openshift.io/v1` Build.
    Build,
    BuildSpec,
    BuildStatus,
    "build.openshift.io",
    "builds"
);

/// ImageStream spec.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct ImageStreamSpec {
    /// Every field, as served.
    #[serde(flatten)]
    pub rest: serde_json::Map<String, serde_json::Value>,
}

/// Build spec (fields read by the operator are looked up in `rest`).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objects_without_spec_or_status_deserialise() {
        let is: ImageStream =
            serde_json::from_value(serde_json::json!({"apiVersion": "image.openshift.io/v1", "kind": "ImageStream", "metadata": {"name": "bare"}})).unwrap();
        assert_eq!(is.metadata.name.as_deref(), Some("bare"));
        let b: Build = serde_json::from_value(
            serde_json::json!({"metadata": {"name": "b"}, "status": {"phase": "Complete"}}),
        )
        .unwrap();
        assert_eq!(b.status.unwrap().phase.as_deref(), Some("Complete"));
        assert_eq!(
            <Build as kube::Resource>::api_version(&()),
            "build.openshift.io/v1"
        );
    }
}

/// `user.openshift.io/v1` Group: a cluster-scoped set of user names.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct Group {
    /// Standard object metadata.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// The users in the group.
    #[serde(default)]
    pub users: Option<Vec<String>>,
}

impl kube::Resource for Group {
    type DynamicType = ();
    type Scope = k8s_openapi::ClusterResourceScope;

    fn kind(_: &()) -> Cow<'_, str> {
        Cow::Borrowed("Group")
    }
    fn group(_: &()) -> Cow<'_, str> {
        Cow::Borrowed("user.openshift.io")
    }
    fn version(_: &()) -> Cow<'_, str> {
        Cow::Borrowed("v1")
    }
    fn plural(_: &()) -> Cow<'_, str> {
        Cow::Borrowed("groups")
    }
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}
