//! The pure admission decision for Builds: allow unchanged, rewrite the
//! output to Quay, or deny with a reason. It reads only the request and a
//! snapshot of what the operator knows; it never panics on any input.

use crate::config::{BRIDGED_LABEL, IntegrationConfig};
use crate::model::names as quay_names;
use crate::plan::names;
use crate::plan::patch::{self, Op};
use crate::plan::selection::{self, Manager};
use serde_json::{Value, json};

/// What the decision needs to know about the cluster.
pub trait Facts {
    /// Valid integrations.
    fn integrations(&self) -> &[IntegrationConfig];
    /// Whether the Secret `name` exists in `namespace` and is linked in the
    /// `secrets` of service account `account`.
    fn secret_linked(&self, namespace: &str, account: &str, name: &str) -> bool;
}

/// The answer.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Allow as it is.
    Allow,
    /// Allow with this JSON patch.
    Patch(Value),
    /// Refuse, with the reason shown to the user (a 403).
    Deny(String),
}

/// The Build and its output of a request this webhook rewrites: a new
/// Docker or Source Build whose output is an ImageStreamTag. `None`: the
/// request passes unchanged.
fn rewritable(request: &Value) -> Option<(&Value, &Value)> {
    let group = request
        .pointer("/resource/group")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let resource = request
        .pointer("/resource/resource")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let sub = request
        .get("subResource")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if group != "build.openshift.io" || resource != "builds" || !sub.is_empty() {
        return None;
    }
    // Only new Builds are rewritten; updates (including of Builds this
    // webhook rewrote, whose output is a DockerImage now) pass unchanged.
    if request.get("operation").and_then(Value::as_str) != Some("CREATE") {
        return None;
    }
    let build = request.get("object").filter(|o| o.is_object())?;
    let strategy = build
        .pointer("/spec/strategy")
        .cloned()
        .unwrap_or(Value::Null);
    let kind = strategy
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let docker_or_source = matches!(kind, "Docker" | "Source")
        || (kind.is_empty()
            && (strategy.get("dockerStrategy").is_some()
                || strategy.get("sourceStrategy").is_some()));
    if !docker_or_source {
        return None;
    }
    let to = build.pointer("/spec/output/to").filter(|t| t.is_object())?;
    if to.get("kind").and_then(Value::as_str) != Some("ImageStreamTag") {
        return None;
    }
    Some((build, to))
}

/// Decides one AdmissionRequest (`review.request`).
pub fn decide(request: &Value, facts: &dyn Facts) -> Decision {
    let Some((build, to)) = rewritable(request) else {
        return Decision::Allow;
    };
    let namespace = request
        .get("namespace")
        .and_then(Value::as_str)
        .or_else(|| build.pointer("/metadata/namespace").and_then(Value::as_str))
        .unwrap_or_default();
    let integrations = facts.integrations();
    let Manager::One(cfg) = selection::manager(integrations, namespace) else {
        return Decision::Allow;
    };
    let destination = to
        .get("namespace")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .unwrap_or(namespace);
    if destination != namespace {
        return match selection::manager(integrations, destination) {
            // The destination keeps OpenShift's registry: nothing to rewrite.
            Manager::None => Decision::Allow,
            _ => Decision::Deny(format!(
                "this Build in namespace {namespace} outputs to an ImageStream in namespace {destination}: its push would go to that namespace's Quay organization, where the builder robot of {namespace} has no write permission; build in {destination}, or output to an ImageStream in {namespace}"
            )),
        };
    }
    let name = to.get("name").and_then(Value::as_str).unwrap_or_default();
    let (stream, tag) = match name.split_once(':') {
        Some((s, t)) if !t.is_empty() => (s, t),
        Some((s, _)) => (s, "latest"),
        None => (name, "latest"),
    };
    if !quay_names::is_valid_repository_name(stream) {
        return Decision::Deny(format!(
            "ImageStream name {stream:?} cannot be a Quay repository name (lower-case letters, digits, '.', '_', '-')"
        ));
    }
    let org = match names::organization(cfg, namespace) {
        Ok(o) => o,
        Err(e) => {
            return Decision::Deny(format!(
                "namespace {namespace} cannot be bridged to Quay: {e}"
            ));
        }
    };
    let account = build
        .pointer("/spec/serviceAccount")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .unwrap_or("builder");
    let secret = names::secret_name("builder", &cfg.cluster_id);
    if !facts.secret_linked(namespace, account, &secret) {
        return Decision::Deny(format!(
            "the Quay push secret {secret} is not linked to service account {account} in namespace {namespace} yet; the operator is setting it up, retry in a few seconds"
        ));
    }
    Decision::Patch(patch::to_json(&rewrite(
        build,
        to,
        &Rewrite {
            image: format!("{}/{org}/{stream}:{tag}", cfg.registry_host),
            secret: &secret,
            destination: format!("{destination}/{stream}:{tag}"),
            prefix: cfg.id.group.annotation_prefix(),
        },
    )))
}

/// Where a rewritten Build pushes, and what it is marked with.
struct Rewrite<'a> {
    /// `<registry>/<org>/<stream>:<tag>`.
    image: String,
    /// The builder robot's Secret.
    secret: &'a str,
    /// `<namespace>/<stream>:<tag>`, the ImageStreamTag to import into.
    destination: String,
    /// The annotation prefix of the integration's API group.
    prefix: &'static str,
}

/// The JSON patch of a rewrite: output to Quay with the push secret, the
/// managed annotation, the bridged label (the import controller watches
/// only those) and the destination annotation.
fn rewrite(build: &Value, to: &Value, r: &Rewrite<'_>) -> Vec<Op> {
    let managed = format!("{}/quay-registry-operator-managed", r.prefix);
    let destination = format!("{}/destination-imagestream", r.prefix);
    let mut ops = vec![
        patch::replace(&["spec", "output", "to", "kind"], json!("DockerImage")),
        patch::replace(&["spec", "output", "to", "name"], json!(r.image)),
    ];
    if to.get("namespace").is_some() {
        ops.push(patch::remove(&["spec", "output", "to", "namespace"]));
    }
    ops.push(patch::add(
        &["spec", "output", "pushSecret"],
        json!({ "name": r.secret }),
    ));
    for map in ["annotations", "labels"] {
        if !build
            .pointer(&format!("/metadata/{map}"))
            .is_some_and(Value::is_object)
        {
            ops.push(patch::add(&["metadata", map], json!({})));
        }
    }
    ops.push(patch::add(
        &["metadata", "annotations", &managed],
        json!("true"),
    ));
    // The label lets the import controller watch only rewritten Builds.
    ops.push(patch::add(
        &["metadata", "labels", BRIDGED_LABEL],
        json!("true"),
    ));
    ops.push(patch::add(
        &["metadata", "annotations", &destination],
        json!(r.destination),
    ));
    ops
}

// The tests apply patches with the sandbox apiserver's JSON patch.
#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::test_config;
    use rand::{Rng, SeedableRng};

    struct World {
        integrations: Vec<IntegrationConfig>,
        linked: bool,
    }

    impl Facts for World {
        fn integrations(&self) -> &[IntegrationConfig] {
            &self.integrations
        }
        fn secret_linked(&self, _ns: &str, account: &str, name: &str) -> bool {
            self.linked && account == "builder" && name == "builder-quay-openshift"
        }
    }

    fn world() -> World {
        let mut cfg = test_config("openshift", "");
        cfg.allow = vec!["team".into(), "other".into()];
        World {
            integrations: vec![cfg],
            linked: true,
        }
    }

    fn request(build: Value) -> Value {
        json!({"uid": "u", "operation": "CREATE", "namespace": "team", "resource": {"group": "build.openshift.io", "version": "v1", "resource": "builds"}, "object": build})
    }

    fn build(strategy: Value, to: Value) -> Value {
        json!({"metadata": {"name": "app-1", "namespace": "team", "annotations": {"openshift.io/build-config.name": "app"}}, "spec": {"strategy": strategy, "output": {"to": to}}})
    }

    fn docker() -> Value {
        json!({"type": "Docker", "dockerStrategy": {}})
    }

    fn apply(build: &Value, decision: &Decision) -> Value {
        let Decision::Patch(p) = decision else {
            panic!("expected a patch, got {decision:?}")
        };
        let mut b = build.clone();
        kube_sandbox::patch::json_patch(&mut b, p).unwrap();
        b
    }

    #[test]
    fn image_stream_tag_outputs_are_rewritten_to_quay() {
        let b = build(
            docker(),
            json!({"kind": "ImageStreamTag", "name": "app:v1"}),
        );
        let out = apply(&b, &decide(&request(b.clone()), &world()));
        assert_eq!(
            out["spec"]["output"]["to"],
            json!({"kind": "DockerImage", "name": "quay.example.com/openshift_team/app:v1"})
        );
        assert_eq!(
            out["spec"]["output"]["pushSecret"],
            json!({"name": "builder-quay-openshift"})
        );
        let ann = &out["metadata"]["annotations"];
        assert_eq!(
            ann["quay-registry-operator.quay.redhat.com/quay-registry-operator-managed"],
            "true"
        );
        assert_eq!(
            ann["quay-registry-operator.quay.redhat.com/destination-imagestream"],
            "team/app:v1"
        );
        assert_eq!(
            ann["openshift.io/build-config.name"], "app",
            "other annotations kept"
        );
        assert_eq!(out["metadata"]["labels"][BRIDGED_LABEL], "true");
        // Existing labels are kept.
        let mut labelled = b.clone();
        labelled["metadata"]["labels"] = json!({"buildconfig": "app"});
        let out = apply(&labelled, &decide(&request(labelled.clone()), &world()));
        assert_eq!(
            out["metadata"]["labels"],
            json!({"buildconfig": "app", BRIDGED_LABEL: "true"})
        );
    }

    #[test]
    fn missing_annotations_namespace_field_and_tag_are_handled() {
        let mut b = build(
            json!({"type": "Source", "sourceStrategy": {"from": {"kind": "ImageStreamTag", "name": "python:3"}}}),
            json!({"kind": "ImageStreamTag", "name": "app", "namespace": "team"}),
        );
        b["metadata"].as_object_mut().unwrap().remove("annotations");
        let out = apply(&b, &decide(&request(b.clone()), &world()));
        assert_eq!(
            out["spec"]["output"]["to"],
            json!({"kind": "DockerImage", "name": "quay.example.com/openshift_team/app:latest"}),
            "namespace removed, tag defaulted"
        );
        assert_eq!(
            out["metadata"]["annotations"]["quay-registry-operator.quay.redhat.com/destination-imagestream"],
            "team/app:latest"
        );
        let mut b = build(docker(), json!({"kind": "ImageStreamTag", "name": "app:"}));
        b["spec"]["strategy"] = json!({"dockerStrategy": {}});
        let out = apply(&b, &decide(&request(b.clone()), &world()));
        assert!(
            out["spec"]["output"]["to"]["name"]
                .as_str()
                .unwrap()
                .ends_with("/app:latest")
        );
    }

    #[test]
    fn the_legacy_group_writes_its_own_annotation_prefix() {
        let mut w = world();
        w.integrations[0].id.group = crate::config::ApiGroup::Legacy;
        let b = build(
            docker(),
            json!({"kind": "ImageStreamTag", "name": "app:v1"}),
        );
        let out = apply(&b, &decide(&request(b.clone()), &w));
        assert_eq!(
            out["metadata"]["annotations"]["quay-registry-operator.redhatcop.redhat.io/quay-registry-operator-managed"],
            "true"
        );
    }

    #[test]
    fn what_is_allowed_unchanged() {
        let w = world();
        let ist = json!({"kind": "ImageStreamTag", "name": "app:v1"});
        let cases = vec![
            (
                "DockerImage output",
                request(build(
                    docker(),
                    json!({"kind": "DockerImage", "name": "quay.io/x/y:1"}),
                )),
            ),
            (
                "no output",
                request(json!({"metadata": {"namespace": "team"}, "spec": {"strategy": docker()}})),
            ),
            (
                "output without to",
                request(
                    json!({"metadata": {"namespace": "team"}, "spec": {"strategy": docker(), "output": {}}}),
                ),
            ),
            (
                "Custom strategy",
                request(build(
                    json!({"type": "Custom", "customStrategy": {}}),
                    ist.clone(),
                )),
            ),
            (
                "Pipeline strategy",
                request(build(
                    json!({"type": "JenkinsPipeline", "jenkinsPipelineStrategy": {}}),
                    ist.clone(),
                )),
            ),
            ("unmanaged namespace", {
                let mut r = request(build(docker(), ist.clone()));
                r["namespace"] = json!("elsewhere");
                r
            }),
            ("system namespace", {
                let mut r = request(build(docker(), ist.clone()));
                r["namespace"] = json!("openshift");
                r
            }),
            ("UPDATE", {
                let mut r = request(build(docker(), ist.clone()));
                r["operation"] = json!("UPDATE");
                r
            }),
            ("DELETE", {
                let mut r = request(build(docker(), ist.clone()));
                r["operation"] = json!("DELETE");
                r
            }),
            ("other resource", {
                let mut r = request(build(docker(), ist.clone()));
                r["resource"]["resource"] = json!("buildconfigs");
                r
            }),
            ("subresource", {
                let mut r = request(build(docker(), ist.clone()));
                r["subResource"] = json!("details");
                r
            }),
            (
                "cross-namespace to an unmanaged namespace",
                request(build(
                    docker(),
                    json!({"kind": "ImageStreamTag", "name": "app:v1", "namespace": "unbridged"}),
                )),
            ),
        ];
        for (what, req) in cases {
            assert_eq!(decide(&req, &w), Decision::Allow, "{what}");
        }
    }

    #[test]
    fn without_exactly_one_integration_builds_are_left_alone() {
        let ist = json!({"kind": "ImageStreamTag", "name": "app:v1"});
        let none = World {
            integrations: vec![],
            linked: true,
        };
        assert_eq!(
            decide(&request(build(docker(), ist.clone())), &none),
            Decision::Allow,
            "no integration"
        );
        let mut two = world();
        two.integrations.push(test_config("other", ""));
        assert_eq!(
            decide(&request(build(docker(), ist)), &two),
            Decision::Allow,
            "namespace in conflict"
        );
    }

    #[test]
    fn what_is_denied_with_a_reason() {
        let ist = json!({"kind": "ImageStreamTag", "name": "app:v1"});
        let unlinked = World {
            linked: false,
            ..world()
        };
        let Decision::Deny(msg) = decide(&request(build(docker(), ist.clone())), &unlinked) else {
            panic!()
        };
        assert!(msg.contains("not linked") && msg.contains("retry"), "{msg}");
        let Decision::Deny(msg) = decide(
            &request(build(
                docker(),
                json!({"kind": "ImageStreamTag", "name": "app:v1", "namespace": "other"}),
            )),
            &world(),
        ) else {
            panic!()
        };
        assert!(msg.contains("no write permission"), "{msg}");
        let Decision::Deny(msg) = decide(
            &request(build(
                docker(),
                json!({"kind": "ImageStreamTag", "name": "App:v1"}),
            )),
            &world(),
        ) else {
            panic!()
        };
        assert!(msg.contains("Quay repository name"), "{msg}");
        let mut b = build(docker(), ist);
        b["spec"]["serviceAccount"] = json!("pipeline");
        assert!(
            matches!(decide(&request(b), &world()), Decision::Deny(_)),
            "a build under another account needs the secret linked there"
        );
    }

    fn random_json(rng: &mut rand::rngs::StdRng, depth: u32) -> Value {
        let keys = [
            "kind",
            "name",
            "namespace",
            "to",
            "output",
            "spec",
            "strategy",
            "type",
            "metadata",
            "annotations",
            "object",
            "operation",
            "resource",
            "group",
            "dockerStrategy",
            "serviceAccount",
            "x",
        ];
        match rng.random_range(0..if depth > 4 { 5 } else { 8 }) {
            0 => Value::Null,
            1 => json!(rng.random::<bool>()),
            2 => json!(rng.random_range(-5..5)),
            3 => json!(
                [
                    "ImageStreamTag",
                    "Docker",
                    "CREATE",
                    "build.openshift.io",
                    "builds",
                    "team",
                    "app:v1",
                    ""
                ][rng.random_range(0..8)]
            ),
            4 => json!(format!("s{}", rng.random_range(0..3))),
            5 | 6 => {
                let mut m = serde_json::Map::new();
                for _ in 0..rng.random_range(0..5) {
                    m.insert(
                        keys[rng.random_range(0..keys.len())].into(),
                        random_json(rng, depth + 1),
                    );
                }
                Value::Object(m)
            }
            _ => Value::Array(
                (0..rng.random_range(0..3))
                    .map(|_| random_json(rng, depth + 1))
                    .collect(),
            ),
        }
    }

    #[test]
    fn arbitrary_json_never_panics_and_patches_always_apply() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(0xb01d);
        let w = world();
        for _ in 0..20_000 {
            let mut req = random_json(&mut rng, 0);
            // Bias toward requests that reach the deeper rules.
            if rng.random_bool(0.5) && req.is_object() {
                req["resource"] = json!({"group": "build.openshift.io", "resource": "builds"});
                req["operation"] = json!("CREATE");
                req["namespace"] = json!("team");
                if rng.random_bool(0.5) {
                    req["object"] = build(
                        random_json(&mut rng, 2),
                        json!({"kind": "ImageStreamTag", "name": random_json(&mut rng, 4)}),
                    );
                }
            }
            if let Decision::Patch(p) = decide(&req, &w) {
                let mut obj = req["object"].clone();
                assert!(
                    kube_sandbox::patch::json_patch(&mut obj, &p).is_ok(),
                    "patch {p} does not apply to {}",
                    req["object"]
                );
            }
        }
    }
}
