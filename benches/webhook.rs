//! The admission webhook under sustained load: the real operator (its
//! caches synced from the sandbox cluster, one bridged namespace) serves
//! `/admissionwebhook` over TLS; a client with keep-alive sends realistic
//! Build AdmissionReviews (v1, CREATE, Docker strategy, output to an
//! ImageStreamTag) at a fixed rate, open loop (a slow answer does not slow
//! the sender), and checks every answer is an allowed review with a patch.
//!
//! Prints p50, p99 and max latency, errors and the achieved rate.
//! `cargo bench --bench webhook` (env `RATE`, default 2000 requests/s;
//! `SECONDS`, default 20; `NAMESPACES`, default 0: the caches also hold a
//! cluster of that many other namespaces, each with 4 service accounts,
//! 5 RoleBindings and 3 ImageStreams, which the integration's allowlist
//! leaves unbridged so that the measurement is of admission alone). Client and server share this process and its
//! cores, so the figures include the load generator's own cost.

// A benchmark whose setup fails has nothing to measure: it stops loudly.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use common::env;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::{Api, ListParams, PostParams};
use quay_bridge_operator::controller::context::{CertSource, Metrics, Options, WebhookOptions};
use quay_bridge_operator::net::tls::CertificateAuthority;
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

const OPERATOR: &str = "system:serviceaccount:openshift-operators:quay-bridge-operator";
const SERVICE: &str = "quay-bridge-operator.openshift-operators.svc";

/// A Build as OpenShift creates it from a BuildConfig (`oc new-app`).
fn review(i: u64) -> Vec<u8> {
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": format!("7d0b2c8e-0000-4000-8000-{i:012}"),
            "kind": {"group": "build.openshift.io", "version": "v1", "kind": "Build"},
            "resource": {"group": "build.openshift.io", "version": "v1", "resource": "builds"},
            "requestKind": {"group": "build.openshift.io", "version": "v1", "kind": "Build"},
            "requestResource": {"group": "build.openshift.io", "version": "v1", "resource": "builds"},
            "name": format!("app-{i}"),
            "namespace": "load",
            "operation": "CREATE",
            "userInfo": {"username": "system:serviceaccount:openshift-infra:build-controller", "uid": "5f1c6a1e-1111-4000-8000-000000000001", "groups": ["system:serviceaccounts", "system:serviceaccounts:openshift-infra", "system:authenticated"]},
            "object": {
                "apiVersion": "build.openshift.io/v1",
                "kind": "Build",
                "metadata": {
                    "name": format!("app-{i}"),
                    "namespace": "load",
                    "labels": {"app": "app", "app.kubernetes.io/component": "app", "app.kubernetes.io/instance": "app", "buildconfig": "app", "openshift.io/build-config.name": "app", "openshift.io/build.start-policy": "Serial"},
                    "annotations": {"openshift.io/build-config.name": "app", "openshift.io/build.number": i.to_string()},
                    "ownerReferences": [{"apiVersion": "build.openshift.io/v1", "kind": "BuildConfig", "name": "app", "uid": "9a1b0c1d-2222-4000-8000-000000000002", "controller": true}]
                },
                "spec": {
                    "serviceAccount": "builder",
                    "source": {"type": "Git", "git": {"uri": "https://github.com/sclorg/django-ex.git"}},
                    "strategy": {"type": "Docker", "dockerStrategy": {"from": {"kind": "DockerImage", "name": "registry.access.redhat.com/ubi9/python-311:latest"}}},
                    "output": {"to": {"kind": "ImageStreamTag", "name": "app:latest"}},
                    "resources": {},
                    "postCommit": {},
                    "nodeSelector": null,
                    "triggeredBy": [{"message": "Build configuration change"}]
                },
                "status": {"phase": "New", "config": {"kind": "BuildConfig", "namespace": "load", "name": "app"}, "output": {}}
            },
            "oldObject": null,
            "dryRun": false,
            "options": {"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions"}
        }
    })
    .to_string()
    .into_bytes()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    quay_bridge_operator::install_crypto_provider();
    let rate = env("RATE", 2000) as u64;
    let seconds = env("SECONDS", 20) as u64;

    let others = env("NAMESPACES", 0);

    // The embedded Quay serves while `_quay` lives.
    let _quay = quay_sandbox::EmbeddedQuay::start(Default::default())
        .await
        .unwrap();
    let kube = kube_sandbox::EmbeddedKube::start(Default::default())
        .await
        .unwrap();
    let admin = kube.client();
    common::install_integration_with(&admin, &_quay, json!({"allowlistNamespaces": ["load"]}))
        .await;
    common::fill_cluster(&kube, others, 3, 5, 0);
    Api::<Namespace>::all(admin.clone())
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "load"}})).unwrap(),
        )
        .await
        .unwrap();

    let ca = CertificateAuthority::new("service CA").unwrap();
    let pair = ca.issue_server(&[SERVICE]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("tls.crt"), &pair.cert_pem).unwrap();
    std::fs::write(dir.path().join("tls.key"), pair.key_pem.expose()).unwrap();

    let options = Options {
        webhook: Some(WebhookOptions::new(
            "127.0.0.1:0",
            CertSource::Files {
                dir: dir.path().to_owned(),
                reload_interval: Duration::from_secs(30),
            },
        )),
        ..Options::default()
    };
    let ready = options.ready.clone();
    let metrics = Metrics::default();
    let webhook = options.webhook.clone().unwrap();
    let operator = tokio::spawn(quay_bridge_operator::controller::run(
        kube.client_as(OPERATOR),
        options,
        metrics.clone(),
        futures::future::pending::<()>(),
    ));
    // Bridged: the push Secret exists and the webhook is ready.
    let secrets = Api::<Secret>::namespaced(admin.clone(), "load");
    let started = Instant::now();
    while !(ready.load(Ordering::SeqCst)
        && secrets
            .list_metadata(&ListParams::default())
            .await
            .unwrap()
            .items
            .iter()
            .any(|s| s.metadata.name.as_deref() == Some("builder-quay-openshift")))
    {
        assert!(started.elapsed() < Duration::from_secs(30), "no bridge");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Measure admission alone: wait until the operator has reconciled
    // every namespace once and has nothing queued.
    while !(metrics.reconciles("namespace") > others as u64
        && metrics.queue_depth("namespace") == 0)
    {
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "the operator did not settle"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let addr = webhook.serving_at().await.unwrap();
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(ca.cert_pem().as_bytes()).unwrap())
        .resolve(SERVICE, addr)
        .pool_max_idle_per_host(256)
        .http1_only()
        .build()
        .unwrap();
    let url = format!("https://{SERVICE}:{}/admissionwebhook", addr.port());
    // Warm up until the push Secret is linked too (the webhook denies a
    // build it cannot push yet), then check one rewritten answer.
    let answer = loop {
        let answer: Value = client
            .post(&url)
            .header("content-type", "application/json")
            .body(review(0))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if answer["response"]["allowed"] == true {
            break answer;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "{answer}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(answer["response"]["patchType"], "JSONPatch", "{answer}");

    let total = rate * seconds;
    let errors = Arc::new(AtomicU64::new(0));
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Duration>();
    let interval = Duration::from_secs_f64(1.0 / rate as f64);
    let begin = tokio::time::Instant::now();
    for i in 0..total {
        tokio::time::sleep_until(begin + interval.mul_f64(i as f64)).await;
        let client = client.clone();
        let url = url.clone();
        let tx = tx.clone();
        let errors = errors.clone();
        tokio::spawn(async move {
            let sent = Instant::now();
            let ok = match client
                .post(&url)
                .header("content-type", "application/json")
                .body(review(i + 1))
                .send()
                .await
            {
                Ok(r) if r.status().is_success() => r.json::<Value>().await.is_ok_and(|a| {
                    a["response"]["allowed"] == true && a["response"]["patch"].is_string()
                }),
                _ => false,
            };
            if !ok {
                errors.fetch_add(1, Ordering::Relaxed);
            }
            let _ = tx.send(sent.elapsed());
        });
    }
    drop(tx);
    let mut latencies = Vec::with_capacity(total as usize);
    while let Some(l) = rx.recv().await {
        latencies.push(l);
    }
    let elapsed = begin.elapsed();
    latencies.sort();
    let pct = |p: f64| latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)];
    println!(
        "webhook: {} Build AdmissionReviews over TLS keep-alive at {rate}/s for {seconds} s (achieved {:.0}/s), {others} other namespaces cached",
        latencies.len(),
        latencies.len() as f64 / elapsed.as_secs_f64()
    );
    println!(
        "  latency p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms; errors {}",
        pct(0.50).as_secs_f64() * 1e3,
        pct(0.99).as_secs_f64() * 1e3,
        latencies[latencies.len() - 1].as_secs_f64() * 1e3,
        errors.load(Ordering::Relaxed)
    );
    operator.abort();
}
