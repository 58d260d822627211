//! The HTTPS admission endpoint: AdmissionReview v1 and v1beta1 in,
//! the same version out; malformed input gets a 4xx with a message.

use super::decision::{Decision, Facts, decide};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Instant;

/// The path the webhook configuration names.
pub const PATH: &str = "/admissionwebhook";
/// Largest AdmissionReview accepted (twice etcd's object limit and some).
pub const MAX_BODY: usize = 4 * 1024 * 1024;

/// Where the webhook gets its facts from (the operator's caches).
pub trait FactsSource: Send + Sync + 'static {
    /// A consistent view for one decision.
    fn facts(&self) -> Box<dyn Facts + '_>;
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DecisionLabels {
    decision: &'static str,
}

/// Webhook metrics.
#[derive(Clone, Debug)]
pub struct WebhookMetrics {
    decisions: Family<DecisionLabels, Counter>,
    latency: Histogram,
}

impl Default for WebhookMetrics {
    fn default() -> Self {
        Self {
            decisions: Family::default(),
            latency: Histogram::new(exponential_buckets(0.0001, 2.0, 16)),
        }
    }
}

impl WebhookMetrics {
    /// Registers the series.
    pub fn register(registry: &mut prometheus_client::registry::Registry) -> Self {
        let m = Self::default();
        registry.register(
            "webhook_decisions",
            "Admission decisions by outcome",
            m.decisions.clone(),
        );
        registry.register(
            "webhook_duration_seconds",
            "Time to decide an AdmissionReview",
            m.latency.clone(),
        );
        m
    }

    /// Decisions of one kind so far.
    pub fn count(&self, decision: &'static str) -> u64 {
        self.decisions
            .get(&DecisionLabels { decision })
            .map_or(0, |c| c.get())
    }
}

struct AppState {
    source: Arc<dyn FactsSource>,
    metrics: WebhookMetrics,
}

/// The webhook router (`POST /admissionwebhook`).
pub fn router(source: Arc<dyn FactsSource>, metrics: WebhookMetrics) -> Router {
    Router::new()
        .route(PATH, axum::routing::post(admit))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(Arc::new(AppState { source, metrics }))
}

fn bad(status: StatusCode, message: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        message,
    )
        .into_response()
}

/// Answers one AdmissionReview.
pub fn review(
    body: &[u8],
    source: &dyn FactsSource,
) -> Result<(Value, &'static str), (StatusCode, String)> {
    let review: Value = serde_json::from_slice(body).map_err(|e| {
        (
            StatusCode::BAD_REQUEST,
            format!("malformed AdmissionReview: {e}"),
        )
    })?;
    let version = match review.get("apiVersion").and_then(Value::as_str) {
        Some(v @ ("admission.k8s.io/v1" | "admission.k8s.io/v1beta1")) => v.to_owned(),
        other => {
            return Err((
                StatusCode::BAD_REQUEST,
                format!(
                    "expected an AdmissionReview of admission.k8s.io/v1 or v1beta1, got apiVersion {other:?}"
                ),
            ));
        }
    };
    if review.get("kind").and_then(Value::as_str) != Some("AdmissionReview") {
        return Err((
            StatusCode::BAD_REQUEST,
            "expected kind AdmissionReview".into(),
        ));
    }
    let Some(request) = review.get("request").filter(|r| r.is_object()) else {
        return Err((
            StatusCode::BAD_REQUEST,
            "the AdmissionReview has no request".into(),
        ));
    };
    let Some(uid) = request
        .get("uid")
        .and_then(Value::as_str)
        .filter(|u| !u.is_empty())
    else {
        return Err((
            StatusCode::BAD_REQUEST,
            "the AdmissionReview request has no uid".into(),
        ));
    };
    let facts = source.facts();
    let decision = decide(request, facts.as_ref());
    let ns = request
        .get("namespace")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let name = request
        .pointer("/object/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let (response, label) = match decision {
        Decision::Allow => (json!({"uid": uid, "allowed": true}), "allowed"),
        Decision::Patch(patch) => {
            tracing::info!(
                namespace = ns,
                build = name,
                "build output rewritten to Quay"
            );
            let encoded = base64::engine::general_purpose::STANDARD.encode(patch.to_string());
            (
                json!({"uid": uid, "allowed": true, "patchType": "JSONPatch", "patch": encoded}),
                "rewritten",
            )
        }
        Decision::Deny(message) => {
            tracing::info!(namespace = ns, build = name, reason = %message, "build denied");
            (
                json!({"uid": uid, "allowed": false, "status": {"code": 403, "reason": "Forbidden", "message": message}}),
                "denied",
            )
        }
    };
    Ok((
        json!({"apiVersion": version, "kind": "AdmissionReview", "response": response}),
        label,
    ))
}

async fn admit(State(state): State<Arc<AppState>>, headers: HeaderMap, body: Bytes) -> Response {
    let started = Instant::now();
    let json_body = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| {
            ct.split(';')
                .next()
                .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"))
        });
    let result = if json_body {
        review(&body, state.source.as_ref())
    } else {
        Err((
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "the AdmissionReview must be sent as application/json".into(),
        ))
    };
    let (response, label) = match result {
        Ok((answer, label)) => (
            (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "application/json")],
                answer.to_string(),
            )
                .into_response(),
            label,
        ),
        Err((status, message)) => {
            tracing::debug!(%status, %message, "malformed admission request");
            (bad(status, message), "malformed")
        }
    };
    state
        .metrics
        .decisions
        .get_or_create(&DecisionLabels { decision: label })
        .inc();
    state
        .metrics
        .latency
        .observe(started.elapsed().as_secs_f64());
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{IntegrationConfig, test_config};
    use crate::webhook::decision::Facts;

    struct Fixed(Vec<IntegrationConfig>);

    impl Facts for Fixed {
        fn integrations(&self) -> &[IntegrationConfig] {
            &self.0
        }
        fn secret_linked(&self, _: &str, _: &str, _: &str) -> bool {
            true
        }
    }

    impl FactsSource for Vec<IntegrationConfig> {
        fn facts(&self) -> Box<dyn Facts + '_> {
            Box::new(Fixed(self.clone()))
        }
    }

    fn source() -> Vec<IntegrationConfig> {
        vec![test_config("openshift", "")]
    }

    fn build_review(version: &str) -> Value {
        json!({"apiVersion": version, "kind": "AdmissionReview", "request": {
            "uid": "abc", "operation": "CREATE", "namespace": "team", "resource": {"group": "build.openshift.io", "version": "v1", "resource": "builds"},
            "object": {"metadata": {"name": "b"}, "spec": {"strategy": {"type": "Docker"}, "output": {"to": {"kind": "ImageStreamTag", "name": "app:v1"}}}}}})
    }

    #[test]
    fn answers_in_the_version_asked_with_a_base64_patch() {
        for version in ["admission.k8s.io/v1", "admission.k8s.io/v1beta1"] {
            let (answer, label) =
                review(build_review(version).to_string().as_bytes(), &source()).unwrap();
            assert_eq!(answer["apiVersion"], version);
            assert_eq!(answer["kind"], "AdmissionReview");
            assert_eq!(answer["response"]["uid"], "abc");
            assert_eq!(answer["response"]["patchType"], "JSONPatch");
            let patch = base64::engine::general_purpose::STANDARD
                .decode(answer["response"]["patch"].as_str().unwrap())
                .unwrap();
            let ops: Value = serde_json::from_slice(&patch).unwrap();
            assert!(
                ops.as_array()
                    .unwrap()
                    .iter()
                    .any(|o| o["path"] == "/spec/output/to/name")
            );
            assert_eq!(label, "rewritten");
        }
    }

    #[test]
    fn malformed_reviews_are_4xx_with_a_message() {
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (b"not json".to_vec(), "malformed"),
            (b"[]".to_vec(), "apiVersion"),
            (json!({"apiVersion": "admission.k8s.io/v2", "kind": "AdmissionReview"}).to_string().into_bytes(), "apiVersion"),
            (json!({"apiVersion": "admission.k8s.io/v1", "kind": "Pod"}).to_string().into_bytes(), "kind"),
            (json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"}).to_string().into_bytes(), "no request"),
            (json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {"uid": ""}}).to_string().into_bytes(), "uid"),
        ];
        for (body, expected) in cases {
            let (status, message) = review(&body, &source()).unwrap_err();
            assert_eq!(status, StatusCode::BAD_REQUEST);
            assert!(message.contains(expected), "{message}");
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let base = build_review("admission.k8s.io/v1").to_string().into_bytes();
        for _ in 0..5_000 {
            let mut body = base.clone();
            for _ in 0..rng.random_range(1..8) {
                let i = rng.random_range(0..body.len());
                body[i] = rng.random();
            }
            if let Ok((answer, _)) = review(&body, &source()) {
                assert!(answer["response"]["uid"].is_string());
            }
        }
    }

    #[tokio::test]
    async fn the_http_layer_checks_content_type_and_size() {
        use tower::ServiceExt;
        let router = router(Arc::new(source()), WebhookMetrics::default());
        let post = |ct: &'static str, body: Vec<u8>| {
            axum::http::Request::post(PATH)
                .header("content-type", ct)
                .body(axum::body::Body::from(body))
                .unwrap()
        };
        let r = router
            .clone()
            .oneshot(post("text/plain", b"{}".to_vec()))
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
        let r = router
            .clone()
            .oneshot(post("application/json", vec![b' '; MAX_BODY + 1]))
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
        let r = router
            .oneshot(post(
                "application/json; charset=utf-8",
                build_review("admission.k8s.io/v1").to_string().into_bytes(),
            ))
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
    }
}
