//! OpenShift's behaviour around the operator: default service accounts in
//! new namespaces (after a delay, with their dockercfg secrets), the
//! `buildconfigs/instantiate` subresource, a build runner that pushes the
//! output image with the secret OpenShift's build controller would pick,
//! and ImageStreamImport, which imports through the registry API.

use super::errors::ApiError;
use super::http::{Target, create_object};
use super::selectors::{FieldSelector, LabelSelector};
use super::server::KubeState;
use super::store::{EventType, StoredEvent, WriteOptions, name_of, now_rfc3339, rv_of};
use crate::registry_client::{Credentials, RegistryClient, RegistryError};
use base64::Engine;
use bridge_common::random::random_token;
use bridge_common::secret::SecretString;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast;
use tokio::task::JoinHandle;

/// The service accounts OpenShift creates in every namespace.
pub const DEFAULT_SERVICE_ACCOUNTS: [&str; 3] = ["builder", "default", "deployer"];
/// The integrated registry's host, which the dockercfg secrets name.
pub const INTERNAL_REGISTRY: &str = "image-registry.openshift-image-registry.svc:5000";
const MANAGER: &str = "openshift-controller-manager";

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// Starts the simulated controllers; they subscribe before returning so no
/// event is missed.
pub fn spawn_controllers(state: Arc<KubeState>) -> Vec<JoinHandle<()>> {
    let events = state.lock_store().subscribe();
    vec![tokio::spawn(controller_loop(state, events))]
}

async fn controller_loop(state: Arc<KubeState>, mut events: broadcast::Receiver<Arc<StoredEvent>>) {
    loop {
        match events.recv().await {
            Ok(ev) => on_event(&state, &ev),
            Err(broadcast::error::RecvError::Lagged(_)) => resync(&state),
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}

fn on_event(state: &Arc<KubeState>, ev: &StoredEvent) {
    match (ev.res.0.as_str(), ev.res.1.as_str(), ev.kind) {
        ("", "namespaces", EventType::Added) => {
            let ns = name_of(&ev.object).to_owned();
            let st = state.clone();
            tokio::spawn(async move {
                tokio::time::sleep(st.openshift.service_account_delay).await;
                ensure_service_accounts(&st, &ns);
            });
        }
        ("build.openshift.io", "builds", EventType::Added)
            if ev.object.pointer("/status/phase").and_then(Value::as_str) == Some("New") =>
        {
            let (ns, name) = (ev.namespace.clone(), name_of(&ev.object).to_owned());
            tokio::spawn(run_build(state.clone(), ns, name));
        }
        ("build.openshift.io", "builds", EventType::Modified)
            if ev.object.pointer("/status/cancelled") == Some(&Value::Bool(true))
                && !finished(&ev.object) =>
        {
            cancel_build(state, &ev.namespace, name_of(&ev.object));
        }
        _ => {}
    }
}

/// After missed events: make sure every namespace has its accounts and
/// every new build runs.
fn resync(state: &Arc<KubeState>) {
    let (namespaces, builds) = {
        let store = state.lock_store();
        let all = |g: &str, p: &str| {
            store
                .registry
                .get(g, "v1", p)
                .map(|d| {
                    store.list(
                        d,
                        None,
                        &LabelSelector::default(),
                        &FieldSelector::default(),
                    )
                })
                .unwrap_or_default()
        };
        (all("", "namespaces"), all("build.openshift.io", "builds"))
    };
    for ns in namespaces {
        ensure_service_accounts(state, name_of(&ns));
    }
    for b in builds {
        if b.pointer("/status/phase").and_then(Value::as_str) == Some("New") {
            tokio::spawn(run_build(
                state.clone(),
                super::store::namespace_of(&b).to_owned(),
                name_of(&b).to_owned(),
            ));
        }
    }
}

/// Creates `builder`, `default` and `deployer` with their dockercfg
/// secrets, linked as mountable and image-pull secrets.
pub fn ensure_service_accounts(state: &KubeState, ns: &str) {
    let mut store = state.lock_store();
    if store.namespace_phase(ns) != Some("Active") {
        return;
    }
    let (Some(sa_def), Some(secret_def)) = (
        store.registry.get("", "v1", "serviceaccounts").cloned(),
        store.registry.get("", "v1", "secrets").cloned(),
    ) else {
        return;
    };
    // kube-controller-manager's root CA ConfigMap, in every namespace.
    if let Some(cm_def) = store.registry.get("", "v1", "configmaps").cloned()
        && store.get(&cm_def, ns, "kube-root-ca.crt").is_none()
    {
        let ca = state.api_ca.get().cloned().unwrap_or_default();
        let cm = json!({"metadata": {"name": "kube-root-ca.crt", "namespace": ns, "annotations": {"kubernetes.io/description": "Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints such as the internal service IP or kubernetes.default.svc. No other usage is guaranteed across distributions of Kubernetes clusters."}}, "data": {"ca.crt": ca}});
        if let Err(e) = store.controller_write(&cm_def, cm, "kube-controller-manager") {
            tracing::debug!(namespace = ns, error = %e.message, "kube-root-ca.crt creation skipped");
        }
    }
    for sa in DEFAULT_SERVICE_ACCOUNTS {
        if store.get(&sa_def, ns, sa).is_some() {
            continue;
        }
        let secret_name = format!("{sa}-dockercfg-{}", random_token(5).to_ascii_lowercase());
        let token = random_token(40);
        let dockercfg = json!({INTERNAL_REGISTRY: {"username": "serviceaccount", "password": token, "email": "serviceaccount@example.org", "auth": b64(&format!("serviceaccount:{token}"))}});
        let secret = json!({
            "metadata": {"name": secret_name, "namespace": ns, "annotations": {"kubernetes.io/service-account.name": sa, "openshift.io/token-secret.name": format!("{sa}-token")}},
            "type": "kubernetes.io/dockercfg",
            "data": {".dockercfg": b64(&dockercfg.to_string())},
        });
        let account = json!({
            "metadata": {"name": sa, "namespace": ns},
            "secrets": [{"name": secret_name}],
            "imagePullSecrets": [{"name": secret_name}],
        });
        if let Err(e) = store
            .controller_write(&secret_def, secret, MANAGER)
            .and_then(|_| store.controller_write(&sa_def, account, MANAGER))
        {
            tracing::debug!(namespace = ns, error = %e.message, "service account creation skipped");
        }
    }
}

/// `POST .../buildconfigs/{name}/instantiate`: a new Build from the
/// BuildConfig, created through the API (and so through admission).
pub async fn instantiate(
    st: &KubeState,
    t: &Target,
    body: &bytes::Bytes,
    opts: &WriteOptions,
    identity: &str,
) -> Result<(u16, Value), ApiError> {
    let request: Value = if body.is_empty() {
        json!({})
    } else {
        serde_json::from_slice(body).map_err(|e| ApiError::bad_request(e.to_string()))?
    };
    if request
        .get("kind")
        .and_then(Value::as_str)
        .is_some_and(|k| k != "BuildRequest")
    {
        return Err(ApiError::bad_request("the body must be a BuildRequest"));
    }
    let ns = t.namespace.clone().unwrap_or_default();
    let bc_name = t.name.clone().unwrap_or_default();
    let (build, builds_def) = {
        let mut store = st.lock_store();
        let bc = store.get_or_404(&t.def, &ns, &bc_name)?;
        let builds_def = store
            .registry
            .get("build.openshift.io", "v1", "builds")
            .cloned()
            .ok_or_else(ApiError::path_not_found)?;
        let number = bc
            .pointer("/status/lastVersion")
            .and_then(Value::as_i64)
            .unwrap_or(0)
            + 1;
        let mut spec = bc.get("spec").cloned().unwrap_or_else(|| json!({}));
        if let Some(m) = spec.as_object_mut() {
            for k in [
                "triggers",
                "runPolicy",
                "successfulBuildsHistoryLimit",
                "failedBuildsHistoryLimit",
            ] {
                m.remove(k);
            }
            m.insert(
                "triggeredBy".into(),
                json!([{"message": "Manually triggered"}]),
            );
        }
        let build = json!({
            "metadata": {
                "name": format!("{bc_name}-{number}"), "namespace": ns,
                "labels": {"buildconfig": bc_name, "openshift.io/build-config.name": bc_name, "openshift.io/build.start-policy": bc.pointer("/spec/runPolicy").and_then(Value::as_str).unwrap_or("Serial")},
                "annotations": {"openshift.io/build-config.name": bc_name, "openshift.io/build.number": number.to_string()},
                "ownerReferences": [{"apiVersion": "build.openshift.io/v1", "kind": "BuildConfig", "name": bc_name, "uid": bc.pointer("/metadata/uid").cloned().unwrap_or_default(), "controller": true}],
            },
            "spec": spec,
            "status": {"phase": "New", "config": {"kind": "BuildConfig", "namespace": ns, "name": bc_name}},
        });
        let mut bumped = (*bc).clone();
        bumped["status"]["lastVersion"] = json!(number);
        store.controller_write(&t.def, bumped, MANAGER)?;
        (build, builds_def)
    };
    let created = create_object(st, &builds_def, &ns, build, opts, identity).await?;
    Ok((201, (*created).clone()))
}

/// A parsed pull spec `host[:port]/path/name[:tag|@digest]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullSpec {
    /// Registry host.
    pub host: String,
    /// Repository path.
    pub repository: String,
    /// Tag or digest.
    pub reference: String,
}

/// Parses a pull spec; the first component is a host when it has a dot,
/// a colon or is `localhost`.
pub fn parse_pull_spec(spec: &str) -> Option<PullSpec> {
    let (first, rest) = spec.split_once('/')?;
    if !(first.contains('.') || first.contains(':') || first == "localhost") {
        return None;
    }
    let (repository, reference) = if let Some((r, d)) = rest.split_once('@') {
        (r.to_owned(), d.to_owned())
    } else {
        match rest.rsplit_once(':') {
            Some((r, t)) if !t.contains('/') => (r.to_owned(), t.to_owned()),
            _ => (rest.to_owned(), "latest".to_owned()),
        }
    };
    (!repository.is_empty()).then(|| PullSpec {
        host: first.to_owned(),
        repository,
        reference,
    })
}

/// Credentials for `host` from a dockerconfigjson or dockercfg secret.
pub fn credentials_from_secret(secret: &Value, host: &str) -> Option<Credentials> {
    let data = |k: &str| {
        secret
            .pointer(&format!("/data/{}", k.replace('/', "~1")))
            .and_then(Value::as_str)
            .and_then(|s| base64::engine::general_purpose::STANDARD.decode(s).ok())
            .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
    };
    let auths = match secret.get("type").and_then(Value::as_str) {
        Some("kubernetes.io/dockerconfigjson") => {
            data(".dockerconfigjson")?.get("auths").cloned()?
        }
        Some("kubernetes.io/dockercfg") => data(".dockercfg")?,
        _ => return None,
    };
    let normalize = |k: &str| {
        k.trim_start_matches("https://")
            .trim_start_matches("http://")
            .split('/')
            .next()
            .unwrap_or_default()
            .to_owned()
    };
    let entry = auths
        .as_object()?
        .iter()
        .find(|(k, _)| normalize(k) == host)
        .map(|(_, v)| v)?;
    if let Some(auth) = entry.get("auth").and_then(Value::as_str) {
        let decoded = String::from_utf8(
            base64::engine::general_purpose::STANDARD
                .decode(auth)
                .ok()?,
        )
        .ok()?;
        let (user, pass) = decoded.split_once(':')?;
        return Some(Credentials {
            username: user.to_owned(),
            password: SecretString::new(pass),
        });
    }
    Some(Credentials {
        username: entry.get("username")?.as_str()?.to_owned(),
        password: SecretString::new(entry.get("password")?.as_str()?),
    })
}

fn registry_base(st: &KubeState, host: &str) -> String {
    st.registries
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .get(host)
        .cloned()
        .unwrap_or_else(|| format!("https://{host}"))
}

fn registry_http(st: &KubeState) -> reqwest::Client {
    let mut builder = reqwest::Client::builder().timeout(Duration::from_secs(30));
    if let Some(pem) = st
        .registry_ca
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone()
        && let Ok(certs) = reqwest::Certificate::from_pem_bundle(pem.as_bytes())
    {
        builder = builder.tls_certs_merge(certs);
    }
    builder.build().unwrap_or_default()
}

fn set_build_status(
    st: &KubeState,
    ns: &str,
    name: &str,
    f: impl FnOnce(&mut Value),
) -> Option<Value> {
    let mut store = st.lock_store();
    let def = store
        .registry
        .get("build.openshift.io", "v1", "builds")?
        .clone();
    let current = store.get(&def, ns, name)?;
    let mut updated = (*current).clone();
    f(&mut updated);
    store
        .controller_write(&def, updated, MANAGER)
        .ok()
        .map(|v| (*v).clone())
}

/// The push secret OpenShift's build controller would use: the explicit
/// `pushSecret`, else the first docker secret of the build's service
/// account `secrets` whose registry matches.
fn push_credentials(st: &KubeState, ns: &str, build: &Value, host: &str) -> Option<Credentials> {
    let store = st.lock_store();
    let secrets_def = store.registry.get("", "v1", "secrets")?.clone();
    if let Some(name) = build
        .pointer("/spec/output/pushSecret/name")
        .and_then(Value::as_str)
    {
        return store
            .get(&secrets_def, ns, name)
            .and_then(|s| credentials_from_secret(&s, host));
    }
    let sa_name = build
        .pointer("/spec/serviceAccount")
        .and_then(Value::as_str)
        .unwrap_or("builder");
    let sa = store.get(
        store.registry.get("", "v1", "serviceaccounts")?,
        ns,
        sa_name,
    )?;
    sa.get("secrets")?
        .as_array()?
        .iter()
        .filter_map(|r| r.get("name")?.as_str())
        .filter_map(|n| store.get(&secrets_def, ns, n))
        .find_map(|s| credentials_from_secret(&s, host))
}

/// The pushed reference and digest, or the failure reason and message.
type BuildOutcome = Result<(Option<String>, Option<String>), (&'static str, String)>;

/// Whether a Build reached a final phase.
fn finished(build: &Value) -> bool {
    matches!(
        build.pointer("/status/phase").and_then(Value::as_str),
        Some("Complete" | "Failed" | "Error" | "Cancelled")
    )
}

/// `oc cancel-build` sets `status.cancelled`; OpenShift's build controller
/// stops the build and records it with openshift/api's reason and message
/// for a cancelled build.
fn cancel_build(st: &KubeState, ns: &str, name: &str) {
    let at = now_rfc3339();
    set_build_status(st, ns, name, |b| {
        if !finished(b) {
            b["status"]["phase"] = json!("Cancelled");
            b["status"]["reason"] = json!("CancelledBuild");
            b["status"]["message"] = json!("The build was cancelled by the user.");
            b["status"]["completionTimestamp"] = json!(at);
        }
    });
}

/// Runs one build: New → Running → Complete or Failed, pushing its output
/// (unless it is cancelled meanwhile).
pub async fn run_build(st: Arc<KubeState>, ns: String, name: String) {
    tokio::time::sleep(st.openshift.build_start_delay).await;
    let started = now_rfc3339();
    let running = set_build_status(&st, &ns, &name, |b| {
        if b.pointer("/status/phase").and_then(Value::as_str) == Some("New") {
            b["status"]["phase"] = json!("Running");
            b["status"]["startTimestamp"] = json!(started);
        }
    });
    let Some(build) =
        running.filter(|b| b.pointer("/status/phase").and_then(Value::as_str) == Some("Running"))
    else {
        return;
    };
    tokio::time::sleep(st.openshift.build_duration).await;
    // A build lasts into the next second at least, as a real one does, so
    // its duration (second precision) is never 0.
    if let Ok(start) = started.parse::<jiff::Timestamp>() {
        let next = i128::from(start.as_second() + 1) * 1_000_000_000;
        let left = next - jiff::Timestamp::now().as_nanosecond();
        if let Ok(nanos) = u64::try_from(left) {
            tokio::time::sleep(std::time::Duration::from_nanos(nanos)).await;
        }
    }
    let output = build.pointer("/spec/output/to").cloned();
    let outcome: BuildOutcome = match output
        .as_ref()
        .and_then(|o| o.get("kind"))
        .and_then(Value::as_str)
    {
        None => Ok((None, None)),
        Some("DockerImage") => {
            let target = output
                .as_ref()
                .and_then(|o| o.get("name"))
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned();
            match parse_pull_spec(&target) {
                None => Err((
                    "InvalidOutputReference",
                    format!(
                        "Output image could not be resolved: {target:?} is not a valid image reference"
                    ),
                )),
                Some(spec) => {
                    let creds = push_credentials(&st, &ns, &build, &spec.host);
                    let registry =
                        RegistryClient::new(registry_http(&st), registry_base(&st, &spec.host));
                    let content = format!("{ns}/{name} built at {}", now_rfc3339());
                    let anonymous = Credentials {
                        username: String::new(),
                        password: SecretString::default(),
                    };
                    match registry
                        .push_image(
                            &spec.repository,
                            &spec.reference,
                            content.as_bytes(),
                            creds.as_ref().unwrap_or(&anonymous),
                        )
                        .await
                    {
                        Ok(digest) => Ok((Some(target), Some(digest))),
                        Err(e) => Err((
                            "PushImageToRegistryFailed",
                            format!("Failed to push the image to the registry: {e}"),
                        )),
                    }
                }
            }
        }
        Some("ImageStreamTag") => push_to_image_stream(&st, &ns, &name, output.as_ref()),
        Some(other) => Err((
            "InvalidOutputReference",
            format!("output kind {other} is not supported"),
        )),
    };
    let finished_at = now_rfc3339();
    set_build_status(&st, &ns, &name, |b| {
        if finished(b) {
            return;
        }
        b["status"]["completionTimestamp"] = json!(finished_at);
        // As OpenShift's build controller: completion minus start, both
        // at second precision, in nanoseconds.
        let secs = [
            b.pointer("/status/startTimestamp"),
            Some(&json!(finished_at)),
        ]
        .map(|t| {
            t.and_then(Value::as_str)
                .and_then(|t| t.parse::<jiff::Timestamp>().ok())
        });
        if let [Some(start), Some(end)] = secs {
            let nanos = end.as_second().saturating_sub(start.as_second()).max(0) * 1_000_000_000;
            b["status"]["duration"] = json!(nanos);
        }
        match outcome {
            Ok((reference, digest)) => {
                b["status"]["phase"] = json!("Complete");
                if let Some(r) = reference {
                    b["status"]["outputDockerImageReference"] = json!(r);
                }
                if let Some(d) = digest {
                    b["status"]["output"] = json!({"to": {"imageDigest": d}});
                }
            }
            Err((reason, message)) => {
                b["status"]["phase"] = json!("Failed");
                b["status"]["reason"] = json!(reason);
                b["status"]["message"] = json!(if reason == "PushImageToRegistryFailed" {
                    "Failed to push the image to the registry."
                } else {
                    "The build failed."
                });
                b["status"]["logSnippet"] = json!(message);
            }
        }
    });
}

/// An ImageStreamTag output: the integrated registry records the image in
/// the stream's status.
fn push_to_image_stream(
    st: &KubeState,
    ns: &str,
    build_name: &str,
    output: Option<&Value>,
) -> BuildOutcome {
    let to = output
        .and_then(|o| o.get("name"))
        .and_then(Value::as_str)
        .unwrap_or_default();
    let target_ns = output
        .and_then(|o| o.get("namespace"))
        .and_then(Value::as_str)
        .unwrap_or(ns);
    let (is_name, tag) = to.split_once(':').unwrap_or((to, "latest"));
    let mut store = st.lock_store();
    let def = store
        .registry
        .get("image.openshift.io", "v1", "imagestreams")
        .cloned()
        .ok_or(("InvalidOutputReference", "no image streams".to_owned()))?;
    let Some(stream) = store.get(&def, target_ns, is_name) else {
        return Err((
            "InvalidOutputReference",
            format!(
                "Output image could not be resolved: imagestreams.image.openshift.io \"{is_name}\" not found"
            ),
        ));
    };
    let digest = bridge_common::encoding::sha256_digest(
        format!("{ns}/{build_name}/{}", now_rfc3339()).as_bytes(),
    );
    let reference = format!("{INTERNAL_REGISTRY}/{target_ns}/{is_name}@{digest}");
    let mut updated = (*stream).clone();
    record_tag_event(&mut updated, tag, &reference, &digest);
    store
        .controller_write(&def, updated, MANAGER)
        .map_err(|e| ("PushImageToRegistryFailed", e.message))?;
    Ok((
        Some(format!("{INTERNAL_REGISTRY}/{target_ns}/{is_name}:{tag}")),
        Some(digest),
    ))
}

fn record_tag_event(stream: &mut Value, tag: &str, reference: &str, digest: &str) {
    let generation = stream
        .pointer("/metadata/generation")
        .cloned()
        .unwrap_or(json!(1));
    let event = json!({"created": now_rfc3339(), "dockerImageReference": reference, "image": digest, "generation": generation});
    if !stream.pointer("/status/tags").is_some_and(Value::is_array) {
        stream["status"]["tags"] = json!([]);
    }
    if let Some(tags) = stream
        .pointer_mut("/status/tags")
        .and_then(Value::as_array_mut)
    {
        match tags
            .iter_mut()
            .find(|t| t.get("tag").and_then(Value::as_str) == Some(tag))
        {
            Some(entry) => {
                let mut items = entry
                    .get("items")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                items.insert(0, event);
                entry["items"] = json!(items);
                if let Some(m) = entry.as_object_mut() {
                    m.remove("conditions");
                }
            }
            None => tags.push(json!({"tag": tag, "items": [event]})),
        }
    }
}

async fn resolve_digest(
    st: &KubeState,
    ns: &str,
    spec: &PullSpec,
    insecure: bool,
) -> Result<String, (String, u16, String)> {
    let base = registry_base(st, &spec.host);
    let shown = format!("{}/{}:{}", spec.host, spec.repository, spec.reference);
    if base.starts_with("http://") && !insecure {
        return Err((
            "InternalError".into(),
            500,
            format!(
                "Get \"https://{}/v2/\": http: server gave HTTP response to HTTPS client",
                spec.host
            ),
        ));
    }
    let candidates: Vec<Credentials> = {
        let store = st.lock_store();
        store
            .registry
            .get("", "v1", "secrets")
            .map(|d| {
                store.list(
                    d,
                    Some(ns),
                    &LabelSelector::default(),
                    &FieldSelector::default(),
                )
            })
            .unwrap_or_default()
            .iter()
            .filter_map(|s| credentials_from_secret(s, &spec.host))
            .collect()
    };
    let registry = RegistryClient::new(registry_http(st), base);
    let mut last = None;
    for creds in candidates.iter().map(Some).chain(std::iter::once(None)) {
        match registry
            .manifest_digest(&spec.repository, &spec.reference, creds)
            .await
        {
            Ok(d) => return Ok(d),
            Err(e) => last = Some(e),
        }
    }
    Err(match last {
        Some(RegistryError::NotFound(_)) => (
            "NotFound".into(),
            404,
            format!("{shown}: manifest unknown: manifest unknown"),
        ),
        Some(RegistryError::Denied { .. } | RegistryError::LoginFailed(_)) | None => (
            "Unauthorized".into(),
            401,
            format!("you may not have access to the container image \"{shown}\""),
        ),
        Some(other) => (
            "InternalError".into(),
            500,
            format!("Internal error occurred: {shown}: {other}"),
        ),
    })
}

/// `POST .../imagestreamimports`: imports through the registry API with the
/// namespace's pull secrets; fills the answer's status and, unless it is a
/// dry run (`spec.import: false`), the ImageStream's spec and status tags.
pub async fn import(
    st: &KubeState,
    def: &super::resources::ResourceDef,
    ns: &str,
    obj: Value,
    opts: &WriteOptions,
    identity: &str,
) -> Result<(u16, Value), ApiError> {
    let candidate = st.lock_store().prepare_create(def, ns, obj)?;
    let mut isi = super::admission::mutate(
        st,
        def,
        "CREATE",
        None,
        candidate,
        None,
        identity,
        opts.dry_run,
    )
    .await?;
    let stream_name = name_of(&isi).to_owned();
    let is_def = st
        .lock_store()
        .registry
        .get("image.openshift.io", "v1", "imagestreams")
        .cloned()
        .ok_or_else(ApiError::path_not_found)?;
    if let Some(wanted) = isi
        .pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
    {
        let current = st.lock_store().get(&is_def, ns, &stream_name);
        match current {
            Some(s) if rv_of(&s).map(|r| r.to_string()).as_deref() == Some(wanted) => {}
            Some(_) => return Err(ApiError::conflict(&is_def, &stream_name)),
            None => return Err(ApiError::not_found(&is_def, &stream_name)),
        }
    }
    let images = isi
        .pointer("/spec/images")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut statuses = Vec::new();
    let mut results = Vec::new();
    for img in &images {
        let from = img
            .pointer("/from/name")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let insecure = img
            .pointer("/importPolicy/insecure")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let Some(spec) = parse_pull_spec(from) else {
            statuses.push(json!({"status": {"status": "Failure", "reason": "Invalid", "message": format!("{from:?} is not a valid image reference"), "code": 422}}));
            results.push(None);
            continue;
        };
        let tag = img.pointer("/to/name").and_then(Value::as_str).map_or_else(
            || {
                if spec.reference.starts_with("sha256:") {
                    "latest".to_owned()
                } else {
                    spec.reference.clone()
                }
            },
            str::to_owned,
        );
        match resolve_digest(st, ns, &spec, insecure).await {
            Ok(digest) => {
                let reference = format!("{}/{}@{digest}", spec.host, spec.repository);
                statuses.push(json!({"status": {"status": "Success"}, "tag": tag, "image": {"metadata": {"name": digest}, "dockerImageReference": reference}}));
                results.push(Some((tag, img.clone(), Ok((reference, digest)))));
            }
            Err((reason, code, message)) => {
                statuses.push(json!({"status": {"status": "Failure", "reason": reason, "message": message, "code": code}, "tag": tag}));
                results.push(Some((tag, img.clone(), Err((reason, message)))));
            }
        }
    }
    isi["status"] = json!({"images": statuses});
    let do_import = isi
        .pointer("/spec/import")
        .and_then(Value::as_bool)
        .unwrap_or(false)
        && !opts.dry_run;
    if do_import {
        let mut store = st.lock_store();
        let existing = store.get(&is_def, ns, &stream_name);
        let mut stream = match existing {
            Some(s) => (*s).clone(),
            None => {
                let prepared = store.prepare_create(
                    &is_def,
                    ns,
                    json!({"metadata": {"name": stream_name}}),
                )?;
                (*store.commit_create(
                    &is_def,
                    prepared,
                    &WriteOptions {
                        dry_run: false,
                        manager: MANAGER.into(),
                    },
                )?)
                .clone()
            }
        };
        // Spec first (bumps the generation), then the status events.
        for (tag, img, _) in results.iter().flatten() {
            let tag_ref = json!({
                "name": tag, "annotations": null, "from": img.get("from").cloned().unwrap_or_default(),
                "generation": null, "importPolicy": img.get("importPolicy").cloned().unwrap_or_else(|| json!({})),
                "referencePolicy": img.get("referencePolicy").cloned().unwrap_or_else(|| json!({"type": "Source"})),
            });
            if !stream.pointer("/spec/tags").is_some_and(Value::is_array) {
                stream["spec"]["tags"] = json!([]);
            }
            if let Some(tags) = stream
                .pointer_mut("/spec/tags")
                .and_then(Value::as_array_mut)
            {
                tags.retain(|t| t.get("name").and_then(Value::as_str) != Some(tag));
                tags.push(tag_ref);
            }
        }
        let updated = store.controller_write(&is_def, stream, MANAGER)?;
        let mut stream = (*updated).clone();
        let generation = stream
            .pointer("/metadata/generation")
            .cloned()
            .unwrap_or(json!(1));
        if let Some(tags) = stream
            .pointer_mut("/spec/tags")
            .and_then(Value::as_array_mut)
        {
            for t in tags.iter_mut() {
                if t.get("generation").is_none_or(Value::is_null) {
                    t["generation"] = generation.clone();
                }
            }
        }
        for (tag, _, outcome) in results.iter().flatten() {
            match outcome {
                Ok((reference, digest)) => record_tag_event(&mut stream, tag, reference, digest),
                Err((reason, message)) => {
                    if !stream.pointer("/status/tags").is_some_and(Value::is_array) {
                        stream["status"]["tags"] = json!([]);
                    }
                    let condition = json!({"type": "ImportSuccess", "status": "False", "lastTransitionTime": now_rfc3339(), "reason": reason, "message": message, "generation": generation});
                    if let Some(tags) = stream
                        .pointer_mut("/status/tags")
                        .and_then(Value::as_array_mut)
                    {
                        match tags
                            .iter_mut()
                            .find(|t| t.get("tag").and_then(Value::as_str) == Some(tag.as_str()))
                        {
                            Some(entry) => entry["conditions"] = json!([condition]),
                            None => tags.push(
                                json!({"tag": tag, "items": null, "conditions": [condition]}),
                            ),
                        }
                    }
                }
            }
        }
        let final_stream = store.controller_write(&is_def, stream, MANAGER)?;
        isi["status"]["import"] = (*final_stream).clone();
    }
    Ok((201, isi))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pull_specs() {
        assert_eq!(
            parse_pull_spec("quay.example.com/openshift_demo/app:v1"),
            Some(PullSpec {
                host: "quay.example.com".into(),
                repository: "openshift_demo/app".into(),
                reference: "v1".into()
            })
        );
        assert_eq!(
            parse_pull_spec("127.0.0.1:8080/o/r").unwrap().reference,
            "latest"
        );
        assert_eq!(
            parse_pull_spec("localhost:5000/o/r@sha256:ab")
                .unwrap()
                .reference,
            "sha256:ab"
        );
        assert_eq!(parse_pull_spec("library/nginx:1"), None);
    }

    #[test]
    fn secrets_give_credentials_for_their_registry() {
        let cfg = json!({"auths": {"quay.example.com": {"auth": b64("org+builder:TOKEN")}}});
        let secret = json!({"type": "kubernetes.io/dockerconfigjson", "data": {".dockerconfigjson": b64(&cfg.to_string())}});
        let c = credentials_from_secret(&secret, "quay.example.com").unwrap();
        assert_eq!(
            (c.username.as_str(), c.password.expose()),
            ("org+builder", "TOKEN")
        );
        assert!(credentials_from_secret(&secret, "other.example.com").is_none());
        let legacy = json!({"type": "kubernetes.io/dockercfg", "data": {".dockercfg": b64(&json!({"https://r.example.com/v1/": {"username": "u", "password": "p"}}).to_string())}});
        assert_eq!(
            credentials_from_secret(&legacy, "r.example.com")
                .unwrap()
                .username,
            "u"
        );
        assert!(credentials_from_secret(&json!({"type": "Opaque"}), "r.example.com").is_none());
    }
}
