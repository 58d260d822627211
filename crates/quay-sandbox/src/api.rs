//! Quay's REST API (`/api/v1`), answered the way real Quay answers: status
//! codes, the three error body shapes, validation order, OAuth scopes and
//! organization permissions (see the recorded cases in the project's tests).

use super::state::{
    Caller, OrgRecord, PrototypeRecord, QuayState, RobotRecord, quay_now, random_token, random_uuid,
};
use crate::Role;
use crate::bootstrap;
use crate::names;
use crate::teams;
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;

/// An answer before it becomes an HTTP response.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// JSON body.
    Json(u16, Value),
    /// No body (204).
    Empty(u16),
    /// An HTML page (Flask's 500, 405).
    Html(u16, String),
    /// 308 to the slashed URL.
    Redirect(String),
    /// Quay's CSRF answer: 403, a JSON text served as text/html.
    Csrf,
    /// The CSRF answer to a caller authenticated by cookie or Basic auth
    /// (`… (authorized: user <name>)`).
    CsrfUser(String),
    /// Any other answer, with its content type and extra headers.
    Raw {
        /// HTTP status.
        status: u16,
        /// Content-Type.
        content_type: &'static str,
        /// Body.
        body: String,
        /// Extra headers (`Location`, `Set-Cookie`, …).
        headers: Vec<(&'static str, String)>,
    },
}

pub(crate) type R = Result<Reply, Reply>;

/// What the handler knows of the request.
pub struct Ctx<'a> {
    /// `http://host[:port]` the request was sent to.
    pub base: &'a str,
    /// The authenticated caller.
    pub caller: Caller,
    /// HTTP method.
    pub method: &'a str,
    /// Raw body.
    pub body: &'a [u8],
    /// Content-Type header.
    pub content_type: Option<&'a str>,
    /// Query parameters.
    pub query: &'a BTreeMap<String, String>,
    /// The session cookie (`_csrf_token`) the request carried.
    pub cookie: Option<&'a str>,
    /// The CSRF token the request carried (`X-CSRF-Token` header, or the
    /// `_csrf_token` query or form field).
    pub csrf: Option<&'a str>,
    /// Whether the caller was authenticated by its session cookie (writes
    /// then need the session's CSRF token).
    pub via_session: bool,
    /// `client_id` of the application whose token authenticated the call.
    pub token_app: Option<String>,
}

const HTML_500: &str = "<html>\n  <head>\n    <title>Internal Server Error</title>\n  </head>\n  <body>\n    <h1><p>Internal Server Error</p></h1>\n    \n  </body>\n</html>\n";
const HTML_404: &str = "<!doctype html>\n<html lang=en>\n<title>Quay</title>\n<h1>Not Found</h1>\n";
const HTML_405: &str = "<!doctype html>\n<html lang=en>\n<title>405 Method Not Allowed</title>\n<h1>Method Not Allowed</h1>\n<p>The method is not allowed for the requested URL.</p>\n";

/// Shape (a): `detail`/`error_message`/`error_type`/`title`/`type`/`status`.
pub fn api_error(base: &str, status: u16, error_type: &str, detail: &str) -> Reply {
    let mut body = json!({
        "detail": detail,
        "error_message": detail,
        "error_type": error_type,
        "title": error_type,
        "type": format!("{base}/api/v1/error/{error_type}"),
        "status": status,
    });
    if status == 401 {
        body["session_required"] = json!(false);
    }
    Reply::Json(status, body)
}

pub(crate) fn invalid(ctx: &Ctx, detail: &str) -> Reply {
    api_error(ctx.base, 400, "invalid_request", detail)
}

pub(crate) fn not_found(ctx: &Ctx) -> Reply {
    api_error(ctx.base, 404, "not_found", "Not Found")
}

pub(crate) fn unauthorized(ctx: &Ctx) -> Reply {
    api_error(ctx.base, 403, "insufficient_scope", "Unauthorized")
}

/// 401 without `session_required` (AUTH_401 in quay-api-teams.md: "team
/// members, no token").
pub(crate) fn requires_auth_plain(ctx: &Ctx) -> Reply {
    let Reply::Json(status, mut body) = requires_auth(ctx) else {
        return requires_auth(ctx);
    };
    if let Some(o) = body.as_object_mut() {
        o.remove("session_required");
    }
    Reply::Json(status, body)
}

pub(crate) fn requires_auth(ctx: &Ctx) -> Reply {
    api_error(ctx.base, 401, "invalid_token", "Requires authentication")
}

/// Shape (b): a data-model exception.
pub(crate) fn message(status: u16, text: &str) -> Reply {
    Reply::Json(status, json!({ "message": text }))
}

pub(crate) fn server_error() -> Reply {
    Reply::Html(500, HTML_500.to_owned())
}

/// The endpoint template (for the request log) and the route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    User,
    SuperUsers,
    Discovery,
    OrgCreate,
    Org(String),
    Robots(String),
    Robot(String, String),
    RobotRegenerate(String, String),
    RobotPermissions(String, String),
    Prototypes(String),
    Prototype(String, String),
    RepoList,
    Repo(String, String),
    RepoVisibility(String, String),
    RepoPerms(String, String),
    RepoPerm(String, String, String),
    Tags(String, String),
    Team(String, String),
    TeamMembers(String, String),
    TeamMember(String, String, String),
    TeamPermissions(String, String),
    OrgMembers(String),
    OrgMember(String, String),
    RepoTeamPerms(String, String),
    RepoTeamPerm(String, String, String),
    SuperUser(String),
    PublicUser(String),
    Signin,
    Signout,
    UserInitialize,
    Apps(String),
    App(String, String),
    AppResetSecret(String, String),
    AppTokens(String, String),
    AppToken(String, String, String),
    /// A route of a feature that is off and answers from Werkzeug's
    /// routing alone (quota: a GET is redirected to the slashed URL, a
    /// POST is not allowed).
    FeatureOff,
    /// A path the web app serves (its page, 404) for GET, 405 otherwise
    /// (auto-prune policies with the feature off).
    WebApp,
    /// Needs a trailing slash: 308.
    AddSlash,
    /// A route that exists with another slash form or method: 405.
    NotAllowed,
    Unknown,
}

impl Route {
    /// Endpoint template as the client names it.
    pub fn template(&self) -> &'static str {
        match self {
            Route::User => "/api/v1/user/",
            Route::SuperUsers => "/api/v1/superuser/users/",
            Route::Discovery => "/api/v1/discovery",
            Route::OrgCreate => "/api/v1/organization/",
            Route::Org(_) => "/api/v1/organization/{org}",
            Route::Robots(_) => "/api/v1/organization/{org}/robots",
            Route::Robot(..) => "/api/v1/organization/{org}/robots/{robot}",
            Route::RobotRegenerate(..) => "/api/v1/organization/{org}/robots/{robot}/regenerate",
            Route::RobotPermissions(..) => "/api/v1/organization/{org}/robots/{robot}/permissions",
            Route::Prototypes(_) => "/api/v1/organization/{org}/prototypes",
            Route::Prototype(..) => "/api/v1/organization/{org}/prototypes/{id}",
            Route::RepoList => "/api/v1/repository",
            Route::Repo(..) => "/api/v1/repository/{org}/{repo}",
            Route::RepoVisibility(..) => "/api/v1/repository/{org}/{repo}/changevisibility",
            Route::RepoPerms(..) => "/api/v1/repository/{org}/{repo}/permissions/user/",
            Route::RepoPerm(..) => "/api/v1/repository/{org}/{repo}/permissions/user/{user}",
            Route::Tags(..) => "/api/v1/repository/{org}/{repo}/tag/",
            Route::Team(..) => "/api/v1/organization/{org}/team/{team}",
            Route::TeamMembers(..) => "/api/v1/organization/{org}/team/{team}/members",
            Route::TeamMember(..) => "/api/v1/organization/{org}/team/{team}/members/{member}",
            Route::TeamPermissions(..) => "/api/v1/organization/{org}/team/{team}/permissions",
            Route::OrgMembers(_) => "/api/v1/organization/{org}/members",
            Route::OrgMember(..) => "/api/v1/organization/{org}/members/{member}",
            Route::RepoTeamPerms(..) => "/api/v1/repository/{org}/{repo}/permissions/team/",
            Route::RepoTeamPerm(..) => "/api/v1/repository/{org}/{repo}/permissions/team/{team}",
            Route::SuperUser(_) => "/api/v1/superuser/users/{user}",
            Route::PublicUser(_) => "/api/v1/users/{user}",
            Route::Signin => "/api/v1/signin",
            Route::UserInitialize => "/api/v1/user/initialize",
            Route::Signout => "/api/v1/signout",
            Route::Apps(_) => "/api/v1/organization/{org}/applications",
            Route::App(..) => "/api/v1/organization/{org}/applications/{client_id}",
            Route::AppResetSecret(..) => {
                "/api/v1/organization/{org}/applications/{client_id}/resetclientsecret"
            }
            Route::AppTokens(..) => "/api/v1/organization/{org}/applications/{client_id}/tokens",
            Route::AppToken(..) => {
                "/api/v1/organization/{org}/applications/{client_id}/tokens/{uuid}"
            }
            Route::FeatureOff
            | Route::WebApp
            | Route::AddSlash
            | Route::NotAllowed
            | Route::Unknown => "(other)",
        }
    }
}

pub use bridge_common::encoding::percent_decode;

/// Maps a path below `/api/v1` to a route.
pub fn route(path: &str) -> Route {
    let Some(rest) = path.strip_prefix("/api/v1") else {
        return Route::Unknown;
    };
    let raw: Vec<&str> = rest.split('/').skip(1).collect();
    let s: Vec<String> = raw.iter().map(|p| percent_decode(p)).collect();
    let s: Vec<&str> = s.iter().map(String::as_str).collect();
    match s.as_slice() {
        ["user"] | ["organization"] => Route::AddSlash,
        ["user", ""] => Route::User,
        ["superuser", "users", ""] => Route::SuperUsers,
        ["discovery"] => Route::Discovery,
        ["organization", ""] => Route::OrgCreate,
        ["organization", org] => Route::Org((*org).into()),
        ["organization", org, "robots"] => Route::Robots((*org).into()),
        ["organization", org, "robots", robot] => Route::Robot((*org).into(), (*robot).into()),
        ["organization", org, "robots", robot, "regenerate"] => {
            Route::RobotRegenerate((*org).into(), (*robot).into())
        }
        ["organization", org, "robots", robot, "permissions"] => {
            Route::RobotPermissions((*org).into(), (*robot).into())
        }
        ["organization", org, "prototypes"] => Route::Prototypes((*org).into()),
        ["organization", org, "prototypes", id] => Route::Prototype((*org).into(), (*id).into()),
        ["repository"] => Route::RepoList,
        ["repository", ""] => Route::NotAllowed,
        ["repository", ns, repo] => Route::Repo((*ns).into(), (*repo).into()),
        ["repository", ns, repo, "changevisibility"] => {
            Route::RepoVisibility((*ns).into(), (*repo).into())
        }
        ["repository", ns, repo, "permissions", "user", ""] => {
            Route::RepoPerms((*ns).into(), (*repo).into())
        }
        ["repository", ns, repo, "permissions", "user", user] => {
            Route::RepoPerm((*ns).into(), (*repo).into(), (*user).into())
        }
        ["repository", ns, repo, "tag", ""] => Route::Tags((*ns).into(), (*repo).into()),
        ["organization", org, "team", team] => Route::Team((*org).into(), (*team).into()),
        ["organization", org, "team", team, "members"] => {
            Route::TeamMembers((*org).into(), (*team).into())
        }
        ["organization", org, "team", team, "members", m] => {
            Route::TeamMember((*org).into(), (*team).into(), (*m).into())
        }
        ["organization", org, "team", team, "permissions"] => {
            Route::TeamPermissions((*org).into(), (*team).into())
        }
        // "quota list/create (FEATURE_QUOTA_MANAGEMENT off)", "autoprune
        // policies list/create (FEATURE_AUTO_PRUNE off)".
        ["organization", _, "quota"] => Route::FeatureOff,
        ["organization", _, "autoprunepolicy", ""] => Route::WebApp,
        ["organization", org, "members"] => Route::OrgMembers((*org).into()),
        ["organization", org, "members", m] => Route::OrgMember((*org).into(), (*m).into()),
        ["repository", ns, repo, "permissions", "team", ""] => {
            Route::RepoTeamPerms((*ns).into(), (*repo).into())
        }
        ["repository", ns, repo, "permissions", "team", team] => {
            Route::RepoTeamPerm((*ns).into(), (*repo).into(), (*team).into())
        }
        ["superuser", "users", user] if !user.is_empty() => Route::SuperUser((*user).into()),
        ["users", user] if !user.is_empty() => Route::PublicUser((*user).into()),
        ["signin"] => Route::Signin,
        ["user", "initialize"] => Route::UserInitialize,
        ["signout"] => Route::Signout,
        ["organization", org, "applications"] => Route::Apps((*org).into()),
        ["organization", org, "applications", id] => Route::App((*org).into(), (*id).into()),
        ["organization", org, "applications", id, "resetclientsecret"] => {
            Route::AppResetSecret((*org).into(), (*id).into())
        }
        ["organization", org, "applications", id, "tokens"] => {
            Route::AppTokens((*org).into(), (*id).into())
        }
        ["organization", org, "applications", id, "tokens", uuid] => {
            Route::AppToken((*org).into(), (*id).into(), (*uuid).into())
        }
        _ => Route::Unknown,
    }
}

fn is_write(method: &str) -> bool {
    matches!(method, "POST" | "PUT" | "DELETE" | "PATCH")
}

/// Answers one API request.
pub fn handle(state: &mut QuayState, ctx: &Ctx, route: &Route, path: &str) -> Reply {
    match dispatch(state, ctx, route, path) {
        Ok(reply) | Err(reply) => reply,
    }
}

fn dispatch(state: &mut QuayState, ctx: &Ctx, route: &Route, path: &str) -> R {
    // Routing comes first (Werkzeug), then the CSRF check of session auth
    // that every write without a valid token falls into.
    match route {
        Route::AddSlash => return Ok(Reply::Redirect(format!("{}{}/", ctx.base, path))),
        Route::FeatureOff if ctx.method == "GET" => {
            return Ok(Reply::Redirect(format!("{}{}/", ctx.base, path)));
        }
        Route::WebApp if ctx.method == "GET" => return Ok(Reply::Html(404, HTML_404.to_owned())),
        Route::FeatureOff | Route::WebApp => return Ok(Reply::Html(405, HTML_405.to_owned())),
        Route::NotAllowed => return Ok(Reply::Html(405, HTML_405.to_owned())),
        Route::Unknown => return Err(not_found(ctx)),
        _ => {}
    }
    if ctx.method == "POST" && *route == Route::Signin {
        return bootstrap::signin(state, ctx);
    }
    // A web route without CSRF protection (quay-api-bootstrap.md, source).
    if ctx.method == "POST" && *route == Route::UserInitialize {
        return bootstrap::initialize_user(state, ctx);
    }
    // Signing out needs no CSRF token and works on a dead session too.
    if ctx.method == "POST" && *route == Route::Signout {
        return bootstrap::signout(state, ctx);
    }
    if is_write(ctx.method) && matches!(ctx.caller, Caller::Anonymous) {
        return Ok(Reply::Csrf);
    }
    if is_write(ctx.method) && ctx.via_session && !bootstrap::csrf_ok(state, ctx) {
        return Ok(Reply::CsrfUser(
            ctx.caller.user().unwrap_or_default().to_owned(),
        ));
    }
    let m = ctx.method;
    match (m, route) {
        ("GET", Route::Apps(org)) => bootstrap::list_apps(state, ctx, org),
        ("POST", Route::Apps(org)) => bootstrap::create_app(state, ctx, org),
        ("GET", Route::App(org, id)) => bootstrap::get_app(state, ctx, org, id),
        ("DELETE", Route::App(org, id)) => bootstrap::delete_app(state, ctx, org, id),
        ("POST", Route::AppResetSecret(org, id)) => bootstrap::reset_secret(state, ctx, org, id),
        ("GET", Route::AppTokens(org, id)) => bootstrap::list_tokens(state, ctx, org, id),
        ("POST", Route::AppTokens(org, id)) => bootstrap::create_token(state, ctx, org, id),
        ("DELETE", Route::AppToken(org, id, uuid)) => {
            bootstrap::delete_token(state, ctx, org, id, uuid)
        }
        ("PUT", Route::SuperUser(u)) => bootstrap::update_user(state, ctx, u),
        ("GET", Route::User) => get_user(state, ctx),
        ("GET", Route::SuperUsers) => superuser_users(state, ctx),
        ("GET", Route::Discovery) => Ok(Reply::Json(200, discovery())),
        ("POST", Route::OrgCreate) => create_org(state, ctx),
        ("GET", Route::Org(org)) => get_org(state, ctx, org),
        ("DELETE", Route::Org(org)) => delete_org(state, ctx, org),
        ("GET", Route::Robots(org)) => list_robots(state, ctx, org),
        ("GET", Route::Robot(org, r)) => get_robot(state, ctx, org, r),
        ("PUT", Route::Robot(org, r)) => create_robot(state, ctx, org, r),
        ("DELETE", Route::Robot(org, r)) => delete_robot(state, ctx, org, r),
        ("POST", Route::RobotRegenerate(org, r)) => regenerate_robot(state, ctx, org, r),
        ("GET", Route::RobotPermissions(org, r)) => robot_permissions(state, ctx, org, r),
        ("GET", Route::Prototypes(org)) => list_prototypes(state, ctx, org),
        ("POST", Route::Prototypes(org)) => create_prototype(state, ctx, org),
        ("PUT", Route::Prototype(org, id)) => update_prototype(state, ctx, org, id),
        ("DELETE", Route::Prototype(org, id)) => delete_prototype(state, ctx, org, id),
        ("GET", Route::RepoList) => list_repos(state, ctx),
        ("POST", Route::RepoList) => create_repo(state, ctx),
        ("GET", Route::Repo(ns, repo)) => get_repo(state, ctx, ns, repo),
        ("PUT", Route::Repo(ns, repo)) => update_repo(state, ctx, ns, repo),
        ("DELETE", Route::Repo(ns, repo)) => delete_repo(state, ctx, ns, repo),
        ("POST", Route::RepoVisibility(ns, repo)) => change_visibility(state, ctx, ns, repo),
        ("GET", Route::RepoPerms(ns, repo)) => list_repo_perms(state, ctx, ns, repo),
        ("GET", Route::RepoPerm(ns, repo, user)) => get_repo_perm(state, ctx, ns, repo, user),
        ("PUT", Route::RepoPerm(ns, repo, user)) => put_repo_perm(state, ctx, ns, repo, user),
        ("DELETE", Route::RepoPerm(ns, repo, user)) => delete_repo_perm(state, ctx, ns, repo, user),
        ("GET", Route::Tags(ns, repo)) => list_tags(state, ctx, ns, repo),
        ("POST", Route::SuperUsers) => teams::create_user(state, ctx),
        ("GET", Route::SuperUser(u)) => teams::get_user_as_superuser(state, ctx, u),
        ("DELETE", Route::SuperUser(u)) => teams::delete_user(state, ctx, u),
        ("GET", Route::PublicUser(u)) => teams::public_user(state, u),
        ("PUT", Route::Team(org, t)) => teams::put_team(state, ctx, org, t),
        ("DELETE", Route::Team(org, t)) => teams::delete_team(state, ctx, org, t),
        ("GET", Route::TeamMembers(org, t)) => teams::list_members(state, ctx, org, t),
        ("PUT", Route::TeamMember(org, t, m)) => teams::add_member(state, ctx, org, t, m),
        ("DELETE", Route::TeamMember(org, t, m)) => teams::remove_member(state, ctx, org, t, m),
        ("GET", Route::TeamPermissions(org, t)) => teams::team_permissions(state, ctx, org, t),
        ("GET", Route::OrgMembers(org)) => teams::list_org_members(state, ctx, org),
        ("GET", Route::OrgMember(org, m)) => teams::get_org_member(state, ctx, org, m),
        ("DELETE", Route::OrgMember(org, m)) => teams::remove_org_member(state, ctx, org, m),
        ("GET", Route::RepoTeamPerms(ns, r)) => teams::list_repo_team_perms(state, ctx, ns, r),
        ("GET", Route::RepoTeamPerm(ns, r, t)) => teams::get_repo_team_perm(state, ctx, ns, r, t),
        ("PUT", Route::RepoTeamPerm(ns, r, t)) => teams::put_repo_team_perm(state, ctx, ns, r, t),
        ("DELETE", Route::RepoTeamPerm(ns, r, t)) => {
            teams::delete_repo_team_perm(state, ctx, ns, r, t)
        }
        _ => Ok(Reply::Html(405, HTML_405.to_owned())),
    }
}

// === request bodies ===

pub(crate) fn json_body(ctx: &Ctx) -> Result<Value, Reply> {
    let is_json = ctx.content_type.is_some_and(|ct| {
        ct.split(';')
            .next()
            .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"))
    });
    if !is_json {
        return Err(message(
            415,
            "Did not attempt to load JSON data because the request Content-Type was not 'application/json'.",
        ));
    }
    serde_json::from_slice(ctx.body)
        .map_err(|e| message(400, &format!("Failed to decode JSON object: {e}")))
}

/// The first lines of a jsonschema error as Quay shows it.
fn schema_error(
    ctx: &Ctx,
    first_line: &str,
    validator: &str,
    location: &str,
    instance: &Value,
) -> Reply {
    schema_error_with(ctx, first_line, validator, location, instance, None)
}

/// Quay's jsonschema error text: the first line, the failing part of the
/// schema (as Python's pprint shows it, when the endpoint's schema is
/// known from a recorded answer; `(schema)` otherwise), and the instance.
fn schema_error_with(
    ctx: &Ctx,
    first_line: &str,
    validator: &str,
    location: &str,
    instance: &Value,
    schema: Option<&str>,
) -> Reply {
    // The schema path names `properties`; the instance path only the keys.
    let instance_location = location.replace("['properties']", "");
    let detail = format!(
        "{first_line}\n\nFailed validating '{validator}' in schema{location}:\n    {}\n\nOn instance{instance_location}:\n    {}",
        schema.unwrap_or("(schema)"),
        python_repr(instance)
    );
    invalid(ctx, &detail)
}

/// A string property with allowed values, and the description of its
/// schema where a recorded answer shows it.
pub(crate) struct Enum<'a> {
    key: &'a str,
    allowed: &'a [&'a str],
    description: Option<&'a str>,
}

impl Enum<'_> {
    /// The property's schema as Quay's error text prints it (Python's
    /// pprint: one line when it fits in 80 columns after the 4-space
    /// indent, else one key a line aligned after the brace).
    fn schema(&self, list: &str) -> Option<String> {
        let description = self.description?;
        let parts = [
            format!("'description': '{description}'"),
            format!("'enum': [{list}]"),
            "'type': 'string'".to_owned(),
        ];
        let one_line = format!("{{{}}}", parts.join(", "));
        Some(if 4 + one_line.len() <= 80 {
            one_line
        } else {
            format!("{{{}}}", parts.join(",\n     "))
        })
    }
}

pub(crate) const fn one_of<'a>(
    key: &'a str,
    allowed: &'a [&'a str],
    description: Option<&'a str>,
) -> Enum<'a> {
    Enum {
        key,
        allowed,
        description,
    }
}

pub(crate) const ROLES: &[&str] = &["read", "write", "admin"];

fn python_repr(v: &Value) -> String {
    match v {
        Value::String(s) => format!("'{s}'"),
        Value::Object(m) => {
            let items: Vec<String> = m
                .iter()
                .map(|(k, v)| format!("'{k}': {}", python_repr(v)))
                .collect();
            format!("{{{}}}", items.join(", "))
        }
        Value::Array(a) => format!(
            "[{}]",
            a.iter().map(python_repr).collect::<Vec<_>>().join(", ")
        ),
        Value::Null => "None".into(),
        Value::Bool(true) => "True".into(),
        Value::Bool(false) => "False".into(),
        Value::Number(n) => n.to_string(),
    }
}

pub(crate) enum FieldType {
    String,
    Object,
}

/// A jsonschema-like check of one object: required keys, types, enums.
pub(crate) fn check_fields(
    ctx: &Ctx,
    body: &Value,
    required: &[&str],
    types: &[(&str, FieldType)],
    enums: &[Enum<'_>],
) -> Result<(), Reply> {
    let Some(obj) = body.as_object() else {
        return Err(schema_error(
            ctx,
            &format!("{} is not of type 'object'", python_repr(body)),
            "type",
            "",
            body,
        ));
    };
    for key in required {
        if !obj.contains_key(*key) {
            return Err(schema_error(
                ctx,
                &format!("'{key}' is a required property"),
                "required",
                "",
                body,
            ));
        }
    }
    for (key, ty) in types {
        if let Some(v) = obj.get(*key) {
            let ok = match ty {
                FieldType::String => v.is_string(),
                FieldType::Object => v.is_object(),
            };
            if !ok {
                let name = match ty {
                    FieldType::String => "string",
                    FieldType::Object => "object",
                };
                let loc = format!("['properties']['{key}']");
                return Err(schema_error(
                    ctx,
                    &format!("{} is not of type '{name}'", python_repr(v)),
                    "type",
                    &loc,
                    v,
                ));
            }
        }
    }
    for e in enums {
        if let Some(v) = obj.get(e.key)
            && !v.as_str().is_some_and(|s| e.allowed.contains(&s))
        {
            let list = e
                .allowed
                .iter()
                .map(|a| format!("'{a}'"))
                .collect::<Vec<_>>()
                .join(", ");
            let loc = format!("['properties']['{}']", e.key);
            return Err(schema_error_with(
                ctx,
                &format!("{} is not one of [{list}]", python_repr(v)),
                "enum",
                &loc,
                v,
                e.schema(&list).as_deref(),
            ));
        }
    }
    Ok(())
}

pub(crate) fn str_field<'v>(body: &'v Value, key: &str) -> Option<&'v str> {
    body.get(key).and_then(Value::as_str)
}

// === presentation ===

/// Quay's avatar block.
pub fn avatar(name: &str, kind: &str) -> Value {
    const COLORS: &[&str] = &[
        "#969696", "#aec7e8", "#ff7f0e", "#ffbb78", "#2ca02c", "#98df8a", "#d62728", "#ff9896",
        "#9467bd", "#c5b0d5", "#8c564b", "#c49c94", "#e377c2", "#f7b6d2", "#7f7f7f", "#c7c7c7",
        "#bcbd22", "#1f77b4", "#17becf", "#9edae5",
    ];
    let digest = ring::digest::digest(&ring::digest::SHA256, name.as_bytes());
    let hash: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    let color = COLORS[usize::from(digest.as_ref()[0]) % COLORS.len()];
    json!({"name": name, "hash": hash, "color": color, "kind": kind})
}

#[derive(Clone, Copy)]
enum RobotView {
    Created,
    Get,
    Regenerated,
}

fn robot_json(org: &str, short: &str, r: &RobotRecord, view: RobotView) -> Value {
    let mut v = json!({
        "name": format!("{org}+{short}"),
        "created": r.created,
        "last_accessed": r.last_accessed,
        "description": r.description,
        "token": r.token,
    });
    match view {
        RobotView::Created => {
            v["unstructured_metadata"] = r.metadata.clone().map_or(Value::Null, Value::Object)
        }
        RobotView::Get => {
            v["unstructured_metadata"] = Value::Object(r.metadata.clone().unwrap_or_default())
        }
        RobotView::Regenerated => {}
    }
    v
}

fn permission_json(state: &QuayState, org: &str, who: &str, role: Role) -> Value {
    let is_robot = who.contains('+');
    let is_org_member = if is_robot {
        who.split_once('+').is_some_and(|(o, _)| o == org)
    } else {
        state.orgs.get(org).is_some_and(|o| o.is_member(who))
    };
    json!({
        "role": role.as_str(),
        "name": who,
        "is_robot": is_robot,
        "avatar": avatar(who, if is_robot { "robot" } else { "user" }),
        "is_org_member": is_org_member,
    })
}

fn prototype_json(state: &QuayState, org: &str, p: &PrototypeRecord) -> Value {
    let is_robot = p.delegate.contains('+');
    let member = |who: &str| state.orgs.get(org).is_some_and(|o| o.is_member(who));
    let delegate = if p.team_delegate {
        json!({"name": p.delegate, "kind": "team", "avatar": avatar(&p.delegate, "team")})
    } else {
        json!({
            "name": p.delegate,
            "is_robot": is_robot,
            "kind": "user",
            "is_org_member": is_robot || member(&p.delegate),
            "avatar": avatar(&p.delegate, if is_robot { "robot" } else { "user" }),
        })
    };
    json!({
        "activating_user": p.activating_user.as_ref().map(|u| json!({"name": u, "is_robot": false, "kind": "user", "is_org_member": member(u), "avatar": avatar(u, "user")})),
        "delegate": delegate,
        "role": p.role.as_str(),
        "id": p.id,
    })
}

// === permission helpers ===

/// The user if it has the scope, else the right refusal.
pub(crate) fn require_scope<'c>(ctx: &'c Ctx, scope: &str) -> Result<&'c str, Reply> {
    match &ctx.caller {
        Caller::Anonymous => Err(requires_auth(ctx)),
        c @ Caller::User { name, .. } => {
            if c.has_scope(scope) {
                Ok(name)
            } else {
                Err(unauthorized(ctx))
            }
        }
    }
}

pub(crate) fn require_org_admin<'c>(
    state: &QuayState,
    ctx: &'c Ctx,
    org: &str,
) -> Result<&'c str, Reply> {
    let user = require_scope(ctx, "org:admin")?;
    if state.is_org_admin(user, org) {
        Ok(user)
    } else {
        Err(unauthorized(ctx))
    }
}

pub(crate) fn require_repo_role(
    state: &QuayState,
    ctx: &Ctx,
    scope: &str,
    ns: &str,
    repo: &str,
    role: Role,
) -> Result<(), Reply> {
    // Anonymous reads of public repositories are allowed.
    if role == Role::Read
        && state.can_read(ctx.caller.user(), ns, repo)
        && (ctx.caller.user().is_none() || ctx.caller.has_scope(scope))
    {
        return Ok(());
    }
    let user = require_scope(ctx, scope)?;
    match state.repo_role(user, ns, repo) {
        Some(held) if held >= role => Ok(()),
        _ => Err(unauthorized(ctx)),
    }
}

// === user ===

fn get_user(state: &QuayState, ctx: &Ctx) -> R {
    let user = match &ctx.caller {
        c @ Caller::User { name, .. } if c.has_scope("user:read") => name.clone(),
        _ => return Err(requires_auth(ctx)),
    };
    let record = state.users.get(&user).ok_or_else(|| requires_auth(ctx))?;
    if !ctx.caller.has_scope("user:admin") {
        // `user:read` alone: the short body (quay-api-bootstrap.md).
        let orgs: Vec<Value> = state
            .orgs
            .iter()
            .filter(|(_, o)| o.is_member(&user))
            .map(|(name, _)| json!({"name": name, "avatar": avatar(name, "org"), "can_create_repo": true, "public": false}))
            .collect();
        return Ok(Reply::Json(
            200,
            json!({"anonymous": false, "username": user, "avatar": avatar(&user, "user"), "organizations": orgs}),
        ));
    }
    let orgs: Vec<Value> = state
        .orgs
        .iter()
        .filter(|(_, o)| o.is_member(&user))
        .map(|(name, _)| json!({"name": name, "avatar": avatar(name, "org"), "can_create_repo": true, "public": false, "is_org_admin": true, "preferred_namespace": false}))
        .collect();
    let mut body = json!({
        "anonymous": false, "username": user, "avatar": avatar(&user, "user"), "can_create_repo": true,
        "is_me": true, "verified": true, "email": record.email, "logins": [], "invoice_email": false,
        "invoice_email_address": null, "preferred_namespace": false, "tag_expiration_s": 1209600, "prompts": [],
        "company": null, "family_name": null, "given_name": null, "location": null, "is_free_account": true,
        "has_password_set": true, "organizations": orgs,
    });
    // Only a superuser's view names it (recorded: the admin's has
    // `super_user`, a user's full view has no such key).
    if record.super_user && ctx.caller.has_scope("super:user") {
        body["super_user"] = json!(true);
    }
    Ok(Reply::Json(200, body))
}

fn superuser_users(state: &QuayState, ctx: &Ctx) -> R {
    let user = require_scope(ctx, "super:user")?;
    if !state.users.get(user).is_some_and(|u| u.super_user) {
        return Err(unauthorized(ctx));
    }
    let users: Vec<Value> = state.users.iter().map(|(name, u)| json!({
        "kind": "user", "name": name, "username": name, "email": u.email, "verified": true,
        "avatar": avatar(name, "user"), "super_user": u.super_user, "global_readonly_super_user": false, "enabled": true,
    })).collect();
    Ok(Reply::Json(200, json!({ "users": users })))
}

fn discovery() -> Value {
    let paths: Map<String, Value> = [
        "/api/v1/user/",
        "/api/v1/organization/",
        "/api/v1/organization/{orgname}",
        "/api/v1/organization/{orgname}/robots",
        "/api/v1/organization/{orgname}/robots/{robot_shortname}",
        "/api/v1/organization/{orgname}/robots/{robot_shortname}/regenerate",
        "/api/v1/organization/{orgname}/prototypes",
        "/api/v1/organization/{orgname}/prototypes/{prototypeid}",
        "/api/v1/repository",
        "/api/v1/repository/{repository}",
        "/api/v1/repository/{repository}/changevisibility",
        "/api/v1/repository/{repository}/permissions/user/",
        "/api/v1/repository/{repository}/permissions/user/{username}",
        "/api/v1/repository/{repository}/tag/",
        "/api/v1/organization/{orgname}/team/{teamname}",
        "/api/v1/organization/{orgname}/team/{teamname}/members",
        "/api/v1/organization/{orgname}/team/{teamname}/members/{membername}",
        "/api/v1/organization/{orgname}/team/{teamname}/permissions",
        "/api/v1/organization/{orgname}/members",
        "/api/v1/organization/{orgname}/members/{membername}",
        "/api/v1/repository/{repository}/permissions/team/",
        "/api/v1/repository/{repository}/permissions/team/{teamname}",
        "/api/v1/users/{username}",
    ]
    .iter()
    .map(|p| ((*p).to_owned(), json!({})))
    .collect();
    json!({"swagger": "2.0", "info": {"title": "Quay", "version": "v1"}, "paths": paths})
}

// === organizations ===

fn create_org(state: &mut QuayState, ctx: &Ctx) -> R {
    let user = require_scope(ctx, "user:admin")?.to_owned();
    let body = json_body(ctx)?;
    check_fields(
        ctx,
        &body,
        &["name"],
        &[("name", FieldType::String), ("email", FieldType::String)],
        &[],
    )?;
    let name = str_field(&body, "name").unwrap_or_default();
    if let Err(problem) = names::check_namespace_name(name) {
        return Err(invalid(
            ctx,
            &format!("Invalid namespace {name}: {}", problem.quay_message()),
        ));
    }
    if let Some(reason) = state.name_in_use(name) {
        return Err(invalid(ctx, reason));
    }
    state.orgs.insert(
        name.to_owned(),
        OrgRecord::new(name, str_field(&body, "email").unwrap_or_default(), &user),
    );
    Ok(Reply::Json(201, json!("Created")))
}

fn get_org(state: &QuayState, ctx: &Ctx, org: &str) -> R {
    let o = state.orgs.get(org).ok_or_else(|| not_found(ctx))?;
    let admin = ctx
        .caller
        .user()
        .is_some_and(|u| state.is_org_admin(u, org));
    // A token without org:admin sees the public view, even a member's
    // ("org get, token without org:admin", quay-api-teams.md).
    let member = ctx.caller.has_scope("org:admin")
        && (ctx.caller.user().is_some_and(|u| o.is_member(u)) || admin);
    if !member {
        return Ok(Reply::Json(
            200,
            json!({"name": org, "email": "", "avatar": avatar(org, "user"), "is_admin": false, "is_member": false}),
        ));
    }
    let teams: Map<String, Value> = o
        .teams
        .iter()
        .map(|t| (t.name.clone(), crate::teams::team_summary(o, t)))
        .collect();
    let ordered: Vec<&String> = o.teams.iter().map(|t| &t.name).collect();
    Ok(Reply::Json(
        200,
        json!({
            "name": org, "email": o.email, "avatar": avatar(org, "user"), "is_admin": admin, "is_member": true,
            "teams": teams, "ordered_teams": ordered, "invoice_email": false, "invoice_email_address": null,
            "tag_expiration_s": 1209600, "is_free_account": true,
        }),
    ))
}

fn delete_org(state: &mut QuayState, ctx: &Ctx, org: &str) -> R {
    require_org_admin(state, ctx, org)?;
    if state.delete_org(org) {
        Ok(Reply::Empty(204))
    } else {
        Err(not_found(ctx))
    }
}

// === robots ===

fn list_robots(state: &QuayState, ctx: &Ctx, org: &str) -> R {
    require_org_admin(state, ctx, org)?;
    let truthy = |key: &str, default: bool| {
        ctx.query.get(key).map_or(default, |v| {
            matches!(v.to_ascii_lowercase().as_str(), "true" | "1" | "yes")
        })
    };
    let with_token = truthy("token", true);
    let with_perms = truthy("permissions", false);
    let limit: usize = ctx
        .query
        .get("limit")
        .and_then(|l| l.parse().ok())
        .unwrap_or(usize::MAX);
    let robots: Vec<Value> = state
        .orgs
        .get(org)
        .map(|o| {
            o.robots
                .iter()
                .take(limit)
                .map(|(short, r)| {
                    let full = format!("{org}+{short}");
                    let mut v = json!({"name": full, "created": r.created, "last_accessed": r.last_accessed, "description": r.description});
                    if with_perms {
                        let repos: Vec<&String> = o.repos_in_order().into_iter().filter(|(_, repo)| repo.permissions.contains_key(&full)).map(|(n, _)| n).collect();
                        v["teams"] = json!(crate::teams::teams_of(o, &full));
                        v["repositories"] = json!(repos);
                    }
                    if with_token {
                        v["token"] = json!(r.token);
                    }
                    v
                })
                .collect()
        })
        .unwrap_or_default();
    Ok(Reply::Json(200, json!({ "robots": robots })))
}

fn get_robot(state: &QuayState, ctx: &Ctx, org: &str, short: &str) -> R {
    require_org_admin(state, ctx, org)?;
    let o = state
        .orgs
        .get(org)
        .ok_or_else(|| message(400, &format!("Organization does not exist: {org}")))?;
    let r = o
        .robots
        .get(short)
        .ok_or_else(|| message(400, "Could not find robot with specified username"))?;
    Ok(Reply::Json(200, robot_json(org, short, r, RobotView::Get)))
}

fn create_robot(state: &mut QuayState, ctx: &Ctx, org: &str, short: &str) -> R {
    require_org_admin(state, ctx, org)?;
    // The body is optional; Quay reads it leniently.
    let body: Value = if ctx.body.is_empty() {
        json!({})
    } else {
        json_body(ctx).unwrap_or_else(|_| json!({}))
    };
    check_fields(
        ctx,
        &body,
        &[],
        &[
            ("description", FieldType::String),
            ("unstructured_metadata", FieldType::Object),
        ],
        &[],
    )?;
    let description = str_field(&body, "description").unwrap_or_default();
    if description.chars().count() > 255 {
        return Err(schema_error(
            ctx,
            &format!("'{description}' is too long"),
            "maxLength",
            "['properties']['description']",
            &json!(description),
        ));
    }
    if let Err(problem) = names::check_namespace_name(short) {
        return Err(invalid(
            ctx,
            &format!(
                "The name for the robot '{short}' is invalid: {}",
                problem.quay_message()
            ),
        ));
    }
    let o = state
        .orgs
        .get_mut(org)
        .ok_or_else(|| message(400, &format!("Organization does not exist: {org}")))?;
    if o.robots.contains_key(short) {
        return Err(invalid(
            ctx,
            &format!("Existing robot with name: {org}+{short}"),
        ));
    }
    let record = RobotRecord {
        description: description.to_owned(),
        token: random_token(64),
        created: quay_now(),
        metadata: body
            .get("unstructured_metadata")
            .and_then(Value::as_object)
            .cloned(),
        last_accessed: None,
    };
    let reply = robot_json(org, short, &record, RobotView::Created);
    o.robots.insert(short.to_owned(), record);
    Ok(Reply::Json(201, reply))
}

fn delete_robot(state: &mut QuayState, ctx: &Ctx, org: &str, short: &str) -> R {
    require_org_admin(state, ctx, org)?;
    if state.delete_robot(org, short) {
        Ok(Reply::Empty(204))
    } else {
        Err(message(400, "Could not find robot with specified username"))
    }
}

fn regenerate_robot(state: &mut QuayState, ctx: &Ctx, org: &str, short: &str) -> R {
    require_org_admin(state, ctx, org)?;
    // "robot regenerate: missing org" (quay-api-teams.md).
    let r = state
        .orgs
        .get_mut(org)
        .ok_or_else(|| message(400, &format!("Organization does not exist: {org}")))?
        .robots
        .get_mut(short)
        .ok_or_else(|| message(400, "Could not find robot with specified username"))?;
    r.token = random_token(64);
    Ok(Reply::Json(
        200,
        robot_json(org, short, r, RobotView::Regenerated),
    ))
}

fn robot_permissions(state: &QuayState, ctx: &Ctx, org: &str, short: &str) -> R {
    require_org_admin(state, ctx, org)?;
    let o = state
        .orgs
        .get(org)
        .ok_or_else(|| message(400, &format!("Organization does not exist: {org}")))?;
    if !o.robots.contains_key(short) {
        return Err(message(400, "Could not find robot with specified username"));
    }
    let full = format!("{org}+{short}");
    let permissions: Vec<Value> = o
        .repos_in_order()
        .into_iter()
        .filter_map(|(name, r)| r.permissions.get(&full).map(|role| json!({"repository": {"name": name, "is_public": r.public}, "role": role.as_str()})))
        .collect();
    Ok(Reply::Json(200, json!({ "permissions": permissions })))
}

// === prototypes ===

fn list_prototypes(state: &QuayState, ctx: &Ctx, org: &str) -> R {
    require_org_admin(state, ctx, org)?;
    let o = state.orgs.get(org).ok_or_else(|| not_found(ctx))?;
    let list: Vec<Value> = o
        .prototypes
        .iter()
        .map(|p| prototype_json(state, org, p))
        .collect();
    Ok(Reply::Json(200, json!({ "prototypes": list })))
}

fn create_prototype(state: &mut QuayState, ctx: &Ctx, org: &str) -> R {
    require_org_admin(state, ctx, org)?;
    if !state.orgs.contains_key(org) {
        return Err(not_found(ctx));
    }
    let body = json_body(ctx)?;
    check_fields(
        ctx,
        &body,
        &["role", "delegate"],
        &[("delegate", FieldType::Object)],
        // "prototype create bad role" (quay-api-recorded.md).
        &[one_of(
            "role",
            ROLES,
            Some("Role that should be applied to the delegate"),
        )],
    )?;
    let role = str_field(&body, "role")
        .and_then(Role::parse)
        .unwrap_or(Role::Read);
    let delegate = &body["delegate"];
    check_fields(
        ctx,
        delegate,
        &["name", "kind"],
        &[("name", FieldType::String)],
        &[one_of("kind", &["user", "team"], None)],
    )?;
    let name = str_field(delegate, "name").unwrap_or_default();
    let team_delegate = str_field(delegate, "kind") == Some("team");
    if team_delegate && state.orgs.get(org).and_then(|o| o.team(name)).is_none() {
        // "prototype create: missing team" (quay-api-teams.md): a Python
        // tuple repr as the message.
        return Err(message(
            400,
            &format!("('Team does not exist: %s/%s', '{org}', '{name}')"),
        ));
    }
    let exists = if team_delegate {
        true
    } else if name.contains('+') {
        state.robot_exists(name) && name.starts_with(&format!("{org}+"))
    } else {
        state.users.contains_key(name)
    };
    if !exists {
        return Err(invalid(ctx, "Missing delegate user or team"));
    }
    let activating_user = body
        .get("activating_user")
        .and_then(|a| a.get("name"))
        .and_then(Value::as_str)
        .map(str::to_owned);
    if let Some(a) = &activating_user
        && !state.users.contains_key(a)
    {
        return Err(invalid(ctx, "Unknown activating user"));
    }
    let p = PrototypeRecord {
        id: random_uuid(),
        role,
        delegate: name.to_owned(),
        team_delegate,
        activating_user,
    };
    let reply = prototype_json(state, org, &p);
    if let Some(o) = state.orgs.get_mut(org) {
        o.prototypes.push(p);
    }
    Ok(Reply::Json(200, reply))
}

fn update_prototype(state: &mut QuayState, ctx: &Ctx, org: &str, id: &str) -> R {
    require_org_admin(state, ctx, org)?;
    let body = json_body(ctx)?;
    check_fields(ctx, &body, &["role"], &[], &[one_of("role", ROLES, None)])?;
    let role = str_field(&body, "role")
        .and_then(Role::parse)
        .unwrap_or(Role::Read);
    let p = state
        .orgs
        .get_mut(org)
        .and_then(|o| o.prototypes.iter_mut().find(|p| p.id == id))
        .ok_or_else(|| not_found(ctx))?;
    p.role = role;
    let p = p.clone();
    Ok(Reply::Json(200, prototype_json(state, org, &p)))
}

fn delete_prototype(state: &mut QuayState, ctx: &Ctx, org: &str, id: &str) -> R {
    require_org_admin(state, ctx, org)?;
    let o = state.orgs.get_mut(org).ok_or_else(|| not_found(ctx))?;
    let before = o.prototypes.len();
    o.prototypes.retain(|p| p.id != id);
    if o.prototypes.len() == before {
        Err(not_found(ctx))
    } else {
        Ok(Reply::Empty(204))
    }
}

// === repositories ===

const REPO_PAGE: usize = 100;

fn list_repos(state: &QuayState, ctx: &Ctx) -> R {
    if ctx.caller.user().is_some() && !ctx.caller.has_scope("repo:read") {
        return Err(unauthorized(ctx));
    }
    let namespace = ctx.query.get("namespace");
    let public_only = ctx.query.get("public").is_some_and(|v| v == "true");
    if namespace.is_none() && !public_only && ctx.query.get("starred").is_none() {
        return Err(invalid(
            ctx,
            "namespace, starred or public are required for this API call",
        ));
    }
    let user = ctx.caller.user();
    let mut visible: Vec<Value> = Vec::new();
    for (org, o) in &state.orgs {
        if namespace.is_some_and(|n| n != org) {
            continue;
        }
        // Real Quay lists an organization's repositories in creation order.
        for (name, r) in o.repos_in_order() {
            if state.can_read(user, org, name) {
                visible.push(json!({"namespace": org, "name": name, "description": r.description, "is_public": r.public, "kind": r.kind, "state": "NORMAL", "is_starred": false}));
            }
        }
    }
    let offset: usize = ctx
        .query
        .get("next_page")
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    let page: Vec<Value> = visible
        .iter()
        .skip(offset)
        .take(REPO_PAGE)
        .cloned()
        .collect();
    let mut body = json!({ "repositories": page });
    if offset + REPO_PAGE < visible.len() {
        body["next_page"] = json!((offset + REPO_PAGE).to_string());
    }
    Ok(Reply::Json(200, body))
}

fn create_repo(state: &mut QuayState, ctx: &Ctx) -> R {
    let user = require_scope(ctx, "repo:create")?.to_owned();
    let body = json_body(ctx)?;
    check_fields(
        ctx,
        &body,
        &["repository", "visibility", "description"],
        &[
            ("repository", FieldType::String),
            ("namespace", FieldType::String),
            ("description", FieldType::String),
        ],
        &[
            // "repo create bad visibility" (quay-api-recorded.md).
            one_of(
                "visibility",
                &["public", "private"],
                Some("Visibility which the repository will start with"),
            ),
            one_of("repo_kind", &["image", "application"], None),
        ],
    )?;
    let ns = str_field(&body, "namespace").unwrap_or(&user).to_owned();
    let name = str_field(&body, "repository").unwrap_or_default();
    if !names::is_valid_repository_name(name) {
        return Err(invalid(ctx, "Invalid repository name"));
    }
    if !state.orgs.contains_key(&ns) {
        // With superuser full access Quay skips the permission check and
        // then fails on the missing namespace: a real 500.
        return Err(if state.is_superuser_with_access(&user) {
            server_error()
        } else {
            unauthorized(ctx)
        });
    }
    if !state.is_org_admin(&user, &ns) {
        return Err(unauthorized(ctx));
    }
    if state
        .orgs
        .get(&ns)
        .is_some_and(|o| o.repos.contains_key(name))
    {
        return Err(invalid(ctx, "Repository already exists"));
    }
    let public = str_field(&body, "visibility") == Some("public");
    let kind = str_field(&body, "repo_kind").unwrap_or("image").to_owned();
    state.create_repo(
        &ns,
        name,
        public,
        str_field(&body, "description").unwrap_or_default(),
        &kind,
        Some(&user),
    );
    Ok(Reply::Json(
        201,
        json!({"namespace": ns, "name": name, "kind": kind}),
    ))
}

fn get_repo(state: &QuayState, ctx: &Ctx, ns: &str, repo: &str) -> R {
    let exists = state
        .orgs
        .get(ns)
        .is_some_and(|o| o.repos.contains_key(repo));
    if !exists {
        // Admins learn it is missing; others cannot tell missing from forbidden.
        return match ctx.caller.user() {
            Some(u) if state.is_org_admin(u, ns) => Err(not_found(ctx)),
            Some(_) => Err(unauthorized(ctx)),
            None => Err(not_found(ctx)),
        };
    }
    require_repo_role(state, ctx, "repo:read", ns, repo, Role::Read)?;
    let r = &state.orgs[ns].repos[repo];
    let role = ctx.caller.user().and_then(|u| state.repo_role(u, ns, repo));
    let tags: Map<String, Value> = r.tags.iter().map(|(name, t)| (name.clone(), json!({"name": name, "size": t.size, "last_modified": t.last_modified, "manifest_digest": t.digest}))).collect();
    Ok(Reply::Json(
        200,
        json!({
            "namespace": ns, "name": repo, "kind": r.kind, "description": r.description, "is_public": r.public,
            "is_organization": true, "is_starred": false, "status_token": if r.public { "" } else { r.status_token.as_str() },
            "trust_enabled": false, "tag_expiration_s": 1209600, "is_free_account": true, "state": "NORMAL",
            "tags": tags, "can_write": role.is_some_and(|r| r >= Role::Write), "can_admin": role == Some(Role::Admin),
        }),
    ))
}

fn existing_repo<'s>(
    state: &'s mut QuayState,
    ctx: &Ctx,
    ns: &str,
    repo: &str,
) -> Result<&'s mut super::state::RepoRecord, Reply> {
    state
        .orgs
        .get_mut(ns)
        .and_then(|o| o.repos.get_mut(repo))
        .ok_or_else(|| not_found(ctx))
}

fn update_repo(state: &mut QuayState, ctx: &Ctx, ns: &str, repo: &str) -> R {
    require_repo_role(state, ctx, "repo:write", ns, repo, Role::Write)?;
    let body = json_body(ctx)?;
    check_fields(
        ctx,
        &body,
        &["description"],
        &[("description", FieldType::String)],
        &[],
    )?;
    existing_repo(state, ctx, ns, repo)?.description = str_field(&body, "description")
        .unwrap_or_default()
        .to_owned();
    Ok(Reply::Json(200, json!({"success": true})))
}

fn delete_repo(state: &mut QuayState, ctx: &Ctx, ns: &str, repo: &str) -> R {
    require_repo_role(state, ctx, "repo:admin", ns, repo, Role::Admin)?;
    // Idempotent in Quay: 204 even when already gone.
    if let Some(o) = state.orgs.get_mut(ns) {
        o.repos.remove(repo);
    }
    Ok(Reply::Empty(204))
}

fn change_visibility(state: &mut QuayState, ctx: &Ctx, ns: &str, repo: &str) -> R {
    require_repo_role(state, ctx, "repo:admin", ns, repo, Role::Admin)?;
    let body = json_body(ctx)?;
    check_fields(
        ctx,
        &body,
        &["visibility"],
        &[],
        &[one_of("visibility", &["public", "private"], None)],
    )?;
    existing_repo(state, ctx, ns, repo)?.public = str_field(&body, "visibility") == Some("public");
    Ok(Reply::Json(200, json!({"success": true})))
}

fn list_repo_perms(state: &QuayState, ctx: &Ctx, ns: &str, repo: &str) -> R {
    require_repo_role(state, ctx, "repo:admin", ns, repo, Role::Admin)?;
    let r = state
        .orgs
        .get(ns)
        .and_then(|o| o.repos.get(repo))
        .ok_or_else(|| not_found(ctx))?;
    let perms: Map<String, Value> = r
        .permissions
        .iter()
        .map(|(who, role)| (who.clone(), permission_json(state, ns, who, *role)))
        .collect();
    Ok(Reply::Json(200, json!({ "permissions": perms })))
}

fn get_repo_perm(state: &QuayState, ctx: &Ctx, ns: &str, repo: &str, who: &str) -> R {
    require_repo_role(state, ctx, "repo:admin", ns, repo, Role::Admin)?;
    let role = state
        .orgs
        .get(ns)
        .and_then(|o| o.repos.get(repo))
        .and_then(|r| r.permissions.get(who));
    match role {
        Some(role) => Ok(Reply::Json(200, permission_json(state, ns, who, *role))),
        None => Err(message(400, "User does not have permission for repo.")),
    }
}

fn put_repo_perm(state: &mut QuayState, ctx: &Ctx, ns: &str, repo: &str, who: &str) -> R {
    require_repo_role(state, ctx, "repo:admin", ns, repo, Role::Admin)?;
    let body = json_body(ctx)?;
    check_fields(
        ctx,
        &body,
        &["role"],
        &[],
        // "repo perm set robot bad role" (quay-api-recorded.md).
        &[one_of("role", ROLES, Some("Role to use for the user"))],
    )?;
    let role = str_field(&body, "role")
        .and_then(Role::parse)
        .unwrap_or(Role::Read);
    let known = if who.contains('+') {
        state.robot_exists(who)
    } else {
        state.users.contains_key(who)
    };
    if !known {
        return Err(invalid(ctx, &format!("Invalid username: {who}")));
    }
    let Some(r) = state.orgs.get_mut(ns).and_then(|o| o.repos.get_mut(repo)) else {
        // Real Quay: superuser full access skips the check, then crashes.
        return Err(server_error());
    };
    r.permissions.insert(who.to_owned(), role);
    Ok(Reply::Json(200, permission_json(state, ns, who, role)))
}

fn delete_repo_perm(state: &mut QuayState, ctx: &Ctx, ns: &str, repo: &str, who: &str) -> R {
    require_repo_role(state, ctx, "repo:admin", ns, repo, Role::Admin)?;
    let removed = state
        .orgs
        .get_mut(ns)
        .and_then(|o| o.repos.get_mut(repo))
        .and_then(|r| r.permissions.remove(who));
    match removed {
        Some(_) => Ok(Reply::Empty(204)),
        None => Err(invalid(ctx, "User does not have permission for repo.")),
    }
}

fn list_tags(state: &QuayState, ctx: &Ctx, ns: &str, repo: &str) -> R {
    let r = state
        .orgs
        .get(ns)
        .and_then(|o| o.repos.get(repo))
        .ok_or_else(|| not_found(ctx))?;
    require_repo_role(state, ctx, "repo:read", ns, repo, Role::Read)?;
    let limit = ctx
        .query
        .get("limit")
        .and_then(|l| l.parse::<usize>().ok())
        .unwrap_or(50)
        .clamp(1, 100);
    let page = ctx
        .query
        .get("page")
        .and_then(|p| p.parse::<usize>().ok())
        .unwrap_or(1)
        .max(1);
    let specific = ctx.query.get("specificTag");
    let mut tags: Vec<(&String, &super::state::TagRecord)> = r
        .tags
        .iter()
        .filter(|(name, _)| specific.is_none_or(|s| s == *name))
        .collect();
    tags.sort_by(|a, b| b.1.start_ts.cmp(&a.1.start_ts).then(a.0.cmp(b.0)));
    let total = tags.len();
    let items: Vec<Value> = tags
        .into_iter()
        .skip((page - 1) * limit)
        .take(limit)
        .map(|(name, t)| json!({"name": name, "reversion": false, "start_ts": t.start_ts, "manifest_digest": t.digest, "is_manifest_list": false, "size": t.size, "last_modified": t.last_modified}))
        .collect();
    Ok(Reply::Json(
        200,
        json!({"tags": items, "page": page, "has_additional": page * limit < total}),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_and_templates() {
        assert_eq!(route("/api/v1/user/"), Route::User);
        assert_eq!(route("/api/v1/user"), Route::AddSlash);
        assert_eq!(route("/api/v1/organization"), Route::AddSlash);
        assert_eq!(route("/api/v1/repository/"), Route::NotAllowed);
        assert_eq!(
            route("/api/v1/organization/o/robots/b"),
            Route::Robot("o".into(), "b".into())
        );
        assert_eq!(
            route("/api/v1/repository/o/r/permissions/user/o%2Bb"),
            Route::RepoPerm("o".into(), "r".into(), "o+b".into())
        );
        assert_eq!(
            route("/api/v1/repository/o/r/permissions/user/o+b").template(),
            "/api/v1/repository/{org}/{repo}/permissions/user/{user}"
        );
        assert_eq!(route("/api/v1/nothing"), Route::Unknown);
        assert_eq!(route("/elsewhere"), Route::Unknown);
    }

    #[test]
    fn percent_decoding_is_lenient() {
        assert_eq!(percent_decode("a%2Bb"), "a+b");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz"), "%zz");
        assert_eq!(percent_decode("%2"), "%2");
        assert_eq!(percent_decode("%é1"), "%é1");
        assert_eq!(percent_decode("a%41"), "aA");
    }

    #[test]
    fn python_repr_matches_jsonschema_output() {
        assert_eq!(
            python_repr(&json!({"email": "x7@example.com"})),
            "{'email': 'x7@example.com'}"
        );
        assert_eq!(python_repr(&json!("owner")), "'owner'");
    }
}
