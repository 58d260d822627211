//! Names of everything the operator creates, the dockerconfigjson payload,
//! and the ownership marker it leaves in Quay.

use crate::config::IntegrationConfig;
use crate::model::names::{self, InvalidName, NameKind};
use base64::Engine;

/// `<prefix><lower(clusterID)>_<namespace>`, checked against Quay's rules.
pub fn organization(cfg: &IntegrationConfig, namespace: &str) -> Result<String, InvalidName> {
    let org = format!(
        "{}{}_{namespace}",
        cfg.organization_prefix,
        cfg.cluster_id.to_ascii_lowercase()
    );
    names::validate(NameKind::Organization, &org)?;
    Ok(org)
}

/// `<serviceaccount>-quay-<clusterID>`.
pub fn secret_name(service_account: &str, cluster_id: &str) -> String {
    format!("{service_account}-quay-{cluster_id}")
}

/// Whether a Secret name may be one of `secret_name`'s, for any service
/// account and cluster ID.
pub fn may_be_bridge_secret(name: &str) -> bool {
    name.contains("-quay-")
}

/// `org+short`.
pub fn robot_account(org: &str, short: &str) -> String {
    format!("{org}+{short}")
}

/// `{"auths":{"<registry host>":{"auth":"base64(org+sa:token)"}}}`.
pub fn dockerconfigjson(registry_host: &str, robot: &str, token: &str) -> String {
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{robot}:{token}"));
    serde_json::json!({"auths": {registry_host: {"auth": auth}}}).to_string()
}

/// What the operator writes into the description of every robot it
/// creates: the organization is ours when one of its robots carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Marker {
    /// `clusterID` of the integration.
    pub cluster_id: String,
    /// UID of the cluster (its `kube-system` namespace), telling apart two
    /// clusters configured with the same clusterID.
    pub cluster_uid: String,
    /// The namespace.
    pub namespace: String,
}

const MARKER_PREFIX: &str = "managed by quay-bridge-operator;";

impl Marker {
    /// The robot description.
    pub fn description(&self) -> String {
        format!(
            "{MARKER_PREFIX} cluster={}; cluster-uid={}; namespace={}",
            self.cluster_id, self.cluster_uid, self.namespace
        )
    }

    /// Reads a robot description; `None` when it is not ours.
    pub fn parse(description: &str) -> Option<Marker> {
        let rest = description.strip_prefix(MARKER_PREFIX)?;
        let mut cluster_id = None;
        let mut cluster_uid = None;
        let mut namespace = None;
        for part in rest.split(';') {
            match part.trim().split_once('=') {
                Some(("cluster", v)) => cluster_id = Some(v.to_owned()),
                Some(("cluster-uid", v)) => cluster_uid = Some(v.to_owned()),
                Some(("namespace", v)) => namespace = Some(v.to_owned()),
                _ => {}
            }
        }
        Some(Marker {
            cluster_id: cluster_id?,
            cluster_uid: cluster_uid?,
            namespace: namespace?,
        })
    }
}

/// The description of repositories the operator creates: only those are
/// ever deleted by it.
pub const REPOSITORY_DESCRIPTION: &str =
    "Managed by quay-bridge-operator: mirrors an OpenShift ImageStream.";

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(cluster_id: &str, prefix: &str) -> IntegrationConfig {
        crate::config::test_config(cluster_id, prefix)
    }

    #[test]
    fn organization_names() {
        assert_eq!(
            organization(&cfg("openshift", ""), "e2e-demo").unwrap(),
            "openshift_e2e-demo"
        );
        assert_eq!(
            organization(&cfg("prod", "acme-"), "web").unwrap(),
            "acme-prod_web"
        );
        // Names Quay would refuse are refused before any call.
        assert!(organization(&cfg("openshift", ""), "a--b").is_err());
        assert!(organization(&cfg("openshift", ""), &"x".repeat(250)).is_err());
    }

    #[test]
    fn bridge_secret_names_are_recognised() {
        for (sa, cluster) in [("builder", "openshift"), ("default", "prod-1"), ("x", "a")] {
            assert!(may_be_bridge_secret(&secret_name(sa, cluster)));
        }
        for other in [
            "builder-dockercfg-x7k2p",
            "builder-token-abcde",
            "quay",
            "my-quay",
        ] {
            assert!(!may_be_bridge_secret(other), "{other}");
        }
    }

    #[test]
    fn secret_and_robot_names() {
        assert_eq!(
            secret_name("builder", "openshift"),
            "builder-quay-openshift"
        );
        assert_eq!(
            robot_account("openshift_demo", "builder"),
            "openshift_demo+builder"
        );
    }

    #[test]
    fn dockerconfigjson_is_keyed_by_the_registry_host() {
        let payload = dockerconfigjson("quay.example.com:8443", "openshift_demo+builder", "TOKEN");
        let v: serde_json::Value = serde_json::from_str(&payload).unwrap();
        let auth = v["auths"]["quay.example.com:8443"]["auth"]
            .as_str()
            .unwrap();
        assert_eq!(
            base64::engine::general_purpose::STANDARD
                .decode(auth)
                .unwrap(),
            b"openshift_demo+builder:TOKEN"
        );
        assert_eq!(v["auths"].as_object().unwrap().len(), 1);
    }

    #[test]
    fn markers_round_trip_and_foreign_descriptions_are_not_markers() {
        let m = Marker {
            cluster_id: "prod".into(),
            cluster_uid: "1234-abcd".into(),
            namespace: "web".into(),
        };
        assert!(m.description().len() <= 255);
        assert_eq!(Marker::parse(&m.description()), Some(m));
        assert_eq!(Marker::parse("operator robot"), None);
        assert_eq!(
            Marker::parse("managed by quay-bridge-operator; cluster=x"),
            None
        );
    }
}
