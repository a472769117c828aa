//! emnify's own OpenAPI spec as the oracle. The operator's reconcilers run their emnify flows
//! (service profiles with services, SMS and data limits; subscriptions created, paused,
//! deactivated, terminated; sweeps; a delete refused while in use) against the simulator, which
//! records every exchange. Then every exchange is checked against the spec: the operation exists,
//! the status is one the spec documents for it, the answer's body is valid against the response
//! schema, and the operator's request body against the request schema.
//!
//! Where the simulator or the client deliberately differs from the spec, the difference is listed
//! in [`DIFFERENCES`] with its reason (and in the simulator's README); anything else fails.
//! The spec is emnify's reference data and is not part of this repository: the test reads it from
//! `EMNIFY_OPENAPI`, else from `shared/vendors/emnify-openapi.yml` in a folder above the
//! repository. Without it the test says so and checks nothing, unless `REQUIRE_EMNIFY_OPENAPI` is
//! set (then it fails).

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use common::{Harness, condition, quiet_sim};
use connectivity_operator::controller::{Context, Settings, managed};
use connectivity_operator::crd::ConditionStatus;
use connectivity_operator::crd::conditions::READY;
use connectivity_operator::metrics::Metrics;
use jsonschema::error::ValidationErrorKind;
use kube::api::{Patch, PatchParams};
use serde_json::{Value, json};
use vendor_sim::emnify::{EmnifyConfig, Exchange};

/// Deliberate differences: (method, spec path, status or 0 for any, what differs, why).
const DIFFERENCES: &[(&str, &str, u16, Difference, &str)] = &[
    (
        "PATCH",
        "/api/v1/endpoint/{endpoint_id}",
        0,
        Difference::PartialRequestBody,
        "the spec marks every field required; emnify's docs and recorded answers take partial bodies",
    ),
    (
        "PATCH",
        "/api/v1/sim/{sim_id}",
        0,
        Difference::PartialRequestBody,
        "the spec requires the organisation fields; a customer may send (and change) only status",
    ),
    (
        "GET",
        "/api/v1/service_profile/{profile_id}",
        404,
        Difference::UndocumentedStatus,
        "the spec documents only 200; emnify answers an unknown id with 404 (its docs' error table), which the operator reads as a profile deleted in the portal",
    ),
];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Difference {
    /// The request body leaves out fields the spec marks required.
    PartialRequestBody,
    /// The status is not among the operation's documented ones.
    UndocumentedStatus,
}

fn spec_path() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("EMNIFY_OPENAPI") {
        let p = PathBuf::from(p);
        assert!(p.exists(), "EMNIFY_OPENAPI={} does not exist", p.display());
        return Some(p);
    }
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .map(|d| d.join("shared/vendors/emnify-openapi.yml"))
        .find(|p| p.exists())
}

/// The spec, made loadable (`$ref`s with spaces percent-encoded) and lenient where emnify's
/// answers carry `null` the spec forgot to allow: every typed schema also admits `null`.
fn load_spec(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap();
    let mut spec: Value = serde_yaml::from_str(&text).expect("emnify OpenAPI spec parses");
    fn relax(v: &mut Value) {
        match v {
            Value::Object(m) => {
                if let Some(Value::String(r)) = m.get_mut("$ref") {
                    *r = r.replace(' ', "%20");
                }
                match m.get_mut("type") {
                    Some(Value::String(t)) if t != "null" => {
                        let t = t.clone();
                        m.insert("type".into(), json!([t, "null"]));
                    }
                    Some(Value::Array(ts)) if !ts.contains(&json!("null")) => ts.push(json!("null")),
                    _ => {}
                }
                if let Some(Value::Array(e)) = m.get_mut("enum")
                    && !e.contains(&Value::Null)
                {
                    e.push(Value::Null);
                }
                for (k, x) in m.iter_mut() {
                    if k != "$ref" && k != "example" && k != "examples" {
                        relax(x);
                    }
                }
            }
            Value::Array(a) => a.iter_mut().for_each(relax),
            _ => {}
        }
    }
    relax(&mut spec);
    spec
}

/// One JSON-pointer segment (RFC 6901).
fn pointer_segment(s: &str) -> String {
    s.replace('~', "~0").replace('/', "~1")
}

/// A JSON pointer as a URI fragment (for `$ref`).
fn fragment(pointer: &str) -> String {
    pointer
        .replace('%', "%25")
        .replace('{', "%7B")
        .replace('}', "%7D")
        .replace(' ', "%20")
}

/// The spec path whose template matches a concrete path (most literal segments wins).
fn template<'a>(spec: &'a Value, method: &str, path: &str) -> Option<&'a str> {
    let segs: Vec<&str> = path.trim_end_matches('/').split('/').collect();
    spec["paths"]
        .as_object()?
        .iter()
        .filter(|(_, item)| item.get(method.to_ascii_lowercase()).is_some())
        .filter_map(|(tpl, _)| {
            let t: Vec<&str> = tpl.split('/').collect();
            if t.len() != segs.len() {
                return None;
            }
            let mut literals = 0;
            for (a, b) in t.iter().zip(&segs) {
                if a.starts_with('{') {
                    continue;
                }
                if a != b {
                    return None;
                }
                literals += 1;
            }
            Some((literals, tpl.as_str()))
        })
        .max_by_key(|(l, _)| *l)
        .map(|(_, t)| t)
}

struct Oracle {
    spec: Value,
    validators: HashMap<String, jsonschema::Validator>,
    /// Which entries of [`DIFFERENCES`] the exchanges needed.
    used: std::collections::BTreeSet<usize>,
}

impl Oracle {
    /// Errors of `instance` against the schema at `pointer` (a JSON pointer into the spec).
    fn errors(&mut self, pointer: &str, instance: &Value, skip_required: bool) -> Vec<String> {
        if !self.validators.contains_key(pointer) {
            let mut root = self.spec.clone();
            let object = root.as_object_mut().unwrap();
            object.insert("$schema".into(), json!("https://json-schema.org/draft/2020-12/schema"));
            object.insert("$ref".into(), json!(format!("#{}", fragment(pointer))));
            let validator = jsonschema::options()
                .should_validate_formats(false)
                .build(&root)
                .unwrap_or_else(|e| panic!("schema at {pointer} does not compile: {e}"));
            self.validators.insert(pointer.to_string(), validator);
        }
        self.validators[pointer]
            .iter_errors(instance)
            .filter(|e| !(skip_required && matches!(e.kind(), ValidationErrorKind::Required { .. })))
            .map(|e| format!("{e} at {}", e.instance_path()))
            .collect()
    }
}

impl Oracle {
    fn difference(&mut self, method: &str, tpl: &str, status: u16, what: Difference) -> bool {
        let found = DIFFERENCES
            .iter()
            .position(|(m, p, s, d, _)| *m == method && *p == tpl && (*s == 0 || *s == status) && *d == what);
        if let Some(i) = found {
            self.used.insert(i);
        }
        found.is_some()
    }
}

/// Check one exchange; returns the problems found.
fn check(oracle: &mut Oracle, x: &Exchange) -> Vec<String> {
    let method = x.method.to_ascii_lowercase();
    let Some(tpl) = template(&oracle.spec, &x.method, &x.path).map(str::to_string) else {
        return vec![format!("{} {}: no such operation in the spec", x.method, x.path)];
    };
    let op_pointer = format!("/paths/{}/{method}", pointer_segment(&tpl));
    let op = oracle.spec.pointer(&op_pointer).cloned().unwrap_or_default();
    let mut problems = Vec::new();
    let at = format!("{} {} ({tpl}) -> {}", x.method, x.path, x.status);
    // The status is documented for the operation.
    let status = x.status.to_string();
    let responses = op["responses"].as_object().cloned().unwrap_or_default();
    let documented = responses.contains_key(&status)
        || responses.contains_key(&format!("{}XX", x.status / 100))
        || responses.contains_key("default");
    if !documented && !oracle.difference(&x.method, &tpl, x.status, Difference::UndocumentedStatus) {
        problems.push(format!(
            "{at}: status not documented (documented: {:?})",
            responses.keys().collect::<Vec<_>>()
        ));
    }
    // The answer's body against the response schema.
    if documented && let Some(body) = &x.response {
        let schema = format!("{op_pointer}/responses/{status}/content/application~1json/schema");
        if oracle.spec.pointer(&schema).is_some() {
            for e in oracle.errors(&schema, body, false) {
                problems.push(format!("{at}: answer: {e}"));
            }
        }
    }
    // Our request body against the request schema.
    if let Some(body) = &x.request {
        let schema = format!("{op_pointer}/requestBody/content/application~1json/schema");
        if oracle.spec.pointer(&schema).is_some() {
            let partial = oracle.difference(&x.method, &tpl, x.status, Difference::PartialRequestBody);
            for e in oracle.errors(&schema, body, partial) {
                problems.push(format!("{at}: request: {e}"));
            }
        } else {
            problems.push(format!("{at}: a request body where the spec documents none"));
        }
    }
    problems
}

/// Every emnify flow the operator has, on a simulator recording its exchanges.
async fn run_flows() -> Vec<Exchange> {
    let h = Harness::with_sim(EmnifyConfig {
        record_exchanges: true,
        ..quiet_sim()
    })
    .await;
    h.reconcile_pc("emnify").await.unwrap();
    h.reconcile_pc("emnify").await.unwrap();
    // Service profiles: settings, services with SMS limits, data limits; updated; deleted.
    h.add_sp(
        "full",
        json!({"name": "Fleet EU", "description": "all settings", "emnify": {
            "allowed3g": false, "applyDataQuota": true,
            "services": [{"service": "Data"}, {"service": 53, "trafficLimits": [{"id": 112}]}],
            "dataLimits": [{"volume": "500Mi", "warningPercent": 80}, {"volume": "1Gi", "satelliteOnly": true}]}}),
    );
    let sp = h.sync_sp("full").await;
    assert_eq!(condition(&sp, READY).status, ConditionStatus::True, "{:?}", sp.status);
    h.patch_spec(
        "full",
        json!({"description": "changed", "emnify": {"allowed3g": true,
            "services": [{"service": "Data"}],
            "dataLimits": [{"volume": "2Gi"}]}}),
    )
    .await;
    let sp = h.sync_sp("full").await;
    assert_eq!(condition(&sp, READY).status, ConditionStatus::True, "{:?}", sp.status);
    // Subscriptions: a SIM without a device gets an endpoint; paused; deactivated; terminated.
    let sims = common::emnify_get(&h.sim, "/api/v1/sim?per_page=1000").await;
    let free = sims
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["endpoint"].is_null() && s["status"]["id"] == 0)
        .unwrap()["iccid"]
        .as_str()
        .unwrap()
        .to_string();
    let busy = sims
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["endpoint"]["id"].is_i64())
        .unwrap()["iccid"]
        .as_str()
        .unwrap()
        .to_string();
    h.add_csub(
        "new",
        json!({"providerConfigRef": {"name": "emnify"}, "iccid": free, "mode": "Active", "serviceProfileRef": {"name": "full"}}),
    );
    h.add_csub("seen", json!({"providerConfigRef": {"name": "emnify"}, "iccid": busy}));
    for (name, mode) in [
        ("new", None),
        ("seen", None),
        ("new", Some("Paused")),
        ("new", Some("Deactivated")),
    ] {
        if let Some(mode) = mode {
            h.csubs()
                .patch(
                    name,
                    &PatchParams::default(),
                    &Patch::Merge(json!({"spec": {"mode": mode}})),
                )
                .await
                .unwrap();
        }
        h.sync_csub(name).await;
    }
    // The profile is in use by the new endpoint: its delete is refused (409).
    h.delete_sp("full").await;
    let _ = h.reconcile_sp("full").await;
    h.csubs()
        .patch(
            "new",
            &PatchParams::default(),
            &Patch::Merge(json!({
                "metadata": {"annotations": {"connectivity-operator.dev/confirm-termination": free}},
                "spec": {"mode": "Terminated"}})),
        )
        .await
        .unwrap();
    h.sync_csub("new").await;
    // Now free: deleted.
    h.reconcile_sp("full").await.unwrap();
    // A profile deleted in the portal: its id answers 404 and the operator creates it again.
    h.add_sp("portal", json!({"emnify": {}}));
    let id = h.sync_sp("portal").await.status.unwrap().id.unwrap();
    let resp = reqwest::Client::new()
        .delete(format!("{}/api/v1/service_profile/{id}", h.sim.url))
        .bearer_auth(common::emnify_token(&h.sim).await)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    h.resync_due("portal").await;
    h.reconcile_sp("portal").await.unwrap();
    assert_ne!(h.sp("portal").await.status.unwrap().id.unwrap(), id, "created again");
    // A mode change through the endpoint bulk update (the harness writes one SIM at a time):
    // the first reconcile hands it over, a later one takes its answer.
    let bulk = Arc::new(Context::new(
        h.client.clone(),
        Metrics::new(),
        Settings {
            bulk_write_window: Duration::from_millis(10),
            provider_cache_ttl: Duration::ZERO,
            ..Settings::default()
        },
    ));
    h.csubs()
        .patch(
            "seen",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"mode": "Paused"}})),
        )
        .await
        .unwrap();
    for _ in 0..100 {
        managed::reconcile(Arc::new(h.csub("seen").await), bulk.clone())
            .await
            .unwrap();
        let status = h.csub("seen").await.status.unwrap_or_default();
        if status.mode.as_deref() == Some("Activated/Disabled") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        h.csub("seen").await.status.unwrap().mode.as_deref(),
        Some("Activated/Disabled")
    );
    h.sim.sim.exchanges()
}

#[tokio::test]
async fn the_simulator_and_the_client_follow_emnifys_openapi_spec() {
    let Some(path) = spec_path() else {
        assert!(
            std::env::var("REQUIRE_EMNIFY_OPENAPI").is_err(),
            "REQUIRE_EMNIFY_OPENAPI is set but the spec was not found"
        );
        eprintln!(
            "emnify's OpenAPI spec not found (set EMNIFY_OPENAPI or put it at shared/vendors/emnify-openapi.yml above the repository): conformance NOT checked"
        );
        return;
    };
    let mut oracle = Oracle {
        spec: load_spec(&path),
        validators: HashMap::new(),
        used: Default::default(),
    };
    let exchanges = run_flows().await;
    let mut operations: Vec<String> = Vec::new();
    let mut problems = Vec::new();
    for x in &exchanges {
        if let Some(tpl) = template(&oracle.spec, &x.method, &x.path) {
            let op = format!("{} {tpl} {}", x.method, x.status);
            if !operations.contains(&op) {
                operations.push(op);
            }
        }
        problems.extend(check(&mut oracle, x));
    }
    operations.sort();
    eprintln!(
        "{} exchanges checked against {}; operations and statuses seen:\n  {}",
        exchanges.len(),
        path.display(),
        operations.join("\n  ")
    );
    problems.sort();
    problems.dedup();
    assert!(
        problems.is_empty(),
        "{} problems:\n{}",
        problems.len(),
        problems.join("\n")
    );
    // The list of differences stays honest: each one is needed by some exchange.
    for (i, (m, p, s, d, why)) in DIFFERENCES.iter().enumerate() {
        assert!(
            oracle.used.contains(&i),
            "difference not seen, remove it: {m} {p} {s} {d:?} ({why})"
        );
    }
    // The flows covered what the operator does at emnify.
    for must in [
        "POST /api/v1/authenticate 200",
        "POST /api/v1/service_profile 201",
        "PATCH /api/v1/service_profile/{profile_id} 201",
        "PUT /api/v1/service_profile/{profile_id}/service/{service_id} 204",
        "POST /api/v1/service_profile/{profile_id}/traffic_limit 201",
        "DELETE /api/v1/service_profile/{profile_id}/traffic_limit/{limit_id} 204",
        "POST /api/v1/endpoint 201",
        "PATCH /api/v1/endpoint/{endpoint_id} 204",
        "PATCH /api/v1/sim/{sim_id} 204",
        "DELETE /api/v1/endpoint/{endpoint_id} 204",
        "DELETE /api/v1/sim/{sim_id} 204",
        "DELETE /api/v1/service_profile/{profile_id} 409",
        "DELETE /api/v1/service_profile/{profile_id} 204",
        "GET /api/v1/sim 200",
        "GET /api/v1/endpoint 200",
        "PATCH /api/v2/endpoint/multi 204",
    ] {
        assert!(operations.iter().any(|o| o == must), "the flows never produced {must}");
    }
}
