//! Team sync: who should be in which team of a namespace's organization
//! (from its RoleBindings and the Groups they name), and the Quay changes
//! that get the teams there.

use crate::config::{TeamSpec, TeamSyncConfig};
use crate::crd::RoleKind;
use crate::model::names::check_namespace_name;
use crate::model::{Role, TeamRole};
use std::collections::{BTreeMap, BTreeSet};

/// The kinds of RoleBinding subject team sync reads (service accounts
/// never join a team: they have robots).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubjectKind {
    /// A user, by name.
    User,
    /// An OpenShift Group, expanded to its users.
    Group,
}

impl SubjectKind {
    /// The kind of a RoleBinding subject's `kind`, if team sync reads it.
    pub fn parse(kind: &str) -> Option<Self> {
        match kind {
            "User" => Some(Self::User),
            "Group" => Some(Self::Group),
            _ => None,
        }
    }
}

/// The kind of a RoleBinding's `roleRef.kind` (the API allows no other).
pub fn role_kind(kind: &str) -> Option<RoleKind> {
    match kind {
        "ClusterRole" => Some(RoleKind::ClusterRole),
        "Role" => Some(RoleKind::Role),
        _ => None,
    }
}

/// A RoleBinding subject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subject {
    /// User or Group.
    pub kind: SubjectKind,
    /// Its name.
    pub name: Box<str>,
}

/// What the plan needs of a RoleBinding. Kept for every binding of a
/// large cluster, so sized to it: the role's name is shared between the
/// bindings naming it, the subjects are a slice of exactly their number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObservedBinding {
    /// `ClusterRole` or `Role`.
    pub role_kind: RoleKind,
    /// The role's name.
    pub role: std::sync::Arc<str>,
    /// Who is bound.
    pub subjects: Box<[Subject]>,
}

/// Who should be in each managed team, and the bound users Quay cannot
/// have (names Quay does not accept).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Desired {
    /// Team → users.
    pub members: BTreeMap<String, BTreeSet<String>>,
    /// Users bound whose names Quay cannot hold.
    pub unusable: BTreeSet<String>,
}

/// The desired members of every managed team: `User` subjects by name,
/// `Group` subjects expanded through `groups` (a group not found adds
/// nobody), service accounts skipped (they have robots), and names that
/// are not users (`system:…`) ignored.
pub fn desired_members(
    cfg: &TeamSyncConfig,
    bindings: &[ObservedBinding],
    groups: &BTreeMap<String, Vec<String>>,
) -> Desired {
    let mut out = Desired::default();
    for team in cfg.teams.keys() {
        out.members.insert(team.clone(), BTreeSet::new());
    }
    for b in bindings {
        for m in &cfg.mappings {
            if *b.role != *m.role || b.role_kind != m.role_kind {
                continue;
            }
            let users = b.subjects.iter().flat_map(|s| match s.kind {
                SubjectKind::User => vec![s.name.to_string()],
                SubjectKind::Group => groups.get(&*s.name).cloned().unwrap_or_default(),
            });
            for user in users {
                if user.contains(':') {
                    continue;
                }
                // Quay's user names are lower case: `Alice` is `alice`.
                let quay_name = user.to_lowercase();
                if check_namespace_name(&quay_name).is_err() {
                    out.unusable.insert(user);
                    continue;
                }
                out.members
                    .entry(m.team.clone())
                    .or_default()
                    .insert(quay_name);
            }
        }
    }
    out
}

/// Whether a cached view misses a managed team: creating it from that
/// view could overwrite a same-named team a person made since, so Quay is
/// read again first.
pub fn needs_fresh_read(cfg: &TeamSyncConfig, view: &TeamView) -> bool {
    cfg.teams.keys().any(|t| !view.teams.contains_key(t))
}

/// A team as observed in Quay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObservedTeam {
    /// Its description (our marker on managed teams).
    pub description: String,
    /// Its role.
    pub role: TeamRole,
    /// Its users.
    pub members: BTreeSet<String>,
}

/// The organization's teams as observed, and what earlier reconciles
/// learnt that Quay does not show.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TeamView {
    /// Teams by name.
    pub teams: BTreeMap<String, ObservedTeam>,
    /// Default permissions delegated to teams: (id, role, team).
    pub prototypes: Vec<(String, Role, String)>,
    /// Users Quay answered "Unknown user" for (retried when Quay is read
    /// again, at the next resync).
    pub unknown: BTreeSet<String>,
    /// Users Quay invited instead of adding: (team, user).
    pub invited: BTreeSet<(String, String)>,
    /// Unknown users already reported by an Event.
    pub reported: BTreeSet<String>,
}

/// A change in Quay for team sync.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TeamAction {
    /// Create the team, or set its role, with our marker.
    PutTeam {
        /// A managed team's name (`admins`, `editors`, … per the mapping).
        team: String,
        /// Role in the organization.
        role: TeamRole,
        /// Our marker.
        description: String,
    },
    /// A default permission for the team.
    CreatePrototype {
        /// The team the default permission names as its delegate.
        team: String,
        /// Role on new repositories.
        role: Role,
    },
    /// Delete a team default permission (wrong role or duplicate).
    DeletePrototype {
        /// The prototype's id, as Quay's list gives it.
        id: String,
    },
    /// Grant the team its role on an existing repository.
    GrantRepository {
        /// A repository of the organization, by its short name.
        repo: String,
        /// The team granted there.
        team: String,
        /// The team's role on the repository (the mapping's repositoryRole).
        role: Role,
    },
    /// Add a user.
    AddMember {
        /// The team the user joins.
        team: String,
        /// The Quay user name (lower-cased from the RoleBinding subject).
        user: String,
    },
    /// Remove a user.
    RemoveMember {
        /// The team the user leaves.
        team: String,
        /// A member no RoleBinding grants the team's role any more.
        user: String,
    },
}

/// The plan, and the teams left alone.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TeamPlan {
    /// Changes, in order.
    pub actions: Vec<TeamAction>,
    /// Teams of a managed name that someone else made (no marker).
    pub conflicts: Vec<String>,
}

/// What team sync needs in Quay. `repositories` are the organization's
/// repositories; `granted_robots` those the Quay plan grants the robots
/// explicitly (repositories created by a push, which got no default
/// permission): the teams are granted there too.
pub fn plan_teams(
    cfg: &TeamSyncConfig,
    marker: &str,
    view: &TeamView,
    desired: &Desired,
    repositories: &[String],
    granted_robots: &BTreeSet<String>,
) -> TeamPlan {
    let mut plan = TeamPlan::default();
    for (team, spec) in &cfg.teams {
        let observed = view.teams.get(team);
        if let Some(t) = observed
            && t.description != marker
        {
            plan.conflicts.push(team.clone());
            continue;
        }
        if observed.is_none_or(|t| t.role != spec.team_role) {
            plan.actions.push(TeamAction::PutTeam {
                team: team.clone(),
                role: spec.team_role,
                description: marker.to_owned(),
            });
        }
        plan_permissions(
            &mut plan,
            team,
            spec,
            observed.is_none(),
            view,
            repositories,
            granted_robots,
        );
        let current = observed.map(|t| t.members.clone()).unwrap_or_default();
        let wanted = desired.members.get(team).cloned().unwrap_or_default();
        for user in wanted.difference(&current) {
            let invited = view.invited.contains(&(team.clone(), user.clone()));
            if !view.unknown.contains(user) && !invited {
                plan.actions.push(TeamAction::AddMember {
                    team: team.clone(),
                    user: user.clone(),
                });
            }
        }
        for user in current.difference(&wanted) {
            plan.actions.push(TeamAction::RemoveMember {
                team: team.clone(),
                user: user.clone(),
            });
        }
    }
    plan
}

fn plan_permissions(
    plan: &mut TeamPlan,
    team: &str,
    spec: &TeamSpec,
    new_team: bool,
    view: &TeamView,
    repositories: &[String],
    granted_robots: &BTreeSet<String>,
) {
    let Some(role) = spec.repository_role else {
        return;
    };
    let mut protos: Vec<&(String, Role, String)> = view
        .prototypes
        .iter()
        .filter(|(_, _, t)| t == team)
        .collect();
    protos.sort();
    let keep = protos.iter().position(|(_, r, _)| *r == role);
    for (i, (id, _, _)) in protos.iter().enumerate() {
        if Some(i) != keep {
            plan.actions
                .push(TeamAction::DeletePrototype { id: id.clone() });
        }
    }
    // A new team, or one whose default permission was missing or wrong,
    // is granted on every existing repository; otherwise only where the
    // robots are granted (repositories no default permission reached).
    let everywhere = new_team || keep.is_none();
    if keep.is_none() {
        plan.actions.push(TeamAction::CreatePrototype {
            team: team.to_owned(),
            role,
        });
    }
    for repo in repositories {
        if everywhere || granted_robots.contains(repo) {
            plan.actions.push(TeamAction::GrantRepository {
                repo: repo.clone(),
                team: team.to_owned(),
                role,
            });
        }
    }
}

/// Team memberships in place, for the status.
pub fn member_count(view: &TeamView, cfg: &TeamSyncConfig) -> usize {
    cfg.teams
        .keys()
        .filter_map(|t| view.teams.get(t))
        .map(|t| t.members.len())
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> TeamSyncConfig {
        let spec = crate::crd::TeamSync {
            enabled: true,
            roles: None,
        };
        crate::config::team_sync(Some(&spec)).unwrap().unwrap()
    }

    fn binding(kind: &str, role: &str, subjects: &[(&str, &str)]) -> ObservedBinding {
        // As the cache projects a binding: subjects of other kinds dropped.
        ObservedBinding {
            role_kind: role_kind(kind).unwrap_or_else(|| panic!("{kind}")),
            role: role.into(),
            subjects: subjects
                .iter()
                .filter_map(|(k, n)| {
                    Some(Subject {
                        kind: SubjectKind::parse(k)?,
                        name: (*n).into(),
                    })
                })
                .collect(),
        }
    }

    fn set(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|s| (*s).to_owned()).collect()
    }

    const MARK: &str =
        "managed by quay-bridge-operator; cluster=openshift; cluster-uid=u; namespace=demo";

    fn converged(editors: &[&str]) -> TeamView {
        let team = |role, members: &[&str]| ObservedTeam {
            description: MARK.into(),
            role,
            members: set(members),
        };
        TeamView {
            teams: [
                ("admins".to_owned(), team(TeamRole::Admin, &[])),
                ("editors".to_owned(), team(TeamRole::Member, editors)),
                ("viewers".to_owned(), team(TeamRole::Member, &[])),
            ]
            .into(),
            prototypes: vec![
                ("p1".into(), Role::Write, "editors".into()),
                ("p2".into(), Role::Read, "viewers".into()),
            ],
            ..Default::default()
        }
    }

    #[test]
    fn bindings_map_to_teams_users_groups_and_nothing_else() {
        let groups: BTreeMap<String, Vec<String>> = [(
            "devs".to_owned(),
            vec!["carol".to_owned(), "dave".to_owned()],
        )]
        .into();
        let bindings = vec![
            binding(
                "ClusterRole",
                "edit",
                &[("User", "alice"), ("Group", "devs")],
            ),
            binding(
                "ClusterRole",
                "view",
                &[("ServiceAccount", "builder"), ("Group", "nosuch")],
            ),
            binding(
                "ClusterRole",
                "admin",
                &[("User", "system:admin"), ("User", "Bob@Example.com")],
            ),
            // A namespace Role named like a ClusterRole is another role.
            binding("Role", "edit", &[("User", "mallory")]),
            binding("ClusterRole", "system:image-puller", &[("User", "eve")]),
        ];
        let d = desired_members(&cfg(), &bindings, &groups);
        assert_eq!(d.members["editors"], set(&["alice", "carol", "dave"]));
        assert!(d.members["viewers"].is_empty() && d.members["admins"].is_empty());
        assert_eq!(d.unusable, set(&["Bob@Example.com"]));
    }

    /// Quay's user names are lower case: a name differing only in case is
    /// Quay's lower-case user; one Quay cannot hold even then is unusable.
    #[test]
    fn user_names_map_to_quays_lower_case_names() {
        let bindings = vec![binding(
            "ClusterRole",
            "edit",
            &[
                ("User", "Alice"),
                ("User", "BOB"),
                ("User", "a"),
                ("User", "x y"),
            ],
        )];
        let d = desired_members(&cfg(), &bindings, &BTreeMap::new());
        assert_eq!(d.members["editors"], set(&["alice", "bob"]));
        assert_eq!(d.unusable, set(&["a", "x y"]));
    }

    #[test]
    fn a_view_missing_a_managed_team_is_read_again() {
        assert!(!needs_fresh_read(&cfg(), &converged(&[])));
        let mut partial = converged(&[]);
        partial.teams.remove("viewers");
        assert!(needs_fresh_read(&cfg(), &partial));
        // A person's team of that name is in the view: no read needed.
        partial.teams.insert(
            "viewers".into(),
            ObservedTeam {
                description: "our viewers".into(),
                role: TeamRole::Member,
                members: BTreeSet::new(),
            },
        );
        assert!(!needs_fresh_read(&cfg(), &partial));
    }

    #[test]
    fn a_new_organization_gets_teams_permissions_and_members() {
        let desired = Desired {
            members: [
                ("admins".to_owned(), set(&[])),
                ("editors".to_owned(), set(&["alice"])),
                ("viewers".to_owned(), set(&[])),
            ]
            .into(),
            ..Default::default()
        };
        let plan = plan_teams(
            &cfg(),
            MARK,
            &TeamView::default(),
            &desired,
            &["app".into()],
            &BTreeSet::new(),
        );
        assert!(plan.conflicts.is_empty());
        let puts = plan
            .actions
            .iter()
            .filter(|a| matches!(a, TeamAction::PutTeam { .. }))
            .count();
        assert_eq!(puts, 3);
        assert!(plan.actions.contains(&TeamAction::CreatePrototype {
            team: "editors".into(),
            role: Role::Write
        }));
        assert!(plan.actions.contains(&TeamAction::GrantRepository {
            repo: "app".into(),
            team: "viewers".into(),
            role: Role::Read
        }));
        assert!(
            !plan
                .actions
                .iter()
                .any(|a| matches!(a, TeamAction::CreatePrototype { team, .. } if team == "admins")),
            "admins can do everything already"
        );
        assert!(plan.actions.contains(&TeamAction::AddMember {
            team: "editors".into(),
            user: "alice".into()
        }));
        // The team is created before its member is added.
        let put = plan
            .actions
            .iter()
            .position(|a| matches!(a, TeamAction::PutTeam { team, .. } if team == "editors"));
        let add = plan
            .actions
            .iter()
            .position(|a| matches!(a, TeamAction::AddMember { .. }));
        assert!(put < add);
    }

    #[test]
    fn a_converged_organization_needs_nothing_and_membership_changes_are_exact() {
        let desired = desired_members(
            &cfg(),
            &[binding("ClusterRole", "edit", &[("User", "alice")])],
            &BTreeMap::new(),
        );
        let view = converged(&["alice"]);
        assert!(
            plan_teams(
                &cfg(),
                MARK,
                &view,
                &desired,
                &["app".into()],
                &BTreeSet::new()
            )
            .actions
            .is_empty()
        );
        // Unbound: removed; a pushed repository gets the team grant like the robots.
        let none = desired_members(&cfg(), &[], &BTreeMap::new());
        let plan = plan_teams(&cfg(), MARK, &view, &none, &["app".into()], &set(&["app"]));
        assert_eq!(
            plan.actions,
            vec![
                TeamAction::GrantRepository {
                    repo: "app".into(),
                    team: "editors".into(),
                    role: Role::Write
                },
                TeamAction::RemoveMember {
                    team: "editors".into(),
                    user: "alice".into()
                },
                TeamAction::GrantRepository {
                    repo: "app".into(),
                    team: "viewers".into(),
                    role: Role::Read
                },
            ]
        );
    }

    #[test]
    fn unknown_and_invited_users_are_not_asked_again_and_foreign_teams_are_left_alone() {
        let desired = desired_members(
            &cfg(),
            &[binding(
                "ClusterRole",
                "edit",
                &[("User", "ghost"), ("User", "invitee")],
            )],
            &BTreeMap::new(),
        );
        let mut view = converged(&[]);
        view.unknown.insert("ghost".into());
        view.invited.insert(("editors".into(), "invitee".into()));
        assert!(
            plan_teams(&cfg(), MARK, &view, &desired, &[], &BTreeSet::new())
                .actions
                .is_empty()
        );
        // A user-made team named like a managed one: reported, untouched.
        let mut view = converged(&["hand-added"]);
        view.teams.get_mut("editors").unwrap().description = "our developers".into();
        let plan = plan_teams(
            &cfg(),
            MARK,
            &view,
            &desired_members(&cfg(), &[], &BTreeMap::new()),
            &[],
            &BTreeSet::new(),
        );
        assert_eq!(plan.conflicts, vec!["editors".to_owned()]);
        assert!(plan.actions.is_empty());
    }

    #[test]
    fn drifted_roles_and_default_permissions_are_repaired() {
        let mut view = converged(&[]);
        view.teams.get_mut("viewers").unwrap().role = TeamRole::Admin;
        view.prototypes[0].1 = Role::Read;
        view.prototypes
            .push(("p9".into(), Role::Read, "viewers".into()));
        let plan = plan_teams(
            &cfg(),
            MARK,
            &view,
            &desired_members(&cfg(), &[], &BTreeMap::new()),
            &["app".into()],
            &BTreeSet::new(),
        );
        assert_eq!(
            plan.actions,
            vec![
                TeamAction::DeletePrototype { id: "p1".into() },
                TeamAction::CreatePrototype {
                    team: "editors".into(),
                    role: Role::Write
                },
                TeamAction::GrantRepository {
                    repo: "app".into(),
                    team: "editors".into(),
                    role: Role::Write
                },
                TeamAction::PutTeam {
                    team: "viewers".into(),
                    role: TeamRole::Member,
                    description: MARK.into()
                },
                TeamAction::DeletePrototype { id: "p9".into() },
            ]
        );
    }
}
