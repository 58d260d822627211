//! The embedded registry enforces Quay's repository permissions on pushes
//! and pulls with robot credentials.

use crate::common;
use kube_sandbox::registry_client::{Credentials, RegistryClient, RegistryError};
use quay_bridge_operator::quay::types::NewRobot;
use quay_bridge_operator::quay::{Role, Visibility};

fn creds(robot: &quay_bridge_operator::quay::types::Robot) -> Credentials {
    Credentials {
        username: robot.name.clone(),
        password: robot.token.clone().unwrap(),
    }
}

#[tokio::test]
async fn robots_push_and_pull_by_their_roles() {
    let quay = common::quay().await;
    let client = common::client(&quay);
    client.create_organization("team", None).await.unwrap();
    let builder = client
        .create_robot("team", "builder", &NewRobot::default())
        .await
        .unwrap();
    let puller = client
        .create_robot("team", "default", &NewRobot::default())
        .await
        .unwrap();
    let outsider = client
        .create_robot("team", "deployer", &NewRobot::default())
        .await
        .unwrap();
    client
        .create_repository("team", "app", Visibility::Private, "")
        .await
        .unwrap();
    client
        .set_repository_permission("team", "app", "team+builder", Role::Write)
        .await
        .unwrap();
    client
        .set_repository_permission("team", "app", "team+default", Role::Read)
        .await
        .unwrap();

    let registry = RegistryClient::new(reqwest::Client::new(), quay.url());
    let digest = registry
        .push_image("team/app", "latest", b"hello", &creds(&builder))
        .await
        .unwrap();
    assert!(digest.starts_with("sha256:"));
    assert_eq!(
        quay.snapshot().organizations["team"].repositories["app"].tags["latest"],
        digest
    );

    // Read-only robots pull but cannot push.
    assert_eq!(
        registry
            .manifest_digest("team/app", "latest", Some(&creds(&puller)))
            .await
            .unwrap(),
        digest
    );
    let denied = registry
        .push_image("team/app", "evil", b"x", &creds(&puller))
        .await
        .unwrap_err();
    assert!(
        matches!(denied, RegistryError::Denied { action: "push", .. }),
        "{denied:?}"
    );
    // Robots without any permission cannot pull a private repository.
    let denied = registry
        .manifest_digest("team/app", "latest", Some(&creds(&outsider)))
        .await
        .unwrap_err();
    assert!(
        matches!(denied, RegistryError::Denied { action: "pull", .. }),
        "{denied:?}"
    );
    // Nor can anonymous users, until it is public.
    assert!(matches!(
        registry.manifest_digest("team/app", "latest", None).await,
        Err(RegistryError::Denied { .. })
    ));
    client
        .set_repository_visibility("team", "app", Visibility::Public)
        .await
        .unwrap();
    assert_eq!(
        registry
            .manifest_digest("team/app", "latest", None)
            .await
            .unwrap(),
        digest
    );

    // A robot cannot create a repository by pushing to it.
    let denied = registry
        .push_image("team/new", "latest", b"x", &creds(&builder))
        .await
        .unwrap_err();
    assert!(matches!(denied, RegistryError::Denied { .. }), "{denied:?}");
    assert!(
        !quay.snapshot().organizations["team"]
            .repositories
            .contains_key("new")
    );

    // A missing tag is not found.
    assert!(matches!(
        registry
            .manifest_digest("team/app", "nope", Some(&creds(&puller)))
            .await,
        Err(RegistryError::NotFound(_))
    ));
}

#[tokio::test]
async fn a_regenerated_token_invalidates_the_old_credentials() {
    let quay = common::quay().await;
    let client = common::client(&quay);
    client.create_organization("team2", None).await.unwrap();
    let old = client
        .create_robot("team2", "builder", &NewRobot::default())
        .await
        .unwrap();
    client
        .create_repository("team2", "app", Visibility::Private, "")
        .await
        .unwrap();
    client
        .set_repository_permission("team2", "app", "team2+builder", Role::Write)
        .await
        .unwrap();
    let registry = RegistryClient::new(reqwest::Client::new(), quay.url());
    registry
        .push_image("team2/app", "v1", b"a", &creds(&old))
        .await
        .unwrap();
    let new = client
        .regenerate_robot_token("team2", "builder")
        .await
        .unwrap();
    let err = registry
        .push_image("team2/app", "v2", b"b", &creds(&old))
        .await
        .unwrap_err();
    assert!(matches!(err, RegistryError::LoginFailed(401)), "{err:?}");
    registry
        .push_image("team2/app", "v2", b"b", &creds(&new))
        .await
        .unwrap();
}

#[tokio::test]
async fn v2_challenges_and_rejects_bad_manifests() {
    let quay = common::quay().await;
    let http = reqwest::Client::new();
    let resp = http
        .get(format!("{}/v2/", quay.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let challenge = resp.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_owned();
    let host = quay.url().trim_start_matches("http://").to_owned();
    assert_eq!(
        challenge,
        format!("Bearer realm=\"{}/v2/auth\",service=\"{host}\"", quay.url())
    );

    let client = common::client(&quay);
    client.create_organization("team3", None).await.unwrap();
    client
        .create_repository("team3", "app", Visibility::Private, "")
        .await
        .unwrap();
    let registry = RegistryClient::new(http.clone(), quay.url());
    let admin = Credentials {
        username: "$oauthtoken".into(),
        password: quay.admin_token(),
    };
    let token = registry
        .token("team3/app", "pull,push", Some(&admin))
        .await
        .unwrap();
    let ok = http
        .get(format!("{}/v2/", quay.url()))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    // A manifest naming a blob that was never uploaded is refused.
    let manifest = serde_json::json!({"schemaVersion": 2, "config": {"digest": "sha256:00", "size": 1}, "layers": []});
    let resp = http
        .put(format!("{}/v2/team3/app/manifests/latest", quay.url()))
        .bearer_auth(&token)
        .body(manifest.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    assert!(resp.text().await.unwrap().contains("MANIFEST_BLOB_UNKNOWN"));
    // Wrong credentials are refused at the token exchange.
    let bad = Credentials {
        username: "team3+nobody".into(),
        password: "x".into(),
    };
    assert!(matches!(
        registry.token("team3/app", "pull", Some(&bad)).await,
        Err(RegistryError::LoginFailed(401))
    ));
}
