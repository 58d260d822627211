//! Hardening: the operator under Quay faults, apiserver faults and crashes
//! converges to the exact state, with no duplicate, no wrongful deletion, no
//! stranded finalizer and no hot loop.

use crate::harness::{Env, OPERATOR, env_with, fast_options, integration};
use base64::Engine;
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, Secret, ServiceAccount};
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube_sandbox::KubeFaultConfig;
use quay_bridge_operator::config::FINALIZER;
use quay_sandbox::FaultConfig;
use rand::{Rng, SeedableRng};
use serde_json::json;
use std::time::{Duration, Instant};

/// Creates namespace `ns` with `streams` ImageStreams `app-{s}`.
async fn create_namespace(client: kube::Client, ns: String, streams: usize) {
    let ar = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("image.openshift.io", "v1", "ImageStream"),
        "imagestreams",
    );
    Api::<Namespace>::all(client.clone())
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": ns}})).unwrap(),
        )
        .await
        .unwrap();
    let api: Api<DynamicObject> = Api::namespaced_with(client, &ns, &ar);
    for s in 0..streams {
        api.create(
            &PostParams::default(),
            &serde_json::from_value(json!({"apiVersion": "image.openshift.io/v1", "kind": "ImageStream", "metadata": {"name": format!("app-{s}")}})).unwrap(),
        )
        .await
        .unwrap();
    }
}

/// Creates namespaces `{prefix}-{i}` with `streams` ImageStreams each, a few
/// at a time, as a busy cluster would.
async fn populate(env: &Env, prefix: &str, count: usize, streams: usize) -> Vec<String> {
    let names: Vec<String> = (0..count).map(|i| format!("{prefix}-{i:03}")).collect();
    futures::stream::iter(names.clone())
        .for_each_concurrent(16, |ns| create_namespace(env.client.clone(), ns, streams))
        .await;
    names
}

/// What is wrong with the bridge of `namespaces` (each with `streams`
/// ImageStreams), or `None` when it is exact: one organization each with
/// exactly the three robots, three default permissions and the
/// repositories; each Secret holds its robot's current token; each service
/// account links its Secret exactly once; the namespace carries the
/// finalizer once.
async fn wrong(env: &Env, namespaces: &[String], streams: usize) -> Option<String> {
    let snap = env.quay.snapshot();
    let all_ns = Api::<Namespace>::all(env.client.clone())
        .list(&ListParams::default())
        .await
        .ok()?;
    for ns in namespaces {
        let org = format!("openshift_{ns}");
        let Some(o) = snap.organizations.get(&org) else {
            return Some(format!("{org} missing"));
        };
        let robots: Vec<&str> = o.robots.keys().map(String::as_str).collect();
        if robots != ["builder", "default", "deployer"] {
            return Some(format!("{org} robots {robots:?}"));
        }
        if o.prototypes.len() != 3 {
            return Some(format!("{org} prototypes {:?}", o.prototypes));
        }
        let repos: Vec<String> = o.repositories.keys().cloned().collect();
        let expected: Vec<String> = (0..streams).map(|s| format!("app-{s}")).collect();
        if repos != expected {
            return Some(format!("{org} repositories {repos:?}"));
        }
        let Some(namespace) = all_ns.items.iter().find(|n| n.name_any() == *ns) else {
            return Some(format!("namespace {ns} missing"));
        };
        let finalizers = namespace
            .finalizers()
            .iter()
            .filter(|f| *f == FINALIZER)
            .count();
        if finalizers != 1 {
            return Some(format!("{ns} finalizers {:?}", namespace.finalizers()));
        }
        let secrets: Api<Secret> = Api::namespaced(env.client.clone(), ns);
        let accounts: Api<ServiceAccount> = Api::namespaced(env.client.clone(), ns);
        for sa in ["builder", "default", "deployer"] {
            let name = format!("{sa}-quay-openshift");
            let Ok(Some(secret)) = secrets.get_opt(&name).await else {
                return Some(format!("{ns}/{name} missing"));
            };
            let token = env.quay.robot_token(&org, sa)?;
            let config = secret
                .data
                .as_ref()
                .and_then(|d| d.get(".dockerconfigjson"))
                .map(|b| String::from_utf8_lossy(&b.0).into_owned())
                .unwrap_or_default();
            let auths: serde_json::Value = serde_json::from_str(&config).unwrap_or_default();
            let holds_token = auths["auths"]
                .as_object()
                .into_iter()
                .flat_map(|m| m.values())
                .filter_map(|a| a["auth"].as_str())
                .filter_map(|a| base64::engine::general_purpose::STANDARD.decode(a).ok())
                .any(|a| String::from_utf8_lossy(&a) == format!("{org}+{sa}:{}", token.expose()));
            if !holds_token {
                return Some(format!(
                    "{ns}/{name} does not hold the robot's current token"
                ));
            }
            let Ok(Some(account)) = accounts.get_opt(sa).await else {
                return Some(format!("{ns}/{sa} missing"));
            };
            let mountable = account
                .secrets
                .unwrap_or_default()
                .iter()
                .filter(|r| r.name.as_deref() == Some(name.as_str()))
                .count();
            let pull = account
                .image_pull_secrets
                .unwrap_or_default()
                .iter()
                .filter(|r| r.name == name)
                .count();
            if (mountable, pull) != (1, 1) {
                return Some(format!("{ns}/{sa} links {name} {mountable}/{pull} times"));
            }
        }
    }
    None
}

async fn wait_exact(env: &Env, namespaces: &[String], streams: usize, within: Duration) {
    let start = Instant::now();
    let mut last = None;
    while start.elapsed() < within {
        last = wrong(env, namespaces, streams).await;
        if last.is_none() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    panic!("not exact after {within:?}: {last:?}");
}

/// Organizations the operator must never have touched destructively: no
/// DELETE on Quay, no robot token regenerated.
fn destructive_quay_requests(env: &Env) -> Vec<String> {
    env.quay
        .requests()
        .into_iter()
        .filter(|r| r.method == "DELETE" || r.template.contains("regenerate"))
        .map(|r| format!("{} {}", r.method, r.path))
        .collect()
}

/// `error_rate` of `status` answers (after the change took effect when
/// `after_effect`), with 5% 429 Retry-After, 5% dropped connections and 5%
/// latency spikes of 300 ms.
fn quay_chaos(error_rate: f64, status: u16, after_effect: bool) -> FaultConfig {
    FaultConfig {
        error_rate,
        error_status: Some(status),
        error_after_effect: after_effect,
        throttle_rate: 0.05,
        retry_after_secs: 1,
        drop_rate: 0.05,
        spike_rate: 0.05,
        spike_ms: 300,
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quay_chaos_200_namespaces_converge_exactly_without_duplicates_or_hot_loops() {
    let env = env_with(fast_options(), Duration::from_millis(20)).await;
    integration(&env, "quay", json!({})).await;
    // 30% 5xx (a third of them after the change was made, so the operator
    // cannot know whether a create took effect), 5% 429 with Retry-After,
    // 5% dropped connections, 5% latency spikes of 300 ms.
    env.quay
        .set_faults(quay_chaos(0.2, 500, false), Some(0xC4A05));
    let started = Instant::now();
    let names = populate(&env, "chaos", 200, 1).await;
    // Half way, the 5xx change character: answered after the change took
    // effect, and 503 instead of 500.
    tokio::time::sleep(Duration::from_secs(2)).await;
    env.quay
        .set_faults(quay_chaos(0.1, 503, true), Some(0xC4A06));
    tokio::time::sleep(Duration::from_secs(2)).await;
    env.quay
        .set_faults(quay_chaos(0.3, 502, true), Some(0xC4A07));
    // Everything converges while the faults go on.
    wait_exact(&env, &names, 1, Duration::from_secs(90)).await;
    let under_faults = env.quay.requests();
    let converged_in = started.elapsed();
    let faulted = under_faults
        .iter()
        .filter(|r| r.status >= 429 || r.status == 0)
        .count();
    println!(
        "Quay chaos: 200 namespaces exact in {:.1} s, {} Quay requests ({:.1}/namespace, {faulted} faulted)",
        converged_in.as_secs_f64(),
        under_faults.len(),
        under_faults.len() as f64 / 200.0
    );
    // A clean sync costs about 9 requests a namespace; faults cost retries,
    // but not a hot loop.
    assert!(
        under_faults.len() < 200 * 40,
        "{} Quay requests for 200 namespaces",
        under_faults.len()
    );
    assert!(
        destructive_quay_requests(&env).is_empty(),
        "{:?}",
        destructive_quay_requests(&env)
    );
    let orgs = env
        .quay
        .snapshot()
        .organizations
        .keys()
        .filter(|o| o.starts_with("openshift_"))
        .count();
    assert_eq!(orgs, 200, "no organization beyond the selected namespaces");

    // Faults over: the converged cluster is quiet (periodic checks only).
    env.quay.clear_faults();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let before = env.quay.requests().len();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle = env.quay.requests().len() - before;
    assert!(
        idle < 40,
        "{idle} Quay requests in 2 s of a converged cluster"
    );
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apiserver_chaos_converges_exactly() {
    let env = env_with(fast_options(), Duration::from_millis(20)).await;
    integration(&env, "quay", json!({})).await;
    let operator_writes = |env: &Env| {
        env.kube
            .requests()
            .iter()
            .filter(|r| {
                r.identity == OPERATOR && !matches!(r.verb.as_str(), "get" | "list" | "watch")
            })
            .count()
    };
    let chaos = {
        let kube = env.kube.state().clone();
        tokio::spawn(async move {
            let mut rng = rand::rngs::StdRng::seed_from_u64(0xA915);
            for round in 0u32.. {
                let status = [500, 409, 429][round as usize % 3];
                kube.set_faults(KubeFaultConfig {
                    write_error_rate: 0.3,
                    write_error_status: Some(status),
                    identity: Some(OPERATOR.into()),
                    ..Default::default()
                });
                tokio::time::sleep(Duration::from_millis(rng.random_range(100..400))).await;
                if rng.random_bool(0.5) {
                    kube.drop_watches();
                } else {
                    // Compaction: the next watch resumes from a resourceVersion
                    // that is gone (410) and the operator relists.
                    kube.compact();
                    kube.drop_watches();
                }
            }
        })
    };
    let names = populate(&env, "api", 100, 2).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    chaos.abort();
    let _ = chaos.await;
    // Faults stop here, so "exact" is not a lucky moment between them.
    env.kube.set_faults(KubeFaultConfig::default());
    let failed_writes = env.kube.state().injected_faults();
    wait_exact(&env, &names, 2, Duration::from_secs(60)).await;
    println!(
        "apiserver chaos: 100 namespaces exact; {failed_writes} operator writes failed on purpose"
    );
    assert!(failed_writes > 0, "the chaos reached the operator");
    // Converged and quiet: no write loop on the apiserver either.
    let before = operator_writes(&env);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let writes = operator_writes(&env) - before;
    let log: Vec<String> = env.kube.requests()[..]
        .iter()
        .filter(|r| r.identity == OPERATOR && !matches!(r.verb.as_str(), "get" | "list" | "watch"))
        .skip(before)
        .map(|r| {
            format!(
                "{} {} {}/{} {}",
                r.verb, r.resource, r.namespace, r.name, r.subresource
            )
        })
        .collect();
    assert!(
        writes < 10,
        "{writes} operator writes in 2 s of a converged cluster: {log:#?}"
    );
    assert!(destructive_quay_requests(&env).is_empty());
    let secrets = Api::<Secret>::all(env.client.clone())
        .list_metadata(
            &ListParams::default().labels("app.kubernetes.io/managed-by=quay-bridge-operator"),
        )
        .await
        .unwrap();
    assert_eq!(
        secrets.items.len(),
        300,
        "exactly three Secrets a namespace"
    );
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crashes_at_random_points_leave_an_exact_state_and_no_stranded_finalizer() {
    let mut env = env_with(fast_options(), Duration::from_millis(20)).await;
    integration(&env, "quay", json!({})).await;
    let mut rng = rand::rngs::StdRng::seed_from_u64(0xC8A5);
    // Crashes while 60 namespaces are created and bridged.
    let creating = {
        let client = env.client.clone();
        tokio::spawn(async move {
            for i in 0..60 {
                create_namespace(client.clone(), format!("crash-{i:03}"), 1).await;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };
    for _ in 0..12 {
        tokio::time::sleep(Duration::from_millis(rng.random_range(20..300))).await;
        env.crash().await;
    }
    creating.await.unwrap();
    let names: Vec<String> = (0..60).map(|i| format!("crash-{i:03}")).collect();
    wait_exact(&env, &names, 1, Duration::from_secs(60)).await;

    // Crashes while half of them are deleted (policy Delete).
    let (gone, kept) = names.split_at(30);
    let namespaces = Api::<Namespace>::all(env.client.clone());
    for ns in gone {
        namespaces
            .delete(ns, &DeleteParams::default())
            .await
            .unwrap();
    }
    for _ in 0..8 {
        tokio::time::sleep(Duration::from_millis(rng.random_range(10..150))).await;
        env.crash().await;
    }
    let start = Instant::now();
    loop {
        let left: Vec<String> = namespaces
            .list_metadata(&ListParams::default())
            .await
            .unwrap()
            .items
            .iter()
            .map(|n| n.name_any())
            .filter(|n| gone.contains(n))
            .collect();
        if left.is_empty() {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "stranded namespaces: {left:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let snap = env.quay.snapshot();
    for ns in gone {
        assert!(
            !snap.organizations.contains_key(&format!("openshift_{ns}")),
            "{ns}'s organization deleted with it"
        );
    }
    wait_exact(&env, kept, 1, Duration::from_secs(30)).await;
    let orgs = snap
        .organizations
        .keys()
        .filter(|o| o.starts_with("openshift_"))
        .count();
    assert_eq!(orgs, 30);
    // Robots are never recreated: every token still matches (checked by
    // `wrong`), and nothing but the deleted organizations was deleted.
    let deletes: Vec<String> = env
        .quay
        .requests()
        .into_iter()
        .filter(|r| r.method == "DELETE" && r.status < 300)
        .map(|r| r.path)
        .filter(|p| {
            !gone
                .iter()
                .any(|ns| p == &format!("/api/v1/organization/openshift_{ns}"))
        })
        .collect();
    assert!(deletes.is_empty(), "{deletes:?}");
    env.stop().await;
}
