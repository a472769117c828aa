//! `POST /iot-connect/subscription-inventory/v2/search` (spec §3.6): filters, sorting and
//! cursor pagination over the applied state of the inventory.
//!
//! A first request evaluates `filters` and `sortBy` once and stores the ordered hits (slots, 4
//! bytes each) under a cursor id; `next` is `<cursor id>.<offset>`, so re-sending the same `after`
//! is idempotent (a retried page request returns the same page) while every use slides the
//! cursor's lifetime by `cursor_ttl`. Pages render the subscriptions' state at page time;
//! subscriptions removed since the first page are skipped.

use std::cmp::Ordering;
use std::time::{Duration, Instant};

use rand::RngCore;
use serde::Serialize;
use serde_json::{Map, Value, json};

use super::error::{ApiError, ApiResult, Reply};
use super::model::{SearchRow, State, Subscription};

/// Live cursors kept at most; the one closest to expiry makes room for a new one.
const MAX_CURSORS: usize = 10_000;

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Pagination<'a> {
    total_hits: usize,
    next: Option<&'a str>,
}

#[derive(Serialize)]
struct Page<'a> {
    pagination: Pagination<'a>,
    items: Vec<SearchRow<'a>>,
}

#[derive(Debug)]
pub(crate) struct Cursor {
    hits: Vec<u32>,
    pub expires: Instant,
}

/// A searchable / sortable field path (spec §3.6 list).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    IotId,
    IotType,
    IotDomain,
    IotInService,
    IotModified,
    EuiccEid,
    EuiccEnabled,
    EuiccBootstrap,
    ProfileIccid,
    ProfilePolicy,
    ProfileType,
    ProfileCmp,
    ProfileEnabled,
    ProfileConnId,
    ProfileConnName,
    PolicyId,
    PolicyName,
    PolicyType,
    ConnImsi,
    ConnIccid,
    ConnMsisdn,
    ConnMode,
    ConnFirstActivation,
    ConnTrmExited,
    ConnPolicy,
}

const FIELDS: &[(&str, Field)] = &[
    ("iotSubscription.iotSubscriptionId", Field::IotId),
    ("iotSubscription.subscriptionType", Field::IotType),
    ("iotSubscription.domainId", Field::IotDomain),
    ("iotSubscription.inServiceDate", Field::IotInService),
    ("iotSubscription.lastModifiedAt", Field::IotModified),
    ("euiccs.eid", Field::EuiccEid),
    ("euiccs.enabledProfile", Field::EuiccEnabled),
    ("euiccs.bootstrapProfile", Field::EuiccBootstrap),
    ("profiles.iccid", Field::ProfileIccid),
    ("profiles.servicePolicyId", Field::ProfilePolicy),
    ("profiles.profileType", Field::ProfileType),
    ("profiles.cmp", Field::ProfileCmp),
    ("profiles.isEnabled", Field::ProfileEnabled),
    ("profiles.connectivityProfile.id", Field::ProfileConnId),
    ("profiles.connectivityProfile.name", Field::ProfileConnName),
    ("servicePolicies.id", Field::PolicyId),
    ("servicePolicies.name", Field::PolicyName),
    ("servicePolicies.type", Field::PolicyType),
    ("connectivitySubscriptions.imsi", Field::ConnImsi),
    ("connectivitySubscriptions.iccid", Field::ConnIccid),
    ("connectivitySubscriptions.msisdn", Field::ConnMsisdn),
    ("connectivitySubscriptions.mode", Field::ConnMode),
    (
        "connectivitySubscriptions.firstActivationDate",
        Field::ConnFirstActivation,
    ),
    ("connectivitySubscriptions.trmExitedAt", Field::ConnTrmExited),
    ("connectivitySubscriptions.servicePolicyId", Field::ConnPolicy),
];

fn parse_field(name: &str) -> Option<Field> {
    FIELDS.iter().find(|(n, _)| *n == name).map(|(_, f)| *f)
}

#[derive(Debug)]
enum Condition {
    /// Inclusive bounds, compared as strings (ISO dates and equal-length ids order correctly).
    Between { min: Option<String>, max: Option<String> },
    /// Equal (ASCII case-insensitive) to any of the values.
    Match(Vec<String>),
}

#[derive(Debug)]
struct Filter {
    /// The filter holds when any of its fields satisfies the condition.
    fields: Vec<Field>,
    condition: Condition,
}

impl State {
    /// The value of `field` for one subscription; each of its arrays holds at most one element,
    /// and an empty array (eUICCs) or a null attribute has no value.
    fn field_value<'a>(&'a self, sub: &'a Subscription, field: Field) -> Option<&'a str> {
        let policy = || self.policy(sub.service_policy_id);
        match field {
            Field::IotId => Some(&sub.iot_id),
            Field::IotType => Some("IOT_CONNECT"),
            Field::IotDomain => Some(&self.domain_id),
            Field::IotInService => Some(&sub.in_service_date),
            Field::IotModified => Some(&sub.last_modified_at),
            Field::EuiccEid | Field::EuiccEnabled | Field::EuiccBootstrap => None,
            Field::ProfileIccid | Field::ConnIccid => Some(&sub.iccid),
            Field::ProfilePolicy | Field::ConnPolicy => Some(sub.service_policy_id),
            Field::ProfileType => Some("SIM_PROFILE"),
            Field::ProfileCmp => Some("IOTA_EU"),
            Field::ProfileEnabled => Some("true"),
            Field::ProfileConnId => Some("GLOBAL_SUBSCRIPTION"),
            Field::ProfileConnName => Some("Global subscription"),
            Field::PolicyId => policy().map(|p| p.id),
            Field::PolicyName => policy().map(|p| p.name),
            Field::PolicyType => policy().map(|_| "IOTA_SERVICE_POLICY"),
            Field::ConnImsi => Some(&sub.imsi),
            Field::ConnMsisdn => Some(&sub.msisdn),
            Field::ConnMode => Some(sub.mode),
            Field::ConnFirstActivation => sub.first_activation_date.as_deref(),
            Field::ConnTrmExited => sub.trm_exited_at.as_deref(),
        }
    }

    fn matches(&self, sub: &Subscription, filters: &[Filter]) -> bool {
        filters.iter().all(|f| {
            f.fields.iter().any(|field| {
                let Some(v) = self.field_value(sub, *field) else {
                    return false;
                };
                match &f.condition {
                    Condition::Between { min, max } => {
                        min.as_deref().is_none_or(|m| v >= m) && max.as_deref().is_none_or(|m| v <= m)
                    }
                    Condition::Match(values) => values.iter().any(|x| x.eq_ignore_ascii_case(v)),
                }
            })
        })
    }

    /// Handles one search request at `now`.
    pub fn search(&mut self, body: &[u8], now: Instant) -> ApiResult {
        self.cursors.retain(|_, c| c.expires > now);
        let req = parse_object(body)?;
        let page = self.config.search_page_size.max(1);
        let (cursor_id, offset) = match req.get("after") {
            None | Some(Value::Null) => {
                let filters = parse_filters(req.get("filters"), self.config.inferred.match_filter)?;
                let sort = parse_sort(req.get("sortBy"))?;
                let mut hits: Vec<u32> = (0..self.subs.len())
                    .filter_map(|i| {
                        let slot = u32::try_from(i).ok()?;
                        let sub = self.sub(slot)?;
                        self.matches(sub, &filters).then_some(slot)
                    })
                    .collect();
                self.sort_hits(&mut hits, &sort);
                if hits.len() <= page {
                    // Everything fits on one page: no cursor to keep.
                    return Ok(self.page(&hits, hits.len(), None));
                }
                let id = self.store_cursor(hits, now);
                (id, 0)
            }
            Some(Value::String(token)) => {
                let ttl = self.config.cursor_ttl;
                let (id, offset) = token
                    .rsplit_once('.')
                    .and_then(|(id, off)| Some((id.to_string(), off.parse::<usize>().ok()?)))
                    .ok_or_else(|| expired_cursor(token, ttl))?;
                let cursor = self.cursors.get_mut(&id).ok_or_else(|| expired_cursor(token, ttl))?;
                if offset > cursor.hits.len() {
                    return Err(expired_cursor(token, ttl));
                }
                cursor.expires = now + ttl;
                (id, offset)
            }
            Some(_) => {
                return Err(ApiError::invalid(
                    "after",
                    "after must be the string `next` of a previous page",
                ));
            }
        };
        let hits: &[u32] = self.cursors.get(&cursor_id).map_or(&[], |c| &c.hits);
        let end = (offset + page).min(hits.len());
        let next = (end < hits.len()).then(|| format!("{cursor_id}.{end}"));
        Ok(self.page(&hits[offset..end], hits.len(), next))
    }

    /// Serialised straight from borrowed rows: a page of 100 is on the hot path of every full
    /// inventory scan, and building a `Value` tree first doubled its cost.
    fn page(&self, slots: &[u32], total: usize, next: Option<String>) -> Reply {
        let page = Page {
            pagination: Pagination {
                total_hits: total,
                next: next.as_deref(),
            },
            items: slots
                .iter()
                .filter_map(|s| self.sub(*s))
                .map(|sub| self.search_row(sub))
                .collect(),
        };
        match serde_json::to_string(&page) {
            Ok(body) => Reply::raw_json(body),
            Err(e) => Reply::with_status(
                500,
                json!({"name": "InternalServerError", "message": e.to_string(), "errors": []}),
            ),
        }
    }

    fn sort_hits(&self, hits: &mut [u32], sort: &[(Field, bool)]) {
        hits.sort_by(|a, b| {
            let (Some(x), Some(y)) = (self.sub(*a), self.sub(*b)) else {
                return Ordering::Equal;
            };
            for (field, desc) in sort {
                let o = self.field_value(x, *field).cmp(&self.field_value(y, *field));
                let o = if *desc { o.reverse() } else { o };
                if o != Ordering::Equal {
                    return o;
                }
            }
            x.iot_id.cmp(&y.iot_id)
        });
    }

    fn store_cursor(&mut self, hits: Vec<u32>, now: Instant) -> String {
        if self.cursors.len() >= MAX_CURSORS
            && let Some(oldest) = self
                .cursors
                .iter()
                .min_by_key(|(_, c)| c.expires)
                .map(|(k, _)| k.clone())
        {
            self.cursors.remove(&oldest);
        }
        let mut raw = [0u8; 16];
        rand::rng().fill_bytes(&mut raw);
        let id = hex::encode(raw);
        self.cursors.insert(
            id.clone(),
            Cursor {
                hits,
                expires: now + self.config.cursor_ttl,
            },
        );
        id
    }
}

fn expired_cursor(token: &str, ttl: Duration) -> ApiError {
    let shown: String = token.chars().take(64).collect();
    let secs = ttl.as_secs_f64();
    ApiError::detailed(
        400,
        "BadRequest",
        format!(
            "Pagination token '{shown}' is unknown or has expired (tokens expire {secs} s after their last use); \
             start the search again without `after`"
        ),
        "INVALID_PAGINATION_TOKEN",
        Some("after"),
    )
}

fn parse_object(body: &[u8]) -> Result<Map<String, Value>, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(ApiError::invalid("body", "Request body must be a JSON object")),
        Err(e) => Err(ApiError::invalid("body", format!("Malformed JSON request body: {e}"))),
    }
}

/// A scalar filter value as the string it is compared with.
fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// `filters[]`. Telenor documents one filter type, `between`; `match` (exact values) is accepted
/// only with the inferred switch `TelenorInferred::match_filter`.
fn parse_filters(v: Option<&Value>, allow_match: bool) -> Result<Vec<Filter>, ApiError> {
    let list = match v {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(a)) => a,
        Some(_) => return Err(ApiError::invalid("filters", "filters must be an array")),
    };
    let mut out = Vec::with_capacity(list.len());
    for (i, f) in list.iter().enumerate() {
        let at = |s: &str| format!("filters[{i}].{s}");
        let fields = match f.get("fields") {
            Some(Value::Array(a)) if !a.is_empty() => a,
            _ => {
                return Err(ApiError::invalid(
                    &at("fields"),
                    "fields must be a non-empty array of field paths",
                ));
            }
        };
        let mut parsed = Vec::with_capacity(fields.len());
        for (j, name) in fields.iter().enumerate() {
            let field = name.as_str().and_then(parse_field).ok_or_else(|| {
                ApiError::invalid(
                    &format!("filters[{i}].fields[{j}]"),
                    format!("Unknown search field {name}"),
                )
            })?;
            parsed.push(field);
        }
        let condition = match f.get("type").and_then(Value::as_str) {
            Some("between") => {
                let values = f.get("values").and_then(Value::as_object);
                let min = values.and_then(|m| m.get("min")).and_then(scalar);
                let max = values.and_then(|m| m.get("max")).and_then(scalar);
                if min.is_none() && max.is_none() {
                    return Err(ApiError::invalid(
                        &at("values"),
                        "between needs values {\"min\", \"max\"} (at least one)",
                    ));
                }
                Condition::Between { min, max }
            }
            Some("match") if allow_match => {
                let values: Option<Vec<String>> = match f.get("values") {
                    Some(Value::Array(a)) if !a.is_empty() => a.iter().map(scalar).collect(),
                    Some(v @ (Value::String(_) | Value::Number(_) | Value::Bool(_))) => scalar(v).map(|s| vec![s]),
                    _ => None,
                };
                let values = values.ok_or_else(|| {
                    ApiError::invalid(&at("values"), "match needs values: a non-empty array of strings")
                })?;
                Condition::Match(values)
            }
            _ if allow_match => return Err(ApiError::invalid(&at("type"), "type must be one of: between, match")),
            _ => return Err(ApiError::invalid(&at("type"), "type must be: between")),
        };
        out.push(Filter {
            fields: parsed,
            condition,
        });
    }
    Ok(out)
}

/// `sortBy[{field, direction}]`; the default (and final tie-break) is the IoT subscription id.
fn parse_sort(v: Option<&Value>) -> Result<Vec<(Field, bool)>, ApiError> {
    let list = match v {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(a)) => a,
        Some(_) => return Err(ApiError::invalid("sortBy", "sortBy must be an array")),
    };
    let mut out = Vec::with_capacity(list.len());
    for (i, s) in list.iter().enumerate() {
        let field = s
            .get("field")
            .and_then(Value::as_str)
            .and_then(parse_field)
            .ok_or_else(|| ApiError::invalid(&format!("sortBy[{i}].field"), "Unknown or missing sort field"))?;
        let desc = match s
            .get("direction")
            .and_then(Value::as_str)
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            None | Some("asc" | "ascending") => false,
            Some("desc" | "descending") => true,
            Some(_) => {
                return Err(ApiError::invalid(
                    &format!("sortBy[{i}].direction"),
                    "direction must be asc, desc, ascending or descending",
                ));
            }
        };
        out.push((field, desc));
    }
    Ok(out)
}
