//! The client under Quay failures: what it retries, what it verifies, and
//! what it returns to its caller.

use crate::common;
use quay_bridge_operator::quay::{QuayError, QuayMetrics, Visibility};
use quay_sandbox::FaultConfig;
use std::time::{Duration, Instant};

fn count(quay: &quay_sandbox::EmbeddedQuay, key: &str) -> u64 {
    quay.request_counts().get(key).copied().unwrap_or(0)
}

#[tokio::test]
async fn idempotent_calls_retry_429_and_gateway_errors() {
    let quay = common::quay().await;
    let client = common::client(&quay);
    quay.set_faults(
        FaultConfig {
            throttle_next: 2,
            retry_after_secs: 0,
            ..Default::default()
        },
        None,
    );
    assert_eq!(client.current_user().await.unwrap().username, "admin");
    assert_eq!(count(&quay, "GET /api/v1/user/"), 3);

    quay.clear_requests();
    quay.set_faults(
        FaultConfig {
            fail_next: 2,
            error_status: Some(503),
            ..Default::default()
        },
        None,
    );
    assert!(client.get_organization("nothing").await.unwrap().is_none());
    assert_eq!(count(&quay, "GET /api/v1/organization/{org}"), 3);

    quay.clear_requests();
    quay.set_faults(
        FaultConfig {
            drop_next: 1,
            ..Default::default()
        },
        None,
    );
    assert!(
        client.get_organization("nothing").await.unwrap().is_none(),
        "a dropped connection is retried"
    );
    assert_eq!(count(&quay, "GET /api/v1/organization/{org}"), 2);
}

#[tokio::test]
async fn retry_after_is_waited_for() {
    let quay = common::quay().await;
    let client = common::client(&quay);
    quay.set_faults(
        FaultConfig {
            throttle_next: 1,
            retry_after_secs: 1,
            ..Default::default()
        },
        None,
    );
    let start = Instant::now();
    client.current_user().await.unwrap();
    assert!(
        start.elapsed() >= Duration::from_secs(1),
        "waited {:?}",
        start.elapsed()
    );
}

#[tokio::test]
async fn a_long_retry_after_is_returned_to_the_caller() {
    let quay = common::quay().await;
    let client = common::client(&quay); // max_retry_after 5 s
    quay.set_faults(
        FaultConfig {
            throttle_next: 1,
            retry_after_secs: 120,
            ..Default::default()
        },
        None,
    );
    let err = client.current_user().await.unwrap_err();
    assert_eq!(err.retry_after(), Some(Duration::from_secs(120)));
    assert!(err.is_transient());
    assert_eq!(count(&quay, "GET /api/v1/user/"), 1);
}

#[tokio::test]
async fn a_plain_500_is_not_retried_and_persistent_failures_give_up() {
    let quay = common::quay().await;
    let client = common::client(&quay);
    quay.set_faults(
        FaultConfig {
            fail_next: 1,
            ..Default::default()
        },
        None,
    );
    let err = client.current_user().await.unwrap_err();
    assert!(
        matches!(err, QuayError::Server { status: 500, .. }),
        "{err:?}"
    );
    assert_eq!(count(&quay, "GET /api/v1/user/"), 1);

    quay.clear_requests();
    quay.set_faults(
        FaultConfig {
            down: true,
            ..Default::default()
        },
        None,
    );
    let err = client.current_user().await.unwrap_err();
    assert!(
        matches!(err, QuayError::Server { status: 503, .. }),
        "{err:?}"
    );
    assert_eq!(
        count(&quay, "GET /api/v1/user/"),
        4,
        "bounded by max_attempts"
    );

    quay.clear_faults();
    client.current_user().await.unwrap();
}

#[tokio::test]
async fn creates_are_not_blindly_repeated() {
    let quay = common::quay().await;
    let client = common::client(&quay);
    // Quay creates the organization, then the answer is lost to a 502.
    quay.set_faults(
        FaultConfig {
            fail_next: 1,
            error_status: Some(502),
            error_after_effect: true,
            method: Some("POST".into()),
            ..Default::default()
        },
        None,
    );
    client.create_organization("ambiguous", None).await.unwrap();
    assert_eq!(
        count(&quay, "POST /api/v1/organization/"),
        1,
        "not posted twice"
    );
    assert_eq!(
        count(&quay, "GET /api/v1/organization/{org}"),
        1,
        "verified instead"
    );

    // The same for a repository and a robot.
    quay.set_faults(
        FaultConfig {
            fail_next: 1,
            error_status: Some(504),
            error_after_effect: true,
            method: Some("POST".into()),
            ..Default::default()
        },
        None,
    );
    client
        .create_repository("ambiguous", "app", Visibility::Private, "")
        .await
        .unwrap();
    assert_eq!(count(&quay, "POST /api/v1/repository"), 1);
    quay.set_faults(
        FaultConfig {
            fail_next: 1,
            error_status: Some(503),
            error_after_effect: true,
            method: Some("PUT".into()),
            ..Default::default()
        },
        None,
    );
    let robot = client
        .create_robot("ambiguous", "builder", &Default::default())
        .await
        .unwrap();
    assert!(
        robot.token.is_some(),
        "the verified robot comes with its token"
    );
    assert_eq!(
        count(&quay, "PUT /api/v1/organization/{org}/robots/{robot}"),
        1
    );
    quay.set_faults(
        FaultConfig {
            fail_next: 1,
            error_status: Some(502),
            error_after_effect: true,
            method: Some("POST".into()),
            ..Default::default()
        },
        None,
    );
    client
        .create_robot_prototype(
            "ambiguous",
            "builder",
            quay_bridge_operator::quay::Role::Write,
        )
        .await
        .unwrap();
    assert_eq!(
        count(&quay, "POST /api/v1/organization/{org}/prototypes"),
        1
    );
    assert_eq!(
        quay.snapshot().organizations["ambiguous"].prototypes.len(),
        1
    );
}

#[tokio::test]
async fn a_create_that_did_not_happen_is_repeated_after_verification() {
    let quay = common::quay().await;
    let client = common::client(&quay);
    // The connection drops before Quay acts: verify finds nothing, create again.
    quay.set_faults(
        FaultConfig {
            drop_next: 1,
            method: Some("POST".into()),
            ..Default::default()
        },
        None,
    );
    client.create_organization("dropped", None).await.unwrap();
    assert_eq!(count(&quay, "POST /api/v1/organization/"), 2);
    assert_eq!(count(&quay, "GET /api/v1/organization/{org}"), 1);
    assert!(quay.snapshot().organizations.contains_key("dropped"));

    // 429 on a create is safe to repeat without verification.
    quay.clear_requests();
    quay.set_faults(
        FaultConfig {
            throttle_next: 1,
            retry_after_secs: 0,
            method: Some("POST".into()),
            ..Default::default()
        },
        None,
    );
    client.create_organization("throttled", None).await.unwrap();
    assert_eq!(count(&quay, "POST /api/v1/organization/"), 2);
    assert_eq!(count(&quay, "GET /api/v1/organization/{org}"), 0);
}

#[tokio::test]
async fn timeouts_are_transport_errors() {
    let quay = common::quay().await;
    let mut config =
        quay_bridge_operator::quay::QuayClientConfig::new(quay.url(), quay.admin_token());
    config.request_timeout = Duration::from_millis(100);
    config.retry = quay_bridge_operator::quay::RetryPolicy::none();
    let client =
        quay_bridge_operator::quay::QuayClient::new(config, QuayMetrics::default()).unwrap();
    quay.set_faults(
        FaultConfig {
            latency_ms: 500,
            ..Default::default()
        },
        None,
    );
    let err = client.current_user().await.unwrap_err();
    assert!(
        matches!(err, QuayError::Transport { timeout: true, .. }),
        "{err:?}"
    );
    assert!(err.is_transient());
}

#[tokio::test]
async fn connection_refused_is_a_transport_error_before_send() {
    common::init();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let mut config =
        quay_bridge_operator::quay::QuayClientConfig::new(format!("http://{addr}"), "t".into());
    config.retry = common::fast_retry();
    let client =
        quay_bridge_operator::quay::QuayClient::new(config, QuayMetrics::default()).unwrap();
    let err = client
        .create_organization("neworg", None)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            QuayError::Transport {
                before_send: true,
                ..
            }
        ),
        "{err:?}"
    );
}

/// The embedded Quay's capacity models Quay's workers: no more requests
/// are served at once than it has, the others wait their turn.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capacity_limits_the_requests_served_at_once() {
    let quay = common::quay().await;
    quay.set_faults(
        FaultConfig {
            latency_ms: 30,
            capacity: Some(2),
            ..Default::default()
        },
        None,
    );
    let client = common::client(&quay);
    let calls: Vec<_> = (0..6).map(|_| client.current_user()).collect();
    for answer in futures::future::join_all(calls).await {
        answer.unwrap();
    }
    assert_eq!(quay.peak_serving(), 2, "two workers, six callers");
}
