//! The embedded Quay server: the REST API, the registry, fault injection,
//! a request log, and a control surface under `/_sandbox/quay/` (admin token
//! required) for inspecting state and setting faults at run time.

use super::api::{self, Ctx, Reply};
use super::faults::{FaultAction, FaultConfig, Faults, RequestLog, RequestRecord};
use super::registry::{self, RegRequest};
use super::state::{ALL_SCOPES, Caller, QuayState, TeamRole, random_token};
use crate::Role;
use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use bridge_common::net::{self, ConnectionDropper, NetError, ServerHandle};
use bridge_common::secret::SecretString;
use bytes::Bytes;
use http::header::{CONTENT_TYPE, HOST, LOCATION};
use http::{HeaderValue, StatusCode};
use serde::Serialize;
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// How to run the embedded Quay.
#[derive(Clone)]
pub struct EmbeddedQuayConfig {
    /// Address to listen on (`127.0.0.1:0` picks a free port).
    pub listen: String,
    /// The superuser that owns the admin token.
    pub admin_user: String,
    /// Its password (for registry logins).
    pub admin_password: SecretString,
    /// The admin OAuth token (all scopes); random when `None`.
    pub admin_token: Option<SecretString>,
    /// Serve HTTPS with this configuration.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Quay's `FEATURE_SUPERUSERS_FULL_ACCESS` (on in the recorded Quay).
    pub superusers_full_access: bool,
    /// How long a deleted organization's name stays unavailable (Quay's
    /// namespace garbage collection).
    pub deleted_name_hold: Duration,
    /// Serve below this path prefix (e.g. `/quay`), as Quay behind a
    /// reverse proxy; empty for the root.
    pub path_prefix: String,
    /// Quay's `FEATURE_USER_INITIALIZE` (off by default, as in Quay):
    /// `POST /api/v1/user/initialize` creates the first user of an empty
    /// Quay.
    pub user_initialize: bool,
    /// Start with no user at all (a fresh Quay): the admin token then
    /// authenticates only the sandbox control API.
    pub without_users: bool,
}

impl std::fmt::Debug for EmbeddedQuayConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedQuayConfig")
            .field("listen", &self.listen)
            .field("admin_user", &self.admin_user)
            .field("admin_token", &self.admin_token)
            .field("tls", &self.tls.is_some())
            .finish_non_exhaustive()
    }
}

impl Default for EmbeddedQuayConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:0".into(),
            admin_user: "admin".into(),
            admin_password: SecretString::new(random_token(24)),
            admin_token: None,
            tls: None,
            superusers_full_access: true,
            deleted_name_hold: Duration::from_secs(2),
            path_prefix: String::new(),
            user_initialize: false,
            without_users: false,
        }
    }
}

struct Inner {
    state: Mutex<QuayState>,
    faults: Mutex<Faults>,
    /// The workers when `FaultConfig::capacity` limits them.
    workers: Mutex<Option<(u32, Arc<tokio::sync::Semaphore>)>>,
    /// Requests being served now, and the most ever served at once.
    serving: Mutex<(u32, u32)>,
    log: Mutex<RequestLog>,
    scheme: &'static str,
    admin_token: SecretString,
    path_prefix: String,
}

/// One request being served (counted for [`EmbeddedQuay::peak_serving`]).
struct Serving<'a>(&'a Inner);

impl<'a> Serving<'a> {
    fn start(inner: &'a Inner) -> Self {
        let mut s = lock(&inner.serving);
        s.0 += 1;
        s.1 = s.1.max(s.0);
        Serving(inner)
    }
}

impl Drop for Serving<'_> {
    fn drop(&mut self) {
        let mut s = lock(&self.0.serving);
        s.0 = s.0.saturating_sub(1);
    }
}

impl Inner {
    /// Sets the faults, and the workers when the capacity changes.
    fn set_faults(&self, config: FaultConfig, seed: Option<u64>) {
        let mut workers = lock(&self.workers);
        match config.capacity {
            None => *workers = None,
            Some(n) if workers.as_ref().is_some_and(|(c, _)| *c == n) => {}
            Some(n) => {
                let permits = usize::try_from(n.max(1)).unwrap_or(1);
                *workers = Some((n, Arc::new(tokio::sync::Semaphore::new(permits))));
            }
        }
        lock(&self.faults).set(config, seed);
    }
}

/// Locks a mutex, recovering the data if a holder panicked.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A running embedded Quay.
pub struct EmbeddedQuay {
    inner: Arc<Inner>,
    server: ServerHandle,
    admin_user: String,
}

impl std::fmt::Debug for EmbeddedQuay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedQuay")
            .field("url", &self.url())
            .finish_non_exhaustive()
    }
}

/// What the state endpoint shows (robot tokens left out).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Snapshot {
    /// Organizations by name.
    pub organizations: BTreeMap<String, OrgSnapshot>,
}

/// One organization.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct OrgSnapshot {
    /// Members of the owners team.
    pub owners: Vec<String>,
    /// Teams by name.
    pub teams: BTreeMap<String, TeamSnapshot>,
    /// Robots by short name, with their descriptions.
    pub robots: BTreeMap<String, String>,
    /// Default permissions for users and robots as (delegate, role).
    pub prototypes: Vec<(String, Role)>,
    /// Default permissions for teams as (team, role).
    pub team_prototypes: Vec<(String, Role)>,
    /// Repositories by name.
    pub repositories: BTreeMap<String, RepoSnapshot>,
}

/// One team.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct TeamSnapshot {
    /// Its role in the organization.
    pub role: TeamRole,
    /// Its description.
    pub description: String,
    /// Its members (users and robots), in the order they joined.
    pub members: Vec<String>,
}

/// One repository.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RepoSnapshot {
    /// Whether it is public.
    pub public: bool,
    /// Explicit permissions.
    pub permissions: BTreeMap<String, Role>,
    /// Team permissions.
    pub team_permissions: BTreeMap<String, Role>,
    /// Tags and their manifest digests.
    pub tags: BTreeMap<String, String>,
}

impl EmbeddedQuay {
    /// Starts the server.
    pub async fn start(config: EmbeddedQuayConfig) -> Result<Self, NetError> {
        let EmbeddedQuayConfig {
            listen,
            admin_user,
            admin_password,
            admin_token,
            tls,
            superusers_full_access,
            deleted_name_hold,
            path_prefix,
            user_initialize,
            without_users,
        } = config;
        let admin_token = admin_token.unwrap_or_else(|| SecretString::new(random_token(40)));
        let mut state = QuayState::new(superusers_full_access, deleted_name_hold);
        state.user_initialize = user_initialize;
        if !without_users {
            state.add_user(&admin_user, admin_password.expose(), true);
            state.add_token(admin_token.expose(), &admin_user, ALL_SCOPES, None);
        }
        let inner = Arc::new(Inner {
            state: Mutex::new(state),
            faults: Mutex::new(Faults::default()),
            workers: Mutex::new(None),
            serving: Mutex::new((0, 0)),
            log: Mutex::new(RequestLog::default()),
            scheme: if tls.is_some() { "https" } else { "http" },
            admin_token,
            path_prefix: path_prefix.trim_end_matches('/').to_owned(),
        });
        let router = Router::new().fallback(handle).with_state(inner.clone());
        // The embedded Quay drops connections on purpose (its faults).
        let serving = net::ServeConfig {
            fault_hooks: true,
            ..net::ServeConfig::default()
        };
        let server = net::serve_with(&listen, tls, router, serving).await?;
        Ok(Self {
            inner,
            server,
            admin_user,
        })
    }

    /// `http(s)://127.0.0.1:port`.
    pub fn url(&self) -> String {
        self.server.url()
    }

    /// The bound address.
    pub fn local_addr(&self) -> std::net::SocketAddr {
        self.server.local_addr()
    }

    /// The admin user's OAuth token (all scopes).
    pub fn admin_token(&self) -> SecretString {
        self.inner.admin_token.clone()
    }

    /// The admin user's name.
    pub fn admin_user(&self) -> &str {
        &self.admin_user
    }

    /// Adds a user.
    pub fn add_user(&self, name: &str, password: &str, super_user: bool) {
        lock(&self.inner.state).add_user(name, password, super_user);
    }

    /// Issues an OAuth token for `user` with these scopes.
    pub fn issue_token(&self, user: &str, scopes: &[&str], ttl: Option<Duration>) -> SecretString {
        let token = random_token(40);
        lock(&self.inner.state).add_token(&token, user, scopes, ttl);
        SecretString::new(token)
    }

    /// Revokes an OAuth token.
    pub fn revoke_token(&self, token: &SecretString) {
        lock(&self.inner.state).tokens.remove(token.expose());
    }

    /// Replaces the fault configuration (`seed` makes rates reproducible).
    pub fn set_faults(&self, config: FaultConfig, seed: Option<u64>) {
        self.inner.set_faults(config, seed);
    }

    /// The most API and registry requests served at once so far.
    pub fn peak_serving(&self) -> u32 {
        lock(&self.inner.serving).1
    }

    /// Removes every fault.
    pub fn clear_faults(&self) {
        self.set_faults(FaultConfig::default(), None);
    }

    /// Every request logged so far.
    pub fn requests(&self) -> Vec<RequestRecord> {
        lock(&self.inner.log).records().to_vec()
    }

    /// Request counts by `"METHOD template"`.
    pub fn request_counts(&self) -> BTreeMap<String, u64> {
        lock(&self.inner.log).counts()
    }

    /// Forgets the request log.
    pub fn clear_requests(&self) {
        lock(&self.inner.log).clear();
    }

    /// The current content, robot tokens left out.
    pub fn snapshot(&self) -> Snapshot {
        snapshot(&lock(&self.inner.state))
    }

    /// A robot's current token.
    pub fn robot_token(&self, org: &str, short: &str) -> Option<SecretString> {
        lock(&self.inner.state)
            .orgs
            .get(org)?
            .robots
            .get(short)
            .map(|r| SecretString::new(r.token.clone()))
    }

    /// Runs namespace garbage collection now: deleted organization names
    /// become available again.
    pub fn collect_deleted_namespaces(&self) {
        lock(&self.inner.state).deleted_names.clear();
    }

    /// Stops the server.
    pub async fn shutdown(self) {
        self.server.shutdown(Duration::from_secs(2)).await;
    }
}

fn snapshot(state: &QuayState) -> Snapshot {
    let organizations = state
        .orgs
        .iter()
        .map(|(name, o)| {
            (
                name.clone(),
                OrgSnapshot {
                    owners: o
                        .team("owners")
                        .map(|t| t.members.clone())
                        .unwrap_or_default(),
                    teams: o
                        .teams
                        .iter()
                        .map(|t| {
                            (
                                t.name.clone(),
                                TeamSnapshot {
                                    role: t.role,
                                    description: t.description.clone(),
                                    members: t.members.clone(),
                                },
                            )
                        })
                        .collect(),
                    robots: o
                        .robots
                        .iter()
                        .map(|(s, r)| (s.clone(), r.description.clone()))
                        .collect(),
                    prototypes: o
                        .prototypes
                        .iter()
                        .filter(|p| !p.team_delegate)
                        .map(|p| (p.delegate.clone(), p.role))
                        .collect(),
                    team_prototypes: o
                        .prototypes
                        .iter()
                        .filter(|p| p.team_delegate)
                        .map(|p| (p.delegate.clone(), p.role))
                        .collect(),
                    repositories: o
                        .repos
                        .iter()
                        .map(|(n, r)| {
                            (
                                n.clone(),
                                RepoSnapshot {
                                    public: r.public,
                                    permissions: r.permissions.clone(),
                                    team_permissions: r.team_permissions.clone(),
                                    tags: r
                                        .tags
                                        .iter()
                                        .map(|(t, rec)| (t.clone(), rec.digest.clone()))
                                        .collect(),
                                },
                            )
                        })
                        .collect(),
                },
            )
        })
        .collect();
    Snapshot { organizations }
}

const MAX_BODY: usize = 16 * 1024 * 1024;

fn parse_query(query: &str) -> BTreeMap<String, String> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (
                api::percent_decode(&k.replace('+', " ")),
                api::percent_decode(&v.replace('+', " ")),
            )
        })
        .collect()
}

fn response(status: u16, content_type: &str, body: impl Into<Body>) -> Response {
    let mut r = Response::new(body.into());
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if let Ok(v) = HeaderValue::from_str(content_type) {
        r.headers_mut().insert(CONTENT_TYPE, v);
    }
    r
}

fn reply_to_response(reply: Reply) -> Response {
    match reply {
        Reply::Json(status, v) => response(status, "application/json", v.to_string()),
        Reply::Empty(status) => response(status, "application/json", Body::empty()),
        Reply::Html(status, html) => response(status, "text/html; charset=utf-8", html),
        Reply::Csrf => response(
            403,
            "text/html; charset=utf-8",
            r#"{"error": "CSRF token was invalid or missing."}"#,
        ),
        Reply::CsrfUser(user) => response(
            403,
            "text/html; charset=utf-8",
            format!(
                r#"{{"error": "CSRF token was invalid or missing. (authorized: user {user})"}}"#
            ),
        ),
        Reply::Raw {
            status,
            content_type,
            body,
            headers,
        } => {
            let mut r = response(status, content_type, body);
            for (name, value) in headers {
                if let Ok(v) = HeaderValue::from_str(&value) {
                    r.headers_mut()
                        .append(http::HeaderName::from_static(name), v);
                }
            }
            r
        }
        Reply::Redirect(location) => {
            let html = format!(
                "<!doctype html>\n<html lang=en>\n<title>Redirecting...</title>\n<h1>Redirecting...</h1>\n<p>You should be redirected automatically to the target URL: <a href=\"{location}\">{location}</a>. If not, click the link.\n"
            );
            let mut r = response(308, "text/html; charset=utf-8", html);
            if let Ok(v) = HeaderValue::from_str(&location) {
                r.headers_mut().insert(LOCATION, v);
            }
            r
        }
    }
}

fn reply_status(reply: &Reply) -> u16 {
    match reply {
        Reply::Json(s, _) | Reply::Empty(s) | Reply::Html(s, _) => *s,
        Reply::Csrf | Reply::CsrfUser(_) => 403,
        Reply::Raw { status, .. } => *status,
        Reply::Redirect(_) => 308,
    }
}

fn injected_error(status: u16) -> Response {
    if status == 500 {
        reply_to_response(Reply::Html(500, "<html>\n  <head>\n    <title>Internal Server Error</title>\n  </head>\n  <body>\n    <h1><p>Internal Server Error</p></h1>\n  </body>\n</html>\n".into()))
    } else {
        response(
            status,
            "text/html",
            format!("<html><body><h1>{status}</h1></body></html>"),
        )
    }
}

async fn handle(State(inner): State<Arc<Inner>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let method = parts.method.as_str().to_owned();
    let full_path = parts.uri.path();
    let path = match full_path.strip_prefix(inner.path_prefix.as_str()) {
        Some(rest) if rest.starts_with('/') => rest.to_owned(),
        _ => return response(404, "text/html", "<h1>Not Found</h1>"),
    };
    let query_string = parts.uri.query().unwrap_or_default().to_owned();
    let header = |name: http::HeaderName| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let host = header(HOST)
        .or_else(|| parts.uri.authority().map(|a| a.to_string()))
        .unwrap_or_else(|| "localhost".into());
    let base = format!("{}://{host}{}", inner.scheme, inner.path_prefix);
    let authorization = header(http::header::AUTHORIZATION);
    let content_type = header(CONTENT_TYPE);
    let Ok(body) = axum::body::to_bytes(body, MAX_BODY).await else {
        return response(
            413,
            "application/json",
            json!({"message": "Request body too large"}).to_string(),
        );
    };

    if let Some(rest) = path.strip_prefix("/_sandbox/quay/") {
        return control(
            &inner,
            &method,
            rest,
            &query_string,
            authorization.as_deref(),
            &body,
        );
    }
    let cookie = header(http::header::COOKIE).and_then(|c| {
        c.split(';').find_map(|p| {
            p.trim()
                .strip_prefix(crate::bootstrap::COOKIE)
                .and_then(|v| v.strip_prefix('='))
                .map(str::to_owned)
        })
    });
    if method == "GET" && path == "/csrf_token" {
        let reply = crate::bootstrap::csrf_token(&mut lock(&inner.state), cookie.as_deref());
        return reply_to_response(reply);
    }
    if method == "POST" && path == "/oauth/authorizeapp" {
        let mut fields = parse_query(&query_string);
        if content_type
            .as_deref()
            .is_some_and(|ct| ct.starts_with("application/x-www-form-urlencoded"))
        {
            fields.extend(parse_query(&String::from_utf8_lossy(&body)));
        }
        let basic = authorization
            .as_deref()
            .and_then(|a| a.strip_prefix("Basic "))
            .and_then(|b| {
                base64::Engine::decode(&base64::engine::general_purpose::STANDARD, b.trim()).ok()
            })
            .and_then(|b| String::from_utf8(b).ok())
            .and_then(|s| s.split_once(':').map(|(u, p)| (u.to_owned(), p.to_owned())));
        let csrf_header = header(http::HeaderName::from_static("x-csrf-token"));
        let req = crate::bootstrap::AuthorizeRequest {
            base: &base,
            cookie: cookie.as_deref(),
            basic,
            csrf_header: csrf_header.as_deref(),
            fields: &fields,
        };
        let reply = crate::bootstrap::authorize_app(&mut lock(&inner.state), &req);
        return reply_to_response(reply);
    }
    let is_api = path.starts_with("/api/");
    let is_registry = path == "/v2" || path.starts_with("/v2/");
    if !is_api && !is_registry {
        return response(404, "text/html", "<h1>Not Found</h1>");
    }
    let template = if is_api {
        api::route(&path).template()
    } else {
        registry::template(&path)
    };
    let mut record = RequestRecord {
        method: method.clone(),
        template: template.to_owned(),
        path: path.clone(),
        status: 0,
        user_agent: header(http::header::USER_AGENT).unwrap_or_default(),
    };

    // A worker serves the request from here to its answer.
    let workers = lock(&inner.workers).as_ref().map(|(_, w)| w.clone());
    let _worker = match &workers {
        Some(w) => w.acquire().await.ok(),
        None => None,
    };
    let _serving = Serving::start(&inner);
    let (latency, action) = lock(&inner.faults).decide(&method, &path);
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    match action {
        FaultAction::Drop => {
            lock(&inner.log).push(record);
            if let Some(dropper) = parts.extensions.get::<ConnectionDropper>() {
                dropper.drop_connection();
            }
            return std::future::pending().await;
        }
        FaultAction::Throttle(secs) => {
            record.status = 429;
            lock(&inner.log).push(record);
            let mut r = response(
                429,
                "text/html",
                "<html><head><title>429 Too Many Requests</title></head><body><center><h1>429 Too Many Requests</h1></center><hr><center>nginx</center></body></html>",
            );
            if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
                r.headers_mut().insert(http::header::RETRY_AFTER, v);
            }
            return r;
        }
        FaultAction::Error(status) => {
            record.status = status;
            lock(&inner.log).push(record);
            return injected_error(status);
        }
        FaultAction::Pass | FaultAction::ErrorAfterEffect(_) => {}
    }

    let started = Instant::now();
    let bearer = authorization
        .as_deref()
        .and_then(|a| a.strip_prefix("Bearer "))
        .map(str::trim);
    let mut resp = if is_api {
        let query = parse_query(&query_string);
        let route = api::route(&path);
        let mut state = lock(&inner.state);
        let csrf = header(http::HeaderName::from_static("x-csrf-token"))
            .or_else(|| query.get("_csrf_token").cloned());
        let (caller, via_session) = match state.caller(bearer) {
            Caller::Anonymous => match state.session_user(cookie.as_deref()) {
                Some(user) => (
                    Caller::User {
                        name: user.to_owned(),
                        scopes: state.session_scopes(user),
                    },
                    true,
                ),
                None => (Caller::Anonymous, false),
            },
            c => (c, false),
        };
        if via_session || matches!(caller, Caller::User { .. }) {
            state.touch_token(bearer);
        }
        let token_app = bearer
            .and_then(|b| state.tokens.get(b))
            .and_then(|t| t.app.clone());
        let ctx = Ctx {
            base: &base,
            caller,
            method: &method,
            body: &body,
            content_type: content_type.as_deref(),
            query: &query,
            cookie: cookie.as_deref(),
            csrf: csrf.as_deref(),
            via_session,
            token_app,
        };
        let reply = api::handle(&mut state, &ctx, &route, &path);
        drop(state);
        record.status = reply_status(&reply);
        reply_to_response(reply)
    } else {
        let req = RegRequest {
            method: &method,
            path: &path,
            query: &query_string,
            authorization: authorization.as_deref(),
            content_type: content_type.as_deref(),
            body: &body,
            base: &base,
            host: &host,
        };
        let reply = registry::handle(&mut lock(&inner.state), &req);
        record.status = reply.status;
        let mut r = response(reply.status, &reply.content_type, reply.body);
        for (name, value) in reply.headers {
            if let Ok(v) = HeaderValue::from_str(&value) {
                r.headers_mut().insert(name, v);
            }
        }
        r
    };
    tracing::trace!(%method, %path, status = record.status, elapsed_us = started.elapsed().as_micros() as u64, "embedded Quay request");
    if let FaultAction::ErrorAfterEffect(status) = action {
        record.status = status;
        resp = injected_error(status);
    }
    lock(&inner.log).push(record);
    resp
}

fn control(
    inner: &Inner,
    method: &str,
    rest: &str,
    query: &str,
    authorization: Option<&str>,
    body: &Bytes,
) -> Response {
    let token = authorization
        .and_then(|a| a.strip_prefix("Bearer "))
        .map(str::trim);
    if token != Some(inner.admin_token.expose()) {
        return response(
            401,
            "application/json",
            json!({"message": "the sandbox control API needs the admin token"}).to_string(),
        );
    }
    let bad = |msg: String| {
        response(
            400,
            "application/json",
            json!({ "message": msg }).to_string(),
        )
    };
    let ok = |v: serde_json::Value| response(200, "application/json", v.to_string());
    match (method, rest) {
        ("GET", "state") => {
            ok(serde_json::to_value(snapshot(&lock(&inner.state))).unwrap_or_default())
        }
        ("GET", "requests") => {
            let log = lock(&inner.log);
            ok(json!({"counts": log.counts(), "total": log.records().len()}))
        }
        ("DELETE", "requests") => {
            lock(&inner.log).clear();
            ok(json!({}))
        }
        ("GET", "faults") => {
            ok(serde_json::to_value(lock(&inner.faults).config()).unwrap_or_default())
        }
        ("PUT", "faults") => match serde_json::from_slice::<FaultConfig>(body) {
            Ok(config) => {
                let seed = parse_query(query).get("seed").and_then(|s| s.parse().ok());
                inner.set_faults(config.clone(), seed);
                ok(serde_json::to_value(config).unwrap_or_default())
            }
            Err(e) => bad(format!("invalid fault configuration: {e}")),
        },
        ("POST", "gc") => {
            lock(&inner.state).deleted_names.clear();
            ok(json!({}))
        }
        ("POST", "tokens") => {
            #[derive(serde::Deserialize)]
            struct NewToken {
                user: String,
                scopes: Vec<String>,
                ttl_secs: Option<u64>,
            }
            let Ok(req) = serde_json::from_slice::<NewToken>(body) else {
                return bad("expected {\"user\", \"scopes\": [..], \"ttl_secs\"?}".into());
            };
            let mut state = lock(&inner.state);
            if !state.users.contains_key(&req.user) {
                return bad(format!("no user {}", req.user));
            }
            let token = random_token(40);
            let scopes: Vec<&str> = req.scopes.iter().map(String::as_str).collect();
            state.add_token(
                &token,
                &req.user,
                &scopes,
                req.ttl_secs.map(Duration::from_secs),
            );
            ok(json!({ "token": token }))
        }
        ("POST", "users") => {
            #[derive(serde::Deserialize)]
            struct NewUser {
                name: String,
                password: String,
                #[serde(default)]
                super_user: bool,
            }
            let Ok(req) = serde_json::from_slice::<NewUser>(body) else {
                return bad("expected {\"name\", \"password\", \"super_user\"?}".into());
            };
            lock(&inner.state).add_user(&req.name, &req.password, req.super_user);
            ok(json!({}))
        }
        _ => response(
            404,
            "application/json",
            json!({"message": "unknown sandbox control endpoint"}).to_string(),
        ),
    }
}
