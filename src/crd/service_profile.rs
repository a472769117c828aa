//! `ServiceProfile`: a vendor's service profile (emnify "service profile", shown as "service
//! policy" in the portal) kept in Git. The operator creates, adopts, updates and deletes the
//! vendor object and writes its id and `usedCount` back into status.

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::LocalObjectReference;
use super::conditions::Condition;

/// A service profile at a connectivity vendor.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "connectivity-operator.dev",
    version = "v1alpha1",
    kind = "ServiceProfile",
    namespaced,
    shortname = "sp",
    category = "connectivity",
    status = "ServiceProfileStatus",
    doc = "A service profile at a connectivity vendor (allowed radio technologies, SMS and quota switches, services and traffic limits), reconciled by connectivity-operator.",
    printcolumn = r#"{"name":"ID","type":"string","jsonPath":".status.id"}"#,
    printcolumn = r#"{"name":"Used","type":"integer","jsonPath":".status.usedCount"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Synced","type":"string","jsonPath":".status.conditions[?(@.type==\"Synced\")].status"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct ServiceProfileSpec {
    /// The ProviderConfig (vendor account) this profile lives in, in the same namespace.
    pub provider_config_ref: LocalObjectReference,
    /// Name of the profile at the vendor. Defaults to `metadata.name`. The operator finds an
    /// existing profile by this name before it creates one, and adopts it when exactly one matches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 128))]
    pub name: Option<String>,
    /// Free-text description at the vendor. Absent: not managed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Settings for an emnify ProviderConfig. Required when the ProviderConfig's vendor is `emnify`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub emnify: Option<EmnifyServiceProfile>,
    /// Settings for a BICS SIM for Things ProviderConfig. Required when its vendor is `bicsSft`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bics_sft: Option<BicsServiceProfile>,
    /// What happens at the vendor when this object is deleted: `Delete` (default) removes the
    /// vendor profile (retried while endpoints still use it), `Orphan` leaves it.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,
    /// Vendor id of an existing profile to adopt instead of creating one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_id: Option<String>,
    /// `Full` (default): create, update and delete at the vendor. `ObserveOnly`: only read the
    /// vendor object into status and report drift, never write. `Paused`: do nothing at all
    /// (no vendor calls; deletion only removes the finalizer).
    #[serde(default)]
    pub management_policy: ManagementPolicy,
}

/// What happens to the vendor object when the Kubernetes object is deleted.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum DeletionPolicy {
    /// Delete the vendor object.
    #[default]
    Delete,
    /// Leave the vendor object as it is.
    Orphan,
}

/// How much the operator may do at the vendor.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum ManagementPolicy {
    /// Create, update and delete.
    #[default]
    Full,
    /// Read only: observe and report drift.
    ObserveOnly,
    /// No vendor calls at all.
    Paused,
}

/// emnify service profile settings (`/api/v1/service_profile`). Boolean defaults are emnify's.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "!has(self.dataLimits) || self.dataLimits.size() < 2 || (has(self.dataLimits[0].satelliteOnly) && self.dataLimits[0].satelliteOnly) != (has(self.dataLimits[1].satelliteOnly) && self.dataLimits[1].satelliteOnly)",
    "message": "at most one data limit for all radio access types and one with satelliteOnly: true",
    "fieldPath": ".dataLimits",
    "reason": "FieldValueInvalid"
}]))]
pub struct EmnifyServiceProfile {
    /// Allow 3G (`allowed_3g`).
    #[serde(default = "yes", rename = "allowed3g")]
    pub allowed_3g: bool,
    /// Allow 4G/LTE and LTE-M (`allowed_4g`).
    #[serde(default = "yes", rename = "allowed4g")]
    pub allowed_4g: bool,
    /// Allow NB-IoT (`allowed_nb_iot`).
    #[serde(default = "yes")]
    pub allowed_nb_iot: bool,
    /// Allow NB-IoT over satellite networks (`allowed_nb_iot_geo`).
    #[serde(default)]
    pub allowed_nb_iot_geo: bool,
    /// Enforce per-endpoint data quotas (`apply_data_quota`); endpoints without a quota are blocked.
    #[serde(default)]
    pub apply_data_quota: bool,
    /// Enforce per-endpoint SMS quotas (`apply_sms_quota`).
    #[serde(default)]
    pub apply_sms_quota: bool,
    /// Allow SMS between the organisation's own endpoints (`sms_p2p_int`).
    #[serde(default = "yes")]
    pub sms_p2p_int: bool,
    /// Allow SMS to and from the world (`sms_p2p_ext`).
    #[serde(default = "yes")]
    pub sms_p2p_ext: bool,
    /// Network-initiated PDP context (`nipdp`).
    #[serde(default)]
    pub nipdp: bool,
    /// Id of an API callback (`GET /api/v1/api_callback`). Absent: not managed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_callback_id: Option<i64>,
    /// Id of an API secret signing callback requests (`GET /api/v1/api_secret`). Absent: not managed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_secret_id: Option<i64>,
    /// Id of a mobile-originated-call callback. Absent: not managed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub moc_callback_id: Option<i64>,
    /// Id of a breakout region (`GET /api/v1/breakout_region`). Absent: not managed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub breakout_region_id: Option<i64>,
    /// Id of a DNS configuration (`GET /api/v1/dns`); applies to new PDP contexts. Absent: not managed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns_id: Option<i64>,
    /// Id of an ESME interface type (`GET /api/v1/esme_interface_type`). Absent: not managed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub esme_interface_type_id: Option<i64>,
    /// Services on the profile with the traffic limits attached to each. Absent: not managed.
    /// Present (even empty): exactly these services and limits; others are removed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    pub services: Option<Vec<EmnifyServiceSpec>>,
    /// Monthly data limits of the profile (`/api/v1/service_profile/{id}/traffic_limit`), emnify's
    /// cost control for every device on it: one for all radio access types and one for
    /// satellite only. Absent: not managed. Present (even empty): exactly these; a limit that
    /// differs is deleted and added again, as emnify requires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 2))]
    pub data_limits: Option<Vec<EmnifyDataLimit>>,
}

/// A monthly data limit on an emnify service profile (service Data, period calendar month: the
/// only ones emnify supports).
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EmnifyDataLimit {
    /// Data volume per calendar month (UTC), as a Kubernetes quantity of bytes: `500Mi`, `1Gi`,
    /// `2G`, `1048576`. Whole bytes, at least one.
    pub volume: k8s_openapi::apimachinery::pkg::api::resource::Quantity,
    /// Count only traffic over satellite networks (`satellite_only`). Default: all radio access
    /// types.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub satellite_only: Option<bool>,
    /// Percentage of the volume at which emnify sends a warning event (`warning_percent`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100))]
    pub warning_percent: Option<i32>,
}

fn yes() -> bool {
    true
}

impl Default for EmnifyServiceProfile {
    fn default() -> Self {
        EmnifyServiceProfile {
            allowed_3g: true,
            allowed_4g: true,
            allowed_nb_iot: true,
            allowed_nb_iot_geo: false,
            apply_data_quota: false,
            apply_sms_quota: false,
            sms_p2p_int: true,
            sms_p2p_ext: true,
            nipdp: false,
            api_callback_id: None,
            api_secret_id: None,
            moc_callback_id: None,
            breakout_region_id: None,
            dns_id: None,
            esme_interface_type_id: None,
            services: None,
            data_limits: None,
        }
    }
}

/// One service on the profile.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EmnifyServiceSpec {
    /// The service, by id (`38`) or by its description in `GET /api/v1/service` (`Data`,
    /// case-insensitive).
    pub service: IntOrString,
    /// Predefined traffic limits of this service (`GET /api/v1/service/{id}/traffic_limit`) to
    /// attach, each by `id` or by `volume` and `period`. Absent or empty: none.
    // No schema default: inside the atomic `services` list the apiserver would write `[]` into
    // every item, a permanent diff for Argo CD against a manifest that leaves it out.
    #[serde(default)]
    #[schemars(transform = super::no_schema_default, length(max = 16))]
    pub traffic_limits: Vec<EmnifyTrafficLimitRef>,
}

/// A predefined traffic limit, by id or by volume and period.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "has(self.id) || (has(self.volume) && has(self.period))",
    "message": "a traffic limit needs an id, or a volume and a period",
    "fieldPath": ".id",
    "reason": "FieldValueRequired"
}]))]
pub struct EmnifyTrafficLimitRef {
    /// Id of the limit in the catalogue.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<i64>,
    /// Volume of the limit (the service's unit, e.g. MB for data or a count for SMS).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume: Option<i64>,
    /// Period of the limit as `<timeUnits> <unit>`, e.g. `1 Months` or `5 Days`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 32))]
    pub period: Option<String>,
}

/// BICS SIM for Things service profile (`CreateServiceProfile`).
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "!self.services.exists(s, s in ['Data', 'SmsMo', 'SmsMt']) || has(self.accessType)",
    "message": "accessType is required when Data, SmsMo or SmsMt is among the services",
    "fieldPath": ".accessType",
    "reason": "FieldValueRequired"
}]))]
pub struct BicsServiceProfile {
    /// `Base` (default) or `Addon` (`category` 0 / 1). BICS does not let a profile change category.
    #[serde(default)]
    pub category: BicsCategory,
    /// `Active` (default) or `Inactive` (`status` 1 / 0).
    #[serde(default)]
    pub status: BicsProfileStatus,
    /// Services: `Data` (4), `SmsMo` (2), `SmsMt` (3), `NbIot` (5), each at most once.
    #[schemars(length(min = 1, max = 4), extend("x-kubernetes-list-type" = "set"))]
    pub services: Vec<BicsService>,
    /// Radio access: `2G` (02), `2G/3G` (01), `2G/3G/4G` (06), `2G/3G/4G/5G` (10). Required with
    /// Data or SMS. Once the profile is attached to a plan, BICS only allows raising it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_type: Option<BicsAccessType>,
}

/// BICS profile category.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum BicsCategory {
    #[default]
    Base,
    Addon,
}

/// BICS profile status.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum BicsProfileStatus {
    #[default]
    Active,
    Inactive,
}

/// A BICS service.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, JsonSchema)]
pub enum BicsService {
    Data,
    SmsMo,
    SmsMt,
    NbIot,
}

/// BICS radio access types.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum BicsAccessType {
    #[serde(rename = "2G")]
    G2,
    #[serde(rename = "2G/3G")]
    G2G3,
    #[serde(rename = "2G/3G/4G")]
    G2G3G4,
    #[serde(rename = "2G/3G/4G/5G")]
    G2G3G4G5,
}

/// Observed state of a ServiceProfile.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceProfileStatus {
    /// Vendor id of the profile (emnify: numeric id as a string).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Number of endpoints (devices) using the profile, as emnify reports it. BICS SIM for Things
    /// and Telenor IoT Connect report no such count, so it stays empty there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub used_count: Option<i64>,
    /// `metadata.generation` of the spec last reconciled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`: the vendor profile exists and matches the spec. `Synced`: the last reconcile
    /// succeeded; when `False`, its reason and message say what failed.
    #[serde(default)]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// When a sync last found something new (the vendor profile, `usedCount` or a condition
    /// changed). A resync that finds everything as it was writes nothing, this included.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_sync_time: Option<chrono::DateTime<chrono::Utc>>,
    /// Summary of the vendor object as last observed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed: Option<ObservedServiceProfile>,
    /// Settings the vendor accepts but never returns, as last sent (BICS: the profile status,
    /// e.g. `status=1`). The operator cannot read them back, so it sends them again only when
    /// the spec's value differs from this record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256))]
    pub write_only: Option<String>,
}

/// Summary of the vendor's service profile.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ObservedServiceProfile {
    /// Name at the vendor.
    pub name: String,
    /// Description at the vendor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Radio access technologies allowed, e.g. `3G`, `4G`, `NB-IoT`.
    #[serde(default)]
    pub allowed_rats: Vec<String>,
    /// Services on the profile, each as `<description> (<id>)` with its traffic limits.
    #[serde(default)]
    pub services: Vec<String>,
    /// Data limits of the profile (emnify), when the spec manages them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub data_limits: Vec<String>,
    /// Differences between the spec and the vendor object still to be applied (empty when in sync).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub drift: Vec<String>,
}

impl ServiceProfile {
    /// Name the profile has at the vendor.
    pub fn vendor_name(&self) -> String {
        self.spec
            .name
            .clone()
            .or_else(|| self.metadata.name.clone())
            .unwrap_or_default()
    }
}
