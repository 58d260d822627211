//! When a namespace's cached view of its organization may stand in for
//! Quay, when an answer drops it, and where the token written into a
//! Secret comes from. A cached view is a hint: it saves the reads of the
//! reconciles that follow one, and any answer that contradicts it drops it.

use crate::config::TeamSyncConfig;
use crate::plan::teams::{TeamView, needs_fresh_read};
use std::time::Duration;

/// How long a cached view stands in for Quay at most. Long enough for the
/// reconciles a namespace's own Secrets and links trigger; short enough
/// that a large cluster does not hold every organization's view between
/// resyncs.
pub const VIEW_HINT: Duration = Duration::from_secs(60);

/// How many views are kept at most (about 4 KiB each with team sync):
/// they serve the reconciles a namespace's own writes trigger, seconds
/// later, so the most recent few hundred are enough (1,000 namespaces
/// converged with 11.03 Quay requests each with 256, 11.00 with 1,024),
/// and memory no longer grows with how many namespaces converge per
/// minute. When full, the oldest goes.
pub const MAX_VIEWS: usize = 256;

/// How long views are trusted with this resync interval: 0.9 of it (the
/// resync reads Quay again), at most [`VIEW_HINT`].
pub fn hint(resync: Duration) -> Duration {
    resync.mul_f64(0.9).min(VIEW_HINT)
}

/// What a kept view was read for, and how long ago.
#[derive(Debug, Clone, Copy)]
pub struct Kept<'a> {
    /// The organization it shows.
    pub org: &'a str,
    /// The integration's generation when it was read.
    pub generation: Option<i64>,
    /// Time since it was read.
    pub age: Duration,
}

/// Whether a kept view may stand in for Quay in a reconcile of `org` under
/// integration generation `generation`: same organization and generation,
/// younger than `hint`.
pub fn fresh(kept: Kept<'_>, org: &str, generation: Option<i64>, hint: Duration) -> bool {
    kept.org == org && kept.generation == generation && kept.age < hint
}

/// Whether a fresh kept view may be used as it is: not when team sync is
/// on and it misses a managed team (creating that team from it could
/// overwrite a same-named team a person made since).
pub fn usable(teams: &TeamView, team_sync: Option<&TeamSyncConfig>) -> bool {
    !team_sync.is_some_and(|ts| needs_fresh_read(ts, teams))
}

/// What a failed reconcile's error says about Quay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// Quay could not be reached or answered 5xx.
    QuayUnavailable,
    /// Quay's answer contradicts what the view showed: an object it held
    /// is gone, one it lacked exists, a request built from it is refused,
    /// or a write found the cache stale.
    Contradiction,
    /// Anything else (Kubernetes, a permission, a throttle).
    Other,
}

/// Whether the namespace's view is kept after a reconcile failed this
/// way: dropped when Quay is down (its state is unknown when it returns)
/// or contradicted the view.
pub fn kept_after(failure: Failure) -> bool {
    failure == Failure::Other
}

/// Where the robot token written into a Secret comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenSource {
    /// The view was read from Quay in this reconcile: its tokens are current.
    View,
    /// The view was a kept one: the robot's token is read from Quay again
    /// (a person may have regenerated it since, after a leak).
    ReadAgain,
}

/// Where tokens come from for a reconcile that used a kept view or not.
pub fn token_source(view_was_kept: bool) -> TokenSource {
    if view_was_kept {
        TokenSource::ReadAgain
    } else {
        TokenSource::View
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::TeamRole;
    use crate::plan::teams::ObservedTeam;
    use std::collections::{BTreeMap, BTreeSet};

    const MIN: Duration = Duration::from_secs(60);

    #[test]
    fn views_are_trusted_for_most_of_a_short_resync_and_a_minute_at_most() {
        assert_eq!(hint(Duration::from_secs(10)), Duration::from_secs(9));
        assert_eq!(hint(Duration::from_secs(600)), VIEW_HINT);
        assert_eq!(hint(Duration::ZERO), Duration::ZERO);
    }

    #[test]
    fn a_kept_view_is_fresh_only_for_its_organization_generation_and_age() {
        let kept = Kept {
            org: "team-a",
            generation: Some(2),
            age: Duration::from_secs(5),
        };
        assert!(fresh(kept, "team-a", Some(2), MIN));
        assert!(!fresh(kept, "team-b", Some(2), MIN), "other organization");
        assert!(!fresh(kept, "team-a", Some(3), MIN), "integration changed");
        assert!(!fresh(kept, "team-a", None, MIN));
        assert!(
            !fresh(kept, "team-a", Some(2), Duration::from_secs(5)),
            "as old as the hint"
        );
        assert!(!fresh(kept, "team-a", Some(2), Duration::ZERO));
    }

    /// The default mapping: teams `admins`, `editors`, `viewers`.
    fn team_sync() -> TeamSyncConfig {
        let spec = crate::crd::TeamSync {
            enabled: true,
            roles: None,
        };
        crate::config::team_sync(Some(&spec))
            .ok()
            .flatten()
            .unwrap_or_else(|| panic!("the default team sync is valid"))
    }

    fn view_with(teams: &[&str]) -> TeamView {
        TeamView {
            teams: teams
                .iter()
                .map(|t| {
                    (
                        t.to_string(),
                        ObservedTeam {
                            description: String::new(),
                            role: TeamRole::Member,
                            members: BTreeSet::new(),
                        },
                    )
                })
                .collect::<BTreeMap<_, _>>(),
            ..TeamView::default()
        }
    }

    #[test]
    fn a_kept_view_missing_a_managed_team_is_not_used() {
        let ts = team_sync();
        let all = ["admins", "editors", "viewers"];
        assert!(usable(&view_with(&[]), None), "team sync off");
        assert!(usable(&view_with(&all), Some(&ts)));
        assert!(usable(
            &view_with(&["admins", "editors", "viewers", "other"]),
            Some(&ts)
        ));
        assert!(!usable(&view_with(&[]), Some(&ts)));
        assert!(!usable(&view_with(&["admins", "editors"]), Some(&ts)));
    }

    #[test]
    fn only_an_unrelated_failure_keeps_the_view() {
        assert!(!kept_after(Failure::QuayUnavailable));
        assert!(!kept_after(Failure::Contradiction));
        assert!(kept_after(Failure::Other));
    }

    #[test]
    fn tokens_from_a_kept_view_are_read_again() {
        assert_eq!(token_source(true), TokenSource::ReadAgain);
        assert_eq!(token_source(false), TokenSource::View);
    }
}
