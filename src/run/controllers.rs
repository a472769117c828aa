//! The controllers of every kind for one watched scope, and which changes of one kind re-trigger
//! another (a ProviderConfig its ServiceProfiles and subscriptions, a ServiceProfile its
//! subscriptions, a finished write burst the subscriptions parked on it).

use std::sync::Arc;

use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Api, Client, ResourceExt};

use super::resync::due_resyncs;
use super::watch::{Synced, bare_ref, trimmed_controller};
use crate::controller::Context;
use crate::controller::managed::{Managed, error_policy, reconcile};
use crate::crd::{ConnectivitySubscription, ProviderConfig, ServiceProfile};

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

/// A watch mapper: the objects in `store` whose reference (`refers`) names the changed object
/// (same namespace, that name).
fn referencing<K, R>(
    store: Store<K>,
    refers: fn(&K) -> Option<&str>,
) -> impl Fn(R) -> Vec<ObjectRef<K>> + Send + Sync + 'static
where
    K: kube::Resource<DynamicType = ()> + Clone + Send + Sync + 'static,
    R: kube::Resource,
{
    move |changed: R| {
        let namespace = changed.namespace();
        let name = changed.name_any();
        store
            .state()
            .into_iter()
            .filter(|o| o.namespace() == namespace && refers(o) == Some(name.as_str()))
            .map(|o| bare_ref(o.as_ref()))
            .collect()
    }
}

/// Runs a controller's stream to its end; per-object outcomes are already logged by the
/// reconciler, so only the controller's own events are left for debugging.
fn drain<S, T, E>(kind: &'static str, stream: S) -> BoxFuture<'static, ()>
where
    S: futures::Stream<Item = Result<T, E>> + Send + 'static,
    T: Send + 'static,
    E: std::fmt::Display + Send + 'static,
{
    stream
        .for_each(move |result| async move {
            if let Err(e) = result {
                tracing::debug!(error = %e, "{kind} controller event");
            }
        })
        .boxed()
}

/// The controllers of every kind for one scope (a namespace, or all), and their caches'
/// readiness, which `/readyz` waits for.
pub(super) fn controllers_for<F, Fut>(
    client: &Client,
    ns: Option<&str>,
    ctx: &Arc<Context>,
    stopped: &F,
) -> (Vec<BoxFuture<'static, ()>>, Vec<Synced>)
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
    let (pc_controller, pc_synced) = trimmed_controller(api::<ProviderConfig>(client, ns), config.clone());
    let pc_store = pc_controller.store();
    let pc_controller = drain(
        "ProviderConfig",
        pc_controller
            .with_config(controller_config.clone())
            .reconcile_on(due_resyncs(pc_store, ctx.clone()))
            .graceful_shutdown_on(stopped())
            .run(reconcile, error_policy, ctx.clone()),
    );
    let (sp_controller, sp_synced) = trimmed_controller(api::<ServiceProfile>(client, ns), config.clone());
    let sp_controller = sp_controller.with_config(controller_config.clone());
    let sp_store = sp_controller.store();
    let sp_controller = sp_controller
        // A ProviderConfig that appears, changes or becomes Ready re-triggers its ServiceProfiles.
        .watches(
            api::<ProviderConfig>(client, ns),
            config.clone(),
            referencing(sp_store.clone(), Managed::account),
        )
        .reconcile_on(due_resyncs(sp_store, ctx.clone()))
        .graceful_shutdown_on(stopped())
        .run(reconcile, error_policy, ctx.clone());
    let sp_controller = drain("ServiceProfile", sp_controller);
    let (csub_controller, csub_synced) =
        trimmed_controller(api::<ConnectivitySubscription>(client, ns), config.clone());
    let csub_controller = csub_controller.with_config(controller_config);
    let csub_store = csub_controller.store();
    ctx.claims.add_scope(csub_store.clone(), csub_synced.clone());
    let (wake, woken) = futures::channel::mpsc::unbounded();
    ctx.inventories.add_waker(ns.map(str::to_string), wake);
    let csub_controller = csub_controller
        // A referenced ServiceProfile that gets its vendor id (or changes) re-triggers its users.
        .watches(
            api::<ServiceProfile>(client, ns),
            config.clone(),
            referencing(csub_store.clone(), |c: &ConnectivitySubscription| {
                c.spec.service_profile_ref.as_ref().map(|r| r.name.as_str())
            }),
        )
        .watches(
            api::<ProviderConfig>(client, ns),
            config,
            referencing(csub_store.clone(), Managed::account),
        )
        .reconcile_on(due_resyncs(csub_store, ctx.clone()))
        // Pending changes that waited for their account's writes to finish.
        .reconcile_on(woken.map(|(namespace, name)| ObjectRef::new(&name).within(&namespace)))
        .graceful_shutdown_on(stopped())
        .run(reconcile, error_policy, ctx.clone());
    let csub_controller = drain("ConnectivitySubscription", csub_controller);
    (
        vec![pc_controller, sp_controller, csub_controller],
        vec![pc_synced, sp_synced, csub_synced],
    )
}
