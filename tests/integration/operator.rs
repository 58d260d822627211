//! The namespace bridge end to end: the real operator against the sandbox
//! cluster and the embedded Quay.

use crate::common;
use crate::harness::*;
use base64::Engine;
use k8s_openapi::api::core::v1::{Namespace, Secret, ServiceAccount};
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube_sandbox::{KubeFaultConfig, LaggingWatch};
use quay_bridge_operator::controller::{context::Metrics, context::Options};
use quay_bridge_operator::crd::{LegacyQuayIntegration, QuayIntegration};
use quay_bridge_operator::quay::types::NewRobot;
use quay_sandbox::FaultConfig;
use quay_sandbox::Role;
use serde_json::{Value, json};
use std::time::Duration;

fn quay_requests(env: &Env) -> Vec<(String, String)> {
    env.quay
        .requests()
        .into_iter()
        .filter(|r| {
            r.template.starts_with("/api/v1/organization/")
                || r.template.starts_with("/api/v1/repository")
        })
        .map(|r| (r.method, r.template))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_namespace_is_bridged_with_few_quay_requests() {
    let env = env().await;
    integration(&env, "quay", json!({})).await;
    env.quay.clear_requests();
    namespace(&env, "demo").await;
    image_stream(&env, "demo", "app").await;
    image_stream(&env, "demo", "db").await;
    wait_for("demo to be bridged", || {
        converged(&env, "demo", &["app", "db"])
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let requests = quay_requests(&env);
    println!(
        "Quay requests for a new namespace with 2 ImageStreams: {} ({} writes)",
        requests.len(),
        requests.iter().filter(|(m, _)| m != "GET").count()
    );
    assert!(
        requests.len() <= 11,
        "{} Quay requests for a new namespace with 2 ImageStreams: {requests:?}",
        requests.len()
    );

    // The namespace's Events (a cluster-scoped object's go to `default`):
    // a summary per reconcile that created something, not one per object.
    let events: Vec<_> =
        Api::<k8s_openapi::api::events::v1::Event>::namespaced(env.client.clone(), "default")
            .list(&Default::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("demo"))
            .collect();
    // At most one for the organization and robots, and one per service
    // account that OpenShift creates later (each gets its Secret then).
    assert!(!events.is_empty() && events.len() <= 4, "{events:#?}");
    assert!(
        events
            .iter()
            .all(|e| e.reason.as_deref() == Some("Bridged") && e.type_.as_deref() == Some("Normal")),
        "{events:#?}"
    );
    let notes: String = events.iter().filter_map(|e| e.note.clone()).collect();
    for expected in [
        "created Quay organization openshift_demo",
        "builder-quay-openshift",
        "default-quay-openshift",
        "deployer-quay-openshift",
    ] {
        assert!(notes.contains(expected), "{expected} in {notes}");
    }

    // What a user checks: names, markers, secret payload, links, annotation, finalizer.
    let snap = env.quay.snapshot();
    let org = &snap.organizations["openshift_demo"];
    assert!(
        org.robots
            .values()
            .all(|d| d.starts_with("managed by quay-bridge-operator;"))
    );
    let prototypes: std::collections::BTreeMap<&str, Role> = org
        .prototypes
        .iter()
        .map(|(d, r)| (d.as_str(), *r))
        .collect();
    assert_eq!(prototypes["openshift_demo+builder"], Role::Write);
    assert_eq!(prototypes["openshift_demo+default"], Role::Read);
    assert_eq!(prototypes["openshift_demo+deployer"], Role::Read);
    for repo in ["app", "db"] {
        let perms = &org.repositories[repo].permissions;
        assert_eq!(
            perms.get("openshift_demo+builder"),
            Some(&Role::Write),
            "{repo}: {perms:?}"
        );
        assert_eq!(perms.get("openshift_demo+default"), Some(&Role::Read));
        assert!(!org.repositories[repo].public);
    }
    let secret = Api::<Secret>::namespaced(env.client.clone(), "demo")
        .get("builder-quay-openshift")
        .await
        .unwrap();
    assert_eq!(
        secret.type_.as_deref(),
        Some("kubernetes.io/dockerconfigjson")
    );
    assert_eq!(
        secret
            .labels()
            .get("app.kubernetes.io/managed-by")
            .map(String::as_str),
        Some("quay-bridge-operator")
    );
    let cfg: Value = serde_json::from_slice(&secret.data.unwrap()[".dockerconfigjson"].0).unwrap();
    let auth = cfg["auths"][env.host()]["auth"].as_str().unwrap();
    let decoded = String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(auth)
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        decoded,
        format!(
            "openshift_demo+builder:{}",
            env.quay
                .robot_token("openshift_demo", "builder")
                .unwrap()
                .expose()
        )
    );
    let builder = Api::<ServiceAccount>::namespaced(env.client.clone(), "demo")
        .get("builder")
        .await
        .unwrap();
    let mountable: Vec<String> = builder
        .secrets
        .unwrap()
        .into_iter()
        .filter_map(|r| r.name)
        .collect();
    assert!(
        mountable
            .iter()
            .any(|n| n.starts_with("builder-dockercfg-")),
        "OpenShift's own link is kept: {mountable:?}"
    );
    let ns = Api::<Namespace>::all(env.client.clone())
        .get("demo")
        .await
        .unwrap();
    assert_eq!(
        ns.annotations()
            .get("quay.redhat.com/organization")
            .map(String::as_str),
        Some("openshift_demo")
    );
    assert!(
        ns.finalizers()
            .contains(&"quay.redhat.com/quayintegrations".to_owned())
    );

    // The status counts it.
    let api = Api::<QuayIntegration>::all(env.client.clone());
    wait_for("the status to count the namespace", || async {
        let qi = api.get("quay").await.unwrap();
        qi.status.as_ref().is_some_and(|s| {
            s.managed_namespaces == 1
                && s.conditions
                    .iter()
                    .any(|c| c.type_ == "Ready" && c.status == "True")
        })
    })
    .await;
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_queue_depth_rises_with_a_burst_and_drains_to_zero() {
    let env = env_with(
        Options {
            concurrency: 2,
            ..fast_options()
        },
        Duration::from_millis(20),
    )
    .await;
    integration(&env, "quay", json!({})).await;
    env.quay.set_faults(
        FaultConfig {
            latency_ms: 30,
            ..Default::default()
        },
        None,
    );
    let names: Vec<String> = (0..20).map(|i| format!("burst-{i:02}")).collect();
    for n in &names {
        namespace(&env, n).await;
    }
    let mut deepest = 0;
    for _ in 0..200 {
        deepest = deepest.max(env.metrics.queue_depth("namespace"));
        if deepest >= 10 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        deepest >= 10,
        "20 new namespaces, 2 reconciles at a time: depth reached only {deepest}"
    );
    for n in &names {
        wait_for(n, || converged(&env, n, &[])).await;
    }
    wait_for("the queue to drain", || async {
        env.metrics.queue_depth("namespace") == 0
    })
    .await;
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resync_of_a_converged_namespace_costs_three_reads_and_no_writes() {
    let options = Options {
        resync: Duration::from_millis(1500),
        ..fast_options()
    };
    let env = env_with(options, Duration::from_millis(50)).await;
    integration(&env, "quay", json!({})).await;
    namespace(&env, "steady").await;
    image_stream(&env, "steady", "app").await;
    wait_for("steady to be bridged", || {
        converged(&env, "steady", &["app"])
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    env.quay.clear_requests();
    env.kube.clear_requests();
    // The namespace's next resync (its slot comes once per 1.5 s round):
    // its first read, then time for the reconcile to finish, less than a
    // round, so exactly one resync is counted.
    wait_for("the resync", || async { !quay_requests(&env).is_empty() }).await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    let requests = quay_requests(&env);
    println!(
        "Quay requests per resync of a converged namespace: {}",
        requests.len()
    );
    assert!(!requests.is_empty(), "the resync happened");
    assert!(
        requests.iter().all(|(m, _)| m == "GET"),
        "no Quay writes: {requests:?}"
    );
    assert!(
        requests.len() <= 3,
        "{} Quay requests per resync: {requests:?}",
        requests.len()
    );
    let writes: Vec<_> = env
        .kube
        .requests()
        .into_iter()
        .filter(|r| {
            r.identity == OPERATOR
                && !matches!(r.verb.as_str(), "get" | "list" | "watch")
                && r.resource != "events"
        })
        .collect();
    assert!(
        writes.is_empty(),
        "no Kubernetes writes at steady state: {writes:?}"
    );
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespaces_before_the_integration_and_late_service_accounts() {
    let env = env_with(fast_options(), Duration::from_millis(800)).await;
    namespace(&env, "early").await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    integration(&env, "quay", json!({})).await;
    // The organization comes at once; Secrets are linked when the accounts appear.
    wait_for("the organization", || async {
        has_org(&env, "openshift_early")
    })
    .await;
    wait_for("early to be bridged", || converged(&env, "early", &[])).await;
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_legacy_api_group_works_and_system_namespaces_are_skipped() {
    let env = env().await;
    let legacy: LegacyQuayIntegration = serde_json::from_value(json!({"apiVersion": "redhatcop.redhat.io/v1alpha1", "kind": "QuayIntegration", "metadata": {"name": "example-quayintegration"},
        "spec": {"clusterID": "openshift", "credentialsSecretName": "openshift-operators/quay-integration", "quayHostname": env.quay.url(), "whitelistNamespaces": ["legacy-team"], "insecureRegistry": true}})).unwrap();
    Api::<LegacyQuayIntegration>::all(env.client.clone())
        .create(&PostParams::default(), &legacy)
        .await
        .unwrap();
    namespace(&env, "legacy-team").await;
    namespace(&env, "not-listed").await;
    wait_for("legacy-team to be bridged", || {
        converged(&env, "legacy-team", &[])
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let orgs: Vec<String> = env.quay.snapshot().organizations.keys().cloned().collect();
    assert_eq!(
        orgs,
        ["openshift_legacy-team"],
        "only the allow-listed namespace"
    );
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allow_and_deny_edits_release_and_take_namespaces() {
    let env = env().await;
    integration(&env, "quay", json!({"allowlistNamespaces": ["a1", "a2"]})).await;
    namespace(&env, "a1").await;
    namespace(&env, "a2").await;
    wait_for("a1 and a2", || async {
        converged(&env, "a1", &[]).await && converged(&env, "a2", &[]).await
    })
    .await;
    let api = Api::<QuayIntegration>::all(env.client.clone());
    api.patch(
        "quay",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"denylistNamespaces": ["a2"]}})),
    )
    .await
    .unwrap();
    wait_released(&env, "a2").await;
    assert!(has_org(&env, "openshift_a2"), "released, not deleted");
    // Deleting a released namespace does not touch its organization.
    delete_namespace(&env, "a2").await;
    assert!(has_org(&env, "openshift_a2"));
    env.stop().await;
}

/// One watch per kind: when the QuayIntegration watch lags (here the
/// first one the operator opens, by 1.5 s an event), an allow/deny edit
/// still takes effect as soon as it arrives, not at the next resync (an
/// hour away here).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edit_takes_effect_without_a_resync_when_the_watch_lags() {
    let env = env_with_kube_faults(
        Options {
            resync: Duration::from_secs(3600),
            ..fast_options()
        },
        KubeFaultConfig {
            lagging_watch: Some(LaggingWatch {
                resource: "quayintegrations.quay.redhat.com".into(),
                nth: 1,
                delay_ms: 1500,
            }),
            ..Default::default()
        },
    )
    .await;
    integration(&env, "quay", json!({"allowlistNamespaces": ["l1", "l2"]})).await;
    namespace(&env, "l1").await;
    namespace(&env, "l2").await;
    wait_for("l1 and l2", || async {
        converged(&env, "l1", &[]).await && converged(&env, "l2", &[]).await
    })
    .await;
    Api::<QuayIntegration>::all(env.client.clone())
        .patch(
            "quay",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"denylistNamespaces": ["l2"]}})),
        )
        .await
        .unwrap();
    wait_released(&env, "l2").await;
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_integrations_selecting_one_namespace_leave_it_alone_and_report() {
    let env = env().await;
    integration(&env, "first", json!({"allowlistNamespaces": ["shared"]})).await;
    integration(
        &env,
        "second",
        json!({"clusterID": "other", "allowlistNamespaces": ["shared"]}),
    )
    .await;
    namespace(&env, "shared").await;
    let api = Api::<QuayIntegration>::all(env.client.clone());
    for name in ["first", "second"] {
        wait_for("the conflict to be reported", || async {
            let qi = api.get(name).await.unwrap();
            qi.status.as_ref().is_some_and(|s| {
                s.conditions.iter().any(|c| {
                    c.type_ == "Conflict" && c.status == "True" && c.message.contains("shared")
                })
            })
        })
        .await;
    }
    assert!(
        env.quay.snapshot().organizations.is_empty(),
        "nothing created for a contested namespace"
    );
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_token_is_used_at_once() {
    let env = env().await;
    integration(&env, "quay", json!({})).await;
    namespace(&env, "rot").await;
    wait_for("rot", || converged(&env, "rot", &[])).await;
    let old = env.quay.admin_token();
    let new = env.quay.issue_token("admin", ADMIN_SCOPES, None);
    set_token(&env.client, new.expose()).await;
    env.quay.revoke_token(&old);
    // New work goes through with the new token.
    namespace(&env, "after-rotation").await;
    wait_for("a namespace bridged with the new token", || {
        converged(&env, "after-rotation", &[])
    })
    .await;
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubernetes_drift_is_repaired_at_once() {
    let env = env().await;
    integration(&env, "quay", json!({})).await;
    namespace(&env, "drift").await;
    wait_for("drift", || converged(&env, "drift", &[])).await;
    let secrets: Api<Secret> = Api::namespaced(env.client.clone(), "drift");
    let original = secrets
        .get("default-quay-openshift")
        .await
        .unwrap()
        .data
        .unwrap();
    // Deleted Secret.
    secrets
        .delete("default-quay-openshift", &DeleteParams::default())
        .await
        .unwrap();
    wait_for("the Secret to be restored", || async {
        secrets
            .get_opt("default-quay-openshift")
            .await
            .unwrap()
            .is_some()
    })
    .await;
    // Edited Secret.
    secrets
        .patch(
            "builder-quay-openshift",
            &PatchParams::default(),
            &Patch::Merge(json!({"stringData": {".dockerconfigjson": "{\"auths\":{}}"}})),
        )
        .await
        .unwrap();
    wait_for("the Secret content to be restored", || async {
        let s = secrets.get("builder-quay-openshift").await.unwrap();
        let cfg: Value = serde_json::from_slice(&s.data.unwrap()[".dockerconfigjson"].0).unwrap();
        cfg["auths"].as_object().is_some_and(|a| !a.is_empty())
    })
    .await;
    // Removed link.
    let sas: Api<ServiceAccount> = Api::namespaced(env.client.clone(), "drift");
    let deployer = sas.get("deployer").await.unwrap();
    let kept: Vec<Value> = deployer
        .image_pull_secrets
        .unwrap()
        .iter()
        .filter(|r| r.name != "deployer-quay-openshift")
        .map(|r| json!({"name": r.name}))
        .collect();
    sas.patch(
        "deployer",
        &PatchParams::default(),
        &Patch::Merge(json!({"imagePullSecrets": kept})),
    )
    .await
    .unwrap();
    wait_for("the link to be restored", || converged(&env, "drift", &[])).await;
    assert_eq!(
        secrets
            .get("default-quay-openshift")
            .await
            .unwrap()
            .data
            .unwrap(),
        original
    );
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quay_drift_is_repaired_at_the_next_resync() {
    let env = env_with(
        Options {
            resync: Duration::from_millis(800),
            ..fast_options()
        },
        Duration::from_millis(50),
    )
    .await;
    integration(&env, "quay", json!({})).await;
    namespace(&env, "qdrift").await;
    image_stream(&env, "qdrift", "app").await;
    wait_for("qdrift", || converged(&env, "qdrift", &["app"])).await;
    let quay = common::client(&env.quay);
    quay.delete_robot("openshift_qdrift", "default")
        .await
        .unwrap();
    let regenerated = quay
        .regenerate_robot_token("openshift_qdrift", "builder")
        .await
        .unwrap()
        .token
        .unwrap();
    wait_for("the robot to come back with its permission", || async {
        let snap = env.quay.snapshot();
        let org = &snap.organizations["openshift_qdrift"];
        org.robots.contains_key("default")
            && org.repositories["app"]
                .permissions
                .get("openshift_qdrift+default")
                == Some(&Role::Read)
    })
    .await;
    let secrets: Api<Secret> = Api::namespaced(env.client.clone(), "qdrift");
    wait_for(
        "the builder Secret to carry the regenerated token",
        || async {
            let s = secrets.get("builder-quay-openshift").await.unwrap();
            String::from_utf8_lossy(&s.data.unwrap()[".dockerconfigjson"].0).contains(
                &base64::engine::general_purpose::STANDARD
                    .encode(format!("openshift_qdrift+builder:{}", regenerated.expose())),
            )
        },
    )
    .await;
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quay_down_then_back_converges_without_crash() {
    let env = env().await;
    integration(&env, "quay", json!({})).await;
    namespace(&env, "first").await;
    wait_for("first", || converged(&env, "first", &[])).await;
    assert_eq!(env.metrics.quay_available(&env.quay.url()), 1);
    env.quay.set_faults(
        FaultConfig {
            down: true,
            ..Default::default()
        },
        None,
    );
    namespace(&env, "during").await;
    let api = Api::<QuayIntegration>::all(env.client.clone());
    wait_for("QuayReachable to be False", || async {
        api.get("quay").await.unwrap().status.is_some_and(|s| {
            s.conditions
                .iter()
                .any(|c| c.type_ == "QuayReachable" && c.status == "False")
        })
    })
    .await;
    // Deleting a namespace while Quay is down does not crash anything; it waits.
    Api::<Namespace>::all(env.client.clone())
        .delete("first", &DeleteParams::default())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        Api::<Namespace>::all(env.client.clone())
            .get_opt("first")
            .await
            .unwrap()
            .is_some(),
        "held until Quay answers"
    );
    assert_eq!(
        env.metrics.quay_available(&env.quay.url()),
        0,
        "quay_available reports the outage"
    );
    wait_for(
        "the namespace waiting for Quay to count as failing",
        || async { env.metrics.namespaces_in("failing") >= 1 },
    )
    .await;
    let down_requests = env.quay.requests().len();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let per_second = env.quay.requests().len() - down_requests;
    assert!(
        per_second < 40,
        "no hot loop while Quay is down: {per_second} requests in 1 s"
    );
    let back = std::time::Instant::now();
    env.quay.clear_faults();
    wait_for("during to converge after Quay is back", || {
        converged(&env, "during", &[])
    })
    .await;
    wait_for("first to be deleted with its organization", || async {
        !has_org(&env, "openshift_first")
    })
    .await;
    assert!(
        back.elapsed() < Duration::from_secs(5),
        "recovered in {:?}",
        back.elapsed()
    );
    assert_eq!(env.metrics.quay_available(&env.quay.url()), 1);
    wait_for("no namespace left failing", || async {
        env.metrics.namespaces_in("failing") == 0 && env.metrics.namespaces_in("managed") == 1
    })
    .await;
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespace_deletion_follows_the_policy() {
    for (policy, kept) in [("Delete", false), ("Retain", true)] {
        let env = env().await;
        integration(&env, "quay", json!({"namespaceDeletionPolicy": policy})).await;
        namespace(&env, "gone").await;
        wait_for("gone", || converged(&env, "gone", &[])).await;
        let namespaces = Api::<Namespace>::all(env.client.clone());
        env.quay.clear_requests();
        namespaces
            .delete("gone", &DeleteParams::default())
            .await
            .unwrap();
        wait_for("the namespace to go", || async {
            namespaces.get_opt("gone").await.unwrap().is_none()
        })
        .await;
        assert_eq!(has_org(&env, "openshift_gone"), kept, "{policy}");
        let requests = quay_requests(&env);
        println!(
            "deleting a namespace under {policy}: {} Quay requests {requests:?}",
            requests.len()
        );
        if policy == "Delete" {
            // What the organization holds is read at once (robots'
            // descriptions, repositories, teams), then it is deleted.
            let (reads, delete) = requests.split_at(3);
            let mut reads = reads.to_vec();
            reads.sort();
            let get = |p: &str| ("GET".to_owned(), p.to_owned());
            assert_eq!(
                reads,
                [
                    get("/api/v1/organization/{org}"),
                    get("/api/v1/organization/{org}/robots"),
                    get("/api/v1/repository"),
                ]
            );
            assert_eq!(
                delete,
                [("DELETE".to_owned(), "/api/v1/organization/{org}".to_owned())]
            );
        } else {
            assert!(requests.is_empty(), "{requests:?}");
        }
        env.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_the_integration_releases_finalizers_and_keeps_organizations() {
    let env = env().await;
    integration(&env, "quay", json!({})).await;
    namespace(&env, "keep").await;
    wait_for("keep", || converged(&env, "keep", &[])).await;
    Api::<QuayIntegration>::all(env.client.clone())
        .delete("quay", &DeleteParams::default())
        .await
        .unwrap();
    wait_released(&env, "keep").await;
    wait_for("the integration to be gone", || async {
        Api::<QuayIntegration>::all(env.client.clone())
            .get_opt("quay")
            .await
            .unwrap()
            .is_none()
    })
    .await;
    delete_namespace(&env, "keep").await;
    assert!(has_org(&env, "openshift_keep"));
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_organizations_and_a_second_cluster_are_left_untouched() {
    let env = env().await;
    let quay = common::client(&env.quay);
    // Someone else's organization, with a robot and a repository.
    quay.create_organization("openshift_theirs", None)
        .await
        .unwrap();
    quay.create_robot(
        "openshift_theirs",
        "ci",
        &NewRobot {
            description: "their robot".into(),
            unstructured_metadata: None,
        },
    )
    .await
    .unwrap();
    // An organization another cluster with the same clusterID manages.
    quay.create_organization("openshift_twin", None)
        .await
        .unwrap();
    let marker = quay_bridge_operator::plan::names::Marker {
        cluster_id: "openshift".into(),
        cluster_uid: "another-cluster".into(),
        namespace: "twin".into(),
    };
    quay.create_robot(
        "openshift_twin",
        "builder",
        &NewRobot {
            description: marker.description(),
            unstructured_metadata: None,
        },
    )
    .await
    .unwrap();
    integration(&env, "quay", json!({})).await;
    namespace(&env, "theirs").await;
    namespace(&env, "twin").await;
    let api = Api::<QuayIntegration>::all(env.client.clone());
    wait_for("both conflicts reported", || async {
        api.get("quay").await.unwrap().status.is_some_and(|s| {
            s.conditions.iter().any(|c| {
                c.type_ == "Conflict"
                    && c.status == "True"
                    && c.message.contains("theirs")
                    && c.message.contains("same clusterID")
            })
        })
    })
    .await;
    let snap = env.quay.snapshot();
    assert_eq!(
        snap.organizations["openshift_theirs"].robots.len(),
        1,
        "no robot added to a foreign organization"
    );
    assert_eq!(snap.organizations["openshift_twin"].robots.len(), 1);
    // Deleting the namespaces does not delete the organizations.
    let namespaces = Api::<Namespace>::all(env.client.clone());
    for ns in ["theirs", "twin"] {
        namespaces
            .delete(ns, &DeleteParams::default())
            .await
            .unwrap();
    }
    wait_for("namespaces gone", || async {
        namespaces.get_opt("theirs").await.unwrap().is_none()
            && namespaces.get_opt("twin").await.unwrap().is_none()
    })
    .await;
    let snap = env.quay.snapshot();
    assert!(
        snap.organizations.contains_key("openshift_theirs")
            && snap.organizations.contains_key("openshift_twin")
    );
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_crd_schema_rejects_what_can_never_work() {
    let env = env().await;
    let api = Api::<QuayIntegration>::all(env.client.clone());
    for (field, value) in [
        ("quayHostname", json!("quay.example.com")),
        ("clusterID", json!("Prod")),
        ("clusterID", json!("a_b")),
    ] {
        let mut spec = json!({"credentialsSecret": {"name": "quay-integration", "namespace": "openshift-operators"}, "quayHostname": "https://quay.example.com"});
        spec[field] = value.clone();
        let qi = json!({"apiVersion": "quay.redhat.com/v1", "kind": "QuayIntegration", "metadata": {"name": "bad"}, "spec": spec});
        let err = api
            .create(&PostParams::default(), &serde_json::from_value(qi).unwrap())
            .await
            .unwrap_err();
        match err {
            kube::Error::Api(s) => {
                assert_eq!(
                    (s.code, s.reason.as_str()),
                    (422, "Invalid"),
                    "{field}={value}"
                );
                assert!(
                    s.message.contains(&format!("spec.{field}")),
                    "{}",
                    s.message
                );
            }
            other => panic!("{other:?}"),
        }
    }
    // Defaults are applied by the API server, as `oc get -o yaml` shows them.
    let qi = integration(&env, "defaults", json!({})).await;
    let stored = api.get("defaults").await.unwrap();
    assert_eq!(stored.spec.cluster_id, "openshift");
    assert_eq!(
        serde_json::to_value(&stored.spec).unwrap()["namespaceDeletionPolicy"],
        "Delete"
    );
    assert_eq!(qi.spec.credentials_secret.key, "token");
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_organization_name_is_reported_once_and_not_retried() {
    let env = env().await;
    integration(&env, "quay", json!({})).await;
    namespace(&env, "a--b").await;
    let api = Api::<QuayIntegration>::all(env.client.clone());
    wait_for("the failing namespace to be reported", || async {
        api.get("quay").await.unwrap().status.is_some_and(|s| {
            s.failing_namespaces == 1 && s.last_error.as_deref().is_some_and(|e| e.contains("a--b"))
        })
    })
    .await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(
        env.quay.requests().iter().all(|r| !r.path.contains("a--b")),
        "no request with a name Quay refuses"
    );
    let events =
        Api::<k8s_openapi::api::events::v1::Event>::namespaced(env.client.clone(), "default")
            .list(&Default::default())
            .await
            .unwrap();
    let invalid: Vec<_> = events
        .items
        .iter()
        .filter(|e| e.reason.as_deref() == Some("InvalidOrganizationName"))
        .collect();
    assert_eq!(invalid.len(), 1, "reported once: {invalid:?}");
    assert_eq!(
        invalid[0].series.as_ref().map_or(1, |s| s.count),
        1,
        "not repeated"
    );
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_legacy_finalizer_is_taken_over_and_uninstall_releases_everything() {
    let env = env().await;
    // A namespace the Go operator managed carries the legacy finalizer.
    Api::<Namespace>::all(env.client.clone())
        .create(&PostParams::default(), &serde_json::from_value(json!({"metadata": {"name": "upgraded", "finalizers": ["redhatcop.redhat.io/quayintegrations"]}})).unwrap())
        .await
        .unwrap();
    integration(&env, "quay", json!({})).await;
    let namespaces = Api::<Namespace>::all(env.client.clone());
    wait_for("the finalizer to be taken over", || async {
        let f = namespaces
            .get("upgraded")
            .await
            .unwrap()
            .finalizers()
            .to_vec();
        f == ["quay.redhat.com/quayintegrations".to_owned()]
    })
    .await;
    wait_for("upgraded", || converged(&env, "upgraded", &[])).await;
    // Uninstall (operator stopped first) releases namespaces and the integration.
    let quay = env.quay.snapshot();
    let kube_client = env.client.clone();
    let kube = env.kube;
    let stop = env.stop;
    if let Some(s) = stop {
        let _ = s.send(());
    }
    let _ = tokio::time::timeout(Duration::from_secs(5), env.task).await;
    let released = quay_bridge_operator::controller::uninstall::uninstall(kube_client.clone())
        .await
        .unwrap();
    assert_eq!(released.namespaces, ["upgraded"]);
    assert_eq!(released.integrations, ["quay"]);
    let namespaces = Api::<Namespace>::all(kube_client.clone());
    namespaces
        .delete("upgraded", &DeleteParams::default())
        .await
        .unwrap();
    wait_for("the namespace to go without the operator", || async {
        namespaces.get_opt("upgraded").await.unwrap().is_none()
    })
    .await;
    Api::<QuayIntegration>::all(kube_client.clone())
        .delete("quay", &DeleteParams::default())
        .await
        .unwrap();
    assert!(
        Api::<QuayIntegration>::all(kube_client)
            .get_opt("quay")
            .await
            .unwrap()
            .is_none()
    );
    assert!(quay.organizations.contains_key("openshift_upgraded"));
    drop(kube);
}

fn elected(identity: &str) -> Options {
    let mut o = fast_options();
    o.instance = identity.into();
    o.leader_election = Some(quay_bridge_operator::leader::LeaseSettings {
        lease_duration: Duration::from_secs(2),
        renew_deadline: Duration::from_millis(1500),
        retry_period: Duration::from_millis(200),
        ..quay_bridge_operator::leader::LeaseSettings::new("openshift-operators", identity)
    });
    o
}

async fn holder(env: &Env) -> Option<String> {
    let leases: Api<k8s_openapi::api::coordination::v1::Lease> =
        Api::namespaced(env.client.clone(), "openshift-operators");
    leases
        .get_opt("quay-bridge-operator")
        .await
        .unwrap()
        .and_then(|l| l.spec?.holder_identity)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_elect_one_leader_and_fail_over_within_the_lease() {
    let mut env = env_with(elected("replica-a"), Duration::from_millis(50)).await;
    let (stop_b, task_b) = spawn_operator(&env.kube, elected("replica-b"), Metrics::default());
    integration(&env, "quay", json!({})).await;
    wait_for("a leader", || async { holder(&env).await.is_some() }).await;
    namespace(&env, "first").await;
    wait_for("first", || converged(&env, "first", &[])).await;
    let leader = holder(&env).await.unwrap();
    // Only the leader reconciles: requests of one identity-instance are not
    // visible in the log, but the Lease says who leads and it stays put.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(
        holder(&env).await.as_deref(),
        Some(leader.as_str()),
        "renewals keep the lease"
    );

    // The leader dies without releasing: the other takes over within the lease duration.
    let killed = std::time::Instant::now();
    let (mut survivor_stop, survivor_task) = if leader == "replica-a" {
        env.task.abort();
        (stop_b, task_b)
    } else {
        task_b.abort();
        (
            env.stop.take(),
            std::mem::replace(&mut env.task, tokio::spawn(async {})),
        )
    };
    let survivor = if leader == "replica-a" {
        "replica-b"
    } else {
        "replica-a"
    };
    wait_for("the survivor to lead", || async {
        holder(&env).await.as_deref() == Some(survivor)
    })
    .await;
    let took = killed.elapsed();
    assert!(
        took < Duration::from_secs(4),
        "failover took {took:?} (lease 2 s)"
    );
    namespace(&env, "second").await;
    wait_for("second, bridged by the new leader", || {
        converged(&env, "second", &[])
    })
    .await;

    // A graceful stop releases the lease at once.
    if let Some(s) = survivor_stop.take() {
        let _ = s.send(());
    }
    let _ = tokio::time::timeout(Duration::from_secs(5), survivor_task).await;
    assert_eq!(holder(&env).await, None, "released on shutdown");
    println!("failover after an unclean leader exit: {took:?}");
}

fn writes_by(env: &Env, identity: &str, from: usize) -> Vec<String> {
    env.kube.requests()[from..]
        .iter()
        .filter(|r| r.identity == identity)
        .filter(|r| {
            matches!(
                r.verb.as_str(),
                "create" | "update" | "patch" | "delete" | "deletecollection"
            )
        })
        .map(|r| format!("{} {}/{} {}", r.verb, r.resource, r.subresource, r.name))
        .collect()
}

fn lease_reads_by(env: &Env, identity: &str, from: usize) -> usize {
    env.kube.requests()[from..]
        .iter()
        .filter(|r| r.identity == identity && r.resource == "leases" && r.verb == "get")
        .count()
}

const B: &str = "system:serviceaccount:openshift-operators:replica-b";

/// Replica A (the harness's operator identity) leading, replica B (its own
/// service account) following.
struct Replicas {
    env: Env,
    metrics_a: Metrics,
    metrics_b: Metrics,
    stop_b: Option<tokio::sync::oneshot::Sender<()>>,
    task_b: tokio::task::JoinHandle<()>,
}

async fn two_replicas() -> Replicas {
    let metrics_a = Metrics::default();
    let env = env_with_metrics(
        elected("replica-a"),
        Duration::from_millis(50),
        metrics_a.clone(),
        |_c: kube::Client| async {},
    )
    .await;
    wait_for("replica-a to lead", || async {
        holder(&env).await.as_deref() == Some("replica-a")
    })
    .await;
    let metrics_b = Metrics::default();
    let (stop_b, task_b) = spawn_operator_as(&env.kube, B, elected("replica-b"), metrics_b.clone());
    Replicas {
        env,
        metrics_a,
        metrics_b,
        stop_b,
        task_b,
    }
}

/// The follower makes no write while the leader works; when the leader's
/// Lease is taken away (another holder, renewed), it stops its
/// controllers and makes no further write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_never_writes_and_a_deposed_leader_stops_writing() {
    let Replicas {
        env,
        metrics_a,
        metrics_b,
        stop_b,
        task_b,
    } = two_replicas().await;
    let start = env.kube.requests().len();
    integration(&env, "quay", json!({})).await;
    namespace(&env, "led").await;
    image_stream(&env, "led", "app").await;
    wait_for("led", || converged(&env, "led", &["app"])).await;
    assert!(metrics_a.is_leader() && !metrics_b.is_leader());
    assert!(
        !writes_by(&env, OPERATOR, start).is_empty(),
        "the leader works"
    );
    assert_eq!(
        writes_by(&env, B, start),
        Vec::<String>::new(),
        "the follower writes nothing"
    );

    // The Lease is taken away: another holder renews it for an hour.
    let leases: Api<k8s_openapi::api::coordination::v1::Lease> =
        Api::namespaced(env.client.clone(), "openshift-operators");
    leases
        .patch(
            "quay-bridge-operator",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"holderIdentity": "someone-else", "leaseDurationSeconds": 3600,
                "renewTime": jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()}})),
        )
        .await
        .unwrap();
    wait_for("replica-a to step down", || async {
        !metrics_a.is_leader()
    })
    .await;
    let mark = env.kube.requests().len();
    namespace(&env, "unled").await;
    image_stream(&env, "led", "late").await;
    // Both replicas go on reading the Lease (five more tries each, 1 s):
    // a controller still running would have acted on the new objects.
    wait_for("five more lease reads by each replica", || async {
        lease_reads_by(&env, OPERATOR, mark) >= 5 && lease_reads_by(&env, B, mark) >= 5
    })
    .await;
    assert_eq!(
        writes_by(&env, OPERATOR, mark),
        Vec::<String>::new(),
        "the deposed leader writes nothing"
    );
    assert_eq!(
        writes_by(&env, B, mark),
        Vec::<String>::new(),
        "nor does the follower"
    );
    assert!(!has_org(&env, "openshift_unled"));
    if let Some(s) = stop_b {
        let _ = s.send(());
    }
    let _ = tokio::time::timeout(Duration::from_secs(5), task_b).await;
    env.stop().await;
}

/// A replica that cannot campaign (its Lease namespace does not exist)
/// says so: a warning, the leader_election_blocked gauge, and /readyz's
/// 503 body; it reconciles nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_that_cannot_campaign_says_why() {
    let mut options = elected("replica-a");
    if let Some(l) = options.leader_election.as_mut() {
        l.namespace = "no-such-namespace".into();
    }
    let problem = options.campaign_problem.clone();
    let ready = options.ready.clone();
    let env = env_with(options, Duration::from_millis(50)).await;
    wait_for("the campaign problem to be reported", || async {
        problem.lock().unwrap().is_some()
    })
    .await;
    let reason = problem.lock().unwrap().clone().unwrap();
    assert!(
        reason.contains("no-such-namespace/quay-bridge-operator") && reason.contains("404"),
        "{reason}"
    );
    assert!(env.metrics.is_campaign_blocked(), "the gauge says so");
    assert!(!env.metrics.is_leader());
    let router = quay_bridge_operator::admin::router(
        prometheus_client::registry::Registry::default(),
        ready,
        problem.clone(),
    );
    let answer = tower::ServiceExt::oneshot(
        router,
        http::Request::get("/readyz")
            .body(axum::body::Body::empty())
            .unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(answer.status(), 503);
    let body = axum::body::to_bytes(answer.into_body(), 4096)
        .await
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&body), reason);
    env.stop().await;
}

/// The leader's Lease requests hang (a half-open connection): it steps
/// down within its renew deadline, before the follower may take the
/// expired Lease, so the two never lead together, and it writes nothing
/// once the follower leads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_whose_lease_requests_hang_steps_down_before_a_successor_leads() {
    let Replicas {
        env,
        metrics_a,
        metrics_b,
        stop_b,
        task_b,
    } = two_replicas().await;
    integration(&env, "quay", json!({})).await;
    namespace(&env, "before").await;
    wait_for("before", || converged(&env, "before", &[])).await;
    env.kube.set_faults(kube_sandbox::KubeFaultConfig {
        hang_resource: Some("leases.coordination.k8s.io".into()),
        identity: Some(OPERATOR.into()),
        ..Default::default()
    });
    let mut both = false;
    for _ in 0..400 {
        both |= metrics_a.is_leader() && metrics_b.is_leader();
        if holder(&env).await.as_deref() == Some("replica-b") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(holder(&env).await.as_deref(), Some("replica-b"));
    assert!(!both, "the two replicas never lead together");
    assert!(!metrics_a.is_leader(), "replica-a stepped down on its own");
    let mark = env.kube.requests().len();
    namespace(&env, "after").await;
    wait_for("after, bridged by replica-b", || {
        converged(&env, "after", &[])
    })
    .await;
    assert_eq!(
        writes_by(&env, OPERATOR, mark),
        Vec::<String>::new(),
        "the stepped-down leader writes nothing"
    );
    env.kube
        .set_faults(kube_sandbox::KubeFaultConfig::default());
    if let Some(s) = stop_b {
        let _ = s.send(());
    }
    let _ = tokio::time::timeout(Duration::from_secs(5), task_b).await;
    env.stop().await;
}

/// A first list of namespaces that spans several pages, each slower than
/// the periodic probe, still reconciles every namespace: the queue once
/// dropped waiting names the cache did not hold yet, and the cache holds
/// none until the list completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_first_list_reconciles_every_namespace() {
    let mut env = env_with(fast_options(), Duration::from_millis(20)).await;
    env.pause().await;
    // More than a page (500) of namespaces: two list requests.
    futures::StreamExt::for_each_concurrent(futures::stream::iter(0..520), 16, |i| {
        let env = &env;
        async move { namespace(env, &format!("paged-{i:03}")).await }
    })
    .await;
    let before = env.metrics.reconciles("namespace");
    // Each request slower than the probe interval (100 ms).
    env.kube.set_faults(KubeFaultConfig {
        latency_ms: 250,
        ..Default::default()
    });
    env.resume().await;
    let metrics = env.metrics.clone();
    wait_for(
        "every namespace reconciled after the slow first list",
        || {
            let metrics = metrics.clone();
            async move { metrics.reconciles("namespace") >= before + 520 }
        },
    )
    .await;
    env.kube.set_faults(KubeFaultConfig::default());
    env.stop().await;
}
