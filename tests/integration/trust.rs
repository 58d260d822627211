//! Trust only what was verified: a tenant's labels and annotations, a
//! cached view or a hung connection never make the operator act on what
//! it does not own.

use crate::builds::ar;
use crate::harness::{Env, converged, env, image_stream, integration, namespace, wait_for};
use k8s_openapi::api::events::v1::Event;
use kube::ResourceExt;
use kube::api::{Api, DynamicObject, PostParams};
use serde_json::json;

/// The Events on object `kind/name` of namespace `ns` with this reason.
pub async fn events_on(env: &Env, ns: &str, kind: &str, name: &str, reason: &str) -> Vec<Event> {
    Api::<Event>::namespaced(env.client.clone(), ns)
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|e| {
            let r = e.regarding.as_ref();
            r.and_then(|r| r.kind.as_deref()) == Some(kind)
                && r.and_then(|r| r.name.as_deref()) == Some(name)
                && e.reason.as_deref() == Some(reason)
        })
        .collect()
}

/// A Build that claims to be rewritten by the webhook, as a tenant can
/// write it in their own namespace (labels, annotations, output, phase).
fn forged_build(name: &str, destination: &str, image: &str) -> DynamicObject {
    let p = "quay-registry-operator.quay.redhat.com";
    serde_json::from_value(json!({
        "apiVersion": "build.openshift.io/v1", "kind": "Build",
        "metadata": {"name": name,
            "labels": {"quay.redhat.com/bridged": "true"},
            "annotations": {
                format!("{p}/quay-registry-operator-managed"): "true",
                format!("{p}/destination-imagestream"): destination}},
        "spec": {"strategy": {"type": "Docker", "dockerStrategy": {}},
            "output": {"to": {"kind": "DockerImage", "name": image}}},
        "status": {"phase": "Complete"}}))
    .unwrap()
}

/// A user of an unbridged namespace, or of another bridged one, labels and
/// annotates their own Build to name another team's ImageStream: nothing
/// is imported there, and the Build gets a Warning saying why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_build_never_imports_into_another_namespace() {
    let env = env().await;
    integration(&env, "quay", json!({"denylistNamespaces": ["mallory"]})).await;
    for ns in ["victim", "tenant", "mallory"] {
        namespace(&env, ns).await;
    }
    image_stream(&env, "victim", "app").await;
    wait_for("victim", || converged(&env, "victim", &["app"])).await;
    wait_for("tenant", || converged(&env, "tenant", &[])).await;
    let host = env.host();
    env.kube.clear_requests();
    let cases = [
        // Unbridged namespace naming the victim's stream and image.
        (
            "mallory",
            "victim/app:latest",
            format!("{host}/openshift_victim/app:latest"),
        ),
        // Unbridged namespace naming its own stream.
        (
            "mallory",
            "mallory/app:latest",
            format!("{host}/openshift_mallory/app:latest"),
        ),
        // Bridged namespace naming the victim's stream.
        (
            "tenant",
            "victim/app:latest",
            format!("{host}/openshift_victim/app:latest"),
        ),
        // Bridged namespace naming its own stream, importing another
        // organization's image.
        (
            "tenant",
            "tenant/app:latest",
            format!("{host}/openshift_victim/app:latest"),
        ),
    ];
    for (i, (ns, dest, image)) in cases.iter().enumerate() {
        let builds = Api::<DynamicObject>::namespaced_with(
            env.client.clone(),
            ns,
            &ar("build.openshift.io", "Build", "builds"),
        );
        let name = format!("forged-{i}");
        builds
            .create(&PostParams::default(), &forged_build(&name, dest, image))
            .await
            .unwrap();
        wait_for(&format!("a Warning on {ns}/{name}"), || async {
            events_on(&env, ns, "Build", &name, "ImportRefused")
                .await
                .iter()
                .any(|e| e.type_.as_deref() == Some("Warning"))
        })
        .await;
    }
    let imports: Vec<_> = env
        .kube
        .requests()
        .into_iter()
        .filter(|r| r.resource == "imagestreamimports")
        .collect();
    assert!(imports.is_empty(), "no import was attempted: {imports:?}");
    let builds = env
        .kube
        .requests()
        .into_iter()
        .filter(|r| r.resource == "builds" && r.verb == "patch")
        .count();
    assert_eq!(builds, 0, "no forged Build is marked imported");
    env.stop().await;
}

/// The operator's view of a namespace lags behind (a slow watch): an
/// annotation a person added after the operator's read survives the
/// operator's own metadata patch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claiming_a_namespace_keeps_an_annotation_added_since_the_read() {
    use crate::harness::env_with_kube_faults;
    use k8s_openapi::api::core::v1::Namespace;
    use kube::ResourceExt;
    use kube::api::{Patch, PatchParams};
    use kube_sandbox::{KubeFaultConfig, LaggingWatch};
    let env = env_with_kube_faults(
        crate::harness::fast_options(),
        KubeFaultConfig {
            lagging_watch: Some(LaggingWatch {
                resource: "namespaces".into(),
                nth: 1,
                delay_ms: 1000,
            }),
            ..Default::default()
        },
    )
    .await;
    integration(&env, "quay", json!({})).await;
    // The namespace is new to the operator's (lagging) watch.
    wait_for("the operator's namespace watch", || async {
        env.kube.requests().iter().any(|r| {
            r.resource == "namespaces"
                && r.verb == "watch"
                && r.identity == crate::harness::OPERATOR
        })
    })
    .await;
    namespace(&env, "late").await;
    let namespaces = Api::<Namespace>::all(env.client.clone());
    namespaces
        .patch(
            "late",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {"owner": "alice"}}})),
        )
        .await
        .unwrap();
    wait_for("late", || converged(&env, "late", &[])).await;
    let ns = namespaces.get("late").await.unwrap();
    assert_eq!(
        ns.annotations().get("owner").map(String::as_str),
        Some("alice"),
        "{:?}",
        ns.annotations()
    );
    assert_eq!(
        ns.annotations()
            .get(quay_bridge_operator::config::ORGANIZATION_ANNOTATION)
            .map(String::as_str),
        Some("openshift_late")
    );
    env.stop().await;
}

/// An edit that makes the integration invalid holds its namespaces as
/// they are: a namespace deleted meanwhile keeps its finalizer (nothing is
/// released, so its organization is not orphaned) until the integration is
/// valid again, and then its organization is deleted with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_edit_releases_nothing() {
    use k8s_openapi::api::core::v1::Namespace;
    use kube::api::{DeleteParams, Patch, PatchParams};
    use quay_bridge_operator::crd::QuayIntegration;
    let env = env().await;
    integration(&env, "quay", json!({})).await;
    namespace(&env, "held").await;
    wait_for("held", || converged(&env, "held", &[])).await;
    let integrations = Api::<QuayIntegration>::all(env.client.clone());
    let set_team_sync = |team_sync: serde_json::Value| {
        let integrations = integrations.clone();
        async move {
            integrations
                .patch(
                    "quay",
                    &PatchParams::default(),
                    &Patch::Merge(json!({"spec": {"teamSync": team_sync}})),
                )
                .await
                .unwrap();
        }
    };
    // A team sync mapping onto Quay's own `owners` team fails validation.
    set_team_sync(json!({"enabled": true, "roles": [
        {"role": "admin", "roleKind": "ClusterRole", "team": "owners", "teamRole": "admin"}]}))
    .await;
    wait_for("the integration to be reported invalid", || async {
        integrations
            .get("quay")
            .await
            .unwrap()
            .status
            .is_some_and(|s| {
                s.conditions
                    .iter()
                    .any(|c| c.type_ == "Ready" && c.reason == "InvalidSpec")
            })
    })
    .await;
    let before = env.metrics.reconciles("namespace");
    let namespaces = Api::<Namespace>::all(env.client.clone());
    namespaces
        .delete("held", &DeleteParams::default())
        .await
        .unwrap();
    wait_for("a reconcile of the deleted namespace", || async {
        env.metrics.reconciles("namespace") > before
    })
    .await;
    let ns = namespaces.get_opt("held").await.unwrap();
    assert!(
        ns.is_some_and(|n| n
            .finalizers()
            .iter()
            .any(|f| f == quay_bridge_operator::config::FINALIZER)),
        "the namespace keeps its finalizer while the integration is invalid"
    );
    assert!(crate::harness::has_org(&env, "openshift_held"));
    set_team_sync(serde_json::Value::Null).await;
    wait_for("held to be gone", || async {
        namespaces.get_opt("held").await.unwrap().is_none()
    })
    .await;
    assert!(
        !crate::harness::has_org(&env, "openshift_held"),
        "the organization is deleted with its namespace once the integration is valid"
    );
    env.stop().await;
}

/// A Secret named like the operator's but without its label is a user's:
/// never replaced, deleted or linked; reported, and the rest of the
/// namespace is bridged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_users_secret_with_our_name_is_left_alone() {
    use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
    let env = env().await;
    namespace(&env, "mine").await;
    let secrets = Api::<Secret>::namespaced(env.client.clone(), "mine");
    let users: Secret = serde_json::from_value(json!({
        "metadata": {"name": "builder-quay-openshift", "labels": {"team": "mine"}},
        "type": "Opaque", "stringData": {"password": "users-own"}}))
    .unwrap();
    let created = secrets
        .create(&PostParams::default(), &users)
        .await
        .unwrap();
    integration(&env, "quay", json!({})).await;
    wait_for("a SecretConflict Warning", || async {
        events_on(&env, "default", "Namespace", "mine", "SecretConflict")
            .await
            .iter()
            .any(|e| e.type_.as_deref() == Some("Warning"))
    })
    .await;
    let sas = Api::<ServiceAccount>::namespaced(env.client.clone(), "mine");
    wait_for("the other accounts linked", || async {
        sas.get_opt("default").await.unwrap().is_some_and(|sa| {
            sa.image_pull_secrets
                .unwrap_or_default()
                .iter()
                .any(|r| r.name == "default-quay-openshift")
        })
    })
    .await;
    let now = secrets.get("builder-quay-openshift").await.unwrap();
    assert_eq!(
        now.metadata.uid, created.metadata.uid,
        "not deleted and re-created"
    );
    assert_eq!(
        now.metadata.resource_version, created.metadata.resource_version,
        "not written"
    );
    let builder = sas.get("builder").await.unwrap();
    let linked = builder
        .image_pull_secrets
        .unwrap_or_default()
        .iter()
        .any(|r| r.name == "builder-quay-openshift")
        || builder
            .secrets
            .unwrap_or_default()
            .iter()
            .any(|r| r.name.as_deref() == Some("builder-quay-openshift"));
    assert!(!linked, "a user's Secret is not linked for them");
    env.stop().await;
}

/// An organization without robots, repositories or default permissions
/// that holds a person's team is theirs: not adopted, not deleted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_organization_with_a_persons_team_is_not_taken() {
    use quay_bridge_operator::quay::TeamRole;
    let env = env().await;
    let admin = crate::common::client(&env.quay);
    admin
        .create_organization("openshift_taken", None)
        .await
        .unwrap();
    admin
        .put_team("openshift_taken", "designers", TeamRole::Member, "")
        .await
        .unwrap();
    integration(&env, "quay", json!({})).await;
    namespace(&env, "taken").await;
    wait_for("an OrganizationConflict Warning", || async {
        !events_on(
            &env,
            "default",
            "Namespace",
            "taken",
            "OrganizationConflict",
        )
        .await
        .is_empty()
    })
    .await;
    let org = &env.quay.snapshot().organizations["openshift_taken"];
    assert!(
        org.robots.is_empty(),
        "nothing created in a person's organization"
    );
    crate::harness::delete_namespace(&env, "taken").await;
    assert!(crate::harness::has_org(&env, "openshift_taken"));
    env.stop().await;
}

/// An organization of ours that a person added a team to is kept when
/// its namespace is deleted, with a Warning naming what it holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_organization_holding_a_persons_team_outlives_its_namespace() {
    use quay_bridge_operator::quay::TeamRole;
    let env = env().await;
    integration(&env, "quay", json!({})).await;
    namespace(&env, "shared").await;
    wait_for("shared", || converged(&env, "shared", &[])).await;
    crate::common::client(&env.quay)
        .put_team("openshift_shared", "designers", TeamRole::Member, "")
        .await
        .unwrap();
    let events = || {
        events_on(
            &env,
            "default",
            "Namespace",
            "shared",
            "OrganizationRetained",
        )
    };
    crate::harness::delete_namespace(&env, "shared").await;
    assert!(crate::harness::has_org(&env, "openshift_shared"));
    let notes: Vec<String> = events().await.into_iter().filter_map(|e| e.note).collect();
    assert!(
        notes.iter().any(|n| n.contains("team designers")),
        "{notes:?}"
    );
    env.stop().await;
}

/// An admin deletes a bridged namespace's organization in Quay; the next
/// change (a new ImageStream) meets Quay's answer for a repository in a
/// missing organization (a 500, as recorded): the view is dropped and the
/// retry rebuilds everything, long before the resync (600 s) would have
/// read Quay again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_organization_deleted_behind_the_operators_back_is_rebuilt_on_the_retry() {
    use k8s_openapi::api::core::v1::Secret;
    let env = env().await;
    integration(&env, "quay", json!({})).await;
    namespace(&env, "heal").await;
    wait_for("heal", || converged(&env, "heal", &[])).await;
    let admin = crate::common::client(&env.quay);
    admin.delete_organization("openshift_heal").await.unwrap();
    image_stream(&env, "heal", "app").await;
    wait_for("the organization rebuilt with the repository", || {
        converged(&env, "heal", &["app"])
    })
    .await;
    let secrets = Api::<Secret>::namespaced(env.client.clone(), "heal");
    wait_for("the Secret to hold the new robot's token", || async {
        let token = admin
            .get_robot("openshift_heal", "builder")
            .await
            .unwrap()
            .and_then(|r| r.token)
            .unwrap();
        let secret = secrets.get("builder-quay-openshift").await.unwrap();
        crate::safety::holds_token(&secret, "openshift_heal+builder", token.expose())
    })
    .await;
    env.stop().await;
}

/// An admin deletes a robot in Quay, then its Secret is deleted: the
/// cached view still holds the robot, Quay answers 404 for it, the view is
/// dropped and the retry recreates the robot and restores the Secret with
/// its token (before, nothing was written until the resync, 600 s later).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_robot_deleted_behind_the_operators_back_is_recreated_on_the_retry() {
    use k8s_openapi::api::core::v1::Secret;
    use kube::api::DeleteParams;
    let env = env().await;
    integration(&env, "quay", json!({})).await;
    namespace(&env, "robotless").await;
    wait_for("robotless", || converged(&env, "robotless", &[])).await;
    let admin = crate::common::client(&env.quay);
    admin
        .delete_robot("openshift_robotless", "builder")
        .await
        .unwrap();
    let secrets = Api::<Secret>::namespaced(env.client.clone(), "robotless");
    secrets
        .delete("builder-quay-openshift", &DeleteParams::default())
        .await
        .unwrap();
    wait_for("the robot recreated and its Secret restored", || async {
        let Some(token) = admin
            .get_robot("openshift_robotless", "builder")
            .await
            .unwrap()
            .and_then(|r| r.token)
        else {
            return false;
        };
        secrets
            .get_opt("builder-quay-openshift")
            .await
            .unwrap()
            .is_some_and(|s| {
                crate::safety::holds_token(&s, "openshift_robotless+builder", token.expose())
            })
    })
    .await;
    env.stop().await;
}

/// Team sync creates a team only after a fresh read shows it absent: a
/// person who made a team of that name while the operator's view missed
/// it keeps their team (description and role), reported as a conflict.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_team_made_by_a_person_since_the_view_is_never_overwritten() {
    use quay_sandbox::FaultConfig;
    let env = env().await;
    namespace(&env, "teamed").await;
    // The accounts exist first, so nothing but the backoff retries the
    // namespace after the failed team creation below.
    wait_for("the service accounts", || async {
        Api::<k8s_openapi::api::core::v1::ServiceAccount>::namespaced(env.client.clone(), "teamed")
            .get_opt("deployer")
            .await
            .unwrap()
            .is_some()
    })
    .await;
    let viewers = "/api/v1/organization/openshift_teamed/team/viewers";
    // Quay refuses the operator's creation of `viewers` (a 403 neither
    // contradicts the view nor means Quay is down): the reconcile fails
    // with a view holding the other teams.
    env.quay.set_faults(
        FaultConfig {
            error_rate: 1.0,
            error_status: Some(403),
            path_prefix: Some(viewers.into()),
            method: Some("PUT".into()),
            ..Default::default()
        },
        None,
    );
    integration(&env, "quay", json!({"teamSync": {"enabled": true}})).await;
    wait_for("the refused team creation", || async {
        env.quay
            .requests()
            .iter()
            .any(|r| r.path == viewers && r.status == 403)
    })
    .await;
    // Meanwhile a person makes their own `viewers`. The fault keeps
    // refusing the operator's spelling of the path; the person's request
    // escapes a letter of it, which Quay decodes to the same team, so no
    // retry of the operator can slip in before it.
    let person = reqwest::Client::new()
        .put(format!(
            "{}/api/v1/organization/openshift_teamed/team/%76iewers",
            env.quay.url()
        ))
        .bearer_auth(env.quay.admin_token().expose())
        .json(&json!({"role": "creator", "description": "our viewers"}))
        .send()
        .await
        .unwrap();
    assert!(person.status().is_success(), "{}", person.status());
    wait_for("a TeamConflict Warning", || async {
        !events_on(&env, "default", "Namespace", "teamed", "TeamConflict")
            .await
            .is_empty()
    })
    .await;
    let org = &env.quay.snapshot().organizations["openshift_teamed"];
    let team = &org.teams["viewers"];
    assert_eq!(team.description, "our viewers", "{team:?}");
    env.stop().await;
}
