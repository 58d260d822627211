//! The admin server on a plain-HTTP port: `/healthz`, `/readyz` (ready only
//! once the caches have synced and the webhook serves) and `/metrics` in
//! Prometheus text format.

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use prometheus_client::registry::Registry;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

struct AdminState {
    registry: Registry,
    ready: Arc<AtomicBool>,
    campaign_problem: Arc<Mutex<Option<String>>>,
}

/// The admin router: `ready` and `campaign_problem` are the operator's
/// (`Options::ready`, `Options::campaign_problem`).
pub fn router(
    registry: Registry,
    ready: Arc<AtomicBool>,
    campaign_problem: Arc<Mutex<Option<String>>>,
) -> Router {
    Router::new()
        .route("/healthz", axum::routing::get(|| async { "ok" }))
        .route("/readyz", axum::routing::get(readyz))
        .route("/metrics", axum::routing::get(metrics))
        .with_state(Arc::new(AdminState {
            registry,
            ready,
            campaign_problem,
        }))
}

/// Ready once the caches are synced and the webhook serves, and while the
/// replica can campaign for leadership (one that cannot would never
/// reconcile: it says why).
async fn readyz(State(s): State<Arc<AdminState>>) -> (StatusCode, String) {
    let problem = s
        .campaign_problem
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    if let Some(reason) = problem {
        (StatusCode::SERVICE_UNAVAILABLE, reason)
    } else if s.ready.load(Ordering::Relaxed) {
        (StatusCode::OK, "ready".into())
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "caches not synced yet".into(),
        )
    }
}

async fn metrics(State(s): State<Arc<AdminState>>) -> impl IntoResponse {
    let mut text = String::new();
    match prometheus_client::encoding::text::encode(&mut text, &s.registry) {
        Ok(()) => (
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        ),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            [(header::CONTENT_TYPE, "text/plain")],
            e.to_string(),
        ),
    }
}
