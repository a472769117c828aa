//! The chart's RBAC grants every API call the operator makes, and nothing it does not make.
//! The calls are recorded from the real controllers (with leader election) running a full
//! lifecycle on the in-memory API server; the rules come from `helm template` output that
//! `scripts/check-chart.sh` writes to `target/chart-render/` (run it first; `scripts/test.sh` does).

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use common::{Harness, NS};
use connectivity_operator::controller::Settings;
use connectivity_operator::crd::conditions::{self, READY};
use connectivity_operator::metrics::Metrics;
use connectivity_operator::run::{LeaderElection, RunOptions, run_until};
use memory_apiserver::RecordedRequest;
use serde_json::{Value, json};

/// (apiGroup, resource[/subresource], verb)
type Permission = (String, String, String);

fn rendered(file: &str) -> Vec<Value> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("target/chart-render")
        .join(file);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{} is missing ({e}): run `bash scripts/check-chart.sh` first (scripts/test.sh does)",
            path.display()
        )
    });
    serde_yaml::Deserializer::from_str(&text)
        .map(|d| serde::Deserialize::deserialize(d).expect("rendered YAML"))
        .filter(|v: &Value| !v.is_null())
        .collect()
}

fn granted(objects: &[Value]) -> BTreeSet<Permission> {
    let mut out = BTreeSet::new();
    for obj in objects
        .iter()
        .filter(|o| matches!(o["kind"].as_str(), Some("ClusterRole" | "Role")))
    {
        for rule in obj["rules"].as_array().into_iter().flatten() {
            let list = |key: &str| -> Vec<String> {
                rule[key]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect()
            };
            for g in list("apiGroups") {
                for r in list("resources") {
                    for v in list("verbs") {
                        assert!(
                            g != "*" && r != "*" && v != "*",
                            "wildcard in {}: {rule}",
                            obj["metadata"]["name"]
                        );
                        out.insert((g.clone(), r.clone(), v));
                    }
                }
            }
        }
    }
    out
}

/// What a recorded request needs, as RBAC sees it.
fn permission(req: &RecordedRequest) -> Option<Permission> {
    let parts: Vec<&str> = req.path.trim_matches('/').split('/').collect();
    let (group, rest) = match parts.as_slice() {
        ["api", "v1", rest @ ..] => ("", rest),
        ["apis", group, _version, rest @ ..] => (*group, rest),
        _ => return None,
    };
    let rest = match rest {
        ["namespaces", _ns, rest @ ..] => rest,
        rest => rest,
    };
    let (resource, named) = match rest {
        [resource] => (resource.to_string(), false),
        [resource, _name] => (resource.to_string(), true),
        [resource, _name, sub] => (format!("{resource}/{sub}"), true),
        _ => return None,
    };
    let verb = match (req.method.as_str(), named) {
        ("GET", _) if req.is_watch() => "watch",
        ("GET", true) => "get",
        ("GET", false) => "list",
        ("POST", _) => "create",
        ("PUT", _) => "update",
        ("PATCH", _) => "patch",
        ("DELETE", true) => "delete",
        ("DELETE", false) => "deletecollection",
        _ => return None,
    };
    Some((group.to_string(), resource, verb.to_string()))
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

/// Every call the operator makes in a lifecycle of every kind, with leader election on.
async fn recorded_calls() -> BTreeSet<Permission> {
    let h = Harness::new().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let options = RunOptions {
        settings: Settings::default(),
        listen: listener.local_addr().unwrap(),
        namespaces: vec![],
        leader_election: Some(LeaderElection {
            namespace: NS.into(),
            lease: "connectivity-operator".into(),
            identity: "rbac-test".into(),
            duration_seconds: 5,
        }),
    };
    let (stop, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(run_until(h.client.clone(), listener, options, Metrics::new(), async {
        let _ = stop_rx.await;
    }));
    // Orphan: the SIM's endpoint keeps using the profile, so emnify would refuse its deletion.
    h.add_sp("profile", json!({"deletionPolicy": "Orphan", "emnify": {}}));
    h.add(json!({
        "apiVersion": "connectivity-operator.dev/v1alpha1", "kind": "ConnectivitySubscription",
        "metadata": {"name": "sim", "namespace": NS},
        "spec": {"providerConfigRef": {"name": "emnify"}, "imsi": first_imsi(&h).await, "mode": "Paused",
                 "serviceProfileRef": {"name": "profile"}, "deletionPolicy": "Deactivate"}
    }));
    let csubs: kube::Api<connectivity_operator::crd::ConnectivitySubscription> =
        kube::Api::namespaced(h.client.clone(), NS);
    eventually("the subscription to be Ready", || async {
        csubs
            .get("sim")
            .await
            .ok()
            .and_then(|c| c.status)
            .is_some_and(|s| conditions::is_true(&s.conditions, READY))
    })
    .await;
    csubs.delete("sim", &Default::default()).await.unwrap();
    eventually("the subscription to be gone", || async {
        csubs.get_opt("sim").await.unwrap().is_none()
    })
    .await;
    h.delete_sp("profile").await;
    eventually("the profile to be gone", || async {
        h.sps().get_opt("profile").await.unwrap().is_none()
    })
    .await;
    h.pcs().delete("emnify", &Default::default()).await.unwrap();
    eventually("the ProviderConfig to be gone", || async {
        h.pcs().get_opt("emnify").await.unwrap().is_none()
    })
    .await;
    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(30), task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();

    h.server
        .requests()
        .iter()
        // The test's own writes (creating objects, deleting them) are not the operator's.
        .filter(|r| {
            r.query_param("fieldManager")
                .is_some_and(|m| m == "connectivity-operator")
                || is_operator_call(r)
        })
        .filter_map(permission)
        .collect()
}

/// Requests only the operator makes: reads and watches of every kind, JSON patches (finalizers),
/// events, Leases. The test harness itself only creates and deletes.
fn is_operator_call(r: &RecordedRequest) -> bool {
    match r.method.as_str() {
        "GET" => true,
        "PATCH" => true,
        "POST" => r.path.contains("/events") || r.path.contains("/leases"),
        "PUT" => r.path.contains("/leases"),
        _ => false,
    }
}

async fn first_imsi(h: &Harness) -> String {
    let token = h.sim.credentials()["application_token"].as_str().unwrap().to_string();
    let http = reqwest::Client::new();
    let auth: Value = http
        .post(format!("{}/api/v1/authenticate", h.sim.url))
        .json(&json!({"application_token": token}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let sims: Value = http
        .get(format!("{}/api/v1/sim?per_page=1", h.sim.url))
        .bearer_auth(auth["auth_token"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    sims[0]["imsi"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn chart_rbac_covers_every_call_and_nothing_more() {
    let used = recorded_calls().await;
    assert!(
        used.contains(&("coordination.k8s.io".into(), "leases".into(), "create".into())),
        "{used:#?}"
    );
    assert!(used.contains(&("".into(), "secrets".into(), "get".into())), "{used:#?}");

    // All options on (leader election with 2 replicas, namespaced mode) must cover everything.
    let all = granted(&rendered("all-options.yaml"));
    let missing: Vec<_> = used.iter().filter(|p| !all.contains(*p)).collect();
    assert!(missing.is_empty(), "the all-options chart lacks RBAC for {missing:#?}");
    // The event recorder PATCHes an event into a series when the same event repeats within
    // minutes; this lifecycle emits no repeats, but a running operator does.
    let occasional: Permission = ("events.k8s.io".into(), "events".into(), "patch".into());
    let used: BTreeSet<Permission> = used.into_iter().chain([occasional]).collect();
    let unused: Vec<_> = all.iter().filter(|p| !used.contains(*p)).collect();
    assert!(
        unused.is_empty(),
        "the chart grants permissions the operator never uses: {unused:#?}"
    );

    // Default values: one replica, no leader election, so no Lease permissions; the rest as above.
    let default = granted(&rendered("default.yaml"));
    let missing: Vec<_> = used
        .iter()
        .filter(|p| p.1 != "leases" && !default.contains(*p))
        .collect();
    assert!(missing.is_empty(), "the default chart lacks RBAC for {missing:#?}");
    assert!(
        default.iter().all(|p| used.contains(p)),
        "the default chart grants unused permissions: {default:#?}"
    );
}
