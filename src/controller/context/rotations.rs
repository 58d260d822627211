//! What robot-token rotation remembers across reconciles: when each
//! Secret was seen switched (the grace period's start), each namespace's
//! oldest token and waiting rotation (for oldest-first permits and the
//! status), and the per-minute budget of rotations.

use crate::config::{IntegrationConfig, IntegrationId};
use crate::crd::RobotTokenStatus;
use compact_str::CompactString;
use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::lock;

/// One namespace's robot tokens, as its last reconcile found them.
#[derive(Debug, Clone, PartialEq)]
pub struct NsTokens {
    /// The integration bridging it.
    pub integration: IntegrationId,
    /// When its oldest token in use was made.
    pub oldest: Option<Timestamp>,
    /// Its service accounts in the middle of a rotation.
    pub rotating: u32,
    /// When the robot of its oldest due rotation was made, while that
    /// rotation waits for a permit.
    pub waiting: Option<Timestamp>,
    /// When its next rotation step is due.
    pub next: Option<Timestamp>,
}

/// What is kept of a namespace's [`NsTokens`] (one per bridged
/// namespace: its integration as an index into `Inner::integrations`,
/// its name inline when short).
#[derive(Debug, Clone, Copy, PartialEq)]
struct Kept {
    integration: u32,
    oldest: Option<Timestamp>,
    rotating: u32,
    waiting: Option<Timestamp>,
    next: Option<Timestamp>,
}

#[derive(Debug, Default)]
struct Inner {
    switched: HashMap<(String, String), Timestamp>,
    /// The integrations the kept entries name.
    integrations: Vec<IntegrationId>,
    namespaces: HashMap<CompactString, Kept>,
    /// Per integration: the minute window's start and the permits given.
    budget: HashMap<IntegrationId, (Instant, u32)>,
}

impl Inner {
    /// The index of `id` in `integrations`, if known.
    fn find(&self, id: &IntegrationId) -> Option<u32> {
        self.integrations
            .iter()
            .position(|i| i == id)
            .and_then(|i| u32::try_from(i).ok())
    }

    /// The index of `id`, added when new (a cluster has a few).
    fn index(&mut self, id: &IntegrationId) -> u32 {
        self.find(id).unwrap_or_else(|| {
            self.integrations.push(id.clone());
            u32::try_from(self.integrations.len() - 1).unwrap_or(u32::MAX)
        })
    }
}

/// Robot-token rotation's memory (see the module).
#[derive(Debug, Default)]
pub struct Rotations {
    inner: Mutex<Inner>,
}

const WINDOW: Duration = Duration::from_secs(60);

impl Rotations {
    /// When the Secret of `sa` in `ns` was first seen switched.
    pub fn switched_at(&self, ns: &str, sa: &str) -> Option<Timestamp> {
        lock(&self.inner)
            .switched
            .get(&(ns.to_owned(), sa.to_owned()))
            .copied()
    }

    /// Remembers the start of a grace period (kept if already known), or
    /// forgets it (`None`: no replaced robot waits).
    pub fn remember_switch(&self, ns: &str, sa: &str, since: Option<Timestamp>) {
        let key = (ns.to_owned(), sa.to_owned());
        let mut inner = lock(&self.inner);
        match since {
            Some(t) => {
                inner.switched.entry(key).or_insert(t);
            }
            None => {
                inner.switched.remove(&key);
            }
        }
    }

    /// Records what a namespace's reconcile found.
    pub fn report(&self, ns: &str, tokens: NsTokens) {
        let mut inner = lock(&self.inner);
        let integration = inner.index(&tokens.integration);
        inner.namespaces.insert(
            ns.into(),
            Kept {
                integration,
                oldest: tokens.oldest,
                rotating: tokens.rotating,
                waiting: tokens.waiting,
                next: tokens.next,
            },
        );
    }

    /// Forgets a namespace (no longer bridged, deleted).
    pub fn forget(&self, ns: &str) {
        let mut inner = lock(&self.inner);
        inner.namespaces.remove(ns);
        inner.switched.retain(|(n, _), _| n != ns);
    }

    /// Whether `ns` may start a rotation now: the integration's budget for
    /// this minute is not spent, and no namespace with an older due token
    /// waits for the permits left (oldest first).
    pub fn permit(&self, cfg: &IntegrationConfig, ns: &str) -> bool {
        let Some(policy) = cfg.rotation else {
            return false;
        };
        let mut inner = lock(&self.inner);
        let now = Instant::now();
        let used = {
            let (start, used) = inner.budget.entry(cfg.id.clone()).or_insert((now, 0));
            if now.duration_since(*start) >= WINDOW {
                *start = now;
                *used = 0;
            }
            *used
        };
        let left = policy.per_minute.saturating_sub(used);
        if left == 0 {
            return false;
        }
        let mine = inner.namespaces.get(ns).and_then(|t| t.waiting);
        let id = inner.find(&cfg.id);
        let older = inner
            .namespaces
            .iter()
            .filter(|(n, t)| n.as_str() != ns && Some(t.integration) == id && t.waiting.is_some())
            .filter(|(n, t)| match (t.waiting, mine) {
                (Some(theirs), Some(m)) => (theirs, n.as_str()) < (m, ns),
                _ => false,
            })
            .count();
        if u32::try_from(older).unwrap_or(u32::MAX) >= left {
            return false;
        }
        if let Some((_, used)) = inner.budget.get_mut(&cfg.id) {
            *used += 1;
        }
        true
    }

    /// How long until the budget allows another start.
    pub fn retry_in(&self, cfg: &IntegrationConfig) -> Duration {
        let per_minute = cfg.rotation.map_or(1, |p| p.per_minute.max(1));
        WINDOW / per_minute
    }

    /// The integration's robot tokens for its status (and the age metric).
    pub fn status(&self, cfg: &IntegrationConfig) -> Option<RobotTokenStatus> {
        let inner = lock(&self.inner);
        let id = inner.find(&cfg.id)?;
        let mine = inner.namespaces.values().filter(|t| t.integration == id);
        let mut oldest: Option<Timestamp> = None;
        let mut next: Option<Timestamp> = None;
        let mut rotating = 0u32;
        let mut any = false;
        for t in mine {
            any = true;
            oldest = match (oldest, t.oldest) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            let due = t.waiting.map(|_| Timestamp::now()).or(t.next);
            next = match (next, due) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            rotating = rotating.saturating_add(t.rotating);
        }
        if !any {
            return None;
        }
        Some(RobotTokenStatus {
            oldest_token_created: oldest.map(Time),
            next_rotation: cfg.rotation.and(next).map(Time),
            rotating,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(per_minute: u32) -> IntegrationConfig {
        let mut c = crate::config::test_config("openshift", "");
        c.rotation = Some(crate::config::RotationConfig {
            interval: Duration::from_secs(60),
            grace: Duration::from_secs(1),
            per_minute,
        });
        c
    }

    fn waiting(r: &Rotations, c: &IntegrationConfig, ns: &str, created: &str) {
        r.report(
            ns,
            NsTokens {
                integration: c.id.clone(),
                oldest: Some(created.parse().unwrap()),
                rotating: 0,
                waiting: Some(created.parse().unwrap()),
                next: None,
            },
        );
    }

    #[test]
    fn permits_go_to_the_oldest_tokens_first_within_the_budget() {
        let r = Rotations::default();
        let c = cfg(2);
        waiting(&r, &c, "young", "2026-03-01T00:00:00Z");
        waiting(&r, &c, "old", "2026-01-01T00:00:00Z");
        waiting(&r, &c, "middle", "2026-02-01T00:00:00Z");
        // Two permits this minute: "young" is third in line.
        assert!(!r.permit(&c, "young"));
        assert!(r.permit(&c, "middle"));
        assert!(r.permit(&c, "old"));
        // The budget is spent, whoever asks.
        assert!(!r.permit(&c, "young"));
        assert_eq!(r.retry_in(&c), Duration::from_secs(30));
    }

    #[test]
    fn without_rotation_there_is_no_permit_and_no_next_rotation() {
        let r = Rotations::default();
        let mut c = cfg(5);
        waiting(&r, &c, "a", "2026-01-01T00:00:00Z");
        c.rotation = None;
        assert!(!r.permit(&c, "a"));
        let status = r.status(&c).unwrap();
        assert_eq!(
            status.oldest_token_created.map(|t| t.0.to_string()),
            Some("2026-01-01T00:00:00Z".to_owned())
        );
        assert_eq!(status.next_rotation, None);
    }

    #[test]
    fn switches_are_remembered_until_forgotten() {
        let r = Rotations::default();
        let t: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        r.remember_switch("ns", "builder", Some(t));
        // A later report of the same grace period keeps the first instant.
        r.remember_switch("ns", "builder", Some(Timestamp::now()));
        assert_eq!(r.switched_at("ns", "builder"), Some(t));
        r.remember_switch("ns", "builder", None);
        assert_eq!(r.switched_at("ns", "builder"), None);
        r.remember_switch("ns", "builder", Some(t));
        r.forget("ns");
        assert_eq!(r.switched_at("ns", "builder"), None);
    }
}
