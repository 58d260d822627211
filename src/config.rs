//! One validated integration configuration, from either API group.

use crate::crd::{
    CaBundleRef, ImageStreamDeletionPolicy, LegacyQuayIntegration, NamespaceDeletionPolicy,
    QuayIntegration, RepositoryVisibility, RobotRole, RoleKind,
};
use crate::model::url::Url;
use crate::model::{Role, TeamRole, Visibility, names, parse_base_url, registry_host};
use kube::ResourceExt;

/// The API group a QuayIntegration came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ApiGroup {
    /// `quay.redhat.com/v1`.
    Current,
    /// `redhatcop.redhat.io/v1alpha1`.
    Legacy,
}

/// The namespace finalizer of the current group.
pub const FINALIZER: &str = "quay.redhat.com/quayintegrations";
/// The namespace finalizer the legacy operator used.
pub const LEGACY_FINALIZER: &str = "redhatcop.redhat.io/quayintegrations";
/// The QuayIntegration finalizer: releases namespace finalizers on deletion.
pub const INTEGRATION_FINALIZER: &str = "quay.redhat.com/release-namespaces";
/// Namespace annotation naming its Quay organization.
pub const ORGANIZATION_ANNOTATION: &str = "quay.redhat.com/organization";
/// Label the operator sets on every namespace it bridges (before any Quay
/// call) and removes when it releases one: the webhook registration
/// selects namespaces by it, so an operator outage blocks new Builds only
/// where they must go to Quay.
pub const BRIDGED_LABEL: &str = "quay.redhat.com/bridged";
/// Label on every Secret the operator manages.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
/// Its value.
pub const MANAGED_BY: &str = "quay-bridge-operator";
/// Field manager of the operator's writes.
pub const FIELD_MANAGER: &str = "quay-bridge-operator";

impl ApiGroup {
    /// The group name.
    pub fn group(self) -> &'static str {
        match self {
            ApiGroup::Current => "quay.redhat.com",
            ApiGroup::Legacy => "redhatcop.redhat.io",
        }
    }

    /// Prefix of the Build annotations this group's webhook writes.
    pub fn annotation_prefix(self) -> &'static str {
        match self {
            ApiGroup::Current => "quay-registry-operator.quay.redhat.com",
            ApiGroup::Legacy => "quay-registry-operator.redhatcop.redhat.io",
        }
    }
}

/// Identity of a QuayIntegration.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IntegrationId {
    /// API group.
    pub group: ApiGroup,
    /// Object name (cluster-scoped).
    pub name: String,
}

impl std::fmt::Display for IntegrationId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "quayintegrations.{}/{}", self.group.group(), self.name)
    }
}

/// Where the token is.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SecretKeyRef {
    /// The Secret's namespace (given or, for the legacy `ns/name` form, parsed).
    pub namespace: String,
    /// The Secret's name.
    pub name: String,
    /// The data key holding the token (`token` unless the spec names one).
    pub key: String,
    /// Keep a bootstrap password after the minted token works.
    pub keep_password: bool,
    /// Lifetime of a token the operator mints.
    pub token_lifetime: std::time::Duration,
    /// Create the Secret's user on an empty Quay.
    pub initialize_user: bool,
}

/// `tokenLifetime`'s default (30 days).
pub const DEFAULT_TOKEN_LIFETIME: std::time::Duration = std::time::Duration::from_secs(720 * 3600);

/// The shortest token lifetime the operator accepts: renewal happens when
/// a third remains, and the operator may be down meanwhile.
pub const MIN_TOKEN_LIFETIME: std::time::Duration = std::time::Duration::from_secs(3600);

/// Parses a duration as Go writes them (`720h`, `1h30m`, `90s`): one or
/// more `<digits><h|m|s>`.
pub fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    let mut total: u64 = 0;
    let mut digits = String::new();
    let mut any = false;
    for c in text.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let unit = match c {
            'h' => 3600,
            'm' => 60,
            's' => 1,
            _ => return Err(format!("{text:?}: unknown unit {c:?} (use h, m or s)")),
        };
        let n: u64 = digits
            .parse()
            .map_err(|_| format!("{text:?}: a number must come before {c:?}"))?;
        total = n
            .checked_mul(unit)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(|| format!("{text:?} is too long"))?;
        digits.clear();
        any = true;
    }
    if !digits.is_empty() || !any {
        return Err(format!(
            "{text:?}: expected a duration such as 720h or 1h30m"
        ));
    }
    Ok(std::time::Duration::from_secs(total))
}

/// A validated integration.
#[derive(Debug, Clone, PartialEq)]
pub struct IntegrationConfig {
    /// Which CR.
    pub id: IntegrationId,
    /// Its generation.
    pub generation: Option<i64>,
    /// Cluster identifier (as written).
    pub cluster_id: String,
    /// Organization name prefix.
    pub organization_prefix: String,
    /// Quay's URL.
    pub quay_url: Url,
    /// `host[:port]` of Quay's registry.
    pub registry_host: String,
    /// The token Secret.
    pub credentials: SecretKeyRef,
    /// Allow list.
    pub allow: Vec<String>,
    /// Deny list.
    pub deny: Vec<String>,
    /// Imports are insecure.
    pub insecure_registry: bool,
    /// Imports are scheduled.
    pub scheduled_import: bool,
    /// Service accounts and robot roles.
    pub service_accounts: Vec<(String, Role)>,
    /// Extra CA for Quay's API.
    pub ca_bundle: Option<CaBundleRef>,
    /// Skip TLS verification to Quay's API.
    pub insecure_tls: bool,
    /// Organization on namespace deletion.
    pub namespace_deletion: NamespaceDeletionPolicy,
    /// Repository on ImageStream deletion.
    pub image_stream_deletion: ImageStreamDeletionPolicy,
    /// Visibility of new repositories.
    pub visibility: Visibility,
    /// Adopt foreign organizations.
    pub adopt: bool,
    /// Team sync, when enabled.
    pub team_sync: Option<TeamSyncConfig>,
    /// Cancel Builds that escaped the webhook and start them again.
    pub rebuild_escaped: bool,
    /// Robot-token rotation, when on.
    pub rotation: Option<RotationConfig>,
}

/// Robot-token rotation, validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RotationConfig {
    /// A robot token older than this is replaced.
    pub interval: std::time::Duration,
    /// How long the replaced robot keeps working after the switch.
    pub grace: std::time::Duration,
    /// Rotations started per minute, at most.
    pub per_minute: u32,
}

fn rotation(
    spec: Option<&crate::crd::RobotTokenRotation>,
    service_accounts: &[(String, Role)],
) -> Result<Option<RotationConfig>, ConfigError> {
    let Some(r) = spec else {
        return Ok(None);
    };
    let duration = |field: &str, text: &str| {
        parse_duration(text).map_err(|e| ConfigError::Rotation(format!("{field}: {e}")))
    };
    let interval = duration("interval", &r.interval)?;
    let grace = duration("gracePeriod", &r.grace_period)?;
    if interval.is_zero() {
        return Err(ConfigError::Rotation("interval must be positive".into()));
    }
    if r.max_per_minute == 0 {
        return Err(ConfigError::Rotation(
            "maxPerMinute must be at least 1".into(),
        ));
    }
    // The second robot of `x` is `x_2`: a service account of that name
    // would share it.
    if let Some((sa, _)) = service_accounts.iter().find(|(sa, _)| {
        sa.strip_suffix(crate::plan::rotation::SLOT_SUFFIX)
            .is_some_and(|base| service_accounts.iter().any(|(o, _)| o == base))
    }) {
        return Err(ConfigError::Rotation(format!(
            "service account {sa} would share the second robot of {}",
            sa.trim_end_matches(crate::plan::rotation::SLOT_SUFFIX)
        )));
    }
    Ok(Some(RotationConfig {
        interval,
        grace,
        per_minute: r.max_per_minute,
    }))
}

/// One role mirrored into one team, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TeamMappingConfig {
    /// `ClusterRole` or `Role`.
    pub role_kind: RoleKind,
    /// The role's name.
    pub role: String,
    /// The team.
    pub team: String,
}

/// What a managed team is in Quay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TeamSpec {
    /// Its role in the organization.
    pub team_role: TeamRole,
    /// Its role on every repository (none for admin teams, which can do
    /// everything anyway).
    pub repository_role: Option<Role>,
}

/// Team sync settings, validated: every team has one spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TeamSyncConfig {
    /// Roles to teams.
    pub mappings: Vec<TeamMappingConfig>,
    /// Teams by name.
    pub teams: std::collections::BTreeMap<String, TeamSpec>,
}

/// The mapping used when `teamSync.roles` is not set.
pub fn default_team_mappings() -> Vec<crate::crd::TeamMapping> {
    use crate::crd::TeamRole;
    let m = |role: &str, team: &str, team_role, repository_role| crate::crd::TeamMapping {
        role: role.into(),
        role_kind: RoleKind::ClusterRole,
        team: team.into(),
        team_role,
        repository_role,
    };
    vec![
        m("admin", "admins", TeamRole::Admin, None),
        m("edit", "editors", TeamRole::Member, Some(RobotRole::Write)),
        m("view", "viewers", TeamRole::Member, Some(RobotRole::Read)),
    ]
}

/// Validates team sync settings (`None` when off).
pub(crate) fn team_sync(
    spec: Option<&crate::crd::TeamSync>,
) -> Result<Option<TeamSyncConfig>, ConfigError> {
    let Some(spec) = spec.filter(|s| s.enabled) else {
        return Ok(None);
    };
    let list = spec.roles.clone().unwrap_or_else(default_team_mappings);
    let mut mappings = Vec::new();
    let mut teams = std::collections::BTreeMap::new();
    for m in list {
        if names::check_namespace_name(&m.team).is_err() || m.team == "owners" {
            return Err(ConfigError::TeamSync(format!(
                "team {:?} is not a name Quay accepts for a managed team (2 to 255 lower-case letters, digits and single '.', '_' or '-'; not 'owners')",
                m.team
            )));
        }
        if m.role.is_empty() {
            return Err(ConfigError::TeamSync(format!(
                "team {}: role must not be empty",
                m.team
            )));
        }
        let team_role = match m.team_role {
            crate::crd::TeamRole::Member => TeamRole::Member,
            crate::crd::TeamRole::Creator => TeamRole::Creator,
            crate::crd::TeamRole::Admin => TeamRole::Admin,
        };
        let team_spec = TeamSpec {
            team_role,
            repository_role: match team_role {
                TeamRole::Admin => None,
                _ => m.repository_role.map(role),
            },
        };
        if let Some(other) = teams.insert(m.team.clone(), team_spec)
            && other != team_spec
        {
            return Err(ConfigError::TeamSync(format!(
                "team {} is given different teamRole or repositoryRole by two entries",
                m.team
            )));
        }
        mappings.push(TeamMappingConfig {
            role_kind: m.role_kind,
            role: m.role,
            team: m.team,
        });
    }
    Ok(Some(TeamSyncConfig { mappings, teams }))
}

/// Why a QuayIntegration cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// `clusterID` unusable in names.
    #[error("clusterID {0:?} must be lower-case letters and digits separated by single '.' or '-'")]
    ClusterId(String),
    /// `quayHostname` unusable.
    #[error("quayHostname: {0}")]
    QuayUrl(String),
    /// The credentials reference is unusable.
    #[error("credentials: {0}")]
    Credentials(String),
    /// A service account entry is unusable.
    #[error("serviceAccounts: {0}")]
    ServiceAccount(String),
    /// The team sync settings are unusable.
    #[error("teamSync: {0}")]
    TeamSync(String),
    /// The rotation settings are unusable.
    #[error("robotTokenRotation: {0}")]
    Rotation(String),
    /// The organization prefix is unusable.
    #[error(
        "organizationPrefix {0:?} must be empty or end in '_', '-' or '.' after a valid Quay name"
    )]
    Prefix(String),
}

fn role(r: RobotRole) -> Role {
    match r {
        RobotRole::Read => Role::Read,
        RobotRole::Write => Role::Write,
        RobotRole::Admin => Role::Admin,
    }
}

/// The default service accounts and their robots' roles.
pub fn default_service_accounts() -> Vec<(String, Role)> {
    vec![
        ("builder".into(), Role::Write),
        ("default".into(), Role::Read),
        ("deployer".into(), Role::Read),
    ]
}

fn valid_cluster_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 63
        && id.split(['.', '-']).all(|part| {
            !part.is_empty()
                && part
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        })
}

#[allow(clippy::too_many_arguments)]
fn build(
    id: IntegrationId,
    generation: Option<i64>,
    cluster_id: &str,
    quay_hostname: &str,
    credentials: SecretKeyRef,
    allow: &[String],
    deny: &[String],
    common: &crate::crd::CommonSettings,
) -> Result<IntegrationConfig, ConfigError> {
    if !valid_cluster_id(cluster_id) {
        return Err(ConfigError::ClusterId(cluster_id.to_owned()));
    }
    let quay_url =
        parse_base_url(quay_hostname).map_err(|e| ConfigError::QuayUrl(e.to_string()))?;
    if credentials.name.is_empty() || credentials.namespace.is_empty() || credentials.key.is_empty()
    {
        return Err(ConfigError::Credentials(
            "name, namespace and key must not be empty".into(),
        ));
    }
    let prefix = common.organization_prefix.clone().unwrap_or_default();
    if !prefix.is_empty() {
        let stem = prefix.trim_end_matches(['_', '-', '.']);
        if stem.len() + 1 != prefix.len()
            || names::check_namespace_name(&format!("{stem}x")).is_err()
        {
            return Err(ConfigError::Prefix(prefix));
        }
    }
    let service_accounts = match &common.service_accounts {
        None => default_service_accounts(),
        Some(list) => {
            let mut out: Vec<(String, Role)> = Vec::new();
            for sa in list {
                names::validate(names::NameKind::Robot, &sa.name)
                    .map_err(|e| ConfigError::ServiceAccount(e.to_string()))?;
                if out.iter().any(|(n, _)| n == &sa.name) {
                    return Err(ConfigError::ServiceAccount(format!(
                        "{} is listed twice",
                        sa.name
                    )));
                }
                out.push((sa.name.clone(), role(sa.role)));
            }
            out
        }
    };
    Ok(IntegrationConfig {
        registry_host: registry_host(&quay_url),
        quay_url,
        id,
        generation,
        cluster_id: cluster_id.to_owned(),
        organization_prefix: prefix,
        credentials,
        allow: allow.to_vec(),
        deny: deny.to_vec(),
        insecure_registry: common.insecure_registry,
        scheduled_import: common.scheduled_image_stream_import,
        ca_bundle: common.quay_ca_bundle.clone(),
        insecure_tls: common.insecure_skip_tls_verify,
        namespace_deletion: common.namespace_deletion_policy,
        image_stream_deletion: common.image_stream_deletion_policy,
        visibility: match common.repository_visibility {
            RepositoryVisibility::Private => Visibility::Private,
            RepositoryVisibility::Public => Visibility::Public,
        },
        adopt: common.adopt_existing_organizations,
        rebuild_escaped: common.rebuild_escaped_builds,
        team_sync: team_sync(common.team_sync.as_ref())?,
        rotation: rotation(common.robot_token_rotation.as_ref(), &service_accounts)?,
        service_accounts,
    })
}

/// From a `quay.redhat.com/v1` QuayIntegration.
pub fn from_current(qi: &QuayIntegration) -> Result<IntegrationConfig, ConfigError> {
    let s = &qi.spec;
    let token_lifetime = parse_duration(&s.credentials_secret.token_lifetime)
        .map_err(|e| ConfigError::Credentials(format!("tokenLifetime: {e}")))?;
    if token_lifetime < MIN_TOKEN_LIFETIME {
        return Err(ConfigError::Credentials(format!(
            "tokenLifetime {} is shorter than 1h",
            s.credentials_secret.token_lifetime
        )));
    }
    let credentials = SecretKeyRef {
        namespace: s.credentials_secret.namespace.clone(),
        name: s.credentials_secret.name.clone(),
        key: s.credentials_secret.key.clone(),
        keep_password: s.credentials_secret.keep_password,
        token_lifetime,
        initialize_user: s.credentials_secret.initialize_user,
    };
    let id = IntegrationId {
        group: ApiGroup::Current,
        name: qi.name_any(),
    };
    build(
        id,
        qi.metadata.generation,
        &s.cluster_id,
        &s.quay_hostname,
        credentials,
        &s.allowlist_namespaces,
        &s.denylist_namespaces,
        &s.common,
    )
}

/// From a `redhatcop.redhat.io/v1alpha1` QuayIntegration.
pub fn from_legacy(qi: &LegacyQuayIntegration) -> Result<IntegrationConfig, ConfigError> {
    let s = &qi.spec;
    let Some((namespace, name)) = s.credentials_secret_name.split_once('/') else {
        return Err(ConfigError::Credentials(format!(
            "credentialsSecretName {:?} must be <namespace>/<name>",
            s.credentials_secret_name
        )));
    };
    let credentials = SecretKeyRef {
        namespace: namespace.to_owned(),
        name: name.to_owned(),
        key: s
            .credentials_secret_key
            .clone()
            .unwrap_or_else(|| "token".into()),
        keep_password: false,
        token_lifetime: DEFAULT_TOKEN_LIFETIME,
        initialize_user: false,
    };
    let id = IntegrationId {
        group: ApiGroup::Legacy,
        name: qi.name_any(),
    };
    build(
        id,
        qi.metadata.generation,
        &s.cluster_id,
        &s.quay_hostname,
        credentials,
        &s.whitelist_namespaces,
        &s.blacklist_namespaces,
        &s.common,
    )
}

/// An integration with defaults everywhere, for tests of the planners.
#[cfg(test)]
pub(crate) fn test_config(cluster_id: &str, prefix: &str) -> IntegrationConfig {
    IntegrationConfig {
        id: IntegrationId {
            group: ApiGroup::Current,
            name: "q".into(),
        },
        generation: Some(1),
        cluster_id: cluster_id.into(),
        organization_prefix: prefix.into(),
        quay_url: Url::parse("https://quay.example.com").unwrap(),
        registry_host: "quay.example.com".into(),
        credentials: SecretKeyRef {
            namespace: "o".into(),
            name: "s".into(),
            key: "token".into(),
            keep_password: false,
            token_lifetime: DEFAULT_TOKEN_LIFETIME,
            initialize_user: false,
        },
        allow: vec![],
        deny: vec![],
        insecure_registry: false,
        scheduled_import: false,
        service_accounts: default_service_accounts(),
        ca_bundle: None,
        insecure_tls: false,
        namespace_deletion: NamespaceDeletionPolicy::default(),
        image_stream_deletion: ImageStreamDeletionPolicy::default(),
        visibility: Visibility::Private,
        adopt: false,
        rebuild_escaped: false,
        team_sync: None,
        rotation: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_as_go_writes_them() {
        use std::time::Duration;
        assert_eq!(parse_duration("720h"), Ok(Duration::from_secs(720 * 3600)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        for bad in ["", "h", "10", "10d", "1.5h", "-1h", "99999999999999999999h"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }
    use serde_json::json;

    fn current(spec: serde_json::Value) -> Result<IntegrationConfig, ConfigError> {
        let qi: QuayIntegration = serde_json::from_value(json!({"apiVersion": "quay.redhat.com/v1", "kind": "QuayIntegration", "metadata": {"name": "q", "generation": 3}, "spec": spec})).unwrap();
        from_current(&qi)
    }

    fn base() -> serde_json::Value {
        json!({"credentialsSecret": {"name": "quay-integration", "namespace": "openshift-operators"}, "quayHostname": "https://quay.example.com:8443/"})
    }

    #[test]
    fn defaults_and_derived_values() {
        let c = current(base()).unwrap();
        assert_eq!(c.cluster_id, "openshift");
        assert_eq!(c.registry_host, "quay.example.com:8443");
        assert_eq!(c.credentials.key, "token");
        assert_eq!(c.service_accounts, default_service_accounts());
        assert_eq!(c.generation, Some(3));
        assert_eq!(c.visibility, Visibility::Private);
    }

    #[test]
    fn the_custom_token_key_is_the_key_read() {
        let mut spec = base();
        spec["credentialsSecret"]["key"] = json!("quay-token");
        assert_eq!(current(spec).unwrap().credentials.key, "quay-token");
    }

    #[test]
    fn invalid_values_are_refused() {
        for (field, value) in [
            ("clusterID", json!("Prod")),
            ("clusterID", json!("a--b")),
            ("clusterID", json!("a_b")),
            ("clusterID", json!("")),
            ("quayHostname", json!("quay.example.com")),
            ("organizationPrefix", json!("bad")),
            ("organizationPrefix", json!("x__")),
        ] {
            let mut spec = base();
            spec[field] = value.clone();
            assert!(current(spec).is_err(), "{field}={value}");
        }
        let mut spec = base();
        spec["serviceAccounts"] =
            json!([{"name": "builder", "role": "write"}, {"name": "builder", "role": "read"}]);
        assert!(matches!(current(spec), Err(ConfigError::ServiceAccount(_))));
    }

    #[test]
    fn legacy_credentials_name_is_split() {
        let qi: LegacyQuayIntegration = serde_json::from_value(json!({"apiVersion": "redhatcop.redhat.io/v1alpha1", "kind": "QuayIntegration", "metadata": {"name": "l"},
            "spec": {"credentialsSecretName": "openshift-operators/quay-integration", "quayHostname": "https://q.example.com", "whitelistNamespaces": ["a"], "blacklistNamespaces": ["b"]}})).unwrap();
        let c = from_legacy(&qi).unwrap();
        assert_eq!(
            (
                c.credentials.namespace.as_str(),
                c.credentials.name.as_str(),
                c.credentials.key.as_str()
            ),
            ("openshift-operators", "quay-integration", "token")
        );
        assert_eq!(
            (c.allow.clone(), c.deny.clone()),
            (vec!["a".to_owned()], vec!["b".to_owned()])
        );
        assert_eq!(c.id.group, ApiGroup::Legacy);
        let mut bad = qi.clone();
        bad.spec.credentials_secret_name = "no-slash".into();
        assert!(matches!(
            from_legacy(&bad),
            Err(ConfigError::Credentials(_))
        ));
    }
}
