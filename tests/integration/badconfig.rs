//! Bad configuration, one mistake after another on a live integration: each
//! gives a clear condition and a Warning Event, deletes nothing, and the
//! integration recovers (Ready again, new namespaces bridged) once fixed.

use crate::harness::{Env, converged, env, has_org, integration, namespace, set_token, wait_for};
use k8s_openapi::api::core::v1::{Namespace, Secret};
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use quay_bridge_operator::config::FINALIZER;
use quay_bridge_operator::crd::QuayIntegration;
use serde_json::json;

async fn condition(env: &Env, kind: &str) -> Option<(String, String, String)> {
    let qi = Api::<QuayIntegration>::all(env.client.clone())
        .get("quay")
        .await
        .ok()?;
    qi.status?
        .conditions
        .into_iter()
        .find(|c| c.type_ == kind)
        .map(|c| (c.status, c.reason, c.message))
}

/// Waits until condition `kind` is `status` with `reason`; returns its message.
async fn expect_condition(env: &Env, kind: &str, status: &str, reason: &str) -> String {
    wait_for(&format!("{kind}={status} ({reason})"), || async {
        condition(env, kind)
            .await
            .is_some_and(|(s, r, _)| s == status && r == reason)
    })
    .await;
    condition(env, kind).await.map(|c| c.2).unwrap_or_default()
}

/// Events on the integration of this type and reason.
async fn events(env: &Env, type_: &str, reason: &str) -> Vec<Event> {
    Api::<Event>::namespaced(env.client.clone(), "default")
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|e| {
            e.regarding.as_ref().and_then(|r| r.kind.as_deref()) == Some("QuayIntegration")
                && e.type_.as_deref() == Some(type_)
                && e.reason.as_deref() == Some(reason)
        })
        .collect()
}

/// Notes of the Warning Events on the integration with this reason.
async fn warnings(env: &Env, reason: &str) -> Vec<String> {
    events(env, "Warning", reason)
        .await
        .into_iter()
        .filter_map(|e| e.note)
        .collect()
}

async fn expect_warning(env: &Env, reason: &str) -> String {
    wait_for(&format!("a Warning Event {reason}"), || async {
        !warnings(env, reason).await.is_empty()
    })
    .await;
    warnings(env, reason).await.join("\n")
}

async fn set_hostname(env: &Env, url: &str) {
    Api::<QuayIntegration>::all(env.client.clone())
        .patch(
            "quay",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"quayHostname": url}})),
        )
        .await
        .unwrap();
}

/// Ready again; `ns` (created while broken) bridged; `steady` untouched.
async fn recovered(env: &Env, ns: &str) {
    expect_condition(env, "Ready", "True", "Converged").await;
    wait_for(&format!("{ns} bridged after the fix"), || {
        converged(env, ns, &[])
    })
    .await;
    assert!(converged(env, "steady", &[]).await);
}

/// Nothing was deleted in Quay, and `steady` keeps its finalizer.
async fn nothing_lost(env: &Env) {
    let deletes: Vec<String> = env
        .quay
        .requests()
        .into_iter()
        .filter(|r| r.method == "DELETE")
        .map(|r| r.path)
        .collect();
    assert!(deletes.is_empty(), "{deletes:?}");
    assert!(has_org(env, "openshift_steady"));
    let steady = Api::<Namespace>::all(env.client.clone())
        .get("steady")
        .await
        .unwrap();
    assert!(
        steady
            .metadata
            .finalizers
            .unwrap_or_default()
            .iter()
            .any(|f| f == FINALIZER)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_bad_configuration_is_reported_loses_nothing_and_recovers() {
    let env = env().await;
    integration(&env, "quay", json!({})).await;
    namespace(&env, "steady").await;
    wait_for("steady", || converged(&env, "steady", &[])).await;
    expect_condition(&env, "Ready", "True", "Converged").await;
    let token = env.quay.admin_token().expose().to_owned();
    let secrets: Api<Secret> = Api::namespaced(env.client.clone(), "openshift-operators");

    // 1. The credentials Secret is deleted.
    secrets
        .delete("quay-integration", &DeleteParams::default())
        .await
        .unwrap();
    let msg = expect_condition(&env, "CredentialsValid", "False", "SecretMissing").await;
    assert!(
        msg.contains("openshift-operators/quay-integration not found"),
        "{msg}"
    );
    let ready = expect_condition(&env, "Ready", "False", "NotReady").await;
    assert!(ready.contains("not found"), "{ready}");
    assert!(
        expect_warning(&env, "SecretMissing")
            .await
            .contains("not found")
    );
    namespace(&env, "during-missing").await;
    nothing_lost(&env).await;
    set_token(&env.client, &token).await;
    recovered(&env, "during-missing").await;

    // 2. The Secret has no `token` key.
    secrets
        .replace(
            "quay-integration",
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "quay-integration", "namespace": "openshift-operators", "resourceVersion": secrets.get("quay-integration").await.unwrap().metadata.resource_version}, "stringData": {"password": "x"}})).unwrap(),
        )
        .await
        .unwrap();
    let msg = expect_condition(&env, "CredentialsValid", "False", "SecretMissing").await;
    assert!(msg.contains("has no key \"token\""), "{msg}");
    namespace(&env, "during-malformed").await;
    nothing_lost(&env).await;
    set_token(&env.client, &token).await;
    recovered(&env, "during-malformed").await;

    // 3. A wrong token.
    set_token(&env.client, "not-the-right-token-0123456789").await;
    let msg = expect_condition(&env, "CredentialsValid", "False", "TokenRejected").await;
    assert!(
        msg.contains("Quay no longer accepts the token") && msg.contains("credentials Secret"),
        "{msg}"
    );
    let rejected = expect_condition(&env, "CredentialsRejected", "True", "TokenRejected").await;
    assert_eq!(rejected, msg);
    assert!(!expect_warning(&env, "TokenRejected").await.is_empty());
    namespace(&env, "during-wrong-token").await;
    nothing_lost(&env).await;
    set_token(&env.client, &token).await;
    recovered(&env, "during-wrong-token").await;

    // 4. An unreachable host.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let unreachable = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    set_hostname(&env, &unreachable).await;
    let msg = expect_condition(&env, "QuayReachable", "False", "Unavailable").await;
    assert!(msg.contains("127.0.0.1"), "{msg}");
    assert!(!expect_warning(&env, "Unavailable").await.is_empty());
    nothing_lost(&env).await;
    set_hostname(&env, &env.quay.url()).await;
    namespace(&env, "after-unreachable").await;
    recovered(&env, "after-unreachable").await;

    // 5. A host that is not Quay (a web server answering HTML).
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let web = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(async move {
        let app = axum::Router::new().fallback(|| async {
            axum::response::Html("<html><body>Welcome to nginx!</body></html>")
        });
        let _ = axum::serve(listener, app).await;
    });
    set_hostname(&env, &web).await;
    let msg = expect_condition(&env, "QuayReachable", "False", "NotQuay").await;
    assert!(msg.contains("not as a Quay API"), "{msg}");
    assert!(
        expect_warning(&env, "NotQuay")
            .await
            .contains("is quayHostname right?")
    );
    nothing_lost(&env).await;
    set_hostname(&env, &env.quay.url()).await;
    namespace(&env, "after-web").await;
    recovered(&env, "after-web").await;
    server.abort();

    // 6. TLS where Quay speaks plain HTTP (a scheme or port mix-up).
    let tls = env.quay.url().replace("http://", "https://");
    set_hostname(&env, &tls).await;
    let msg = expect_condition(&env, "QuayReachable", "False", "Unavailable").await;
    assert!(!msg.is_empty());
    nothing_lost(&env).await;
    set_hostname(&env, &env.quay.url()).await;
    namespace(&env, "after-tls").await;
    recovered(&env, "after-tls").await;

    // Back to normal: one Normal Ready Event per recovery.
    let ready_events = events(&env, "Normal", "Ready")
        .await
        .into_iter()
        .map(|e| e.series.map_or(1, |s| s.count))
        .sum::<i32>();
    assert!(ready_events >= 5, "{ready_events} recoveries reported");
    env.stop().await;
}
