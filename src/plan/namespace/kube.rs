//! The Kubernetes side of a namespace's plan: its Secrets and the
//! service-account links.

use super::names;
use crate::config::{IntegrationConfig, MANAGED_BY, MANAGED_BY_LABEL};
use crate::secret::SecretString;
use compact_str::CompactString;
use std::collections::BTreeMap;

/// The type of the Secrets this operator writes.
pub const DOCKERCONFIGJSON: &str = "kubernetes.io/dockerconfigjson";

/// A Secret as observed: what the plan compares, not the Secret. The
/// registry credentials are kept as a digest, so a cache of every managed
/// Secret holds no token and a few dozen bytes per Secret.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ObservedSecret {
    /// Its `type` is `kubernetes.io/dockerconfigjson` (ours are).
    pub dockerconfigjson_type: bool,
    /// Digest of the `.dockerconfigjson` key, when the Secret has one.
    pub dockerconfigjson: Option<ConfigDigest>,
    /// It carries the operator's label (see [`secret_is_ours`]).
    pub labelled: bool,
    /// Its service-account annotation.
    pub service_account: Option<CompactString>,
    /// `metadata.resourceVersion`, the precondition of a replace.
    pub resource_version: Option<CompactString>,
}

impl ObservedSecret {
    /// What the plan reads of a Secret.
    pub fn of(secret: &k8s_openapi::api::core::v1::Secret) -> Self {
        let meta = &secret.metadata;
        Self {
            dockerconfigjson_type: secret.type_.as_deref() == Some(DOCKERCONFIGJSON),
            dockerconfigjson: secret
                .data
                .as_ref()
                .and_then(|d| d.get(".dockerconfigjson"))
                .map(|b| ConfigDigest::of(&b.0)),
            labelled: meta
                .labels
                .as_ref()
                .and_then(|l| l.get(MANAGED_BY_LABEL))
                .is_some_and(|v| v == MANAGED_BY),
            service_account: meta
                .annotations
                .as_ref()
                .and_then(|a| a.get(SERVICE_ACCOUNT_ANNOTATION))
                .map(CompactString::from),
            resource_version: meta.resource_version.as_deref().map(CompactString::from),
        }
    }
}

/// SHA-256 of a `.dockerconfigjson` as JSON: two contents that are the
/// same JSON (keys in any order, any spacing) have the same digest; a
/// content that is not JSON never equals one that is.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct ConfigDigest([u8; 32]);

impl ConfigDigest {
    /// The digest of a `.dockerconfigjson`'s bytes.
    pub fn of(content: &[u8]) -> Self {
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        match serde_json::from_slice::<serde_json::Value>(content) {
            Ok(value) => canonical(&value, &mut ctx),
            // Canonical JSON never starts with 0xff.
            Err(_) => {
                ctx.update(&[0xff]);
                ctx.update(content);
            }
        }
        let mut out = [0u8; 32];
        out.copy_from_slice(ctx.finish().as_ref());
        Self(out)
    }
}

impl std::fmt::Debug for ConfigDigest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ConfigDigest(<redacted>)")
    }
}

/// Feeds `value` to `ctx` with object keys sorted, whatever order the map
/// keeps them in.
fn canonical(value: &serde_json::Value, ctx: &mut ring::digest::Context) {
    use serde_json::Value;
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            ctx.update(b"{");
            for key in keys {
                canonical(&Value::String(key.clone()), ctx);
                ctx.update(b":");
                if let Some(v) = map.get(key) {
                    canonical(v, ctx);
                }
                ctx.update(b",");
            }
            ctx.update(b"}");
        }
        Value::Array(items) => {
            ctx.update(b"[");
            for v in items {
                canonical(v, ctx);
                ctx.update(b",");
            }
            ctx.update(b"]");
        }
        other => ctx.update(other.to_string().as_bytes()),
    }
}

/// The annotation naming the service account a Secret belongs to.
pub const SERVICE_ACCOUNT_ANNOTATION: &str = "kubernetes.io/service-account.name";

/// Whether a Secret is the operator's: it carries our label. A Secret
/// named like ours without it is a user's, never replaced or deleted.
pub fn secret_is_ours(current: &ObservedSecret) -> bool {
    current.labelled
}

/// The one rule for "this Secret is as the operator wants it": its type,
/// our label, the service-account annotation and the registry credentials.
pub fn secret_up_to_date(current: &ObservedSecret, service_account: &str, payload: &str) -> bool {
    current.dockerconfigjson_type
        && secret_is_ours(current)
        && current.service_account.as_deref() == Some(service_account)
        && current.dockerconfigjson == Some(ConfigDigest::of(payload.as_bytes()))
}

/// The Secret the operator wants: the other labels and annotations of
/// the live Secret (`current`, its metadata) are kept (they are not ours),
/// ours are set.
pub fn desired_secret(
    namespace: &str,
    name: &str,
    service_account: &str,
    payload: &SecretString,
    current: Option<&k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta>,
) -> k8s_openapi::api::core::v1::Secret {
    let mut labels = current.and_then(|c| c.labels.clone()).unwrap_or_default();
    labels.insert(MANAGED_BY_LABEL.into(), MANAGED_BY.into());
    let mut annotations = current
        .and_then(|c| c.annotations.clone())
        .unwrap_or_default();
    annotations.insert(SERVICE_ACCOUNT_ANNOTATION.into(), service_account.into());
    k8s_openapi::api::core::v1::Secret {
        metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
            name: Some(name.into()),
            namespace: Some(namespace.into()),
            labels: Some(labels),
            annotations: Some(annotations),
            ..Default::default()
        },
        type_: Some(DOCKERCONFIGJSON.into()),
        data: Some(
            [(
                ".dockerconfigjson".to_owned(),
                k8s_openapi::ByteString(payload.expose().as_bytes().to_vec()),
            )]
            .into(),
        ),
        ..Default::default()
    }
}

/// The JSON patch that links `secret` to a service account as read at
/// `resource_version` with these `secrets` and `imagePullSecrets` names
/// (`None`: the list is absent). It appends, so every other entry stays
/// where it is, and it is guarded by the resourceVersion: if the account
/// changed since it was read, the apiserver refuses the patch and the
/// caller reads it again. Empty when nothing is missing.
pub fn link_ops(
    resource_version: &str,
    secrets: Option<&[String]>,
    image_pull_secrets: Option<&[String]>,
    secret: &str,
) -> Vec<crate::plan::patch::Op> {
    use crate::plan::patch;
    use serde_json::json;
    let mut ops = Vec::new();
    for (list_name, list) in [
        ("secrets", secrets),
        ("imagePullSecrets", image_pull_secrets),
    ] {
        match list {
            Some(l) if l.iter().any(|n| n == secret) => {}
            Some(l) if !l.is_empty() => {
                ops.push(patch::add(&[list_name, "-"], json!({ "name": secret })));
            }
            // Absent, null or empty: the list is ours to start.
            _ => ops.push(patch::add(&[list_name], json!([{ "name": secret }]))),
        }
    }
    if !ops.is_empty() {
        ops.insert(
            0,
            patch::test(&["metadata", "resourceVersion"], json!(resource_version)),
        );
    }
    ops
}

/// A service account as observed: the names in `secrets` and
/// `imagePullSecrets`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ObservedServiceAccount {
    /// Names in `secrets` (mountable) that may be bridge Secrets.
    pub secrets: Vec<CompactString>,
    /// Names in `imagePullSecrets` that may be bridge Secrets.
    pub image_pull_secrets: Vec<CompactString>,
}

impl ObservedServiceAccount {
    /// What the plan reads of a service account: the names in its lists
    /// that may be the operator's Secrets (OpenShift's dockercfg ones and
    /// a user's are never the plan's concern; a link reads the live lists).
    pub fn of(sa: &k8s_openapi::api::core::v1::ServiceAccount) -> Self {
        let mut o = Self {
            secrets: sa
                .secrets
                .iter()
                .flatten()
                .filter_map(|r| r.name.as_deref())
                .filter(|n| names::may_be_bridge_secret(n))
                .map(CompactString::from)
                .collect(),
            image_pull_secrets: sa
                .image_pull_secrets
                .iter()
                .flatten()
                .map(|r| r.name.as_str())
                .filter(|n| names::may_be_bridge_secret(n))
                .map(CompactString::from)
                .collect(),
        };
        o.secrets.shrink_to_fit();
        o.image_pull_secrets.shrink_to_fit();
        o
    }
}

/// A change in Kubernetes.
#[derive(Debug, Clone, PartialEq)]
pub enum KubeAction {
    /// Create or replace a managed dockerconfigjson Secret.
    ApplySecret {
        /// Secret name.
        name: String,
        /// The service account it belongs to.
        service_account: String,
        /// The robot whose token it carries.
        robot: String,
        /// The `.dockerconfigjson` content.
        payload: SecretString,
    },
    /// Add the Secret to a service account's lists.
    LinkServiceAccount {
        /// Service account.
        service_account: String,
        /// Secret name.
        secret: String,
        /// Missing from `secrets`.
        mountable: bool,
        /// Missing from `imagePullSecrets`.
        pull: bool,
    },
}

/// The Kubernetes side, and the service accounts not there yet.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct KubePlan {
    /// Changes.
    pub actions: Vec<KubeAction>,
    /// Service accounts to wait for (their creation triggers a reconcile).
    pub waiting_for: Vec<String>,
}

/// The `.dockerconfigjson` of service account `sa`'s Secret: its robot's
/// credentials for the registry.
pub fn secret_payload(
    cfg: &IntegrationConfig,
    org: &str,
    robot: &str,
    token: &SecretString,
) -> String {
    names::dockerconfigjson(
        &cfg.registry_host,
        &names::robot_account(org, robot),
        token.expose(),
    )
}

/// Secrets and service-account links for `tokens`: per service account,
/// the robot its Secret carries and that robot's token.
pub fn plan_kube(
    cfg: &IntegrationConfig,
    org: &str,
    tokens: &BTreeMap<String, (String, SecretString)>,
    secrets: &BTreeMap<String, ObservedSecret>,
    service_accounts: &BTreeMap<String, ObservedServiceAccount>,
) -> KubePlan {
    let mut plan = KubePlan::default();
    for (sa, _) in &cfg.service_accounts {
        let Some((robot, token)) = tokens.get(sa) else {
            continue;
        };
        let name = names::secret_name(sa, &cfg.cluster_id);
        let payload = secret_payload(cfg, org, robot, token);
        let up_to_date = secrets
            .get(&name)
            .is_some_and(|s| secret_up_to_date(s, sa, &payload));
        if !up_to_date {
            plan.actions.push(KubeAction::ApplySecret {
                name: name.clone(),
                service_account: sa.clone(),
                robot: robot.clone(),
                payload: SecretString::new(payload),
            });
        }
        match service_accounts.get(sa) {
            None => plan.waiting_for.push(sa.clone()),
            Some(account) => {
                let mountable = !account.secrets.iter().any(|s| *s == name);
                let pull = !account.image_pull_secrets.iter().any(|s| *s == name);
                if mountable || pull {
                    plan.actions.push(KubeAction::LinkServiceAccount {
                        service_account: sa.clone(),
                        secret: name,
                        mountable,
                        pull,
                    });
                }
            }
        }
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> IntegrationConfig {
        crate::config::test_config("openshift", "")
    }

    fn tokens() -> BTreeMap<String, (String, SecretString)> {
        ["builder", "default", "deployer"]
            .iter()
            .map(|s| {
                (
                    (*s).to_owned(),
                    ((*s).to_owned(), SecretString::new(format!("tok-{s}"))),
                )
            })
            .collect()
    }

    #[test]
    fn an_observed_secrets_debug_output_hides_the_credentials() {
        let s = ObservedSecret {
            dockerconfigjson_type: true,
            dockerconfigjson: Some(digest(&names::dockerconfigjson("q", "o+b", "tok-987654"))),
            ..Default::default()
        };
        let text = format!("{s:?}");
        assert!(
            !text.contains("auths") && text.contains("<redacted>"),
            "{text}"
        );
    }

    fn digest(json: &str) -> ConfigDigest {
        ConfigDigest::of(json.as_bytes())
    }

    #[test]
    fn a_config_digest_is_of_the_json_not_of_its_spelling() {
        assert_eq!(
            digest(r#"{"auths": {"q": {"auth": "x", "email": ""}}}"#),
            digest(r#"{"auths":{"q":{"email":"","auth":"x"}}}"#)
        );
        assert_ne!(
            digest(r#"{"auths":{"q":{}}}"#),
            digest(r#"{"auths":{"r":{}}}"#)
        );
        assert_ne!(digest(r#"{"a":[1,2]}"#), digest(r#"{"a":[2,1]}"#));
        assert_ne!(digest(r#"{"a":"1"}"#), digest(r#"{"a":1}"#));
        // Not JSON: equal only to the same bytes, never to JSON.
        assert_eq!(digest("{auths"), digest("{auths"));
        assert_ne!(digest("{auths"), digest("{}"));
    }

    #[test]
    fn an_observed_service_account_keeps_only_links_to_bridge_secrets() {
        let sa: k8s_openapi::api::core::v1::ServiceAccount = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "builder", "namespace": "team"},
            "secrets": [{"name": "builder-dockercfg-x7k2p"}, {"name": "builder-quay-openshift"}],
            "imagePullSecrets": [{"name": "builder-dockercfg-x7k2p"}, {"name": "builder-quay-openshift"}]
        }))
        .unwrap();
        let o = ObservedServiceAccount::of(&sa);
        assert_eq!(o.secrets, ["builder-quay-openshift"]);
        assert_eq!(o.image_pull_secrets, ["builder-quay-openshift"]);
        let bare = ObservedServiceAccount::of(&Default::default());
        assert!(bare.secrets.is_empty() && bare.image_pull_secrets.is_empty());
    }

    #[test]
    fn an_observed_secret_holds_a_digest_of_its_credentials() {
        let json = names::dockerconfigjson("q", "o+b", "tok-987654");
        let secret: k8s_openapi::api::core::v1::Secret = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "builder-quay-openshift", "resourceVersion": "7",
                "labels": {MANAGED_BY_LABEL: MANAGED_BY}, "annotations": {SERVICE_ACCOUNT_ANNOTATION: "builder"}},
            "type": "kubernetes.io/dockerconfigjson",
            "data": {".dockerconfigjson": base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &json)}
        }))
        .unwrap();
        let o = ObservedSecret::of(&secret);
        assert_eq!(o.resource_version.as_deref(), Some("7"));
        assert!(secret_up_to_date(&o, "builder", &json));
        assert!(!secret_up_to_date(
            &o,
            "builder",
            &names::dockerconfigjson("q", "o+b", "other")
        ));
        assert!(!format!("{o:?}").contains("tok-987654"));
    }

    #[test]
    fn only_a_labelled_secret_is_ours() {
        let mut s = ObservedSecret {
            dockerconfigjson_type: true,
            ..Default::default()
        };
        assert!(!secret_is_ours(&s));
        let labelled = |value: &str| -> k8s_openapi::api::core::v1::Secret {
            serde_json::from_value(
                serde_json::json!({"metadata": {"labels": {MANAGED_BY_LABEL: value}}}),
            )
            .unwrap()
        };
        s = ObservedSecret::of(&labelled("someone-else"));
        assert!(!secret_is_ours(&s));
        s = ObservedSecret::of(&labelled(MANAGED_BY));
        assert!(secret_is_ours(&s));
    }

    #[test]
    fn secrets_and_links_are_written_only_on_drift() {
        let c = cfg();
        let mut secrets = BTreeMap::new();
        let mut sas = BTreeMap::new();
        let plan = plan_kube(&c, "openshift_demo", &tokens(), &secrets, &sas);
        assert_eq!(plan.actions.len(), 3);
        assert_eq!(plan.waiting_for, ["builder", "default", "deployer"]);
        for (sa, _) in &c.service_accounts {
            let name = names::secret_name(sa, "openshift");
            secrets.insert(
                name.clone(),
                ObservedSecret {
                    dockerconfigjson_type: true,
                    dockerconfigjson: Some(digest(&names::dockerconfigjson(
                        "quay.example.com",
                        &format!("openshift_demo+{sa}"),
                        &format!("tok-{sa}"),
                    ))),
                    labelled: true,
                    service_account: Some(sa.as_str().into()),
                    resource_version: None,
                },
            );
            sas.insert(
                sa.clone(),
                ObservedServiceAccount {
                    secrets: vec![format!("{sa}-dockercfg-x").into(), name.as_str().into()],
                    image_pull_secrets: vec![name.into()],
                },
            );
        }
        let plan = plan_kube(&c, "openshift_demo", &tokens(), &secrets, &sas);
        assert_eq!(
            plan,
            KubePlan::default(),
            "nothing to write at steady state"
        );
        // A regenerated token, an edited secret, a removed link.
        let mut new_tokens = tokens();
        new_tokens.insert(
            "builder".into(),
            ("builder".into(), SecretString::new("rotated")),
        );
        secrets
            .get_mut("default-quay-openshift")
            .unwrap()
            .dockerconfigjson = Some(digest("{}"));
        sas.get_mut("deployer").unwrap().image_pull_secrets.clear();
        let plan = plan_kube(&c, "openshift_demo", &new_tokens, &secrets, &sas);
        let applied: Vec<&str> = plan
            .actions
            .iter()
            .filter_map(|a| {
                if let KubeAction::ApplySecret { name, .. } = a {
                    Some(name.as_str())
                } else {
                    None
                }
            })
            .collect();
        assert_eq!(
            applied,
            ["builder-quay-openshift", "default-quay-openshift"]
        );
        assert!(plan.actions.contains(&KubeAction::LinkServiceAccount {
            service_account: "deployer".into(),
            secret: "deployer-quay-openshift".into(),
            mountable: false,
            pull: true
        }));
    }

    fn observed(sa: &str) -> ObservedSecret {
        ObservedSecret {
            dockerconfigjson_type: true,
            dockerconfigjson: Some(digest("{\"auths\": {\"q\": {}}}")),
            labelled: true,
            service_account: Some(sa.into()),
            resource_version: None,
        }
    }

    #[test]
    fn a_secret_is_up_to_date_only_with_type_label_annotation_and_data() {
        let payload = "{\"auths\":{\"q\":{}}}";
        assert!(secret_up_to_date(&observed("builder"), "builder", payload));
        let mut s = observed("builder");
        s.service_account = None;
        assert!(
            !secret_up_to_date(&s, "builder", payload),
            "annotation removed"
        );
        assert!(
            !secret_up_to_date(&observed("default"), "builder", payload),
            "other account"
        );
        let mut s = observed("builder");
        s.labelled = false;
        assert!(!secret_up_to_date(&s, "builder", payload), "label removed");
        let mut s = observed("builder");
        s.dockerconfigjson_type = false;
        assert!(!secret_up_to_date(&s, "builder", payload), "retyped");
        let mut s = observed("builder");
        s.dockerconfigjson = None;
        assert!(!secret_up_to_date(&s, "builder", payload), "data removed");
        assert!(
            !secret_up_to_date(&observed("builder"), "builder", "{}"),
            "other data"
        );
    }

    #[test]
    fn the_desired_secret_keeps_other_labels_and_annotations() {
        let payload = SecretString::new("{}");
        let current: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta =
            serde_json::from_value(serde_json::json!({
                "labels": {MANAGED_BY_LABEL: "someone-else", "team": "a"},
                "annotations": {SERVICE_ACCOUNT_ANNOTATION: "default", "note": "users"}
            }))
            .unwrap();
        let s = desired_secret(
            "demo",
            "builder-quay-openshift",
            "builder",
            &payload,
            Some(&current),
        );
        let labels = s.metadata.labels.unwrap();
        assert_eq!(labels[MANAGED_BY_LABEL], MANAGED_BY);
        assert_eq!(labels["team"], "a");
        let annotations = s.metadata.annotations.unwrap();
        assert_eq!(annotations[SERVICE_ACCOUNT_ANNOTATION], "builder");
        assert_eq!(annotations["note"], "users");
        assert_eq!(s.type_.as_deref(), Some("kubernetes.io/dockerconfigjson"));
        assert_eq!(s.data.unwrap()[".dockerconfigjson"].0, b"{}");
        let fresh = desired_secret("demo", "x", "builder", &payload, None);
        assert_eq!(fresh.metadata.labels.unwrap().len(), 1);
        assert_eq!(fresh.metadata.namespace.as_deref(), Some("demo"));
    }

    #[test]
    fn link_ops_append_after_what_is_there_guarded_by_the_resource_version() {
        use serde_json::json;
        let list = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        let (mounts, pulls) = (
            list(&["builder-dockercfg-a"]),
            list(&["builder-dockercfg-a", "user-pull"]),
        );
        let ops = |v: Vec<crate::plan::patch::Op>| crate::plan::patch::to_json(&v);
        assert_eq!(
            ops(link_ops("42", Some(&mounts), Some(&pulls), "ours")),
            json!([
                {"op": "test", "path": "/metadata/resourceVersion", "value": "42"},
                {"op": "add", "path": "/secrets/-", "value": {"name": "ours"}},
                {"op": "add", "path": "/imagePullSecrets/-", "value": {"name": "ours"}},
            ])
        );
        // Absent or empty lists start with ours; a linked list is left alone.
        let linked = list(&["x", "ours"]);
        assert_eq!(
            ops(link_ops("7", None, Some(&linked), "ours")),
            json!([
                {"op": "test", "path": "/metadata/resourceVersion", "value": "7"},
                {"op": "add", "path": "/secrets", "value": [{"name": "ours"}]},
            ])
        );
        assert_eq!(
            ops(link_ops("7", Some(&[]), Some(&linked), "ours"))[1],
            json!({"op": "add", "path": "/secrets", "value": [{"name": "ours"}]})
        );
        assert!(link_ops("7", Some(&linked), Some(&linked), "ours").is_empty());
    }
}
