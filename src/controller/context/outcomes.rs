//! What happened to each namespace (its outcome, which the status and the
//! namespace gauges read), and the retry delays of failing keys.

use super::{Metrics, NsOutcome, NsState, lock};
use crate::config::IntegrationId;
use crate::plan::status::Counts;
use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::Duration;

/// Each namespace's outcome, by name.
pub(crate) struct Outcomes {
    outcomes: Mutex<BTreeMap<String, NsOutcome>>,
    metrics: Metrics,
}

impl Outcomes {
    /// No outcome yet; the namespace gauges go to `metrics`.
    pub fn new(metrics: Metrics) -> Self {
        Self {
            outcomes: Mutex::default(),
            metrics,
        }
    }

    /// Records (or, `None`, forgets) a namespace's outcome.
    pub fn set(&self, namespace: &str, outcome: Option<NsOutcome>) {
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

    /// The outcomes of the namespaces an integration is concerned with,
    /// counted where they are kept.
    pub fn counts(&self, id: &IntegrationId) -> Counts {
        Counts::of(
            lock(&self.outcomes)
                .iter()
                .filter(|(_, o)| o.integrations.contains(id))
                .map(|(n, o)| (n.as_str(), o)),
        )
    }

    /// Whether an integration is concerned with the namespace.
    pub fn concerns(&self, namespace: &str, id: &IntegrationId) -> bool {
        lock(&self.outcomes)
            .get(namespace)
            .is_some_and(|o| o.integrations.contains(id))
    }
}

/// Consecutive failures per key (a namespace, `qi/<name>`, a Build), for
/// the retry delay.
pub(crate) struct Backoff {
    max: Duration,
    failures: Mutex<HashMap<String, u32>>,
}

impl Backoff {
    /// Delays capped at `max`.
    pub fn new(max: Duration) -> Self {
        Self {
            max,
            failures: Mutex::default(),
        }
    }

    /// The delay before retrying `key` after one more failure:
    /// exponential per key, with jitter, capped.
    pub fn next(&self, key: &str) -> Duration {
        let mut failures = lock(&self.failures);
        let n = failures.entry(key.to_owned()).or_insert(0);
        *n = n.saturating_add(1);
        crate::backoff::delay(Duration::from_millis(250), self.max, *n, &mut rand::rng())
    }

    /// Forgets a key's failures.
    pub fn succeeded(&self, key: &str) {
        lock(&self.failures).remove(key);
    }

    /// Forgets every failure (Quay came back; a new leadership term).
    pub fn clear(&self) {
        lock(&self.failures).clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_per_key_until_a_success_resets_them() {
        let b = Backoff::new(Duration::from_secs(60));
        let first = b.next("a");
        assert!(first <= Duration::from_millis(250), "{first:?}");
        for _ in 0..20 {
            b.next("a");
        }
        assert!(b.next("a") <= Duration::from_secs(60));
        assert!(b.next("a") > Duration::from_secs(10), "grown");
        assert!(b.next("b") <= Duration::from_millis(250), "per key");
        b.succeeded("a");
        assert!(b.next("a") <= Duration::from_millis(250), "reset");
    }

    #[test]
    fn outcomes_count_in_the_gauges_and_filter_by_integration() {
        let o = Outcomes::new(Metrics::default());
        let id = |name: &str| IntegrationId {
            group: crate::config::ApiGroup::Current,
            name: name.into(),
        };
        let managed = |i: &str| NsOutcome {
            integrations: vec![id(i)],
            state: NsState::Managed,
        };
        o.set("a", Some(managed("one")));
        o.set("b", Some(managed("two")));
        assert!(o.concerns("a", &id("one")) && !o.concerns("a", &id("two")));
        assert_ne!(o.counts(&id("one")), Counts::default());
        o.set("a", None);
        assert!(!o.concerns("a", &id("one")));
        assert_eq!(o.counts(&id("one")), Counts::default());
    }
}
