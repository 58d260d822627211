//! Leader election on a `coordination.k8s.io/v1` Lease, with client-go's
//! semantics: acquire when the Lease is free or expired, renew with a
//! resourceVersion precondition (a lost race is a 409), step down when a
//! renewal cannot succeed within the renew deadline, release on shutdown
//! so a successor takes over at once.

use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{Api, PostParams};
use kube::{Client, ResourceExt};
use std::time::Duration;
use tokio::sync::watch;

/// Election settings.
#[derive(Debug, Clone)]
pub struct LeaseSettings {
    /// Lease namespace (the operator's).
    pub namespace: String,
    /// Lease name.
    pub name: String,
    /// This replica's identity (its pod name).
    pub identity: String,
    /// How long a Lease is valid without renewal.
    pub lease_duration: Duration,
    /// How long the leader keeps trying to renew before it steps down.
    pub renew_deadline: Duration,
    /// Pause between attempts.
    pub retry_period: Duration,
}

/// Why election settings cannot work.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SettingsError {
    /// A duration is zero.
    #[error("{0} must be greater than 0")]
    Zero(&'static str),
    /// The durations are out of order.
    #[error(
        "leader election needs --retry-period-seconds ({retry}) < --renew-deadline-seconds ({renew}) < --lease-duration-seconds ({lease}): a leader must give up before another replica may take the lease"
    )]
    Order {
        /// Retry period, seconds.
        retry: f64,
        /// Renew deadline, seconds.
        renew: f64,
        /// Lease duration, seconds.
        lease: f64,
    },
}

impl LeaseSettings {
    /// Checks the durations: all > 0, retry < renew deadline < lease.
    pub fn validate(&self) -> Result<(), SettingsError> {
        for (flag, d) in [
            ("--lease-duration-seconds", self.lease_duration),
            ("--renew-deadline-seconds", self.renew_deadline),
            ("--retry-period-seconds", self.retry_period),
        ] {
            if d.is_zero() {
                return Err(SettingsError::Zero(flag));
            }
        }
        if !(self.retry_period < self.renew_deadline && self.renew_deadline < self.lease_duration) {
            return Err(SettingsError::Order {
                retry: self.retry_period.as_secs_f64(),
                renew: self.renew_deadline.as_secs_f64(),
                lease: self.lease_duration.as_secs_f64(),
            });
        }
        Ok(())
    }

    /// client-go's defaults: 15 s lease, 10 s renew deadline, 2 s retry.
    pub fn new(namespace: &str, identity: &str) -> Self {
        Self {
            namespace: namespace.into(),
            name: "quay-bridge-operator".into(),
            identity: identity.into(),
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }
}

fn now() -> MicroTime {
    MicroTime(Timestamp::now())
}

enum Attempt {
    Leading,
    Following,
}

/// The part of a Lease record whose change means its holder is alive.
type Record = (
    Option<String>,
    Option<MicroTime>,
    Option<MicroTime>,
    Option<i32>,
    Option<i32>,
);

fn record(spec: &LeaseSpec) -> Record {
    (
        spec.holder_identity.clone(),
        spec.renew_time.clone(),
        spec.acquire_time.clone(),
        spec.lease_transitions,
        spec.lease_duration_seconds,
    )
}

/// What this replica last saw of the Lease, and when by its own clock.
/// Expiry is judged as client-go judges it: a Lease is expired when its
/// record has not changed for its duration on this replica's monotonic
/// clock; the remote `renewTime` is never compared with the local time
/// (replica clocks differ).
#[derive(Default)]
pub struct Observed {
    seen: Option<(Record, tokio::time::Instant)>,
}

impl Observed {
    /// Notes the record read now; returns whether it has gone unchanged
    /// for `duration` (expired).
    fn observe(&mut self, spec: &LeaseSpec, duration: Duration) -> bool {
        let current = record(spec);
        match &self.seen {
            Some((r, _)) if *r == current => {}
            _ => self.seen = Some((current, tokio::time::Instant::now())),
        }
        self.seen
            .as_ref()
            .is_some_and(|(_, at)| at.elapsed() > duration)
    }

    fn wrote(&mut self, spec: &LeaseSpec) {
        self.seen = Some((record(spec), tokio::time::Instant::now()));
    }
}

/// One try to acquire or renew.
async fn try_acquire_or_renew(
    api: &Api<Lease>,
    s: &LeaseSettings,
    observed: &mut Observed,
) -> Result<Attempt, kube::Error> {
    let duration_secs = i32::try_from(s.lease_duration.as_secs()).unwrap_or(i32::MAX);
    let Some(mut lease) = api.get_opt(&s.name).await? else {
        let spec = LeaseSpec {
            holder_identity: Some(s.identity.clone()),
            lease_duration_seconds: Some(duration_secs),
            acquire_time: Some(now()),
            renew_time: Some(now()),
            lease_transitions: Some(0),
            ..Default::default()
        };
        let lease = Lease {
            metadata: kube::api::ObjectMeta {
                name: Some(s.name.clone()),
                namespace: Some(s.namespace.clone()),
                ..Default::default()
            },
            spec: Some(spec.clone()),
        };
        return match api.create(&PostParams::default(), &lease).await {
            Ok(_) => {
                observed.wrote(&spec);
                Ok(Attempt::Leading)
            }
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(Attempt::Following),
            Err(e) => Err(e),
        };
    };
    let spec = lease.spec.clone().unwrap_or_default();
    let holder = spec.holder_identity.clone().unwrap_or_default();
    let held_by_me = holder == s.identity;
    // The holder's own duration, else ours.
    let duration = spec
        .lease_duration_seconds
        .and_then(|d| u64::try_from(d).ok())
        .map_or(s.lease_duration, Duration::from_secs);
    let expired = observed.observe(&spec, duration);
    if !held_by_me && !holder.is_empty() && !expired {
        return Ok(Attempt::Following);
    }
    let mut new_spec = spec.clone();
    if !held_by_me {
        new_spec.holder_identity = Some(s.identity.clone());
        new_spec.acquire_time = Some(now());
        new_spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
    }
    new_spec.lease_duration_seconds = Some(duration_secs);
    new_spec.renew_time = Some(now());
    lease.spec = Some(new_spec.clone());
    // The resourceVersion read above is the precondition: a concurrent
    // writer makes this a 409 and we stay a follower.
    match api.replace(&s.name, &PostParams::default(), &lease).await {
        Ok(_) => {
            observed.wrote(&new_spec);
            Ok(Attempt::Leading)
        }
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(Attempt::Following),
        Err(e) => Err(e),
    }
}

/// Why an attempt failed.
enum AttemptError {
    /// The apiserver answered with an error, or the connection failed.
    Kube(kube::Error),
    /// No answer within what was left of the renew deadline (a hung
    /// connection).
    Deadline,
}

/// The unique identity of a replica without a pod name: its host name and
/// a random suffix, so two such replicas never share one.
pub fn default_identity() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "quay-bridge-operator".into());
    format!(
        "{host}-{}",
        bridge_common::random::random_token(8).to_ascii_lowercase()
    )
}

/// Gives the Lease up (if still ours) so a successor need not wait.
async fn release(api: &Api<Lease>, s: &LeaseSettings) {
    let Ok(Some(mut lease)) = api.get_opt(&s.name).await else {
        return;
    };
    if lease
        .spec
        .as_ref()
        .and_then(|sp| sp.holder_identity.as_deref())
        != Some(s.identity.as_str())
    {
        return;
    }
    if let Some(spec) = lease.spec.as_mut() {
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        spec.renew_time = Some(now());
    }
    match api.replace(&s.name, &PostParams::default(), &lease).await {
        Ok(l) => tracing::info!(lease = %l.name_any(), "leadership released"),
        Err(e) => tracing::warn!(error = %e, "could not release the lease; it expires by itself"),
    }
}

/// Why a campaign cannot go on (the Lease's namespace does not exist, RBAC
/// refuses): errors that retrying will not fix by itself.
fn blocking(e: &kube::Error, s: &LeaseSettings) -> Option<String> {
    match e {
        kube::Error::Api(st) if matches!(st.code, 401 | 403 | 404 | 422) => Some(format!(
            "cannot campaign for leadership on Lease {}/{}: {} {}: {}",
            s.namespace, s.name, st.code, st.reason, st.message
        )),
        _ => None,
    }
}

/// How a campaign is going, for `/readyz`, metrics and logs.
pub trait CampaignReport: Send + Sync {
    /// `Some(reason)` while the replica cannot campaign; `None` again once
    /// it can.
    fn blocked(&self, reason: Option<String>);
}

/// Campaigns until `shutdown`: publishes `true` while this replica leads.
/// On shutdown it steps down (publishes `false`) and releases the Lease.
pub async fn campaign(
    client: Client,
    s: LeaseSettings,
    leading: watch::Sender<bool>,
    mut shutdown: watch::Receiver<bool>,
    report: std::sync::Arc<dyn CampaignReport>,
) {
    let api: Api<Lease> = Api::namespaced(client, &s.namespace);
    let mut last_renewal: Option<tokio::time::Instant> = None;
    let mut observed = Observed::default();
    let mut blocked: Option<String> = None;
    loop {
        if *shutdown.borrow() {
            break;
        }
        // Every Lease call is bounded by what is left of the renew
        // deadline: a hung connection never keeps a leader leading.
        let budget = last_renewal.map_or(s.renew_deadline, |t| {
            s.renew_deadline.saturating_sub(t.elapsed())
        });
        let attempt =
            match tokio::time::timeout(budget, try_acquire_or_renew(&api, &s, &mut observed)).await
            {
                Ok(result) => result.map_err(AttemptError::Kube),
                Err(_) => Err(AttemptError::Deadline),
            };
        let problem = match &attempt {
            Err(AttemptError::Kube(e)) => blocking(e, &s),
            _ => None,
        };
        if problem != blocked {
            match &problem {
                Some(reason) => {
                    tracing::warn!(identity = %s.identity, %reason, "this replica cannot campaign for leadership: nothing is reconciled by it")
                }
                None => tracing::info!(identity = %s.identity, "campaigning for leadership again"),
            }
            report.blocked(problem.clone());
            blocked = problem;
        }
        last_renewal = follow(attempt, last_renewal, &leading, &s);
        tokio::select! {
            () = tokio::time::sleep(s.retry_period) => {}
            _ = shutdown.changed() => {}
        }
    }
    let was_leading = *leading.borrow();
    leading.send_replace(false);
    if was_leading
        && tokio::time::timeout(s.retry_period, release(&api, &s))
            .await
            .is_err()
    {
        tracing::warn!("could not release the lease in time; it expires by itself");
    }
}

/// Publishes what an attempt means for leadership; the new last renewal.
fn follow(
    attempt: Result<Attempt, AttemptError>,
    last_renewal: Option<tokio::time::Instant>,
    leading: &watch::Sender<bool>,
    s: &LeaseSettings,
) -> Option<tokio::time::Instant> {
    match attempt {
        Ok(Attempt::Leading) => {
            if !*leading.borrow() {
                tracing::info!(identity = %s.identity, "became the leader");
            }
            leading.send_replace(true);
            Some(tokio::time::Instant::now())
        }
        Ok(Attempt::Following) => {
            if *leading.borrow() {
                tracing::warn!(identity = %s.identity, "lost the lease");
            }
            leading.send_replace(false);
            None
        }
        Err(e) => {
            match e {
                AttemptError::Kube(e) => tracing::debug!(error = %e, "lease attempt failed"),
                AttemptError::Deadline => {
                    tracing::warn!(identity = %s.identity, "the lease request got no answer in time");
                }
            }
            if last_renewal.is_some_and(|t| t.elapsed() >= s.renew_deadline) {
                tracing::warn!(identity = %s.identity, "could not renew the lease in time; stepping down");
                leading.send_replace(false);
                return None;
            }
            last_renewal
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_are_checked_and_the_error_names_the_flag() {
        let ok = LeaseSettings::new("ns", "me");
        assert_eq!(ok.validate(), Ok(()));
        let zero = LeaseSettings {
            renew_deadline: Duration::ZERO,
            ..ok.clone()
        };
        assert!(
            zero.validate()
                .unwrap_err()
                .to_string()
                .contains("--renew-deadline-seconds")
        );
        for (lease, renew, retry) in [(10, 10, 2), (15, 20, 2), (15, 10, 10), (15, 10, 12)] {
            let bad = LeaseSettings {
                lease_duration: Duration::from_secs(lease),
                renew_deadline: Duration::from_secs(renew),
                retry_period: Duration::from_secs(retry),
                ..ok.clone()
            };
            let e = bad.validate().unwrap_err().to_string();
            assert!(
                e.contains("--retry-period-seconds") && e.contains("< --lease-duration-seconds"),
                "{e}"
            );
        }
    }

    #[test]
    fn identities_without_a_pod_name_are_unique() {
        let a = default_identity();
        let b = default_identity();
        assert_ne!(a, b);
        assert!(!a.is_empty());
    }

    fn spec(holder: &str, renewed: &str) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(holder.into()),
            renew_time: Some(MicroTime(renewed.parse().unwrap())),
            lease_duration_seconds: Some(15),
            ..Default::default()
        }
    }

    /// A holder whose clock runs far behind (a renewTime hours in the
    /// past) is not expired while it keeps renewing; a holder whose clock
    /// runs ahead is expired once its record stops changing.
    #[tokio::test(start_paused = true)]
    async fn expiry_follows_the_local_clock_not_the_remote_renew_time() {
        let d = Duration::from_secs(15);
        let mut o = Observed::default();
        assert!(!o.observe(&spec("a", "2001-01-01T00:00:00Z"), d));
        tokio::time::advance(Duration::from_secs(10)).await;
        assert!(!o.observe(&spec("a", "2001-01-01T00:00:10Z"), d), "renewed");
        tokio::time::advance(Duration::from_secs(10)).await;
        assert!(!o.observe(&spec("a", "2001-01-01T00:00:20Z"), d), "renewed");
        let mut o = Observed::default();
        let future = spec("b", "2999-01-01T00:00:00Z");
        assert!(!o.observe(&future, d));
        tokio::time::advance(Duration::from_secs(14)).await;
        assert!(!o.observe(&future, d));
        tokio::time::advance(Duration::from_secs(2)).await;
        assert!(
            o.observe(&future, d),
            "unchanged for longer than its duration"
        );
    }
}
