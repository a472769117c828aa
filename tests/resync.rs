//! The resync driver with the controllers running (in-memory API server, emnify simulator): a
//! settled object is read again once its interval has passed without any per-object timer, a
//! resync that finds nothing new writes nothing to Kubernetes, and drift made in the vendor's
//! portal is corrected by the next resync.

mod common;

use std::time::Duration;

use common::{Harness, NS, condition};
use connectivity_operator::controller::Settings;
use connectivity_operator::crd::ConditionStatus;
use connectivity_operator::crd::conditions::READY;
use connectivity_operator::metrics::Metrics;
use connectivity_operator::run::{RunOptions, run_until};
use serde_json::json;

const WRITES: [&str; 5] = ["POST", "PUT", "PATCH", "APPLY", "DELETE"];

fn api_writes(h: &Harness) -> u64 {
    let stats = h.server.stats();
    WRITES.iter().filter_map(|v| stats.verbs.get(*v)).sum()
}

fn profile_reads(h: &Harness, id: &str) -> usize {
    let path = format!("/api/v1/service_profile/{id}");
    h.vendor_requests()
        .iter()
        .filter(|(m, p, _)| m == "GET" && p.starts_with(&path))
        .count()
}

#[tokio::test]
async fn settled_objects_are_resynced_by_the_driver_and_drift_is_corrected() {
    let h = Harness::new().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (stop, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let options = RunOptions {
        settings: Settings {
            resync_interval: Duration::from_secs(2),
            ..Settings::default()
        },
        listen: listener.local_addr().unwrap(),
        namespaces: vec![NS.into()],
        leader_election: None,
    };
    tokio::spawn(run_until(h.client.clone(), listener, options, Metrics::new(), async {
        let _ = stop_rx.await;
    }));
    h.add_sp(
        "sensors",
        json!({"description": "sensors", "emnify": {"allowed3g": false}}),
    );
    common::wait_for("the ServiceProfile Ready", Duration::from_secs(30), || async {
        let sp = h.sp("sensors").await;
        sp.status.as_ref().is_some_and(|s| s.id.is_some()) && condition(&sp, READY).status == ConditionStatus::True
    })
    .await;
    let id = h.sp("sensors").await.status.unwrap().id.unwrap();

    // Nothing changes anywhere: resyncs read the vendor and write nothing to Kubernetes.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (writes, reads) = (api_writes(&h), profile_reads(&h, &id));
    tokio::time::sleep(Duration::from_secs(7)).await;
    let resync_reads = profile_reads(&h, &id) - reads;
    assert!(
        (2..=5).contains(&resync_reads),
        "about one read per 2 s interval in 7 s, driven without a change in Kubernetes: {resync_reads}"
    );
    assert_eq!(api_writes(&h), writes, "a resync that finds nothing new writes nothing");

    // Someone edits the profile in the emnify Portal: the next resync puts it back.
    h.sim
        .sim
        .patch_service_profile(id.parse().unwrap(), json!({"allowed_3g": true}));
    common::wait_for("the portal edit corrected", Duration::from_secs(30), || async {
        h.vendor_profile(&id).is_some_and(|p| p["allowed_3g"] == false)
    })
    .await;
    // The Event follows the vendor write's answer, so it may land just after the vendor shows it.
    common::wait_for(
        "the correction reported as an Updated Event",
        Duration::from_secs(30),
        || async { h.has_event("sensors", "Updated") },
    )
    .await;
    let _ = stop.send(());
}
