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
    /// A component was asked for that this build cannot run.
    #[error(
        "sandbox component {0:?} is not available in this build; run with --components kube,quay"
    )]
    Unavailable(Component),
}

/// Runs the sandbox until Ctrl-C or SIGTERM.
pub async fn run(args: SandboxArgs) -> Result<(), SandboxError> {
    let SandboxArgs {
        components,
        listen_quay,
        quay_token,
        listen_kube,
        kubeconfig_out,
    } = args;
    if let Some(missing) = components.0.iter().find(|c| **c == Component::Operator) {
        return Err(SandboxError::Unavailable(*missing));
    }
    let mut quay = None;
    if components.0.contains(&Component::Quay) {
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
        quay = Some(q);
    }
    let mut kube = None;
    if components.0.contains(&Component::Kube) {
        let k = EmbeddedKube::start(EmbeddedKubeConfig {
            listen: Some(listen_kube),
            ..EmbeddedKubeConfig::default()
        })
        .await?;
        if let Some(q) = &quay {
            let host = q.url().trim_start_matches("http://").to_owned();
            k.register_registry(&host, &q.url());
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
    println!("Press Ctrl-C to stop.");
    shutdown_signal().await;
    tracing::info!("shutting down");
    if let Some(k) = kube {
        k.shutdown().await;
    }
    if let Some(q) = quay {
        q.shutdown().await;
    }
    tokio::time::sleep(Duration::from_millis(10)).await;
    Ok(())
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}
