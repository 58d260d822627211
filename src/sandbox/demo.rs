//! `quay-bridge-operator sandbox --demo`: the `oc new-app` story end to end
//! on the embedded cluster and Quay, told step by step.

use super::cmd::{OperatorSettings, QuayCredentials, RunningOperator, start_operator};
use base64::Engine;
use k8s_openapi::api::core::v1::{Namespace, Secret, ServiceAccount};
use kube::api::{Api, DynamicObject, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube_sandbox::registry_client::{Credentials, RegistryClient};
use kube_sandbox::{EmbeddedKube, EmbeddedKubeConfig};
use quay_sandbox::{EmbeddedQuay, EmbeddedQuayConfig};
use serde_json::{Value, json};
use std::future::Future;
use std::time::{Duration, Instant};

/// Why the demo stopped.
#[derive(Debug, thiserror::Error)]
#[error("{step}: {message}")]
pub struct DemoError {
    step: String,
    message: String,
}

fn fail(step: &str, e: impl std::fmt::Display) -> DemoError {
    DemoError {
        step: step.into(),
        message: e.to_string(),
    }
}

fn ar(group: &str, kind: &str, plural: &str) -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, "v1", kind), plural)
}

/// Polls `check` until it yields a value or 15 s pass.
async fn until<T, F, Fut>(step: &str, check: F) -> Result<T, DemoError>
where
    F: Fn() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(v) = check().await {
            return Ok(v);
        }
        if Instant::now() > deadline {
            return Err(fail(step, "timed out after 15 s"));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn table(headers: &[&str], rows: &[Vec<String>]) {
    let widths: Vec<usize> = headers
        .iter()
        .enumerate()
        .map(|(i, h)| {
            rows.iter()
                .map(|r| r.get(i).map_or(0, String::len))
                .max()
                .unwrap_or(0)
                .max(h.len())
        })
        .collect();
    let line = |cells: Vec<String>| {
        let parts: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<w$}", w = widths[i]))
            .collect();
        println!("    {}", parts.join("   ").trim_end());
    };
    line(headers.iter().map(|h| (*h).to_owned()).collect());
    for r in rows {
        line(r.clone());
    }
}

struct Steps {
    started: Instant,
    n: usize,
}

impl Steps {
    fn step(&mut self, what: &str) {
        self.n += 1;
        println!(
            "\n[{}] {what} ({:.1} s)",
            self.n,
            self.started.elapsed().as_secs_f64()
        );
    }
    fn ok(&self, what: &str) {
        println!("  ✔ {what}");
    }
}

/// Runs the demo on a sandbox of its own (free ports, the kubeconfig at
/// `kubeconfig_out`); `Ok` only if every step succeeded, with everything
/// still running for the caller to keep or stop.
pub async fn run(
    kubeconfig_out: Option<&std::path::Path>,
    quay_token: Option<String>,
    settings: &OperatorSettings,
) -> Result<(EmbeddedQuay, EmbeddedKube, RunningOperator), DemoError> {
    let mut s = Steps {
        started: Instant::now(),
        n: 0,
    };
    s.step("Starting an embedded Quay, an embedded OpenShift-like cluster, and the operator");
    let quay = EmbeddedQuay::start(EmbeddedQuayConfig {
        admin_token: quay_token.map(quay_bridge_operator::secret::SecretString::new),
        ..EmbeddedQuayConfig::default()
    })
    .await
    .map_err(|e| fail("quay", e))?;
    quay.add_user(DEVELOPER.0, DEVELOPER.1, false);
    quay.add_user(BRIDGE_USER.0, BRIDGE_USER.1, false);
    let kube = EmbeddedKube::start(EmbeddedKubeConfig {
        listen: Some("127.0.0.1:0".into()),
        ..EmbeddedKubeConfig::default()
    })
    .await
    .map_err(|e| fail("kube", e))?;
    if let Some(path) = kubeconfig_out {
        kube.write_kubeconfig(path, kube_sandbox::ADMIN_IDENTITY)
            .map_err(|e| fail("write the kubeconfig", e))?;
    }
    let host = quay.url().trim_start_matches("http://").to_owned();
    kube.register_registry(&host, &quay.url());
    let operator = start_operator(
        &kube,
        &quay.url(),
        &QuayCredentials::Password {
            username: BRIDGE_USER.0.into(),
            password: BRIDGE_USER.1.into(),
        },
        "demo",
        &OperatorSettings {
            admin_listen: "127.0.0.1:0".into(),
            ..settings.clone()
        },
    )
    .await
    .map_err(|e| fail("start the operator", e))?;
    s.ok(&format!(
        "Quay at {}, cluster ready, QuayIntegration \"demo\" applied, webhook registered; the credentials Secret holds only Quay user {}'s username and password",
        quay.url(),
        BRIDGE_USER.0
    ));

    let result = story(&mut s, &quay, &kube, &host).await;
    match result {
        Ok(()) => {
            println!(
                "\nAll steps succeeded in {:.1} s.",
                s.started.elapsed().as_secs_f64()
            );
            Ok((quay, kube, operator))
        }
        Err(e) => {
            println!("\n✘ step failed: {e}");
            operator.stop().await;
            kube.shutdown().await;
            quay.shutdown().await;
            Err(e)
        }
    }
}

/// The `oc new-app` story, one step after the other.
async fn story(
    s: &mut Steps,
    quay: &EmbeddedQuay,
    kube: &EmbeddedKube,
    host: &str,
) -> Result<(), DemoError> {
    let admin = kube.client();
    bootstrap(s, &admin).await?;
    bridge_namespace(s, quay, &admin).await?;
    let streams = new_app(s, quay, &admin).await?;
    let name = start_build(s, &admin).await?;
    let digest = push(s, quay, &admin, &name).await?;
    import(s, &streams, host, &digest).await?;
    pull(s, quay, &admin, host, &digest).await?;
    team_access(s, quay, &admin, &digest).await?;
    rotation(s, quay, &admin, host, &digest).await?;
    println!(
        "\n  Quay requests made by the whole story: {}",
        quay.requests()
            .iter()
            .filter(|r| r.template.starts_with("/api/"))
            .count()
    );
    Ok(())
}

async fn bridge_namespace(
    s: &mut Steps,
    quay: &EmbeddedQuay,
    admin: &kube::Client,
) -> Result<(), DemoError> {
    s.step(
        "oc new-project demo: the namespace gets a Quay organization, robots and pull/push Secrets",
    );
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": "demo"}}))
        .map_err(|e| fail("namespace", e))?;
    let t = Instant::now();
    Api::<Namespace>::all(admin.clone())
        .create(&PostParams::default(), &ns)
        .await
        .map_err(|e| fail("create the namespace", e))?;
    let sas: Api<ServiceAccount> = Api::namespaced(admin.clone(), "demo");
    until("link the robot Secrets", || async {
        let mut linked = 0;
        for sa in ["builder", "default", "deployer"] {
            let name = format!("{sa}-quay-openshift");
            if sas.get_opt(sa).await.ok().flatten().is_some_and(|a| {
                a.secrets
                    .unwrap_or_default()
                    .iter()
                    .any(|r| r.name.as_deref() == Some(name.as_str()))
                    && a.image_pull_secrets
                        .unwrap_or_default()
                        .iter()
                        .any(|r| r.name == name)
            }) {
                linked += 1;
            }
        }
        (linked == 3).then_some(())
    })
    .await?;
    s.ok(&format!("bridged in {:.2} s", t.elapsed().as_secs_f64()));
    let snap = quay.snapshot();
    let org = snap
        .organizations
        .get("openshift_demo")
        .ok_or_else(|| fail("organization", "missing in Quay"))?;
    println!("  Quay organization openshift_demo:");
    let rows: Vec<Vec<String>> = org
        .prototypes
        .iter()
        .map(|(d, r)| {
            vec![
                d.clone(),
                r.to_string(),
                "robot + default permission".into(),
            ]
        })
        .collect();
    table(&["ROBOT", "ROLE", "WHAT"], &rows);
    println!("  Kubernetes, namespace demo:");
    let mut rows = Vec::new();
    for sa in ["builder", "default", "deployer"] {
        let a = sas.get(sa).await.map_err(|e| fail("service account", e))?;
        let mount: Vec<String> = a
            .secrets
            .unwrap_or_default()
            .into_iter()
            .filter_map(|r| r.name)
            .collect();
        rows.push(vec![
            sa.to_owned(),
            format!("{sa}-quay-openshift"),
            mount.join(", "),
        ]);
    }
    table(
        &["SERVICE ACCOUNT", "QUAY SECRET", "MOUNTABLE SECRETS"],
        &rows,
    );
    Ok(())
}

async fn new_app(
    s: &mut Steps,
    quay: &EmbeddedQuay,
    admin: &kube::Client,
) -> Result<Api<DynamicObject>, DemoError> {
    s.step("oc new-app: an ImageStream and a BuildConfig; the ImageStream gets a Quay repository");
    let streams = Api::<DynamicObject>::namespaced_with(
        admin.clone(),
        "demo",
        &ar("image.openshift.io", "ImageStream", "imagestreams"),
    );
    let is: DynamicObject = serde_json::from_value(json!({"apiVersion": "image.openshift.io/v1", "kind": "ImageStream", "metadata": {"name": "httpd-example"}})).map_err(|e| fail("ImageStream", e))?;
    streams
        .create(&PostParams::default(), &is)
        .await
        .map_err(|e| fail("create the ImageStream", e))?;
    let bcs = Api::<DynamicObject>::namespaced_with(
        admin.clone(),
        "demo",
        &ar("build.openshift.io", "BuildConfig", "buildconfigs"),
    );
    let bc: DynamicObject = serde_json::from_value(json!({"apiVersion": "build.openshift.io/v1", "kind": "BuildConfig", "metadata": {"name": "httpd-example"}, "spec": {
        "source": {"git": {"uri": "https://github.com/sclorg/httpd-ex.git"}},
        "strategy": {"type": "Source", "sourceStrategy": {"from": {"kind": "ImageStreamTag", "name": "httpd:2.4", "namespace": "openshift"}}},
        "output": {"to": {"kind": "ImageStreamTag", "name": "httpd-example:latest"}}}}))
    .map_err(|e| fail("BuildConfig", e))?;
    bcs.create(&PostParams::default(), &bc)
        .await
        .map_err(|e| fail("create the BuildConfig", e))?;
    until("create the repository", || async {
        quay.snapshot()
            .organizations
            .get("openshift_demo")
            .is_some_and(|o| o.repositories.contains_key("httpd-example"))
            .then_some(())
    })
    .await?;
    let perms = quay.snapshot().organizations["openshift_demo"].repositories["httpd-example"]
        .permissions
        .clone();
    s.ok("repository openshift_demo/httpd-example created");
    table(
        &["REPOSITORY PERMISSION", "ROLE"],
        &perms
            .iter()
            .map(|(w, r)| vec![w.clone(), r.to_string()])
            .collect::<Vec<_>>(),
    );
    Ok(streams)
}

async fn start_build(s: &mut Steps, admin: &kube::Client) -> Result<String, DemoError> {
    s.step("oc start-build: the webhook rewrites the Build to push to Quay");
    let request = kube::core::Request::new(
        "/apis/build.openshift.io/v1/namespaces/demo/buildconfigs/httpd-example/instantiate",
    );
    let body = serde_json::to_vec(&json!({"kind": "BuildRequest", "apiVersion": "build.openshift.io/v1", "metadata": {"name": "httpd-example"}})).map_err(|e| fail("BuildRequest", e))?;
    let req = request
        .create(&PostParams::default(), body)
        .map_err(|e| fail("BuildRequest", e))?;
    let build: Value = until(
        "start the build (the webhook serves once the operator's caches are synced)",
        || {
            let req = req.clone();
            let admin = admin.clone();
            async move { admin.request::<Value>(req).await.ok() }
        },
    )
    .await?;
    let name = build["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let output = build["spec"]["output"]["to"].clone();
    if output["kind"] != "DockerImage" {
        return Err(fail("rewrite the build", format!("output is {output}")));
    }
    table(
        &["BUILD", "OUTPUT KIND", "OUTPUT", "PUSH SECRET"],
        &[vec![
            name.clone(),
            "DockerImage".into(),
            output["name"].as_str().unwrap_or_default().into(),
            build["spec"]["output"]["pushSecret"]["name"]
                .as_str()
                .unwrap_or_default()
                .into(),
        ]],
    );
    Ok(name)
}

async fn push(
    s: &mut Steps,
    quay: &EmbeddedQuay,
    admin: &kube::Client,
    name: &str,
) -> Result<String, DemoError> {
    s.step("The build runs and pushes to Quay with the builder robot");
    let builds = Api::<DynamicObject>::namespaced_with(
        admin.clone(),
        "demo",
        &ar("build.openshift.io", "Build", "builds"),
    );
    let done: Value = until("complete the build", || async {
        let b = serde_json::to_value(builds.get(name).await.ok()?).ok()?;
        matches!(b["status"]["phase"].as_str(), Some("Complete" | "Failed")).then_some(b)
    })
    .await?;
    if done["status"]["phase"] != "Complete" {
        return Err(fail(
            "push the image",
            done["status"]["logSnippet"]
                .as_str()
                .unwrap_or("the build failed"),
        ));
    }
    let digest = done["status"]["output"]["to"]["imageDigest"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    s.ok(&format!("{name} Complete, pushed {digest}"));
    let tags = quay.snapshot().organizations["openshift_demo"].repositories["httpd-example"]
        .tags
        .clone();
    table(
        &["QUAY TAG", "MANIFEST"],
        &tags
            .iter()
            .map(|(t, d)| vec![t.clone(), d.clone()])
            .collect::<Vec<_>>(),
    );
    Ok(digest)
}

async fn import(
    s: &mut Steps,
    streams: &Api<DynamicObject>,
    host: &str,
    digest: &str,
) -> Result<(), DemoError> {
    s.step("The operator imports the tag into the ImageStream");
    let reference: String = until("import the tag", || async {
        let st = serde_json::to_value(streams.get("httpd-example").await.ok()?).ok()?;
        let tags = st["status"]["tags"].as_array()?.clone();
        tags.iter().find(|t| t["tag"] == "latest")?["items"][0]["dockerImageReference"]
            .as_str()
            .map(str::to_owned)
    })
    .await?;
    if reference != format!("{host}/openshift_demo/httpd-example@{digest}") {
        return Err(fail(
            "import the tag",
            format!("the tag points at {reference}"),
        ));
    }
    table(
        &["IMAGESTREAM TAG", "POINTS AT"],
        &[vec!["httpd-example:latest".into(), reference]],
    );
    Ok(())
}

async fn pull(
    s: &mut Steps,
    quay: &EmbeddedQuay,
    admin: &kube::Client,
    host: &str,
    digest: &str,
) -> Result<(), DemoError> {
    s.step("A deployment pulls the image with the default robot's Secret");
    let (user, pass) = pull_credentials(admin, host).await?;
    let (user, pass) = (user.as_str(), pass.as_str());
    let pulled = pull_as(quay, user, pass, digest, "pull the image").await?;
    s.ok(&format!("pulled {pulled} as {user}"));
    Ok(())
}

/// The Quay user whose username and password the credentials Secret
/// holds: the operator mints its token from them.
pub const BRIDGE_USER: (&str, &str) = ("quay-bridge", "bridge-password");

async fn bootstrap(s: &mut Steps, admin: &kube::Client) -> Result<(), DemoError> {
    use quay_bridge_operator::plan::credentials as plan;
    s.step("Token bootstrap: the operator signs in to Quay and mints its own token");
    let secrets = Api::<Secret>::namespaced(admin.clone(), "openshift-operators");
    let secret = until("mint the token", || async {
        secrets
            .get_opt("quay-integration")
            .await
            .ok()
            .flatten()
            .filter(|s| {
                s.data.as_ref().is_some_and(|d| d.contains_key("token"))
                    && s.metadata
                        .annotations
                        .as_ref()
                        .is_some_and(|a| a.contains_key(plan::TOKEN_EXPIRES_ANNOTATION))
            })
    })
    .await?;
    let keys: Vec<String> = secret
        .data
        .as_ref()
        .map(|d| d.keys().cloned().collect())
        .unwrap_or_default();
    let annotations = secret.metadata.annotations.unwrap_or_default();
    let expires = annotations
        .get(plan::TOKEN_EXPIRES_ANNOTATION)
        .cloned()
        .unwrap_or_default();
    let application = annotations
        .get(plan::TOKEN_APPLICATION_ANNOTATION)
        .cloned()
        .unwrap_or_default();
    if keys.iter().any(|k| k == plan::PASSWORD_KEY) {
        return Err(fail(
            "mint the token",
            "the password is still in the Secret",
        ));
    }
    s.ok(&format!(
        "signed in as {}, made organization and OAuth application {application}, minted a token with {}",
        BRIDGE_USER.0,
        plan::SCOPES.join(" ")
    ));
    table(
        &["SECRET KEYS NOW", "TOKEN EXPIRES", "RENEWED"],
        &[vec![
            keys.join(", "),
            expires,
            "with itself, when a third of its lifetime remains".into(),
        ]],
    );
    Ok(())
}

async fn rotation(
    s: &mut Steps,
    quay: &EmbeddedQuay,
    admin: &kube::Client,
    host: &str,
    digest: &str,
) -> Result<(), DemoError> {
    use quay_bridge_operator::crd::QuayIntegration;
    s.step("Robot-token rotation while a deployment keeps pulling");
    let integrations = Api::<QuayIntegration>::all(admin.clone());
    let set = |interval: &'static str| {
        let integrations = integrations.clone();
        async move {
            integrations
                .patch(
                    "demo",
                    &kube::api::PatchParams::default(),
                    &kube::api::Patch::Merge(json!({"spec": {"robotTokenRotation": {
                        "interval": interval, "gracePeriod": "1s", "maxPerMinute": 600}}})),
                )
                .await
                .map(drop)
                .map_err(|e| fail("turn rotation on", e))
        }
    };
    // Every robot is older than 3 s: all rotate now.
    set("3s").await?;
    let (first, _) = pull_credentials(admin, host).await?;
    let started = Instant::now();
    let (mut pulls, mut failures) = (0u32, 0u32);
    let now_using = loop {
        // The deployment reads the Secret for every pull, as the kubelet does.
        let (user, password) = pull_credentials(admin, host).await?;
        pulls += 1;
        if pull_as(quay, &user, &password, digest, "pull during the rotation")
            .await
            .is_err()
        {
            failures += 1;
        }
        let old_gone = quay
            .snapshot()
            .organizations
            .get("openshift_demo")
            .is_some_and(|o| {
                !o.robots
                    .contains_key(first.trim_start_matches("openshift_demo+"))
            });
        if user != first && old_gone {
            break user;
        }
        if started.elapsed() > Duration::from_secs(15) {
            return Err(fail("rotate", "no rotation within 15 s"));
        }
    };
    // Back to a long interval: one rotation is the story.
    set("2160h").await?;
    if failures > 0 {
        return Err(fail(
            "pull during the rotation",
            format!("{failures} of {pulls} pulls failed"),
        ));
    }
    s.ok(&format!(
        "{first} replaced by {now_using}: made and granted first, the Secret switched, the old robot deleted after its 1 s grace period; {pulls} pulls meanwhile, 0 failed"
    ));
    Ok(())
}

/// The robot and token the default service account's Secret holds.
async fn pull_credentials(admin: &kube::Client, host: &str) -> Result<(String, String), DemoError> {
    let secret = Api::<Secret>::namespaced(admin.clone(), "demo")
        .get("default-quay-openshift")
        .await
        .map_err(|e| fail("read the pull Secret", e))?;
    let cfg: Value = secret
        .data
        .as_ref()
        .and_then(|d| d.get(".dockerconfigjson"))
        .and_then(|b| serde_json::from_slice(&b.0).ok())
        .ok_or_else(|| fail("pull Secret", "no .dockerconfigjson"))?;
    let auth = cfg["auths"][host]["auth"]
        .as_str()
        .and_then(|a| base64::engine::general_purpose::STANDARD.decode(a).ok())
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(|| fail("pull Secret", "no auth for the registry"))?;
    let (user, pass) = auth
        .split_once(':')
        .ok_or_else(|| fail("pull Secret", "malformed auth"))?;
    Ok((user.to_owned(), pass.to_owned()))
}

/// The developer the team sync step binds (a Quay user of the same name
/// exists: one identity provider for both).
pub const DEVELOPER: (&str, &str) = ("alice", "alice-password");

async fn team_access(
    s: &mut Steps,
    quay: &EmbeddedQuay,
    admin: &kube::Client,
    digest: &str,
) -> Result<(), DemoError> {
    let (user, password) = DEVELOPER;
    s.step(&format!(
        "Team sync: {user} gets `edit` in demo, and with it the project's repository in Quay"
    ));
    let rb: k8s_openapi::api::rbac::v1::RoleBinding = serde_json::from_value(json!({
        "metadata": {"name": format!("{user}-edit")},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "edit"},
        "subjects": [{"kind": "User", "name": user, "apiGroup": "rbac.authorization.k8s.io"}],
    }))
    .map_err(|e| fail("RoleBinding", e))?;
    Api::<k8s_openapi::api::rbac::v1::RoleBinding>::namespaced(admin.clone(), "demo")
        .create(&PostParams::default(), &rb)
        .await
        .map_err(|e| fail("create the RoleBinding", e))?;
    until("team editors", || async {
        quay.snapshot()
            .organizations
            .get("openshift_demo")
            .and_then(|o| o.teams.get("editors"))
            .filter(|t| t.members.iter().any(|m| m == user))
            .map(|_| ())
    })
    .await?;
    let pulled = pull_as(quay, user, password, digest, "pull as the developer").await?;
    s.ok(&format!(
        "RoleBinding {user}-edit: {user} joined team editors of openshift_demo (write on its repositories) and pulled {pulled} with {user}'s own Quay password"
    ));
    Ok(())
}

/// Pulls the story's image as `user` and checks it is the pushed one.
async fn pull_as(
    quay: &EmbeddedQuay,
    user: &str,
    password: &str,
    digest: &str,
    step: &str,
) -> Result<String, DemoError> {
    let pulled = RegistryClient::new(reqwest::Client::new(), quay.url())
        .manifest_digest(
            "openshift_demo/httpd-example",
            "latest",
            Some(&Credentials {
                username: user.into(),
                password: password.into(),
            }),
        )
        .await
        .map_err(|e| fail(step, e))?;
    if pulled != digest {
        return Err(fail(step, format!("pulled {pulled}, expected {digest}")));
    }
    Ok(pulled)
}
