//! Convergence and steady-state cost: N namespaces with M ImageStreams each,
//! bridged by the real operator (in process, through the embedded apiserver)
//! against the embedded Quay with L ms added to every request.
//!
//! Prints wall time to full convergence, Quay requests (total, per
//! namespace), the ratio of wall time to the lower bound
//! `requests × latency ÷ concurrency`, the Go operator's cost for the same
//! work from its model (14 + 2M requests per namespace, one namespace at a
//! time), then the Quay requests and writes of one full resync.
//!
//! `cargo bench --bench convergence` (env `NAMESPACES` 1000, `IMAGESTREAMS` 3,
//! `LATENCY_MS` 20, `CONCURRENCY` 16, `ROTATION` 1: the robot-token
//! rotation phase, `ROTATIONS_PER_MINUTE` 600).

// A benchmark whose setup fails has nothing to measure: it stops loudly.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::{Api, DynamicObject, ListParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube_sandbox::EmbeddedKube;
use quay_bridge_operator::controller::context::{Metrics, Options};
use quay_sandbox::{EmbeddedQuay, FaultConfig};
mod common;

use common::env;
use serde_json::json;
use std::time::{Duration, Instant};

#[tokio::main]
async fn main() {
    quay_bridge_operator::install_crypto_provider();
    let namespaces = env("NAMESPACES", 1000);
    let streams = env("IMAGESTREAMS", 3);
    let latency_ms = env("LATENCY_MS", 20) as u64;
    let concurrency = env("CONCURRENCY", 16);
    // The resync period: long enough not to fire during convergence.
    let resync = Duration::from_secs(env("RESYNC_SECONDS", 600) as u64);

    let (quay, kube, admin) = common::sandbox().await;

    // The cluster's state before the operator starts: N namespaces with M
    // ImageStreams each.
    let is_api = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("image.openshift.io", "v1", "ImageStream"),
        "imagestreams",
    );
    let names: Vec<String> = (0..namespaces).map(|i| format!("team-{i:05}")).collect();
    for ns in &names {
        let obj: Namespace = serde_json::from_value(json!({"metadata": {"name": ns}})).unwrap();
        Api::<Namespace>::all(admin.clone())
            .create(&PostParams::default(), &obj)
            .await
            .unwrap();
        let api = Api::<DynamicObject>::namespaced_with(admin.clone(), ns, &is_api);
        for s in 0..streams {
            let obj: DynamicObject = serde_json::from_value(json!({"apiVersion": "image.openshift.io/v1", "kind": "ImageStream", "metadata": {"name": format!("app-{s}")}})).unwrap();
            api.create(&PostParams::default(), &obj).await.unwrap();
        }
    }
    quay.set_faults(
        FaultConfig {
            latency_ms,
            ..Default::default()
        },
        None,
    );
    println!(
        "convergence: {namespaces} namespaces × {streams} ImageStreams, {latency_ms} ms per Quay request, concurrency {concurrency}"
    );

    let before = quay.requests().len();
    let started = Instant::now();
    let options = Options {
        concurrency: u16::try_from(concurrency).unwrap(),
        resync,
        instance: "bench".into(),
        ..Options::default()
    };
    let (stop, operator) = spawn_operator(&kube, options);

    // Converged: every organization has its robots, default permissions and
    // repositories, and every service account's Secret exists.
    let secrets = Api::<Secret>::all(admin.clone());
    let managed = ListParams::default().labels("app.kubernetes.io/managed-by=quay-bridge-operator");
    loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let snapshot = quay.snapshot();
        let orgs_done = names.iter().all(|ns| {
            snapshot
                .organizations
                .get(&format!("openshift_{ns}"))
                .is_some_and(|o| {
                    o.robots.len() == 3
                        && o.prototypes.len() == 3
                        && o.repositories.len() == streams
                })
        });
        if orgs_done && secrets.list_metadata(&managed).await.unwrap().items.len() == 3 * namespaces
        {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(3600),
            "did not converge within an hour"
        );
    }
    let wall = started.elapsed();
    let requests = quay.requests().len() - before;
    let per_ns = requests as f64 / namespaces as f64;
    let bound = Duration::from_millis(latency_ms).mul_f64(requests as f64 / concurrency as f64);
    let upstream_per_ns = 14 + 2 * streams;
    let upstream_wall =
        Duration::from_millis(latency_ms).mul_f64((upstream_per_ns * namespaces) as f64);
    println!("  wall time to convergence: {:.2} s", wall.as_secs_f64());
    println!("  Quay requests: {requests} ({per_ns:.2} per namespace)");
    println!(
        "  lower bound (requests × latency ÷ concurrency): {:.2} s; wall/bound = {:.2}",
        bound.as_secs_f64(),
        wall.as_secs_f64() / bound.as_secs_f64()
    );
    println!(
        "  Go operator model: {upstream_per_ns} requests per namespace, serial: {} requests, ≥ {:.1} s at the same latency ({:.1}x the requests, {:.1}x the wall time)",
        upstream_per_ns * namespaces,
        upstream_wall.as_secs_f64(),
        (upstream_per_ns * namespaces) as f64 / requests as f64,
        upstream_wall.as_secs_f64() / wall.as_secs_f64()
    );

    let _ = stop.send(());
    let _ = tokio::time::timeout(Duration::from_secs(10), operator).await;
    steady_state(&kube, &quay, namespaces, concurrency).await;
    // The rotation phase waits an interval longer than a pass at the rate
    // limit (20 s + N/10 s at 600/min): ROTATION=0 skips it.
    if env("ROTATION", 1) != 0 {
        rotation(&kube, &quay, &admin, namespaces, streams, concurrency).await;
    }
    deletion(&kube, &quay, &admin, &names, concurrency).await;
}

/// Waits until Quay has had no request for 2 s.
/// Runs the operator in process as its own identity until `stop` is sent.
fn spawn_operator(
    kube: &EmbeddedKube,
    options: Options,
) -> (
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<Result<(), quay_bridge_operator::controller::StartError>>,
) {
    spawn_operator_with(kube, options, Metrics::default())
}

async fn quiet(quay: &EmbeddedQuay) {
    let mut last = quay.requests().len();
    let mut since = Instant::now();
    while since.elapsed() < Duration::from_secs(2) {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let now = quay.requests().len();
        if now != last {
            last = now;
            since = Instant::now();
        }
    }
}

/// Namespace deletion against a Quay modelled on a small real one: every
/// request keeps one of `QUAY_WORKERS` (1) workers busy `DELETE_LATENCY_MS`
/// (300) ms. Deletes `DELETE_NAMESPACES` (10) bridged namespaces and prints
/// the Quay requests per namespace and the wall time until all are gone.
async fn deletion(
    kube: &EmbeddedKube,
    quay: &EmbeddedQuay,
    admin: &kube::Client,
    names: &[String],
    concurrency: usize,
) {
    let count = env("DELETE_NAMESPACES", 10).min(names.len());
    let latency_ms = env("DELETE_LATENCY_MS", 300) as u64;
    let workers = env("QUAY_WORKERS", 1) as u32;
    quay.set_faults(FaultConfig::default(), None);
    let options = Options {
        concurrency: u16::try_from(concurrency).unwrap(),
        resync: Duration::from_secs(3600),
        instance: "bench-delete".into(),
        ..Options::default()
    };
    let (stop, operator) = spawn_operator(kube, options);
    // Its first pass over the converged cluster, at full speed.
    quiet(quay).await;
    quay.set_faults(
        FaultConfig {
            latency_ms,
            capacity: Some(workers),
            ..Default::default()
        },
        None,
    );
    let mark = quay.requests().len();
    let started = Instant::now();
    let namespaces = Api::<Namespace>::all(admin.clone());
    for ns in &names[..count] {
        namespaces.delete(ns, &Default::default()).await.unwrap();
    }
    for ns in &names[..count] {
        while namespaces.get_opt(ns).await.unwrap().is_some() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let wall = started.elapsed();
    let requests = quay.requests().len() - mark;
    let go_wall =
        Duration::from_millis(latency_ms).mul_f64((2 * count) as f64 / f64::from(workers));
    println!(
        "DELETION: {count} namespaces, {latency_ms} ms per request, {workers} Quay worker(s): {:.2} s until all are gone, {requests} Quay requests ({:.2} per namespace, target ≤ 4: robots, repositories and teams read together, then the DELETE); Go operator model: 2 per namespace, ≥ {:.2} s",
        wall.as_secs_f64(),
        requests as f64 / count as f64,
        go_wall.as_secs_f64()
    );
    quay.set_faults(FaultConfig::default(), None);
    let _ = stop.send(());
    let _ = tokio::time::timeout(Duration::from_secs(10), operator).await;
}

/// Robot-token rotation of every namespace once: the QuayIntegration gets
/// `robotTokenRotation` (every robot is older than its interval), the
/// operator runs until every service account's rotation started and every
/// replaced robot is deleted. Prints the Quay requests per service-account
/// rotation, by kind, and the pace the rate limit sets.
async fn rotation(
    kube: &EmbeddedKube,
    quay: &EmbeddedQuay,
    admin: &kube::Client,
    namespaces: usize,
    streams: usize,
    concurrency: usize,
) {
    use quay_bridge_operator::crd::QuayIntegration;
    let per_minute = env("ROTATIONS_PER_MINUTE", 600);
    // Longer than the pass takes at the rate limit, so no robot rotates
    // twice in the window; every robot is made older than it first.
    let interval = 20 + (namespaces * 60).div_ceil(per_minute) as u64;
    Api::<QuayIntegration>::all(admin.clone())
        .patch(
            "bench",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(json!({"spec": {"robotTokenRotation": {
                "interval": format!("{interval}s"), "gracePeriod": "1s", "maxPerMinute": per_minute}}})),
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(interval + 1)).await;
    let metrics = Metrics::default();
    let options = Options {
        concurrency: u16::try_from(concurrency).unwrap(),
        resync: Duration::from_secs(600),
        instance: "bench-rotation".into(),
        ..Options::default()
    };
    let before = quay.requests().len();
    let started = Instant::now();
    let (stop, operator) = spawn_operator_with(kube, options, metrics.clone());
    let wanted = (3 * namespaces) as u64;
    loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let deleted = quay.requests()[before..]
            .iter()
            .filter(|r| r.method == "DELETE" && r.template.ends_with("/robots/{robot}"))
            .count() as u64;
        if metrics.rotations("quayintegrations.quay.redhat.com/bench") >= wanted
            && deleted >= wanted
        {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(3600),
            "rotation did not finish within an hour"
        );
    }
    let wall = started.elapsed();
    let _ = stop.send(());
    let _ = tokio::time::timeout(Duration::from_secs(10), operator).await;
    let window = &quay.requests()[before..];
    let rotations = metrics.rotations("quayintegrations.quay.redhat.com/bench");
    let count = |method: &str, suffix: &str| {
        window
            .iter()
            .filter(|r| r.method == method && r.template.ends_with(suffix))
            .count()
    };
    let robots = count("PUT", "/robots/{robot}");
    let prototypes = count("POST", "/prototypes");
    let grants = count("PUT", "/permissions/user/{user}");
    let deletes = count("DELETE", "/robots/{robot}");
    let reads = window.iter().filter(|r| r.method == "GET").count();
    let writes = robots + prototypes + grants + deletes;
    println!(
        "ROTATION: {namespaces} namespaces × 3 service accounts, {streams} repositories each, maxPerMinute {per_minute} (namespaces): {rotations} rotations done in {:.1} s",
        wall.as_secs_f64()
    );
    println!(
        "  per rotation: {:.2} Quay writes ({:.2} robot create, {:.2} default permission, {:.2} repository grants, {:.2} robot delete), {:.2} reads; 1 Secret write",
        writes as f64 / rotations as f64,
        robots as f64 / rotations as f64,
        prototypes as f64 / rotations as f64,
        grants as f64 / rotations as f64,
        deletes as f64 / rotations as f64,
        reads as f64 / rotations as f64,
    );
}

fn spawn_operator_with(
    kube: &EmbeddedKube,
    options: Options,
    metrics: Metrics,
) -> (
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<Result<(), quay_bridge_operator::controller::StartError>>,
) {
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let client = kube.client_as("system:serviceaccount:openshift-operators:quay-bridge-operator");
    let operator = tokio::spawn(async move {
        quay_bridge_operator::controller::run(client, options, metrics, async move {
            let _ = stopped.await;
        })
        .await
    });
    (stop, operator)
}

/// A restarted operator with a short resync period: its first pass over the
/// converged cluster reads Quay afresh (nothing cached), then one resync.
async fn steady_state(
    kube: &EmbeddedKube,
    quay: &EmbeddedQuay,
    namespaces: usize,
    concurrency: usize,
) {
    // Longer than the restart pass itself (about N/50 s here): the first
    // resync round begins one interval after the start, and the pass must
    // be over (Quay quiet) by then.
    let resync = Duration::from_secs(env("RESYNC_SECONDS_STEADY", 20.max(namespaces / 50)) as u64);
    let options = Options {
        concurrency: u16::try_from(concurrency).unwrap(),
        resync,
        instance: "bench-resync".into(),
        ..Options::default()
    };
    let before = quay.requests().len();
    let ready = options.ready.clone();
    let started = Instant::now();
    let (stop, operator) = spawn_operator(kube, options);
    // Ready (caches synced; with a webhook configured it serves from
    // here): polled, as a readiness probe does.
    while !ready.load(std::sync::atomic::Ordering::Relaxed) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let ready_at = Instant::now();
    println!(
        "RESTART: ready (caches synced, the webhook would answer) {:.2} s after start",
        started.elapsed().as_secs_f64()
    );
    // Wait until the restart pass is over.
    quiet(quay).await;
    let restart = &quay.requests()[before..];
    let restart_writes = restart.iter().filter(|r| r.method != "GET").count();
    println!(
        "RESTART: {} Quay requests ({:.2} per namespace), {restart_writes} writes",
        restart.len(),
        restart.len() as f64 / namespaces as f64
    );
    // The first resync round begins one interval after the controllers
    // start (right after ready) and triggers each namespace once, at its
    // slot: the window holds that round's ticks and no other.
    let tick = quay_bridge_operator::plan::resync::tick(resync);
    tokio::time::sleep_until((ready_at + resync).into()).await;
    let mark = quay.requests().len();
    tokio::time::sleep_until((ready_at + resync * 2 - tick / 2).into()).await;
    let resynced = &quay.requests()[mark..];
    let writes = resynced.iter().filter(|r| r.method != "GET").count();
    println!(
        "RESYNC: {} Quay requests ({:.2} per namespace, target ≤ 3), {writes} writes (target 0)",
        resynced.len(),
        resynced.len() as f64 / namespaces as f64
    );
    let _ = stop.send(());
    let _ = tokio::time::timeout(Duration::from_secs(10), operator).await;
}
