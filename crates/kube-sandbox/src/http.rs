//! The HTTP face of the embedded apiserver: discovery, CRUD, patch, watch.

use super::errors::ApiError;
use super::patch::{self, PatchError};
use super::resources::ResourceDef;
use super::scope;
use super::selectors::{FieldSelector, LabelSelector, labels_of};
use super::server::{KubeRequest, KubeState};
use super::store::{
    CommitError, EventType, Store, StoredEvent, Update, WriteOptions, name_of, rv_of,
};
use super::{admission, openshift, proto, table};
use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use bytes::Bytes;
use http::header::{ACCEPT, CONTENT_TYPE};
use http::{HeaderValue, StatusCode};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

const MAX_BODY: usize = 32 * 1024 * 1024;
const WRITE_RETRIES: usize = 8;

fn respond(status: u16, body: &Value) -> Response {
    let mut r = Response::new(Body::from(body.to_string()));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

fn error(e: &ApiError) -> Response {
    let mut r = respond(e.code, &e.to_status());
    if e.code == 429 {
        r.headers_mut()
            .insert(http::header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    r
}

/// What a path addresses.
#[derive(Debug, Clone)]
pub struct Target {
    /// The kind.
    pub def: ResourceDef,
    /// Namespace from the path (empty for cluster scope or all namespaces).
    pub namespace: Option<String>,
    /// Object name.
    pub name: Option<String>,
    /// Subresource.
    pub subresource: Option<String>,
}

/// Parses `/api/v1/...` and `/apis/{g}/{v}/...` resource paths.
pub fn parse_target(st: &KubeState, path: &str) -> Result<Target, ApiError> {
    let segs: Vec<&str> = path
        .trim_start_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    let (group, version, rest) = match segs.as_slice() {
        ["api", v, rest @ ..] => ("", *v, rest),
        ["apis", g, v, rest @ ..] => (*g, *v, rest),
        _ => return Err(ApiError::path_not_found()),
    };
    let (namespace, plural, name, sub) = match rest {
        [p] => (None, *p, None, None),
        ["namespaces", n, s @ ("status" | "finalize")] if group.is_empty() => {
            (None, "namespaces", Some(*n), Some(*s))
        }
        ["namespaces", ns, p] => (Some(*ns), *p, None, None),
        ["namespaces", ns, p, n] => (Some(*ns), *p, Some(*n), None),
        ["namespaces", ns, p, n, s] => (Some(*ns), *p, Some(*n), Some(*s)),
        [p, n] => (None, *p, Some(*n), None),
        [p, n, s] => (None, *p, Some(*n), Some(*s)),
        _ => return Err(ApiError::path_not_found()),
    };
    let store = st.lock_store();
    let def = store
        .registry
        .get(group, version, plural)
        .cloned()
        .ok_or_else(ApiError::path_not_found)?;
    if namespace.is_some() && !def.namespaced {
        return Err(ApiError::path_not_found());
    }
    if !def.namespaced && name.is_none() && namespace.is_some() {
        return Err(ApiError::path_not_found());
    }
    if def.namespaced && name.is_some() && namespace.is_none() {
        return Err(ApiError::path_not_found());
    }
    Ok(Target {
        def,
        namespace: namespace.map(str::to_owned),
        name: name.map(str::to_owned),
        subresource: sub.map(str::to_owned),
    })
}

/// Parsed query string (last value wins).
pub fn parse_query(q: &str) -> BTreeMap<String, String> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let dec = |s: &str| bridge_common::encoding::percent_decode(&s.replace('+', " "));
            (dec(k), dec(v))
        })
        .collect()
}

fn verb(method: &str, t: &Target, query: &BTreeMap<String, String>) -> &'static str {
    match (method, t.name.is_some()) {
        ("GET", true) => "get",
        ("GET", false) if query.get("watch").is_some_and(|w| w == "true" || w == "1") => "watch",
        ("GET", false) => "list",
        ("POST", _) => "create",
        ("PUT", _) => "update",
        ("PATCH", _) => "patch",
        ("DELETE", true) => "delete",
        ("DELETE", false) => "deletecollection",
        _ => "unknown",
    }
}

/// The apiserver's request handler.
pub async fn handle(state: State<Arc<KubeState>>, request: Request) -> Response {
    let field_validation = scope::FieldValidation::parse(
        parse_query(request.uri().query().unwrap_or_default())
            .get("fieldValidation")
            .map(String::as_str),
    );
    let (mut response, warnings) =
        scope::run(field_validation, handle_request(state, request)).await;
    for w in warnings {
        if let Ok(v) = HeaderValue::from_str(&scope::header_value(&w)) {
            response.headers_mut().append("warning", v);
        }
    }
    response
}

async fn handle_request(State(st): State<Arc<KubeState>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let path = parts.uri.path().to_owned();
    let query = parse_query(parts.uri.query().unwrap_or_default());
    let method = parts.method.as_str().to_owned();
    let header = |name: http::HeaderName| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let accept = header(ACCEPT).unwrap_or_default();
    let content_type = header(CONTENT_TYPE).unwrap_or_default();
    let user_agent = header(http::header::USER_AGENT).unwrap_or_default();
    let identity = match st.identity(header(http::header::AUTHORIZATION).as_deref()) {
        Some(i) => i,
        None => {
            return error(&ApiError {
                code: 401,
                reason: "Unauthorized",
                message: "Unauthorized".into(),
                details: None,
            });
        }
    };
    let Ok(body) = axum::body::to_bytes(body, MAX_BODY).await else {
        return error(&ApiError {
            code: 413,
            reason: "RequestEntityTooLarge",
            message: "request body too large".into(),
            details: None,
        });
    };
    if let Some(reply) = discovery(&st, &path, &header(http::header::HOST).unwrap_or_default()) {
        return reply;
    }
    if let Some(rest) = path.strip_prefix("/_sandbox/kube/") {
        return super::server::control(&st, &method, rest, &query, &identity, &body);
    }
    let target = match parse_target(&st, &path) {
        Ok(t) => t,
        // An API group the server does not serve is not even an API path:
        // the mux answers in plain text (get-unknown-group).
        Err(_) if !group_served(&st, &path) => {
            let mut r = Response::new(Body::from("404 page not found\n"));
            *r.status_mut() = StatusCode::NOT_FOUND;
            r.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=utf-8"),
            );
            return r;
        }
        Err(e) => return error(&e),
    };
    let verb = verb(&method, &target, &query);
    st.record(KubeRequest {
        identity: identity.clone(),
        verb: verb.to_owned(),
        group: target.def.group.clone(),
        resource: target.def.plural.clone(),
        namespace: target.namespace.clone().unwrap_or_default(),
        subresource: target.subresource.clone().unwrap_or_default(),
        name: target.name.clone().unwrap_or_default(),
        user_agent: user_agent.clone(),
        content_type: content_type.clone(),
    });
    if st.hangs(&target.def.group_resource(), &identity) {
        // Never answered; the connection stays open until the client
        // closes it.
        std::future::pending::<()>().await;
    }
    let (latency, injected) = st.decide_fault(&method, &identity);
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    if let Some(e) = injected {
        return error(&e);
    }
    let manager = query.get("fieldManager").cloned().unwrap_or_else(|| {
        let agent = user_agent.split('/').next().unwrap_or_default();
        if agent.is_empty() {
            "unknown".to_owned()
        } else {
            agent.to_owned()
        }
    });
    // dryRun takes only "All" (cm-dry-run-bad-value), checked against the
    // verb's options kind.
    if let Some(d) = query.get("dryRun").filter(|d| *d != "All") {
        let options = match method.as_str() {
            "POST" => "CreateOptions",
            "PUT" => "UpdateOptions",
            "PATCH" => "PatchOptions",
            _ => "DeleteOptions",
        };
        if method != "GET" {
            return error(&ApiError::invalid_options(
                options,
                "dryRun",
                &format!("Unsupported value: [{d:?}]: supported values: \"All\""),
            ));
        }
    }
    let opts = WriteOptions {
        dry_run: query.get("dryRun").is_some_and(|d| d == "All"),
        manager,
    };
    let wants_table = accept.contains("as=Table");
    let wants_metadata = accept.contains("as=PartialObjectMetadata");
    // Bodies are JSON, or protobuf for built-in kinds (what kubectl sends
    // them as); anything else is a 415, as a real apiserver answers a
    // content type it does not serve for the kind.
    let media = content_type.split(';').next().unwrap_or_default().trim();
    let body = if matches!(method.as_str(), "POST" | "PUT") && media == proto::MEDIA_TYPE {
        if target.def.custom {
            return error(&ApiError::unsupported_body(true));
        }
        match proto::decode(&body) {
            Ok(obj) => Bytes::from(obj.to_string()),
            Err(proto::ProtoError::UnknownKind(_)) => {
                return error(&ApiError::unsupported_body(false));
            }
            Err(e) => {
                return error(&ApiError::bad_request(format!(
                    "the object provided is unrecognized (must be of type {}): {e}",
                    target.def.kind
                )));
            }
        }
    } else {
        body
    };
    if matches!(method.as_str(), "POST" | "PUT")
        && !body.is_empty()
        && !media.is_empty()
        && media != "application/json"
        && media != proto::MEDIA_TYPE
        && media != "*/*"
    {
        return error(&ApiError::unsupported_body(target.def.custom));
    }
    // Answers in protobuf when the client asks for it first (and the kind
    // has a protobuf form), as a real apiserver does.
    let wants_protobuf = !wants_table
        && !wants_metadata
        && accept
            .split(',')
            .next()
            .and_then(|m| m.split(';').next())
            .is_some_and(|m| m.trim() == proto::MEDIA_TYPE);
    if method == "GET"
        && let Err(e) = read_options(&st, &target, &query, verb)
    {
        return error(&e);
    }
    let result = match (method.as_str(), &target) {
        (
            "GET",
            Target {
                name: Some(_),
                subresource: None | Some(_),
                ..
            },
        ) => get_item(&st, &target, wants_table)
            .map(|(c, v)| (c, if wants_metadata { partial(&v) } else { v })),
        ("GET", _) if verb == "watch" => {
            return watch(st.clone(), target, &query, wants_table, wants_metadata);
        }
        ("GET", _) => list(&st, &target, &query, wants_table)
            .map(|(c, v)| (c, if wants_metadata { partial_list(v) } else { v })),
        ("POST", Target { name: None, .. }) => create(&st, &target, &body, &opts, &identity).await,
        (
            "POST",
            Target {
                name: Some(_),
                subresource: Some(sub),
                ..
            },
        ) if sub == "instantiate" && target.def.plural == "buildconfigs" => {
            openshift::instantiate(&st, &target, &body, &opts, &identity).await
        }
        (
            "POST",
            Target {
                name: Some(_),
                subresource: Some(sub),
                ..
            },
        ) if sub == "token" && target.def.plural == "serviceaccounts" => {
            token_request(&st, &target, &body)
        }
        ("PUT", Target { name: Some(_), .. }) => {
            update(&st, &target, &body, &opts, &identity).await
        }
        ("PATCH", Target { name: Some(_), .. }) => {
            patch_item(&st, &target, &body, &content_type, &query, &opts, &identity).await
        }
        (
            "DELETE",
            Target {
                name: Some(_),
                subresource: None,
                ..
            },
        ) => delete(&st, &target, &body, &opts),
        ("DELETE", Target { name: None, .. }) => delete_collection(&st, &target, &query, &opts),
        _ => Err(ApiError::method_not_allowed()),
    };
    match result {
        Ok((status, v)) if wants_protobuf => match proto::encode(&v) {
            Some(wire) => {
                let mut r = Response::new(Body::from(wire));
                *r.status_mut() =
                    StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                r.headers_mut()
                    .insert(CONTENT_TYPE, HeaderValue::from_static(proto::MEDIA_TYPE));
                r
            }
            None => respond(status, &v),
        },
        Ok((status, v)) => respond(status, &v),
        Err(e) => error(&e),
    }
}

/// Whether the path names an API group (and version) this server serves.
fn group_served(st: &KubeState, path: &str) -> bool {
    let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let (group, version) = match segs.as_slice() {
        ["api", v, ..] => ("", *v),
        ["apis", g, v, ..] => (*g, *v),
        _ => return false,
    };
    st.lock_store()
        .registry
        .groups()
        .get(group)
        .is_some_and(|vs| vs.iter().any(|v| v == version))
}

/// The resourceVersion rules of reads, as a real apiserver answers them
/// (kube-api-recorded.md, "resourceVersion semantics"): a resourceVersion
/// that is not a number is a 500 without a reason; resourceVersionMatch
/// needs a resourceVersion; a list cannot be served at a resourceVersion
/// the store has not reached (504).
fn read_options(
    st: &KubeState,
    t: &Target,
    query: &BTreeMap<String, String>,
    verb: &str,
) -> Result<(), ApiError> {
    let rv = query.get("resourceVersion").filter(|r| !r.is_empty());
    let parsed = match rv {
        Some(r) => Some(
            r.parse::<u64>()
                .map_err(|_| ApiError::bad_resource_version(r))?,
        ),
        None => None,
    };
    if verb != "list" || t.name.is_some() {
        return Ok(());
    }
    let rv_match = query.get("resourceVersionMatch").filter(|m| !m.is_empty());
    match (rv_match, parsed) {
        (Some(_), None) => Err(ApiError::rv_match_without_rv()),
        (Some(_), Some(asked)) => {
            let current = st.lock_store().rv();
            if asked > current {
                Err(ApiError::rv_too_large(asked, current))
            } else {
                Ok(())
            }
        }
        _ => Ok(()),
    }
}

fn discovery(st: &KubeState, path: &str, host: &str) -> Option<Response> {
    let store = st.lock_store();
    let reply = match path.trim_end_matches('/') {
        "/version" => {
            json!({"major": "1", "minor": "36", "gitVersion": "v1.36.2", "gitCommit": "", "gitTreeState": "clean", "buildDate": "2026-01-01T00:00:00Z", "goVersion": "n/a", "compiler": "rustc", "platform": "linux/amd64"})
        }
        "/healthz" | "/readyz" | "/livez" => {
            let mut r = Response::new(Body::from("ok"));
            r.headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
            return Some(r);
        }
        "/api" => {
            json!({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": host}]})
        }
        "/apis" => {
            let groups: Vec<Value> = store
                .registry
                .groups()
                .into_iter()
                .filter(|(g, _)| !g.is_empty())
                .map(|(g, versions)| {
                    let vs: Vec<Value> = versions.iter().map(|v| json!({"groupVersion": format!("{g}/{v}"), "version": v})).collect();
                    json!({"name": g, "versions": vs, "preferredVersion": vs.first().cloned().unwrap_or_default()})
                })
                .collect();
            json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
        }
        "/api/v1" => store.registry.resource_list("", "v1")?,
        p => {
            let segs: Vec<&str> = p.trim_start_matches('/').split('/').collect();
            match segs.as_slice() {
                ["apis", g] => {
                    let versions = store.registry.groups().remove(*g)?;
                    let vs: Vec<Value> = versions
                        .iter()
                        .map(|v| json!({"groupVersion": format!("{g}/{v}"), "version": v}))
                        .collect();
                    json!({"kind": "APIGroup", "apiVersion": "v1", "name": g, "versions": vs, "preferredVersion": vs.first().cloned().unwrap_or_default()})
                }
                ["apis", g, v] => store.registry.resource_list(g, v)?,
                ["openapi", "v3"] => store.registry.openapi_v3_root(),
                ["openapi", "v3", "api", v] => store.registry.openapi_v3_document("", v)?,
                ["openapi", "v3", "apis", g, v] => store.registry.openapi_v3_document(g, v)?,
                ["openapi", ..] => return Some(error(&ApiError::path_not_found())),
                _ => return None,
            }
        }
    };
    Some(respond(200, &reply))
}

fn get_item(st: &KubeState, t: &Target, wants_table: bool) -> Result<(u16, Value), ApiError> {
    if t.def.create_only {
        return Err(ApiError::method_not_allowed());
    }
    let store = st.lock_store();
    let name = t.name.as_deref().unwrap_or_default();
    let obj = store.get_or_404(&t.def, t.namespace.as_deref().unwrap_or_default(), name)?;
    match t.subresource.as_deref() {
        None => {}
        Some("status") if t.def.status_subresource => {}
        Some(_) => return Err(ApiError::path_not_found()),
    }
    if wants_table {
        return Ok((200, table::table(&t.def, &[&obj], store.rv())));
    }
    Ok((200, (*obj).clone()))
}

/// What a continue token holds: the list's resourceVersion and the
/// storage key (namespace, name) of the last object returned.
#[derive(serde::Serialize, serde::Deserialize)]
struct ContinueToken {
    rv: u64,
    after: (String, String),
}

fn selectors(
    def: &ResourceDef,
    query: &BTreeMap<String, String>,
) -> Result<(LabelSelector, FieldSelector), ApiError> {
    let labels = LabelSelector::parse(query.get("labelSelector").map_or("", String::as_str))
        .map_err(ApiError::bad_request)?;
    let extra: Vec<&str> = def.field_selectors.iter().map(String::as_str).collect();
    let fields = FieldSelector::parse(
        query.get("fieldSelector").map_or("", String::as_str),
        &extra,
    )
    .map_err(ApiError::bad_request)?;
    Ok((labels, fields))
}

fn list(
    st: &KubeState,
    t: &Target,
    query: &BTreeMap<String, String>,
    wants_table: bool,
) -> Result<(u16, Value), ApiError> {
    if t.def.create_only {
        return Err(ApiError::method_not_allowed());
    }
    let (labels, fields) = selectors(&t.def, query)?;
    let store = st.lock_store();
    let mut list_rv = store.rv();
    let mut after = None;
    if let Some(token) = query.get("continue").filter(|c| !c.is_empty()) {
        let decoded: ContinueToken =
            base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, token)
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok())
                .ok_or_else(|| ApiError::bad_request("continue key is not valid"))?;
        if decoded.rv < store.compacted_rv() {
            return Err(ApiError::expired(
                "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.",
            ));
        }
        list_rv = decoded.rv;
        after = Some(decoded.after);
    }
    let limit = query
        .get("limit")
        .and_then(|l| l.parse::<usize>().ok())
        .filter(|l| *l > 0);
    let (items, next) = store.list_page(
        &t.def,
        t.namespace.as_deref(),
        (&labels, &fields),
        after.as_ref(),
        limit,
    );
    let mut meta = json!({"resourceVersion": list_rv.to_string()});
    if let Some(after) = next {
        let token = serde_json::to_vec(&ContinueToken { rv: list_rv, after }).unwrap_or_default();
        meta["continue"] = json!(base64::Engine::encode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            token
        ));
    }
    if wants_table {
        let refs: Vec<&Value> = items.iter().map(|o| o.as_ref()).collect();
        let mut t = table::table(&t.def, &refs, list_rv);
        t["metadata"] = meta;
        return Ok((200, t));
    }
    let items: Vec<Value> = items.iter().map(|o| (**o).clone()).collect();
    Ok((
        200,
        json!({"kind": format!("{}List", t.def.kind), "apiVersion": t.def.api_version(), "metadata": meta, "items": items}),
    ))
}

/// The object reduced to its metadata, as `as=PartialObjectMetadata` asks.
fn partial(obj: &Value) -> Value {
    json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": obj.get("metadata").cloned().unwrap_or_default()})
}

fn partial_list(mut list: Value) -> Value {
    let items: Vec<Value> = list
        .get("items")
        .and_then(Value::as_array)
        .map(|a| a.iter().map(partial).collect())
        .unwrap_or_default();
    list["items"] = json!(items);
    list["kind"] = json!("PartialObjectMetadataList");
    list["apiVersion"] = json!("meta.k8s.io/v1");
    list
}

// === watch ===

fn watch_line(kind: &str, object: Value) -> Bytes {
    let mut line = json!({"type": kind, "object": object}).to_string();
    line.push('\n');
    Bytes::from(line)
}

struct WatchFilter {
    res: (String, String),
    namespace: Option<String>,
    labels: LabelSelector,
    fields: FieldSelector,
}

impl WatchFilter {
    fn matches(&self, obj: &Value) -> bool {
        (self.labels.is_empty() || self.labels.matches(&labels_of(obj))) && self.fields.matches(obj)
    }

    /// The event a watcher with this filter sees, if any (selector
    /// transitions turn MODIFIED into ADDED or DELETED).
    fn translate(&self, ev: &StoredEvent) -> Option<(&'static str, Arc<Value>)> {
        if ev.res != self.res
            || self
                .namespace
                .as_deref()
                .is_some_and(|ns| ns != ev.namespace)
        {
            return None;
        }
        let now = self.matches(&ev.object);
        let before = ev.prev.as_deref().is_some_and(|p| self.matches(p));
        match ev.kind {
            EventType::Added if now => Some(("ADDED", ev.object.clone())),
            EventType::Modified if now && before => Some(("MODIFIED", ev.object.clone())),
            EventType::Modified if now => Some(("ADDED", ev.object.clone())),
            EventType::Modified if before => Some(("DELETED", ev.object.clone())),
            EventType::Deleted if now || before => Some(("DELETED", ev.object.clone())),
            _ => None,
        }
    }
}

fn watch(
    st: Arc<KubeState>,
    t: Target,
    query: &BTreeMap<String, String>,
    wants_table: bool,
    wants_metadata: bool,
) -> Response {
    let (labels, fields) = match selectors(&t.def, query) {
        Ok(s) => s,
        Err(e) => return error(&e),
    };
    let filter = WatchFilter {
        res: Store::res_key(&t.def),
        namespace: t.namespace.clone(),
        labels,
        fields,
    };
    let timeout = query
        .get("timeoutSeconds")
        .and_then(|s| s.parse::<u64>().ok())
        .map_or(Duration::from_secs(1800), Duration::from_secs);
    let bookmarks = query
        .get("allowWatchBookmarks")
        .is_some_and(|b| b == "true");
    let initial_events_end = query.get("sendInitialEvents").is_some_and(|b| b == "true");
    let from: Option<u64> = query
        .get("resourceVersion")
        .and_then(|rv| rv.parse().ok())
        .filter(|rv| *rv > 0);
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(256);
    let mut reset = st.watch_reset.subscribe();
    let lag = st.watch_lag(&t.def.group_resource());
    let def = t.def.clone();
    // Replay and subscription happen under one lock, so nothing is missed.
    let (initial, mut live, mut last_rv, expired) = {
        let store = st.lock_store();
        let live = store.subscribe();
        match from {
            Some(rv) => match store.history_since(rv, &filter.res) {
                Some(events) => {
                    let lines: Vec<(&'static str, Arc<Value>)> =
                        events.iter().filter_map(|e| filter.translate(e)).collect();
                    (
                        lines,
                        live,
                        events
                            .last()
                            .map_or(rv.max(store.rv()), |e| e.rv.max(store.rv())),
                        false,
                    )
                }
                None => (Vec::new(), live, rv, true),
            },
            None => {
                let objs = store.list(
                    &def,
                    filter.namespace.as_deref(),
                    &filter.labels,
                    &filter.fields,
                );
                (
                    objs.into_iter().map(|o| ("ADDED", o)).collect(),
                    live,
                    store.rv(),
                    false,
                )
            }
        }
    };
    let render = move |obj: &Arc<Value>| -> Value {
        // History and live events carry the stored form (the initial list
        // is already in `def`'s).
        let obj = &*if obj.get("apiVersion").and_then(Value::as_str) == Some(&def.api_version()) {
            obj.clone()
        } else {
            Store::view(&def, obj.clone())
        };
        if wants_table {
            table::table(&def, &[obj], rv_of(obj).unwrap_or_default())
        } else if wants_metadata {
            partial(obj)
        } else {
            obj.clone()
        }
    };
    let kind = t.def.kind.clone();
    let api_version = t.def.api_version();
    tokio::spawn(async move {
        if expired {
            let status = ApiError::expired(format!(
                "too old resource version: {} ({})",
                from.unwrap_or_default(),
                st.lock_store().compacted_rv()
            ))
            .to_status();
            let _ = tx.send(watch_line("ERROR", status)).await;
            return;
        }
        for (ty, obj) in initial {
            if tx.send(watch_line(ty, render(&obj))).await.is_err() {
                return;
            }
        }
        // The end of the initial events, as kube-rs's streaming lists
        // wait for it (watch-initial-events).
        if initial_events_end {
            let obj = json!({"kind": kind, "apiVersion": api_version, "metadata": {"resourceVersion": last_rv.to_string(), "annotations": {"k8s.io/initial-events-end": "true"}}});
            if tx.send(watch_line("BOOKMARK", obj)).await.is_err() {
                return;
            }
        }
        let deadline = tokio::time::sleep(timeout);
        tokio::pin!(deadline);
        let mut bookmark = tokio::time::interval(Duration::from_secs(60));
        bookmark.tick().await;
        loop {
            tokio::select! {
                ev = live.recv() => match ev {
                    Ok(ev) => {
                        if ev.rv <= last_rv {
                            continue;
                        }
                        last_rv = ev.rv;
                        if let Some((ty, obj)) = filter.translate(&ev) {
                            if !lag.is_zero() {
                                tokio::time::sleep(lag).await;
                            }
                            if tx.send(watch_line(ty, render(&obj))).await.is_err() {
                                return;
                            }
                        }
                    }
                    // Too slow or closed: end; the client resumes from its last RV.
                    Err(_) => return,
                },
                _ = bookmark.tick(), if bookmarks => {
                    let obj = json!({"kind": kind, "apiVersion": api_version, "metadata": {"resourceVersion": last_rv.to_string()}});
                    if tx.send(watch_line("BOOKMARK", obj)).await.is_err() {
                        return;
                    }
                }
                _ = &mut deadline => return,
                _ = reset.changed() => return,
                () = tx.closed() => return,
            }
        }
    });
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|b| (Ok::<_, std::convert::Infallible>(b), rx))
    });
    let mut r = Response::new(Body::from_stream(stream));
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r.headers_mut().insert(
        http::header::TRANSFER_ENCODING,
        HeaderValue::from_static("chunked"),
    );
    r
}

// === writes ===

/// A JSON body for an object of `kind`; a body that is not JSON gets the
/// apiserver's answer, Go's own syntax error included
/// (cm-create-malformed-json).
fn parse_body(body: &Bytes, kind: &str) -> Result<Value, ApiError> {
    serde_json::from_slice(body).map_err(|e| {
        let go = super::gojson::syntax_error(body).unwrap_or_else(|| e.to_string());
        let text = String::from_utf8_lossy(body);
        let shown: String = text.chars().take(256).collect();
        ApiError::bad_request(format!(
            "the object provided is unrecognized (must be of type {kind}): couldn't get version/kind; json parse error: {go} ({shown})"
        ))
    })
}

/// Creates an object through admission; used by POST and by the simulated
/// OpenShift controllers that create through the API (instantiate).
pub async fn create_object(
    st: &KubeState,
    def: &ResourceDef,
    ns: &str,
    obj: Value,
    opts: &WriteOptions,
    identity: &str,
) -> Result<Arc<Value>, ApiError> {
    let candidate = st.lock_store().prepare_create(def, ns, obj)?;
    let mutated = admission::mutate(
        st,
        def,
        "CREATE",
        None,
        candidate.clone(),
        None,
        identity,
        opts.dry_run,
    )
    .await?;
    let mutated = keep_identity(mutated, &candidate);
    st.lock_store().commit_create(def, mutated, opts)
}

/// Webhooks may not change what the server owns.
fn keep_identity(mut mutated: Value, original: &Value) -> Value {
    for k in [
        "name",
        "namespace",
        "uid",
        "creationTimestamp",
        "generation",
    ] {
        if let Some(v) = original.pointer(&format!("/metadata/{k}")) {
            mutated["metadata"][k] = v.clone();
        }
    }
    mutated
}

/// `serviceaccounts/{name}/token`: a TokenRequest answered with a bearer
/// token (JWT-shaped) that authenticates as the service account.
fn token_request(st: &KubeState, t: &Target, body: &Bytes) -> Result<(u16, Value), ApiError> {
    use base64::Engine;
    let request = parse_body(body, "TokenRequest")?;
    let (ns, name) = (
        t.namespace.clone().unwrap_or_default(),
        t.name.clone().unwrap_or_default(),
    );
    st.lock_store().get_or_404(&t.def, &ns, &name)?;
    let seconds = request
        .pointer("/spec/expirationSeconds")
        .and_then(Value::as_i64)
        .unwrap_or(3600);
    if seconds < 600 {
        return Err(ApiError::invalid(
            &t.def,
            &name,
            &[(
                "spec.expirationSeconds".into(),
                format!(
                    "Invalid value: {seconds}: may not specify a duration less than 10 minutes"
                ),
            )],
        ));
    }
    let subject = format!("system:serviceaccount:{ns}:{name}");
    let now = jiff::Timestamp::now();
    let expires = now
        .checked_add(jiff::SignedDuration::from_secs(seconds))
        .unwrap_or(now);
    let b64 = |v: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    let token = format!(
        "{}.{}.{}",
        b64(&json!({"alg": "RS256", "kid": "sandbox"})),
        b64(
            &json!({"iss": "https://kubernetes.default.svc", "sub": subject, "aud": ["https://kubernetes.default.svc"], "iat": now.as_second(), "exp": expires.as_second()})
        ),
        st.issue_token(&subject)
    );
    st.register_token(&token, &subject);
    let mut answer = request;
    answer["apiVersion"] = json!("authentication.k8s.io/v1");
    answer["kind"] = json!("TokenRequest");
    answer["metadata"] = json!({"name": name, "namespace": ns, "creationTimestamp": null});
    answer["spec"]["expirationSeconds"] = json!(seconds);
    answer["status"] = json!({"token": token, "expirationTimestamp": expires.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()});
    Ok((201, answer))
}

async fn create(
    st: &KubeState,
    t: &Target,
    body: &Bytes,
    opts: &WriteOptions,
    identity: &str,
) -> Result<(u16, Value), ApiError> {
    let obj = parse_body(body, &t.def.kind)?;
    let ns = t.namespace.clone().unwrap_or_default();
    if t.def.plural == "imagestreamimports" {
        return openshift::import(st, &t.def, &ns, obj, opts, identity).await;
    }
    if t.def.plural == "selfsubjectaccessreviews" {
        // The sandbox authorizes every request of every identity.
        let mut review = obj;
        review["status"] =
            json!({"allowed": true, "reason": "the sandbox apiserver authorizes every request"});
        review["metadata"] = json!({"creationTimestamp": null});
        return Ok((201, review));
    }
    let stored = create_object(st, &t.def, &ns, obj, opts, identity).await?;
    Ok((201, (*stored).clone()))
}

async fn update(
    st: &KubeState,
    t: &Target,
    body: &Bytes,
    opts: &WriteOptions,
    identity: &str,
) -> Result<(u16, Value), ApiError> {
    let (ns, name) = (
        t.namespace.clone().unwrap_or_default(),
        t.name.clone().unwrap_or_default(),
    );
    let sub = t.subresource.as_deref();
    match sub {
        None => {}
        Some("status") if t.def.status_subresource => {}
        Some("finalize") if t.def.plural == "namespaces" => return finalize_namespace(st, t, body),
        Some(_) => return Err(ApiError::path_not_found()),
    }
    if t.def.create_only {
        return Err(ApiError::method_not_allowed());
    }
    let body = parse_body(body, &t.def.kind)?;
    let precondition = body
        .pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_owned);
    for _ in 0..WRITE_RETRIES {
        let old = st.lock_store().get_or_404(&t.def, &ns, &name)?;
        let old_rv = rv_of(&old).unwrap_or_default();
        if precondition
            .as_deref()
            .is_some_and(|p| p != old_rv.to_string())
        {
            return Err(ApiError::conflict(&t.def, &name));
        }
        let mutated = admission::mutate(
            st,
            &t.def,
            "UPDATE",
            sub,
            body.clone(),
            Some(&old),
            identity,
            opts.dry_run,
        )
        .await?;
        match st.lock_store().commit_update(
            &t.def,
            Update {
                ns: &ns,
                name: &name,
                read_rv: old_rv,
                object: mutated,
                subresource: sub,
                apply_owners: None,
            },
            opts,
        ) {
            Ok(v) => return Ok((200, (*v).clone())),
            Err(CommitError::Retry) if precondition.is_none() => continue,
            Err(CommitError::Retry) => return Err(ApiError::conflict(&t.def, &name)),
            Err(CommitError::Api(e)) => return Err(e),
        }
    }
    Err(ApiError::conflict(&t.def, &name))
}

fn finalize_namespace(st: &KubeState, t: &Target, body: &Bytes) -> Result<(u16, Value), ApiError> {
    let body = parse_body(body, "Namespace")?;
    let name = t.name.clone().unwrap_or_default();
    let mut store = st.lock_store();
    let old = store.get_or_404(&t.def, "", &name)?;
    let mut new = (*old).clone();
    new["spec"]["finalizers"] = body
        .pointer("/spec/finalizers")
        .cloned()
        .unwrap_or(json!([]));
    store
        .controller_write(&t.def, new, "namespace-controller")
        .map(|v| (200, (*v).clone()))
}

#[allow(clippy::too_many_arguments)]
async fn patch_item(
    st: &KubeState,
    t: &Target,
    body: &Bytes,
    content_type: &str,
    query: &BTreeMap<String, String>,
    opts: &WriteOptions,
    identity: &str,
) -> Result<(u16, Value), ApiError> {
    let (ns, name) = (
        t.namespace.clone().unwrap_or_default(),
        t.name.clone().unwrap_or_default(),
    );
    let sub = t.subresource.as_deref();
    match sub {
        None => {}
        Some("status") if t.def.status_subresource => {}
        Some(_) => return Err(ApiError::path_not_found()),
    }
    if t.def.create_only {
        return Err(ApiError::method_not_allowed());
    }
    let media = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_owned();
    let force = query.get("force").is_some_and(|f| f == "true");
    let is_apply = media == "application/apply-patch+yaml";
    if force && !is_apply {
        return Err(ApiError::invalid_options(
            "PatchOptions",
            "force",
            "Forbidden: may not be specified for non-apply patch",
        ));
    }
    if is_apply && query.get("fieldManager").is_none_or(String::is_empty) {
        return Err(ApiError::invalid_options(
            "PatchOptions",
            "fieldManager",
            "Required value: is required for apply patch",
        ));
    }
    if media == "application/strategic-merge-patch+json" && t.def.custom {
        return Err(ApiError::unsupported_media_type(&media));
    }
    if !matches!(
        media.as_str(),
        "application/json-patch+json"
            | "application/merge-patch+json"
            | "application/strategic-merge-patch+json"
            | "application/apply-patch+yaml"
    ) {
        return Err(ApiError::unsupported_media_type(&media));
    }
    let patch_doc: Value = serde_json::from_slice(body).map_err(|e| {
        if is_apply {
            ApiError::bad_request(format!(
                "the sandbox accepts apply configurations as JSON only: {e}"
            ))
        } else {
            ApiError::bad_request(format!("the patch could not be decoded: {e}"))
        }
    })?;
    for _ in 0..WRITE_RETRIES {
        let existing = st.lock_store().get(&t.def, &ns, &name);
        let Some(old) = existing else {
            if is_apply && sub.is_none() {
                // Server-side apply creates what is missing.
                let mut owners = patch::Ownership::new();
                let mut obj = json!({"metadata": {"name": name}});
                patch::apply(&mut obj, &patch_doc, &opts.manager, true, &mut owners)
                    .map_err(|_| ApiError::internal("apply on an empty object"))?;
                let ops = owners
                    .keys()
                    .map(|k| (k.clone(), "Apply".to_owned()))
                    .collect();
                obj["metadata"]["managedFields"] = patch::to_managed_fields(
                    &owners,
                    &ops,
                    &t.def.api_version(),
                    &super::store::now_rfc3339(),
                );
                let stored = create_object(st, &t.def, &ns, obj, opts, identity).await?;
                return Ok((201, (*stored).clone()));
            }
            return Err(ApiError::not_found(&t.def, &name));
        };
        let old_rv = rv_of(&old).unwrap_or_default();
        let mut new = (*old).clone();
        let mut apply_owners = None;
        let patched = match media.as_str() {
            "application/json-patch+json" => patch::json_patch(&mut new, &patch_doc),
            "application/merge-patch+json" => {
                patch::merge_patch(&mut new, &patch_doc);
                Ok(())
            }
            "application/strategic-merge-patch+json" => super::smp::strategic_merge_patch(
                &mut new,
                &patch_doc,
                &super::smp::kind_key(&t.def.group, &t.def.version, &t.def.kind),
            ),
            _ => {
                let (mut owners, _) =
                    patch::from_managed_fields(old.pointer("/metadata/managedFields"));
                match patch::apply(&mut new, &patch_doc, &opts.manager, force, &mut owners) {
                    Ok(()) => {
                        apply_owners = Some(owners);
                        Ok(())
                    }
                    Err(conflicts) => {
                        let list = conflicts
                            .iter()
                            .map(|c| format!("conflict with {:?}: {}", c.manager, c.field))
                            .collect::<Vec<_>>()
                            .join("\n- ");
                        let msg = format!(
                            "Apply failed with {} conflict{}: {list}",
                            conflicts.len(),
                            if conflicts.len() == 1 { "" } else { "s" }
                        );
                        let fields: Vec<(String, String)> = conflicts
                            .iter()
                            .map(|c| (c.manager.clone(), c.field.clone()))
                            .collect();
                        return Err(ApiError::apply_conflict(&t.def, &name, msg, &fields));
                    }
                }
            }
        };
        match patched {
            Ok(()) => {}
            // A JSON patch that fails (a `test`, an unknown op) is a 422
            // with a generic message (cm-patch-json-test-fails,
            // cm-patch-json-bad-op).
            Err(PatchError::Failed(_) | PatchError::UnknownOp(_))
                if media == "application/json-patch+json" =>
            {
                return Err(ApiError::unprocessable(
                    "the server rejected our request due to an error in our request",
                ));
            }
            Err(PatchError::Malformed(m) | PatchError::UnknownOp(m)) => {
                return Err(ApiError::bad_request(m));
            }
            Err(PatchError::Failed(m)) => return Err(ApiError::unprocessable(m)),
        }
        // A resourceVersion in the patched object is a precondition.
        let wanted = new
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str)
            .map(str::to_owned);
        if wanted.as_deref().is_some_and(|w| w != old_rv.to_string()) {
            return Err(ApiError::conflict(&t.def, &name));
        }
        let mutated = admission::mutate(
            st,
            &t.def,
            "UPDATE",
            sub,
            new,
            Some(&old),
            identity,
            opts.dry_run,
        )
        .await?;
        match st.lock_store().commit_update(
            &t.def,
            Update {
                ns: &ns,
                name: &name,
                read_rv: old_rv,
                object: mutated,
                subresource: sub,
                apply_owners,
            },
            opts,
        ) {
            Ok(v) => return Ok((200, (*v).clone())),
            Err(CommitError::Retry) => continue,
            Err(CommitError::Api(e)) => return Err(e),
        }
    }
    Err(ApiError::conflict(&t.def, &name))
}

fn delete(
    st: &KubeState,
    t: &Target,
    body: &Bytes,
    opts: &WriteOptions,
) -> Result<(u16, Value), ApiError> {
    if t.def.create_only {
        return Err(ApiError::method_not_allowed());
    }
    let (ns, name) = (
        t.namespace.clone().unwrap_or_default(),
        t.name.clone().unwrap_or_default(),
    );
    let options: Value = if body.is_empty() {
        json!({})
    } else {
        parse_body(body, "DeleteOptions")?
    };
    let precondition = options
        .pointer("/preconditions/resourceVersion")
        .and_then(Value::as_str);
    let mut store = st.lock_store();
    if let Some(uid) = options
        .pointer("/preconditions/uid")
        .and_then(Value::as_str)
    {
        let current = store.get_or_404(&t.def, &ns, &name)?;
        let actual = current
            .pointer("/metadata/uid")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if actual != uid {
            return Err(ApiError::uid_precondition(&t.def, &name, uid, actual));
        }
    }
    let deleted = store.delete(&t.def, &ns, &name, opts, precondition)?;
    if super::store::is_deleting(&deleted) || t.def.custom {
        return Ok((200, (*deleted).clone()));
    }
    Ok((
        200,
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
        "details": {"name": name, "group": t.def.group, "kind": t.def.plural, "uid": deleted.pointer("/metadata/uid").cloned().unwrap_or_default()}}),
    ))
}

fn delete_collection(
    st: &KubeState,
    t: &Target,
    query: &BTreeMap<String, String>,
    opts: &WriteOptions,
) -> Result<(u16, Value), ApiError> {
    if t.def.create_only {
        return Err(ApiError::method_not_allowed());
    }
    let (labels, fields) = selectors(&t.def, query)?;
    let mut store = st.lock_store();
    let targets = store.list(&t.def, t.namespace.as_deref(), &labels, &fields);
    let mut items = Vec::new();
    for obj in targets {
        let (ns, name) = (
            super::store::namespace_of(&obj).to_owned(),
            name_of(&obj).to_owned(),
        );
        if let Ok(d) = store.delete(&t.def, &ns, &name, opts, None) {
            items.push((*d).clone());
        }
    }
    Ok((
        200,
        json!({"kind": format!("{}List", t.def.kind), "apiVersion": t.def.api_version(), "metadata": {"resourceVersion": store.rv().to_string()}, "items": items}),
    ))
}
