//! The QuayIntegration's status: its conditions from the token check and
//! the namespaces' outcomes, and the Events a change of them deserves.

use super::count_of;
use crate::config::IntegrationId;
use crate::crd::{QuayIntegrationStatus, RobotTokenStatus, TeamSyncStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

/// The last outcome of a namespace.
#[derive(Debug, Clone, PartialEq)]
pub enum NsState {
    /// Bridged without error.
    Managed,
    /// The last reconcile failed.
    Failing(String),
    /// Left alone because of a conflict (several integrations, a foreign
    /// organization, another cluster with the same clusterID).
    Conflict(String),
}

/// A namespace's outcome and which integration it belongs to.
#[derive(Debug, Clone, PartialEq)]
pub struct NsOutcome {
    /// The integrations concerned (several for a conflict between them).
    pub integrations: Vec<IntegrationId>,
    /// What happened.
    pub state: NsState,
}

/// The result of checking a token against Quay.
/// What checking the token against Quay found.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenCheck {
    /// See the status conditions.
    pub creds_ok: bool,
    /// See the status conditions.
    pub creds_reason: &'static str,
    /// See the status conditions.
    pub creds_msg: String,
    /// See the status conditions.
    pub reachable: bool,
    /// See the status conditions.
    pub reach_reason: &'static str,
    /// See the status conditions.
    pub reach_msg: String,
    /// Quay answered the token as dead (`CredentialsRejected`).
    pub rejected: bool,
}

impl TokenCheck {
    /// Quay does not answer: the token was not checked.
    pub fn quay_down(message: String) -> Self {
        Self {
            creds_ok: true,
            creds_reason: "Unknown",
            creds_msg: "Quay is unavailable; the token was not checked".into(),
            reachable: false,
            reach_reason: "Unavailable",
            reach_msg: message,
            rejected: false,
        }
    }

    /// No token to check (`SecretMissing`) or no client to check it with
    /// (`ClientError`).
    pub fn unusable(reason: &'static str, message: String) -> Self {
        Self {
            creds_ok: false,
            creds_reason: reason,
            reach_msg: if reason == "SecretMissing" {
                "no usable token".into()
            } else {
                message.clone()
            },
            creds_msg: message,
            reachable: false,
            reach_reason: if reason == "SecretMissing" {
                "Unknown"
            } else {
                reason
            },
            rejected: false,
        }
    }

    /// Quay answered, and this is what it said of the credentials.
    pub fn answered(ok: bool, reason: &'static str, message: String, quay_url: &str) -> Self {
        Self {
            creds_ok: ok,
            creds_reason: reason,
            creds_msg: message,
            reachable: true,
            reach_reason: "Answering",
            reach_msg: format!("Quay at {quay_url} answers"),
            rejected: false,
        }
    }

    /// The host answers, but not as Quay's API.
    pub fn not_quay(quay_url: &str, error: &str) -> Self {
        Self {
            creds_ok: true,
            creds_reason: "Unknown",
            creds_msg: "the host is not a Quay API; the token was not checked".into(),
            reachable: false,
            reach_reason: "NotQuay",
            reach_msg: format!(
                "{quay_url} answers, but not as a Quay API (is quayHostname right?): {error}"
            ),
            rejected: false,
        }
    }
}

pub fn condition(
    kind: &str,
    ok: bool,
    reason: &str,
    message: String,
    generation: Option<i64>,
    previous: &[Condition],
) -> Condition {
    let status = if ok { "True" } else { "False" };
    let last = previous
        .iter()
        .find(|c| c.type_ == kind && c.status == status)
        .map(|c| c.last_transition_time.clone());
    Condition {
        type_: kind.into(),
        status: status.into(),
        reason: reason.into(),
        message,
        observed_generation: generation,
        last_transition_time: last.unwrap_or_else(|| Time(jiff::Timestamp::now())),
    }
}

/// The status of an integration whose spec is invalid: `Ready` carries the
/// reason; every other check is moot.
pub fn invalid(
    reason: &str,
    generation: Option<i64>,
    previous: &[Condition],
) -> QuayIntegrationStatus {
    QuayIntegrationStatus {
        conditions: [
            ("Ready", reason.to_owned()),
            ("CredentialsValid", "the spec is invalid".to_owned()),
            ("QuayReachable", "the spec is invalid".to_owned()),
            ("Conflict", "the spec is invalid".to_owned()),
        ]
        .into_iter()
        .map(|(kind, message)| condition(kind, false, "InvalidSpec", message, generation, previous))
        .collect(),
        observed_generation: generation,
        managed_namespaces: 0,
        failing_namespaces: 0,
        last_error: Some(reason.to_owned()),
        team_sync: None,
        escaped_builds: 0,
        robot_tokens: None,
    }
}

/// What the status reports besides conditions and namespace counts.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Extras {
    /// Team sync's counts, when on.
    pub team_sync: Option<TeamSyncStatus>,
    /// Builds that escaped the webhook.
    pub escaped_builds: u32,
    /// Robot tokens' ages and the next rotation.
    pub robot_tokens: Option<RobotTokenStatus>,
}

/// How many of the conflicts the status names.
const CONFLICTS_NAMED: usize = 5;

/// The namespaces' outcomes, counted: what the status reports of them.
/// Counted where they are kept, without a copy of them all (10,000
/// namespaces' outcomes are megabytes).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Counts {
    managed: usize,
    failing: usize,
    /// The first failing namespace (by name) and its error.
    first_failing: Option<String>,
    /// The first conflicts (by name), as `namespace: message`.
    conflicts: Vec<String>,
}

impl Counts {
    /// Counts `(namespace, outcome)` pairs, given sorted by namespace.
    pub fn of<'a>(outcomes: impl IntoIterator<Item = (&'a str, &'a NsOutcome)>) -> Self {
        let mut c = Counts::default();
        for (n, o) in outcomes {
            match &o.state {
                NsState::Managed => c.managed += 1,
                NsState::Failing(m) => {
                    c.failing += 1;
                    if c.first_failing.is_none() {
                        c.first_failing = Some(format!("{n}: {m}"));
                    }
                }
                NsState::Conflict(m) => {
                    if c.conflicts.len() < CONFLICTS_NAMED {
                        c.conflicts.push(format!("{n}: {m}"));
                    }
                }
            }
        }
        c
    }

    fn last_error(&self) -> Option<String> {
        self.first_failing.clone()
    }
}

/// `Ready`'s message: what is bridged, or the first thing in the way.
fn ready_message(check: &TokenCheck, counts: &Counts, quay_url: &str, ready: bool) -> String {
    if ready {
        format!(
            "{} bridged to {quay_url}",
            count_of(counts.managed, "namespace", "namespaces")
        )
    } else if !check.creds_ok {
        check.creds_msg.clone()
    } else if !check.reachable {
        check.reach_msg.clone()
    } else {
        format!(
            "{} failing; last error: {}",
            count_of(counts.failing, "namespace", "namespaces"),
            counts.last_error().unwrap_or_default()
        )
    }
}

/// The status of a valid integration from its token check and its
/// namespaces' outcomes.
pub fn status(
    check: &TokenCheck,
    counts: &Counts,
    quay_url: &str,
    generation: Option<i64>,
    previous: &[Condition],
    extras: Extras,
) -> QuayIntegrationStatus {
    let ready = check.creds_ok && check.reachable && counts.failing == 0;
    let cond = |kind: &str, ok: bool, reason: &str, message: String| {
        condition(kind, ok, reason, message, generation, previous)
    };
    let (conflict_reason, conflict_msg) = if counts.conflicts.is_empty() {
        ("NoConflict", "no conflicts".to_owned())
    } else {
        ("NamespacesInConflict", counts.conflicts.join("; "))
    };
    let (rejected_reason, rejected_msg) = if check.rejected {
        ("TokenRejected", check.creds_msg.clone())
    } else {
        (
            "NotRejected",
            "Quay has not refused the credentials".to_owned(),
        )
    };
    QuayIntegrationStatus {
        conditions: vec![
            cond(
                "Ready",
                ready,
                if ready { "Converged" } else { "NotReady" },
                ready_message(check, counts, quay_url, ready),
            ),
            cond(
                "CredentialsValid",
                check.creds_ok,
                check.creds_reason,
                check.creds_msg.clone(),
            ),
            cond(
                "QuayReachable",
                check.reachable,
                check.reach_reason,
                check.reach_msg.clone(),
            ),
            cond(
                "Conflict",
                !counts.conflicts.is_empty(),
                conflict_reason,
                conflict_msg,
            ),
            cond(
                "CredentialsRejected",
                check.rejected,
                rejected_reason,
                rejected_msg,
            ),
        ],
        observed_generation: generation,
        managed_namespaces: u32::try_from(counts.managed).unwrap_or(u32::MAX),
        failing_namespaces: u32::try_from(counts.failing).unwrap_or(u32::MAX),
        last_error: counts.last_error(),
        team_sync: extras.team_sync,
        escaped_builds: extras.escaped_builds,
        robot_tokens: extras.robot_tokens,
    }
}

/// The Events a status change deserves: a Warning when a check starts
/// failing or fails for a new reason, a Normal `Ready` when the integration
/// becomes ready again after it was not. One Event per reason.
pub fn transition_events(
    previous: &[Condition],
    current: &[Condition],
) -> Vec<(bool, String, String)> {
    let mut events: Vec<(bool, String, String)> = Vec::new();
    for c in current {
        let before = previous.iter().find(|p| p.type_ == c.type_);
        let warn = c.status == "False"
            && c.type_ != "Conflict"
            && c.reason != "Unknown"
            && before.is_none_or(|p| p.status != "False" || p.reason != c.reason);
        // Ready=False repeats what the failing check says; it speaks only
        // when nothing else does (namespaces failing, an invalid spec).
        if warn && !events.iter().any(|(_, r, _)| *r == c.reason) {
            events.push((true, c.reason.clone(), c.message.clone()));
        }
        // Ready, the first time and after any other state: an admin's
        // `oc describe` shows when the integration started to work.
        if c.type_ == "Ready" && c.status == "True" && before.is_none_or(|p| p.status != "True") {
            events.push((false, "Ready".into(), c.message.clone()));
        }
    }
    // Ready's own NotReady is noise when a specific check explains it.
    if events.len() > 1 {
        events.retain(|(w, r, _)| !(*w && r == "NotReady"));
    }
    events
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ApiGroup, IntegrationId};

    fn check(creds_ok: bool, reachable: bool) -> TokenCheck {
        TokenCheck {
            creds_ok,
            creds_reason: if creds_ok {
                "TokenAccepted"
            } else {
                "TokenRejected"
            },
            creds_msg: "creds".into(),
            reachable,
            reach_reason: if reachable {
                "Answering"
            } else {
                "Unavailable"
            },
            reach_msg: "reach".into(),
            rejected: false,
        }
    }

    fn outcome(state: NsState) -> NsOutcome {
        NsOutcome {
            integrations: vec![IntegrationId {
                group: ApiGroup::Current,
                name: "q".into(),
            }],
            state,
        }
    }

    fn counted(outcomes: &[(String, NsOutcome)]) -> Counts {
        Counts::of(outcomes.iter().map(|(n, o)| (n.as_str(), o)))
    }

    #[test]
    fn only_the_first_conflicts_are_named_and_the_first_failure_reported() {
        let mut outcomes: Vec<(String, NsOutcome)> = (0..8)
            .map(|i| (format!("c{i}"), outcome(NsState::Conflict("x".into()))))
            .collect();
        outcomes.push(("f1".into(), outcome(NsState::Failing("one".into()))));
        outcomes.push(("f2".into(), outcome(NsState::Failing("two".into()))));
        let c = counted(&outcomes);
        assert_eq!(c.conflicts.len(), CONFLICTS_NAMED);
        assert_eq!(c.conflicts[0], "c0: x");
        assert_eq!((c.failing, c.last_error().as_deref()), (2, Some("f1: one")));
    }

    #[test]
    fn counts_read_as_english() {
        assert_eq!(count_of(0, "namespace", "namespaces"), "0 namespaces");
        assert_eq!(count_of(1, "namespace", "namespaces"), "1 namespace");
        assert_eq!(count_of(2, "repository", "repositories"), "2 repositories");
    }

    #[test]
    fn the_status_counts_namespaces_and_names_what_fails() {
        let outcomes = vec![
            ("a".to_owned(), outcome(NsState::Managed)),
            ("b".to_owned(), outcome(NsState::Managed)),
            ("c".to_owned(), outcome(NsState::Failing("boom".into()))),
            ("d".to_owned(), outcome(NsState::Conflict("two".into()))),
        ];
        let s = status(
            &check(true, true),
            &counted(&outcomes),
            "https://q",
            Some(3),
            &[],
            Extras {
                escaped_builds: 2,
                ..Extras::default()
            },
        );
        assert_eq!((s.managed_namespaces, s.failing_namespaces), (2, 1));
        assert_eq!(s.escaped_builds, 2);
        assert_eq!(s.last_error.as_deref(), Some("c: boom"));
        let ready = &s.conditions[0];
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_str()),
            ("False", "NotReady")
        );
        assert!(
            ready.message.contains("1 namespace failing"),
            "{}",
            ready.message
        );
        assert_eq!(s.conditions[3].reason, "NamespacesInConflict");
        let ok = status(
            &check(true, true),
            &counted(&outcomes[..2]),
            "https://q",
            Some(3),
            &[],
            Extras::default(),
        );
        assert_eq!(
            ok.conditions[0].message,
            "2 namespaces bridged to https://q"
        );
        let rejected = status(
            &check(false, true),
            &Counts::default(),
            "https://q",
            None,
            &[],
            Extras::default(),
        );
        assert_eq!(rejected.conditions[0].message, "creds");
        assert_eq!(rejected.conditions[1].reason, "TokenRejected");
        let down = status(
            &check(true, false),
            &Counts::default(),
            "https://q",
            None,
            &[],
            Extras::default(),
        );
        assert_eq!(down.conditions[0].message, "reach");
    }

    #[test]
    fn an_invalid_spec_fails_every_condition_with_its_reason() {
        let s = invalid("clusterID is empty", Some(2), &[]);
        assert!(
            s.conditions
                .iter()
                .all(|c| c.status == "False" && c.reason == "InvalidSpec")
        );
        assert_eq!(s.conditions[0].message, "clusterID is empty");
        assert_eq!(s.observed_generation, Some(2));
    }
}
