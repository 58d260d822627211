//! Robot-token rotation without an outage: a pull loop that reads the
//! Secret afresh each time sees no failure through three rotations; a
//! rotation interrupted at any step (a failed call, then a crash)
//! converges to exactly one working robot per service account; with
//! rotation off no robot changes.

use crate::harness::{self, Env, fast_options, wait_for};
use base64::Engine;
use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use kube_sandbox::KubeFaultConfig;
use quay_sandbox::FaultConfig;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

const NS: &str = "rot";
const ORG: &str = "openshift_rot";
const SAS: [&str; 3] = ["builder", "default", "deployer"];

/// The robot and token a service account's Secret holds now.
async fn secret_login(env: &Env, sa: &str) -> Option<(String, String)> {
    let secret = Api::<Secret>::namespaced(env.client.clone(), NS)
        .get_opt(&format!("{sa}-quay-openshift"))
        .await
        .ok()??;
    let raw = &secret.data?.get(".dockerconfigjson")?.0.clone();
    let config: Value = serde_json::from_slice(raw).ok()?;
    let auth = config["auths"][env.host()]["auth"].as_str()?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(auth)
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, token) = text.split_once(':')?;
    Some((user.to_owned(), token.to_owned()))
}

/// Whether Quay's registry lets these credentials pull `repo`.
async fn can_pull(env: &Env, user: &str, token: &str, repo: &str) -> bool {
    let resp = reqwest::Client::new()
        .get(format!(
            "{}/v2/auth?service={}&scope=repository:{ORG}/{repo}:pull",
            env.quay.url(),
            env.host()
        ))
        .basic_auth(user, Some(token))
        .send()
        .await
        .unwrap();
    if resp.status() != 200 {
        return false;
    }
    let body: Value = resp.json().await.unwrap();
    body["access"][0]["actions"]
        .as_array()
        .is_some_and(|a| a.iter().any(|x| x == "pull"))
}

/// Each service account's robots in Quay (of its two names).
fn robots(env: &Env) -> BTreeMap<String, Vec<String>> {
    let snap = env.quay.snapshot();
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    if let Some(org) = snap.organizations.get(ORG) {
        for r in org.robots.keys() {
            let short = r.rsplit('+').next().unwrap_or(r).to_owned();
            let sa = short.trim_end_matches("_2").to_owned();
            out.entry(sa).or_default().push(short);
        }
    }
    out
}

/// Exactly one robot per service account, and its Secret holds that
/// robot's working token.
async fn settled(env: &Env) -> bool {
    let robots = robots(env);
    for sa in SAS {
        let Some(list) = robots.get(sa) else {
            return false;
        };
        if list.len() != 1 {
            return false;
        }
        let Some((user, token)) = secret_login(env, sa).await else {
            return false;
        };
        if user != format!("{ORG}+{}", list[0]) || !can_pull(env, &user, &token, "app").await {
            return false;
        }
    }
    true
}

async fn rotating_env(interval: &str, grace: &str) -> Env {
    let env = harness::env_with(fast_options(), Duration::from_millis(50)).await;
    harness::integration(
        &env,
        "quay",
        json!({"robotTokenRotation": {"interval": interval, "gracePeriod": grace, "maxPerMinute": 600}}),
    )
    .await;
    harness::namespace(&env, NS).await;
    harness::image_stream(&env, NS, "app").await;
    wait_for("the namespace to be bridged", || settled(&env)).await;
    env
}

#[tokio::test]
async fn a_pull_loop_sees_no_failure_through_three_rotations() {
    let env = rotating_env("3s", "1s").await;
    let first = secret_login(&env, "default").await.unwrap().0;
    let mut seen = vec![first];
    let mut pulls = 0u32;
    let mut failures = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    // The loop reads the Secret afresh for every pull, as a kubelet does;
    // beside it a long build keeps the credential it read for half the
    // grace period, as a build pod does with its mounted push secret.
    let mut held: Option<(String, String, Instant)> = None;
    while seen.len() < 4 {
        assert!(
            Instant::now() < deadline,
            "3 rotations within 60 s: saw {seen:?}"
        );
        let Some((user, token)) = secret_login(&env, "default").await else {
            failures.push("no Secret".to_owned());
            continue;
        };
        if !can_pull(&env, &user, &token, "app").await {
            failures.push(format!("{user} refused"));
        }
        if held
            .as_ref()
            .is_none_or(|(_, _, at)| at.elapsed() > Duration::from_millis(500))
        {
            held = Some((user.clone(), token.clone(), Instant::now()));
        }
        if let Some((u, t, _)) = &held
            && !can_pull(&env, u, t, "app").await
        {
            failures.push(format!("{u} refused to the long build"));
        }
        pulls += 1;
        if seen.last() != Some(&user) {
            seen.push(user);
        }
    }
    assert_eq!(failures, Vec::<String>::new(), "after {pulls} pulls");
    assert_eq!(
        seen,
        [
            "openshift_rot+default",
            "openshift_rot+default_2",
            "openshift_rot+default",
            "openshift_rot+default_2"
        ]
    );
    assert!(pulls > 50, "the loop pulled throughout ({pulls})");
    // Each rotation is an Event on the namespace; status and metric show
    // the oldest token.
    assert!(
        !crate::trust::events_on(&env, "default", "Namespace", NS, "RobotTokensRotated")
            .await
            .is_empty()
    );
    assert!(
        !crate::trust::events_on(&env, "default", "Namespace", NS, "ReplacedRobotsDeleted")
            .await
            .is_empty()
    );
    assert!(
        env.metrics
            .rotations("quayintegrations.quay.redhat.com/quay")
            >= 9
    );
    wait_for("the status to show the robot tokens", || async {
        let qi = Api::<quay_bridge_operator::crd::QuayIntegration>::all(env.client.clone())
            .get("quay")
            .await
            .unwrap();
        qi.status
            .and_then(|s| s.robot_tokens)
            .is_some_and(|t| t.oldest_token_created.is_some() && t.next_rotation.is_some())
    })
    .await;
    env.stop().await;
}

/// Fails the first request of one step, lets the operator meet it, then
/// crashes the operator; the rotation must still end with one working
/// robot per service account and nothing left behind.
async fn interrupted_at(method: &str, path: &str) {
    let mut env = rotating_env("2s", "1s").await;
    env.quay.clear_requests();
    env.quay.set_faults(
        FaultConfig {
            fail_next: 1,
            error_status: Some(500),
            method: Some(method.into()),
            path_prefix: Some(path.into()),
            ..FaultConfig::default()
        },
        None,
    );
    wait_for(
        &format!("the operator to meet the failure of {method} {path}"),
        || async {
            env.quay
                .requests()
                .iter()
                .any(|r| r.method == method && r.path.starts_with(path) && r.status == 500)
        },
    )
    .await;
    env.crash().await;
    env.quay.clear_faults();
    wait_for_settled(&env, method, path).await;
    env.stop().await;
}

async fn wait_for_settled(env: &Env, method: &str, path: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !settled(env).await {
        assert!(
            Instant::now() < deadline,
            "after a crash at {method} {path}: robots {:?}",
            robots(env)
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[tokio::test]
async fn a_rotation_interrupted_at_any_step_converges_to_one_working_robot_each() {
    for (method, path) in [
        // Making the new robot.
        (
            "PUT",
            format!("/api/v1/organization/{ORG}/robots/builder_2"),
        ),
        // Its default permission.
        ("POST", format!("/api/v1/organization/{ORG}/prototypes")),
        // Its grant on the existing repository.
        (
            "PUT",
            format!("/api/v1/repository/{ORG}/app/permissions/user/{ORG}+builder_2"),
        ),
        // Deleting the replaced robot after the grace period.
        (
            "DELETE",
            format!("/api/v1/organization/{ORG}/robots/builder"),
        ),
    ] {
        interrupted_at(method, &path).await;
    }
}

#[tokio::test]
async fn a_rotation_interrupted_before_the_secret_switches_resumes() {
    let mut env = rotating_env("2s", "1s").await;
    // Secrets hang for the operator: the rotation gets as far as the new
    // robots, made and granted, and stops before any Secret switches.
    env.kube.set_faults(KubeFaultConfig {
        hang_resource: Some("secrets".into()),
        identity: Some(harness::OPERATOR.into()),
        ..KubeFaultConfig::default()
    });
    wait_for("the new robots to be made and granted", || async {
        let snap = env.quay.snapshot();
        snap.organizations.get(ORG).is_some_and(|o| {
            SAS.iter()
                .all(|sa| o.robots.contains_key(&format!("{sa}_2")))
                && o.repositories["app"]
                    .permissions
                    .keys()
                    .any(|p| p.ends_with("builder_2"))
        })
    })
    .await;
    // Nothing switched: the Secrets still hold the first robots.
    assert_eq!(
        secret_login(&env, "builder").await.unwrap().0,
        format!("{ORG}+builder")
    );
    env.crash().await;
    env.kube.set_faults(KubeFaultConfig::default());
    wait_for_settled(&env, "GET", "secrets").await;
    env.stop().await;
}

#[tokio::test]
async fn with_rotation_off_no_robot_changes() {
    let env = harness::env_with(fast_options(), Duration::from_millis(50)).await;
    harness::integration(&env, "quay", json!({})).await;
    harness::namespace(&env, NS).await;
    harness::image_stream(&env, NS, "app").await;
    wait_for("the namespace to be bridged", || settled(&env)).await;
    let before = env.quay.snapshot().organizations[ORG].robots.clone();
    let tokens: Vec<_> = SAS
        .iter()
        .map(|sa| env.quay.robot_token(ORG, sa).unwrap().expose().to_owned())
        .collect();
    // Reconciles later (each makes a repository).
    for i in 0..5 {
        harness::image_stream(&env, NS, &format!("more{i}")).await;
        wait_for("the repository", || async {
            env.quay.snapshot().organizations[ORG]
                .repositories
                .contains_key(&format!("more{i}"))
        })
        .await;
    }
    let after = env.quay.snapshot().organizations[ORG].robots.clone();
    assert_eq!(
        before.keys().collect::<Vec<_>>(),
        after.keys().collect::<Vec<_>>()
    );
    let now: Vec<_> = SAS
        .iter()
        .map(|sa| env.quay.robot_token(ORG, sa).unwrap().expose().to_owned())
        .collect();
    assert_eq!(tokens, now);
    assert_eq!(
        env.metrics
            .rotations("quayintegrations.quay.redhat.com/quay"),
        0
    );
    env.stop().await;
}
