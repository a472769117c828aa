//! Bulk vendor writes with the controllers running (in-memory API server, emnify simulator
//! recording its exchanges): a fleet-wide mode change goes out as emnify's endpoint bulk update,
//! one call at a time, each SIM's change applied exactly once; an item that fails its batch is
//! found and fails alone, whether or not the failed request applied part of its list.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use common::{Harness, NS, emnify_get, emnify_token, quiet_sim};
use connectivity_operator::controller::Settings;
use connectivity_operator::crd::ConnectivitySubscription;
use connectivity_operator::crd::conditions::{self, READY, SYNCED};
use connectivity_operator::metrics::Metrics;
use connectivity_operator::run::{RunOptions, run_until};
use kube::api::{Patch, PatchParams};
use serde_json::{Value, json};
use vendor_sim::emnify::{EmnifyConfig, Exchange, SeedConfig};

const BULK_PATH: &str = "/api/v2/endpoint/multi";

async fn wait_for<F, Fut>(what: &str, check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    common::wait_for(what, Duration::from_secs(30), check).await
}

/// A harness whose simulator has `endpoints` endpoints and records its exchanges, with the
/// operator's controllers running; `n` subscriptions (Active) converged.
async fn fleet(n: usize, partial: bool) -> (Harness, tokio::sync::oneshot::Sender<()>, Vec<i64>) {
    let h = Harness::with_sim(EmnifyConfig {
        record_exchanges: true,
        bulk_partial_apply: partial,
        seed: SeedConfig {
            endpoints: n + 5,
            ..SeedConfig::default()
        },
        ..quiet_sim()
    })
    .await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (stop, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let options = RunOptions {
        settings: Settings::default(),
        listen: listener.local_addr().unwrap(),
        namespaces: vec![NS.into()],
        leader_election: None,
    };
    tokio::spawn(run_until(h.client.clone(), listener, options, Metrics::new(), async {
        let _ = stop_rx.await;
    }));
    let endpoints = emnify_get(&h.sim, &format!("/api/v1/endpoint?per_page={n}")).await;
    let mut ids = Vec::new();
    for (i, e) in endpoints.as_array().unwrap().iter().take(n).enumerate() {
        ids.push(e["id"].as_i64().unwrap());
        h.add_csub(
            &format!("sim-{i}"),
            json!({"providerConfigRef": {"name": "emnify"}, "imsi": e["sim"]["imsi"], "mode": "Active"}),
        );
    }
    wait_for("every subscription Ready and Active", || {
        all(&h, n, |c| ready_in(c, "Activated/Enabled"))
    })
    .await;
    (h, stop, ids)
}

fn ready_in(c: &ConnectivitySubscription, mode: &str) -> bool {
    c.status
        .as_ref()
        .is_some_and(|s| conditions::is_true(&s.conditions, READY) && s.mode.as_deref() == Some(mode))
}

async fn all(h: &Harness, n: usize, check: impl Fn(&ConnectivitySubscription) -> bool) -> bool {
    let list = h.csubs().list(&Default::default()).await.unwrap();
    list.items.len() == n && list.items.iter().all(check)
}

async fn set_mode(h: &Harness, n: usize, mode: &str) {
    for i in 0..n {
        h.csubs()
            .patch(
                &format!("sim-{i}"),
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"mode": mode}})),
            )
            .await
            .unwrap();
    }
}

fn bulk_exchanges(h: &Harness) -> Vec<Exchange> {
    h.sim
        .sim
        .exchanges()
        .into_iter()
        .filter(|x| x.path == BULK_PATH)
        .collect()
}

fn shape(exchanges: &[Exchange]) -> Vec<(usize, u16)> {
    exchanges
        .iter()
        .map(|x| {
            (
                x.request.as_ref().and_then(Value::as_array).map_or(0, Vec::len),
                x.status,
            )
        })
        .collect()
}

/// How many times each endpoint's element took effect: every element of a 204, and in a failed
/// request the elements before `failing` when the simulator applies partially.
fn applications(exchanges: &[Exchange], failing: Option<i64>, partial: bool) -> BTreeMap<i64, usize> {
    let mut applied = BTreeMap::new();
    for x in exchanges {
        let elements = x
            .request
            .as_ref()
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let ids: Vec<i64> = elements.iter().map(|e| e["id"].as_i64().unwrap()).collect();
        let took = match x.status {
            204 => ids.len(),
            _ if partial => ids.iter().position(|id| Some(*id) == failing).unwrap_or(0),
            _ => 0,
        };
        for id in &ids[..took] {
            *applied.entry(*id).or_default() += 1;
        }
    }
    applied
}

#[tokio::test]
async fn a_fleet_wide_mode_change_goes_out_in_bulk_each_change_once() {
    let n = 150;
    let (h, stop, ids) = fleet(n, false).await;
    let before = h.vendor_requests().len();
    set_mode(&h, n, "Paused").await;
    wait_for("every subscription Ready and Paused", || {
        all(&h, n, |c| ready_in(c, "Activated/Disabled"))
    })
    .await;

    let requests = &h.vendor_requests()[before..];
    let single_writes = requests
        .iter()
        .filter(|(m, p, _)| m == "PATCH" && p.starts_with("/api/v1/endpoint/"))
        .count();
    let bulk = bulk_exchanges(&h);
    eprintln!("bulk calls (items, status): {:?}", shape(&bulk));
    assert_eq!(single_writes, 0, "no endpoint written alone: {requests:?}");
    assert!(
        !bulk.is_empty() && bulk.len() <= 3,
        "{n} SIMs in a few bulk calls, not one each: {}",
        bulk.len()
    );
    assert!(bulk.iter().all(|x| x.status == 204));
    let applied = applications(&bulk, None, false);
    assert_eq!(applied.keys().copied().collect::<Vec<_>>(), {
        let mut sorted = ids.clone();
        sorted.sort();
        sorted
    });
    assert!(
        applied.values().all(|&times| times == 1),
        "each change applied once: {applied:?}"
    );
    for x in &bulk {
        for element in x.request.as_ref().unwrap().as_array().unwrap() {
            assert_eq!(element["status"], json!({"id": 1}), "Paused is the endpoint Disabled");
            assert_eq!(
                element.as_object().unwrap().len(),
                2,
                "only the id and what changes: {element}"
            );
        }
    }
    assert_eq!(h.sim.sim.bulk_overlaps(), 0, "bulk calls one after another");
    assert!(
        (0..n).all(|i| h.has_event(&format!("sim-{i}"), "Updated")),
        "every object says it was updated"
    );
    // Back again, the same way.
    set_mode(&h, n, "Active").await;
    wait_for("every subscription Ready and Active again", || {
        all(&h, n, |c| ready_in(c, "Activated/Enabled"))
    })
    .await;
    assert!(bulk_exchanges(&h).len() <= 6);
    assert_eq!(h.sim.sim.bulk_overlaps(), 0);
    let _ = stop.send(());
}

#[tokio::test]
async fn an_item_that_fails_its_batch_fails_alone_and_nothing_is_applied_twice() {
    for partial in [false, true] {
        let n = 40;
        let (h, stop, ids) = fleet(n, partial).await;
        // Endpoint of sim-17 deleted in the Portal after the operator's sweep saw it.
        let doomed = ids[17];
        let token = emnify_token(&h.sim).await;
        let http = reqwest::Client::new();
        let url = format!("{}/api/v1/endpoint/{doomed}", h.sim.url);
        let released = http
            .patch(&url)
            .bearer_auth(&token)
            .json(&json!({"sim": {"id": null}}))
            .send()
            .await
            .unwrap();
        assert_eq!(released.status(), 204);
        assert_eq!(
            http.delete(&url).bearer_auth(&token).send().await.unwrap().status(),
            204
        );

        set_mode(&h, n, "Paused").await;
        wait_for("the others Paused, sim-17 failed", || async {
            let list = h.csubs().list(&Default::default()).await.unwrap();
            list.items.iter().all(|c| {
                let name = c.metadata.name.as_deref().unwrap();
                let status = c.status.as_ref().unwrap();
                match name {
                    "sim-17" => conditions::find(&status.conditions, SYNCED)
                        .is_some_and(|s| s.reason == "NotFound" && s.message.contains(&doomed.to_string())),
                    _ => ready_in(c, "Activated/Disabled"),
                }
            })
        })
        .await;

        let bulk = bulk_exchanges(&h);
        eprintln!("partial={partial}: bulk calls (items, status): {:?}", shape(&bulk));
        let applied = applications(&bulk, Some(doomed), partial);
        let expected: HashMap<i64, usize> = ids.iter().filter(|&&id| id != doomed).map(|&id| (id, 1)).collect();
        assert_eq!(
            applied.into_iter().collect::<HashMap<_, _>>(),
            expected,
            "partial={partial}: every other change applied exactly once, the failing one never"
        );
        assert!(
            bulk.iter().any(|x| x.status == 404),
            "the failing endpoint failed a batch"
        );
        // The failing item was isolated by halving: a few calls, not one per SIM.
        assert!(
            bulk.len() < 2 * (n as f64).log2().ceil() as usize + 4,
            "{} bulk calls",
            bulk.len()
        );
        assert_eq!(h.sim.sim.bulk_overlaps(), 0);
        let _ = stop.send(());
    }
}
