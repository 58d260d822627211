//! Teams, team members, organization members, team repository permissions
//! and the superuser user API, answered as the real Quay recorded in the
//! shared reference `quay-api-teams.md` (the case each rule follows is
//! named next to it).

use crate::Role;
use crate::api::{
    Ctx, FieldType, R, ROLES, Reply, avatar, check_fields, invalid, json_body, message, not_found,
    one_of, require_org_admin, require_repo_role, require_scope, requires_auth_plain, server_error,
    str_field, unauthorized,
};
use crate::names::{self, Problem};
use crate::state::{OrgRecord, QuayState, TeamRecord, TeamRole, random_token};
use serde_json::{Map, Value, json};

const TEAM_ROLES: &[&str] = &["member", "creator", "admin"];

/// A team as the organization GET lists it.
pub(crate) fn team_summary(o: &OrgRecord, t: &TeamRecord) -> Value {
    let repo_count = o
        .repos
        .values()
        .filter(|r| r.team_permissions.contains_key(&t.name))
        .count();
    json!({
        "name": t.name, "description": t.description, "role": t.role.as_str(),
        "avatar": avatar(&t.name, "team"), "can_view": true, "repo_count": repo_count,
        "member_count": listed_members(o, t).count(), "is_synced": false,
    })
}

/// The teams (name and avatar, by name) a user or robot is in.
pub(crate) fn teams_of(o: &OrgRecord, who: &str) -> Vec<Value> {
    let mut names: Vec<&String> = o
        .teams
        .iter()
        .filter(|t| t.members.iter().any(|m| m == who))
        .map(|t| &t.name)
        .collect();
    names.sort();
    names
        .into_iter()
        .map(|n| json!({"name": n, "avatar": avatar(n, "team")}))
        .collect()
}

/// The members a team lists: users and the organization's own robots. A
/// robot of another organization can be added, but no recorded listing or
/// count shows it ("member add: robot of ANOTHER org", then "team members
/// after regenerate" and "org get (teams map)").
fn listed_members<'t>(o: &'t OrgRecord, t: &'t TeamRecord) -> impl Iterator<Item = &'t String> {
    let own = o.robot_prefix();
    t.members
        .iter()
        .filter(move |m| !m.contains('+') || m.starts_with(&own))
}

fn member_json(who: &str) -> Value {
    let is_robot = who.contains('+');
    json!({"name": who, "kind": "user", "is_robot": is_robot,
        "avatar": avatar(who, if is_robot { "robot" } else { "user" }), "invited": false})
}

fn team_json(t: &TeamRecord, new_team: bool) -> Value {
    json!({"name": t.name, "description": t.description, "can_view": true, "role": t.role.as_str(),
        "avatar": avatar(&t.name, "team"), "new_team": new_team})
}

/// Whether `user` would keep admin on the organization without `team`.
fn admin_elsewhere(o: &OrgRecord, user: &str, team: &str) -> bool {
    o.teams
        .iter()
        .any(|t| t.name != team && t.role == TeamRole::Admin && t.members.iter().any(|m| m == user))
}

fn in_team(t: &TeamRecord, who: &str) -> bool {
    t.members.iter().any(|m| m == who)
}

/// `PUT /organization/{org}/team/{team}`: creates or updates, always 200.
pub(crate) fn put_team(state: &mut QuayState, ctx: &Ctx, org: &str, team: &str) -> R {
    let caller = require_org_admin(state, ctx, org)?.to_owned();
    let body = json_body(ctx)?;
    check_fields(
        ctx,
        &body,
        &["role"],
        &[("description", FieldType::String)],
        // "team PUT bad role".
        &[one_of(
            "role",
            TEAM_ROLES,
            Some("Org wide permissions that should apply to the team"),
        )],
    )?;
    let role = str_field(&body, "role")
        .and_then(TeamRole::parse)
        .unwrap_or(TeamRole::Member);
    let description = str_field(&body, "description");
    let o = state
        .orgs
        .get_mut(org)
        .ok_or_else(|| message(400, &format!("Organization does not exist: {org}")))?;
    if let Some(t) = o.team(team) {
        // "owners: demote role to member".
        if t.role == TeamRole::Admin
            && role != TeamRole::Admin
            && in_team(t, &caller)
            && !admin_elsewhere(o, &caller, team)
        {
            return Err(message(
                400,
                &format!(
                    "Cannot remove admin from team '{team}' because calling user would no longer have admin on org '{org}'"
                ),
            ));
        }
        let t = o.team_mut(team).ok_or_else(server_error)?;
        t.role = role;
        if let Some(d) = description {
            d.clone_into(&mut t.description);
        }
        return Ok(Reply::Json(200, team_json(t, false)));
    }
    // The name is checked only at creation ("team name …").
    if let Err(problem) = names::check_namespace_name(team) {
        let why = match problem {
            Problem::Length => "Team must be between 2 and 255 characters in length".to_owned(),
            Problem::Pattern => problem.quay_message(),
        };
        return Err(message(400, &format!("Invalid team name {team}: {why}")));
    }
    let t = TeamRecord {
        name: team.to_owned(),
        description: description.unwrap_or_default().to_owned(),
        role,
        members: Vec::new(),
    };
    let reply = team_json(&t, true);
    o.teams.push(t);
    Ok(Reply::Json(200, reply))
}

/// `DELETE /organization/{org}/team/{team}`: 400, not 404, when missing.
pub(crate) fn delete_team(state: &mut QuayState, ctx: &Ctx, org: &str, team: &str) -> R {
    let caller = require_org_admin(state, ctx, org)?.to_owned();
    let missing = || message(400, &format!("Team '{team}' is not a team in org '{org}'"));
    let o = state.orgs.get_mut(org).ok_or_else(missing)?;
    let t = o.team(team).ok_or_else(missing)?;
    // "owners: delete team (caller's only admin team)".
    if t.role == TeamRole::Admin && in_team(t, &caller) && !admin_elsewhere(o, &caller, team) {
        return Err(message(
            400,
            &format!(
                "Deleting team '{team}' would remove admin ability for user '{caller}' in organization '{org}'"
            ),
        ));
    }
    o.teams.retain(|t| t.name != team);
    o.prototypes
        .retain(|p| !(p.team_delegate && p.delegate == team));
    for r in o.repos.values_mut() {
        r.team_permissions.remove(team);
    }
    Ok(Reply::Empty(204))
}

/// `GET …/team/{team}/members`: admins, or a member of that team.
pub(crate) fn list_members(state: &QuayState, ctx: &Ctx, org: &str, team: &str) -> R {
    let caller = match require_scope(ctx, "org:admin") {
        Ok(c) => c,
        // "team members, no token": 401 without `session_required`.
        Err(_) if ctx.caller.user().is_none() => return Err(requires_auth_plain(ctx)),
        Err(e) => return Err(e),
    };
    let admin = state.is_org_admin(caller, org);
    let o = state.orgs.get(org).ok_or_else(|| not_found(ctx))?;
    let t = o.team(team).ok_or_else(|| not_found(ctx))?;
    if !admin && !in_team(t, caller) {
        return Err(unauthorized(ctx));
    }
    let members: Vec<Value> = listed_members(o, t).map(|m| member_json(m)).collect();
    Ok(Reply::Json(
        200,
        json!({"name": team, "members": members, "can_edit": admin}),
    ))
}

/// `PUT …/team/{team}/members/{member}`: a direct add (no invitations in
/// the recorded configuration); a duplicate is a 400.
pub(crate) fn add_member(state: &mut QuayState, ctx: &Ctx, org: &str, team: &str, who: &str) -> R {
    require_org_admin(state, ctx, org)?;
    let known = if who.contains('+') {
        state.robot_exists(who)
    } else {
        state.users.contains_key(who)
    };
    let o = state.orgs.get_mut(org).ok_or_else(|| not_found(ctx))?;
    if o.team(team).is_none() {
        return Err(not_found(ctx));
    }
    if !known {
        return Err(invalid(ctx, "Unknown user"));
    }
    let t = o.team_mut(team).ok_or_else(|| not_found(ctx))?;
    if in_team(t, who) {
        return Err(message(
            400,
            &format!("User {who} is already a member of team {team}"),
        ));
    }
    t.members.push(who.to_owned());
    Ok(Reply::Json(200, member_json(who)))
}

/// `DELETE …/team/{team}/members/{member}`: not idempotent.
pub(crate) fn remove_member(
    state: &mut QuayState,
    ctx: &Ctx,
    org: &str,
    team: &str,
    who: &str,
) -> R {
    let caller = require_org_admin(state, ctx, org)?.to_owned();
    let known = if who.contains('+') {
        state.robot_exists(who)
    } else {
        state.users.contains_key(who)
    };
    let o = state.orgs.get_mut(org).ok_or_else(|| not_found(ctx))?;
    let t = o.team(team).ok_or_else(|| not_found(ctx))?;
    if !known {
        return Err(not_found(ctx));
    }
    if !in_team(t, who) {
        return Err(message(
            400,
            &format!("User {who} does not belong to team {team}"),
        ));
    }
    // "owners: remove its last member (the caller)".
    if who == caller && t.role == TeamRole::Admin && !admin_elsewhere(o, &caller, team) {
        return Err(message(
            400,
            "User cannot remove themselves from their only admin team.",
        ));
    }
    let t = o.team_mut(team).ok_or_else(|| not_found(ctx))?;
    t.members.retain(|m| m != who);
    Ok(Reply::Empty(204))
}

/// `GET …/team/{team}/permissions`: the repositories a team can access.
pub(crate) fn team_permissions(state: &QuayState, ctx: &Ctx, org: &str, team: &str) -> R {
    require_org_admin(state, ctx, org)?;
    let o = state.orgs.get(org).ok_or_else(|| not_found(ctx))?;
    o.team(team).ok_or_else(|| not_found(ctx))?;
    let permissions: Vec<Value> = o
        .repos_in_order()
        .into_iter()
        .filter_map(|(name, r)| {
            r.team_permissions.get(team).map(|role| {
                json!({"repository": {"name": name, "is_public": r.public}, "role": role.as_str()})
            })
        })
        .collect();
    Ok(Reply::Json(200, json!({ "permissions": permissions })))
}

fn org_member_json(o: &OrgRecord, who: &str) -> Value {
    let is_robot = who.contains('+');
    let repositories: Vec<&String> = o
        .repos_in_order()
        .into_iter()
        .filter(|(_, r)| r.permissions.contains_key(who))
        .map(|(n, _)| n)
        .collect();
    let kind = if is_robot { "robot" } else { "user" };
    json!({"name": who, "kind": kind, "avatar": avatar(who, kind), "teams": teams_of(o, who), "repositories": repositories})
}

/// `GET /organization/{org}/members`: the users in its teams (robots are
/// not members), by name.
pub(crate) fn list_org_members(state: &QuayState, ctx: &Ctx, org: &str) -> R {
    require_org_admin(state, ctx, org)?;
    let o = state.orgs.get(org).ok_or_else(|| not_found(ctx))?;
    let mut users: Vec<&String> = o
        .teams
        .iter()
        .flat_map(|t| t.members.iter())
        .filter(|m| !m.contains('+'))
        .collect();
    users.sort();
    users.dedup();
    let members: Vec<Value> = users.into_iter().map(|u| org_member_json(o, u)).collect();
    Ok(Reply::Json(200, json!({ "members": members })))
}

/// `GET /organization/{org}/members/{member}`: a user in a team, or one of
/// the organization's robots (in a team or not).
pub(crate) fn get_org_member(state: &QuayState, ctx: &Ctx, org: &str, who: &str) -> R {
    require_org_admin(state, ctx, org)?;
    let o = state.orgs.get(org).ok_or_else(|| not_found(ctx))?;
    let found = if who.contains('+') {
        who.starts_with(&o.robot_prefix()) && state.robot_exists(who)
    } else {
        o.is_member(who)
    };
    if !found {
        return Err(not_found(ctx));
    }
    Ok(Reply::Json(200, org_member_json(o, who)))
}

/// `DELETE /organization/{org}/members/{member}`: out of every team, own
/// permissions dropped; idempotent for a known user.
pub(crate) fn remove_org_member(state: &mut QuayState, ctx: &Ctx, org: &str, who: &str) -> R {
    require_org_admin(state, ctx, org)?;
    if who.contains('+') || !state.users.contains_key(who) {
        return Err(not_found(ctx));
    }
    let o = state.orgs.get_mut(org).ok_or_else(|| not_found(ctx))?;
    let other_admins = o
        .teams
        .iter()
        .filter(|t| t.role == TeamRole::Admin)
        .flat_map(|t| t.members.iter())
        .any(|m| m != who && !m.contains('+'));
    if o.is_admin(who) && !other_admins {
        return Err(message(
            400,
            "Cannot remove user as they are the only organization admin",
        ));
    }
    o.remove_member(who);
    Ok(Reply::Empty(204))
}

fn team_permission_json(team: &str, role: Role) -> Value {
    json!({"role": role.as_str(), "name": team, "avatar": avatar(team, "team")})
}

/// `GET /repository/{ns}/{repo}/permissions/team/`: empty for a missing
/// repository ("repo team permissions list: missing repo").
pub(crate) fn list_repo_team_perms(state: &QuayState, ctx: &Ctx, ns: &str, repo: &str) -> R {
    require_repo_role(state, ctx, "repo:admin", ns, repo, Role::Admin)?;
    let perms: Map<String, Value> = state
        .orgs
        .get(ns)
        .and_then(|o| o.repos.get(repo))
        .map(|r| {
            r.team_permissions
                .iter()
                .map(|(t, role)| (t.clone(), team_permission_json(t, *role)))
                .collect()
        })
        .unwrap_or_default();
    Ok(Reply::Json(200, json!({ "permissions": perms })))
}

/// `GET …/permissions/team/{team}`: only the role.
pub(crate) fn get_repo_team_perm(
    state: &QuayState,
    ctx: &Ctx,
    ns: &str,
    repo: &str,
    team: &str,
) -> R {
    require_repo_role(state, ctx, "repo:admin", ns, repo, Role::Admin)?;
    let role = state
        .orgs
        .get(ns)
        .and_then(|o| o.repos.get(repo))
        .and_then(|r| r.team_permissions.get(team))
        .ok_or_else(|| message(400, "Team does not have permission for repo."))?;
    Ok(Reply::Json(200, json!({"role": role.as_str()})))
}

/// `PUT …/permissions/team/{team}`: a missing repository is a 500.
pub(crate) fn put_repo_team_perm(
    state: &mut QuayState,
    ctx: &Ctx,
    ns: &str,
    repo: &str,
    team: &str,
) -> R {
    require_repo_role(state, ctx, "repo:admin", ns, repo, Role::Admin)?;
    let body = json_body(ctx)?;
    // The schema's description is not recorded: the dump says `(schema)`.
    check_fields(ctx, &body, &["role"], &[], &[one_of("role", ROLES, None)])?;
    let role = str_field(&body, "role")
        .and_then(Role::parse)
        .unwrap_or(Role::Read);
    let o = state.orgs.get_mut(ns).ok_or_else(server_error)?;
    if o.team(team).is_none() {
        return Err(invalid(
            ctx,
            &format!("No team {team} in organization {ns}"),
        ));
    }
    let r = o.repos.get_mut(repo).ok_or_else(server_error)?;
    r.team_permissions.insert(team.to_owned(), role);
    Ok(Reply::Json(200, team_permission_json(team, role)))
}

/// `DELETE …/permissions/team/{team}`.
pub(crate) fn delete_repo_team_perm(
    state: &mut QuayState,
    ctx: &Ctx,
    ns: &str,
    repo: &str,
    team: &str,
) -> R {
    require_repo_role(state, ctx, "repo:admin", ns, repo, Role::Admin)?;
    let removed = state
        .orgs
        .get_mut(ns)
        .and_then(|o| o.repos.get_mut(repo))
        .and_then(|r| r.team_permissions.remove(team));
    match removed {
        Some(_) => Ok(Reply::Empty(204)),
        None => Err(invalid(ctx, "Team does not have permission for repo.")),
    }
}

fn require_superuser<'c>(state: &QuayState, ctx: &'c Ctx) -> Result<&'c str, Reply> {
    let user = require_scope(ctx, "super:user")?;
    if state.users.get(user).is_some_and(|u| u.super_user) {
        Ok(user)
    } else {
        Err(unauthorized(ctx))
    }
}

/// `POST /superuser/users/`: the user is active at once with a temporary
/// password (mail off, "superuser create user alice").
pub(crate) fn create_user(state: &mut QuayState, ctx: &Ctx) -> R {
    require_superuser(state, ctx)?;
    let body = json_body(ctx)?;
    check_fields(
        ctx,
        &body,
        &["username"],
        &[
            ("username", FieldType::String),
            ("email", FieldType::String),
        ],
        &[],
    )?;
    let name = str_field(&body, "username").unwrap_or_default();
    let email = str_field(&body, "email").unwrap_or_default();
    if let Err(problem) = names::check_namespace_name(name) {
        return Err(message(
            400,
            &format!("Invalid namespace {name}: {}", problem.quay_message()),
        ));
    }
    if state.users.contains_key(name) || state.orgs.contains_key(name) {
        return Err(message(
            400,
            &format!("Username has already been taken by user cannot be reused: {name}"),
        ));
    }
    let password = random_token(32);
    state.add_user(name, &password, false);
    if let Some(u) = state.users.get_mut(name) {
        email.clone_into(&mut u.email);
    }
    let encrypted = format!("$2b$12${}", random_token(53));
    Ok(Reply::Json(
        200,
        json!({"username": name, "email": email, "password": password, "encrypted_password": encrypted}),
    ))
}

/// `GET /superuser/users/{name}`.
pub(crate) fn get_user_as_superuser(state: &QuayState, ctx: &Ctx, name: &str) -> R {
    require_superuser(state, ctx)?;
    let u = state.users.get(name).ok_or_else(|| not_found(ctx))?;
    Ok(Reply::Json(
        200,
        json!({"kind": "user", "name": name, "username": name, "email": u.email, "verified": true,
            "avatar": avatar(name, "user"), "super_user": u.super_user,
            "global_readonly_super_user": false, "enabled": true}),
    ))
}

/// `DELETE /superuser/users/{name}`: tokens die with the user.
pub(crate) fn delete_user(state: &mut QuayState, ctx: &Ctx, name: &str) -> R {
    require_superuser(state, ctx)?;
    if state.delete_user(name) {
        Ok(Reply::Empty(204))
    } else {
        Err(not_found(ctx))
    }
}

/// `GET /users/{name}`: public; Flask's 404 text when missing.
pub(crate) fn public_user(state: &QuayState, name: &str) -> R {
    match state.users.get(name) {
        Some(u) => Ok(Reply::Json(
            200,
            json!({"anonymous": false, "username": name, "avatar": avatar(name, "user"), "super_user": u.super_user}),
        )),
        None => Err(message(
            404,
            "The requested URL was not found on the server. If you entered the URL manually please check your spelling and try again.",
        )),
    }
}
