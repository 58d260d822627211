//! A Docker Registry HTTP API v2 subset with Quay's token flow: `/v2/`
//! challenges with 401, `/v2/auth` exchanges Basic credentials (a robot and
//! its token, `$oauthtoken` and an OAuth token, or a user and password) for
//! a bearer token limited to the repository actions the caller may do, and
//! blob and manifest pushes and pulls enforce that token.

use super::state::{QuayState, RegistryGrant, TagRecord, quay_now, random_token, random_uuid};
use base64::Engine;
use bytes::Bytes;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

/// A registry answer.
#[derive(Debug, Clone)]
pub struct RegReply {
    /// Status.
    pub status: u16,
    /// Extra headers.
    pub headers: Vec<(&'static str, String)>,
    /// Content type of the body.
    pub content_type: String,
    /// Body.
    pub body: Bytes,
}

impl RegReply {
    fn json(status: u16, body: Value) -> Self {
        Self {
            status,
            headers: Vec::new(),
            content_type: "application/json".into(),
            body: Bytes::from(body.to_string()),
        }
    }

    fn header(mut self, name: &'static str, value: String) -> Self {
        self.headers.push((name, value));
        self
    }
}

fn reg_error(status: u16, code: &str, message: &str) -> RegReply {
    RegReply::json(
        status,
        json!({"errors": [{"code": code, "message": message, "detail": {}}]}),
    )
}

/// The request as the registry sees it.
pub struct RegRequest<'a> {
    /// Method.
    pub method: &'a str,
    /// Path (starts with `/v2`).
    pub path: &'a str,
    /// Raw query string.
    pub query: &'a str,
    /// Authorization header.
    pub authorization: Option<&'a str>,
    /// Content-Type header.
    pub content_type: Option<&'a str>,
    /// Body.
    pub body: &'a Bytes,
    /// `http(s)://host[:port]`.
    pub base: &'a str,
    /// `host[:port]`.
    pub host: &'a str,
}

/// Endpoint template of a registry path, for the request log.
pub fn template(path: &str) -> &'static str {
    let parts: Vec<&str> = path.trim_start_matches("/v2").split('/').collect();
    match parts.as_slice() {
        [""] | ["", ""] => "/v2/",
        ["", "auth"] => "/v2/auth",
        ["", _, _, "manifests", _] => "/v2/{org}/{repo}/manifests/{reference}",
        ["", _, _, "blobs", "uploads", ""] => "/v2/{org}/{repo}/blobs/uploads/",
        ["", _, _, "blobs", "uploads", _] => "/v2/{org}/{repo}/blobs/uploads/{uuid}",
        ["", _, _, "blobs", _] => "/v2/{org}/{repo}/blobs/{digest}",
        ["", _, _, "tags", "list"] => "/v2/{org}/{repo}/tags/list",
        _ => "(other)",
    }
}

fn query_values(query: &str, key: &str) -> Vec<String> {
    query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .filter(|(k, _)| *k == key)
        .map(|(_, v)| super::api::percent_decode(&v.replace('+', " ")))
        .collect()
}

pub use bridge_common::encoding::sha256_digest;

fn challenge(req: &RegRequest, scope: Option<&str>, error: Option<&str>) -> String {
    let mut value = format!(
        "Bearer realm=\"{}/v2/auth\",service=\"{}\"",
        req.base, req.host
    );
    if let Some(scope) = scope {
        value.push_str(&format!(",scope=\"{scope}\""));
    }
    if let Some(error) = error {
        value.push_str(&format!(",error=\"{error}\""));
    }
    value
}

const TOKEN_TTL: Duration = Duration::from_secs(3600);

/// Answers one registry request.
pub fn handle(state: &mut QuayState, req: &RegRequest) -> RegReply {
    let rest = req.path.trim_start_matches("/v2");
    let parts: Vec<&str> = rest.split('/').collect();
    let bearer = req
        .authorization
        .and_then(|a| a.strip_prefix("Bearer "))
        .map(str::trim);
    let grant = bearer
        .and_then(|t| state.registry_tokens.get(t))
        .filter(|g| g.expires_at > Instant::now())
        .cloned();
    match (req.method, parts.as_slice()) {
        ("GET", [""] | ["", ""]) => match grant {
            Some(_) => RegReply::json(200, json!({}))
                .header("Docker-Distribution-API-Version", "registry/2.0".into()),
            None => reg_error(
                401,
                "UNAUTHORIZED",
                "access to the requested resource is not authorized",
            )
            .header("WWW-Authenticate", challenge(req, None, None))
            .header("Docker-Distribution-API-Version", "registry/2.0".into()),
        },
        ("GET", ["", "auth"]) => auth(state, req),
        (method, ["", ns, repo, kind, tail @ ..]) => {
            let repository = format!("{ns}/{repo}");
            let needed = if matches!(method, "GET" | "HEAD") {
                "pull"
            } else {
                "push"
            };
            let allowed = grant.as_ref().is_some_and(|g| {
                g.access
                    .get(&repository)
                    .is_some_and(|a| a.contains(needed))
            });
            if !allowed {
                let scope = format!("repository:{repository}:{needed}");
                let error = grant.as_ref().map(|_| "insufficient_scope");
                return reg_error(
                    401,
                    "UNAUTHORIZED",
                    "access to the requested resource is not authorized",
                )
                .header("WWW-Authenticate", challenge(req, Some(&scope), error));
            }
            let subject = grant.and_then(|g| g.subject);
            match (method, *kind, tail) {
                ("PUT", "manifests", [reference]) => {
                    put_manifest(state, req, ns, repo, reference, subject.as_deref())
                }
                ("GET" | "HEAD", "manifests", [reference]) => {
                    get_manifest(state, req, ns, repo, reference)
                }
                ("POST", "blobs", ["uploads", ""]) => start_upload(state, req, ns, repo),
                ("PUT", "blobs", ["uploads", id]) => finish_upload(state, req, ns, repo, id),
                ("GET" | "HEAD", "blobs", [digest]) => get_blob(state, req, digest),
                ("GET", "tags", ["list"]) => tag_list(state, ns, repo),
                _ => reg_error(404, "UNSUPPORTED", "unsupported registry operation"),
            }
        }
        _ => reg_error(404, "UNSUPPORTED", "unsupported registry operation"),
    }
}

fn auth(state: &mut QuayState, req: &RegRequest) -> RegReply {
    let subject = match req.authorization.and_then(|a| a.strip_prefix("Basic ")) {
        None => None,
        Some(encoded) => {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(encoded.trim())
                .ok()
                .and_then(|b| String::from_utf8(b).ok());
            let Some((user, password)) = decoded.as_deref().and_then(|d| d.split_once(':')) else {
                return reg_error(401, "UNAUTHORIZED", "Invalid username or password");
            };
            match state.registry_login(user, password) {
                Some(subject) => Some(subject),
                None => return reg_error(401, "UNAUTHORIZED", "Invalid username or password"),
            }
        }
    };
    let mut access: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut granted_json = Vec::new();
    for scope in query_values(req.query, "scope") {
        let mut parts = scope.splitn(3, ':');
        let (Some("repository"), Some(repository), Some(actions)) =
            (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        let Some((ns, repo)) = repository.split_once('/') else {
            continue;
        };
        let exists = state
            .orgs
            .get(ns)
            .is_some_and(|o| o.repos.contains_key(repo));
        let mut allowed = BTreeSet::new();
        for action in actions.split(',') {
            let ok = match action {
                "pull" => state.can_read(subject.as_deref(), ns, repo),
                // Users who administer the namespace may create by pushing;
                // robots need an existing repository with write access.
                "push" => {
                    state.can_write(subject.as_deref(), ns, repo)
                        || (!exists
                            && subject
                                .as_deref()
                                .is_some_and(|s| !s.contains('+') && state.is_org_admin(s, ns)))
                }
                _ => false,
            };
            if ok {
                allowed.insert(action.to_owned());
            }
        }
        granted_json.push(json!({"type": "repository", "name": repository, "actions": allowed.iter().collect::<Vec<_>>()}));
        access
            .entry(repository.to_owned())
            .or_default()
            .extend(allowed);
    }
    let token = random_token(48);
    state
        .registry_tokens
        .retain(|_, g| g.expires_at > Instant::now());
    state.registry_tokens.insert(
        token.clone(),
        RegistryGrant {
            subject,
            access,
            expires_at: Instant::now() + TOKEN_TTL,
        },
    );
    RegReply::json(200, json!({"token": token, "access": granted_json}))
}

fn repo_exists(state: &QuayState, ns: &str, repo: &str) -> bool {
    state
        .orgs
        .get(ns)
        .is_some_and(|o| o.repos.contains_key(repo))
}

fn put_manifest(
    state: &mut QuayState,
    req: &RegRequest,
    ns: &str,
    repo: &str,
    reference: &str,
    subject: Option<&str>,
) -> RegReply {
    let Ok(manifest) = serde_json::from_slice::<Value>(req.body) else {
        return reg_error(400, "MANIFEST_INVALID", "manifest invalid");
    };
    if manifest.get("schemaVersion").and_then(Value::as_u64) != Some(2) {
        return reg_error(400, "MANIFEST_INVALID", "manifest invalid");
    }
    let mut referenced: Vec<&Value> = manifest
        .get("layers")
        .and_then(Value::as_array)
        .map(|l| l.iter().collect())
        .unwrap_or_default();
    if let Some(config) = manifest.get("config") {
        referenced.push(config);
    }
    let mut size = 0u64;
    for r in &referenced {
        let digest = r.get("digest").and_then(Value::as_str).unwrap_or_default();
        if !state.blobs.contains_key(digest) {
            return reg_error(
                400,
                "MANIFEST_BLOB_UNKNOWN",
                &format!("blob unknown to registry: {digest}"),
            );
        }
        size += r.get("size").and_then(Value::as_u64).unwrap_or(0);
    }
    if !repo_exists(state, ns, repo) {
        if !state.orgs.contains_key(ns) {
            return reg_error(404, "NAME_UNKNOWN", "repository name not known to registry");
        }
        state.create_repo(ns, repo, false, "", "image", subject);
    }
    let digest = sha256_digest(req.body);
    if reference.starts_with("sha256:") && reference != digest {
        return reg_error(
            400,
            "DIGEST_INVALID",
            "provided digest did not match uploaded content",
        );
    }
    let media_type = req
        .content_type
        .map(str::to_owned)
        .or_else(|| {
            manifest
                .get("mediaType")
                .and_then(Value::as_str)
                .map(str::to_owned)
        })
        .unwrap_or_else(|| "application/vnd.oci.image.manifest.v1+json".into());
    let Some(r) = state.orgs.get_mut(ns).and_then(|o| o.repos.get_mut(repo)) else {
        return reg_error(404, "NAME_UNKNOWN", "repository name not known to registry");
    };
    r.manifests.insert(
        digest.clone(),
        super::state::ManifestRecord {
            media_type,
            body: req.body.clone(),
        },
    );
    if !reference.starts_with("sha256:") {
        r.tags.insert(
            reference.to_owned(),
            TagRecord {
                digest: digest.clone(),
                size,
                last_modified: quay_now(),
                start_ts: jiff::Timestamp::now().as_second(),
            },
        );
    }
    RegReply::json(201, json!({}))
        .header("Location", format!("/v2/{ns}/{repo}/manifests/{digest}"))
        .header("Docker-Content-Digest", digest)
}

fn get_manifest(
    state: &QuayState,
    req: &RegRequest,
    ns: &str,
    repo: &str,
    reference: &str,
) -> RegReply {
    let Some(r) = state.orgs.get(ns).and_then(|o| o.repos.get(repo)) else {
        return reg_error(404, "NAME_UNKNOWN", "repository name not known to registry");
    };
    let digest = if reference.starts_with("sha256:") {
        Some(reference.to_owned())
    } else {
        r.tags.get(reference).map(|t| t.digest.clone())
    };
    let Some(m) = digest.as_ref().and_then(|d| r.manifests.get(d)) else {
        return reg_error(404, "MANIFEST_UNKNOWN", "manifest unknown");
    };
    let body = if req.method == "HEAD" {
        Bytes::new()
    } else {
        m.body.clone()
    };
    RegReply {
        status: 200,
        headers: Vec::new(),
        content_type: m.media_type.clone(),
        body,
    }
    .header("Docker-Content-Digest", digest.unwrap_or_default())
    .header("X-Content-Length", m.body.len().to_string())
}

fn start_upload(state: &mut QuayState, req: &RegRequest, ns: &str, repo: &str) -> RegReply {
    // Monolithic upload in one POST when the digest is given.
    if let Some(digest) = query_values(req.query, "digest").into_iter().next() {
        return store_blob(state, req, ns, repo, &digest);
    }
    let id = random_uuid();
    state.uploads.insert(id.clone(), format!("{ns}/{repo}"));
    RegReply {
        status: 202,
        headers: Vec::new(),
        content_type: "application/json".into(),
        body: Bytes::new(),
    }
    .header("Location", format!("/v2/{ns}/{repo}/blobs/uploads/{id}"))
    .header("Docker-Upload-UUID", id)
}

fn finish_upload(
    state: &mut QuayState,
    req: &RegRequest,
    ns: &str,
    repo: &str,
    id: &str,
) -> RegReply {
    if state
        .uploads
        .remove(id)
        .is_none_or(|r| r != format!("{ns}/{repo}"))
    {
        return reg_error(
            404,
            "BLOB_UPLOAD_UNKNOWN",
            "blob upload unknown to registry",
        );
    }
    let Some(digest) = query_values(req.query, "digest").into_iter().next() else {
        return reg_error(400, "DIGEST_INVALID", "digest missing");
    };
    store_blob(state, req, ns, repo, &digest)
}

fn store_blob(
    state: &mut QuayState,
    req: &RegRequest,
    ns: &str,
    repo: &str,
    digest: &str,
) -> RegReply {
    if sha256_digest(req.body) != digest {
        return reg_error(
            400,
            "DIGEST_INVALID",
            "provided digest did not match uploaded content",
        );
    }
    state.blobs.insert(digest.to_owned(), req.body.clone());
    RegReply {
        status: 201,
        headers: Vec::new(),
        content_type: "application/json".into(),
        body: Bytes::new(),
    }
    .header("Location", format!("/v2/{ns}/{repo}/blobs/{digest}"))
    .header("Docker-Content-Digest", digest.to_owned())
}

fn get_blob(state: &QuayState, req: &RegRequest, digest: &str) -> RegReply {
    match state.blobs.get(digest) {
        Some(b) => RegReply {
            status: 200,
            headers: Vec::new(),
            content_type: "application/octet-stream".into(),
            body: if req.method == "HEAD" {
                Bytes::new()
            } else {
                b.clone()
            },
        }
        .header("Docker-Content-Digest", digest.to_owned()),
        None => reg_error(404, "BLOB_UNKNOWN", "blob unknown to registry"),
    }
}

fn tag_list(state: &QuayState, ns: &str, repo: &str) -> RegReply {
    match state.orgs.get(ns).and_then(|o| o.repos.get(repo)) {
        Some(r) => RegReply::json(
            200,
            json!({"name": format!("{ns}/{repo}"), "tags": r.tags.keys().collect::<Vec<_>>()}),
        ),
        None => reg_error(404, "NAME_UNKNOWN", "repository name not known to registry"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates() {
        assert_eq!(template("/v2/"), "/v2/");
        assert_eq!(template("/v2/auth"), "/v2/auth");
        assert_eq!(
            template("/v2/o/r/manifests/latest"),
            "/v2/{org}/{repo}/manifests/{reference}"
        );
        assert_eq!(
            template("/v2/o/r/blobs/uploads/"),
            "/v2/{org}/{repo}/blobs/uploads/"
        );
        assert_eq!(
            template("/v2/o/r/blobs/uploads/abc"),
            "/v2/{org}/{repo}/blobs/uploads/{uuid}"
        );
        assert_eq!(
            template("/v2/o/r/blobs/sha256:1"),
            "/v2/{org}/{repo}/blobs/{digest}"
        );
    }

    #[test]
    fn scope_query_parsing() {
        let q = "service=h&scope=repository%3Ao%2Fr%3Apull%2Cpush&scope=repository:o/x:pull";
        assert_eq!(
            query_values(q, "scope"),
            vec![
                "repository:o/r:pull,push".to_owned(),
                "repository:o/x:pull".to_owned()
            ]
        );
    }

    #[test]
    fn digest_format() {
        assert_eq!(
            sha256_digest(b""),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
