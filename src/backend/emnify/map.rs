//! Translation between our spec and emnify's wire objects, and the pure plan: which calls turn
//! the observed service profile into the desired one. Only what differs is sent.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::{Map, Value, json};

use super::api;
use crate::backend::{ProfileChange, ProfileOp};
use crate::crd::{
    EmnifyDataLimit, EmnifyServiceProfile, EmnifyServiceSpec, EmnifyTrafficLimitRef, ObservedServiceProfile,
};

/// One emnify call that changes a service profile.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// `PATCH /api/v1/service_profile/{id}` with only the differing fields.
    Patch { body: Map<String, Value> },
    /// `PUT /api/v1/service_profile/{id}/service/{service_id}`.
    AddService { service_id: i64 },
    /// `DELETE /api/v1/service_profile/{id}/service/{service_id}` (after its limits are detached).
    RemoveService { service_id: i64 },
    /// `PUT /api/v1/service_profile/{id}/service/{service_id}/traffic_limit/{limit_id}`.
    AttachLimit { service_id: i64, limit_id: i64 },
    /// `DELETE /api/v1/service_profile/{id}/service/{service_id}/traffic_limit/{limit_id}`.
    DetachLimit { service_id: i64, limit_id: i64 },
    /// `POST /api/v1/service_profile/{id}/traffic_limit` (a data limit).
    AddDataLimit { body: Value },
    /// `DELETE /api/v1/service_profile/{id}/traffic_limit/{limit_id}`.
    DeleteDataLimit { limit_id: i64 },
}

/// emnify's only data-limit service (Data) and period (calendar month).
pub const DATA_SERVICE: i64 = 38;
pub const MONTHLY: i64 = 2;

/// A data limit as the spec asks for it, in emnify's units.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct DesiredDataLimit {
    pub satellite_only: bool,
    pub volume: u64,
    pub warning_percent: Option<i64>,
}

impl DesiredDataLimit {
    fn label(&self) -> String {
        data_limit_label(self.satellite_only, self.volume, self.warning_percent)
    }

    /// Body of `POST .../traffic_limit`. The ids are strings, as emnify's OpenAPI spec types them.
    fn body(&self) -> Value {
        let mut body = json!({
            "service": {"id": DATA_SERVICE.to_string()},
            "period": {"id": MONTHLY.to_string()},
            "volume": self.volume,
            "satellite_only": self.satellite_only,
        });
        if let Some(w) = self.warning_percent {
            body["warning_percent"] = json!(w);
        }
        body
    }

    fn matches(&self, l: &api::DataLimit) -> bool {
        l.service.as_ref().and_then(|s| s.id) == Some(DATA_SERVICE)
            && l.satellite_only.unwrap_or(false) == self.satellite_only
            && l.volume.and_then(|v| u64::try_from(v).ok()) == Some(self.volume)
            && l.warning_percent == self.warning_percent
            && l.period.as_ref().and_then(|p| p.id).is_none_or(|p| p == MONTHLY)
    }
}

fn data_limit_label(satellite_only: bool, volume: u64, warning_percent: Option<i64>) -> String {
    let scope = if satellite_only { "satellite only" } else { "all RATs" };
    let warning = warning_percent
        .map(|w| format!(", warning at {w}%"))
        .unwrap_or_default();
    format!("{} per month ({scope}{warning})", crate::crd::quantity::human(volume))
}

pub(crate) fn observed_data_limit_label(l: &api::DataLimit) -> String {
    match l.volume.and_then(|v| u64::try_from(v).ok()) {
        Some(v) => data_limit_label(l.satellite_only.unwrap_or(false), v, l.warning_percent),
        None => format!("data limit {}", l.id.unwrap_or_default()),
    }
}

/// Desired services: service id -> (label, limit id -> label).
pub type DesiredServices = BTreeMap<i64, (String, BTreeMap<i64, String>)>;

/// The spec with names resolved to emnify ids.
#[derive(Debug, Clone, PartialEq)]
pub struct ResolvedProfile {
    pub name: String,
    pub description: Option<String>,
    pub settings: EmnifyServiceProfile,
    /// service id -> (label, limit id -> label); `None` when services are not managed.
    pub services: Option<DesiredServices>,
    /// `None` when data limits are not managed.
    pub data_limits: Option<Vec<DesiredDataLimit>>,
}

/// What the emnify account offers: services and their predefined traffic limits.
#[derive(Debug, Clone, Default)]
pub struct Catalogue {
    pub services: Vec<api::Service>,
    pub limits: BTreeMap<i64, Vec<api::TrafficLimit>>,
}

impl Catalogue {
    /// Find a service by id (`38`, `"38"`) or description (case-insensitive).
    pub fn service(&self, reference: &IntOrString) -> Result<(i64, String), String> {
        let by_id = |id: i64| {
            self.services
                .iter()
                .find(|s| s.id == Some(id))
                .map(|s| (id, s.description.clone().unwrap_or_else(|| id.to_string())))
                .ok_or_else(|| format!("emnify has no service with id {id}"))
        };
        match reference {
            IntOrString::Int(id) => by_id(i64::from(*id)),
            IntOrString::String(text) => {
                if let Ok(id) = text.trim().parse::<i64>() {
                    return by_id(id);
                }
                let matches: Vec<_> = self
                    .services
                    .iter()
                    .filter(|s| {
                        s.description
                            .as_deref()
                            .is_some_and(|d| d.eq_ignore_ascii_case(text.trim()))
                    })
                    .collect();
                match matches.as_slice() {
                    [one] => Ok((one.id.unwrap_or_default(), one.description.clone().unwrap_or_default())),
                    [] => Err(format!(
                        "emnify has no service named {text:?} (known: {})",
                        self.services
                            .iter()
                            .filter_map(|s| s.description.clone())
                            .collect::<Vec<_>>()
                            .join(", ")
                    )),
                    _ => Err(format!("several emnify services are named {text:?}; use the id")),
                }
            }
        }
    }
}

/// Resolve service and limit references against the catalogue.
pub fn resolve(
    name: &str,
    description: Option<&str>,
    settings: &EmnifyServiceProfile,
    catalogue: &Catalogue,
) -> Result<ResolvedProfile, String> {
    let services = match &settings.services {
        None => None,
        Some(list) => {
            let mut out = BTreeMap::new();
            for svc in list {
                let (sid, label) = catalogue.service(&svc.service)?;
                if out.contains_key(&sid) {
                    return Err(format!("service {label} ({sid}) is listed twice"));
                }
                let available = catalogue.limits.get(&sid).map(Vec::as_slice).unwrap_or(&[]);
                let mut limits = BTreeMap::new();
                for lim in &svc.traffic_limits {
                    let found = available.iter().find(|l| match (lim.id, lim.volume, &lim.period) {
                        (Some(id), _, _) => l.id == Some(id),
                        (None, Some(volume), Some(period)) => {
                            l.volume == Some(volume)
                                && l.period
                                    .as_ref()
                                    .is_some_and(|p| normalise(&p.label()) == normalise(period))
                        }
                        _ => false,
                    });
                    let Some(found) = found else {
                        return Err(format!(
                            "service {label} ({sid}) has no traffic limit {} (available: {})",
                            describe_ref(lim),
                            available
                                .iter()
                                .map(|l| format!("{} = {}", l.id.unwrap_or_default(), l.label()))
                                .collect::<Vec<_>>()
                                .join(", ")
                        ));
                    };
                    limits.insert(found.id.unwrap_or_default(), found.label());
                }
                out.insert(sid, (label, limits));
            }
            Some(out)
        }
    };
    let data_limits = desired_data_limits(settings)?;
    Ok(ResolvedProfile {
        name: name.to_string(),
        description: description.map(str::to_string),
        settings: settings.clone(),
        services,
        data_limits,
    })
}

/// The spec's data limits in emnify's units, checked without the vendor: volumes in whole bytes
/// within emnify's int64, one limit per scope.
pub fn desired_data_limits(settings: &EmnifyServiceProfile) -> Result<Option<Vec<DesiredDataLimit>>, String> {
    Ok(match &settings.data_limits {
        None => None,
        Some(list) => {
            let mut out = Vec::with_capacity(list.len());
            for (i, l) in list.iter().enumerate() {
                let volume =
                    crate::crd::quantity::bytes(&l.volume).map_err(|e| format!("dataLimits[{i}].volume: {e}"))?;
                // emnify's OpenAPI spec types the volume int64: a larger one would be refused on
                // every attempt (found by the emnify_profile_plan fuzz target).
                if i64::try_from(volume).is_err() {
                    return Err(format!(
                        "dataLimits[{i}].volume: {} is more than emnify accepts (at most {} bytes, about 8 EiB)",
                        l.volume.0,
                        i64::MAX
                    ));
                }
                let satellite_only = l.satellite_only.unwrap_or(false);
                if out
                    .iter()
                    .any(|d: &DesiredDataLimit| d.satellite_only == satellite_only)
                {
                    return Err(format!(
                        "dataLimits[{i}]: emnify allows one data limit per scope (all RATs, satellite only)"
                    ));
                }
                out.push(DesiredDataLimit {
                    satellite_only,
                    volume,
                    warning_percent: l.warning_percent.map(i64::from),
                });
            }
            out.sort();
            Some(out)
        }
    })
}

fn describe_ref(lim: &crate::crd::EmnifyTrafficLimitRef) -> String {
    match (lim.id, lim.volume, &lim.period) {
        (Some(id), _, _) => format!("with id {id}"),
        (None, Some(v), Some(p)) => format!("of {v} per {p}"),
        _ => "without id or volume and period".to_string(),
    }
}

fn normalise(period: &str) -> String {
    period
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_ascii_lowercase()
}

/// Settings as emnify field name, desired value and documented default (used when emnify omits
/// the field).
fn flags(s: &EmnifyServiceProfile) -> [(&'static str, bool, bool); 9] {
    [
        ("allowed_3g", s.allowed_3g, true),
        ("allowed_4g", s.allowed_4g, true),
        ("allowed_nb_iot", s.allowed_nb_iot, true),
        ("allowed_nb_iot_geo", s.allowed_nb_iot_geo, false),
        ("apply_data_quota", s.apply_data_quota, false),
        ("apply_sms_quota", s.apply_sms_quota, false),
        ("sms_p2p_int", s.sms_p2p_int, true),
        ("sms_p2p_ext", s.sms_p2p_ext, true),
        ("nipdp", s.nipdp, false),
    ]
}

fn observed_flag(p: &api::ServiceProfile, field: &str) -> Option<bool> {
    match field {
        "allowed_3g" => p.allowed_3g,
        "allowed_4g" => p.allowed_4g,
        "allowed_nb_iot" => p.allowed_nb_iot,
        "allowed_nb_iot_geo" => p.allowed_nb_iot_geo,
        "apply_data_quota" => p.apply_data_quota,
        "apply_sms_quota" => p.apply_sms_quota,
        "sms_p2p_int" => p.sms_p2p_int,
        "sms_p2p_ext" => p.sms_p2p_ext,
        "nipdp" => p.nipdp,
        _ => None,
    }
}

fn references(s: &EmnifyServiceProfile) -> [(&'static str, Option<i64>); 6] {
    [
        ("api_callback", s.api_callback_id),
        ("api_secret", s.api_secret_id),
        ("moc_callback", s.moc_callback_id),
        ("breakout_region", s.breakout_region_id),
        ("dns", s.dns_id),
        ("esme_interface_type", s.esme_interface_type_id),
    ]
}

fn observed_reference(p: &api::ServiceProfile, field: &str) -> Option<i64> {
    let r = match field {
        "api_callback" => &p.api_callback,
        "api_secret" => &p.api_secret,
        "moc_callback" => &p.moc_callback,
        "breakout_region" => &p.breakout_region,
        "dns" => &p.dns,
        "esme_interface_type" => &p.esme_interface_type,
        _ => return None,
    };
    r.as_ref().and_then(|r| r.id)
}

/// Body of `POST /api/v1/service_profile`: every managed field.
pub fn create_body(desired: &ResolvedProfile) -> Value {
    let mut body = Map::new();
    body.insert("name".into(), json!(desired.name));
    if let Some(d) = &desired.description {
        body.insert("description".into(), json!(d));
    }
    for (field, value, _) in flags(&desired.settings) {
        body.insert(field.into(), json!(value));
    }
    for (field, id) in references(&desired.settings) {
        if let Some(id) = id {
            body.insert(field.into(), json!({ "id": id }));
        }
    }
    Value::Object(body)
}

/// The pure plan: changes that turn `observed` into `desired`, in an order emnify accepts
/// (fields; detach limits before removing their service; add services before attaching limits).
pub fn plan(desired: &ResolvedProfile, observed: &api::ServiceProfile) -> Vec<ProfileChange> {
    let mut changes = Vec::new();
    let mut body = Map::new();
    let mut fields = Vec::new();
    if observed.name != desired.name {
        body.insert("name".into(), json!(desired.name));
        fields.push(format!("name {:?} -> {:?}", observed.name, desired.name));
    }
    if let Some(d) = &desired.description
        && observed.description.as_deref().unwrap_or("") != d
    {
        body.insert("description".into(), json!(d));
        fields.push(format!(
            "description {:?} -> {d:?}",
            observed.description.as_deref().unwrap_or("")
        ));
    }
    for (field, want, default) in flags(&desired.settings) {
        let have = observed_flag(observed, field).unwrap_or(default);
        if have != want {
            body.insert(field.into(), json!(want));
            fields.push(format!("{field} {have} -> {want}"));
        }
    }
    for (field, want) in references(&desired.settings) {
        if let Some(want) = want {
            let have = observed_reference(observed, field);
            if have != Some(want) {
                body.insert(field.into(), json!({ "id": want }));
                fields.push(format!(
                    "{field} {} -> {want}",
                    have.map_or_else(|| "none".to_string(), |h| h.to_string())
                ));
            }
        }
    }
    if !body.is_empty() {
        changes.push(ProfileChange {
            description: format!("update service profile: {}", fields.join(", ")),
            op: ProfileOp::Emnify(Change::Patch { body }),
        });
    }
    if let Some(want) = &desired.data_limits {
        plan_data_limits(want, observed.data_limits.as_deref().unwrap_or(&[]), &mut changes);
    }

    let Some(want_services) = &desired.services else {
        return changes;
    };
    let have_services: DesiredServices = observed
        .service
        .iter()
        .flatten()
        .filter_map(|s| {
            let id = s.id?;
            let limits = s
                .traffic_limit
                .iter()
                .filter_map(|l| Some((l.id?, l.label())))
                .collect();
            Some((id, (s.description.clone().unwrap_or_else(|| id.to_string()), limits)))
        })
        .collect();
    let empty = BTreeMap::new();
    // 1. detach limits that should go (from kept and from removed services)
    for (sid, (label, have_limits)) in &have_services {
        let want_limits = want_services.get(sid).map(|(_, l)| l).unwrap_or(&empty);
        for (lid, llabel) in have_limits {
            if !want_limits.contains_key(lid) {
                changes.push(ProfileChange {
                    description: format!("detach traffic limit {lid} ({llabel}) from service {label} ({sid})"),
                    op: ProfileOp::Emnify(Change::DetachLimit {
                        service_id: *sid,
                        limit_id: *lid,
                    }),
                });
            }
        }
    }
    // 2. remove services that should go
    for (sid, (label, _)) in &have_services {
        if !want_services.contains_key(sid) {
            changes.push(ProfileChange {
                description: format!("remove service {label} ({sid})"),
                op: ProfileOp::Emnify(Change::RemoveService { service_id: *sid }),
            });
        }
    }
    // 3. add missing services, 4. attach missing limits
    for (sid, (label, _)) in want_services {
        if !have_services.contains_key(sid) {
            changes.push(ProfileChange {
                description: format!("add service {label} ({sid})"),
                op: ProfileOp::Emnify(Change::AddService { service_id: *sid }),
            });
        }
    }
    for (sid, (label, want_limits)) in want_services {
        let have_limits: BTreeSet<i64> = have_services
            .get(sid)
            .map(|(_, l)| l.keys().copied().collect())
            .unwrap_or_default();
        for (lid, llabel) in want_limits {
            if !have_limits.contains(lid) {
                changes.push(ProfileChange {
                    description: format!("attach traffic limit {lid} ({llabel}) to service {label} ({sid})"),
                    op: ProfileOp::Emnify(Change::AttachLimit {
                        service_id: *sid,
                        limit_id: *lid,
                    }),
                });
            }
        }
    }
    changes
}

/// Data limits: those that differ are deleted and added again (emnify has no update), so every
/// delete comes before every add (one limit per scope).
fn plan_data_limits(want: &[DesiredDataLimit], have: &[api::DataLimit], changes: &mut Vec<ProfileChange>) {
    let kept: Vec<&api::DataLimit> = have.iter().filter(|l| want.iter().any(|w| w.matches(l))).collect();
    for l in have {
        if kept.iter().any(|k| std::ptr::eq(*k, l)) {
            continue;
        }
        let Some(limit_id) = l.id else { continue };
        changes.push(ProfileChange {
            description: format!("delete data limit {limit_id} ({})", observed_data_limit_label(l)),
            op: ProfileOp::Emnify(Change::DeleteDataLimit { limit_id }),
        });
    }
    for w in want {
        if !kept.iter().any(|l| w.matches(l)) {
            changes.push(ProfileChange {
                description: format!("add data limit {}", w.label()),
                op: ProfileOp::Emnify(Change::AddDataLimit { body: w.body() }),
            });
        }
    }
}

/// The spec settings that describe `observed` as it is (import): every flag (emnify's default
/// where it omits one), every reference it has, its services with their attached limits by id,
/// and its data limits (when read). Planned against `observed`, they give no change. A service is
/// written by its description when that names it alone in the catalogue, else by id. What the
/// spec cannot say is left unmanaged and listed in the second value.
pub fn settings_of(observed: &api::ServiceProfile, catalogue: &Catalogue) -> (EmnifyServiceProfile, Vec<String>) {
    let flag = |field: &str, default: bool| observed_flag(observed, field).unwrap_or(default);
    let reference = |field: &str| observed_reference(observed, field);
    let mut unmanaged = Vec::new();
    let services = observed.service.as_ref().map(|services| {
        services
            .iter()
            .filter_map(|s| {
                let id = s.id?;
                let by_name = s.description.as_deref().filter(|d| {
                    catalogue
                        .service(&IntOrString::String(d.to_string()))
                        .map(|(sid, _)| sid)
                        == Ok(id)
                });
                let service = match (by_name, i32::try_from(id)) {
                    (Some(name), _) => IntOrString::String(name.to_string()),
                    (None, Ok(small)) => IntOrString::Int(small),
                    (None, Err(_)) => IntOrString::String(id.to_string()),
                };
                let mut traffic_limits: Vec<EmnifyTrafficLimitRef> = s
                    .traffic_limit
                    .iter()
                    .filter_map(|l| l.id)
                    .map(|id| EmnifyTrafficLimitRef {
                        id: Some(id),
                        volume: None,
                        period: None,
                    })
                    .collect();
                traffic_limits.sort_by_key(|l| l.id);
                Some((
                    id,
                    EmnifyServiceSpec {
                        service,
                        traffic_limits,
                    },
                ))
            })
            .collect::<BTreeMap<i64, EmnifyServiceSpec>>()
            .into_values()
            .collect()
    });
    let data_limits = observed.data_limits.as_ref().and_then(|limits| {
        let mut out = Vec::new();
        for l in limits {
            let volume = l.volume.and_then(|v| u64::try_from(v).ok()).filter(|v| *v > 0);
            let monthly_data = l.service.as_ref().and_then(|s| s.id) == Some(DATA_SERVICE)
                && l.period.as_ref().and_then(|p| p.id).is_none_or(|p| p == MONTHLY);
            let warning = l.warning_percent.map(i32::try_from);
            match (volume, monthly_data, warning) {
                (Some(volume), true, None | Some(Ok(1..=100))) => out.push(EmnifyDataLimit {
                    volume: crate::crd::quantity::quantity(volume),
                    satellite_only: l.satellite_only.filter(|s| *s),
                    warning_percent: warning.and_then(Result::ok),
                }),
                _ => {
                    unmanaged.push(format!(
                        "dataLimits: {} is not a monthly Data limit the spec can express",
                        observed_data_limit_label(l)
                    ));
                    return None;
                }
            }
        }
        if out.iter().filter(|l| l.satellite_only == Some(true)).count() > 1
            || out.iter().filter(|l| l.satellite_only != Some(true)).count() > 1
        {
            unmanaged.push("dataLimits: more than one limit per scope".to_string());
            return None;
        }
        out.sort_by_key(|l| l.satellite_only.unwrap_or(false));
        Some(out)
    });
    let settings = EmnifyServiceProfile {
        allowed_3g: flag("allowed_3g", true),
        allowed_4g: flag("allowed_4g", true),
        allowed_nb_iot: flag("allowed_nb_iot", true),
        allowed_nb_iot_geo: flag("allowed_nb_iot_geo", false),
        apply_data_quota: flag("apply_data_quota", false),
        apply_sms_quota: flag("apply_sms_quota", false),
        sms_p2p_int: flag("sms_p2p_int", true),
        sms_p2p_ext: flag("sms_p2p_ext", true),
        nipdp: flag("nipdp", false),
        api_callback_id: reference("api_callback"),
        api_secret_id: reference("api_secret"),
        moc_callback_id: reference("moc_callback"),
        breakout_region_id: reference("breakout_region"),
        dns_id: reference("dns"),
        esme_interface_type_id: reference("esme_interface_type"),
        services,
        data_limits,
    };
    (settings, unmanaged)
}

/// Status summary of an observed profile.
pub fn summary(observed: &api::ServiceProfile, drift: &[ProfileChange]) -> ObservedServiceProfile {
    let mut rats = Vec::new();
    if observed.allowed_3g.unwrap_or(true) {
        rats.push("3G".to_string());
    }
    if observed.allowed_4g.unwrap_or(true) {
        rats.push("4G".to_string());
    }
    if observed.allowed_nb_iot.unwrap_or(true) {
        rats.push("NB-IoT".to_string());
    }
    if observed.allowed_nb_iot_geo.unwrap_or(false) {
        rats.push("NB-IoT-NTN".to_string());
    }
    let services = observed
        .service
        .iter()
        .flatten()
        .map(|s| {
            let name = format!(
                "{} ({})",
                s.description.as_deref().unwrap_or("service"),
                s.id.map(|i| i.to_string()).unwrap_or_default()
            );
            if s.traffic_limit.is_empty() {
                name
            } else {
                let limits: Vec<String> = s
                    .traffic_limit
                    .iter()
                    .map(|l| format!("{}: {}", l.id.unwrap_or_default(), l.label()))
                    .collect();
                format!("{name}: limits {}", limits.join(", "))
            }
        })
        .collect();
    ObservedServiceProfile {
        name: observed.name.clone(),
        description: observed.description.clone().filter(|d| !d.is_empty()),
        allowed_rats: rats,
        services,
        data_limits: observed
            .data_limits
            .iter()
            .flatten()
            .map(|l| format!("{}: {}", l.id.unwrap_or_default(), observed_data_limit_label(l)))
            .collect(),
        drift: drift.iter().map(|c| c.description.clone()).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{EmnifyServiceSpec, EmnifyTrafficLimitRef};

    fn catalogue() -> Catalogue {
        let period = |id, units, unit: &str| {
            Some(api::Period {
                id: Some(id),
                time_units: Some(units),
                unit: Some(unit.into()),
            })
        };
        Catalogue {
            services: vec![
                api::Service {
                    id: Some(38),
                    description: Some("Data".into()),
                },
                api::Service {
                    id: Some(53),
                    description: Some("SMS MO".into()),
                },
            ],
            limits: BTreeMap::from([(
                38,
                vec![
                    api::TrafficLimit {
                        id: Some(111),
                        volume: Some(64),
                        period: period(33, 5, "Days"),
                    },
                    api::TrafficLimit {
                        id: Some(112),
                        volume: Some(1024),
                        period: period(35, 1, "Months"),
                    },
                ],
            )]),
        }
    }

    fn observed_matching() -> api::ServiceProfile {
        serde_json::from_value(json!({
            "id": 7, "name": "iot", "description": "fleet", "allowed_3g": true, "allowed_4g": true,
            "allowed_nb_iot": true, "allowed_nb_iot_geo": false, "apply_data_quota": false, "apply_sms_quota": false,
            "sms_p2p_int": true, "sms_p2p_ext": true, "nipdp": false, "used_count": 2,
            "service": [{"id": 38, "description": "Data", "traffic_limit": [{"id": 111, "volume": 64, "period": {"id": 33, "time_units": 5, "unit": "Days"}}]}]
        }))
        .unwrap()
    }

    fn settings_with(services: Option<Vec<EmnifyServiceSpec>>) -> EmnifyServiceProfile {
        EmnifyServiceProfile {
            services,
            ..Default::default()
        }
    }

    fn data_with(limits: Vec<EmnifyTrafficLimitRef>) -> EmnifyServiceSpec {
        EmnifyServiceSpec {
            service: IntOrString::String("data".into()),
            traffic_limits: limits,
        }
    }

    fn by_id(id: i64) -> EmnifyTrafficLimitRef {
        EmnifyTrafficLimitRef {
            id: Some(id),
            volume: None,
            period: None,
        }
    }

    fn resolved(settings: EmnifyServiceProfile) -> ResolvedProfile {
        resolve("iot", Some("fleet"), &settings, &catalogue()).unwrap()
    }

    #[test]
    fn in_sync_profile_plans_nothing() {
        let desired = resolved(settings_with(Some(vec![data_with(vec![by_id(111)])])));
        assert_eq!(plan(&desired, &observed_matching()), vec![]);
    }

    #[test]
    fn only_changed_fields_are_patched() {
        let mut settings = settings_with(None);
        settings.allowed_3g = false;
        settings.dns_id = Some(4);
        let changes = plan(&resolved(settings), &observed_matching());
        assert_eq!(changes.len(), 1);
        let ProfileOp::Emnify(Change::Patch { body }) = &changes[0].op else {
            panic!("{changes:?}")
        };
        assert_eq!(
            Value::Object(body.clone()),
            json!({"allowed_3g": false, "dns": {"id": 4}})
        );
        assert_eq!(
            changes[0].description,
            "update service profile: allowed_3g true -> false, dns none -> 4"
        );
    }

    #[test]
    fn unmanaged_services_and_description_are_left_alone() {
        let desired = resolve("iot", None, &settings_with(None), &catalogue()).unwrap();
        let mut observed = observed_matching();
        observed.description = Some("changed in the portal".into());
        assert_eq!(plan(&desired, &observed), vec![]);
    }

    #[test]
    fn missing_flags_compare_against_vendor_defaults() {
        let observed: api::ServiceProfile = serde_json::from_value(json!({"id": 7, "name": "iot"})).unwrap();
        let desired = resolve("iot", None, &settings_with(None), &catalogue()).unwrap();
        assert_eq!(plan(&desired, &observed), vec![]);
    }

    #[test]
    fn a_data_limit_beyond_int64_is_refused_before_any_call() {
        let limit = |volume: &str| EmnifyServiceProfile {
            data_limits: Some(vec![crate::crd::EmnifyDataLimit {
                volume: k8s_openapi::apimachinery::pkg::api::resource::Quantity(volume.into()),
                satellite_only: None,
                warning_percent: None,
            }]),
            ..Default::default()
        };
        // 8Ei = 2^63 bytes, one more than emnify's int64 volume holds.
        let err = resolve("iot", None, &limit("8Ei"), &Catalogue::default()).unwrap_err();
        assert!(
            err.contains("dataLimits[0].volume: 8Ei is more than emnify accepts"),
            "{err}"
        );
        let ok = resolve("iot", None, &limit("9223372036854775807"), &Catalogue::default()).unwrap();
        assert_eq!(ok.data_limits.unwrap()[0].volume, i64::MAX as u64);
    }

    #[test]
    fn services_and_limits_are_diffed_in_a_safe_order() {
        let desired = resolved(settings_with(Some(vec![
            data_with(vec![EmnifyTrafficLimitRef {
                id: None,
                volume: Some(1024),
                period: Some("1  months".into()),
            }]),
            EmnifyServiceSpec {
                service: IntOrString::Int(53),
                traffic_limits: vec![],
            },
        ])));
        let ops: Vec<Change> = plan(&desired, &observed_matching())
            .into_iter()
            .map(|c| match c.op {
                ProfileOp::Emnify(op) => op,
                ProfileOp::Bics(op) => panic!("not an emnify change: {op:?}"),
            })
            .collect();
        assert_eq!(
            ops,
            vec![
                Change::DetachLimit {
                    service_id: 38,
                    limit_id: 111
                },
                Change::AddService { service_id: 53 },
                Change::AttachLimit {
                    service_id: 38,
                    limit_id: 112
                },
            ]
        );
    }

    #[test]
    fn removing_a_service_detaches_its_limits_first() {
        let desired = resolved(settings_with(Some(vec![])));
        let changes = plan(&desired, &observed_matching());
        let descriptions: Vec<_> = changes.iter().map(|c| c.description.as_str()).collect();
        assert_eq!(
            descriptions,
            vec![
                "detach traffic limit 111 (64 per 5 Days) from service Data (38)",
                "remove service Data (38)"
            ]
        );
    }

    #[test]
    fn unknown_references_are_reported_with_what_exists() {
        let err = resolve(
            "x",
            None,
            &settings_with(Some(vec![EmnifyServiceSpec {
                service: IntOrString::String("Telepathy".into()),
                traffic_limits: vec![],
            }])),
            &catalogue(),
        )
        .unwrap_err();
        assert!(
            err.contains("no service named \"Telepathy\"") && err.contains("Data, SMS MO"),
            "{err}"
        );
        let err = resolve(
            "x",
            None,
            &settings_with(Some(vec![data_with(vec![by_id(999)])])),
            &catalogue(),
        )
        .unwrap_err();
        assert!(
            err.contains("no traffic limit with id 999") && err.contains("111 = 64 per 5 Days"),
            "{err}"
        );
        let err = resolve(
            "x",
            None,
            &settings_with(Some(vec![data_with(vec![]), data_with(vec![])])),
            &catalogue(),
        )
        .unwrap_err();
        assert!(err.contains("listed twice"), "{err}");
    }

    #[test]
    fn create_body_carries_every_managed_field() {
        let mut settings = settings_with(None);
        settings.breakout_region_id = Some(3);
        let body = create_body(&resolved(settings));
        assert_eq!(body["name"], "iot");
        assert_eq!(body["description"], "fleet");
        assert_eq!(body["allowed_nb_iot_geo"], false);
        assert_eq!(body["breakout_region"], json!({"id": 3}));
        assert!(body.get("dns").is_none(), "unmanaged references are not sent");
    }

    #[test]
    fn summary_lists_rats_services_and_drift() {
        let s = summary(&observed_matching(), &[]);
        assert_eq!(s.allowed_rats, vec!["3G", "4G", "NB-IoT"]);
        assert_eq!(s.services, vec!["Data (38): limits 111: 64 per 5 Days"]);
        assert!(s.drift.is_empty());
    }
}
