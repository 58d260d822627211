//! Team sync: a namespace's RoleBindings (and the OpenShift Groups they
//! name) become the members of its organization's teams, and through the
//! teams people reach the project's repositories with their own
//! credentials.

use crate::harness::{
    Env, converged, env_with, fast_options, image_stream, integration, namespace, wait_for,
};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::api::rbac::v1::RoleBinding;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube_sandbox::registry_client::{Credentials, RegistryClient};
use quay_bridge_operator::crd::QuayIntegration;
use quay_bridge_operator::openshift::Group;
use quay_bridge_operator::quay::TeamRole as ClientTeamRole;
use quay_sandbox::TeamRole;
use serde_json::json;
use std::time::Duration;

const TEAM_SYNC: &str = r#"{"teamSync": {"enabled": true}}"#;

async fn bind(env: &Env, ns: &str, name: &str, role: &str, kind: &str, subject: &str) {
    let rb: RoleBinding = serde_json::from_value(json!({
        "metadata": {"name": name},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
        "subjects": [{"kind": kind, "name": subject, "apiGroup": "rbac.authorization.k8s.io"}],
    }))
    .unwrap();
    Api::<RoleBinding>::namespaced(env.client.clone(), ns)
        .create(&PostParams::default(), &rb)
        .await
        .unwrap();
}

async fn unbind(env: &Env, ns: &str, name: &str) {
    Api::<RoleBinding>::namespaced(env.client.clone(), ns)
        .delete(name, &DeleteParams::default())
        .await
        .unwrap();
}

fn members(env: &Env, org: &str, team: &str) -> Vec<String> {
    env.quay
        .snapshot()
        .organizations
        .get(org)
        .and_then(|o| o.teams.get(team))
        .map(|t| t.members.clone())
        .unwrap_or_default()
}

async fn push(env: &Env, user: &str, password: &str, tag: &str) -> bool {
    let registry = RegistryClient::new(reqwest::Client::new(), env.quay.url());
    let creds = Credentials {
        username: user.into(),
        password: password.into(),
    };
    registry
        .push_image("openshift_proj/app", tag, tag.as_bytes(), &creds)
        .await
        .is_ok()
}

async fn teams_env() -> Env {
    teams_env_with(Duration::from_secs(600)).await
}

async fn teams_env_with(resync: Duration) -> Env {
    let options = quay_bridge_operator::controller::context::Options {
        resync,
        ..fast_options()
    };
    let env = env_with(options, Duration::from_millis(50)).await;
    for user in ["alice", "bob", "carol", "dave"] {
        env.quay.add_user(user, &format!("{user}-pw"), false);
    }
    integration(&env, "quay", serde_json::from_str(TEAM_SYNC).unwrap()).await;
    namespace(&env, "proj").await;
    image_stream(&env, "proj", "app").await;
    wait_for("proj", || converged(&env, "proj", &["app"])).await;
    wait_for("the managed teams", || async {
        env.quay.snapshot().organizations["openshift_proj"]
            .teams
            .len()
            == 4
    })
    .await;
    env
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bound_developer_joins_the_team_and_pushes_with_their_own_credentials() {
    let env = teams_env().await;
    let org = "openshift_proj";
    let snap = env.quay.snapshot();
    let o = &snap.organizations[org];
    assert_eq!(o.teams["admins"].role, TeamRole::Admin);
    assert_eq!(o.teams["editors"].role, TeamRole::Member);
    assert!(
        o.teams["editors"]
            .description
            .starts_with("managed by quay-bridge-operator;")
    );
    assert_eq!(
        o.team_prototypes,
        vec![
            ("editors".to_owned(), quay_sandbox::Role::Write),
            ("viewers".to_owned(), quay_sandbox::Role::Read)
        ]
    );
    // The repository has the teams' roles (from their default permissions).
    assert_eq!(
        o.repositories["app"].team_permissions.get("editors"),
        Some(&quay_sandbox::Role::Write)
    );
    // Someone's own team, made by hand in Quay.
    let admin = crate::common::client(&env.quay);
    admin
        .put_team(org, "designers", ClientTeamRole::Member, "")
        .await
        .unwrap();
    admin
        .add_team_member(org, "designers", "bob")
        .await
        .unwrap();

    assert!(!push(&env, "alice", "alice-pw", "before").await);
    bind(&env, "proj", "alice-edit", "edit", "User", "alice").await;
    wait_for("alice in editors", || async {
        members(&env, org, "editors") == ["alice"]
    })
    .await;
    assert!(
        push(&env, "alice", "alice-pw", "v1").await,
        "alice pushes through her team"
    );
    assert!(!push(&env, "bob", "bob-pw", "v1").await);

    unbind(&env, "proj", "alice-edit").await;
    wait_for("alice out of editors", || async {
        members(&env, org, "editors").is_empty()
    })
    .await;
    assert!(!push(&env, "alice", "alice-pw", "v2").await);

    // Groups are expanded and followed.
    let groups: Api<Group> = Api::all(env.client.clone());
    let group: Group =
        serde_json::from_value(json!({"metadata": {"name": "devs"}, "users": ["carol"]})).unwrap();
    groups.create(&PostParams::default(), &group).await.unwrap();
    bind(&env, "proj", "devs-view", "view", "Group", "devs").await;
    wait_for("carol in viewers", || async {
        members(&env, org, "viewers") == ["carol"]
    })
    .await;
    groups
        .patch(
            "devs",
            &PatchParams::default(),
            &Patch::Merge(json!({"users": ["dave"]})),
        )
        .await
        .unwrap();
    wait_for("the group change in viewers", || async {
        members(&env, org, "viewers") == ["dave"]
    })
    .await;

    // The hand-made team was never touched.
    assert_eq!(members(&env, org, "designers"), ["bob"]);
    let touched = env
        .quay
        .requests()
        .iter()
        .filter(|r| r.path.contains("/team/designers") && r.method != "GET")
        .count();
    assert_eq!(touched, 2, "only this test's own two calls");
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_user_is_reported_once_and_added_when_quay_knows_them() {
    let env = teams_env_with(Duration::from_secs(5)).await;
    let org = "openshift_proj";
    bind(&env, "proj", "ghost-edit", "edit", "User", "ghost").await;
    // Events about a Namespace (cluster-scoped) live in `default`.
    let events: Api<Event> = Api::namespaced(env.client.clone(), "default");
    wait_for("Quay asked about ghost", || async {
        env.quay
            .requests()
            .iter()
            .any(|r| r.path.ends_with("/members/ghost"))
    })
    .await;
    wait_for("the UnknownQuayUser Event", || async {
        events
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .iter()
            .any(|e| {
                e.reason.as_deref() == Some("UnknownQuayUser")
                    && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("proj")
                    && e.note.as_deref().is_some_and(|m| m.contains("ghost"))
            })
    })
    .await;
    let qis: Api<QuayIntegration> = Api::all(env.client.clone());
    wait_for("the status count", || async {
        qis.get("quay")
            .await
            .unwrap()
            .status
            .and_then(|s| s.team_sync)
            .is_some_and(|t| t.unknown_users == 1)
    })
    .await;
    // Other changes in the namespace do not ask Quay about ghost again.
    bind(&env, "proj", "alice-view", "view", "User", "alice").await;
    wait_for("alice in viewers", || async {
        members(&env, org, "viewers") == ["alice"]
    })
    .await;
    let asked = |env: &Env| {
        env.quay
            .requests()
            .iter()
            .filter(|r| r.method == "PUT" && r.path.ends_with("/members/ghost"))
            .count()
    };
    assert_eq!(asked(&env), 1);
    let reports = events
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .iter()
        .filter(|e| e.reason.as_deref() == Some("UnknownQuayUser"))
        .map(|e| e.series.as_ref().map_or(1, |s| s.count))
        .sum::<i32>();
    assert_eq!(reports, 1, "reported once");
    // Once Quay knows the user, the next resync adds them.
    env.quay.add_user("ghost", "ghost-pw", false);
    wait_for("ghost in editors", || async {
        members(&env, org, "editors") == ["ghost"]
    })
    .await;
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn team_sync_disabled_changes_nothing_in_quay() {
    let env = env_with(fast_options(), Duration::from_millis(50)).await;
    env.quay.add_user("alice", "alice-pw", false);
    integration(&env, "quay", json!({})).await;
    namespace(&env, "plain").await;
    bind(&env, "plain", "alice-edit", "edit", "User", "alice").await;
    wait_for("plain", || converged(&env, "plain", &[])).await;
    // One more reconcile of the namespace after the binding (a new
    // ImageStream), then nothing about teams was asked or made.
    image_stream(&env, "plain", "app").await;
    wait_for("plain with app", || converged(&env, "plain", &["app"])).await;
    let snap = env.quay.snapshot();
    let o = &snap.organizations["openshift_plain"];
    assert_eq!(o.teams.keys().collect::<Vec<_>>(), ["owners"]);
    assert!(o.team_prototypes.is_empty());
    assert!(
        env.quay
            .requests()
            .iter()
            .all(|r| !r.template.contains("/team/") && !r.template.ends_with("/members")),
        "no team call"
    );
    env.stop().await;
}

/// A resync of an unchanged namespace with team sync on reads Quay with
/// two more GETs than without (the organization and its members), and
/// writes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unchanged_namespace_costs_two_more_gets_at_resync() {
    let options = quay_bridge_operator::controller::context::Options {
        resync: Duration::from_secs(2),
        ..fast_options()
    };
    let env = env_with(options, Duration::from_millis(50)).await;
    env.quay.add_user("alice", "alice-pw", false);
    integration(&env, "quay", serde_json::from_str(TEAM_SYNC).unwrap()).await;
    namespace(&env, "steady").await;
    image_stream(&env, "steady", "app").await;
    bind(&env, "steady", "alice-edit", "edit", "User", "alice").await;
    wait_for("alice in editors and every grant made", || async {
        let snap = env.quay.snapshot();
        snap.organizations.get("openshift_steady").is_some_and(|o| {
            o.teams
                .get("editors")
                .is_some_and(|t| t.members == ["alice"])
                && o.repositories
                    .get("app")
                    .is_some_and(|r| r.team_permissions.len() == 2)
        })
    })
    .await;
    // A new namespace's teams come before its repositories, which get the
    // teams' roles from their default permissions: no explicit grant.
    let grants = env
        .quay
        .requests()
        .iter()
        .filter(|r| r.template.contains("/permissions/team/"))
        .count();
    assert_eq!(
        grants, 0,
        "no explicit team grant for a repository the operator created"
    );
    env.quay.clear_requests();
    let done = |env: &Env| {
        let r = env.quay.requests();
        r.iter().any(|r| r.template.ends_with("/members"))
            && r.iter().filter(|r| r.template != "/api/v1/user/").count() >= 5
    };
    wait_for("a resync", || async { done(&env) }).await;
    let mut seen: Vec<String> = env
        .quay
        .requests()
        .iter()
        .filter(|r| r.template != "/api/v1/user/")
        .map(|r| format!("{} {}", r.method, r.template))
        .collect();
    seen.sort();
    seen.truncate(5);
    assert_eq!(
        seen,
        [
            "GET /api/v1/organization/{org}",
            "GET /api/v1/organization/{org}/members",
            "GET /api/v1/organization/{org}/prototypes",
            "GET /api/v1/organization/{org}/robots",
            "GET /api/v1/repository",
        ]
    );
    let writes: Vec<String> = env
        .quay
        .requests()
        .iter()
        .filter(|r| r.method != "GET")
        .map(|r| format!("{} {} {}", r.method, r.path, r.status))
        .collect();
    assert!(writes.is_empty(), "no write at resync: {writes:?}");
    env.stop().await;
}
