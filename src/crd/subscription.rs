//! `ConnectivitySubscription`: one SIM's connectivity kept in Git. The desired `mode` (and
//! optionally the service profile) is applied at the vendor; the vendor's own mode value and the
//! SIM's identifiers are written back into status.

use compact_str::CompactString;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::LocalObjectReference;
use super::ManagementPolicy;
use super::conditions::Condition;

/// Annotation that allows `mode: Terminated`: its value must equal the subscription's ICCID or IMSI.
pub const CONFIRM_TERMINATION_ANNOTATION: &str = "connectivity-operator.dev/confirm-termination";

/// The connectivity of one SIM at a connectivity vendor.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "connectivity-operator.dev",
    version = "v1alpha1",
    kind = "ConnectivitySubscription",
    namespaced,
    shortname = "csub",
    category = "connectivity",
    status = "ConnectivitySubscriptionStatus",
    doc = "The connectivity of one SIM (identified by IMSI and/or ICCID): its desired mode and service profile, reconciled by connectivity-operator.",
    printcolumn = r#"{"name":"ICCID","type":"string","jsonPath":".status.iccid"}"#,
    printcolumn = r#"{"name":"Mode","type":"string","jsonPath":".status.mode"}"#,
    printcolumn = r#"{"name":"Desired","type":"string","jsonPath":".spec.mode"}"#,
    printcolumn = r#"{"name":"Profile","type":"string","jsonPath":".spec.serviceProfileRef.name"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "has(self.imsi) || has(self.iccid)", "message": "set spec.imsi or spec.iccid (or both)",
     "fieldPath": ".imsi", "reason": "FieldValueRequired"},
    {"rule": "!has(oldSelf.imsi) || (has(self.imsi) && self.imsi == oldSelf.imsi)", "message": "spec.imsi is immutable",
     "fieldPath": ".imsi"},
    {"rule": "!has(oldSelf.iccid) || (has(self.iccid) && self.iccid == oldSelf.iccid)", "message": "spec.iccid is immutable",
     "fieldPath": ".iccid"}
]))]
pub struct ConnectivitySubscriptionSpec {
    /// The ProviderConfig (vendor account) the SIM belongs to, in the same namespace.
    pub provider_config_ref: LocalObjectReference,
    /// IMSI of the SIM (6 to 15 digits). Immutable once set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9]{6,15}$"), length(max = 15))]
    pub imsi: Option<String>,
    /// ICCID of the SIM (`89` followed by 16 to 18 digits). Immutable once set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^89[0-9]{16,18}$"), length(max = 20))]
    pub iccid: Option<String>,
    /// Desired connectivity mode. Absent: observe only (status shows the vendor's mode, nothing is
    /// changed). `Terminated` is irreversible at every vendor and is only sent when the annotation
    /// `connectivity-operator.dev/confirm-termination` equals this SIM's ICCID or IMSI.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<SubscriptionMode>,
    /// A ServiceProfile in the same namespace whose vendor profile (its `status.id`) this SIM should
    /// use. Absent: not managed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_profile_ref: Option<LocalObjectReference>,
    /// What happens at the vendor when this object is deleted: `Orphan` (default) leaves the SIM as
    /// it is; `Deactivate` sets it to `Deactivated`. Deleting never terminates a SIM.
    #[serde(default)]
    pub deletion_policy: SubscriptionDeletionPolicy,
    /// `Full` (default): apply the spec. `ObserveOnly`: only report. `Paused`: no vendor calls.
    #[serde(default)]
    pub management_policy: ManagementPolicy,
    /// emnify settings, used when the SIM has no endpoint (device) yet and one must be created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub emnify: Option<Box<EmnifySubscription>>,
    /// BICS SIM for Things settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bics_sft: Option<Box<BicsSubscription>>,
}

/// BICS SIM for Things settings of a subscription.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BicsSubscription {
    /// Base plan of the SIM's endpoint (BICS assigns service profiles through plans, so on BICS
    /// this replaces `serviceProfileRef`). Needed when the operator creates an endpoint for a SIM
    /// that has none; when it differs from the endpoint's plan, `ChangePlan` is sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64))]
    pub plan_id: Option<String>,
    /// Roaming profiles of an endpoint the operator creates (CreateEndPoint's mandatory
    /// `roamingProfileId`); default: the ProviderConfig's `spec.bicsSft.defaultRoamingProfileIds`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16), inner(length(min = 1, max = 64)))]
    pub roaming_profile_ids: Vec<String>,
    /// APN group of an endpoint the operator creates; default: the ProviderConfig's
    /// `spec.bicsSft.defaultApnGroupId`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64))]
    pub apn_group_id: Option<String>,
}

/// Connectivity modes, the same words at every vendor (the README has the per-vendor table).
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
pub enum SubscriptionMode {
    /// Can reach the network and is billed.
    Active,
    /// Blocked from the network; resumes at once.
    Paused,
    /// Blocked and (as far as the vendor allows) not billed.
    Deactivated,
    /// Permanently retired. Irreversible.
    Terminated,
}

impl std::fmt::Display for SubscriptionMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SubscriptionMode::Active => "Active",
            SubscriptionMode::Paused => "Paused",
            SubscriptionMode::Deactivated => "Deactivated",
            SubscriptionMode::Terminated => "Terminated",
        })
    }
}

/// What happens at the vendor when the object is deleted.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum SubscriptionDeletionPolicy {
    /// Leave the SIM as it is.
    #[default]
    Orphan,
    /// Set the SIM to `Deactivated`.
    Deactivate,
}

/// emnify settings of a subscription.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EmnifySubscription {
    /// Tariff profile for an endpoint the operator creates for a SIM that has none. Default: the
    /// ProviderConfig's `spec.emnify.defaultTariffProfileId`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tariff_profile_id: Option<i64>,
    /// Name of an endpoint the operator creates. Default: the object's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub endpoint_name: Option<String>,
}

// Every cached object holds one, so at fleet scale its bytes count: the short texts (ids, IMSI,
// ICCID, the vendor's mode) are `CompactString`s, inline up to 24 bytes instead of a heap
// allocation each, and the rarely-set pending change is boxed, as are the spec's vendor sections
// (the schema is a plain string and object either way; crds/ shows no change).
/// Observed state of a ConnectivitySubscription.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConnectivitySubscriptionStatus {
    /// The vendor's own mode value, e.g. `ACTIVE_NO_BILLING` (Telenor) or `Activated/Enabled`
    /// (emnify SIM status / endpoint status).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<CompactString>,
    /// ICCID as the vendor reports it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iccid: Option<CompactString>,
    /// IMSI as the vendor reports it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub imsi: Option<CompactString>,
    /// MSISDN (phone number with country code).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub msisdn: Option<CompactString>,
    /// IMEI of the device, when the vendor reports one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub imei: Option<CompactString>,
    /// Id of the vendor service profile / service policy the SIM uses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_profile_id: Option<CompactString>,
    /// The vendor's id of the SIM object, where it has one (emnify SIM id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<CompactString>,
    /// The vendor's id of the device / endpoint the SIM belongs to, where it has one (emnify).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint_id: Option<CompactString>,
    /// When the operator first saw the SIM terminated. A terminated SIM that the vendor no longer
    /// lists (emnify deletes it) keeps reporting `Terminated` instead of `SimNotFound`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub terminated_at: Option<chrono::DateTime<chrono::Utc>>,
    /// When the SIM was first activated, as the vendor reports it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_activation_date: Option<CompactString>,
    /// A change the vendor accepted but has not applied yet (asynchronous vendors), or whose
    /// outcome is unknown (a write that timed out). The operator observes before it retries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_change: Option<Box<PendingChange>>,
    /// `metadata.generation` last reconciled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`: the SIM is in the desired mode with the desired profile. `Synced`: the last
    /// reconcile succeeded (`False` with reason `Pending` while a vendor change is in flight).
    #[serde(default)]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// When an observation of the SIM last found something new (its state, profile or a
    /// condition changed). A resync that finds everything as it was writes nothing, this
    /// included.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_observed_time: Option<chrono::DateTime<chrono::Utc>>,
}

/// A requested vendor change not yet seen applied.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PendingChange {
    /// Requested mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<SubscriptionMode>,
    /// Requested service profile / policy id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_profile_id: Option<String>,
    /// When the change was sent.
    pub requested_at: chrono::DateTime<chrono::Utc>,
    /// `Accepted` (the vendor answered 202) or `Unknown` (the write timed out, e.g. HTTP 504).
    pub outcome: PendingOutcome,
}

/// How a pending change was answered.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum PendingOutcome {
    /// Accepted for asynchronous processing.
    Accepted,
    /// Unknown: the request timed out; it may or may not be applied.
    Unknown,
}

impl ConnectivitySubscription {
    /// Whether a termination the spec asks for is refused already from the spec and status,
    /// before the vendor is asked anything: no confirming annotation (or an empty one), or one
    /// that names neither of the SIM's identifiers when both are known. An annotation that may
    /// name an identifier only the vendor knows yet (an ICCID for a subscription given by IMSI)
    /// is decided once the SIM is observed. A SIM already seen terminated is left to the plan.
    pub fn termination_refused_from_spec(&self) -> bool {
        if self.spec.mode != Some(SubscriptionMode::Terminated)
            || self.spec.management_policy != ManagementPolicy::Full
            || self.status.as_ref().is_some_and(|s| s.terminated_at.is_some())
            || self.termination_confirmed()
        {
            return false;
        }
        let annotated = self
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(CONFIRM_TERMINATION_ANNOTATION))
            .is_some_and(|v| !v.trim().is_empty());
        let status = self.status.as_ref();
        let both_known = (self.spec.imsi.is_some() || status.is_some_and(|s| s.imsi.is_some()))
            && (self.spec.iccid.is_some() || status.is_some_and(|s| s.iccid.is_some()));
        !annotated || both_known
    }

    /// Whether `Terminated` may be sent: the confirmation annotation names this SIM.
    pub fn termination_confirmed(&self) -> bool {
        let Some(value) = self
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(CONFIRM_TERMINATION_ANNOTATION))
        else {
            return false;
        };
        let value = value.trim();
        let status = self.status.as_ref();
        [
            self.spec.iccid.as_deref(),
            self.spec.imsi.as_deref(),
            status.and_then(|s| s.iccid.as_deref()),
            status.and_then(|s| s.imsi.as_deref()),
        ]
        .into_iter()
        .flatten()
        .any(|id| !value.is_empty() && same_identifier(id, value))
    }
}

/// Whether two identifiers name the same SIM: equal, or the same ICCID written with and without
/// its Luhn check digit (19 and 20 digits; vendors and portals show either).
fn same_identifier(a: &str, b: &str) -> bool {
    if a == b {
        return true;
    }
    let (short, long) = if a.len() < b.len() { (a, b) } else { (b, a) };
    short.len() == 19 && long.len() == 20 && long.starts_with(short) && long.bytes().all(|c| c.is_ascii_digit())
}

#[cfg(test)]
mod termination_tests {
    use super::*;

    fn csub(imsi: Option<&str>, iccid: Option<&str>, annotation: Option<&str>) -> ConnectivitySubscription {
        let mut c = ConnectivitySubscription::new(
            "x",
            serde_json::from_value(serde_json::json!({
                "providerConfigRef": {"name": "p"}, "imsi": imsi, "iccid": iccid, "mode": "Terminated"
            }))
            .unwrap(),
        );
        if let Some(a) = annotation {
            c.metadata.annotations = Some([(CONFIRM_TERMINATION_ANNOTATION.to_string(), a.to_string())].into());
        }
        c
    }

    #[test]
    fn an_unconfirmed_termination_is_refused_from_the_spec_when_it_can_be() {
        let (imsi, iccid) = ("295050903090853", "8988303000424721407");
        // No annotation, or an empty one: refused without asking the vendor.
        assert!(csub(Some(imsi), None, None).termination_refused_from_spec());
        assert!(csub(Some(imsi), None, Some(" ")).termination_refused_from_spec());
        // Naming neither identifier while both are known: refused.
        assert!(csub(Some(imsi), Some(iccid), Some("8988303000424721438")).termination_refused_from_spec());
        // Confirmed: not refused; an ICCID with or without its check digit confirms.
        assert!(!csub(Some(imsi), None, Some(imsi)).termination_refused_from_spec());
        assert!(!csub(None, Some(iccid), Some("89883030004247214070")).termination_refused_from_spec());
        assert!(!csub(None, Some("89883030004247214070"), Some(iccid)).termination_refused_from_spec());
        assert!(csub(Some(imsi), Some(iccid), Some("898830300042472140")).termination_refused_from_spec());
        // An ICCID for a subscription given by IMSI only: only the observation can tell.
        assert!(!csub(Some(imsi), None, Some(iccid)).termination_refused_from_spec());
        // Observe-only, or already seen terminated: the plan decides.
        let mut observe = csub(Some(imsi), None, None);
        observe.spec.management_policy = ManagementPolicy::ObserveOnly;
        assert!(!observe.termination_refused_from_spec());
        let mut gone = csub(Some(imsi), None, None);
        gone.status = Some(ConnectivitySubscriptionStatus {
            terminated_at: Some(chrono::Utc::now()),
            ..Default::default()
        });
        assert!(!gone.termination_refused_from_spec());
        // Another mode: nothing to refuse.
        let mut active = csub(Some(imsi), None, None);
        active.spec.mode = Some(SubscriptionMode::Active);
        assert!(!active.termination_refused_from_spec());
    }
}
