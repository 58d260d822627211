//! Signing in and minting API tokens without a browser, as a real Quay
//! answers (shared reference `quay-api-bootstrap.md`): the CSRF pair and
//! the session cookie, sign-in with its per-user backoff, organizations'
//! OAuth applications, `/oauth/authorizeapp`, the applications' tokens API,
//! and the superuser's user updates (password, enabled).

use crate::api::{
    Ctx, FieldType, R, Reply, avatar, check_fields, json_body, message, not_found, require_scope,
    server_error, str_field, unauthorized,
};
use crate::state::{ALL_SCOPES, AppRecord, QuayState, Session, scope_satisfied};
use bridge_common::random::random_token;
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

/// The session cookie's name (`SESSION_COOKIE_NAME`).
pub const COOKIE: &str = "_csrf_token";

/// How long a signed-in session's cookie lasts (31 days).
const SESSION_DAYS: i64 = 31;

fn cookie_header(value: &str, signed_in: bool) -> String {
    if signed_in {
        let expires = jiff::Timestamp::now()
            .checked_add(jiff::SignedDuration::from_hours(24 * SESSION_DAYS))
            .unwrap_or_else(|_| jiff::Timestamp::now());
        format!(
            "{COOKIE}={value}; Expires={}; HttpOnly; Path=/; SameSite=Lax",
            expires.strftime("%a, %d %b %Y %H:%M:%S GMT")
        )
    } else {
        format!("{COOKIE}={value}; HttpOnly; Path=/; SameSite=Lax")
    }
}

/// Quay's date format (`Tue, 24 Nov 2026 15:52:46 -0000`).
fn quay_date(t: jiff::Timestamp) -> String {
    t.strftime("%a, %d %b %Y %H:%M:%S -0000").to_string()
}

/// Whether the request carried its session's CSRF token.
pub(crate) fn csrf_ok(state: &QuayState, ctx: &Ctx) -> bool {
    match (ctx.cookie.and_then(|c| state.sessions.get(c)), ctx.csrf) {
        (Some(session), Some(token)) => session.csrf == token,
        _ => false,
    }
}

fn csrf_refusal(state: &QuayState, ctx: &Ctx) -> Reply {
    match state.session_user(ctx.cookie) {
        Some(user) => Reply::CsrfUser(user.to_owned()),
        None => Reply::Csrf,
    }
}

/// `GET /csrf_token`: the session's CSRF token, opening an anonymous
/// session when the request carried none.
pub fn csrf_token(state: &mut QuayState, cookie: Option<&str>) -> Reply {
    let (value, session) = match cookie.and_then(|c| state.sessions.get(c).map(|s| (c, s))) {
        Some((c, s)) => (c.to_owned(), s.clone()),
        None => {
            let value = random_token(64);
            let session = Session {
                user: None,
                csrf: random_token(64),
            };
            state.sessions.insert(value.clone(), session.clone());
            (value, session)
        }
    };
    Reply::Raw {
        status: 200,
        content_type: "application/json",
        body: json!({"csrf_token": session.csrf}).to_string(),
        headers: vec![("set-cookie", cookie_header(&value, session.user.is_some()))],
    }
}

fn bad_credentials(text: &str) -> Reply {
    Reply::Json(
        403,
        json!({"needsEmailVerification": false, "invalidCredentials": true, "message": text}),
    )
}

/// Opens a signed-in session for `user`: the answer carries `body`, the
/// new session cookie and its CSRF token (`X-Next-CSRF-Token`).
fn signed_in(state: &mut QuayState, user: &str, body: Value) -> Reply {
    let value = random_token(64);
    let csrf = random_token(64);
    state.sessions.insert(
        value.clone(),
        Session {
            user: Some(user.to_owned()),
            csrf: csrf.clone(),
        },
    );
    Reply::Raw {
        status: 200,
        content_type: "application/json",
        body: body.to_string(),
        headers: vec![
            ("x-next-csrf-token", csrf),
            ("set-cookie", cookie_header(&value, true)),
        ],
    }
}

/// A JSON body with `username` and `password` (and maybe `email`), as
/// sign-in and first-user initialization take it.
fn credentials_body(ctx: &Ctx) -> Result<Value, Reply> {
    let body = json_body(ctx)?;
    check_fields(
        ctx,
        &body,
        &["username", "password"],
        &[
            ("username", FieldType::String),
            ("password", FieldType::String),
            ("email", FieldType::String),
        ],
        &[],
    )?;
    Ok(body)
}

/// `POST /api/v1/signin`.
pub(crate) fn signin(state: &mut QuayState, ctx: &Ctx) -> R {
    if !csrf_ok(state, ctx) {
        return Err(csrf_refusal(state, ctx));
    }
    let body = credentials_body(ctx)?;
    let name = str_field(&body, "username").unwrap_or_default();
    let password = str_field(&body, "password").unwrap_or_default();
    let now = Instant::now();
    let Some(user) = state.users.get_mut(name) else {
        return Err(bad_credentials("Invalid Username or Password"));
    };
    // `util/backoff.py`: inside the window even the right password is
    // refused, and a refusal does not extend it.
    if let Some(until) = user.backoff_until
        && until > now
    {
        return Err(Reply::Raw {
            status: 429,
            content_type: "text/html; charset=utf-8",
            body: "Too many login attempts. \nPlease reset your Quay password and try again."
                .into(),
            headers: vec![(
                "retry-after",
                until.duration_since(now).as_secs().to_string(),
            )],
        });
    }
    if user.password != password {
        user.failed_logins = user.failed_logins.saturating_add(1);
        let n = user.failed_logins.min(20);
        let wait = Duration::from_millis(500 * ((1u64 << n) - 1));
        user.backoff_until = Some(now + wait);
        return Err(bad_credentials("Invalid Username or Password"));
    }
    if !user.enabled {
        return Err(bad_credentials(
            "This user has been disabled. Please contact your administrator.",
        ));
    }
    user.failed_logins = 0;
    user.backoff_until = None;
    if let Some(old) = ctx.cookie {
        state.sessions.remove(old);
    }
    Ok(signed_in(state, name, json!({"success": true})))
}

/// `POST /api/v1/signout`: the session ends; a fresh one is handed out.
pub(crate) fn signout(state: &mut QuayState, ctx: &Ctx) -> R {
    if let Some(old) = ctx.cookie {
        state.sessions.remove(old);
    }
    let value = random_token(64);
    state.sessions.insert(
        value.clone(),
        Session {
            user: None,
            csrf: random_token(64),
        },
    );
    Ok(Reply::Raw {
        status: 200,
        content_type: "application/json",
        body: json!({"success": true}).to_string(),
        headers: vec![("set-cookie", cookie_header(&value, true))],
    })
}

/// `POST /api/v1/user/initialize` (`endpoints/web.py` `user_initialize`,
/// read from Quay's source: the recording did not run it): the first user
/// of an empty Quay, signed in, and with `access_token` an all-scope token
/// of an `automation` application in the user's namespace that lives
/// 9000 s.
pub(crate) fn initialize_user(state: &mut QuayState, ctx: &Ctx) -> R {
    if !state.user_initialize {
        return Err(not_found(ctx));
    }
    if !state.users.is_empty() || !state.orgs.is_empty() {
        return Err(message(
            400,
            "Cannot initialize user in a non-empty database",
        ));
    }
    let body = credentials_body(ctx)?;
    let name = str_field(&body, "username").unwrap_or_default();
    let password = str_field(&body, "password").unwrap_or_default();
    if let Err(problem) = crate::names::check_namespace_name(name) {
        return Err(message(
            400,
            &format!("Failed to initialize user: {}", problem.quay_message()),
        ));
    }
    let email = str_field(&body, "email").map(str::to_owned);
    state.add_user(name, password, false);
    if let (Some(u), Some(e)) = (state.users.get_mut(name), &email) {
        e.clone_into(&mut u.email);
    }
    let mut answer = json!({"username": name, "email": email,
        "encrypted_password": format!("$2b$12${}", random_token(53))});
    if body
        .get("access_token")
        .is_some_and(|v| v.as_bool() == Some(true))
    {
        state.apps.insert(
            name.to_owned(),
            AppRecord {
                org: name.to_owned(),
                name: "automation".into(),
                description: String::new(),
                application_uri: String::new(),
                redirect_uri: String::new(),
                client_secret: random_token(40),
            },
        );
        let scopes = ALL_SCOPES.iter().map(|s| (*s).to_owned()).collect();
        let token = state.mint_app_token(name, name, scopes, None, Duration::from_secs(9000));
        answer["access_token"] = json!(token);
    }
    Ok(signed_in(state, name, answer))
}

// === OAuth applications ===

fn require_org_admin<'c>(state: &QuayState, ctx: &'c Ctx, org: &str) -> Result<&'c str, Reply> {
    // The applications' endpoints answer 401 without `session_required`
    // ("T_APP3 after that", quay-api-bootstrap.md).
    if ctx.caller.user().is_none() {
        return Err(crate::api::requires_auth_plain(ctx));
    }
    let user = require_scope(ctx, "org:admin")?;
    if state.is_org_admin(user, org) {
        Ok(user)
    } else {
        Err(unauthorized(ctx))
    }
}

fn app_json(id: &str, a: &AppRecord) -> Value {
    json!({
        "name": a.name, "description": a.description, "application_uri": a.application_uri,
        "client_id": id, "client_secret": a.client_secret, "redirect_uri": a.redirect_uri,
        "avatar_email": null,
    })
}

fn app_of<'s>(
    state: &'s QuayState,
    ctx: &Ctx,
    org: &str,
    id: &str,
) -> Result<&'s AppRecord, Reply> {
    match state.apps.get(id) {
        Some(a) if a.org == org => Ok(a),
        _ => Err(not_found(ctx)),
    }
}

/// `GET /organization/{org}/applications`.
pub(crate) fn list_apps(state: &QuayState, ctx: &Ctx, org: &str) -> R {
    require_org_admin(state, ctx, org)?;
    let apps: Vec<Value> = state
        .apps
        .iter()
        .filter(|(_, a)| a.org == org)
        .map(|(id, a)| app_json(id, a))
        .collect();
    Ok(Reply::Json(200, json!({ "applications": apps })))
}

/// `POST /organization/{org}/applications`.
pub(crate) fn create_app(state: &mut QuayState, ctx: &Ctx, org: &str) -> R {
    require_org_admin(state, ctx, org)?;
    if !state.orgs.contains_key(org) {
        return Err(not_found(ctx));
    }
    let body = json_body(ctx)?;
    check_fields(
        ctx,
        &body,
        &["name"],
        &[
            ("name", FieldType::String),
            ("redirect_uri", FieldType::String),
            ("application_uri", FieldType::String),
            ("description", FieldType::String),
        ],
        &[],
    )?;
    let field = |k: &str| str_field(&body, k).unwrap_or_default().to_owned();
    let id = random_token(20);
    let app = AppRecord {
        org: org.to_owned(),
        name: field("name"),
        description: field("description"),
        application_uri: field("application_uri"),
        redirect_uri: field("redirect_uri"),
        client_secret: random_token(40),
    };
    let answer = app_json(&id, &app);
    state.apps.insert(id, app);
    Ok(Reply::Json(200, answer))
}

/// `GET /organization/{org}/applications/{client_id}`.
pub(crate) fn get_app(state: &QuayState, ctx: &Ctx, org: &str, id: &str) -> R {
    require_org_admin(state, ctx, org)?;
    Ok(Reply::Json(200, app_json(id, app_of(state, ctx, org, id)?)))
}

/// `DELETE /organization/{org}/applications/{client_id}`: the app and its
/// tokens are gone; deleting it with one of its own tokens answers 500
/// (Quay fails after the delete, recorded).
pub(crate) fn delete_app(state: &mut QuayState, ctx: &Ctx, org: &str, id: &str) -> R {
    require_org_admin(state, ctx, org)?;
    app_of(state, ctx, org, id)?;
    state.delete_app(id);
    if ctx.token_app.as_deref() == Some(id) {
        return Err(server_error());
    }
    Ok(Reply::Empty(204))
}

/// `POST /organization/{org}/applications/{client_id}/resetclientsecret`:
/// tokens survive it.
pub(crate) fn reset_secret(state: &mut QuayState, ctx: &Ctx, org: &str, id: &str) -> R {
    require_org_admin(state, ctx, org)?;
    app_of(state, ctx, org, id)?;
    let app = state.apps.get_mut(id).ok_or_else(|| not_found(ctx))?;
    app.client_secret = random_token(40);
    Ok(Reply::Json(200, app_json(id, app)))
}

// === the applications' tokens API ===

fn token_json(t: &crate::state::TokenRecord) -> Value {
    let expires = t
        .created
        .checked_add(jiff::SignedDuration::from_secs(
            i64::try_from(t.lifetime.as_secs()).unwrap_or(i64::MAX),
        ))
        .unwrap_or(t.created);
    json!({
        "uuid": t.uuid, "name": t.name, "scope": t.scopes.iter().cloned().collect::<Vec<_>>().join(" "),
        "expires_at": quay_date(expires), "created": quay_date(t.created), "created_by": t.user,
        "last_accessed": t.last_accessed.map(quay_date),
    })
}

/// Parses a space-separated scope list; `Err(scope)` names an unknown one.
pub(crate) fn parse_scopes(text: &str) -> Result<BTreeSet<String>, String> {
    let mut scopes = BTreeSet::new();
    for s in text.split_whitespace() {
        if !ALL_SCOPES.contains(&s) {
            return Err(s.to_owned());
        }
        scopes.insert(s.to_owned());
    }
    if scopes.is_empty() {
        return Err(text.to_owned());
    }
    Ok(scopes)
}

/// `GET …/applications/{client_id}/tokens`.
pub(crate) fn list_tokens(state: &QuayState, ctx: &Ctx, org: &str, id: &str) -> R {
    require_org_admin(state, ctx, org)?;
    app_of(state, ctx, org, id)?;
    let mut tokens: Vec<&crate::state::TokenRecord> = state
        .tokens
        .values()
        .filter(|t| t.app.as_deref() == Some(id))
        .collect();
    tokens.sort_by_key(|t| std::cmp::Reverse(t.created));
    let tokens: Vec<Value> = tokens.into_iter().map(token_json).collect();
    Ok(Reply::Json(200, json!({ "tokens": tokens })))
}

/// `POST …/applications/{client_id}/tokens` `{"name", "scope",
/// "expiration"?}`: a token no broader than the caller's own
/// (`_can_mint_scope`), shown only in this answer.
pub(crate) fn create_token(state: &mut QuayState, ctx: &Ctx, org: &str, id: &str) -> R {
    let user = require_org_admin(state, ctx, org)?.to_owned();
    app_of(state, ctx, org, id)?;
    let body = json_body(ctx)?;
    check_fields(
        ctx,
        &body,
        &["name", "scope"],
        &[("name", FieldType::String), ("scope", FieldType::String)],
        &[],
    )?;
    let scopes = parse_scopes(str_field(&body, "scope").unwrap_or_default())
        .map_err(|bad| message(400, &format!("Invalid scope: {bad}")))?;
    let superuser = state.users.get(&user).is_some_and(|u| u.super_user);
    let held: BTreeSet<String> = match &ctx.caller {
        crate::state::Caller::User { scopes, .. } => scopes.clone(),
        crate::state::Caller::Anonymous => BTreeSet::new(),
    };
    if scopes
        .iter()
        .any(|s| !scope_satisfied(&held, s) || (s == "super:user" && !superuser))
    {
        return Err(unauthorized(ctx));
    }
    let lifetime = match body.get("expiration") {
        None | Some(Value::Null) => crate::state::DEFAULT_TOKEN_LIFETIME,
        Some(v) => match v.as_u64() {
            Some(secs) if secs > 0 => Duration::from_secs(secs),
            _ => return Err(message(400, "Invalid expiration")),
        },
    };
    let name = str_field(&body, "name").map(str::to_owned);
    let token = state.mint_app_token(id, &user, scopes, name, lifetime);
    let record = state.tokens.get(&token).ok_or_else(server_error)?;
    let mut answer = token_json(record);
    answer["token"] = json!(token);
    Ok(Reply::Json(200, answer))
}

/// `DELETE …/applications/{client_id}/tokens/{uuid}`.
pub(crate) fn delete_token(state: &mut QuayState, ctx: &Ctx, org: &str, id: &str, uuid: &str) -> R {
    require_org_admin(state, ctx, org)?;
    app_of(state, ctx, org, id)?;
    let before = state.tokens.len();
    state
        .tokens
        .retain(|_, t| !(t.app.as_deref() == Some(id) && t.uuid == uuid));
    if state.tokens.len() == before {
        return Err(not_found(ctx));
    }
    Ok(Reply::Empty(204))
}

// === superuser user updates ===

/// `PUT /superuser/users/{name}` `{"password"?, "enabled"?}`: answers the
/// user as it was before the change (recorded). A new password ends the
/// user's sessions; a disabled user's tokens are suspended.
pub(crate) fn update_user(state: &mut QuayState, ctx: &Ctx, name: &str) -> R {
    let caller = require_scope(ctx, "super:user")?;
    if !state.users.get(caller).is_some_and(|u| u.super_user) {
        return Err(unauthorized(ctx));
    }
    let body = json_body(ctx)?;
    let user = state.users.get_mut(name).ok_or_else(|| not_found(ctx))?;
    let mut answer = json!({"kind": "user", "name": name, "username": name, "email": user.email,
        "verified": true, "avatar": avatar(name, "user"), "super_user": user.super_user,
        "global_readonly_super_user": false, "enabled": user.enabled});
    let mut password_changed = false;
    if let Some(p) = str_field(&body, "password") {
        p.clone_into(&mut user.password);
        answer["encrypted_password"] = json!(format!("$2b$12${}", random_token(53)));
        password_changed = true;
    }
    if let Some(e) = body.get("enabled").and_then(Value::as_bool) {
        user.enabled = e;
    }
    if password_changed {
        state
            .sessions
            .retain(|_, s| s.user.as_deref() != Some(name));
    }
    Ok(Reply::Json(200, answer))
}

// === /oauth/authorizeapp ===

/// What `/oauth/authorizeapp` was sent.
pub struct AuthorizeRequest<'a> {
    /// `scheme://host[:port]` of the request.
    pub base: &'a str,
    /// The session cookie.
    pub cookie: Option<&'a str>,
    /// `Authorization: Basic` user and password.
    pub basic: Option<(String, String)>,
    /// `X-CSRF-Token` header.
    pub csrf_header: Option<&'a str>,
    /// Form and query fields.
    pub fields: &'a std::collections::BTreeMap<String, String>,
}

fn html_401() -> Reply {
    Reply::Raw {
        status: 401,
        content_type: "text/html; charset=utf-8",
        body: "<!doctype html>\n<html lang=en>\n<title>401 Unauthorized</title>\n<h1>Unauthorized</h1>\n<p>The server could not verify that you are authorized to access the URL requested. You either supplied the wrong credentials (e.g. a bad password), or your browser doesn&#39;t understand how to supply the credentials required.</p>\n".into(),
        headers: Vec::new(),
    }
}

fn found(location: String) -> Reply {
    Reply::Raw {
        status: 302,
        content_type: "text/html; charset=utf-8",
        body: String::new(),
        headers: vec![("location", location)],
    }
}

/// Whether `redirect` is the app's redirect URI (same scheme and host, a
/// path below it) or Quay's own `/oauth/localapp`.
fn redirect_allowed(app: &AppRecord, redirect: &str, base: &str) -> bool {
    if redirect == format!("{base}/oauth/localapp") {
        return true;
    }
    let origin = |u: &str| -> Option<(String, String)> {
        let (scheme, rest) = u.split_once("://")?;
        let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        Some((format!("{scheme}://{host}"), path.to_owned()))
    };
    match (origin(&app.redirect_uri), origin(redirect)) {
        (Some((ao, ap)), Some((ro, rp))) => ao == ro && rp.starts_with(&ap),
        _ => false,
    }
}

fn form_encode(text: &str) -> String {
    let mut out = String::new();
    for b in text.bytes() {
        match b {
            b' ' => out.push('+'),
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char);
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// `POST /oauth/authorizeapp` (implicit grant, no consent page): 302 to the
/// redirect URI with the token in the fragment, or `?error=…`.
pub fn authorize_app(state: &mut QuayState, req: &AuthorizeRequest<'_>) -> Reply {
    let user = match &req.basic {
        Some((name, password)) => match state.users.get(name) {
            Some(u) if u.enabled && &u.password == password => name.clone(),
            _ => return html_401(),
        },
        None => match state.session_user(req.cookie) {
            Some(u) => u.to_owned(),
            None => return html_401(),
        },
    };
    let offered = req
        .csrf_header
        .or(req.fields.get("_csrf_token").map(String::as_str));
    let csrf_ok = match (req.cookie.and_then(|c| state.sessions.get(c)), offered) {
        (Some(s), Some(t)) => s.csrf == t,
        _ => false,
    };
    if !csrf_ok {
        return Reply::CsrfUser(user);
    }
    let invalid_request = Reply::Raw {
        status: 400,
        content_type: "application/json;charset=UTF-8",
        body: json!({"error": "invalid_request"}).to_string(),
        headers: Vec::new(),
    };
    let Some(redirect) = req.fields.get("redirect_uri").filter(|r| !r.is_empty()) else {
        return invalid_request;
    };
    let client_id = req.fields.get("client_id").cloned().unwrap_or_default();
    let Some(app) = state.apps.get(&client_id).cloned() else {
        return found(format!("{redirect}?error=unauthorized_client"));
    };
    if !redirect_allowed(&app, redirect, req.base) {
        return invalid_request;
    }
    if !state.is_org_admin(&user, &app.org) {
        return found(format!("{redirect}?error=unauthorized_client"));
    }
    let scope_text = req.fields.get("scope").cloned().unwrap_or_default();
    let superuser = state.users.get(&user).is_some_and(|u| u.super_user);
    let scopes = match parse_scopes(&scope_text) {
        Ok(s) if superuser || !s.contains("super:user") => s,
        _ => return found(format!("{redirect}?error=invalid_scope")),
    };
    let lifetime = crate::state::DEFAULT_TOKEN_LIFETIME;
    let token = state.mint_app_token(&client_id, &user, scopes, None, lifetime);
    found(format!(
        "{redirect}?scope={}#access_token={token}&token_type=Bearer&expires_in={}",
        form_encode(&scope_text),
        lifetime.as_secs()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_parse_like_quay() {
        assert_eq!(
            parse_scopes("repo:read org:admin").unwrap().len(),
            2,
            "space separated"
        );
        assert_eq!(
            parse_scopes("repo:read bogus:scope"),
            Err("bogus:scope".into())
        );
        assert!(parse_scopes("").is_err());
    }

    #[test]
    fn redirects_are_checked_like_quay() {
        let app = AppRecord {
            org: "o".into(),
            name: "a".into(),
            description: String::new(),
            application_uri: String::new(),
            redirect_uri: "http://localhost:8765/operator/callback".into(),
            client_secret: String::new(),
        };
        let base = "http://127.0.0.1:8089";
        assert!(redirect_allowed(
            &app,
            "http://localhost:8765/operator/callback",
            base
        ));
        assert!(redirect_allowed(
            &app,
            "http://localhost:8765/operator/callback/x",
            base
        ));
        assert!(redirect_allowed(
            &app,
            "http://127.0.0.1:8089/oauth/localapp",
            base
        ));
        assert!(!redirect_allowed(&app, "http://evil.example/cb", base));
        assert!(!redirect_allowed(
            &app,
            "https://localhost:8765/operator/callback",
            base
        ));
    }

    #[test]
    fn the_redirect_scope_is_form_encoded() {
        assert_eq!(
            form_encode("org:admin repo:read"),
            "org%3Aadmin+repo%3Aread"
        );
    }
}
