//! The controllers of every kind for one watched scope, and which changes of one kind re-trigger
//! another (a ProviderConfig its ServiceProfiles and subscriptions, a ServiceProfile its
//! subscriptions, a finished write burst the subscriptions parked on it).

use std::sync::Arc;

use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Api, Client, ResourceExt};

use super::watch::{bare_ref, trimmed_controller};
use crate::controller::Context;
use crate::controller::managed::{error_policy, reconcile};
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

/// The controllers of every kind for one scope (a namespace, or all), and the ServiceProfile
/// store whose readiness `/readyz` waits for.
pub(super) fn controllers_for<F, Fut>(
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
        .run(reconcile, error_policy, ctx.clone())
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
        .run(reconcile, error_policy, ctx.clone())
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
        .run(reconcile, error_policy, ctx.clone())
        .for_each(|result| async move {
            if let Err(e) = result {
                tracing::debug!(error = %e, "ConnectivitySubscription controller event");
            }
        })
        .boxed();
    (vec![pc_controller, sp_controller, csub_controller], sp_store)
}
