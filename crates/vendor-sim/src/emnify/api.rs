//! Request handling for emnify's `/api/v1/...` routes: authentication, bearer checks, rate
//! limits and every resource handler, all running synchronously on the locked [`State`].
//!
//! Dispatch is a single `match` on method and path segments rather than an axum route table so
//! that emnify's own error shapes (400 1000 for non-numeric ids, gateway 401s, 429 bodies) come
//! out exactly, and so that rate limits and the request log see every request the same way.

use std::collections::{BTreeSet, HashMap};
use std::net::Ipv4Addr;
use std::time::Instant;

use serde_json::{Map, Value, json};
use sha1::{Digest, Sha1};

use super::error::{ApiError, ApiResult, Reply, invalid_format, invalid_reference, out_of_range, required};
use super::jwt::{self, Subject, TokenProblem};
use super::listing::{self, Attr};
use super::model::{
    ApiCallback, ApiSecret, DATA_LIMIT_PERIOD, DataLimit, Dns, Endpoint, PROFILE_FLAGS, SERVICE_DATA, ServiceProfile,
    State, now_secs, ts,
};
use super::ratelimit::{self, PER_IP};

/// One API request as the handlers see it.
pub(crate) struct ApiRequest {
    pub method: String,
    /// Path below `/api`, e.g. `/v1/endpoint/12`.
    pub path: String,
    pub query: HashMap<String, String>,
    pub body: Vec<u8>,
    pub authorization: Option<String>,
    /// `http://host:port`, used for absolute `Location` and `Link` URLs.
    pub base_url: String,
}

const LOCKOUT_SECS: i64 = 300;
const MAX_FAILURES: u32 = 3;
/// Refresh tokens outlive auth tokens; emnify does not document their lifetime.
const REFRESH_TTL_SECS: i64 = 7 * 24 * 3600;

fn parse_id(raw: &str) -> Result<i64, ApiError> {
    raw.parse::<i64>().map_err(|_| ApiError::bad_id(raw))
}

fn parse_body(body: &[u8]) -> Result<Map<String, Value>, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(ApiError::bad_request("Request body must be a JSON object")),
        Err(e) => Err(ApiError::bad_request(format!("Malformed JSON request body: {e}"))),
    }
}

/// A `{"id": N}` / `{"id": null}` / `null` reference field: `None` when absent,
/// `Some(None)` when cleared, `Some(Some(id))` when set; `Err` on any other shape.
fn ref_field(m: &Map<String, Value>, key: &str) -> Result<Option<Option<i64>>, ()> {
    match m.get(key) {
        None => Ok(None),
        Some(Value::Null) => Ok(Some(None)),
        Some(Value::Object(o)) => match o.get("id") {
            Some(Value::Null) => Ok(Some(None)),
            Some(v) => as_i64(v).map(|id| Some(Some(id))).ok_or(()),
            None => Err(()),
        },
        Some(_) => Err(()),
    }
}

/// Ids arrive as numbers or numeric strings (the published schemas use both).
fn as_i64(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n
            .as_i64()
            .or_else(|| n.as_f64().filter(|f| f.fract() == 0.0).map(|f| f as i64)),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn opt_string(m: &Map<String, Value>, key: &str) -> Result<Option<Option<String>>, ()> {
    match m.get(key) {
        None => Ok(None),
        Some(Value::Null) => Ok(Some(None)),
        Some(Value::String(s)) => Ok(Some(Some(s.clone()))),
        Some(_) => Err(()),
    }
}

/// SIM status transitions of spec §7.2; staying in place is a no-op.
fn sim_transition_allowed(from: i64, to: i64) -> bool {
    from == to || matches!((from, to), (0, 1) | (0, 4) | (4, 1) | (1, 2) | (2, 1))
}

impl State {
    /// Listing answers keep their `X-*` paging headers and `Link` only when
    /// `EmnifyConfig::paging_headers` is on (emnify's docs describe them; its OpenAPI spec
    /// declares none).
    fn paging_headers(&self, mut reply: Reply) -> Reply {
        if !self.config.paging_headers {
            reply
                .headers
                .retain(|(name, _)| !(name.starts_with("x-") || *name == "link"));
        }
        reply
    }

    /// Handles one request below `/api`; the caller has already applied latency and faults.
    pub fn handle(&mut self, req: &ApiRequest) -> ApiResult {
        let bulk = req.path.trim_end_matches('/') == "/v2/endpoint/multi";
        let Some(rest) = req.path.strip_prefix("/v1/").or(bulk.then_some("")) else {
            return Err(ApiError::emnify(
                404,
                1201,
                "NotFound",
                format!("No resource at /api{}", req.path),
            ));
        };
        let segs: Vec<&str> = rest.trim_end_matches('/').split('/').collect();
        let method = req.method.as_str();
        let now = Instant::now();

        if self.config.rate_limits {
            let scale = self.config.rate_limit_scale;
            if !self.buckets.take("per-ip", PER_IP, scale, now) {
                return Err(ApiError::too_many_requests());
            }
            if let Some((key, limit)) = ratelimit::classify(method, &segs)
                && !self.buckets.take(&key, limit, scale, now)
            {
                return Err(ApiError::too_many_requests());
            }
        }

        if method == "POST" && segs == ["authenticate"] {
            return self.authenticate(&req.body);
        }
        self.check_bearer(req.authorization.as_deref())?;
        if bulk {
            return match method {
                "PATCH" => self.bulk_update_endpoints(&req.body),
                _ => Err(ApiError::emnify(
                    404,
                    1201,
                    "NotFound",
                    format!("{method} /api/v2/endpoint/multi is not simulated"),
                )),
            };
        }
        self.route(method, &segs, req)
    }

    /// `PATCH /api/v2/endpoint/multi` (`bulk-update-endpoint`): each element is applied as
    /// `PATCH /api/v1/endpoint/{id}` would apply it [INF: emnify documents the fields, not that
    /// they behave as the single update's]. More than [`BULK_UPDATE_LIMIT`] elements answer 422
    /// [INF: the limit is documented, its answer is not]. An element that fails answers for the
    /// request (its 404 / 409 / 422), and by default nothing of the request is applied [INF:
    /// emnify does not say; `EmnifyConfig::bulk_partial_apply` keeps the elements before the
    /// failing one instead].
    fn bulk_update_endpoints(&mut self, raw: &[u8]) -> ApiResult {
        let Ok(Value::Array(items)) = serde_json::from_slice::<Value>(raw) else {
            return Err(ApiError::bad_request(
                "Request body must be an array of endpoint objects",
            ));
        };
        if items.len() > BULK_UPDATE_LIMIT {
            return Err(ApiError::validation(
                format!("At most {BULK_UPDATE_LIMIT} endpoints can be updated in one request"),
                vec![],
            ));
        }
        let mut parsed = Vec::with_capacity(items.len());
        for item in items {
            let Value::Object(body) = item else {
                return Err(ApiError::bad_request("Every element must be an endpoint object"));
            };
            let Some(id) = body.get("id").and_then(as_i64) else {
                return Err(ApiError::validation(
                    "Bulk update endpoint validation error",
                    vec![required("Endpoint", "id")],
                ));
            };
            parsed.push((id, body));
        }
        let mut applied = Vec::with_capacity(parsed.len());
        for (id, body) in &parsed {
            let saved = self.save_endpoint(*id, body);
            if let Err(e) = self.patch_endpoint(*id, body) {
                if !self.config.bulk_partial_apply {
                    for saved in applied.into_iter().rev() {
                        self.restore_endpoint(saved);
                    }
                }
                return Err(e);
            }
            applied.push(saved);
        }
        Ok(Reply::empty(204))
    }

    /// What a bulk element may change: its endpoint, the SIMs it releases or assigns, the IP
    /// address it frees.
    fn save_endpoint(&self, id: i64, body: &Map<String, Value>) -> Saved {
        let endpoint = self.endpoints.get(&id).cloned();
        let mut sims: Vec<i64> = endpoint.as_ref().and_then(|e| e.sim).into_iter().collect();
        sims.extend(body.get("sim").and_then(|s| s.get("id")).and_then(as_i64));
        Saved {
            id,
            sims: sims.into_iter().map(|s| (s, self.sims.get(&s).cloned())).collect(),
            endpoint,
        }
    }

    fn restore_endpoint(&mut self, saved: Saved) {
        let now = self.endpoints.get(&saved.id).map(|e| e.ip_address);
        match saved.endpoint {
            Some(before) => {
                if now.is_some_and(|ip| ip != before.ip_address) {
                    now.map(|ip| self.used_ips.remove(&ip));
                    self.used_ips.insert(before.ip_address);
                }
                self.endpoints.insert(saved.id, before);
            }
            None => {
                self.endpoints.remove(&saved.id);
            }
        }
        for (id, sim) in saved.sims {
            match sim {
                Some(sim) => self.sims.insert(id, sim),
                None => self.sims.remove(&id),
            };
        }
    }

    fn route(&mut self, method: &str, segs: &[&str], req: &ApiRequest) -> ApiResult {
        let base = req.base_url.as_str();
        match (method, segs) {
            // --- service profiles (§5)
            ("GET", ["service_profile"]) => {
                let list: Vec<Value> = self.service_profiles.values().map(|p| self.profile_short(p)).collect();
                Ok(Reply::json(Value::Array(list)))
            }
            ("POST", ["service_profile"]) => {
                let body = parse_body(&req.body)?;
                let name = body.get("name").and_then(Value::as_str);
                if name.is_some_and(|n| self.service_profiles.values().any(|p| p.name == n)) {
                    self.repeated_creates += 1;
                }
                let id = self.create_profile(&body)?;
                Ok(Reply::created(format!("{base}/api/v1/service_profile/{id}")))
            }
            ("GET", ["service_profile", id]) => {
                let id = parse_id(id)?;
                let p = self
                    .service_profiles
                    .get(&id)
                    .ok_or_else(|| ApiError::not_found("Service profile", id))?;
                Ok(Reply::json(self.profile_detail(p)))
            }
            ("PATCH", ["service_profile", id]) => {
                let id = parse_id(id)?;
                let body = parse_body(&req.body)?;
                self.patch_profile(id, &body)?;
                // Documented as 201 with an empty body.
                Ok(Reply::empty(201))
            }
            ("DELETE", ["service_profile", id]) => {
                let id = parse_id(id)?;
                self.delete_profile(id)
            }
            ("PUT", ["service_profile", pid, "service", sid]) => self.add_service(parse_id(pid)?, parse_id(sid)?),
            ("DELETE", ["service_profile", pid, "service", sid]) => self.remove_service(parse_id(pid)?, parse_id(sid)?),
            ("PUT", ["service_profile", pid, "service", sid, "traffic_limit", lid]) => {
                self.attach_limit(parse_id(pid)?, parse_id(sid)?, parse_id(lid)?, true)
            }
            ("DELETE", ["service_profile", pid, "service", sid, "traffic_limit", lid]) => {
                self.attach_limit(parse_id(pid)?, parse_id(sid)?, parse_id(lid)?, false)
            }
            ("GET", ["service_profile", pid, "traffic_limit"]) => {
                let p = self.profile_or_403(parse_id(pid)?)?;
                Ok(Reply::json(Value::Array(
                    p.data_limits.iter().map(DataLimit::to_json).collect(),
                )))
            }
            ("POST", ["service_profile", pid, "traffic_limit"]) => {
                let pid = parse_id(pid)?;
                let body = parse_body(&req.body)?;
                let id = self.add_data_limit(pid, &body)?;
                Ok(Reply::created(format!(
                    "{base}/api/v1/service_profile/{pid}/traffic_limit/{id}"
                )))
            }
            ("DELETE", ["service_profile", pid, "traffic_limit"]) => {
                let pid = parse_id(pid)?;
                self.profile_or_403(pid)?;
                if let Some(p) = self.service_profiles.get_mut(&pid) {
                    p.data_limits.clear();
                }
                Ok(Reply::empty(204))
            }
            ("DELETE", ["service_profile", pid, "traffic_limit", lid]) => {
                let (pid, lid) = (parse_id(pid)?, parse_id(lid)?);
                self.profile_or_403(pid)?;
                let p = self
                    .service_profiles
                    .get_mut(&pid)
                    .ok_or_else(|| ApiError::not_found("Service profile", pid))?;
                let before = p.data_limits.len();
                p.data_limits.retain(|l| l.id != lid);
                if p.data_limits.len() == before {
                    return Err(ApiError::not_found("Traffic limit", lid));
                }
                Ok(Reply::empty(204))
            }
            ("DELETE", ["service_profile", pid, "quota", kind]) => {
                let pid = parse_id(pid)?;
                if !self.service_profiles.contains_key(&pid) {
                    return Err(ApiError::not_found("Service profile", pid));
                }
                if !matches!(*kind, "data" | "sms") {
                    return Err(ApiError::validation(
                        "Invalid quota type",
                        vec![invalid_format("Quota", "type")],
                    ));
                }
                // Quotas are not modelled; clearing them is accepted and has no further effect.
                Ok(Reply::empty(204))
            }

            // --- lookups (§5.5)
            ("GET", ["service"]) => Ok(Reply::json(Value::Array(
                self.services.iter().map(|s| s.to_json()).collect(),
            ))),
            ("GET", ["service", sid, "traffic_limit"]) => {
                let sid = parse_id(sid)?;
                if !self.services.iter().any(|s| s.id == sid) {
                    return Err(ApiError::not_found("Service", sid));
                }
                let list: Vec<Value> = self
                    .traffic_limits
                    .values()
                    .filter(|l| l.service_id == sid)
                    .map(|l| self.traffic_limit_json(l))
                    .collect();
                Ok(Reply::json(Value::Array(list)))
            }
            ("GET", ["traffic_limit"]) => {
                let list: Vec<Value> = self
                    .traffic_limits
                    .values()
                    .map(|l| {
                        let mut v = self.traffic_limit_json(l);
                        let desc = self
                            .services
                            .iter()
                            .find(|s| s.id == l.service_id)
                            .map(|s| s.description);
                        v["service"] = json!({"id": l.service_id, "description": desc});
                        v
                    })
                    .collect();
                Ok(Reply::json(Value::Array(list)))
            }
            ("GET", ["breakout_region"]) => Ok(Reply::json(Value::Array(
                self.breakout_regions.iter().map(|b| self.breakout_json(b.0)).collect(),
            ))),
            ("GET", ["esme_interface_type"]) => Ok(Reply::json(Value::Array(
                self.esme_types.iter().map(|e| self.esme_json(e.0)).collect(),
            ))),
            ("GET", ["dns"]) => Ok(Reply::json(Value::Array(self.dns.values().map(Dns::to_json).collect()))),
            ("POST", ["dns"]) => {
                let body = parse_body(&req.body)?;
                self.create_dns(&body)
            }
            ("DELETE", ["dns", id]) => {
                let id = parse_id(id)?;
                if !self.dns.contains_key(&id) {
                    return Err(ApiError::not_found("DNS", id));
                }
                if self.service_profiles.values().any(|p| p.dns == Some(id)) {
                    return Err(ApiError::conflict(format!(
                        "DNS with id {id} is used by a service profile"
                    )));
                }
                self.dns.remove(&id);
                Ok(Reply::empty(204))
            }
            ("GET", ["api_callback"]) => Ok(Reply::json(Value::Array(
                self.api_callbacks.values().map(|c| self.callback_json(c)).collect(),
            ))),
            ("POST", ["api_callback"]) => {
                let body = parse_body(&req.body)?;
                let id = self.create_callback(&body)?;
                Ok(Reply::created(format!("{base}/api/v1/api_callback/{id}")))
            }
            ("GET", ["api_callback", id]) => {
                let id = parse_id(id)?;
                let c = self
                    .api_callbacks
                    .get(&id)
                    .ok_or_else(|| ApiError::not_found("API callback", id))?;
                Ok(Reply::json(self.callback_json(c)))
            }
            ("DELETE", ["api_callback", id]) => {
                let id = parse_id(id)?;
                if !self.api_callbacks.contains_key(&id) {
                    return Err(ApiError::not_found("API callback", id));
                }
                if self
                    .service_profiles
                    .values()
                    .any(|p| p.api_callback == Some(id) || p.moc_callback == Some(id))
                {
                    return Err(ApiError::conflict(format!(
                        "API callback with id {id} is used by a service profile"
                    )));
                }
                self.api_callbacks.remove(&id);
                Ok(Reply::empty(204))
            }
            ("GET", ["api_secret"]) => Ok(Reply::json(Value::Array(
                self.api_secrets.values().map(|s| self.secret_json(s)).collect(),
            ))),
            ("POST", ["api_secret"]) => {
                let body = parse_body(&req.body)?;
                let id = self.create_secret(&body)?;
                Ok(Reply::created(format!("{base}/api/v1/api_secret/{id}")))
            }
            ("GET", ["api_secret", id]) => {
                let id = parse_id(id)?;
                let s = self
                    .api_secrets
                    .get(&id)
                    .ok_or_else(|| ApiError::not_found("API secret", id))?;
                Ok(Reply::json(self.secret_json(s)))
            }
            ("DELETE", ["api_secret", id]) => {
                let id = parse_id(id)?;
                if !self.api_secrets.contains_key(&id) {
                    return Err(ApiError::not_found("API secret", id));
                }
                if self.service_profiles.values().any(|p| p.api_secret == Some(id)) {
                    return Err(ApiError::conflict(format!(
                        "API secret with id {id} is used by a service profile"
                    )));
                }
                self.api_secrets.remove(&id);
                Ok(Reply::empty(204))
            }
            ("GET", ["tariff_profile"]) => Ok(Reply::json(Value::Array(
                self.tariff_profiles.values().map(|t| self.tariff_json(t)).collect(),
            ))),
            ("GET", ["tariff_profile", id]) => {
                let id = parse_id(id)?;
                let t = self
                    .tariff_profiles
                    .get(&id)
                    .ok_or_else(|| ApiError::not_found("Tariff profile", id))?;
                Ok(Reply::json(self.tariff_json(t)))
            }
            ("GET", ["endpoint", "status"]) => Ok(Reply::json(json!([
                {"id": 0, "description": "Enabled"},
                {"id": 1, "description": "Disabled"},
                {"id": 2, "description": "Deleted"},
            ]))),
            ("GET", ["sim", "status"]) => Ok(Reply::json(json!([
                {"id": 0, "description": "Issued"},
                {"id": 1, "description": "Activated"},
                {"id": 2, "description": "Suspended"},
                {"id": 3, "description": "Deleted"},
                {"id": 4, "description": "Factory Test"},
            ]))),

            // --- endpoints (§6)
            ("GET", ["endpoint"]) => listing::respond(
                &listing::ENDPOINTS,
                base,
                &req.query,
                self.endpoints.values().collect(),
                |e, f| self.endpoint_attr(e, f),
                |e| self.endpoint_json(e, false),
            )
            .map(|r| self.paging_headers(r)),
            ("POST", ["endpoint"]) => {
                let body = parse_body(&req.body)?;
                let name = body.get("name").and_then(Value::as_str);
                let sim = body.get("sim").and_then(|s| s.get("id")).and_then(as_i64);
                if name.is_some_and(|n| self.endpoints.values().any(|e| e.name == n))
                    || sim.is_some_and(|id| self.sims.get(&id).is_some_and(|s| s.endpoint.is_some()))
                {
                    self.repeated_creates += 1;
                }
                let id = self.create_endpoint(&body)?;
                // emnify's OpenAPI spec documents the created endpoint as the 201 body; recorded
                // traffic also shows a `Location` header.
                // `sim` and `imei_with_luhn` are required there, null when there is none.
                let created = self.endpoints.get(&id).map(|e| {
                    let mut v = self.endpoint_json(e, true);
                    for key in ["sim", "imei_with_luhn"] {
                        if v.get(key).is_none() {
                            v[key] = Value::Null;
                        }
                    }
                    v
                });
                Ok(Reply {
                    body: created,
                    ..Reply::created(format!("{base}/api/v1/endpoint/{id}"))
                })
            }
            ("GET", ["endpoint", id]) => {
                let id = parse_id(id)?;
                let e = self.endpoints.get(&id).ok_or_else(|| endpoint_missing(id))?;
                Ok(Reply::json(self.endpoint_json(e, true)))
            }
            ("PATCH", ["endpoint", id]) => {
                let id = parse_id(id)?;
                let body = parse_body(&req.body)?;
                self.patch_endpoint(id, &body)?;
                Ok(Reply::empty(204))
            }
            ("DELETE", ["endpoint", id]) => {
                let id = parse_id(id)?;
                let e = self.endpoints.get(&id).ok_or_else(|| endpoint_missing(id))?;
                if e.sim.is_some() {
                    return Err(ApiError::conflict(format!(
                        "Endpoint with id {id} has a SIM assigned; release the SIM before deleting"
                    )));
                }
                if let Some(e) = self.endpoints.remove(&id) {
                    self.used_ips.remove(&e.ip_address);
                }
                Ok(Reply::empty(204))
            }
            ("GET", ["endpoint", id, "connectivity"]) => {
                let id = parse_id(id)?;
                let e = self.endpoints.get(&id).ok_or_else(|| endpoint_missing(id))?;
                Ok(Reply::json(connectivity_json(e)))
            }
            ("PATCH", ["endpoint", id, "connectivity"]) => {
                let id = parse_id(id)?;
                let body = parse_body(&req.body)?;
                let e = self.endpoints.get_mut(&id).ok_or_else(|| endpoint_missing(id))?;
                if body.is_empty()
                    || body
                        .iter()
                        .any(|(k, v)| !matches!(k.as_str(), "location" | "pdp_context") || !v.is_null())
                {
                    return Err(ApiError::validation(
                        "Reset connectivity validation error",
                        vec![invalid_format("Connectivity", "location/pdp_context")],
                    ));
                }
                // Cancel Location detaches the device; Delete PDP Context only ends the session.
                if body.contains_key("location") {
                    e.connectivity = "OFFLINE".into();
                } else if e.connectivity == "ONLINE" {
                    e.connectivity = "ATTACHED".into();
                }
                Ok(Reply::empty(204))
            }

            // --- SIMs (§7)
            ("GET", ["sim"]) => listing::respond(
                &listing::SIMS,
                base,
                &req.query,
                self.sims.values().collect(),
                |s, f| self.sim_attr(s, f),
                |s| self.sim_json(s),
            )
            .map(|r| self.paging_headers(r)),
            ("GET", ["sim", id]) => {
                let id = parse_id(id)?;
                let s = self.sims.get(&id).ok_or_else(|| ApiError::not_found("SIM", id))?;
                Ok(Reply::json(self.sim_json(s)))
            }
            ("PATCH", ["sim", id]) => {
                let id = parse_id(id)?;
                let body = parse_body(&req.body)?;
                self.patch_sim(id, &body)?;
                Ok(Reply::empty(204))
            }
            ("DELETE", ["sim", id]) => {
                let id = parse_id(id)?;
                let s = self.sims.get(&id).ok_or_else(|| ApiError::not_found("SIM", id))?;
                if let Some(ep) = s.endpoint {
                    return Err(ApiError::conflict(format!(
                        "SIM with id {id} is assigned to endpoint {ep}"
                    )));
                }
                if let Some(sim) = self.sims.remove(&id) {
                    self.deleted_sims.push((sim.iccid, sim.imsi));
                }
                Ok(Reply::empty(204))
            }
            _ => Err(ApiError::emnify(
                404,
                1201,
                "NotFound",
                format!("No resource {method} /api{}", req.path),
            )),
        }
    }

    // ---------------------------------------------------------------- auth

    fn authenticate(&mut self, raw: &[u8]) -> ApiResult {
        let body = parse_body(raw)?;
        let now = now_secs().timestamp();
        let ttl = i64::try_from(self.config.token_ttl.as_secs()).unwrap_or(i64::MAX / 2);
        let str_field = |k: &str| body.get(k).and_then(Value::as_str).map(str::to_string);

        if let Some(token) = str_field("application_token") {
            if token != self.config.application_token {
                return Err(ApiError {
                    status: 401,
                    body: None,
                    headers: Vec::new(),
                });
            }
            let t = self.issue_auth(&Subject::App(self.app_token_id), now, ttl);
            return Ok(Reply::json(json!({"auth_token": t})));
        }
        if let (Some(username), Some(password)) = (str_field("username"), str_field("password")) {
            let (failures, locked_until) = self.login_failures.get(&username).copied().unwrap_or((0, 0));
            if locked_until > now {
                return Err(ApiError::emnify(
                    401,
                    1105,
                    "TooManyRequests",
                    "Too many failed login attempts; account locked for 5 minutes",
                ));
            }
            let expected = hex::encode(Sha1::digest(self.config.password.as_bytes()));
            if username != self.config.username || !password.eq_ignore_ascii_case(&expected) {
                let failures = failures + 1;
                let locked = if failures >= MAX_FAILURES {
                    now + LOCKOUT_SECS
                } else {
                    0
                };
                self.login_failures
                    .insert(username, (if locked > 0 { 0 } else { failures }, locked));
                return Err(ApiError {
                    status: 401,
                    body: None,
                    headers: Vec::new(),
                });
            }
            self.login_failures.remove(&username);
            let subject = Subject::User {
                id: self.user_id,
                username,
            };
            let auth = self.issue_auth(&subject, now, ttl);
            let refresh = self.issue_refresh(&subject, now);
            return Ok(Reply::json(json!({"auth_token": auth, "refresh_token": refresh})));
        }
        if let Some(refresh) = str_field("refresh_token") {
            let valid = jwt::verify(&self.jwt_key, &refresh).ok().filter(|c| {
                c["esc.typ"] == "refresh"
                    && c["exp"].as_i64().is_some_and(|exp| exp > now)
                    && self.live_refresh_tokens.contains(&refresh)
            });
            let Some(claims) = valid else {
                return Err(ApiError {
                    status: 401,
                    body: None,
                    headers: Vec::new(),
                });
            };
            let subject = Subject::User {
                id: claims["esc.usr"].as_i64().unwrap_or(self.user_id),
                username: claims["sub"].as_str().unwrap_or_default().to_string(),
            };
            let t = self.issue_auth(&subject, now, ttl);
            return Ok(Reply::json(json!({"auth_token": t})));
        }
        Err(ApiError::bad_request(
            "Request body must contain application_token, username and password, or refresh_token",
        ))
    }

    fn issue_auth(&mut self, subject: &Subject, now: i64, ttl: i64) -> String {
        let claims = jwt::auth_claims(self.org.id, &self.org.name, subject, now, now.saturating_add(ttl));
        let t = jwt::sign(&self.jwt_key, &claims);
        self.live_auth_tokens.insert(t.clone());
        t
    }

    fn issue_refresh(&mut self, subject: &Subject, now: i64) -> String {
        let mut claims = jwt::auth_claims(self.org.id, &self.org.name, subject, now, now + REFRESH_TTL_SECS);
        claims["esc.typ"] = json!("refresh");
        let t = jwt::sign(&self.jwt_key, &claims);
        self.live_refresh_tokens.insert(t.clone());
        t
    }

    /// Bearer checks of spec §9.2, in the order the gateway and the app apply them.
    fn check_bearer(&self, header: Option<&str>) -> Result<(), ApiError> {
        let Some(header) = header else {
            return Err(ApiError::gateway(401, "Unauthorized", "UnauthorizedException"));
        };
        let token = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
            .unwrap_or(header)
            .trim();
        let claims = match jwt::verify(&self.jwt_key, token) {
            Ok(c) => c,
            Err(TokenProblem::Segments) => {
                return Err(ApiError::gateway(
                    401,
                    "token contains an invalid number of segments",
                    "AccessDeniedException",
                ));
            }
            Err(_) => return Err(ApiError::emnify(401, 1102, "InvalidToken", "Invalid token")),
        };
        if claims["esc.typ"] != "auth" {
            return Err(ApiError::emnify(401, 1102, "InvalidToken", "Invalid token"));
        }
        let exp = claims["exp"].as_i64().unwrap_or(0);
        if exp <= now_secs().timestamp() || !self.live_auth_tokens.contains(token) {
            return Err(ApiError::emnify(401, 1103, "TokenExpired", "Token expired"));
        }
        Ok(())
    }

    // ---------------------------------------------------------------- service profiles

    fn profile_or_403(&self, pid: i64) -> Result<&ServiceProfile, ApiError> {
        // Data-limit calls answer 403 for unknown profiles ("not found or not accessible").
        self.service_profiles.get(&pid).ok_or_else(|| {
            ApiError::emnify(
                403,
                1104,
                "Forbidden",
                format!("Service profile with id {pid} not found or not accessible"),
            )
        })
    }

    /// Validates `body` and applies it to `p`; collects nested errors rather than stopping at
    /// the first so the 1400 wrapper lists them all, as emnify's does.
    fn apply_profile_fields(&self, p: &mut ServiceProfile, body: &Map<String, Value>, errors: &mut Vec<Value>) {
        match opt_string(body, "name") {
            Ok(Some(Some(n))) if !n.trim().is_empty() => p.name = n,
            Ok(None) => {}
            Ok(Some(_)) => errors.push(required("ServiceProfile", "name")),
            Err(()) => errors.push(invalid_format("ServiceProfile", "name")),
        }
        match opt_string(body, "description") {
            Ok(Some(d)) => p.description = d,
            Ok(None) => {}
            Err(()) => errors.push(invalid_format("ServiceProfile", "description")),
        }
        for (flag, _) in PROFILE_FLAGS {
            match body.get(*flag) {
                None => {}
                Some(Value::Bool(b)) => {
                    p.flags.insert(flag, *b);
                }
                Some(_) => errors.push(invalid_format("ServiceProfile", flag)),
            }
        }
        // Deprecated alias, ignored when apply_data_quota is present (spec §5.1).
        if let (Some(Value::Bool(b)), None) = (body.get("apply_quota"), body.get("apply_data_quota")) {
            p.flags.insert("apply_data_quota", *b);
        }
        type Slot = fn(&mut ServiceProfile) -> &mut Option<i64>;
        let refs: [(&str, &str, Slot); 6] = [
            ("api_callback", "API callback", |p| &mut p.api_callback),
            ("moc_callback", "MOC callback", |p| &mut p.moc_callback),
            ("api_secret", "API secret", |p| &mut p.api_secret),
            ("esme_interface_type", "ESME interface type", |p| {
                &mut p.esme_interface_type
            }),
            ("breakout_region", "Breakout region", |p| &mut p.breakout_region),
            ("dns", "DNS", |p| &mut p.dns),
        ];
        for (key, label, slot) in refs {
            match ref_field(body, key) {
                Ok(None) => {}
                Ok(Some(None)) => *slot(p) = None,
                Ok(Some(Some(id))) => {
                    let exists = match key {
                        "api_callback" | "moc_callback" => self.api_callbacks.contains_key(&id),
                        "api_secret" => self.api_secrets.contains_key(&id),
                        "esme_interface_type" => self.esme_types.iter().any(|e| e.0 == id),
                        "breakout_region" => self.breakout_regions.iter().any(|b| b.0 == id),
                        _ => self.dns.contains_key(&id),
                    };
                    if exists {
                        *slot(p) = Some(id);
                    } else {
                        errors.push(invalid_reference(format!("Invalid reference to {label} with id {id}")));
                    }
                }
                Err(()) => errors.push(invalid_format("ServiceProfile", key)),
            }
        }
    }

    pub fn create_profile(&mut self, body: &Map<String, Value>) -> Result<i64, ApiError> {
        let mut errors = Vec::new();
        if !matches!(body.get("name"), Some(Value::String(s)) if !s.trim().is_empty()) {
            return Err(ApiError::validation(
                "Create service profile validation error",
                vec![required("ServiceProfile", "name")],
            ));
        }
        let mut p = ServiceProfile::new(0, String::new());
        self.apply_profile_fields(&mut p, body, &mut errors);
        if !errors.is_empty() {
            return Err(ApiError::validation("Create service profile validation error", errors));
        }
        p.id = self.alloc_id();
        let id = p.id;
        self.service_profiles.insert(id, p);
        Ok(id)
    }

    pub fn patch_profile(&mut self, id: i64, body: &Map<String, Value>) -> Result<(), ApiError> {
        let mut p = self
            .service_profiles
            .get(&id)
            .cloned()
            .ok_or_else(|| ApiError::not_found("Service profile", id))?;
        let mut errors = Vec::new();
        self.apply_profile_fields(&mut p, body, &mut errors);
        if !errors.is_empty() {
            return Err(ApiError::validation("Update service profile validation error", errors));
        }
        self.service_profiles.insert(id, p);
        Ok(())
    }

    fn delete_profile(&mut self, id: i64) -> ApiResult {
        let p = self
            .service_profiles
            .get(&id)
            .ok_or_else(|| ApiError::not_found("Service profile", id))?;
        let used = self.used_count(id);
        if used > 0 {
            return Err(ApiError::conflict(format!(
                "Service profile {} ({id}) is in use by {used} endpoint(s)",
                p.name
            )));
        }
        self.service_profiles.remove(&id);
        Ok(Reply::empty(204))
    }

    fn add_service(&mut self, pid: i64, sid: i64) -> ApiResult {
        if !self.services.iter().any(|s| s.id == sid) {
            return Err(ApiError::not_found("Service", sid));
        }
        let p = self
            .service_profiles
            .get_mut(&pid)
            .ok_or_else(|| ApiError::not_found("Service profile", pid))?;
        if p.services.contains_key(&sid) {
            return Err(ApiError::duplicated(format!(
                "Service {sid} is already assigned to service profile {pid}"
            )));
        }
        p.services.insert(sid, BTreeSet::new());
        Ok(Reply::empty(204))
    }

    fn remove_service(&mut self, pid: i64, sid: i64) -> ApiResult {
        let p = self
            .service_profiles
            .get_mut(&pid)
            .ok_or_else(|| ApiError::not_found("Service profile", pid))?;
        let Some(limits) = p.services.get(&sid) else {
            return Err(ApiError::not_found("Service", sid));
        };
        if !limits.is_empty() {
            return Err(ApiError::conflict(format!(
                "Service {sid} on service profile {pid} still has traffic limits assigned"
            )));
        }
        p.services.remove(&sid);
        Ok(Reply::empty(204))
    }

    fn attach_limit(&mut self, pid: i64, sid: i64, lid: i64, attach: bool) -> ApiResult {
        if !self.service_profiles.contains_key(&pid) {
            return Err(ApiError::not_found("Service profile", pid));
        }
        let limit = self
            .traffic_limits
            .get(&lid)
            .ok_or_else(|| ApiError::not_found("Traffic limit", lid))?;
        if limit.service_id != sid {
            return Err(ApiError::emnify(
                422,
                1401,
                "InvalidReference",
                format!(
                    "Traffic limit {lid} belongs to service {}, not to service {sid}",
                    limit.service_id
                ),
            ));
        }
        let p = self
            .service_profiles
            .get_mut(&pid)
            .ok_or_else(|| ApiError::not_found("Service profile", pid))?;
        let Some(limits) = p.services.get_mut(&sid) else {
            return Err(ApiError::emnify(
                422,
                1401,
                "InvalidReference",
                format!("Service {sid} is not assigned to service profile {pid}"),
            ));
        };
        if attach {
            // Attaching twice is idempotent: the documented errors are only 404 and 422.
            limits.insert(lid);
        } else if !limits.remove(&lid) {
            return Err(ApiError::emnify(
                422,
                1401,
                "InvalidReference",
                format!("Traffic limit {lid} is not assigned to service {sid} on service profile {pid}"),
            ));
        }
        Ok(Reply::empty(200))
    }

    fn add_data_limit(&mut self, pid: i64, body: &Map<String, Value>) -> Result<i64, ApiError> {
        self.profile_or_403(pid)?;
        let service = match ref_field(body, "service") {
            Ok(Some(Some(id))) => id,
            _ => {
                return Err(ApiError::bad_request("service.id is required and must be 38 (Data)"));
            }
        };
        if service != SERVICE_DATA {
            return Err(ApiError::bad_request(format!(
                "Unsupported service {service}; only 38 (Data) is supported"
            )));
        }
        let period = match ref_field(body, "period") {
            Ok(None) => DATA_LIMIT_PERIOD,
            Ok(Some(Some(id))) => id,
            _ => return Err(ApiError::bad_request("period must be {\"id\": 2}")),
        };
        if period != DATA_LIMIT_PERIOD {
            return Err(ApiError::bad_request(format!(
                "Unsupported period {period}; only 2 (calendar month) is supported"
            )));
        }
        let volume = match body.get("volume").and_then(as_i64) {
            Some(v) if v > 0 => v,
            _ => {
                return Err(ApiError::bad_request(
                    "volume is required and must be a positive number of bytes",
                ));
            }
        };
        let satellite_only = match body.get("satellite_only") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(_) => return Err(ApiError::bad_request("satellite_only must be a boolean")),
        };
        let warning_percent = match body.get("warning_percent") {
            None | Some(Value::Null) => None,
            Some(v) => match as_i64(v) {
                Some(w) if (0..=100).contains(&w) => Some(w),
                _ => {
                    return Err(ApiError::bad_request("warning_percent must be between 0 and 100"));
                }
            },
        };
        if self
            .service_profiles
            .get(&pid)
            .is_some_and(|p| p.data_limits.iter().any(|l| l.satellite_only == satellite_only))
        {
            return Err(ApiError::duplicated(format!(
                "A data limit for service 38 with satellite_only={satellite_only} already exists on service profile {pid}"
            )));
        }
        let id = self.alloc_id();
        if let Some(p) = self.service_profiles.get_mut(&pid) {
            p.data_limits.push(DataLimit {
                id,
                satellite_only,
                volume,
                warning_percent,
            });
        }
        Ok(id)
    }

    fn create_dns(&mut self, body: &Map<String, Value>) -> ApiResult {
        let primary = body.get("primary").and_then(Value::as_str);
        let secondary = body.get("secondary").and_then(Value::as_str);
        let version = body.get("ip_address_version").and_then(as_i64);
        let mut errors = Vec::new();
        if primary.is_none() {
            errors.push(required("DNS", "primary"));
        }
        if secondary.is_none() {
            errors.push(required("DNS", "secondary"));
        }
        match version {
            None => errors.push(required("DNS", "ip_address_version")),
            Some(4 | 6) => {}
            Some(_) => errors.push(invalid_format("DNS", "ip_address_version")),
        }
        for (field, v) in [("primary", primary), ("secondary", secondary)] {
            if let Some(v) = v
                && v.parse::<std::net::IpAddr>().is_err()
            {
                errors.push(invalid_format("DNS", field));
            }
        }
        if !errors.is_empty() {
            return Err(ApiError::validation("Create DNS validation error", errors));
        }
        let id = self.alloc_id();
        self.dns.insert(
            id,
            Dns {
                id,
                primary: primary.unwrap_or_default().to_string(),
                secondary: secondary.unwrap_or_default().to_string(),
                ip_address_version: version.unwrap_or(4),
            },
        );
        Ok(Reply::empty(201))
    }

    fn create_callback(&mut self, body: &Map<String, Value>) -> Result<i64, ApiError> {
        let Some(url) = body.get("url").and_then(Value::as_str).filter(|u| !u.is_empty()) else {
            return Err(ApiError::validation(
                "Create API callback validation error",
                vec![required("ApiCallback", "url")],
            ));
        };
        let id = self.alloc_id();
        let purpose = body.get("purpose").and_then(Value::as_str).map(str::to_string);
        self.api_callbacks.insert(
            id,
            ApiCallback {
                id,
                url: url.to_string(),
                purpose,
                created: ts(now_secs()),
            },
        );
        Ok(id)
    }

    fn create_secret(&mut self, body: &Map<String, Value>) -> Result<i64, ApiError> {
        if body
            .get("secret")
            .is_none_or(|s| s.as_str().is_none_or(|s| s.is_empty()))
        {
            return Err(ApiError::validation(
                "Create API secret validation error",
                vec![required("ApiSecret", "secret")],
            ));
        }
        let id = self.alloc_id();
        let purpose = body.get("purpose").and_then(Value::as_str).map(str::to_string);
        // The secret itself is never returned, so it is not kept either.
        self.api_secrets.insert(id, ApiSecret { id, purpose });
        Ok(id)
    }

    // ---------------------------------------------------------------- endpoints

    fn endpoint_attr(&self, e: &Endpoint, field: &str) -> Attr {
        let sim = e.sim.and_then(|id| self.sims.get(&id));
        match field {
            "id" => Attr::Id(Some(e.id)),
            "status" => Attr::Id(Some(e.status)),
            "service_profile" => Attr::Id(Some(e.service_profile)),
            "tariff_profile" => Attr::Id(Some(e.tariff_profile)),
            "name" => Attr::Text(Some(e.name.clone())),
            "tags" => Attr::Text(e.tags.clone()),
            "ip_address" => Attr::Text(Some(e.ip_address.to_string())),
            "imei" => Attr::Text(e.imei.clone()),
            "created" => Attr::Date(Some(e.created.clone())),
            "last_updated" => Attr::Date(Some(e.last_updated.clone())),
            "iccid" => Attr::Text(sim.map(|s| s.iccid.clone())),
            "iccid_with_luhn" => Attr::Text(sim.map(|s| format!("{}{}", s.iccid, super::model::luhn_digit(&s.iccid)))),
            "sim_status" => Attr::Id(sim.map(|s| s.status)),
            // No simulated SIM is an eUICC.
            _ => Attr::Text(None),
        }
    }

    fn sim_attr(&self, s: &super::model::Sim, field: &str) -> Attr {
        match field {
            "id" => Attr::Id(Some(s.id)),
            "issuer_org" => Attr::Id(Some(2)),
            "customer_org" => Attr::Id(Some(self.org.id)),
            "reseller_org" => Attr::Id(None),
            "iccid" => Attr::Text(Some(s.iccid.clone())),
            "iccid_with_luhn" => Attr::Text(Some(format!("{}{}", s.iccid, super::model::luhn_digit(&s.iccid)))),
            "status" => Attr::Id(Some(s.status)),
            "production_date" => Attr::Date(Some(s.production_date.clone())),
            "imsi" => Attr::Text(Some(s.imsi.clone())),
            "msisdn" => Attr::Text(Some(s.msisdn.clone())),
            "endpoint" => Attr::Id(s.endpoint),
            "model" => Attr::Id(Some(4)),
            "satellite_capable" => Attr::Bool(false),
            _ => Attr::Text(None),
        }
    }

    /// Applies a SIM status change, enforcing §7.2 and stamping the first activation.
    fn set_sim_status(&mut self, sim_id: i64, to: i64) -> Result<(), ApiError> {
        let s = self
            .sims
            .get_mut(&sim_id)
            .ok_or_else(|| ApiError::not_found("SIM", sim_id))?;
        if !sim_transition_allowed(s.status, to) {
            return Err(ApiError::conflict(format!(
                "SIM status transition from {} to {} is not allowed",
                super::model::sim_status_desc(s.status),
                super::model::sim_status_desc(to)
            )));
        }
        if to == 1 && s.activation_date.is_none() {
            s.activation_date = Some(ts(now_secs()));
        }
        s.status = to;
        Ok(())
    }

    fn check_ip(
        &self,
        body: &Map<String, Value>,
        own: Option<Ipv4Addr>,
        errors: &mut Vec<Value>,
    ) -> Result<Option<Ipv4Addr>, ApiError> {
        let Some(raw) = body.get("ip_address") else {
            return Ok(None);
        };
        let Some(ip) = raw.as_str().and_then(|s| s.parse::<Ipv4Addr>().ok()) else {
            errors.push(invalid_format("Endpoint", "ip_address"));
            return Ok(None);
        };
        match ref_field(body, "ip_address_space") {
            Ok(Some(Some(id))) if id == self.ip_space.id => {}
            Ok(Some(Some(id))) => {
                return Err(ApiError::emnify(
                    404,
                    1201,
                    "NotFound",
                    format!("IP address space with id {id} not found"),
                ));
            }
            Ok(None) if own.is_some() => {}
            _ => errors.push(required("Endpoint", "ip_address_space")),
        }
        if !self.ip_space.contains(ip) {
            errors.push(out_of_range("Endpoint - IP Address out of range."));
            return Ok(None);
        }
        if Some(ip) != own && self.used_ips.contains(&ip) {
            return Err(ApiError::duplicated(format!("IP address {ip} is already assigned")));
        }
        Ok(Some(ip))
    }

    /// `POST /endpoint`: required status, service_profile, tariff_profile and name.
    pub fn create_endpoint(&mut self, body: &Map<String, Value>) -> Result<i64, ApiError> {
        let mut errors = Vec::new();
        let status = match ref_field(body, "status") {
            Ok(Some(Some(s @ (0 | 1)))) => s,
            Ok(Some(Some(s))) => {
                errors.push(invalid_reference(format!("Endpoint status with Id '{s}' not found.")));
                0
            }
            _ => {
                errors.push(required("Endpoint", "status"));
                0
            }
        };
        let sp = self.check_profile_ref(body, &mut errors, true);
        let tp = self.check_tariff_ref(body, &mut errors, true);
        let name = match body.get("name") {
            Some(Value::String(s)) => s.clone(),
            None | Some(Value::Null) => {
                errors.push(required("Endpoint", "name"));
                String::new()
            }
            Some(_) => {
                errors.push(invalid_format("Endpoint", "name"));
                String::new()
            }
        };
        let tags = match opt_string(body, "tags") {
            Ok(t) => t.flatten(),
            Err(()) => {
                errors.push(invalid_format("Endpoint", "tags"));
                None
            }
        };
        let imei = match opt_string(body, "imei") {
            Ok(t) => t.flatten(),
            Err(()) => {
                errors.push(invalid_format("Endpoint", "imei"));
                None
            }
        };
        let imei_lock = body.get("imei_lock").and_then(Value::as_bool).unwrap_or(false);
        let ip = self.check_ip(body, None, &mut errors)?;
        let sim = self.check_sim_ref(body, None, &mut errors)?;
        if !errors.is_empty() {
            return Err(ApiError::validation("Create endpoint validation error", errors));
        }
        let ip = match ip {
            Some(ip) => ip,
            None => self
                .next_free_ip()
                .ok_or_else(|| ApiError::emnify(404, 1601, "Unavailable", "No IP Address available."))?,
        };
        // Validate the requested SIM status change before anything is written.
        let sim_target = match &sim {
            Some((sim_id, target)) => {
                if let (Some(to), Some(s)) = (target, self.sims.get(sim_id))
                    && !sim_transition_allowed(s.status, *to)
                {
                    return Err(ApiError::conflict(format!(
                        "SIM status transition from {} to {} is not allowed",
                        super::model::sim_status_desc(s.status),
                        super::model::sim_status_desc(*to)
                    )));
                }
                *target
            }
            None => None,
        };
        let id = self.alloc_id();
        let now = ts(now_secs());
        self.used_ips.insert(ip);
        self.endpoints.insert(
            id,
            Endpoint {
                id,
                created: now.clone(),
                last_updated: now,
                name,
                tags,
                ip_address: ip,
                imei,
                imei_lock,
                status,
                service_profile: sp.unwrap_or_default(),
                tariff_profile: tp.unwrap_or_default(),
                sim: None,
                connectivity: "OFFLINE".into(),
            },
        );
        if let Some((sim_id, _)) = sim {
            self.attach_sim(id, sim_id);
            if let Some(to) = sim_target {
                self.set_sim_status(sim_id, to)?;
            }
        }
        Ok(id)
    }

    fn check_profile_ref(
        &self,
        body: &Map<String, Value>,
        errors: &mut Vec<Value>,
        required_field: bool,
    ) -> Option<i64> {
        match ref_field(body, "service_profile") {
            Ok(Some(Some(id))) if self.service_profiles.contains_key(&id) => Some(id),
            Ok(Some(Some(id))) => {
                errors.push(invalid_reference(format!("Service profile with Id '{id}' not found.")));
                None
            }
            Ok(None) if !required_field => None,
            _ => {
                errors.push(required("Endpoint", "service_profile"));
                None
            }
        }
    }

    fn check_tariff_ref(
        &self,
        body: &Map<String, Value>,
        errors: &mut Vec<Value>,
        required_field: bool,
    ) -> Option<i64> {
        match ref_field(body, "tariff_profile") {
            Ok(Some(Some(id))) if self.tariff_profiles.contains_key(&id) => Some(id),
            Ok(Some(Some(id))) => {
                errors.push(invalid_reference(format!("Tariff profile with Id '{id}' not found.")));
                None
            }
            Ok(None) if !required_field => None,
            _ => {
                errors.push(required("Endpoint", "tariff_profile"));
                None
            }
        }
    }

    /// Validates a `sim` object for assignment to endpoint `own` (None = new endpoint).
    /// Returns the SIM id and the status it should move to (`activate` / `status`).
    #[allow(clippy::type_complexity)]
    fn check_sim_ref(
        &self,
        body: &Map<String, Value>,
        own: Option<i64>,
        errors: &mut Vec<Value>,
    ) -> Result<Option<(i64, Option<i64>)>, ApiError> {
        let Some(Value::Object(obj)) = body.get("sim") else {
            if body.get("sim").is_some_and(|v| !v.is_null()) {
                errors.push(invalid_format("Endpoint", "sim"));
            }
            return Ok(None);
        };
        let Some(id) = obj.get("id").and_then(as_i64) else {
            if obj.get("id").is_some_and(|v| !v.is_null()) || obj.get("id").is_none() {
                errors.push(required("Endpoint", "sim.id"));
            }
            return Ok(None);
        };
        let Some(sim) = self.sims.get(&id) else {
            errors.push(invalid_reference(format!("SIM with Id '{id}' not found.")));
            return Ok(None);
        };
        if let Some(ep) = sim.endpoint
            && Some(ep) != own
        {
            return Err(ApiError::duplicated(format!(
                "SIM with id {id} is already assigned to endpoint {ep}"
            )));
        }
        let status = obj.get("status").and_then(|s| s.get("id")).and_then(as_i64);
        let target = match (status, obj.get("activate").and_then(Value::as_bool)) {
            (Some(s @ (1 | 2 | 4)), _) => Some(s),
            (Some(s), _) => {
                errors.push(invalid_reference(format!(
                    "SIM status with Id '{s}' is not allowed here."
                )));
                None
            }
            // `activate` defaults to false, as in the newest docs (spec §6.2).
            (None, Some(true)) => Some(1),
            (None, _) => None,
        };
        Ok(Some((id, target)))
    }

    fn attach_sim(&mut self, endpoint: i64, sim: i64) {
        if let Some(s) = self.sims.get_mut(&sim) {
            s.endpoint = Some(endpoint);
        }
        if let Some(e) = self.endpoints.get_mut(&endpoint) {
            e.sim = Some(sim);
        }
    }

    fn patch_endpoint(&mut self, id: i64, body: &Map<String, Value>) -> Result<(), ApiError> {
        let current = self.endpoints.get(&id).cloned().ok_or_else(|| endpoint_missing(id))?;
        let mut e = current.clone();
        let mut errors = Vec::new();
        match opt_string(body, "name") {
            Ok(Some(Some(n))) => e.name = n,
            Ok(None) => {}
            _ => errors.push(invalid_format("Endpoint", "name")),
        }
        match opt_string(body, "tags") {
            Ok(Some(t)) => e.tags = t,
            Ok(None) => {}
            Err(()) => errors.push(invalid_format("Endpoint", "tags")),
        }
        match opt_string(body, "imei") {
            Ok(Some(t)) => e.imei = t,
            Ok(None) => {}
            Err(()) => errors.push(invalid_format("Endpoint", "imei")),
        }
        match body.get("imei_lock") {
            None => {}
            Some(Value::Bool(b)) => e.imei_lock = *b,
            Some(_) => errors.push(invalid_format("Endpoint", "imei_lock")),
        }
        match ref_field(body, "status") {
            Ok(None) => {}
            Ok(Some(Some(s @ (0 | 1)))) => e.status = s,
            Ok(Some(Some(s))) => errors.push(invalid_reference(format!("Endpoint status with Id '{s}' not found."))),
            _ => errors.push(invalid_format("Endpoint", "status")),
        }
        if let Some(sp) = self.check_profile_ref(body, &mut errors, false) {
            e.service_profile = sp;
        }
        if let Some(tp) = self.check_tariff_ref(body, &mut errors, false) {
            e.tariff_profile = tp;
        }
        if let Some(ip) = self.check_ip(body, Some(current.ip_address), &mut errors)? {
            e.ip_address = ip;
        }
        // `{"sim":{"id":null}}` releases the SIM; `{"sim":{"id":N[,status]}}` assigns / changes it.
        let release = matches!(body.get("sim"), Some(Value::Null))
            || body.get("sim").and_then(|s| s.get("id")).is_some_and(Value::is_null);
        let sim = if release {
            None
        } else {
            self.check_sim_ref(body, Some(id), &mut errors)?
        };
        if !errors.is_empty() {
            return Err(ApiError::validation("Update endpoint validation error", errors));
        }
        if let Some((sim_id, Some(to))) = sim {
            // Checked before any write so a refused transition leaves the endpoint untouched.
            if let Some(s) = self.sims.get(&sim_id)
                && !sim_transition_allowed(s.status, to)
            {
                return Err(ApiError::conflict(format!(
                    "SIM status transition from {} to {} is not allowed",
                    super::model::sim_status_desc(s.status),
                    super::model::sim_status_desc(to)
                )));
            }
        }
        e.last_updated = ts(now_secs());
        if e.ip_address != current.ip_address {
            self.used_ips.remove(&current.ip_address);
            self.used_ips.insert(e.ip_address);
        }
        self.endpoints.insert(id, e);
        if release {
            if let Some(old) = current.sim
                && let Some(s) = self.sims.get_mut(&old)
            {
                s.endpoint = None;
            }
            if let Some(ep) = self.endpoints.get_mut(&id) {
                ep.sim = None;
            }
        } else if let Some((sim_id, target)) = sim {
            if let Some(old) = current.sim.filter(|old| *old != sim_id)
                && let Some(s) = self.sims.get_mut(&old)
            {
                s.endpoint = None;
            }
            self.attach_sim(id, sim_id);
            if let Some(to) = target {
                self.set_sim_status(sim_id, to)?;
            }
        }
        Ok(())
    }

    // ---------------------------------------------------------------- SIMs

    fn patch_sim(&mut self, id: i64, body: &Map<String, Value>) -> Result<(), ApiError> {
        if !self.sims.contains_key(&id) {
            return Err(ApiError::not_found("SIM", id));
        }
        let mut errors = Vec::new();
        for key in ["issuer_org", "reseller_org", "customer_org"] {
            match body.get(key) {
                None => {}
                // Only re-stating the current organisation is accepted: the simulator has one org
                // and the user is a customer, who may change nothing but the status (spec §7.2).
                Some(v) if key == "customer_org" && v.get("id").and_then(as_i64) == Some(self.org.id) => {}
                Some(_) => errors.push(invalid_reference(format!("Invalid reference to {key}"))),
            }
        }
        let status = match body.get("status") {
            None => None,
            Some(v) => match v.get("id").and_then(as_i64) {
                Some(s @ 0..=4) => Some(s),
                Some(s) => {
                    errors.push(invalid_reference(format!("SIM status with Id '{s}' not found.")));
                    None
                }
                None => {
                    errors.push(required("SIM", "status.id"));
                    None
                }
            },
        };
        if !errors.is_empty() {
            return Err(ApiError::validation("Update SIM validation error", errors));
        }
        if let Some(to) = status {
            self.set_sim_status(id, to)?;
        }
        Ok(())
    }
}

/// Elements one `PATCH /api/v2/endpoint/multi` may carry ("up to 2,000 endpoints").
pub(crate) const BULK_UPDATE_LIMIT: usize = 2000;

/// A bulk element's state before it was applied (see `State::save_endpoint`).
struct Saved {
    id: i64,
    endpoint: Option<Endpoint>,
    sims: Vec<(i64, Option<super::model::Sim>)>,
}

fn endpoint_missing(id: i64) -> ApiError {
    // Recorded: unknown endpoint ids answer 404 with 1401, not 1201.
    ApiError::emnify(
        404,
        1401,
        "InvalidReference",
        format!("Endpoint with Id '{id}' not found."),
    )
}

fn connectivity_json(e: &Endpoint) -> Value {
    match e.connectivity.as_str() {
        "OFFLINE" => json!({"status": {"description": "OFFLINE"}, "services": []}),
        "BLOCKED" => json!({"status": {"description": "BLOCKED"}, "services": []}),
        status => {
            let mut v = json!({
                "status": {"description": status},
                "location": {
                    "id": e.id,
                    "imsi": "",
                    "operator": {"id": 5, "name": "Telekom", "country": {"id": 74, "name": "Germany"}},
                    "country": {"id": 74, "name": "Germany"},
                    "sgsn_ip_address": "185.24.36.10",
                },
                "services": if status == "ONLINE" { json!(["GPRS", "LTE"]) } else { json!(["GPRS"]) },
            });
            if status == "ONLINE" {
                v["pdp_context"] = json!({
                    "apn": "em",
                    "ue_ip_address": e.ip_address.to_string(),
                    "rat_type": {"id": 6, "description": "4G"},
                    "region": "eu-west-1",
                    "breakout_ip": "52.213.14.100",
                    "mcc": "262",
                    "mnc": "01",
                });
            }
            v
        }
    }
}
