use quay_bridge_operator::quay::{QuayClient, QuayClientConfig, QuayMetrics, RetryPolicy};
use quay_bridge_operator::secret::SecretString;
use quay_sandbox::{EmbeddedQuay, EmbeddedQuayConfig};
use std::time::Duration;

pub fn init() {
    quay_bridge_operator::install_crypto_provider();
    if std::env::var_os("RUST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
    }
}

pub async fn quay() -> EmbeddedQuay {
    init();
    EmbeddedQuay::start(EmbeddedQuayConfig::default())
        .await
        .expect("embedded Quay starts")
}

/// Retries fast, so fault tests take milliseconds.
pub fn fast_retry() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 4,
        base_delay: Duration::from_millis(5),
        max_delay: Duration::from_millis(40),
        max_retry_after: Duration::from_secs(5),
    }
}

pub fn client_with(quay: &EmbeddedQuay, token: SecretString, metrics: QuayMetrics) -> QuayClient {
    let mut config = QuayClientConfig::new(quay.url(), token);
    config.retry = fast_retry();
    QuayClient::new(config, metrics).expect("client builds")
}

pub fn client(quay: &EmbeddedQuay) -> QuayClient {
    client_with(quay, quay.admin_token(), QuayMetrics::default())
}

/// A file of the shared reference (`../shared/reference/`), which a
/// user's clone does not have: only ignored-tier tests read it.
pub fn shared_reference(file: &str) -> String {
    let path = format!("{}/../shared/reference/{file}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("the recorded answers are read from {path}: {e}"))
}
