//! What one namespace needs, from what was observed in Quay and Kubernetes.

use super::names::{self, Marker, REPOSITORY_DESCRIPTION};
use crate::config::{IntegrationConfig, MANAGED_BY, MANAGED_BY_LABEL};
use crate::crd::ImageStreamDeletionPolicy;
use crate::quay::types::{Prototype, Repository, Robot};
use crate::quay::{Role, names as quay_names};
use crate::secret::SecretString;
use std::collections::{BTreeMap, BTreeSet};

/// A robot as observed.
#[derive(Debug, Clone, PartialEq)]
pub struct ObservedRobot {
    /// Short name.
    pub short: String,
    /// Our marker, if its description is one.
    pub marker: Option<Marker>,
    /// Its token, when listed with tokens.
    pub token: Option<SecretString>,
    /// Repositories it holds a permission on.
    pub repositories: BTreeSet<String>,
}

/// A repository as observed.
#[derive(Debug, Clone, PartialEq)]
pub struct ObservedRepository {
    /// Name.
    pub name: String,
    /// Created by this operator (its description says so).
    pub managed: bool,
}

/// What Quay holds for the namespace's organization.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct QuayView {
    /// The organization exists.
    pub exists: bool,
    /// Its robots.
    pub robots: Vec<ObservedRobot>,
    /// Its default permissions: (id, role, delegate).
    pub prototypes: Vec<(String, Role, String)>,
    /// Its repositories.
    pub repositories: Vec<ObservedRepository>,
}

impl QuayView {
    /// Builds the view from the client's answers.
    pub fn from_answers(
        robots: Vec<Robot>,
        prototypes: Vec<Prototype>,
        repositories: Vec<Repository>,
    ) -> Self {
        Self {
            exists: true,
            robots: robots
                .into_iter()
                .map(|r| ObservedRobot {
                    short: r.short_name().to_owned(),
                    marker: Marker::parse(&r.description),
                    token: r.token,
                    repositories: r.repositories.into_iter().collect(),
                })
                .collect(),
            prototypes: prototypes
                .into_iter()
                .map(|p| (p.id, p.role, p.delegate.name))
                .collect(),
            repositories: repositories
                .into_iter()
                .map(|r| ObservedRepository {
                    managed: r.description.as_deref() == Some(REPOSITORY_DESCRIPTION),
                    name: r.name,
                })
                .collect(),
        }
    }
}

/// Who an existing organization belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ownership {
    /// It does not exist.
    Absent,
    /// This cluster's operator created it.
    Ours,
    /// It exists but holds nothing (no robots, repositories or default
    /// permissions): safe to take.
    Empty,
    /// Someone else's.
    Foreign,
    /// Another cluster configured with the same clusterID manages it.
    OtherCluster {
        /// That cluster's UID.
        cluster_uid: String,
    },
}

/// Decides ownership from the robots' markers.
pub fn ownership(view: &QuayView, cluster_id: &str, cluster_uid: &str) -> Ownership {
    if !view.exists {
        return Ownership::Absent;
    }
    let markers: Vec<&Marker> = view
        .robots
        .iter()
        .filter_map(|r| r.marker.as_ref())
        .filter(|m| m.cluster_id == cluster_id)
        .collect();
    if markers.iter().any(|m| m.cluster_uid == cluster_uid) {
        return Ownership::Ours;
    }
    if let Some(other) = markers.first() {
        return Ownership::OtherCluster {
            cluster_uid: other.cluster_uid.clone(),
        };
    }
    if view.robots.is_empty() && view.repositories.is_empty() && view.prototypes.is_empty() {
        return Ownership::Empty;
    }
    Ownership::Foreign
}

/// A change in Quay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QuayAction {
    /// Create the organization.
    CreateOrganization,
    /// Create a robot with our marker.
    CreateRobot {
        /// Short name.
        short: String,
        /// Marker description.
        description: String,
    },
    /// Create a default permission for a robot.
    CreatePrototype {
        /// Robot short name.
        short: String,
        /// Role.
        role: Role,
    },
    /// Delete a default permission (wrong role or duplicate).
    DeletePrototype {
        /// Its id.
        id: String,
    },
    /// Create a repository for an ImageStream.
    CreateRepository {
        /// Name.
        name: String,
    },
    /// Delete a repository this operator created whose ImageStream is gone.
    DeleteRepository {
        /// Name.
        name: String,
    },
    /// Grant a robot its role on a repository explicitly.
    GrantRepository {
        /// Repository.
        repo: String,
        /// Robot short name.
        short: String,
        /// Role.
        role: Role,
    },
}

/// The Quay changes a namespace needs (the organization is ours or absent).
pub fn plan_quay(
    cfg: &IntegrationConfig,
    org: &str,
    marker: &Marker,
    view: &QuayView,
    image_streams: &BTreeSet<String>,
) -> Vec<QuayAction> {
    let mut actions = Vec::new();
    let wanted_repos: Vec<&String> = image_streams
        .iter()
        .filter(|n| quay_names::is_valid_repository_name(n))
        .collect();
    if !view.exists {
        actions.push(QuayAction::CreateOrganization);
    }
    let mut new_robots = BTreeSet::new();
    for (sa, role) in &cfg.service_accounts {
        let delegate = names::robot_account(org, sa);
        if !view.robots.iter().any(|r| &r.short == sa) {
            actions.push(QuayAction::CreateRobot {
                short: sa.clone(),
                description: marker.description(),
            });
            new_robots.insert(sa.clone());
        }
        let mut protos: Vec<&(String, Role, String)> = view
            .prototypes
            .iter()
            .filter(|(_, _, d)| d == &delegate)
            .collect();
        protos.sort();
        let keep = protos.iter().position(|(_, r, _)| r == role);
        for (i, (id, _, _)) in protos.iter().enumerate() {
            if Some(i) != keep {
                actions.push(QuayAction::DeletePrototype { id: id.clone() });
            }
        }
        if keep.is_none() {
            actions.push(QuayAction::CreatePrototype {
                short: sa.clone(),
                role: *role,
            });
        }
    }
    let existing: BTreeSet<&str> = view.repositories.iter().map(|r| r.name.as_str()).collect();
    for repo in &wanted_repos {
        if !existing.contains(repo.as_str()) {
            // Created by the token's user: Quay applies the default permissions.
            actions.push(QuayAction::CreateRepository {
                name: (*repo).clone(),
            });
            continue;
        }
        for (sa, role) in &cfg.service_accounts {
            let has = view
                .robots
                .iter()
                .any(|r| &r.short == sa && r.repositories.contains(repo.as_str()));
            if !has || new_robots.contains(sa) {
                actions.push(QuayAction::GrantRepository {
                    repo: (*repo).clone(),
                    short: sa.clone(),
                    role: *role,
                });
            }
        }
    }
    if cfg.image_stream_deletion == ImageStreamDeletionPolicy::Delete {
        for r in &view.repositories {
            if r.managed && !image_streams.contains(&r.name) {
                actions.push(QuayAction::DeleteRepository {
                    name: r.name.clone(),
                });
            }
        }
    }
    actions
}

/// A Secret as observed.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ObservedSecret {
    /// `type`.
    pub type_: String,
    /// Decoded `.dockerconfigjson`.
    pub dockerconfigjson: Option<String>,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Annotations.
    pub annotations: BTreeMap<String, String>,
}

/// The annotation naming the service account a Secret belongs to.
pub const SERVICE_ACCOUNT_ANNOTATION: &str = "kubernetes.io/service-account.name";

/// The one rule for "this Secret is as the operator wants it": its type,
/// our label, the service-account annotation and the registry credentials.
pub fn secret_up_to_date(current: &ObservedSecret, service_account: &str, payload: &str) -> bool {
    current.type_ == "kubernetes.io/dockerconfigjson"
        && current.labels.get(MANAGED_BY_LABEL).map(String::as_str) == Some(MANAGED_BY)
        && current
            .annotations
            .get(SERVICE_ACCOUNT_ANNOTATION)
            .map(String::as_str)
            == Some(service_account)
        && current
            .dockerconfigjson
            .as_deref()
            .is_some_and(|d| same_json(d, payload))
}

/// The Secret the operator wants: `current`'s other labels and
/// annotations are kept (they are not ours), ours are set.
pub fn desired_secret(
    namespace: &str,
    name: &str,
    service_account: &str,
    payload: &SecretString,
    current: Option<&ObservedSecret>,
) -> k8s_openapi::api::core::v1::Secret {
    let mut labels = current.map(|c| c.labels.clone()).unwrap_or_default();
    labels.insert(MANAGED_BY_LABEL.into(), MANAGED_BY.into());
    let mut annotations = current.map(|c| c.annotations.clone()).unwrap_or_default();
    annotations.insert(SERVICE_ACCOUNT_ANNOTATION.into(), service_account.into());
    k8s_openapi::api::core::v1::Secret {
        metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
            name: Some(name.into()),
            namespace: Some(namespace.into()),
            labels: Some(labels),
            annotations: Some(annotations),
            ..Default::default()
        },
        type_: Some("kubernetes.io/dockerconfigjson".into()),
        data: Some(
            [(
                ".dockerconfigjson".to_owned(),
                k8s_openapi::ByteString(payload.expose().as_bytes().to_vec()),
            )]
            .into(),
        ),
        ..Default::default()
    }
}

/// The JSON patch that links `secret` to a service account as read at
/// `resource_version` with these `secrets` and `imagePullSecrets` names
/// (`None`: the list is absent). It appends, so every other entry stays
/// where it is, and it is guarded by the resourceVersion: if the account
/// changed since it was read, the apiserver refuses the patch and the
/// caller reads it again. Empty when nothing is missing.
pub fn link_ops(
    resource_version: &str,
    secrets: Option<&[String]>,
    image_pull_secrets: Option<&[String]>,
    secret: &str,
) -> Vec<serde_json::Value> {
    use serde_json::json;
    let mut ops = Vec::new();
    for (path, list) in [
        ("/secrets", secrets),
        ("/imagePullSecrets", image_pull_secrets),
    ] {
        match list {
            Some(l) if l.iter().any(|n| n == secret) => {}
            Some(l) if !l.is_empty() => {
                ops.push(
                    json!({"op": "add", "path": format!("{path}/-"), "value": {"name": secret}}),
                );
            }
            // Absent, null or empty: the list is ours to start.
            _ => ops.push(json!({"op": "add", "path": path, "value": [{"name": secret}]})),
        }
    }
    if !ops.is_empty() {
        ops.insert(
            0,
            json!({"op": "test", "path": "/metadata/resourceVersion", "value": resource_version}),
        );
    }
    ops
}

/// A service account as observed: the names in `secrets` and
/// `imagePullSecrets`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ObservedServiceAccount {
    /// Mountable secrets.
    pub secrets: Vec<String>,
    /// Image pull secrets.
    pub image_pull_secrets: Vec<String>,
}

/// A change in Kubernetes.
#[derive(Debug, Clone, PartialEq)]
pub enum KubeAction {
    /// Create or replace a managed dockerconfigjson Secret.
    ApplySecret {
        /// Secret name.
        name: String,
        /// The service account it belongs to.
        service_account: String,
        /// The `.dockerconfigjson` content.
        payload: SecretString,
    },
    /// Add the Secret to a service account's lists.
    LinkServiceAccount {
        /// Service account.
        service_account: String,
        /// Secret name.
        secret: String,
        /// Missing from `secrets`.
        mountable: bool,
        /// Missing from `imagePullSecrets`.
        pull: bool,
    },
}

/// The Kubernetes side, and the service accounts not there yet.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct KubePlan {
    /// Changes.
    pub actions: Vec<KubeAction>,
    /// Service accounts to wait for (their creation triggers a reconcile).
    pub waiting_for: Vec<String>,
}

fn same_json(a: &str, b: &str) -> bool {
    match (
        serde_json::from_str::<serde_json::Value>(a),
        serde_json::from_str::<serde_json::Value>(b),
    ) {
        (Ok(x), Ok(y)) => x == y,
        _ => false,
    }
}

/// Secrets and service-account links for the robots' `tokens`.
pub fn plan_kube(
    cfg: &IntegrationConfig,
    org: &str,
    tokens: &BTreeMap<String, SecretString>,
    secrets: &BTreeMap<String, ObservedSecret>,
    service_accounts: &BTreeMap<String, ObservedServiceAccount>,
) -> KubePlan {
    let mut plan = KubePlan::default();
    for (sa, _) in &cfg.service_accounts {
        let Some(token) = tokens.get(sa) else {
            continue;
        };
        let name = names::secret_name(sa, &cfg.cluster_id);
        let payload = names::dockerconfigjson(
            &cfg.registry_host,
            &names::robot_account(org, sa),
            token.expose(),
        );
        let up_to_date = secrets
            .get(&name)
            .is_some_and(|s| secret_up_to_date(s, sa, &payload));
        if !up_to_date {
            plan.actions.push(KubeAction::ApplySecret {
                name: name.clone(),
                service_account: sa.clone(),
                payload: SecretString::new(payload),
            });
        }
        match service_accounts.get(sa) {
            None => plan.waiting_for.push(sa.clone()),
            Some(account) => {
                let mountable = !account.secrets.contains(&name);
                let pull = !account.image_pull_secrets.contains(&name);
                if mountable || pull {
                    plan.actions.push(KubeAction::LinkServiceAccount {
                        service_account: sa.clone(),
                        secret: name,
                        mountable,
                        pull,
                    });
                }
            }
        }
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> IntegrationConfig {
        crate::config::test_config("openshift", "")
    }

    fn marker() -> Marker {
        Marker {
            cluster_id: "openshift".into(),
            cluster_uid: "uid-1".into(),
            namespace: "demo".into(),
        }
    }

    fn robot(short: &str, marker: Option<Marker>, repos: &[&str]) -> ObservedRobot {
        ObservedRobot {
            short: short.into(),
            marker,
            token: Some(SecretString::new(format!("tok-{short}"))),
            repositories: repos.iter().map(|s| (*s).to_owned()).collect(),
        }
    }

    fn streams(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|s| (*s).to_owned()).collect()
    }

    fn converged(repos: &[&str]) -> QuayView {
        let org = "openshift_demo";
        QuayView {
            exists: true,
            robots: ["builder", "default", "deployer"]
                .iter()
                .map(|s| robot(s, Some(marker()), repos))
                .collect(),
            prototypes: vec![
                ("p1".into(), Role::Write, format!("{org}+builder")),
                ("p2".into(), Role::Read, format!("{org}+default")),
                ("p3".into(), Role::Read, format!("{org}+deployer")),
            ],
            repositories: repos
                .iter()
                .map(|r| ObservedRepository {
                    name: (*r).to_owned(),
                    managed: true,
                })
                .collect(),
        }
    }

    #[test]
    fn a_new_namespace_needs_ten_writes_for_two_image_streams() {
        let actions = plan_quay(
            &cfg(),
            "openshift_demo",
            &marker(),
            &QuayView::default(),
            &streams(&["app", "db"]),
        );
        assert_eq!(actions[0], QuayAction::CreateOrganization);
        assert_eq!(
            actions
                .iter()
                .filter(|a| matches!(a, QuayAction::CreateRobot { .. }))
                .count(),
            3
        );
        assert_eq!(
            actions
                .iter()
                .filter(|a| matches!(a, QuayAction::CreatePrototype { .. }))
                .count(),
            3
        );
        assert_eq!(
            actions
                .iter()
                .filter(|a| matches!(a, QuayAction::CreateRepository { .. }))
                .count(),
            2
        );
        assert_eq!(
            actions.len(),
            9,
            "no explicit grants: Quay applies the default permissions to repositories we create"
        );
        assert!(actions.contains(&QuayAction::CreatePrototype {
            short: "builder".into(),
            role: Role::Write
        }));
        assert!(actions.contains(&QuayAction::CreatePrototype {
            short: "deployer".into(),
            role: Role::Read
        }));
        let QuayAction::CreateRobot { description, .. } = &actions[1] else {
            panic!()
        };
        assert_eq!(Marker::parse(description), Some(marker()));
    }

    #[test]
    fn a_converged_namespace_needs_nothing() {
        assert!(
            plan_quay(
                &cfg(),
                "openshift_demo",
                &marker(),
                &converged(&["app"]),
                &streams(&["app"])
            )
            .is_empty()
        );
    }

    #[test]
    fn drift_is_repaired() {
        // Robot deleted in Quay: recreated, and granted on existing repositories.
        let mut view = converged(&["app"]);
        view.robots.retain(|r| r.short != "default");
        let actions = plan_quay(
            &cfg(),
            "openshift_demo",
            &marker(),
            &view,
            &streams(&["app"]),
        );
        assert!(actions.contains(&QuayAction::CreateRobot {
            short: "default".into(),
            description: marker().description()
        }));
        assert!(actions.contains(&QuayAction::GrantRepository {
            repo: "app".into(),
            short: "default".into(),
            role: Role::Read
        }));
        // A repository created by push (no permissions for the robots): explicit grants (upstream issue #109).
        let mut view = converged(&[]);
        view.repositories.push(ObservedRepository {
            name: "pushed".into(),
            managed: false,
        });
        let actions = plan_quay(
            &cfg(),
            "openshift_demo",
            &marker(),
            &view,
            &streams(&["pushed"]),
        );
        assert_eq!(actions.len(), 3, "{actions:?}");
        assert!(
            actions
                .iter()
                .all(|a| matches!(a, QuayAction::GrantRepository { repo, .. } if repo == "pushed"))
        );
        // A prototype with the wrong role is replaced; duplicates go.
        let mut view = converged(&[]);
        view.prototypes[0].1 = Role::Read;
        view.prototypes
            .push(("p9".into(), Role::Read, "openshift_demo+default".into()));
        let actions = plan_quay(&cfg(), "openshift_demo", &marker(), &view, &streams(&[]));
        assert!(actions.contains(&QuayAction::DeletePrototype { id: "p1".into() }));
        assert!(actions.contains(&QuayAction::CreatePrototype {
            short: "builder".into(),
            role: Role::Write
        }));
        assert!(actions.contains(&QuayAction::DeletePrototype { id: "p9".into() }));
        assert_eq!(actions.len(), 3);
    }

    #[test]
    fn repositories_follow_the_deletion_policy_and_only_ours_go() {
        let mut view = converged(&["gone"]);
        view.repositories.push(ObservedRepository {
            name: "foreign".into(),
            managed: false,
        });
        assert!(
            plan_quay(&cfg(), "openshift_demo", &marker(), &view, &streams(&[])).is_empty(),
            "Retain is the default"
        );
        let mut c = cfg();
        c.image_stream_deletion = ImageStreamDeletionPolicy::Delete;
        assert_eq!(
            plan_quay(&c, "openshift_demo", &marker(), &view, &streams(&[])),
            vec![QuayAction::DeleteRepository {
                name: "gone".into()
            }]
        );
    }

    #[test]
    fn invalid_repository_names_are_skipped() {
        let actions = plan_quay(
            &cfg(),
            "openshift_demo",
            &marker(),
            &converged(&[]),
            &streams(&["Bad", "-x", "ok"]),
        );
        assert_eq!(
            actions,
            vec![QuayAction::CreateRepository { name: "ok".into() }]
        );
    }

    #[test]
    fn ownership_decisions() {
        assert_eq!(
            ownership(&QuayView::default(), "openshift", "uid-1"),
            Ownership::Absent
        );
        assert_eq!(
            ownership(&converged(&[]), "openshift", "uid-1"),
            Ownership::Ours
        );
        assert_eq!(
            ownership(&converged(&[]), "openshift", "uid-2"),
            Ownership::OtherCluster {
                cluster_uid: "uid-1".into()
            }
        );
        let empty = QuayView {
            exists: true,
            ..Default::default()
        };
        assert_eq!(ownership(&empty, "openshift", "uid-1"), Ownership::Empty);
        let mut foreign = converged(&[]);
        for r in &mut foreign.robots {
            r.marker = None;
        }
        assert_eq!(
            ownership(&foreign, "openshift", "uid-1"),
            Ownership::Foreign
        );
        // A marker of another clusterID (same Quay, other cluster) is not ours either.
        assert_eq!(
            ownership(&converged(&[]), "prod", "uid-1"),
            Ownership::Foreign
        );
    }

    fn tokens() -> BTreeMap<String, SecretString> {
        ["builder", "default", "deployer"]
            .iter()
            .map(|s| ((*s).to_owned(), SecretString::new(format!("tok-{s}"))))
            .collect()
    }

    #[test]
    fn secrets_and_links_are_written_only_on_drift() {
        let c = cfg();
        let mut secrets = BTreeMap::new();
        let mut sas = BTreeMap::new();
        let plan = plan_kube(&c, "openshift_demo", &tokens(), &secrets, &sas);
        assert_eq!(plan.actions.len(), 3);
        assert_eq!(plan.waiting_for, ["builder", "default", "deployer"]);
        for (sa, _) in &c.service_accounts {
            let name = names::secret_name(sa, "openshift");
            secrets.insert(
                name.clone(),
                ObservedSecret {
                    type_: "kubernetes.io/dockerconfigjson".into(),
                    dockerconfigjson: Some(names::dockerconfigjson(
                        "quay.example.com",
                        &format!("openshift_demo+{sa}"),
                        &format!("tok-{sa}"),
                    )),
                    labels: [(MANAGED_BY_LABEL.to_owned(), MANAGED_BY.to_owned())].into(),
                    annotations: [(SERVICE_ACCOUNT_ANNOTATION.to_owned(), sa.clone())].into(),
                },
            );
            sas.insert(
                sa.clone(),
                ObservedServiceAccount {
                    secrets: vec![format!("{sa}-dockercfg-x"), name.clone()],
                    image_pull_secrets: vec![name],
                },
            );
        }
        let plan = plan_kube(&c, "openshift_demo", &tokens(), &secrets, &sas);
        assert_eq!(
            plan,
            KubePlan::default(),
            "nothing to write at steady state"
        );
        // A regenerated token, an edited secret, a removed link.
        let mut new_tokens = tokens();
        new_tokens.insert("builder".into(), SecretString::new("rotated"));
        secrets
            .get_mut("default-quay-openshift")
            .unwrap()
            .dockerconfigjson = Some("{}".into());
        sas.get_mut("deployer").unwrap().image_pull_secrets.clear();
        let plan = plan_kube(&c, "openshift_demo", &new_tokens, &secrets, &sas);
        let applied: Vec<&str> = plan
            .actions
            .iter()
            .filter_map(|a| {
                if let KubeAction::ApplySecret { name, .. } = a {
                    Some(name.as_str())
                } else {
                    None
                }
            })
            .collect();
        assert_eq!(
            applied,
            ["builder-quay-openshift", "default-quay-openshift"]
        );
        assert!(plan.actions.contains(&KubeAction::LinkServiceAccount {
            service_account: "deployer".into(),
            secret: "deployer-quay-openshift".into(),
            mountable: false,
            pull: true
        }));
    }

    fn observed(sa: &str) -> ObservedSecret {
        ObservedSecret {
            type_: "kubernetes.io/dockerconfigjson".into(),
            dockerconfigjson: Some("{\"auths\": {\"q\": {}}}".into()),
            labels: [
                (MANAGED_BY_LABEL.to_owned(), MANAGED_BY.to_owned()),
                ("team".to_owned(), "a".to_owned()),
            ]
            .into(),
            annotations: [
                (SERVICE_ACCOUNT_ANNOTATION.to_owned(), sa.to_owned()),
                ("note".to_owned(), "users".to_owned()),
            ]
            .into(),
        }
    }

    #[test]
    fn a_secret_is_up_to_date_only_with_type_label_annotation_and_data() {
        let payload = "{\"auths\":{\"q\":{}}}";
        assert!(secret_up_to_date(&observed("builder"), "builder", payload));
        let mut s = observed("builder");
        s.annotations.remove(SERVICE_ACCOUNT_ANNOTATION);
        assert!(
            !secret_up_to_date(&s, "builder", payload),
            "annotation removed"
        );
        assert!(
            !secret_up_to_date(&observed("default"), "builder", payload),
            "other account"
        );
        let mut s = observed("builder");
        s.labels.remove(MANAGED_BY_LABEL);
        assert!(!secret_up_to_date(&s, "builder", payload), "label removed");
        let mut s = observed("builder");
        s.type_ = "Opaque".into();
        assert!(!secret_up_to_date(&s, "builder", payload), "retyped");
        let mut s = observed("builder");
        s.dockerconfigjson = None;
        assert!(!secret_up_to_date(&s, "builder", payload), "data removed");
        assert!(
            !secret_up_to_date(&observed("builder"), "builder", "{}"),
            "other data"
        );
    }

    #[test]
    fn the_desired_secret_keeps_other_labels_and_annotations() {
        let payload = SecretString::new("{}");
        let mut current = observed("default");
        current
            .labels
            .insert(MANAGED_BY_LABEL.into(), "someone-else".into());
        let s = desired_secret(
            "demo",
            "builder-quay-openshift",
            "builder",
            &payload,
            Some(&current),
        );
        let labels = s.metadata.labels.unwrap();
        assert_eq!(labels[MANAGED_BY_LABEL], MANAGED_BY);
        assert_eq!(labels["team"], "a");
        let annotations = s.metadata.annotations.unwrap();
        assert_eq!(annotations[SERVICE_ACCOUNT_ANNOTATION], "builder");
        assert_eq!(annotations["note"], "users");
        assert_eq!(s.type_.as_deref(), Some("kubernetes.io/dockerconfigjson"));
        assert_eq!(s.data.unwrap()[".dockerconfigjson"].0, b"{}");
        let fresh = desired_secret("demo", "x", "builder", &payload, None);
        assert_eq!(fresh.metadata.labels.unwrap().len(), 1);
        assert_eq!(fresh.metadata.namespace.as_deref(), Some("demo"));
    }

    #[test]
    fn link_ops_append_after_what_is_there_guarded_by_the_resource_version() {
        use serde_json::json;
        let list = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        let (mounts, pulls) = (
            list(&["builder-dockercfg-a"]),
            list(&["builder-dockercfg-a", "user-pull"]),
        );
        assert_eq!(
            link_ops("42", Some(&mounts), Some(&pulls), "ours"),
            vec![
                json!({"op": "test", "path": "/metadata/resourceVersion", "value": "42"}),
                json!({"op": "add", "path": "/secrets/-", "value": {"name": "ours"}}),
                json!({"op": "add", "path": "/imagePullSecrets/-", "value": {"name": "ours"}}),
            ]
        );
        // Absent or empty lists start with ours; a linked list is left alone.
        let linked = list(&["x", "ours"]);
        assert_eq!(
            link_ops("7", None, Some(&linked), "ours"),
            vec![
                json!({"op": "test", "path": "/metadata/resourceVersion", "value": "7"}),
                json!({"op": "add", "path": "/secrets", "value": [{"name": "ours"}]}),
            ]
        );
        assert_eq!(
            link_ops("7", Some(&[]), Some(&linked), "ours")[1],
            json!({"op": "add", "path": "/secrets", "value": [{"name": "ours"}]})
        );
        assert!(link_ops("7", Some(&linked), Some(&linked), "ours").is_empty());
    }
}
