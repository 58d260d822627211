//! `meta.k8s.io/v1` Table answers for kubectl, and the small JSONPath
//! subset CRD printer columns use.

use super::events;
use super::resources::ResourceDef;
use serde_json::{Value, json};

/// Evaluates `.a.b`, `.a[0].b` and `.a[?(@.k=="v")].b`.
pub fn json_path<'v>(obj: &'v Value, path: &str) -> Option<&'v Value> {
    let mut cur = obj;
    let mut rest = path
        .trim()
        .trim_start_matches('{')
        .trim_end_matches('}')
        .trim_start_matches('$');
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix('.') {
            let end = r.find(['.', '[']).unwrap_or(r.len());
            cur = cur.get(&r[..end])?;
            rest = &r[end..];
        } else if let Some(r) = rest.strip_prefix('[') {
            let end = r.find(']')?;
            let inner = &r[..end];
            if let Some(filter) = inner.strip_prefix("?(@.").and_then(|f| f.strip_suffix(')')) {
                let (key, value) = filter.split_once("==")?;
                let value = value.trim().trim_matches('"').trim_matches('\'');
                cur = cur
                    .as_array()?
                    .iter()
                    .find(|item| item.get(key.trim()).and_then(Value::as_str) == Some(value))?;
            } else {
                cur = cur.get(inner.parse::<usize>().ok()?)?;
            }
            rest = &r[end + 1..];
        } else {
            return None;
        }
    }
    Some(cur)
}

/// "5s", "3m", "2h", "4d", as kubectl prints ages.
pub fn age(created: Option<&str>) -> String {
    let Some(ts) = created.and_then(|c| c.parse::<jiff::Timestamp>().ok()) else {
        return "<unknown>".into();
    };
    let secs = jiff::Timestamp::now()
        .as_second()
        .saturating_sub(ts.as_second())
        .max(0);
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s if s < 172_800 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    }
}

fn cell(v: Option<&Value>) -> Value {
    match v {
        None | Some(Value::Null) => json!("<none>"),
        Some(Value::String(s)) => json!(s),
        Some(other) => other.clone(),
    }
}

/// Where a column's cells come from.
enum Source {
    Name,
    Age,
    /// A CRD printer column's JSONPath.
    Path(String),
    /// A built-in kind's table converter.
    Computed(fn(&Value) -> Value),
}

struct Column {
    name: String,
    ty: &'static str,
    priority: u8,
    source: Source,
}

fn col(name: &str, ty: &'static str, priority: u8, source: Source) -> Column {
    Column {
        name: name.to_owned(),
        ty,
        priority,
        source,
    }
}

fn s(obj: &Value, pointer: &str) -> String {
    obj.pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

fn int(obj: &Value, pointer: &str) -> i64 {
    obj.pointer(pointer).and_then(Value::as_i64).unwrap_or(0)
}

fn len_of(obj: &Value, pointer: &str) -> i64 {
    match obj.pointer(pointer) {
        Some(Value::Object(m)) => m.len() as i64,
        Some(Value::Array(a)) => a.len() as i64,
        _ => 0,
    }
}

fn or_none(v: String) -> Value {
    if v.is_empty() {
        json!("<none>")
    } else {
        json!(v)
    }
}

/// `k=v,k2=v2`, as labels.SelectorFromSet prints a selector.
fn selector_of(m: Option<&Value>) -> Value {
    let pairs: Vec<String> = m
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
        .collect();
    or_none(pairs.join(","))
}

/// Containers and images of a pod template, comma separated.
fn template_field(obj: &Value, field: &str) -> Value {
    let items: Vec<String> = obj
        .pointer("/spec/template/spec/containers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|c| s(c, &format!("/{field}")))
        .collect();
    json!(items.join(","))
}

/// `N seconds`, `About a minute`, … as docker/go-units' HumanDuration
/// (used by OpenShift's printers, followed by " ago").
pub fn human_duration(secs: i64) -> String {
    let minutes = secs / 60;
    let hours = (secs as f64 / 3600.0 + 0.5) as i64;
    match secs {
        s if s < 1 => "Less than a second".into(),
        1 => "1 second".into(),
        s if s < 60 => format!("{s} seconds"),
        _ if minutes == 1 => "About a minute".into(),
        _ if minutes < 60 => format!("{minutes} minutes"),
        _ if hours == 1 => "About an hour".into(),
        _ if hours < 48 => format!("{hours} hours"),
        _ if hours < 24 * 7 * 2 => format!("{} days", hours / 24),
        _ if hours < 24 * 30 * 2 => format!("{} weeks", hours / 24 / 7),
        _ if hours < 24 * 365 * 2 => format!("{} months", hours / 24 / 30),
        _ => format!("{} years", secs / 3600 / 24 / 365),
    }
}

fn ago(ts: &str) -> String {
    match ts.parse::<jiff::Timestamp>() {
        Ok(t) => format!(
            "{} ago",
            human_duration(jiff::Timestamp::now().as_second() - t.as_second())
        ),
        Err(_) => String::new(),
    }
}

/// Go's `time.Duration.String()` for whole seconds: `45s`, `1m20s`, `2h0m5s`.
pub fn go_duration(nanos: i64) -> String {
    let secs = nanos / 1_000_000_000;
    let (h, m, s) = (secs / 3600, (secs % 3600) / 60, secs % 60);
    match (h, m) {
        (0, 0) => format!("{s}s"),
        (0, _) => format!("{m}m{s}s"),
        _ => format!("{h}h{m}m{s}s"),
    }
}

fn event_last_seen(e: &Value) -> Value {
    let first = match s(e, "/firstTimestamp") {
        t if t.is_empty() => age(Some(&s(e, "/eventTime"))),
        t => age(Some(&t)),
    };
    let last = match (s(e, "/series/lastObservedTime"), s(e, "/lastTimestamp")) {
        (series, _) if !series.is_empty() => age(Some(&series)),
        (_, t) if !t.is_empty() => age(Some(&t)),
        _ => first,
    };
    json!(last)
}

fn event_first_seen(e: &Value) -> Value {
    match s(e, "/firstTimestamp") {
        t if t.is_empty() => json!(age(Some(&s(e, "/eventTime")))),
        t => json!(age(Some(&t))),
    }
}

fn event_count(e: &Value) -> Value {
    let count = match e.pointer("/series/count").and_then(Value::as_i64) {
        Some(c) => c,
        None => int(e, "/count").max(1),
    };
    json!(count)
}

fn event_object(e: &Value) -> Value {
    let kind = s(e, "/involvedObject/kind").to_lowercase();
    match s(e, "/involvedObject/name") {
        n if n.is_empty() => json!(kind),
        n => json!(format!("{kind}/{n}")),
    }
}

/// `component, host`, falling back to the reporting controller and instance.
fn event_source(e: &Value) -> Value {
    let component = match s(e, "/source/component") {
        c if c.is_empty() => s(e, "/reportingComponent"),
        c => c,
    };
    let host = match s(e, "/source/host") {
        h if h.is_empty() => s(e, "/reportingInstance"),
        h => h,
    };
    json!(
        [component, host]
            .into_iter()
            .filter(|p| !p.is_empty())
            .collect::<Vec<_>>()
            .join(", ")
    )
}

fn deployment_ready(d: &Value) -> Value {
    let desired = d
        .pointer("/spec/replicas")
        .and_then(Value::as_i64)
        .unwrap_or(1);
    json!(format!("{}/{desired}", int(d, "/status/readyReplicas")))
}

fn service_ports(svc: &Value) -> Value {
    let ports: Vec<String> = svc
        .pointer("/spec/ports")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|p| {
            let proto = match s(p, "/protocol") {
                pr if pr.is_empty() => "TCP".to_owned(),
                pr => pr,
            };
            format!("{}/{proto}", int(p, "/port"))
        })
        .collect();
    or_none(ports.join(","))
}

fn subjects_of(rb: &Value, kind: &str) -> Value {
    let names: Vec<String> = rb
        .pointer("/subjects")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|sub| s(sub, "/kind") == kind)
        .map(|sub| match (kind, s(sub, "/namespace")) {
            ("ServiceAccount", ns) => format!("{ns}/{}", s(sub, "/name")),
            _ => s(sub, "/name"),
        })
        .collect();
    json!(names.join(", "))
}

fn build_from(b: &Value) -> Value {
    let source = b.pointer("/spec/source");
    let has = |k: &str| source.and_then(|src| src.get(k)).is_some();
    let commit: String = s(b, "/spec/revision/git/commit").chars().take(7).collect();
    let with_rev = |from: &str| {
        if commit.is_empty() {
            from.to_owned()
        } else {
            format!("{from}@{commit}")
        }
    };
    json!(match () {
        () if has("binary") => with_rev("Binary"),
        () if has("dockerfile") && has("git") => with_rev("Dockerfile,Git"),
        () if has("dockerfile") => "Dockerfile".to_owned(),
        () if has("git") => with_rev("Git"),
        () => String::new(),
    })
}

fn build_status(b: &Value) -> Value {
    match s(b, "/status/reason") {
        r if r.is_empty() => json!(s(b, "/status/phase")),
        r => json!(format!("{} ({r})", s(b, "/status/phase"))),
    }
}

fn build_duration(b: &Value) -> Value {
    match int(b, "/status/duration") {
        d if d > 0 => json!(go_duration(d)),
        _ => json!(""),
    }
}

fn image_stream_tags(is: &Value) -> Value {
    let mut tags: Vec<(String, String)> = is
        .pointer("/status/tags")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|t| (s(t, "/items/0/created"), s(t, "/tag")))
        .collect();
    // Newest first, as imageutil.SortStatusTags.
    tags.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    let shown: Vec<String> = tags.iter().take(3).map(|(_, t)| t.clone()).collect();
    let mut out = shown.join(",");
    if tags.len() > 3 {
        out.push_str(&format!(" + {} more...", tags.len() - 3));
    }
    json!(out)
}

fn image_stream_updated(is: &Value) -> Value {
    let latest = is
        .pointer("/status/tags")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|t| s(t, "/items/0/created"))
        .max()
        .unwrap_or_default();
    json!(if latest.is_empty() {
        String::new()
    } else {
        ago(&latest)
    })
}

/// The columns of a built-in kind as Kubernetes' (`pkg/printers`) and
/// OpenShift's table converters define them: (name, type, priority,
/// cells). Priority 1 columns show with `-o wide`.
fn builtin_columns(group: &str, plural: &str) -> Option<Vec<Column>> {
    use Source::{Age as A, Computed as C, Name as N};
    let c = |name, ty, priority, f| col(name, ty, priority, C(f));
    Some(match (group, plural) {
        ("", "namespaces") => vec![
            col("Name", "string", 0, N),
            c("Status", "string", 0, |o| json!(s(o, "/status/phase"))),
            col("Age", "string", 0, A),
        ],
        ("", "secrets") => vec![
            col("Name", "string", 0, N),
            c("Type", "string", 0, |o| json!(s(o, "/type"))),
            c("Data", "string", 0, |o| {
                json!(len_of(o, "/data") + len_of(o, "/stringData"))
            }),
            col("Age", "string", 0, A),
        ],
        ("", "configmaps") => vec![
            col("Name", "string", 0, N),
            c("Data", "string", 0, |o| {
                json!(len_of(o, "/data") + len_of(o, "/binaryData"))
            }),
            col("Age", "string", 0, A),
        ],
        ("", "serviceaccounts") => vec![
            col("Name", "string", 0, N),
            c("Secrets", "string", 0, |o| json!(len_of(o, "/secrets"))),
            col("Age", "string", 0, A),
        ],
        ("", "events") => vec![
            c("Last Seen", "string", 0, event_last_seen),
            c("Type", "string", 0, |o| json!(s(o, "/type"))),
            c("Reason", "string", 0, |o| json!(s(o, "/reason"))),
            c("Object", "string", 0, event_object),
            c("Subobject", "string", 1, |o| {
                json!(s(o, "/involvedObject/fieldPath"))
            }),
            c("Source", "string", 1, event_source),
            c("Message", "string", 0, |o| json!(s(o, "/message").trim())),
            c("First Seen", "string", 1, event_first_seen),
            c("Count", "string", 1, event_count),
            col("Name", "string", 1, N),
        ],
        ("", "services") => vec![
            col("Name", "string", 0, N),
            c("Type", "string", 0, |o| match s(o, "/spec/type") {
                t if t.is_empty() => json!("ClusterIP"),
                t => json!(t),
            }),
            c("Cluster-IP", "string", 0, |o| {
                or_none(s(o, "/spec/clusterIP"))
            }),
            c("External-IP", "string", 0, |o| {
                let ips: Vec<String> = o
                    .pointer("/spec/externalIPs")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect();
                or_none(ips.join(","))
            }),
            c("Port(s)", "string", 0, service_ports),
            col("Age", "string", 0, A),
            c("Selector", "string", 1, |o| {
                selector_of(o.pointer("/spec/selector"))
            }),
        ],
        ("apps", "deployments") => vec![
            col("Name", "string", 0, N),
            c("Ready", "string", 0, deployment_ready),
            c("Up-to-date", "string", 0, |o| {
                json!(int(o, "/status/updatedReplicas"))
            }),
            c("Available", "string", 0, |o| {
                json!(int(o, "/status/availableReplicas"))
            }),
            col("Age", "string", 0, A),
            c("Containers", "string", 1, |o| template_field(o, "name")),
            c("Images", "string", 1, |o| template_field(o, "image")),
            c("Selector", "string", 1, |o| {
                selector_of(o.pointer("/spec/selector/matchLabels"))
            }),
        ],
        ("coordination.k8s.io", "leases") => vec![
            col("Name", "string", 0, N),
            c("Holder", "string", 0, |o| {
                json!(s(o, "/spec/holderIdentity"))
            }),
            col("Age", "string", 0, A),
        ],
        ("rbac.authorization.k8s.io", "rolebindings" | "clusterrolebindings") => vec![
            col("Name", "string", 0, N),
            c("Role", "string", 0, |o| {
                json!(format!(
                    "{}/{}",
                    s(o, "/roleRef/kind"),
                    s(o, "/roleRef/name")
                ))
            }),
            col("Age", "string", 0, A),
            c("Users", "string", 1, |o| subjects_of(o, "User")),
            c("Groups", "string", 1, |o| subjects_of(o, "Group")),
            c("ServiceAccounts", "string", 1, |o| {
                subjects_of(o, "ServiceAccount")
            }),
        ],
        ("rbac.authorization.k8s.io", "roles" | "clusterroles")
        | ("apiextensions.k8s.io", "customresourcedefinitions") => vec![
            col("Name", "string", 0, N),
            c("Created At", "date", 0, |o| {
                json!(s(o, "/metadata/creationTimestamp"))
            }),
        ],
        ("admissionregistration.k8s.io", "mutatingwebhookconfigurations") => vec![
            col("Name", "string", 0, N),
            c("Webhooks", "integer", 0, |o| json!(len_of(o, "/webhooks"))),
            col("Age", "string", 0, A),
        ],
        ("build.openshift.io", "builds") => vec![
            col("Name", "string", 0, N),
            c("Type", "string", 0, |o| json!(s(o, "/spec/strategy/type"))),
            c("From", "string", 0, build_from),
            c("Status", "string", 0, build_status),
            c("Started", "string", 0, |o| {
                json!(ago(&s(o, "/status/startTimestamp")))
            }),
            c("Duration", "string", 0, build_duration),
        ],
        ("build.openshift.io", "buildconfigs") => vec![
            col("Name", "string", 0, N),
            c("Type", "string", 0, |o| json!(s(o, "/spec/strategy/type"))),
            c("From", "string", 0, build_from),
            c("Latest", "integer", 0, |o| {
                json!(int(o, "/status/lastVersion"))
            }),
        ],
        ("image.openshift.io", "imagestreams") => vec![
            col("Name", "string", 0, N),
            c("Image Repository", "string", 0, |o| {
                match s(o, "/status/publicDockerImageRepository") {
                    r if r.is_empty() => json!(s(o, "/status/dockerImageRepository")),
                    r => json!(r),
                }
            }),
            c("Tags", "string", 0, image_stream_tags),
            c("Updated", "string", 0, image_stream_updated),
        ],
        _ => return None,
    })
}

/// Columns of a kind: a built-in kind's own, else name, a CRD's printer
/// columns, and age.
fn columns(def: &ResourceDef) -> Vec<Column> {
    // events.k8s.io Events share the core Events' table converter.
    let group = if events::is_events_v1(def) {
        ""
    } else {
        def.group.as_str()
    };
    if !def.custom
        && let Some(cols) = builtin_columns(group, &def.plural)
    {
        return cols;
    }
    let mut cols = vec![col("Name", "string", 0, Source::Name)];
    for (name, ty, path) in &def.printer_columns {
        let ty: &'static str = match ty.as_str() {
            "integer" => "integer",
            "number" => "number",
            "boolean" => "boolean",
            "date" => "date",
            _ => "string",
        };
        cols.push(col(name, ty, 0, Source::Path(path.clone())));
    }
    if !cols.iter().any(|c| c.name == "Age") {
        cols.push(col("Age", "date", 0, Source::Age));
    }
    cols
}

/// A Table of the given objects.
pub fn table(def: &ResourceDef, objects: &[&Value], rv: u64) -> Value {
    let cols = columns(def);
    let definitions: Vec<Value> = cols
        .iter()
        .map(|c| json!({"name": c.name, "type": c.ty, "format": if matches!(c.source, Source::Name) { "name" } else { "" }, "description": c.name, "priority": c.priority}))
        .collect();
    let rows: Vec<Value> = objects
        .iter()
        .map(|obj| {
            let core;
            let obj = if events::is_events_v1(def) {
                core = events::to_core(obj);
                &core
            } else {
                *obj
            };
            let cells: Vec<Value> = cols
                .iter()
                .map(|c| match &c.source {
                    Source::Name => cell(obj.pointer("/metadata/name")),
                    Source::Age => json!(age(obj.pointer("/metadata/creationTimestamp").and_then(Value::as_str))),
                    // Like the apiserver's table convertor: dates show as ages.
                    Source::Path(p) if c.ty == "date" => json!(age(json_path(obj, p).and_then(Value::as_str))),
                    Source::Path(p) => cell(json_path(obj, p)),
                    Source::Computed(f) => f(obj),
                })
                .collect();
            json!({"cells": cells, "object": {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": obj.get("metadata").cloned().unwrap_or_default()}})
        })
        .collect();
    json!({"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": {"resourceVersion": rv.to_string()}, "columnDefinitions": definitions, "rows": rows})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_path_subset() {
        let obj = json!({"spec": {"host": "h"}, "status": {"conditions": [{"type": "Ready", "status": "True"}, {"type": "X", "status": "False"}]}, "l": [1, 2]});
        assert_eq!(json_path(&obj, ".spec.host"), Some(&json!("h")));
        assert_eq!(
            json_path(&obj, ".status.conditions[?(@.type==\"Ready\")].status"),
            Some(&json!("True"))
        );
        assert_eq!(json_path(&obj, ".l[1]"), Some(&json!(2)));
        assert_eq!(json_path(&obj, ".missing.x"), None);
    }

    #[test]
    fn ages() {
        assert_eq!(age(None), "<unknown>");
        let t = jiff::Timestamp::now()
            .checked_sub(jiff::SignedDuration::from_secs(3 * 3600))
            .unwrap();
        assert_eq!(
            age(Some(&t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())),
            "3h"
        );
    }

    #[test]
    fn openshift_durations_and_relative_times() {
        assert_eq!(human_duration(0), "Less than a second");
        assert_eq!(human_duration(1), "1 second");
        assert_eq!(human_duration(59), "59 seconds");
        assert_eq!(human_duration(61), "About a minute");
        assert_eq!(human_duration(600), "10 minutes");
        assert_eq!(human_duration(3600), "About an hour");
        assert_eq!(human_duration(5 * 3600), "5 hours");
        assert_eq!(human_duration(3 * 86_400), "3 days");
        assert_eq!(go_duration(1_000_000_000), "1s");
        assert_eq!(go_duration(80 * 1_000_000_000), "1m20s");
        assert_eq!(go_duration(7205 * 1_000_000_000), "2h0m5s");
    }

    fn cells_of(group: &str, plural: &str, obj: &Value) -> Vec<(String, Value)> {
        builtin_columns(group, plural)
            .unwrap()
            .into_iter()
            .filter_map(|c| match c.source {
                Source::Computed(f) => Some((c.name, f(obj))),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn event_cells_follow_the_series_and_the_reporting_controller() {
        let ev = json!({
            "involvedObject": {"kind": "Namespace", "name": "demo"},
            "reason": "Bridged", "type": "Normal", "message": " created \n",
            "eventTime": "2026-01-01T00:00:00.000000Z",
            "series": {"count": 4, "lastObservedTime": "2026-01-01T00:00:00.000000Z"},
            "reportingComponent": "quay-bridge-operator", "reportingInstance": "pod-1"
        });
        let cells: std::collections::BTreeMap<String, Value> =
            cells_of("", "events", &ev).into_iter().collect();
        assert_eq!(cells["Object"], "namespace/demo");
        assert_eq!(cells["Message"], "created");
        assert_eq!(cells["Count"], 4);
        assert_eq!(cells["Source"], "quay-bridge-operator, pod-1");
        // Without a series, a core Event's own count (at least 1).
        let cells: std::collections::BTreeMap<String, Value> =
            cells_of("", "events", &json!({"involvedObject": {"kind": "Node"}}))
                .into_iter()
                .collect();
        assert_eq!(cells["Count"], 1);
        assert_eq!(cells["Object"], "node");
    }

    #[test]
    fn build_and_deployment_cells() {
        let b = json!({"spec": {"strategy": {"type": "Docker"}, "source": {"git": {"uri": "u"}},
            "revision": {"git": {"commit": "0123456789abcdef"}}},
            "status": {"phase": "Failed", "reason": "PushImageToRegistryFailed", "duration": 65_000_000_000_i64}});
        let cells: std::collections::BTreeMap<String, Value> =
            cells_of("build.openshift.io", "builds", &b)
                .into_iter()
                .collect();
        assert_eq!(cells["Type"], "Docker");
        assert_eq!(cells["From"], "Git@0123456");
        assert_eq!(cells["Status"], "Failed (PushImageToRegistryFailed)");
        assert_eq!(cells["Duration"], "1m5s");
        assert_eq!(cells["Started"], "");
        let d = json!({"spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}},
            "template": {"spec": {"containers": [{"name": "a", "image": "i:1"}, {"name": "b", "image": "i:2"}]}}},
            "status": {"readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2}});
        let cells: std::collections::BTreeMap<String, Value> =
            cells_of("apps", "deployments", &d).into_iter().collect();
        assert_eq!(cells["Ready"], "2/3");
        assert_eq!(cells["Up-to-date"], 3);
        assert_eq!(cells["Containers"], "a,b");
        assert_eq!(cells["Images"], "i:1,i:2");
        assert_eq!(cells["Selector"], "app=web");
    }
}
