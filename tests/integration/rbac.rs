//! The ClusterRole in deploy/ against what the operator really does: every
//! scenario below runs as the operator's own identity on the sandbox, and
//! its request log must stay within the roles (the ClusterRole and the
//! leader-election Role), using every write they grant.

use crate::builds::{
    build_of, create_webhook_configuration_for, start_build_in, with_build_config,
};
use crate::harness::{
    OPERATOR, converged, delete_namespace, env_with_before, fast_options, image_stream,
    integration, namespace, wait_for,
};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use quay_bridge_operator::controller::context::{CertSource, WebhookOptions};
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::time::Duration;

type Grant = (String, String, String); // (group, resource[/subresource], verb)

fn role() -> BTreeSet<Grant> {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/deploy/base/rbac.yaml"
    ))
    .unwrap();
    let docs: Vec<Value> = serde_saphyr::from_multiple(&text).unwrap();
    let mut grants = BTreeSet::new();
    let rules = docs
        .iter()
        .filter(|d| d["kind"] == "ClusterRole" || d["kind"] == "Role")
        .flat_map(|r| r["rules"].as_array().unwrap().clone());
    for rule in rules {
        let list = |k: &str| -> Vec<String> {
            rule[k]
                .as_array()
                .map(|a| a.iter().map(|v| v.as_str().unwrap().to_owned()).collect())
                .unwrap_or_default()
        };
        for g in list("apiGroups") {
            for r in list("resources") {
                for v in list("verbs") {
                    grants.insert((g.clone(), r.clone(), v));
                }
            }
        }
    }
    grants
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cluster_role_is_exactly_what_the_operator_uses() {
    let mut options = fast_options();
    options.leader_election = Some(quay_bridge_operator::leader::LeaseSettings {
        retry_period: Duration::from_millis(200),
        ..quay_bridge_operator::leader::LeaseSettings::new("openshift-operators", "rbac-replica")
    });
    let certs = quay_bridge_operator::webhook::selfmanaged::SelfManaged::new(
        "openshift-operators",
        "quay-bridge-operator",
        "quay-bridge-operator-webhook-tls",
        "quay-bridge-operator",
    );
    options.webhook = Some(WebhookOptions::new(
        "127.0.0.1:0",
        CertSource::SelfManaged(certs),
    ));
    let mut env = env_with_before(
        options,
        Duration::from_millis(50),
        |client: kube::Client| async move { create_webhook_configuration_for(&client, None).await },
    )
    .await;
    env.kube.register_registry(&env.host(), &env.quay.url());
    env.register_webhook().await;
    // A CA bundle reference exercises the ConfigMap read.
    let cms: Api<k8s_openapi::api::core::v1::ConfigMap> =
        Api::namespaced(env.client.clone(), "openshift-operators");
    cms.create(&PostParams::default(), &serde_json::from_value(json!({"metadata": {"name": "quay-ca"}, "data": {"ca-bundle.crt": quay_bridge_operator::net::tls::CertificateAuthority::new("x").unwrap().cert_pem()}})).unwrap()).await.unwrap();
    integration(&env, "quay", json!({"imageStreamDeletionPolicy": "Delete", "quayCaBundle": {"name": "quay-ca", "namespace": "openshift-operators"}})).await;
    let legacy: quay_bridge_operator::crd::LegacyQuayIntegration = serde_json::from_value(json!({"apiVersion": "redhatcop.redhat.io/v1alpha1", "kind": "QuayIntegration", "metadata": {"name": "legacy"},
        "spec": {"credentialsSecretName": "openshift-operators/quay-integration", "quayHostname": env.quay.url(), "whitelistNamespaces": ["not-there"]}})).unwrap();
    Api::<quay_bridge_operator::crd::LegacyQuayIntegration>::all(env.client.clone())
        .create(&PostParams::default(), &legacy)
        .await
        .unwrap();

    namespace(&env, "rbac").await;
    image_stream(&env, "rbac", "app").await;
    wait_for("rbac", || converged(&env, "rbac", &["app"])).await;
    let secrets: Api<Secret> = Api::namespaced(env.client.clone(), "rbac");
    // Drift: deleted twice, edited, replaced by a Secret of another type.
    for _ in 0..2 {
        secrets
            .delete("builder-quay-openshift", &DeleteParams::default())
            .await
            .unwrap();
        wait_for("restored", || async {
            secrets
                .get_opt("builder-quay-openshift")
                .await
                .unwrap()
                .is_some()
        })
        .await;
    }
    secrets
        .patch(
            "default-quay-openshift",
            &PatchParams::default(),
            &Patch::Merge(json!({"stringData": {".dockerconfigjson": "{\"auths\":{}}"}})),
        )
        .await
        .unwrap();
    // The operator may restore the deleted Secret before ours is created:
    // delete it again and retry until the Opaque one is in place. It
    // carries the operator's label (a Secret of ours whose type changed):
    // one without it would be a user's, which the operator leaves alone.
    let opaque: Secret = serde_json::from_value(
        json!({"metadata": {"name": "deployer-quay-openshift", "labels": {"app.kubernetes.io/managed-by": "quay-bridge-operator"}}, "stringData": {"x": "y"}}),
    )
    .unwrap();
    let mut replaced = false;
    for _ in 0..20 {
        let _ = secrets
            .delete("deployer-quay-openshift", &DeleteParams::default())
            .await;
        match secrets.create(&PostParams::default(), &opaque).await {
            Ok(_) => {
                replaced = true;
                break;
            }
            Err(kube::Error::Api(s)) if s.code == 409 => continue,
            Err(e) => panic!("{e}"),
        }
    }
    assert!(replaced, "an Opaque Secret took the operator's name");
    wait_for("all repaired", || converged(&env, "rbac", &["app"])).await;
    wait_for("the Opaque Secret to be replaced", || async {
        // The operator deletes and recreates it: absent for a moment.
        secrets
            .get_opt("deployer-quay-openshift")
            .await
            .unwrap()
            .is_some_and(|s| s.type_.as_deref() == Some("kubernetes.io/dockerconfigjson"))
    })
    .await;
    // Quay down twice while a new ImageStream needs its repository: the
    // namespace's repeated QuayUnavailable Warning is aggregated (a patch).
    let qis = Api::<quay_bridge_operator::crd::QuayIntegration>::all(env.client.clone());
    for round in 0..2 {
        env.quay.set_faults(
            quay_sandbox::FaultConfig {
                down: true,
                ..Default::default()
            },
            None,
        );
        image_stream(&env, "rbac", &format!("during-outage-{round}")).await;
        for reachable in ["False", "True"] {
            wait_for(&format!("QuayReachable={reachable}"), || async {
                qis.get("quay").await.unwrap().status.is_some_and(|s| {
                    s.conditions
                        .iter()
                        .any(|c| c.type_ == "QuayReachable" && c.status == reachable)
                })
            })
            .await;
            env.quay.clear_faults();
        }
        let repo = format!("during-outage-{round}");
        let repos = ["app", repo.as_str()];
        wait_for("the repository after the outage", || {
            converged(&env, "rbac", &repos)
        })
        .await;
    }
    // Builds: rewritten, pushed, imported.
    with_build_config(&env, "rbac").await;
    start_build_in(&env, "rbac").await.unwrap();
    wait_for("the import", || async { build_of(&env, "rbac", "app-1").await["metadata"]["annotations"]["quay-registry-operator.quay.redhat.com/destination-imagestreamtag-imported"] == "true" }).await;
    // A Build that escaped the webhook (created while the operator was
    // down, under a webhook that fails open as OLM registers it) is
    // cancelled and started again from its BuildConfig.
    Api::<quay_bridge_operator::crd::QuayIntegration>::all(env.client.clone())
        .patch(
            "quay",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"rebuildEscapedBuilds": true}})),
        )
        .await
        .unwrap();
    Api::<DynamicObject>::all_with(env.client.clone(), &crate::builds::ar("admissionregistration.k8s.io", "MutatingWebhookConfiguration", "mutatingwebhookconfigurations"))
        .patch("quay-bridge-operator", &PatchParams::default(), &Patch::Strategic(json!({"webhooks": [{"name": quay_bridge_operator::webhook::registration::WEBHOOK_NAME, "failurePolicy": "Ignore"}]})))
        .await
        .unwrap();
    env.pause().await;
    let dead = crate::builds::unreachable_webhook(&env).await;
    let builds = Api::<DynamicObject>::namespaced_with(
        env.client.clone(),
        "rbac",
        &crate::builds::ar("build.openshift.io", "Build", "builds"),
    );
    // Pending (queued behind the build runner) with the BuildConfig it came from.
    let escaped: DynamicObject = serde_json::from_value(json!({"apiVersion": "build.openshift.io/v1", "kind": "Build", "metadata": {"name": "escaped"},
        "spec": {"strategy": {"type": "Source", "sourceStrategy": {"from": {"kind": "ImageStreamTag", "name": "httpd:2.4", "namespace": "openshift"}}},
            "output": {"to": {"kind": "ImageStreamTag", "name": "app:latest"}}},
        "status": {"phase": "Pending", "config": {"kind": "BuildConfig", "namespace": "rbac", "name": "app"}}})).unwrap();
    builds
        .create(&PostParams::default(), &escaped)
        .await
        .unwrap();
    env.resume().await;
    dead.abort();
    wait_for("the escaped Build cancelled", || async {
        build_of(&env, "rbac", "escaped").await["status"]["phase"] == "Cancelled"
    })
    .await;
    let rebuilt = build_of(&env, "rbac", "escaped").await["metadata"]["annotations"]["quay-registry-operator.quay.redhat.com/rebuilt-as"].as_str().unwrap().to_owned();
    wait_for("the rebuilt Build's import", || async { build_of(&env, "rbac", &rebuilt).await["metadata"]["annotations"]["quay-registry-operator.quay.redhat.com/destination-imagestreamtag-imported"] == "true" }).await;
    // ImageStream deletion, namespace deletion, integration deletion.
    let streams = Api::<DynamicObject>::namespaced_with(
        env.client.clone(),
        "rbac",
        &crate::builds::ar("image.openshift.io", "ImageStream", "imagestreams"),
    );
    streams.delete("app", &Default::default()).await.unwrap();
    wait_for("the repository to go", || async {
        !env.quay.snapshot().organizations["openshift_rbac"]
            .repositories
            .contains_key("app")
    })
    .await;
    delete_namespace(&env, "rbac").await;
    Api::<quay_bridge_operator::crd::QuayIntegration>::all(env.client.clone())
        .delete("quay", &DeleteParams::default())
        .await
        .unwrap();
    Api::<quay_bridge_operator::crd::LegacyQuayIntegration>::all(env.client.clone())
        .delete("legacy", &DeleteParams::default())
        .await
        .unwrap();
    wait_for("the integrations to go", || async {
        Api::<quay_bridge_operator::crd::QuayIntegration>::all(env.client.clone())
            .get_opt("quay")
            .await
            .unwrap()
            .is_none()
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    let used: BTreeSet<Grant> = env
        .kube
        .requests()
        .into_iter()
        .filter(|r| r.identity == OPERATOR)
        .map(|r| {
            let resource = if r.subresource.is_empty() {
                r.resource
            } else {
                format!("{}/{}", r.resource, r.subresource)
            };
            (r.group, resource, r.verb)
        })
        .collect();
    let granted = role();
    let missing: Vec<&Grant> = used.iter().filter(|u| !granted.contains(*u)).collect();
    assert!(
        missing.is_empty(),
        "the operator used what the ClusterRole does not grant: {missing:?}"
    );
    let writes = ["create", "update", "patch", "delete", "deletecollection"];
    let unused: Vec<&Grant> = granted
        .iter()
        .filter(|g| writes.contains(&g.2.as_str()) && !used.contains(*g))
        .collect();
    assert!(
        unused.is_empty(),
        "the ClusterRole grants writes the operator never uses: {unused:?}"
    );
    env.stop().await;
}
