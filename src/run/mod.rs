//! `connectivity-operator run`: the wiring. Serves `/healthz`, `/readyz` and `/metrics`
//! (`run/http.rs`), waits for leadership when asked (`run/leader.rs`), starts the kube-runtime
//! controllers of every kind per watched namespace (`run/controllers.rs`, fed by the trimmed
//! watches of `run/watch.rs` and the resync driver of `run/resync.rs`) and shuts down gracefully.

mod controllers;
mod http;
mod leader;
mod resync;
pub mod watch;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use futures::future::{BoxFuture, join_all};
use kube::Client;
use kube_lease_manager::{LeaseManagerBuilder, LeaseManagerError};
use tokio::sync::watch as signal;

use self::controllers::controllers_for;
use self::http::health_router;
pub use self::http::shutdown_signal;
pub use self::leader::LeaderElection;
use self::leader::lease_field_manager;
use crate::controller::{Context, Settings};
use crate::metrics::Metrics;

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("failed to bind the metrics and health server on {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error("the metrics and health server failed: {source}")]
    Serve { source: std::io::Error },
    #[error("failed to take part in leader election on Lease {namespace}/{lease}: {source}")]
    LeaderElection {
        namespace: String,
        lease: String,
        source: LeaseManagerError,
    },
    #[error("lost leadership of Lease {namespace}/{lease}; exiting so a restart competes again")]
    LostLeadership { namespace: String, lease: String },
}

/// Options of `run`.
#[derive(Clone, Debug)]
pub struct RunOptions {
    pub settings: Settings,
    /// Address of `/healthz`, `/readyz` and `/metrics`.
    pub listen: SocketAddr,
    /// Watch only these namespaces (all namespaces when empty).
    pub namespaces: Vec<String>,
    /// Reconcile only while holding this Lease.
    pub leader_election: Option<LeaderElection>,
}

/// What `/readyz` reports.
const STARTING: u8 = 0;
const STANDBY: u8 = 1;
const READY: u8 = 2;

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
/// then stop taking new work, let running reconciles finish, release the Lease and return.
pub async fn run_until(
    client: Client,
    listener: tokio::net::TcpListener,
    options: RunOptions,
    metrics: Metrics,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), RunError> {
    let state = Arc::new(AtomicU8::new(STARTING));
    let (stop_tx, stop_rx) = signal::channel(false);
    let stopped = move || {
        let mut rx = stop_rx.clone();
        async move {
            // Err: the sender is gone, which also means stop.
            let _ = rx.wait_for(|stop| *stop).await;
        }
    };
    tracing::info!(addr = %listener.local_addr().unwrap_or(options.listen), "serving /healthz, /readyz and /metrics");
    let server = tokio::spawn(
        axum::serve(listener, health_router(metrics.clone(), state.clone()))
            .with_graceful_shutdown(stopped())
            .into_future(),
    );
    {
        let stop_tx = stop_tx.clone();
        tokio::spawn(async move {
            shutdown.await;
            tracing::info!("shutting down");
            let _ = stop_tx.send(true);
        });
    }

    // Leader election: wait for the Lease before reconciling anything.
    let mut leadership = None;
    if let Some(le) = &options.leader_election {
        let err = |source| RunError::LeaderElection {
            namespace: le.namespace.clone(),
            lease: le.lease.clone(),
            source,
        };
        let manager = LeaseManagerBuilder::new(client.clone(), &le.lease)
            .with_namespace(&le.namespace)
            .with_identity(&le.identity)
            .with_duration(le.duration_seconds)
            .with_grace(le.duration_seconds.div_ceil(3).max(1))
            // One field manager per replica: the Lease's holder fields are then owned by the
            // replica holding it, and a second replica's apply of `holderIdentity` conflicts (409)
            // instead of silently taking over at the same moment.
            .with_field_manager(lease_field_manager(&le.identity))
            .build()
            .await
            .map_err(err)?;
        let (mut is_leader, task) = manager.watch().await;
        state.store(STANDBY, Ordering::SeqCst);
        tracing::info!(lease = %le.lease, identity = %le.identity, "waiting for leadership");
        let mut stop = Box::pin(stopped());
        loop {
            if *is_leader.borrow_and_update() {
                break;
            }
            tokio::select! {
                changed = is_leader.changed() => if changed.is_err() { break },
                _ = &mut stop => {
                    drop(is_leader);
                    let _ = task.await;
                    let _ = server.await;
                    return Ok(());
                }
            }
        }
        tracing::info!(lease = %le.lease, identity = %le.identity, "acquired leadership");
        leadership = Some((is_leader, task));
    }

    let ctx = Arc::new(Context::new(client.clone(), metrics.clone(), options.settings.clone()));
    let scopes: Vec<Option<String>> = if options.namespaces.is_empty() {
        vec![None]
    } else {
        options.namespaces.iter().cloned().map(Some).collect()
    };
    let mut controllers: Vec<BoxFuture<'static, ()>> = Vec::new();
    let mut caches = Vec::new();
    for scope in &scopes {
        let (futures, synced) = controllers_for(&client, scope.as_deref(), &ctx, &stopped);
        controllers.extend(futures);
        caches.extend(synced);
    }
    {
        let state = state.clone();
        tokio::spawn(async move {
            for mut synced in caches {
                if synced.wait_for(|done| *done).await.is_err() {
                    return;
                }
            }
            state.store(READY, Ordering::SeqCst);
            tracing::info!("caches synced; ready");
        });
    }

    // Leadership lost: stop reconciling at once and report it, so the process restarts.
    let lost = match leadership {
        Some((mut is_leader, task)) => {
            let stop_tx = stop_tx.clone();
            let mut stop = Box::pin(stopped());
            let watcher = tokio::spawn(async move {
                let lost = loop {
                    tokio::select! {
                        changed = is_leader.changed() => {
                            if changed.is_err() || !*is_leader.borrow_and_update() { break true; }
                        }
                        _ = &mut stop => break false,
                    }
                };
                if lost {
                    tracing::error!("lost leadership; stopping the controllers");
                    let _ = stop_tx.send(true);
                }
                // Dropping the receiver ends the lease task, which releases the Lease.
                drop(is_leader);
                let _ = task.await;
                lost
            });
            Some(watcher)
        }
        None => None,
    };

    join_all(controllers).await;
    let _ = stop_tx.send(true);
    let served = server.await;
    if let Some(watcher) = lost
        && watcher.await.unwrap_or(false)
        && let Some(le) = &options.leader_election
    {
        return Err(RunError::LostLeadership {
            namespace: le.namespace.clone(),
            lease: le.lease.clone(),
        });
    }
    match served {
        Ok(Ok(())) => Ok(()),
        Ok(Err(source)) => Err(RunError::Serve { source }),
        Err(join) => Err(RunError::Serve {
            source: std::io::Error::other(join),
        }),
    }
}
