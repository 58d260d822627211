//! Fault injection and the request log of the embedded Quay.

use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

/// Faults applied to `/api/` and `/v2/` requests, settable at run time.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FaultConfig {
    /// Added to every request, in milliseconds (Quay's bcrypt-per-request
    /// cost is about 230 ms on a real instance).
    pub latency_ms: u64,
    /// Fraction (0..=1) of requests delayed by `spike_ms` more, as a
    /// Quay whose database stalls now and then.
    pub spike_rate: f64,
    /// Added latency of a spike, in milliseconds.
    pub spike_ms: u64,
    /// Fraction (0..=1) of requests answered with `error_status`.
    pub error_rate: f64,
    /// Status of injected errors (500 unless set).
    pub error_status: Option<u16>,
    /// Carry the request out before answering the injected error, so the
    /// client cannot know whether it took effect.
    pub error_after_effect: bool,
    /// Fraction of requests answered 429 with Retry-After.
    pub throttle_rate: f64,
    /// Retry-After of injected 429s, in seconds.
    pub retry_after_secs: u64,
    /// Fraction of requests whose connection is dropped without an answer.
    pub drop_rate: f64,
    /// The next N requests get an injected error regardless of the rates.
    pub fail_next: u32,
    /// The next N requests get a 429 regardless of the rates.
    pub throttle_next: u32,
    /// The next N requests have their connection dropped.
    pub drop_next: u32,
    /// Every request answers 503, as a Quay that is down behind its proxy.
    pub down: bool,
    /// Restrict faults to paths starting with this prefix.
    pub path_prefix: Option<String>,
    /// Restrict faults to this HTTP method.
    pub method: Option<String>,
    /// How many requests are served at once, as Quay's workers (a small
    /// Quay has a few, each busy about 0.3 s a request); the others wait.
    /// `None`: no limit.
    pub capacity: Option<u32>,
}

/// What to do with one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultAction {
    /// Serve it normally.
    Pass,
    /// Answer this status without carrying it out.
    Error(u16),
    /// Carry it out, then answer this status instead.
    ErrorAfterEffect(u16),
    /// Answer 429 with this Retry-After.
    Throttle(u64),
    /// Drop the connection.
    Drop,
}

/// Fault state: the configuration and a seeded random source.
#[derive(Debug)]
pub struct Faults {
    config: FaultConfig,
    rng: rand::rngs::StdRng,
}

impl Default for Faults {
    fn default() -> Self {
        Self {
            config: FaultConfig::default(),
            rng: rand::rngs::StdRng::seed_from_u64(0x5eed),
        }
    }
}

impl Faults {
    /// Replaces the configuration; `seed` makes rates reproducible.
    pub fn set(&mut self, config: FaultConfig, seed: Option<u64>) {
        self.config = config;
        if let Some(seed) = seed {
            self.rng = rand::rngs::StdRng::seed_from_u64(seed);
        }
    }

    /// The current configuration.
    pub fn config(&self) -> &FaultConfig {
        &self.config
    }

    /// Decides the fate of one request; returns the latency to add too.
    pub fn decide(&mut self, method: &str, path: &str) -> (Duration, FaultAction) {
        let c = &mut self.config;
        if c.path_prefix
            .as_deref()
            .is_some_and(|p| !path.starts_with(p))
            || c.method
                .as_deref()
                .is_some_and(|m| !m.eq_ignore_ascii_case(method))
        {
            return (Duration::ZERO, FaultAction::Pass);
        }
        let mut latency = Duration::from_millis(c.latency_ms);
        if c.spike_rate > 0.0 && self.rng.random::<f64>() < c.spike_rate {
            latency += Duration::from_millis(c.spike_ms);
        }
        let c = &mut self.config;
        let status = c.error_status.unwrap_or(500);
        let error = if c.error_after_effect {
            FaultAction::ErrorAfterEffect(status)
        } else {
            FaultAction::Error(status)
        };
        if c.down {
            return (latency, FaultAction::Error(503));
        }
        if c.drop_next > 0 {
            c.drop_next -= 1;
            return (latency, FaultAction::Drop);
        }
        if c.throttle_next > 0 {
            c.throttle_next -= 1;
            return (latency, FaultAction::Throttle(c.retry_after_secs));
        }
        if c.fail_next > 0 {
            c.fail_next -= 1;
            return (latency, error);
        }
        let roll: f64 = self.rng.random();
        let c = &self.config;
        let action = if roll < c.drop_rate {
            FaultAction::Drop
        } else if roll < c.drop_rate + c.throttle_rate {
            FaultAction::Throttle(c.retry_after_secs)
        } else if roll < c.drop_rate + c.throttle_rate + c.error_rate {
            error
        } else {
            FaultAction::Pass
        };
        (latency, action)
    }
}

/// One logged request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RequestRecord {
    /// HTTP method.
    pub method: String,
    /// Endpoint template (`/api/v1/organization/{org}`), or the path for
    /// unknown routes.
    pub template: String,
    /// The actual path.
    pub path: String,
    /// Answered status; 0 for a dropped connection.
    pub status: u16,
    /// The client's `User-Agent`.
    pub user_agent: String,
}

/// The request log (bounded).
#[derive(Debug, Default)]
pub struct RequestLog {
    records: Vec<RequestRecord>,
    dropped_records: u64,
}

const MAX_RECORDS: usize = 1_000_000;

impl RequestLog {
    /// Appends a record, keeping at most a million.
    pub fn push(&mut self, record: RequestRecord) {
        if self.records.len() >= MAX_RECORDS {
            self.dropped_records += 1;
            return;
        }
        self.records.push(record);
    }

    /// All records so far.
    pub fn records(&self) -> &[RequestRecord] {
        &self.records
    }

    /// Forgets every record.
    pub fn clear(&mut self) {
        self.records.clear();
        self.dropped_records = 0;
    }

    /// Counts by `"METHOD template"`.
    pub fn counts(&self) -> BTreeMap<String, u64> {
        let mut counts = BTreeMap::new();
        for r in &self.records {
            *counts
                .entry(format!("{} {}", r.method, r.template))
                .or_insert(0) += 1;
        }
        counts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_counters_take_precedence_and_run_out() {
        let mut f = Faults::default();
        f.set(
            FaultConfig {
                drop_next: 1,
                throttle_next: 1,
                fail_next: 1,
                retry_after_secs: 3,
                ..Default::default()
            },
            None,
        );
        assert_eq!(f.decide("GET", "/api/v1/user/").1, FaultAction::Drop);
        assert_eq!(f.decide("GET", "/api/v1/user/").1, FaultAction::Throttle(3));
        assert_eq!(f.decide("GET", "/api/v1/user/").1, FaultAction::Error(500));
        assert_eq!(f.decide("GET", "/api/v1/user/").1, FaultAction::Pass);
    }

    #[test]
    fn rates_are_seeded_and_roughly_right() {
        let mut f = Faults::default();
        f.set(
            FaultConfig {
                error_rate: 0.3,
                error_status: Some(503),
                ..Default::default()
            },
            Some(42),
        );
        let errors = (0..10_000)
            .filter(|_| f.decide("GET", "/api/").1 == FaultAction::Error(503))
            .count();
        assert!((2_700..3_300).contains(&errors), "{errors}");
    }

    #[test]
    fn filters_restrict_faults() {
        let mut f = Faults::default();
        f.set(
            FaultConfig {
                fail_next: 5,
                method: Some("POST".into()),
                path_prefix: Some("/api/v1/repository".into()),
                ..Default::default()
            },
            None,
        );
        assert_eq!(f.decide("GET", "/api/v1/repository").1, FaultAction::Pass);
        assert_eq!(
            f.decide("POST", "/api/v1/organization/").1,
            FaultAction::Pass
        );
        assert_eq!(
            f.decide("POST", "/api/v1/repository").1,
            FaultAction::Error(500)
        );
    }

    #[test]
    fn down_answers_503_and_latency_is_reported() {
        let mut f = Faults::default();
        f.set(
            FaultConfig {
                down: true,
                latency_ms: 20,
                ..Default::default()
            },
            None,
        );
        assert_eq!(
            f.decide("GET", "/api/"),
            (Duration::from_millis(20), FaultAction::Error(503))
        );
    }

    #[test]
    fn spikes_delay_a_seeded_fraction_of_requests() {
        let mut f = Faults::default();
        f.set(
            FaultConfig {
                latency_ms: 5,
                spike_rate: 0.1,
                spike_ms: 300,
                ..Default::default()
            },
            Some(7),
        );
        let latencies: Vec<Duration> = (0..10_000).map(|_| f.decide("GET", "/api/").0).collect();
        let spiked = latencies
            .iter()
            .filter(|l| **l == Duration::from_millis(305))
            .count();
        assert!((800..1_200).contains(&spiked), "{spiked}");
        assert!(
            latencies
                .iter()
                .all(|l| *l == Duration::from_millis(5) || *l == Duration::from_millis(305))
        );
    }
}
