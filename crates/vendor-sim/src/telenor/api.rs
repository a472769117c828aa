//! Request handling for the Telenor IoT Connect routes: the (simulator-defined) token endpoint,
//! bearer checks, the per-token rate limit and every resource handler, all running synchronously
//! on the locked [`State`].
//!
//! Order of checks, per spec §8: route -> bearer (401) -> rate limit (429) -> parameter regexes
//! and `include`/`extendWith` values (400 with `errors[].path`) -> existence (404) -> state (400).
//! The rate limit follows the bearer check because its buckets are per token.

use std::time::Instant;

use base64::Engine;
use rand::RngCore;
use serde_json::{Map, Value, json};

use super::error::{ApiError, ApiResult, Reply};
use super::model::{
    Bucket, Extend, OpKind, State, WRITABLE_MODES, is_domain_id, is_eid, is_iccid, is_id_param, is_imsi,
    is_iot_subscription_id, is_service_policy_id, mode_name,
};

/// One API request as the handlers see it.
pub(crate) struct ApiRequest {
    pub method: String,
    pub path: String,
    /// Decoded query pairs in order (a name may repeat).
    pub query: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub authorization: Option<String>,
    pub content_type: Option<String>,
}

/// The routes served; path parameters are borrowed from the request path.
#[derive(Debug, PartialEq)]
enum Route<'a> {
    GetConnectivity(&'a str),
    ChangeMode(&'a str, &'a str),
    ChangePolicy(&'a str, &'a str),
    Reconnect(&'a str, &'a str),
    GetIot(&'a str),
    GetEuicc(&'a str),
    GetProfile(&'a str),
    ListPolicies,
    GetPolicy(&'a str),
    GetPackage(&'a str, &'a str),
    Search,
}

fn route<'a>(method: &str, segs: &[&'a str]) -> Option<Route<'a>> {
    use Route::*;
    Some(match (method, segs) {
        ("GET", ["iot-connect", "subscriptions", "v1", rest @ ..]) => match rest {
            ["connectivity-subscriptions", imsi] => GetConnectivity(imsi),
            ["iot-subscriptions", id] => GetIot(id),
            ["euiccs", eid] => GetEuicc(eid),
            ["profiles", iccid] => GetProfile(iccid),
            _ => return None,
        },
        (
            "PUT",
            [
                "iot-connect",
                "subscriptions",
                "v1",
                "connectivity-subscriptions",
                id_type,
                id,
                "mode",
            ],
        ) => ChangeMode(id_type, id),
        (
            "PUT",
            [
                "iot-connect",
                "subscriptions",
                "v1",
                "connectivity-subscriptions",
                id_type,
                id,
                "service-policy",
            ],
        ) => ChangePolicy(id_type, id),
        (
            "POST",
            [
                "iot-connect",
                "subscriptions",
                "v1",
                "connectivity-subscriptions",
                id_type,
                id,
                "reconnect",
            ],
        ) => Reconnect(id_type, id),
        ("GET", ["iot-connect", "service-policies", "v1", "iot-platform"]) => ListPolicies,
        ("GET", ["iot-connect", "service-policies", "v1", "iot-platform", id]) => GetPolicy(id),
        ("GET", ["iot-connect", "service-policies", "v1", "iota", instance, id]) => GetPackage(instance, id),
        ("POST", ["iot-connect", "subscription-inventory", "v2", "search"]) => Search,
        _ => return None,
    })
}

/// Decodes `application/x-www-form-urlencoded` (also used for query strings).
pub(crate) fn parse_form(s: &str) -> Vec<(String, String)> {
    s.split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let hex = |b: u8| char::from(b).to_digit(16).and_then(|d| u8::try_from(d).ok());
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h * 16 + l);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The comma-separated values of a list parameter (repeats are merged), checked against
/// `allowed`; an unknown value is a 400 naming the parameter.
fn list_param(req: &ApiRequest, name: &str, allowed: &[&'static str]) -> Result<Vec<&'static str>, ApiError> {
    let mut out = Vec::new();
    for (_, raw) in req.query.iter().filter(|(k, _)| k == name) {
        for v in raw.split(',').map(str::trim).filter(|v| !v.is_empty()) {
            match allowed.iter().find(|a| **a == v) {
                Some(a) => out.push(*a),
                None => {
                    let allowed = if allowed.is_empty() {
                        "none".to_string()
                    } else {
                        allowed.join(", ")
                    };
                    return Err(ApiError::invalid(
                        name,
                        format!("Unknown {name} value '{v}'; allowed: {allowed}"),
                    ));
                }
            }
        }
    }
    Ok(out)
}

fn extend_param(req: &ApiRequest, allowed: &[&'static str]) -> Result<Extend, ApiError> {
    let list = list_param(req, "extendWith", allowed)?;
    let all = list.contains(&"*");
    let has = |n: &str| all || list.contains(&n);
    Ok(Extend {
        fixed_ip_addresses: allowed.contains(&"fixedIpAddresses") && has("fixedIpAddresses"),
        imei: allowed.contains(&"imei") && has("imei"),
        pin_puk: allowed.contains(&"pinPuk") && has("pinPuk"),
    })
}

fn query_value<'r>(req: &'r ApiRequest, name: &str) -> Option<&'r str> {
    req.query.iter().rev().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

fn parse_json_object(body: &[u8], required: bool) -> Result<Map<String, Value>, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        if required {
            return Err(ApiError::invalid("body", "A JSON request body is required"));
        }
        return Ok(Map::new());
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(ApiError::invalid("body", "Request body must be a JSON object")),
        Err(e) => Err(ApiError::invalid("body", format!("Malformed JSON request body: {e}"))),
    }
}

impl State {
    /// Handles one API request; latency and faults were applied by the caller.
    pub fn handle(&mut self, req: &ApiRequest, now: Instant) -> ApiResult {
        let segs: Vec<&str> = req.path.trim_matches('/').split('/').collect();
        // The token endpoint is the one route without a bearer.
        if req.method == "POST" && segs == ["oauth2", "token"] {
            return self.token(req, now);
        }
        let Some(route) = route(&req.method, &segs) else {
            return Err(ApiError::plain(
                404,
                "NotFound",
                format!("No route for {} {}", req.method, req.path),
            ));
        };
        let token = self.check_bearer(req.authorization.as_deref(), now)?;
        if let Some((rate, burst)) = self.config.rate_limit
            && !Bucket::take(self.buckets.entry(token).or_default(), rate, burst, now)
        {
            return Err(ApiError::rate_limited());
        }
        match route {
            Route::GetConnectivity(imsi) => self.get_connectivity(imsi, req),
            Route::ChangeMode(t, id) => self.change_mode(t, id, &req.body, now),
            Route::ChangePolicy(t, id) => self.change_policy(t, id, &req.body, now),
            Route::Reconnect(t, id) => self.reconnect(t, id, &req.body),
            Route::GetIot(id) => self.get_iot(id, req),
            Route::GetEuicc(eid) => Self::get_euicc(eid, req),
            Route::GetProfile(iccid) => self.get_profile(iccid, req),
            Route::ListPolicies => self.list_policies(req),
            Route::GetPolicy(id) => self.get_policy(id, req),
            Route::GetPackage(instance, id) => self.get_package(instance, id),
            Route::Search => self.search(&req.body, now),
        }
    }

    // -------------------------------------------------------------- auth (spec §1)

    /// `POST /oauth2/token`, client-credentials grant; client id/secret in the form body or
    /// in HTTP Basic (RFC 6749 §2.3.1). A JSON body is accepted too, leniently.
    fn token(&mut self, req: &ApiRequest, now: Instant) -> ApiResult {
        let json_body = req
            .content_type
            .as_deref()
            .is_some_and(|c| c.to_ascii_lowercase().starts_with("application/json"));
        let params: Vec<(String, String)> = if json_body {
            serde_json::from_slice::<Map<String, Value>>(&req.body)
                .map_err(|_| ApiError::oauth(400, "invalid_request", "malformed JSON body"))?
                .into_iter()
                .filter_map(|(k, v)| v.as_str().map(|s| (k, s.to_string())))
                .collect()
        } else {
            parse_form(&String::from_utf8_lossy(&req.body))
        };
        let param = |name: &str| params.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
        match param("grant_type").as_deref() {
            Some("client_credentials") => {}
            Some(_) => {
                return Err(ApiError::oauth(
                    400,
                    "unsupported_grant_type",
                    "only client_credentials is supported",
                ));
            }
            None => return Err(ApiError::oauth(400, "invalid_request", "grant_type is required")),
        }
        let basic = req
            .authorization
            .as_deref()
            .and_then(|h| h.strip_prefix("Basic ").or_else(|| h.strip_prefix("basic ")))
            .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b.trim()).ok())
            .and_then(|b| String::from_utf8(b).ok())
            .and_then(|s| s.split_once(':').map(|(i, p)| (percent_decode(i), percent_decode(p))));
        let (id, secret) = match basic {
            Some(pair) => pair,
            None => (
                param("client_id").unwrap_or_default(),
                param("client_secret").unwrap_or_default(),
            ),
        };
        if id != self.config.client_id || secret != self.config.client_secret {
            return Err(ApiError::oauth(401, "invalid_client", "client authentication failed"));
        }
        self.tokens.retain(|_, exp| *exp > now);
        let mut raw = [0u8; 32];
        rand::rng().fill_bytes(&mut raw);
        let token = hex::encode(raw);
        self.tokens.insert(token.clone(), now + self.config.token_ttl);
        let mut reply = Reply::json(json!({
            "access_token": token,
            "token_type": "Bearer",
            "expires_in": self.config.token_ttl.as_secs(),
        }));
        reply.headers.push(("cache-control", "no-store".to_string()));
        Ok(reply)
    }

    /// The live bearer token of the request, or 401.
    fn check_bearer(&mut self, header: Option<&str>, now: Instant) -> Result<String, ApiError> {
        let token = header
            .and_then(|h| h.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, t)| t.trim().to_string())
            .ok_or_else(ApiError::unauthorized)?;
        match self.tokens.get(&token) {
            Some(exp) if *exp > now => Ok(token),
            Some(_) => {
                self.tokens.remove(&token);
                self.buckets.remove(&token);
                Err(ApiError::unauthorized())
            }
            None => Err(ApiError::unauthorized()),
        }
    }

    // -------------------------------------------------------------- reads (spec §3)

    fn get_connectivity(&self, imsi: &str, req: &ApiRequest) -> ApiResult {
        if !is_imsi(imsi) {
            return Err(ApiError::invalid("imsi", "imsi must match ^[0-9]{6,15}$"));
        }
        let include = list_param(
            req,
            "include",
            &["servicePolicy", "iotSubscription", "euicc", "profile"],
        )?;
        let ext = extend_param(req, &["*", "fixedIpAddresses", "imei"])?;
        let sub = self
            .by_imsi
            .get(imsi)
            .and_then(|s| self.sub(*s))
            .ok_or_else(|| ApiError::not_found(format!("Connectivity subscription with IMSI {imsi} not found")))?;
        Ok(Reply::json(self.conn_json(sub, &include, ext)))
    }

    fn get_iot(&self, id: &str, req: &ApiRequest) -> ApiResult {
        if !is_iot_subscription_id(id) {
            return Err(ApiError::invalid(
                "id",
                "id must match ^[85,97]{2}[23456789ABCDEFGHJKLMNPQRSTUVWXYZ]{16}$",
            ));
        }
        let include = list_param(req, "include", &["euiccs", "profiles", "connectivitySubscriptions"])?;
        list_param(req, "extendWith", &[])?;
        let sub = self
            .by_iot_id
            .get(id)
            .and_then(|s| self.sub(*s))
            .ok_or_else(|| ApiError::not_found(format!("IoT subscription {id} not found")))?;
        Ok(Reply::json(self.iot_json(sub, &include)))
    }

    /// The simulated domain holds plain UICCs only, so every well-formed eid is unknown.
    fn get_euicc(eid: &str, req: &ApiRequest) -> ApiResult {
        if !is_eid(eid) {
            return Err(ApiError::invalid("eid", "eid must match ^[0-9]{32}$"));
        }
        list_param(
            req,
            "include",
            &["iotSubscription", "profiles", "connectivitySubscriptions"],
        )?;
        list_param(req, "extendWith", &[])?;
        Err(ApiError::not_found(format!("eUICC {eid} not found")))
    }

    fn get_profile(&self, iccid: &str, req: &ApiRequest) -> ApiResult {
        if !is_iccid(iccid) {
            return Err(ApiError::invalid("iccid", "iccid must match ^89[0-9]{16,18}$"));
        }
        let include = list_param(
            req,
            "include",
            &["iotSubscription", "euicc", "connectivitySubscriptions"],
        )?;
        let ext = extend_param(req, &["*", "pinPuk"])?;
        let sub = self
            .by_iccid
            .get(iccid)
            .and_then(|s| self.sub(*s))
            .ok_or_else(|| ApiError::not_found(format!("Profile with ICCID {iccid} not found")))?;
        Ok(Reply::json(self.profile_json(sub, &include, ext)))
    }

    // -------------------------------------------------------------- service policies (spec §5)

    fn list_policies(&self, req: &ApiRequest) -> ApiResult {
        if let Some(domain) = query_value(req, "domainId") {
            if !is_domain_id(domain) {
                return Err(ApiError::invalid(
                    "domainId",
                    "domainId must match ^([A-Za-z0-9]{8}-){0,6}[A-Za-z0-9]{8}$",
                ));
            }
            if domain != self.domain_id {
                return Err(ApiError::plain(
                    403,
                    "Forbidden",
                    "You are not allowed to access the requested resource.",
                ));
            }
        }
        let key = query_value(req, "key");
        let value = query_value(req, "value");
        for (name, v) in [("key", key), ("value", value)] {
            if v.is_some_and(|v| v.is_empty() || v.chars().count() > 100) {
                return Err(ApiError::invalid(name, format!("{name} must be 1 to 100 characters")));
            }
        }
        if value.is_some() && key.is_none() {
            return Err(ApiError::invalid("key", "key is required when value is given"));
        }
        let value = value.map(str::to_lowercase);
        let items: Vec<Value> = self
            .policies
            .iter()
            .filter(|p| {
                let Some(key) = key else { return true };
                p.metadata.iter().any(|(k, v)| {
                    k.eq_ignore_ascii_case(key)
                        && value.as_deref().is_none_or(|needle| v.to_lowercase().contains(needle))
                })
            })
            .map(|p| self.policy_json(p, false))
            .collect();
        Ok(Reply::json(json!({"items": items})))
    }

    fn get_policy(&self, id: &str, req: &ApiRequest) -> ApiResult {
        if !is_service_policy_id(id) {
            return Err(ApiError::invalid(
                "servicePolicyId",
                "servicePolicyId must match ^22[A-HJ-NP-Z2-9]{6}$",
            ));
        }
        let include = list_param(req, "include", &["cmpServicePolicy"])?;
        let p = self
            .policy(id)
            .ok_or_else(|| ApiError::not_found(format!("Service policy {id} not found")))?;
        Ok(Reply::json(self.policy_json(p, include.contains(&"cmpServicePolicy"))))
    }

    fn get_package(&self, instance: &str, id: &str) -> ApiResult {
        if instance != "iota_eu" {
            return Err(ApiError::invalid("iotaInstance", "iotaInstance must be iota_eu"));
        }
        let p = self
            .policies
            .iter()
            .find(|p| p.package_id == id)
            .ok_or_else(|| ApiError::not_found(format!("IoTA service policy {id} not found")))?;
        Ok(Reply::json(json!({"attributes": self.package_attrs(p, true)})))
    }

    // -------------------------------------------------------------- async writes (spec §4)

    /// Resolves `{idType}/{id}` to a slot: 400 for a bad idType or id, 404 when unknown.
    fn resolve(&self, id_type: &str, id: &str) -> Result<u32, ApiError> {
        let index = match id_type {
            "imsi" => &self.by_imsi,
            "iccid" => &self.by_iccid,
            "msisdn" => &self.by_msisdn,
            _ => {
                return Err(ApiError::invalid(
                    "idType",
                    "idType must be one of: iccid, imsi, msisdn",
                ));
            }
        };
        if !is_id_param(id) {
            return Err(ApiError::invalid("id", "id must match [0-9]{5,20}"));
        }
        index
            .get(id)
            .copied()
            .filter(|s| self.sub(*s).is_some())
            .ok_or_else(|| ApiError::not_found(format!("Connectivity subscription with {id_type} {id} not found")))
    }

    fn change_mode(&mut self, id_type: &str, id: &str, body: &[u8], now: Instant) -> ApiResult {
        let slot = self.resolve(id_type, id)?;
        let body = parse_json_object(body, true)?;
        let requested = body
            .get("mode")
            .and_then(Value::as_str)
            .ok_or_else(|| ApiError::invalid("mode", "mode is required"))?;
        let mode = WRITABLE_MODES
            .iter()
            .copied()
            .find(|m| *m == requested)
            .ok_or_else(|| {
                ApiError::invalid(
                    "mode",
                    format!("mode '{requested}' is not one of: ACTIVE, DEACTIVATED, PAUSED, TERMINATED"),
                )
            })?;
        let Some(sub) = self.sub(slot) else {
            return Err(ApiError::not_found(format!(
                "Connectivity subscription with {id_type} {id} not found"
            )));
        };
        let current = sub.mode;
        let imsi = sub.imsi.clone();
        if current == "TERMINATED" && mode != "TERMINATED" {
            return Err(ApiError::invalid_transition(
                Some("mode"),
                format!("Subscription is TERMINATED; it cannot change to {mode}"),
            ));
        }
        *self.write_counts.entry(imsi).or_default() += 1;
        if mode == current {
            // The state asked for is already in place; it also supersedes an older pending write.
            self.cancel(slot, OpKind::Mode);
        } else {
            self.enqueue(slot, OpKind::Mode, mode, now);
        }
        Ok(Reply::accepted())
    }

    fn change_policy(&mut self, id_type: &str, id: &str, body: &[u8], now: Instant) -> ApiResult {
        let slot = self.resolve(id_type, id)?;
        let body = parse_json_object(body, true)?;
        let requested = body
            .get("servicePolicyId")
            .and_then(Value::as_str)
            .ok_or_else(|| ApiError::invalid("servicePolicyId", "servicePolicyId is required"))?;
        if !is_service_policy_id(requested) {
            return Err(ApiError::invalid(
                "servicePolicyId",
                "servicePolicyId must match ^22[A-HJ-NP-Z2-9]{6}$",
            ));
        }
        let Some(policy) = self.policy(requested).map(|p| p.id) else {
            return Err(ApiError::detailed(
                400,
                "BadRequest",
                format!("Service policy {requested} does not exist"),
                "NOT_FOUND",
                Some("servicePolicyId"),
            ));
        };
        let Some(sub) = self.sub(slot) else {
            return Err(ApiError::not_found(format!(
                "Connectivity subscription with {id_type} {id} not found"
            )));
        };
        if sub.mode == "TERMINATED" {
            return Err(ApiError::invalid_transition(
                None,
                "Subscription is TERMINATED; its service policy cannot change",
            ));
        }
        let same = sub.service_policy_id == policy;
        let imsi = sub.imsi.clone();
        *self.write_counts.entry(imsi).or_default() += 1;
        if same {
            self.cancel(slot, OpKind::ServicePolicy);
        } else {
            self.enqueue(slot, OpKind::ServicePolicy, policy, now);
        }
        Ok(Reply::accepted())
    }

    /// Reconnect changes nothing observable; it is only checked and acknowledged.
    fn reconnect(&mut self, id_type: &str, id: &str, body: &[u8]) -> ApiResult {
        let slot = self.resolve(id_type, id)?;
        let body = parse_json_object(body, false)?;
        if body.get("reattachRequired").is_some_and(|v| !v.is_boolean()) {
            return Err(ApiError::invalid(
                "reattachRequired",
                "reattachRequired must be a boolean",
            ));
        }
        let mode = self.sub(slot).map_or("TERMINATED", |s| s.mode);
        if mode != "ACTIVE" {
            return Err(ApiError::invalid_transition(
                None,
                format!("Reconnect needs mode ACTIVE; the subscription is {mode}"),
            ));
        }
        Ok(Reply::accepted())
    }
}

/// Checks a hook's mode argument.
pub(crate) fn hook_mode(mode: &str) -> &'static str {
    mode_name(mode).unwrap_or_else(|| {
        panic!("unknown mode {mode:?}; expected one of ACTIVE, ACTIVE_NO_BILLING, DEACTIVATED, PAUSED, TERMINATED")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_decoding() {
        let f = parse_form("grant_type=client_credentials&client_id=a%2Bb&client_secret=x+y&flag");
        assert_eq!(f[0], ("grant_type".into(), "client_credentials".into()));
        assert_eq!(f[1].1, "a+b");
        assert_eq!(f[2].1, "x y");
        assert_eq!(f[3], ("flag".into(), String::new()));
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz"), "%zz");
    }

    #[test]
    fn routes() {
        let segs = [
            "iot-connect",
            "subscriptions",
            "v1",
            "connectivity-subscriptions",
            "imsi",
            "24201",
            "mode",
        ];
        assert_eq!(route("PUT", &segs), Some(Route::ChangeMode("imsi", "24201")));
        assert_eq!(route("GET", &segs), None);
        assert_eq!(route("POST", &["oauth2", "token"]), None, "answered before routing");
    }
}
