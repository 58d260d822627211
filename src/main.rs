#[cfg(feature = "sandbox")]
mod sandbox;

use clap::Parser;
use quay_bridge_operator::cli::{Cli, Command};
use quay_bridge_operator::{install_crypto_provider, telemetry};
use std::process::ExitCode;

async fn client(kubeconfig: Option<std::path::PathBuf>) -> Result<kube::Client, String> {
    let config = match kubeconfig {
        Some(path) => {
            let kc = kube::config::Kubeconfig::read_from(&path)
                .map_err(|e| format!("{}: {e}", path.display()))?;
            kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
                .await
                .map_err(|e| e.to_string())?
        }
        None => kube::Config::infer().await.map_err(|e| e.to_string())?,
    };
    quay_bridge_operator::kube_client(config).map_err(|e| e.to_string())
}

async fn run(args: quay_bridge_operator::cli::RunArgs) -> Result<(), String> {
    use quay_bridge_operator::cli::WebhookCerts;
    use quay_bridge_operator::controller::context::{CertSource, Metrics, Options, WebhookOptions};
    use std::time::Duration;
    let instance = args
        .instance
        .clone()
        .unwrap_or_else(quay_bridge_operator::leader::default_identity);
    let leader_election = args
        .leader_elect
        .then(|| quay_bridge_operator::leader::LeaseSettings {
            lease_duration: Duration::from_secs(args.lease_duration_seconds),
            renew_deadline: Duration::from_secs(args.renew_deadline_seconds),
            retry_period: Duration::from_secs(args.retry_period_seconds),
            ..quay_bridge_operator::leader::LeaseSettings::new(&args.operator_namespace, &instance)
        });
    if let Some(settings) = &leader_election {
        settings.validate().map_err(|e| e.to_string())?;
    }
    let client = client(args.kubeconfig.clone()).await?;
    let mut registry = prometheus_client::registry::Registry::with_prefix("quay_bridge_operator");
    let metrics = Metrics::register(&mut registry);
    let ready = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let campaign_problem = std::sync::Arc::new(std::sync::Mutex::new(None));
    let admin = quay_bridge_operator::net::serve(
        &args.admin_listen,
        None,
        quay_bridge_operator::admin::router(registry, ready.clone(), campaign_problem.clone()),
    )
    .await
    .map_err(|e| e.to_string())?;
    tracing::info!(address = %admin.local_addr(), "admin server listening");
    let certificates = match args.webhook_certs {
        WebhookCerts::Disabled => None,
        WebhookCerts::Files => Some(CertSource::Files {
            dir: args.webhook_cert_dir.clone(),
            reload_interval: Duration::from_secs(30),
        }),
        WebhookCerts::SelfManaged => Some(CertSource::SelfManaged(
            quay_bridge_operator::webhook::selfmanaged::SelfManaged::new(
                &args.operator_namespace,
                &args.webhook_service,
                &format!("{}-webhook-tls", args.webhook_service),
                &args.webhook_configuration,
            ),
        )),
    };
    let options = Options {
        concurrency: args.concurrency,
        resync: Duration::from_secs(args.resync_seconds),
        instance,
        webhook: certificates
            .map(|certificates| WebhookOptions::new(args.webhook_listen.clone(), certificates)),
        ready,
        campaign_problem,
        leader_election,
        ..Options::default()
    };
    let result = quay_bridge_operator::controller::run(
        client,
        options,
        metrics,
        quay_bridge_operator::net::shutdown_signal(),
    )
    .await;
    admin.shutdown(Duration::from_secs(2)).await;
    result.map_err(|e| e.to_string())
}

async fn uninstall(args: quay_bridge_operator::cli::UninstallArgs) -> Result<(), String> {
    let released =
        quay_bridge_operator::controller::uninstall::uninstall(client(args.kubeconfig).await?)
            .await
            .map_err(|e| e.to_string())?;
    use quay_bridge_operator::plan::count_of;
    println!(
        "released {}: {}",
        count_of(released.namespaces.len(), "namespace", "namespaces"),
        released.namespaces.join(", ")
    );
    println!(
        "released {}: {}",
        count_of(
            released.integrations.len(),
            "QuayIntegration",
            "QuayIntegrations"
        ),
        released.integrations.join(", ")
    );
    Ok(())
}

fn main() -> ExitCode {
    install_crypto_provider();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(quay_bridge_operator::cli::worker_threads(
            cli.worker_threads,
        ))
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async_main(cli))
}

async fn async_main(cli: Cli) -> ExitCode {
    // The demo's story is on stdout: its logs go to a file unless RUST_LOG
    // asks for them.
    let demo = matches!(&cli.command, Command::Sandbox(a) if a.demo);
    let log_file = (demo && std::env::var_os("RUST_LOG").is_none()).then(|| {
        std::env::temp_dir().join(format!(
            "quay-bridge-operator-demo-{}.log",
            std::process::id()
        ))
    });
    match &log_file {
        Some(path) => {
            if let Err(e) = telemetry::init_to_file(cli.log_format, path) {
                eprintln!("error: cannot write the log file {}: {e}", path.display());
                return ExitCode::FAILURE;
            }
        }
        None => telemetry::init(cli.log_format),
    }
    let result = match cli.command {
        #[cfg(feature = "sandbox")]
        Command::Sandbox(args) => {
            let keep = args.keep;
            let result = sandbox::cmd::run(args, log_file.clone())
                .await
                .map_err(|e| e.to_string());
            // The demo's log file is left behind only when it tells
            // something: a failed story, or a sandbox kept running.
            if let Some(path) = log_file.filter(|_| demo && !keep) {
                match &result {
                    Ok(()) => {
                        let _ = std::fs::remove_file(&path);
                    }
                    Err(_) => eprintln!("The logs are in {}", path.display()),
                }
            }
            result
        }
        #[cfg(not(feature = "sandbox"))]
        Command::Sandbox(_) => Err(
            "this build has no sandbox (it was built without the `sandbox` feature, as the container image is)"
                .into(),
        ),
        Command::Run(args) => run(args).await,
        Command::Uninstall(args) => uninstall(args).await,
        Command::Crd => match quay_bridge_operator::crd::crds_yaml() {
            Ok(yaml) => {
                print!("{yaml}");
                Ok(())
            }
            Err(e) => Err(e),
        },
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
