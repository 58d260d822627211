//! `quay-bridge-operator sandbox`: runs the embedded components on loopback.

use super::kube::{ADMIN_IDENTITY, EmbeddedKube, EmbeddedKubeConfig};
use super::quay::{EmbeddedQuay, EmbeddedQuayConfig};
use crate::cli::{Component, SandboxArgs};
use crate::secret::SecretString;
use std::time::Duration;

/// Errors of the sandbox command.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// A component could not start.
    #[error(transparent)]
    Net(#[from] crate::net::NetError),
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

/// Runs the sandbox until Ctrl-C or SIGTERM.
pub async fn run(args: SandboxArgs) -> Result<(), SandboxError> {
    let SandboxArgs {
        components,
        listen_quay,
        quay_token,
        listen_kube,
        kubeconfig_out,
        demo,
        quay_url,
    } = args;
    if demo {
        return Ok(super::demo::run().await?);
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
            crate::quay::parse_base_url(url).map_err(|e| SandboxError::Setup(e.to_string()))?;
            println!("Using the external Quay at {url}");
            Some((url.clone(), token.clone()))
        }
        _ => None,
    };
    if components.0.contains(&Component::Quay) && quay_target.is_none() {
        let config = EmbeddedQuayConfig {
            listen: listen_quay,
            admin_token: quay_token.map(SecretString::new),
            ..EmbeddedQuayConfig::default()
        };
        let q = EmbeddedQuay::start(config).await?;
        let url = q.url();
        // The sandbox exists to be used by hand: print how.
        println!("Embedded Quay listening on {url}");
        println!("  admin user:  {}", q.admin_user());
        println!("  admin token: {}", q.admin_token().expose());
        println!(
            "  try: curl -s -H \"Authorization: Bearer {}\" {url}/api/v1/user/",
            q.admin_token().expose()
        );
        quay_target = Some((q.url(), q.admin_token().expose().to_owned()));
        quay = Some(q);
    }
    let mut kube = None;
    if components.0.contains(&Component::Kube) {
        let k = EmbeddedKube::start(EmbeddedKubeConfig {
            listen: Some(listen_kube),
            ..EmbeddedKubeConfig::default()
        })
        .await?;
        if let Some((url, _)) = &quay_target
            && let Ok(parsed) = crate::quay::parse_base_url(url)
        {
            k.register_registry(
                &crate::quay::registry_host(&parsed),
                url.trim_end_matches('/'),
            );
        }
        k.write_kubeconfig(&kubeconfig_out, ADMIN_IDENTITY)
            .map_err(|e| SandboxError::Kubeconfig(kubeconfig_out.display().to_string(), e))?;
        println!(
            "Embedded Kubernetes API server listening on {}",
            k.url().unwrap_or_default()
        );
        println!("  kubeconfig:  {}", kubeconfig_out.display());
        println!(
            "  try: kubectl --kubeconfig {} get namespaces",
            kubeconfig_out.display()
        );
        kube = Some(k);
    }
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let mut operator = None;
    if let (true, Some(k), Some((url, token))) = (with_operator, &kube, &quay_target) {
        operator = Some(start_operator(k, url, token, stopped).await?);
        println!(
            "Operator running with a sample QuayIntegration \"sandbox\" bridging every non-system namespace."
        );
        println!(
            "  try: kubectl --kubeconfig {} create namespace demo",
            kubeconfig_out.display()
        );
        println!(
            "       kubectl --kubeconfig {} get secrets,serviceaccounts -n demo",
            kubeconfig_out.display()
        );
        println!(
            "       kubectl --kubeconfig {} get quayintegrations",
            kubeconfig_out.display()
        );
    }
    println!("Press Ctrl-C to stop.");
    shutdown_signal().await;
    tracing::info!("shutting down");
    let _ = stop.send(());
    if let Some(task) = operator {
        let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
    }
    if let Some(k) = kube {
        k.shutdown().await;
    }
    if let Some(q) = quay {
        q.shutdown().await;
    }
    tokio::time::sleep(Duration::from_millis(10)).await;
    Ok(())
}

/// The identity the sandboxed operator acts as.
pub const OPERATOR_IDENTITY: &str =
    "system:serviceaccount:openshift-operators:quay-bridge-operator";

/// Installs the CRDs, the token Secret and a sample QuayIntegration, and
/// runs the operator against the embedded cluster and Quay.
async fn start_operator(
    kube: &EmbeddedKube,
    quay_url: &str,
    quay_token: &str,
    stopped: tokio::sync::oneshot::Receiver<()>,
) -> Result<tokio::task::JoinHandle<()>, SandboxError> {
    use crate::crd::{LegacyQuayIntegration, QuayIntegration};
    use k8s_openapi::api::core::v1::Secret;
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    use kube::CustomResourceExt;
    use kube::api::{Api, PostParams};
    let admin = kube.client();
    let create = |e: kube::Error| match e {
        kube::Error::Api(s) if s.code == 409 => Ok(()),
        other => Err(SandboxError::Setup(other.to_string())),
    };
    let crds: Api<CustomResourceDefinition> = Api::all(admin.clone());
    for crd in [QuayIntegration::crd(), LegacyQuayIntegration::crd()] {
        crds.create(&PostParams::default(), &crd)
            .await
            .map(|_| ())
            .or_else(create)?;
    }
    let secret: Secret = serde_json::from_value(serde_json::json!({"metadata": {"name": "quay-integration", "namespace": "openshift-operators"}, "stringData": {"token": quay_token}}))
        .map_err(|e| SandboxError::Setup(e.to_string()))?;
    Api::<Secret>::namespaced(admin.clone(), "openshift-operators")
        .create(&PostParams::default(), &secret)
        .await
        .map(|_| ())
        .or_else(create)?;
    let qi: QuayIntegration = serde_json::from_value(serde_json::json!({
        "apiVersion": "quay.redhat.com/v1", "kind": "QuayIntegration", "metadata": {"name": "sandbox"},
        "spec": {"clusterID": "openshift", "credentialsSecret": {"name": "quay-integration", "namespace": "openshift-operators"}, "quayHostname": quay_url, "insecureRegistry": true}
    }))
    .map_err(|e| SandboxError::Setup(e.to_string()))?;
    Api::<QuayIntegration>::all(admin)
        .create(&PostParams::default(), &qi)
        .await
        .map(|_| ())
        .or_else(create)?;
    let client = kube.client_as(OPERATOR_IDENTITY);
    let options = crate::controller::context::Options {
        instance: "sandbox".into(),
        ..Default::default()
    };
    Ok(tokio::spawn(async move {
        let shutdown = async move {
            let _ = stopped.await;
        };
        if let Err(e) = crate::controller::run(
            client,
            options,
            crate::controller::context::Metrics::default(),
            shutdown,
        )
        .await
        {
            tracing::error!(error = %e, "the operator stopped");
        }
    }))
}

pub use crate::net::shutdown_signal;
