//! emnify wire types (`/api/v1/...`), parsed leniently: ids and counters arrive as numbers or
//! numeric strings, optional objects may be `null`, absent or `{}`, timestamps come in several
//! forms (see `shared/vendors/emnify.md` §0).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer};

/// Deserialize an integer sent as a number, a numeric string, or null.
pub fn lenient_i64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum NumOrStr {
        Int(i64),
        Float(f64),
        Str(String),
    }
    Ok(match Option::<NumOrStr>::deserialize(d)? {
        None => None,
        Some(NumOrStr::Int(i)) => Some(i),
        // Some schemas type ids as double; they are whole numbers.
        Some(NumOrStr::Float(f)) if f.fract() == 0.0 => Some(f as i64),
        Some(NumOrStr::Float(f)) => return Err(serde::de::Error::custom(format!("{f} is not a whole number"))),
        Some(NumOrStr::Str(s)) if s.trim().is_empty() => None,
        Some(NumOrStr::Str(s)) => Some(s.trim().parse().map_err(serde::de::Error::custom)?),
    })
}

/// Parse an emnify timestamp: `2022-04-07T12:06:06.000+0000`, `2022-03-27T23:20:49.298Z`,
/// `2014-08-01T08:47:00+00:00` or `2015-03-18 16:11:07`.
pub fn parse_time(text: &str) -> Option<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f%z") {
        return Some(t.with_timezone(&Utc));
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Some(t.with_timezone(&Utc));
    }
    chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S")
        .ok()
        .map(|t| t.and_utc())
}

/// `{"id": 38, ...}` reference to another object; other fields are ignored.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct IdRef {
    #[serde(default, deserialize_with = "lenient_i64")]
    pub id: Option<i64>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
}

/// Service profile, list (short) or detail view.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct ServiceProfile {
    #[serde(deserialize_with = "lenient_i64")]
    pub id: Option<i64>,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub allowed_3g: Option<bool>,
    #[serde(default)]
    pub allowed_4g: Option<bool>,
    #[serde(default)]
    pub allowed_nb_iot: Option<bool>,
    #[serde(default)]
    pub allowed_nb_iot_geo: Option<bool>,
    #[serde(default)]
    pub apply_data_quota: Option<bool>,
    #[serde(default)]
    pub apply_sms_quota: Option<bool>,
    #[serde(default)]
    pub sms_p2p_int: Option<bool>,
    #[serde(default)]
    pub sms_p2p_ext: Option<bool>,
    #[serde(default)]
    pub nipdp: Option<bool>,
    #[serde(default, deserialize_with = "lenient_i64")]
    pub used_count: Option<i64>,
    #[serde(default)]
    pub api_callback: Option<IdRef>,
    #[serde(default)]
    pub api_secret: Option<IdRef>,
    #[serde(default)]
    pub moc_callback: Option<IdRef>,
    #[serde(default)]
    pub esme_interface_type: Option<IdRef>,
    #[serde(default)]
    pub breakout_region: Option<IdRef>,
    #[serde(default)]
    pub dns: Option<IdRef>,
    /// Detail view only: services with their attached limits.
    #[serde(default)]
    pub service: Option<Vec<ProfileService>>,
    /// The profile's data limits (`GET /api/v1/service_profile/{id}/traffic_limit`), read only
    /// when the spec manages them.
    #[serde(skip)]
    pub data_limits: Option<Vec<DataLimit>>,
}

/// A data limit of a service profile (`GET /api/v1/service_profile/{id}/traffic_limit` item).
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct DataLimit {
    #[serde(default, deserialize_with = "lenient_i64")]
    pub id: Option<i64>,
    #[serde(default)]
    pub service: Option<IdRef>,
    #[serde(default)]
    pub satellite_only: Option<bool>,
    #[serde(default)]
    pub period: Option<Period>,
    #[serde(default, deserialize_with = "lenient_i64")]
    pub volume: Option<i64>,
    #[serde(default, deserialize_with = "lenient_i64")]
    pub warning_percent: Option<i64>,
}

/// A service on a profile (detail view).
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct ProfileService {
    #[serde(deserialize_with = "lenient_i64")]
    pub id: Option<i64>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub traffic_limit: Vec<TrafficLimit>,
}

/// A predefined traffic limit.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct TrafficLimit {
    #[serde(deserialize_with = "lenient_i64")]
    pub id: Option<i64>,
    #[serde(default, deserialize_with = "lenient_i64")]
    pub volume: Option<i64>,
    #[serde(default)]
    pub period: Option<Period>,
}

impl TrafficLimit {
    /// `64 per 5 Days`
    pub fn label(&self) -> String {
        match (&self.volume, &self.period) {
            (Some(v), Some(p)) => format!("{v} per {}", p.label()),
            _ => format!("limit {}", self.id.unwrap_or_default()),
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct Period {
    #[serde(default, deserialize_with = "lenient_i64")]
    pub id: Option<i64>,
    #[serde(default, deserialize_with = "lenient_i64")]
    pub time_units: Option<i64>,
    #[serde(default)]
    pub unit: Option<String>,
}

impl Period {
    /// `5 Days`
    pub fn label(&self) -> String {
        format!(
            "{} {}",
            self.time_units.unwrap_or(1),
            self.unit.as_deref().unwrap_or("?")
        )
    }
}

/// `GET /api/v1/service` item.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct Service {
    #[serde(deserialize_with = "lenient_i64")]
    pub id: Option<i64>,
    #[serde(default)]
    pub description: Option<String>,
}

/// `POST /api/v1/authenticate` answer (every form).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct AuthResponse {
    #[serde(default)]
    pub auth_token: Option<String>,
    #[serde(default)]
    pub refresh_token: Option<String>,
    #[serde(default)]
    pub mfa_token: Option<String>,
}

/// The documented error body `{error_code, error_token, message, errors[]}`; any part may be
/// missing, and some errors have no body at all.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ErrorBody {
    #[serde(default, deserialize_with = "lenient_i64")]
    pub error_code: Option<i64>,
    #[serde(default)]
    pub error_token: Option<String>,
    #[serde(default)]
    pub message: Option<String>,
    #[serde(default)]
    pub errors: Vec<ErrorBody>,
}

impl ErrorBody {
    /// One line: `InputValidationFailed (1400): Update endpoint validation error; InvalidReference (1401): ...`
    pub fn summary(&self) -> String {
        let mut parts = Vec::new();
        let head = match (&self.error_token, self.error_code, &self.message) {
            (Some(t), Some(c), Some(m)) => format!("{t} ({c}): {m}"),
            (Some(t), None, Some(m)) => format!("{t}: {m}"),
            (None, _, Some(m)) => m.clone(),
            (Some(t), Some(c), None) => format!("{t} ({c})"),
            (Some(t), None, None) => t.clone(),
            (None, Some(c), None) => format!("error code {c}"),
            (None, None, None) => String::new(),
        };
        if !head.is_empty() {
            parts.push(head);
        }
        parts.extend(self.errors.iter().map(ErrorBody::summary).filter(|s| !s.is_empty()));
        parts.join("; ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_as_strings_and_nulls() {
        let p: ServiceProfile = serde_json::from_str(
            r#"{"id":"232","name":"Smart meter","used_count":"12","api_callback":null,"dns":{},"breakout_region":{"id":3,"name":"eu-west-1 (VPN)","ip_address":"0.0.0.0"}}"#,
        )
        .unwrap();
        assert_eq!(p.id, Some(232));
        assert_eq!(p.used_count, Some(12));
        assert_eq!(p.api_callback, None);
        assert_eq!(p.dns.unwrap().id, None);
        assert_eq!(p.breakout_region.unwrap().id, Some(3));
        assert!(p.service.is_none());
    }

    #[test]
    fn vendor_detail_example_parses() {
        // The detail example from emnify's "Retrieve a service profile" page (shared/seeds/000).
        let p: ServiceProfile = serde_json::from_str(
            r#"{"id":232,"name":"Smart meter","description":"Data + SMS - 1G limit","allowed_3g":true,"allowed_4g":true,
            "allowed_nb_iot":true,"allowed_nb_iot_geo":false,"apply_sms_quota":false,"apply_data_quota":false,"retail":false,
            "sms_p2p_int":true,"sms_p2p_ext":true,"nipdp":false,"used_count":12,
            "api_callback":{"id":38,"url":"https://www.customers-server.com","created":"2019-03-18T16:11:07.000Z","purpose":"Customer's Webserver"},
            "api_secret":{"id":38,"purpose":"K3"},"esme_interface_type":{"description":"Console","id":3},
            "service":[{"id":123,"description":"Data","teleservice_code":7678345,"traffic_type":{"id":1,"description":"Data","unit":"GB"},
              "traffic_limit":[{"id":123,"volume":64,"period":{"id":33,"time_units":5,"unit":"Days"}}]}],
            "ip_firewall_rule_set":{"ip_firewall_profiles":[{"id":43,"name":"Default Inbound Block","added":"2026-04-09T11:12:45+00:00"}],"enforce":true}}"#,
        )
        .unwrap();
        let services = p.service.unwrap();
        assert_eq!(services[0].traffic_limit[0].label(), "64 per 5 Days");
        assert_eq!(p.esme_interface_type.unwrap().id, Some(3));
    }

    #[test]
    fn timestamps_in_every_form() {
        let expected = "2022-04-07T12:06:06Z";
        for text in [
            "2022-04-07T12:06:06.000+0000",
            "2022-04-07T12:06:06Z",
            "2022-04-07T12:06:06+00:00",
            "2022-04-07 12:06:06",
        ] {
            assert_eq!(
                parse_time(text)
                    .unwrap()
                    .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                expected,
                "{text}"
            );
        }
        assert!(parse_time("yesterday").is_none());
    }

    #[test]
    fn error_bodies_summarise() {
        let e: ErrorBody = serde_json::from_str(
            r#"{"error_code":1400,"error_token":"InputValidationFailed","message":"Update endpoint validation error","errors":[{"error_code":1401,"error_token":"InvalidReference","message":"Service profile with Id '-1' not found."}]}"#,
        )
        .unwrap();
        assert_eq!(
            e.summary(),
            "InputValidationFailed (1400): Update endpoint validation error; InvalidReference (1401): Service profile with Id '-1' not found."
        );
        let gateway: ErrorBody =
            serde_json::from_str(r#"{"message":"token contains an invalid number of segments"}"#).unwrap();
        assert_eq!(gateway.summary(), "token contains an invalid number of segments");
    }
}

/// `{"id": 1, "description": "Activated"}` status objects of SIMs and endpoints.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct Status {
    #[serde(default, deserialize_with = "lenient_i64")]
    pub id: Option<i64>,
    #[serde(default)]
    pub description: Option<String>,
}

/// `GET /api/v1/sim` item (and detail).
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct Sim {
    #[serde(default, deserialize_with = "lenient_i64")]
    pub id: Option<i64>,
    #[serde(default)]
    pub iccid: Option<String>,
    #[serde(default)]
    pub iccid_with_luhn: Option<String>,
    #[serde(default)]
    pub imsi: Option<String>,
    #[serde(default)]
    pub msisdn: Option<String>,
    #[serde(default)]
    pub status: Option<Status>,
    #[serde(default)]
    pub activation_date: Option<String>,
    /// Flat endpoint summary in list views (`{id, name, ...}`), `{id}` in older docs.
    #[serde(default)]
    pub endpoint: Option<IdRef>,
}

/// `GET /api/v1/endpoint` item (and detail).
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct Endpoint {
    #[serde(default, deserialize_with = "lenient_i64")]
    pub id: Option<i64>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub status: Option<Status>,
    #[serde(default)]
    pub imei: Option<String>,
    #[serde(default)]
    pub service_profile: Option<IdRef>,
    #[serde(default)]
    pub tariff_profile: Option<IdRef>,
    /// Omitted (or null) when the endpoint has no SIM.
    #[serde(default)]
    pub sim: Option<Sim>,
}
