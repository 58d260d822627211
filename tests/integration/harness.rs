//! The integration-test harness: the real operator against the sandbox
//! cluster and the embedded Quay, and the helpers the scenarios share.

use crate::common;
use k8s_openapi::api::core::v1::{Namespace, Secret, ServiceAccount};
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube::{CustomResourceExt, ResourceExt};
use kube_sandbox::{EmbeddedKube, EmbeddedKubeConfig, KubeFaultConfig, OpenShiftConfig};
use quay_bridge_operator::controller::{self, context::Metrics, context::Options};
use quay_bridge_operator::crd::{LegacyQuayIntegration, QuayIntegration};
use quay_sandbox::EmbeddedQuay;
use serde_json::{Value, json};
use std::time::Duration;

/// The scopes of a Quay superuser token the operator can work with.
pub const ADMIN_SCOPES: &[&str] = &[
    "org:admin",
    "repo:admin",
    "repo:create",
    "repo:read",
    "repo:write",
    "super:user",
    "user:admin",
    "user:read",
];

pub const OPERATOR: &str = "system:serviceaccount:openshift-operators:quay-bridge-operator";

pub struct Env {
    pub options: Options,
    pub quay: EmbeddedQuay,
    pub kube: EmbeddedKube,
    pub client: kube::Client,
    pub metrics: Metrics,
    pub stop: Option<tokio::sync::oneshot::Sender<()>>,
    pub task: tokio::task::JoinHandle<()>,
}

impl Env {
    pub fn metrics_webhook_allowed(&self) -> u64 {
        self.metrics.webhook.count("allowed")
    }

    pub fn host(&self) -> String {
        self.quay.url().trim_start_matches("http://").to_owned()
    }

    /// The operator's webhook address, once it serves.
    pub async fn webhook_addr(&self) -> std::net::SocketAddr {
        let webhook = self
            .options
            .webhook
            .as_ref()
            .expect("the operator runs a webhook");
        tokio::time::timeout(Duration::from_secs(10), webhook.serving_at())
            .await
            .expect("the webhook serves within 10 s")
            .expect("an address")
    }

    /// Makes the sandbox call the operator's webhook (Service
    /// openshift-operators/quay-bridge-operator) where it now serves.
    pub async fn register_webhook(&self) {
        if self.options.webhook.is_some() {
            let addr = self.webhook_addr().await;
            self.kube
                .register_service("openshift-operators", "quay-bridge-operator", addr);
        }
    }

    fn forget_webhook(&self) {
        if let Some(w) = &self.options.webhook {
            w.serving.send_replace(None);
        }
    }

    /// Stops the operator and starts a new one, as a pod restart does.
    pub async fn restart(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        let _ = tokio::time::timeout(Duration::from_secs(5), &mut self.task).await;
        self.forget_webhook();
        let (stop, task) = spawn_operator(&self.kube, self.options.clone(), Metrics::default());
        self.stop = stop;
        self.task = task;
        self.register_webhook().await;
    }

    /// Kills the operator mid-flight (its in-flight requests are dropped,
    /// nothing is released) and starts a new one, as a crashed pod is.
    pub async fn crash(&mut self) {
        self.task.abort();
        let _ = (&mut self.task).await;
        self.stop = None;
        self.forget_webhook();
        let (stop, task) = spawn_operator(&self.kube, self.options.clone(), Metrics::default());
        self.stop = stop;
        self.task = task;
        self.register_webhook().await;
    }

    /// Stops the operator (an outage) until [`Env::resume`].
    pub async fn pause(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        let _ = tokio::time::timeout(Duration::from_secs(5), &mut self.task).await;
        self.task.abort();
        self.forget_webhook();
    }

    /// Starts the operator again after [`Env::pause`], its webhook registered.
    pub async fn resume(&mut self) {
        let (stop, task) = spawn_operator(&self.kube, self.options.clone(), self.metrics.clone());
        self.stop = stop;
        self.task = task;
        self.register_webhook().await;
    }

    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        let _ = tokio::time::timeout(Duration::from_secs(5), &mut self.task).await;
    }
}

pub fn spawn_operator(
    kube: &EmbeddedKube,
    options: Options,
    metrics: Metrics,
) -> (
    Option<tokio::sync::oneshot::Sender<()>>,
    tokio::task::JoinHandle<()>,
) {
    spawn_operator_as(kube, OPERATOR, options, metrics)
}

/// Like `spawn_operator`, as `identity` (the request log tells replicas
/// apart by it).
pub fn spawn_operator_as(
    kube: &EmbeddedKube,
    identity: &str,
    options: Options,
    metrics: Metrics,
) -> (
    Option<tokio::sync::oneshot::Sender<()>>,
    tokio::task::JoinHandle<()>,
) {
    let client = kube.client_as(identity);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        controller::run(client, options, metrics, async move {
            let _ = stopped.await;
        })
        .await
        .unwrap();
    });
    (Some(stop), task)
}

pub fn fast_options() -> Options {
    Options {
        status_interval: Duration::from_millis(200),
        probe_interval: Duration::from_millis(100),
        retry: common::fast_retry(),
        max_backoff: Duration::from_secs(2),
        ..Options::default()
    }
}

/// Sandbox cluster + embedded Quay + CRDs + token Secret; the operator runs
/// with `options` as its own identity.
pub async fn env_with(options: Options, sa_delay: Duration) -> Env {
    env_with_before(options, sa_delay, |_client: kube::Client| async {}).await
}

/// Like `env_with`, running `setup` with an admin client before the
/// operator starts.
pub async fn env_with_before<F, Fut>(options: Options, sa_delay: Duration, setup: F) -> Env
where
    F: FnOnce(kube::Client) -> Fut,
    Fut: Future<Output = ()>,
{
    env_with_metrics(options, sa_delay, Metrics::default(), setup).await
}

/// Like `env_with_before`, with the operator reporting into `metrics`.
pub async fn env_with_metrics<F, Fut>(
    options: Options,
    sa_delay: Duration,
    metrics: Metrics,
    setup: F,
) -> Env
where
    F: FnOnce(kube::Client) -> Fut,
    Fut: Future<Output = ()>,
{
    let openshift = OpenShiftConfig {
        service_account_delay: sa_delay,
        ..Default::default()
    };
    env_full(options, openshift, metrics, None, setup).await
}

/// Like `env_with`, with `faults` in the sandbox apiserver from before the
/// operator starts.
pub async fn env_with_kube_faults(options: Options, faults: KubeFaultConfig) -> Env {
    env_full(
        options,
        OpenShiftConfig {
            service_account_delay: Duration::from_millis(50),
            ..Default::default()
        },
        Metrics::default(),
        Some(faults),
        |_client: kube::Client| async {},
    )
    .await
}

/// Like `env_with_before`, with the sandbox's OpenShift timings.
pub async fn env_with_openshift<F, Fut>(
    options: Options,
    openshift: OpenShiftConfig,
    setup: F,
) -> Env
where
    F: FnOnce(kube::Client) -> Fut,
    Fut: Future<Output = ()>,
{
    env_full(options, openshift, Metrics::default(), None, setup).await
}

/// Like `env_with`, against `quay` (an embedded Quay configured apart).
pub async fn env_on_quay(quay: EmbeddedQuay, options: Options) -> Env {
    env_on(
        Some(quay),
        options,
        OpenShiftConfig {
            service_account_delay: Duration::from_millis(50),
            ..Default::default()
        },
        Metrics::default(),
        None,
        |_client: kube::Client| async {},
    )
    .await
}

async fn env_full<F, Fut>(
    options: Options,
    openshift: OpenShiftConfig,
    metrics: Metrics,
    faults: Option<KubeFaultConfig>,
    setup: F,
) -> Env
where
    F: FnOnce(kube::Client) -> Fut,
    Fut: Future<Output = ()>,
{
    env_on(None, options, openshift, metrics, faults, setup).await
}

async fn env_on<F, Fut>(
    quay: Option<EmbeddedQuay>,
    options: Options,
    openshift: OpenShiftConfig,
    metrics: Metrics,
    faults: Option<KubeFaultConfig>,
    setup: F,
) -> Env
where
    F: FnOnce(kube::Client) -> Fut,
    Fut: Future<Output = ()>,
{
    common::init();
    let quay = match quay {
        Some(q) => q,
        None => common::quay().await,
    };
    let kube = EmbeddedKube::start(EmbeddedKubeConfig {
        openshift,
        ..Default::default()
    })
    .await
    .unwrap();
    let admin = kube.client();
    let crds: Api<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition> = Api::all(admin.clone());
    crds.create(&PostParams::default(), &QuayIntegration::crd())
        .await
        .unwrap();
    crds.create(&PostParams::default(), &LegacyQuayIntegration::crd())
        .await
        .unwrap();
    set_token(&admin, quay.admin_token().expose()).await;
    setup(admin.clone()).await;
    if let Some(f) = faults {
        kube.set_faults(f);
    }
    let (stop, task) = spawn_operator(&kube, options.clone(), metrics.clone());
    Env {
        options,
        quay,
        kube,
        client: admin,
        metrics,
        stop,
        task,
    }
}

pub async fn env() -> Env {
    env_with(fast_options(), Duration::from_millis(50)).await
}

pub async fn set_token(client: &kube::Client, token: &str) {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "openshift-operators");
    let body: Secret = serde_json::from_value(
        json!({"metadata": {"name": "quay-integration"}, "stringData": {"token": token}}),
    )
    .unwrap();
    if secrets.get_opt("quay-integration").await.unwrap().is_some() {
        secrets
            .patch(
                "quay-integration",
                &PatchParams::default(),
                &Patch::Merge(json!({"stringData": {"token": token}})),
            )
            .await
            .unwrap();
    } else {
        secrets.create(&PostParams::default(), &body).await.unwrap();
    }
}

pub async fn integration(env: &Env, name: &str, extra: Value) -> QuayIntegration {
    let mut spec = json!({"clusterID": "openshift", "credentialsSecret": {"name": "quay-integration", "namespace": "openshift-operators"}, "quayHostname": env.quay.url(), "insecureRegistry": true});
    if let (Some(s), Some(e)) = (spec.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            s.insert(k.clone(), v.clone());
        }
    }
    let qi: QuayIntegration = serde_json::from_value(json!({"apiVersion": "quay.redhat.com/v1", "kind": "QuayIntegration", "metadata": {"name": name}, "spec": spec})).unwrap();
    Api::<QuayIntegration>::all(env.client.clone())
        .create(&PostParams::default(), &qi)
        .await
        .unwrap()
}

pub async fn namespace(env: &Env, name: &str) {
    Api::<Namespace>::all(env.client.clone())
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": name}})).unwrap(),
        )
        .await
        .unwrap();
}

pub async fn image_stream(env: &Env, ns: &str, name: &str) {
    let ar = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("image.openshift.io", "v1", "ImageStream"),
        "imagestreams",
    );
    let api: Api<DynamicObject> = Api::namespaced_with(env.client.clone(), ns, &ar);
    api.create(&PostParams::default(), &serde_json::from_value(json!({"apiVersion": "image.openshift.io/v1", "kind": "ImageStream", "metadata": {"name": name}})).unwrap()).await.unwrap();
}

/// Deletes namespace `name` and waits until it is gone (every finalizer
/// released).
pub async fn delete_namespace(env: &Env, name: &str) {
    let namespaces = Api::<Namespace>::all(env.client.clone());
    namespaces
        .delete(name, &DeleteParams::default())
        .await
        .unwrap();
    wait_for(&format!("{name} to be gone"), || async {
        namespaces.get_opt(name).await.unwrap().is_none()
    })
    .await;
}

/// Waits until namespace `name` no longer carries a QuayIntegration
/// finalizer (of either API group).
pub async fn wait_released(env: &Env, name: &str) {
    let namespaces = Api::<Namespace>::all(env.client.clone());
    wait_for(&format!("{name} to be released"), || async {
        !namespaces
            .get(name)
            .await
            .unwrap()
            .finalizers()
            .iter()
            .any(|f| f.contains("quayintegrations"))
    })
    .await;
}

/// Whether the embedded Quay holds organization `org`.
pub fn has_org(env: &Env, org: &str) -> bool {
    env.quay.snapshot().organizations.contains_key(org)
}

pub async fn wait_for<F: Fn() -> Fut, Fut: Future<Output = bool>>(what: &str, f: F) {
    for _ in 0..400 {
        if f().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("timed out after 10 s waiting for {what}");
}

/// The org, robots, prototypes, Secrets and links of a bridged namespace.
pub async fn converged(env: &Env, ns: &str, repos: &[&str]) -> bool {
    let org = format!("openshift_{ns}");
    let snap = env.quay.snapshot();
    let Some(o) = snap.organizations.get(&org) else {
        return false;
    };
    if o.robots.len() != 3
        || o.prototypes.len() != 3
        || !repos.iter().all(|r| o.repositories.contains_key(*r))
    {
        return false;
    }
    let secrets: Api<Secret> = Api::namespaced(env.client.clone(), ns);
    let sas: Api<ServiceAccount> = Api::namespaced(env.client.clone(), ns);
    for sa in ["builder", "default", "deployer"] {
        let name = format!("{sa}-quay-openshift");
        let Ok(Some(_)) = secrets.get_opt(&name).await else {
            return false;
        };
        let Ok(Some(account)) = sas.get_opt(sa).await else {
            return false;
        };
        let linked = account
            .secrets
            .unwrap_or_default()
            .iter()
            .any(|r| r.name.as_deref() == Some(name.as_str()))
            && account
                .image_pull_secrets
                .unwrap_or_default()
                .iter()
                .any(|r| r.name == name);
        if !linked {
            return false;
        }
    }
    true
}
