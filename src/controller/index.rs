//! Object names by namespace, kept from a watch: all a namespace reconcile
//! needs to know of its ImageStreams. Holding names instead of cached
//! objects keeps memory at a few dozen bytes per ImageStream, and a
//! namespace's names are found without scanning every object.

use kube::ResourceExt;
use kube::runtime::watcher;
use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;
use tokio::sync::watch;

type Names = HashMap<String, BTreeSet<String>>;

#[derive(Debug, Default)]
struct State {
    current: Names,
    /// Filled during a (re)list, swapped in when it completes.
    relist: Option<Names>,
}

/// Names of namespaced objects, by namespace.
#[derive(Debug)]
pub struct NameIndex {
    state: Mutex<State>,
    ready: watch::Sender<bool>,
}

impl Default for NameIndex {
    fn default() -> Self {
        Self {
            state: Mutex::default(),
            ready: watch::channel(false).0,
        }
    }
}

fn key<K: ResourceExt>(obj: &K) -> Option<(String, String)> {
    Some((obj.namespace()?, obj.name_any()))
}

impl NameIndex {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Applies one watch event; returns the namespaces whose names may have
    /// changed (to reconcile them).
    pub fn apply<K: ResourceExt>(&self, event: &watcher::Event<K>) -> Vec<String> {
        let mut state = self.lock();
        match event {
            watcher::Event::Apply(obj) => key(obj)
                .map(|(ns, name)| {
                    state.current.entry(ns.clone()).or_default().insert(name);
                    vec![ns]
                })
                .unwrap_or_default(),
            watcher::Event::Delete(obj) => key(obj)
                .map(|(ns, name)| {
                    if let Some(names) = state.current.get_mut(&ns) {
                        names.remove(&name);
                        if names.is_empty() {
                            state.current.remove(&ns);
                        }
                    }
                    vec![ns]
                })
                .unwrap_or_default(),
            watcher::Event::Init => {
                state.relist = Some(Names::new());
                Vec::new()
            }
            watcher::Event::InitApply(obj) => {
                if let (Some((ns, name)), Some(relist)) = (key(obj), state.relist.as_mut()) {
                    relist.entry(ns).or_default().insert(name);
                }
                Vec::new()
            }
            watcher::Event::InitDone => {
                let fresh = state.relist.take().unwrap_or_default();
                // Namespaces whose names differ after the relist: objects
                // created or deleted while the watch was down included.
                let mut changed: Vec<String> = fresh
                    .iter()
                    .filter(|(ns, names)| state.current.get(*ns) != Some(*names))
                    .map(|(ns, _)| ns.clone())
                    .collect();
                changed.extend(
                    state
                        .current
                        .keys()
                        .filter(|ns| !fresh.contains_key(*ns))
                        .cloned(),
                );
                state.current = fresh;
                drop(state);
                self.ready.send_replace(true);
                changed
            }
        }
    }

    /// The names in a namespace.
    pub fn names(&self, namespace: &str) -> BTreeSet<String> {
        self.lock()
            .current
            .get(namespace)
            .cloned()
            .unwrap_or_default()
    }

    /// How many names are held.
    pub fn len(&self) -> usize {
        self.lock().current.values().map(BTreeSet::len).sum()
    }

    /// Whether no name is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Waits for the first complete list.
    pub async fn ready(&self) {
        let mut rx = self.ready.subscribe();
        let _ = rx.wait_for(|r| *r).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ConfigMap;

    fn obj(ns: &str, name: &str) -> ConfigMap {
        let mut c = ConfigMap::default();
        c.metadata.namespace = Some(ns.into());
        c.metadata.name = Some(name.into());
        c
    }

    fn names(index: &NameIndex, ns: &str) -> Vec<String> {
        index.names(ns).into_iter().collect()
    }

    #[tokio::test]
    async fn a_first_list_then_events_then_a_relist() {
        let index = NameIndex::default();
        assert!(index.apply(&watcher::Event::<ConfigMap>::Init).is_empty());
        index.apply(&watcher::Event::InitApply(obj("a", "app")));
        index.apply(&watcher::Event::InitApply(obj("a", "db")));
        index.apply(&watcher::Event::InitApply(obj("b", "web")));
        // Not visible before the list completes.
        assert!(index.is_empty());
        let mut first = index.apply(&watcher::Event::<ConfigMap>::InitDone);
        first.sort();
        assert_eq!(first, ["a", "b"]);
        index.ready().await;
        assert_eq!(names(&index, "a"), ["app", "db"]);
        assert_eq!(index.len(), 3);

        assert_eq!(index.apply(&watcher::Event::Apply(obj("c", "new"))), ["c"]);
        assert_eq!(
            index.apply(&watcher::Event::Apply(obj("a", "app"))),
            ["a"],
            "a modification still reports its namespace"
        );
        assert_eq!(index.apply(&watcher::Event::Delete(obj("b", "web"))), ["b"]);
        assert!(names(&index, "b").is_empty());
        assert_eq!(index.len(), 3);

        // Relist after a dropped watch: `a/db` went and `d/x` came meanwhile.
        index.apply(&watcher::Event::<ConfigMap>::Init);
        index.apply(&watcher::Event::InitApply(obj("a", "app")));
        index.apply(&watcher::Event::InitApply(obj("c", "new")));
        index.apply(&watcher::Event::InitApply(obj("d", "x")));
        assert_eq!(names(&index, "a"), ["app", "db"], "old names until done");
        let mut changed = index.apply(&watcher::Event::<ConfigMap>::InitDone);
        changed.sort();
        assert_eq!(changed, ["a", "d"]);
        assert_eq!(names(&index, "a"), ["app"]);
        assert_eq!(names(&index, "d"), ["x"]);
    }

    #[test]
    fn cluster_scoped_objects_are_ignored() {
        let index = NameIndex::default();
        let mut c = ConfigMap::default();
        c.metadata.name = Some("x".into());
        assert!(index.apply(&watcher::Event::Apply(c)).is_empty());
        assert!(index.is_empty());
    }
}
