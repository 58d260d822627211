//! The installed `kubectl` against the embedded apiserver over TLS.

use crate::common;
use kube_sandbox::{ADMIN_IDENTITY, EmbeddedKube, EmbeddedKubeConfig};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

fn kubectl(kubeconfig: &Path, args: &[&str]) -> (bool, String, String) {
    // A discovery cache of its own: a cache of another run on the same
    // port must not answer for this server.
    let cache = kubeconfig
        .parent()
        .map_or_else(|| Path::new("cache").to_owned(), |d| d.join("cache"));
    let out = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .arg("--cache-dir")
        .arg(cache)
        .args(args)
        .output()
        .expect("kubectl is installed (.ci/run installs it)");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn ok(kubeconfig: &Path, args: &[&str]) -> String {
    let (success, stdout, stderr) = kubectl(kubeconfig, args);
    assert!(success, "kubectl {args:?} failed: {stderr}");
    stdout
}

/// The sandbox apiserver on HTTPS, with an admin kubeconfig in a
/// directory of its own.
async fn listening_sandbox() -> (EmbeddedKube, tempfile::TempDir, std::path::PathBuf) {
    common::init();
    let k = EmbeddedKube::start(EmbeddedKubeConfig {
        listen: Some("127.0.0.1:0".into()),
        ..Default::default()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let kc = dir.path().join("kubeconfig");
    k.write_kubeconfig(&kc, ADMIN_IDENTITY).unwrap();
    (k, dir, kc)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_create_get_patch_apply_watch_delete() {
    let (k, dir, kc) = listening_sandbox().await;
    let manifest = dir.path().join("objects.yaml");
    std::fs::write(
        &manifest,
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: kc-demo\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cfg\n  namespace: kc-demo\ndata:\n  a: \"1\"\n",
    )
    .unwrap();
    let kc = kc.as_path();
    let created =
        tokio::task::block_in_place(|| ok(kc, &["create", "-f", manifest.to_str().unwrap()]));
    assert!(
        created.contains("namespace/kc-demo created") && created.contains("configmap/cfg created"),
        "{created}"
    );

    let json: serde_json::Value = serde_json::from_str(&tokio::task::block_in_place(|| {
        ok(
            kc,
            &["get", "configmap", "cfg", "-n", "kc-demo", "-o", "json"],
        )
    }))
    .unwrap();
    assert_eq!(json["data"]["a"], "1");
    assert!(json["metadata"]["uid"].is_string());

    let table = tokio::task::block_in_place(|| ok(kc, &["get", "namespaces"]));
    assert!(
        table.lines().next().unwrap().starts_with("NAME")
            && table.contains("kc-demo")
            && table.contains("Active"),
        "{table}"
    );

    tokio::task::block_in_place(|| {
        ok(
            kc,
            &[
                "patch",
                "configmap",
                "cfg",
                "-n",
                "kc-demo",
                "--type=merge",
                "-p",
                r#"{"data":{"b":"2"}}"#,
            ],
        );
        ok(
            kc,
            &[
                "patch",
                "configmap",
                "cfg",
                "-n",
                "kc-demo",
                "--type=json",
                "-p",
                r#"[{"op":"add","path":"/data/c","value":"3"}]"#,
            ],
        );
        ok(
            kc,
            &[
                "patch",
                "configmap",
                "cfg",
                "-n",
                "kc-demo",
                "-p",
                r#"{"data":{"d":"4"}}"#,
            ],
        );
    });
    let data = tokio::task::block_in_place(|| {
        ok(
            kc,
            &[
                "get",
                "configmap",
                "cfg",
                "-n",
                "kc-demo",
                "-o",
                "jsonpath={.data}",
            ],
        )
    });
    let data: serde_json::Value = serde_json::from_str(&data).unwrap();
    assert_eq!(
        data,
        serde_json::json!({"a": "1", "b": "2", "c": "3", "d": "4"})
    );

    // apply (client side, then server side) over the same object.
    std::fs::write(&manifest, "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cfg\n  namespace: kc-demo\ndata:\n  a: \"10\"\n").unwrap();
    tokio::task::block_in_place(|| ok(kc, &["apply", "-f", manifest.to_str().unwrap()]));
    let applied = tokio::task::block_in_place(|| {
        ok(
            kc,
            &["apply", "--server-side", "-f", manifest.to_str().unwrap()],
        )
    });
    assert!(applied.contains("serverside-applied"), "{applied}");
    assert_eq!(
        tokio::task::block_in_place(|| ok(
            kc,
            &[
                "get",
                "configmap",
                "cfg",
                "-n",
                "kc-demo",
                "-o",
                "jsonpath={.data.a}"
            ]
        )),
        "10"
    );

    // get -w sees a change made while it watches.
    let mut watch = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(kc)
        .args([
            "get",
            "configmap",
            "cfg",
            "-n",
            "kc-demo",
            "-w",
            "-o",
            "jsonpath={.metadata.labels.stage}{\"\\n\"}",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = watch.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .take(2)
            .collect::<Vec<_>>()
    });
    tokio::time::sleep(Duration::from_millis(700)).await;
    tokio::task::block_in_place(|| {
        ok(
            kc,
            &[
                "label",
                "configmap",
                "cfg",
                "-n",
                "kc-demo",
                "stage=watched",
            ],
        )
    });
    let mut waited = Duration::ZERO;
    while !reader.is_finished() && waited < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(50)).await;
        waited += Duration::from_millis(50);
    }
    let _ = watch.kill();
    let _ = watch.wait();
    let lines = reader.join().unwrap();
    assert_eq!(
        lines.last().map(String::as_str),
        Some("watched"),
        "watch output {lines:?}"
    );

    let deleted =
        tokio::task::block_in_place(|| ok(kc, &["delete", "configmap", "cfg", "-n", "kc-demo"]));
    assert!(deleted.contains("deleted"), "{deleted}");
    let (found, _, stderr) =
        tokio::task::block_in_place(|| kubectl(kc, &["get", "configmap", "cfg", "-n", "kc-demo"]));
    assert!(!found && stderr.contains("NotFound"), "{stderr}");
    tokio::task::block_in_place(|| ok(kc, &["delete", "namespace", "kc-demo"]));
    assert!(
        k.requests().iter().any(|r| r.identity == ADMIN_IDENTITY
            && r.verb == "watch"
            && r.resource == "configmaps")
    );
    k.shutdown().await;
}

/// Every `kubectl create <generator>` a user reaches for works against the
/// sandbox over TLS: kubectl sends these built-in kinds as protobuf bodies
/// and asks for protobuf answers first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_generator_commands_send_protobuf_and_work() {
    let (k, _dir, kc) = listening_sandbox().await;
    let kc = kc.as_path();
    let run = |args: &[&str]| tokio::task::block_in_place(|| ok(kc, args));
    let expect = |args: &[&str], out: &str| {
        let got = run(args);
        assert_eq!(got.trim(), out, "kubectl {args:?}");
    };
    expect(&["create", "namespace", "gen"], "namespace/gen created");
    let ns = ["-n", "gen"];
    let cases: &[(&[&str], &str)] = &[
        (
            &[
                "create",
                "secret",
                "generic",
                "creds",
                "--from-literal=token=s3cr3t",
            ],
            "secret/creds created",
        ),
        (
            &[
                "create",
                "secret",
                "docker-registry",
                "pull",
                "--docker-server=quay.example.com",
                "--docker-username=u",
                "--docker-password=p",
            ],
            "secret/pull created",
        ),
        (
            &["create", "configmap", "cfg", "--from-literal=a=1"],
            "configmap/cfg created",
        ),
        (
            &["create", "serviceaccount", "robot"],
            "serviceaccount/robot created",
        ),
        (
            &[
                "create",
                "role",
                "reader",
                "--verb=get,list",
                "--resource=pods",
            ],
            "role.rbac.authorization.k8s.io/reader created",
        ),
        (
            &[
                "create",
                "rolebinding",
                "readers",
                "--role=reader",
                "--user=alice",
            ],
            "rolebinding.rbac.authorization.k8s.io/readers created",
        ),
        (
            &["create", "quota", "q", "--hard=pods=10,requests.cpu=2"],
            "resourcequota/q created",
        ),
        (
            &["create", "service", "clusterip", "web", "--tcp=80:8080"],
            "service/web created",
        ),
        (
            &[
                "create",
                "deployment",
                "web",
                "--image=nginx",
                "--replicas=2",
                "--port=80",
            ],
            "deployment.apps/web created",
        ),
        (
            &["create", "job", "once", "--image=busybox"],
            "job.batch/once created",
        ),
        (
            &[
                "create",
                "cronjob",
                "nightly",
                "--image=busybox",
                "--schedule=0 2 * * *",
            ],
            "cronjob.batch/nightly created",
        ),
    ];
    for (args, out) in cases {
        let mut all = args.to_vec();
        all.extend(ns);
        expect(&all, out);
    }
    expect(
        &[
            "create",
            "clusterrole",
            "watcher",
            "--verb=watch",
            "--resource=namespaces",
        ],
        "clusterrole.rbac.authorization.k8s.io/watcher created",
    );
    expect(
        &[
            "create",
            "clusterrolebinding",
            "watchers",
            "--clusterrole=watcher",
            "--group=devs",
        ],
        "clusterrolebinding.rbac.authorization.k8s.io/watchers created",
    );
    expect(
        &["create", "priorityclass", "high", "--value=1000"],
        "priorityclass.scheduling.k8s.io/high created",
    );

    // What was stored is what kubectl meant.
    let secret: serde_json::Value =
        serde_json::from_str(&run(&["get", "secret", "creds", "-n", "gen", "-o", "json"])).unwrap();
    assert_eq!(secret["data"]["token"], "czNjcjN0");
    assert_eq!(secret["type"], "Opaque");
    let deploy: serde_json::Value = serde_json::from_str(&run(&[
        "get",
        "deployment",
        "web",
        "-n",
        "gen",
        "-o",
        "json",
    ]))
    .unwrap();
    assert_eq!(deploy["spec"]["replicas"], 2);
    assert_eq!(
        deploy["spec"]["template"]["spec"]["containers"][0]["image"],
        "nginx"
    );
    assert_eq!(
        deploy["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"],
        80
    );
    let svc: serde_json::Value =
        serde_json::from_str(&run(&["get", "service", "web", "-n", "gen", "-o", "json"])).unwrap();
    assert_eq!(svc["spec"]["ports"][0]["targetPort"], 8080);
    let quota: serde_json::Value =
        serde_json::from_str(&run(&["get", "quota", "q", "-n", "gen", "-o", "json"])).unwrap();
    assert_eq!(quota["spec"]["hard"]["requests.cpu"], "2");
    expect(
        &["get", "namespace", "gen", "-o", "jsonpath={.status.phase}"],
        "Active",
    );

    // A token for a service account authenticates as it.
    let mut wait = 0;
    while !tokio::task::block_in_place(|| kubectl(kc, &["get", "sa", "default", "-n", "gen"])).0 {
        wait += 1;
        assert!(wait < 200, "the default service account appears");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let token = run(&["create", "token", "default", "-n", "gen", "--duration=10m"]);
    assert!(token.starts_with("eyJ"), "{token}");
    tokio::task::block_in_place(|| ok(kc, &["--token", token.trim(), "get", "namespace", "gen"]));
    assert!(
        k.requests().iter().any(
            |r| r.identity == "system:serviceaccount:gen:default" && r.resource == "namespaces"
        ),
        "the token authenticates as the service account"
    );
    expect(&["auth", "can-i", "create", "pods", "-n", "gen"], "yes");
    expect(
        &[
            "get",
            "configmap",
            "kube-root-ca.crt",
            "-n",
            "gen",
            "-o",
            "name",
        ],
        "configmap/kube-root-ca.crt",
    );
    // kubectl sent protobuf bodies (and the sandbox took them).
    let creates: Vec<_> = k
        .requests()
        .into_iter()
        .filter(|r| r.verb == "create" && r.identity == ADMIN_IDENTITY)
        .collect();
    assert!(creates.len() >= 15, "{creates:?}");
    assert!(
        creates
            .iter()
            .all(|r| r.content_type == "application/vnd.kubernetes.protobuf"),
        "{:?}",
        creates
            .iter()
            .map(|r| (&r.resource, &r.content_type))
            .collect::<Vec<_>>()
    );
}

/// `kubectl explain` reads a custom resource's schema (and so its fields'
/// doc comments) from the OpenAPI v3 document of its group version.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_explain_shows_the_quay_integration_fields() {
    use kube::CustomResourceExt;
    let (k, _dir, kc) = listening_sandbox().await;
    let crds: kube::Api<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition> =
        kube::Api::all(k.client());
    crds.create(
        &kube::api::PostParams::default(),
        &quay_bridge_operator::crd::QuayIntegration::crd(),
    )
    .await
    .unwrap();
    let kc = kc.as_path();
    let out =
        tokio::task::block_in_place(|| ok(kc, &["explain", "quayintegrations.spec.teamSync"]));
    assert!(out.contains("GROUP:      quay.redhat.com"), "{out}");
    assert!(out.contains("KIND:       QuayIntegration"), "{out}");
    assert!(
        out.contains("Mirror who may do what in each bridged namespace"),
        "the field's doc comment: {out}"
    );
    assert!(out.contains("enabled\t<boolean>"), "{out}");
    let (success, _, stderr) = kubectl(kc, &["explain", "quayintegrations.spec.nosuchfield"]);
    assert!(!success && stderr.contains("nosuchfield"), "{stderr}");
    k.shutdown().await;
}

/// Whitespace-separated cells of each line: column widths follow values.
fn rows(table: &str) -> Vec<Vec<String>> {
    table
        .lines()
        .map(|l| l.split_whitespace().map(str::to_owned).collect())
        .collect()
}

/// Built-in kinds print the columns of the apiserver's table converters,
/// `kubectl get all` finds the kinds in the `all` category, and the Events
/// an `events.k8s.io` client writes show in `kubectl get events` and
/// `kubectl describe`, which read core `v1`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_prints_built_in_kinds_and_events_as_a_cluster_does() {
    let (_k, dir, kc) = listening_sandbox().await;
    let kc = kc.as_path();
    let run = |args: &[&str]| tokio::task::block_in_place(|| ok(kc, args));
    run(&["create", "namespace", "shop"]);
    run(&[
        "create",
        "deployment",
        "web",
        "--image=quay.example/httpd:2",
        "--replicas=2",
        "-n",
        "shop",
    ]);
    let wide = rows(&run(&["get", "deployment", "-o", "wide", "-n", "shop"]));
    assert_eq!(
        wide[0],
        [
            "NAME",
            "READY",
            "UP-TO-DATE",
            "AVAILABLE",
            "AGE",
            "CONTAINERS",
            "IMAGES",
            "SELECTOR"
        ]
    );
    assert_eq!(
        [&wide[1][..4], &wide[1][5..]].concat(),
        [
            "web",
            "0/2",
            "0",
            "0",
            "httpd",
            "quay.example/httpd:2",
            "app=web"
        ]
    );
    // Without -o wide, the priority columns stay hidden.
    assert_eq!(
        rows(&run(&["get", "deployment", "-n", "shop"]))[0],
        ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]
    );
    run(&[
        "create",
        "configmap",
        "cfg",
        "--from-literal=a=1",
        "--from-literal=b=2",
        "-n",
        "shop",
    ]);
    let cm = rows(&run(&["get", "configmap", "cfg", "-n", "shop"]));
    assert_eq!(
        (cm[0].join(" "), &cm[1][..2]),
        (
            "NAME DATA AGE".into(),
            &["cfg".to_owned(), "2".to_owned()][..]
        )
    );
    run(&[
        "create",
        "secret",
        "generic",
        "s",
        "--from-literal=x=y",
        "-n",
        "shop",
    ]);
    let secret = rows(&run(&["get", "secret", "s", "-n", "shop"]));
    assert_eq!(secret[0], ["NAME", "TYPE", "DATA", "AGE"]);
    assert_eq!(secret[1][..3], ["s", "Opaque", "1"]);
    let all = run(&["get", "all", "-n", "shop"]);
    assert!(all.contains("deployment.apps/web"), "{all}");
    assert!(
        !all.contains("configmap"),
        "configmaps are not in `all`: {all}"
    );

    // An events.k8s.io Event, as kube-rs's recorder writes it.
    let uid = run(&[
        "get",
        "configmap",
        "cfg",
        "-n",
        "shop",
        "-o",
        "jsonpath={.metadata.uid}",
    ]);
    let event = dir.path().join("event.yaml");
    std::fs::write(
        &event,
        format!(
            "apiVersion: events.k8s.io/v1\nkind: Event\nmetadata:\n  name: cfg.1\n  namespace: shop\neventTime: \"2026-01-01T00:00:00.000000Z\"\nreportingController: probe\nreportingInstance: probe-1\naction: Reconcile\nreason: Bridged\ntype: Normal\nnote: created it\nregarding:\n  apiVersion: v1\n  kind: ConfigMap\n  name: cfg\n  namespace: shop\n  uid: {uid}\n"
        ),
    )
    .unwrap();
    run(&["create", "-f", event.to_str().unwrap()]);
    let events = rows(&run(&["get", "events", "-n", "shop"]));
    assert_eq!(
        events[0],
        ["LAST", "SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"]
    );
    assert_eq!(
        events[1][1..],
        ["Normal", "Bridged", "configmap/cfg", "created", "it"]
    );
    let described = run(&["describe", "configmap", "cfg", "-n", "shop"]);
    let tail: Vec<Vec<String>> = rows(&described)
        .into_iter()
        .skip_while(|r| r.first().map(String::as_str) != Some("Events:"))
        .collect();
    assert_eq!(
        tail.get(1).map(|r| r.join(" ")).as_deref(),
        Some("Type Reason Age From Message"),
        "{described}"
    );
    assert_eq!(
        tail.get(3).map(|r| [&r[..2], &r[3..]].concat()),
        Some(
            ["Normal", "Bridged", "probe", "created", "it"]
                .map(str::to_owned)
                .to_vec()
        ),
        "{described}"
    );
}

/// What `kubectl create -f` of a bad ConfigMap gets from the server: an
/// unknown field refused by strict decoding (kubectl asks for Strict), a
/// data key that is not a config key refused as Invalid; and without
/// `fieldValidation` the unknown field is dropped with a warning.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_create_of_a_bad_config_map_is_refused_as_the_apiserver_does() {
    let (k, dir, kc) = listening_sandbox().await;
    let kc = kc.as_path();
    let create = |name: &str, yaml: &str| {
        let file = dir.path().join(name);
        std::fs::write(&file, yaml).unwrap();
        tokio::task::block_in_place(|| kubectl(kc, &["create", "-f", file.to_str().unwrap()]))
    };
    let (ok_, _, stderr) = create(
        "unknown.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: u\n  namespace: default\ndata:\n  a: \"1\"\nspec:\n  bogus: 1\n",
    );
    assert!(!ok_);
    assert!(
        stderr.trim().ends_with(
            "ConfigMap in version \"v1\" cannot be handled as a ConfigMap: strict decoding error: unknown field \"spec\""
        ) && stderr.starts_with("Error from server (BadRequest): error when creating"),
        "{stderr}"
    );
    let (ok_, _, stderr) = create(
        "key.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: badkey\n  namespace: default\ndata:\n  \"bad key\": \"1\"\n",
    );
    assert!(!ok_);
    assert_eq!(
        stderr.trim(),
        "The ConfigMap \"badkey\" is invalid: data[bad key]: Invalid value: \"bad key\": a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')"
    );
    // The default (Warn): created, without the field.
    let client = k.client();
    let request = http::Request::post("/api/v1/namespaces/default/configmaps")
        .header("Content-Type", "application/json")
        .body(
            serde_json::to_vec(&serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": "warned"}, "data": {"a": "1"}, "spec": {"x": 1}}))
            .unwrap(),
        )
        .unwrap();
    let created: serde_json::Value = client.request(request).await.unwrap();
    assert!(created.get("spec").is_none(), "{created}");
    assert_eq!(created["data"]["a"], "1");
    let got = tokio::task::block_in_place(|| {
        ok(
            kc,
            &["get", "configmap", "warned", "-n", "default", "-o", "json"],
        )
    });
    assert!(!got.contains("\"spec\""), "{got}");
}
