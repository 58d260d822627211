//! Objects by namespace, kept from a watch as the little a reconcile needs
//! of each (nothing for ImageStreams but their names; role and subjects
//! for RoleBindings). Holding that instead of cached objects keeps memory
//! at a few dozen bytes per object, and a namespace's entries are found
//! without scanning every object.

use compact_str::CompactString;
use kube::ResourceExt;
use kube::runtime::watcher;
use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;
use tokio::sync::watch;

/// By namespace; names of 24 bytes or less are held inline.
type Entries<V> = HashMap<CompactString, Slots<V>>;

/// One namespace's entries, sorted by name. A namespace holds a few: a
/// vector of exactly that many costs a fraction of a map's node.
#[derive(Debug, Clone, PartialEq)]
struct Slots<V>(Vec<(CompactString, V)>);

impl<V> Default for Slots<V> {
    fn default() -> Self {
        Self(Vec::new())
    }
}

impl<V> Slots<V> {
    fn find(&self, name: &str) -> Result<usize, usize> {
        self.0.binary_search_by(|(n, _)| (**n).cmp(name))
    }

    fn insert(&mut self, name: String, value: V) {
        match self.find(&name) {
            Ok(i) => self.0[i].1 = value,
            Err(i) => {
                self.0.reserve_exact(1);
                self.0.insert(i, (name.into(), value));
            }
        }
    }

    fn remove(&mut self, name: &str) {
        if let Ok(i) = self.find(name) {
            self.0.remove(i);
            self.0.shrink_to_fit();
        }
    }

    fn get(&self, name: &str) -> Option<&V> {
        self.find(name).ok().map(|i| &self.0[i].1)
    }

    fn len(&self) -> usize {
        self.0.len()
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn names(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|(n, _)| &**n)
    }

    fn values(&self) -> impl Iterator<Item = &V> {
        self.0.iter().map(|(_, v)| v)
    }
}

#[derive(Debug)]
struct State<V> {
    current: Entries<V>,
    /// Filled during a (re)list, swapped in when it completes.
    relist: Option<Entries<V>>,
}

impl<V> Default for State<V> {
    fn default() -> Self {
        Self {
            current: HashMap::new(),
            relist: None,
        }
    }
}

/// Namespaced objects by namespace and name, each kept as a `V`.
#[derive(Debug)]
pub struct Index<V> {
    state: Mutex<State<V>>,
    ready: watch::Sender<bool>,
}

/// Names only.
pub type NameIndex = Index<()>;

impl<V> Default for Index<V> {
    fn default() -> Self {
        Self {
            state: Mutex::new(State::default()),
            ready: watch::channel(false).0,
        }
    }
}

fn key<K: ResourceExt>(obj: &K) -> Option<(String, String)> {
    Some((obj.namespace()?, obj.name_any()))
}

impl<V: Clone + PartialEq> Index<V> {
    fn lock(&self) -> std::sync::MutexGuard<'_, State<V>> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Applies one watch event, keeping `project(obj)` (an object it
    /// maps to `None` is not kept); returns the namespaces whose entries
    /// may have changed (to reconcile them).
    pub fn apply_with<K: ResourceExt>(
        &self,
        event: &watcher::Event<K>,
        project: impl Fn(&K) -> Option<V>,
    ) -> Vec<String> {
        let mut state = self.lock();
        match event {
            watcher::Event::Apply(obj) => key(obj)
                .map(|(ns, name)| {
                    match project(obj) {
                        Some(value) => state
                            .current
                            .entry(CompactString::from(&ns))
                            .or_default()
                            .insert(name, value),
                        None => {
                            if let Some(entries) = state.current.get_mut(ns.as_str()) {
                                entries.remove(&name);
                                if entries.is_empty() {
                                    state.current.remove(ns.as_str());
                                }
                            }
                        }
                    }
                    vec![ns]
                })
                .unwrap_or_default(),
            watcher::Event::Delete(obj) => key(obj)
                .map(|(ns, name)| {
                    if let Some(entries) = state.current.get_mut(ns.as_str()) {
                        entries.remove(&name);
                        if entries.is_empty() {
                            state.current.remove(ns.as_str());
                        }
                    }
                    vec![ns]
                })
                .unwrap_or_default(),
            watcher::Event::Init => {
                state.relist = Some(Entries::new());
                Vec::new()
            }
            watcher::Event::InitApply(obj) => {
                if let (Some((ns, name)), Some(relist), Some(value)) =
                    (key(obj), state.relist.as_mut(), project(obj))
                {
                    relist
                        .entry(CompactString::from(ns))
                        .or_default()
                        .insert(name, value);
                }
                Vec::new()
            }
            watcher::Event::InitDone => {
                let fresh = state.relist.take().unwrap_or_default();
                // Namespaces whose entries differ after the relist: objects
                // created, changed or deleted while the watch was down.
                let mut changed: Vec<String> = fresh
                    .iter()
                    .filter(|(ns, entries)| state.current.get(*ns) != Some(*entries))
                    .map(|(ns, _)| ns.to_string())
                    .collect();
                changed.extend(
                    state
                        .current
                        .keys()
                        .filter(|ns| !fresh.contains_key(*ns))
                        .map(CompactString::to_string),
                );
                state.current = fresh;
                drop(state);
                self.ready.send_replace(true);
                changed
            }
        }
    }

    /// The entries of a namespace, by name.
    pub fn values(&self, namespace: &str) -> Vec<V> {
        self.lock()
            .current
            .get(namespace)
            .map(|e| e.values().cloned().collect())
            .unwrap_or_default()
    }

    /// One entry.
    pub fn get(&self, namespace: &str, name: &str) -> Option<V> {
        self.lock().current.get(namespace)?.get(name).cloned()
    }

    /// What `f` reads of one entry, without copying it.
    pub fn read<R>(&self, namespace: &str, name: &str, f: impl FnOnce(&V) -> R) -> Option<R> {
        self.lock().current.get(namespace)?.get(name).map(f)
    }

    /// The namespaces holding an entry that satisfies `pred`.
    pub fn namespaces_where(&self, pred: impl Fn(&V) -> bool) -> Vec<String> {
        self.lock()
            .current
            .iter()
            .filter(|(_, e)| e.values().any(&pred))
            .map(|(ns, _)| ns.to_string())
            .collect()
    }

    /// How many entries are held.
    pub fn len(&self) -> usize {
        self.lock().current.values().map(Slots::len).sum()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Waits for the first complete list.
    pub async fn ready(&self) {
        let mut rx = self.ready.subscribe();
        let _ = rx.wait_for(|r| *r).await;
    }
}

impl Index<()> {
    /// Applies one watch event (names only).
    pub fn apply<K: ResourceExt>(&self, event: &watcher::Event<K>) -> Vec<String> {
        self.apply_with(event, |_| Some(()))
    }

    /// The names in a namespace.
    pub fn names(&self, namespace: &str) -> BTreeSet<String> {
        self.lock()
            .current
            .get(namespace)
            .map(|e| e.names().map(str::to_owned).collect())
            .unwrap_or_default()
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

    #[tokio::test]
    async fn values_follow_their_objects_and_a_relist_reports_changed_ones() {
        let index = Index::<String>::default();
        // Objects without labels are not kept.
        let value = |c: &ConfigMap| {
            c.metadata
                .labels
                .clone()
                .map(|l| l.into_values().collect::<String>())
        };
        let labelled = |ns: &str, name: &str, v: &str| {
            let mut c = obj(ns, name);
            c.metadata.labels = Some([("k".to_owned(), v.to_owned())].into());
            c
        };
        index.apply_with(&watcher::Event::<ConfigMap>::Init, value);
        index.apply_with(&watcher::Event::InitApply(labelled("a", "x", "1")), value);
        index.apply_with(&watcher::Event::InitApply(labelled("b", "y", "2")), value);
        index.apply_with(&watcher::Event::<ConfigMap>::InitDone, value);
        assert_eq!(index.values("a"), ["1"]);
        index.apply_with(&watcher::Event::Apply(labelled("a", "x", "3")), value);
        assert_eq!(index.values("a"), ["3"]);
        assert_eq!(index.get("a", "x").as_deref(), Some("3"));
        assert_eq!(index.get("a", "y"), None);
        assert_eq!(index.get("z", "x"), None);
        // A change that maps to nothing drops the entry.
        assert_eq!(
            index.apply_with(&watcher::Event::Apply(obj("a", "x")), value),
            ["a"]
        );
        assert_eq!(index.get("a", "x"), None);
        index.apply_with(&watcher::Event::Apply(labelled("a", "x", "3")), value);
        assert_eq!(index.namespaces_where(|v| v == "2"), ["b"]);
        // A value changed while the watch was down: its namespace is reported.
        index.apply_with(&watcher::Event::<ConfigMap>::Init, value);
        index.apply_with(&watcher::Event::InitApply(labelled("a", "x", "3")), value);
        index.apply_with(&watcher::Event::InitApply(labelled("b", "y", "4")), value);
        assert_eq!(
            index.apply_with(&watcher::Event::<ConfigMap>::InitDone, value),
            ["b"]
        );
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
