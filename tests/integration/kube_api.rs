//! Real kube-rs clients, watchers, reflectors and controllers against the
//! embedded apiserver.

use crate::common;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret, ServiceAccount};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::finalizer::{Event as FinalizerEvent, finalizer};
use kube::runtime::{Controller, WatchStreamExt, reflector, wait::await_condition, watcher};
use kube::{CustomResource, CustomResourceExt, ResourceExt};
use kube_sandbox::{EmbeddedKube, EmbeddedKubeConfig, KubeFaultConfig};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

async fn kube() -> EmbeddedKube {
    common::init();
    EmbeddedKube::start(EmbeddedKubeConfig::default())
        .await
        .unwrap()
}

async fn eventually<F: Fn() -> Fut, Fut: Future<Output = bool>>(what: &str, f: F) {
    for _ in 0..200 {
        if f().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("timed out waiting for {what}");
}

fn api_err(e: kube::Error) -> kube::core::Status {
    match e {
        kube::Error::Api(s) => *s,
        other => panic!("expected an API error, got {other:?}"),
    }
}

#[tokio::test]
async fn crud_and_status_errors_like_the_apiserver() {
    let k = kube().await;
    let client = k.client();
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let names: Vec<String> = namespaces
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .iter()
        .map(|n| n.name_any())
        .collect();
    assert!(
        names.contains(&"default".to_owned()) && names.contains(&"openshift-operators".to_owned()),
        "{names:?}"
    );

    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "demo"}})).unwrap(),
        )
        .await
        .unwrap();
    let dup = api_err(
        namespaces
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({"metadata": {"name": "demo"}})).unwrap(),
            )
            .await
            .unwrap_err(),
    );
    assert_eq!((dup.code, dup.reason.as_str()), (409, "AlreadyExists"));

    // OpenShift's service accounts arrive a little later, with their dockercfg secrets.
    let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), "demo");
    let builder = tokio::time::timeout(
        Duration::from_secs(5),
        await_condition(sas.clone(), "builder", |sa: Option<&ServiceAccount>| {
            sa.is_some()
        }),
    )
    .await
    .unwrap()
    .unwrap()
    .unwrap();
    let linked = builder.secrets.unwrap_or_default();
    assert_eq!(linked.len(), 1);
    assert!(
        linked[0]
            .name
            .as_deref()
            .unwrap_or_default()
            .starts_with("builder-dockercfg-")
    );
    eventually("three service accounts", || async {
        sas.list(&ListParams::default()).await.unwrap().items.len() == 3
    })
    .await;

    let secrets: Api<Secret> = Api::namespaced(client.clone(), "demo");
    let created = secrets.create(&PostParams::default(), &serde_json::from_value(json!({"metadata": {"name": "s1", "labels": {"app": "x"}}, "stringData": {"k": "v"}})).unwrap()).await.unwrap();
    assert_eq!(created.type_.as_deref(), Some("Opaque"));
    assert!(created.metadata.uid.is_some() && created.metadata.resource_version.is_some());
    assert_eq!(secrets.get_opt("nope").await.unwrap(), None);
    let missing = api_err(secrets.get("nope").await.unwrap_err());
    assert_eq!((missing.code, missing.reason.as_str()), (404, "NotFound"));

    // Optimistic concurrency.
    let mut stale = created.clone();
    secrets
        .patch(
            "s1",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"app": "y"}}})),
        )
        .await
        .unwrap();
    stale.metadata.labels = Some([("app".to_owned(), "z".to_owned())].into());
    let conflict = api_err(
        secrets
            .replace("s1", &PostParams::default(), &stale)
            .await
            .unwrap_err(),
    );
    assert_eq!((conflict.code, conflict.reason.as_str()), (409, "Conflict"));

    // JSON patch with a failing test is 422; a bad name is 422 Invalid.
    let failing = Patch::Json::<()>(
        serde_json::from_value(
            json!([{"op": "test", "path": "/metadata/labels/app", "value": "nope"}]),
        )
        .unwrap(),
    );
    assert_eq!(
        api_err(
            secrets
                .patch("s1", &PatchParams::default(), &failing)
                .await
                .unwrap_err()
        )
        .code,
        422
    );
    let invalid = api_err(
        secrets
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({"metadata": {"name": "Builder-Quay"}})).unwrap(),
            )
            .await
            .unwrap_err(),
    );
    assert_eq!((invalid.code, invalid.reason.as_str()), (422, "Invalid"));
    // Creating in a missing namespace is 404.
    let elsewhere: Api<Secret> = Api::namespaced(client.clone(), "ghost");
    assert_eq!(
        api_err(
            elsewhere
                .create(
                    &PostParams::default(),
                    &serde_json::from_value(json!({"metadata": {"name": "x"}})).unwrap()
                )
                .await
                .unwrap_err()
        )
        .code,
        404
    );

    // Strategic merge on a service account, as a real apiserver applies it
    // (kube-api-recorded.md, "Patches"): `secrets` merges by name, new
    // entries first; `imagePullSecrets` is atomic and replaced whole.
    let sa = sas
        .patch("builder", &PatchParams::default(), &Patch::Strategic(json!({"secrets": [{"name": "builder-quay-openshift"}], "imagePullSecrets": [{"name": "builder-quay-openshift"}]})))
        .await
        .unwrap();
    let mounts: Vec<_> = sa
        .secrets
        .unwrap()
        .into_iter()
        .filter_map(|r| r.name)
        .collect();
    assert_eq!(mounts.len(), 2);
    assert_eq!(mounts[0], "builder-quay-openshift");
    let pulls: Vec<_> = sa
        .image_pull_secrets
        .unwrap()
        .into_iter()
        .map(|r| r.name)
        .collect();
    assert_eq!(pulls, ["builder-quay-openshift"]);

    // Label selectors, every form.
    let by_label = secrets
        .list(&ListParams::default().labels("app in (y,z),!missing"))
        .await
        .unwrap();
    assert_eq!(by_label.items.len(), 1);
    let by_field = secrets
        .list(&ListParams::default().fields("type=kubernetes.io/dockercfg"))
        .await
        .unwrap();
    assert_eq!(by_field.items.len(), 3);

    secrets
        .delete("s1", &DeleteParams::default())
        .await
        .unwrap();
    assert_eq!(secrets.get_opt("s1").await.unwrap(), None);
}

#[tokio::test]
async fn no_op_writes_change_nothing_and_pagination_works() {
    let k = kube().await;
    let cms: Api<ConfigMap> = Api::namespaced(k.client(), "default");
    let a = cms
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "a"}, "data": {"x": "1"}}))
                .unwrap(),
        )
        .await
        .unwrap();
    let b = cms
        .patch(
            "a",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"x": "1"}})),
        )
        .await
        .unwrap();
    assert_eq!(
        a.resource_version(),
        b.resource_version(),
        "a no-op patch keeps the resourceVersion"
    );
    for i in 0..25 {
        cms.create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": format!("p{i:02}")}})).unwrap(),
        )
        .await
        .unwrap();
    }
    let mut names = Vec::new();
    let mut params = ListParams::default().limit(10);
    let mut pages = 0;
    loop {
        let page = cms.list(&params).await.unwrap();
        pages += 1;
        names.extend(page.items.iter().map(|c| c.name_any()));
        match page.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(token) => params = params.continue_token(&token),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(names.len(), 26);
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted, "lists are ordered by name, like etcd keys");
}

/// Paging through a cluster-wide list returns every object once, also
/// where one namespace's name is a prefix of another's (`team`,
/// `team-a`): a continue token once compared "namespace/name" strings
/// against objects kept in (namespace, name) order and skipped some.
#[tokio::test]
async fn cluster_wide_pages_skip_nothing() {
    let k = kube().await;
    let namespaces: Api<Namespace> = Api::all(k.client());
    let mut expected = Vec::new();
    for ns in ["team", "team-a", "teams"] {
        namespaces
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({"metadata": {"name": ns}})).unwrap(),
            )
            .await
            .unwrap();
        for name in ["x", "y"] {
            Api::<ConfigMap>::namespaced(k.client(), ns)
                .create(
                    &PostParams::default(),
                    &serde_json::from_value(
                        json!({"metadata": {"name": name, "labels": {"paged": "yes"}}}),
                    )
                    .unwrap(),
                )
                .await
                .unwrap();
            expected.push(format!("{ns}/{name}"));
        }
    }
    let all: Api<ConfigMap> = Api::all(k.client());
    for limit in [1, 2, 3] {
        let mut seen = Vec::new();
        let mut params = ListParams::default().labels("paged=yes").limit(limit);
        loop {
            let page = all.list(&params).await.unwrap();
            assert!(page.items.len() <= limit as usize);
            seen.extend(
                page.items
                    .iter()
                    .map(|c| format!("{}/{}", c.namespace().unwrap_or_default(), c.name_any())),
            );
            match page.metadata.continue_.filter(|c| !c.is_empty()) {
                Some(token) => params = params.continue_token(&token),
                None => break,
            }
        }
        seen.sort();
        let mut want = expected.clone();
        want.sort();
        assert_eq!(seen, want, "limit {limit}");
    }
}

#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, JsonSchema)]
#[kube(
    group = "example.com",
    version = "v1",
    kind = "Widget",
    namespaced,
    status = "WidgetStatus"
)]
pub struct WidgetSpec {
    size: i32,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, JsonSchema)]
pub struct WidgetStatus {
    ready: bool,
    observed_size: i32,
}

struct Ctx {
    client: kube::Client,
    applies: AtomicUsize,
    cleanups: AtomicUsize,
}

async fn reconcile(
    w: Arc<Widget>,
    ctx: Arc<Ctx>,
) -> Result<Action, kube::runtime::finalizer::Error<kube::Error>> {
    let api: Api<Widget> = Api::namespaced(ctx.client.clone(), &w.namespace().unwrap_or_default());
    finalizer(&api, "example.com/cleanup", w, |event| async {
        match event {
            FinalizerEvent::Apply(w) => {
                ctx.applies.fetch_add(1, Ordering::SeqCst);
                let status = json!({"status": {"ready": true, "observed_size": w.spec.size}});
                api.patch_status(
                    &w.name_any(),
                    &PatchParams::default(),
                    &Patch::Merge(status),
                )
                .await?;
                Ok(Action::await_change())
            }
            FinalizerEvent::Cleanup(_) => {
                ctx.cleanups.fetch_add(1, Ordering::SeqCst);
                Ok(Action::await_change())
            }
        }
    })
    .await
}

fn error_policy(
    _: Arc<Widget>,
    _: &kube::runtime::finalizer::Error<kube::Error>,
    _: Arc<Ctx>,
) -> Action {
    Action::requeue(Duration::from_millis(100))
}

#[tokio::test]
async fn a_controller_with_a_finalizer_runs_create_update_status_delete() {
    let k = kube().await;
    let client = k.client();
    let crds: Api<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition> = Api::all(client.clone());
    crds.create(&PostParams::default(), &Widget::crd())
        .await
        .unwrap();
    let ctx = Arc::new(Ctx {
        client: client.clone(),
        applies: AtomicUsize::new(0),
        cleanups: AtomicUsize::new(0),
    });
    let widgets: Api<Widget> = Api::namespaced(client.clone(), "default");
    let controller = tokio::spawn(
        Controller::new(widgets.clone(), watcher::Config::default())
            .run(reconcile, error_policy, ctx.clone())
            .for_each(|_| async {}),
    );

    widgets
        .create(
            &PostParams::default(),
            &Widget::new("w1", WidgetSpec { size: 3 }),
        )
        .await
        .unwrap();
    let ready = |w: Option<&Widget>| w.and_then(|w| w.status.as_ref()).is_some_and(|s| s.ready);
    tokio::time::timeout(
        Duration::from_secs(5),
        await_condition(widgets.clone(), "w1", ready),
    )
    .await
    .unwrap()
    .unwrap();
    let w = widgets.get("w1").await.unwrap();
    assert_eq!(w.finalizers(), ["example.com/cleanup".to_owned()]);
    assert_eq!(w.metadata.generation, Some(1));

    // A spec change bumps the generation and reconciles again.
    widgets
        .patch(
            "w1",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"size": 5}})),
        )
        .await
        .unwrap();
    let resized = |w: Option<&Widget>| {
        w.and_then(|w| w.status.as_ref())
            .is_some_and(|s| s.observed_size == 5)
    };
    tokio::time::timeout(
        Duration::from_secs(5),
        await_condition(widgets.clone(), "w1", resized),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(
        widgets.get("w1").await.unwrap().metadata.generation,
        Some(2)
    );
    // The status patches did not loop the controller.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let applies = ctx.applies.load(Ordering::SeqCst);
    assert!(applies <= 4, "reconciled {applies} times for two changes");

    widgets
        .delete("w1", &DeleteParams::default())
        .await
        .unwrap();
    tokio::time::timeout(
        Duration::from_secs(5),
        await_condition(widgets.clone(), "w1", |w: Option<&Widget>| w.is_none()),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(ctx.cleanups.load(Ordering::SeqCst), 1);
    controller.abort();
}

#[tokio::test]
async fn a_reflector_relists_after_410_and_survives_dropped_watches() {
    let k = kube().await;
    let client = k.client();
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let (reader, writer) = reflector::store();
    let stream = reflector(
        writer,
        watcher(namespaces.clone(), watcher::Config::default()),
    )
    .applied_objects()
    .default_backoff();
    let task = tokio::spawn(async move {
        let mut s = std::pin::pin!(stream);
        // Errors (the 410 among them) are reported and the watcher goes on.
        while s.next().await.is_some() {}
    });
    reader.wait_until_ready().await.unwrap();
    let has = |name: &str| reader.state().iter().any(|n| n.name_any() == name);
    assert!(has("default"));

    k.drop_watches();
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "after-drop"}})).unwrap(),
        )
        .await
        .unwrap();
    eventually(
        "the reflector to see a namespace created after a dropped watch",
        || async { has("after-drop") },
    )
    .await;

    let lists_before = k
        .requests()
        .iter()
        .filter(|r| r.resource == "namespaces" && r.verb == "list")
        .count();
    k.compact();
    k.drop_watches();
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "after-410"}})).unwrap(),
        )
        .await
        .unwrap();
    eventually("the reflector to relist after 410", || async {
        has("after-410")
    })
    .await;
    let lists_after = k
        .requests()
        .iter()
        .filter(|r| r.resource == "namespaces" && r.verb == "list")
        .count();
    assert!(
        lists_after > lists_before,
        "a 410 makes the watcher list again ({lists_before} -> {lists_after})"
    );
    task.abort();
}

#[tokio::test]
async fn watches_see_label_selector_transitions() {
    let k = kube().await;
    let cms: Api<ConfigMap> = Api::namespaced(k.client(), "default");
    let mut events = watcher(
        cms.clone(),
        watcher::Config::default().labels("managed=yes"),
    )
    .boxed();
    // Init events.
    loop {
        if let Some(watcher::Event::InitDone) = events.try_next().await.unwrap() {
            break;
        }
    }
    cms.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": "t", "labels": {"managed": "no"}}}))
            .unwrap(),
    )
    .await
    .unwrap();
    cms.patch(
        "t",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"managed": "yes"}}})),
    )
    .await
    .unwrap();
    match tokio::time::timeout(Duration::from_secs(5), events.try_next())
        .await
        .unwrap()
        .unwrap()
    {
        Some(watcher::Event::Apply(cm)) => assert_eq!(cm.name_any(), "t"),
        other => panic!("expected the object to appear, got {other:?}"),
    }
    cms.patch(
        "t",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"managed": "no"}}})),
    )
    .await
    .unwrap();
    match tokio::time::timeout(Duration::from_secs(5), events.try_next())
        .await
        .unwrap()
        .unwrap()
    {
        Some(watcher::Event::Delete(cm)) => assert_eq!(cm.name_any(), "t"),
        other => panic!("expected the object to leave the selection, got {other:?}"),
    }
}

#[tokio::test]
async fn server_side_apply_creates_and_detects_conflicts() {
    let k = kube().await;
    let cms: Api<ConfigMap> = Api::namespaced(k.client(), "default");
    let config = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "ssa"}, "data": {"owner": "operator"}});
    let created = cms
        .patch(
            "ssa",
            &PatchParams::apply("operator"),
            &Patch::Apply(&config),
        )
        .await
        .unwrap();
    assert_eq!(created.data.unwrap()["owner"], "operator");
    let other = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "ssa"}, "data": {"owner": "someone-else"}});
    let conflict = api_err(
        cms.patch(
            "ssa",
            &PatchParams::apply("intruder"),
            &Patch::Apply(&other),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!((conflict.code, conflict.reason.as_str()), (409, "Conflict"));
    let forced = cms
        .patch(
            "ssa",
            &PatchParams::apply("intruder").force(),
            &Patch::Apply(&other),
        )
        .await
        .unwrap();
    assert_eq!(forced.data.unwrap()["owner"], "someone-else");
    // Strategic merge is refused for custom resources only.
    let managed = forced.metadata.managed_fields.unwrap_or_default();
    assert!(managed.iter().any(
        |m| m.manager.as_deref() == Some("intruder") && m.operation.as_deref() == Some("Apply")
    ));
}

#[tokio::test]
async fn namespace_deletion_waits_for_finalizers_then_removes_everything() {
    let k = kube().await;
    let client = k.client();
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(
                json!({"metadata": {"name": "doomed", "finalizers": ["example.com/org"]}}),
            )
            .unwrap(),
        )
        .await
        .unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "doomed");
    cms.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": "c"}})).unwrap(),
    )
    .await
    .unwrap();
    namespaces
        .delete("doomed", &DeleteParams::default())
        .await
        .unwrap();
    let ns = namespaces.get("doomed").await.unwrap();
    assert_eq!(ns.status.unwrap().phase.as_deref(), Some("Terminating"));
    eventually("the namespace content to be deleted", || async {
        cms.get_opt("c").await.unwrap().is_none()
    })
    .await;
    let err = api_err(
        cms.create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "late"}})).unwrap(),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!(err.code, 403);
    assert!(
        namespaces.get_opt("doomed").await.unwrap().is_some(),
        "held by its finalizer"
    );
    namespaces
        .patch(
            "doomed",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"finalizers": null}})),
        )
        .await
        .unwrap();
    eventually("the namespace to disappear", || async {
        namespaces.get_opt("doomed").await.unwrap().is_none()
    })
    .await;
}

#[tokio::test]
async fn write_faults_and_the_request_log() {
    let k = kube().await;
    let cms: Api<ConfigMap> =
        Api::namespaced(k.client_as("system:serviceaccount:qbo:operator"), "default");
    k.set_faults(KubeFaultConfig {
        fail_next_writes: 1,
        ..Default::default()
    });
    let err = api_err(
        cms.create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "f"}})).unwrap(),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!(err.code, 500);
    cms.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": "f"}})).unwrap(),
    )
    .await
    .unwrap();
    k.set_faults(KubeFaultConfig {
        fail_next_writes: 1,
        write_error_status: Some(429),
        ..Default::default()
    });
    assert_eq!(
        api_err(cms.delete("f", &DeleteParams::default()).await.unwrap_err()).code,
        429
    );
    let mine: Vec<_> = k
        .requests()
        .into_iter()
        .filter(|r| r.identity == "system:serviceaccount:qbo:operator")
        .collect();
    assert_eq!(
        mine.iter().map(|r| r.verb.as_str()).collect::<Vec<_>>(),
        ["create", "create", "delete"]
    );
    assert!(
        mine.iter()
            .all(|r| r.resource == "configmaps" && r.namespace == "default")
    );
}

#[tokio::test]
async fn loopback_tls_through_a_kubeconfig() {
    common::init();
    let k = EmbeddedKube::start(EmbeddedKubeConfig {
        listen: Some("127.0.0.1:0".into()),
        ..Default::default()
    })
    .await
    .unwrap();
    assert!(k.url().unwrap().starts_with("https://127.0.0.1:"));
    let client = k.tcp_client_as("tester").await.unwrap();
    let version = client.apiserver_version().await.unwrap();
    assert_eq!(version.major, "1");
    let namespaces: Api<Namespace> = Api::all(client);
    let mut stream = watcher(namespaces.clone(), watcher::Config::default()).boxed();
    loop {
        if let Some(watcher::Event::InitDone) = stream.try_next().await.unwrap() {
            break;
        }
    }
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "over-tls"}})).unwrap(),
        )
        .await
        .unwrap();
    match tokio::time::timeout(Duration::from_secs(5), stream.try_next())
        .await
        .unwrap()
        .unwrap()
    {
        Some(watcher::Event::Apply(ns)) => assert_eq!(ns.name_any(), "over-tls"),
        other => panic!("expected the new namespace from the watch, got {other:?}"),
    }
    assert!(
        k.requests()
            .iter()
            .any(|r| r.identity == "tester" && r.verb == "watch")
    );
    k.shutdown().await;
}

/// The answers kube-api-recorded.md records for resourceVersions,
/// preconditions, initial events and unknown groups, over HTTP.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resource_versions_preconditions_initial_events_as_recorded() {
    use kube::api::Preconditions;
    use serde_json::Value;
    let k = kube().await;
    let client = k.client();
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let made = cms
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "a", "labels": {"app": "web"}}}))
                .unwrap(),
        )
        .await
        .unwrap();
    let raw = |path: &str| {
        let client = client.clone();
        let path = path.to_owned();
        async move {
            let req = http::Request::get(path).body(Vec::new()).unwrap();
            let resp = client
                .send(req.map(kube::client::Body::from))
                .await
                .unwrap();
            let status = resp.status().as_u16();
            let ctype = resp
                .headers()
                .get("content-type")
                .map(|v| v.to_str().unwrap().to_owned())
                .unwrap_or_default();
            let body = http_body_util::BodyExt::collect(resp.into_body())
                .await
                .unwrap()
                .to_bytes();
            (status, ctype, String::from_utf8_lossy(&body).into_owned())
        }
    };
    // cm-get-bad-rv: a 500 without a reason.
    let (status, _, body) =
        raw("/api/v1/namespaces/default/configmaps/a?resourceVersion=abc").await;
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(status, 500);
    assert!(v.get("reason").is_none(), "{v}");
    assert_eq!(
        v["message"],
        "resourceVersion: Invalid value: \"abc\": strconv.ParseUint: parsing \"abc\": invalid syntax"
    );
    // list-rvmatch-without-rv.
    let (status, _, body) =
        raw("/api/v1/namespaces/default/configmaps?resourceVersionMatch=Exact").await;
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!((status, v["reason"].as_str()), (422, Some("Invalid")));
    assert_eq!(v["details"]["causes"][0]["reason"], "FieldValueForbidden");
    assert_eq!(v["details"]["causes"][0]["field"], "resourceVersionMatch");
    // list-rv-future.
    let (status, _, body) = raw("/api/v1/namespaces/default/configmaps?resourceVersion=99999999&resourceVersionMatch=NotOlderThan").await;
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!((status, v["reason"].as_str()), (504, Some("Timeout")));
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .starts_with("Timeout: Too large resource version: 99999999, current: ")
    );
    assert_eq!(
        v["details"]["causes"][0]["reason"],
        "ResourceVersionTooLarge"
    );
    // get-unknown-group: plain text, not a Status.
    let (status, ctype, body) = raw("/apis/nope.example.com/v1/things").await;
    assert_eq!((status, body.as_str()), (404, "404 page not found\n"));
    assert!(ctype.starts_with("text/plain"), "{ctype}");
    // get-unknown-resource in a served group: a Status.
    let (status, _, body) = raw("/api/v1/namespaces/default/widgetsx").await;
    assert_eq!(status, 404);
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["message"],
        "the server could not find the requested resource"
    );
    // watch-initial-events: ADDED, then the initial-events-end BOOKMARK.
    let (status, _, body) = raw("/api/v1/namespaces/default/configmaps?watch=true&timeoutSeconds=1&sendInitialEvents=true&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true&labelSelector=app%3Dweb").await;
    assert_eq!(status, 200);
    let events: Vec<Value> = body
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(events[0]["type"], "ADDED");
    assert_eq!(events[0]["object"]["metadata"]["name"], "a");
    assert_eq!(events[1]["type"], "BOOKMARK");
    assert_eq!(
        events[1]["object"]["metadata"]["annotations"]["k8s.io/initial-events-end"],
        "true"
    );
    // cm-delete-uid-precondition.
    let refused = cms
        .delete(
            "a",
            &DeleteParams {
                preconditions: Some(Preconditions {
                    uid: Some("00000000-0000-0000-0000-000000000000".into()),
                    resource_version: None,
                }),
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    let s = api_err(refused);
    assert_eq!((s.code, s.reason.as_str()), (409, "Conflict"));
    assert!(s.message.contains("the UID in the precondition (00000000-0000-0000-0000-000000000000) does not match the UID in record"), "{}", s.message);
    assert!(s.message.contains(made.metadata.uid.as_deref().unwrap()));
}

/// Core `v1` and `events.k8s.io/v1` Events are one resource, as on a real
/// apiserver: kube-rs's recorder writes `events.k8s.io` (and patches its
/// series on a repeat); `kubectl get events` and `kubectl describe` read
/// core `v1` with field selectors on `involvedObject`; a core watch sees
/// the write; and an Event written through core is listed by
/// `events.k8s.io` with its fields renamed.
#[tokio::test]
async fn core_and_events_k8s_io_events_are_one_resource() {
    use k8s_openapi::api::core::v1::Event as CoreEvent;
    use k8s_openapi::api::events::v1::Event as EventsV1;
    use kube::Resource;
    use kube::runtime::events::{Event, EventType, Recorder, Reporter};
    let k = kube().await;
    let core: Api<CoreEvent> = Api::namespaced(k.client(), "default");
    let v1: Api<EventsV1> = Api::namespaced(k.client(), "default");
    let cms: Api<ConfigMap> = Api::namespaced(k.client(), "default");
    let cm = cms
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "regarded"}})).unwrap(),
        )
        .await
        .unwrap();
    let mut watch = watcher(core.clone(), watcher::Config::default()).boxed();
    loop {
        if let Some(watcher::Event::InitDone) = watch.try_next().await.unwrap() {
            break;
        }
    }
    let recorder = Recorder::new(
        k.client(),
        Reporter {
            controller: "probe-controller".into(),
            instance: Some("probe-1".into()),
        },
    );
    let ev = Event {
        type_: EventType::Normal,
        reason: "Bridged".into(),
        note: Some("created it".into()),
        action: "Reconcile".into(),
        secondary: None,
    };
    let reference = cm.object_ref(&());
    recorder.publish(&ev, &reference).await.unwrap();
    // The core watch sees the events.k8s.io write.
    let seen = loop {
        match tokio::time::timeout(Duration::from_secs(5), watch.try_next())
            .await
            .unwrap()
            .unwrap()
        {
            Some(watcher::Event::Apply(e)) => break e,
            Some(_) => {}
            None => panic!("the core watch ended"),
        }
    };
    assert_eq!(seen.reason.as_deref(), Some("Bridged"));
    assert_eq!(seen.message.as_deref(), Some("created it"));
    assert_eq!(seen.involved_object.name.as_deref(), Some("regarded"));
    assert_eq!(
        seen.reporting_component.as_deref(),
        Some("probe-controller")
    );
    // `kubectl describe`'s query finds it by the regarded object.
    let selector = format!(
        "involvedObject.name=regarded,involvedObject.namespace=default,involvedObject.kind=ConfigMap,involvedObject.uid={}",
        cm.uid().unwrap()
    );
    let found = core
        .list(&ListParams::default().fields(&selector))
        .await
        .unwrap();
    assert_eq!(found.items.len(), 1);
    // A repeat patches the series through events.k8s.io; core sees it.
    recorder.publish(&ev, &reference).await.unwrap();
    let name = seen.name_any();
    let both = (core.get(&name).await.unwrap(), v1.get(&name).await.unwrap());
    assert_eq!(both.0.series.as_ref().and_then(|s| s.count), Some(2));
    assert_eq!(both.1.series.as_ref().map(|s| s.count), Some(2));
    assert_eq!(
        both.0.metadata.resource_version,
        both.1.metadata.resource_version
    );
    // Written through core, listed by events.k8s.io with its names.
    core.create(
        &PostParams::default(),
        &serde_json::from_value(json!({
            "metadata": {"name": "legacy"},
            "involvedObject": {"kind": "ConfigMap", "name": "regarded", "namespace": "default"},
            "reason": "Old", "message": "from core", "type": "Warning", "count": 3,
            "source": {"component": "old-controller"}
        }))
        .unwrap(),
    )
    .await
    .unwrap();
    let legacy = v1.get("legacy").await.unwrap();
    assert_eq!(legacy.note.as_deref(), Some("from core"));
    assert_eq!(legacy.deprecated_count, Some(3));
    assert_eq!(
        legacy.regarding.as_ref().and_then(|r| r.name.as_deref()),
        Some("regarded")
    );
    assert_eq!(
        legacy
            .deprecated_source
            .as_ref()
            .and_then(|s| s.component.as_deref()),
        Some("old-controller")
    );
    let names = |items: Vec<String>| {
        let mut v = items;
        v.sort();
        v
    };
    assert_eq!(
        names(
            v1.list(&ListParams::default())
                .await
                .unwrap()
                .items
                .iter()
                .map(ResourceExt::name_any)
                .collect()
        ),
        names(
            core.list(&ListParams::default())
                .await
                .unwrap()
                .items
                .iter()
                .map(ResourceExt::name_any)
                .collect()
        ),
    );
    // Deleted through one, gone from both.
    v1.delete("legacy", &DeleteParams::default()).await.unwrap();
    assert!(core.get_opt("legacy").await.unwrap().is_none());
}
