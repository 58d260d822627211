//! What happened to each namespace: outcomes, backoff, Events.

use super::events::Note;
use crate::config::IntegrationId;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::core::v1::ObjectReference;
use kube::{Resource, ResourceExt};
use std::time::Duration;

use super::{Context, NsOutcome, NsState, lock};

impl Context {
    /// The delay before retrying a failed namespace: exponential per
    /// namespace, with jitter, capped.
    pub fn backoff(&self, key: &str) -> Duration {
        let mut failures = lock(&self.failures);
        let n = failures.entry(key.to_owned()).or_insert(0);
        *n = n.saturating_add(1);
        crate::backoff::delay(
            Duration::from_millis(250),
            self.options.max_backoff,
            *n,
            &mut rand::rng(),
        )
    }

    /// Forgets a namespace's failures.
    pub fn succeeded(&self, key: &str) {
        lock(&self.failures).remove(key);
    }

    /// Records a namespace outcome.
    pub fn set_outcome(&self, namespace: &str, outcome: Option<NsOutcome>) {
        let mut outcomes = lock(&self.outcomes);
        match outcome {
            Some(o) => {
                outcomes.insert(namespace.to_owned(), o);
            }
            None => {
                outcomes.remove(namespace);
            }
        }
        let (mut managed, mut failing, mut conflict) = (0, 0, 0);
        for o in outcomes.values() {
            match o.state {
                NsState::Managed => managed += 1,
                NsState::Failing(_) => failing += 1,
                NsState::Conflict(_) => conflict += 1,
            }
        }
        drop(outcomes);
        self.metrics.namespace_states(managed, failing, conflict);
    }

    /// Outcomes of the namespaces an integration is concerned with.
    pub fn outcomes_of(&self, id: &IntegrationId) -> Vec<(String, NsOutcome)> {
        lock(&self.outcomes)
            .iter()
            .filter(|(_, o)| o.integrations.contains(id))
            .map(|(n, o)| (n.clone(), o.clone()))
            .collect()
    }

    /// Forgets everything about a namespace.
    pub fn forget(&self, namespace: &str) {
        self.set_outcome(namespace, None);
        self.views.forget(namespace);
        lock(&self.failures).remove(namespace);
        lock(&self.reported).retain(|(n, _)| n != namespace);
        self.rotations.forget(namespace);
    }

    /// Publishes an Event on a namespace. With `once`, an identical reason
    /// is published only the first time (until the namespace is forgotten).
    pub async fn event(
        &self,
        ns: &Namespace,
        warning: bool,
        reason: &str,
        note: String,
        once: bool,
    ) {
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
        if let Err(e) = self.events.publish(&n, reference, warning).await {
            tracing::debug!(error = %e, "event not published");
        }
    }

    /// Clears a once-only report, so it is published again if it recurs.
    pub fn clear_report(&self, namespace: &str, reason: &str) {
        lock(&self.reported).remove(&(namespace.to_owned(), reason.to_owned()));
    }
}
