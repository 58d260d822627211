//! Publishing Events (`events.k8s.io/v1`), with repeats of a Warning
//! folded into one Event's series as kube's recorder does, but remembering
//! only a few dozen bytes per series instead of the whole Event: on a
//! cluster where thousands of namespaces report the same problem, kube's
//! recorder kept every Event for six minutes (3 KiB each) and scanned all
//! of them on every publish.

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::{Event, EventSeries};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::events::Reporter;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Mutex;

/// How long a repeat still joins an Event's series (kube's and
/// client-go's figure).
const SERIES_TTL: SignedDuration = SignedDuration::from_mins(6);

/// What is remembered of an Event that may repeat.
#[derive(Debug, Clone)]
struct Series {
    namespace: String,
    name: String,
    count: i32,
    last: Timestamp,
}

/// One Event to publish, before it has a name and a time.
#[derive(Debug, Clone)]
pub struct Note<'a> {
    /// Warning, or Normal.
    pub warning: bool,
    /// Why (CamelCase).
    pub reason: &'a str,
    /// What the operator was doing (`Reconcile`, `Import`…).
    pub action: &'a str,
    /// What happened and what to do, for a person; at most a few lines.
    pub note: String,
}

/// Writes Events for one reporter.
pub struct EventSink {
    client: kube::Client,
    reporter: Reporter,
    series: Mutex<HashMap<u64, Series>>,
    pruned: Mutex<Timestamp>,
}

impl std::fmt::Debug for EventSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventSink")
            .field("reporter", &self.reporter)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The series key, as kube's recorder keys it: type, action, reason and
/// the object (the note is not part of it).
fn key(n: &Note<'_>, regarding: &ObjectReference) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (n.warning, n.action, n.reason).hash(&mut h);
    (
        &regarding.api_version,
        &regarding.kind,
        &regarding.namespace,
        &regarding.name,
        &regarding.uid,
    )
        .hash(&mut h);
    h.finish()
}

impl EventSink {
    /// A sink writing as `reporter`.
    pub fn new(client: kube::Client, reporter: Reporter) -> Self {
        Self {
            client,
            reporter,
            series: Mutex::default(),
            pruned: Mutex::new(Timestamp::now()),
        }
    }

    /// How many series are remembered.
    #[cfg(test)]
    fn series_len(&self) -> usize {
        lock(&self.series).len()
    }

    /// The Event kube's recorder would create.
    fn event(&self, n: &Note<'_>, regarding: &ObjectReference, now: Timestamp) -> Event {
        let controller = &self.reporter.controller;
        Event {
            action: Some(n.action.to_owned()),
            reason: Some(n.reason.to_owned()),
            event_time: Some(MicroTime(now)),
            regarding: Some(regarding.clone()),
            note: Some(n.note.clone()),
            metadata: ObjectMeta {
                namespace: regarding.namespace.clone(),
                name: Some(format!(
                    "{}.{:x}",
                    regarding.name.as_ref().unwrap_or(controller),
                    now.as_nanosecond()
                )),
                ..Default::default()
            },
            reporting_controller: Some(controller.clone()),
            reporting_instance: Some(
                self.reporter
                    .instance
                    .clone()
                    .unwrap_or_else(|| controller.clone()),
            ),
            type_: Some(if n.warning { "Warning" } else { "Normal" }.to_owned()),
            ..Default::default()
        }
    }

    /// Forgets series that ended more than [`SERIES_TTL`] ago, at most
    /// once a minute (a scan of all of them per publish made a burst of
    /// N Events cost N² steps).
    fn prune(&self, now: Timestamp) {
        {
            let mut pruned = lock(&self.pruned);
            if now.duration_since(*pruned) < SignedDuration::from_mins(1) {
                return;
            }
            *pruned = now;
        }
        lock(&self.series).retain(|_, s| s.last + SERIES_TTL > now);
    }

    /// Publishes `n` about `regarding`. With `aggregate`, a repeat within
    /// six minutes of the last one raises the first Event's series count
    /// instead of creating another Event; without, nothing is remembered.
    pub async fn publish(
        &self,
        n: &Note<'_>,
        regarding: &ObjectReference,
        aggregate: bool,
    ) -> Result<(), kube::Error> {
        let now = Timestamp::now();
        if !aggregate {
            return self.create(n, regarding, now).await.map(drop);
        }
        self.prune(now);
        let key = key(n, regarding);
        let known = lock(&self.series)
            .get(&key)
            .filter(|s| s.last + SERIES_TTL > now)
            .cloned();
        if let Some(s) = known {
            let count = s.count.saturating_add(1);
            let patch = serde_json::json!({"series": EventSeries {
                count,
                last_observed_time: MicroTime(now),
            }});
            let api: Api<Event> = Api::namespaced(self.client.clone(), &s.namespace);
            match api
                .patch(&s.name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(_) => {
                    lock(&self.series).insert(
                        key,
                        Series {
                            count,
                            last: now,
                            ..s
                        },
                    );
                    return Ok(());
                }
                // The Event expired or was deleted: start a new one.
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(e) => return Err(e),
            }
        }
        let created = self.create(n, regarding, now).await?;
        lock(&self.series).insert(key, created);
        Ok(())
    }

    async fn create(
        &self,
        n: &Note<'_>,
        regarding: &ObjectReference,
        now: Timestamp,
    ) -> Result<Series, kube::Error> {
        let event = self.event(n, regarding, now);
        let name = event.metadata.name.clone();
        let namespace = regarding
            .namespace
            .clone()
            .unwrap_or_else(|| "default".to_owned());
        let api: Api<Event> = Api::namespaced(self.client.clone(), &namespace);
        let created = api.create(&PostParams::default(), &event).await?;
        Ok(Series {
            namespace,
            // The name is ours: the apiserver keeps it.
            name: created
                .metadata
                .name
                .or(name)
                .unwrap_or_else(|| self.reporter.controller.clone()),
            count: 1,
            last: now,
        })
    }
}

/// Events about namespaces, integrations and Builds, and the once-only
/// reports already made this term.
pub(crate) struct Events {
    sink: EventSink,
    reported: Mutex<std::collections::HashSet<(String, String)>>,
}

impl Events {
    /// Events written as `reporter`.
    pub fn new(client: kube::Client, reporter: Reporter) -> Self {
        Self {
            sink: EventSink::new(client, reporter),
            reported: Mutex::default(),
        }
    }

    /// Publishes an Event on a namespace. With `once`, an identical reason
    /// is published only the first time (until the namespace is forgotten).
    pub async fn on_namespace(
        &self,
        ns: &k8s_openapi::api::core::v1::Namespace,
        warning: bool,
        reason: &str,
        note: String,
        once: bool,
    ) {
        use kube::{Resource, ResourceExt};
        if once && !lock(&self.reported).insert((ns.name_any(), reason.to_owned())) {
            return;
        }
        // Normal Events here summarise what one reconcile did: they never
        // repeat, so nothing is remembered of them. Warnings repeat and
        // aggregate into a series.
        self.publish(&ns.object_ref(&()), warning, reason, "Reconcile", note)
            .await;
    }

    /// Publishes an Event about any object; a Warning's repeats aggregate
    /// into a series.
    pub async fn publish(
        &self,
        reference: &ObjectReference,
        warning: bool,
        reason: &str,
        action: &str,
        note: String,
    ) {
        let n = Note {
            warning,
            reason,
            action,
            note,
        };
        if let Err(e) = self.sink.publish(&n, reference, warning).await {
            tracing::debug!(error = %e, "event not published");
        }
    }

    /// Clears a once-only report, so it is published again if it recurs.
    pub fn clear_report(&self, namespace: &str, reason: &str) {
        lock(&self.reported).remove(&(namespace.to_owned(), reason.to_owned()));
    }

    /// Forgets a namespace's once-only reports.
    pub fn forget(&self, namespace: &str) {
        lock(&self.reported).retain(|(n, _)| n != namespace);
    }

    /// Forgets every once-only report (a new leadership term).
    pub fn clear_reports(&self) {
        lock(&self.reported).clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::api::ListParams;
    use kube_sandbox::{EmbeddedKube, EmbeddedKubeConfig};

    fn note(warning: bool, reason: &str, text: &str) -> Note<'static> {
        Note {
            warning,
            reason: if reason == "A" { "A" } else { "B" },
            action: "Reconcile",
            note: text.to_owned(),
        }
    }

    fn namespace(name: &str) -> ObjectReference {
        ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Namespace".into()),
            name: Some(name.into()),
            uid: Some(format!("uid-{name}")),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn repeats_join_a_series_and_one_off_events_are_not_remembered() {
        crate::install_crypto_provider();
        let kube = EmbeddedKube::start(EmbeddedKubeConfig::default())
            .await
            .unwrap();
        let sink = EventSink::new(
            kube.client(),
            Reporter {
                controller: "quay-bridge-operator".into(),
                instance: Some("pod-1".into()),
            },
        );
        let (a, b) = (namespace("team-a"), namespace("team-b"));
        for _ in 0..3 {
            sink.publish(&note(true, "A", "first"), &a, true)
                .await
                .unwrap();
        }
        sink.publish(&note(true, "A", "other"), &b, true)
            .await
            .unwrap();
        sink.publish(&note(true, "B", "x"), &a, true).await.unwrap();
        sink.publish(&note(false, "A", "done"), &a, false)
            .await
            .unwrap();
        sink.publish(&note(false, "A", "done"), &a, false)
            .await
            .unwrap();
        assert_eq!(sink.series_len(), 3, "one per (type, reason, object)");

        let events: Api<Event> = Api::namespaced(kube.client(), "default");
        let list = events.list(&ListParams::default()).await.unwrap().items;
        let count = |ns: &str, reason: &str, type_: &str| -> Vec<i32> {
            list.iter()
                .filter(|e| {
                    e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(ns)
                        && e.reason.as_deref() == Some(reason)
                        && e.type_.as_deref() == Some(type_)
                })
                .map(|e| e.series.as_ref().map_or(1, |s| s.count))
                .collect()
        };
        assert_eq!(count("team-a", "A", "Warning"), [3]);
        assert_eq!(count("team-b", "A", "Warning"), [1]);
        assert_eq!(count("team-a", "B", "Warning"), [1]);
        assert_eq!(count("team-a", "A", "Normal"), [1, 1]);
        let first = list.iter().find(|e| e.series.is_some()).unwrap();
        assert_eq!(first.note.as_deref(), Some("first"));
        assert_eq!(first.reporting_instance.as_deref(), Some("pod-1"));

        // The Event of a series was deleted: the next repeat starts anew.
        events
            .delete(first.metadata.name.as_deref().unwrap(), &Default::default())
            .await
            .unwrap();
        sink.publish(&note(true, "A", "again"), &a, true)
            .await
            .unwrap();
        let list = events.list(&ListParams::default()).await.unwrap().items;
        let again = list
            .iter()
            .find(|e| e.note.as_deref() == Some("again"))
            .unwrap();
        assert!(again.series.is_none());
    }
}
