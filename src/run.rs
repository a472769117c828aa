//! `connectivity-operator run`: the kube-runtime controllers for every kind, `/healthz`,
//! `/readyz` and `/metrics`, optional leader election on a Kubernetes Lease (so two replicas never
//! reconcile at once), and graceful shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use futures::future::{BoxFuture, join_all};
use futures::{FutureExt, StreamExt};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{Controller, WatchStreamExt, reflector, watcher};
use kube::{Api, Client, ResourceExt};
use kube_lease_manager::{LeaseManagerBuilder, LeaseManagerError};
use tokio::sync::watch;

use crate::controller::{Context, Settings, provider_config, service_profile, subscription};
use crate::crd::{ConnectivitySubscription, ProviderConfig, ServiceProfile};
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

/// Field manager of one replica's writes to the Lease.
fn lease_field_manager(identity: &str) -> String {
    format!("{}-{identity}", crate::controller::FIELD_MANAGER)
}

/// Leader election on a Lease.
#[derive(Clone, Debug)]
pub struct LeaderElection {
    /// Namespace of the Lease (the operator's own namespace).
    pub namespace: String,
    /// Name of the Lease.
    pub lease: String,
    /// This replica's identity (the pod name).
    pub identity: String,
    /// Lease duration in seconds; a leader that stops renewing loses the lease after it.
    pub duration_seconds: u64,
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
/// then stop taking new work, let running reconciles finish, release the Lease and return.
pub async fn run_until(
    client: Client,
    listener: tokio::net::TcpListener,
    options: RunOptions,
    metrics: Metrics,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), RunError> {
    let state = Arc::new(AtomicU8::new(STARTING));
    let (stop_tx, stop_rx) = watch::channel(false);
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
    let mut stores = Vec::new();
    for scope in &scopes {
        let (futures, store) = controllers_for(&client, scope.as_deref(), &ctx, &stopped);
        controllers.extend(futures);
        stores.push(store);
    }
    {
        let state = state.clone();
        tokio::spawn(async move {
            for store in stores {
                if store.wait_until_ready().await.is_err() {
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

/// The annotation `kubectl apply` (client-side) keeps the whole last-applied object in.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// What a change must touch to trigger a reconcile: the spec (generation), annotations (resync,
/// termination confirmation), finalizers (the finalizer helper's first pass) or deletion.
/// Status-only changes, which are nearly all the operator's own writes, do not: at fleet scale
/// each would otherwise cost a reconcile that finds nothing to do.
fn spec_or_metadata<K: kube::Resource>(obj: &K) -> Option<u64> {
    use std::hash::{DefaultHasher, Hash, Hasher};
    let meta = obj.meta();
    let mut h = DefaultHasher::new();
    meta.generation.hash(&mut h);
    meta.annotations.hash(&mut h);
    meta.finalizers.hash(&mut h);
    meta.deletion_timestamp.as_ref().map(|t| t.0.as_second()).hash(&mut h);
    Some(h.finish())
}

/// An object's reference by namespace and name only. Requests built with
/// [`ObjectRef::from_obj`] also carry the object's uid and resourceVersion, which nothing
/// downstream reads but the controller's scheduler keeps (twice) for every object waiting for
/// its next resync: at 10,000 objects that is megabytes of copies.
fn bare_ref<K: kube::Resource<DynamicType = ()>>(obj: &K) -> ObjectRef<K> {
    let name = obj.meta().name.as_deref().unwrap_or_default();
    match obj.meta().namespace.as_deref() {
        Some(ns) => ObjectRef::new(name).within(ns),
        None => ObjectRef::new(name),
    }
}

/// Passes on the objects whose [`spec_or_metadata`] changed, like kube's `predicate_filter`,
/// but remembers each object as two numbers (a hash of namespace, name and uid, and the
/// predicate's hash) instead of three strings, and forgets deleted objects at once (kube's keeps
/// them for an hour).
#[derive(Default)]
struct Triggers {
    seen: std::collections::HashMap<u64, (u64, u32)>,
    /// Bumped at every (re)list; entries not seen in a relist are dropped when it ends.
    epoch: u32,
}

impl Triggers {
    fn key<K: kube::Resource>(obj: &K) -> u64 {
        use std::hash::{DefaultHasher, Hash, Hasher};
        let meta = obj.meta();
        let mut h = DefaultHasher::new();
        (&meta.namespace, &meta.name, &meta.uid).hash(&mut h);
        h.finish()
    }

    /// The object to reconcile for `event`, if any.
    fn on<K: kube::Resource>(&mut self, event: watcher::Event<K>) -> Option<K> {
        match event {
            watcher::Event::Apply(obj) | watcher::Event::InitApply(obj) => {
                let hash = spec_or_metadata(&obj)?;
                let epoch = self.epoch;
                match self.seen.insert(Self::key(&obj), (hash, epoch)) {
                    Some((old, _)) if old == hash => None,
                    _ => Some(obj),
                }
            }
            watcher::Event::Delete(obj) => {
                self.seen.remove(&Self::key(&obj));
                None
            }
            watcher::Event::Init => {
                self.epoch = self.epoch.wrapping_add(1);
                None
            }
            watcher::Event::InitDone => {
                let epoch = self.epoch;
                self.seen.retain(|_, (_, seen)| *seen == epoch);
                None
            }
        }
    }
}

/// A controller whose cache keeps objects without `metadata.managedFields` and kubectl's
/// last-applied annotation: the operator reads neither, and together they are most of a small
/// object's size, so a cache of 10,000 subscriptions holds a fraction of what the API server
/// sends (controller-runtime's `TransformStripManagedFields` does the same). It is triggered by
/// [`spec_or_metadata`] changes ([`Triggers`]), with requests by namespace and name
/// ([`bare_ref`]); requeues and the other watches do the rest. Watch errors are logged and
/// retried with kube's default backoff.
fn trimmed_controller<K>(api: Api<K>, config: watcher::Config) -> Controller<K>
where
    K: kube::Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
{
    let (reader, writer) = reflector::store();
    let mut triggers = Triggers::default();
    let requests = watcher(api, config)
        .default_backoff()
        .modify(|obj: &mut K| {
            let meta = obj.meta_mut();
            meta.managed_fields = None;
            if let Some(annotations) = meta.annotations.as_mut() {
                annotations.remove(LAST_APPLIED);
            }
        })
        .reflect(writer)
        .filter_map(move |event| {
            let request = match event {
                Ok(event) => triggers.on(event).map(|obj| bare_ref(&obj)),
                Err(error) => {
                    tracing::warn!(kind = %K::kind(&()), %error, "watch failed; retrying with backoff");
                    None
                }
            };
            futures::future::ready(request)
        });
    Controller::for_stream(futures::stream::pending(), reader).reconcile_on(requests)
}

/// The controllers of every kind for one scope (a namespace, or all), and the ServiceProfile
/// store whose readiness `/readyz` waits for.
fn controllers_for<F, Fut>(
    client: &Client,
    ns: Option<&str>,
    ctx: &Arc<Context>,
    stopped: &F,
) -> (
    Vec<BoxFuture<'static, ()>>,
    kube::runtime::reflector::Store<ServiceProfile>,
)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = ()> + Send + Sync + 'static,
{
    // Lists are paginated (500 per page) and consistent: a list at "any" resourceVersion is
    // served from the API server's watch cache in one piece, which for 10,000 subscriptions
    // means one response of tens of megabytes held at once.
    let config = watcher::Config::default();
    let controller_config =
        kube::runtime::controller::Config::default().concurrency(ctx.settings.max_concurrent_reconciles);
    let pc_controller = trimmed_controller(api::<ProviderConfig>(client, ns), config.clone())
        .with_config(controller_config.clone())
        .graceful_shutdown_on(stopped())
        .run(provider_config::reconcile, provider_config::error_policy, ctx.clone())
        .for_each(|result| async move {
            if let Err(e) = result {
                tracing::debug!(error = %e, "ProviderConfig controller event");
            }
        })
        .boxed();
    let sp_controller =
        trimmed_controller(api::<ServiceProfile>(client, ns), config.clone()).with_config(controller_config.clone());
    let sp_store = sp_controller.store();
    let mapper_store = sp_store.clone();
    let sp_controller = sp_controller
        // A ProviderConfig that appears, changes or becomes Ready re-triggers its ServiceProfiles.
        .watches(
            api::<ProviderConfig>(client, ns),
            config.clone(),
            move |pc: ProviderConfig| {
                let namespace = pc.namespace();
                let name = pc.name_any();
                mapper_store
                    .state()
                    .into_iter()
                    .filter(|sp| sp.namespace() == namespace && sp.spec.provider_config_ref.name == name)
                    .map(|sp| bare_ref(sp.as_ref()))
                    .collect::<Vec<_>>()
            },
        )
        .graceful_shutdown_on(stopped())
        .run(service_profile::reconcile, service_profile::error_policy, ctx.clone())
        .for_each(|result| async move {
            if let Err(e) = result {
                tracing::debug!(error = %e, "ServiceProfile controller event");
            }
        })
        .boxed();
    let csub_controller =
        trimmed_controller(api::<ConnectivitySubscription>(client, ns), config.clone()).with_config(controller_config);
    let csub_store = csub_controller.store();
    let (wake, woken) = futures::channel::mpsc::unbounded();
    ctx.inventories.add_waker(ns.map(str::to_string), wake);
    let by_profile = csub_store.clone();
    let by_provider = csub_store;
    let csub_controller = csub_controller
        // A referenced ServiceProfile that gets its vendor id (or changes) re-triggers its users.
        .watches(
            api::<ServiceProfile>(client, ns),
            config.clone(),
            move |sp: ServiceProfile| {
                let namespace = sp.namespace();
                let name = sp.name_any();
                by_profile
                    .state()
                    .into_iter()
                    .filter(|c| {
                        c.namespace() == namespace
                            && c.spec.service_profile_ref.as_ref().is_some_and(|r| r.name == name)
                    })
                    .map(|c| bare_ref(c.as_ref()))
                    .collect::<Vec<_>>()
            },
        )
        .watches(api::<ProviderConfig>(client, ns), config, move |pc: ProviderConfig| {
            let namespace = pc.namespace();
            let name = pc.name_any();
            by_provider
                .state()
                .into_iter()
                .filter(|c| c.namespace() == namespace && c.spec.provider_config_ref.name == name)
                .map(|c| bare_ref(c.as_ref()))
                .collect::<Vec<_>>()
        })
        // Pending changes that waited for their account's writes to finish.
        .reconcile_on(woken.map(|(namespace, name)| ObjectRef::new(&name).within(&namespace)))
        .graceful_shutdown_on(stopped())
        .run(subscription::reconcile, subscription::error_policy, ctx.clone())
        .for_each(|result| async move {
            if let Err(e) = result {
                tracing::debug!(error = %e, "ConnectivitySubscription controller event");
            }
        })
        .boxed();
    (vec![pc_controller, sp_controller, csub_controller], sp_store)
}

/// `/healthz` (process alive), `/readyz` (caches synced, or standing by for leadership),
/// `/metrics` (OpenMetrics).
fn health_router(metrics: Metrics, state: Arc<AtomicU8>) -> Router {
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

#[cfg(test)]
mod tests {
    use super::*;
    use kube::api::ObjectMeta;

    fn profile(name: &str, uid: &str, generation: i64, resource_version: &str) -> ServiceProfile {
        let mut sp = ServiceProfile::new(
            name,
            serde_json::from_value(serde_json::json!({"providerConfigRef": {"name": "acct"}, "name": name})).unwrap(),
        );
        sp.metadata = ObjectMeta {
            name: Some(name.into()),
            namespace: Some("ns".into()),
            uid: Some(uid.into()),
            generation: Some(generation),
            resource_version: Some(resource_version.into()),
            ..Default::default()
        };
        sp
    }

    fn on(t: &mut Triggers, event: watcher::Event<ServiceProfile>) -> Option<ServiceProfile> {
        t.on(event)
    }

    fn names(out: Vec<Option<ServiceProfile>>) -> Vec<Option<String>> {
        out.into_iter().map(|o| o.map(|sp| sp.name_any())).collect()
    }

    #[test]
    fn triggers_pass_spec_and_metadata_changes_and_new_objects_only() {
        let mut t = Triggers::default();
        let out = vec![
            on(&mut t, watcher::Event::Init),
            on(&mut t, watcher::Event::InitApply(profile("a", "u1", 1, "1"))),
            on(&mut t, watcher::Event::InitDone),
            // A status-only write: new resourceVersion, same generation.
            on(&mut t, watcher::Event::Apply(profile("a", "u1", 1, "2"))),
            // A spec change.
            on(&mut t, watcher::Event::Apply(profile("a", "u1", 2, "3"))),
            // Deleted and created again under the same name: a new object.
            on(&mut t, watcher::Event::Delete(profile("a", "u1", 2, "4"))),
            on(&mut t, watcher::Event::Apply(profile("a", "u2", 2, "5"))),
        ];
        assert_eq!(
            names(out),
            [
                None,
                Some("a".into()),
                None,
                None,
                Some("a".into()),
                None,
                Some("a".into())
            ]
        );
        assert_eq!(t.seen.len(), 1, "the deleted object is forgotten");
    }

    #[test]
    fn a_relist_forgets_objects_that_are_gone_and_passes_nothing_unchanged() {
        let mut t = Triggers::default();
        on(&mut t, watcher::Event::Init);
        on(&mut t, watcher::Event::InitApply(profile("a", "u1", 1, "1")));
        on(&mut t, watcher::Event::InitApply(profile("b", "u2", 1, "1")));
        on(&mut t, watcher::Event::InitDone);
        // The watch broke; "b" was deleted meanwhile and the relist does not have it.
        let out = vec![
            on(&mut t, watcher::Event::Init),
            on(&mut t, watcher::Event::InitApply(profile("a", "u1", 1, "7"))),
            on(&mut t, watcher::Event::InitDone),
        ];
        assert_eq!(names(out), [None, None, None]);
        assert_eq!(t.seen.len(), 1, "b is forgotten at the end of the relist");
        let request = bare_ref(&profile("a", "u1", 1, "7"));
        assert_eq!(request.name, "a");
        assert_eq!(request.namespace.as_deref(), Some("ns"));
        assert!(request.extra.uid.is_none() && request.extra.resource_version.is_none());
    }
}
