//! `connectivity-operator run`: the kube-runtime controllers for ProviderConfig and
//! ServiceProfile, plus `/healthz`, `/readyz` and `/metrics`, with graceful shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use futures::{FutureExt, StreamExt};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{Controller, watcher};
use kube::{Api, Client, ResourceExt};
use tokio::sync::watch;

use crate::controller::{Context, Settings, provider_config, service_profile};
use crate::crd::{ProviderConfig, ServiceProfile};
use crate::metrics::Metrics;

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("failed to bind the metrics and health server on {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error("the metrics and health server failed: {source}")]
    Serve { source: std::io::Error },
}

/// Options of `run`.
#[derive(Clone, Debug)]
pub struct RunOptions {
    pub settings: Settings,
    /// Address of `/healthz`, `/readyz` and `/metrics`.
    pub listen: SocketAddr,
    /// Watch only this namespace (all namespaces when `None`).
    pub namespace: Option<String>,
}

fn api<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// Run the controllers until SIGTERM or Ctrl-C.
pub async fn run(client: Client, options: RunOptions, metrics: Metrics) -> Result<(), RunError> {
    let listener = tokio::net::TcpListener::bind(options.listen)
        .await
        .map_err(|source| RunError::Bind {
            addr: options.listen,
            source,
        })?;
    run_until(client, listener, options, metrics, shutdown_signal()).await
}

/// Run the controllers, serving health and metrics on `listener`, until `shutdown` resolves;
/// then stop taking new work, let running reconciles finish, and return.
pub async fn run_until(
    client: Client,
    listener: tokio::net::TcpListener,
    options: RunOptions,
    metrics: Metrics,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), RunError> {
    let ctx = Arc::new(Context::new(client.clone(), metrics.clone(), options.settings.clone()));
    let ready = Arc::new(AtomicBool::new(false));
    let (stop_tx, stop_rx) = watch::channel(false);
    let stopped = move || {
        let mut rx = stop_rx.clone();
        async move {
            // Err: the sender is gone, which also means stop.
            let _ = rx.wait_for(|stop| *stop).await;
        }
    };

    tracing::info!(addr = %listener.local_addr().unwrap_or(options.listen), "serving /healthz, /readyz and /metrics");
    let server = axum::serve(listener, health_router(metrics.clone(), ready.clone())).with_graceful_shutdown(stopped());

    let ns = options.namespace.as_deref();
    let config = watcher::Config::default().any_semantic();
    let pc_controller = Controller::new(api::<ProviderConfig>(&client, ns), config.clone())
        .graceful_shutdown_on(stopped())
        .run(provider_config::reconcile, provider_config::error_policy, ctx.clone())
        .for_each(|result| async move {
            if let Err(e) = result {
                tracing::debug!(error = %e, "ProviderConfig controller event");
            }
        });
    let sp_controller = Controller::new(api::<ServiceProfile>(&client, ns), config.clone());
    let sp_store = sp_controller.store();
    let readiness_store = sp_store.clone();
    let sp_controller = sp_controller
        // A ProviderConfig that appears, changes or becomes Ready re-triggers its ServiceProfiles.
        .watches(api::<ProviderConfig>(&client, ns), config, move |pc: ProviderConfig| {
            let namespace = pc.namespace();
            let name = pc.name_any();
            sp_store
                .state()
                .into_iter()
                .filter(|sp| sp.namespace() == namespace && sp.spec.provider_config_ref.name == name)
                .map(|sp| ObjectRef::from_obj(sp.as_ref()))
                .collect::<Vec<_>>()
        })
        .graceful_shutdown_on(stopped())
        .run(service_profile::reconcile, service_profile::error_policy, ctx.clone())
        .for_each(|result| async move {
            if let Err(e) = result {
                tracing::debug!(error = %e, "ServiceProfile controller event");
            }
        });

    let mark_ready = {
        let ready = ready.clone();
        async move {
            if readiness_store.wait_until_ready().await.is_ok() {
                ready.store(true, Ordering::SeqCst);
                tracing::info!("caches synced; ready");
            }
        }
    };
    let signals = async move {
        shutdown.await;
        tracing::info!("shutting down");
        let _ = stop_tx.send(true);
    };
    tokio::spawn(mark_ready);
    tokio::spawn(signals);
    let (served, _, _) = tokio::join!(
        server
            .into_future()
            .map(|r| r.map_err(|source| RunError::Serve { source })),
        pc_controller,
        sp_controller
    );
    served
}

/// `/healthz` (process alive), `/readyz` (caches synced), `/metrics` (OpenMetrics).
pub fn health_router(metrics: Metrics, ready: Arc<AtomicBool>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/readyz",
            get(move || {
                let ready = ready.load(Ordering::SeqCst);
                async move {
                    if ready {
                        (StatusCode::OK, "ready")
                    } else {
                        (StatusCode::SERVICE_UNAVAILABLE, "caches not synced")
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
