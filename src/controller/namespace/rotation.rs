//! The namespace's robots per service account (`plan::rotation`), with
//! the cluster-wide permit a rotation waits for, what rotation remembers
//! between reconciles, and its Events.

use super::Scope;
use crate::controller::context::rotations::NsTokens;
use crate::plan::names;
use crate::plan::namespace::{ObservedSecret, QuayView, robot_in_secret};
use crate::plan::rotation::{RotationInput, SaPlan, SaRobots, plan_sa, slots};
use jiff::Timestamp;
use std::collections::BTreeMap;
use std::time::Duration;

/// Decides each service account's robots; when a rotation is due and the
/// rate allows it, the plan starts it.
pub(super) fn robot_plans(
    s: &Scope<'_>,
    view: &QuayView,
    secrets: &BTreeMap<String, ObservedSecret>,
) -> Vec<SaPlan> {
    let now = Timestamp::now();
    let plan_all = |permit: bool| -> Vec<SaPlan> {
        s.cfg
            .service_accounts
            .iter()
            .map(|(sa, _)| {
                let slot_names = slots(sa);
                let robots = SaRobots {
                    sa: sa.clone(),
                    robots: view
                        .robots
                        .iter()
                        .filter(|r| slot_names.contains(&r.short))
                        .map(|r| (r.short.clone(), r.created))
                        .collect(),
                    in_secret: robot_in_secret(
                        s.cfg,
                        s.org,
                        sa,
                        &view.robots,
                        secrets.get(&names::secret_name(sa, &s.cfg.cluster_id)),
                    ),
                };
                plan_sa(
                    &robots,
                    &RotationInput {
                        now,
                        policy: s.cfg.rotation.as_ref(),
                        switched_at: s.ctx.rotations.switched_at(&s.name, sa),
                        permit,
                    },
                )
            })
            .collect()
    };
    let plans = plan_all(false);
    let waiting = plans
        .iter()
        .filter(|p| p.waiting)
        .filter_map(|p| p.token_created)
        .min();
    report_tokens(s, &plans, waiting);
    if waiting.is_none() || !s.ctx.rotations.permit(s.cfg, &s.name) {
        return plans;
    }
    let plans = plan_all(true);
    report_tokens(s, &plans, None);
    plans
}

fn report_tokens(s: &Scope<'_>, plans: &[SaPlan], waiting: Option<Timestamp>) {
    s.ctx.rotations.report(
        &s.name,
        NsTokens {
            integration: s.cfg.id.clone(),
            oldest: plans.iter().filter_map(|p| p.token_created).min(),
            rotating: u32::try_from(plans.iter().filter(|p| p.grace_since.is_some()).count())
                .unwrap_or(u32::MAX),
            waiting,
            next: plans.iter().filter_map(|p| p.next).min(),
        },
    );
}

/// After the Secrets were written: remembers when each grace period
/// started, counts and reports the rotations started and the replaced
/// robots deleted.
pub(super) async fn record(s: &Scope<'_>, plans: &[SaPlan]) {
    for p in plans {
        s.ctx
            .rotations
            .remember_switch(&s.name, &p.sa, p.grace_since);
    }
    let started: Vec<&str> = plans
        .iter()
        .filter(|p| p.starts)
        .map(|p| p.secret_robot.as_str())
        .collect();
    if !started.is_empty() {
        s.ctx
            .metrics
            .rotations_started(&s.cfg.id.to_string(), started.len() as u64);
        let grace = s
            .cfg
            .rotation
            .map_or(crate::plan::rotation::DEFAULT_GRACE, |p| p.grace);
        let note = format!(
            "robot token rotation: robot(s) {} made and granted like the ones they replace, and the Secrets switched to them; the replaced robots keep working for {} s, then are deleted",
            started
                .iter()
                .map(|r| names::robot_account(s.org, r))
                .collect::<Vec<_>>()
                .join(", "),
            grace.as_secs()
        );
        s.ctx
            .events
            .on_namespace(s.ns, false, "RobotTokensRotated", note, false)
            .await;
    }
    let deleted: Vec<String> = plans
        .iter()
        .flat_map(|p| p.delete.iter())
        .map(|r| names::robot_account(s.org, r))
        .collect();
    if !deleted.is_empty() {
        let note = format!(
            "robot token rotation: replaced robot(s) {} deleted after their grace period",
            deleted.join(", ")
        );
        s.ctx
            .events
            .on_namespace(s.ns, false, "ReplacedRobotsDeleted", note, false)
            .await;
    }
}

/// When the namespace needs a reconcile for rotation's sake: a step due,
/// or a permit to ask for again.
pub(super) fn requeue_in(s: &Scope<'_>, plans: &[SaPlan]) -> Option<Duration> {
    let now = Timestamp::now();
    let step = plans
        .iter()
        .filter_map(|p| p.next)
        .min()
        .map(|t| Duration::try_from(t.duration_since(now)).unwrap_or(Duration::ZERO));
    let permit = plans
        .iter()
        .any(|p| p.waiting)
        .then(|| s.ctx.rotations.retry_in(s.cfg));
    // A little after the instant, so the step is due when it runs.
    [step, permit]
        .into_iter()
        .flatten()
        .min()
        .map(|d| d + Duration::from_millis(100))
}
