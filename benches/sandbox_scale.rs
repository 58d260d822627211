//! Scale of the embedded apiserver: holding 100,000 objects, how long a
//! kube-rs list of 10,000 objects of one namespace takes (through the real
//! HTTP handling, in process), and a full list of every namespace.
//!
//! `cargo bench --bench sandbox_scale` (env `OBJECTS`, `NAMESPACE_OBJECTS`, `RUNS`).

// A benchmark whose setup fails has nothing to measure: it stops loudly.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ListParams};
use kube_sandbox::store::{Store, WriteOptions};
use kube_sandbox::{EmbeddedKube, EmbeddedKubeConfig};
mod common;

use common::{env, median};
use serde_json::json;
use std::time::Instant;

fn fill(store: &mut Store, namespaces: &[String], per_namespace: &[usize]) {
    let ns_def = store
        .registry
        .get("", "v1", "namespaces")
        .cloned()
        .expect("namespaces");
    let cm_def = store
        .registry
        .get("", "v1", "configmaps")
        .cloned()
        .expect("configmaps");
    let opts = WriteOptions {
        dry_run: false,
        manager: "bench".into(),
    };
    for (ns, count) in namespaces.iter().zip(per_namespace) {
        let obj = store
            .prepare_create(&ns_def, "", json!({"metadata": {"name": ns}}))
            .expect("namespace");
        store.commit_create(&ns_def, obj, &opts).expect("namespace");
        for i in 0..*count {
            let obj = store
                .prepare_create(&cm_def, ns, json!({"metadata": {"name": format!("cm-{i:06}"), "labels": {"app": "bench"}}, "data": {"key": "value", "index": i.to_string()}}))
                .expect("configmap");
            store.commit_create(&cm_def, obj, &opts).expect("configmap");
        }
    }
}

#[tokio::main]
async fn main() {
    quay_bridge_operator::install_crypto_provider();
    let total = env("OBJECTS", 100_000);
    let big = env("NAMESPACE_OBJECTS", 10_000);
    let runs = env("RUNS", 7);
    let others = 90usize;
    let rest = total.saturating_sub(big);
    let mut namespaces = vec!["big".to_owned()];
    let mut counts = vec![big];
    for i in 0..others {
        namespaces.push(format!("ns-{i:03}"));
        counts.push(rest / others);
    }
    let kube = EmbeddedKube::start(EmbeddedKubeConfig {
        history_limit: 1_000,
        ..Default::default()
    })
    .await
    .expect("sandbox starts");
    let started = Instant::now();
    fill(&mut kube.state().lock_store(), &namespaces, &counts);
    let fill_time = started.elapsed();
    let held = kube.state().lock_store().object_count();

    let client = kube.client();
    let big_api: Api<ConfigMap> = Api::namespaced(client.clone(), "big");
    let mut timings = Vec::new();
    let mut listed = 0;
    for _ in 0..runs {
        let t = Instant::now();
        listed = big_api
            .list(&ListParams::default())
            .await
            .expect("list")
            .items
            .len();
        timings.push(t.elapsed());
    }
    let selected: Api<ConfigMap> = Api::namespaced(client.clone(), "ns-000");
    let mut small = Vec::new();
    for _ in 0..runs {
        let t = Instant::now();
        selected
            .list(&ListParams::default().labels("app=bench"))
            .await
            .expect("list");
        small.push(t.elapsed());
    }
    let all: Api<ConfigMap> = Api::all(client);
    let t = Instant::now();
    let everything = all
        .list(&ListParams::default())
        .await
        .expect("list")
        .items
        .len();
    let all_time = t.elapsed();

    println!("sandbox scale ({runs} runs each)");
    println!("  objects held:                          {held}");
    println!(
        "  filled in:                             {:.2} s ({:.0} objects/s)",
        fill_time.as_secs_f64(),
        held as f64 / fill_time.as_secs_f64()
    );
    println!(
        "  list {listed} configmaps of one namespace: median {:.1} ms (min {:.1}, max {:.1})",
        median(timings.clone()).as_secs_f64() * 1e3,
        timings
            .iter()
            .min()
            .copied()
            .unwrap_or_default()
            .as_secs_f64()
            * 1e3,
        timings
            .iter()
            .max()
            .copied()
            .unwrap_or_default()
            .as_secs_f64()
            * 1e3
    );
    println!(
        "  list {} configmaps with a label selector: median {:.2} ms",
        rest / others,
        median(small).as_secs_f64() * 1e3
    );
    println!(
        "  list all {everything} configmaps:             {:.1} ms",
        all_time.as_secs_f64() * 1e3
    );
}
