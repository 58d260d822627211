//! No Quay or robot token in any log line, error text or Debug output.

use crate::common;
use quay_bridge_operator::quay::types::NewRobot;
use quay_bridge_operator::quay::{QuayMetrics, Role, Visibility};
use quay_bridge_operator::sandbox::quay::FaultConfig;
use std::io::Write;
use std::sync::{Arc, Mutex};

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn tokens_never_reach_logs_errors_or_debug_output() {
    let capture = Capture::default();
    let writer = capture.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let quay = common::quay().await;
    let admin_token = quay.admin_token().expose().to_owned();
    let client = common::client(&quay);
    let mut texts = vec![format!("{client:?}"), format!("{:?}", quay)];

    client.create_organization("secretive", None).await.unwrap();
    let robot = client
        .create_robot("secretive", "builder", &NewRobot::default())
        .await
        .unwrap();
    let robot_token = robot.token.clone().unwrap().expose().to_owned();
    texts.push(format!("{robot:?}"));
    texts.push(format!(
        "{:?}",
        client.list_robots("secretive", true).await.unwrap()
    ));
    let regenerated = client
        .regenerate_robot_token("secretive", "builder")
        .await
        .unwrap();
    let new_token = regenerated.token.clone().unwrap().expose().to_owned();
    texts.push(format!("{regenerated:?}"));
    client
        .create_repository("secretive", "app", Visibility::Private, "")
        .await
        .unwrap();
    client
        .set_repository_permission("secretive", "app", "secretive+builder", Role::Write)
        .await
        .unwrap();

    // Errors of every kind, with retries logged.
    quay.set_faults(
        FaultConfig {
            fail_next: 2,
            error_status: Some(503),
            ..Default::default()
        },
        None,
    );
    texts.push(format!(
        "{:?}",
        client.get_robot("secretive", "builder").await
    ));
    quay.set_faults(
        FaultConfig {
            throttle_next: 1,
            retry_after_secs: 0,
            ..Default::default()
        },
        None,
    );
    texts.push(format!(
        "{:?}",
        client.get_robot("secretive", "builder").await
    ));
    quay.clear_faults();
    let bad = common::client_with(
        &quay,
        "wrong-token-value-1234567890".into(),
        QuayMetrics::default(),
    );
    let err = bad.create_organization("x1", None).await.unwrap_err();
    texts.push(err.to_string());
    texts.push(format!("{err:?}"));
    texts.push(bad.current_user().await.unwrap_err().to_string());

    let logs = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
    assert!(
        logs.contains("Quay request"),
        "logging was captured: {logs}"
    );
    texts.push(logs);
    for text in &texts {
        for secret in [
            &admin_token,
            &robot_token,
            &new_token,
            &"wrong-token-value-1234567890".to_owned(),
        ] {
            assert!(
                !text.contains(secret.as_str()),
                "a token leaked into: {text}"
            );
        }
    }
}
