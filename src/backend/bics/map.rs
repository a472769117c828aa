//! BICS wire values and the pure plan for service profiles. Values are sent as strings (codes
//! keep their leading zero); the client compares the raw `service` ids and `accessType` code, never
//! the display names.

use std::collections::BTreeSet;

use serde_json::{Map, Value, json};

use crate::backend::{ProfileChange, ProfileOp};
use crate::crd::{
    BicsAccessType, BicsCategory, BicsProfileStatus, BicsService, BicsServiceProfile, ObservedServiceProfile,
};

pub fn service_id(s: BicsService) -> u32 {
    match s {
        BicsService::Data => 4,
        BicsService::SmsMo => 2,
        BicsService::SmsMt => 3,
        BicsService::NbIot => 5,
    }
}

pub fn service_name(id: u32) -> &'static str {
    match id {
        4 => "DATA",
        2 => "SMS-MO",
        3 => "SMS-MT",
        5 => "NB-IOT",
        _ => "unknown",
    }
}

pub fn access_code(a: BicsAccessType) -> &'static str {
    match a {
        BicsAccessType::G2 => "02",
        BicsAccessType::G2G3 => "01",
        BicsAccessType::G2G3G4 => "06",
        BicsAccessType::G2G3G4G5 => "10",
    }
}

fn category_code(c: BicsCategory) -> &'static str {
    match c {
        BicsCategory::Base => "0",
        BicsCategory::Addon => "1",
    }
}

fn status_code(s: BicsProfileStatus) -> &'static str {
    match s {
        BicsProfileStatus::Inactive => "0",
        BicsProfileStatus::Active => "1",
    }
}

/// A `GetServiceProfile` row as BICS documents it: `profileId`, `profileName`, `serviceName`,
/// `ratTypeName` (only with DATA / SMS) and `category`. The profile's `status` is not returned, so
/// it is write-only (see [`write_only`]). Names are parsed leniently: BICS documents the fields but
/// not their exact spelling, so names or codes, any separator and any case are accepted.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ProfileRow {
    pub id: String,
    pub name: String,
    /// `None` when absent or not recognised (the raw text is in `category_text`).
    pub category: Option<BicsCategory>,
    pub category_text: String,
    pub services: BTreeSet<u32>,
    /// Service names we could not map; they make the row differ from any spec.
    pub unknown_services: Vec<String>,
    /// The access-type code (`02`, `01`, `06`, `10`) `ratTypeName` names; `None` when absent.
    pub access_type: Option<String>,
    /// `ratTypeName` as BICS sent it.
    pub rat_name: Option<String>,
}

/// A BICS scalar as text: strings (trimmed) or numbers; empty and `-` (BICS's "none") are `None`.
pub fn text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.trim().is_empty() && s.trim() != "-" => Some(s.trim().to_string()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Upper case with everything but letters and digits removed: `sms-mo`, `SMS MO` -> `SMSMO`.
fn squash(s: &str) -> String {
    s.chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_uppercase())
        .collect()
}

/// One service by name or code: `DATA` / `4`, `SMS-MO` / `MO-SMS` / `2`, `SMS-MT` / `MT-SMS` /
/// `3`, `NB-IoT` / `5`.
pub fn parse_service(token: &str) -> Option<u32> {
    match squash(token).as_str() {
        "4" | "DATA" | "PS" | "PACKETDATA" => Some(4),
        "2" | "SMSMO" | "MOSMS" => Some(2),
        "3" | "SMSMT" | "MTSMS" => Some(3),
        "5" | "NBIOT" | "NB" => Some(5),
        _ => None,
    }
}

/// A `serviceName` list: tokens separated by `|`, `,`, `;`, `/`, `+` or line breaks (and, when a
/// token is not a service on its own, by spaces). Returns the services and the unknown tokens.
pub fn parse_services(text: &str) -> (BTreeSet<u32>, Vec<String>) {
    let mut services = BTreeSet::new();
    let mut unknown = Vec::new();
    for token in text
        .split(['|', ',', ';', '/', '+', '\n'])
        .map(str::trim)
        .filter(|t| !t.is_empty())
    {
        if let Some(s) = parse_service(token) {
            services.insert(s);
            continue;
        }
        let parts: Vec<Option<u32>> = token.split_whitespace().map(parse_service).collect();
        if parts.len() > 1 && parts.iter().all(Option::is_some) {
            services.extend(parts.into_iter().flatten());
        } else {
            unknown.push(token.to_string());
        }
    }
    (services, unknown)
}

/// The access-type code a `ratTypeName` names: a code (`06`, `6`) or the generations it lists
/// (`2G/3G/4G`, `2g,3g,4g`, `GSM/UMTS/LTE`); `None` when it names no documented combination.
pub fn parse_rat(text: &str) -> Option<&'static str> {
    let squashed = squash(text);
    match squashed.as_str() {
        "02" | "2" => return Some("02"),
        "01" | "1" => return Some("01"),
        "06" | "6" => return Some("06"),
        "10" => return Some("10"),
        _ => {}
    }
    let upper = text.to_ascii_uppercase();
    let mut generations = BTreeSet::new();
    for token in upper
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|t| !t.is_empty())
    {
        let g = match token {
            "2G" | "GSM" | "GPRS" | "EDGE" => 2,
            "3G" | "UMTS" | "HSPA" => 3,
            "4G" | "LTE" => 4,
            "5G" | "NR" => 5,
            _ => {
                // `2G3G4G` without separators.
                let gs: Vec<u8> = token
                    .split('G')
                    .filter(|d| !d.is_empty())
                    .map(|d| d.parse().ok())
                    .collect::<Option<_>>()?;
                generations.extend(gs);
                continue;
            }
        };
        generations.insert(g);
    }
    match generations.into_iter().collect::<Vec<u8>>().as_slice() {
        [2] => Some("02"),
        [2, 3] => Some("01"),
        [2, 3, 4] => Some("06"),
        [2, 3, 4, 5] => Some("10"),
        _ => None,
    }
}

fn parse_category(text: &str) -> Option<BicsCategory> {
    match squash(text).as_str() {
        "0" | "BASE" => Some(BicsCategory::Base),
        "1" | "ADDON" => Some(BicsCategory::Addon),
        _ => None,
    }
}

impl ProfileRow {
    pub fn parse(row: &Value) -> Option<ProfileRow> {
        let (services, unknown_services) = text(&row["serviceName"])
            .map(|s| parse_services(&s))
            .unwrap_or_default();
        let rat_name = text(&row["ratTypeName"]);
        let category_text = text(&row["category"]).unwrap_or_default();
        Some(ProfileRow {
            id: text(&row["profileId"])?,
            name: text(&row["profileName"]).unwrap_or_default(),
            category: parse_category(&category_text),
            category_text,
            services,
            unknown_services,
            access_type: rat_name.as_deref().and_then(parse_rat).map(str::to_string),
            rat_name,
        })
    }
}

/// The spec that describes a profile row as it is (import), or why none can. `status` is not
/// returned by BICS, so it is written as `Active` (the default) and only sent once the spec
/// changes it under `Full` (see [`plan`]).
pub fn settings_of(row: &ProfileRow) -> Result<BicsServiceProfile, String> {
    if !row.unknown_services.is_empty() {
        return Err(format!(
            "services this operator has no word for: {}",
            row.unknown_services.join(", ")
        ));
    }
    let category = match row.category {
        Some(c) => c,
        None if row.category_text.is_empty() => BicsCategory::default(),
        None => return Err(format!("category {:?} is neither Base nor Addon", row.category_text)),
    };
    let services: Vec<BicsService> = [
        BicsService::Data,
        BicsService::SmsMo,
        BicsService::SmsMt,
        BicsService::NbIot,
    ]
    .into_iter()
    .filter(|s| row.services.contains(&service_id(*s)))
    .collect();
    if services.is_empty() {
        return Err("no services".to_string());
    }
    let access_type = match (&row.access_type, &row.rat_name) {
        (Some(code), _) => Some(
            [
                BicsAccessType::G2,
                BicsAccessType::G2G3,
                BicsAccessType::G2G3G4,
                BicsAccessType::G2G3G4G5,
            ]
            .into_iter()
            .find(|a| access_code(*a) == code)
            .ok_or_else(|| format!("access type code {code:?} is not a documented one"))?,
        ),
        (None, Some(rat)) => return Err(format!("radio access type {rat:?} names no documented combination")),
        (None, None) => None,
    };
    if access_type.is_none() && services.iter().any(|s| *s != BicsService::NbIot) {
        return Err("no radio access type reported for a profile with Data or SMS".to_string());
    }
    Ok(BicsServiceProfile {
        category,
        status: BicsProfileStatus::default(),
        services,
        access_type,
    })
}

/// Fingerprint of the settings BICS accepts but never returns (the profile's `status`), as
/// recorded in `status.writeOnly` after they were sent.
pub fn write_only(spec: &BicsServiceProfile) -> String {
    format!("status={}", status_code(spec.status))
}

/// `Request.requestParam.serviceProfile` of a create.
pub fn create_body(name: &str, spec: &BicsServiceProfile) -> Value {
    let mut profile = json!({
        "name": name.trim(),
        "category": category_code(spec.category),
        "status": status_code(spec.status),
        "service": services(spec),
    });
    if let Some(a) = spec.access_type {
        profile["accessType"] = json!(access_code(a));
    }
    json!({"Request": {"requestParam": {"serviceProfile": profile}}})
}

fn services(spec: &BicsServiceProfile) -> String {
    let ids: BTreeSet<u32> = spec.services.iter().copied().map(service_id).collect();
    ids.iter().map(u32::to_string).collect::<Vec<_>>().join("|")
}

/// Whether a row is exactly what the spec asks for, as far as BICS lets us read it (used to
/// adopt after a duplicate-name answer and by name).
pub fn matches(name: &str, spec: &BicsServiceProfile, row: &ProfileRow) -> bool {
    plan(name, spec, row, Some(&write_only(spec))).is_empty()
}

/// The pure plan: one `ModifyServiceProfile` with the readable fields that differ (`name`,
/// `service`, `accessType`) plus `status` when `written` (the fingerprint recorded when settings
/// were last sent) is not what the spec asks for now. A different `category` cannot be fixed:
/// `ModifyServiceProfile` has no such field.
pub fn plan(name: &str, spec: &BicsServiceProfile, row: &ProfileRow, written: Option<&str>) -> Vec<ProfileChange> {
    // Names are read back trimmed ([`text`]), so they are sent and compared trimmed: a name with
    // an edge space was otherwise sent again on every reconcile (found by the bics_profile_plan
    // fuzz target).
    let name = name.trim();
    let mut fields = Map::new();
    let mut notes = Vec::new();
    let mut changes = Vec::new();
    if row.name != name {
        fields.insert("name".into(), json!(name));
        notes.push(format!("name {:?} -> {name:?}", row.name));
    }
    let want: BTreeSet<u32> = spec.services.iter().copied().map(service_id).collect();
    if row.services != want || !row.unknown_services.is_empty() {
        fields.insert("service".into(), json!(services(spec)));
        let mut have: Vec<String> = row.services.iter().map(|i| service_name(*i).to_string()).collect();
        have.extend(row.unknown_services.iter().cloned());
        let want: Vec<&str> = want.iter().map(|i| service_name(*i)).collect();
        notes.push(format!("services {} -> {}", have.join("|"), want.join("|")));
    }
    let want_access = spec.access_type.map(access_code);
    // `ratTypeName` is returned only with DATA / SMS: without it (and with a spec that has no
    // access type) there is nothing to compare.
    let unreadable_rat = row.access_type.is_none() && row.rat_name.is_some();
    if row.access_type.as_deref() != want_access || unreadable_rat {
        if let Some(a) = want_access {
            fields.insert("accessType".into(), json!(a));
        }
        notes.push(format!(
            "accessType {} -> {}",
            row.rat_name.as_deref().unwrap_or("none"),
            want_access.unwrap_or("none")
        ));
    }
    let fingerprint = write_only(spec);
    if written != Some(fingerprint.as_str()) {
        fields.insert("status".into(), json!(status_code(spec.status)));
        notes.push(format!(
            "status -> {:?} (write-only: BICS does not return it, so it is sent when the spec changes)",
            spec.status
        ));
    }
    if !fields.is_empty() {
        changes.push(ProfileChange {
            description: format!("update service profile: {}", notes.join(", ")),
            op: ProfileOp::Bics(Change::Modify { fields }),
        });
    }
    // Last, so what can be changed is changed before this one fails.
    if row.category != Some(spec.category) && !row.category_text.is_empty() {
        changes.push(ProfileChange {
            description: format!(
                "category {} -> {:?} (BICS cannot change a profile's category: delete the profile or set spec.bicsSft.category back)",
                row.category_text, spec.category
            ),
            op: ProfileOp::Bics(Change::Immutable { field: "category" }),
        });
    }
    changes
}

/// One BICS call that changes a service profile.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// `POST /api/ModifyServiceProfile` with the id and these fields.
    Modify { fields: Map<String, Value> },
    /// A difference BICS offers no call to change; applying it fails with a clear message.
    Immutable { field: &'static str },
}

pub fn summary(row: &ProfileRow, drift: &[ProfileChange]) -> ObservedServiceProfile {
    ObservedServiceProfile {
        data_limits: Vec::new(),
        name: row.name.clone(),
        description: None,
        allowed_rats: row
            .rat_name
            .iter()
            .flat_map(|r| r.split('/'))
            .map(str::to_string)
            .collect(),
        services: row
            .services
            .iter()
            .map(|s| format!("{} ({s})", service_name(*s)))
            .chain(row.unknown_services.iter().cloned())
            .collect(),
        drift: drift.iter().map(|c| c.description.clone()).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> BicsServiceProfile {
        BicsServiceProfile {
            category: BicsCategory::Base,
            status: BicsProfileStatus::Active,
            services: vec![BicsService::Data, BicsService::SmsMo, BicsService::SmsMt],
            access_type: Some(BicsAccessType::G2G3G4G5),
        }
    }

    #[test]
    fn wire_values() {
        let body = create_body("iot", &spec());
        let p = &body["Request"]["requestParam"]["serviceProfile"];
        assert_eq!(p["service"], "2|3|4");
        assert_eq!(p["accessType"], "10");
        assert_eq!(p["category"], "0");
        assert_eq!(p["status"], "1");
        assert_eq!(access_code(BicsAccessType::G2), "02");
        assert_eq!(access_code(BicsAccessType::G2G3), "01");
        assert_eq!(access_code(BicsAccessType::G2G3G4), "06");
        assert_eq!(service_id(BicsService::NbIot), 5);
    }

    #[test]
    fn rows_parse_as_documented_and_plan_only_differences() {
        // Only the documented fields: no raw codes, no status.
        let row = ProfileRow::parse(
            &json!({"profileId": "SP_1002", "profileName": "iot", "category": "Base",
            "serviceName": "DATA|SMS-MO|SMS-MT", "ratTypeName": "2G/3G/4G/5G"}),
        )
        .unwrap();
        let sent = write_only(&spec());
        assert!(plan("iot", &spec(), &row, Some(&sent)).is_empty());
        assert!(matches("iot", &spec(), &row));
        let mut lower = spec();
        lower.access_type = Some(BicsAccessType::G2G3);
        let changes = plan("iot", &lower, &row, Some(&sent));
        let ProfileOp::Bics(Change::Modify { fields }) = &changes[0].op else {
            panic!()
        };
        assert_eq!(Value::Object(fields.clone()), json!({"accessType": "01"}));
        assert_eq!(
            changes[0].description,
            "update service profile: accessType 2G/3G/4G/5G -> 01"
        );
        let mut addon = spec();
        addon.category = BicsCategory::Addon;
        assert!(!matches("iot", &addon, &row));
        let changes = plan("iot", &addon, &row, Some(&sent));
        assert_eq!(changes.len(), 1);
        assert_eq!(changes[0].op, ProfileOp::Bics(Change::Immutable { field: "category" }));
    }

    #[test]
    fn status_is_write_only() {
        let row = ProfileRow::parse(&json!({"profileId": "SP_1", "profileName": "iot", "category": "0",
            "serviceName": "DATA,SMS-MO,SMS-MT", "ratTypeName": "2G/3G/4G/5G"}))
        .unwrap();
        // Never sent (adopted, or written by an older operator): sent once.
        let changes = plan("iot", &spec(), &row, None);
        let ProfileOp::Bics(Change::Modify { fields }) = &changes[0].op else {
            panic!()
        };
        assert_eq!(Value::Object(fields.clone()), json!({"status": "1"}));
        // Sent for the current spec: nothing to do, whatever BICS has (it cannot be read).
        assert!(plan("iot", &spec(), &row, Some("status=1")).is_empty());
        // The spec changed since: sent again.
        let mut inactive = spec();
        inactive.status = BicsProfileStatus::Inactive;
        assert_eq!(write_only(&inactive), "status=0");
        let changes = plan("iot", &inactive, &row, Some("status=1"));
        let ProfileOp::Bics(Change::Modify { fields }) = &changes[0].op else {
            panic!()
        };
        assert_eq!(Value::Object(fields.clone()), json!({"status": "0"}));
    }

    #[test]
    fn a_name_with_edge_spaces_is_sent_once() {
        let spec = BicsServiceProfile {
            category: BicsCategory::Base,
            status: BicsProfileStatus::Active,
            services: vec![BicsService::NbIot],
            access_type: None,
        };
        assert_eq!(
            create_body(" iot ", &spec)["Request"]["requestParam"]["serviceProfile"]["name"],
            "iot"
        );
        let row = ProfileRow::parse(
            &json!({"profileId": "SP_1", "profileName": "iot ", "serviceName": "NB-IOT", "category": "0"}),
        )
        .unwrap();
        assert_eq!(plan("iot ", &spec, &row, Some(&write_only(&spec))), vec![]);
    }

    #[test]
    fn service_and_rat_names_parse_leniently() {
        let all: BTreeSet<u32> = [2, 3, 4].into();
        for text in [
            "DATA|SMS-MO|SMS-MT",
            "Data, SMS MO, SMS MT",
            "data;mo-sms;mt-sms",
            "4|2|3",
            "SMS-MT / SMS-MO / DATA",
            "DATA SMS-MO SMS-MT",
        ] {
            assert_eq!(parse_services(text), (all.clone(), vec![]), "{text}");
        }
        assert_eq!(parse_services("NB-IoT").0, [5].into());
        assert_eq!(parse_services("DATA|VOICE"), ([4].into(), vec!["VOICE".to_string()]));
        for (text, code) in [
            ("2G/3G/4G/5G", Some("10")),
            ("2g,3g,4g", Some("06")),
            ("2G/3G", Some("01")),
            ("2G", Some("02")),
            ("06", Some("06")),
            ("6", Some("06")),
            ("10", Some("10")),
            ("GSM/UMTS/LTE", Some("06")),
            ("2G3G4G", Some("06")),
            ("3G/4G", None),
            ("LTE-M", None),
        ] {
            assert_eq!(parse_rat(text), code, "{text}");
        }
    }

    #[test]
    fn unknown_names_are_differences() {
        let row = ProfileRow::parse(&json!({"profileId": "SP_1", "profileName": "iot", "category": "Base",
            "serviceName": "DATA|SMS-MO|SMS-MT|VOICE", "ratTypeName": "something new"}))
        .unwrap();
        let changes = plan("iot", &spec(), &row, Some("status=1"));
        let ProfileOp::Bics(Change::Modify { fields }) = &changes[0].op else {
            panic!()
        };
        assert_eq!(
            Value::Object(fields.clone()),
            json!({"service": "2|3|4", "accessType": "10"})
        );
    }
}
