//! What one namespace needs, from what was observed in Quay and Kubernetes.

use super::names::{self, Marker, REPOSITORY_DESCRIPTION};
use crate::config::IntegrationConfig;
use crate::crd::ImageStreamDeletionPolicy;
use crate::quay::types::{Prototype, Repository, Robot};
use crate::quay::{Role, names as quay_names};
use crate::secret::SecretString;
use std::collections::BTreeSet;

mod kube;
pub use kube::{
    KubeAction, KubePlan, ObservedSecret, ObservedServiceAccount, SERVICE_ACCOUNT_ANNOTATION,
    desired_secret, link_ops, plan_kube, secret_payload, secret_up_to_date,
};

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
    /// Its teams and team default permissions (team sync).
    pub teams: crate::plan::teams::TeamView,
}

impl QuayView {
    /// Builds the view from the client's answers.
    pub fn from_answers(
        robots: Vec<Robot>,
        prototypes: Vec<Prototype>,
        repositories: Vec<Repository>,
    ) -> Self {
        let (team_prototypes, prototypes): (Vec<Prototype>, Vec<Prototype>) = prototypes
            .into_iter()
            .partition(|p| p.delegate.kind == "team");
        Self {
            teams: crate::plan::teams::TeamView {
                prototypes: team_prototypes
                    .into_iter()
                    .map(|p| (p.id, p.role, p.delegate.name))
                    .collect(),
                ..Default::default()
            },
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
            teams: Default::default(),
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
}
