//! The operator's metrics.

use crate::quay::QuayMetrics;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReconcileLabels {
    controller: &'static str,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FailureLabels {
    controller: &'static str,
    category: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct InFlightLabels {
    controller: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NamespaceLabels {
    state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct QuayLabels {
    quay: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct IntegrationLabels {
    integration: String,
}

/// The operator's series (README, "Metrics"). Clones share the same
/// series; one not registered still counts (tests and benches read it).
#[derive(Clone, Debug, Default)]
pub struct Metrics {
    reconciles: Family<ReconcileLabels, Counter>,
    failures: Family<FailureLabels, Counter>,
    leader: Gauge,
    campaign_blocked: Gauge,
    quay_available: Family<QuayLabels, Gauge>,
    in_flight: Family<InFlightLabels, Gauge>,
    queue_depth: Family<InFlightLabels, Gauge>,
    namespaces: Family<NamespaceLabels, Gauge>,
    escaped_builds: Gauge,
    robot_token_age: Family<IntegrationLabels, Gauge>,
    robot_rotations: Family<IntegrationLabels, Counter>,
    /// Requests to Quay by method, endpoint and status class, and their
    /// latency; the client records them.
    pub quay: QuayMetrics,
    /// Admission reviews by outcome and their latency.
    pub webhook: crate::webhook::server::WebhookMetrics,
}

impl Metrics {
    /// Metrics whose every series `/metrics` serves from `registry`.
    pub fn register(registry: &mut prometheus_client::registry::Registry) -> Self {
        let m = Self {
            quay: QuayMetrics::register(registry),
            webhook: crate::webhook::server::WebhookMetrics::register(registry),
            ..Self::default()
        };
        registry.register(
            "reconcile_queue_depth",
            "Objects triggered (by a watch event, a resync or a changed integration) and waiting for their reconcile to start, by controller",
            m.queue_depth.clone(),
        );
        registry.register(
            "reconciles",
            "Reconciles by controller and result",
            m.reconciles.clone(),
        );
        registry.register(
            "reconcile_failures",
            "Failed reconciles by controller and error category",
            m.failures.clone(),
        );
        registry.register(
            "leader",
            "1 while this replica holds the leader Lease and runs the reconcilers",
            m.leader.clone(),
        );
        registry.register(
            "leader_election_blocked",
            "1 while this replica cannot campaign for leadership (Lease namespace missing, RBAC refusing): it reconciles nothing",
            m.campaign_blocked.clone(),
        );
        registry.register(
            "quay_available",
            "0 while calls to a Quay (by host) are paused because it does not answer",
            m.quay_available.clone(),
        );
        registry.register(
            "reconciles_in_flight",
            "Reconciles running now, by controller",
            m.in_flight.clone(),
        );
        registry.register(
            "namespaces",
            "Selected namespaces by last outcome (managed, failing: waiting for a retry, conflict)",
            m.namespaces.clone(),
        );
        registry.register(
            "escaped_builds",
            "Unfinished Builds in bridged namespaces created without the Build webhook's rewrite (the operator was unreachable): they push to the integrated registry",
            m.escaped_builds.clone(),
        );
        registry.register(
            "robot_token_oldest_age_seconds",
            "Age of the oldest robot token in use in the namespaces an integration bridges",
            m.robot_token_age.clone(),
        );
        registry.register(
            "robot_rotations",
            "Robot-token rotations started (one per service account), by integration",
            m.robot_rotations.clone(),
        );
        m
    }

    /// Records the age of an integration's oldest robot token.
    pub fn set_robot_token_age(&self, integration: &str, seconds: i64) {
        self.robot_token_age
            .get_or_create(&IntegrationLabels {
                integration: integration.to_owned(),
            })
            .set(seconds);
    }

    /// The age recorded for an integration's oldest robot token.
    pub fn robot_token_age(&self, integration: &str) -> i64 {
        self.robot_token_age
            .get_or_create(&IntegrationLabels {
                integration: integration.to_owned(),
            })
            .get()
    }

    /// Counts robot-token rotations started.
    pub fn rotations_started(&self, integration: &str, n: u64) {
        self.robot_rotations
            .get_or_create(&IntegrationLabels {
                integration: integration.to_owned(),
            })
            .inc_by(n);
    }

    /// Rotations started for an integration.
    pub fn rotations(&self, integration: &str) -> u64 {
        self.robot_rotations
            .get_or_create(&IntegrationLabels {
                integration: integration.to_owned(),
            })
            .get()
    }

    /// Records how many Builds escaped the webhook now.
    pub fn set_escaped_builds(&self, count: usize) {
        self.escaped_builds
            .set(i64::try_from(count).unwrap_or(i64::MAX));
    }

    /// The `escaped_builds` value.
    pub fn escaped_builds(&self) -> i64 {
        self.escaped_builds.get()
    }

    /// Counts a reconcile as running until the guard is dropped.
    pub fn in_flight(&self, controller: &'static str) -> InFlight {
        let gauge = self
            .in_flight
            .get_or_create(&InFlightLabels { controller })
            .clone();
        gauge.inc();
        InFlight(gauge)
    }

    /// Sets the number of objects waiting for a reconcile.
    pub fn set_queue_depth(&self, controller: &'static str, depth: usize) {
        self.queue_depth
            .get_or_create(&InFlightLabels { controller })
            .set(i64::try_from(depth).unwrap_or(i64::MAX));
    }

    /// The number of objects waiting for a reconcile.
    pub fn queue_depth(&self, controller: &'static str) -> i64 {
        self.queue_depth
            .get_or_create(&InFlightLabels { controller })
            .get()
    }

    /// Namespaces managed, failing and in conflict.
    pub fn namespace_states(&self, managed: i64, failing: i64, conflict: i64) {
        for (state, n) in [
            ("managed", managed),
            ("failing", failing),
            ("conflict", conflict),
        ] {
            self.namespaces
                .get_or_create(&NamespaceLabels { state })
                .set(n);
        }
    }

    /// The `namespaces{state}` value.
    pub fn namespaces_in(&self, state: &'static str) -> i64 {
        self.namespaces
            .get_or_create(&NamespaceLabels { state })
            .get()
    }

    /// Records whether this replica leads.
    pub fn set_leader(&self, leading: bool) {
        self.leader.set(i64::from(leading));
    }

    /// Whether this replica leads (as last reported).
    pub fn is_leader(&self) -> bool {
        self.leader.get() == 1
    }

    /// Records whether this replica cannot campaign.
    pub fn set_campaign_blocked(&self, blocked: bool) {
        self.campaign_blocked.set(i64::from(blocked));
    }

    /// Whether this replica cannot campaign (as last reported).
    pub fn is_campaign_blocked(&self) -> bool {
        self.campaign_blocked.get() == 1
    }

    /// Records whether a Quay answers (labelled by host only).
    pub fn set_quay_available(&self, url: &str, up: bool) {
        self.quay_available
            .get_or_create(&QuayLabels {
                quay: quay_host(url),
            })
            .set(i64::from(up));
    }

    /// The `quay_available` value for a Quay URL (0 until recorded).
    pub fn quay_available(&self, url: &str) -> i64 {
        self.quay_available
            .get_or_create(&QuayLabels {
                quay: quay_host(url),
            })
            .get()
    }

    /// Counts a reconcile.
    pub fn reconciled(&self, controller: &'static str, ok: bool) {
        self.reconciles
            .get_or_create(&ReconcileLabels {
                controller,
                result: if ok { "ok" } else { "error" },
            })
            .inc();
    }

    /// Reconciles of `controller` counted so far, with either result.
    pub fn reconciles(&self, controller: &'static str) -> u64 {
        ["ok", "error"]
            .into_iter()
            .map(|result| {
                self.reconciles
                    .get_or_create(&ReconcileLabels { controller, result })
                    .get()
            })
            .sum()
    }

    /// Counts a failure by category.
    pub fn failed(&self, controller: &'static str, category: crate::controller::error::Category) {
        self.failures
            .get_or_create(&FailureLabels {
                controller,
                category: category.as_str(),
            })
            .inc();
    }
}

/// Decrements `reconciles_in_flight` when the reconcile ends (or is
/// cancelled).
pub struct InFlight(Gauge);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}

fn quay_host(url: &str) -> String {
    reqwest::Url::parse(url)
        .ok()
        .and_then(|u| u.host_str().map(str::to_owned))
        .unwrap_or_else(|| "unknown".to_owned())
}
