//! What this leadership term learnt of each namespace's organization: the
//! last view read from Quay (a hint while `plan::view::fresh` says so)
//! and what team sync learnt that a read of Quay does not show.

use super::lock;
use crate::plan::namespace::QuayView;
use crate::plan::view;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A namespace's organization as last read: a hint that saves the reads
/// of the reconciles that follow one (its own writes trigger them).
pub(crate) struct CachedView {
    pub org: String,
    pub view: QuayView,
    pub fetched: Instant,
    pub generation: Option<i64>,
}

/// What team sync learnt of a namespace that a read of Quay does not
/// show: kept between reads, unlike the view.
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct TeamMemory {
    /// Users Quay invited instead of adding: (team, user).
    pub invited: std::collections::BTreeSet<(String, String)>,
    /// Unknown users already reported by an Event.
    pub reported: std::collections::BTreeSet<String>,
    /// Team sync's counts for the status.
    pub report: Option<crate::crd::TeamSyncStatus>,
}

/// A [`TeamMemory`] as kept between reconciles, for every namespace team
/// sync has reported on: sorted slices of exactly their length instead of
/// tree nodes sized for eleven.
#[derive(Debug, Default)]
struct KeptTeams {
    invited: Box<[(Box<str>, Box<str>)]>,
    reported: Box<[Box<str>]>,
    report: Option<crate::crd::TeamSyncStatus>,
}

impl KeptTeams {
    fn of(m: TeamMemory) -> Self {
        Self {
            invited: m
                .invited
                .into_iter()
                .map(|(t, u)| (t.into_boxed_str(), u.into_boxed_str()))
                .collect(),
            reported: m.reported.into_iter().map(String::into_boxed_str).collect(),
            report: m.report,
        }
    }

    fn memory(&self) -> TeamMemory {
        TeamMemory {
            invited: self
                .invited
                .iter()
                .map(|(t, u)| (t.to_string(), u.to_string()))
                .collect(),
            reported: self.reported.iter().map(|u| u.to_string()).collect(),
            report: self.report.clone(),
        }
    }
}

/// The cached views and team memories, by namespace.
#[derive(Default)]
pub(crate) struct QuayViews {
    hint: Duration,
    views: Mutex<HashMap<String, CachedView>>,
    teams: Mutex<HashMap<String, KeptTeams>>,
}

impl QuayViews {
    /// Views trusted for `plan::view::hint(resync)`.
    pub fn new(resync: Duration) -> Self {
        Self {
            hint: view::hint(resync),
            ..Self::default()
        }
    }

    /// The namespace's view, when it was read for this organization and
    /// integration generation and is still fresh; with when it was read.
    pub fn get(&self, ns: &str, org: &str, generation: Option<i64>) -> Option<(QuayView, Instant)> {
        lock(&self.views)
            .get(ns)
            .filter(|c| {
                let kept = view::Kept {
                    org: &c.org,
                    generation: c.generation,
                    age: c.fetched.elapsed(),
                };
                view::fresh(kept, org, generation, self.hint)
            })
            .map(|c| (c.view.clone(), c.fetched))
    }

    /// Keeps a view read (or updated by this reconcile's writes); when
    /// [`view::MAX_VIEWS`] are kept, the stale ones go, then the oldest.
    pub fn store(&self, ns: &str, view: CachedView) {
        let mut views = lock(&self.views);
        if views.len() >= view::MAX_VIEWS && !views.contains_key(ns) {
            views.retain(|_, c| c.fetched.elapsed() < self.hint);
            if views.len() >= view::MAX_VIEWS
                && let Some(oldest) = views
                    .iter()
                    .min_by_key(|(_, c)| c.fetched)
                    .map(|(n, _)| n.clone())
            {
                views.remove(&oldest);
            }
        }
        views.insert(ns.to_owned(), view);
    }

    /// Replaces the kept view's content (same organization and generation
    /// only), keeping when it was read.
    pub fn update(&self, ns: &str, org: &str, generation: Option<i64>, view: &QuayView) {
        if let Some(c) = lock(&self.views).get_mut(ns)
            && c.org == org
            && c.generation == generation
        {
            c.view = view.clone();
        }
    }

    /// Drops the namespace's view: an answer contradicted it.
    pub fn drop_view(&self, ns: &str) {
        lock(&self.views).remove(ns);
    }

    /// Drops the views no reconcile may use any more.
    pub fn evict_stale(&self) {
        lock(&self.views).retain(|_, c| c.fetched.elapsed() < self.hint);
    }

    /// The namespace's team memory, if any.
    pub fn teams(&self, ns: &str) -> Option<TeamMemory> {
        lock(&self.teams).get(ns).map(KeptTeams::memory)
    }

    /// Keeps what team sync learnt of a namespace (nothing, when it
    /// learnt nothing).
    pub fn remember_teams(&self, ns: &str, memory: TeamMemory) {
        let mut all = lock(&self.teams);
        if memory == TeamMemory::default() {
            all.remove(ns);
        } else {
            all.insert(ns.to_owned(), KeptTeams::of(memory));
        }
    }

    /// Team sync's counts of the namespaces `include` accepts, summed.
    pub fn team_report(&self, include: impl Fn(&str) -> bool) -> crate::crd::TeamSyncStatus {
        let mut sum = crate::crd::TeamSyncStatus::default();
        for (ns, m) in lock(&self.teams).iter() {
            if let (true, Some(r)) = (include(ns), &m.report) {
                sum.members += r.members;
                sum.unknown_users += r.unknown_users;
                sum.invalid_user_names += r.invalid_user_names;
                sum.pending_invitations += r.pending_invitations;
                sum.conflicts += r.conflicts;
            }
        }
        sum
    }

    /// Forgets a namespace.
    pub fn forget(&self, ns: &str) {
        lock(&self.views).remove(ns);
        lock(&self.teams).remove(ns);
    }

    /// Forgets everything (a new leadership term).
    pub fn clear(&self) {
        lock(&self.views).clear();
        lock(&self.teams).clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kept(fetched: Instant) -> CachedView {
        CachedView {
            org: "org".into(),
            view: QuayView::default(),
            fetched,
            generation: None,
        }
    }

    #[test]
    fn at_most_max_views_are_kept_and_the_oldest_goes_first() {
        let views = QuayViews::new(Duration::from_secs(600));
        let start = Instant::now();
        for i in 0..view::MAX_VIEWS {
            let age = Duration::from_millis(u64::try_from(view::MAX_VIEWS - i).unwrap_or(0));
            views.store(
                &format!("ns-{i}"),
                kept(start.checked_sub(age).unwrap_or(start)),
            );
        }
        views.store("newest", kept(Instant::now()));
        assert_eq!(lock(&views.views).len(), view::MAX_VIEWS);
        assert!(views.get("newest", "org", None).is_some());
        assert!(views.get("ns-0", "org", None).is_none(), "the oldest went");
        assert!(views.get("ns-1", "org", None).is_some());
        // Replacing a kept one evicts nothing.
        views.store("ns-1", kept(Instant::now()));
        assert!(views.get("ns-2", "org", None).is_some());
    }

    #[test]
    fn team_memory_is_kept_compactly_and_given_back_whole() {
        let views = QuayViews::new(Duration::from_secs(60));
        let memory = TeamMemory {
            invited: [
                ("editors".into(), "bob".into()),
                ("admins".into(), "al".into()),
            ]
            .into_iter()
            .collect(),
            reported: ["zed".into(), "amy".into()].into_iter().collect(),
            report: Some(crate::crd::TeamSyncStatus {
                members: 3,
                ..Default::default()
            }),
        };
        views.remember_teams("team", memory.clone());
        assert_eq!(views.teams("team"), Some(memory));
        assert_eq!(views.team_report(|_| true).members, 3);
        views.remember_teams("team", TeamMemory::default());
        assert_eq!(views.teams("team"), None, "nothing learnt: nothing kept");
    }
}
