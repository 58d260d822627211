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

impl LeaseSettings {
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

/// One try to acquire or renew.
async fn try_acquire_or_renew(api: &Api<Lease>, s: &LeaseSettings) -> Result<Attempt, kube::Error> {
    let duration_secs = i32::try_from(s.lease_duration.as_secs()).unwrap_or(i32::MAX);
    let Some(mut lease) = api.get_opt(&s.name).await? else {
        let lease = Lease {
            metadata: kube::api::ObjectMeta {
                name: Some(s.name.clone()),
                namespace: Some(s.namespace.clone()),
                ..Default::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(s.identity.clone()),
                lease_duration_seconds: Some(duration_secs),
                acquire_time: Some(now()),
                renew_time: Some(now()),
                lease_transitions: Some(0),
                ..Default::default()
            }),
        };
        return match api.create(&PostParams::default(), &lease).await {
            Ok(_) => Ok(Attempt::Leading),
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(Attempt::Following),
            Err(e) => Err(e),
        };
    };
    let spec = lease.spec.clone().unwrap_or_default();
    let holder = spec.holder_identity.clone().unwrap_or_default();
    let held_by_me = holder == s.identity;
    let expired = match (&spec.renew_time, spec.lease_duration_seconds) {
        (Some(MicroTime(renewed)), Some(secs)) => {
            Timestamp::now().as_millisecond() > renewed.as_millisecond() + i64::from(secs) * 1000
        }
        _ => true,
    };
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
    lease.spec = Some(new_spec);
    // The resourceVersion read above is the precondition: a concurrent
    // writer makes this a 409 and we stay a follower.
    match api.replace(&s.name, &PostParams::default(), &lease).await {
        Ok(_) => Ok(Attempt::Leading),
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(Attempt::Following),
        Err(e) => Err(e),
    }
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

/// Campaigns until `shutdown`: publishes `true` while this replica leads.
/// On shutdown it steps down (publishes `false`) and releases the Lease.
pub async fn campaign(
    client: Client,
    s: LeaseSettings,
    leading: watch::Sender<bool>,
    mut shutdown: watch::Receiver<bool>,
) {
    let api: Api<Lease> = Api::namespaced(client, &s.namespace);
    let mut last_renewal: Option<tokio::time::Instant> = None;
    loop {
        if *shutdown.borrow() {
            break;
        }
        match try_acquire_or_renew(&api, &s).await {
            Ok(Attempt::Leading) => {
                if !*leading.borrow() {
                    tracing::info!(identity = %s.identity, "became the leader");
                }
                last_renewal = Some(tokio::time::Instant::now());
                leading.send_replace(true);
            }
            Ok(Attempt::Following) => {
                if *leading.borrow() {
                    tracing::warn!(identity = %s.identity, "lost the lease");
                }
                last_renewal = None;
                leading.send_replace(false);
            }
            Err(e) => {
                tracing::debug!(error = %e, "lease attempt failed");
                if last_renewal.is_some_and(|t| t.elapsed() > s.renew_deadline) {
                    tracing::warn!(identity = %s.identity, "could not renew the lease in time; stepping down");
                    last_renewal = None;
                    leading.send_replace(false);
                }
            }
        }
        tokio::select! {
            () = tokio::time::sleep(s.retry_period) => {}
            _ = shutdown.changed() => {}
        }
    }
    let was_leading = *leading.borrow();
    leading.send_replace(false);
    if was_leading {
        release(&api, &s).await;
    }
}
