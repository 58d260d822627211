//! Object storage with the apiserver's write semantics: resource versions,
//! an event history for watch resumption, generation, finalizers and
//! deletion, status subresources, validation and no-op suppression.

use super::errors::ApiError;
use super::events;
use super::patch::{self, Ownership};
use super::resources::{Registry, ResourceDef};
use super::selectors::{FieldSelector, LabelSelector, labels_of};
use base64::Engine;
use bridge_common::random::random_uuid;
use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::Arc;
use tokio::sync::{Notify, broadcast};

/// (namespace, name); namespace is empty for cluster-scoped objects.
pub type ObjKey = (String, String);
/// (group, plural).
pub type ResKey = (String, String);

/// A watch event type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    /// Created.
    Added,
    /// Changed.
    Modified,
    /// Removed.
    Deleted,
}

impl EventType {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// One change, kept in the history and broadcast to watches.
#[derive(Debug, Clone)]
pub struct StoredEvent {
    /// Resource version of the change.
    pub rv: u64,
    /// Resource.
    pub res: ResKey,
    /// Namespace of the object.
    pub namespace: String,
    /// Type.
    pub kind: EventType,
    /// The object after the change (before it, for deletions).
    pub object: Arc<Value>,
    /// The object before the change (for selector transitions).
    pub prev: Option<Arc<Value>>,
}

/// Options of one write.
#[derive(Debug, Clone, Default)]
pub struct WriteOptions {
    /// `dryRun=All`: validate, do not persist.
    pub dry_run: bool,
    /// Field manager.
    pub manager: String,
}

/// Why a commit did not happen.
#[derive(Debug)]
pub enum CommitError {
    /// The object changed since it was read; read again and retry.
    Retry,
    /// A final error.
    Api(ApiError),
}

impl From<ApiError> for CommitError {
    fn from(e: ApiError) -> Self {
        CommitError::Api(e)
    }
}

/// An update of one object, as read at `read_rv`.
#[derive(Debug)]
pub struct Update<'a> {
    /// Namespace.
    pub ns: &'a str,
    /// Name.
    pub name: &'a str,
    /// The resource version the change was computed from.
    pub read_rv: u64,
    /// The whole new object as the client meant it.
    pub object: Value,
    /// `Some("status")` for the status subresource.
    pub subresource: Option<&'a str>,
    /// Field ownership after a server-side apply.
    pub apply_owners: Option<Ownership>,
}

/// Now as the apiserver formats `metav1.Time`.
pub fn now_rfc3339() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// The resource version of an object.
pub fn rv_of(obj: &Value) -> Option<u64> {
    obj.pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        .and_then(|s| s.parse().ok())
}

fn meta_str<'v>(obj: &'v Value, key: &str) -> Option<&'v str> {
    obj.get("metadata")
        .and_then(|m| m.get(key))
        .and_then(Value::as_str)
}

/// The name of an object.
pub fn name_of(obj: &Value) -> &str {
    meta_str(obj, "name").unwrap_or_default()
}

/// The namespace of an object.
pub fn namespace_of(obj: &Value) -> &str {
    meta_str(obj, "namespace").unwrap_or_default()
}

/// events.k8s.io Event validation as recorded (event-create-missing-fields):
/// the regarded object's namespace must be the Event's (or, for a
/// cluster-scoped object, the Event lives in `default`), and `eventTime` is
/// required.
fn event_causes(obj: &Value) -> Vec<(String, String)> {
    let mut causes = Vec::new();
    let event_ns = namespace_of(obj);
    let regarding_ns = obj
        .pointer("/regarding/namespace")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let matches = if regarding_ns.is_empty() {
        event_ns.is_empty() || event_ns == "default"
    } else {
        event_ns.is_empty() || regarding_ns == event_ns
    };
    if !matches {
        causes.push((
            "involvedObject.namespace".to_owned(),
            format!("Invalid value: {regarding_ns:?}: does not match event.namespace"),
        ));
    }
    if obj.get("eventTime").is_none_or(Value::is_null) {
        causes.push(("eventTime".to_owned(), "Required value".to_owned()));
    }
    causes
}

/// apimachinery's IsConfigMapKey: what a ConfigMap or Secret data key
/// may be.
fn config_map_key_errors(key: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if key.len() > 253 {
        errs.push("must be no more than 253 characters".to_owned());
    }
    if key.is_empty()
        || !key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
    {
        errs.push("a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')".to_owned());
    }
    if key == "." {
        errs.push("must not be '.'".to_owned());
    } else if key == ".." {
        errs.push("must not be '..'".to_owned());
    } else if key.starts_with("..") {
        errs.push("must not start with '..'".to_owned());
    }
    errs
}

/// ValidateConfigMap's and ValidateSecret's key rules: every `data` (and a
/// ConfigMap's `binaryData`) key is a config key, and a ConfigMap key is
/// in one of its two maps only.
fn data_key_causes(obj: &Value) -> Vec<(String, String)> {
    let keys = |field: &str| -> Vec<String> {
        obj.get(field)
            .and_then(Value::as_object)
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default()
    };
    let binary = keys("binaryData");
    let mut causes = Vec::new();
    for key in keys("data") {
        for msg in config_map_key_errors(&key) {
            causes.push((
                format!("data[{key}]"),
                format!("Invalid value: {key:?}: {msg}"),
            ));
        }
        if binary.contains(&key) {
            causes.push((
                format!("data[{key}]"),
                format!("Invalid value: {key:?}: duplicate of key present in binaryData"),
            ));
        }
    }
    for key in binary {
        for msg in config_map_key_errors(&key) {
            causes.push((
                format!("binaryData[{key}]"),
                format!("Invalid value: {key:?}: {msg}"),
            ));
        }
    }
    causes
}

fn finalizers_of(obj: &Value) -> Vec<String> {
    obj.pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// Whether the object is being deleted.
pub fn is_deleting(obj: &Value) -> bool {
    obj.pointer("/metadata/deletionTimestamp")
        .is_some_and(|v| !v.is_null())
}

fn spec_part(obj: &Value) -> Value {
    let mut m = obj.as_object().cloned().unwrap_or_default();
    for k in ["metadata", "status", "apiVersion", "kind"] {
        m.remove(k);
    }
    Value::Object(m)
}

const DNS1123_SUBDOMAIN_MSG: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
const DNS1123_LABEL_MSG: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";

fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

fn is_dns_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(is_dns_label)
}

fn is_label_value(v: &str) -> bool {
    v.is_empty()
        || (v.len() <= 63
            && v.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            && v.starts_with(|c: char| c.is_ascii_alphanumeric())
            && v.ends_with(|c: char| c.is_ascii_alphanumeric()))
}

fn is_label_key(k: &str) -> bool {
    let (prefix, name) = match k.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, k),
    };
    prefix.is_none_or(is_dns_subdomain) && !name.is_empty() && is_label_value(name)
}

/// Required fields of the OpenShift kinds, from openshift/api's OpenAPI
/// definitions (cross-checked by a test against the schema file).
pub const OPENSHIFT_REQUIRED: &[(&str, &str, &str)] = &[
    ("builds", "spec", "strategy"),
    ("buildconfigs", "spec", "strategy"),
    ("imagestreamimports", "spec", "import"),
];

/// The store.
pub struct Store {
    /// Served kinds.
    pub registry: Registry,
    rv: u64,
    objects: HashMap<ResKey, BTreeMap<ObjKey, Arc<Value>>>,
    history: VecDeque<Arc<StoredEvent>>,
    history_limit: usize,
    compacted_rv: u64,
    tx: broadcast::Sender<Arc<StoredEvent>>,
    /// Notified after every committed change.
    pub changed: Arc<Notify>,
    /// The namespaces being deleted, kept as each change is committed: the
    /// namespace controller looks at these after every change, not at
    /// every namespace (100,000 of them made each write cost a scan).
    deleting_namespaces: BTreeSet<String>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("rv", &self.rv)
            .field("objects", &self.object_count())
            .finish_non_exhaustive()
    }
}

impl Store {
    /// An empty store keeping `history_limit` events for watch resumption.
    pub fn new(history_limit: usize) -> Self {
        let (tx, _) = broadcast::channel(4096);
        Self {
            registry: Registry::new(),
            rv: 1,
            objects: HashMap::new(),
            history: VecDeque::new(),
            history_limit: history_limit.max(1),
            compacted_rv: 0,
            tx,
            changed: Arc::new(Notify::new()),
            deleting_namespaces: BTreeSet::new(),
        }
    }

    /// The current resource version.
    pub fn rv(&self) -> u64 {
        self.rv
    }

    /// Events up to this resource version are no longer kept.
    pub fn compacted_rv(&self) -> u64 {
        self.compacted_rv
    }

    /// Objects held.
    pub fn object_count(&self) -> usize {
        self.objects.values().map(BTreeMap::len).sum()
    }

    /// Subscribes to live events.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<StoredEvent>> {
        self.tx.subscribe()
    }

    /// Forgets all history and moves the compaction point past every
    /// resource version handed out so far (fault injection: every watch
    /// resuming from an RV it has seen gets 410 Expired, as after an etcd
    /// compaction).
    pub fn compact(&mut self) {
        self.history.clear();
        self.rv += 1;
        self.compacted_rv = self.rv;
    }

    /// Events of `res` newer than `rv`, or `None` if some were compacted.
    pub fn history_since(&self, rv: u64, res: &ResKey) -> Option<Vec<Arc<StoredEvent>>> {
        if rv < self.compacted_rv {
            return None;
        }
        Some(
            self.history
                .iter()
                .filter(|e| e.rv > rv && &e.res == res)
                .cloned()
                .collect(),
        )
    }

    /// Where objects of `def` are stored: `events.k8s.io` Events are the
    /// core Events (see [`events`]).
    pub fn res_key(def: &ResourceDef) -> ResKey {
        if events::is_events_v1(def) {
            return (String::new(), "events".to_owned());
        }
        (def.group.clone(), def.plural.clone())
    }

    /// A stored object as `def`'s API serves it.
    pub fn view(def: &ResourceDef, stored: Arc<Value>) -> Arc<Value> {
        if events::is_events_v1(def) {
            Arc::new(events::from_core(&stored))
        } else {
            stored
        }
    }

    /// The definition objects of `def` are stored under, when it is
    /// another API's view of them.
    fn stored_def(&self, def: &ResourceDef) -> Option<ResourceDef> {
        if events::is_events_v1(def) {
            self.registry.get("", "v1", "events").cloned()
        } else {
            None
        }
    }

    /// One object.
    pub fn get(&self, def: &ResourceDef, ns: &str, name: &str) -> Option<Arc<Value>> {
        self.objects
            .get(&Self::res_key(def))?
            .get(&(ns.to_owned(), name.to_owned()))
            .cloned()
            .map(|o| Self::view(def, o))
    }

    /// One object or 404.
    pub fn get_or_404(
        &self,
        def: &ResourceDef,
        ns: &str,
        name: &str,
    ) -> Result<Arc<Value>, ApiError> {
        self.get(def, ns, name)
            .ok_or_else(|| ApiError::not_found(def, name))
    }

    /// Objects of a kind, sorted by (namespace, name), in `ns` if given.
    pub fn list(
        &self,
        def: &ResourceDef,
        ns: Option<&str>,
        labels: &LabelSelector,
        fields: &FieldSelector,
    ) -> Vec<Arc<Value>> {
        let Some(all) = self.objects.get(&Self::res_key(def)) else {
            return Vec::new();
        };
        let iter: Box<dyn Iterator<Item = (&ObjKey, &Arc<Value>)>> = match ns {
            Some(ns) => Box::new(
                all.range((ns.to_owned(), String::new())..)
                    .take_while(move |((n, _), _)| n == ns),
            ),
            None => Box::new(all.iter()),
        };
        iter.filter(|(_, o)| {
            (labels.is_empty() || labels.matches(&labels_of(o))) && fields.matches(o)
        })
        .map(|(_, o)| Self::view(def, o.clone()))
        .collect()
    }

    /// One page of a list: the objects after `after` (a continue
    /// token's key) that match, at most `limit`, and the key to continue
    /// from when objects follow the page's last one in the range,
    /// matching or not (the apiserver pages through storage keys and stops
    /// when the page is full). Only the page's range is visited, so
    /// paging through N objects costs N, not N per page.
    pub fn list_page(
        &self,
        def: &ResourceDef,
        ns: Option<&str>,
        selectors: (&LabelSelector, &FieldSelector),
        after: Option<&ObjKey>,
        limit: Option<usize>,
    ) -> (Vec<Arc<Value>>, Option<ObjKey>) {
        use std::ops::Bound;
        let (labels, fields) = selectors;
        let Some(all) = self.objects.get(&Self::res_key(def)) else {
            return (Vec::new(), None);
        };
        let start = match (after, ns) {
            (Some(key), _) => Bound::Excluded(key.clone()),
            (None, Some(ns)) => Bound::Included((ns.to_owned(), String::new())),
            (None, None) => Bound::Unbounded,
        };
        let mut range = all
            .range((start, Bound::Unbounded))
            .take_while(|((n, _), _)| ns.is_none_or(|ns| n == ns))
            .peekable();
        let mut items = Vec::new();
        while let Some((key, o)) = range.next() {
            if (labels.is_empty() || labels.matches(&labels_of(o))) && fields.matches(o) {
                items.push(Self::view(def, o.clone()));
                if limit.is_some_and(|l| items.len() >= l) {
                    let more = range.peek().is_some();
                    return (items, more.then(|| key.clone()));
                }
            }
        }
        (items, None)
    }

    /// Whether a namespace exists and is not terminating.
    pub fn namespace_phase(&self, ns: &str) -> Option<&'static str> {
        let def = self.registry.get("", "v1", "namespaces")?;
        let obj = self.get(def, "", ns)?;
        Some(if is_deleting(&obj) {
            "Terminating"
        } else {
            "Active"
        })
    }

    fn emit(
        &mut self,
        def: &ResourceDef,
        kind: EventType,
        object: Arc<Value>,
        prev: Option<Arc<Value>>,
    ) {
        if def.group.is_empty() && def.plural == "namespaces" {
            let name = name_of(&object);
            if kind != EventType::Deleted && is_deleting(&object) {
                if !self.deleting_namespaces.contains(name) {
                    self.deleting_namespaces.insert(name.to_owned());
                }
            } else {
                self.deleting_namespaces.remove(name);
            }
        }
        let ev = Arc::new(StoredEvent {
            rv: self.rv,
            res: Self::res_key(def),
            namespace: namespace_of(&object).to_owned(),
            kind,
            object,
            prev,
        });
        self.history.push_back(ev.clone());
        while self.history.len() > self.history_limit {
            if let Some(old) = self.history.pop_front() {
                self.compacted_rv = old.rv;
            }
        }
        // No receivers is fine.
        let _ = self.tx.send(ev);
        self.changed.notify_waiters();
    }

    fn next_rv(&mut self) -> u64 {
        self.rv += 1;
        self.rv
    }

    fn set_meta(obj: &mut Value, key: &str, value: Value) {
        if !obj.get("metadata").is_some_and(Value::is_object) {
            obj["metadata"] = json!({});
        }
        obj["metadata"][key] = value;
    }

    /// Defaults, prunes and validates a custom resource against its CRD's
    /// schema, as the apiserver does on every write.
    fn apply_schema(def: &ResourceDef, obj: &mut Value) -> Result<(), ApiError> {
        let Some(schema) = def.schema.as_ref().filter(|_| def.custom) else {
            // A built-in kind drops the fields its type does not have
            // (CRDs aside: their schemas are JSON).
            if !def.custom
                && def.group != "apiextensions.k8s.io"
                && let Some(pruned) =
                    super::proto::prune_unknown(&def.group, &def.version, &def.kind, obj)
            {
                Self::unknown_fields(def, &pruned)?;
            }
            return Ok(());
        };
        let found = super::schema::apply_to_resource(schema, obj);
        Self::unknown_fields(def, &found.pruned)?;
        if found.causes.is_empty() {
            Ok(())
        } else {
            Err(ApiError::invalid(def, name_of(obj), &found.causes))
        }
    }

    /// Unknown fields were pruned; what that costs the request is its
    /// fieldValidation's call (cr-create-unknown-field-*; the same decoder
    /// answers for built-in kinds).
    fn unknown_fields(def: &ResourceDef, pruned: &[String]) -> Result<(), ApiError> {
        if pruned.is_empty() {
            return Ok(());
        }
        let fields = pruned
            .iter()
            .map(|f| format!("unknown field {f:?}"))
            .collect::<Vec<_>>();
        match super::scope::field_validation() {
            super::scope::FieldValidation::Strict => Err(ApiError::bad_request(format!(
                "{kind} in version {:?} cannot be handled as a {kind}: strict decoding error: {}",
                def.version,
                fields.join(", "),
                kind = def.kind,
            ))),
            super::scope::FieldValidation::Warn => {
                fields.into_iter().for_each(super::scope::warn);
                Ok(())
            }
            super::scope::FieldValidation::Ignore => Ok(()),
        }
    }

    /// Validation every write goes through.
    pub fn validate(&self, def: &ResourceDef, obj: &Value) -> Result<(), ApiError> {
        let name = name_of(obj);
        let mut causes: Vec<(String, String)> = Vec::new();
        let name_ok = if def.plural == "namespaces" || def.plural == "services" {
            is_dns_label(name)
        } else {
            is_dns_subdomain(name)
        };
        if !name_ok {
            let msg = if def.plural == "namespaces" || def.plural == "services" {
                DNS1123_LABEL_MSG
            } else {
                DNS1123_SUBDOMAIN_MSG
            };
            causes.push((
                "metadata.name".into(),
                format!("Invalid value: {name:?}: {msg}"),
            ));
        }
        if let Some(labels) = obj.pointer("/metadata/labels").and_then(Value::as_object) {
            for (k, v) in labels {
                let value = v.as_str().unwrap_or_default();
                if !is_label_key(k) {
                    causes.push(("metadata.labels".into(), format!("Invalid value: {k:?}: name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')")));
                }
                if !v.is_string() || !is_label_value(value) {
                    causes.push(("metadata.labels".into(), format!("Invalid value: {v}: a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')")));
                }
            }
        }
        for (plural, parent, field) in OPENSHIFT_REQUIRED {
            if def.plural == *plural && obj.get(*parent).and_then(|p| p.get(*field)).is_none() {
                causes.push((format!("{parent}.{field}"), "Required value".into()));
            }
        }
        if def.group == "events.k8s.io" {
            causes.extend(event_causes(obj));
        }
        if def.plural == "imagestreamimports" {
            for (i, img) in obj
                .pointer("/spec/images")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .enumerate()
            {
                match img.pointer("/from/kind").and_then(Value::as_str) {
                    Some("DockerImage") => {}
                    None => {
                        causes.push((format!("spec.images[{i}].from"), "Required value".into()))
                    }
                    Some(k) => causes.push((
                        format!("spec.images[{i}].from.kind"),
                        format!("Invalid value: {k:?}: only DockerImage is supported"),
                    )),
                }
            }
        }
        if def.group.is_empty() && (def.plural == "secrets" || def.plural == "configmaps") {
            causes.extend(data_key_causes(obj));
        }
        if def.group.is_empty() && def.plural == "secrets" {
            let ty = obj.get("type").and_then(Value::as_str).unwrap_or("Opaque");
            let data = obj.get("data").and_then(Value::as_object);
            let decoded = |key: &str| -> Option<Vec<u8>> {
                data.and_then(|d| d.get(key))
                    .and_then(Value::as_str)
                    .and_then(|s| base64::engine::general_purpose::STANDARD.decode(s).ok())
            };
            match ty {
                "kubernetes.io/dockerconfigjson" => {
                    match decoded(".dockerconfigjson") {
                        None => {
                            causes.push(("data[.dockerconfigjson]".into(), "Required value".into()))
                        }
                        Some(bytes) => {
                            if serde_json::from_slice::<Value>(&bytes).is_err() {
                                causes.push(("data[.dockerconfigjson]".into(), "Invalid value: \"<secret contents redacted>\": invalid character".into()));
                            }
                        }
                    }
                }
                "kubernetes.io/dockercfg" if decoded(".dockercfg").is_none() => {
                    causes.push(("data[.dockercfg]".into(), "Required value".into()));
                }
                _ => {}
            }
        }
        if causes.is_empty() {
            Ok(())
        } else {
            Err(ApiError::invalid(def, name, &causes))
        }
    }

    /// Decodes `data` values (400 when not base64) and folds `stringData`.
    fn normalize_secret(obj: &mut Value) -> Result<(), ApiError> {
        if let Some(data) = obj.get("data").and_then(Value::as_object) {
            for (k, v) in data {
                let ok = v
                    .as_str()
                    .is_some_and(|s| base64::engine::general_purpose::STANDARD.decode(s).is_ok());
                if !ok {
                    return Err(ApiError::bad_request(format!(
                        "Secret in version \"v1\" cannot be handled as a Secret: illegal base64 data in data[{k}]"
                    )));
                }
            }
        }
        if let Some(Value::Object(string_data)) =
            obj.as_object_mut().and_then(|m| m.remove("stringData"))
        {
            if !obj.get("data").is_some_and(Value::is_object) {
                obj["data"] = json!({});
            }
            for (k, v) in string_data {
                obj["data"][k] = json!(
                    base64::engine::general_purpose::STANDARD
                        .encode(v.as_str().unwrap_or_default())
                );
            }
        }
        if obj.get("type").is_none_or(Value::is_null) {
            obj["type"] = json!("Opaque");
        }
        Ok(())
    }

    /// Builds the object a create would store (defaults, identity, checks);
    /// nothing is stored.
    pub fn prepare_create(
        &self,
        def: &ResourceDef,
        ns: &str,
        mut obj: Value,
    ) -> Result<Value, ApiError> {
        if !obj.is_object() {
            return Err(ApiError::bad_request(
                "the body of the request must be a JSON object",
            ));
        }
        if let Some(kind) = obj.get("kind").and_then(Value::as_str)
            && kind != def.kind
        {
            return Err(ApiError::bad_request(format!(
                "the kind of the provided object {kind:?} does not match the kind {:?} of the request",
                def.kind
            )));
        }
        obj["apiVersion"] = json!(def.api_version());
        obj["kind"] = json!(def.kind);
        if !obj.get("metadata").is_some_and(Value::is_object) {
            obj["metadata"] = json!({});
        }
        if def.namespaced {
            match meta_str(&obj, "namespace") {
                Some(body_ns) if !body_ns.is_empty() && body_ns != ns => {
                    return Err(ApiError::bad_request(
                        "the namespace of the provided object does not match the namespace sent on the request",
                    ));
                }
                _ => Self::set_meta(&mut obj, "namespace", json!(ns)),
            }
            match self.namespace_phase(ns) {
                None => return Err(ApiError::namespace_not_found(ns)),
                Some("Terminating") => {
                    return Err(ApiError::namespace_terminating(def, name_of(&obj), ns));
                }
                _ => {}
            }
        } else if let Some(m) = obj["metadata"].as_object_mut() {
            m.remove("namespace");
        }
        if meta_str(&obj, "name").is_none_or(str::is_empty) {
            match meta_str(&obj, "generateName") {
                Some(prefix) if !prefix.is_empty() => {
                    let suffix: String =
                        bridge_common::random::random_token(5).to_ascii_lowercase();
                    let name = format!("{prefix}{suffix}");
                    Self::set_meta(&mut obj, "name", json!(name));
                }
                _ => {
                    return Err(ApiError::invalid(
                        def,
                        "",
                        &[(
                            "metadata.name".into(),
                            "Required value: name or generateName is required".into(),
                        )],
                    ));
                }
            }
        }
        let meta = obj["metadata"]
            .as_object_mut()
            .ok_or_else(|| ApiError::bad_request("metadata must be an object"))?;
        for k in [
            "resourceVersion",
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "generation",
            "selfLink",
        ] {
            meta.remove(k);
        }
        meta.insert("uid".into(), json!(random_uuid()));
        meta.insert("creationTimestamp".into(), json!(now_rfc3339()));
        if def.has_generation {
            meta.insert("generation".into(), json!(1));
        }
        if def.status_subresource
            && let Some(m) = obj.as_object_mut()
        {
            m.remove("status");
        }
        self.apply_kind_defaults(def, &mut obj)?;
        Self::apply_schema(def, &mut obj)?;
        self.validate(def, &obj)?;
        let (ns, name) = (namespace_of(&obj).to_owned(), name_of(&obj).to_owned());
        if !def.create_only && self.get(def, &ns, &name).is_some() {
            return Err(ApiError::already_exists(def, &name));
        }
        Ok(obj)
    }

    fn apply_kind_defaults(&self, def: &ResourceDef, obj: &mut Value) -> Result<(), ApiError> {
        match (def.group.as_str(), def.plural.as_str()) {
            ("", "namespaces") => {
                let name = name_of(obj).to_owned();
                if !obj
                    .pointer("/metadata/labels")
                    .is_some_and(Value::is_object)
                {
                    obj["metadata"]["labels"] = json!({});
                }
                obj["metadata"]["labels"]["kubernetes.io/metadata.name"] = json!(name);
                obj["spec"] = json!({"finalizers": ["kubernetes"]});
                obj["status"] = json!({"phase": "Active"});
            }
            ("", "secrets") => Self::normalize_secret(obj)?,
            ("image.openshift.io", "imagestreams") => {
                let repo = format!(
                    "image-registry.openshift-image-registry.svc:5000/{}/{}",
                    namespace_of(obj),
                    name_of(obj)
                );
                obj["status"] = json!({"dockerImageRepository": repo});
                if obj.get("spec").is_none() {
                    obj["spec"] = json!({"lookupPolicy": {"local": false}});
                }
            }
            ("build.openshift.io", "builds") if obj.pointer("/status/phase").is_none() => {
                obj["status"] = json!({"phase": "New"});
            }
            ("build.openshift.io", "buildconfigs")
                if obj.pointer("/status/lastVersion").is_none() =>
            {
                obj["status"] = json!({"lastVersion": 0});
            }
            ("apiextensions.k8s.io", "customresourcedefinitions") => {
                super::resources::from_crd(obj).map_err(|m| {
                    // "field: message", as the CRD's own validation names it.
                    let cause = match m.split_once(": ") {
                        Some((field, rest)) if !field.contains(' ') => {
                            (field.to_owned(), rest.to_owned())
                        }
                        _ => ("spec".to_owned(), m.clone()),
                    };
                    ApiError::invalid(def, name_of(obj), &[cause])
                })?;
                if let Some(versions) = obj.pointer("/spec/versions").and_then(Value::as_array) {
                    for v in versions {
                        if let Some(schema) = v.pointer("/schema/openAPIV3Schema") {
                            for f in super::schema::unrecognized_formats(schema) {
                                super::scope::warn(format!("unrecognized format {f:?}"));
                            }
                        }
                    }
                }
                let names = obj.pointer("/spec/names").cloned().unwrap_or_default();
                obj["status"] = json!({
                    "acceptedNames": names, "storedVersions": [obj.pointer("/spec/versions/0/name").cloned().unwrap_or_default()],
                    "conditions": [
                        {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts", "message": "no conflicts found", "lastTransitionTime": now_rfc3339()},
                        {"type": "Established", "status": "True", "reason": "InitialNamesAccepted", "message": "the initial names have been accepted", "lastTransitionTime": now_rfc3339()}
                    ]
                });
            }
            _ => {}
        }
        Ok(())
    }

    /// Stores a prepared object.
    pub fn commit_create(
        &mut self,
        def: &ResourceDef,
        obj: Value,
        opts: &WriteOptions,
    ) -> Result<Arc<Value>, ApiError> {
        match self.stored_def(def) {
            Some(stored) => {
                self.validate(def, &obj)?;
                let created = self.commit_create_stored(&stored, events::to_core(&obj), opts)?;
                Ok(Self::view(def, created))
            }
            None => self.commit_create_stored(def, obj, opts),
        }
    }

    fn commit_create_stored(
        &mut self,
        def: &ResourceDef,
        mut obj: Value,
        opts: &WriteOptions,
    ) -> Result<Arc<Value>, ApiError> {
        self.validate(def, &obj)?;
        let (ns, name) = (namespace_of(&obj).to_owned(), name_of(&obj).to_owned());
        if self.get(def, &ns, &name).is_some() {
            return Err(ApiError::already_exists(def, &name));
        }
        if def.plural == "namespaces" || def.namespaced {
            // The namespace may have started terminating since prepare.
            if def.namespaced && self.namespace_phase(&ns) != Some("Active") {
                return Err(ApiError::namespace_terminating(def, &name, &ns));
            }
        }
        let mut owners = Ownership::new();
        if obj.pointer("/metadata/managedFields").is_none() {
            patch::record_update(&json!({}), &obj, &opts.manager, &mut owners);
            let ops = owners
                .keys()
                .map(|k| (k.clone(), "Update".to_owned()))
                .collect();
            obj["metadata"]["managedFields"] =
                patch::to_managed_fields(&owners, &ops, &def.api_version(), &now_rfc3339());
        }
        if opts.dry_run {
            return Ok(Arc::new(obj));
        }
        let rv = self.next_rv();
        obj["metadata"]["resourceVersion"] = json!(rv.to_string());
        if def.plural == "customresourcedefinitions" {
            self.register_crd(&obj);
        }
        let stored = Arc::new(obj);
        self.objects
            .entry(Self::res_key(def))
            .or_default()
            .insert((ns, name), stored.clone());
        self.emit(def, EventType::Added, stored.clone(), None);
        Ok(stored)
    }

    fn register_crd(&mut self, crd: &Value) {
        if let Ok(defs) = super::resources::from_crd(crd) {
            if let Some(first) = defs.first() {
                self.registry
                    .remove_group_plural(&first.group.clone(), &first.plural.clone());
            }
            for d in defs {
                self.registry.insert(d);
            }
        }
    }

    /// Stores an update of an object read at `read_rv`. `candidate` is the
    /// whole new object as the client meant it; for `status` only its
    /// status is taken, for the main endpoint of kinds with a status
    /// subresource its status is ignored.
    pub fn commit_update(
        &mut self,
        def: &ResourceDef,
        update: Update<'_>,
        opts: &WriteOptions,
    ) -> Result<Arc<Value>, CommitError> {
        match self.stored_def(def) {
            Some(stored) => {
                self.validate(def, &update.object)?;
                let update = Update {
                    object: events::to_core(&update.object),
                    ..update
                };
                let updated = self.commit_update_stored(&stored, update, opts)?;
                Ok(Self::view(def, updated))
            }
            None => self.commit_update_stored(def, update, opts),
        }
    }

    fn commit_update_stored(
        &mut self,
        def: &ResourceDef,
        update: Update<'_>,
        opts: &WriteOptions,
    ) -> Result<Arc<Value>, CommitError> {
        let Update {
            ns,
            name,
            read_rv,
            object: candidate,
            subresource,
            apply_owners,
        } = update;
        let old = self.get_or_404(def, ns, name)?;
        if rv_of(&old) != Some(read_rv) {
            return Err(CommitError::Retry);
        }
        let mut new = match subresource {
            Some("status") => {
                let mut n = (*old).clone();
                n["status"] = candidate.get("status").cloned().unwrap_or(Value::Null);
                n
            }
            _ => {
                let mut n = candidate;
                if def.status_subresource {
                    n["status"] = old.get("status").cloned().unwrap_or(Value::Null);
                    if n["status"].is_null()
                        && let Some(m) = n.as_object_mut()
                    {
                        m.remove("status");
                    }
                }
                n
            }
        };
        if !new.is_object() {
            return Err(
                ApiError::bad_request("the body of the request must be a JSON object").into(),
            );
        }
        new["apiVersion"] = json!(def.api_version());
        new["kind"] = json!(def.kind);
        if !new.get("metadata").is_some_and(Value::is_object) {
            new["metadata"] = json!({});
        }
        if meta_str(&new, "name").is_some_and(|n| n != name) {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({}) does not match the name on the URL ({name})",
                meta_str(&new, "name").unwrap_or_default()
            ))
            .into());
        }
        // Identity and lifecycle fields are the server's.
        for k in [
            "name",
            "namespace",
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "generation",
        ] {
            match old["metadata"].get(k) {
                Some(v) => new["metadata"][k] = v.clone(),
                None => {
                    if let Some(m) = new["metadata"].as_object_mut() {
                        m.remove(k);
                    }
                }
            }
        }
        if def.group.is_empty() && def.plural == "secrets" {
            Self::normalize_secret(&mut new)?;
        }
        if def.group.is_empty() && def.plural == "namespaces" {
            // spec.finalizers only change through the finalize subresource.
            new["spec"] = old.get("spec").cloned().unwrap_or_default();
        }
        if is_deleting(&old) {
            let before = finalizers_of(&old);
            let added: Vec<String> = finalizers_of(&new)
                .into_iter()
                .filter(|f| !before.contains(f))
                .map(|f| format!("{f:?}"))
                .collect();
            if !added.is_empty() {
                let cause = (
                    "metadata.finalizers".to_owned(),
                    format!(
                        "Forbidden: no new finalizers can be added if the object is being deleted, found new finalizers []string{{{}}}",
                        added.join(", ")
                    ),
                );
                // A Namespace's update is validated twice over (its own
                // rules and the generic metadata rules): the cause comes
                // twice (ns2-patch-ns-finalizer-add).
                let causes = if def.group.is_empty() && def.plural == "namespaces" {
                    vec![cause.clone(), cause]
                } else {
                    vec![cause]
                };
                return Err(ApiError::invalid(def, name, &causes).into());
            }
        }
        Self::apply_schema(def, &mut new)?;
        self.validate(def, &new)?;
        if def.has_generation && spec_part(&old) != spec_part(&new) {
            let g = old
                .pointer("/metadata/generation")
                .and_then(Value::as_i64)
                .unwrap_or(1);
            new["metadata"]["generation"] = json!(g + 1);
        }
        // Field ownership.
        let apply_owners_given = apply_owners.is_some();
        let owners = match apply_owners {
            Some(o) => o,
            None => {
                let (mut owners, _) =
                    patch::from_managed_fields(old.pointer("/metadata/managedFields"));
                patch::record_update(&old, &new, &opts.manager, &mut owners);
                owners
            }
        };
        let applying = apply_owners_given;
        let (_, mut ops) = patch::from_managed_fields(old.pointer("/metadata/managedFields"));
        for m in owners.keys() {
            ops.entry(m.clone()).or_insert_with(|| "Update".into());
        }
        if applying {
            ops.insert(opts.manager.clone(), "Apply".into());
        }
        // No-op: nothing but bookkeeping would change.
        let mut cmp_new = new.clone();
        let mut cmp_old = (*old).clone();
        for v in [&mut cmp_new, &mut cmp_old] {
            if let Some(m) = v["metadata"].as_object_mut() {
                m.remove("managedFields");
                m.remove("resourceVersion");
            }
        }
        if cmp_new == cmp_old {
            return Ok(old);
        }
        new["metadata"]["managedFields"] =
            patch::to_managed_fields(&owners, &ops, &def.api_version(), &now_rfc3339());
        if opts.dry_run {
            return Ok(Arc::new(new));
        }
        let rv = self.next_rv();
        new["metadata"]["resourceVersion"] = json!(rv.to_string());
        let key = (ns.to_owned(), name.to_owned());
        if is_deleting(&new)
            && finalizers_of(&new).is_empty()
            && !self.namespace_blocks_removal(def, &new)
        {
            // The last finalizer is gone: the object goes.
            if let Some(all) = self.objects.get_mut(&Self::res_key(def)) {
                all.remove(&key);
            }
            let stored = Arc::new(new);
            self.emit(def, EventType::Deleted, stored.clone(), Some(old));
            return Ok(stored);
        }
        if def.plural == "customresourcedefinitions" {
            self.register_crd(&new);
        }
        let stored = Arc::new(new);
        self.objects
            .entry(Self::res_key(def))
            .or_default()
            .insert(key, stored.clone());
        self.emit(def, EventType::Modified, stored.clone(), Some(old));
        Ok(stored)
    }

    /// A namespace also waits for its `spec.finalizers`.
    fn namespace_blocks_removal(&self, def: &ResourceDef, obj: &Value) -> bool {
        def.group.is_empty()
            && def.plural == "namespaces"
            && obj
                .pointer("/spec/finalizers")
                .and_then(Value::as_array)
                .is_some_and(|a| !a.is_empty())
    }

    /// Deletes an object: at once without finalizers, else marks it.
    pub fn delete(
        &mut self,
        def: &ResourceDef,
        ns: &str,
        name: &str,
        opts: &WriteOptions,
        precondition_rv: Option<&str>,
    ) -> Result<Arc<Value>, ApiError> {
        match self.stored_def(def) {
            Some(stored) => {
                let gone = self.delete_stored(&stored, ns, name, opts, precondition_rv)?;
                Ok(Self::view(def, gone))
            }
            None => self.delete_stored(def, ns, name, opts, precondition_rv),
        }
    }

    fn delete_stored(
        &mut self,
        def: &ResourceDef,
        ns: &str,
        name: &str,
        opts: &WriteOptions,
        precondition_rv: Option<&str>,
    ) -> Result<Arc<Value>, ApiError> {
        let old = self.get_or_404(def, ns, name)?;
        if let Some(want) = precondition_rv
            && meta_str(&old, "resourceVersion") != Some(want)
        {
            return Err(ApiError::conflict(def, name));
        }
        let blocked = !finalizers_of(&old).is_empty() || self.namespace_blocks_removal(def, &old);
        if blocked {
            if is_deleting(&old) {
                return Ok(old);
            }
            let mut new = (*old).clone();
            new["metadata"]["deletionTimestamp"] = json!(now_rfc3339());
            new["metadata"]["deletionGracePeriodSeconds"] = json!(0);
            if def.group.is_empty() && def.plural == "namespaces" {
                new["status"]["phase"] = json!("Terminating");
            }
            if opts.dry_run {
                return Ok(Arc::new(new));
            }
            let rv = self.next_rv();
            new["metadata"]["resourceVersion"] = json!(rv.to_string());
            let stored = Arc::new(new);
            self.objects
                .entry(Self::res_key(def))
                .or_default()
                .insert((ns.to_owned(), name.to_owned()), stored.clone());
            self.emit(def, EventType::Modified, stored.clone(), Some(old));
            return Ok(stored);
        }
        if opts.dry_run {
            return Ok(old);
        }
        self.remove_now(def, ns, name, old)
    }

    fn remove_now(
        &mut self,
        def: &ResourceDef,
        ns: &str,
        name: &str,
        old: Arc<Value>,
    ) -> Result<Arc<Value>, ApiError> {
        if let Some(all) = self.objects.get_mut(&Self::res_key(def)) {
            all.remove(&(ns.to_owned(), name.to_owned()));
        }
        let rv = self.next_rv();
        let mut gone = (*old).clone();
        gone["metadata"]["resourceVersion"] = json!(rv.to_string());
        let gone = Arc::new(gone);
        if def.plural == "customresourcedefinitions"
            && let Ok(defs) = super::resources::from_crd(&old)
            && let Some(first) = defs.first()
        {
            let (g, p) = (first.group.clone(), first.plural.clone());
            self.objects.remove(&(g.clone(), p.clone()));
            self.registry.remove_group_plural(&g, &p);
        }
        self.emit(def, EventType::Deleted, gone.clone(), Some(old));
        Ok(gone)
    }

    /// One step of the namespace lifecycle controller: for every
    /// terminating namespace, delete its content; when it is empty, drop
    /// the `kubernetes` finalizer, and remove the namespace when no
    /// finalizer is left. Returns whether anything changed.
    pub fn namespace_lifecycle_step(&mut self) -> bool {
        let Some(ns_def) = self.registry.get("", "v1", "namespaces").cloned() else {
            return false;
        };
        let terminating: Vec<Arc<Value>> = self
            .deleting_namespaces
            .iter()
            .filter_map(|n| self.get(&ns_def, "", n))
            .filter(|n| is_deleting(n))
            .collect();
        let mut changed = false;
        let namespaced: Vec<ResourceDef> = self
            .registry
            .all()
            .filter(|d| d.namespaced && !d.create_only)
            .cloned()
            .collect();
        for namespace in terminating {
            let ns = name_of(&namespace).to_owned();
            let mut remaining = 0;
            let mut seen: std::collections::HashSet<ResKey> = std::collections::HashSet::new();
            for def in &namespaced {
                if !seen.insert(Self::res_key(def)) {
                    continue;
                }
                for obj in self.list(
                    def,
                    Some(&ns),
                    &LabelSelector::default(),
                    &FieldSelector::default(),
                ) {
                    remaining += 1;
                    if !is_deleting(&obj) {
                        let name = name_of(&obj).to_owned();
                        if self
                            .delete(def, &ns, &name, &WriteOptions::default(), None)
                            .is_ok()
                        {
                            changed = true;
                        }
                    }
                }
            }
            if remaining == 0 {
                let has_spec_finalizer = namespace
                    .pointer("/spec/finalizers")
                    .and_then(Value::as_array)
                    .is_some_and(|a| !a.is_empty());
                if has_spec_finalizer {
                    let mut new = (*namespace).clone();
                    new["spec"]["finalizers"] = json!([]);
                    if finalizers_of(&new).is_empty() {
                        let _ = self.remove_now(&ns_def, "", &ns, namespace.clone());
                    } else {
                        let rv = self.next_rv();
                        new["metadata"]["resourceVersion"] = json!(rv.to_string());
                        let stored = Arc::new(new);
                        self.objects
                            .entry(Self::res_key(&ns_def))
                            .or_default()
                            .insert((String::new(), ns.clone()), stored.clone());
                        self.emit(
                            &ns_def,
                            EventType::Modified,
                            stored,
                            Some(namespace.clone()),
                        );
                    }
                    changed = true;
                }
            }
        }
        changed
    }

    /// Writes an object as a controller would, without admission (used by
    /// the simulated OpenShift controllers). Creates or replaces.
    pub fn controller_write(
        &mut self,
        def: &ResourceDef,
        obj: Value,
        manager: &str,
    ) -> Result<Arc<Value>, ApiError> {
        let (ns, name) = (namespace_of(&obj).to_owned(), name_of(&obj).to_owned());
        let opts = WriteOptions {
            dry_run: false,
            manager: manager.to_owned(),
        };
        match self.get(def, &ns, &name) {
            None => {
                let prepared = self.prepare_create(def, &ns, obj)?;
                self.commit_create(def, prepared, &opts)
            }
            Some(old) => {
                let rv = rv_of(&old).unwrap_or_default();
                let has_status = obj.get("status").is_some();
                let mut result = self.commit_update(
                    def,
                    Update {
                        ns: &ns,
                        name: &name,
                        read_rv: rv,
                        object: obj.clone(),
                        subresource: None,
                        apply_owners: None,
                    },
                    &opts,
                );
                if def.status_subresource && has_status && result.is_ok() {
                    let rv2 = self
                        .get(def, &ns, &name)
                        .and_then(|o| rv_of(&o))
                        .unwrap_or_default();
                    result = self.commit_update(
                        def,
                        Update {
                            ns: &ns,
                            name: &name,
                            read_rv: rv2,
                            object: obj,
                            subresource: Some("status"),
                            apply_owners: None,
                        },
                        &opts,
                    );
                }
                result.map_err(|e| match e {
                    CommitError::Api(a) => a,
                    CommitError::Retry => ApiError::conflict(def, &name),
                })
            }
        }
    }

    /// Namespaced objects of one namespace across every kind (for tests and
    /// state dumps).
    pub fn all_objects(&self) -> impl Iterator<Item = (&ResKey, &Arc<Value>)> {
        self.objects
            .iter()
            .flat_map(|(k, m)| m.values().map(move |v| (k, v)))
    }
}

/// `metadata` helpers for callers that build objects.
pub fn object_meta(name: &str, namespace: Option<&str>) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("name".into(), json!(name));
    if let Some(ns) = namespace {
        m.insert("namespace".into(), json!(ns));
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store_with_ns(ns: &str) -> Store {
        let mut s = Store::new(1000);
        let def = s.registry.get("", "v1", "namespaces").unwrap().clone();
        let obj = s
            .prepare_create(&def, "", json!({"metadata": {"name": ns}}))
            .unwrap();
        s.commit_create(&def, obj, &WriteOptions::default())
            .unwrap();
        s
    }

    fn def(s: &Store, g: &str, p: &str) -> ResourceDef {
        s.registry.get(g, "v1", p).unwrap().clone()
    }

    #[test]
    fn create_assigns_identity_and_defaults() {
        let mut s = store_with_ns("demo");
        let ns = s.get(&def(&s, "", "namespaces"), "", "demo").unwrap();
        assert_eq!(ns["status"]["phase"], "Active");
        assert_eq!(
            ns["metadata"]["labels"]["kubernetes.io/metadata.name"],
            "demo"
        );
        let d = def(&s, "", "secrets");
        let obj = s
            .prepare_create(
                &d,
                "demo",
                json!({"metadata": {"generateName": "tok-"}, "stringData": {"a": "b"}}),
            )
            .unwrap();
        let stored = s.commit_create(&d, obj, &WriteOptions::default()).unwrap();
        assert!(name_of(&stored).starts_with("tok-") && name_of(&stored).len() == 9);
        assert_eq!(stored["data"]["a"], "Yg==");
        assert_eq!(stored["type"], "Opaque");
        assert!(
            stored["metadata"]["uid"].is_string()
                && stored["metadata"]["creationTimestamp"].is_string()
        );
        assert!(rv_of(&stored).unwrap() > 1);
        // Errors: missing namespace, bad name, duplicates, bad base64.
        assert_eq!(
            s.prepare_create(&d, "nope", json!({"metadata": {"name": "x"}}))
                .unwrap_err()
                .code,
            404
        );
        let bad = s
            .prepare_create(
                &d,
                "demo",
                json!({"metadata": {"name": "Builder-quay-OpenShift"}}),
            )
            .unwrap_err();
        assert_eq!((bad.code, bad.reason), (422, "Invalid"));
        assert!(bad.message.contains("RFC 1123"), "{}", bad.message);
        let name = name_of(&stored).to_owned();
        assert_eq!(
            s.prepare_create(&d, "demo", json!({"metadata": {"name": name}}))
                .unwrap_err()
                .reason,
            "AlreadyExists"
        );
        assert_eq!(
            s.prepare_create(
                &d,
                "demo",
                json!({"metadata": {"name": "b"}, "data": {"k": "!!"}})
            )
            .unwrap_err()
            .code,
            400
        );
        let cfg = s.prepare_create(&d, "demo", json!({"metadata": {"name": "c"}, "type": "kubernetes.io/dockerconfigjson", "data": {}})).unwrap_err();
        assert_eq!(cfg.code, 422);
        let build = def(&s, "build.openshift.io", "builds");
        assert_eq!(
            s.prepare_create(
                &build,
                "demo",
                json!({"metadata": {"name": "b-1"}, "spec": {}})
            )
            .unwrap_err()
            .code,
            422
        );
    }

    #[test]
    fn updates_bump_generation_only_on_spec_and_skip_no_ops() {
        let mut s = store_with_ns("demo");
        let d = def(&s, "image.openshift.io", "imagestreams");
        let obj = s
            .prepare_create(
                &d,
                "demo",
                json!({"metadata": {"name": "app"}, "spec": {"lookupPolicy": {"local": false}}}),
            )
            .unwrap();
        let created = s.commit_create(&d, obj, &WriteOptions::default()).unwrap();
        let rv = rv_of(&created).unwrap();
        // No-op.
        let same = s
            .commit_update(
                &d,
                Update {
                    ns: "demo",
                    name: "app",
                    read_rv: rv,
                    object: (*created).clone(),
                    subresource: None,
                    apply_owners: None,
                },
                &WriteOptions::default(),
            )
            .unwrap();
        assert_eq!(rv_of(&same), Some(rv));
        // Label change: new RV, same generation.
        let mut labelled = (*created).clone();
        labelled["metadata"]["labels"] = json!({"a": "b"});
        let l = s
            .commit_update(
                &d,
                Update {
                    ns: "demo",
                    name: "app",
                    read_rv: rv,
                    object: labelled,
                    subresource: None,
                    apply_owners: None,
                },
                &WriteOptions::default(),
            )
            .unwrap();
        assert!(rv_of(&l).unwrap() > rv);
        assert_eq!(l["metadata"]["generation"], 1);
        // Spec change: generation 2. Status through the main endpoint is ignored.
        let mut spec = (*l).clone();
        spec["spec"]["lookupPolicy"]["local"] = json!(true);
        spec["status"] = json!({"dockerImageRepository": "hacked"});
        let g = s
            .commit_update(
                &d,
                Update {
                    ns: "demo",
                    name: "app",
                    read_rv: rv_of(&l).unwrap(),
                    object: spec,
                    subresource: None,
                    apply_owners: None,
                },
                &WriteOptions::default(),
            )
            .unwrap();
        assert_eq!(g["metadata"]["generation"], 2);
        assert_ne!(g["status"]["dockerImageRepository"], "hacked");
        // Stale read: retry.
        assert!(matches!(
            s.commit_update(
                &d,
                Update {
                    ns: "demo",
                    name: "app",
                    read_rv: rv,
                    object: (*g).clone(),
                    subresource: None,
                    apply_owners: None
                },
                &WriteOptions::default()
            ),
            Err(CommitError::Retry)
        ));
    }

    #[test]
    fn finalizers_hold_deletion_until_removed() {
        let mut s = store_with_ns("demo");
        let d = def(&s, "", "configmaps");
        let obj = s
            .prepare_create(
                &d,
                "demo",
                json!({"metadata": {"name": "c", "finalizers": ["x/y"]}}),
            )
            .unwrap();
        s.commit_create(&d, obj, &WriteOptions::default()).unwrap();
        let marked = s
            .delete(&d, "demo", "c", &WriteOptions::default(), None)
            .unwrap();
        assert!(is_deleting(&marked));
        // Adding a finalizer now is refused.
        let mut more = (*marked).clone();
        more["metadata"]["finalizers"] = json!(["x/y", "new/one"]);
        let err = s
            .commit_update(
                &d,
                Update {
                    ns: "demo",
                    name: "c",
                    read_rv: rv_of(&marked).unwrap(),
                    object: more,
                    subresource: None,
                    apply_owners: None,
                },
                &WriteOptions::default(),
            )
            .unwrap_err();
        assert!(matches!(err, CommitError::Api(ApiError { code: 422, .. })));
        let mut done = (*marked).clone();
        done["metadata"]["finalizers"] = json!([]);
        s.commit_update(
            &d,
            Update {
                ns: "demo",
                name: "c",
                read_rv: rv_of(&marked).unwrap(),
                object: done,
                subresource: None,
                apply_owners: None,
            },
            &WriteOptions::default(),
        )
        .unwrap();
        assert!(s.get(&d, "demo", "c").is_none());
    }

    #[test]
    fn namespace_deletion_empties_it_then_removes_it() {
        let mut s = store_with_ns("gone");
        let ns_def = def(&s, "", "namespaces");
        let cm = def(&s, "", "configmaps");
        for (name, fin) in [("plain", json!([])), ("held", json!(["keep/me"]))] {
            let obj = s
                .prepare_create(
                    &cm,
                    "gone",
                    json!({"metadata": {"name": name, "finalizers": fin}}),
                )
                .unwrap();
            s.commit_create(&cm, obj, &WriteOptions::default()).unwrap();
        }
        let marked = s
            .delete(&ns_def, "", "gone", &WriteOptions::default(), None)
            .unwrap();
        assert_eq!(marked["status"]["phase"], "Terminating");
        assert_eq!(
            s.prepare_create(&cm, "gone", json!({"metadata": {"name": "new"}}))
                .unwrap_err()
                .code,
            403
        );
        s.namespace_lifecycle_step();
        assert!(s.get(&cm, "gone", "plain").is_none());
        assert!(is_deleting(&s.get(&cm, "gone", "held").unwrap()));
        assert!(s.get(&ns_def, "", "gone").is_some(), "held by its content");
        let held = s.get(&cm, "gone", "held").unwrap();
        let mut released = (*held).clone();
        released["metadata"]["finalizers"] = json!([]);
        s.commit_update(
            &cm,
            Update {
                ns: "gone",
                name: "held",
                read_rv: rv_of(&held).unwrap(),
                object: released,
                subresource: None,
                apply_owners: None,
            },
            &WriteOptions::default(),
        )
        .unwrap();
        s.namespace_lifecycle_step();
        assert!(s.get(&ns_def, "", "gone").is_none());
    }

    #[test]
    fn history_and_compaction() {
        let mut s = Store::new(3);
        let d = def(&s, "", "namespaces");
        for n in ["a", "b", "c", "d", "e"] {
            let obj = s
                .prepare_create(&d, "", json!({"metadata": {"name": n}}))
                .unwrap();
            s.commit_create(&d, obj, &WriteOptions::default()).unwrap();
        }
        let key = ("".to_owned(), "namespaces".to_owned());
        assert!(s.history_since(1, &key).is_none(), "too old");
        let recent = s.history_since(s.rv() - 2, &key).unwrap();
        assert_eq!(recent.len(), 2);
        let seen = s.rv();
        s.compact();
        assert!(
            s.history_since(seen, &key).is_none(),
            "a client's last RV is too old after compaction"
        );
        assert!(s.history_since(s.rv(), &key).unwrap().is_empty());
    }
}
