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

/// What an insertion did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Change {
    Same,
    Changed,
    Added,
}

impl<V: PartialEq> Slots<V> {
    fn find(&self, name: &str) -> Result<usize, usize> {
        self.0.binary_search_by(|(n, _)| (**n).cmp(name))
    }

    /// Sets `name`'s value; returns where it is and what it was.
    fn insert(&mut self, name: String, value: V) -> (usize, Change) {
        match self.find(&name) {
            Ok(i) => {
                let change = if self.0[i].1 == value {
                    Change::Same
                } else {
                    Change::Changed
                };
                self.0[i].1 = value;
                (i, change)
            }
            Err(i) => {
                self.0.reserve_exact(1);
                self.0.insert(i, (name.into(), value));
                (i, Change::Added)
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

/// What a (re)list has seen of one namespace so far.
#[derive(Debug, Default)]
struct Seen {
    /// One mark per slot of the namespace's entries, in the same order.
    marks: Vec<bool>,
    /// Whether the relist added or changed an entry here.
    changed: bool,
}

#[derive(Debug)]
struct State<V> {
    current: Entries<V>,
    /// During a (re)list: what it has seen, by namespace. The list
    /// updates `current` in place and, when it completes, removes what it
    /// did not see; a relist of a large cluster thus never holds two
    /// copies of the index.
    listing: Option<HashMap<CompactString, Seen>>,
}

impl<V> Default for State<V> {
    fn default() -> Self {
        Self {
            current: HashMap::new(),
            listing: None,
        }
    }
}

impl<V: PartialEq> State<V> {
    /// Removes `namespace/name` (with its mark, during a list).
    fn remove(&mut self, namespace: &str, name: &str) {
        let Some(entries) = self.current.get_mut(namespace) else {
            return;
        };
        let Ok(i) = entries.find(name) else {
            return;
        };
        entries.remove(name);
        if entries.is_empty() {
            self.current.remove(namespace);
        }
        if let Some(listing) = self.listing.as_mut() {
            let seen = listing.entry(CompactString::from(namespace)).or_default();
            if i < seen.marks.len() {
                seen.marks.remove(i);
            }
            seen.changed = true;
        }
    }

    /// Keeps `value` as `namespace/name`, or drops the entry when there
    /// is none; during a list, marks it as seen.
    fn set(&mut self, namespace: String, name: String, value: Option<V>) {
        let Some(value) = value else {
            // Not kept: if it was, a list sweeps it when it completes.
            return self.remove(&namespace, &name);
        };
        let entries = self
            .current
            .entry(CompactString::from(namespace.as_str()))
            .or_default();
        let before = entries.len();
        let (i, change) = entries.insert(name, value);
        let Some(listing) = self.listing.as_mut() else {
            return;
        };
        let seen = listing.entry(CompactString::from(namespace)).or_default();
        seen.marks.resize(before, false);
        match change {
            Change::Added => seen.marks.insert(i, true),
            Change::Changed | Change::Same => seen.marks[i] = true,
        }
        seen.changed |= change != Change::Same;
    }

    /// The list is complete: entries it did not see are removed; returns
    /// the namespaces whose entries it changed.
    fn list_done(&mut self) -> Vec<String> {
        let Some(listing) = self.listing.take() else {
            return Vec::new();
        };
        let mut changed: BTreeSet<String> = listing
            .iter()
            .filter(|(_, seen)| seen.changed)
            .map(|(namespace, _)| namespace.to_string())
            .collect();
        self.current.retain(|namespace, entries| {
            let Some(seen) = listing.get(namespace) else {
                // Nothing listed here any more.
                changed.insert(namespace.to_string());
                return false;
            };
            let before = entries.len();
            let mut marks = seen.marks.iter();
            entries.0.retain(|_| marks.next().copied().unwrap_or(false));
            if entries.len() != before {
                entries.0.shrink_to_fit();
                changed.insert(namespace.to_string());
            }
            !entries.is_empty()
        });
        changed.into_iter().collect()
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
                    state.set(ns.clone(), name, project(obj));
                    vec![ns]
                })
                .unwrap_or_default(),
            watcher::Event::Delete(obj) => key(obj)
                .map(|(ns, name)| {
                    state.remove(&ns, &name);
                    vec![ns]
                })
                .unwrap_or_default(),
            watcher::Event::Init => {
                state.listing = Some(HashMap::new());
                Vec::new()
            }
            watcher::Event::InitApply(obj) => {
                if let Some((ns, name)) = key(obj) {
                    if let Some(listing) = state.listing.as_mut() {
                        // Seen, even if not kept: its namespace is listed.
                        listing.entry(CompactString::from(ns.as_str())).or_default();
                    }
                    state.set(ns, name, project(obj));
                }
                Vec::new()
            }
            watcher::Event::InitDone => {
                // Namespaces whose entries differ after the list: objects
                // created, changed or deleted while the watch was down.
                let changed = state.list_done();
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
        // Not ready before the list completes.
        assert!(
            tokio::time::timeout(std::time::Duration::from_millis(10), index.ready())
                .await
                .is_err()
        );
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
        assert_eq!(
            names(&index, "a"),
            ["app", "db"],
            "deletions wait until done"
        );
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
    fn a_relist_updates_in_place_and_sweeps_what_it_did_not_see() {
        let index = NameIndex::default();
        let list = |objects: &[(&str, &str)]| {
            index.apply(&watcher::Event::<ConfigMap>::Init);
            for (ns, name) in objects {
                index.apply(&watcher::Event::InitApply(obj(ns, name)));
            }
            let mut changed = index.apply(&watcher::Event::<ConfigMap>::InitDone);
            changed.sort();
            changed
        };
        assert_eq!(list(&[("a", "b"), ("a", "d"), ("x", "y")]), ["a", "x"]);
        // Listed in another order, one added between the two, one gone.
        assert_eq!(list(&[("a", "d"), ("a", "c"), ("x", "y")]), ["a"]);
        assert_eq!(names(&index, "a"), ["c", "d"]);
        assert_eq!(names(&index, "x"), ["y"]);
        // The same list again changes nothing.
        assert!(list(&[("x", "y"), ("a", "c"), ("a", "d")]).is_empty());
        // A namespace listed with nothing left, one new.
        assert_eq!(list(&[("a", "c"), ("a", "d"), ("n", "m")]), ["n", "x"]);
        assert!(names(&index, "x").is_empty());
        assert_eq!(index.len(), 3);
        // A list interrupted and started again: the second one decides.
        index.apply(&watcher::Event::<ConfigMap>::Init);
        index.apply(&watcher::Event::InitApply(obj("a", "c")));
        assert_eq!(list(&[("a", "d"), ("n", "m")]), ["a"]);
        assert_eq!(names(&index, "a"), ["d"]);
        // An empty list empties the index.
        assert_eq!(list(&[]), ["a", "n"]);
        assert!(index.is_empty());
    }

    #[test]
    fn a_relisted_object_that_is_no_longer_kept_is_dropped_and_reported() {
        let index = Index::<u8>::default();
        let value = |c: &ConfigMap| c.metadata.labels.as_ref().map(|l| l.len() as u8);
        let labelled = |ns: &str, name: &str| {
            let mut c = obj(ns, name);
            c.metadata.labels = Some([("k".to_owned(), "v".to_owned())].into());
            c
        };
        index.apply_with(&watcher::Event::<ConfigMap>::Init, value);
        index.apply_with(&watcher::Event::InitApply(labelled("a", "x")), value);
        index.apply_with(&watcher::Event::InitApply(labelled("a", "y")), value);
        index.apply_with(&watcher::Event::InitApply(labelled("b", "z")), value);
        index.apply_with(&watcher::Event::<ConfigMap>::InitDone, value);
        index.apply_with(&watcher::Event::<ConfigMap>::Init, value);
        // `a/x` lost its label, `b/z` too (its namespace then holds nothing).
        index.apply_with(&watcher::Event::InitApply(obj("a", "x")), value);
        index.apply_with(&watcher::Event::InitApply(labelled("a", "y")), value);
        index.apply_with(&watcher::Event::InitApply(obj("b", "z")), value);
        let mut changed = index.apply_with(&watcher::Event::<ConfigMap>::InitDone, value);
        changed.sort();
        assert_eq!(changed, ["a", "b"]);
        assert_eq!(index.get("a", "x"), None);
        assert_eq!(index.get("a", "y"), Some(1));
        assert_eq!(index.len(), 1);
    }

    /// Every relist, whatever the order and the differences, leaves
    /// exactly what it listed and reports exactly the namespaces that
    /// differ.
    #[test]
    fn relists_agree_with_a_fresh_index() {
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = move |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        let index = Index::<u8>::default();
        let value = |c: &ConfigMap| {
            c.metadata
                .labels
                .as_ref()
                .and_then(|l| l.get("v"))
                .and_then(|v| v.parse().ok())
        };
        let mut before: std::collections::BTreeMap<(String, String), u8> = Default::default();
        for _ in 0..300 {
            let mut listed = Vec::new();
            let mut after = std::collections::BTreeMap::new();
            for _ in 0..next(12) {
                let (ns, name) = (format!("n{}", next(4)), format!("o{}", next(5)));
                if after.contains_key(&(ns.clone(), name.clone())) {
                    continue;
                }
                let mut c = obj(&ns, &name);
                // Some objects are not kept.
                let v = next(4);
                if v > 0 {
                    c.metadata.labels = Some([("v".to_owned(), v.to_string())].into());
                    after.insert((ns.clone(), name.clone()), v as u8);
                }
                listed.push(c);
            }
            index.apply_with(&watcher::Event::<ConfigMap>::Init, value);
            for c in listed {
                index.apply_with(&watcher::Event::InitApply(c), value);
            }
            let mut changed = index.apply_with(&watcher::Event::<ConfigMap>::InitDone, value);
            changed.sort();
            let held: std::collections::BTreeMap<(String, String), u8> = (0..4)
                .flat_map(|n| (0..5).map(move |o| (format!("n{n}"), format!("o{o}"))))
                .filter_map(|(ns, name)| index.get(&ns, &name).map(|v| ((ns, name), v)))
                .collect();
            assert_eq!(held, after);
            let of = |m: &std::collections::BTreeMap<(String, String), u8>, ns: &str| {
                m.iter()
                    .filter(|((n, _), _)| n == ns)
                    .map(|(k, v)| (k.1.clone(), *v))
                    .collect::<Vec<_>>()
            };
            let expected: Vec<String> = (0..4)
                .map(|n| format!("n{n}"))
                .filter(|ns| of(&before, ns) != of(&after, ns))
                .collect();
            assert_eq!(changed, expected);
            before = after;
        }
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
