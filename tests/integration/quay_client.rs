//! Every client call against the embedded Quay, and how Quay's real answers
//! map to client errors.

use crate::common;
use kube_sandbox::registry_client::{Credentials, RegistryClient};
use quay_bridge_operator::quay::endpoint as ep;
use quay_bridge_operator::quay::types::NewRobot;
use quay_bridge_operator::quay::{Category, QuayError, QuayMetrics, Role, Visibility};

#[tokio::test]
async fn current_user_and_organizations() {
    let quay = common::quay().await;
    let client = common::client(&quay);
    let me = client.current_user().await.unwrap();
    assert_eq!(me.username, "admin");
    assert!(me.super_user);

    assert_eq!(
        client.get_organization("openshift_demo").await.unwrap(),
        None
    );
    client
        .create_organization("openshift_demo", Some("ops@example.com"))
        .await
        .unwrap();
    let org = client
        .get_organization("openshift_demo")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(org.name, "openshift_demo");
    assert!(org.is_admin);
    assert_eq!(org.email, "ops@example.com");
    // The creating user owns it.
    assert_eq!(
        quay.snapshot().organizations["openshift_demo"].owners,
        vec!["admin".to_owned()]
    );
    assert!(
        client
            .current_user()
            .await
            .unwrap()
            .organizations
            .iter()
            .any(|o| o.name == "openshift_demo" && o.is_org_admin)
    );

    let dup = client
        .create_organization("openshift_demo", None)
        .await
        .unwrap_err();
    assert!(dup.is_already_exists(), "{dup:?}");
    let taken_by_user = client.create_organization("admin", None).await.unwrap_err();
    assert!(taken_by_user.is_already_exists());

    client.delete_organization("openshift_demo").await.unwrap();
    assert_eq!(
        client.get_organization("openshift_demo").await.unwrap(),
        None
    );
    assert!(
        client
            .delete_organization("openshift_demo")
            .await
            .unwrap_err()
            .is_not_found()
    );

    // Quay holds a deleted name until its namespace GC runs.
    let held = client
        .create_organization("openshift_demo", None)
        .await
        .unwrap_err();
    assert!(
        matches!(held, QuayError::InvalidRequest { status: 400, ref message, .. } if message == "Username is not available"),
        "{held:?}"
    );
    quay.collect_deleted_namespaces();
    client
        .create_organization("openshift_demo", None)
        .await
        .unwrap();
}

#[tokio::test]
async fn robots() {
    let quay = common::quay().await;
    let client = common::client(&quay);
    client.create_organization("org1", None).await.unwrap();
    assert_eq!(
        client.get_robot("org1", "builder").await.unwrap(),
        None,
        "Quay's 400 for a missing robot is None"
    );

    let mut metadata = serde_json::Map::new();
    metadata.insert("cluster".into(), "c1".into());
    let created = client
        .create_robot(
            "org1",
            "builder",
            &NewRobot {
                description: "managed by test".into(),
                unstructured_metadata: Some(metadata.clone()),
            },
        )
        .await
        .unwrap();
    assert_eq!(created.name, "org1+builder");
    assert_eq!(created.short_name(), "builder");
    let token = created.token.clone().unwrap();
    assert_eq!(token.expose().len(), 64);
    assert_eq!(quay.robot_token("org1", "builder").unwrap(), token);

    let fetched = client.get_robot("org1", "builder").await.unwrap().unwrap();
    assert_eq!(fetched.token.as_ref(), Some(&token));
    assert_eq!(fetched.description, "managed by test");
    assert_eq!(fetched.unstructured_metadata, Some(metadata));

    let dup = client
        .create_robot("org1", "builder", &NewRobot::default())
        .await
        .unwrap_err();
    assert!(dup.is_already_exists(), "{dup:?}");
    let missing_org = client
        .create_robot("nosuchorg", "builder", &NewRobot::default())
        .await
        .unwrap_err();
    assert!(missing_org.is_not_found(), "{missing_org:?}");

    client
        .create_robot("org1", "deployer", &NewRobot::default())
        .await
        .unwrap();
    let with_tokens = client.list_robots("org1", true).await.unwrap();
    assert_eq!(
        with_tokens
            .iter()
            .map(|r| r.name.as_str())
            .collect::<Vec<_>>(),
        ["org1+builder", "org1+deployer"]
    );
    assert!(with_tokens.iter().all(|r| r.token.is_some()));
    assert_eq!(
        with_tokens[0].description, "managed by test",
        "the list carries descriptions (ownership markers)"
    );
    assert!(
        client
            .list_robots("org1", false)
            .await
            .unwrap()
            .iter()
            .all(|r| r.token.is_none())
    );

    let regenerated = client
        .regenerate_robot_token("org1", "builder")
        .await
        .unwrap();
    assert_ne!(regenerated.token.as_ref(), Some(&token));
    assert_eq!(quay.robot_token("org1", "builder"), regenerated.token);

    client.delete_robot("org1", "builder").await.unwrap();
    assert_eq!(client.get_robot("org1", "builder").await.unwrap(), None);
    assert!(
        client
            .delete_robot("org1", "builder")
            .await
            .unwrap_err()
            .is_not_found()
    );
    assert!(
        client
            .regenerate_robot_token("org1", "builder")
            .await
            .unwrap_err()
            .is_not_found()
    );
}

#[tokio::test]
async fn prototypes_apply_to_repositories_created_afterwards() {
    let quay = common::quay().await;
    let client = common::client(&quay);
    client.create_organization("org2", None).await.unwrap();
    client
        .create_robot("org2", "builder", &NewRobot::default())
        .await
        .unwrap();
    assert!(client.list_prototypes("org2").await.unwrap().is_empty());
    let p = client
        .create_robot_prototype("org2", "builder", Role::Write)
        .await
        .unwrap();
    assert_eq!(p.role, Role::Write);
    assert_eq!(p.delegate.name, "org2+builder");
    assert!(p.delegate.is_robot);
    let listed = client.list_prototypes("org2").await.unwrap();
    assert_eq!(listed, vec![p.clone()]);

    // A missing delegate is refused.
    let ghost = client
        .create_robot_prototype("org2", "ghost", Role::Read)
        .await
        .unwrap_err();
    assert!(
        matches!(ghost, QuayError::InvalidRequest { ref message, .. } if message == "Missing delegate user or team"),
        "{ghost:?}"
    );

    client
        .create_repository("org2", "app", Visibility::Private, "")
        .await
        .unwrap();
    let perm = client
        .get_repository_permission("org2", "app", "org2+builder")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        perm.role,
        Role::Write,
        "the admin-created repository got the default permission"
    );

    client.delete_prototype("org2", &p.id).await.unwrap();
    assert!(client.list_prototypes("org2").await.unwrap().is_empty());
    assert!(
        client
            .delete_prototype("org2", &p.id)
            .await
            .unwrap_err()
            .is_not_found()
    );
    assert!(
        client
            .list_prototypes("nosuchorg")
            .await
            .unwrap_err()
            .is_not_found()
    );
    assert!(matches!(
        client.delete_prototype("org2", "../x").await,
        Err(QuayError::Config(_))
    ));
}

#[tokio::test]
async fn repositories_and_permissions() {
    let quay = common::quay().await;
    let client = common::client(&quay);
    client.create_organization("org3", None).await.unwrap();
    client
        .create_robot("org3", "default", &NewRobot::default())
        .await
        .unwrap();
    assert_eq!(client.get_repository("org3", "web").await.unwrap(), None);
    client
        .create_repository("org3", "web", Visibility::Private, "")
        .await
        .unwrap();
    let repo = client.get_repository("org3", "web").await.unwrap().unwrap();
    assert_eq!(
        (repo.namespace.as_str(), repo.name.as_str(), repo.is_public),
        ("org3", "web", false)
    );
    assert!(
        client
            .create_repository("org3", "web", Visibility::Private, "")
            .await
            .unwrap_err()
            .is_already_exists()
    );

    client
        .set_repository_visibility("org3", "web", Visibility::Public)
        .await
        .unwrap();
    assert!(
        client
            .get_repository("org3", "web")
            .await
            .unwrap()
            .unwrap()
            .is_public
    );

    assert_eq!(
        client
            .get_repository_permission("org3", "web", "org3+default")
            .await
            .unwrap(),
        None
    );
    let set = client
        .set_repository_permission("org3", "web", "org3+default", Role::Read)
        .await
        .unwrap();
    assert_eq!((set.role, set.is_robot), (Role::Read, true));
    let all = client
        .list_repository_permissions("org3", "web")
        .await
        .unwrap();
    assert!(
        all.iter()
            .any(|p| p.name == "org3+default" && p.role == Role::Read)
    );
    assert!(
        all.iter()
            .any(|p| p.name == "admin" && p.role == Role::Admin)
    );
    client
        .delete_repository_permission("org3", "web", "org3+default")
        .await
        .unwrap();
    assert!(
        client
            .delete_repository_permission("org3", "web", "org3+default")
            .await
            .unwrap_err()
            .is_not_found()
    );
    let ghost = client
        .set_repository_permission("org3", "web", "org3+ghost", Role::Read)
        .await
        .unwrap_err();
    assert!(
        matches!(ghost, QuayError::InvalidRequest { .. }),
        "{ghost:?}"
    );

    // Real Quay's 500 for a permission on a missing repository.
    let missing = client
        .set_repository_permission("org3", "nosuchrepo", "org3+default", Role::Read)
        .await
        .unwrap_err();
    assert!(
        matches!(missing, QuayError::Server { status: 500, .. }),
        "{missing:?}"
    );
    // ... and for a repository in a missing organization.
    let no_org = client
        .create_repository("nosuchorg", "web", Visibility::Private, "")
        .await
        .unwrap_err();
    assert!(
        matches!(no_org, QuayError::Server { status: 500, .. }),
        "{no_org:?}"
    );

    client.delete_repository("org3", "web").await.unwrap();
    assert_eq!(client.get_repository("org3", "web").await.unwrap(), None);
    client.delete_repository("org3", "web").await.unwrap(); // idempotent in Quay
}

#[tokio::test]
async fn repository_list_follows_pages() {
    let quay = common::quay().await;
    let client = common::client(&quay);
    client.create_organization("big", None).await.unwrap();
    client.create_organization("other", None).await.unwrap();
    client
        .create_repository("other", "notmine", Visibility::Private, "")
        .await
        .unwrap();
    for i in 0..230 {
        client
            .create_repository("big", &format!("repo{i:03}"), Visibility::Private, "")
            .await
            .unwrap();
    }
    quay.clear_requests();
    let repos = client.list_repositories("big").await.unwrap();
    assert_eq!(repos.len(), 230);
    assert!(repos.iter().all(|r| r.namespace == "big"));
    assert_eq!(
        quay.request_counts().get("GET /api/v1/repository"),
        Some(&3),
        "three pages of at most 100"
    );
}

#[tokio::test]
async fn tags_show_pushed_images() {
    let quay = common::quay().await;
    let client = common::client(&quay);
    client.create_organization("org4", None).await.unwrap();
    let robot = client
        .create_robot("org4", "builder", &NewRobot::default())
        .await
        .unwrap();
    client
        .create_repository("org4", "app", Visibility::Private, "")
        .await
        .unwrap();
    client
        .set_repository_permission("org4", "app", "org4+builder", Role::Write)
        .await
        .unwrap();
    assert!(client.list_tags("org4", "app").await.unwrap().is_empty());

    let registry = RegistryClient::new(reqwest::Client::new(), quay.url());
    let creds = Credentials {
        username: robot.name.clone(),
        password: robot.token.clone().unwrap(),
    };
    let digest = registry
        .push_image("org4/app", "v1", b"layer one", &creds)
        .await
        .unwrap();
    registry
        .push_image("org4/app", "latest", b"layer one", &creds)
        .await
        .unwrap();
    let tags = client.list_tags("org4", "app").await.unwrap();
    let mut names: Vec<&str> = tags.iter().map(|t| t.name.as_str()).collect();
    names.sort();
    assert_eq!(names, ["latest", "v1"]);
    assert!(
        tags.iter()
            .all(|t| t.manifest_digest.as_deref() == Some(digest.as_str()))
    );
}

#[tokio::test]
async fn invalid_names_are_refused_before_any_request() {
    let quay = common::quay().await;
    let client = common::client(&quay);
    for result in [
        client.create_organization("Bad_Org", None).await,
        client.create_organization("a--b", None).await,
        client.create_organization("x", None).await,
        client.delete_organization("_ns").await,
        client
            .create_repository("org", "Repo", Visibility::Private, "")
            .await,
    ] {
        let err = result.unwrap_err();
        assert!(matches!(err, QuayError::InvalidName(_)), "{err:?}");
        assert_eq!(err.category(), Category::InvalidRequest);
    }
    assert!(matches!(
        client.get_robot("org", "org+x").await,
        Err(QuayError::InvalidName(_))
    ));
    assert!(
        quay.requests().is_empty(),
        "no request reached Quay: {:?}",
        quay.requests()
    );
}

#[tokio::test]
async fn auth_failures_map_like_real_quay() {
    let quay = common::quay().await;
    let bad = common::client_with(
        &quay,
        "notarealtoken0000000000000000000000000000".into(),
        QuayMetrics::default(),
    );
    let read_err = bad.current_user().await.unwrap_err();
    assert!(
        matches!(read_err, QuayError::Unauthorized { ref message, .. } if message == "Requires authentication"),
        "{read_err:?}"
    );
    assert!(read_err.is_dead_token());
    // The client stops using a dead token: the next call makes no request.
    assert!(bad.token_rejected());
    quay.clear_requests();
    let stopped = bad.list_robots("neworg", false).await.unwrap_err();
    assert!(
        matches!(stopped, QuayError::TokenRejected { .. }),
        "{stopped:?}"
    );
    assert!(quay.requests().is_empty(), "{:?}", quay.requests());
    // A write without a valid token hits Quay's CSRF check: 403, not 401
    // (a fresh client, which has not seen the token refused).
    let fresh = bad.with_token("notarealtoken0000000000000000000000000000".into());
    let write_err = fresh.create_organization("neworg", None).await.unwrap_err();
    assert!(
        matches!(write_err, QuayError::Forbidden { ref message, .. } if message.contains("CSRF")),
        "{write_err:?}"
    );
    assert_eq!(write_err.category(), Category::Auth);
    assert!(write_err.is_dead_token() && fresh.token_rejected());

    let read_only = common::client_with(
        &quay,
        quay.issue_token("admin", &["repo:read"], None),
        QuayMetrics::default(),
    );
    let scope_err = read_only
        .create_organization("neworg", None)
        .await
        .unwrap_err();
    assert_eq!(
        scope_err.missing_scope(),
        Some("user:admin"),
        "{scope_err:?}"
    );
    assert!(
        scope_err.to_string().contains("lacks scope user:admin"),
        "{scope_err}"
    );
    assert!(!scope_err.is_dead_token());

    let expired = common::client_with(
        &quay,
        quay.issue_token("admin", &["user:read"], Some(std::time::Duration::ZERO)),
        QuayMetrics::default(),
    );
    assert!(matches!(
        expired.current_user().await,
        Err(QuayError::Unauthorized { .. })
    ));

    // A user who does not own the organization cannot manage its robots.
    let admin = common::client(&quay);
    admin.create_organization("owned", None).await.unwrap();
    quay.add_user("mallory", "pw", false);
    let all: Vec<&str> = vec![
        "org:admin",
        "repo:admin",
        "repo:create",
        "user:admin",
        "user:read",
    ];
    let mallory = common::client_with(
        &quay,
        quay.issue_token("mallory", &all, None),
        QuayMetrics::default(),
    );
    assert!(matches!(
        mallory.list_robots("owned", true).await,
        Err(QuayError::Forbidden { .. })
    ));
    assert!(matches!(
        mallory.delete_organization("owned").await,
        Err(QuayError::Forbidden { .. })
    ));
    assert!(quay.snapshot().organizations.contains_key("owned"));
}

#[tokio::test]
async fn metrics_count_requests_by_endpoint_and_status_class() {
    let quay = common::quay().await;
    let metrics = QuayMetrics::default();
    let client = common::client_with(&quay, quay.admin_token(), metrics.clone());
    client.get_organization("org5").await.unwrap();
    client.create_organization("org5", None).await.unwrap();
    client.get_organization("org5").await.unwrap();
    assert_eq!(metrics.count(ep::ORG_GET, "4xx"), 1);
    assert_eq!(metrics.count(ep::ORG_GET, "2xx"), 1);
    assert_eq!(metrics.count(ep::ORG_CREATE, "2xx"), 1);
}

#[tokio::test]
async fn path_prefix_in_the_base_url_is_kept() {
    common::init();
    use quay_sandbox::{EmbeddedQuay, EmbeddedQuayConfig};
    let quay = EmbeddedQuay::start(EmbeddedQuayConfig {
        path_prefix: "/quay".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    let mut config = quay_bridge_operator::quay::QuayClientConfig::new(
        format!("{}/quay/", quay.url()),
        quay.admin_token(),
    );
    config.retry = common::fast_retry();
    let client =
        quay_bridge_operator::quay::QuayClient::new(config, QuayMetrics::default()).unwrap();
    assert_eq!(client.current_user().await.unwrap().username, "admin");
    client.create_organization("prefixed", None).await.unwrap();
    assert!(client.get_organization("prefixed").await.unwrap().is_some());
    // Without the prefix nothing answers.
    let bare = common::client(&quay);
    assert!(bare.current_user().await.unwrap_err().is_not_found());
}
