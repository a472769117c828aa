//! Leader election: two replicas of `run` on one (in-memory) cluster; only the Lease holder
//! reconciles, the other stands by (ready, not reconciling) and takes over once the leader stops.

mod common;

use std::time::Duration;

use common::{Harness, NS};
use connectivity_operator::controller::Settings;
use connectivity_operator::crd::conditions::{self, READY};
use connectivity_operator::metrics::Metrics;
use connectivity_operator::run::{LeaderElection, RunOptions, run_until};
use serde_json::json;

fn options(identity: &str, addr: std::net::SocketAddr) -> RunOptions {
    RunOptions {
        settings: Settings::default(),
        listen: addr,
        namespaces: vec![NS.into()],
        leader_election: Some(LeaderElection {
            namespace: NS.into(),
            lease: "connectivity-operator".into(),
            identity: identity.into(),
            duration_seconds: 2,
        }),
    }
}

async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..400 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

fn reconciles(metrics: &Metrics) -> u64 {
    let text = metrics.encode();
    text.lines()
        .filter(|l| l.starts_with("connectivity_operator_reconciles_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread")]
async fn only_the_lease_holder_reconciles_and_the_standby_takes_over() {
    let h = Harness::new().await;
    let http = reqwest::Client::new();

    let la = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr_a = la.local_addr().unwrap();
    let metrics_a = Metrics::new();
    let (stop_a, stop_a_rx) = tokio::sync::oneshot::channel::<()>();
    let a = tokio::spawn(run_until(
        h.client.clone(),
        la,
        options("replica-a", addr_a),
        metrics_a.clone(),
        async {
            let _ = stop_a_rx.await;
        },
    ));
    h.add_sp("first", json!({"emnify": {}}));
    eventually("replica-a to reconcile", || async {
        h.sps()
            .get("first")
            .await
            .ok()
            .and_then(|s| s.status)
            .is_some_and(|s| conditions::is_true(&s.conditions, READY))
    })
    .await;
    let lease = h
        .server
        .get("coordination.k8s.io/v1", "Lease", Some(NS), "connectivity-operator")
        .expect("Lease created");
    assert_eq!(lease["spec"]["holderIdentity"], "replica-a");

    let lb = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr_b = lb.local_addr().unwrap();
    let metrics_b = Metrics::new();
    let (stop_b, stop_b_rx) = tokio::sync::oneshot::channel::<()>();
    let b = tokio::spawn(run_until(
        h.client.clone(),
        lb,
        options("replica-b", addr_b),
        metrics_b.clone(),
        async {
            let _ = stop_b_rx.await;
        },
    ));
    eventually("replica-b to stand by", || {
        let http = http.clone();
        async move {
            match http.get(format!("http://{addr_b}/readyz")).send().await {
                Ok(r) => r.text().await.unwrap_or_default().starts_with("standby"),
                Err(_) => false,
            }
        }
    })
    .await;
    // While A leads, B reconciles nothing, even for new objects and across lease renewals.
    h.add_sp("second", json!({"emnify": {}}));
    eventually("replica-a to reconcile the second profile", || async {
        h.sps()
            .get("second")
            .await
            .ok()
            .and_then(|s| s.status)
            .is_some_and(|s| conditions::is_true(&s.conditions, READY))
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(reconciles(&metrics_b), 0, "the standby never reconciles");
    assert!(reconciles(&metrics_a) > 0);

    // A stops (rolling update): it releases the Lease and B takes over.
    stop_a.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(30), a)
        .await
        .expect("A stops")
        .unwrap()
        .unwrap();
    h.add_sp("third", json!({"emnify": {}}));
    eventually("replica-b to take over and reconcile", || async {
        h.sps()
            .get("third")
            .await
            .ok()
            .and_then(|s| s.status)
            .is_some_and(|s| conditions::is_true(&s.conditions, READY))
    })
    .await;
    let lease = h
        .server
        .get("coordination.k8s.io/v1", "Lease", Some(NS), "connectivity-operator")
        .unwrap();
    assert_eq!(lease["spec"]["holderIdentity"], "replica-b");
    assert!(reconciles(&metrics_b) > 0);
    let before = reconciles(&metrics_a);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        reconciles(&metrics_a),
        before,
        "the old leader reconciles nothing after it stopped"
    );

    stop_b.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(30), b)
        .await
        .expect("B stops")
        .unwrap()
        .unwrap();
}
