//! Core `v1` Events and `events.k8s.io/v1` Events are one resource, as on a
//! real apiserver: both APIs serve the same stored objects (kept in their
//! core `v1` form), converted field by field as Kubernetes'
//! `pkg/apis/events/v1` conversion does. An Event written through either
//! API is listed, watched and patched through both, with one
//! resourceVersion sequence. The recorded answer to an invalid
//! `events.k8s.io` create names core fields (`involvedObject.namespace`,
//! event-create-missing-fields): the conversion happens before validation.

use serde_json::{Map, Value};

use super::resources::ResourceDef;

/// `events.k8s.io` field → core `v1` field, for fields whose name differs.
/// Every other field (`eventTime`, `series`, `action`, `reason`,
/// `related`, `reportingInstance`, `type`, `metadata`) is the same in both.
const RENAMED: [(&str, &str); 6] = [
    ("regarding", "involvedObject"),
    ("note", "message"),
    ("deprecatedSource", "source"),
    ("deprecatedFirstTimestamp", "firstTimestamp"),
    ("deprecatedLastTimestamp", "lastTimestamp"),
    ("deprecatedCount", "count"),
];

/// The `reportingController` of `events.k8s.io` is `reportingComponent`
/// in core `v1` (one internal field, two JSON names).
const REPORTING: (&str, &str) = ("reportingController", "reportingComponent");

/// Whether `def` is the `events.k8s.io` view of the core Events.
pub fn is_events_v1(def: &ResourceDef) -> bool {
    def.group == "events.k8s.io" && def.plural == "events"
}

fn rename(obj: &Value, pairs: &[(&str, &str)], api_version: &str) -> Value {
    let Some(map) = obj.as_object() else {
        return obj.clone();
    };
    let mut out = Map::with_capacity(map.len());
    for (k, v) in map {
        let key = pairs
            .iter()
            .find(|(from, _)| from == k)
            .map_or(k.as_str(), |(_, to)| to);
        out.insert(key.to_owned(), v.clone());
    }
    out.insert("apiVersion".into(), Value::from(api_version));
    out.insert("kind".into(), Value::from("Event"));
    Value::Object(out)
}

/// An `events.k8s.io/v1` Event in its stored core `v1` form.
pub fn to_core(obj: &Value) -> Value {
    let mut pairs = RENAMED.to_vec();
    pairs.push(REPORTING);
    rename(obj, &pairs, "v1")
}

/// A stored core `v1` Event as `events.k8s.io/v1` serves it.
pub fn from_core(obj: &Value) -> Value {
    let pairs: Vec<(&str, &str)> = RENAMED
        .iter()
        .chain(std::iter::once(&REPORTING))
        .map(|(ev, core)| (*core, *ev))
        .collect();
    rename(obj, &pairs, "events.k8s.io/v1")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn events_v1() -> Value {
        json!({
            "apiVersion": "events.k8s.io/v1", "kind": "Event",
            "metadata": {"name": "e1", "namespace": "ns"},
            "eventTime": "2026-01-01T00:00:00.000000Z",
            "series": {"count": 2, "lastObservedTime": "2026-01-01T00:01:00.000000Z"},
            "reportingController": "quay-bridge-operator", "reportingInstance": "pod-1",
            "action": "Reconcile", "reason": "Bridged", "type": "Normal", "note": "bridged",
            "regarding": {"kind": "Namespace", "name": "ns", "apiVersion": "v1"},
            "related": {"kind": "Secret", "name": "s"},
            "deprecatedSource": {"component": "c"},
            "deprecatedFirstTimestamp": "2026-01-01T00:00:00Z",
            "deprecatedLastTimestamp": "2026-01-01T00:01:00Z",
            "deprecatedCount": 2
        })
    }

    #[test]
    fn every_renamed_field_maps_to_its_core_name() {
        let core = to_core(&events_v1());
        assert_eq!(core["apiVersion"], "v1");
        assert_eq!(core["kind"], "Event");
        assert_eq!(core["involvedObject"]["kind"], "Namespace");
        assert_eq!(core["message"], "bridged");
        assert_eq!(core["source"]["component"], "c");
        assert_eq!(core["firstTimestamp"], "2026-01-01T00:00:00Z");
        assert_eq!(core["lastTimestamp"], "2026-01-01T00:01:00Z");
        assert_eq!(core["count"], 2);
        assert_eq!(core["reportingComponent"], "quay-bridge-operator");
        for gone in [
            "regarding",
            "note",
            "deprecatedSource",
            "deprecatedCount",
            "reportingController",
        ] {
            assert!(core.get(gone).is_none(), "{gone} left in the core form");
        }
        // Shared fields pass unchanged.
        for same in [
            "eventTime",
            "series",
            "reportingInstance",
            "action",
            "reason",
            "type",
            "related",
            "metadata",
        ] {
            assert_eq!(core[same], events_v1()[same], "{same}");
        }
    }

    #[test]
    fn the_conversion_round_trips() {
        assert_eq!(from_core(&to_core(&events_v1())), events_v1());
        let core = json!({"apiVersion": "v1", "kind": "Event", "metadata": {"name": "x"},
            "involvedObject": {"kind": "Pod", "name": "p"}, "message": "m", "count": 3, "type": "Warning"});
        assert_eq!(to_core(&from_core(&core)), core);
        let ev = from_core(&core);
        assert_eq!(ev["apiVersion"], "events.k8s.io/v1");
        assert_eq!(ev["regarding"]["name"], "p");
        assert_eq!(ev["note"], "m");
        assert_eq!(ev["deprecatedCount"], 3);
    }

    #[test]
    fn a_non_object_is_left_alone() {
        assert_eq!(to_core(&json!(null)), json!(null));
    }
}
