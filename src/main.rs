use clap::Parser;
use quay_bridge_operator::cli::{Cli, Command};
use quay_bridge_operator::{install_crypto_provider, sandbox, telemetry};
use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    install_crypto_provider();
    let cli = Cli::parse();
    telemetry::init(cli.log_format);
    let result = match cli.command {
        Command::Sandbox(args) => sandbox::cmd::run(args).await.map_err(|e| e.to_string()),
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
