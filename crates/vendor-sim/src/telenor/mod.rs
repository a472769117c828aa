//! A stateful simulator of Telenor IoT Connect (`https://api.iot.telenor.com/iot-connect/...`).
//!
//! connectivity-operator's Telenor backend, its tests and its benchmark run against it.
//! [`TelenorSim`] owns the world (one domain, seeded deterministically); [`TelenorSim::router`]
//! exposes it over HTTP together with admin routes under `/_sim/`; [`TelenorSim::serve`] binds a
//! port and returns a [`RunningSim`]. Behaviour follows `shared/vendors/telenor-iot.md`; choices
//! where Telenor is silent are listed in the crate README.
//!
//! Writes (change mode, change service policy) are asynchronous as at Telenor: they answer 202
//! and are applied `async_delay` later. Due changes are applied lazily, whenever the world is
//! next locked (any request or hook), so no background task is needed and tests stay
//! deterministic.
//!
//! Request pipeline (one comment per step in `api_entry`): latency -> fault injection ->
//! route -> bearer check -> per-token rate limit -> handler -> request log.

mod api;
mod error;
mod model;
mod search;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Request, State as AxumState};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use self::api::{ApiRequest, hook_mode, parse_form};
use self::error::{ApiError, Reply};
use self::model::{REQUEST_LOG_CAP, State};
use crate::chaos::{ChaosConfig, ChaosCounts, ChaosSlot, Draw};

/// Client id a default simulator accepts at `POST /oauth2/token`.
pub const DEMO_CLIENT_ID: &str = "telenor-sim-demo-client";
/// Client secret a default simulator accepts at `POST /oauth2/token`.
pub const DEMO_CLIENT_SECRET: &str = "telenor-sim-demo-secret-0000000000000000";

/// Simulator switches.
#[derive(Clone, Debug)]
pub struct TelenorConfig {
    /// Client credentials accepted by the token endpoint (body or HTTP Basic).
    pub client_id: String,
    pub client_secret: String,
    /// `expires_in` of issued access tokens.
    pub token_ttl: Duration,
    /// Delay before an accepted (202) mode / service-policy change is applied.
    pub async_delay: Duration,
    /// Token bucket per access token: (requests per second, burst). `None` turns it off.
    pub rate_limit: Option<(f64, u32)>,
    /// Added to every API request (the token endpoint included) before it is handled.
    pub latency: Duration,
    /// Items per inventory search page.
    pub search_page_size: usize,
    /// Lifetime of a search `after` cursor, extended by each use (Telenor documents 2 minutes).
    pub cursor_ttl: Duration,
    pub seed: TelenorSeed,
    /// Behaviour Telenor does not document, each off by default (see the crate README).
    pub inferred: TelenorInferred,
}

/// Switches for behaviour Telenor does not document. Off (the default), the simulator refuses or
/// omits it, so a client that relies on a guess fails against it.
#[derive(Clone, Debug, Default)]
pub struct TelenorInferred {
    /// The search accepts `{"type": "match", "values": [...]}` filters (only `between` is
    /// documented).
    pub match_filter: bool,
}

impl TelenorInferred {
    /// Every inferred behaviour on.
    pub fn all() -> Self {
        TelenorInferred { match_filter: true }
    }
}

impl Default for TelenorConfig {
    fn default() -> Self {
        Self {
            client_id: DEMO_CLIENT_ID.to_string(),
            client_secret: DEMO_CLIENT_SECRET.to_string(),
            token_ttl: Duration::from_secs(3600),
            async_delay: Duration::from_secs(2),
            rate_limit: Some((10.0, 20)),
            latency: Duration::ZERO,
            search_page_size: 100,
            cursor_ttl: Duration::from_secs(120),
            seed: TelenorSeed::default(),
            inferred: TelenorInferred::default(),
        }
    }
}

/// Size and randomness of the seeded world.
#[derive(Clone, Debug)]
pub struct TelenorSeed {
    /// IoT subscriptions, each with one SIM_PROFILE profile and its connectivity subscription.
    pub subscriptions: usize,
    /// Seed for ids, numbers, modes, policies and dates.
    pub rng_seed: u64,
}

impl Default for TelenorSeed {
    fn default() -> Self {
        Self {
            subscriptions: 25,
            rng_seed: 42,
        }
    }
}

/// A scripted failure: the next `count` requests matching `method` (any if `None`) and
/// `path_prefix` (compared with the request path) answer `status` with the §6 error body.
/// A `status` below 400 only delays (by `delay`) and then handles the request normally.
#[derive(Clone, Debug)]
pub struct Fault {
    pub method: Option<String>,
    pub path_prefix: String,
    pub status: u16,
    pub count: u32,
    /// `Retry-After` seconds to send with the fault.
    pub retry_after: Option<u32>,
    /// Wait this long before answering.
    pub delay: Option<Duration>,
    /// Whether the request is nevertheless handled: for a write answered with e.g. 504, `true`
    /// means the change was accepted and will be applied (the gateway timed out after the
    /// backend took it), `false` means nothing happened.
    pub apply: bool,
}

impl Default for Fault {
    /// A single 500 on every route, not applied.
    fn default() -> Self {
        Self {
            method: None,
            path_prefix: String::new(),
            status: 500,
            count: 1,
            retry_after: None,
            delay: None,
            apply: false,
        }
    }
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
    #[serde(default)]
    apply: bool,
}

fn one() -> u32 {
    1
}

/// The simulator: cheap to clone, all clones share one world.
#[derive(Clone)]
pub struct TelenorSim {
    state: Arc<Mutex<State>>,
    chaos: ChaosSlot,
}

impl crate::chaos::HasChaos for TelenorSim {
    fn chaos(&self) -> &ChaosSlot {
        &self.chaos
    }
}

impl std::fmt::Debug for TelenorSim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TelenorSim").finish_non_exhaustive()
    }
}

/// A simulator serving on a local port.
pub struct RunningSim {
    /// `http://127.0.0.1:PORT`; plays the role of `https://api.iot.telenor.com`.
    pub url: String,
    /// `<url>/oauth2/token`, the simulator's client-credentials token endpoint.
    pub token_url: String,
    pub sim: TelenorSim,
    shutdown: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl RunningSim {
    /// `{"client_id", "client_secret"}` for clients and scripts.
    pub fn credentials(&self) -> Value {
        let s = self.sim.lock();
        json!({"client_id": s.config.client_id, "client_secret": s.config.client_secret})
    }

    /// Stops accepting connections and waits for the server task to finish.
    pub async fn shutdown(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Err(e) = (&mut self.task).await {
            tracing::warn!(error = %e, "telenor simulator task ended abnormally");
        }
    }
}

impl TelenorSim {
    pub fn new(config: TelenorConfig) -> Self {
        Self {
            state: Arc::new(Mutex::new(model::seed(config))),
            chaos: ChaosSlot::default(),
        }
    }

    /// Locks the world without applying due changes. Poisoning is ignored: a panicked handler
    /// cannot leave the world in a state that matters more than losing the simulator.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Locks the world after applying every change that is due by now.
    fn world(&self) -> MutexGuard<'_, State> {
        let mut s = self.lock();
        s.settle(Some(Instant::now()));
        s
    }

    /// Every IoT Connect route plus the `/_sim/` admin routes.
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
            .route("/_sim/apply-pending", post(admin_apply_pending))
            .route("/_sim/service-policies", get(admin_policies))
            .route(
                "/_sim/subscriptions",
                get(admin_subscriptions).post(admin_add_subscription),
            )
            .route(
                "/_sim/subscriptions/{imsi}",
                get(admin_subscription).delete(admin_remove_subscription),
            )
            .route("/_sim/subscriptions/{imsi}/mode", put(admin_set_mode))
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
                tracing::error!(error = %e, "telenor simulator server failed");
            }
        });
        let url = format!("http://{local}");
        Ok(RunningSim {
            token_url: format!("{url}/oauth2/token"),
            url,
            sim: self,
            shutdown: Some(tx),
            task,
        })
    }

    /// The applied state of one connectivity subscription: its attributes (`imsi`, `iccid`,
    /// `msisdn`, `mode`, `firstActivationDate`, `trmExitedAt`) plus `servicePolicyId` and
    /// `iotSubscriptionId`.
    pub fn subscription(&self, imsi: &str) -> Option<Value> {
        let s = self.world();
        let slot = *s.by_imsi.get(imsi)?;
        s.sub(slot).map(|sub| s.hook_json(sub))
    }

    /// Every subscription as [`TelenorSim::subscription`] shows it, oldest first.
    pub fn subscriptions(&self) -> Vec<Value> {
        let s = self.world();
        s.subs.iter().flatten().map(|sub| s.hook_json(sub)).collect()
    }

    /// Every service policy as the list endpoint renders it (`{attributes, relationships}`).
    pub fn service_policies(&self) -> Vec<Value> {
        let s = self.world();
        s.policies.iter().map(|p| s.policy_json(p, false)).collect()
    }

    /// Out-of-band mode change (drift made in Telenor's portal), applied immediately. Pending
    /// API writes stay pending and still apply later.
    ///
    /// # Panics
    /// On an unknown IMSI or mode: this is a test hook, and a loud failure beats a silently
    /// inconsistent world.
    pub fn set_mode(&self, imsi: &str, mode: &str) {
        if !self.try_set_mode(imsi, hook_mode(mode)) {
            panic!("set_mode: unknown IMSI {imsi}");
        }
    }

    /// [`TelenorSim::set_mode`] without the panic: `false` if the IMSI is unknown.
    fn try_set_mode(&self, imsi: &str, mode: &'static str) -> bool {
        let mut s = self.world();
        let Some(slot) = s.by_imsi.get(imsi).copied() else {
            return false;
        };
        s.apply_mode(slot, mode);
        true
    }

    /// A new SIM appears at the vendor (in service today, first service policy) in `mode`
    /// (`ACTIVE_NO_BILLING` for a fresh SIM in Test Ready Mode); returns its attributes.
    ///
    /// # Panics
    /// On an unknown mode.
    pub fn add_subscription(&self, mode: &str) -> Value {
        let mode = hook_mode(mode);
        let mut s = self.world();
        let slot = s.add_subscription(mode);
        s.sub(slot).map(|sub| s.hook_json(sub)).unwrap_or(Value::Null)
    }

    /// The subscription disappears from the inventory (GET 404, absent from new searches);
    /// its pending changes are dropped. `false` if the IMSI is unknown.
    pub fn remove_subscription(&self, imsi: &str) -> bool {
        self.world().remove_subscription(imsi)
    }

    /// Accepted changes not applied yet (one mode and one service-policy slot per subscription).
    pub fn pending_operations(&self) -> usize {
        self.world().pending_count()
    }

    /// Applies every pending change now, regardless of `async_delay`.
    pub fn apply_pending_now(&self) {
        self.lock().settle(None);
    }

    pub fn inject_fault(&self, fault: Fault) {
        if fault.count > 0 {
            self.lock().faults.push(fault);
        }
    }

    /// Every access token issued so far answers 401 from now on; new tokens work as before.
    /// Seeded random faults on every API call from now on (see [`crate::chaos`]); an inactive
    /// config turns them off.
    pub fn set_chaos(&self, config: ChaosConfig) -> Result<(), String> {
        self.chaos.set(config)
    }

    /// Faults the chaos streams injected so far.
    pub fn chaos_counts(&self) -> ChaosCounts {
        self.chaos.counts()
    }

    pub fn expire_tokens(&self) {
        let mut s = self.lock();
        s.tokens.clear();
        s.buckets.clear();
    }

    /// Total API requests received (all outcomes, the token endpoint included), excluding `/_sim`.
    pub fn request_count(&self) -> u64 {
        self.lock().request_count
    }

    /// The last (up to 10 000) API requests: method, path with query, status.
    pub fn requests(&self) -> Vec<(String, String, u16)> {
        self.lock().request_log.iter().cloned().collect()
    }

    /// Accepted (202) mode and service-policy writes for the IMSI, no-op ones included, and
    /// writes answered with an injected fault whose `apply` was true.
    pub fn write_count(&self, imsi: &str) -> usize {
        self.lock().write_counts.get(imsi).copied().unwrap_or(0)
    }

    /// Counts of what the simulator holds (also `GET /_sim/state`).
    pub fn state_summary(&self) -> Value {
        self.world().summary()
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
        ApiError::rate_limited()
    } else {
        ApiError::injected(f.status)
    };
    if let Some(secs) = f.retry_after {
        err.headers.retain(|(name, _)| *name != "retry-after");
        err.headers.push(("retry-after", secs.to_string()));
    }
    err.into_response()
}

/// A chaos throttle: the 429 body of the rate limiter, `Retry-After` only when the run sets one.
fn throttle_response(retry_after: Option<u32>) -> Response {
    let mut err = ApiError::rate_limited();
    err.headers.retain(|(name, _)| *name != "retry-after");
    if let Some(secs) = retry_after {
        err.headers.push(("retry-after", secs.to_string()));
    }
    err.into_response()
}

/// Entry point for everything that is not `/_sim/...`.
async fn api_entry(AxumState(sim): AxumState<TelenorSim>, req: Request) -> Response {
    let method = req.method().as_str().to_string();
    let uri = req.uri().clone();
    let path_and_query = uri.path_and_query().map(|p| p.as_str().to_string()).unwrap_or_default();
    let headers = req.headers().clone();

    // latency: the round trip to Telenor, before anything else happens
    let latency = sim.lock().config.latency;
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    // fault injection: precedes auth and rate limits so scripts can fail any call
    let fault = sim.take_fault(&method, uri.path());
    if let Some(f) = &fault {
        if let Some(d) = f.delay {
            tokio::time::sleep(d).await;
        }
        if f.status >= 400 && !f.apply {
            sim.record(&method, &path_and_query, f.status);
            return fault_response(f);
        }
    }
    // chaos: a seeded share of every call fails (writes that apply and then fail answer 504,
    // Telenor's "outcome unknown" for its asynchronous writes)
    let (draw, stall, retry_after) = sim.chaos.draw(!matches!(method.as_str(), "GET" | "HEAD"));
    let injected = |status: u16| Fault {
        status,
        retry_after: None,
        ..Fault::default()
    };
    match draw {
        Draw::Error => {
            // 500 is the 5xx Telenor documents (504 only for accepted writes).
            sim.record(&method, &path_and_query, 500);
            return fault_response(&injected(500));
        }
        Draw::Throttle => {
            sim.record(&method, &path_and_query, 429);
            return throttle_response(retry_after);
        }
        Draw::Stall { applied: false } => {
            tokio::time::sleep(stall).await;
            sim.record(&method, &path_and_query, 504);
            return fault_response(&injected(504));
        }
        Draw::Pass | Draw::ErrorAfterApply | Draw::Stall { applied: true } => {}
    }
    let body = match axum::body::to_bytes(req.into_body(), 16 * 1024 * 1024).await {
        Ok(b) => b.to_vec(),
        Err(e) => {
            sim.record(&method, &path_and_query, 400);
            return ApiError::invalid("body", format!("Unreadable request body: {e}")).into_response();
        }
    };
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
    let api_req = ApiRequest {
        method: method.clone(),
        path: uri.path().to_string(),
        query: uri.query().map(parse_form).unwrap_or_default(),
        body,
        authorization: header("authorization"),
        content_type: header("content-type"),
    };
    // route -> bearer -> rate limit -> handler, under one lock so state changes are atomic
    let result = sim.world().handle(&api_req, Instant::now());
    // an applied fault: the request took effect, but the client sees the injected answer
    if let Some(f) = fault.filter(|f| f.status >= 400) {
        sim.record(&method, &path_and_query, f.status);
        return fault_response(&f);
    }
    if draw == Draw::ErrorAfterApply {
        sim.record(&method, &path_and_query, 504);
        return fault_response(&injected(504));
    }
    let status = match &result {
        Ok(r) => r.status,
        Err(e) => e.status,
    };
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

async fn read_json(body: Body) -> Result<Value, ApiError> {
    let bytes = axum::body::to_bytes(body, 1024 * 1024)
        .await
        .map_err(|e| ApiError::invalid("body", format!("unreadable body: {e}")))?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(json!({}));
    }
    serde_json::from_slice(&bytes).map_err(|e| ApiError::invalid("body", format!("invalid JSON: {e}")))
}

fn admin_mode(body: &Value, default: &'static str) -> Result<&'static str, ApiError> {
    match body.get("mode") {
        None | Some(Value::Null) => Ok(default),
        Some(v) => v.as_str().and_then(model::mode_name).ok_or_else(|| {
            ApiError::invalid(
                "mode",
                "mode must be one of ACTIVE, ACTIVE_NO_BILLING, DEACTIVATED, PAUSED, TERMINATED",
            )
        }),
    }
}

async fn admin_state(AxumState(sim): AxumState<TelenorSim>) -> Response {
    Reply::json(sim.state_summary()).into_response()
}

async fn admin_fault(AxumState(sim): AxumState<TelenorSim>, body: Body) -> Response {
    let value = match read_json(body).await {
        Ok(v) => v,
        Err(e) => return e.into_response(),
    };
    let f: FaultBody = match serde_json::from_value(value) {
        Ok(f) => f,
        Err(e) => return ApiError::invalid("body", format!("invalid fault: {e}")).into_response(),
    };
    sim.inject_fault(Fault {
        method: f.method,
        path_prefix: f.path_prefix,
        status: f.status,
        count: f.count,
        retry_after: f.retry_after,
        delay: f.delay_ms.map(Duration::from_millis),
        apply: f.apply,
    });
    Reply::empty(204).into_response()
}

async fn admin_expire(AxumState(sim): AxumState<TelenorSim>) -> Response {
    sim.expire_tokens();
    Reply::empty(204).into_response()
}

async fn admin_requests(AxumState(sim): AxumState<TelenorSim>) -> Response {
    let list: Vec<Value> = sim
        .requests()
        .into_iter()
        .map(|(m, p, s)| json!({"method": m, "path": p, "status": s}))
        .collect();
    Reply::json(Value::Array(list)).into_response()
}

async fn admin_apply_pending(AxumState(sim): AxumState<TelenorSim>) -> Response {
    sim.apply_pending_now();
    Reply::empty(204).into_response()
}

async fn admin_policies(AxumState(sim): AxumState<TelenorSim>) -> Response {
    Reply::json(Value::Array(sim.service_policies())).into_response()
}

async fn admin_subscriptions(AxumState(sim): AxumState<TelenorSim>) -> Response {
    Reply::json(Value::Array(sim.subscriptions())).into_response()
}

async fn admin_subscription(AxumState(sim): AxumState<TelenorSim>, Path(imsi): Path<String>) -> Response {
    match sim.subscription(&imsi) {
        Some(v) => Reply::json(v).into_response(),
        None => ApiError::not_found(format!("no subscription with IMSI {imsi}")).into_response(),
    }
}

async fn admin_add_subscription(AxumState(sim): AxumState<TelenorSim>, body: Body) -> Response {
    let result = read_json(body).await.and_then(|v| admin_mode(&v, "ACTIVE_NO_BILLING"));
    match result {
        Ok(mode) => Reply::with_status(201, sim.add_subscription(mode)).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn admin_remove_subscription(AxumState(sim): AxumState<TelenorSim>, Path(imsi): Path<String>) -> Response {
    if sim.remove_subscription(&imsi) {
        Reply::empty(204).into_response()
    } else {
        ApiError::not_found(format!("no subscription with IMSI {imsi}")).into_response()
    }
}

async fn admin_set_mode(AxumState(sim): AxumState<TelenorSim>, Path(imsi): Path<String>, body: Body) -> Response {
    let mode = match read_json(body).await.and_then(|v| {
        if v.get("mode").is_none() {
            return Err(ApiError::invalid("mode", "mode is required"));
        }
        admin_mode(&v, "ACTIVE")
    }) {
        Ok(m) => m,
        Err(e) => return e.into_response(),
    };
    if sim.try_set_mode(&imsi, mode) {
        Reply::empty(204).into_response()
    } else {
        ApiError::not_found(format!("no subscription with IMSI {imsi}")).into_response()
    }
}
