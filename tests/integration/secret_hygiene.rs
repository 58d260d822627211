//! No Quay or robot token in any log line, error text or Debug output.

use crate::common;
use quay_bridge_operator::quay::types::NewRobot;
use quay_bridge_operator::quay::{QuayMetrics, Role, Visibility};
use quay_sandbox::FaultConfig;
use std::io::Write;
use std::sync::{Arc, Mutex};

/// Runs the calling test alone in a child process (this test binary again,
/// filtered to `name`) and checks that it passed; returns true in the child,
/// where the test body runs. There a process-wide subscriber sees every log
/// line; a thread-scoped one can miss lines when other tests in the same
/// binary log at the same time (tracing caches per-callsite interest).
fn in_own_process(name: &str) -> bool {
    if std::env::var("QBO_ISOLATED_TEST").as_deref() == Ok(name) {
        return true;
    }
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([name, "--exact", "--test-threads", "1"])
        .env("QBO_ISOLATED_TEST", name)
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "{name} in its own process:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    false
}

/// Captures every log line of this process from now on.
fn capture_all_logs(filter: &str) -> Capture {
    let capture = Capture::default();
    let writer = capture.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    tracing::subscriber::set_global_default(subscriber).unwrap();
    capture
}

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
    if !in_own_process("secret_hygiene::tokens_never_reach_logs_errors_or_debug_output") {
        return;
    }
    let capture = capture_all_logs("trace");

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

/// The whole namespace bridge story (bridge, rotated token, wrong token,
/// regenerated robot token, Quay errors, namespace deletion) with the
/// operator logging at TRACE: no Quay or robot token in any log line,
/// Event, condition, status or metric.
#[tokio::test(flavor = "current_thread")]
async fn the_end_to_end_flow_leaks_no_token_into_logs_events_status_or_metrics() {
    use crate::harness::{
        converged, env_with_metrics, fast_options, image_stream, integration, namespace, set_token,
        wait_for,
    };
    use k8s_openapi::api::core::v1::Namespace;
    use k8s_openapi::api::events::v1::Event;
    use kube::api::{Api, DeleteParams};
    use quay_bridge_operator::controller::context::{Metrics, Options};
    use quay_bridge_operator::crd::QuayIntegration;
    use std::time::Duration;

    if !in_own_process(
        "secret_hygiene::the_end_to_end_flow_leaks_no_token_into_logs_events_status_or_metrics",
    ) {
        return;
    }
    let capture = capture_all_logs("debug,quay_bridge_operator=trace");

    let mut registry = prometheus_client::registry::Registry::with_prefix("quay_bridge_operator");
    let metrics = Metrics::register(&mut registry);
    let env = env_with_metrics(
        Options {
            resync: Duration::from_millis(800),
            ..fast_options()
        },
        Duration::from_millis(20),
        metrics,
        |_| async {},
    )
    .await;
    let mut tokens = vec![env.quay.admin_token().expose().to_owned()];
    integration(&env, "quay", serde_json::json!({})).await;
    namespace(&env, "hygiene").await;
    image_stream(&env, "hygiene", "app").await;
    wait_for("hygiene", || converged(&env, "hygiene", &["app"])).await;
    for sa in ["builder", "default", "deployer"] {
        tokens.push(
            env.quay
                .robot_token("openshift_hygiene", sa)
                .unwrap()
                .expose()
                .to_owned(),
        );
    }

    // A rotated token, then a wrong one, then the rotated one again.
    let rotated = env
        .quay
        .issue_token("admin", crate::harness::ADMIN_SCOPES, None);
    tokens.push(rotated.expose().to_owned());
    set_token(&env.client, rotated.expose()).await;
    let wrong = "wrong-token-0123456789abcdefghijklmnop";
    tokens.push(wrong.to_owned());
    set_token(&env.client, wrong).await;
    let api = Api::<QuayIntegration>::all(env.client.clone());
    wait_for("the wrong token to be reported", || async {
        api.get("quay")
            .await
            .unwrap()
            .status
            .is_some_and(|s| s.conditions.iter().any(|c| c.reason == "TokenRejected"))
    })
    .await;
    set_token(&env.client, rotated.expose()).await;

    // A regenerated robot token is carried into its Secret at the resync.
    let quay = common::client(&env.quay);
    let regenerated = quay
        .regenerate_robot_token("openshift_hygiene", "builder")
        .await
        .unwrap()
        .token
        .unwrap();
    tokens.push(regenerated.expose().to_owned());
    // Quay errors on robot reads while that happens.
    env.quay.set_faults(
        FaultConfig {
            error_rate: 0.5,
            error_status: Some(500),
            path_prefix: Some("/api/v1/organization/openshift_hygiene/robots".into()),
            ..Default::default()
        },
        Some(3),
    );
    let secrets: Api<k8s_openapi::api::core::v1::Secret> =
        Api::namespaced(env.client.clone(), "hygiene");
    wait_for("the regenerated token in the Secret", || async {
        let s = secrets.get("builder-quay-openshift").await.unwrap();
        String::from_utf8_lossy(&s.data.unwrap()[".dockerconfigjson"].0).contains(
            &base64::Engine::encode(
                &base64::engine::general_purpose::STANDARD,
                format!("openshift_hygiene+builder:{}", regenerated.expose()),
            ),
        )
    })
    .await;
    env.quay.clear_faults();
    Api::<Namespace>::all(env.client.clone())
        .delete("hygiene", &DeleteParams::default())
        .await
        .unwrap();
    wait_for("the organization to go with the namespace", || async {
        !crate::harness::has_org(&env, "openshift_hygiene")
    })
    .await;

    // Everything a user or a log pipeline can see.
    let mut texts = Vec::new();
    let logs = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
    assert!(logs.contains("Quay request"), "Quay calls were logged");
    texts.push(logs);
    let events = Api::<Event>::all(env.client.clone())
        .list(&Default::default())
        .await
        .unwrap();
    assert!(events.items.len() >= 3, "Events were published");
    texts.push(serde_json::to_string(&events.items).unwrap());
    texts.push(serde_json::to_string(&api.get("quay").await.unwrap().status).unwrap());
    let mut metrics = String::new();
    prometheus_client::encoding::text::encode(&mut metrics, &registry).unwrap();
    assert!(metrics.contains("quay_bridge_operator_quay_requests_total"));
    texts.push(metrics);
    for text in &texts {
        for token in &tokens {
            assert!(
                !text.contains(token.as_str()),
                "a token leaked: {token:.4}… in {:.200}",
                text
            );
        }
    }
    env.stop().await;
}

/// A Quay answer the client cannot decode names no value it met (a token
/// may be one), and what holds a private key or registry credentials
/// shows neither in its Debug output.
#[tokio::test]
async fn decode_errors_and_debug_output_quote_no_secret() {
    use quay_bridge_operator::net::tls::CertificateAuthority;
    use quay_bridge_operator::plan::namespace::ObservedSecret;
    use quay_bridge_operator::quay::{QuayClient, QuayClientConfig};
    use quay_bridge_operator::secret::SecretString;
    common::init();
    const TOKEN: &str = "robot-token-0123456789abcdef";
    // A Quay-like server whose robot answer has the token where a list
    // belongs: the decode fails on it.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(async move {
        let app = axum::Router::new().fallback(|| async {
            axum::Json(
                serde_json::json!({"name": "org+builder", "token": TOKEN, "repositories": TOKEN}),
            )
        });
        let _ = axum::serve(listener, app).await;
    });
    let mut config = QuayClientConfig::new(url, SecretString::new("admin-token-value".to_owned()));
    config.retry = common::fast_retry();
    let client = QuayClient::new(config, QuayMetrics::default()).unwrap();
    let err = client.get_robot("org", "builder").await.unwrap_err();
    let texts = [err.to_string(), format!("{err:?}")];
    for text in &texts {
        assert!(!text.contains(TOKEN), "a token leaked into: {text}");
    }
    assert!(texts[0].contains("unexpected answer"), "{}", texts[0]);
    server.abort();

    let ca = CertificateAuthority::new("hygiene CA").unwrap();
    let pair = ca.issue_server(&["webhook.example"]).unwrap();
    let reloading = quay_bridge_operator::webhook::tls::Reloading::from_pem(
        pair.cert_pem.as_bytes(),
        pair.key_pem.expose().as_bytes(),
    )
    .unwrap();
    let debug = format!("{reloading:?}");
    for line in pair
        .key_pem
        .expose()
        .lines()
        .filter(|l| !l.starts_with("-----"))
    {
        assert!(!debug.contains(line), "the key leaked into: {debug}");
    }
    let observed = ObservedSecret {
        dockerconfigjson_type: true,
        dockerconfigjson: Some(quay_bridge_operator::plan::namespace::ConfigDigest::of(
            quay_bridge_operator::plan::names::dockerconfigjson(
                "quay.example.com",
                "o+builder",
                TOKEN,
            )
            .as_bytes(),
        )),
        ..Default::default()
    };
    let debug = format!("{observed:?}");
    use base64::Engine;
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("o+builder:{TOKEN}"));
    assert!(!debug.contains(&auth) && !debug.contains(TOKEN), "{debug}");
}

/// The password in the credentials Secret, the tokens minted from it, the
/// session's cookie and the robot tokens of a rotation appear in no log
/// line, Event, status or metric.
#[tokio::test(flavor = "current_thread")]
async fn bootstrap_and_rotation_leak_no_password_or_token() {
    use crate::harness::{env_with_metrics, fast_options, image_stream, integration, namespace};
    use crate::harness::{has_org, wait_for};
    use k8s_openapi::api::core::v1::Secret;
    use k8s_openapi::api::events::v1::Event;
    use kube::api::{Api, DeleteParams, PostParams};
    use quay_bridge_operator::controller::context::Metrics;
    use quay_bridge_operator::crd::QuayIntegration;
    use std::time::Duration;

    let name = "secret_hygiene::bootstrap_and_rotation_leak_no_password_or_token";
    if !in_own_process(name) {
        return;
    }
    let capture = capture_all_logs("debug,quay_bridge_operator=trace");
    let mut registry = prometheus_client::registry::Registry::with_prefix("quay_bridge_operator");
    let metrics = Metrics::register(&mut registry);
    let env = env_with_metrics(
        fast_options(),
        Duration::from_millis(20),
        metrics,
        |_| async {},
    )
    .await;
    let password = "hygiene-password-0123456789";
    env.quay.add_user("hygiene", password, false);
    let secrets = Api::<Secret>::namespaced(env.client.clone(), "openshift-operators");
    secrets
        .delete("quay-integration", &DeleteParams::default())
        .await
        .unwrap();
    secrets
        .create(
            &PostParams::default(),
            &serde_json::from_value(serde_json::json!({"metadata": {"name": "quay-integration"},
                "stringData": {"username": "hygiene", "password": password}}))
            .unwrap(),
        )
        .await
        .unwrap();
    integration(
        &env,
        "quay",
        serde_json::json!({"robotTokenRotation": {"interval": "2s", "gracePeriod": "1s", "maxPerMinute": 600}}),
    )
    .await;
    namespace(&env, "hygiene").await;
    image_stream(&env, "hygiene", "app").await;
    let mut tokens = vec![password.to_owned()];
    wait_for("the first robots", || async {
        ["builder", "default", "deployer"]
            .iter()
            .all(|sa| env.quay.robot_token("openshift_hygiene", sa).is_some())
    })
    .await;
    for sa in ["builder", "default", "deployer"] {
        tokens.push(
            env.quay
                .robot_token("openshift_hygiene", sa)
                .unwrap()
                .expose()
                .to_owned(),
        );
    }
    wait_for("a rotation to finish", || async {
        env.quay
            .robot_token("openshift_hygiene", "builder_2")
            .is_some()
            && env
                .quay
                .robot_token("openshift_hygiene", "builder")
                .is_none()
    })
    .await;
    for sa in ["builder_2", "default_2", "deployer_2"] {
        if let Some(t) = env.quay.robot_token("openshift_hygiene", sa) {
            tokens.push(t.expose().to_owned());
        }
    }
    let secret = secrets.get("quay-integration").await.unwrap();
    tokens.push(String::from_utf8(secret.data.unwrap()["token"].0.clone()).unwrap());
    assert!(has_org(&env, "openshift_hygiene"));

    let mut texts = Vec::new();
    let logs = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
    assert!(logs.contains("token minted"), "the mint was logged");
    texts.push(logs);
    let events = Api::<Event>::all(env.client.clone())
        .list(&Default::default())
        .await
        .unwrap();
    assert!(
        events
            .items
            .iter()
            .any(|e| e.reason.as_deref() == Some("TokenMinted")),
        "the mint was an Event"
    );
    texts.push(serde_json::to_string(&events.items).unwrap());
    let status = Api::<QuayIntegration>::all(env.client.clone())
        .get("quay")
        .await
        .unwrap()
        .status;
    texts.push(serde_json::to_string(&status).unwrap());
    let mut metrics = String::new();
    prometheus_client::encoding::text::encode(&mut metrics, &registry).unwrap();
    texts.push(metrics);
    for text in &texts {
        for token in &tokens {
            assert!(
                !text.contains(token.as_str()),
                "a secret leaked: {token:.4}… in {:.200}",
                text
            );
        }
    }
    env.stop().await;
}
