//! `quay-bridge-operator sandbox`: runs the embedded components on loopback.

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
    /// A component was asked for that this build cannot run.
    #[error("sandbox component {0:?} is not available in this build; run with --components quay")]
    Unavailable(Component),
}

/// Runs the sandbox until Ctrl-C or SIGTERM.
pub async fn run(args: SandboxArgs) -> Result<(), SandboxError> {
    let SandboxArgs {
        components,
        listen_quay,
        quay_token,
    } = args;
    if let Some(missing) = components.0.iter().find(|c| **c != Component::Quay) {
        return Err(SandboxError::Unavailable(*missing));
    }
    let config = EmbeddedQuayConfig {
        listen: listen_quay,
        admin_token: quay_token.map(SecretString::new),
        ..EmbeddedQuayConfig::default()
    };
    let quay = EmbeddedQuay::start(config).await?;
    let url = quay.url();
    // The sandbox exists to be used by hand: print how.
    println!("Embedded Quay listening on {url}");
    println!("  admin user:  {}", quay.admin_user());
    println!("  admin token: {}", quay.admin_token().expose());
    println!();
    println!("Try:");
    println!("  export QUAY_TOKEN={}", quay.admin_token().expose());
    println!("  curl -s -H \"Authorization: Bearer $QUAY_TOKEN\" {url}/api/v1/user/");
    println!(
        "  curl -s -X POST -H \"Authorization: Bearer $QUAY_TOKEN\" -H 'Content-Type: application/json' -d '{{\"name\":\"demo\"}}' {url}/api/v1/organization/"
    );
    println!("  curl -s -H \"Authorization: Bearer $QUAY_TOKEN\" {url}/_sandbox/quay/state");
    println!();
    println!("Press Ctrl-C to stop.");
    shutdown_signal().await;
    tracing::info!("shutting down");
    quay.shutdown().await;
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
