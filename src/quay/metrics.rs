//! Request counters and latency per Quay endpoint template and status class.

use super::endpoint::Endpoint;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::time::Duration;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: &'static str,
    endpoint: &'static str,
    status: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EndpointLabels {
    method: &'static str,
    endpoint: &'static str,
}

fn latency_histogram() -> Histogram {
    // 5 ms .. ~20 s
    Histogram::new(exponential_buckets(0.005, 2.0, 13))
}

/// Quay client metrics. Clones share the same series.
#[derive(Clone, Debug)]
pub struct QuayMetrics {
    requests: Family<RequestLabels, Counter>,
    latency: Family<EndpointLabels, Histogram, fn() -> Histogram>,
}

impl Default for QuayMetrics {
    fn default() -> Self {
        Self {
            requests: Family::default(),
            latency: Family::new_with_constructor(latency_histogram),
        }
    }
}

impl QuayMetrics {
    /// Creates the metrics and registers them under `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self::default();
        registry.register(
            "quay_requests",
            "Quay API requests by endpoint template and status class",
            metrics.requests.clone(),
        );
        registry.register(
            "quay_request_duration_seconds",
            "Quay API request latency by endpoint template",
            metrics.latency.clone(),
        );
        metrics
    }

    /// Records one HTTP attempt. `status` is `None` when no answer came.
    pub fn observe(&self, endpoint: Endpoint, status: Option<u16>, elapsed: Duration) {
        self.requests
            .get_or_create(&RequestLabels {
                method: endpoint.method,
                endpoint: endpoint.template,
                status: status_class(status),
            })
            .inc();
        self.latency
            .get_or_create(&EndpointLabels {
                method: endpoint.method,
                endpoint: endpoint.template,
            })
            .observe(elapsed.as_secs_f64());
    }

    /// Requests counted for an endpoint and status class (for tests and
    /// benchmarks).
    pub fn count(&self, endpoint: Endpoint, class: &'static str) -> u64 {
        self.requests
            .get(&RequestLabels {
                method: endpoint.method,
                endpoint: endpoint.template,
                status: class,
            })
            .map_or(0, |c| c.get())
    }
}

/// `2xx`, `3xx`, `4xx`, `5xx`, or `error` when no answer came.
pub fn status_class(status: Option<u16>) -> &'static str {
    match status {
        None => "error",
        Some(200..=299) => "2xx",
        Some(300..=399) => "3xx",
        Some(400..=499) => "4xx",
        Some(_) => "5xx",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quay::endpoint::{ORG_GET, REPO_CREATE};

    #[test]
    fn counts_by_template_and_class_and_encodes() {
        let mut registry = Registry::default();
        let m = QuayMetrics::register(&mut registry);
        m.observe(ORG_GET, Some(200), Duration::from_millis(3));
        m.observe(ORG_GET, Some(404), Duration::from_millis(3));
        m.observe(ORG_GET, Some(404), Duration::from_millis(3));
        m.observe(REPO_CREATE, None, Duration::from_secs(30));
        assert_eq!(m.count(ORG_GET, "2xx"), 1);
        assert_eq!(m.count(ORG_GET, "4xx"), 2);
        assert_eq!(m.count(REPO_CREATE, "error"), 1);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert!(text.contains(r#"quay_requests_total{method="GET",endpoint="/api/v1/organization/{org}",status="4xx"} 2"#), "{text}");
        assert!(text.contains("quay_request_duration_seconds_bucket"));
    }
}
