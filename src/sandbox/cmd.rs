//! `quay-bridge-operator sandbox`: the whole product on loopback — the
//! embedded cluster and Quay, and the operator with its webhook registered
//! as the deploy manifests register it, post-build imports and the admin
//! server — until Ctrl-C or SIGTERM; or, with `--demo`, the `oc new-app`
//! story told once on top of it.

use kube_sandbox::{ADMIN_IDENTITY, EmbeddedKube, EmbeddedKubeConfig};
use quay_bridge_operator::cli::{Component, SandboxArgs};
use quay_bridge_operator::controller::context::{CertSource, Metrics, Options, WebhookOptions};
use quay_bridge_operator::net::ServerHandle;
use quay_bridge_operator::secret::SecretString;
use quay_sandbox::{EmbeddedQuay, EmbeddedQuayConfig};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Errors of the sandbox command.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// A component could not start.
    #[error(transparent)]
    Net(#[from] quay_bridge_operator::net::NetError),
    /// The kubeconfig could not be written.
    #[error("cannot write the kubeconfig to {0}: {1}")]
    Kubeconfig(String, std::io::Error),
    /// The operator needs the embedded cluster and Quay.
    #[error(
        "sandbox component {0:?} needs kube and quay too; run with --components kube,quay,operator"
    )]
    Unavailable(Component),
    /// A step of the demo failed.
    #[error("the demo failed: {0}")]
    Demo(#[from] super::demo::DemoError),
    /// Setting up the sandboxed operator failed.
    #[error("sandbox setup: {0}")]
    Setup(String),
}

/// What the credentials Secret holds.
#[derive(Debug, Clone)]
pub enum QuayCredentials {
    /// An OAuth token (key `token`).
    Token(String),
    /// A Quay user's `username` and `password`: the operator mints the
    /// token.
    Password {
        /// The user.
        username: String,
        /// The password.
        password: String,
    },
}

/// The identity the sandboxed operator acts as.
pub const OPERATOR_IDENTITY: &str =
    "system:serviceaccount:openshift-operators:quay-bridge-operator";

/// The operator's settings in the sandbox.
#[derive(Debug, Clone)]
pub struct OperatorSettings {
    /// Namespaces reconciled at once.
    pub concurrency: u16,
    /// Resync period.
    pub resync: Duration,
    /// Admin server address (`/healthz`, `/readyz`, `/metrics`).
    pub admin_listen: String,
}

/// The operator running in the sandbox.
pub struct RunningOperator {
    task: tokio::task::JoinHandle<()>,
    stop: tokio::sync::oneshot::Sender<()>,
    admin: ServerHandle,
}

impl RunningOperator {
    /// The admin server's address.
    pub fn admin_url(&self) -> String {
        self.admin.url()
    }

    /// Stops the operator (it drains and releases what it holds).
    pub async fn stop(self) {
        let _ = self.stop.send(());
        let _ = tokio::time::timeout(Duration::from_secs(5), self.task).await;
        self.admin.shutdown(Duration::from_secs(1)).await;
    }
}

fn setup(e: impl std::fmt::Display) -> SandboxError {
    SandboxError::Setup(e.to_string())
}

/// Installs what a cluster admin installs: both CRDs, the Quay token
/// Secret, the webhook registration of `deploy/`, and a QuayIntegration
/// `name` bridging every non-system namespace.
async fn install(
    kube: &EmbeddedKube,
    quay_url: &str,
    credentials: &QuayCredentials,
    name: &str,
) -> Result<(), SandboxError> {
    use k8s_openapi::api::core::v1::Secret;
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    use kube::CustomResourceExt;
    use kube::api::{Api, ApiResource, DynamicObject, PostParams};
    use quay_bridge_operator::crd::{LegacyQuayIntegration, QuayIntegration};
    let admin = kube.client();
    let exists_ok = |e: kube::Error| match e {
        kube::Error::Api(s) if s.code == 409 => Ok(()),
        other => Err(setup(other)),
    };
    let crds: Api<CustomResourceDefinition> = Api::all(admin.clone());
    for crd in [QuayIntegration::crd(), LegacyQuayIntegration::crd()] {
        crds.create(&PostParams::default(), &crd)
            .await
            .map(|_| ())
            .or_else(exists_ok)?;
    }
    let data = match credentials {
        QuayCredentials::Token(token) => serde_json::json!({ "token": token }),
        QuayCredentials::Password { username, password } => {
            serde_json::json!({ "username": username, "password": password })
        }
    };
    let secret: Secret = serde_json::from_value(serde_json::json!({"metadata": {"name": "quay-integration", "namespace": "openshift-operators"}, "stringData": data}))
        .map_err(setup)?;
    Api::<Secret>::namespaced(admin.clone(), "openshift-operators")
        .create(&PostParams::default(), &secret)
        .await
        .map(|_| ())
        .or_else(exists_ok)?;
    let registration: DynamicObject =
        serde_json::from_value(quay_bridge_operator::webhook::registration::configuration(
            "quay-bridge-operator",
            "openshift-operators",
            "quay-bridge-operator",
            false,
        ))
        .map_err(setup)?;
    let gvk = kube::core::GroupVersionKind::gvk(
        "admissionregistration.k8s.io",
        "v1",
        "MutatingWebhookConfiguration",
    );
    Api::<DynamicObject>::all_with(
        admin.clone(),
        &ApiResource::from_gvk_with_plural(&gvk, "mutatingwebhookconfigurations"),
    )
    .create(&PostParams::default(), &registration)
    .await
    .map(|_| ())
    .or_else(exists_ok)?;
    let qi: QuayIntegration = serde_json::from_value(serde_json::json!({
        "apiVersion": "quay.redhat.com/v1", "kind": "QuayIntegration", "metadata": {"name": name},
        "spec": {"clusterID": "openshift", "credentialsSecret": {"name": "quay-integration", "namespace": "openshift-operators"}, "quayHostname": quay_url, "insecureRegistry": true, "teamSync": {"enabled": true}}
    }))
    .map_err(setup)?;
    Api::<QuayIntegration>::all(admin)
        .create(&PostParams::default(), &qi)
        .await
        .map(|_| ())
        .or_else(exists_ok)?;

    Ok(())
}

/// Installs what a cluster admin installs (see [`install`]), then runs
/// the operator with its webhook (self-managed certificate, registered as
/// the webhook Service's endpoint once it serves) and its admin server.
pub async fn start_operator(
    kube: &EmbeddedKube,
    quay_url: &str,
    credentials: &QuayCredentials,
    name: &str,
    settings: &OperatorSettings,
) -> Result<RunningOperator, SandboxError> {
    install(kube, quay_url, credentials, name).await?;
    let mut registry = prometheus_client::registry::Registry::with_prefix("quay_bridge_operator");
    let metrics = Metrics::register(&mut registry);
    let webhook = WebhookOptions::new(
        "127.0.0.1:0",
        CertSource::SelfManaged(
            quay_bridge_operator::webhook::selfmanaged::SelfManaged::new(
                "openshift-operators",
                "quay-bridge-operator",
                "quay-bridge-operator-webhook-tls",
                "quay-bridge-operator",
            ),
        ),
    );
    let options = Options {
        concurrency: settings.concurrency,
        resync: settings.resync,
        instance: "sandbox".into(),
        webhook: Some(webhook.clone()),
        ..Default::default()
    };
    let admin_server = quay_bridge_operator::net::serve(
        &settings.admin_listen,
        None,
        quay_bridge_operator::admin::router(
            registry,
            options.ready.clone(),
            options.campaign_problem.clone(),
        ),
    )
    .await?;
    let client = kube.client_as(OPERATOR_IDENTITY);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let shutdown = async move {
            let _ = stopped.await;
        };
        if let Err(e) =
            quay_bridge_operator::controller::run(client, options, metrics, shutdown).await
        {
            tracing::error!(error = %e, "the operator stopped");
        }
    });
    // The apiserver calls the webhook where it serves (its Service's
    // endpoint, in a cluster).
    let serving = tokio::time::timeout(Duration::from_secs(30), webhook.serving_at())
        .await
        .ok()
        .flatten()
        .ok_or_else(|| setup("the operator's webhook did not start within 30 s"))?;
    kube.register_service("openshift-operators", "quay-bridge-operator", serving);
    Ok(RunningOperator {
        task,
        stop,
        admin: admin_server,
    })
}

/// The commands to try, with the kubeconfig exported (each one works: a
/// test runs them).
fn hints(kubeconfig: &Path, quay: Option<(&str, &str)>, admin: Option<&str>) {
    println!("Try (in another shell):");
    println!("  export KUBECONFIG={}", absolute(kubeconfig).display());
    if let Some((_, token)) = quay {
        println!("  export QUAY_TOKEN={token}");
    }
    println!("  kubectl get namespaces");
    if admin.is_some() {
        println!("  kubectl create namespace demo");
        println!("  kubectl get secrets,serviceaccounts -n demo");
        println!("  kubectl get quayintegrations");
    }
    if let Some((url, _)) = quay {
        println!(
            "  curl -s -H \"Authorization: Bearer $QUAY_TOKEN\" {url}/api/v1/organization/openshift_demo/robots"
        );
    }
    if let Some(admin) = admin {
        println!("  curl -s {admin}/metrics | grep quay_bridge_operator_namespaces");
    }
    println!(
        "The whole `oc new-app` flow by hand (ImageStream, BuildConfig, a build rewritten, pushed and imported) is in the README, section \"The sandbox\"."
    );
}

fn absolute(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_owned())
}

/// The embedded Quay, with `token` as its admin token (random if none).
async fn start_quay(listen: String, token: Option<String>) -> Result<EmbeddedQuay, SandboxError> {
    let q = EmbeddedQuay::start(EmbeddedQuayConfig {
        listen,
        admin_token: token.map(SecretString::new),
        ..EmbeddedQuayConfig::default()
    })
    .await?;
    println!("Embedded Quay listening on {}", q.url());
    println!("  admin user:  {}", q.admin_user());
    println!("  admin token: {}", q.admin_token().expose());
    let (user, password) = super::demo::DEVELOPER;
    q.add_user(user, password, false);
    println!("  user {user}, password {password} (for team sync: bind {user} in a namespace)");
    Ok(q)
}

/// The embedded apiserver, its registry mapped to the Quay the operator
/// talks to, and its kubeconfig written.
async fn start_kube(
    listen: String,
    quay: Option<&(String, String)>,
    kubeconfig_out: &Path,
) -> Result<EmbeddedKube, SandboxError> {
    let k = EmbeddedKube::start(EmbeddedKubeConfig {
        listen: Some(listen),
        ..EmbeddedKubeConfig::default()
    })
    .await?;
    if let Some((url, _)) = quay
        && let Ok(parsed) = quay_bridge_operator::quay::parse_base_url(url)
    {
        k.register_registry(
            &quay_bridge_operator::quay::registry_host(&parsed),
            url.trim_end_matches('/'),
        );
    }
    k.write_kubeconfig(kubeconfig_out, ADMIN_IDENTITY)
        .map_err(|e| SandboxError::Kubeconfig(kubeconfig_out.display().to_string(), e))?;
    println!(
        "Embedded Kubernetes API server listening on {}",
        k.url().unwrap_or_default()
    );
    println!("  kubeconfig:  {}", absolute(kubeconfig_out).display());
    Ok(k)
}

/// `--demo`: the story on a sandbox of its own (free ports, so it runs
/// beside a sandbox already listening on the defaults); with `keep`,
/// everything keeps running afterwards.
async fn run_demo(
    kubeconfig_out: &Path,
    quay_token: Option<String>,
    keep: bool,
    settings: &OperatorSettings,
    log_file: Option<&Path>,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), SandboxError> {
    // The story needs every component; it binds free ports so it runs
    // beside a sandbox already listening on the defaults.
    // With --keep the logs stay useful: name their file now. Otherwise it
    // is named only if the story fails (see main).
    if let Some(path) = log_file.filter(|_| keep) {
        println!("Logs: {} (set RUST_LOG to see them here)", path.display());
    }
    let (quay, kube, operator) =
        super::demo::run(keep.then_some(kubeconfig_out), quay_token, settings).await?;
    if keep {
        println!("\nEverything keeps running (--keep).");
        println!(
            "Embedded Quay: {}  admin token: {}",
            quay.url(),
            quay.admin_token().expose()
        );
        println!("Admin server: {}", operator.admin_url());
        let (url, token) = (quay.url(), quay.admin_token().expose().to_owned());
        hints(
            kubeconfig_out,
            Some((&url, &token)),
            Some(&operator.admin_url()),
        );
        println!("Press Ctrl-C to stop.");
        shutdown.await;
    }
    operator.stop().await;
    kube.shutdown().await;
    quay.shutdown().await;
    Ok(())
}

/// Runs the sandbox until Ctrl-C or SIGTERM (or, with `--demo` and
/// without `--keep`, until the story is told). `log_file` is where the
/// logs go when they are not on stderr.
pub async fn run(args: SandboxArgs, log_file: Option<PathBuf>) -> Result<(), SandboxError> {
    // Before anything listens: a stop right after "listening" is caught.
    let shutdown = shutdown_signal();
    let SandboxArgs {
        components,
        listen_quay,
        quay_token,
        listen_kube,
        listen_admin,
        kubeconfig_out,
        demo,
        keep,
        quay_url,
        concurrency,
        resync_seconds,
    } = args;
    let settings = OperatorSettings {
        concurrency,
        resync: Duration::from_secs(resync_seconds),
        admin_listen: listen_admin,
    };
    if demo {
        return run_demo(
            &kubeconfig_out,
            quay_token,
            keep,
            &settings,
            log_file.as_deref(),
            shutdown,
        )
        .await;
    }
    let with_operator = components.0.contains(&Component::Operator);
    let has_quay = components.0.contains(&Component::Quay) || quay_url.is_some();
    if with_operator && !(components.0.contains(&Component::Kube) && has_quay) {
        return Err(SandboxError::Unavailable(Component::Operator));
    }
    let mut quay = None;
    // The Quay the operator talks to: external, or the embedded one.
    let mut quay_target: Option<(String, String)> = match (&quay_url, &quay_token) {
        (Some(url), Some(token)) => {
            quay_bridge_operator::quay::parse_base_url(url).map_err(setup)?;
            println!("Using the external Quay at {url}");
            Some((url.clone(), token.clone()))
        }
        _ => None,
    };
    if components.0.contains(&Component::Quay) && quay_target.is_none() {
        let q = start_quay(listen_quay, quay_token).await?;
        quay_target = Some((q.url(), q.admin_token().expose().to_owned()));
        quay = Some(q);
    }
    let kube = if components.0.contains(&Component::Kube) {
        Some(start_kube(listen_kube, quay_target.as_ref(), &kubeconfig_out).await?)
    } else {
        None
    };
    let mut operator = None;
    if let (true, Some(k), Some((url, token))) = (with_operator, &kube, &quay_target) {
        let running = start_operator(
            k,
            url,
            &QuayCredentials::Token(token.clone()),
            "sandbox",
            &settings,
        )
        .await?;
        println!(
            "Operator running (webhook registered, admin server on {}) with a sample QuayIntegration \"sandbox\" bridging every non-system namespace.",
            running.admin_url()
        );
        operator = Some(running);
    }
    let running = Running {
        quay,
        kube,
        operator,
    };
    explore(running, &kubeconfig_out, log_file.as_deref(), shutdown).await;
    Ok(())
}

/// What the sandbox started.
struct Running {
    quay: Option<EmbeddedQuay>,
    kube: Option<EmbeddedKube>,
    operator: Option<RunningOperator>,
}

/// Prints what to try, then runs until Ctrl-C or SIGTERM and stops
/// everything.
async fn explore(
    running: Running,
    kubeconfig_out: &Path,
    log_file: Option<&Path>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let Running {
        quay,
        kube,
        operator,
    } = running;
    if kube.is_some() {
        let embedded_quay = quay
            .as_ref()
            .map(|q| (q.url(), q.admin_token().expose().to_owned()));
        hints(
            kubeconfig_out,
            embedded_quay
                .as_ref()
                .map(|(u, t)| (u.as_str(), t.as_str())),
            operator.as_ref().map(RunningOperator::admin_url).as_deref(),
        );
    } else if let Some(q) = &quay {
        println!(
            "Try: curl -s -H \"Authorization: Bearer {}\" {}/api/v1/user/",
            q.admin_token().expose(),
            q.url()
        );
    }
    if let Some(path) = log_file {
        println!("Logs: {}", path.display());
    }
    println!("Press Ctrl-C to stop.");
    shutdown.await;
    tracing::info!("shutting down");
    if let Some(o) = operator {
        o.stop().await;
    }
    if let Some(k) = kube {
        k.shutdown().await;
    }
    if let Some(q) = quay {
        q.shutdown().await;
    }
}

pub use quay_bridge_operator::net::shutdown_signal;
