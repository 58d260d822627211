//! The typed Quay REST client: one connection pool per Quay instance.

use super::endpoint::{self as ep, Endpoint};
use super::error::QuayError;
use super::metrics::QuayMetrics;
use super::names::{self, NameKind};
use super::retry::{self, RetryPolicy};
use super::types::*;
use crate::secret::SecretString;
use bytes::Bytes;
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderValue, RETRY_AFTER};
use reqwest::{Method, Url};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::fmt;
use std::time::{Duration, Instant};

/// How to reach one Quay instance.
#[derive(Clone, Debug)]
pub struct QuayClientConfig {
    /// Base URL with scheme, e.g. `https://quay.example.com` or
    /// `https://proxy.example.com/quay` (a path prefix is kept).
    pub base_url: String,
    /// OAuth access token, sent as `Authorization: Bearer`.
    pub token: SecretString,
    /// Extra CA certificates (PEM) trusted besides the system roots.
    pub ca_bundle_pem: Option<Vec<u8>>,
    /// Skip TLS certificate verification. An explicit, unsafe opt-in.
    pub insecure: bool,
    /// TCP + TLS connect timeout.
    pub connect_timeout: Duration,
    /// Whole-request timeout, per attempt.
    pub request_timeout: Duration,
    /// Retry policy.
    pub retry: RetryPolicy,
}

impl QuayClientConfig {
    /// A configuration with the defaults: TLS verified, 5 s connect and 30 s
    /// request timeouts, the default retry policy.
    pub fn new(base_url: impl Into<String>, token: SecretString) -> Self {
        Self {
            base_url: base_url.into(),
            token,
            ca_bundle_pem: None,
            insecure: false,
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(30),
            retry: RetryPolicy::default(),
        }
    }
}

/// A Quay API client. Cheap to clone; clones share the connection pool.
#[derive(Clone)]
pub struct QuayClient {
    http: reqwest::Client,
    base: Url,
    token: SecretString,
    retry: RetryPolicy,
    metrics: QuayMetrics,
}

impl fmt::Debug for QuayClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QuayClient")
            .field("base", &self.base.as_str())
            .field("token", &self.token)
            .finish_non_exhaustive()
    }
}

/// Parses and checks a Quay base URL: scheme http or https, a host, no query.
pub fn parse_base_url(raw: &str) -> Result<Url, QuayError> {
    let url = Url::parse(raw.trim()).map_err(|e| {
        QuayError::Config(format!(
            "Quay URL {raw:?} is not a URL ({e}); it needs a scheme, e.g. https://quay.example.com"
        ))
    })?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(QuayError::Config(format!(
            "Quay URL {raw:?} must start with https:// or http://"
        )));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(QuayError::Config(format!("Quay URL {raw:?} has no host")));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(QuayError::Config(format!(
            "Quay URL {raw:?} must not have a query or fragment"
        )));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(QuayError::Config(
            "Quay URL must not carry credentials; use the token".into(),
        ));
    }
    Ok(url)
}

/// The registry host (`host[:port]`) of a Quay base URL: the key of
/// dockerconfigjson `auths` and the prefix of image references.
pub fn registry_host(url: &Url) -> String {
    match (url.host_str(), url.port()) {
        (Some(host), Some(port)) => format!("{host}:{port}"),
        (Some(host), None) => host.to_owned(),
        (None, _) => String::new(),
    }
}

enum Idempotency {
    /// Safe to repeat after any transient failure.
    Idempotent,
    /// Repeat only when Quay certainly did not act (429, connect failures).
    Create,
}

impl QuayClient {
    /// Builds the client. The process-wide rustls crypto provider must be
    /// installed first (see [`crate::install_crypto_provider`]).
    pub fn new(config: QuayClientConfig, metrics: QuayMetrics) -> Result<Self, QuayError> {
        let QuayClientConfig {
            base_url,
            token,
            ca_bundle_pem,
            insecure,
            connect_timeout,
            request_timeout,
            retry,
        } = config;
        let base = parse_base_url(&base_url)?;
        if rustls::crypto::CryptoProvider::get_default().is_none() {
            return Err(QuayError::Config(
                "no rustls crypto provider installed".into(),
            ));
        }
        let mut builder = reqwest::Client::builder()
            .connect_timeout(connect_timeout)
            .timeout(request_timeout)
            .pool_idle_timeout(Duration::from_secs(60))
            .user_agent(crate::USER_AGENT)
            // A Quay API never redirects a correct request; following one
            // could carry the token elsewhere.
            .redirect(reqwest::redirect::Policy::none());
        if let Some(pem) = ca_bundle_pem {
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| QuayError::Config(format!("Quay CA bundle is not valid PEM: {e}")))?;
            if certs.is_empty() {
                return Err(QuayError::Config(
                    "Quay CA bundle holds no certificate".into(),
                ));
            }
            builder = builder.tls_certs_merge(certs);
        }
        if insecure {
            tracing::warn!(url = %base, "TLS certificate verification to Quay is disabled (insecure)");
            builder = builder.danger_accept_invalid_certs(true);
        }
        let http = builder
            .build()
            .map_err(|e| QuayError::Config(format!("cannot build HTTP client: {e}")))?;
        Ok(Self {
            http,
            base,
            token,
            retry,
            metrics,
        })
    }

    /// The base URL.
    pub fn base_url(&self) -> &Url {
        &self.base
    }

    /// `host[:port]` of the Quay registry.
    pub fn registry_host(&self) -> String {
        registry_host(&self.base)
    }

    fn url(&self, segments: &[&str], trailing_slash: bool) -> Result<Url, QuayError> {
        let mut url = self.base.clone();
        {
            let mut path = url
                .path_segments_mut()
                .map_err(|()| QuayError::Config("Quay URL cannot have a path".into()))?;
            path.pop_if_empty();
            path.extend(["api", "v1"]);
            path.extend(segments);
            if trailing_slash {
                path.push("");
            }
        }
        Ok(url)
    }

    async fn attempt(
        &self,
        endpoint: Endpoint,
        method: &Method,
        url: &Url,
        query: &[(&str, &str)],
        body: Option<&Bytes>,
        attempt: u32,
    ) -> Result<(u16, Bytes), QuayError> {
        let mut request = self
            .http
            .request(method.clone(), url.clone())
            .header(ACCEPT, "application/json");
        if !query.is_empty() {
            request = request.query(query);
        }
        if !self.token.is_empty() {
            let mut value = HeaderValue::from_str(&format!("Bearer {}", self.token.expose()))
                .map_err(|_| {
                    QuayError::Config("the Quay token has characters a header cannot carry".into())
                })?;
            value.set_sensitive(true);
            request = request.header(AUTHORIZATION, value);
        }
        if let Some(body) = body {
            request = request
                .header(CONTENT_TYPE, "application/json")
                .body(body.clone());
        }
        let started = Instant::now();
        let response = match request.send().await {
            Ok(r) => r,
            Err(e) => {
                self.metrics.observe(endpoint, None, started.elapsed());
                let err = QuayError::from_transport(endpoint, &e);
                tracing::debug!(%endpoint, attempt, error = %err, "Quay request failed");
                return Err(err);
            }
        };
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(parse_retry_after);
        let bytes = match response.bytes().await {
            Ok(b) => b,
            Err(e) => {
                self.metrics.observe(endpoint, None, started.elapsed());
                // The status line arrived, so Quay received the request.
                let mut err = QuayError::from_transport(endpoint, &e);
                if let QuayError::Transport { before_send, .. } = &mut err {
                    *before_send = false;
                }
                return Err(err);
            }
        };
        let elapsed = started.elapsed();
        self.metrics.observe(endpoint, Some(status), elapsed);
        tracing::debug!(%endpoint, status, attempt, elapsed_ms = elapsed.as_millis() as u64, "Quay request");
        if (200..300).contains(&status) {
            Ok((status, bytes))
        } else {
            Err(QuayError::from_response(
                endpoint,
                status,
                retry_after,
                &bytes,
            ))
        }
    }

    async fn execute(
        &self,
        endpoint: Endpoint,
        idempotency: Idempotency,
        url: Url,
        query: &[(&str, &str)],
        body: Option<Bytes>,
    ) -> Result<(u16, Bytes), QuayError> {
        let method = Method::from_bytes(endpoint.method.as_bytes())
            .map_err(|_| QuayError::Config(format!("bad method {}", endpoint.method)))?;
        let retryable = |e: &QuayError| match idempotency {
            Idempotency::Idempotent => e.is_transient(),
            Idempotency::Create => match e {
                QuayError::RateLimited { .. } => true,
                QuayError::Transport { before_send, .. } => *before_send,
                _ => false,
            },
        };
        retry::run(&self.retry, retryable, |attempt| {
            self.attempt(endpoint, &method, &url, query, body.as_ref(), attempt)
        })
        .await
    }

    async fn get_json<T: DeserializeOwned>(
        &self,
        endpoint: Endpoint,
        url: Url,
        query: &[(&str, &str)],
    ) -> Result<T, QuayError> {
        let (status, bytes) = self
            .execute(endpoint, Idempotency::Idempotent, url, query, None)
            .await?;
        decode(endpoint, status, &bytes)
    }

    async fn send_json<B: Serialize, T: DeserializeOwned>(
        &self,
        endpoint: Endpoint,
        idempotency: Idempotency,
        url: Url,
        body: &B,
    ) -> Result<T, QuayError> {
        let body = encode(endpoint, body)?;
        let (status, bytes) = self
            .execute(endpoint, idempotency, url, &[], Some(body))
            .await?;
        decode(endpoint, status, &bytes)
    }

    async fn send_no_content(
        &self,
        endpoint: Endpoint,
        idempotency: Idempotency,
        url: Url,
        body: Option<Bytes>,
    ) -> Result<(), QuayError> {
        self.execute(endpoint, idempotency, url, &[], body)
            .await
            .map(|_| ())
    }

    /// Runs a create; when it fails in a way that leaves open whether Quay
    /// acted (a 5xx, a connection lost after sending), asks `verify` whether
    /// the object exists before repeating the create.
    async fn create_verified<T, C, CF, V, VF>(&self, create: C, verify: V) -> Result<T, QuayError>
    where
        C: Fn() -> CF,
        CF: Future<Output = Result<T, QuayError>>,
        V: Fn() -> VF,
        VF: Future<Output = Result<Option<T>, QuayError>>,
    {
        let mut attempt = 1;
        loop {
            let err = match create().await {
                Ok(value) => return Ok(value),
                Err(err) if err.is_ambiguous() => err,
                Err(err) => return Err(err),
            };
            match verify().await {
                Ok(Some(value)) => {
                    tracing::debug!(error = %err, "create answered with an error but took effect");
                    return Ok(value);
                }
                Ok(None) => {}
                Err(_) => return Err(err),
            }
            if !err.is_transient() {
                return Err(err);
            }
            let Some(delay) = self.retry.next_delay(attempt, &err, &mut rand::rng()) else {
                return Err(err);
            };
            tokio::time::sleep(delay).await;
            attempt += 1;
        }
    }

    // === user ===

    /// `GET /api/v1/user/`: who the token belongs to.
    pub async fn current_user(&self) -> Result<User, QuayError> {
        self.get_json(ep::USER_GET, self.url(&["user"], true)?, &[])
            .await
    }

    // === organizations ===

    /// `GET /api/v1/organization/{org}`; `None` when it does not exist.
    pub async fn get_organization(&self, org: &str) -> Result<Option<Organization>, QuayError> {
        names::validate(NameKind::Organization, org)?;
        let url = self.url(&["organization", org], false)?;
        optional(self.get_json(ep::ORG_GET, url, &[]).await)
    }

    /// `POST /api/v1/organization/`. A duplicate is [`QuayError::AlreadyExists`].
    pub async fn create_organization(
        &self,
        org: &str,
        email: Option<&str>,
    ) -> Result<(), QuayError> {
        names::validate(NameKind::Organization, org)?;
        let url = self.url(&["organization"], true)?;
        let body = encode(ep::ORG_CREATE, &NewOrganization { name: org, email })?;
        self.create_verified(
            || {
                self.send_no_content(
                    ep::ORG_CREATE,
                    Idempotency::Create,
                    url.clone(),
                    Some(body.clone()),
                )
            },
            || async { Ok(self.get_organization(org).await?.map(|_| ())) },
        )
        .await
    }

    /// `DELETE /api/v1/organization/{org}`. A missing organization is
    /// [`QuayError::NotFound`].
    pub async fn delete_organization(&self, org: &str) -> Result<(), QuayError> {
        names::validate(NameKind::Organization, org)?;
        let url = self.url(&["organization", org], false)?;
        self.send_no_content(ep::ORG_DELETE, Idempotency::Idempotent, url, None)
            .await
    }

    // === robots ===

    /// `GET /api/v1/organization/{org}/robots`, with or without tokens.
    pub async fn list_robots(&self, org: &str, with_tokens: bool) -> Result<Vec<Robot>, QuayError> {
        self.list_robots_with(org, with_tokens, false).await
    }

    /// `GET /api/v1/organization/{org}/robots`; with `permissions` each robot
    /// names the repositories it holds a permission on.
    pub async fn list_robots_with(
        &self,
        org: &str,
        with_tokens: bool,
        permissions: bool,
    ) -> Result<Vec<Robot>, QuayError> {
        names::validate(NameKind::Organization, org)?;
        let url = self.url(&["organization", org, "robots"], false)?;
        let flag = |b: bool| if b { "true" } else { "false" };
        let list: RobotList = self
            .get_json(
                ep::ROBOT_LIST,
                url,
                &[
                    ("permissions", flag(permissions)),
                    ("token", flag(with_tokens)),
                ],
            )
            .await?;
        Ok(list.robots)
    }

    /// `GET /api/v1/organization/{org}/robots/{robot}`; `None` when missing
    /// (Quay answers 400 for that).
    pub async fn get_robot(&self, org: &str, robot: &str) -> Result<Option<Robot>, QuayError> {
        let url = self.robot_url(org, robot, None)?;
        optional(self.get_json(ep::ROBOT_GET, url, &[]).await)
    }

    /// `PUT /api/v1/organization/{org}/robots/{robot}`: creates the robot and
    /// returns it with its token. A duplicate is [`QuayError::AlreadyExists`].
    pub async fn create_robot(
        &self,
        org: &str,
        robot: &str,
        body: &NewRobot,
    ) -> Result<Robot, QuayError> {
        let url = self.robot_url(org, robot, None)?;
        let bytes = encode(ep::ROBOT_CREATE, body)?;
        self.create_verified(
            || async {
                let (status, b) = self
                    .execute(
                        ep::ROBOT_CREATE,
                        Idempotency::Create,
                        url.clone(),
                        &[],
                        Some(bytes.clone()),
                    )
                    .await?;
                decode(ep::ROBOT_CREATE, status, &b)
            },
            || self.get_robot(org, robot),
        )
        .await
    }

    /// `DELETE /api/v1/organization/{org}/robots/{robot}`.
    pub async fn delete_robot(&self, org: &str, robot: &str) -> Result<(), QuayError> {
        let url = self.robot_url(org, robot, None)?;
        self.send_no_content(ep::ROBOT_DELETE, Idempotency::Idempotent, url, None)
            .await
    }

    /// `POST /api/v1/organization/{org}/robots/{robot}/regenerate`: a new
    /// token. Repeating it only regenerates again, so it is retried.
    pub async fn regenerate_robot_token(&self, org: &str, robot: &str) -> Result<Robot, QuayError> {
        let url = self.robot_url(org, robot, Some("regenerate"))?;
        let (status, bytes) = self
            .execute(
                ep::ROBOT_REGENERATE,
                Idempotency::Idempotent,
                url,
                &[],
                None,
            )
            .await?;
        decode(ep::ROBOT_REGENERATE, status, &bytes)
    }

    fn robot_url(&self, org: &str, robot: &str, action: Option<&str>) -> Result<Url, QuayError> {
        names::validate(NameKind::Organization, org)?;
        names::validate(NameKind::Robot, robot)?;
        match action {
            Some(action) => self.url(&["organization", org, "robots", robot, action], false),
            None => self.url(&["organization", org, "robots", robot], false),
        }
    }

    // === default permissions (prototypes) ===

    /// `GET /api/v1/organization/{org}/prototypes`.
    pub async fn list_prototypes(&self, org: &str) -> Result<Vec<Prototype>, QuayError> {
        names::validate(NameKind::Organization, org)?;
        let url = self.url(&["organization", org, "prototypes"], false)?;
        let list: PrototypeList = self.get_json(ep::PROTOTYPE_LIST, url, &[]).await?;
        Ok(list.prototypes)
    }

    /// `POST /api/v1/organization/{org}/prototypes`: grants `role` on every
    /// repository created later to the robot `org+robot`.
    pub async fn create_robot_prototype(
        &self,
        org: &str,
        robot: &str,
        role: Role,
    ) -> Result<Prototype, QuayError> {
        names::validate(NameKind::Organization, org)?;
        names::validate(NameKind::Robot, robot)?;
        let url = self.url(&["organization", org, "prototypes"], false)?;
        let delegate_name = format!("{org}+{robot}");
        let body = NewPrototype {
            role,
            delegate: Delegate {
                name: delegate_name.clone(),
                kind: "user".into(),
                is_robot: true,
            },
        };
        let bytes = encode(ep::PROTOTYPE_CREATE, &body)?;
        self.create_verified(
            || async {
                let (status, b) = self
                    .execute(
                        ep::PROTOTYPE_CREATE,
                        Idempotency::Create,
                        url.clone(),
                        &[],
                        Some(bytes.clone()),
                    )
                    .await?;
                decode(ep::PROTOTYPE_CREATE, status, &b)
            },
            || async {
                Ok(self
                    .list_prototypes(org)
                    .await?
                    .into_iter()
                    .find(|p| p.role == role && p.delegate.name == delegate_name))
            },
        )
        .await
    }

    /// `DELETE /api/v1/organization/{org}/prototypes/{id}`.
    pub async fn delete_prototype(&self, org: &str, id: &str) -> Result<(), QuayError> {
        names::validate(NameKind::Organization, org)?;
        if id.is_empty() || !id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
            return Err(QuayError::Config(format!("{id:?} is not a prototype id")));
        }
        let url = self.url(&["organization", org, "prototypes", id], false)?;
        self.send_no_content(ep::PROTOTYPE_DELETE, Idempotency::Idempotent, url, None)
            .await
    }

    // === repositories ===

    /// `GET /api/v1/repository/{org}/{repo}`; `None` when missing.
    pub async fn get_repository(
        &self,
        org: &str,
        repo: &str,
    ) -> Result<Option<Repository>, QuayError> {
        let url = self.repo_url(org, repo, &[])?;
        optional(self.get_json(ep::REPO_GET, url, &[]).await)
    }

    /// `GET /api/v1/repository?namespace={org}`, following `next_page`.
    pub async fn list_repositories(&self, org: &str) -> Result<Vec<Repository>, QuayError> {
        names::validate(NameKind::Organization, org)?;
        let mut all = Vec::new();
        let mut next: Option<String> = None;
        // Bounded: a misbehaving server cannot keep the loop going for ever.
        for _ in 0..10_000 {
            let url = self.url(&["repository"], false)?;
            let mut query = vec![("namespace", org)];
            if let Some(token) = next.as_deref() {
                query.push(("next_page", token));
            }
            let page: RepositoryList = self.get_json(ep::REPO_LIST, url, &query).await?;
            all.extend(page.repositories);
            match page.next_page {
                Some(token) if !token.is_empty() => next = Some(token),
                _ => return Ok(all),
            }
        }
        Err(QuayError::Decode {
            endpoint: ep::REPO_LIST,
            status: 200,
            message: "pagination did not end".into(),
        })
    }

    /// `POST /api/v1/repository`. A duplicate is [`QuayError::AlreadyExists`].
    pub async fn create_repository(
        &self,
        org: &str,
        repo: &str,
        visibility: Visibility,
        description: &str,
    ) -> Result<(), QuayError> {
        names::validate(NameKind::Organization, org)?;
        names::validate(NameKind::Repository, repo)?;
        let url = self.url(&["repository"], false)?;
        let body = encode(
            ep::REPO_CREATE,
            &NewRepository {
                namespace: org,
                repository: repo,
                visibility,
                description,
                repo_kind: "image",
            },
        )?;
        self.create_verified(
            || {
                self.send_no_content(
                    ep::REPO_CREATE,
                    Idempotency::Create,
                    url.clone(),
                    Some(body.clone()),
                )
            },
            || async { Ok(self.get_repository(org, repo).await?.map(|_| ())) },
        )
        .await
    }

    /// `DELETE /api/v1/repository/{org}/{repo}` (Quay answers 204 even when
    /// the repository is already gone).
    pub async fn delete_repository(&self, org: &str, repo: &str) -> Result<(), QuayError> {
        let url = self.repo_url(org, repo, &[])?;
        self.send_no_content(ep::REPO_DELETE, Idempotency::Idempotent, url, None)
            .await
    }

    /// `POST /api/v1/repository/{org}/{repo}/changevisibility`.
    pub async fn set_repository_visibility(
        &self,
        org: &str,
        repo: &str,
        visibility: Visibility,
    ) -> Result<(), QuayError> {
        let url = self.repo_url(org, repo, &["changevisibility"])?;
        let body = encode(ep::REPO_VISIBILITY, &VisibilityBody { visibility })?;
        self.send_no_content(
            ep::REPO_VISIBILITY,
            Idempotency::Idempotent,
            url,
            Some(body),
        )
        .await
    }

    /// `GET …/permissions/user/`: every user and robot permission, by name.
    pub async fn list_repository_permissions(
        &self,
        org: &str,
        repo: &str,
    ) -> Result<Vec<RepositoryPermission>, QuayError> {
        let mut url = self.repo_url(org, repo, &["permissions", "user"])?;
        if let Ok(mut path) = url.path_segments_mut() {
            path.push("");
        }
        let list: RepositoryPermissionList = self.get_json(ep::REPO_PERM_LIST, url, &[]).await?;
        Ok(list.permissions.into_values().collect())
    }

    /// `GET …/permissions/user/{user}`; `None` when the user or robot holds
    /// no permission (Quay answers 400 for that).
    pub async fn get_repository_permission(
        &self,
        org: &str,
        repo: &str,
        user: &str,
    ) -> Result<Option<RepositoryPermission>, QuayError> {
        let url = self.repo_perm_url(org, repo, user)?;
        optional(self.get_json(ep::REPO_PERM_GET, url, &[]).await)
    }

    /// `PUT …/permissions/user/{user}` with `{"role": …}`.
    pub async fn set_repository_permission(
        &self,
        org: &str,
        repo: &str,
        user: &str,
        role: Role,
    ) -> Result<RepositoryPermission, QuayError> {
        let url = self.repo_perm_url(org, repo, user)?;
        self.send_json(
            ep::REPO_PERM_PUT,
            Idempotency::Idempotent,
            url,
            &RoleBody { role },
        )
        .await
    }

    /// `DELETE …/permissions/user/{user}`.
    pub async fn delete_repository_permission(
        &self,
        org: &str,
        repo: &str,
        user: &str,
    ) -> Result<(), QuayError> {
        let url = self.repo_perm_url(org, repo, user)?;
        self.send_no_content(ep::REPO_PERM_DELETE, Idempotency::Idempotent, url, None)
            .await
    }

    /// `GET …/tag/?onlyActiveTags=true`, following `has_additional`.
    pub async fn list_tags(&self, org: &str, repo: &str) -> Result<Vec<Tag>, QuayError> {
        let mut url = self.repo_url(org, repo, &["tag"])?;
        if let Ok(mut path) = url.path_segments_mut() {
            path.push("");
        }
        let mut all = Vec::new();
        for page in 1..=10_000u32 {
            let page_text = page.to_string();
            let query = [
                ("onlyActiveTags", "true"),
                ("limit", "100"),
                ("page", page_text.as_str()),
            ];
            let result: TagPage = self.get_json(ep::TAG_LIST, url.clone(), &query).await?;
            all.extend(result.tags);
            if !result.has_additional {
                return Ok(all);
            }
        }
        Err(QuayError::Decode {
            endpoint: ep::TAG_LIST,
            status: 200,
            message: "pagination did not end".into(),
        })
    }

    fn repo_url(&self, org: &str, repo: &str, rest: &[&str]) -> Result<Url, QuayError> {
        names::validate(NameKind::Organization, org)?;
        names::validate(NameKind::Repository, repo)?;
        let mut segments = vec!["repository", org, repo];
        segments.extend_from_slice(rest);
        self.url(&segments, false)
    }

    fn repo_perm_url(&self, org: &str, repo: &str, user: &str) -> Result<Url, QuayError> {
        // A user name, or a robot `namespace+short`.
        match user.split_once('+') {
            Some((ns, short)) => {
                names::validate(NameKind::Organization, ns)?;
                names::validate(NameKind::Robot, short)?;
            }
            None => names::validate(NameKind::Organization, user)?,
        }
        self.repo_url(org, repo, &["permissions", "user", user])
    }
}

/// `Ok(None)` for a not-found error.
fn optional<T>(result: Result<T, QuayError>) -> Result<Option<T>, QuayError> {
    match result {
        Ok(value) => Ok(Some(value)),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e),
    }
}

fn encode<B: Serialize>(endpoint: Endpoint, body: &B) -> Result<Bytes, QuayError> {
    serde_json::to_vec(body)
        .map(Bytes::from)
        .map_err(|e| QuayError::Config(format!("{endpoint}: cannot encode request: {e}")))
}

fn decode<T: DeserializeOwned>(
    endpoint: Endpoint,
    status: u16,
    bytes: &[u8],
) -> Result<T, QuayError> {
    serde_json::from_slice(bytes).map_err(|e| QuayError::Decode {
        endpoint,
        status,
        message: e.to_string(),
    })
}

/// Retry-After as delta-seconds or an HTTP date.
fn parse_retry_after(value: &HeaderValue) -> Option<Duration> {
    let text = value.to_str().ok()?.trim();
    if let Ok(secs) = text.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = jiff::fmt::rfc2822::parse(text).ok()?.timestamp();
    let delta = when.duration_since(jiff::Timestamp::now());
    Some(Duration::try_from(delta).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls_need_a_scheme_and_keep_their_prefix() {
        crate::install_crypto_provider();
        for bad in [
            "quay.example.com",
            "ftp://quay.example.com",
            "https://",
            "https://q.example.com/?a=b",
            "https://u:p@q.example.com",
        ] {
            assert!(
                matches!(parse_base_url(bad), Err(QuayError::Config(_))),
                "{bad}"
            );
        }
        let client = QuayClient::new(
            QuayClientConfig::new("https://proxy.example.com/quay/", "t".into()),
            QuayMetrics::default(),
        )
        .unwrap();
        assert_eq!(
            client.url(&["organization", "o"], false).unwrap().as_str(),
            "https://proxy.example.com/quay/api/v1/organization/o"
        );
        assert_eq!(
            client.url(&["user"], true).unwrap().as_str(),
            "https://proxy.example.com/quay/api/v1/user/"
        );
        let client = QuayClient::new(
            QuayClientConfig::new("http://127.0.0.1:8080", "t".into()),
            QuayMetrics::default(),
        )
        .unwrap();
        assert_eq!(
            client.url(&["repository"], false).unwrap().as_str(),
            "http://127.0.0.1:8080/api/v1/repository"
        );
        assert_eq!(client.registry_host(), "127.0.0.1:8080");
        assert_eq!(
            registry_host(&parse_base_url("https://quay.example.com").unwrap()),
            "quay.example.com"
        );
        assert_eq!(
            registry_host(&parse_base_url("https://quay.example.com:443").unwrap()),
            "quay.example.com"
        );
    }

    #[test]
    fn debug_hides_the_token() {
        crate::install_crypto_provider();
        let client = QuayClient::new(
            QuayClientConfig::new("https://q.example.com", "s3cr3t-token".into()),
            QuayMetrics::default(),
        )
        .unwrap();
        let text = format!("{client:?}");
        assert!(!text.contains("s3cr3t-token"), "{text}");
        let config = QuayClientConfig::new("https://q.example.com", "s3cr3t-token".into());
        assert!(!format!("{config:?}").contains("s3cr3t-token"));
    }

    #[test]
    fn bad_ca_bundles_are_config_errors() {
        crate::install_crypto_provider();
        let mut config = QuayClientConfig::new("https://q.example.com", "t".into());
        config.ca_bundle_pem = Some(b"not a pem".to_vec());
        assert!(matches!(
            QuayClient::new(config, QuayMetrics::default()),
            Err(QuayError::Config(_))
        ));
    }

    #[test]
    fn retry_after_forms() {
        assert_eq!(
            parse_retry_after(&HeaderValue::from_static("7")),
            Some(Duration::from_secs(7))
        );
        assert_eq!(
            parse_retry_after(&HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT")),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after(&HeaderValue::from_static("soon")), None);
    }
}
