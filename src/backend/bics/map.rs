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

/// A `GetServiceProfile` row, parsed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ProfileRow {
    pub id: String,
    pub name: String,
    pub category: String,
    pub status: String,
    pub services: BTreeSet<u32>,
    pub access_type: Option<String>,
    pub rat_name: Option<String>,
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.is_empty() && s != "-" => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

impl ProfileRow {
    pub fn parse(row: &Value) -> Option<ProfileRow> {
        Some(ProfileRow {
            id: text(&row["profileId"])?,
            name: text(&row["profileName"]).unwrap_or_default(),
            category: text(&row["category"]).unwrap_or_default(),
            status: text(&row["status"]).unwrap_or_default(),
            services: text(&row["service"])
                .map(|s| s.split('|').filter_map(|x| x.trim().parse().ok()).collect())
                .unwrap_or_default(),
            access_type: text(&row["accessType"]).map(|a| format!("{:0>2}", a)),
            rat_name: text(&row["ratTypeName"]),
        })
    }
}

/// `Request.requestParam.serviceProfile` of a create.
pub fn create_body(name: &str, spec: &BicsServiceProfile) -> Value {
    let mut profile = json!({
        "name": name,
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

/// Whether a row is exactly what the spec asks for (used to adopt after a duplicate-name answer).
pub fn matches(name: &str, spec: &BicsServiceProfile, row: &ProfileRow) -> bool {
    plan(name, spec, row).is_empty() && row.category == category_code(spec.category)
}

/// The pure plan: one `ModifyServiceProfile` with the fields that differ (category cannot be
/// modified at BICS; a different category is sent anyway so BICS's refusal reaches the status).
pub fn plan(name: &str, spec: &BicsServiceProfile, row: &ProfileRow) -> Vec<ProfileChange> {
    let mut fields = Map::new();
    let mut notes = Vec::new();
    if row.name != name {
        fields.insert("name".into(), json!(name));
        notes.push(format!("name {:?} -> {name:?}", row.name));
    }
    if row.status != status_code(spec.status) {
        fields.insert("status".into(), json!(status_code(spec.status)));
        notes.push(format!("status {} -> {}", row.status, status_code(spec.status)));
    }
    let want: BTreeSet<u32> = spec.services.iter().copied().map(service_id).collect();
    if row.services != want {
        fields.insert("service".into(), json!(services(spec)));
        let names = |s: &BTreeSet<u32>| s.iter().map(|i| service_name(*i)).collect::<Vec<_>>().join("|");
        notes.push(format!("services {} -> {}", names(&row.services), names(&want)));
    }
    let want_access = spec.access_type.map(access_code);
    if row.access_type.as_deref() != want_access {
        if let Some(a) = want_access {
            fields.insert("accessType".into(), json!(a));
        }
        notes.push(format!(
            "accessType {} -> {}",
            row.access_type.as_deref().unwrap_or("none"),
            want_access.unwrap_or("none")
        ));
    }
    if !row.category.is_empty() && row.category != category_code(spec.category) {
        fields.insert("category".into(), json!(category_code(spec.category)));
        notes.push(format!("category {} -> {}", row.category, category_code(spec.category)));
    }
    if fields.is_empty() {
        return Vec::new();
    }
    vec![ProfileChange {
        description: format!("update service profile: {}", notes.join(", ")),
        op: ProfileOp::Bics(Change::Modify { fields }),
    }]
}

/// One BICS call that changes a service profile.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// `POST /api/ModifyServiceProfile` with the id and these fields.
    Modify { fields: Map<String, Value> },
}

pub fn summary(row: &ProfileRow, drift: &[ProfileChange]) -> ObservedServiceProfile {
    ObservedServiceProfile {
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
    fn rows_parse_and_plan_only_differences() {
        let row = ProfileRow::parse(
            &json!({"profileId": "SP_1002", "profileName": "iot", "category": "0", "status": "1",
            "service": "4|2|3", "accessType": "10", "serviceName": "DATA|SMS-MO|SMS-MT", "ratTypeName": "2G/3G/4G/5G"}),
        )
        .unwrap();
        assert!(plan("iot", &spec(), &row).is_empty());
        assert!(matches("iot", &spec(), &row));
        let mut lower = spec();
        lower.access_type = Some(BicsAccessType::G2G3);
        let changes = plan("iot", &lower, &row);
        let ProfileOp::Bics(Change::Modify { fields }) = &changes[0].op else {
            panic!()
        };
        assert_eq!(Value::Object(fields.clone()), json!({"accessType": "01"}));
        assert_eq!(changes[0].description, "update service profile: accessType 10 -> 01");
        let mut addon = spec();
        addon.category = BicsCategory::Addon;
        assert!(!matches("iot", &addon, &row));
    }
}
