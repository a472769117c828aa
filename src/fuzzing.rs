//! The fuzz targets: what `fuzz/` (cargo-fuzz, coverage-guided) runs, and what
//! `tests/fuzz_corpus.rs` replays over the committed corpora in every test run. Each target takes
//! the fuzzer's bytes, must never panic, and checks the properties its doc names (a broken property
//! panics, which the fuzzer reports as a crash with the input that caused it).
//!
//! The plan targets need a vendor to apply a plan's changes to: [`EmnifyStored::apply`] and [`apply_bics`]
//! play it, with the semantics emnify's OpenAPI spec and BICS's pages give the calls (and the
//! simulators implement); they are written from those documents, not from the plan code.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use arbitrary::{Arbitrary, Result as ArbResult, Unstructured};
use chrono::{TimeZone, Utc};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use reqwest::StatusCode;
use reqwest::header::{HeaderMap, HeaderValue, LOCATION, RETRY_AFTER};
use serde_json::Value;

use crate::backend::bics::map::{self as bics_map, ProfileRow};
use crate::backend::emnify::api;
use crate::backend::emnify::map::{self as emnify_map, DesiredDataLimit, ResolvedProfile};
use crate::backend::http::{Answer, MAX_RETRY_AFTER, retry_after};
use crate::backend::telenor::api as telenor_api;
use crate::backend::{BackendError, ObservedSubscription, ProfileChange, ProfileOp, SubscriptionChange};
use crate::controller::subscription::{Decision, PlanInput, decide};
use crate::crd::{
    BicsAccessType, BicsCategory, BicsProfileStatus, BicsService, BicsServiceProfile, EmnifyServiceProfile,
    ManagementPolicy, PendingChange, PendingOutcome, SubscriptionMode,
};

/// A fuzz target: the fuzzer's bytes in, a panic when a property breaks.
pub type Target = fn(&[u8]);

/// The fuzz targets by name (`fuzz/fuzz_targets/<name>.rs`, `fuzz/corpus/<name>/`).
pub const TARGETS: [(&str, Target); 8] = [
    ("emnify_response", emnify_response),
    ("bics_response", bics_response),
    ("telenor_response", telenor_response),
    ("manifests", manifests),
    ("quantities", quantities),
    ("subscription_plan", subscription_plan),
    ("emnify_profile_plan", emnify_profile_plan),
    ("bics_profile_plan", bics_profile_plan),
];

/// An answer from the fuzzer's bytes: the first two bytes pick the HTTP status (100-999), the
/// first line of the rest is also offered as `Location` and `Retry-After`, all of it is the body.
fn answer(data: &[u8]) -> Answer {
    let (code, body) = match data {
        [a, b, rest @ ..] => (100 + u16::from_le_bytes([*a, *b]) % 900, rest),
        _ => (200, data),
    };
    let mut headers = HeaderMap::new();
    let line = body.split(|b| *b == b'\n').next().unwrap_or_default();
    if let Ok(value) = HeaderValue::from_bytes(line) {
        headers.insert(LOCATION, value.clone());
        headers.insert(RETRY_AFTER, value);
    }
    Answer {
        status: StatusCode::from_u16(code).unwrap_or(StatusCode::OK),
        headers,
        body: bytes::Bytes::copy_from_slice(body),
    }
}

/// What every vendor's error mapping must keep: the action that failed, and a bounded wait.
fn check_error(e: &BackendError, action: &str) {
    assert_eq!(e.action, action, "the error names the action");
    assert!(!e.to_string().is_empty());
    if let crate::backend::ErrorKind::RateLimited { retry_after: Some(d) } = e.kind {
        assert!(d <= MAX_RETRY_AFTER, "Retry-After {d:?} above the cap");
    }
}

fn check_common(a: &Answer) {
    let _ = a.location_id();
    let _ = a.header_u64("x-total-count");
    if let Some(d) = retry_after(&a.headers) {
        assert!(d <= MAX_RETRY_AFTER, "Retry-After {d:?} above the cap");
    }
}

/// emnify's answers as its client and backend read them: error bodies, authentication, service
/// profiles (list and detail, with data limits), services, traffic limits, SIM and endpoint pages,
/// timestamps, JWT claims.
pub fn emnify_response(data: &[u8]) {
    use crate::backend::emnify::client::{error_for, jwt_claims};
    use crate::backend::emnify::subscription::{EndpointFacts, observed};
    let a = answer(data);
    check_common(&a);
    check_error(&error_for("fuzz", a.status, &a.headers, &a.body), "fuzz");
    if let Ok(auth) = a.json::<api::AuthResponse>("fuzz") {
        for token in [&auth.auth_token, &auth.refresh_token].into_iter().flatten() {
            let _ = jwt_claims(token);
        }
    }
    if let Ok(text) = std::str::from_utf8(&a.body) {
        let _ = jwt_claims(text);
        let _ = api::parse_time(text);
    }
    let profiles: Vec<api::ServiceProfile> = a
        .json::<Vec<api::ServiceProfile>>("fuzz")
        .or_else(|_| a.json::<api::ServiceProfile>("fuzz").map(|p| vec![p]))
        .unwrap_or_default();
    let limits: Vec<api::DataLimit> = a.json("fuzz").unwrap_or_default();
    for mut p in profiles {
        p.data_limits = Some(limits.clone());
        let _ = emnify_map::summary(&p, &[]);
        for s in p.service.iter().flatten() {
            for l in &s.traffic_limit {
                let _ = l.label();
            }
        }
    }
    for l in &limits {
        let _ = emnify_map::observed_data_limit_label(l);
    }
    if let Ok(services) = a.json::<Vec<api::Service>>("fuzz") {
        let _ = emnify_map::Catalogue {
            services,
            limits: BTreeMap::new(),
        }
        .service(&k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::String(
            "Data".into(),
        ));
    }
    let sims: Vec<api::Sim> = a.json("fuzz").unwrap_or_default();
    let endpoints: Vec<api::Endpoint> = a.json("fuzz").unwrap_or_default();
    for sim in &sims {
        let o = observed(sim, None);
        assert!(o.mode.is_none() || o.vendor_mode.ends_with("no endpoint"));
    }
    for e in endpoints {
        let sim = e.sim.clone().unwrap_or_default();
        let facts = EndpointFacts::from(e);
        let _ = observed(&sim, Some(&facts));
    }
}

/// BICS's answers: the result-code envelope (HTTP errors and business codes), service profile rows
/// and SIM rows however their text fields are spelled.
pub fn bics_response(data: &[u8]) {
    use crate::backend::bics::client::{error_for, kind_for_code, result_code};
    use crate::backend::bics::{modes_of, observed_from_sim};
    let a = answer(data);
    check_common(&a);
    check_error(&error_for("fuzz", a.status, &a.headers, &a.body), "fuzz");
    let Ok(value) = a.json::<Value>("fuzz") else {
        if let Ok(text) = std::str::from_utf8(&a.body) {
            let _ = bics_map::parse_services(text);
            let _ = bics_map::parse_rat(text);
            let _ = modes_of(text, text.len() % 2 == 0);
        }
        return;
    };
    for envelope in [&value, &value["Response"]] {
        let (code, description) = result_code(envelope);
        if let Some(code) = code {
            let _ = kind_for_code(&code, &description);
        }
        for row in envelope["responseParam"]["rows"].as_array().into_iter().flatten() {
            if let Some(p) = ProfileRow::parse(row) {
                let _ = bics_map::summary(&p, &[]);
            }
            let o = observed_from_sim(row);
            assert!(!o.vendor_mode.is_empty());
        }
    }
}

/// Telenor's answers: error bodies (API and OAuth2), tokens, subscriptions, search pages, service
/// policies, relationship URLs. A relationship URL from an answer never takes a request (and the
/// token with it) to another host.
pub fn telenor_response(data: &[u8]) {
    use crate::backend::telenor::client::error_for;
    use crate::backend::telenor::observed;
    let a = answer(data);
    check_common(&a);
    check_error(&error_for("fuzz", a.status, &a.headers, &a.body), "fuzz");
    let _ = a.json::<telenor_api::TokenResponse>("fuzz");
    if let Ok(r) = a.json::<telenor_api::Resource<telenor_api::ConnectivitySubscription>>("fuzz") {
        let _ = observed(&r.attributes, r.related_id("servicePolicy"));
    }
    if let Ok(page) = a.json::<telenor_api::SearchPage>("fuzz") {
        for s in page.items.iter().flat_map(|i| &i.connectivity_subscriptions) {
            let _ = observed(s, None);
        }
    }
    let _ = a.json::<telenor_api::ServicePolicyList>("fuzz");
    if let Ok(r) = a.json::<telenor_api::Resource<Value>>("fuzz") {
        for url in r.related_urls("connectivitySubscriptions") {
            stays_home(&url);
        }
    }
    if let Ok(text) = std::str::from_utf8(&a.body) {
        stays_home(text);
    }
}

/// `relative_path` of a vendor-sent URL, appended to our endpoint, still names our endpoint.
fn stays_home(url: &str) {
    let Some(path) = telenor_api::relative_path(url) else {
        return;
    };
    assert!(path.starts_with('/'), "{path:?}");
    assert!(!path.contains(".."), "{path:?}");
    let base = "https://iot.example.test";
    if let Ok(joined) = reqwest::Url::parse(&format!("{base}{path}")) {
        assert_eq!(joined.host_str(), Some("iot.example.test"), "{url:?} -> {path:?}");
    }
}

/// Offline mode's manifest loading: the first byte picks YAML or JSON, the rest is the file. Every
/// error is bad input (exit 3); an object that loads, loaded again from its own output, is the same.
pub fn manifests(data: &[u8]) {
    use crate::offline::{EXIT_BAD_INPUT, parse_manifests, prepare_object};
    let Some((first, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    let file = if first % 2 == 0 {
        Path::new("fuzz.yaml")
    } else {
        Path::new("fuzz.json")
    };
    let loaded = match parse_manifests(file, text) {
        Ok(m) => m,
        Err(e) => {
            assert_eq!(e.exit_code(), EXIT_BAD_INPUT, "{e}");
            return;
        }
    };
    for mut m in loaded {
        match prepare_object(&mut m) {
            Ok(()) => {
                let again = serde_json::to_string(&m.object).expect("a prepared object serializes");
                let mut reloaded = parse_manifests(Path::new("again.json"), &again).expect("its own output loads");
                assert_eq!(reloaded.len(), 1);
                prepare_object(&mut reloaded[0]).expect("its own output prepares");
                assert_eq!(reloaded[0].object, m.object, "preparing twice changes nothing");
            }
            Err(e) => assert_eq!(e.exit_code(), EXIT_BAD_INPUT, "{e}"),
        }
    }
}

/// Quantities (data-limit volumes) and durations (flags, annotations): any text, and what parses
/// means what it says (a quantity of bytes is at least one byte and reads back from its digits; a
/// duration reads back from humantime's rendering).
pub fn quantities(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    if let Ok(n) = crate::crd::quantity::bytes(&Quantity(text.to_string())) {
        assert!(n >= 1);
        assert_eq!(crate::crd::quantity::bytes(&Quantity(n.to_string())), Ok(n));
        let _ = crate::crd::quantity::human(n);
    }
    if let Some(d) = crate::crd::parse_duration(&text) {
        let rendered = humantime::format_duration(d).to_string();
        assert_eq!(
            crate::crd::parse_duration(&rendered),
            Some(d),
            "{text:?} -> {rendered:?}"
        );
    }
}

fn mode(u: &mut Unstructured<'_>) -> ArbResult<SubscriptionMode> {
    Ok(*u.choose(&[
        SubscriptionMode::Active,
        SubscriptionMode::Paused,
        SubscriptionMode::Deactivated,
        SubscriptionMode::Terminated,
    ])?)
}

fn small_id(u: &mut Unstructured<'_>) -> ArbResult<String> {
    Ok(format!("p{}", u.int_in_range(0..=3u8)?))
}

/// The subscription plan: for any spec, observation and pending change, never a termination
/// without confirmation, nothing but a report when not `Full`, nothing to a terminated SIM but
/// the refusal; and once its changes are applied, the plan is in sync.
pub fn subscription_plan(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let _ = subscription_plan_from(&mut u);
}

fn subscription_plan_from(u: &mut Unstructured<'_>) -> ArbResult<()> {
    let want_mode = if bool::arbitrary(u)? { Some(mode(u)?) } else { None };
    let want_profile = if bool::arbitrary(u)? { Some(small_id(u)?) } else { None };
    let mut observed = ObservedSubscription {
        mode: if bool::arbitrary(u)? { Some(mode(u)?) } else { None },
        service_profile_id: if bool::arbitrary(u)? { Some(small_id(u)?) } else { None },
        vendor_mode: "fuzz".into(),
        ..Default::default()
    };
    for _ in 0..u.int_in_range(0..=2u8)? {
        observed.equivalent.push(mode(u)?);
    }
    let now = Utc.timestamp_opt(1_800_000_000, 0).unwrap();
    let pending = if bool::arbitrary(u)? {
        Some(PendingChange {
            mode: if bool::arbitrary(u)? { Some(mode(u)?) } else { None },
            service_profile_id: if bool::arbitrary(u)? { Some(small_id(u)?) } else { None },
            requested_at: now - chrono::Duration::seconds(i64::from(u.int_in_range(-60..=3600i32)?)),
            outcome: *u.choose(&[PendingOutcome::Accepted, PendingOutcome::Unknown])?,
        })
    } else {
        None
    };
    let input = PlanInput {
        mode: want_mode,
        service_profile_id: want_profile.as_deref(),
        observed: &observed,
        pending: pending.as_ref(),
        termination_confirmed: bool::arbitrary(u)?,
        policy: *u.choose(&[
            ManagementPolicy::Full,
            ManagementPolicy::ObserveOnly,
            ManagementPolicy::Paused,
        ])?,
        now,
        pending_timeout: Duration::from_secs(u64::from(u.int_in_range(0..=1800u16)?)),
    };
    // `import`'s property: the SIM as imported (its mode, its profile) is in sync with itself,
    // under any policy.
    let imported = decide(&PlanInput {
        mode: crate::import::imported_mode(&observed),
        service_profile_id: observed.service_profile_id.as_deref(),
        pending: None,
        ..input
    });
    assert_eq!(
        imported,
        Decision::InSync,
        "an imported SIM plans {imported:?}: {observed:?}"
    );
    let decision = decide(&input);
    let terminated = observed.mode == Some(SubscriptionMode::Terminated);
    let changes = match &decision {
        Decision::InSync => return Ok(()),
        Decision::TerminationNotConfirmed => {
            assert!(!input.termination_confirmed && input.policy == ManagementPolicy::Full);
            assert_eq!(want_mode, Some(SubscriptionMode::Terminated));
            return Ok(());
        }
        Decision::Irreversible(m) => {
            assert!(terminated && Some(*m) == want_mode);
            return Ok(());
        }
        Decision::Report(c) => {
            assert_ne!(input.policy, ManagementPolicy::Full, "{decision:?}");
            c
        }
        Decision::Apply(c) | Decision::AwaitPending(c) => {
            assert_eq!(input.policy, ManagementPolicy::Full, "{decision:?}");
            c
        }
    };
    assert!(!changes.is_empty());
    assert!(!terminated, "a change planned for a terminated SIM: {decision:?}");
    if changes.contains(&SubscriptionChange::SetMode(SubscriptionMode::Terminated)) {
        assert_eq!(changes.len(), 1, "a termination carries nothing else: {decision:?}");
        assert!(
            input.termination_confirmed || matches!(decision, Decision::Report(_)),
            "termination without confirmation: {decision:?}"
        );
    }
    // The vendor applies them; the plan is then in sync.
    let mut after = observed.clone();
    for c in changes {
        match c {
            SubscriptionChange::SetMode(m) => {
                after.mode = Some(*m);
                after.equivalent.clear();
            }
            SubscriptionChange::SetServiceProfile(p) => after.service_profile_id = Some(p.clone()),
        }
    }
    let again = decide(&PlanInput {
        observed: &after,
        pending: None,
        ..input
    });
    assert_eq!(again, Decision::InSync, "after applying {changes:?} to {observed:?}");
    Ok(())
}

/// A small id, so that generated desired and observed states often share ids.
fn id(u: &mut Unstructured<'_>) -> ArbResult<i64> {
    Ok(i64::from(u.int_in_range(1..=6u8)?))
}

fn opt_id(u: &mut Unstructured<'_>) -> ArbResult<Option<i64>> {
    Ok(if bool::arbitrary(u)? { Some(id(u)?) } else { None })
}

fn text(u: &mut Unstructured<'_>) -> ArbResult<String> {
    Ok((*u.choose(&["iot", "IoT", "", "iot ", "fleet", "ü"])?).to_string())
}

fn desired_emnify(u: &mut Unstructured<'_>) -> ArbResult<ResolvedProfile> {
    let settings = EmnifyServiceProfile {
        allowed_3g: bool::arbitrary(u)?,
        allowed_4g: bool::arbitrary(u)?,
        allowed_nb_iot: bool::arbitrary(u)?,
        allowed_nb_iot_geo: bool::arbitrary(u)?,
        apply_data_quota: bool::arbitrary(u)?,
        apply_sms_quota: bool::arbitrary(u)?,
        sms_p2p_int: bool::arbitrary(u)?,
        sms_p2p_ext: bool::arbitrary(u)?,
        nipdp: bool::arbitrary(u)?,
        api_callback_id: opt_id(u)?,
        api_secret_id: opt_id(u)?,
        moc_callback_id: opt_id(u)?,
        breakout_region_id: opt_id(u)?,
        dns_id: opt_id(u)?,
        esme_interface_type_id: opt_id(u)?,
        services: None,
        data_limits: None,
    };
    let services = if bool::arbitrary(u)? {
        let mut out = BTreeMap::new();
        for _ in 0..u.int_in_range(0..=3u8)? {
            let sid = id(u)?;
            let mut limits = BTreeMap::new();
            for _ in 0..u.int_in_range(0..=2u8)? {
                limits.insert(id(u)? + 100, "limit".to_string());
            }
            out.insert(sid, (format!("service {sid}"), limits));
        }
        Some(out)
    } else {
        None
    };
    // As resolve makes them: one per scope, sorted, a volume of at most i64::MAX bytes.
    let data_limits = if bool::arbitrary(u)? {
        let mut out = Vec::new();
        for satellite_only in [false, true] {
            if bool::arbitrary(u)? {
                out.push(DesiredDataLimit {
                    satellite_only,
                    volume: *u.choose(&[1, 1_000_000, 1 << 30, i64::MAX as u64])?,
                    warning_percent: if bool::arbitrary(u)? {
                        Some(i64::from(u.int_in_range(1..=100u8)?))
                    } else {
                        None
                    },
                });
            }
        }
        Some(out)
    } else {
        None
    };
    Ok(ResolvedProfile {
        name: text(u)?,
        description: if bool::arbitrary(u)? { Some(text(u)?) } else { None },
        settings,
        services,
        data_limits,
    })
}

/// emnify's boolean profile fields and its `{"id": ..}` references (OpenAPI `ServiceProfile`).
const EMNIFY_FLAGS: [&str; 9] = [
    "allowed_3g",
    "allowed_4g",
    "allowed_nb_iot",
    "allowed_nb_iot_geo",
    "apply_data_quota",
    "apply_sms_quota",
    "sms_p2p_int",
    "sms_p2p_ext",
    "nipdp",
];
const EMNIFY_REFERENCES: [&str; 6] = [
    "api_callback",
    "api_secret",
    "moc_callback",
    "esme_interface_type",
    "breakout_region",
    "dns",
];

/// A service profile as emnify stores it: the profile's JSON and its data limits' JSON.
#[derive(Debug, Clone)]
pub struct EmnifyStored {
    pub profile: serde_json::Map<String, Value>,
    pub data_limits: Vec<Value>,
}

impl EmnifyStored {
    /// What the client reads (detail view, then the data limits).
    pub fn read(&self) -> api::ServiceProfile {
        let mut p: api::ServiceProfile =
            serde_json::from_value(Value::Object(self.profile.clone())).expect("a stored profile parses");
        p.data_limits = Some(
            self.data_limits
                .iter()
                .map(|l| serde_json::from_value(l.clone()).expect("a stored data limit parses"))
                .collect(),
        );
        p
    }

    fn services(&mut self) -> &mut Vec<Value> {
        let services = self
            .profile
            .entry("service")
            .or_insert_with(|| Value::Array(Vec::new()));
        if !services.is_array() {
            *services = Value::Array(Vec::new());
        }
        services.as_array_mut().expect("an array")
    }

    fn service(&mut self, service_id: i64) -> Result<&mut Value, String> {
        self.services()
            .iter_mut()
            .find(|s| s["id"] == service_id)
            .ok_or_else(|| format!("service {service_id} is not on the profile"))
    }

    /// emnify as its OpenAPI spec describes the calls: `PATCH` sets the fields sent; a service is
    /// added without limits and removed with its limits; limits attach to and detach from a
    /// service; a data limit is stored as posted (its volume is an int64: a larger one is
    /// refused) with a new id, and deleted by id. `Err` is emnify refusing the call.
    pub fn apply(&mut self, change: &emnify_map::Change) -> Result<(), String> {
        use emnify_map::Change;
        match change {
            Change::Patch { body } => {
                for (k, v) in body {
                    if !(k == "name"
                        || k == "description"
                        || EMNIFY_FLAGS.contains(&k.as_str())
                        || EMNIFY_REFERENCES.contains(&k.as_str()))
                    {
                        return Err(format!("{k} is not a service profile field"));
                    }
                    self.profile.insert(k.clone(), v.clone());
                }
            }
            Change::AddService { service_id } => {
                if self.service(*service_id).is_ok() {
                    return Err(format!("service {service_id} is already on the profile"));
                }
                self.services()
                    .push(serde_json::json!({"id": service_id, "traffic_limit": []}));
            }
            Change::RemoveService { service_id } => {
                self.service(*service_id)?;
                self.services().retain(|s| s["id"] != *service_id);
            }
            Change::AttachLimit { service_id, limit_id } => {
                let service = self.service(*service_id)?;
                if !service["traffic_limit"].is_array() {
                    service["traffic_limit"] = Value::Array(Vec::new());
                }
                let limits = service["traffic_limit"].as_array_mut().expect("an array");
                if limits.iter().any(|l| l["id"] == *limit_id) {
                    return Err(format!("traffic limit {limit_id} is already attached"));
                }
                limits.push(serde_json::json!({"id": limit_id}));
            }
            Change::DetachLimit { service_id, limit_id } => {
                let service = self.service(*service_id)?;
                let limits = service["traffic_limit"]
                    .as_array_mut()
                    .ok_or_else(|| format!("service {service_id} has no traffic limits"))?;
                if !limits.iter().any(|l| l["id"] == *limit_id) {
                    return Err(format!("traffic limit {limit_id} is not attached"));
                }
                limits.retain(|l| l["id"] != *limit_id);
            }
            Change::AddDataLimit { body } => {
                if body["volume"].as_i64().is_none() {
                    return Err(format!("volume {} is not an int64", body["volume"]));
                }
                let mut limit = body.clone();
                limit["id"] = Value::from(1_000 + self.data_limits.len());
                self.data_limits.push(limit);
            }
            Change::DeleteDataLimit { limit_id } => {
                if !self.data_limits.iter().any(|l| l["id"] == *limit_id) {
                    return Err(format!("data limit {limit_id} does not exist"));
                }
                self.data_limits.retain(|l| l["id"] != *limit_id);
            }
        }
        Ok(())
    }
}

/// An observed emnify profile, fields absent, null or set.
fn observed_emnify(u: &mut Unstructured<'_>) -> ArbResult<EmnifyStored> {
    let mut p = serde_json::Map::new();
    p.insert("id".into(), Value::from(1));
    p.insert("name".into(), Value::from(text(u)?));
    if bool::arbitrary(u)? {
        p.insert("description".into(), Value::from(text(u)?));
    }
    for field in EMNIFY_FLAGS {
        match u.int_in_range(0..=2u8)? {
            0 => {}
            1 => {
                p.insert(field.into(), Value::Null);
            }
            _ => {
                p.insert(field.into(), Value::from(bool::arbitrary(u)?));
            }
        }
    }
    for field in EMNIFY_REFERENCES {
        if bool::arbitrary(u)? {
            p.insert(field.into(), serde_json::json!({"id": id(u)?}));
        }
    }
    if bool::arbitrary(u)? {
        let mut services: Vec<Value> = Vec::new();
        for _ in 0..u.int_in_range(0..=3u8)? {
            let sid = id(u)?;
            if services.iter().any(|s| s["id"] == sid) {
                continue;
            }
            let mut limits: Vec<Value> = Vec::new();
            for _ in 0..u.int_in_range(0..=2u8)? {
                let lid = id(u)? + 100;
                if !limits.iter().any(|l| l["id"] == lid) {
                    limits.push(serde_json::json!({"id": lid}));
                }
            }
            services.push(serde_json::json!({"id": sid, "traffic_limit": limits}));
        }
        p.insert("service".into(), Value::from(services));
    }
    let mut data_limits = Vec::new();
    for n in 0..u.int_in_range(0..=3u8)? {
        let mut l = serde_json::json!({
            "id": 200 + i64::from(n),
            "service": {"id": *u.choose(&[emnify_map::DATA_SERVICE, 1])?},
            "volume": *u.choose(&[1i64, 1_000_000, 1 << 30, i64::MAX])?,
            "satellite_only": bool::arbitrary(u)?,
        });
        if bool::arbitrary(u)? {
            l["period"] = serde_json::json!({"id": *u.choose(&[emnify_map::MONTHLY, 1])?});
        }
        if bool::arbitrary(u)? {
            l["warning_percent"] = Value::from(u.int_in_range(1..=100u8)?);
        }
        data_limits.push(l);
    }
    Ok(EmnifyStored {
        profile: p,
        data_limits,
    })
}

/// `import`'s property: the settings read from a profile, resolved against a catalogue that offers
/// what the profile has, plan no change against it.
fn imported_emnify_is_in_sync(observed: &api::ServiceProfile) {
    let mut catalogue = emnify_map::Catalogue::default();
    for service in observed.service.iter().flatten() {
        let Some(sid) = service.id else { continue };
        catalogue.services.push(api::Service {
            id: Some(sid),
            description: service.description.clone(),
        });
        catalogue.limits.insert(sid, service.traffic_limit.clone());
    }
    let (settings, _) = emnify_map::settings_of(observed, &catalogue);
    let description = observed.description.clone().filter(|d| !d.is_empty());
    let resolved = emnify_map::resolve(&observed.name, description.as_deref(), &settings, &catalogue)
        .unwrap_or_else(|e| panic!("imported settings do not resolve: {e}\n{settings:#?}"));
    let changes = emnify_map::plan(&resolved, observed);
    assert!(
        changes.is_empty(),
        "imported settings plan changes: {changes:#?}\n{settings:#?}"
    );
}

fn emnify_ops(changes: &[ProfileChange]) -> Vec<&emnify_map::Change> {
    changes
        .iter()
        .map(|c| match &c.op {
            ProfileOp::Emnify(op) => op,
            other => panic!("an emnify plan with {other:?}"),
        })
        .collect()
}

/// The emnify profile plan: any desired profile (as resolve makes them) against any observed one:
/// the calls come in an order emnify accepts, each is accepted, and after them the plan is empty.
/// Also, the settings `import` reads from the observed profile plan no change against it.
pub fn emnify_profile_plan(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let (Ok(desired), Ok(mut stored)) = (desired_emnify(&mut u), observed_emnify(&mut u)) else {
        return;
    };
    imported_emnify_is_in_sync(&stored.read());
    let changes = emnify_map::plan(&desired, &stored.read());
    for change in emnify_ops(&changes) {
        if let Err(refused) = stored.apply(change) {
            panic!("emnify refuses {change:?}: {refused}\nplan: {changes:#?}");
        }
    }
    let after = stored.read();
    let again = emnify_map::plan(&desired, &after);
    assert!(again.is_empty(), "not in sync after {changes:#?}:\n{again:#?}");
    let _ = emnify_map::summary(&after, &again);
}

fn bics_spec(u: &mut Unstructured<'_>) -> ArbResult<BicsServiceProfile> {
    let all = [
        BicsService::Data,
        BicsService::SmsMo,
        BicsService::SmsMt,
        BicsService::NbIot,
    ];
    let mut services = Vec::new();
    for s in all {
        if bool::arbitrary(u)? {
            services.push(s);
        }
    }
    if services.is_empty() {
        services.push(*u.choose(&all)?);
    }
    // The CRD's rule: accessType with Data / SMS; BICS refuses it without them.
    let needs = services.iter().any(|s| *s != BicsService::NbIot);
    let access_type = if needs {
        Some(*u.choose(&[
            BicsAccessType::G2,
            BicsAccessType::G2G3,
            BicsAccessType::G2G3G4,
            BicsAccessType::G2G3G4G5,
        ])?)
    } else {
        None
    };
    Ok(BicsServiceProfile {
        category: *u.choose(&[BicsCategory::Base, BicsCategory::Addon])?,
        status: *u.choose(&[BicsProfileStatus::Active, BicsProfileStatus::Inactive])?,
        services,
        access_type,
    })
}

/// A `GetServiceProfile` row in the spellings BICS may use.
fn bics_row(u: &mut Unstructured<'_>) -> ArbResult<Value> {
    let mut row = serde_json::json!({"profileId": "SP_1", "profileName": text(u)?});
    if bool::arbitrary(u)? {
        let names = ["DATA", "SMS-MO", "SMS MT", "nb-iot", "4", "VOICE", ""];
        let n = u.int_in_range(0..=3u8)?;
        let picked: Vec<&str> = (0..n).map(|_| u.choose(&names).copied()).collect::<ArbResult<_>>()?;
        row["serviceName"] = Value::from(picked.join(*u.choose(&["|", ",", " "])?));
    }
    if bool::arbitrary(u)? {
        row["ratTypeName"] = Value::from(*u.choose(&["2G/3G/4G/5G", "2G", "06", "LTE", "2G/3G", "??"])?);
    }
    if bool::arbitrary(u)? {
        row["category"] = Value::from(*u.choose(&["0", "1", "Base", "ADDON", "x"])?);
    }
    Ok(row)
}

/// BICS as its pages describe `ModifyServiceProfile`: the fields sent replace the stored ones
/// (`service` as ids, `accessType` as a code); the read then shows them (`ratTypeName` only
/// while an access type is set; the write-only `status` never). A category cannot be changed.
pub fn apply_bics(row: &mut Value, change: &bics_map::Change) -> Result<(), String> {
    match change {
        bics_map::Change::Modify { fields } => {
            if let Some(name) = fields.get("name") {
                row["profileName"] = name.clone();
            }
            if let Some(services) = fields.get("service").and_then(Value::as_str) {
                let names: Vec<&str> = services
                    .split('|')
                    .map(|id| id.parse().map(bics_map::service_name))
                    .collect::<Result<_, _>>()
                    .map_err(|e| format!("service {services:?}: {e}"))?;
                row["serviceName"] = Value::from(names.join("|"));
                let needs = names.iter().any(|n| ["DATA", "SMS-MO", "SMS-MT"].contains(n));
                if !needs && !fields.contains_key("accessType") {
                    row.as_object_mut().map(|r| r.remove("ratTypeName"));
                }
            }
            if let Some(code) = fields.get("accessType").and_then(Value::as_str) {
                row["ratTypeName"] = Value::from(code);
            }
            Ok(())
        }
        bics_map::Change::Immutable { field } => Err(format!("BICS cannot change {field}")),
    }
}

/// The BICS profile plan: any valid spec against any row; after its `Modify` is applied (and the
/// write-only fingerprint recorded, as the operator does), only an `Immutable` category remains.
/// Also, the spec `import` reads from the row plans no change against it.
pub fn bics_profile_plan(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let (Ok(name), Ok(spec), Ok(mut raw), Ok(written)) = (
        text(&mut u),
        bics_spec(&mut u),
        bics_row(&mut u),
        Option::<bool>::arbitrary(&mut u),
    ) else {
        return;
    };
    let Some(row) = ProfileRow::parse(&raw) else {
        return;
    };
    let fingerprint = bics_map::write_only(&spec);
    let written = written.map(|matches| {
        if matches {
            fingerprint.clone()
        } else {
            "status=0".into()
        }
    });
    // `import`'s property: the spec read from a row plans no change against it (the status,
    // which BICS never returns, counted as sent).
    if let Ok(imported) = bics_map::settings_of(&row) {
        let again = bics_map::plan(&row.name, &imported, &row, Some(&bics_map::write_only(&imported)));
        assert!(
            again.is_empty(),
            "imported spec {imported:?} plans {again:#?} against {row:?}"
        );
    }
    let changes = bics_map::plan(&name, &spec, &row, written.as_deref());
    let mut recorded = written.clone();
    for c in &changes {
        let ProfileOp::Bics(op) = &c.op else {
            panic!("a BICS plan with {:?}", c.op);
        };
        if let bics_map::Change::Modify { fields } = op {
            assert!(!fields.is_empty());
            apply_bics(&mut raw, op).unwrap_or_else(|e| panic!("{e}: {changes:#?}"));
            recorded = Some(fingerprint.clone());
        }
    }
    let after = ProfileRow::parse(&raw).expect("the row keeps its id");
    let again = bics_map::plan(&name, &spec, &after, recorded.as_deref());
    assert!(
        again
            .iter()
            .all(|c| matches!(c.op, ProfileOp::Bics(bics_map::Change::Immutable { .. }))),
        "not in sync after {changes:#?}:\nrow {raw}\n{again:#?}"
    );
    assert_eq!(bics_map::matches(&name, &spec, &after), again.is_empty());
}
