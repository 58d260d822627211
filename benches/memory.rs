//! Peak memory of the operator process (the release binary, `run`, over TLS
//! with a kubeconfig) while it bridges a large cluster held by the sandbox
//! apiserver in this process: N namespaces (default 10,000) with 3 service
//! accounts and M ImageStreams each (default 3) and S unrelated Secrets
//! (default 100,000). The operator caches only what it manages, so the
//! unrelated Secrets must not count.
//!
//! Prints the operator's peak RSS (VmHWM) at convergence and its RSS after.
//! `cargo bench --bench memory` (env `NAMESPACES`, `IMAGESTREAMS`, `SECRETS`,
//! `ROLEBINDINGS`, `TEAM_SYNC`, `HISTORY`, `TIMEOUT_SECONDS` (default
//! 3,600); a run over a minute prints its progress each minute;
//! `BINARY=sandbox` measures the default build, which also holds the
//! sandbox, instead of the image's build without it: that one is built
//! first, into `target/production`).

// A benchmark whose setup fails has nothing to measure: it stops loudly.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ListParams};
use kube_sandbox::{EmbeddedKube, EmbeddedKubeConfig};
use quay_sandbox::{EmbeddedQuay, EmbeddedQuayConfig};
mod common;

use common::env;
use serde_json::json;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const OPERATOR: &str = "system:serviceaccount:openshift-operators:quay-bridge-operator";

/// (VmHWM, VmRSS, RssAnon, RssFile) of a process, in KiB.
fn memory_kib(pid: u32) -> Option<(u64, u64, u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
    };
    Some((
        field("VmHWM:")?,
        field("VmRSS:")?,
        field("RssAnon:")?,
        field("RssFile:")?,
    ))
}

/// The binary the container image ships: release, without the sandbox.
fn production_binary() -> std::path::PathBuf {
    // `SYMBOLS=1` keeps symbols and line tables, for a heap profiler.
    let symbols = std::env::var_os("SYMBOLS").is_some();
    let target = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(if symbols {
        "target/production-symbols"
    } else {
        "target/production"
    });
    println!(
        "building the image's binary (--no-default-features) into {}",
        target.display()
    );
    let mut cargo = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    if symbols {
        cargo
            .env("CARGO_PROFILE_RELEASE_STRIP", "false")
            .env("CARGO_PROFILE_RELEASE_DEBUG", "line-tables-only");
    }
    let status = cargo
        .args([
            "build",
            "--release",
            "--locked",
            "--no-default-features",
            "--bin",
            "quay-bridge-operator",
            "--target-dir",
        ])
        .arg(&target)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .unwrap();
    assert!(status.success(), "the production build failed");
    target.join("release/quay-bridge-operator")
}

/// The `ENV` settings of the image (`Dockerfile`), which change how the
/// binary uses memory.
fn image_env() -> Vec<(String, String)> {
    let dockerfile =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/Dockerfile")).unwrap();
    let env: Vec<(String, String)> = dockerfile
        .lines()
        .filter_map(|l| l.strip_prefix("ENV "))
        .flat_map(str::split_whitespace)
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    println!("image environment: {env:?}");
    env
}

#[tokio::main]
async fn main() {
    quay_bridge_operator::install_crypto_provider();
    let binary = if std::env::var("BINARY").as_deref() == Ok("sandbox") {
        std::path::PathBuf::from(env!("CARGO_BIN_EXE_quay-bridge-operator"))
    } else {
        production_binary()
    };
    println!(
        "operator binary: {} ({:.1} MB)",
        binary.display(),
        std::fs::metadata(&binary).unwrap().len() as f64 / 1e6
    );
    let namespaces = env("NAMESPACES", 10_000);
    let streams = env("IMAGESTREAMS", 3);
    let secrets = env("SECRETS", 100_000);
    let role_bindings = env("ROLEBINDINGS", 5);
    let team_sync = env("TEAM_SYNC", 1) == 1;

    let quay = EmbeddedQuay::start(EmbeddedQuayConfig::default())
        .await
        .unwrap();
    let kube = EmbeddedKube::start(EmbeddedKubeConfig {
        listen: Some("127.0.0.1:0".into()),
        // Events the sandbox keeps for resuming watches (env `HISTORY`): a
        // watch resuming from further back relists, as after a real
        // apiserver's compaction.
        history_limit: env("HISTORY", 1_000),
        ..Default::default()
    })
    .await
    .unwrap();
    let admin = kube.client();
    let extra = if team_sync {
        json!({"teamSync": {"enabled": true}})
    } else {
        json!({})
    };
    common::install_integration_with(&admin, &quay, extra).await;
    common::fill_cluster(&kube, namespaces, streams, role_bindings, secrets);
    println!(
        "memory: {namespaces} namespaces (4 service accounts, {role_bindings} RoleBindings, {streams} ImageStreams each), {secrets} unrelated Secrets, team sync {}; sandbox holds {} objects",
        if team_sync { "on" } else { "off" },
        kube.state().lock_store().object_count()
    );

    let dir = std::env::temp_dir().join(format!("qbo-memory-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let kubeconfig = dir.join("operator.kubeconfig");
    kube.write_kubeconfig(&kubeconfig, OPERATOR).unwrap();
    let started = Instant::now();
    // `WRAP="heaptrack -o /tmp/qbo"` runs the operator under a profiler.
    let wrap: Vec<String> = std::env::var("WRAP")
        .map(|w| w.split_whitespace().map(str::to_owned).collect())
        .unwrap_or_default();
    let mut command = match wrap.split_first() {
        Some((program, args)) => {
            let mut c = Command::new(program);
            c.args(args).arg(&binary);
            c
        }
        None => Command::new(&binary),
    };
    let mut child = command
        .args([
            "run",
            "--webhook-certs",
            "disabled",
            "--leader-elect",
            "false",
        ])
        // The bench reads the process, not the admin server: any free port.
        .args(["--admin-listen", "127.0.0.1:0"])
        // As the image runs it: with its environment (allocator settings).
        .envs(image_env())
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();

    let managed = ListParams::default().labels("app.kubernetes.io/managed-by=quay-bridge-operator");
    let all_secrets = Api::<Secret>::all(admin.clone());
    // Polling costs the sandbox (a list of every managed Secret, a copy of
    // all of Quay's state): on a large cluster poll less often, and read
    // Quay only once the Secrets are all there.
    // (5 s at 10,000 namespaces, 50 s at 100,000.)
    let poll = Duration::from_millis((namespaces as u64 / 2).clamp(1_000, 60_000));
    let limit = Duration::from_secs(
        std::env::var("TIMEOUT_SECONDS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(3600),
    );
    let mut reported = Instant::now();
    loop {
        tokio::time::sleep(poll).await;
        assert!(child.try_wait().unwrap().is_none(), "the operator exited");
        let secrets = all_secrets
            .list_metadata(&managed)
            .await
            .unwrap()
            .items
            .len();
        let secrets_done = secrets == 3 * namespaces;
        // Progress once a minute, for long runs: the pace to converge.
        if reported.elapsed() >= Duration::from_secs(60) {
            reported = Instant::now();
            let (peak, rss, ..) = memory_kib(pid).unwrap();
            println!(
                "  after {:.0} s: {} of {} namespaces' Secrets; RSS {:.1} MiB, peak {:.1} MiB",
                started.elapsed().as_secs_f64(),
                secrets / 3,
                namespaces,
                rss as f64 / 1024.0,
                peak as f64 / 1024.0
            );
        }
        if secrets_done
            && quay
                .snapshot()
                .organizations
                .values()
                .filter(|o| o.repositories.len() == streams && o.robots.len() == 3)
                .count()
                == namespaces
        {
            break;
        }
        assert!(
            started.elapsed() < limit,
            "no convergence within {} s (TIMEOUT_SECONDS)",
            limit.as_secs()
        );
    }
    let converged = started.elapsed();
    let (peak, ..) = memory_kib(pid).unwrap();
    // Settle: the steady state after convergence.
    tokio::time::sleep(Duration::from_secs(10)).await;
    let (peak_after, rss, anon, file) = memory_kib(pid).unwrap();
    println!("  converged in {:.1} s", converged.as_secs_f64());
    println!(
        "  operator peak RSS (VmHWM) at convergence: {:.1} MiB; after 10 s idle: RSS {:.1} MiB (heap and stacks {:.1} MiB, mapped binary and libraries {:.1} MiB), peak {:.1} MiB",
        peak as f64 / 1024.0,
        rss as f64 / 1024.0,
        anon as f64 / 1024.0,
        file as f64 / 1024.0,
        peak_after as f64 / 1024.0
    );
    if std::env::var_os("SMAPS").is_some() {
        let smaps = std::fs::read_to_string(format!("/proc/{pid}/smaps")).unwrap();
        let mut maps: Vec<(u64, String)> = Vec::new();
        let mut head = String::new();
        for line in smaps.lines() {
            if line.contains('-') && !line.starts_with(char::is_uppercase) {
                head = line.to_owned();
            } else if let Some(v) = line.strip_prefix("Rss:") {
                let kb: u64 = v.trim().trim_end_matches(" kB").trim().parse().unwrap();
                maps.push((kb, head.clone()));
            }
        }
        maps.sort();
        for (kb, h) in maps.iter().rev().take(15) {
            println!("  {kb:>7} kB {h}");
        }
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        println!(
            "  {}",
            status.lines().find(|l| l.starts_with("Threads")).unwrap()
        );
    }
    if !wrap.is_empty() {
        // A profiler writes its data when the operator exits cleanly.
        let _ = Command::new("pkill")
            .arg("-TERM")
            .arg("-f")
            .arg(binary.as_os_str())
            .status();
        let _ = child.wait();
    }
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);
}
