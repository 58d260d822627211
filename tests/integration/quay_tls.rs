//! TLS to Quay: verified by default, an extra CA bundle trusted when given,
//! verification skipped only on the explicit insecure opt-in.

use crate::common;
use quay_bridge_operator::net::tls::{CertificateAuthority, server_config_from};
use quay_bridge_operator::quay::{QuayClient, QuayClientConfig, QuayError, QuayMetrics};
use quay_sandbox::{EmbeddedQuay, EmbeddedQuayConfig};

async fn tls_quay(names: &[&str]) -> (EmbeddedQuay, CertificateAuthority) {
    common::init();
    let ca = CertificateAuthority::new("quay test CA").unwrap();
    let cert = ca.issue_server(names).unwrap();
    let quay = EmbeddedQuay::start(EmbeddedQuayConfig {
        tls: Some(server_config_from(&cert).unwrap()),
        ..Default::default()
    })
    .await
    .unwrap();
    (quay, ca)
}

fn client(url: String, quay: &EmbeddedQuay, ca: Option<String>, insecure: bool) -> QuayClient {
    let mut config = QuayClientConfig::new(url, quay.admin_token());
    config.ca_bundle_pem = ca.map(String::into_bytes);
    config.insecure = insecure;
    config.retry = common::fast_retry();
    QuayClient::new(config, QuayMetrics::default()).unwrap()
}

#[tokio::test]
async fn a_ca_bundle_makes_a_private_certificate_trusted() {
    let (quay, ca) = tls_quay(&["localhost", "127.0.0.1"]).await;
    assert!(quay.url().starts_with("https://"));
    let url = format!("https://localhost:{}", quay.local_addr().port());
    let trusted = client(url.clone(), &quay, Some(ca.cert_pem()), false);
    assert_eq!(trusted.current_user().await.unwrap().username, "admin");
    // By IP address too (the certificate names it).
    let by_ip = client(quay.url(), &quay, Some(ca.cert_pem()), false);
    assert_eq!(by_ip.current_user().await.unwrap().username, "admin");
}

#[tokio::test]
async fn an_unknown_ca_is_refused_by_default() {
    let (quay, _ca) = tls_quay(&["localhost"]).await;
    let url = format!("https://localhost:{}", quay.local_addr().port());
    let untrusted = client(url, &quay, None, false);
    let err = untrusted.current_user().await.unwrap_err();
    assert!(matches!(err, QuayError::Transport { .. }), "{err:?}");
    assert!(
        quay.requests().is_empty(),
        "no request got through the handshake"
    );
}

#[tokio::test]
async fn a_certificate_for_another_host_is_refused() {
    let (quay, ca) = tls_quay(&["quay.example.com"]).await;
    let url = format!("https://localhost:{}", quay.local_addr().port());
    let err = client(url, &quay, Some(ca.cert_pem()), false)
        .current_user()
        .await
        .unwrap_err();
    assert!(matches!(err, QuayError::Transport { .. }), "{err:?}");
}

#[tokio::test]
async fn insecure_skips_verification_only_when_asked() {
    let (quay, _ca) = tls_quay(&["quay.example.com"]).await;
    let url = format!("https://localhost:{}", quay.local_addr().port());
    let insecure = client(url, &quay, None, true);
    assert_eq!(insecure.current_user().await.unwrap().username, "admin");
}
