//! Team sync for one namespace: read the organization's teams (two GETs,
//! only when Quay is read anyway), plan from the RoleBinding and Group
//! caches, apply, report.

use super::super::context::{NamespaceContext, TeamMemory};
use super::super::error::Error;
use super::Scope;
use crate::config::TeamSyncConfig;
use crate::crd::TeamSyncStatus;
use crate::plan::namespace::QuayView;
use crate::plan::teams::{
    Desired, ObservedBinding, ObservedTeam, TeamAction, desired_members, member_count, plan_teams,
};
use crate::quay::{QuayClient, QuayError};
use kube::ResourceExt;
use std::collections::{BTreeMap, BTreeSet};

/// The organization's teams with their users: the organization GET (teams,
/// roles, descriptions) and its member list (each user's teams).
pub(super) async fn observe(
    client: &QuayClient,
    org: &str,
) -> Result<BTreeMap<String, ObservedTeam>, QuayError> {
    let (organization, members) = tokio::join!(
        client.get_organization(org),
        client.list_organization_members(org)
    );
    let mut teams = teams_of(organization?);
    for m in members? {
        for t in m.teams {
            if let Some(team) = teams.get_mut(&t.name) {
                team.members.insert(m.name.clone());
            }
        }
    }
    Ok(teams)
}

/// The teams of an organization as its GET shows them (names,
/// descriptions, roles; members come from the member list).
pub(super) fn teams_of(
    organization: Option<crate::quay::types::Organization>,
) -> BTreeMap<String, ObservedTeam> {
    organization
        .map(|o| o.teams)
        .unwrap_or_default()
        .into_values()
        .map(|t| {
            (
                t.name,
                ObservedTeam {
                    description: t.description,
                    role: t.role,
                    members: BTreeSet::new(),
                },
            )
        })
        .collect()
}

/// What Quay does not show and earlier reconciles learnt: invitations
/// still pending and the unknown users already reported. Unknown users
/// themselves are asked about again now that Quay is read again.
pub(super) fn carry_over(ctx: &NamespaceContext, ns: &str, view: &mut QuayView) {
    if let Some(TeamMemory {
        invited, reported, ..
    }) = ctx.views.teams(ns)
    {
        view.teams.invited = invited
            .into_iter()
            .filter(|(team, user)| {
                !view
                    .teams
                    .teams
                    .get(team)
                    .is_some_and(|t| t.members.contains(user))
            })
            .collect();
        view.teams.reported = reported;
    }
}

/// The namespace's RoleBindings and the Groups they name, from the caches.
fn desired(ctx: &NamespaceContext, cfg: &TeamSyncConfig, ns: &str) -> Desired {
    let bindings: Vec<ObservedBinding> = ctx.caches.role_bindings.values(ns);
    let named: BTreeSet<&str> = bindings
        .iter()
        .flat_map(|b| b.subjects.iter())
        .filter(|s| s.kind == crate::plan::teams::SubjectKind::Group)
        .map(|s| &*s.name)
        .collect();
    let groups: BTreeMap<String, Vec<String>> = ctx
        .caches
        .groups
        .as_ref()
        .map(|store| {
            named
                .iter()
                .filter_map(|n| store.get(&kube::runtime::reflector::ObjectRef::new(n)))
                .map(|g| (g.name_any(), g.users.clone().unwrap_or_default()))
                .collect()
        })
        .unwrap_or_default();
    desired_members(cfg, &bindings, &groups)
}

/// Plans and applies team sync, keeping `view` up to date with what was
/// done; the counts for the status. `granted_robots`: the repositories the
/// robots are granted explicitly this reconcile.
pub(super) async fn sync(
    s: &Scope<'_>,
    cfg: &TeamSyncConfig,
    view: &mut QuayView,
    granted_robots: &BTreeSet<String>,
) -> Result<TeamSyncStatus, Error> {
    let (ns, marker, org, client, ctx) = (s.ns, &s.marker, s.org, s.client, s.ctx);
    let desired = desired(ctx, cfg, &ns.name_any());
    let repositories: Vec<String> = view.repositories.iter().map(|r| r.name.clone()).collect();
    let plan = plan_teams(
        cfg,
        &marker.description(),
        &view.teams,
        &desired,
        &repositories,
        granted_robots,
    );
    for action in &plan.actions {
        apply(client, org, action, view).await?;
    }
    let t = &mut view.teams;
    let unknown = t.unknown.clone();
    let news: Vec<&str> = unknown
        .difference(&t.reported)
        .map(String::as_str)
        .collect();
    if !news.is_empty() {
        ctx.events.on_namespace(
            ns,
            true,
            "UnknownQuayUser",
            format!("Quay has no user {}; they join the organization's teams once they exist in Quay (team sync asks again at each resync)", news.join(", ")),
            false,
        )
        .await;
    }
    let invalid: Vec<&str> = desired
        .unusable
        .difference(&t.reported)
        .map(String::as_str)
        .collect();
    if !invalid.is_empty() {
        ctx.events.on_namespace(
            ns,
            true,
            "InvalidQuayUserName",
            format!("RoleBinding users {} have names Quay cannot hold (lower-case letters, digits and single '.', '_' or '-', 2 to 255 characters); they are not added to any team", invalid.join(", ")),
            false,
        )
        .await;
    }
    t.reported.extend(unknown.iter().cloned());
    t.reported.extend(desired.unusable.iter().cloned());
    if !plan.conflicts.is_empty() {
        ctx.events.on_namespace(
            ns,
            true,
            "TeamConflict",
            format!(
                "Quay organization {org} has teams {} made by someone else; team sync leaves them alone",
                plan.conflicts.join(", ")
            ),
            true,
        )
        .await;
    }
    let count = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
    Ok(TeamSyncStatus {
        members: count(member_count(t, cfg)),
        unknown_users: count(unknown.len()),
        invalid_user_names: count(desired.unusable.len()),
        pending_invitations: count(t.invited.len()),
        conflicts: count(plan.conflicts.len()),
    })
}

async fn apply(
    client: &QuayClient,
    org: &str,
    action: &TeamAction,
    view: &mut QuayView,
) -> Result<(), Error> {
    let t = &mut view.teams;
    match action {
        TeamAction::PutTeam {
            team,
            role,
            description,
        } => {
            client.put_team(org, team, *role, description).await?;
            let entry = t.teams.entry(team.clone()).or_insert_with(|| ObservedTeam {
                description: description.clone(),
                role: *role,
                members: BTreeSet::new(),
            });
            entry.role = *role;
        }
        TeamAction::CreatePrototype { team, role } => {
            let p = client.create_team_prototype(org, team, *role).await?;
            t.prototypes.push((p.id, p.role, team.clone()));
        }
        TeamAction::DeletePrototype { id } => {
            match client.delete_prototype(org, id).await {
                Ok(()) => {}
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e.into()),
            }
            t.prototypes.retain(|(i, _, _)| i != id);
        }
        TeamAction::GrantRepository { repo, team, role } => {
            client
                .set_team_repository_permission(org, repo, team, *role)
                .await?;
        }
        TeamAction::AddMember { team, user } => {
            match client.add_team_member(org, team, user).await {
                Ok(added) if added.invited => t.invited.insert((team.clone(), user.clone())),
                Ok(_) => member(t, team).insert(user.clone()),
                Err(e) if e.is_already_exists() => member(t, team).insert(user.clone()),
                Err(e) if e.is_unknown_user() => t.unknown.insert(user.clone()),
                Err(e) => return Err(e.into()),
            };
        }
        TeamAction::RemoveMember { team, user } => {
            match client.remove_team_member(org, team, user).await {
                Ok(()) => {}
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e.into()),
            }
            member(t, team).remove(user);
        }
    }
    Ok(())
}

fn member<'t>(t: &'t mut crate::plan::teams::TeamView, team: &str) -> &'t mut BTreeSet<String> {
    &mut t
        .teams
        .entry(team.to_owned())
        .or_insert_with(|| ObservedTeam {
            description: String::new(),
            role: crate::quay::TeamRole::Member,
            members: BTreeSet::new(),
        })
        .members
}
