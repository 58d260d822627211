//! Which robot each service account uses, and robot-token rotation
//! without an outage.
//!
//! Quay invalidates a regenerated robot token at once, so a rotation never
//! regenerates: each service account has two robots, `<sa>` and `<sa>_2`,
//! used alternately. A rotation makes the other one and grants it like
//! the first (default permission and every repository) before the Secret
//! switches to it; the replaced robot keeps working for the grace period
//! (pods and builds that read the Secret before) and is deleted after.
//! Every step is decided from what Quay and the Secret show, so a
//! rotation interrupted anywhere resumes where it stopped.

use crate::config::RotationConfig;
use jiff::{SignedDuration, Timestamp};
use std::time::Duration;

/// The second robot of service account `x` is `x_2`.
pub const SLOT_SUFFIX: &str = "_2";

/// How long a replaced robot is kept when rotation was turned off in the
/// middle of one.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(24 * 3600);

/// The two robots of a service account.
pub fn slots(sa: &str) -> [String; 2] {
    [sa.to_owned(), format!("{sa}{SLOT_SUFFIX}")]
}

/// The other robot of the service account `sa`.
fn other(sa: &str, robot: &str) -> String {
    let [a, b] = slots(sa);
    if robot == a { b } else { a }
}

/// What was observed of one service account's robots.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SaRobots {
    /// The service account.
    pub sa: String,
    /// Its robots that exist in Quay (of [`slots`]), with when each was
    /// made (`None` when Quay did not say).
    pub robots: Vec<(String, Option<Timestamp>)>,
    /// The robot whose token its Secret holds, when it is one of them.
    pub in_secret: Option<String>,
}

/// The rest of what the decision needs.
#[derive(Debug, Clone, Copy)]
pub struct RotationInput<'a> {
    /// The instant the decision is for (tests pass any).
    pub now: Timestamp,
    /// Rotation, when on.
    pub policy: Option<&'a RotationConfig>,
    /// When this operator first saw the Secret switched away from the
    /// replaced robot (kept in memory: after a restart the grace period
    /// starts again, so it only ever gets longer).
    pub switched_at: Option<Timestamp>,
    /// A rotation may start now (the cluster-wide rate allows it).
    pub permit: bool,
}

/// What to do with one service account's robots.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SaPlan {
    /// The service account.
    pub sa: String,
    /// Robots that must exist and be granted the service account's role.
    pub keep: Vec<String>,
    /// The robot whose token goes into the Secret.
    pub secret_robot: String,
    /// Robots to delete now (a replaced one, its grace period over).
    pub delete: Vec<String>,
    /// A rotation starts in this reconcile.
    pub starts: bool,
    /// A replaced robot waits out its grace period from this instant.
    pub grace_since: Option<Timestamp>,
    /// A rotation is due but waits for the rate limit.
    pub waiting: bool,
    /// When to look at this service account again (a rotation due, a
    /// grace period over).
    pub next: Option<Timestamp>,
    /// When the token the Secret holds (or will hold) was made.
    pub token_created: Option<Timestamp>,
}

fn after(t: Timestamp, d: Duration) -> Timestamp {
    t.checked_add(SignedDuration::from_secs(
        i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
    ))
    .unwrap_or(Timestamp::MAX)
}

/// Decides one service account's robots.
pub fn plan_sa(r: &SaRobots, input: &RotationInput<'_>) -> SaPlan {
    let slot_names = slots(&r.sa);
    let mut present: Vec<&(String, Option<Timestamp>)> = r
        .robots
        .iter()
        .filter(|(n, _)| slot_names.contains(n))
        .collect();
    // Oldest first; a robot of unknown age counts as the newest.
    present.sort_by_key(|(n, c)| (c.unwrap_or(Timestamp::MAX), n.clone()));
    let mut plan = SaPlan {
        sa: r.sa.clone(),
        ..SaPlan::default()
    };
    match present.as_slice() {
        [] => {
            plan.keep = vec![slot_names[0].clone()];
            plan.secret_robot = slot_names[0].clone();
            plan.token_created = Some(input.now);
            plan.next = input.policy.map(|p| after(input.now, p.interval));
        }
        [(robot, created)] => {
            plan.keep = vec![robot.clone()];
            plan.secret_robot = robot.clone();
            plan.token_created = *created;
            if let (Some(p), Some(c)) = (input.policy, created) {
                let due = after(*c, p.interval);
                if input.now < due {
                    plan.next = Some(due);
                } else if input.permit {
                    let new = other(&r.sa, robot);
                    plan.keep.push(new.clone());
                    plan.secret_robot = new;
                    plan.starts = true;
                    plan.token_created = Some(input.now);
                    plan.grace_since = Some(input.now);
                    plan.next = Some(after(input.now, grace(input)));
                } else {
                    plan.waiting = true;
                }
            }
        }
        [(older, _), (newer, newer_created), ..] => {
            // Mid-rotation: the newer one is granted, then the Secret
            // holds it; the older one goes when the grace period is over.
            plan.keep = vec![newer.clone()];
            plan.secret_robot = newer.clone();
            plan.token_created = newer_created.or(Some(input.now));
            let switched = r.in_secret.as_deref() == Some(newer.as_str());
            let since = if switched {
                input.switched_at.unwrap_or(input.now)
            } else {
                input.now
            };
            plan.grace_since = Some(since);
            let over = after(since, grace(input));
            if switched && input.now >= over {
                plan.delete = vec![older.clone()];
                plan.grace_since = None;
                plan.next = input
                    .policy
                    .zip(*newer_created)
                    .map(|(p, c)| after(c, p.interval));
            } else {
                plan.next = Some(over);
            }
        }
    }
    plan
}

fn grace(input: &RotationInput<'_>) -> Duration {
    input.policy.map_or(DEFAULT_GRACE, |p| p.grace)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    const HOUR: Duration = Duration::from_secs(3600);

    fn policy() -> RotationConfig {
        RotationConfig {
            interval: 90 * 24 * HOUR,
            grace: HOUR,
            per_minute: 6,
        }
    }

    fn robots(list: &[(&str, &str)], in_secret: Option<&str>) -> SaRobots {
        SaRobots {
            sa: "builder".into(),
            robots: list
                .iter()
                .map(|(n, c)| ((*n).to_owned(), Some(ts(c))))
                .collect(),
            in_secret: in_secret.map(str::to_owned),
        }
    }

    fn input<'a>(now: &str, p: Option<&'a RotationConfig>, permit: bool) -> RotationInput<'a> {
        RotationInput {
            now: ts(now),
            policy: p,
            switched_at: None,
            permit,
        }
    }

    #[test]
    fn the_names_of_the_two_robots() {
        assert_eq!(slots("builder"), ["builder", "builder_2"]);
        assert_eq!(other("builder", "builder"), "builder_2");
        assert_eq!(other("builder", "builder_2"), "builder");
    }

    #[test]
    fn a_new_namespace_gets_the_first_robot() {
        let p = policy();
        let plan = plan_sa(
            &robots(&[], None),
            &input("2026-01-01T00:00:00Z", Some(&p), false),
        );
        assert_eq!(plan.keep, ["builder"]);
        assert_eq!(plan.secret_robot, "builder");
        assert_eq!(plan.next, Some(ts("2026-04-01T00:00:00Z")));
        assert!(!plan.starts && plan.delete.is_empty());
    }

    #[test]
    fn rotation_off_never_changes_a_robot_however_old() {
        for now in ["2026-01-01T00:00:00Z", "2036-01-01T00:00:00Z"] {
            let plan = plan_sa(
                &robots(&[("builder", "2020-01-01T00:00:00Z")], Some("builder")),
                &input(now, None, true),
            );
            assert_eq!(plan.keep, ["builder"]);
            assert_eq!(plan.secret_robot, "builder");
            assert!(!plan.starts && !plan.waiting && plan.delete.is_empty());
            assert_eq!(plan.next, None);
        }
    }

    #[test]
    fn a_young_token_waits_for_its_due_date() {
        let p = policy();
        let plan = plan_sa(
            &robots(&[("builder", "2026-01-01T00:00:00Z")], Some("builder")),
            &input("2026-03-01T00:00:00Z", Some(&p), true),
        );
        assert_eq!(plan.keep, ["builder"]);
        assert_eq!(plan.next, Some(ts("2026-04-01T00:00:00Z")));
        assert_eq!(plan.token_created, Some(ts("2026-01-01T00:00:00Z")));
    }

    #[test]
    fn a_due_token_waits_for_a_permit_then_the_other_robot_takes_over() {
        let p = policy();
        let r = robots(&[("builder", "2026-01-01T00:00:00Z")], Some("builder"));
        let waiting = plan_sa(&r, &input("2026-04-02T00:00:00Z", Some(&p), false));
        assert!(waiting.waiting && !waiting.starts);
        assert_eq!(waiting.secret_robot, "builder");
        let go = plan_sa(&r, &input("2026-04-02T00:00:00Z", Some(&p), true));
        assert!(go.starts);
        // Both exist and are granted; the Secret moves to the new one.
        assert_eq!(go.keep, ["builder", "builder_2"]);
        assert_eq!(go.secret_robot, "builder_2");
        assert!(go.delete.is_empty());
        assert_eq!(go.next, Some(ts("2026-04-02T01:00:00Z")));
    }

    #[test]
    fn the_replaced_robot_is_deleted_only_after_the_grace_period() {
        let p = policy();
        let r = robots(
            &[
                ("builder", "2026-01-01T00:00:00Z"),
                ("builder_2", "2026-04-02T00:00:00Z"),
            ],
            Some("builder_2"),
        );
        let mut i = input("2026-04-02T00:30:00Z", Some(&p), false);
        i.switched_at = Some(ts("2026-04-02T00:00:00Z"));
        let during = plan_sa(&r, &i);
        assert!(during.delete.is_empty());
        assert_eq!(during.secret_robot, "builder_2");
        assert_eq!(during.next, Some(ts("2026-04-02T01:00:00Z")));
        i.now = ts("2026-04-02T01:00:00Z");
        let over = plan_sa(&r, &i);
        assert_eq!(over.delete, ["builder"]);
        assert_eq!(over.keep, ["builder_2"]);
        // The next rotation is due an interval after the new robot.
        assert_eq!(over.next, Some(ts("2026-07-01T00:00:00Z")));
    }

    #[test]
    fn after_a_restart_the_grace_period_starts_again() {
        let p = policy();
        let r = robots(
            &[
                ("builder", "2026-01-01T00:00:00Z"),
                ("builder_2", "2026-04-02T00:00:00Z"),
            ],
            Some("builder_2"),
        );
        // Nothing remembered: grace counts from now, never shorter.
        let plan = plan_sa(&r, &input("2026-05-01T00:00:00Z", Some(&p), false));
        assert!(plan.delete.is_empty());
        assert_eq!(plan.grace_since, Some(ts("2026-05-01T00:00:00Z")));
    }

    #[test]
    fn interrupted_before_the_switch_the_rotation_resumes() {
        let p = policy();
        // The new robot was made; the Secret still holds the old one (or
        // is missing): the new one is granted and the Secret switches.
        for in_secret in [Some("builder"), None] {
            let r = robots(
                &[
                    ("builder", "2026-01-01T00:00:00Z"),
                    ("builder_2", "2026-04-02T00:00:00Z"),
                ],
                in_secret,
            );
            let plan = plan_sa(&r, &input("2026-04-02T00:05:00Z", Some(&p), false));
            assert_eq!(plan.keep, ["builder_2"]);
            assert_eq!(plan.secret_robot, "builder_2");
            assert!(plan.delete.is_empty(), "never before the switch");
            assert_eq!(plan.grace_since, Some(ts("2026-04-02T00:05:00Z")));
        }
    }

    #[test]
    fn the_second_rotation_goes_back_to_the_first_name() {
        let p = policy();
        let r = robots(&[("builder_2", "2026-04-02T00:00:00Z")], Some("builder_2"));
        let plan = plan_sa(&r, &input("2026-07-02T00:00:00Z", Some(&p), true));
        assert_eq!(plan.keep, ["builder_2", "builder"]);
        assert_eq!(plan.secret_robot, "builder");
    }

    #[test]
    fn rotation_turned_off_mid_rotation_still_finishes_it() {
        let r = robots(
            &[
                ("builder", "2026-01-01T00:00:00Z"),
                ("builder_2", "2026-04-02T00:00:00Z"),
            ],
            Some("builder_2"),
        );
        let mut i = input("2026-04-03T00:00:01Z", None, false);
        i.switched_at = Some(ts("2026-04-02T00:00:00Z"));
        let plan = plan_sa(&r, &i);
        assert_eq!(plan.delete, ["builder"]);
        assert_eq!(plan.next, None);
    }

    #[test]
    fn robots_of_other_names_are_not_this_service_accounts() {
        let mut r = robots(&[("builder", "2026-01-01T00:00:00Z")], Some("builder"));
        r.robots
            .push(("builder_3".into(), Some(ts("2026-02-01T00:00:00Z"))));
        let plan = plan_sa(&r, &input("2026-02-02T00:00:00Z", None, false));
        assert_eq!(plan.keep, ["builder"]);
        assert!(plan.delete.is_empty());
    }
}
