//! A stateful simulator of BICS SIM for Things' RPC-style API (`https://sft.bics.com/api/...`).
//!
//! connectivity-operator's BICS backend runs against it in tests, local demos and users' CI; its
//! main job is to exercise the "verify completion" handling (codes 10239/10240 and POSTs that
//! outlive the client's timeout, spec §6). [`BicsSim`] owns the world (one Enterprise account,
//! seeded deterministically); [`BicsSim::router`] exposes it over HTTP together with admin routes
//! under `/_sim/`; [`BicsSim::serve`] binds a port and returns a [`RunningSim`]. Behaviour follows
//! `shared/vendors/bics-sft.md`; choices where BICS is silent are listed in the crate README.
//!
//! Request pipeline (one comment per step in `api_entry`): latency -> call count -> gateway
//! faults (HTTP status) -> X-Requested-With check -> route check -> rate limit + X-Authorization
//! -> platform faults (verify completion, slow) -> handler -> request log.

mod api;
mod envelope;
mod model;
mod token;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Query, Request, State as AxumState};
use axum::response::Response;
use axum::routing::{get, post};
use rand::RngCore;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use self::api::ApiRequest;
use self::envelope::{Answer, admin_json, codes};
use self::model::{EndpointState, REQUEST_LOG_CAP, State};
use crate::chaos::{ChaosConfig, ChaosCounts, ChaosSlot, Draw};

/// Default login of the simulated Enterprise user.
pub const DEMO_USERNAME: &str = "demo@connectivity-operator.local";
/// Default password (sent in clear text in the `POST /api/login` body, as BICS expects).
pub const DEMO_PASSWORD: &str = "demo-password";
/// Id of the one simulated Enterprise account (the only accepted `targetAccountId`).
pub const DEMO_ACCOUNT_ID: &str = "100001";

/// Simulator switches.
#[derive(Clone, Debug)]
pub struct BicsConfig {
    /// Credentials accepted by `POST /api/login`.
    pub username: String,
    pub password: String,
    /// Lifetime of access tokens; BICS publishes none, one client caches them for 540 s.
    pub access_ttl: Duration,
    /// Lifetime of refresh tokens.
    pub refresh_ttl: Duration,
    /// Answer an invalid or expired token with a real HTTP 401 instead of the default
    /// HTTP 200 + `Response.resultCode "1"` + `resultParam.resultCode "401"` (same body in both).
    pub http_401: bool,
    /// Refuse (HTTP 403) requests without `X-Requested-With: XMLHttpRequest`.
    pub require_x_requested_with: bool,
    /// Per-account token bucket `(rate per second, burst)`; `None` disables it. Excess gets 429.
    pub rate_limit: Option<(f64, u32)>,
    /// Added to every `/api` request before it is handled.
    pub latency: Duration,
    /// Largest `fetchSIM` page served, whatever `perPage` asks (BICS documents no cap).
    pub max_per_page: usize,
    pub seed: BicsSeed,
    /// Behaviour BICS does not document, each off by default (see the crate README).
    pub inferred: BicsInferred,
}

/// Switches for behaviour BICS does not document. Off (the default), the simulator answers with
/// documented fields only, so a client that relies on a guess fails against it.
#[derive(Clone, Debug, Default)]
pub struct BicsInferred {
    /// `GetServiceProfile` rows also carry the raw `service`, `accessType` and `status` codes.
    pub profile_codes: bool,
    /// `fetchSIM` answers also carry `totalCount`, `page` and `perPage` (BICS documents no total).
    pub sim_list_totals: bool,
    /// `fetchSIM` rows also carry a top-level `imsi`, `msisdn` and `simStatusId`, and
    /// `iMSIList[].imsi` (BICS's own clients read the IMSI from
    /// `iMSIList[].supplierIMSIList[].supplierIMSI` only).
    pub sim_row_extras: bool,
    /// `GetEndPointProfile`'s `basicInfo` also carries `endPointId`, `status`, `simStatus`,
    /// `planId`, `addonPlanIds`, `roamingProfileId` and `apnGroupId` (BICS's clients read
    /// `iccid`, `name`, `msisdn`, `imsi` and `imeiLockStatus`; no documented read returns the plan).
    pub endpoint_extras: bool,
}

impl BicsInferred {
    /// Every inferred behaviour on (what the simulator did before it was checked against the docs).
    pub fn all() -> Self {
        BicsInferred {
            profile_codes: true,
            sim_list_totals: true,
            sim_row_extras: true,
            endpoint_extras: true,
        }
    }
}

impl Default for BicsConfig {
    fn default() -> Self {
        Self {
            username: DEMO_USERNAME.to_string(),
            password: DEMO_PASSWORD.to_string(),
            access_ttl: Duration::from_secs(600),
            refresh_ttl: Duration::from_secs(24 * 3600),
            http_401: false,
            require_x_requested_with: false,
            rate_limit: Some((2.0, 2)),
            latency: Duration::ZERO,
            max_per_page: 1000,
            seed: BicsSeed::default(),
            inferred: BicsInferred::default(),
        }
    }
}

/// Size and randomness of the seeded world.
#[derive(Clone, Debug)]
pub struct BicsSeed {
    /// Endpoints created with a linked SIM each, in mixed states.
    pub endpoints: usize,
    /// SIMs in inventory (`Ready To Activate`, not attached).
    pub free_sims: usize,
    /// Seed for ICCIDs, IMSIs and MSISDNs.
    pub rng_seed: u64,
}

impl Default for BicsSeed {
    fn default() -> Self {
        Self {
            endpoints: 10,
            free_sims: 5,
            rng_seed: 42,
        }
    }
}

/// Whether the change behind a faulted call takes effect.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Committed,
    NotCommitted,
}

/// A scripted failure. `api` is the verb after `/api/` (e.g. `"CreateServiceProfile"`, case as
/// in the path; `"*"` matches every verb).
#[derive(Clone, Debug, PartialEq)]
pub enum BicsFault {
    /// The next `count` calls to `api` answer resultCode `code` (10239 or 10240) and the change is / is not committed.
    VerifyCompletion {
        api: String,
        code: u32,
        outcome: Outcome,
        count: u32,
    },
    /// The next `count` calls to `api` stall for `delay` before answering (longer than the client timeout), committing or not.
    Slow {
        api: String,
        delay: Duration,
        outcome: Outcome,
        count: u32,
    },
    /// HTTP status (429, 500, 503) for the next `count` calls to `api`.
    Http { api: String, status: u16, count: u32 },
    /// Every access token issued so far is expired.
    ExpireTokens,
}

impl BicsFault {
    fn api(&self) -> &str {
        match self {
            Self::VerifyCompletion { api, .. } | Self::Slow { api, .. } | Self::Http { api, .. } => api,
            Self::ExpireTokens => "",
        }
    }

    fn count_mut(&mut self) -> Option<&mut u32> {
        match self {
            Self::VerifyCompletion { count, .. } | Self::Slow { count, .. } | Self::Http { count, .. } => Some(count),
            Self::ExpireTokens => None,
        }
    }

    /// Gateway faults answer before authentication; platform faults after it.
    fn is_gateway(&self) -> bool {
        matches!(self, Self::Http { .. })
    }

    fn matches(&self, api: &str) -> bool {
        let want = self.api().trim_start_matches("/api/").trim_start_matches('/');
        want == "*" || want == api
    }
}

/// JSON form of [`BicsFault`] for `POST /_sim/faults`.
#[derive(Deserialize)]
#[serde(tag = "type")]
enum FaultBody {
    VerifyCompletion {
        api: String,
        code: u32,
        #[serde(default)]
        outcome: OutcomeBody,
        #[serde(default = "one")]
        count: u32,
    },
    Slow {
        api: String,
        delay_ms: u64,
        #[serde(default)]
        outcome: OutcomeBody,
        #[serde(default = "one")]
        count: u32,
    },
    Http {
        api: String,
        status: u16,
        #[serde(default = "one")]
        count: u32,
    },
    ExpireTokens,
}

#[derive(Deserialize, Default, Clone, Copy)]
enum OutcomeBody {
    #[default]
    #[serde(alias = "committed")]
    Committed,
    #[serde(alias = "not_committed", alias = "notCommitted")]
    NotCommitted,
}

impl From<OutcomeBody> for Outcome {
    fn from(o: OutcomeBody) -> Self {
        match o {
            OutcomeBody::Committed => Outcome::Committed,
            OutcomeBody::NotCommitted => Outcome::NotCommitted,
        }
    }
}

impl From<FaultBody> for BicsFault {
    fn from(f: FaultBody) -> Self {
        match f {
            FaultBody::VerifyCompletion {
                api,
                code,
                outcome,
                count,
            } => Self::VerifyCompletion {
                api,
                code,
                outcome: outcome.into(),
                count,
            },
            FaultBody::Slow {
                api,
                delay_ms,
                outcome,
                count,
            } => Self::Slow {
                api,
                delay: Duration::from_millis(delay_ms),
                outcome: outcome.into(),
                count,
            },
            FaultBody::Http { api, status, count } => Self::Http { api, status, count },
            FaultBody::ExpireTokens => Self::ExpireTokens,
        }
    }
}

fn one() -> u32 {
    1
}

/// The simulator: cheap to clone, all clones share one world.
#[derive(Clone)]
pub struct BicsSim {
    state: Arc<Mutex<State>>,
    chaos: ChaosSlot,
}

impl crate::chaos::HasChaos for BicsSim {
    fn chaos(&self) -> &ChaosSlot {
        &self.chaos
    }
}

impl std::fmt::Debug for BicsSim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BicsSim").finish_non_exhaustive()
    }
}

/// A simulator serving on a local port.
pub struct RunningSim {
    /// `http://127.0.0.1:PORT`; plays the role of `https://sft.bics.com`.
    pub url: String,
    pub sim: BicsSim,
    shutdown: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl RunningSim {
    /// `{"username", "password"}` for clients and scripts.
    pub fn credentials(&self) -> Value {
        let s = self.sim.lock();
        json!({"username": s.config.username, "password": s.config.password})
    }

    /// Stops accepting connections and waits for the server task (and in-flight requests,
    /// including stalled `Slow` ones) to finish.
    pub async fn shutdown(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Err(e) = (&mut self.task).await {
            tracing::warn!(error = %e, "bics simulator task ended abnormally");
        }
    }
}

impl BicsSim {
    pub fn new(config: BicsConfig) -> Self {
        let mut key = vec![0u8; 32];
        rand::rng().fill_bytes(&mut key);
        Self {
            state: Arc::new(Mutex::new(model::seed(config, key))),
            chaos: ChaosSlot::default(),
        }
    }

    /// Locks the world; poisoning is ignored (a panicked handler loses at most its own change).
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Every BICS route plus the `/_sim/` admin routes.
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
            .route("/_sim/endpoints", get(admin_endpoints))
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
                tracing::error!(error = %e, "bics simulator server failed");
            }
        });
        Ok(RunningSim {
            url: format!("http://{local}"),
            sim: self,
            shutdown: Some(tx),
            task,
        })
    }

    /// Queues `fault` (a `count` of 0 is ignored); `ExpireTokens` takes effect at once.
    /// Creates that found their object already there (see the README's Rust hooks).
    pub fn repeated_creates(&self) -> u64 {
        self.lock().repeated_creates
    }

    /// ICCIDs de-linked from their endpoints (terminations), in order.
    pub fn delinked(&self) -> Vec<String> {
        self.lock().delinked.clone()
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

    pub fn inject(&self, mut fault: BicsFault) {
        let mut s = self.lock();
        match fault.count_mut() {
            None => s.tokens.expire_access_tokens(),
            Some(0) => {}
            Some(_) => s.faults.push(fault),
        }
    }

    /// Every profile, as `GetServiceProfile` rows plus the write-only `status` and the raw
    /// codes (an inspection view: BICS returns less).
    pub fn service_profiles(&self) -> Vec<Value> {
        self.lock().profiles.values().map(|p| p.row(true)).collect()
    }

    /// Profiles named exactly `name` (0 or 1: names are unique).
    pub fn service_profile_by_name(&self, name: &str) -> Vec<Value> {
        self.lock()
            .profiles
            .values()
            .filter(|p| p.name == name)
            .map(|p| p.row(true))
            .collect()
    }

    /// Deletes a profile as a person would in the portal. Panics on an unknown name (a test hook).
    pub fn delete_profile_named(&self, name: &str) {
        let mut s = self.lock();
        let n = s
            .profiles
            .iter()
            .find(|(_, p)| p.name == name)
            .map(|(n, _)| *n)
            .unwrap_or_else(|| panic!("no BICS profile named {name:?}"));
        s.profiles.remove(&n);
    }

    /// Creates a Base profile with DATA, SMS-MO and SMS-MT on 2G/3G/4G as a person would in the
    /// portal, with the given status (`"0"`/`"1"`); returns its id.
    pub fn create_profile_like(&self, name: &str, status: &str) -> String {
        let mut s = self.lock();
        s.next_profile += 1;
        let p = model::ServiceProfile {
            n: s.next_profile,
            name: name.to_string(),
            category: "0".into(),
            status: status.to_string(),
            services: vec![4, 2, 3],
            access_type: Some("06".into()),
        };
        let id = p.id();
        s.profiles.insert(p.n, p);
        id
    }

    /// Changes a profile as a person would in the portal (drift): its status and access type.
    /// Panics on an unknown name (a test hook).
    pub fn set_profile_status_and_rat(&self, name: &str, status: &str, access_type: &str) {
        let mut s = self.lock();
        let p = s
            .profiles
            .values_mut()
            .find(|p| p.name == name)
            .unwrap_or_else(|| panic!("no BICS profile named {name:?}"));
        p.status = status.to_string();
        p.access_type = Some(access_type.to_string());
    }

    /// Creates a plan referencing `profile_id` (an ADDON plan for an Addon profile, NORMAL
    /// otherwise), so deleting the profile answers 1338 and RAT downgrades 10085; returns the
    /// plan id.
    ///
    /// # Panics
    /// If the profile does not exist: a test hook should fail loudly rather than build an
    /// inconsistent world.
    pub fn attach_profile_to_plan(&self, profile_id: &str) -> String {
        let mut s = self.lock();
        let Some(category) = s.profile_by_id(profile_id).map(|p| p.category.clone()) else {
            panic!("attach_profile_to_plan: no service profile {profile_id}");
        };
        let id = s.alloc_plan_id();
        let plan = model::Plan {
            id: id.clone(),
            name: format!("hook-plan-{id}"),
            category: if category == "1" { "ADDON" } else { "NORMAL" }.into(),
            plan_type: "0".into(),
            service_profile: Some(profile_id.trim().to_string()),
            status: "Active".into(),
        };
        s.plans.insert(id.clone(), plan);
        id
    }

    /// Removes a plan (seeded, hook-made or API-made) and every endpoint's reference to it.
    /// An unknown id is a no-op.
    pub fn detach_plan(&self, plan_id: &str) {
        let mut s = self.lock();
        s.plans.remove(plan_id);
        for e in s.endpoints.values_mut() {
            if e.plan_id.as_deref() == Some(plan_id) {
                e.plan_id = None;
            }
            e.addon_plan_ids.retain(|a| a != plan_id);
        }
    }

    /// Every endpoint as `GetEndPointProfile`'s `basicInfo` (with our `status`/`planId` additions).
    pub fn endpoints(&self) -> Vec<Value> {
        let s = self.lock();
        s.endpoints
            .values()
            .map(|e| s.endpoint_info(e)["basicInfo"].clone())
            .collect()
    }

    /// Every SIM as a `fetchSIM` row with all extras (an inspection view).
    pub fn sims(&self) -> Vec<Value> {
        self.lock().sims.values().map(|s| s.row(true)).collect()
    }

    /// The endpoint the SIM `iccid` is linked to.
    pub fn endpoint_by_iccid(&self, iccid: &str) -> Option<Value> {
        let s = self.lock();
        s.endpoints
            .values()
            .find(|e| e.iccid.as_deref() == Some(iccid))
            .map(|e| s.endpoint_info(e)["basicInfo"].clone())
    }

    /// Drift made in the portal: sets the endpoint's state (`Pre-Active`, `Active`, `Suspended`,
    /// `Hold`); a linked SIM follows (it keeps its status for `Hold`).
    ///
    /// # Panics
    /// On an unknown endpoint or state.
    pub fn set_endpoint_state(&self, endpoint_id: &str, state: &str) {
        let Some(to) = EndpointState::parse(state) else {
            panic!("set_endpoint_state: unknown state {state:?} (Pre-Active|Active|Suspended|Hold)");
        };
        let mut s = self.lock();
        let Some(n) = State::endpoint_key(endpoint_id).filter(|n| s.endpoints.contains_key(n)) else {
            panic!("set_endpoint_state: no endpoint {endpoint_id}");
        };
        s.set_state(n, to);
    }

    /// Total `/api` requests received (all outcomes), excluding `/_sim`.
    pub fn request_count(&self) -> u64 {
        self.lock().request_count
    }

    /// The last (up to 10 000) API requests: method, path with query, HTTP status.
    pub fn requests(&self) -> Vec<(String, String, u16)> {
        self.lock().request_log.iter().cloned().collect()
    }

    /// How many times `/api/<api>` was called, whatever the outcome (faulted, refused and
    /// stalled calls included).
    pub fn call_count(&self, api: &str) -> usize {
        self.lock().call_counts.get(api).copied().unwrap_or(0)
    }

    /// Counts of what the simulator holds (also `GET /_sim/state`).
    pub fn state_summary(&self) -> Value {
        self.lock().summary()
    }

    /// Takes the first queued fault for `api` of the given kind, decrementing its count.
    fn take_fault(&self, api: &str, gateway: bool) -> Option<BicsFault> {
        let mut s = self.lock();
        let idx = s
            .faults
            .iter()
            .position(|f| f.is_gateway() == gateway && f.matches(api))?;
        let fault = s.faults[idx].clone();
        if let Some(c) = s.faults[idx].count_mut() {
            *c = c.saturating_sub(1);
            if *c == 0 {
                s.faults.remove(idx);
            }
        }
        Some(fault)
    }

    /// Logs the request and renders `answer` with a fresh `responseId`.
    fn finish(&self, method: &str, path_and_query: &str, answer: &Answer) -> Response {
        let mut s = self.lock();
        s.request_count += 1;
        if s.request_log.len() >= REQUEST_LOG_CAP {
            s.request_log.pop_front();
        }
        s.request_log
            .push_back((method.to_string(), path_and_query.to_string(), answer.status));
        s.response_seq += 1;
        let now = chrono::Utc::now();
        let id = format!("{}{:06}", now.timestamp_millis(), s.response_seq % 1_000_000);
        answer.render(&id, &now.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string())
    }
}

fn verify_completion_answer(code: u32) -> Answer {
    let code = code.to_string();
    let description = match code.as_str() {
        codes::VERIFY_FAILED => "Operation failed, please verify completion",
        codes::VERIFY_TIMEOUT => "Operation timed out, please verify completion",
        _ => "Injected fault",
    };
    Answer::fail(&code, description)
}

/// Entry point for everything that is not `/_sim/...`.
async fn api_entry(AxumState(sim): AxumState<BicsSim>, req: Request) -> Response {
    let method = req.method().as_str().to_string();
    let uri = req.uri().clone();
    let path_and_query = uri.path_and_query().map(|p| p.as_str().to_string()).unwrap_or_default();
    let headers = req.headers().clone();
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_string);

    // latency: the round trip to Brussels, before anything else happens
    let latency = sim.lock().config.latency;
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let api = uri
        .path()
        .strip_prefix("/api/")
        .filter(|a| !a.is_empty() && !a.contains('/'))
        .map(str::to_string);
    let Some(api) = api else {
        let answer = Answer::fail(codes::NO_SUCH_API, format!("No such API: {}", uri.path())).with_status(404);
        return sim.finish(&method, &path_and_query, &answer);
    };
    // call count: every attempt, so tests can tell whether a client repeated a mutation
    *sim.lock().call_counts.entry(api.clone()).or_insert(0) += 1;
    // gateway faults: an HTTP status before auth, nothing processed
    if let Some(BicsFault::Http { status, .. }) = sim.take_fault(&api, true) {
        let answer = if status == 429 {
            Answer::fail(codes::RATE_LIMITED, "Request rate limit exceeded")
        } else {
            let reason = axum::http::StatusCode::from_u16(status)
                .ok()
                .and_then(|s| s.canonical_reason())
                .unwrap_or("Injected fault");
            Answer::fail(&status.to_string(), reason)
        };
        return sim.finish(&method, &path_and_query, &answer.with_status(status));
    }
    // chaos: gateway errors and throttles here, platform faults (verify completion, stalls) below
    let write = method.eq_ignore_ascii_case("POST") && api != "login";
    let (draw, stall, retry_after) = sim.chaos.draw(write);
    match draw {
        Draw::Error => {
            let answer = Answer::fail("500", "Internal Server Error").with_status(500);
            return sim.finish(&method, &path_and_query, &answer);
        }
        Draw::Throttle => {
            let answer = Answer::fail(codes::RATE_LIMITED, "Request rate limit exceeded").with_status(429);
            let mut response = sim.finish(&method, &path_and_query, &answer);
            if let Some(secs) = retry_after {
                response
                    .headers_mut()
                    .insert(axum::http::header::RETRY_AFTER, secs.into());
            }
            return response;
        }
        Draw::Pass | Draw::ErrorAfterApply | Draw::Stall { .. } => {}
    }
    // strictness flag: real clients always send X-Requested-With
    if sim.lock().config.require_x_requested_with
        && !header("x-requested-with").is_some_and(|v| v.eq_ignore_ascii_case("XMLHttpRequest"))
    {
        let answer =
            Answer::fail(codes::FORBIDDEN, "X-Requested-With: XMLHttpRequest header is required").with_status(403);
        return sim.finish(&method, &path_and_query, &answer);
    }
    // route check: unknown verb 404, wrong method 405
    if let Err(answer) = State::route_check(&method, &api) {
        return sim.finish(&method, &path_and_query, &answer);
    }
    let body = match axum::body::to_bytes(req.into_body(), 16 * 1024 * 1024).await {
        Ok(b) => b.to_vec(),
        Err(e) => {
            let answer = Answer::fail(codes::INVALID_REQUEST, format!("Unreadable request body: {e}"));
            return sim.finish(&method, &path_and_query, &answer);
        }
    };
    let api_req = ApiRequest {
        method: method.clone(),
        api: api.clone(),
        query: Query::<HashMap<String, String>>::try_from_uri(&uri)
            .map(|q| q.0)
            .unwrap_or_default(),
        body,
        x_authorization: header("x-authorization"),
        has_authorization: headers.contains_key("authorization"),
    };
    // rate limit (per account) and X-Authorization
    // (bound first: a guard in an `if let` scrutinee would live into the body, and `finish` locks)
    let admitted = sim.lock().admit(&api_req);
    if let Err(answer) = admitted {
        return sim.finish(&method, &path_and_query, &answer);
    }
    // platform faults, then the handler
    let answer = match sim.take_fault(&api, false) {
        Some(BicsFault::VerifyCompletion { code, outcome, .. }) => {
            if outcome == Outcome::Committed {
                // Processed normally (an invalid request still changes nothing); answer replaced.
                let _ = sim.lock().handle(&api_req);
            }
            verify_completion_answer(code)
        }
        Some(BicsFault::Slow { delay, outcome, .. }) => {
            // The platform keeps processing whatever the client does, so a committed change
            // lands on receipt, before the stall: a client that times out and polls sees it,
            // and a dropped connection (which cancels this future) cannot lose it.
            let answer = match outcome {
                Outcome::Committed => sim.lock().handle(&api_req),
                Outcome::NotCommitted => verify_completion_answer(10240),
            };
            let resp = sim.finish(&method, &path_and_query, &answer);
            tokio::time::sleep(delay).await;
            return resp;
        }
        _ => match draw {
            Draw::ErrorAfterApply => {
                let _ = sim.lock().handle(&api_req);
                verify_completion_answer(10239)
            }
            Draw::Stall { applied } => {
                let answer = if applied {
                    sim.lock().handle(&api_req)
                } else {
                    verify_completion_answer(10240)
                };
                let resp = sim.finish(&method, &path_and_query, &answer);
                tokio::time::sleep(stall).await;
                return resp;
            }
            Draw::Pass | Draw::Error | Draw::Throttle => sim.lock().handle(&api_req),
        },
    };
    // request log
    sim.finish(&method, &path_and_query, &answer)
}

async fn admin_state(AxumState(sim): AxumState<BicsSim>) -> Response {
    admin_json(200, sim.state_summary())
}

async fn admin_fault(AxumState(sim): AxumState<BicsSim>, body: Body) -> Response {
    let bytes = match axum::body::to_bytes(body, 1024 * 1024).await {
        Ok(b) => b,
        Err(e) => return admin_json(400, json!({"message": format!("unreadable body: {e}")})),
    };
    match serde_json::from_slice::<FaultBody>(&bytes) {
        Ok(f) => {
            sim.inject(f.into());
            admin_json(204, Value::Null)
        }
        Err(e) => admin_json(400, json!({"message": format!("invalid fault: {e}")})),
    }
}

async fn admin_expire(AxumState(sim): AxumState<BicsSim>) -> Response {
    sim.inject(BicsFault::ExpireTokens);
    admin_json(204, Value::Null)
}

async fn admin_requests(AxumState(sim): AxumState<BicsSim>) -> Response {
    let list: Vec<Value> = sim
        .requests()
        .into_iter()
        .map(|(m, p, s)| json!({"method": m, "path": p, "status": s}))
        .collect();
    admin_json(200, Value::Array(list))
}

async fn admin_profiles(AxumState(sim): AxumState<BicsSim>) -> Response {
    admin_json(200, Value::Array(sim.service_profiles()))
}

async fn admin_endpoints(AxumState(sim): AxumState<BicsSim>) -> Response {
    admin_json(200, Value::Array(sim.endpoints()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fault_json_forms() {
        let f: FaultBody = serde_json::from_value(json!({
            "type": "VerifyCompletion", "api": "CreateServiceProfile", "code": 10240, "outcome": "NotCommitted"
        }))
        .unwrap();
        assert_eq!(
            BicsFault::from(f),
            BicsFault::VerifyCompletion {
                api: "CreateServiceProfile".into(),
                code: 10240,
                outcome: Outcome::NotCommitted,
                count: 1
            }
        );
        let f: FaultBody =
            serde_json::from_value(json!({"type": "Slow", "api": "x", "delay_ms": 1500, "count": 2})).unwrap();
        assert!(
            matches!(BicsFault::from(f), BicsFault::Slow { delay, outcome: Outcome::Committed, count: 2, .. } if delay == Duration::from_millis(1500))
        );
        let f: FaultBody = serde_json::from_value(json!({"type": "ExpireTokens"})).unwrap();
        assert_eq!(BicsFault::from(f), BicsFault::ExpireTokens);
        assert!(serde_json::from_value::<FaultBody>(json!({"type": "Http", "api": "x"})).is_err());
    }

    #[test]
    fn faults_match_by_api_and_run_out() {
        let sim = BicsSim::new(BicsConfig::default());
        sim.inject(BicsFault::Http {
            api: "/api/fetchSIM".into(),
            status: 503,
            count: 2,
        });
        sim.inject(BicsFault::Slow {
            api: "*".into(),
            delay: Duration::ZERO,
            outcome: Outcome::Committed,
            count: 0,
        });
        assert!(sim.take_fault("fetchSIM", false).is_none());
        assert!(sim.take_fault("login", true).is_none());
        assert!(sim.take_fault("fetchSIM", true).is_some());
        assert!(sim.take_fault("fetchSIM", true).is_some());
        assert!(sim.take_fault("fetchSIM", true).is_none());
    }

    #[test]
    fn hooks_attach_detach_and_drift() {
        let sim = BicsSim::new(BicsConfig::default());
        assert_eq!(sim.service_profile_by_name("DEFAULT").len(), 1);
        let plan = sim.attach_profile_to_plan("SP_1001");
        assert_eq!(sim.lock().plans_using("SP_1001").len(), 2);
        sim.detach_plan(&plan);
        sim.detach_plan("572960");
        assert!(sim.lock().plans_using("SP_1001").is_empty());
        assert!(sim.endpoints().iter().all(|e| e["planId"] == "-"));
        let e = sim.endpoints()[0].clone();
        sim.set_endpoint_state(e["endPointId"].as_str().unwrap(), "Suspended");
        let after = sim.endpoint_by_iccid(e["iccid"].as_str().unwrap()).unwrap();
        assert_eq!(after["status"], "Suspended");
        assert_eq!(after["simStatus"], "Suspended");
    }
}
