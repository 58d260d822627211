//! The Builds that escaped the webhook, per integration: what the status
//! count, the metric and the once-per-Build Warning read. The Build cache
//! is the truth; this remembers which cached Builds were found escaped.

use crate::config::IntegrationId;
use crate::openshift::Build;
use kube::runtime::reflector::{ObjectRef, Store};
use std::collections::BTreeMap;
use std::sync::Mutex;

/// Escaped Builds by `(namespace, name)`.
#[derive(Default)]
pub struct EscapedBuilds {
    found: Mutex<BTreeMap<(String, String), IntegrationId>>,
    builds: Mutex<Option<Store<Build>>>,
}

impl EscapedBuilds {
    fn found(&self) -> std::sync::MutexGuard<'_, BTreeMap<(String, String), IntegrationId>> {
        self.found
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The term's Build cache, against which remembered Builds are checked
    /// (a deleted Build no longer counts).
    pub fn watch(&self, builds: Store<Build>) {
        *self
            .builds
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(builds);
    }

    /// Records an escaped Build; true the first time (its Warning is due).
    pub fn record(&self, namespace: &str, name: &str, integration: &IntegrationId) -> bool {
        self.found()
            .insert((namespace.to_owned(), name.to_owned()), integration.clone())
            .is_none()
    }

    /// The Build is no longer escaped (finished, cancelled, rebuilt).
    pub fn forget(&self, namespace: &str, name: &str) {
        self.found()
            .remove(&(namespace.to_owned(), name.to_owned()));
    }

    /// Escaped Builds still in the cache, for one integration or all.
    pub fn count(&self, integration: Option<&IntegrationId>) -> usize {
        let builds = self
            .builds
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        let mut found = self.found();
        if let Some(store) = &builds {
            found.retain(|(ns, name), _| store.get(&ObjectRef::new(name).within(ns)).is_some());
        }
        found
            .values()
            .filter(|id| integration.is_none_or(|i| *id == i))
            .count()
    }

    /// A new leadership term starts from the cache again.
    pub fn clear(&self) {
        self.found().clear();
    }
}
