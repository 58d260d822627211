//! Relists applied to a reflector's store in place. kube's reflector
//! builds a relist's objects in a second map and swaps it in when the
//! list completes, so a watch that expires on a large cluster briefly
//! holds the cache twice, and every listed object counts as applied (its
//! controller reconciles all of them again). After the first list, this
//! turns a relist into what changed: an `Apply` of each object that is
//! new or whose resourceVersion differs from the cached one, then a
//! `Delete` of each cached object the list did not return.

use futures::{Stream, StreamExt};
use kube::Resource;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use std::collections::HashSet;
use std::hash::Hash;

/// What a relist has seen, for the store it updates.
pub(super) struct InPlace<K: Resource + 'static>
where
    K::DynamicType: Eq + Hash + Clone,
{
    store: Store<K>,
    /// Whether a first list completed.
    listed: bool,
    /// During a relist: the objects it returned.
    seen: Option<HashSet<ObjectRef<K>>>,
}

impl<K> InPlace<K>
where
    K: Resource + Clone + 'static,
    K::DynamicType: Eq + Hash + Clone + Default,
{
    pub fn new(store: Store<K>) -> Self {
        Self {
            store,
            listed: false,
            seen: None,
        }
    }

    /// The events to hand the store's writer for one watch event.
    pub fn event(&mut self, event: watcher::Event<K>) -> Vec<watcher::Event<K>> {
        match event {
            watcher::Event::Init if self.listed => {
                self.seen = Some(HashSet::new());
                Vec::new()
            }
            watcher::Event::InitApply(obj) if self.listed => {
                let key = ObjectRef::from_obj(&obj);
                let unchanged = obj.meta().resource_version.is_some()
                    && self.store.get(&key).is_some_and(|cached| {
                        cached.meta().resource_version == obj.meta().resource_version
                    });
                if let Some(seen) = self.seen.as_mut() {
                    seen.insert(key);
                }
                if unchanged {
                    Vec::new()
                } else {
                    vec![watcher::Event::Apply(obj)]
                }
            }
            watcher::Event::InitDone if self.listed => {
                let seen = self.seen.take().unwrap_or_default();
                self.store
                    .state()
                    .into_iter()
                    .filter(|obj| !seen.contains(&ObjectRef::from_obj(obj.as_ref())))
                    .map(|obj| watcher::Event::Delete(obj.as_ref().clone()))
                    .collect()
            }
            watcher::Event::InitDone => {
                self.listed = true;
                vec![watcher::Event::InitDone]
            }
            other => vec![other],
        }
    }
}

/// `stream`, its relists applied to `store` in place (see the module).
pub(super) fn in_place<K, E>(
    stream: impl Stream<Item = Result<watcher::Event<K>, E>> + Send + 'static,
    store: Store<K>,
) -> impl Stream<Item = Result<watcher::Event<K>, E>> + Send + 'static
where
    K: Resource + Clone + Send + Sync + 'static,
    K::DynamicType: Eq + Hash + Clone + Default + Send + Sync,
    E: Send + 'static,
{
    let mut relist = InPlace::new(store);
    stream.flat_map(move |event| {
        futures::stream::iter(match event {
            Ok(event) => relist.event(event).into_iter().map(Ok).collect(),
            Err(e) => vec![Err(e)],
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::Namespace;
    use kube::runtime::reflector;

    fn ns(name: &str, rv: &str) -> Namespace {
        let mut n = Namespace::default();
        n.metadata.name = Some(name.into());
        n.metadata.resource_version = Some(rv.into());
        n
    }

    /// Feeds `events` through the adapter into the store; returns what the
    /// controller would see as applied and the store's names and versions.
    fn run(
        relist: &mut InPlace<Namespace>,
        writer: &mut reflector::store::Writer<Namespace>,
        events: Vec<watcher::Event<Namespace>>,
    ) -> Vec<String> {
        let mut applied = Vec::new();
        for event in events {
            for out in relist.event(event) {
                writer.apply_watcher_event(&out);
                if let watcher::Event::Apply(o) | watcher::Event::InitApply(o) = &out {
                    applied.push(o.metadata.name.clone().unwrap_or_default());
                }
            }
        }
        applied
    }

    fn held(store: &Store<Namespace>) -> Vec<(String, String)> {
        let mut v: Vec<_> = store
            .state()
            .iter()
            .map(|n| {
                (
                    n.metadata.name.clone().unwrap_or_default(),
                    n.metadata.resource_version.clone().unwrap_or_default(),
                )
            })
            .collect();
        v.sort();
        v
    }

    #[tokio::test]
    async fn a_relist_applies_only_what_changed_and_deletes_what_went() {
        let (store, mut writer) = reflector::store::<Namespace>();
        let mut relist = InPlace::new(store.clone());
        use watcher::Event::*;
        // The first list is the reflector's own: ready when done.
        let applied = run(
            &mut relist,
            &mut writer,
            vec![Init, InitApply(ns("a", "1")), InitApply(ns("b", "2"))],
        );
        assert_eq!(applied, ["a", "b"]);
        assert!(store.is_empty(), "the first list is swapped in when done");
        run(&mut relist, &mut writer, vec![InitDone]);
        store.wait_until_ready().await.unwrap();
        assert_eq!(
            held(&store),
            [("a".into(), "1".into()), ("b".into(), "2".into())]
        );

        // A relist: `a` unchanged, `b` changed, `c` new, and `d` (applied
        // meanwhile) gone.
        run(&mut relist, &mut writer, vec![Apply(ns("d", "3"))]);
        let applied = run(
            &mut relist,
            &mut writer,
            vec![
                Init,
                InitApply(ns("a", "1")),
                InitApply(ns("b", "5")),
                InitApply(ns("c", "6")),
            ],
        );
        assert_eq!(applied, ["b", "c"], "only what changed is applied");
        assert_eq!(
            held(&store).len(),
            4,
            "in place: nothing removed before done"
        );
        run(&mut relist, &mut writer, vec![InitDone]);
        assert_eq!(
            held(&store),
            [
                ("a".into(), "1".into()),
                ("b".into(), "5".into()),
                ("c".into(), "6".into())
            ]
        );

        // A relist interrupted and started again: the second one decides.
        run(
            &mut relist,
            &mut writer,
            vec![
                Init,
                InitApply(ns("a", "1")),
                Init,
                InitApply(ns("c", "6")),
                InitDone,
            ],
        );
        assert_eq!(held(&store), [("c".into(), "6".into())]);
        // Watch events pass through.
        assert_eq!(
            run(&mut relist, &mut writer, vec![Apply(ns("e", "7"))]),
            ["e"]
        );
        run(&mut relist, &mut writer, vec![Delete(ns("c", "6"))]);
        assert_eq!(held(&store), [("e".into(), "7".into())]);
    }

    #[tokio::test]
    async fn an_interrupted_first_list_is_still_the_reflectors() {
        let (store, mut writer) = reflector::store::<Namespace>();
        let mut relist = InPlace::new(store.clone());
        use watcher::Event::*;
        run(
            &mut relist,
            &mut writer,
            vec![
                Init,
                InitApply(ns("a", "1")),
                Init,
                InitApply(ns("b", "2")),
                InitDone,
            ],
        );
        assert_eq!(held(&store), [("b".into(), "2".into())]);
    }

    #[tokio::test]
    async fn the_adapter_keeps_errors_in_place() {
        let (store, mut writer) = reflector::store::<Namespace>();
        let events = vec![
            Ok(watcher::Event::Init),
            Err("dropped"),
            Ok(watcher::Event::InitApply(ns("a", "1"))),
            Ok(watcher::Event::InitDone),
        ];
        let out: Vec<_> = in_place(futures::stream::iter(events), store.clone())
            .collect()
            .await;
        assert_eq!(out.len(), 4);
        assert!(out[1].is_err());
        for e in out.iter().flatten() {
            writer.apply_watcher_event(e);
        }
        assert_eq!(held(&store), [("a".into(), "1".into())]);
    }
}
