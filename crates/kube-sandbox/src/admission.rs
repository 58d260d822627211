//! Mutating admission as the apiserver runs it: every matching webhook of
//! every MutatingWebhookConfiguration (configurations in name order) gets an
//! AdmissionReview over TLS, its JSONPatch is applied, `failurePolicy`,
//! `timeoutSeconds`, selectors, `sideEffects` on dry runs and
//! `reinvocationPolicy: IfNeeded` are honoured.

use super::errors::ApiError;
use super::patch;
use super::resources::ResourceDef;
use super::selectors::{FieldSelector, LabelSelector, labels_of};
use super::server::KubeState;
use super::store::{name_of, namespace_of};
use base64::Engine;
use serde_json::{Value, json};
use std::time::Duration;

fn strings(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn contains_or_star(list: &[String], value: &str) -> bool {
    list.iter().any(|x| x == "*" || x == value)
}

/// Whether one rule of a webhook matches the request.
pub fn rule_matches(
    rule: &Value,
    operation: &str,
    def: &ResourceDef,
    subresource: Option<&str>,
) -> bool {
    if !contains_or_star(&strings(rule.get("operations")), operation)
        || !contains_or_star(&strings(rule.get("apiGroups")), &def.group)
        || !contains_or_star(&strings(rule.get("apiVersions")), &def.version)
    {
        return false;
    }
    let scope_ok = match rule.get("scope").and_then(Value::as_str).unwrap_or("*") {
        "Cluster" => !def.namespaced,
        "Namespaced" => def.namespaced,
        _ => true,
    };
    let resource_ok = strings(rule.get("resources")).iter().any(|r| {
        let (res, sub) = r
            .split_once('/')
            .map_or((r.as_str(), None), |(a, b)| (a, Some(b)));
        let res_ok = res == "*" || res == def.plural;
        let sub_ok = match (sub, subresource) {
            (None, None) => true,
            (None, Some(_)) => false,
            (Some("*"), _) => true,
            (Some(s), Some(actual)) => s == actual,
            (Some(_), None) => false,
        };
        res_ok && sub_ok
    });
    scope_ok && resource_ok
}

enum Outcome {
    Allowed(Option<Value>),
    Denied(ApiError),
    Failed(String),
}

/// What is being admitted.
struct Attributes<'a> {
    def: &'a ResourceDef,
    operation: &'a str,
    subresource: Option<&'a str>,
    old: Option<&'a Value>,
    identity: &'a str,
    dry_run: bool,
}

fn review(version: &str, uid: &str, a: &Attributes<'_>, obj: &Value) -> Value {
    let Attributes {
        def,
        operation,
        subresource,
        old,
        identity,
        dry_run,
    } = *a;
    let kind = json!({"group": def.group, "version": def.version, "kind": def.kind});
    let resource = json!({"group": def.group, "version": def.version, "resource": def.plural});
    let mut request = json!({
        "uid": uid, "kind": kind, "resource": resource, "requestKind": kind, "requestResource": resource,
        "name": name_of(obj), "operation": operation,
        "userInfo": {"username": identity, "groups": ["system:authenticated"]},
        "object": obj, "oldObject": old.cloned().unwrap_or(Value::Null), "dryRun": dry_run,
        "options": {"kind": if operation == "CREATE" { "CreateOptions" } else { "UpdateOptions" }, "apiVersion": "meta.k8s.io/v1"},
    });
    if def.namespaced {
        request["namespace"] = json!(namespace_of(obj));
    }
    if let Some(sub) = subresource {
        request["subResource"] = json!(sub);
        request["requestSubResource"] = json!(sub);
    }
    json!({"apiVersion": format!("admission.k8s.io/{version}"), "kind": "AdmissionReview", "request": request})
}

async fn client_for(
    st: &KubeState,
    ca_bundle: Option<&str>,
    resolve: Option<(&str, std::net::SocketAddr)>,
) -> Result<reqwest::Client, String> {
    let key = format!("{}|{:?}", ca_bundle.unwrap_or_default(), resolve);
    if let Some(c) = st
        .webhook_clients
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .get(&key)
    {
        return Ok(c.clone());
    }
    let mut builder = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none());
    if let Some(ca) = ca_bundle.filter(|c| !c.is_empty()) {
        let pem = base64::engine::general_purpose::STANDARD
            .decode(ca)
            .map_err(|e| format!("caBundle is not base64: {e}"))?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem)
            .map_err(|e| format!("caBundle holds no valid certificate: {e}"))?;
        builder = builder.tls_certs_only(certs);
    }
    if let Some((host, addr)) = resolve {
        builder = builder.resolve(host, addr);
    }
    let client = builder.build().map_err(|e| e.to_string())?;
    st.webhook_clients
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .insert(key, client.clone());
    Ok(client)
}

fn error_chain(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(inner) = source {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        source = inner.source();
    }
    text
}

async fn call(
    st: &KubeState,
    webhook: &Value,
    body: &Value,
    version: &str,
    uid: &str,
    name: &str,
) -> Outcome {
    let cc = webhook.get("clientConfig").cloned().unwrap_or_default();
    let timeout = webhook
        .get("timeoutSeconds")
        .and_then(Value::as_u64)
        .unwrap_or(10)
        .clamp(1, 30);
    let ca = cc.get("caBundle").and_then(Value::as_str);
    let (url, resolve) = if let Some(url) = cc.get("url").and_then(Value::as_str) {
        (url.to_owned(), None)
    } else if let Some(svc) = cc.get("service") {
        let ns = svc
            .get("namespace")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let svc_name = svc.get("name").and_then(Value::as_str).unwrap_or_default();
        let path = svc.get("path").and_then(Value::as_str).unwrap_or("/");
        let host = format!("{svc_name}.{ns}.svc");
        let addr = st
            .service_addresses
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&(ns.to_owned(), svc_name.to_owned()))
            .copied();
        let Some(addr) = addr else {
            return Outcome::Failed(format!(
                "failed to call webhook: service \"{ns}/{svc_name}\" not found"
            ));
        };
        (
            format!("https://{host}:{}{path}", addr.port()),
            Some((host, addr)),
        )
    } else {
        return Outcome::Failed(
            "failed to call webhook: clientConfig has neither url nor service".into(),
        );
    };
    let url = format!("{url}?timeout={timeout}s");
    let client = match client_for(st, ca, resolve.as_ref().map(|(h, a)| (h.as_str(), *a))).await {
        Ok(c) => c,
        Err(e) => return Outcome::Failed(format!("failed to call webhook: {e}")),
    };
    let sent = client
        .post(&url)
        .timeout(Duration::from_secs(timeout))
        .json(body)
        .send()
        .await;
    let response = match sent {
        Ok(r) => r,
        Err(e) => {
            return Outcome::Failed(format!(
                "failed to call webhook: Post \"{url}\": {}",
                error_chain(&e)
            ));
        }
    };
    let status = response.status();
    let bytes = response.bytes().await.unwrap_or_default();
    if !status.is_success() {
        return Outcome::Failed(format!(
            "failed to call webhook: the server responded with the status code {} but did not return more information",
            status.as_u16()
        ));
    }
    let Ok(answer) = serde_json::from_slice::<Value>(&bytes) else {
        return Outcome::Failed(
            "received invalid webhook response: the response is not a JSON AdmissionReview".into(),
        );
    };
    if version == "v1"
        && (answer.get("apiVersion").and_then(Value::as_str) != Some("admission.k8s.io/v1")
            || answer.get("kind").and_then(Value::as_str) != Some("AdmissionReview"))
    {
        return Outcome::Failed(format!(
            "received invalid webhook response: expected webhook response of admission.k8s.io/v1, Kind=AdmissionReview, got {}, Kind={}",
            answer
                .get("apiVersion")
                .and_then(Value::as_str)
                .unwrap_or_default(),
            answer
                .get("kind")
                .and_then(Value::as_str)
                .unwrap_or_default()
        ));
    }
    let Some(resp) = answer.get("response") else {
        return Outcome::Failed("received invalid webhook response: response is missing".into());
    };
    let got_uid = resp.get("uid").and_then(Value::as_str).unwrap_or_default();
    if got_uid != uid {
        return Outcome::Failed(format!(
            "received invalid webhook response: expected response.uid=\"{uid}\", got \"{got_uid}\""
        ));
    }
    if !resp
        .get("allowed")
        .and_then(Value::as_bool)
        .unwrap_or(false)
    {
        let status = resp.get("status").cloned().unwrap_or_default();
        let code = status
            .get("code")
            .and_then(Value::as_u64)
            .map_or(400, |c| if c < 400 { 400 } else { c }) as u16;
        let msg = status
            .get("message")
            .and_then(Value::as_str)
            .filter(|m| !m.is_empty());
        let reason_text = status
            .get("reason")
            .and_then(Value::as_str)
            .filter(|m| !m.is_empty());
        let message = match (msg, reason_text) {
            (Some(m), _) => format!("admission webhook \"{name}\" denied the request: {m}"),
            (None, Some(r)) => format!("admission webhook \"{name}\" denied the request: {r}"),
            (None, None) => {
                format!("admission webhook \"{name}\" denied the request without explanation")
            }
        };
        let reason = match status.get("reason").and_then(Value::as_str) {
            Some("Forbidden") => "Forbidden",
            Some("Invalid") => "Invalid",
            Some("Conflict") => "Conflict",
            Some("TooManyRequests") => "TooManyRequests",
            _ => "BadRequest",
        };
        return Outcome::Denied(ApiError {
            code,
            reason,
            message,
            details: None,
        });
    }
    let Some(raw) = resp.get("patch").filter(|p| !p.is_null()) else {
        return Outcome::Allowed(None);
    };
    if version == "v1" && resp.get("patchType").and_then(Value::as_str) != Some("JSONPatch") {
        return Outcome::Failed(
            "received invalid webhook response: patchType must be JSONPatch when a patch is given"
                .into(),
        );
    }
    // []byte in Go: a base64 string, or (as Go's decoder also accepts) an array of numbers.
    let bytes: Option<Vec<u8>> = match raw {
        Value::String(s) => base64::engine::general_purpose::STANDARD.decode(s).ok(),
        Value::Array(a) => a
            .iter()
            .map(|n| n.as_u64().and_then(|n| u8::try_from(n).ok()))
            .collect(),
        _ => None,
    };
    match bytes.and_then(|b| serde_json::from_slice::<Value>(&b).ok()) {
        Some(p) => Outcome::Allowed(Some(p)),
        None => Outcome::Failed(
            "received invalid webhook response: the patch is not a base64-encoded JSON patch"
                .into(),
        ),
    }
}

/// Runs every matching mutating webhook over `obj`; returns the mutated
/// object or the rejection.
#[allow(clippy::too_many_arguments)]
pub async fn mutate(
    st: &KubeState,
    def: &ResourceDef,
    operation: &str,
    subresource: Option<&str>,
    mut obj: Value,
    old: Option<&Value>,
    identity: &str,
    dry_run: bool,
) -> Result<Value, ApiError> {
    if def.group == "admissionregistration.k8s.io" {
        return Ok(obj);
    }
    let attrs = Attributes {
        def,
        operation,
        subresource,
        old,
        identity,
        dry_run,
    };
    let (hooks, ns_labels) = {
        let store = st.lock_store();
        let Some(mwc) = store
            .registry
            .get(
                "admissionregistration.k8s.io",
                "v1",
                "mutatingwebhookconfigurations",
            )
            .cloned()
        else {
            return Ok(obj);
        };
        let configs = store.list(
            &mwc,
            None,
            &LabelSelector::default(),
            &FieldSelector::default(),
        );
        let mut hooks = Vec::new();
        for c in configs {
            for w in c
                .get("webhooks")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                hooks.push(w.clone());
            }
        }
        let ns_labels = if def.namespaced {
            store
                .registry
                .get("", "v1", "namespaces")
                .and_then(|nd| store.get(nd, "", namespace_of(&obj)))
                .map(|n| labels_of(&n))
        } else if def.plural == "namespaces" && def.group.is_empty() {
            Some(labels_of(&obj))
        } else {
            None
        };
        (hooks, ns_labels)
    };
    if hooks.is_empty() {
        return Ok(obj);
    }
    let matches = |w: &Value, obj: &Value| -> Result<bool, ApiError> {
        let rules_ok = w
            .get("rules")
            .and_then(Value::as_array)
            .is_some_and(|rules| {
                rules
                    .iter()
                    .any(|r| rule_matches(r, operation, def, subresource))
            });
        if !rules_ok {
            return Ok(false);
        }
        if let (Some(sel), Some(labels)) = (w.get("namespaceSelector"), &ns_labels) {
            let sel = LabelSelector::from_object(sel).map_err(ApiError::internal)?;
            if !sel.matches(labels) {
                return Ok(false);
            }
        }
        if let Some(sel) = w.get("objectSelector") {
            let sel = LabelSelector::from_object(sel).map_err(ApiError::internal)?;
            let labels = labels_of(obj);
            let old_labels = old.map(labels_of);
            if !sel.matches(&labels) && !old_labels.is_some_and(|l| sel.matches(&l)) {
                return Ok(false);
            }
        }
        Ok(true)
    };
    let mut reinvoke: Vec<(usize, usize)> = Vec::new(); // (hook, mutations seen when it ran)
    let mut mutations = 0usize;
    let mut order: Vec<usize> = (0..hooks.len()).collect();
    let mut pass = 0;
    loop {
        for &i in &order {
            let w = &hooks[i];
            if !matches(w, &obj)? {
                continue;
            }
            let name = w
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned();
            let side_effects = w
                .get("sideEffects")
                .and_then(Value::as_str)
                .unwrap_or("Unknown");
            if dry_run && !matches!(side_effects, "None" | "NoneOnDryRun") {
                return Err(ApiError::bad_request(format!(
                    "admission webhook \"{name}\" does not support dry run"
                )));
            }
            let versions = strings(w.get("admissionReviewVersions"));
            let version = if versions.iter().any(|v| v == "v1") {
                "v1"
            } else if versions.iter().any(|v| v == "v1beta1") {
                "v1beta1"
            } else {
                "none"
            };
            let fail_closed = w.get("failurePolicy").and_then(Value::as_str) != Some("Ignore");
            let outcome = if version == "none" {
                Outcome::Failed(format!(
                    "webhook does not accept known AdmissionReview versions: {versions:?}"
                ))
            } else {
                let uid = bridge_common::random::random_uuid();
                let body = review(version, &uid, &attrs, &obj);
                call(st, w, &body, version, &uid, &name).await
            };
            match outcome {
                Outcome::Allowed(None) => {}
                Outcome::Allowed(Some(p)) => {
                    let before = obj.clone();
                    if let Err(e) = patch::json_patch(&mut obj, &p) {
                        let msg = format!(
                            "failed calling webhook \"{name}\": failed to apply the patch: {e:?}"
                        );
                        if fail_closed {
                            return Err(ApiError::internal(msg));
                        }
                        obj = before;
                    } else if obj != before {
                        mutations += 1;
                    }
                }
                Outcome::Denied(e) => return Err(e),
                Outcome::Failed(msg) => {
                    if fail_closed {
                        return Err(ApiError::internal(format!(
                            "failed calling webhook \"{name}\": {msg}"
                        )));
                    }
                    tracing::debug!(webhook = %name, "webhook failed, ignored by failurePolicy: {msg}");
                }
            }
            if pass == 0 && w.get("reinvocationPolicy").and_then(Value::as_str) == Some("IfNeeded")
            {
                reinvoke.push((i, mutations));
            }
        }
        pass += 1;
        // Reinvoke, once, IfNeeded webhooks that ran before a later mutation.
        let again: Vec<usize> = reinvoke
            .iter()
            .filter(|(_, seen)| *seen < mutations)
            .map(|(i, _)| *i)
            .collect();
        if pass > 1 || again.is_empty() {
            return Ok(obj);
        }
        order = again;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::Registry;

    #[test]
    fn rules_match_like_the_apiserver() {
        let r = Registry::new();
        let builds = r.get("build.openshift.io", "v1", "builds").unwrap();
        let rule = json!({"operations": ["CREATE"], "apiGroups": ["build.openshift.io"], "apiVersions": ["v1"], "resources": ["builds"]});
        assert!(rule_matches(&rule, "CREATE", builds, None));
        assert!(!rule_matches(&rule, "UPDATE", builds, None));
        assert!(!rule_matches(&rule, "CREATE", builds, Some("status")));
        let all = json!({"operations": ["*"], "apiGroups": ["*"], "apiVersions": ["*"], "resources": ["*/*"]});
        assert!(rule_matches(&all, "UPDATE", builds, Some("status")));
        let star = json!({"operations": ["*"], "apiGroups": ["*"], "apiVersions": ["*"], "resources": ["*"], "scope": "Cluster"});
        assert!(
            !rule_matches(&star, "CREATE", builds, None),
            "scope Cluster excludes namespaced kinds"
        );
        let status = json!({"operations": ["UPDATE"], "apiGroups": ["build.openshift.io"], "apiVersions": ["v1"], "resources": ["builds/status"]});
        assert!(rule_matches(&status, "UPDATE", builds, Some("status")));
        assert!(!rule_matches(&status, "UPDATE", builds, None));
    }
}
