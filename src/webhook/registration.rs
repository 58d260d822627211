//! The webhook's registration, as `deploy/` installs it and the sandbox
//! registers it: one definition, so the manifests and the sandbox cannot
//! drift apart (a test compares `deploy/base` with it).
//!
//! With `failurePolicy: Fail` the registration decides what an operator
//! outage breaks, so it is as narrow as the operator's work: Build
//! CREATE only (updates pass unchanged anyway), in namespaces carrying
//! [`BRIDGED_LABEL`], and where the cluster evaluates `matchConditions`
//! (Kubernetes 1.30 and later), only Docker and Source builds that push to
//! an ImageStreamTag.

use super::server::PATH as WEBHOOK_PATH;
use crate::config::BRIDGED_LABEL;
use serde_json::{Value, json};

/// The webhook's name.
pub const WEBHOOK_NAME: &str = "quayintegration.quay.redhat.com";

/// The `matchConditions` (CEL) that narrow the webhook to the Builds it
/// rewrites; for clusters that evaluate them (Kubernetes 1.30 and later).
pub fn match_conditions() -> Value {
    json!([
        {
            "name": "pushes-to-an-image-stream-tag",
            "expression": "has(object.spec) && has(object.spec.output) && has(object.spec.output.to) && object.spec.output.to.kind == 'ImageStreamTag'",
        },
        {
            "name": "docker-or-source-strategy",
            "expression": "has(object.spec.strategy) && (!has(object.spec.strategy.type) || object.spec.strategy.type in ['Docker', 'Source'])",
        },
    ])
}

/// The webhook entry of the MutatingWebhookConfiguration, calling the
/// Service `namespace/service` on port 443.
pub fn webhook(namespace: &str, service: &str, with_match_conditions: bool) -> Value {
    let mut hook = json!({
        "name": WEBHOOK_NAME,
        "admissionReviewVersions": ["v1", "v1beta1"],
        "sideEffects": "None",
        "failurePolicy": "Fail",
        "timeoutSeconds": 10,
        "clientConfig": {"service": {"namespace": namespace, "name": service, "path": WEBHOOK_PATH, "port": 443}},
        "rules": [{"operations": ["CREATE"], "apiGroups": ["build.openshift.io"], "apiVersions": ["v1"], "resources": ["builds"]}],
        "namespaceSelector": {"matchLabels": {BRIDGED_LABEL: "true"}},
    });
    if with_match_conditions {
        hook["matchConditions"] = match_conditions();
    }
    hook
}

/// The whole MutatingWebhookConfiguration `name`.
pub fn configuration(
    name: &str,
    namespace: &str,
    service: &str,
    with_match_conditions: bool,
) -> Value {
    json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": name},
        "webhooks": [webhook(namespace, service, with_match_conditions)],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_build_creates_in_bridged_namespaces() {
        let c = configuration("qbo", "ops", "svc", false);
        let hook = &c["webhooks"][0];
        assert_eq!(hook["rules"][0]["operations"], json!(["CREATE"]));
        assert_eq!(
            hook["namespaceSelector"]["matchLabels"][BRIDGED_LABEL],
            "true"
        );
        assert_eq!(hook["failurePolicy"], "Fail");
        assert!(hook.get("matchConditions").is_none());
        let typed: k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration =
            serde_json::from_value(configuration("qbo", "ops", "svc", true)).unwrap();
        assert_eq!(
            typed.webhooks.unwrap()[0]
                .match_conditions
                .as_ref()
                .unwrap()
                .len(),
            2
        );
    }
}
