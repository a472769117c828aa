//! `/healthz`, `/readyz` and `/metrics`, and the shutdown signal.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;

use super::{READY, STANDBY};
use crate::metrics::Metrics;

/// `/healthz` (process alive), `/readyz` (caches synced, or standing by for leadership),
/// `/metrics` (OpenMetrics).
pub(super) fn health_router(metrics: Metrics, state: Arc<AtomicU8>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/readyz",
            get(move || {
                let state = state.load(Ordering::SeqCst);
                async move {
                    match state {
                        READY => (StatusCode::OK, "ready"),
                        // A standby replica is healthy and ready to take over; it must not block rollouts.
                        STANDBY => (StatusCode::OK, "standby: waiting for leadership"),
                        _ => (StatusCode::SERVICE_UNAVAILABLE, "caches not synced"),
                    }
                }
            }),
        )
        .route(
            "/metrics",
            get(move || {
                let body = metrics.encode();
                async move {
                    (
                        [(
                            header::CONTENT_TYPE,
                            "application/openmetrics-text; version=1.0.0; charset=utf-8",
                        )],
                        body,
                    )
                        .into_response()
                }
            }),
        )
}

/// Resolves on SIGTERM (Kubernetes stopping the pod) or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => futures::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = futures::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
