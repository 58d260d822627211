//! The QuayIntegration custom resource, in both API groups users have:
//! `quay.redhat.com/v1` (current) and `redhatcop.redhat.io/v1alpha1`
//! (the documented legacy one). Both map to one validated
//! [`crate::config::IntegrationConfig`].

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Pattern of `clusterID`: usable both in Quay organization names and in
/// Kubernetes Secret names (lower case, single `.`/`-` separators).
pub const CLUSTER_ID_PATTERN: &str = r"^[a-z0-9]+([.-][a-z0-9]+)*$";
/// Pattern of `quayHostname`: a URL with its scheme.
pub const QUAY_URL_PATTERN: &str = r"^https?://[^\s/?#]+(/[^\s?#]*)?$";

fn default_cluster_id() -> String {
    "openshift".to_owned()
}

fn default_token_key() -> String {
    "token".to_owned()
}

fn default_token_lifetime() -> String {
    "720h".to_owned()
}

/// Where the Quay OAuth token is kept.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CredentialsSecret {
    /// Name of the Secret holding the Quay OAuth access token, or a Quay
    /// user's `username` and `password` from which the operator mints one.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Namespace of that Secret.
    #[schemars(length(min = 1, max = 63))]
    pub namespace: String,
    /// Key of the token in the Secret's data. A token the operator mints
    /// is written here.
    #[serde(default = "default_token_key")]
    #[schemars(length(min = 1))]
    pub key: String,
    /// With `username` and `password` in the Secret: keep the password
    /// after the minted token works, so a token Quay stops accepting is
    /// minted again without a person. Default: the password is removed
    /// from the Secret once the token works.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub keep_password: bool,
    /// Lifetime of a token the operator mints (a duration such as `720h`,
    /// `90m`, `1h30m`). The operator renews it with itself when a third of
    /// it remains, so it needs no password to stay valid; a Quay without
    /// the applications' tokens API mints 10-year tokens instead.
    #[serde(default = "default_token_lifetime")]
    #[schemars(regex(pattern = r"^([0-9]+(h|m|s))+$"))]
    pub token_lifetime: String,
    /// On a Quay with no user at all and `FEATURE_USER_INITIALIZE` on:
    /// when the Secret's user does not exist, create it as Quay's first
    /// user (`POST /api/v1/user/initialize`) and mint the token with the
    /// short-lived token Quay returns. Default false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub initialize_user: bool,
}

/// A CA bundle the operator trusts for Quay's API (besides the system
/// roots), read from a ConfigMap or Secret key holding PEM certificates.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CaBundleRef {
    /// `ConfigMap` (default) or `Secret`.
    #[serde(default)]
    pub kind: CaBundleKind,
    /// Name of the ConfigMap or Secret.
    #[schemars(length(min = 1))]
    pub name: String,
    /// Its namespace.
    #[schemars(length(min = 1))]
    pub namespace: String,
    /// Key holding the PEM bundle.
    #[serde(default = "default_ca_key")]
    pub key: String,
}

fn default_ca_key() -> String {
    "ca-bundle.crt".to_owned()
}

/// Kind of object holding a CA bundle.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum CaBundleKind {
    /// A ConfigMap (as OpenShift's trusted CA bundle injection uses).
    #[default]
    ConfigMap,
    /// A Secret.
    Secret,
}

/// A service account that gets a Quay robot and a pull/push Secret.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceAccountRobot {
    /// Service account name; also the robot's short name in Quay.
    #[schemars(
        regex(pattern = r"^[a-z0-9]+([._-][a-z0-9]+)*$"),
        length(min = 2, max = 255)
    )]
    pub name: String,
    /// The robot's role on the organization's repositories.
    pub role: RobotRole,
}

/// A robot's role.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum RobotRole {
    /// Pull.
    Read,
    /// Pull and push.
    Write,
    /// Everything.
    Admin,
}

/// What happens to a namespace's Quay organization when the namespace is
/// deleted.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum NamespaceDeletionPolicy {
    /// Delete the organization and every image in it (organizations this
    /// operator did not create are never deleted).
    #[default]
    Delete,
    /// Keep the organization.
    Retain,
}

/// What happens to an ImageStream's repository when the ImageStream is
/// deleted.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum ImageStreamDeletionPolicy {
    /// Keep the repository.
    #[default]
    Retain,
    /// Delete the repository (only repositories this operator created).
    Delete,
}

/// Visibility of the repositories the operator creates.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum RepositoryVisibility {
    /// Only robots and users with a permission can pull.
    #[default]
    Private,
    /// Anyone can pull.
    Public,
}

/// Project membership mirrored into Quay teams.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TeamSync {
    /// Mirror each bridged namespace's RoleBindings into teams of its Quay
    /// organization. Off by default. Quay must know the cluster's users by
    /// the same names (one identity provider for both).
    #[serde(default)]
    pub enabled: bool,
    /// Which roles become which teams. Default: ClusterRole `admin` → team
    /// `admins` (team role `admin`); `edit` → `editors` (role `member`,
    /// `write` on every repository); `view` → `viewers` (role `member`,
    /// `read`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub roles: Option<Vec<TeamMapping>>,
}

/// One role mirrored into one team.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TeamMapping {
    /// Name of the role a RoleBinding refers to, e.g. `edit` or a custom
    /// `image-pusher`.
    #[schemars(length(min = 1))]
    pub role: String,
    /// `ClusterRole` (default) or `Role` (one of the namespace's own).
    #[serde(default)]
    pub role_kind: RoleKind,
    /// The team in the namespace's organization (Quay's team name rules:
    /// 2 to 255 lower-case letters, digits and single `.`, `_` or `-`;
    /// not `owners`). Several roles may feed one team.
    #[schemars(
        regex(pattern = r"^[a-z0-9]+([._-][a-z0-9]+)*$"),
        length(min = 2, max = 255)
    )]
    pub team: String,
    /// The team's role in the organization: `member` (default), `creator`
    /// (may also create repositories) or `admin` (administers the
    /// organization and every repository in it).
    #[serde(default)]
    pub team_role: TeamRole,
    /// What the team may do on every repository of the organization
    /// (granted on existing ones and, through a team default permission,
    /// on new ones): `read`, `write` or `admin`. Not needed for an `admin`
    /// team.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repository_role: Option<RobotRole>,
}

/// Kind of role a RoleBinding refers to.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum RoleKind {
    /// A cluster-wide role (`admin`, `edit`, `view`, or a custom one).
    #[default]
    ClusterRole,
    /// A Role of the namespace itself.
    Role,
}

/// A team's role in its Quay organization.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum TeamRole {
    /// Sees what the team is granted.
    #[default]
    Member,
    /// Members may also create repositories.
    Creator,
    /// Members administer the organization.
    Admin,
}

/// Settings both API groups share (the operator's additions and the common
/// upstream fields).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CommonSettings {
    /// Prefix of every organization name: `<prefix><clusterID>_<namespace>`.
    /// Empty by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^([a-z0-9]+([._-][a-z0-9]+)*[._-])?$"))]
    pub organization_prefix: Option<String>,
    /// Mark ImageStream imports from Quay insecure (plain HTTP or an
    /// untrusted certificate on the registry). It does not affect TLS to
    /// Quay's API; see `insecureSkipTLSVerify`.
    #[serde(default)]
    pub insecure_registry: bool,
    /// Make imported ImageStream tags scheduled (re-imported periodically).
    #[serde(default)]
    pub scheduled_image_stream_import: bool,
    /// Service accounts that get a robot and a Secret, with the robot's role.
    /// Default: builder (write), default (read), deployer (read).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub service_accounts: Option<Vec<ServiceAccountRobot>>,
    /// Extra CA certificates to trust for Quay's API.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quay_ca_bundle: Option<CaBundleRef>,
    /// Skip TLS certificate verification to Quay's API. Unsafe; prefer
    /// `quayCaBundle`.
    #[serde(default, rename = "insecureSkipTLSVerify")]
    pub insecure_skip_tls_verify: bool,
    /// What happens to the organization when its namespace is deleted.
    #[serde(default)]
    pub namespace_deletion_policy: NamespaceDeletionPolicy,
    /// What happens to a repository when its ImageStream is deleted.
    #[serde(default)]
    pub image_stream_deletion_policy: ImageStreamDeletionPolicy,
    /// Visibility of created repositories.
    #[serde(default)]
    pub repository_visibility: RepositoryVisibility,
    /// Take over existing organizations that this operator did not create:
    /// its robots, Secrets and repositories are added to them. They are never
    /// deleted with their namespace while they hold anything this operator
    /// did not make (robots, repositories, teams). Off by default: a foreign
    /// organization is reported and left untouched.
    #[serde(default)]
    pub adopt_existing_organizations: bool,
    /// Mirror who may do what in each bridged namespace (its RoleBindings,
    /// with OpenShift Groups expanded) into teams of its Quay organization.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub team_sync: Option<TeamSync>,
    /// Rotate every bridged namespace's robot tokens on a schedule, without
    /// an outage: each service account has two robots used alternately
    /// (`<serviceaccount>` and `<serviceaccount>_2`); the new one is made and
    /// granted like the old before the Secret switches to it, and the old
    /// one is deleted after the grace period. Off when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub robot_token_rotation: Option<RobotTokenRotation>,
    /// Cancel each Build that escaped the Build webhook (created while the
    /// operator was unreachable, so it would push to the integrated
    /// registry) and start a new one from its BuildConfig, which the webhook
    /// then sends to Quay. Off by default: such Builds get a Warning Event
    /// and are counted in `status.escapedBuilds`. Builds without a
    /// BuildConfig are only reported.
    #[serde(default)]
    pub rebuild_escaped_builds: bool,
}

/// Bridges the cluster's namespaces, ImageStreams and Builds to a Quay.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "quay.redhat.com",
    version = "v1",
    kind = "QuayIntegration",
    plural = "quayintegrations",
    singular = "quayintegration",
    status = "QuayIntegrationStatus",
    shortname = "qi",
    printcolumn = r#"{"name":"Host","type":"string","jsonPath":".spec.quayHostname"}"#,
    printcolumn = r#"{"name":"Cluster ID","type":"string","jsonPath":".spec.clusterID"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Managed","type":"integer","jsonPath":".status.managedNamespaces"}"#,
    printcolumn = r#"{"name":"Failing","type":"integer","jsonPath":".status.failingNamespaces"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct QuayIntegrationSpec {
    /// Identifies this cluster in Quay: organizations are named
    /// `<clusterID>_<namespace>` and Secrets `<serviceaccount>-quay-<clusterID>`.
    /// Unique per cluster sharing a Quay.
    #[serde(default = "default_cluster_id", rename = "clusterID")]
    #[schemars(
        regex(pattern = r"^[a-z0-9]+([.-][a-z0-9]+)*$"),
        length(min = 1, max = 63)
    )]
    pub cluster_id: String,
    /// The Secret holding the Quay OAuth access token.
    pub credentials_secret: CredentialsSecret,
    /// Quay's URL with its scheme, e.g. `https://quay.example.com`.
    #[schemars(regex(pattern = r"^https?://[^\s/?#]+(/[^\s?#]*)?$"))]
    pub quay_hostname: String,
    /// Only these namespaces are bridged (when non-empty). The deny list
    /// wins over it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowlist_namespaces: Vec<String>,
    /// These namespaces are never bridged.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub denylist_namespaces: Vec<String>,
    /// Settings shared with the legacy API group.
    #[serde(flatten)]
    pub common: CommonSettings,
}

/// Bridges the cluster's namespaces, ImageStreams and Builds to a Quay
/// (legacy API group, as documented for the first Quay Bridge Operator).
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "redhatcop.redhat.io",
    version = "v1alpha1",
    kind = "QuayIntegration",
    root = "LegacyQuayIntegration",
    plural = "quayintegrations",
    singular = "quayintegration",
    status = "QuayIntegrationStatus",
    printcolumn = r#"{"name":"Host","type":"string","jsonPath":".spec.quayHostname"}"#,
    printcolumn = r#"{"name":"Cluster ID","type":"string","jsonPath":".spec.clusterID"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Managed","type":"integer","jsonPath":".status.managedNamespaces"}"#,
    printcolumn = r#"{"name":"Failing","type":"integer","jsonPath":".status.failingNamespaces"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct LegacyQuayIntegrationSpec {
    /// Identifies this cluster in Quay: organizations are named
    /// `<clusterID>_<namespace>` and Secrets `<serviceaccount>-quay-<clusterID>`.
    #[serde(default = "default_cluster_id", rename = "clusterID")]
    #[schemars(
        regex(pattern = r"^[a-z0-9]+([.-][a-z0-9]+)*$"),
        length(min = 1, max = 63)
    )]
    pub cluster_id: String,
    /// `<namespace>/<name>` of the Secret holding the Quay OAuth token
    /// (key `token`, or `credentialsSecretKey`).
    #[schemars(regex(
        pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?/[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"
    ))]
    pub credentials_secret_name: String,
    /// Key of the token in that Secret (default `token`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret_key: Option<String>,
    /// Quay's URL with its scheme, e.g. `https://quay.example.com`.
    #[schemars(regex(pattern = r"^https?://[^\s/?#]+(/[^\s?#]*)?$"))]
    pub quay_hostname: String,
    /// Only these namespaces are bridged (when non-empty). The deny list
    /// wins over it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub whitelist_namespaces: Vec<String>,
    /// These namespaces are never bridged.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub blacklist_namespaces: Vec<String>,
    /// Settings shared with the current API group.
    #[serde(flatten)]
    pub common: CommonSettings,
}

fn default_rotation_grace() -> String {
    "24h".to_owned()
}

fn default_rotations_per_minute() -> u32 {
    6
}

/// When robot tokens rotate.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RobotTokenRotation {
    /// How old a robot token may get before it is replaced (a duration
    /// such as `2160h`, 90 days). Oldest first.
    #[schemars(regex(pattern = r"^([0-9]+(h|m|s))+$"))]
    pub interval: String,
    /// How long the replaced robot keeps working after the Secret switched
    /// away from it, for pods and builds that read the Secret before (a
    /// duration; default `24h`).
    #[serde(default = "default_rotation_grace")]
    #[schemars(regex(pattern = r"^([0-9]+(h|m|s))+$"))]
    pub grace_period: String,
    /// At most this many robots start a rotation per minute, across the
    /// cluster (default 6): robots made at the same time are not all
    /// replaced at once.
    #[serde(default = "default_rotations_per_minute")]
    #[schemars(range(min = 1, max = 600), extend("format" = "int32"))]
    pub max_per_minute: u32,
}

/// The robot tokens' ages.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RobotTokenStatus {
    /// When the oldest robot token in use was made (its age is now minus
    /// this).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oldest_token_created: Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>,
    /// When the next rotation is due (with rotation on).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_rotation: Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>,
    /// Robots in the middle of a rotation (the old one waits out its grace
    /// period).
    #[serde(default)]
    #[schemars(extend("format" = "int32"))]
    pub rotating: u32,
}

/// What the operator reports on a QuayIntegration.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct QuayIntegrationStatus {
    /// `Ready`, `QuayReachable`, `CredentialsValid` and `Conflict`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// The spec generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Namespaces bridged to Quay without error.
    #[serde(default)]
    #[schemars(extend("format" = "int32"))]
    pub managed_namespaces: u32,
    /// Namespaces this integration selects whose last reconcile failed.
    #[serde(default)]
    #[schemars(extend("format" = "int32"))]
    pub failing_namespaces: u32,
    /// The most recent failure, for a quick look.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// Team sync across the selected namespaces (when enabled).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub team_sync: Option<TeamSyncStatus>,
    /// Builds in the selected namespaces, not finished, that escaped the
    /// Build webhook: they push to the integrated registry, not Quay.
    #[serde(default)]
    #[schemars(extend("format" = "int32"))]
    pub escaped_builds: u32,
    /// The robot tokens' ages and the next rotation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub robot_tokens: Option<RobotTokenStatus>,
}

/// What team sync achieved, summed over the selected namespaces.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TeamSyncStatus {
    /// Team memberships in place (one per user and team).
    #[serde(default)]
    #[schemars(extend("format" = "int32"))]
    pub members: u32,
    /// Users bound in a namespace whom Quay does not know (each reported
    /// once by an Event on its namespace; added when they appear in Quay).
    #[serde(default)]
    #[schemars(extend("format" = "int32"))]
    pub unknown_users: u32,
    /// Users Quay invited by mail instead of adding (Quay configured with
    /// team invitations); they join when they accept.
    #[serde(default)]
    #[schemars(extend("format" = "int32"))]
    pub pending_invitations: u32,
    /// Users bound in a namespace whose names Quay cannot hold (Quay user
    /// names are lower-case letters, digits and single '.', '_' or '-';
    /// upper-case letters are read as lower case). Each is reported once by
    /// an Event on its namespace.
    #[serde(default)]
    #[schemars(extend("format" = "int32"))]
    pub invalid_user_names: u32,
    /// Teams left alone because someone else made a team of that name.
    #[serde(default)]
    #[schemars(extend("format" = "int32"))]
    pub conflicts: u32,
}

/// The CRDs as YAML documents.
pub fn crds_yaml() -> Result<String, String> {
    use kube::CustomResourceExt;
    let docs = [QuayIntegration::crd(), LegacyQuayIntegration::crd()];
    let mut out = String::new();
    for doc in docs {
        out.push_str("---\n");
        out.push_str(&serde_saphyr::to_string(&doc).map_err(|e| e.to_string())?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::CustomResourceExt;
    use serde_json::json;

    #[test]
    fn crds_are_cluster_scoped_with_status_and_columns() {
        for crd in [QuayIntegration::crd(), LegacyQuayIntegration::crd()] {
            assert_eq!(crd.spec.scope, "Cluster");
            let v = &crd.spec.versions[0];
            assert!(
                v.subresources
                    .as_ref()
                    .and_then(|s| s.status.as_ref())
                    .is_some()
            );
            let cols: Vec<&str> = v
                .additional_printer_columns
                .as_ref()
                .unwrap()
                .iter()
                .map(|c| c.name.as_str())
                .collect();
            assert_eq!(
                cols,
                ["Host", "Cluster ID", "Ready", "Managed", "Failing", "Age"]
            );
        }
        assert_eq!(
            QuayIntegration::crd().metadata.name.as_deref(),
            Some("quayintegrations.quay.redhat.com")
        );
        assert_eq!(
            LegacyQuayIntegration::crd().metadata.name.as_deref(),
            Some("quayintegrations.redhatcop.redhat.io")
        );
    }

    /// A real apiserver warns on every apply about a format it does not
    /// know (`unrecognized format "uint32"`): only the formats it
    /// recognises are allowed (the embedded apiserver's list, which warns
    /// the same way).
    #[test]
    fn every_schema_format_is_one_the_apiserver_knows() {
        for crd in [QuayIntegration::crd(), LegacyQuayIntegration::crd()] {
            let doc = serde_json::to_value(&crd).unwrap();
            assert!(
                doc.to_string().contains(r#""format":"int32""#),
                "the counts say int32"
            );
            let unknown = kube_sandbox::schema::unrecognized_formats(&doc);
            assert!(
                unknown.is_empty(),
                "formats the apiserver warns about: {unknown:?}"
            );
        }
    }

    #[test]
    fn every_schema_field_has_a_description() {
        fn walk(path: &str, schema: &serde_json::Value, missing: &mut Vec<String>) {
            if let Some(props) = schema.get("properties").and_then(|p| p.as_object()) {
                for (k, v) in props {
                    let p = format!("{path}.{k}");
                    let inherited =
                        ["apiVersion", "kind", "metadata"].contains(&k.as_str()) && path.is_empty();
                    if v.get("description").is_none() && !inherited {
                        missing.push(p.clone());
                    }
                    walk(&p, v, missing);
                    if let Some(items) = v.get("items") {
                        walk(&format!("{p}[]"), items, missing);
                    }
                }
            }
        }
        for crd in [QuayIntegration::crd(), LegacyQuayIntegration::crd()] {
            let schema =
                serde_json::to_value(&crd.spec.versions[0].schema).unwrap()["openAPIV3Schema"]
                    .clone();
            let mut missing = Vec::new();
            walk("", &schema, &mut missing);
            // Condition's fields come documented from k8s-openapi.
            missing.retain(|m| !m.starts_with(".status.conditions[]"));
            assert!(
                missing.is_empty(),
                "fields without doc comments (oc explain text): {missing:?}"
            );
        }
    }

    #[test]
    fn the_documented_legacy_example_parses_with_defaults() {
        let cr: LegacyQuayIntegration = serde_json::from_value(json!({
            "apiVersion": "redhatcop.redhat.io/v1alpha1", "kind": "QuayIntegration", "metadata": {"name": "example-quayintegration"},
            "spec": {"credentialsSecretName": "openshift-operators/quay-integration", "quayHostname": "https://quay.example.com", "whitelistNamespaces": ["default"], "insecureRegistry": false}
        }))
        .unwrap();
        assert_eq!(cr.spec.cluster_id, "openshift");
        assert_eq!(
            cr.spec.common.namespace_deletion_policy,
            NamespaceDeletionPolicy::Delete
        );
        assert_eq!(
            cr.spec.common.image_stream_deletion_policy,
            ImageStreamDeletionPolicy::Retain
        );
        let current: QuayIntegration = serde_json::from_value(json!({
            "apiVersion": "quay.redhat.com/v1", "kind": "QuayIntegration", "metadata": {"name": "q"},
            "spec": {"clusterID": "prod", "credentialsSecret": {"name": "quay-integration", "namespace": "openshift-operators"}, "quayHostname": "https://quay.example.com", "allowlistNamespaces": ["a"]}
        }))
        .unwrap();
        assert_eq!(current.spec.credentials_secret.key, "token");
        assert_eq!(current.spec.allowlist_namespaces, ["a"]);
    }

    #[test]
    fn crds_yaml_has_both_documents() {
        let yaml = crds_yaml().unwrap();
        assert_eq!(
            yaml.matches("kind: CustomResourceDefinition").count(),
            2,
            "{yaml}"
        );
    }
}
