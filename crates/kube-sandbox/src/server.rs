//! The embedded apiserver as a running thing: shared state, background
//! controllers, in-process and loopback (TLS) serving, kubeconfig, faults
//! and the request log.

use super::errors::ApiError;
use super::store::{Store, WriteOptions};
use axum::Router;
use axum::body::Body;
use axum::response::Response;
use base64::Engine;
use bridge_common::net::tls::{CertificateAuthority, server_config_from};
use bridge_common::net::{self, NetError, ServerHandle};
use bridge_common::random::random_token;
use http::HeaderValue;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// One logged API request, with the identity that made it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct KubeRequest {
    /// Who (from the bearer token).
    pub identity: String,
    /// RBAC verb.
    pub verb: String,
    /// API group.
    pub group: String,
    /// Resource (plural).
    pub resource: String,
    /// Namespace.
    pub namespace: String,
    /// Subresource.
    pub subresource: String,
    /// Object name.
    pub name: String,
    /// The client's `User-Agent`.
    pub user_agent: String,
    /// The body's `Content-Type` (empty without one).
    pub content_type: String,
}

/// Apiserver faults, settable at run time.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KubeFaultConfig {
    /// Added to every request, in milliseconds.
    pub latency_ms: u64,
    /// Fraction (0..=1) of writes that fail.
    pub write_error_rate: f64,
    /// Status of failed writes: 500 (default), 429 or 409.
    pub write_error_status: Option<u16>,
    /// The next N writes fail regardless of the rate.
    pub fail_next_writes: u32,
    /// Only writes by this identity fail.
    pub identity: Option<String>,
    /// A watch that lags behind: the `nth` (from 1) watch of `resource`
    /// opened after these faults are set delivers each live event this
    /// late (a slow watch connection, as a real cluster can have).
    pub lagging_watch: Option<LaggingWatch>,
    /// Requests for this resource (`plural.group`, `plural` for the core
    /// group) by `identity` (when set) are never answered, as over a
    /// half-open connection: the client waits until it gives up.
    pub hang_resource: Option<String>,
}

/// One lagging watch (see [`KubeFaultConfig::lagging_watch`]).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LaggingWatch {
    /// Resource: `plural.group` (`plural` for the core group).
    pub resource: String,
    /// Which watch of it, counted from 1.
    pub nth: u32,
    /// Delay before each live event, in milliseconds.
    pub delay_ms: u64,
}

/// Timings and wiring of the simulated OpenShift behaviour.
#[derive(Debug, Clone)]
pub struct OpenShiftConfig {
    /// Delay before a new namespace gets its builder/default/deployer
    /// service accounts.
    pub service_account_delay: Duration,
    /// New → Running.
    pub build_start_delay: Duration,
    /// Running → Complete/Failed.
    pub build_duration: Duration,
}

impl Default for OpenShiftConfig {
    fn default() -> Self {
        Self {
            service_account_delay: Duration::from_millis(100),
            build_start_delay: Duration::from_millis(50),
            build_duration: Duration::from_millis(200),
        }
    }
}

/// How to run the embedded apiserver.
#[derive(Debug, Clone)]
pub struct EmbeddedKubeConfig {
    /// Listen on this loopback address too (`None`: in-process only).
    pub listen: Option<String>,
    /// Serve HTTPS with a self-made CA (the kubeconfig carries it).
    pub tls: bool,
    /// Events kept for watch resumption.
    pub history_limit: usize,
    /// OpenShift simulation.
    pub openshift: OpenShiftConfig,
    /// Namespaces present at start, as on a fresh OpenShift cluster.
    pub initial_namespaces: Vec<String>,
}

impl Default for EmbeddedKubeConfig {
    fn default() -> Self {
        Self {
            listen: None,
            tls: true,
            history_limit: 50_000,
            openshift: OpenShiftConfig::default(),
            initial_namespaces: [
                "default",
                "kube-system",
                "kube-public",
                "openshift",
                "openshift-config",
                "openshift-operators",
            ]
            .iter()
            .map(|s| (*s).to_owned())
            .collect(),
        }
    }
}

struct Faults {
    config: KubeFaultConfig,
    rng: rand::rngs::StdRng,
    injected: u64,
    /// Watches of the lagging resource opened since the faults were set.
    watches_seen: u32,
}

/// State shared by the HTTP handler and the background controllers.
pub struct KubeState {
    store: Mutex<Store>,
    /// Bumped to end every open watch.
    pub watch_reset: watch::Sender<u64>,
    faults: Mutex<Faults>,
    log: Mutex<Vec<KubeRequest>>,
    tokens: Mutex<HashMap<String, String>>,
    /// OpenShift simulation settings.
    pub openshift: OpenShiftConfig,
    /// Where webhook services are reached: (namespace, name) → address.
    pub service_addresses: Mutex<HashMap<(String, String), SocketAddr>>,
    /// Registry hosts (`host[:port]`) → base URL for pushes and imports.
    pub registries: Mutex<HashMap<String, String>>,
    /// Extra CA certificates (PEM) the simulated nodes trust for registries.
    pub registry_ca: Mutex<Option<String>>,
    /// The CA of the HTTPS endpoint (PEM), published in every namespace's
    /// `kube-root-ca.crt`.
    pub api_ca: std::sync::OnceLock<String>,
    pub(crate) webhook_clients: Mutex<HashMap<String, reqwest::Client>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl KubeState {
    /// The store.
    pub fn lock_store(&self) -> MutexGuard<'_, Store> {
        lock(&self.store)
    }

    /// The identity of a request; `None` means 401.
    pub fn identity(&self, authorization: Option<&str>) -> Option<String> {
        match authorization.and_then(|a| a.strip_prefix("Bearer ")) {
            None => Some("system:anonymous".into()),
            Some(token) => lock(&self.tokens).get(token.trim()).cloned(),
        }
    }

    /// Issues a bearer token for an identity.
    pub fn issue_token(&self, identity: &str) -> String {
        let token = random_token(32).to_ascii_lowercase();
        lock(&self.tokens).insert(token.clone(), identity.to_owned());
        token
    }

    /// Makes `token` authenticate as `identity`.
    pub fn register_token(&self, token: &str, identity: &str) {
        lock(&self.tokens).insert(token.to_owned(), identity.to_owned());
    }

    /// Logs a request.
    pub fn record(&self, r: KubeRequest) {
        let mut log = lock(&self.log);
        if log.len() < 2_000_000 {
            log.push(r);
        }
    }

    /// Sets the write faults.
    pub fn set_faults(&self, config: KubeFaultConfig) {
        let mut f = lock(&self.faults);
        f.config = config;
        f.watches_seen = 0;
    }

    /// How late a new watch of `resource` delivers its live events.
    pub fn watch_lag(&self, resource: &str) -> Duration {
        let mut f = lock(&self.faults);
        let Some(lag) = f.config.lagging_watch.clone() else {
            return Duration::ZERO;
        };
        if lag.resource != resource {
            return Duration::ZERO;
        }
        f.watches_seen += 1;
        if f.watches_seen == lag.nth {
            Duration::from_millis(lag.delay_ms)
        } else {
            Duration::ZERO
        }
    }

    /// How many writes failed on purpose so far.
    pub fn injected_faults(&self) -> u64 {
        lock(&self.faults).injected
    }

    /// Ends every open watch (clients re-watch from their last RV).
    pub fn drop_watches(&self) {
        self.watch_reset.send_modify(|g| *g += 1);
    }

    /// Forgets the event history, so resuming watches get 410 Expired.
    pub fn compact(&self) {
        self.lock_store().compact();
    }

    /// Whether this request hangs (see [`KubeFaultConfig::hang_resource`]).
    pub fn hangs(&self, resource: &str, identity: &str) -> bool {
        let f = lock(&self.faults);
        f.config.hang_resource.as_deref() == Some(resource)
            && f.config.identity.as_deref().is_none_or(|i| i == identity)
    }

    /// Latency to add and an error to answer instead, for this request.
    pub fn decide_fault(&self, method: &str, identity: &str) -> (Duration, Option<ApiError>) {
        let mut f = lock(&self.faults);
        let latency = Duration::from_millis(f.config.latency_ms);
        let is_write = matches!(method, "POST" | "PUT" | "PATCH" | "DELETE");
        if !is_write || f.config.identity.as_deref().is_some_and(|i| i != identity) {
            return (latency, None);
        }
        let fail = if f.config.fail_next_writes > 0 {
            f.config.fail_next_writes -= 1;
            true
        } else {
            let rate = f.config.write_error_rate;
            rate > 0.0 && f.rng.random::<f64>() < rate
        };
        if !fail {
            return (latency, None);
        }
        f.injected += 1;
        let e = match f.config.write_error_status.unwrap_or(500) {
            429 => ApiError::too_many_requests(),
            409 => ApiError {
                code: 409,
                reason: "Conflict",
                message: "Operation cannot be fulfilled: injected conflict; please try again"
                    .into(),
                details: None,
            },
            _ => ApiError::internal("injected fault: etcdserver: request timed out"),
        };
        (latency, Some(e))
    }
}

/// The control API under `/_sandbox/kube/`.
pub fn control(
    st: &KubeState,
    method: &str,
    rest: &str,
    _query: &BTreeMap<String, String>,
    identity: &str,
    body: &[u8],
) -> Response {
    let reply = |status: u16, v: Value| {
        let mut r = Response::new(Body::from(v.to_string()));
        *r.status_mut() = http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::OK);
        r.headers_mut().insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        r
    };
    if identity != "sandbox-admin" {
        return reply(
            403,
            json!({"message": "the sandbox control API needs the admin identity"}),
        );
    }
    match (method, rest) {
        ("GET", "requests") => reply(200, json!(lock(&st.log).clone())),
        ("DELETE", "requests") => {
            lock(&st.log).clear();
            reply(200, json!({}))
        }
        ("PUT", "faults") => match serde_json::from_slice::<KubeFaultConfig>(body) {
            Ok(c) => {
                lock(&st.faults).config = c;
                reply(200, json!({}))
            }
            Err(e) => reply(
                400,
                json!({"message": format!("invalid fault configuration: {e}")}),
            ),
        },
        ("POST", "drop-watches") => {
            st.watch_reset.send_modify(|g| *g += 1);
            reply(200, json!({}))
        }
        ("POST", "compact") => {
            st.lock_store().compact();
            reply(200, json!({}))
        }
        ("GET", "stats") => {
            let s = st.lock_store();
            reply(
                200,
                json!({"objects": s.object_count(), "resourceVersion": s.rv(), "compactedResourceVersion": s.compacted_rv()}),
            )
        }
        _ => reply(404, json!({"message": "unknown sandbox control endpoint"})),
    }
}

/// A running embedded apiserver.
pub struct EmbeddedKube {
    state: Arc<KubeState>,
    router: Router,
    server: Option<ServerHandle>,
    ca: Option<CertificateAuthority>,
    admin_token: String,
    tasks: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for EmbeddedKube {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedKube")
            .field("url", &self.url())
            .finish_non_exhaustive()
    }
}

/// The admin identity of the sandbox.
pub const ADMIN_IDENTITY: &str = "sandbox-admin";

impl EmbeddedKube {
    /// Starts the apiserver and its controllers.
    pub async fn start(config: EmbeddedKubeConfig) -> Result<Self, NetError> {
        let EmbeddedKubeConfig {
            listen,
            tls,
            history_limit,
            openshift,
            initial_namespaces,
        } = config;
        let (watch_reset, _) = watch::channel(0);
        let state = Arc::new(KubeState {
            store: Mutex::new(Store::new(history_limit)),
            watch_reset,
            faults: Mutex::new(Faults {
                config: KubeFaultConfig::default(),
                rng: rand::rngs::StdRng::seed_from_u64(7),
                injected: 0,
                watches_seen: 0,
            }),
            log: Mutex::new(Vec::new()),
            tokens: Mutex::new(HashMap::new()),
            openshift,
            service_addresses: Mutex::new(HashMap::new()),
            registries: Mutex::new(HashMap::new()),
            registry_ca: Mutex::new(None),
            api_ca: std::sync::OnceLock::new(),
            webhook_clients: Mutex::new(HashMap::new()),
        });
        let admin_token = random_token(32).to_ascii_lowercase();
        lock(&state.tokens).insert(admin_token.clone(), ADMIN_IDENTITY.into());
        let router = Router::new()
            .fallback(super::http::handle)
            .with_state(state.clone());
        let mut tasks = vec![tokio::spawn(namespace_controller(state.clone()))];
        tasks.extend(super::openshift::spawn_controllers(state.clone()));
        {
            let mut store = state.lock_store();
            let def = store.registry.get("", "v1", "namespaces").cloned();
            if let Some(def) = def {
                for ns in &initial_namespaces {
                    if let Ok(obj) =
                        store.prepare_create(&def, "", json!({"metadata": {"name": ns}}))
                    {
                        let _ = store.commit_create(
                            &def,
                            obj,
                            &WriteOptions {
                                dry_run: false,
                                manager: "sandbox".into(),
                            },
                        );
                    }
                }
            }
            // History starts when the server does: a watch from a
            // resourceVersion before it (the objects it started with) is
            // answered 410 Expired, as a real apiserver's watch cache
            // answers one from before its start (watch-rv-1).
            store.compact();
        }
        let (server, ca) = match listen {
            None => (None, None),
            Some(addr) => {
                let ca = if tls {
                    Some(CertificateAuthority::new("sandbox kube CA")?)
                } else {
                    None
                };
                if let Some(ca) = &ca {
                    let _ = state.api_ca.set(ca.cert_pem());
                }
                let server_tls = match &ca {
                    Some(ca) => Some(server_config_from(&ca.issue_server(&[
                        "localhost",
                        "127.0.0.1",
                        "kubernetes.default.svc",
                    ])?)?),
                    None => None,
                };
                (
                    Some(net::serve(&addr, server_tls, router.clone()).await?),
                    ca,
                )
            }
        };
        Ok(Self {
            state,
            router,
            server,
            ca,
            admin_token,
            tasks,
        })
    }

    /// Shared state (the store, faults, settings).
    pub fn state(&self) -> &Arc<KubeState> {
        &self.state
    }

    /// The loopback URL, when listening.
    pub fn url(&self) -> Option<String> {
        self.server.as_ref().map(ServerHandle::url)
    }

    /// The CA certificate (PEM) of the HTTPS endpoint.
    pub fn ca_pem(&self) -> Option<String> {
        self.ca.as_ref().map(CertificateAuthority::cert_pem)
    }

    /// The admin bearer token.
    pub fn admin_token(&self) -> &str {
        &self.admin_token
    }

    /// An in-process client acting as `identity` (a token is issued).
    pub fn client_as(&self, identity: &str) -> kube::Client {
        let token = if identity == ADMIN_IDENTITY {
            self.admin_token.clone()
        } else {
            self.state.issue_token(identity)
        };
        let value = HeaderValue::from_str(&format!("Bearer {token}"))
            .unwrap_or_else(|_| HeaderValue::from_static(""));
        let service = tower::ServiceBuilder::new()
            .map_request(move |mut req: http::Request<kube::client::Body>| {
                req.headers_mut()
                    .insert(http::header::AUTHORIZATION, value.clone());
                req
            })
            .service(self.router.clone());
        kube::Client::new(service, "default")
    }

    /// An in-process admin client.
    pub fn client(&self) -> kube::Client {
        self.client_as(ADMIN_IDENTITY)
    }

    /// A kubeconfig for the loopback endpoint, acting as `identity`.
    pub fn kubeconfig_yaml(&self, identity: &str) -> Option<String> {
        let url = self.url()?;
        let token = if identity == ADMIN_IDENTITY {
            self.admin_token.clone()
        } else {
            self.state.issue_token(identity)
        };
        let ca = self
            .ca_pem()
            .map(|pem| base64::engine::general_purpose::STANDARD.encode(pem));
        let ca_line = ca
            .map(|c| format!("    certificate-authority-data: {c}\n"))
            .unwrap_or_default();
        Some(format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: sandbox\n  cluster:\n    server: {url}\n{ca_line}contexts:\n- name: sandbox\n  context:\n    cluster: sandbox\n    user: {identity}\n    namespace: default\ncurrent-context: sandbox\nusers:\n- name: {identity}\n  user:\n    token: {token}\npreferences: {{}}\n"
        ))
    }

    /// Writes the kubeconfig to `path`.
    pub fn write_kubeconfig(&self, path: &std::path::Path, identity: &str) -> std::io::Result<()> {
        let yaml = self
            .kubeconfig_yaml(identity)
            .ok_or_else(|| std::io::Error::other("the apiserver is not listening"))?;
        std::fs::write(path, yaml)
    }

    /// A client over loopback TCP/TLS through a kubeconfig, as the real
    /// binary connects.
    pub async fn tcp_client_as(&self, identity: &str) -> Result<kube::Client, kube::Error> {
        let yaml = self
            .kubeconfig_yaml(identity)
            .ok_or_else(|| kube::Error::Service("not listening".into()))?;
        let kubeconfig =
            kube::config::Kubeconfig::from_yaml(&yaml).map_err(kube::Error::InferKubeconfig)?;
        let config = kube::Config::from_custom_kubeconfig(
            kubeconfig,
            &kube::config::KubeConfigOptions::default(),
        )
        .await
        .map_err(kube::Error::InferKubeconfig)?;
        kube::Client::try_from(config)
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<KubeRequest> {
        lock(&self.state.log).clone()
    }

    /// Forgets the request log.
    pub fn clear_requests(&self) {
        lock(&self.state.log).clear();
    }

    /// Sets the write faults.
    pub fn set_faults(&self, config: KubeFaultConfig) {
        self.state.set_faults(config);
    }

    /// Ends every open watch (clients re-watch from their last RV).
    pub fn drop_watches(&self) {
        self.state.drop_watches();
    }

    /// Forgets the event history, so resuming watches get 410 Expired.
    pub fn compact(&self) {
        self.state.compact();
    }

    /// Where the webhook service `namespace/name` listens.
    pub fn register_service(&self, namespace: &str, name: &str, addr: SocketAddr) {
        lock(&self.state.service_addresses).insert((namespace.to_owned(), name.to_owned()), addr);
    }

    /// Maps a registry host (`host[:port]`) to the base URL to reach it.
    pub fn register_registry(&self, host: &str, base_url: &str) {
        lock(&self.state.registries)
            .insert(host.to_owned(), base_url.trim_end_matches('/').to_owned());
    }

    /// Stops serving and the controllers.
    pub async fn shutdown(mut self) {
        for t in &self.tasks {
            t.abort();
        }
        self.drop_watches();
        if let Some(server) = self.server.take() {
            server.shutdown(Duration::from_secs(1)).await;
        }
    }
}

impl Drop for EmbeddedKube {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Empties terminating namespaces and removes them, as the namespace
/// controller of kube-controller-manager does.
async fn namespace_controller(state: Arc<KubeState>) {
    let changed = state.lock_store().changed.clone();
    loop {
        let notified = changed.notified();
        let progressed = state.lock_store().namespace_lifecycle_step();
        if !progressed {
            tokio::select! {
                () = notified => {}
                () = tokio::time::sleep(Duration::from_millis(500)) => {}
            }
        }
    }
}
