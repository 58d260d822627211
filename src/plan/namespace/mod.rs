//! What one namespace needs, from what was observed in Quay and Kubernetes.

use super::names::{self, Marker, REPOSITORY_DESCRIPTION};
use crate::config::IntegrationConfig;
use crate::crd::ImageStreamDeletionPolicy;
use crate::model::types::{Prototype, Repository, Robot};
use crate::model::{Role, names as quay_names};
use crate::plan::rotation::SaPlan;
use crate::plan::teams::ObservedTeam;
use crate::secret::SecretString;
use std::collections::{BTreeMap, BTreeSet};

mod kube;
pub use kube::{
    ConfigDigest, KubeAction, KubePlan, ObservedSecret, ObservedServiceAccount,
    SERVICE_ACCOUNT_ANNOTATION, desired_secret, link_ops, plan_kube, secret_is_ours,
    secret_payload, secret_up_to_date,
};

/// A robot as observed.
#[derive(Debug, Clone, PartialEq)]
pub struct ObservedRobot {
    /// The part after `org+`.
    pub short: String,
    /// Our marker, if its description is one.
    pub marker: Option<Marker>,
    /// Its token, when listed with tokens.
    pub token: Option<SecretString>,
    /// Repositories it holds a permission on.
    pub repositories: BTreeSet<String>,
    /// When it was made (its token's age, for rotation).
    pub created: Option<jiff::Timestamp>,
}

/// A repository as observed.
#[derive(Debug, Clone, PartialEq)]
pub struct ObservedRepository {
    /// The repository's name in the organization (its ImageStream's name).
    pub name: String,
    /// Created by this operator (its description says so).
    pub managed: bool,
}

/// What Quay holds for the namespace's organization.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct QuayView {
    /// The organization exists.
    pub exists: bool,
    /// Every robot of the organization (the service accounts' and any a
    /// person made).
    pub robots: Vec<ObservedRobot>,
    /// Its default permissions: (id, role, delegate).
    pub prototypes: Vec<(String, Role, String)>,
    /// Every repository of the organization, ours (by description) or not.
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
                    created: r.created.as_deref().and_then(quay_date),
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

/// A date as Quay writes it (`Tue, 24 Nov 2026 15:52:46 -0000`).
pub fn quay_date(text: &str) -> Option<jiff::Timestamp> {
    jiff::fmt::rfc2822::parse(text).ok().map(|z| z.timestamp())
}

/// Which robot's token a service account's Secret holds: the robot whose
/// payload digests to what the Secret holds.
pub fn robot_in_secret(
    cfg: &IntegrationConfig,
    org: &str,
    sa: &str,
    robots: &[ObservedRobot],
    secret: Option<&ObservedSecret>,
) -> Option<String> {
    let held = secret?.dockerconfigjson.as_ref()?;
    crate::plan::rotation::slots(sa).into_iter().find(|slot| {
        robots.iter().any(|r| {
            &r.short == slot
                && r.token.as_ref().is_some_and(|t| {
                    &ConfigDigest::of(secret_payload(cfg, org, slot, t).as_bytes()) == held
                })
        })
    })
}

/// Who an existing organization belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ownership {
    /// It does not exist.
    Absent,
    /// This cluster's operator created it for this namespace.
    Ours,
    /// It exists but holds no robots, repositories or default permissions:
    /// taken only when it also has no team but `owners` and no member but
    /// the operator's own user ([`unclaimed`]), as after a crash between
    /// the organization's creation and its first robot.
    Empty,
    /// Someone else's.
    Foreign,
    /// Another cluster configured with the same clusterID manages it.
    OtherCluster {
        /// That cluster's UID.
        cluster_uid: String,
    },
    /// This operator made it for another namespace.
    OtherNamespace {
        /// That namespace.
        namespace: String,
    },
}

/// Decides ownership from the robots' markers: ours only when a robot
/// carries this cluster's marker for this very namespace.
pub fn ownership(
    view: &QuayView,
    cluster_id: &str,
    cluster_uid: &str,
    namespace: &str,
) -> Ownership {
    if !view.exists {
        return Ownership::Absent;
    }
    let markers: Vec<&Marker> = view
        .robots
        .iter()
        .filter_map(|r| r.marker.as_ref())
        .filter(|m| m.cluster_id == cluster_id)
        .collect();
    let this_cluster = || markers.iter().filter(|m| m.cluster_uid == cluster_uid);
    if this_cluster().any(|m| m.namespace == namespace) {
        return Ownership::Ours;
    }
    if let Some(other) = this_cluster().next() {
        return Ownership::OtherNamespace {
            namespace: other.namespace.clone(),
        };
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

/// Whether an organization without robots, repositories or default
/// permissions is one nobody else has claimed: its only team is Quay's
/// `owners`, holding no user but `operator` (the token's own user, which
/// created it). An organization with any other team or member is a
/// person's, even when empty.
pub fn unclaimed(teams: &BTreeMap<String, ObservedTeam>, operator: &str) -> bool {
    teams
        .iter()
        .all(|(name, team)| name == "owners" && team.members.iter().all(|m| m == operator))
}

/// What an organization of ours holds that this operator did not make:
/// robots without its marker, repositories without its description,
/// teams other than Quay's `owners` without its marker. An organization
/// holding any of these is never deleted.
pub fn foreign_contents(view: &QuayView, marker: &Marker) -> Vec<String> {
    let mine = |m: Option<&Marker>| m == Some(marker);
    let robots = view
        .robots
        .iter()
        .filter(|r| !mine(r.marker.as_ref()))
        .map(|r| format!("robot {}", r.short));
    let repositories = view
        .repositories
        .iter()
        .filter(|r| !r.managed)
        .map(|r| format!("repository {}", r.name));
    let teams = view
        .teams
        .teams
        .iter()
        .filter(|(name, t)| *name != "owners" && !mine(Marker::parse(&t.description).as_ref()))
        .map(|(name, _)| format!("team {name}"));
    robots.chain(repositories).chain(teams).collect()
}

/// The Quay actions in the order they are applied around team sync: with
/// team sync, the teams and their default permissions come before the
/// repositories this reconcile creates (or deletes, or grants on), which
/// then get the teams' roles from Quay itself. `(before teams, after teams)`.
pub fn split_for_teams(
    actions: &[QuayAction],
    team_sync: bool,
) -> (Vec<QuayAction>, Vec<QuayAction>) {
    if !team_sync {
        return (actions.to_vec(), Vec::new());
    }
    actions.iter().cloned().partition(|a| {
        !matches!(
            a,
            QuayAction::CreateRepository { .. }
                | QuayAction::GrantRepository { .. }
                | QuayAction::DeleteRepository { .. }
        )
    })
}

/// The repositories the robots are granted explicitly (those a push
/// created, which got no default permission): the teams are granted there
/// too.
pub fn explicitly_granted(actions: &[QuayAction]) -> BTreeSet<String> {
    actions
        .iter()
        .filter_map(|a| match a {
            QuayAction::GrantRepository { repo, .. } => Some(repo.clone()),
            _ => None,
        })
        .collect()
}

/// What becomes of a namespace's organization when the namespace is
/// deleted (under the Delete policy).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OnDeletion {
    /// Nothing to do: it does not exist.
    Gone,
    /// Delete it: ours, for this namespace, holding nothing foreign.
    Delete,
    /// Keep it, for this reason (a Warning Event says it).
    Keep(String),
}

/// Only an organization carrying this cluster's marker for this namespace,
/// holding nothing the operator did not make, is deleted.
pub fn on_deletion(view: &QuayView, marker: &Marker, org: &str) -> OnDeletion {
    match ownership(
        view,
        &marker.cluster_id,
        &marker.cluster_uid,
        &marker.namespace,
    ) {
        Ownership::Absent => OnDeletion::Gone,
        Ownership::Ours => {
            let foreign = foreign_contents(view, marker);
            if foreign.is_empty() {
                OnDeletion::Delete
            } else {
                OnDeletion::Keep(format!(
                    "Quay organization {org} holds what this operator did not make ({}); it is not deleted",
                    foreign.join(", ")
                ))
            }
        }
        _ => OnDeletion::Keep(format!(
            "Quay organization {org} does not carry this operator's marker for namespace {}; it is not deleted",
            marker.namespace
        )),
    }
}

/// The organization a namespace was bridged to: the one recorded on it
/// when that is a valid organization name, else the one its integration
/// names today. Deletion is decided by the organization's own marker, so
/// a recorded name is never trusted alone.
pub fn recorded_organization(recorded: Option<&str>, computed: Option<String>) -> Option<String> {
    recorded
        .filter(|o| quay_names::validate(quay_names::NameKind::Organization, o).is_ok())
        .map(str::to_owned)
        .or(computed)
}

/// A change in Quay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QuayAction {
    /// Create the organization.
    CreateOrganization,
    /// Create a robot with our marker.
    CreateRobot {
        /// The part after `org+` (a service account's robot name).
        short: String,
        /// The marker that makes it, and the organization, this cluster's.
        description: String,
    },
    /// Delete a robot a rotation replaced (its grace period over); Quay
    /// deletes its permissions with it.
    DeleteRobot {
        /// The replaced robot, after `org+`.
        short: String,
    },
    /// Create a default permission for a robot.
    CreatePrototype {
        /// Robot short name.
        short: String,
        /// The role it gives the robot on every new repository.
        role: Role,
    },
    /// Delete a default permission (wrong role or duplicate).
    DeletePrototype {
        /// The prototype's id, as Quay's list gives it.
        id: String,
    },
    /// Create a repository for an ImageStream.
    CreateRepository {
        /// The ImageStream's name, which the repository takes.
        name: String,
    },
    /// Delete a repository this operator created whose ImageStream is gone.
    DeleteRepository {
        /// The repository whose ImageStream was deleted.
        name: String,
    },
    /// Grant a robot its role on a repository explicitly.
    GrantRepository {
        /// A repository that existed before the robot (no default
        /// permission applied to it).
        repo: String,
        /// Robot short name.
        short: String,
        /// The robot's role from the integration's `serviceAccounts`.
        role: Role,
    },
}

/// The Quay changes a namespace needs (the organization is ours or absent):
/// the robots each service account keeps (`robots`, from
/// [`crate::plan::rotation::plan_sa`]) made, with their default
/// permission and every repository granted; replaced robots deleted;
/// repositories for the ImageStreams.
pub fn plan_quay(
    cfg: &IntegrationConfig,
    org: &str,
    marker: &Marker,
    view: &QuayView,
    image_streams: &BTreeSet<String>,
    robots: &[SaPlan],
) -> Vec<QuayAction> {
    let mut actions = Vec::new();
    if !view.exists {
        actions.push(QuayAction::CreateOrganization);
    }
    let kept = kept_robots(cfg, robots);
    let new_robots = plan_robots(org, marker, view, &kept, &mut actions);
    for p in robots {
        for short in &p.delete {
            if view.robots.iter().any(|r| &r.short == short) {
                actions.push(QuayAction::DeleteRobot {
                    short: short.clone(),
                });
            }
        }
    }
    plan_repositories(cfg, view, image_streams, &kept, &new_robots, &mut actions);
    actions
}

/// Each robot kept, with its service account's role.
fn kept_robots<'p>(cfg: &IntegrationConfig, robots: &'p [SaPlan]) -> Vec<(&'p String, Role)> {
    robots
        .iter()
        .filter_map(|p| {
            cfg.service_accounts
                .iter()
                .find(|(s, _)| s == &p.sa)
                .map(|(_, role)| (p, *role))
        })
        .flat_map(|(p, role)| p.keep.iter().map(move |short| (short, role)))
        .collect()
}

/// Robots to create and their default permissions (one of the right role
/// each; wrong or duplicate ones deleted). Returns the robots created.
fn plan_robots(
    org: &str,
    marker: &Marker,
    view: &QuayView,
    kept: &[(&String, Role)],
    actions: &mut Vec<QuayAction>,
) -> BTreeSet<String> {
    let mut new_robots = BTreeSet::new();
    for (short, role) in kept {
        let delegate = names::robot_account(org, short);
        if !view.robots.iter().any(|r| &r.short == *short) {
            actions.push(QuayAction::CreateRobot {
                short: (*short).clone(),
                description: marker.description(),
            });
            new_robots.insert((*short).clone());
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
                short: (*short).clone(),
                role: *role,
            });
        }
    }
    new_robots
}

/// Repositories for the ImageStreams (Quay applies the default permissions
/// to those the token's user creates), explicit grants where a kept robot
/// lacks one (or was just created), and deletes under the Delete policy.
fn plan_repositories(
    cfg: &IntegrationConfig,
    view: &QuayView,
    image_streams: &BTreeSet<String>,
    kept: &[(&String, Role)],
    new_robots: &BTreeSet<String>,
    actions: &mut Vec<QuayAction>,
) {
    let existing: BTreeSet<&str> = view.repositories.iter().map(|r| r.name.as_str()).collect();
    let wanted = image_streams
        .iter()
        .filter(|n| quay_names::is_valid_repository_name(n));
    for repo in wanted {
        if !existing.contains(repo.as_str()) {
            actions.push(QuayAction::CreateRepository { name: repo.clone() });
            continue;
        }
        for (short, role) in kept {
            let has = view
                .robots
                .iter()
                .any(|r| &r.short == *short && r.repositories.contains(repo.as_str()));
            if !has || new_robots.contains(*short) {
                actions.push(QuayAction::GrantRepository {
                    repo: repo.clone(),
                    short: (*short).clone(),
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
}

/// What a reconcile created, for its `Bridged` Event; `None` when it
/// created nothing (a resync that found everything in place is silent).
pub fn bridged_note(org: &str, quay: &[QuayAction], secrets: &[String]) -> Option<String> {
    let count = |f: fn(&QuayAction) -> bool| quay.iter().filter(|a| f(a)).count();
    let mut parts = Vec::new();
    if count(|a| matches!(a, QuayAction::CreateOrganization)) > 0 {
        parts.push(format!("created Quay organization {org}"));
    }
    match count(|a| matches!(a, QuayAction::CreateRobot { .. })) {
        0 => {}
        n => parts.push(super::count_of(n, "robot account", "robot accounts")),
    }
    match count(|a| matches!(a, QuayAction::CreateRepository { .. })) {
        0 => {}
        n => parts.push(super::count_of(n, "repository", "repositories")),
    }
    if !secrets.is_empty() {
        parts.push(format!("Secrets {}", secrets.join(", ")));
    }
    (!parts.is_empty()).then(|| parts.join("; "))
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
            created: None,
        }
    }

    /// `plan_quay` with each service account's robots as `plan_sa`
    /// decides them without rotation.
    fn plan(
        cfg: &IntegrationConfig,
        org: &str,
        marker: &Marker,
        view: &QuayView,
        streams: &BTreeSet<String>,
    ) -> Vec<QuayAction> {
        let robots: Vec<SaPlan> = cfg
            .service_accounts
            .iter()
            .map(|(sa, _)| {
                crate::plan::rotation::plan_sa(
                    &crate::plan::rotation::SaRobots {
                        sa: sa.clone(),
                        robots: view
                            .robots
                            .iter()
                            .map(|r| (r.short.clone(), r.created))
                            .collect(),
                        in_secret: None,
                    },
                    &crate::plan::rotation::RotationInput {
                        now: jiff::Timestamp::now(),
                        policy: None,
                        switched_at: None,
                        permit: false,
                    },
                )
            })
            .collect();
        plan_quay(cfg, org, marker, view, streams, &robots)
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
        let actions = plan(
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
            plan(
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
        let actions = plan(
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
        let actions = plan(
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
        let actions = plan(&cfg(), "openshift_demo", &marker(), &view, &streams(&[]));
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
            plan(&cfg(), "openshift_demo", &marker(), &view, &streams(&[])).is_empty(),
            "Retain is the default"
        );
        let mut c = cfg();
        c.image_stream_deletion = ImageStreamDeletionPolicy::Delete;
        assert_eq!(
            plan(&c, "openshift_demo", &marker(), &view, &streams(&[])),
            vec![QuayAction::DeleteRepository {
                name: "gone".into()
            }]
        );
    }

    #[test]
    fn invalid_repository_names_are_skipped() {
        let actions = plan(
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
            ownership(&QuayView::default(), "openshift", "uid-1", "demo"),
            Ownership::Absent
        );
        assert_eq!(
            ownership(&converged(&[]), "openshift", "uid-1", "demo"),
            Ownership::Ours
        );
        assert_eq!(
            ownership(&converged(&[]), "openshift", "uid-2", "demo"),
            Ownership::OtherCluster {
                cluster_uid: "uid-1".into()
            }
        );
        let empty = QuayView {
            exists: true,
            ..Default::default()
        };
        assert_eq!(
            ownership(&empty, "openshift", "uid-1", "demo"),
            Ownership::Empty
        );
        let mut foreign = converged(&[]);
        for r in &mut foreign.robots {
            r.marker = None;
        }
        assert_eq!(
            ownership(&foreign, "openshift", "uid-1", "demo"),
            Ownership::Foreign
        );
        // A marker of another clusterID (same Quay, other cluster) is not ours either.
        assert_eq!(
            ownership(&converged(&[]), "prod", "uid-1", "demo"),
            Ownership::Foreign
        );
        // Ours, but made for another namespace: not this namespace's.
        assert_eq!(
            ownership(&converged(&[]), "openshift", "uid-1", "other"),
            Ownership::OtherNamespace {
                namespace: "demo".into()
            }
        );
    }

    fn team(description: &str, members: &[&str]) -> ObservedTeam {
        ObservedTeam {
            description: description.into(),
            role: crate::model::TeamRole::Member,
            members: members.iter().map(|m| (*m).to_owned()).collect(),
        }
    }

    #[test]
    fn teams_come_before_the_repositories_they_get_roles_on() {
        let actions = vec![
            QuayAction::CreateOrganization,
            QuayAction::CreateRepository { name: "app".into() },
            QuayAction::CreateRobot {
                short: "builder".into(),
                description: "m".into(),
            },
            QuayAction::GrantRepository {
                repo: "pushed".into(),
                short: "builder".into(),
                role: Role::Write,
            },
            QuayAction::DeleteRepository {
                name: "gone".into(),
            },
        ];
        let (first, last) = split_for_teams(&actions, false);
        assert_eq!(
            (first.len(), last.len()),
            (5, 0),
            "without team sync, all at once"
        );
        let (first, last) = split_for_teams(&actions, true);
        assert_eq!(first, [actions[0].clone(), actions[2].clone()]);
        assert_eq!(
            last,
            [actions[1].clone(), actions[3].clone(), actions[4].clone()]
        );
        assert_eq!(explicitly_granted(&last), streams(&["pushed"]));
    }

    #[test]
    fn only_our_organization_holding_nothing_foreign_is_deleted() {
        let org = "openshift_demo";
        assert_eq!(
            on_deletion(&QuayView::default(), &marker(), org),
            OnDeletion::Gone
        );
        assert_eq!(
            on_deletion(&converged(&["app"]), &marker(), org),
            OnDeletion::Delete
        );
        let empty = QuayView {
            exists: true,
            ..Default::default()
        };
        assert!(matches!(
            on_deletion(&empty, &marker(), org),
            OnDeletion::Keep(_)
        ));
        let mut foreign = converged(&[]);
        for r in &mut foreign.robots {
            r.marker = None;
        }
        assert!(matches!(
            on_deletion(&foreign, &marker(), org),
            OnDeletion::Keep(_)
        ));
        let mut elsewhere = marker();
        elsewhere.namespace = "other".into();
        assert!(matches!(
            on_deletion(&converged(&[]), &elsewhere, org),
            OnDeletion::Keep(_)
        ));
        let mut with_team = converged(&[]);
        with_team
            .teams
            .teams
            .insert("designers".into(), team("", &["bob"]));
        let OnDeletion::Keep(why) = on_deletion(&with_team, &marker(), org) else {
            panic!("kept")
        };
        assert!(why.contains("team designers"), "{why}");
    }

    #[test]
    fn the_recorded_organization_wins_when_it_is_a_valid_name() {
        let computed = Some("p_demo".to_owned());
        assert_eq!(
            recorded_organization(Some("openshift_demo"), computed.clone()).as_deref(),
            Some("openshift_demo")
        );
        assert_eq!(
            recorded_organization(Some("Not Valid!"), computed.clone()).as_deref(),
            Some("p_demo")
        );
        assert_eq!(
            recorded_organization(None, computed).as_deref(),
            Some("p_demo")
        );
        assert_eq!(recorded_organization(None, None), None);
    }

    #[test]
    fn an_empty_organization_is_unclaimed_only_with_nothing_but_our_owner() {
        let owners = |m: &[&str]| BTreeMap::from([("owners".to_owned(), team("", m))]);
        assert!(unclaimed(&BTreeMap::new(), "op"));
        assert!(unclaimed(&owners(&["op"]), "op"));
        assert!(unclaimed(&owners(&[]), "op"));
        assert!(!unclaimed(&owners(&["admin"]), "op"));
        assert!(!unclaimed(&owners(&["op", "admin"]), "op"));
        let mut more = owners(&["op"]);
        more.insert("designers".into(), team("", &[]));
        assert!(!unclaimed(&more, "op"), "a person's team makes it theirs");
    }

    #[test]
    fn foreign_contents_name_everything_the_operator_did_not_make() {
        let mut view = converged(&["app"]);
        assert!(foreign_contents(&view, &marker()).is_empty());
        view.teams.teams.insert("owners".into(), team("", &["op"]));
        view.teams
            .teams
            .insert("editors".into(), team(&marker().description(), &["alice"]));
        assert!(
            foreign_contents(&view, &marker()).is_empty(),
            "owners and our teams"
        );
        view.robots.push(robot("ci", None, &[]));
        view.repositories.push(ObservedRepository {
            name: "handmade".into(),
            managed: false,
        });
        view.teams
            .teams
            .insert("designers".into(), team("ours", &[]));
        let mut other = marker();
        other.namespace = "elsewhere".into();
        view.robots.push(robot("stray", Some(other), &[]));
        assert_eq!(
            foreign_contents(&view, &marker()),
            [
                "robot ci",
                "robot stray",
                "repository handmade",
                "team designers"
            ]
        );
    }

    #[test]
    fn the_bridged_note_names_what_was_created_with_its_count() {
        let robot = |short: &str| QuayAction::CreateRobot {
            short: short.into(),
            description: "d".into(),
        };
        let repo = |name: &str| QuayAction::CreateRepository { name: name.into() };
        let secrets = vec!["builder-quay-openshift".to_owned()];
        assert_eq!(
            bridged_note(
                "openshift_demo",
                &[
                    QuayAction::CreateOrganization,
                    robot("builder"),
                    robot("default")
                ],
                &secrets
            )
            .as_deref(),
            Some(
                "created Quay organization openshift_demo; 2 robot accounts; Secrets builder-quay-openshift"
            )
        );
        assert_eq!(
            bridged_note("o", &[robot("builder"), repo("a")], &[]).as_deref(),
            Some("1 robot account; 1 repository")
        );
        assert_eq!(
            bridged_note("o", &[repo("a"), repo("b")], &[]).as_deref(),
            Some("2 repositories")
        );
        // Grants, deletions and prototypes alone are not news.
        assert_eq!(
            bridged_note(
                "o",
                &[QuayAction::DeleteRepository { name: "a".into() }],
                &[]
            ),
            None
        );
        assert_eq!(bridged_note("o", &[], &[]), None);
    }
}
