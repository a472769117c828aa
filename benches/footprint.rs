//! What our own code saves where a crate's would do the same job: heap retained at fleet scale
//! by (1) the packed subscription inventory against a plain `Vec<ObservedSubscription>` with two
//! `HashMap<String, usize>` indexes, (2) our trigger filter against kube's `predicate_filter`,
//! (3) our event recorder against kube's `Recorder`, (4) the controller's cache of settled
//! subscriptions with our metadata trim against `managedFields` stripped only (what
//! controller-runtime's `TransformStripManagedFields` keeps), and where one cached object's
//! bytes go. Each is fed the same N objects; what it
//! retains is measured as the bytes its drop frees (a counting global allocator), so whatever
//! else lives in the process does not count.
//!
//! `cargo bench --bench footprint -- --n 10000`

use std::alloc::System;
use std::sync::Arc;

use cap::Cap;
use connectivity_operator::backend::{InventoryBuilder, ObservedSubscription};
use connectivity_operator::controller::events::EventRecorder;
use connectivity_operator::crd::{ConnectivitySubscription, SubscriptionMode};
use connectivity_operator::run::watch::{Triggers, trim};
use futures::StreamExt;
use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::{WatchStreamExt, predicates, reflector, watcher};

#[global_allocator]
static ALLOC: Cap<System> = Cap::new(System, usize::MAX);

/// Bytes `value` holds on the heap: what dropping it frees.
fn retained<T>(value: T) -> usize {
    let before = ALLOC.allocated();
    drop(value);
    before.saturating_sub(ALLOC.allocated())
}

fn sim(i: usize) -> ObservedSubscription {
    ObservedSubscription {
        imsi: Some(format!("2420100{i:08}")),
        iccid: Some(format!("894701{i:014}")),
        msisdn: Some(format!("4790{i:08}")),
        imei: Some(format!("35{i:013}")),
        id: Some(format!("{}", 10_000_000 + i)),
        endpoint_id: Some(format!("{}", 20_000_000 + i)),
        vendor_mode: "Enabled".into(),
        mode: Some(SubscriptionMode::Active),
        equivalent: Vec::new(),
        service_profile_id: Some("81730".into()),
        first_activation_date: Some("2026-03-01T10:00:00Z".into()),
    }
}

fn subscription(i: usize) -> ConnectivitySubscription {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "connectivity-operator.dev/v1alpha1",
        "kind": "ConnectivitySubscription",
        "metadata": {
            "name": format!("sim-{i:05}"),
            "namespace": "fleet",
            "uid": format!("6a1f0c2e-{i:04x}-4b7a-9d3e-5c2b8e1f{i:04x}"),
            "generation": 1,
            "resourceVersion": format!("{}", 1000 + i),
        },
        "spec": {
            "providerConfigRef": {"name": "emnify"},
            "iccid": format!("894701{i:014}"),
            "mode": "Active",
        }
    }))
    .expect("a valid subscription")
}

/// A settled subscription as the API server sends it: status written by the operator, our
/// finalizer, kubectl's last-applied copy, an Argo CD tracking label and annotation, and the
/// field managers of kubectl and the operator.
fn settled(i: usize) -> ConnectivitySubscription {
    let spec = serde_json::json!({"providerConfigRef": {"name": "emnify"}, "imsi": format!("2420100{i:08}"), "mode": "Active"});
    let name = format!("sim-{i:06}");
    let last_applied = serde_json::json!({"apiVersion": "connectivity-operator.dev/v1alpha1", "kind": "ConnectivitySubscription",
        "metadata": {"name": name, "namespace": "fleet"}, "spec": spec});
    let fields = |m: &str, sub: &str, f: serde_json::Value| {
        serde_json::json!({"manager": m, "operation": "Apply",
        "apiVersion": "connectivity-operator.dev/v1alpha1", "time": "2026-11-30T10:00:00Z", "fieldsType": "FieldsV1",
        "subresource": sub, "fieldsV1": f})
    };
    serde_json::from_value(serde_json::json!({
        "apiVersion": "connectivity-operator.dev/v1alpha1",
        "kind": "ConnectivitySubscription",
        "metadata": {
            "name": name,
            "namespace": "fleet",
            "uid": format!("6a1f0c2e-{i:04x}-4b7a-9d3e-5c2b8e1f{i:04x}"),
            "generation": 1,
            "resourceVersion": format!("{}", 100_000 + i),
            "creationTimestamp": "2026-11-30T10:00:00Z",
            "finalizers": [connectivity_operator::crd::FINALIZER],
            "labels": {"app.kubernetes.io/instance": "fleet"},
            "annotations": {
                "kubectl.kubernetes.io/last-applied-configuration": last_applied.to_string(),
                "argocd.argoproj.io/tracking-id": format!("fleet:connectivity-operator.dev/ConnectivitySubscription:fleet/{name}"),
            },
            "managedFields": [
                fields("argocd-controller", "", serde_json::json!({"f:spec": {"f:imsi": {}, "f:mode": {}, "f:providerConfigRef": {"f:name": {}}}})),
                fields("connectivity-operator", "status", serde_json::json!({"f:status": {"f:conditions": {}, "f:mode": {}, "f:iccid": {}, "f:imsi": {}}})),
            ],
        },
        "spec": spec,
        "status": {
            "mode": "Activated/Enabled",
            "iccid": format!("894701{i:014}"),
            "imsi": format!("2420100{i:08}"),
            "msisdn": format!("4790{i:08}"),
            "serviceProfileId": "81730",
            "id": format!("{}", 10_000_000 + i),
            "endpointId": format!("{}", 20_000_000 + i),
            "firstActivationDate": "2026-03-01T10:00:00.000+0000",
            "observedGeneration": 1,
            "conditions": [
                {"type": "Ready", "status": "True", "reason": "Available", "message": "the SIM is Active (Activated/Enabled)",
                 "lastTransitionTime": "2026-11-30T10:00:05Z", "observedGeneration": 1},
                {"type": "Synced", "status": "True", "reason": "ReconcileSuccess", "message": "",
                 "lastTransitionTime": "2026-11-30T10:00:05Z", "observedGeneration": 1},
            ],
            "lastObservedTime": "2026-11-30T10:00:05Z",
        }
    }))
    .expect("a valid subscription")
}

fn cache(n: usize) {
    let fill = |shape: fn(&mut ConnectivitySubscription)| {
        let (reader, mut writer) = reflector::store::<ConnectivitySubscription>();
        for i in 0..n {
            let mut obj = settled(i);
            shape(&mut obj);
            writer.apply_watcher_event(&watcher::Event::Apply(obj));
        }
        retained((reader, writer))
    };
    let ours = fill(|o| trim(&mut o.metadata));
    let theirs = fill(|o| o.metadata.managed_fields = None);
    row(
        "subscription cache",
        ours,
        theirs,
        "reflector store, managedFields stripped",
    );
    let mut one = settled(1);
    trim(&mut one.metadata);
    let inline = std::mem::size_of::<ConnectivitySubscription>();
    let metadata = retained(std::mem::take(&mut one.metadata));
    let status = retained(one.status.take());
    let spec = retained(one);
    println!(
        "  per cached object {} bytes: {inline} inline (the struct), heap {metadata} metadata, {spec} spec, {status} status; \
         the rest is the store's map entry and the Arc",
        ours / n.max(1)
    );
}

fn reference(i: usize) -> ObjectReference {
    ObjectReference {
        api_version: Some("connectivity-operator.dev/v1alpha1".into()),
        kind: Some("ConnectivitySubscription".into()),
        name: Some(format!("sim-{i:05}")),
        namespace: Some("fleet".into()),
        uid: Some(format!("6a1f0c2e-{i:04x}-4b7a-9d3e-5c2b8e1f{i:04x}")),
        ..Default::default()
    }
}

fn mib(bytes: usize) -> String {
    format!("{:.2} MiB", bytes as f64 / (1024.0 * 1024.0))
}

fn row(what: &str, ours: usize, theirs: usize, baseline: &str) {
    println!(
        "{what:<22} ours {:>10}   {baseline:<40} {:>10}   ({:.1}x)",
        mib(ours),
        mib(theirs),
        theirs as f64 / ours.max(1) as f64
    );
}

fn inventory(n: usize) {
    let mut builder = InventoryBuilder::default();
    for i in 0..n {
        builder.push(&sim(i));
    }
    let ours = retained(builder.finish(1));
    let mut plain = (
        Vec::new(),
        std::collections::HashMap::new(),
        std::collections::HashMap::new(),
    );
    for i in 0..n {
        let s = sim(i);
        plain.1.insert(s.imsi.clone().unwrap_or_default(), i);
        plain.2.insert(s.iccid.clone().unwrap_or_default(), i);
        plain.0.push(s);
    }
    row(
        "inventory",
        ours,
        retained(plain),
        "Vec<ObservedSubscription> + 2 HashMaps",
    );
}

async fn triggers(n: usize) {
    let mut ours = Triggers::default();
    for i in 0..n {
        ours.on(watcher::Event::Apply(subscription(i)));
    }
    let ours = retained(ours);
    let objects = futures::stream::unfold(0, move |i| async move {
        (i < n).then(|| (Ok::<_, watcher::Error>(subscription(i)), i + 1))
    });
    let mut theirs = Box::pin(objects.predicate_filter(predicates::generation, Default::default()));
    while let Some(obj) = theirs.next().await {
        drop(obj);
    }
    row(
        "trigger filter",
        ours,
        retained(theirs),
        "kube predicate_filter(generation)",
    );
}

async fn events(n: usize) {
    let server = connectivity_operator::offline::memory_server();
    let client = kube::Client::new(server, "fleet");
    let reporter = Reporter {
        controller: "connectivity-operator".into(),
        instance: Some("connectivity-operator-0".into()),
    };
    let event = Event {
        type_: EventType::Normal,
        reason: "Updated".into(),
        note: Some("emnify: mode Active".into()),
        action: "Update".into(),
        secondary: None,
    };
    let ours = Arc::new(EventRecorder::new(client.clone(), reporter.clone()));
    for i in 0..n {
        ours.publish(&event, &reference(i)).await.expect("event published");
    }
    let ours = retained(ours);
    let theirs = Recorder::new(client, reporter);
    for i in 0..n {
        theirs.publish(&event, &reference(i)).await.expect("event published");
    }
    row("event recorder", ours, retained(theirs), "kube Recorder");
}

fn main() {
    let mut args = std::env::args().skip(1);
    let mut n = 10_000;
    while let Some(arg) = args.next() {
        if arg == "--n" {
            n = args.next().and_then(|v| v.parse().ok()).expect("--n takes a number");
        }
    }
    // One thread: nothing else allocates while a measurement runs.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    println!("heap retained for {n} objects (freed when dropped):");
    inventory(n);
    cache(n);
    runtime.block_on(triggers(n));
    runtime.block_on(events(n));
}
