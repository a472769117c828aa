//! Telenor IoT Connect wire types and paths. Several paths are inferred from relationship URLs
//! (`shared/vendors/telenor-iot.md` marks them `[INF]`); they all live here so a correction is one
//! edit.

use serde::Deserialize;
use serde_json::Value;

pub const SUBSCRIPTIONS: &str = "/iot-connect/subscriptions/v1/connectivity-subscriptions";
/// "Get profile" (`GET .../profiles/:iccid`), the one lookup by ICCID Telenor documents.
pub const PROFILES: &str = "/iot-connect/subscriptions/v1/profiles";
pub const SEARCH: &str = "/iot-connect/subscription-inventory/v2/search";
pub const SERVICE_POLICIES: &str = "/iot-connect/service-policies/v1/iot-platform";
/// Our documented assumption for the undocumented token endpoint.
pub const DEFAULT_TOKEN_PATH: &str = "/oauth2/token";

/// The path of a relationship URL, always sent to the configured endpoint: a vendor answer never
/// decides where our token goes. `None` for a URL without a path.
pub fn relative_path(url: &str) -> Option<String> {
    let rest = match url.split_once("://") {
        Some((_, after_scheme)) => &after_scheme[after_scheme.find('/')?..],
        None => url,
    };
    let path = rest.split(['?', '#']).next().unwrap_or_default().trim();
    if path.is_empty() || path == "/" || path.contains("..") {
        return None;
    }
    Some(if path.starts_with('/') {
        path.to_string()
    } else {
        format!("/{path}")
    })
}

/// `{"attributes": ..., "relationships": ...}` envelope.
#[derive(Debug, Clone, Deserialize)]
pub struct Resource<A> {
    pub attributes: A,
    #[serde(default)]
    pub relationships: serde_json::Map<String, Value>,
}

impl<A> Resource<A> {
    /// The `url`s of a relationship, to-one (`{url}`) or to-many (`[{url}, ...]`).
    pub fn related_urls(&self, name: &str) -> Vec<String> {
        let url = |v: &Value| v.get("url").and_then(Value::as_str).map(str::to_string);
        match self.relationships.get(name) {
            Some(Value::Array(items)) => items.iter().filter_map(url).collect(),
            Some(v) => url(v).into_iter().collect(),
            None => Vec::new(),
        }
    }

    /// Last path segment of a to-one relationship's `url`.
    pub fn related_id(&self, name: &str) -> Option<String> {
        let url = self.relationships.get(name)?.get("url")?.as_str()?;
        url.trim_end_matches('/').rsplit('/').next().map(str::to_string)
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConnectivitySubscription {
    #[serde(default)]
    pub imsi: Option<String>,
    #[serde(default)]
    pub iccid: Option<String>,
    #[serde(default)]
    pub msisdn: Option<String>,
    #[serde(default)]
    pub mode: Option<String>,
    #[serde(default)]
    pub first_activation_date: Option<String>,
    #[serde(default)]
    pub imei: Option<Imei>,
    /// Search rows carry the policy id as an attribute; GETs carry it as a relationship.
    #[serde(default)]
    pub service_policy_id: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Imei {
    #[serde(default)]
    pub assigned_imei: Option<String>,
    #[serde(default)]
    pub detected_imei: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SearchPage {
    #[serde(default)]
    pub pagination: Pagination,
    #[serde(default)]
    pub items: Vec<SearchItem>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Pagination {
    #[serde(default)]
    pub total_hits: Option<u64>,
    #[serde(default)]
    pub next: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SearchItem {
    #[serde(default)]
    pub connectivity_subscriptions: Vec<ConnectivitySubscription>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServicePolicy {
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default, rename = "type")]
    pub type_: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct ServicePolicyList {
    #[serde(default)]
    pub items: Vec<Resource<ServicePolicy>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct TokenResponse {
    pub access_token: String,
    #[serde(default)]
    pub expires_in: Option<u64>,
}

/// The error body `{name, message, errors[{message, errorCode, path}]}`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ErrorBody {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub message: Option<String>,
    #[serde(default)]
    pub errors: Vec<ErrorDetail>,
    /// OAuth2 token endpoint errors.
    #[serde(default)]
    pub error: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ErrorDetail {
    #[serde(default)]
    pub message: Option<String>,
    #[serde(default)]
    pub error_code: Option<String>,
    #[serde(default)]
    pub path: Option<String>,
}

impl ErrorBody {
    pub fn summary(&self) -> String {
        let mut parts: Vec<String> = Vec::new();
        match (&self.name, &self.message) {
            (Some(n), Some(m)) => parts.push(format!("{n}: {m}")),
            (None, Some(m)) => parts.push(m.clone()),
            (Some(n), None) => parts.push(n.clone()),
            (None, None) => {}
        }
        if let Some(e) = &self.error {
            parts.push(e.clone());
        }
        for d in &self.errors {
            let mut s = d.message.clone().unwrap_or_default();
            if let Some(code) = &d.error_code {
                s = format!("{code}: {s}");
            }
            if let Some(path) = &d.path {
                s = format!("{s} ({path})");
            }
            parts.push(s);
        }
        parts.join("; ")
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn relationship_urls_become_paths_on_our_endpoint() {
        let p = "/iot-connect/subscriptions/v1/connectivity-subscriptions/242016000000001";
        assert_eq!(relative_path(p).as_deref(), Some(p));
        assert_eq!(
            relative_path(&format!("https://evil.example{p}?x=1")).as_deref(),
            Some(p)
        );
        assert_eq!(relative_path(&p[1..]).as_deref(), Some(p));
        assert_eq!(relative_path("https://evil.example"), None);
        assert_eq!(relative_path("/a/../oauth2/token"), None);
        assert_eq!(relative_path(""), None);
    }

    use super::*;

    #[test]
    fn documented_example_parses() {
        let r: Resource<ConnectivitySubscription> = serde_json::from_str(
            r#"{"attributes":{"imsi":"230000000000001","iccid":"89000000000000000001","msisdn":"46000000001","mode":"ACTIVE",
            "firstActivationDate":"2025-02-20","trmExitedAt":"2025-02-20",
            "imei":{"assignedImei":"013200003915965","detectedImei":"013200003915965"}},
            "relationships":{"iotSubscription":{"url":"/iot-connect/subscriptions/v1/iot-subscriptions/9746U5LX6B24P3AZ8X"},
            "servicePolicy":{"url":"/iot-connect/service-policies/v1/iot-platform/22A8BC76"}}}"#,
        )
        .unwrap();
        assert_eq!(r.related_id("servicePolicy").as_deref(), Some("22A8BC76"));
        assert_eq!(
            r.attributes.imei.unwrap().detected_imei.as_deref(),
            Some("013200003915965")
        );
    }

    #[test]
    fn error_body_summarises() {
        let e: ErrorBody = serde_json::from_str(
            r#"{"name":"BadRequest","message":"Invalid input","errors":[{"message":"must match","errorCode":"INVALID_FORMAT","path":"imsi"}]}"#,
        )
        .unwrap();
        assert_eq!(
            e.summary(),
            "BadRequest: Invalid input; INVALID_FORMAT: must match (imsi)"
        );
    }
}
