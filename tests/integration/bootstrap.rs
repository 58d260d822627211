//! Token bootstrap: a credentials Secret holding only a Quay user's
//! username and password becomes a minted, scoped, renewable token and
//! bridged namespaces; a token Quay stops accepting stops every write, is
//! reported as `CredentialsRejected`, and is minted again when the
//! password is kept.

use crate::common;
use crate::harness::{self, Env, fast_options, wait_for};
use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use quay_bridge_operator::crd::QuayIntegration;
use quay_bridge_operator::plan::credentials as plan;
use serde_json::{Value, json};
use std::time::Duration;

const USER: &str = "bootuser";
const PASSWORD: &str = "correct-horse-battery";

fn secrets(env: &Env) -> Api<Secret> {
    Api::namespaced(env.client.clone(), "openshift-operators")
}

/// Replaces the credentials Secret with one holding `data`.
async fn credentials(env: &Env, data: Value) {
    let api = secrets(env);
    let _ = api
        .delete("quay-integration", &DeleteParams::default())
        .await;
    wait_for("the old Secret to be gone", || async {
        api.get_opt("quay-integration").await.unwrap().is_none()
    })
    .await;
    api.create(
        &PostParams::default(),
        &serde_json::from_value(
            json!({"metadata": {"name": "quay-integration"}, "stringData": data}),
        )
        .unwrap(),
    )
    .await
    .unwrap();
}

async fn env_with_user() -> Env {
    let env = harness::env_with(fast_options(), Duration::from_millis(50)).await;
    env.quay.add_user(USER, PASSWORD, false);
    env
}

fn data(secret: &Secret, key: &str) -> Option<String> {
    secret
        .data
        .as_ref()?
        .get(key)
        .map(|b| String::from_utf8_lossy(&b.0).into_owned())
}

/// The token in the Secret once the operator minted it.
async fn minted_token(env: &Env, other_than: Option<&str>) -> String {
    let api = secrets(env);
    let mut token = String::new();
    for _ in 0..400 {
        let s = api.get("quay-integration").await.unwrap();
        if let Some(t) = data(&s, "token")
            && Some(t.as_str()) != other_than
            && s.annotations().contains_key(plan::TOKEN_EXPIRES_ANNOTATION)
        {
            token = t;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(!token.is_empty(), "the operator minted a token within 10 s");
    token
}

async fn condition(env: &Env, name: &str, kind: &str) -> Option<(String, String, String)> {
    let qi = Api::<QuayIntegration>::all(env.client.clone())
        .get(name)
        .await
        .ok()?;
    qi.status?
        .conditions
        .into_iter()
        .find(|c| c.type_ == kind)
        .map(|c| (c.status, c.reason, c.message))
}

async fn get(env: &Env, token: &str, path: &str) -> (u16, Value) {
    let resp = reqwest::Client::new()
        .get(format!("{}{path}", env.quay.url()))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn a_username_and_password_become_a_scoped_token_and_bridged_namespaces() {
    let env = env_with_user().await;
    credentials(&env, json!({"username": USER, "password": PASSWORD})).await;
    harness::integration(&env, "boot", json!({})).await;
    let token = minted_token(&env, None).await;

    // The password is gone from the Secret; the username stays.
    let secret = secrets(&env).get("quay-integration").await.unwrap();
    assert_eq!(data(&secret, "password"), None);
    assert_eq!(data(&secret, "username").as_deref(), Some(USER));
    let (org, client_id) = secret.annotations()[plan::TOKEN_APPLICATION_ANNOTATION]
        .split_once('/')
        .map(|(o, c)| (o.to_owned(), c.to_owned()))
        .unwrap();
    assert_eq!(org, "openshift-bridge");

    // The token is the user's, with exactly the scopes the README lists
    // and the configured 30-day lifetime.
    let (status, me) = get(&env, &token, "/api/v1/user/").await;
    assert_eq!((status, me["username"].as_str()), (200, Some(USER)));
    let (status, list) = get(
        &env,
        &token,
        &format!("/api/v1/organization/{org}/applications/{client_id}/tokens"),
    )
    .await;
    assert_eq!(status, 200, "{list}");
    let tokens = list["tokens"].as_array().unwrap();
    assert_eq!(tokens.len(), 1, "{list}");
    assert_eq!(tokens[0]["name"], plan::TOKEN_NAME);
    assert_eq!(
        tokens[0]["scope"],
        "org:admin repo:admin repo:create repo:read repo:write user:admin user:read"
    );
    let expires: jiff::Timestamp = secret.annotations()[plan::TOKEN_EXPIRES_ANNOTATION]
        .parse()
        .unwrap();
    let days = expires.duration_since(jiff::Timestamp::now()).as_hours() / 24;
    assert!((29..=30).contains(&days), "expires in {days} days");

    // With it the namespace is bridged, its organization the user's.
    harness::namespace(&env, "boot-a").await;
    harness::image_stream(&env, "boot-a", "app").await;
    wait_for("boot-a to converge", || {
        harness::converged(&env, "boot-a", &["app"])
    })
    .await;
    wait_for("the integration to be Ready", || async {
        condition(&env, "boot", "Ready")
            .await
            .is_some_and(|c| c.0 == "True")
    })
    .await;
    assert_eq!(
        condition(&env, "boot", "CredentialsRejected")
            .await
            .unwrap()
            .0,
        "False"
    );
    env.stop().await;
}

#[tokio::test]
async fn a_revoked_token_without_a_password_stops_every_write_and_is_reported() {
    let env = env_with_user().await;
    credentials(&env, json!({"username": USER, "password": PASSWORD})).await;
    harness::integration(&env, "boot", json!({})).await;
    let token = minted_token(&env, None).await;
    harness::namespace(&env, "boot-a").await;
    wait_for("boot-a to converge", || {
        harness::converged(&env, "boot-a", &[])
    })
    .await;

    env.quay.revoke_token(&token.clone().into());
    harness::namespace(&env, "boot-b").await;
    wait_for("CredentialsRejected", || async {
        condition(&env, "boot", "CredentialsRejected")
            .await
            .is_some_and(|c| c.0 == "True" && c.2.contains("credentials Secret"))
    })
    .await;
    // From here no request reaches Quay however much is reconciled: no
    // retry storm.
    env.quay.clear_requests();
    let before = env.metrics.reconciles("namespace");
    harness::namespace(&env, "boot-c").await;
    harness::image_stream(&env, "boot-a", "more").await;
    wait_for("more namespace reconciles", || async {
        env.metrics.reconciles("namespace") >= before + 4
    })
    .await;
    let requests = env.quay.requests();
    assert!(
        requests.is_empty(),
        "no Quay request with a refused token: {:?}",
        requests
            .iter()
            .map(|r| format!("{} {}", r.method, r.path))
            .collect::<Vec<_>>()
    );
    assert!(!harness::has_org(&env, "openshift_boot-c"));

    // A new token in the Secret: everything resumes.
    let fresh = env.quay.issue_token(USER, plan::SCOPES, None);
    secrets(&env)
        .patch(
            "quay-integration",
            &PatchParams::default(),
            &Patch::Merge(json!({"stringData": {"token": fresh.expose()}})),
        )
        .await
        .unwrap();
    wait_for("boot-c to converge", || {
        harness::converged(&env, "boot-c", &[])
    })
    .await;
    wait_for("CredentialsRejected to clear", || async {
        condition(&env, "boot", "CredentialsRejected")
            .await
            .is_some_and(|c| c.0 == "False")
    })
    .await;
    env.stop().await;
}

#[tokio::test]
async fn with_the_password_kept_a_revoked_token_is_minted_again() {
    let env = env_with_user().await;
    credentials(&env, json!({"username": USER, "password": PASSWORD})).await;
    harness::integration(
        &env,
        "boot",
        json!({"credentialsSecret": {"name": "quay-integration", "namespace": "openshift-operators", "keepPassword": true}}),
    )
    .await;
    let first = minted_token(&env, None).await;
    let secret = secrets(&env).get("quay-integration").await.unwrap();
    assert_eq!(data(&secret, "password").as_deref(), Some(PASSWORD));

    env.quay.revoke_token(&first.clone().into());
    harness::namespace(&env, "boot-a").await;
    let second = minted_token(&env, Some(&first)).await;
    assert_eq!(get(&env, &second, "/api/v1/user/").await.0, 200);
    wait_for("boot-a to converge with the new token", || {
        harness::converged(&env, "boot-a", &[])
    })
    .await;
    env.stop().await;
}

#[tokio::test]
async fn a_minted_token_is_renewed_with_itself_and_the_old_one_deleted() {
    let env = env_with_user().await;
    credentials(&env, json!({"username": USER, "password": PASSWORD})).await;
    harness::integration(&env, "boot", json!({})).await;
    let first = minted_token(&env, None).await;
    // Ten minutes left of 30 days: inside the last third.
    let soon = jiff::Timestamp::now()
        .checked_add(jiff::SignedDuration::from_mins(10))
        .unwrap();
    secrets(&env)
        .patch(
            "quay-integration",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"metadata": {"annotations": {plan::TOKEN_EXPIRES_ANNOTATION: soon.to_string()}}}),
            ),
        )
        .await
        .unwrap();
    let second = minted_token(&env, Some(&first)).await;
    // No password was needed (it was removed at the mint).
    assert_eq!(get(&env, &second, "/api/v1/user/").await.0, 200);
    wait_for("the old token to be deleted", || async {
        get(&env, &first, "/api/v1/user/").await.0 == 401
    })
    .await;
    let secret = secrets(&env).get("quay-integration").await.unwrap();
    let expires: jiff::Timestamp = secret.annotations()[plan::TOKEN_EXPIRES_ANNOTATION]
        .parse()
        .unwrap();
    assert!(expires.duration_since(jiff::Timestamp::now()).as_hours() > 24 * 29);
    env.stop().await;
}

#[tokio::test]
async fn a_wrong_password_is_reported_without_repeating_the_sign_in() {
    let env = env_with_user().await;
    credentials(&env, json!({"username": USER, "password": "wrong"})).await;
    harness::integration(&env, "boot", json!({})).await;
    wait_for("PasswordRejected", || async {
        condition(&env, "boot", "CredentialsValid")
            .await
            .is_some_and(|c| {
                c.1 == "PasswordRejected" && c.2.contains("Invalid Username or Password")
            })
    })
    .await;
    let before = env.metrics.reconciles("quayintegration");
    wait_for("more integration reconciles", || async {
        env.metrics.reconciles("quayintegration") >= before + 5
    })
    .await;
    let sign_ins = env
        .quay
        .requests()
        .iter()
        .filter(|r| r.path == "/api/v1/signin")
        .count();
    assert_eq!(sign_ins, 1, "one sign-in per version of the Secret");

    // The right password (Quay's backoff after one failure is 0.5 s).
    secrets(&env)
        .patch(
            "quay-integration",
            &PatchParams::default(),
            &Patch::Merge(json!({"stringData": {"password": PASSWORD}})),
        )
        .await
        .unwrap();
    minted_token(&env, None).await;
    env.stop().await;
}

#[tokio::test]
async fn on_an_empty_quay_the_first_user_is_created_when_the_integration_opts_in() {
    common::init();
    let quay = quay_sandbox::EmbeddedQuay::start(quay_sandbox::EmbeddedQuayConfig {
        user_initialize: true,
        without_users: true,
        ..Default::default()
    })
    .await
    .unwrap();
    let env = harness::env_on_quay(quay, fast_options()).await;
    credentials(&env, json!({"username": USER, "password": PASSWORD})).await;
    // Not opted in: no such user is a refused sign-in.
    harness::integration(&env, "boot", json!({})).await;
    wait_for("PasswordRejected", || async {
        condition(&env, "boot", "CredentialsValid")
            .await
            .is_some_and(|c| c.1 == "PasswordRejected")
    })
    .await;
    Api::<QuayIntegration>::all(env.client.clone())
        .patch(
            "boot",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"credentialsSecret": {"name": "quay-integration", "namespace": "openshift-operators", "initializeUser": true}}})),
        )
        .await
        .unwrap();
    let token = minted_token(&env, None).await;
    let (status, me) = get(&env, &token, "/api/v1/user/").await;
    assert_eq!((status, me["username"].as_str()), (200, Some(USER)));
    // The minted token, not Quay's 2.5-hour initialization token, is kept.
    let secret = secrets(&env).get("quay-integration").await.unwrap();
    let expires: jiff::Timestamp = secret.annotations()[plan::TOKEN_EXPIRES_ANNOTATION]
        .parse()
        .unwrap();
    assert!(expires.duration_since(jiff::Timestamp::now()).as_hours() > 24 * 29);
    assert_eq!(data(&secret, "password"), None);
    harness::namespace(&env, "boot-a").await;
    wait_for("boot-a to converge", || {
        harness::converged(&env, "boot-a", &[])
    })
    .await;
    env.stop().await;
}

#[tokio::test]
async fn a_quay_with_users_refuses_to_initialize_and_says_so() {
    common::init();
    let quay = quay_sandbox::EmbeddedQuay::start(quay_sandbox::EmbeddedQuayConfig {
        user_initialize: true,
        ..Default::default()
    })
    .await
    .unwrap();
    let env = harness::env_on_quay(quay, fast_options()).await;
    credentials(
        &env,
        json!({"username": "nobody-yet", "password": PASSWORD}),
    )
    .await;
    harness::integration(
        &env,
        "boot",
        json!({"credentialsSecret": {"name": "quay-integration", "namespace": "openshift-operators", "initializeUser": true}}),
    )
    .await;
    wait_for("InitializeRefused", || async {
        condition(&env, "boot", "CredentialsValid")
            .await
            .is_some_and(|c| c.1 == "InitializeRefused" && c.2.contains("non-empty database"))
    })
    .await;
    env.stop().await;
}
