//! The `sandbox` command as a newcomer runs it.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

/// A child process killed when the test ends, so a failing assertion does not
/// leave it running.
struct KillOnDrop(std::process::Child);

impl std::ops::Deref for KillOnDrop {
    type Target = std::process::Child;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl std::ops::DerefMut for KillOnDrop {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Sends SIGTERM and expects a clean exit within 10 s.
async fn stops_on_sigterm(child: &mut std::process::Child) {
    let sent = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    let mut waited = Duration::ZERO;
    loop {
        if let Some(exit) = child.try_wait().unwrap() {
            assert!(exit.success(), "exit status {exit:?}");
            return;
        }
        assert!(
            waited < Duration::from_secs(10),
            "sandbox did not stop on SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
        waited += Duration::from_millis(50);
    }
}

#[tokio::test]
async fn sandbox_quay_serves_until_sigterm() {
    crate::common::init();
    let mut child = Command::new(env!("CARGO_BIN_EXE_quay-bridge-operator"))
        .args([
            "sandbox",
            "--components",
            "quay",
            "--listen-quay",
            "127.0.0.1:0",
            "--quay-token",
            "cli-test-token",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map(KillOnDrop)
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let first = lines.next().unwrap().unwrap();
    let url = first
        .strip_prefix("Embedded Quay listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {first}"))
        .to_owned();
    let rest: Vec<String> = lines.by_ref().take(3).map(Result::unwrap).collect();
    assert!(
        rest.iter()
            .any(|l| l.contains("admin token: cli-test-token")),
        "{rest:?}"
    );

    let http = reqwest::Client::new();
    let me: serde_json::Value = http
        .get(format!("{url}/api/v1/user/"))
        .bearer_auth("cli-test-token")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["username"], "admin");
    let created = http
        .post(format!("{url}/api/v1/organization/"))
        .bearer_auth("cli-test-token")
        .json(&serde_json::json!({"name": "fromcli"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let state: serde_json::Value = http
        .get(format!("{url}/_sandbox/quay/state"))
        .bearer_auth("cli-test-token")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(state["organizations"]["fromcli"].is_object());
    // The control API wants the admin token.
    assert_eq!(
        http.get(format!("{url}/_sandbox/quay/state"))
            .send()
            .await
            .unwrap()
            .status(),
        401
    );

    stops_on_sigterm(&mut child).await;
}

#[test]
fn the_operator_component_needs_kube_and_quay() {
    let out = Command::new(env!("CARGO_BIN_EXE_quay-bridge-operator"))
        .args([
            "sandbox",
            "--components",
            "quay,operator",
            "--listen-quay",
            "127.0.0.1:0",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("needs kube and quay"), "{err}");
}

/// Election settings that cannot work are refused at start, naming the
/// flag, before anything connects.
#[test]
fn impossible_leader_election_settings_are_refused_at_start() {
    for (args, flag) in [
        (
            ["--renew-deadline-seconds", "20"],
            "--renew-deadline-seconds (20)",
        ),
        (
            ["--retry-period-seconds", "0"],
            "--retry-period-seconds must be greater than 0",
        ),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_quay-bridge-operator"))
            .arg("run")
            .args(args)
            .env("KUBECONFIG", "/nonexistent")
            .output()
            .unwrap();
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(flag), "{flag}: {err}");
    }
}

#[test]
fn unknown_components_are_rejected_by_the_parser() {
    let out = Command::new(env!("CARGO_BIN_EXE_quay-bridge-operator"))
        .args(["sandbox", "--components", "etcd"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown component"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sandbox_kube_writes_a_kubeconfig_kubectl_uses() {
    crate::common::init();
    let dir = tempfile::tempdir().unwrap();
    let kc = dir.path().join("sandbox.kubeconfig");
    let mut child = Command::new(env!("CARGO_BIN_EXE_quay-bridge-operator"))
        .args([
            "sandbox",
            "--components",
            "kube,quay",
            "--listen-quay",
            "127.0.0.1:0",
            "--listen-kube",
            "127.0.0.1:0",
            "--kubeconfig-out",
        ])
        .arg(&kc)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map(KillOnDrop)
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let lines: Vec<String> = BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .take_while(|l| !l.starts_with("Press Ctrl-C"))
        .collect();
    assert!(
        lines.iter().any(
            |l| l.starts_with("Embedded Kubernetes API server listening on https://127.0.0.1:")
        ),
        "{lines:?}"
    );
    let out = tokio::task::block_in_place(|| {
        Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(&kc)
            .args(["get", "serviceaccounts", "-n", "default", "-o", "name"])
            .output()
            .unwrap()
    });
    let mut names = String::from_utf8_lossy(&out.stdout).into_owned();
    // The accounts arrive shortly after the namespace, as on OpenShift.
    for _ in 0..40 {
        if names.lines().count() == 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        let out = tokio::task::block_in_place(|| {
            Command::new("kubectl")
                .arg("--kubeconfig")
                .arg(&kc)
                .args(["get", "serviceaccounts", "-n", "default", "-o", "name"])
                .output()
                .unwrap()
        });
        names = String::from_utf8_lossy(&out.stdout).into_owned();
    }
    assert_eq!(
        names.lines().collect::<Vec<_>>(),
        [
            "serviceaccount/builder",
            "serviceaccount/default",
            "serviceaccount/deployer"
        ]
    );
    stops_on_sigterm(&mut child).await;
}

#[test]
fn committed_crds_are_current() {
    let out = Command::new(env!("CARGO_BIN_EXE_quay-bridge-operator"))
        .arg("crd")
        .output()
        .unwrap();
    assert!(out.status.success());
    let generated = String::from_utf8(out.stdout).unwrap();
    let committed = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/crds/quayintegrations.yaml"
    ))
    .unwrap();
    assert!(
        generated == committed,
        "crds/quayintegrations.yaml is stale: run `cargo xtask bundle`"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_bridges_namespaces_through_a_kubeconfig_and_serves_health_and_metrics() {
    use k8s_openapi::api::core::v1::Namespace;
    use kube::api::{Api, PostParams};
    use kube_sandbox::{EmbeddedKube, EmbeddedKubeConfig};
    crate::common::init();
    let quay = crate::common::quay().await;
    let kube = EmbeddedKube::start(EmbeddedKubeConfig {
        listen: Some("127.0.0.1:0".into()),
        ..Default::default()
    })
    .await
    .unwrap();
    let admin = kube.client();
    let crds: Api<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition> = Api::all(admin.clone());
    crds.create(
        &PostParams::default(),
        &<quay_bridge_operator::crd::QuayIntegration as kube::CustomResourceExt>::crd(),
    )
    .await
    .unwrap();
    crds.create(
        &PostParams::default(),
        &<quay_bridge_operator::crd::LegacyQuayIntegration as kube::CustomResourceExt>::crd(),
    )
    .await
    .unwrap();
    crate::harness::set_token(&admin, quay.admin_token().expose()).await;
    let qi: quay_bridge_operator::crd::QuayIntegration = serde_json::from_value(serde_json::json!({"apiVersion": "quay.redhat.com/v1", "kind": "QuayIntegration", "metadata": {"name": "quay"},
        "spec": {"credentialsSecret": {"name": "quay-integration", "namespace": "openshift-operators"}, "quayHostname": quay.url()}}))
    .unwrap();
    Api::<quay_bridge_operator::crd::QuayIntegration>::all(admin.clone())
        .create(&PostParams::default(), &qi)
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let kc = dir.path().join("operator.kubeconfig");
    kube.write_kubeconfig(&kc, crate::harness::OPERATOR)
        .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_quay-bridge-operator"))
        .args([
            "run",
            "--webhook-certs",
            "disabled",
            "--admin-listen",
            "127.0.0.1:0",
            "--log-format",
            "json",
            "--kubeconfig",
        ])
        .arg(&kc)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map(KillOnDrop)
        .unwrap();
    // The admin server binds a free port and logs where.
    let stderr = child.stderr.take().unwrap();
    let mut log = BufReader::new(stderr).lines();
    let address = tokio::task::block_in_place(|| {
        log.by_ref().map_while(Result::ok).find_map(|l| {
            let v: serde_json::Value = serde_json::from_str(&l).ok()?;
            (v["fields"]["message"] == "admin server listening")
                .then(|| v["fields"]["address"].as_str().map(str::to_owned))
                .flatten()
        })
    })
    .expect("the admin server's address in the log");
    // Keep reading the log, so the operator never blocks writing it.
    std::thread::spawn(move || log.for_each(drop));
    let http = reqwest::Client::new();
    let base = format!("http://{address}");
    crate::harness::wait_for("/readyz to answer 200", || async {
        http.get(format!("{base}/readyz"))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
    })
    .await;
    assert_eq!(
        http.get(format!("{base}/healthz"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
        "ok"
    );
    Api::<Namespace>::all(admin.clone())
        .create(
            &PostParams::default(),
            &serde_json::from_value(serde_json::json!({"metadata": {"name": "viabinary"}}))
                .unwrap(),
        )
        .await
        .unwrap();
    crate::harness::wait_for("the binary to bridge the namespace", || async {
        quay.snapshot()
            .organizations
            .contains_key("openshift_viabinary")
    })
    .await;
    let scrape = || async {
        http.get(format!("{base}/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    };
    // The scrape that shows convergence is the one checked below: a later
    // watch event (a service account's token Secret) may queue a
    // reconcile again for a moment.
    let converged_scrape = std::sync::Mutex::new(String::new());
    crate::harness::wait_for(
        "the namespace to count as managed, with nothing queued",
        || async {
            let text = scrape().await;
            let done = text.contains("quay_bridge_operator_namespaces{state=\"managed\"} 1")
                && text.contains(
                    "quay_bridge_operator_reconcile_queue_depth{controller=\"namespace\"} 0",
                );
            *converged_scrape.lock().unwrap() = text;
            done
        },
    )
    .await;
    let metrics = converged_scrape.into_inner().unwrap();
    assert!(metrics.contains("quay_bridge_operator_quay_requests_total{method=\"POST\",endpoint=\"/api/v1/organization/\",status=\"2xx\"} 1"), "{metrics}");
    assert!(
        metrics.contains(
            "quay_bridge_operator_reconciles_total{controller=\"namespace\",result=\"ok\"}"
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains("quay_bridge_operator_leader 1"),
        "the only replica leads: {metrics}"
    );
    for series in [
        "quay_bridge_operator_namespaces{state=\"failing\"} 0",
        "quay_bridge_operator_reconciles_in_flight{controller=\"namespace\"}",
        "quay_bridge_operator_quay_available{quay=\"127.0.0.1\"} 1",
        // Converged: nothing waits for a reconcile.
        "quay_bridge_operator_reconcile_queue_depth{controller=\"namespace\"} 0",
        "# TYPE quay_bridge_operator_webhook_duration_seconds histogram",
    ] {
        assert!(metrics.contains(series), "{series} in {metrics}");
    }
    assert!(
        kube.requests()
            .iter()
            .any(|r| r.identity == crate::harness::OPERATOR && r.verb == "watch"),
        "it acted as its own identity"
    );
    let agents: std::collections::BTreeSet<String> = kube
        .requests()
        .into_iter()
        .filter(|r| r.identity == crate::harness::OPERATOR)
        .map(|r| r.user_agent)
        .collect();
    assert_eq!(
        agents.into_iter().collect::<Vec<_>>(),
        [quay_bridge_operator::USER_AGENT],
        "every Kubernetes request says who sent it"
    );
    let quay_agents: std::collections::BTreeSet<String> =
        quay.requests().into_iter().map(|r| r.user_agent).collect();
    assert_eq!(
        quay_agents.into_iter().collect::<Vec<_>>(),
        [quay_bridge_operator::USER_AGENT],
        "every Quay request says who sent it"
    );
    stops_on_sigterm(&mut child).await;
}

#[test]
fn sandbox_demo_tells_the_whole_story_and_exits_zero() {
    let tmp = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_quay-bridge-operator"))
        .args(["sandbox", "--demo"])
        .env_remove("RUST_LOG")
        .env("TMPDIR", tmp.path())
        .stderr(Stdio::null())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    for line in [
        "bridged in",
        "repository openshift_demo/httpd-example created",
        "DockerImage",
        "Complete, pushed sha256:",
        "httpd-example:latest",
        "as openshift_demo+default",
        "signed in as quay-bridge",
        "SECRET KEYS NOW",
        "token, username",
        "openshift_demo+default replaced by openshift_demo+default_2",
        " 0 failed",
        "All steps succeeded",
    ] {
        assert!(text.contains(line), "missing {line:?} in:\n{text}");
    }
    // Logs do not interleave with the story, and a story that succeeded
    // leaves no log file behind.
    assert!(
        !text.contains(" INFO ") && !text.contains(" WARN ") && !text.contains("Logs: "),
        "{text}"
    );
    let left: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .filter(|n| {
            n.to_string_lossy()
                .starts_with("quay-bridge-operator-demo-")
        })
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

/// Logs written to a pipe (a pod's log, a file) carry no colour codes.
#[test]
fn logs_to_a_pipe_have_no_colour_codes() {
    use std::io::{BufRead, Read};
    let mut child = Command::new(env!("CARGO_BIN_EXE_quay-bridge-operator"))
        .args([
            "sandbox",
            "--components",
            "quay",
            "--listen-quay",
            "127.0.0.1:0",
        ])
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map(KillOnDrop)
        .unwrap();
    let stdout = child.0.stdout.take().unwrap();
    let mut lines = std::io::BufReader::new(stdout)
        .lines()
        .map_while(Result::ok);
    assert!(
        lines.any(|l| l.contains("listening")),
        "the sandbox started"
    );
    // SIGTERM: it logs its shutdown and exits.
    let killed = Command::new("kill")
        .args(["-TERM", &child.0.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let mut log = String::new();
    child
        .0
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut log)
        .unwrap();
    assert!(log.contains("INFO"), "{log}");
    assert!(!log.contains('\u{1b}'), "{log:?}");
}

/// `--demo --keep`: after the story everything keeps running, with the
/// kubeconfig printed, until SIGTERM.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sandbox_demo_keep_leaves_it_running_to_explore() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_quay-bridge-operator"))
        .args(["sandbox", "--demo", "--keep"])
        .current_dir(dir.path())
        // With --keep the log file is kept: in the test's own directory.
        .env("TMPDIR", dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map(KillOnDrop)
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let lines: Vec<String> = tokio::task::block_in_place(|| {
        BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .take_while(|l| !l.starts_with("Press Ctrl-C"))
            .collect()
    });
    assert!(
        lines.iter().any(|l| l.contains("All steps succeeded")),
        "{lines:?}"
    );
    let kubeconfig = lines
        .iter()
        .find_map(|l| l.trim().strip_prefix("export KUBECONFIG="))
        .unwrap_or_else(|| panic!("no kubeconfig printed: {lines:?}"))
        .to_owned();
    let out = tokio::task::block_in_place(|| {
        Command::new("kubectl")
            .args([
                "--kubeconfig",
                &kubeconfig,
                "get",
                "builds",
                "-n",
                "demo",
                "-o",
                "name",
            ])
            .output()
            .unwrap()
    });
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "build.build.openshift.io/httpd-example-1"
    );
    stops_on_sigterm(&mut child).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sandbox_points_the_operator_at_an_external_quay() {
    crate::common::init();
    let external = crate::common::quay().await;
    let dir = tempfile::tempdir().unwrap();
    let kc = dir.path().join("sandbox.kubeconfig");
    let mut child = Command::new(env!("CARGO_BIN_EXE_quay-bridge-operator"))
        .args([
            "sandbox",
            "--components",
            "kube,operator",
            "--listen-kube",
            "127.0.0.1:0",
            "--listen-admin",
            "127.0.0.1:0",
            "--quay-url",
            &external.url(),
            "--quay-token",
            external.admin_token().expose(),
            "--kubeconfig-out",
        ])
        .arg(&kc)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map(KillOnDrop)
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let lines: Vec<String> = BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .take_while(|l| !l.starts_with("Press Ctrl-C"))
        .collect();
    assert!(
        lines.iter().any(|l| l.contains("Using the external Quay")),
        "{lines:?}"
    );
    let out = tokio::task::block_in_place(|| {
        Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(&kc)
            .args(["create", "-f", "-"])
            .stdin(Stdio::piped())
            .spawn()
            .and_then(|mut c| {
                use std::io::Write;
                c.stdin.take().unwrap().write_all(
                    b"apiVersion: v1\nkind: Namespace\nmetadata:\n  name: external-demo\n",
                )?;
                c.wait_with_output()
            })
    })
    .unwrap();
    assert!(out.status.success());
    crate::harness::wait_for("the external Quay to get the organization", || async {
        external
            .snapshot()
            .organizations
            .contains_key("openshift_external-demo")
    })
    .await;
    stops_on_sigterm(&mut child).await;
}
