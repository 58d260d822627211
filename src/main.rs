use clap::Parser;
use quay_bridge_operator::cli::{Cli, Command};
use quay_bridge_operator::{install_crypto_provider, sandbox, telemetry};
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
    kube::Client::try_from(config).map_err(|e| e.to_string())
}

async fn uninstall(args: quay_bridge_operator::cli::UninstallArgs) -> Result<(), String> {
    let released =
        quay_bridge_operator::controller::uninstall::uninstall(client(args.kubeconfig).await?)
            .await
            .map_err(|e| e.to_string())?;
    println!(
        "released {} namespaces: {}",
        released.namespaces.len(),
        released.namespaces.join(", ")
    );
    println!(
        "released {} QuayIntegrations: {}",
        released.integrations.len(),
        released.integrations.join(", ")
    );
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    install_crypto_provider();
    let cli = Cli::parse();
    telemetry::init(cli.log_format);
    let result = match cli.command {
        Command::Sandbox(args) => sandbox::cmd::run(args).await.map_err(|e| e.to_string()),
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
