//! The `sandbox` command as a newcomer runs it.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

#[tokio::test]
async fn sandbox_quay_serves_until_sigterm() {
    crate::common::init();
    let mut child = Command::new(env!("CARGO_BIN_EXE_quay-bridge-operator"))
        .args([
            "sandbox",
            "--components",
            "quay",
            "--listen-quay",
            "127.0.0.1:0",
            "--quay-token",
            "cli-test-token",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let first = lines.next().unwrap().unwrap();
    let url = first
        .strip_prefix("Embedded Quay listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {first}"))
        .to_owned();
    let rest: Vec<String> = lines.by_ref().take(8).map(Result::unwrap).collect();
    assert!(
        rest.iter()
            .any(|l| l.contains("admin token: cli-test-token")),
        "{rest:?}"
    );

    let http = reqwest::Client::new();
    let me: serde_json::Value = http
        .get(format!("{url}/api/v1/user/"))
        .bearer_auth("cli-test-token")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["username"], "admin");
    let created = http
        .post(format!("{url}/api/v1/organization/"))
        .bearer_auth("cli-test-token")
        .json(&serde_json::json!({"name": "fromcli"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let state: serde_json::Value = http
        .get(format!("{url}/_sandbox/quay/state"))
        .bearer_auth("cli-test-token")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(state["organizations"]["fromcli"].is_object());
    // The control API wants the admin token.
    assert_eq!(
        http.get(format!("{url}/_sandbox/quay/state"))
            .send()
            .await
            .unwrap()
            .status(),
        401
    );

    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let mut waited = Duration::ZERO;
    loop {
        if let Some(exit) = child.try_wait().unwrap() {
            assert!(exit.success(), "exit status {exit:?}");
            break;
        }
        assert!(
            waited < Duration::from_secs(10),
            "sandbox did not stop on SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
        waited += Duration::from_millis(50);
    }
}

#[test]
fn unavailable_components_fail_clearly() {
    let out = Command::new(env!("CARGO_BIN_EXE_quay-bridge-operator"))
        .args([
            "sandbox",
            "--components",
            "quay,operator",
            "--listen-quay",
            "127.0.0.1:0",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not available"), "{err}");
}

#[test]
fn unknown_components_are_rejected_by_the_parser() {
    let out = Command::new(env!("CARGO_BIN_EXE_quay-bridge-operator"))
        .args(["sandbox", "--components", "etcd"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown component"));
}
