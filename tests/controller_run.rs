//! The `run` command's controllers, end to end on the in-memory API server (list + watch) and
//! the emnify simulator: objects created after start-up converge, `/healthz`, `/readyz` and
//! `/metrics` answer, deletion removes the vendor profile, and shutdown is graceful.

mod common;

use std::time::Duration;

use common::{Harness, NS};
use connectivity_operator::controller::Settings;
use connectivity_operator::crd::conditions::{self, READY};
use connectivity_operator::metrics::Metrics;
use connectivity_operator::run::{RunOptions, run_until};
use serde_json::json;

async fn wait_for<F, Fut>(what: &str, check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    common::wait_for(what, Duration::from_secs(15), check).await
}

#[tokio::test]
async fn controllers_converge_objects_and_serve_health_and_metrics() {
    let h = Harness::new().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let metrics = Metrics::new();
    let options = RunOptions {
        settings: Settings::default(),
        listen: addr,
        namespaces: vec![NS.into()],
        leader_election: None,
    };
    let task = tokio::spawn(run_until(h.client.clone(), listener, options, metrics, async {
        let _ = stop_rx.await;
    }));

    let http = reqwest::Client::new();
    let base = format!("http://{addr}");
    wait_for("/readyz", || {
        let http = http.clone();
        let url = format!("{base}/readyz");
        async move { http.get(url).send().await.is_ok_and(|r| r.status().is_success()) }
    })
    .await;
    assert_eq!(
        http.get(format!("{base}/healthz"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
        "ok"
    );

    h.add_sp("live", json!({"emnify": {"allowed3g": false}}));
    wait_for("ServiceProfile live to be Ready", || async {
        h.sps()
            .get("live")
            .await
            .ok()
            .and_then(|sp| sp.status)
            .is_some_and(|s| conditions::is_true(&s.conditions, READY))
    })
    .await;
    let id = h.sp("live").await.status.unwrap().id.unwrap();
    assert_eq!(h.vendor_profile(&id).unwrap()["allowed_3g"], false);
    wait_for("ProviderConfig to be Ready", || async {
        h.pcs()
            .get("emnify")
            .await
            .ok()
            .and_then(|pc| pc.status)
            .is_some_and(|s| conditions::is_true(&s.conditions, READY))
    })
    .await;
    // Our own status writes come back as watch events; they must not turn into a reconcile loop.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let vendor_calls = h.vendor_requests().len();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        h.vendor_requests().len(),
        vendor_calls,
        "no vendor calls while nothing changes"
    );

    let text = http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        text.contains(r#"connectivity_operator_reconciles_total{kind="ServiceProfile"}"#),
        "{text}"
    );
    assert!(
        text.contains(r#"vendor="emnify",operation="service_profile.create",status="201""#),
        "{text}"
    );
    assert!(text.contains("connectivity_operator_reconcile_duration_seconds_bucket"));

    h.delete_sp("live").await;
    wait_for("ServiceProfile live to be gone", || async {
        h.sps().get_opt("live").await.unwrap().is_none()
    })
    .await;
    assert!(h.vendor_profile(&id).is_none(), "vendor profile deleted");

    stop_tx.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(30), task)
        .await
        .expect("graceful shutdown")
        .unwrap()
        .unwrap();
}
