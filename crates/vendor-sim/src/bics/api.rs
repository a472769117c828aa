//! Request handling for BICS's `/api/<Verb>` routes: the API table, login and refresh, the
//! X-Authorization check, the per-account rate limit and every business handler, all running
//! synchronously on the locked [`State`].
//!
//! Dispatch is a `match` on the verb rather than an axum route table so that unknown verbs,
//! wrong methods, token failures and 429s come out in the BICS envelope, and so the pipeline in
//! `mod.rs` can run faults between admission and handling.

use std::collections::{HashMap, HashSet};
use std::time::Instant;

use serde_json::{Value, json};

use super::envelope::{Answer, codes};
use super::model::{
    EndpointState, MAX_ADDONS, PLAN_CATEGORIES, Plan, ROAMING_PROFILES, SERVICES, ServiceProfile, SimStatus, State,
    needs_access_type, rat_rank,
};
use super::token::Kind;

/// One API request as the handlers see it.
pub(crate) struct ApiRequest {
    pub method: String,
    /// The verb after `/api/`, e.g. `CreateServiceProfile`.
    pub api: String,
    pub query: HashMap<String, String>,
    pub body: Vec<u8>,
    pub x_authorization: Option<String>,
    /// Whether a plain `Authorization` header came instead (named in the 401 description).
    pub has_authorization: bool,
}

/// Every verb served, with its method. Paths are case-sensitive.
pub(crate) const APIS: &[(&str, &str)] = &[
    ("login", "POST"),
    ("RefreshToken", "GET"),
    ("CreateServiceProfile", "POST"),
    ("GetServiceProfile", "GET"),
    ("ModifyServiceProfile", "POST"),
    ("DeleteServiceProfile", "POST"),
    ("CreatePlan", "POST"),
    ("QueryRatePlan", "GET"),
    ("DeletePlan", "POST"),
    ("fetchSIM", "GET"),
    ("CreateEndPoint", "POST"),
    ("EndPointActivation", "POST"),
    ("EndPointLifeCycleChange", "POST"),
    ("ChangePlan", "POST"),
    ("LinkSim", "POST"),
    ("DeLinkSim", "POST"),
    ("DeleteEndPoint", "POST"),
    ("GetEndPointProfile", "GET"),
];

/// A scalar sent as a string, number or boolean (clients send strings, §1); `None` for absent,
/// `null`, empty strings and non-scalars.
fn scalar(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_string()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn flag(v: Option<&Value>) -> Option<bool> {
    match scalar(v)?.to_ascii_lowercase().as_str() {
        "true" | "1" => Some(true),
        "false" | "0" => Some(false),
        _ => None,
    }
}

fn parse_body(body: &[u8]) -> Result<Value, String> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Value::Null);
    }
    serde_json::from_slice(body).map_err(|e| format!("Malformed JSON request body: {e}"))
}

/// `service` as `"4|2|3"`, a single number, or an array; order kept, duplicates dropped.
/// `Err((code, description))`.
fn parse_services(v: Option<&Value>, fail: &'static str) -> Result<Vec<u32>, (&'static str, String)> {
    let pieces: Vec<String> = match v {
        Some(Value::Array(items)) => items.iter().filter_map(|i| scalar(Some(i))).collect(),
        other => scalar(other)
            .map(|s| s.split('|').map(|p| p.trim().to_string()).collect())
            .unwrap_or_default(),
    };
    if pieces.is_empty() || pieces.iter().all(String::is_empty) {
        return Err((fail, "service is mandatory".into()));
    }
    let mut out = Vec::new();
    for p in pieces {
        let id: u32 = p
            .parse()
            .map_err(|_| (fail, format!("service must be service ids joined with '|', got '{p}'")))?;
        if !SERVICES.iter().any(|(s, _)| *s == id) {
            return Err((
                codes::INVALID_CHILD_CONFIG,
                format!("Invalid child config for service profile: service {id} is not granted to this account"),
            ));
        }
        if !out.contains(&id) {
            out.push(id);
        }
    }
    Ok(out)
}

/// `accessType` as `"10"`, `10`, `"6"` or `"06"`; `Ok(None)` when absent or empty.
fn parse_access_type(v: Option<&Value>) -> Result<Option<String>, (&'static str, String)> {
    let Some(raw) = scalar(v) else { return Ok(None) };
    let code = match raw.parse::<u32>() {
        Ok(1) => "01",
        Ok(2) => "02",
        Ok(6) => "06",
        Ok(10) => "10",
        _ => {
            return Err((
                codes::OBSOLETE_ACCESS_TYPE,
                format!("Obsolete access type value '{raw}' (allowed: 01, 02, 06, 10)"),
            ));
        }
    };
    Ok(Some(code.to_string()))
}

fn parse_one_of(v: Option<&Value>, allowed: &[&str]) -> Option<String> {
    scalar(v).filter(|s| allowed.contains(&s.as_str()))
}

fn no_data(what: &str, id: &str) -> Answer {
    Answer::fail(codes::NO_DATA, format!("No data available: {what} '{id}' not found"))
}

impl State {
    /// The verb is known and called with the right method; else HTTP 404/405.
    pub fn route_check(method: &str, api: &str) -> Result<(), Answer> {
        match APIS.iter().find(|(name, _)| *name == api) {
            None => Err(Answer::fail(codes::NO_SUCH_API, format!("No such API: /api/{api}")).with_status(404)),
            Some((_, m)) if !m.eq_ignore_ascii_case(method) => {
                Err(Answer::fail(codes::WRONG_METHOD, format!("/api/{api} expects {m}, got {method}")).with_status(405))
            }
            Some(_) => Ok(()),
        }
    }

    fn token_error(&self, description: &str) -> Answer {
        let status = if self.config.http_401 { 401 } else { 200 };
        Answer::fail(codes::TOKEN, description).with_status(status)
    }

    /// Rate limit and X-Authorization check; `login` and `RefreshToken` carry their own
    /// credentials and are only rate limited here.
    pub fn admit(&mut self, req: &ApiRequest) -> Result<(), Answer> {
        let account = match req.api.as_str() {
            // Login counts against the account it logs into (or the unknown username).
            "login" => {
                let body = parse_body(&req.body).unwrap_or(Value::Null);
                match scalar(body.get("username")) {
                    Some(u) if u == self.config.username => self.account.id.clone(),
                    Some(u) => format!("login:{u}"),
                    None => "login:".to_string(),
                }
            }
            "RefreshToken" => {
                let token = bearer(req.x_authorization.as_deref()).unwrap_or_default();
                match self.tokens.check(token, Kind::Refresh) {
                    Some(a) => a.to_string(),
                    None => return Err(self.token_error("Invalid or expired refresh token")),
                }
            }
            _ => {
                let Some(token) = bearer(req.x_authorization.as_deref()) else {
                    let why = if req.has_authorization {
                        "Invalid token: send the access token in X-Authorization, not Authorization"
                    } else {
                        "Invalid token: X-Authorization header missing"
                    };
                    return Err(self.token_error(why));
                };
                match self.tokens.check(token, Kind::Access) {
                    Some(a) => a.to_string(),
                    None => return Err(self.token_error("Invalid or expired access token")),
                }
            }
        };
        if let Some((rate, burst)) = self.config.rate_limit
            && !self.buckets.take(&account, rate, burst, Instant::now())
        {
            return Err(Answer::fail(
                codes::RATE_LIMITED,
                format!("Request rate limit exceeded for account {account}"),
            )
            .with_status(429));
        }
        Ok(())
    }

    /// Handles an admitted request.
    pub fn handle(&mut self, req: &ApiRequest) -> Answer {
        let body = if req.method == "GET" {
            Ok(Value::Null)
        } else {
            parse_body(&req.body)
        };
        let body = match body {
            Ok(b) => b,
            Err(e) => {
                let code = match req.api.as_str() {
                    "login" => codes::LOGIN_FAILED,
                    "CreateServiceProfile" => codes::SP_CREATE_FAILED,
                    "ModifyServiceProfile" => codes::SP_MODIFY_FAILED,
                    "DeleteServiceProfile" => codes::SP_DELETE_FAILED,
                    _ => codes::INVALID_REQUEST,
                };
                return Answer::fail(code, e);
            }
        };
        let q = |k: &str| req.query.get(k).map(|v| v.trim()).filter(|v| !v.is_empty());
        match req.api.as_str() {
            "login" => self.login(&body),
            // `admit` has already checked the refresh token.
            "RefreshToken" => {
                let user = self.config.username.clone();
                self.issue_pair(&user)
            }
            "CreateServiceProfile" => self.create_profile(&body),
            "GetServiceProfile" => self.get_profiles(q("serviceProfileId")),
            "ModifyServiceProfile" => self.modify_profile(&body),
            "DeleteServiceProfile" => self.delete_profile(&body),
            "CreatePlan" => self.create_plan(&body),
            "QueryRatePlan" => self.query_plans(&req.query),
            "DeletePlan" => self.delete_plan(&body),
            "fetchSIM" => self.fetch_sims(&req.query),
            "CreateEndPoint" => self.create_endpoint(&body),
            "GetEndPointProfile" => match q("endPointId") {
                None => Answer::fail(codes::INVALID_REQUEST, "endPointId is mandatory"),
                Some(id) => match State::endpoint_key(id).and_then(|k| self.endpoints.get(&k)) {
                    None => no_data("endPointId", id),
                    Some(e) => Answer::ok(codes::OK, "Success")
                        .with("info", self.endpoint_profile(e, self.config.inferred.endpoint_extras)),
                },
            },
            api => self.endpoint_action(api, &body),
        }
    }

    // ---------------------------------------------------------------- auth (§2)

    fn login(&mut self, body: &Value) -> Answer {
        let (Some(user), Some(password)) = (scalar(body.get("username")), scalar(body.get("password"))) else {
            return Answer::fail(codes::LOGIN_FAILED, "username and password are mandatory");
        };
        if user != self.config.username || password != self.config.password {
            return Answer::fail(codes::LOGIN_FAILED, "Invalid username or password");
        }
        // One Enterprise account and no children: support access to ourselves is a no-op.
        if let Some(target) = scalar(body.get("targetAccountId"))
            && target != self.account.id
        {
            return Answer::fail(
                codes::UNKNOWN_TARGET,
                format!("Target account {target} is not a child of this account"),
            );
        }
        self.issue_pair(&user)
    }

    fn issue_pair(&mut self, user: &str) -> Answer {
        let (access_ttl, refresh_ttl) = (self.config.access_ttl, self.config.refresh_ttl);
        let (access, refresh) = self
            .tokens
            .issue_pair(&self.key, user, &self.account.id, access_ttl, refresh_ttl);
        Answer::raw(json!({"AccessToken": access, "RefreshToken": refresh}))
    }

    // ---------------------------------------------------------------- service profiles (§3)

    fn create_profile(&mut self, body: &Value) -> Answer {
        let fail = |d: &str| Answer::fail(codes::SP_CREATE_FAILED, d);
        let Some(sp) = body
            .pointer("/Request/requestParam/serviceProfile")
            .filter(|v| v.is_object())
        else {
            return fail("Request.requestParam.serviceProfile is mandatory");
        };
        let Some(name) = scalar(sp.get("name")) else {
            return fail("name is mandatory");
        };
        let Some(category) = parse_one_of(sp.get("category"), &["0", "1"]) else {
            return fail("category is mandatory: 0 (Base) or 1 (Addon)");
        };
        let Some(status) = parse_one_of(sp.get("status"), &["0", "1"]) else {
            return fail("status is mandatory: 0 (Inactive) or 1 (Active)");
        };
        let services = match parse_services(sp.get("service"), codes::SP_CREATE_FAILED) {
            Ok(s) => s,
            Err((code, d)) => return Answer::fail(code, d),
        };
        let access_type = match parse_access_type(sp.get("accessType")) {
            Ok(a) => a,
            Err((code, d)) => return Answer::fail(code, d),
        };
        if let Err(d) = check_access_combination(&services, access_type.as_deref()) {
            return fail(&d);
        }
        if self.profiles.values().any(|p| p.name == name) {
            self.repeated_creates += 1;
            return Answer::fail(
                codes::DUPLICATE_NAME,
                format!("Duplicate service profile name '{name}'"),
            );
        }
        self.next_profile += 1;
        let p = ServiceProfile {
            n: self.next_profile,
            name,
            category,
            status,
            services,
            access_type,
        };
        let id = p.id();
        self.profiles.insert(p.n, p);
        Answer::ok(codes::SP_CREATED, "Create service profile success").with("serviceProfile", json!(id))
    }

    fn get_profiles(&self, id: Option<&str>) -> Answer {
        let rows = match id {
            Some(id) => match self.profile_by_id(id) {
                Some(p) => vec![p.row(self.config.inferred.profile_codes)],
                None => return no_data("serviceProfileId", id),
            },
            None => self
                .profiles
                .values()
                .map(|p| p.row(self.config.inferred.profile_codes))
                .collect(),
        };
        Answer::ok(codes::SP_GET_OK, "Get service profile success").rows(rows)
    }

    fn modify_profile(&mut self, body: &Value) -> Answer {
        let fail = |d: &str| Answer::fail(codes::SP_MODIFY_FAILED, d);
        let Some(sp) = body
            .pointer("/Request/requestParam/serviceProfile")
            .filter(|v| v.is_object())
        else {
            return fail("Request.requestParam.serviceProfile is mandatory");
        };
        let Some(id) = ["id", "serviceProfileId", "profileId"]
            .iter()
            .find_map(|k| scalar(sp.get(*k)))
        else {
            return fail("id (the SP_ id) is mandatory");
        };
        let Some(current) = self.profile_by_id(&id).cloned() else {
            return no_data("serviceProfileId", &id);
        };
        let attached = self.plans_using(&current.id());
        let mut next = current.clone();

        if let Some(name) = scalar(sp.get("name")) {
            if name != current.name && self.profiles.values().any(|p| p.name == name) {
                return Answer::fail(
                    codes::DUPLICATE_NAME,
                    format!("Duplicate service profile name '{name}'"),
                );
            }
            next.name = name;
        }
        if sp.get("status").is_some_and(|v| !v.is_null()) {
            match parse_one_of(sp.get("status"), &["0", "1"]) {
                Some(s) => next.status = s,
                None => return fail("status must be 0 (Inactive) or 1 (Active)"),
            }
        }
        if let Some(c) = scalar(sp.get("category"))
            && c != current.category
        {
            return fail("category cannot be modified; create a new service profile instead");
        }
        if sp.get("service").is_some_and(|v| !v.is_null()) {
            match parse_services(sp.get("service"), codes::SP_MODIFY_FAILED) {
                Ok(s) => next.services = s,
                Err((code, d)) => return Answer::fail(code, d),
            }
        }
        let sent_access = match parse_access_type(sp.get("accessType")) {
            Ok(a) => a,
            Err((code, d)) => return Answer::fail(code, d),
        };
        if !needs_access_type(&next.services) && sent_access.is_none() {
            // NB-IoT only: the stored RAT no longer applies.
            next.access_type = None;
        } else if sent_access.is_some() {
            next.access_type = sent_access;
        }
        if let Err(d) = check_access_combination(&next.services, next.access_type.as_deref()) {
            return fail(&d);
        }
        if !attached.is_empty() {
            let services_changed =
                next.services.iter().collect::<HashSet<_>>() != current.services.iter().collect::<HashSet<_>>();
            if current.category == "1" && services_changed {
                return Answer::fail(
                    codes::ADDON_SERVICE,
                    format!(
                        "Service modification not allowed for addon service: {} is attached to plan(s) {}",
                        current.id(),
                        attached.join(", ")
                    ),
                );
            }
            if let (Some(old), Some(new)) = (&current.access_type, &next.access_type)
                && rat_rank(new) < rat_rank(old)
            {
                return Answer::fail(
                    codes::RAT_CONFLICT,
                    format!(
                        "Service profile change denied due to RAT privileges conflict: {} is attached to plan(s) {}; \
                         accessType may only be raised (from {old}, got {new})",
                        current.id(),
                        attached.join(", ")
                    ),
                );
            }
        }
        self.profiles.insert(next.n, next);
        Answer::ok(codes::SP_MODIFIED, "Modify service profile success")
    }

    fn delete_profile(&mut self, body: &Value) -> Answer {
        let param = body.pointer("/Request/requestParam");
        let id = param.and_then(|p| {
            scalar(p.get("serviceProfileId"))
                .or_else(|| scalar(p.get("serviceProfile")))
                .or_else(|| scalar(p.pointer("/serviceProfile/id")))
                .or_else(|| scalar(p.pointer("/serviceProfile/serviceProfileId")))
        });
        let Some(id) = id else {
            return Answer::fail(codes::SP_DELETE_FAILED, "serviceProfile.id is mandatory");
        };
        let Some(n) = self.profile_by_id(&id).map(|p| p.n) else {
            return no_data("serviceProfileId", &id);
        };
        let plans = self.plans_using(&id);
        if !plans.is_empty() {
            return Answer::fail(
                codes::SP_ATTACHED,
                format!(
                    "Service profile {id} is attached to plan(s) {}; delete the plan first",
                    plans.join(", ")
                ),
            );
        }
        self.profiles.remove(&n);
        Answer::ok(codes::SP_DELETED, "Delete service profile success")
    }

    // ---------------------------------------------------------------- plans (§5, minimal)

    fn create_plan(&mut self, body: &Value) -> Answer {
        let fail = |d: String| Answer::fail(codes::INVALID_REQUEST, d);
        let Some(basic) = body.pointer("/Request/plan/basicInfo").filter(|v| v.is_object()) else {
            return fail("Request.plan.basicInfo is mandatory".into());
        };
        let Some(name) = scalar(basic.get("planName")) else {
            return fail("planName is mandatory".into());
        };
        let Some(category) = scalar(basic.get("planCategory"))
            .map(|c| c.to_ascii_uppercase())
            .filter(|c| PLAN_CATEGORIES.contains(&c.as_str()))
        else {
            return fail(format!(
                "planCategory is mandatory: one of {}",
                PLAN_CATEGORIES.join(", ")
            ));
        };
        let profile = scalar(basic.get("serviceProfile"));
        match &profile {
            None if matches!(category.as_str(), "NORMAL" | "ADDON") => {
                return fail("serviceProfile is mandatory for NORMAL and ADDON plans".into());
            }
            Some(p) if self.profile_by_id(p).is_none() => {
                return fail(format!("serviceProfile {p} does not exist"));
            }
            _ => {}
        }
        if self.plans.values().any(|p| p.name == name) {
            return Answer::fail(codes::CONFLICT, format!("Plan name '{name}' already exists"));
        }
        let id = self.alloc_plan_id();
        self.plans.insert(
            id.clone(),
            Plan {
                id: id.clone(),
                name,
                category,
                plan_type: scalar(basic.get("planType")).unwrap_or_else(|| "0".into()),
                service_profile: profile,
                status: scalar(basic.get("planStatus")).unwrap_or_else(|| "Active".into()),
            },
        );
        Answer::ok(codes::OK, "Create plan success").with("planId", json!(id))
    }

    fn query_plans(&self, query: &HashMap<String, String>) -> Answer {
        let matches = |key: &str, value: &str| {
            query
                .get(key)
                .map(|v| v.trim())
                .filter(|v| !v.is_empty())
                .is_none_or(|v| v.eq_ignore_ascii_case(value))
        };
        let rows = self
            .plans
            .values()
            .filter(|p| {
                matches("planCategory", &p.category)
                    && matches("planType", &p.plan_type)
                    && matches("planId", &p.id)
                    && matches("serviceProfile", p.service_profile.as_deref().unwrap_or("-"))
            })
            .map(Plan::row)
            .collect();
        Answer::ok(codes::OK, "Query rate plan success").rows(rows)
    }

    fn delete_plan(&mut self, body: &Value) -> Answer {
        let id =
            scalar(body.pointer("/Request/plan/basicInfo/planId")).or_else(|| scalar(body.pointer("/Request/planId")));
        let Some(id) = id else {
            return Answer::fail(codes::INVALID_REQUEST, "plan.basicInfo.planId is mandatory");
        };
        if !self.plans.contains_key(&id) {
            return no_data("planId", &id);
        }
        let users: Vec<&str> = self
            .endpoints
            .values()
            .filter(|e| e.plan_id.as_deref() == Some(id.as_str()) || e.addon_plan_ids.contains(&id))
            .map(|e| e.id.as_str())
            .collect();
        if !users.is_empty() {
            return Answer::fail(
                codes::CONFLICT,
                format!(
                    "Plan {id} is in use by endpoint(s) {}; detach it first",
                    users.join(", ")
                ),
            );
        }
        self.plans.remove(&id);
        Answer::ok(codes::OK, "Delete plan success")
    }

    // ---------------------------------------------------------------- SIMs and endpoints (§7)

    fn fetch_sims(&self, query: &HashMap<String, String>) -> Answer {
        let q = |k: &str| query.get(k).map(|v| v.trim()).filter(|v| !v.is_empty());
        let number = |k: &str| -> Result<Option<u64>, Answer> {
            match q(k) {
                None => Ok(None),
                Some(v) => v
                    .parse::<u64>()
                    .map(Some)
                    .map_err(|_| Answer::fail(codes::INVALID_REQUEST, format!("{k} must be a number, got '{v}'"))),
            }
        };
        let (status_id, attach_id, page, per_page) = match (
            number("simStatusId"),
            number("simAttachStatusId"),
            number("page"),
            number("perPage"),
        ) {
            (Ok(a), Ok(b), Ok(c), Ok(d)) => (a, b, c, d),
            (Err(e), ..) | (_, Err(e), ..) | (_, _, Err(e), _) | (.., Err(e)) => return e,
        };
        let page = page.unwrap_or(1).max(1) as usize;
        let per_page = (per_page.unwrap_or(100) as usize).clamp(1, self.config.max_per_page.max(1));
        let matching: Vec<_> = self
            .sims
            .values()
            .filter(|s| q("iccid").is_none_or(|i| s.iccid == i))
            .filter(|s| q("endPointId").is_none_or(|e| s.endpoint.as_deref() == Some(e)))
            .filter(|s| status_id.is_none_or(|id| u64::from(s.status.id()) == id))
            .filter(|s| attach_id.is_none_or(|a| (a == 1) == s.endpoint.is_some()))
            .collect();
        let extras = self.config.inferred.sim_row_extras;
        let rows: Vec<Value> = matching
            .iter()
            .skip((page - 1).saturating_mul(per_page))
            .take(per_page)
            .map(|s| s.row(extras))
            .collect();
        let mut param = json!({"rows": rows});
        if self.config.inferred.sim_list_totals {
            param["totalCount"] = json!(matching.len().to_string());
            param["page"] = json!(page.to_string());
            param["perPage"] = json!(per_page.to_string());
        }
        Answer::ok(codes::OK, "Success").with("responseParam", param)
    }

    fn create_endpoint(&mut self, body: &Value) -> Answer {
        let fail = |d: String| Answer::fail(codes::INVALID_REQUEST, d);
        let Some(rp) = body.pointer("/Request/requestParam").filter(|v| v.is_object()) else {
            return fail("Request.requestParam is mandatory".into());
        };
        let Some(name) = scalar(rp.get("name")) else {
            return fail("name is mandatory".into());
        };
        let Some(link) = flag(rp.get("isLinkSIM")) else {
            return fail("isLinkSIM is mandatory: \"true\" or \"false\"".into());
        };
        // Documented as mandatory ("14. Endpoint"); several ids are joined with `|`.
        let Some(roaming) = scalar(rp.get("roamingProfileId")) else {
            return fail("roamingProfileId is mandatory".into());
        };
        if let Some(unknown) = roaming
            .split('|')
            .map(str::trim)
            .find(|r| !ROAMING_PROFILES.contains(r))
        {
            return fail(format!("roaming profile {unknown} does not exist"));
        }
        let activate = flag(rp.get("isDefaultActivation")).unwrap_or(false);
        let iccid = scalar(rp.get("iccid"));
        if self.endpoints.values().any(|e| e.name == name)
            || iccid
                .as_ref()
                .is_some_and(|i| self.sims.get(i).is_some_and(|s| s.endpoint.is_some()))
        {
            self.repeated_creates += 1;
        }
        if link {
            let Some(iccid) = &iccid else {
                return fail("iccid is mandatory when isLinkSIM is true".into());
            };
            match self.sims.get(iccid) {
                None => return fail(format!("SIM {iccid} does not exist")),
                Some(s) if s.endpoint.is_some() || s.status != SimStatus::ReadyToActivate => {
                    return Answer::fail(
                        codes::CONFLICT,
                        format!("SIM {iccid} is not available (status {})", s.status.label()),
                    );
                }
                Some(_) => {}
            }
        } else if activate {
            return fail("isDefaultActivation needs a linked SIM (isLinkSIM true)".into());
        }
        let plan_id = scalar(rp.get("planId"));
        if let Some(p) = &plan_id
            && let Err(d) = self.check_base_plan(p)
        {
            return fail(d);
        }
        let addons: Vec<String> = match rp.get("addonPlanIds") {
            Some(Value::Array(items)) => items.iter().filter_map(|i| scalar(Some(i))).collect(),
            other => scalar(other).into_iter().collect(),
        };
        if addons.len() > MAX_ADDONS {
            return fail(format!("at most {MAX_ADDONS} addon plans per endpoint"));
        }
        for a in &addons {
            if self.plans.get(a).is_none_or(|p| p.category != "ADDON") {
                return fail(format!("addon plan {a} does not exist or is not an ADDON plan"));
            }
        }
        self.next_endpoint += 1;
        let n = self.next_endpoint;
        let id = n.to_string();
        let state = match (link, activate) {
            (true, true) => EndpointState::Active,
            _ => EndpointState::PreActive,
        };
        self.endpoints.insert(
            n,
            super::model::Endpoint {
                id: id.clone(),
                name,
                state,
                iccid: if link { iccid.clone() } else { None },
                plan_id,
                addon_plan_ids: addons,
                roaming_profile_id: scalar(rp.get("roamingProfileId")),
                apn_group_id: scalar(rp.get("apnGroupId")),
            },
        );
        if link
            && let Some(iccid) = iccid
            && let Some(s) = self.sims.get_mut(&iccid)
        {
            s.endpoint = Some(id.clone());
        }
        self.set_state(n, state);
        Answer::ok(codes::OK, "Create endpoint success").with("endPointId", json!(id))
    }

    fn check_base_plan(&self, plan_id: &str) -> Result<(), String> {
        match self.plans.get(plan_id) {
            None => Err(format!("plan {plan_id} does not exist")),
            Some(p) if p.category == "ADDON" => Err(format!("plan {plan_id} is an ADDON plan, not a base plan")),
            Some(_) => Ok(()),
        }
    }

    /// The actions addressed by `Request.endPointId`.
    fn endpoint_action(&mut self, api: &str, body: &Value) -> Answer {
        let id = scalar(body.pointer("/Request/endPointId"))
            .or_else(|| scalar(body.pointer("/Request/requestParam/endPointId")));
        let Some(id) = id else {
            return Answer::fail(codes::INVALID_REQUEST, "Request.endPointId is mandatory");
        };
        let Some((n, e)) = State::endpoint_key(&id).and_then(|n| self.endpoints.get(&n).map(|e| (n, e.clone()))) else {
            return no_data("endPointId", &id);
        };
        let param = body.pointer("/Request/requestParam");
        let not_attached = || Answer::fail(codes::SIM_NOT_ATTACHED, format!("No SIM is attached to endpoint {id}"));
        match api {
            "EndPointActivation" => {
                if e.iccid.is_none() {
                    return not_attached();
                }
                if e.state == EndpointState::Active {
                    return Answer::fail(codes::ALREADY_ACTIVE, format!("Endpoint {id} is already active"));
                }
                self.set_state(n, EndpointState::Active);
                Answer::ok(codes::ENDPOINT_ACTIVATED, "Endpoint activated successfully")
            }
            "EndPointLifeCycleChange" => {
                let Some(life) = scalar(param.and_then(|p| p.get("lifeCycle"))) else {
                    return Answer::fail(codes::INVALID_REQUEST, "requestParam.lifeCycle is mandatory (A or S)");
                };
                if e.iccid.is_none() {
                    return not_attached();
                }
                let to = match (life.to_ascii_uppercase().as_str(), e.state) {
                    ("S", EndpointState::Active | EndpointState::Suspended) => EndpointState::Suspended,
                    ("A", EndpointState::Active | EndpointState::Suspended) => EndpointState::Active,
                    ("S" | "A", from) => {
                        return Answer::fail(
                            codes::CONFLICT,
                            format!(
                                "Lifecycle change {life} not allowed from {}; use EndPointActivation first",
                                from.label()
                            ),
                        );
                    }
                    _ => {
                        return Answer::fail(
                            codes::INVALID_REQUEST,
                            format!("Unsupported lifeCycle '{life}' (the simulator supports A and S)"),
                        );
                    }
                };
                self.set_state(n, to);
                Answer::ok(codes::LIFECYCLE_CHANGED, "Endpoint lifecycle changed successfully").with(
                    "responseParam",
                    json!({"currentStatus": to.label(), "previousStatus": e.state.label()}),
                )
            }
            "ChangePlan" => {
                let Some(plan) = scalar(param.and_then(|p| p.get("planId"))) else {
                    return Answer::fail(codes::INVALID_REQUEST, "requestParam.planId is mandatory");
                };
                if let Err(d) = self.check_base_plan(&plan) {
                    return Answer::fail(codes::INVALID_REQUEST, d);
                }
                if let Some(ep) = self.endpoints.get_mut(&n) {
                    ep.plan_id = Some(plan);
                }
                Answer::ok(codes::PLAN_CHANGED, "Plan changed successfully")
            }
            "LinkSim" => {
                let Some(iccid) = scalar(param.and_then(|p| p.get("iccid"))) else {
                    return Answer::fail(codes::INVALID_REQUEST, "requestParam.iccid is mandatory");
                };
                if let Some(current) = &e.iccid {
                    return Answer::fail(
                        codes::CONFLICT,
                        format!("Endpoint {id} already has SIM {current}; de-link it first"),
                    );
                }
                match self.sims.get_mut(&iccid) {
                    None => return Answer::fail(codes::INVALID_REQUEST, format!("SIM {iccid} does not exist")),
                    Some(s) if s.endpoint.is_some() || s.status != SimStatus::ReadyToActivate => {
                        return Answer::fail(
                            codes::CONFLICT,
                            format!("SIM {iccid} is not available (status {})", s.status.label()),
                        );
                    }
                    Some(s) => s.endpoint = Some(id.clone()),
                }
                if let Some(ep) = self.endpoints.get_mut(&n) {
                    ep.iccid = Some(iccid);
                }
                self.set_state(n, EndpointState::PreActive);
                Answer::ok(codes::OK, "SIM linked successfully")
            }
            "DeLinkSim" => {
                let Some(iccid) = e.iccid else {
                    return not_attached();
                };
                if let Some(s) = self.sims.get_mut(&iccid) {
                    s.endpoint = None;
                    s.status = SimStatus::ReadyToActivate;
                }
                self.delinked.push(iccid.clone());
                if let Some(ep) = self.endpoints.get_mut(&n) {
                    ep.iccid = None;
                    ep.state = EndpointState::Hold;
                }
                Answer::ok(codes::SIM_DELINKED, "SIM de-linked successfully")
            }
            "DeleteEndPoint" => {
                if let Some(iccid) = e.iccid {
                    return Answer::fail(
                        codes::CONFLICT,
                        format!("Endpoint {id} still has SIM {iccid}; de-link it first"),
                    );
                }
                self.endpoints.remove(&n);
                Answer::ok(codes::ENDPOINT_DELETED, "Endpoint deleted successfully")
            }
            other => Answer::fail(codes::NO_SUCH_API, format!("No such API: /api/{other}")).with_status(404),
        }
    }
}

/// accessType is mandatory with DATA/SMS-MO/SMS-MT and refused without them (NB-IoT only).
fn check_access_combination(services: &[u32], access_type: Option<&str>) -> Result<(), String> {
    match (needs_access_type(services), access_type) {
        (true, None) => Err("accessType is mandatory when DATA, SMS-MO or SMS-MT is selected".into()),
        (false, Some(_)) => Err("accessType is rejected when none of DATA, SMS-MO, SMS-MT is selected".into()),
        _ => Ok(()),
    }
}

/// The token of an `X-Authorization: Bearer <token>` header (the scheme is optional).
pub(crate) fn bearer(header: Option<&str>) -> Option<&str> {
    let h = header?.trim();
    let t = match h.split_once(char::is_whitespace) {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("bearer") => rest.trim(),
        _ if h.eq_ignore_ascii_case("bearer") => "",
        _ => h,
    };
    (!t.is_empty()).then_some(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scalars_services_and_access_types() {
        assert_eq!(scalar(Some(&json!(10))), Some("10".into()));
        assert_eq!(scalar(Some(&json!(" 1 "))), Some("1".into()));
        assert_eq!(scalar(Some(&json!(""))), None);
        assert_eq!(
            parse_services(Some(&json!("4|2|3|4")), codes::SP_CREATE_FAILED),
            Ok(vec![4, 2, 3])
        );
        assert_eq!(parse_services(Some(&json!(5)), codes::SP_CREATE_FAILED), Ok(vec![5]));
        assert_eq!(
            parse_services(Some(&json!(["4", 2])), codes::SP_CREATE_FAILED),
            Ok(vec![4, 2])
        );
        assert_eq!(
            parse_services(Some(&json!("4|7")), codes::SP_CREATE_FAILED)
                .unwrap_err()
                .0,
            codes::INVALID_CHILD_CONFIG
        );
        assert_eq!(
            parse_services(None, codes::SP_MODIFY_FAILED).unwrap_err().0,
            codes::SP_MODIFY_FAILED
        );
        assert_eq!(parse_access_type(Some(&json!(6))), Ok(Some("06".into())));
        assert_eq!(parse_access_type(Some(&json!("10"))), Ok(Some("10".into())));
        assert_eq!(parse_access_type(Some(&json!(""))), Ok(None));
        assert_eq!(
            parse_access_type(Some(&json!("03"))).unwrap_err().0,
            codes::OBSOLETE_ACCESS_TYPE
        );
        assert!(check_access_combination(&[4], None).is_err());
        assert!(check_access_combination(&[5], Some("10")).is_err());
        assert!(check_access_combination(&[5], None).is_ok());
        assert_eq!(bearer(Some("Bearer abc")), Some("abc"));
        assert_eq!(bearer(Some("Bearer ")), None);
        assert_eq!(bearer(Some("bearer  xyz")), Some("xyz"));
        assert_eq!(bearer(Some("xyz")), Some("xyz"));
    }

    #[test]
    fn route_table() {
        assert!(State::route_check("POST", "CreateServiceProfile").is_ok());
        assert_eq!(
            State::route_check("GET", "CreateServiceProfile").unwrap_err().status,
            405
        );
        assert_eq!(
            State::route_check("POST", "createserviceprofile").unwrap_err().status,
            404
        );
    }
}
