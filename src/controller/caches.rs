//! The caches every replica keeps (the webhook decides from them, the
//! leader's controllers reconcile from them), one watch per kind, and the
//! feeds that tell the controllers what changed.

use super::context::{Context, Stores};
use super::{Tasks, index, lenient};
use crate::config::{MANAGED_BY, MANAGED_BY_LABEL};
use crate::crd::{LegacyQuayIntegration, QuayIntegration};
use crate::openshift::{Group, ImageStream};
use crate::plan::namespace::{ObservedSecret, ObservedServiceAccount};
use crate::plan::teams::{ObservedBinding, Subject, SubjectKind};
use futures::stream::BoxStream;
use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::{Namespace, Secret, ServiceAccount};
use k8s_openapi::api::rbac::v1::RoleBinding;
use kube::api::{Api, ListParams};
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::{WatchStreamExt, reflector, watcher};
use kube::{Client, Resource, ResourceExt};
use std::collections::BTreeSet;
use std::sync::Arc;
use tokio::sync::broadcast;

/// Which optional kinds the cluster serves.
#[derive(Debug, Clone, Copy)]
pub(super) struct Served {
    /// `redhatcop.redhat.io` QuayIntegrations.
    pub legacy: bool,
    /// `image.openshift.io` is served: ImageStreams get repositories.
    pub streams: bool,
    /// `build.openshift.io` is served: the Build controller and webhook run.
    pub builds: bool,
    /// `user.openshift.io` is served: team sync expands Groups.
    pub groups: bool,
}

impl Served {
    /// Asks the apiserver.
    pub async fn probe(client: &Client) -> Result<Self, kube::Error> {
        Ok(Self {
            legacy: served(Api::<LegacyQuayIntegration>::all(client.clone())).await?,
            streams: served(Api::<ImageStream>::all(client.clone())).await?,
            builds: served(Api::<crate::openshift::Build>::all(client.clone())).await?,
            groups: served(Api::<Group>::all(client.clone())).await?,
        })
    }
}

/// Where the caches tell what changed: the namespaces to reconcile, and
/// each QuayIntegration group's objects.
pub(super) struct Feeds {
    pub namespaces: broadcast::Sender<ObjectRef<Namespace>>,
    pub current: broadcast::Sender<ObjectRef<QuayIntegration>>,
    pub legacy: Option<broadcast::Sender<ObjectRef<LegacyQuayIntegration>>>,
}

/// The caches, before the context that reads them exists.
pub(super) struct Caches {
    pub stores: Stores,
    current: BoxStream<'static, Result<QuayIntegration, watcher::Error>>,
    legacy: Option<BoxStream<'static, Result<LegacyQuayIntegration, watcher::Error>>>,
    namespaces: broadcast::Sender<ObjectRef<Namespace>>,
}

impl Caches {
    /// Starts the watches of service accounts (their links only), the
    /// operator's Secrets (by label) and ImageStream names; prepares the
    /// QuayIntegration watches, which [`Caches::feed`] runs.
    pub fn start(client: &Client, served: Served, tasks: &mut Tasks) -> Self {
        let (namespaces, _) = broadcast::channel::<ObjectRef<Namespace>>(4096);
        // Service accounts and the operator's Secrets (by label): kept as
        // what the plan reads of them (links to bridge Secrets; type,
        // metadata and a digest of the credentials), not as objects.
        let service_accounts = indexed(
            Api::<ServiceAccount>::all(client.clone()),
            watcher::Config::default(),
            &namespaces,
            tasks,
            |sa| Some(ObservedServiceAccount::of(sa)),
        );
        let secrets = indexed(
            Api::<Secret>::all(client.clone()),
            watcher::Config::default().labels(&format!("{MANAGED_BY_LABEL}={MANAGED_BY}")),
            &namespaces,
            tasks,
            |s| Some(ObservedSecret::of(s)),
        );
        // ImageStreams: only their names by namespace are kept, not the objects.
        let image_streams = served.streams.then(|| {
            let index = Arc::new(index::NameIndex::default());
            let stream = watcher(
                Api::<PartialObjectMeta<ImageStream>>::all(client.clone()),
                watcher::Config::default(),
            )
            .default_backoff();
            tasks.push(tokio::spawn(index_feed(
                stream,
                index.clone(),
                namespaces.clone(),
                |_: &PartialObjectMeta<ImageStream>| Some(()),
            )));
            index
        });
        let (role_bindings, groups) = team_sync_watches(client, served, &namespaces, tasks);
        let (current, current_store) = integration_watch::<QuayIntegration>(client);
        let (legacy, legacy_store) = if served.legacy {
            let (stream, store) = integration_watch::<LegacyQuayIntegration>(client);
            (Some(stream), Some(store))
        } else {
            (None, None)
        };
        Self {
            stores: Stores {
                current: current_store,
                legacy: legacy_store,
                service_accounts,
                secrets,
                image_streams,
                role_bindings,
                groups,
            },
            current,
            legacy,
            namespaces,
        }
    }

    /// Runs the QuayIntegration watches, refreshing `ctx`'s parsed
    /// integrations after each change; the feeds to the controllers.
    pub fn feed(self, ctx: &Arc<Context>, tasks: &mut Tasks) -> Feeds {
        let (current, _) = broadcast::channel::<ObjectRef<QuayIntegration>>(256);
        tasks.push(tokio::spawn(integration_feed(
            self.current,
            Arc::downgrade(ctx),
            current.clone(),
        )));
        let legacy = self.legacy.map(|stream| {
            let (tx, _) = broadcast::channel::<ObjectRef<LegacyQuayIntegration>>(256);
            tasks.push(tokio::spawn(integration_feed(
                stream,
                Arc::downgrade(ctx),
                tx.clone(),
            )));
            tx
        });
        Feeds {
            namespaces: self.namespaces,
            current,
            legacy,
        }
    }
}

/// Waits until every cache has its first complete list: decisions need
/// them complete (with none, the webhook would pass builds unchanged to
/// the internal registry, and reconciles could release finalizers or
/// rewrite Secrets).
pub(super) async fn all_synced(ctx: &Context) {
    synced(&ctx.parts.caches.current).await;
    if let Some(s) = &ctx.parts.caches.legacy {
        synced(s).await;
    }
    ctx.parts.caches.service_accounts.ready().await;
    ctx.parts.caches.secrets.ready().await;
    ctx.parts.caches.role_bindings.ready().await;
    if let Some(g) = &ctx.parts.caches.groups {
        synced(g).await;
    }
    if let Some(index) = &ctx.parts.caches.image_streams {
        index.ready().await;
    }
    ctx.refresh_integrations();
}

/// Whether the kind is served. Asks for metadata only: no object a user
/// can create (an ImageStream without `spec`) can make this fail.
pub(super) async fn served<K>(api: Api<K>) -> Result<bool, kube::Error>
where
    K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    match api.list_metadata(&ListParams::default().limit(1)).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(false),
        Err(e) => Err(e),
    }
}

/// Runs the Group reflector, sending the namespaces whose RoleBindings
/// name a touched group.
async fn group_feed<S>(
    stream: S,
    bindings: Arc<index::Index<ObservedBinding>>,
    tx: broadcast::Sender<ObjectRef<Namespace>>,
) where
    S: Stream<Item = Result<Group, watcher::Error>> + Send,
{
    let mut stream = std::pin::pin!(stream);
    while let Some(event) = stream.next().await {
        match event {
            Ok(group) => {
                let name = group.name_any();
                let namespaces = bindings.namespaces_where(|b| {
                    b.subjects
                        .iter()
                        .any(|s| s.kind == SubjectKind::Group && *s.name == *name)
                });
                for ns in namespaces {
                    let _ = tx.send(ObjectRef::new(&ns));
                }
            }
            Err(e) => tracing::debug!(error = %e, "watch error (retried with backoff)"),
        }
    }
}

/// What team sync reads of a RoleBinding: its role and the users and
/// groups it binds (service accounts never join a team). A binding of
/// neither is not kept.
fn observe_binding(rb: &RoleBinding) -> Option<ObservedBinding> {
    let subjects: Box<[Subject]> = rb
        .subjects
        .iter()
        .flatten()
        .filter_map(|s| {
            Some(Subject {
                kind: SubjectKind::parse(&s.kind)?,
                name: s.name.as_str().into(),
            })
        })
        .collect();
    if subjects.is_empty() {
        return None;
    }
    Some(ObservedBinding {
        role_kind: crate::plan::teams::role_kind(&rb.role_ref.kind)?,
        role: role_name(&rb.role_ref.name),
        subjects,
    })
}

/// The role's name, shared by every binding that names it: a cluster has
/// a few dozen roles and tens of thousands of bindings.
fn role_name(name: &str) -> Arc<str> {
    static ROLES: std::sync::Mutex<BTreeSet<Arc<str>>> = std::sync::Mutex::new(BTreeSet::new());
    let mut roles = ROLES
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(known) = roles.get(name) {
        return known.clone();
    }
    let new: Arc<str> = name.into();
    roles.insert(new.clone());
    new
}

/// Cached Groups keep their name and users.
fn strip_group(g: &mut Group) {
    strip(g);
    g.metadata.annotations = None;
    g.metadata.labels = None;
    g.metadata.owner_references = None;
}

/// A watch of `api` kept as `project`ed values in an index by namespace;
/// each change reconciles its namespace.
fn indexed<K, V>(
    api: Api<K>,
    config: watcher::Config,
    namespaces: &broadcast::Sender<ObjectRef<Namespace>>,
    tasks: &mut Tasks,
    project: fn(&K) -> Option<V>,
) -> Arc<index::Index<V>>
where
    K: Resource
        + ResourceExt
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + 'static,
    K::DynamicType: Default,
    V: Clone + PartialEq + Send + Sync + 'static,
{
    let index = Arc::new(index::Index::<V>::default());
    let stream = watcher(api, config).default_backoff();
    tasks.push(tokio::spawn(index_feed(
        stream,
        index.clone(),
        namespaces.clone(),
        project,
    )));
    index
}

/// RoleBindings (kept as their role and subjects, by namespace) and
/// OpenShift Groups (their users), for team sync: a change reconciles the
/// namespaces concerned.
fn team_sync_watches(
    client: &Client,
    served: Served,
    namespaces: &broadcast::Sender<ObjectRef<Namespace>>,
    tasks: &mut Tasks,
) -> (Arc<index::Index<ObservedBinding>>, Option<Store<Group>>) {
    let role_bindings = indexed(
        Api::<RoleBinding>::all(client.clone()),
        watcher::Config::default(),
        namespaces,
        tasks,
        observe_binding,
    );
    let groups = served.groups.then(|| {
        let (store, writer) = reflector::store::<Group>();
        // A relist touches only the groups that changed or went (see
        // `relist`): a group deleted while the watch was down still
        // reconciles the namespaces that bind it.
        let stream = reflector(
            writer,
            super::relist::in_place(
                watcher(Api::all(client.clone()), watcher::Config::default())
                    .default_backoff()
                    .modify(strip_group),
                store.clone(),
            ),
        )
        .touched_objects();
        tasks.push(tokio::spawn(group_feed(
            stream,
            role_bindings.clone(),
            namespaces.clone(),
        )));
        store
    });
    (role_bindings, groups)
}

/// One API group's QuayIntegrations: a stream that feeds its cache (the
/// parsed list every decision reads, and the leader's controller), and
/// the cache.
fn integration_watch<K>(
    client: &Client,
) -> (BoxStream<'static, Result<K, watcher::Error>>, Store<K>)
where
    K: Resource<DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
{
    let (store, writer) = reflector::store::<K>();
    let stream = reflector(
        writer,
        lenient::lenient::<K>(client.clone(), watcher::Config::default())
            .default_backoff()
            .modify(strip),
    )
    .touched_objects()
    .boxed();
    (stream, store)
}

/// Keeps an index from a watch, sending the namespaces it changes.
async fn index_feed<K, S, V>(
    stream: S,
    index: Arc<index::Index<V>>,
    tx: broadcast::Sender<ObjectRef<Namespace>>,
    project: fn(&K) -> Option<V>,
) where
    K: ResourceExt + Send,
    S: Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send,
    V: Clone + PartialEq,
{
    let mut stream = std::pin::pin!(stream);
    while let Some(event) = stream.next().await {
        match event {
            Ok(event) => {
                for ns in index.apply_with(&event, project) {
                    let _ = tx.send(ObjectRef::new(&ns));
                }
            }
            Err(e) => tracing::debug!(error = %e, "watch error (retried with backoff)"),
        }
    }
}

/// Cached copies drop `managedFields`: nothing reads them, and they are
/// often the bulk of an object.
pub(super) fn strip<K: ResourceExt>(obj: &mut K) {
    obj.managed_fields_mut().clear();
}

/// Waits until a store has its first complete list. The store's readiness
/// signal wakes only its most recent waiter (a oneshot channel keeps one
/// waker), and a controller's own runner may be waiting on it too: poll
/// again periodically rather than rely on the wake-up.
pub async fn synced<K>(store: &Store<K>)
where
    K: kube::Resource + Clone + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    loop {
        if let Ok(result) = tokio::time::timeout(
            std::time::Duration::from_millis(50),
            store.wait_until_ready(),
        )
        .await
        {
            if result.is_err() {
                tracing::warn!("a cache writer stopped before its first list");
            }
            return;
        }
    }
}

/// Runs a QuayIntegration cache: after each change it applies, the parsed
/// integrations are refreshed, then the object is handed to the controller
/// (so a reconcile never reads an older cache than the one it was
/// triggered by).
async fn integration_feed<K, S>(
    stream: S,
    ctx: std::sync::Weak<Context>,
    tx: broadcast::Sender<ObjectRef<K>>,
) where
    K: Resource<DynamicType = ()> + Send,
    S: Stream<Item = Result<K, watcher::Error>> + Send,
{
    let mut stream = std::pin::pin!(stream);
    while let Some(event) = stream.next().await {
        match event {
            Ok(obj) => {
                let Some(ctx) = ctx.upgrade() else { return };
                ctx.refresh_integrations();
                let _ = tx.send(ObjectRef::from_obj(&obj));
            }
            Err(e) => tracing::debug!(error = %e, "watch error (retried with backoff)"),
        }
    }
}

/// The objects a shared cache hands a controller: all it holds now, then
/// each one as it changes (all again when the receiver fell behind).
pub(super) fn shared_objects<K>(
    rx: broadcast::Receiver<ObjectRef<K>>,
    store: Store<K>,
) -> impl Stream<Item = Arc<K>> + Send + 'static
where
    K: Resource<DynamicType = ()> + Clone + Send + Sync + 'static,
{
    let initial = futures::stream::iter(store.state());
    let live = futures::stream::unfold((rx, store), |(mut rx, store)| async move {
        loop {
            match rx.recv().await {
                Ok(r) => {
                    if let Some(obj) = store.get(&r) {
                        return Some((vec![obj], (rx, store)));
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    let all = store.state();
                    return Some((all, (rx, store)));
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    })
    .flat_map(futures::stream::iter);
    initial.chain(live)
}

/// The Build cache keeps what the import and the escape check read:
/// metadata (without managedFields), `spec.output`, `spec.serviceAccount`,
/// the strategy's type (its body emptied), and `status.phase`, `cancelled`
/// and `config`.
pub(super) fn strip_build(build: &mut crate::openshift::Build) {
    strip(build);
    build
        .spec
        .rest
        .retain(|k, _| matches!(k.as_str(), "output" | "serviceAccount" | "strategy"));
    if let Some(serde_json::Value::Object(strategy)) = build.spec.rest.get_mut("strategy") {
        for (key, value) in strategy.iter_mut() {
            if key != "type" {
                *value = serde_json::json!({});
            }
        }
    }
    if let Some(status) = build.status.as_mut() {
        status
            .rest
            .retain(|k, _| matches!(k.as_str(), "cancelled" | "config"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_binding_is_kept_as_its_role_users_and_groups() {
        let rb = |subjects: serde_json::Value| -> RoleBinding {
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": "b", "namespace": "team"},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "admin"},
                "subjects": subjects
            }))
            .unwrap()
        };
        let kept = observe_binding(&rb(serde_json::json!([
            {"kind": "User", "name": "alice"},
            {"kind": "ServiceAccount", "name": "builder", "namespace": "team"},
            {"kind": "Group", "name": "devs"}
        ])))
        .unwrap();
        assert_eq!(
            (kept.role_kind, &*kept.role),
            (crate::crd::RoleKind::ClusterRole, "admin")
        );
        let names: Vec<_> = kept.subjects.iter().map(|s| (s.kind, &*s.name)).collect();
        assert_eq!(
            names,
            [(SubjectKind::User, "alice"), (SubjectKind::Group, "devs")]
        );
        assert!(
            observe_binding(&rb(serde_json::json!([{"kind": "ServiceAccount", "name": "builder", "namespace": "team"}])))
                .is_none()
        );
        assert!(observe_binding(&rb(serde_json::Value::Null)).is_none());
    }

    #[test]
    fn bindings_share_their_role_names() {
        let a = role_name("admin");
        assert!(Arc::ptr_eq(&a, &role_name("admin")));
        assert_eq!(&*role_name("edit"), "edit");
        assert!(!Arc::ptr_eq(&a, &role_name("edit")));
    }

    #[test]
    fn cached_builds_keep_what_the_import_and_the_escape_check_read() {
        let mut build: crate::openshift::Build = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "app-1", "namespace": "team", "annotations": {"a": "b"},
                "managedFields": [{"manager": "m"}]},
            "spec": {"serviceAccount": "builder", "source": {"git": {"uri": "u"}},
                "strategy": {"type": "Source", "sourceStrategy": {"from": {"kind": "ImageStreamTag", "name": "httpd:2.4"}, "env": [{"name": "X", "value": "y"}]}},
                "output": {"to": {"kind": "ImageStreamTag", "name": "app:latest"}}},
            "status": {"phase": "Running", "cancelled": false, "config": {"name": "app"}, "logSnippet": "long"}
        }))
        .unwrap();
        strip_build(&mut build);
        let v = serde_json::to_value(&build).unwrap();
        assert_eq!(
            v["spec"],
            serde_json::json!({"serviceAccount": "builder", "strategy": {"type": "Source", "sourceStrategy": {}},
                "output": {"to": {"kind": "ImageStreamTag", "name": "app:latest"}}})
        );
        assert_eq!(
            v["status"],
            serde_json::json!({"phase": "Running", "cancelled": false, "config": {"name": "app"}})
        );
        assert_eq!(v["metadata"]["annotations"]["a"], "b");
        assert!(build.metadata.managed_fields.unwrap_or_default().is_empty());
    }
}
