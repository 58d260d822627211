//! The namespace controller's queue. Every trigger (a namespace's own
//! change, a change in one of its service accounts, Secrets, RoleBindings
//! or ImageStreams, a resync) adds the namespace's name here; the
//! controller is handed a few at a time, each at most once until its
//! reconcile reports back. kube's scheduler keeps about 700 bytes per
//! pending object (a delay-queue slot, a map entry and the runner's
//! pending set, each with its own copy of the reference): on a large
//! cluster, where the start or a resync of all triggers every namespace
//! at once, that was 7 MiB at 10,000 namespaces. A waiting name costs its
//! bytes here, held once.

use super::Metrics;
use super::lock;
use compact_str::CompactString;
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// A handed-out name whose result has not come back after this long is
/// released (a reconcile's calls all have deadlines well within it), so
/// a lost result cannot hold a place forever.
const STALE: Duration = Duration::from_secs(600);

/// Waiting names, in order, and those handed out.
#[derive(Debug, Default)]
struct State {
    /// In the order they came; each at most once.
    waiting: VecDeque<CompactString>,
    /// The names in `waiting`.
    queued: HashSet<CompactString>,
    /// Handed to the controller: since when, and whether its reconcile
    /// started.
    handed: HashMap<CompactString, (Instant, bool)>,
    /// Triggered again while handed out: queued again when it reports.
    again: HashSet<CompactString>,
}

impl State {
    fn add(&mut self, name: &str) {
        match self.handed.get(name) {
            // Its reconcile has not started: it will read the change.
            Some((_, false)) => {}
            // Running: once more when it reports.
            Some((_, true)) => {
                self.again.insert(name.into());
            }
            None if !self.queued.contains(name) => {
                self.queued.insert(name.into());
                self.waiting.push_back(name.into());
            }
            None => {}
        }
    }

    /// The next name to hand out, when fewer than `limit` are.
    fn next(&mut self, limit: usize, now: Instant) -> Option<CompactString> {
        if self.handed.len() >= limit {
            return None;
        }
        let name = self.waiting.pop_front()?;
        self.queued.remove(&name);
        self.handed.insert(name.clone(), (now, false));
        Some(name)
    }

    /// A handed-out name's reconcile reported; true when the name was
    /// handed out.
    fn done(&mut self, name: &str) -> bool {
        if self.handed.remove(name).is_none() {
            return false;
        }
        if self.again.remove(name) && self.queued.insert(name.into()) {
            // Next, as a follow-up of the work just done (what it cached
            // of Quay is still fresh), not after every other waiting name.
            self.waiting.push_front(name.into());
        }
        true
    }

    /// Names waiting or handed out and not yet started.
    fn depth(&self) -> usize {
        self.waiting.len() + self.handed.values().filter(|(_, s)| !s).count()
    }
}

/// The namespace controller's queue (see the module), and the
/// queue-depth gauge.
pub(crate) struct Queue {
    state: Mutex<State>,
    /// At most this many names handed out at once.
    limit: usize,
    ready: Notify,
    metrics: Metrics,
}

impl Queue {
    /// A queue handing out at most `limit` names at a time.
    pub fn new(metrics: Metrics, limit: usize) -> Self {
        Self {
            state: Mutex::default(),
            limit: limit.max(1),
            ready: Notify::new(),
            metrics,
        }
    }

    fn gauge(&self, state: &State) {
        self.metrics.set_queue_depth("namespace", state.depth());
    }

    /// Queues namespaces for a reconcile.
    pub fn add<'a>(&self, names: impl IntoIterator<Item = &'a str>) {
        let mut state = lock(&self.state);
        for name in names {
            state.add(name);
        }
        self.gauge(&state);
        drop(state);
        self.ready.notify_one();
    }

    /// A namespace's reconcile started.
    pub fn started(&self, name: &str) {
        let mut state = lock(&self.state);
        if let Some((_, started)) = state.handed.get_mut(name) {
            *started = true;
        }
        self.gauge(&state);
    }

    /// A namespace's reconcile ended (or its namespace was not found): the
    /// next one may be handed out.
    pub fn done(&self, name: &str) {
        let mut state = lock(&self.state);
        if state.done(name) {
            self.gauge(&state);
            drop(state);
            self.ready.notify_one();
        }
    }

    /// Forgets everything (a new leadership term).
    pub fn clear(&self) {
        let mut state = lock(&self.state);
        *state = State::default();
        self.gauge(&state);
    }

    /// Releases names handed out too long ago (see [`STALE`]). Waiting
    /// names are kept, even of namespaces not cached (yet): a first list
    /// queues every namespace before the cache holds any (it is filled
    /// when the list completes), and a gone one costs one lookup when
    /// handed out.
    pub fn sweep(&self) {
        let mut state = lock(&self.state);
        let now = Instant::now();
        let stale: Vec<CompactString> = state
            .handed
            .iter()
            .filter(|(_, (since, _))| now.duration_since(*since) > STALE)
            .map(|(n, _)| n.clone())
            .collect();
        for name in stale {
            state.done(&name);
        }
        self.gauge(&state);
        drop(state);
        // Places may have been freed.
        self.ready.notify_one();
    }

    /// The next namespace to reconcile, when one waits and fewer than the
    /// limit are handed out.
    pub async fn next(&self) -> CompactString {
        loop {
            if let Some(name) = lock(&self.state).next(self.limit, Instant::now()) {
                return name;
            }
            // `notify_one` keeps a permit when no one waits: nothing
            // added or done between the check and here is missed.
            self.ready.notified().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queue(limit: usize) -> Queue {
        Queue::new(Metrics::default(), limit)
    }

    async fn next_now(q: &Queue) -> Option<String> {
        tokio::time::timeout(Duration::from_millis(20), q.next())
            .await
            .ok()
            .map(|n| n.to_string())
    }

    #[tokio::test]
    async fn names_come_in_order_each_once_and_at_most_limit_at_a_time() {
        let q = queue(2);
        q.add(["a", "b", "a", "c"]);
        assert_eq!(next_now(&q).await.as_deref(), Some("a"));
        assert_eq!(next_now(&q).await.as_deref(), Some("b"));
        assert_eq!(next_now(&q).await, None, "two handed out: the limit");
        q.done("a");
        assert_eq!(next_now(&q).await.as_deref(), Some("c"));
        q.done("b");
        q.done("c");
        assert_eq!(next_now(&q).await, None, "each name once");
    }

    #[tokio::test]
    async fn a_name_triggered_while_running_comes_again_first_after_it_reports() {
        let q = queue(4);
        q.add(["a"]);
        assert_eq!(next_now(&q).await.as_deref(), Some("a"));
        // Handed out, not started: the coming reconcile reads the change.
        q.add(["a"]);
        q.started("a");
        q.add(["a", "b", "c"]);
        // Not twice at once: `a` waits for its first reconcile.
        assert_eq!(next_now(&q).await.as_deref(), Some("b"));
        q.done("a");
        // Before `c`, which waited longer: `a` follows up work just done.
        assert_eq!(next_now(&q).await.as_deref(), Some("a"));
        assert_eq!(next_now(&q).await.as_deref(), Some("c"));
        q.started("a");
        q.done("a");
        assert_eq!(next_now(&q).await, None, "once more, not twice");
    }

    #[tokio::test]
    async fn results_for_names_not_handed_out_change_nothing() {
        let q = queue(1);
        q.add(["a", "b"]);
        assert_eq!(next_now(&q).await.as_deref(), Some("a"));
        // A retry the controller scheduled itself reports `x`.
        q.done("x");
        assert_eq!(next_now(&q).await, None, "`a` still holds the one place");
        q.done("a");
        assert_eq!(next_now(&q).await.as_deref(), Some("b"));
    }

    #[tokio::test]
    async fn a_waiting_consumer_is_woken_by_an_add_and_by_a_result() {
        let q = std::sync::Arc::new(queue(1));
        let waiting = tokio::spawn({
            let q = q.clone();
            async move { q.next().await }
        });
        tokio::task::yield_now().await;
        q.add(["a"]);
        assert_eq!(waiting.await.unwrap(), "a");
        q.add(["b"]);
        let waiting = tokio::spawn({
            let q = q.clone();
            async move { q.next().await }
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        q.done("a");
        assert_eq!(waiting.await.unwrap(), "b");
    }

    #[tokio::test]
    async fn the_sweep_releases_stale_places_and_keeps_waiting_names() {
        let q = queue(1);
        q.add(["a", "not-cached-yet", "b"]);
        assert_eq!(next_now(&q).await.as_deref(), Some("a"));
        assert_eq!(lock(&q.state).depth(), 3, "`a` not started, two waiting");
        q.started("a");
        assert_eq!(lock(&q.state).depth(), 2);
        q.sweep();
        assert_eq!(next_now(&q).await, None, "`a` holds the place");
        // `a`'s result never comes.
        lock(&q.state).handed.get_mut("a").unwrap().0 -= STALE * 2;
        q.sweep();
        assert_eq!(next_now(&q).await.as_deref(), Some("not-cached-yet"));
        q.done("not-cached-yet");
        assert_eq!(next_now(&q).await.as_deref(), Some("b"));
    }

    #[tokio::test]
    async fn a_cleared_queue_frees_every_place() {
        let q = queue(1);
        q.add(["a", "b"]);
        assert_eq!(next_now(&q).await.as_deref(), Some("a"));
        // A new term: `a`'s result will never come.
        q.clear();
        assert_eq!(lock(&q.state).depth(), 0);
        q.add(["c"]);
        assert_eq!(next_now(&q).await.as_deref(), Some("c"));
    }
}
