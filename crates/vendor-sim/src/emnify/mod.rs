//! A stateful simulator of the emnify REST API (`https://cdn.emnify.net/api/v1/...`).
//!
//! Both connectivity-operator's emnify client and emnify's official Python SDK run against it.
//! [`EmnifySim`] owns the world (one organisation, seeded deterministically); [`EmnifySim::router`]
//! exposes it over HTTP together with admin routes under `/_sim/`; [`EmnifySim::serve`] binds a
//! port and returns a [`RunningSim`]. Behaviour follows `shared/vendors/emnify.md`; choices where
//! emnify is silent are listed in the crate README.
//!
//! Request pipeline (one comment per step in `api_entry`): latency -> fault injection ->
//! rate limits -> bearer check -> resource handler -> request log.

mod api;
mod error;
mod jwt;
mod listing;
mod model;
mod ratelimit;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Query, Request, State as AxumState};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use rand::RngCore;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use self::api::ApiRequest;
use self::error::{ApiError, Reply};
use self::model::{REQUEST_LOG_CAP, State};
use crate::chaos::{ChaosConfig, ChaosCounts, ChaosSlot, Draw};

/// The fixed, documented demo application token a default simulator accepts.
pub const DEMO_APPLICATION_TOKEN: &str = "emnify-sim-demo-application-token-0000000000000000";
/// Default user login (the password is sent as its SHA-1 hex, as emnify requires).
pub const DEMO_USERNAME: &str = "demo@connectivity-operator.local";
/// Default user password in clear text; clients send `sha1_hex(DEMO_PASSWORD)`.
pub const DEMO_PASSWORD: &str = "demo-password";

/// One `/api` request and its answer, as recorded with `EmnifyConfig::record_exchanges`.
#[derive(Clone, Debug, PartialEq)]
pub struct Exchange {
    pub method: String,
    /// Path without the query, e.g. `/api/v1/endpoint/12`.
    pub path: String,
    /// The request body, when it was JSON.
    pub request: Option<Value>,
    pub status: u16,
    /// The answer's JSON body, if any.
    pub response: Option<Value>,
}

/// Simulator switches.
#[derive(Clone, Debug)]
pub struct EmnifyConfig {
    /// Application token accepted by `POST /api/v1/authenticate`.
    pub application_token: String,
    /// User login; the password is checked as SHA-1 hex of `password`.
    pub username: String,
    pub password: String,
    /// Lifetime of issued auth tokens (`exp - iat`); emnify documents 240 minutes.
    pub token_ttl: Duration,
    /// Enforce the documented per-path token buckets (spec §3).
    pub rate_limits: bool,
    /// Multiplies every documented rate and burst (e.g. 0.1 to provoke 429s, 100 for load tests).
    pub rate_limit_scale: f64,
    /// Added to every API request before it is handled.
    pub latency: Duration,
    /// Listings carry `X-Total-Pages`, `X-Total-Count`, `X-Count-Per-Page`, `X-Current-Page`
    /// and `Link` (emnify's docs and recorded answers; the OpenAPI spec declares no headers).
    /// Off: bare arrays, so a client must find the end of a listing without them.
    pub paging_headers: bool,
    /// Keep every `/api` exchange with its JSON bodies ([`EmnifySim::exchanges`]), e.g. to check
    /// requests and answers against emnify's OpenAPI spec. Off by default (memory).
    pub record_exchanges: bool,
    /// Inferred: a `PATCH /api/v2/endpoint/multi` whose element fails keeps the elements applied
    /// before it (emnify does not document whether a failed bulk update applies part of the
    /// list). Off: all or nothing.
    pub bulk_partial_apply: bool,
    pub seed: SeedConfig,
}

impl Default for EmnifyConfig {
    fn default() -> Self {
        Self {
            application_token: DEMO_APPLICATION_TOKEN.to_string(),
            username: DEMO_USERNAME.to_string(),
            password: DEMO_PASSWORD.to_string(),
            token_ttl: Duration::from_secs(14_400),
            rate_limits: true,
            rate_limit_scale: 1.0,
            latency: Duration::ZERO,
            paging_headers: true,
            record_exchanges: false,
            bulk_partial_apply: false,
            seed: SeedConfig::default(),
        }
    }
}

/// Size and randomness of the seeded world.
#[derive(Clone, Debug)]
pub struct SeedConfig {
    /// Endpoints created with an Activated SIM each.
    pub endpoints: usize,
    /// Unassigned SIMs in status Issued.
    pub free_sims: usize,
    /// Seed for ids, ICCIDs/IMSIs/MSISDNs, IMEIs and timestamps.
    pub rng_seed: u64,
}

impl Default for SeedConfig {
    fn default() -> Self {
        Self {
            endpoints: 25,
            free_sims: 10,
            rng_seed: 42,
        }
    }
}

/// A scripted failure: the next `count` requests matching `method` (any if `None`) and
/// `path_prefix` (compared with the request path, e.g. `/api/v1/service_profile`) answer
/// `status` instead of being handled. A `status` below 400 only delays (by `delay`) and then
/// handles the request normally.
#[derive(Clone, Debug)]
pub struct Fault {
    pub method: Option<String>,
    pub path_prefix: String,
    pub status: u16,
    pub count: u32,
    /// `Retry-After` seconds to send; emnify documents none, so `None` by default.
    pub retry_after: Option<u32>,
    /// Wait this long before answering.
    pub delay: Option<Duration>,
}

/// JSON form of [`Fault`] for `POST /_sim/faults`.
#[derive(Deserialize)]
struct FaultBody {
    method: Option<String>,
    #[serde(default)]
    path_prefix: String,
    status: u16,
    #[serde(default = "one")]
    count: u32,
    retry_after: Option<u32>,
    delay_ms: Option<u64>,
}

fn one() -> u32 {
    1
}

/// The simulator: cheap to clone, all clones share one world.
#[derive(Clone)]
pub struct EmnifySim {
    state: Arc<Mutex<State>>,
    chaos: ChaosSlot,
}

impl crate::chaos::HasChaos for EmnifySim {
    fn chaos(&self) -> &ChaosSlot {
        &self.chaos
    }
}

impl std::fmt::Debug for EmnifySim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmnifySim").finish_non_exhaustive()
    }
}

/// A simulator serving on a local port.
pub struct RunningSim {
    /// `http://127.0.0.1:PORT`; plays the role of `https://cdn.emnify.net`.
    pub url: String,
    pub sim: EmnifySim,
    shutdown: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl RunningSim {
    /// `{"application_token", "username", "password", "password_sha1"}` for clients and scripts.
    pub fn credentials(&self) -> Value {
        let cfg = self.sim.lock().config.clone();
        json!({
            "application_token": cfg.application_token,
            "username": cfg.username,
            "password": cfg.password,
            "password_sha1": sha1_hex(&cfg.password),
        })
    }

    /// Stops accepting connections and waits for the server task to finish.
    pub async fn shutdown(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Err(e) = (&mut self.task).await {
            tracing::warn!(error = %e, "emnify simulator task ended abnormally");
        }
    }
}

/// SHA-1 hex of a password, the form `POST /authenticate` expects.
pub fn sha1_hex(password: &str) -> String {
    use sha1::Digest;
    hex::encode(sha1::Sha1::digest(password.as_bytes()))
}

impl EmnifySim {
    pub fn new(config: EmnifyConfig) -> Self {
        let mut key = vec![0u8; 48];
        rand::rng().fill_bytes(&mut key);
        Self {
            state: Arc::new(Mutex::new(model::seed(config, key))),
            chaos: ChaosSlot::default(),
        }
    }

    /// Locks the world; a handler that panicked cannot leave it half-written in a way that
    /// matters more than losing the simulator, so poisoning is ignored.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Every emnify route plus the `/_sim/` admin routes.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/_sim/state", get(admin_state))
            .route("/_sim/faults", post(admin_fault))
            .route(
                "/_sim/chaos",
                get(crate::chaos::admin_get::<Self>).post(crate::chaos::admin_set::<Self>),
            )
            .route("/_sim/expire-tokens", post(admin_expire))
            .route("/_sim/requests", get(admin_requests))
            .route("/_sim/service_profiles", get(admin_profiles))
            .route("/_sim/endpoint/{id}/connectivity", post(admin_connectivity))
            .fallback(api_entry)
            .with_state(self.clone())
    }

    /// Binds `addr` (port 0 picks a free port), serves in a background task and returns.
    pub async fn serve(self, addr: SocketAddr) -> std::io::Result<RunningSim> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let local = listener.local_addr()?;
        let (tx, rx) = oneshot::channel::<()>();
        let app = self.router();
        let task = tokio::spawn(async move {
            let server = axum::serve(crate::no_delay(listener), app).with_graceful_shutdown(async {
                let _ = rx.await;
            });
            if let Err(e) = server.await {
                tracing::error!(error = %e, "emnify simulator server failed");
            }
        });
        Ok(RunningSim {
            url: format!("http://{local}"),
            sim: self,
            shutdown: Some(tx),
            task,
        })
    }

    /// Detail view (as `GET /service_profile/{id}`) of every profile.
    pub fn service_profiles(&self) -> Vec<Value> {
        let s = self.lock();
        s.service_profiles.values().map(|p| s.profile_detail(p)).collect()
    }

    pub fn service_profile(&self, id: i64) -> Option<Value> {
        let s = self.lock();
        s.service_profiles.get(&id).map(|p| s.profile_detail(p))
    }

    /// Every auth token issued so far is expired from now on (401 1103 on use); new
    /// `/authenticate` calls work as before. Refresh tokens stay valid.
    pub fn expire_tokens(&self) {
        self.lock().live_auth_tokens.clear();
    }

    pub fn inject_fault(&self, fault: Fault) {
        if fault.count > 0 {
            self.lock().faults.push(fault);
        }
    }

    /// Seeded random faults on every API call from now on (see [`crate::chaos`]); an inactive
    /// config turns them off.
    pub fn set_chaos(&self, config: ChaosConfig) -> Result<(), String> {
        self.chaos.set(config)
    }

    /// Faults the chaos streams injected so far.
    pub fn chaos_counts(&self) -> ChaosCounts {
        self.chaos.counts()
    }

    /// Every endpoint as `GET /endpoint/{id}` shows it.
    pub fn endpoints(&self) -> Vec<Value> {
        let s = self.lock();
        s.endpoints.values().map(|e| s.endpoint_json(e, true)).collect()
    }

    /// Every SIM (deleted ones are gone) as `GET /sim/{id}` shows it.
    pub fn sims(&self) -> Vec<Value> {
        let s = self.lock();
        s.sims.values().map(|sim| s.sim_json(sim)).collect()
    }

    /// `(iccid, imsi)` of the SIMs deleted through the API (terminations), in order.
    pub fn deleted_sims(&self) -> Vec<(String, String)> {
        self.lock().deleted_sims.clone()
    }

    /// Creates that found their object already there (see the README's Rust hooks).
    pub fn repeated_creates(&self) -> u64 {
        self.lock().repeated_creates
    }

    /// Bulk requests (`/api/v2/.../multi`) that arrived while another was being served.
    pub fn bulk_overlaps(&self) -> u64 {
        self.lock().bulk_overlaps
    }

    /// Total `/api` requests received (all outcomes), excluding `/_sim`.
    pub fn request_count(&self) -> u64 {
        self.lock().request_count
    }

    /// The last (up to 10 000) API requests: method, path with query, status.
    /// Every `/api` exchange handled since the simulator started, oldest first, when
    /// `EmnifyConfig::record_exchanges` is on (empty otherwise).
    pub fn exchanges(&self) -> Vec<Exchange> {
        self.lock().exchanges.clone()
    }

    fn record_exchange(&self, req: &ApiRequest, status: u16, answer: &Option<Value>) {
        let mut s = self.lock();
        if !s.config.record_exchanges {
            return;
        }
        s.exchanges.push(Exchange {
            method: req.method.clone(),
            path: format!("/api{}", req.path),
            request: serde_json::from_slice(&req.body).ok(),
            status,
            response: answer.clone(),
        });
    }

    pub fn requests(&self) -> Vec<(String, String, u16)> {
        self.lock().request_log.iter().cloned().collect()
    }

    /// Creates an endpoint (no SIM, Enabled, first tariff profile) that uses `profile_id`, so the
    /// profile's `used_count` goes up; returns the endpoint id.
    ///
    /// # Panics
    /// If the profile does not exist or the IP space is full: this is a test hook, and a clear
    /// panic beats a silently inconsistent world.
    pub fn assign_profile_to_new_endpoint(&self, profile_id: i64) -> i64 {
        let mut s = self.lock();
        let tariff = s.tariff_profiles.keys().next().copied();
        let n = s.endpoints.len() + 1;
        let body = json!({
            "name": format!("hook-endpoint-{n}"),
            "status": {"id": 0},
            "service_profile": {"id": profile_id},
            "tariff_profile": {"id": tariff},
        });
        let Value::Object(body) = body else {
            unreachable!("json! object literal")
        };
        match s.create_endpoint(&body) {
            Ok(id) => id,
            Err(e) => panic!("assign_profile_to_new_endpoint({profile_id}) failed: {:?}", e.body),
        }
    }

    /// Out-of-band change (someone editing the profile in the Portal); same fields as PATCH.
    ///
    /// # Panics
    /// If the profile does not exist or the patch is invalid.
    pub fn patch_service_profile(&self, id: i64, patch: Value) {
        let Value::Object(body) = patch else {
            panic!("patch_service_profile: patch must be a JSON object")
        };
        if let Err(e) = self.lock().patch_profile(id, &body) {
            panic!("patch_service_profile({id}) failed: {:?}", e.body);
        }
    }

    /// Out-of-band create (e.g. a profile made in the Portal, to test adoption); returns its id.
    ///
    /// # Panics
    /// If the body is invalid (e.g. no `name`).
    pub fn create_service_profile(&self, body: Value) -> i64 {
        let Value::Object(body) = body else {
            panic!("create_service_profile: body must be a JSON object")
        };
        match self.lock().create_profile(&body) {
            Ok(id) => id,
            Err(e) => panic!("create_service_profile failed: {:?}", e.body),
        }
    }

    /// Sets what `GET /endpoint/{id}/connectivity` reports: `OFFLINE`, `ATTACHED`, `ONLINE` or
    /// `BLOCKED`. Returns false for an unknown endpoint or status.
    pub fn set_connectivity(&self, endpoint_id: i64, status: &str) -> bool {
        let status = status.to_ascii_uppercase();
        if !matches!(status.as_str(), "OFFLINE" | "ATTACHED" | "ONLINE" | "BLOCKED") {
            return false;
        }
        match self.lock().endpoints.get_mut(&endpoint_id) {
            Some(e) => {
                e.connectivity = status;
                true
            }
            None => false,
        }
    }

    /// Counts of what the simulator holds (also `GET /_sim/state`).
    pub fn state_summary(&self) -> Value {
        let s = self.lock();
        json!({
            "organisation": {"id": s.org.id, "name": s.org.name},
            "service_profiles": s.service_profiles.len(),
            "tariff_profiles": s.tariff_profiles.len(),
            "endpoints": s.endpoints.len(),
            "sims": s.sims.len(),
            "free_sims": s.sims.values().filter(|x| x.endpoint.is_none()).count(),
            "activated_sims": s.sims.values().filter(|x| x.status == 1).count(),
            "dns": s.dns.len(),
            "api_callbacks": s.api_callbacks.len(),
            "api_secrets": s.api_secrets.len(),
            "live_auth_tokens": s.live_auth_tokens.len(),
            "pending_faults": s.faults.iter().map(|f| u64::from(f.count)).sum::<u64>(),
            "bulk_overlaps": s.bulk_overlaps,
            "request_count": s.request_count,
        })
    }

    /// Takes the first matching fault, decrementing its count.
    fn take_fault(&self, method: &str, path: &str) -> Option<Fault> {
        let mut s = self.lock();
        let idx = s.faults.iter().position(|f| {
            f.method.as_deref().is_none_or(|m| m.eq_ignore_ascii_case(method)) && path.starts_with(&f.path_prefix)
        })?;
        let fault = s.faults[idx].clone();
        s.faults[idx].count -= 1;
        if s.faults[idx].count == 0 {
            s.faults.remove(idx);
        }
        Some(fault)
    }

    fn record(&self, method: &str, path: &str, status: u16) {
        let mut s = self.lock();
        s.request_count += 1;
        if s.request_log.len() >= REQUEST_LOG_CAP {
            s.request_log.pop_front();
        }
        s.request_log.push_back((method.to_string(), path.to_string(), status));
    }
}

fn fault_response(f: &Fault) -> Response {
    let mut err = if f.status == 429 {
        ApiError::too_many_requests()
    } else {
        let reason = axum::http::StatusCode::from_u16(f.status)
            .ok()
            .and_then(|s| s.canonical_reason())
            .unwrap_or("Injected fault");
        ApiError {
            status: f.status,
            body: Some(json!({"message": reason})),
            headers: Vec::new(),
        }
    };
    if let Some(secs) = f.retry_after {
        err.headers.push(("retry-after", secs.to_string()));
    }
    err.into_response()
}

/// Entry point for everything that is not `/_sim/...`.
async fn api_entry(AxumState(sim): AxumState<EmnifySim>, req: Request) -> Response {
    let method = req.method().as_str().to_string();
    let uri = req.uri().clone();
    let path_and_query = uri.path_and_query().map(|p| p.as_str().to_string()).unwrap_or_default();
    let path = uri.path().to_string();
    let headers = req.headers().clone();

    // bulk requests overlapping another (emnify: "execute bulk operations sequentially")
    let _bulk = path.starts_with("/api/v2/").then(|| BulkRequest::start(&sim));
    // latency: simulate the round trip to Frankfurt before anything else happens
    let latency = sim.lock().config.latency;
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    // fault injection: precedes rate limits and auth so scripts can fail any call
    if let Some(fault) = sim.take_fault(&method, &path) {
        if let Some(d) = fault.delay {
            tokio::time::sleep(d).await;
        }
        if fault.status >= 400 {
            sim.record(&method, &path_and_query, fault.status);
            return fault_response(&fault);
        }
    }
    // chaos: a seeded share of every call fails; emnify's answers as its gateway gives them
    let (draw, stall, retry_after) = sim.chaos.draw(!matches!(method.as_str(), "GET" | "HEAD"));
    let injected = |status: u16| Fault {
        method: None,
        path_prefix: String::new(),
        status,
        count: 1,
        retry_after: (status == 429).then_some(retry_after).flatten(),
        delay: None,
    };
    match draw {
        Draw::Error | Draw::Throttle => {
            // 500 is the 5xx emnify's OpenAPI spec documents.
            let status = if draw == Draw::Throttle { 429 } else { 500 };
            sim.record(&method, &path_and_query, status);
            return fault_response(&injected(status));
        }
        Draw::Stall { applied: false } => {
            tokio::time::sleep(stall).await;
            sim.record(&method, &path_and_query, 504);
            return fault_response(&injected(504));
        }
        Draw::Pass | Draw::ErrorAfterApply | Draw::Stall { applied: true } => {}
    }
    let Some(api_path) = path.strip_prefix("/api") else {
        sim.record(&method, &path_and_query, 404);
        return ApiError::emnify(404, 1201, "NotFound", format!("No resource at {path}")).into_response();
    };
    let body = match axum::body::to_bytes(req.into_body(), 16 * 1024 * 1024).await {
        Ok(b) => b.to_vec(),
        Err(e) => {
            sim.record(&method, &path_and_query, 400);
            return ApiError::bad_request(format!("Unreadable request body: {e}")).into_response();
        }
    };
    let query = Query::<HashMap<String, String>>::try_from_uri(&uri)
        .map(|q| q.0)
        .unwrap_or_default();
    let api_req = ApiRequest {
        method: method.clone(),
        path: api_path.to_string(),
        query,
        body,
        authorization: headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
        base_url: base_url(&headers),
    };
    // rate limits -> bearer -> handler, all under one lock so state changes are atomic
    let result = sim.lock().handle(&api_req);
    let (status, answer_body) = match &result {
        Ok(r) => (r.status, &r.body),
        Err(e) => (e.status, &e.body),
    };
    sim.record_exchange(&api_req, status, answer_body);
    // chaos after the handler: the change applied, the caller learns nothing or an error
    if draw == Draw::ErrorAfterApply {
        sim.record(&method, &path_and_query, 500);
        return fault_response(&injected(500));
    }
    // request log
    sim.record(&method, &path_and_query, status);
    if draw == (Draw::Stall { applied: true }) {
        tokio::time::sleep(stall).await;
    }
    match result {
        Ok(r) => r.into_response(),
        Err(e) => e.into_response(),
    }
}

/// A bulk request being served, from its arrival to its answer.
struct BulkRequest(EmnifySim);

impl BulkRequest {
    fn start(sim: &EmnifySim) -> Self {
        let mut s = sim.lock();
        if s.bulk_in_flight > 0 {
            s.bulk_overlaps += 1;
        }
        s.bulk_in_flight += 1;
        BulkRequest(sim.clone())
    }
}

impl Drop for BulkRequest {
    fn drop(&mut self) {
        let mut s = self.0.lock();
        s.bulk_in_flight = s.bulk_in_flight.saturating_sub(1);
    }
}

/// `http://host:port` as the client addressed us, for absolute `Location`/`Link` URLs.
fn base_url(headers: &HeaderMap) -> String {
    let host = headers.get("host").and_then(|h| h.to_str().ok()).unwrap_or("127.0.0.1");
    let proto = headers
        .get("x-forwarded-proto")
        .and_then(|h| h.to_str().ok())
        .unwrap_or("http");
    format!("{proto}://{host}")
}

async fn admin_state(AxumState(sim): AxumState<EmnifySim>) -> Response {
    Reply::json(sim.state_summary()).into_response()
}

async fn admin_fault(AxumState(sim): AxumState<EmnifySim>, body: Body) -> Response {
    let bytes = match axum::body::to_bytes(body, 1024 * 1024).await {
        Ok(b) => b,
        Err(e) => return ApiError::bad_request(format!("unreadable body: {e}")).into_response(),
    };
    let f: FaultBody = match serde_json::from_slice(&bytes) {
        Ok(f) => f,
        Err(e) => return ApiError::bad_request(format!("invalid fault: {e}")).into_response(),
    };
    let fault = Fault {
        method: f.method,
        path_prefix: f.path_prefix,
        status: f.status,
        count: f.count,
        retry_after: f.retry_after,
        delay: f.delay_ms.map(Duration::from_millis),
    };
    sim.inject_fault(fault);
    Reply::empty(204).into_response()
}

async fn admin_expire(AxumState(sim): AxumState<EmnifySim>) -> Response {
    sim.expire_tokens();
    Reply::empty(204).into_response()
}

async fn admin_requests(AxumState(sim): AxumState<EmnifySim>) -> Response {
    let list: Vec<Value> = sim
        .requests()
        .into_iter()
        .map(|(m, p, s)| json!({"method": m, "path": p, "status": s}))
        .collect();
    Reply::json(Value::Array(list)).into_response()
}

async fn admin_profiles(AxumState(sim): AxumState<EmnifySim>) -> Response {
    Reply::json(Value::Array(sim.service_profiles())).into_response()
}

async fn admin_connectivity(AxumState(sim): AxumState<EmnifySim>, Path(id): Path<i64>, body: Body) -> Response {
    let bytes = axum::body::to_bytes(body, 64 * 1024).await.unwrap_or_default();
    let status = serde_json::from_slice::<Value>(&bytes)
        .ok()
        .and_then(|v| v.get("status").and_then(Value::as_str).map(str::to_string))
        .unwrap_or_default();
    if sim.set_connectivity(id, &status) {
        Reply::empty(204).into_response()
    } else {
        ApiError::bad_request("unknown endpoint or status (OFFLINE|ATTACHED|ONLINE|BLOCKED)").into_response()
    }
}
