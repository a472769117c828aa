//! `ProviderConfig`: one vendor account (vendor, endpoint URL, credentials Secret, client-side
//! rate limit). Every `ServiceProfile` points at one. Its controller checks that the
//! credentials authenticate and reports the result in the `Ready` condition.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::conditions::Condition;

/// A vendor account the operator manages connectivity in.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "connectivity-operator.dev",
    version = "v1alpha1",
    kind = "ProviderConfig",
    namespaced,
    shortname = "cpc",
    category = "connectivity",
    status = "ProviderConfigStatus",
    doc = "An account at a connectivity vendor: which vendor, its API endpoint, and the Secret holding the credentials.",
    printcolumn = r#"{"name":"Vendor","type":"string","jsonPath":".spec.vendor"}"#,
    printcolumn = r#"{"name":"Endpoint","type":"string","jsonPath":".status.endpoint"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct ProviderConfigSpec {
    /// The vendor whose API this account lives on.
    pub vendor: Vendor,
    /// Base URL of the vendor API, without the `/api/v1` path. When absent the vendor's public
    /// URL is used (emnify: `https://cdn.emnify.net`). Point it at a simulator for demos and CI.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "any_url")]
    #[schemars(url, length(max = 2048), extend("x-kubernetes-validations" = [{
        "rule": "self.matches('^(?i)https?://[^ /?#]+')",
        "message": "must be an http(s) URL, e.g. https://cdn.emnify.net",
        "reason": "FieldValueInvalid"
    }]))]
    pub endpoint: Option<String>,
    /// Secret in the same namespace holding the credentials (formats per vendor in the README).
    pub credentials_secret_ref: CredentialsSecretRef,
    /// Client-side rate limit for all calls made with this account. When absent, a limit below
    /// the vendor's documented one is used (emnify: 5 requests/s, burst 5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimit>,
    /// emnify account settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub emnify: Option<EmnifyProviderSettings>,
    /// Telenor IoT Connect account settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub telenor_iot_connect: Option<TelenorProviderSettings>,
    /// BICS SIM for Things account settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bics_sft: Option<BicsProviderSettings>,
}

/// BICS SIM for Things account settings.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BicsProviderSettings {
    /// Which of BICS's two APIs the account uses: `rpc` (default; `https://sft.bics.com/api/<Verb>`,
    /// the SIM for Things platform's RPC API with result codes) or `rest`
    /// (`https://simforthings.bics.com/api/v1/...`, the same REST API as emnify's: application
    /// token, endpoints, SIMs, service profiles). With `rest`, ServiceProfiles carry `spec.emnify`
    /// and subscriptions use `serviceProfileRef` and `spec.emnify`, as on emnify.
    #[serde(default)]
    pub api: BicsApi,
    /// Tariff profile for endpoints the operator creates on the `rest` API (a subscription's
    /// `spec.emnify.tariffProfileId` overrides it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_tariff_profile_id: Option<i64>,
    /// Act in this child account (BICS "support access" for Resellers): sent as `targetAccountId`
    /// at login.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_account_id: Option<String>,
    /// Roaming profiles for endpoints the operator creates (`roamingProfileId` of CreateEndPoint,
    /// which BICS requires); a subscription's `spec.bicsSft.roamingProfileIds` overrides them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16), inner(length(min = 1, max = 64)))]
    pub default_roaming_profile_ids: Vec<String>,
    /// APN group for endpoints the operator creates (`apnGroupId`, e.g. `PDP_1785`); a
    /// subscription's `spec.bicsSft.apnGroupId` overrides it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64))]
    pub default_apn_group_id: Option<String>,
}

/// BICS's two APIs.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum BicsApi {
    /// `https://sft.bics.com/api/<Verb>` (login with username and password).
    #[default]
    Rpc,
    /// `https://simforthings.bics.com/api/v1/...`, emnify's REST API (application token).
    Rest,
}

/// The API an account is reached through, which decides the backend, the credentials and the
/// vendor section ServiceProfiles and subscriptions carry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum VendorApi {
    /// emnify's REST API (emnify, and BICS accounts with `api: rest`).
    EmnifyRest,
    /// BICS SIM for Things RPC API.
    BicsRpc,
    /// Telenor IoT Connect.
    Telenor,
}

impl ProviderConfigSpec {
    /// The API this account uses.
    pub fn api(&self) -> VendorApi {
        match self.vendor {
            Vendor::Emnify => VendorApi::EmnifyRest,
            Vendor::TelenorIotConnect => VendorApi::Telenor,
            Vendor::BicsSft => match self.bics_sft.as_ref().map(|b| b.api).unwrap_or_default() {
                BicsApi::Rpc => VendorApi::BicsRpc,
                BicsApi::Rest => VendorApi::EmnifyRest,
            },
        }
    }

    /// `spec.endpoint`, else the public URL of the account's API.
    pub fn endpoint_or_default(&self) -> String {
        self.endpoint.clone().unwrap_or_else(|| {
            match (self.vendor, self.api()) {
                (Vendor::BicsSft, VendorApi::EmnifyRest) => "https://simforthings.bics.com",
                (vendor, _) => vendor.default_endpoint(),
            }
            .to_string()
        })
    }
}

/// emnify account settings.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EmnifyProviderSettings {
    /// Tariff profile for endpoints the operator creates for SIMs that have none (a
    /// ConnectivitySubscription's `spec.emnify.tariffProfileId` overrides it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_tariff_profile_id: Option<i64>,
}

/// Telenor IoT Connect account settings.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TelenorProviderSettings {
    /// OAuth2 token endpoint (client-credentials grant). Telenor does not document it; default
    /// `<endpoint>/oauth2/token`, which is where the simulator serves it.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "any_url")]
    #[schemars(url, length(max = 2048), extend("x-kubernetes-validations" = [{
        "rule": "self.matches('^(?i)https?://[^ /?#]+')",
        "message": "must be an http(s) URL, e.g. https://cdn.emnify.net",
        "reason": "FieldValueInvalid"
    }]))]
    pub token_url: Option<String>,
}

/// Vendors the operator can talk to.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum Vendor {
    /// emnify (REST API under `/api/v1`).
    Emnify,
    /// Telenor IoT Connect (`/iot-connect/...`; asynchronous writes).
    TelenorIotConnect,
    /// BICS SIM for Things (RPC-style `/api/<Verb>` with result codes).
    BicsSft,
}

impl Vendor {
    /// The vendor's public API base URL.
    pub fn default_endpoint(self) -> &'static str {
        match self {
            Vendor::Emnify => "https://cdn.emnify.net",
            Vendor::TelenorIotConnect => "https://api.iot.telenor.com",
            Vendor::BicsSft => "https://sft.bics.com",
        }
    }

    /// Name used in metrics, logs and the `spec.<vendor>` section of our kinds.
    pub fn as_str(self) -> &'static str {
        match self {
            Vendor::Emnify => "emnify",
            Vendor::TelenorIotConnect => "telenorIotConnect",
            Vendor::BicsSft => "bicsSft",
        }
    }
}

impl std::fmt::Display for Vendor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where the credentials are.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CredentialsSecretRef {
    /// Name of a Secret in the ProviderConfig's namespace.
    #[schemars(length(min = 1))]
    pub name: String,
    /// Key holding the vendor's single-value credential (emnify: the application token). When
    /// absent the vendor's default keys are read (emnify: `applicationToken`, or `username` and
    /// `password`; Telenor IoT Connect: `clientId` and `clientSecret`; BICS SIM for Things:
    /// `username` and `password`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

/// Token-bucket limit applied by the operator before it sends a request.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
// The schema's `minimum: 0.01` alone lets an integer `0` through (kube-apiserver compares an
// integer with the minimum cut to an integer); the rule compares as numbers.
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "self.requestsPerSecond >= 0.01",
    "message": "requestsPerSecond must be at least 0.01",
    "fieldPath": ".requestsPerSecond",
    "reason": "FieldValueInvalid"
}]))]
pub struct RateLimit {
    /// Sustained requests per second (may be fractional, e.g. `0.5`).
    #[schemars(range(min = 0.01))]
    pub requests_per_second: f64,
    /// Requests that may be sent at once after a quiet period.
    #[serde(default = "default_burst")]
    // `int32`: Kubernetes knows no `uint32` format (schemars' default for u32).
    #[schemars(range(min = 1, max = 100000), extend("format" = "int32"))]
    pub burst: u32,
}

fn default_burst() -> u32 {
    1
}

/// Observed state of a ProviderConfig.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProviderConfigStatus {
    /// `Ready` is `True` once the credentials authenticate at the vendor; otherwise its message
    /// says what is wrong (Secret missing, key missing, rejected by the vendor, unreachable).
    /// `Synced` is the last check's outcome.
    #[serde(default)]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// `metadata.generation` last reconciled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The endpoint URL in use (the spec's, or the vendor default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// Account (organisation / workspace) the credentials belong to, as the vendor reports it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    /// The credentials Secret the operator keeps from deletion (finalizer
    /// `connectivity-operator.dev/credentials-in-use`) while this ProviderConfig exists, so that
    /// deleting everything at once (a namespace) still lets the objects' cleanup reach the vendor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protected_secret: Option<String>,
    /// When a check of the credentials last changed this status (a check that finds everything
    /// as it was writes nothing).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_checked_time: Option<chrono::DateTime<chrono::Utc>>,
}

/// A URL field read whatever JSON it holds. The API server stores a list in these fields
/// (`type: string` with `format: uri` lets one through), and one object that fails to decode
/// fails the whole watch of its kind: every ProviderConfig would stop. A value that is not a
/// string is kept as its JSON text, which the URL check then refuses as `InvalidProviderConfig`
/// on that object alone.
fn any_url<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<String>, D::Error> {
    Ok(
        match <serde_json::Value as serde::Deserialize>::deserialize(deserializer)? {
            serde_json::Value::Null => None,
            serde_json::Value::String(s) => Some(s),
            other => Some(other.to_string()),
        },
    )
}

#[cfg(test)]
mod url_tests {
    use super::*;

    #[test]
    fn a_url_field_holding_a_list_still_decodes_and_fails_the_url_check_alone() {
        let pc: ProviderConfig = serde_json::from_value(serde_json::json!({
            "apiVersion": "connectivity-operator.dev/v1alpha1", "kind": "ProviderConfig",
            "metadata": {"name": "arr"},
            "spec": {"vendor": "telenorIotConnect", "endpoint": ["http://a"], "credentialsSecretRef": {"name": "s"},
                     "telenorIotConnect": {"tokenUrl": {"a": 1}}}
        }))
        .unwrap();
        assert_eq!(pc.spec.endpoint.as_deref(), Some(r#"["http://a"]"#));
        assert_eq!(
            pc.spec.telenor_iot_connect.and_then(|t| t.token_url).as_deref(),
            Some(r#"{"a":1}"#)
        );
        let absent: ProviderConfigSpec = serde_json::from_value(serde_json::json!({
            "vendor": "emnify", "endpoint": null, "credentialsSecretRef": {"name": "s"}
        }))
        .unwrap();
        assert_eq!(absent.endpoint, None);
    }
}
