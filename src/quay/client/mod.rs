//! The typed Quay REST client: one connection pool per Quay instance.

use super::endpoint::Endpoint;
use super::error::QuayError;
use super::metrics::QuayMetrics;
use super::retry::{self, RetryPolicy};
use crate::secret::SecretString;
use bytes::Bytes;
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderValue, RETRY_AFTER};
use reqwest::{Method, Url};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::fmt;
use std::time::{Duration, Instant};

mod bootstrap;
mod calls;
#[cfg(feature = "sandbox")]
mod inspect;

pub use bootstrap::MintedToken;

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

/// How the client authenticates.
#[derive(Clone, Debug)]
enum Auth {
    /// An OAuth access token (`Authorization: Bearer`).
    Bearer(SecretString),
    /// A signed-in session: its cookie and CSRF token (bootstrap only).
    Session {
        cookie: SecretString,
        csrf: SecretString,
    },
}

/// A Quay API client. Cheap to clone; clones share the connection pool
/// and what was learnt of the token.
#[derive(Clone)]
pub struct QuayClient {
    http: reqwest::Client,
    base: Url,
    auth: Auth,
    retry: RetryPolicy,
    metrics: QuayMetrics,
    /// Set when Quay answered as it answers a dead token: every later call
    /// but the token probe fails at once, without a request.
    rejected: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl fmt::Debug for QuayClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QuayClient")
            .field("base", &self.base.as_str())
            .field("auth", &self.auth)
            .finish_non_exhaustive()
    }
}

/// Parses and checks a Quay base URL (see [`crate::model::parse_base_url`]).
pub fn parse_base_url(raw: &str) -> Result<Url, QuayError> {
    crate::model::parse_base_url(raw).map_err(|e| QuayError::Config(e.to_string()))
}

pub use crate::model::registry_host;

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
            auth: Auth::Bearer(token),
            retry,
            metrics,
            rejected: std::sync::Arc::default(),
        })
    }

    /// The same Quay, with another token (a fresh rejection state).
    pub fn with_token(&self, token: SecretString) -> Self {
        Self {
            auth: Auth::Bearer(token),
            rejected: std::sync::Arc::default(),
            ..self.clone()
        }
    }

    /// Whether Quay answered a call as it answers a dead token (revoked,
    /// expired, its application or user deleted, its user disabled). Calls
    /// then fail at once until [`Self::current_user`] succeeds again.
    pub fn token_rejected(&self) -> bool {
        self.rejected.load(std::sync::atomic::Ordering::Relaxed)
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
        if self.token_rejected() && endpoint != super::endpoint::USER_GET {
            return Err(QuayError::TokenRejected { endpoint });
        }
        request = self.authenticate(request)?;
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
        let bytes = match read_body(response).await {
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
            if endpoint == super::endpoint::USER_GET {
                self.rejected
                    .store(false, std::sync::atomic::Ordering::Relaxed);
            }
            Ok((status, bytes))
        } else {
            let err = QuayError::from_response(endpoint, status, retry_after, &bytes);
            if err.is_dead_token()
                && matches!(self.auth, Auth::Bearer(_))
                && !self
                    .rejected
                    .swap(true, std::sync::atomic::Ordering::Relaxed)
            {
                tracing::warn!(%endpoint, error = %err, "Quay refuses the token; no more calls with it until it works again");
            }
            Err(err)
        }
    }

    /// Adds the credentials to a request.
    fn authenticate(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<reqwest::RequestBuilder, QuayError> {
        let sensitive = |text: String| {
            HeaderValue::from_str(&text)
                .map(|mut v| {
                    v.set_sensitive(true);
                    v
                })
                .map_err(|_| {
                    QuayError::Config(
                        "a Quay credential has characters a header cannot carry".into(),
                    )
                })
        };
        Ok(match &self.auth {
            Auth::Bearer(token) if token.is_empty() => request,
            Auth::Bearer(token) => request.header(
                AUTHORIZATION,
                sensitive(format!("Bearer {}", token.expose()))?,
            ),
            Auth::Session { cookie, csrf } => request
                .header(
                    reqwest::header::COOKIE,
                    sensitive(format!("{}={}", bootstrap::COOKIE, cookie.expose()))?,
                )
                .header(bootstrap::CSRF_HEADER, sensitive(csrf.expose().to_owned())?),
        })
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
        message: decode_message(&e),
    })
}

/// A decoding error without the value it met: serde_json quotes the
/// offending value (`invalid type: string "…"`, ``unknown variant `…` ``),
/// which in a Quay answer may be a token. Field names are kept.
fn decode_message(e: &serde_json::Error) -> String {
    let text = e.to_string();
    if text.starts_with("missing field") || text.starts_with("duplicate field") {
        return text;
    }
    let what = match e.classify() {
        serde_json::error::Category::Io => "unreadable body",
        serde_json::error::Category::Syntax => "malformed JSON",
        serde_json::error::Category::Data => "a value of the wrong type or shape",
        serde_json::error::Category::Eof => "truncated JSON",
    };
    format!("{what} at line {} column {}", e.line(), e.column())
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
mod decode_tests {
    use super::*;

    #[test]
    fn a_decode_error_never_quotes_the_value() {
        let body = br#"{"name": "o+b", "token": "tok-123456", "repositories": "tok-123456"}"#;
        let err = decode::<crate::quay::types::Robot>(crate::quay::endpoint::ROBOT_GET, 200, body)
            .unwrap_err();
        let text = format!("{err} {err:?}");
        assert!(!text.contains("tok-123456"), "{text}");
        assert!(text.contains("wrong type"), "{text}");
        let missing =
            decode::<crate::quay::types::Robot>(crate::quay::endpoint::ROBOT_GET, 200, b"{}")
                .unwrap_err();
        assert!(
            missing.to_string().contains("missing field `name`"),
            "{missing}"
        );
    }
}

/// A response's body in one buffer, read chunk by chunk into it: reqwest's
/// `bytes()` keeps every chunk until the end and then copies them into
/// one buffer, twice the body's size at once (2.5 MB each way for
/// `GET /api/v1/user/` on a Quay holding 10,000 of the user's
/// organizations).
async fn read_body(mut response: reqwest::Response) -> Result<bytes::Bytes, reqwest::Error> {
    // Content-Length sizes the buffer, within reason (it is the peer's word).
    const PREALLOCATE_AT_MOST: u64 = 16 << 20;
    let expected = response
        .content_length()
        .unwrap_or(0)
        .min(PREALLOCATE_AT_MOST);
    let mut body = Vec::with_capacity(usize::try_from(expected).unwrap_or(0));
    while let Some(chunk) = response.chunk().await? {
        body.extend_from_slice(&chunk);
    }
    Ok(body.into())
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
        assert_eq!(registry_host(&client.base), "127.0.0.1:8080");
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
