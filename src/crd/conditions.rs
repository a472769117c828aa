//! `status.conditions` shared by every kind: `Ready` (the vendor object exists and matches the
//! spec) and `Synced` (the last reconcile succeeded), in the `metav1.Condition` shape, each with
//! a PascalCase reason, a human message and the generation it was computed for.
//!
//! Our own type rather than k8s-openapi's `metav1.Condition`: the wire shape is the same (a test
//! reads ours as theirs), but `status` here is an enum, so the CRD schema lists its three values
//! and a misspelt status does not compile, and `reason` comes from [`crate::reason::Reason`].

use chrono::{DateTime, Utc};
use compact_str::CompactString;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Condition type: the vendor object exists and matches the spec.
pub const READY: &str = "Ready";
/// Condition type: the last reconcile of this object succeeded.
pub const SYNCED: &str = "Synced";

/// Status of a condition.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum ConditionStatus {
    True,
    False,
    Unknown,
}

/// One observation of the object's state (the `metav1.Condition` shape).
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// Condition type: `Ready` or `Synced`.
    #[serde(rename = "type")]
    pub type_: CompactString,
    /// `True`, `False` or `Unknown`.
    pub status: ConditionStatus,
    /// Machine-readable PascalCase reason, e.g. `Available`, `InUse`, `SecretNotFound`.
    pub reason: CompactString,
    /// Human-readable explanation.
    #[serde(default)]
    pub message: String,
    /// When the status last changed.
    pub last_transition_time: DateTime<Utc>,
    /// `metadata.generation` the condition was computed for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

impl Condition {
    pub fn new(
        type_: &str,
        status: ConditionStatus,
        reason: crate::reason::Reason,
        message: impl Into<String>,
        generation: Option<i64>,
    ) -> Self {
        Condition {
            type_: type_.into(),
            status,
            reason: reason.as_str().into(),
            message: message.into(),
            last_transition_time: Utc::now(),
            observed_generation: generation,
        }
    }
}

/// Merge freshly computed conditions into the previous ones: a condition whose status did not
/// change keeps its `lastTransitionTime`, so the time says when the state changed, not when the
/// operator last looked.
pub fn merge(previous: &[Condition], fresh: Vec<Condition>) -> Vec<Condition> {
    let mut out: Vec<Condition> = previous
        .iter()
        .filter(|p| !fresh.iter().any(|f| f.type_ == p.type_))
        .cloned()
        .collect();
    for mut cond in fresh {
        if let Some(prev) = previous.iter().find(|p| p.type_ == cond.type_)
            && prev.status == cond.status
        {
            cond.last_transition_time = prev.last_transition_time;
        }
        out.push(cond);
    }
    out.sort_by(|a, b| a.type_.cmp(&b.type_));
    out
}

/// Find a condition by type.
pub fn find<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

/// True when the condition of that type is `True`.
pub fn is_true(conditions: &[Condition], type_: &str) -> bool {
    find(conditions, type_).is_some_and(|c| c.status == ConditionStatus::True)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_as_metav1_condition() {
        let ours = Condition::new(
            READY,
            ConditionStatus::False,
            crate::reason::Reason::InUse,
            "used by 3 SIMs",
            Some(4),
        );
        let wire = serde_json::to_value(&ours).unwrap();
        let theirs: k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition =
            serde_json::from_value(wire.clone()).expect("a metav1.Condition");
        assert_eq!(
            (theirs.type_.as_str(), theirs.status.as_str(), theirs.reason.as_str()),
            ("Ready", "False", "InUse")
        );
        assert_eq!(
            (theirs.message.as_str(), theirs.observed_generation),
            ("used by 3 SIMs", Some(4))
        );
        let back: Condition = serde_json::from_value(serde_json::to_value(&theirs).unwrap()).unwrap();
        assert_eq!(back.status, ConditionStatus::False);
        assert_eq!(
            back.last_transition_time.timestamp(),
            ours.last_transition_time.timestamp()
        );
    }
    use crate::reason::Reason;

    #[test]
    fn unchanged_status_keeps_transition_time() {
        let old_time = DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let mut prev = Condition::new(READY, ConditionStatus::True, Reason::Available, "ok", Some(1));
        prev.last_transition_time = old_time;
        let merged = merge(
            &[prev],
            vec![Condition::new(
                READY,
                ConditionStatus::True,
                Reason::Available,
                "still ok",
                Some(2),
            )],
        );
        assert_eq!(merged[0].last_transition_time, old_time);
        assert_eq!(merged[0].message, "still ok");
        assert_eq!(merged[0].observed_generation, Some(2));
    }

    #[test]
    fn changed_status_moves_transition_time() {
        let old_time = DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let mut prev = Condition::new(SYNCED, ConditionStatus::True, Reason::ReconcileSuccess, "", Some(1));
        prev.last_transition_time = old_time;
        let other = Condition::new(READY, ConditionStatus::True, Reason::Available, "", Some(1));
        let merged = merge(
            &[prev, other],
            vec![Condition::new(
                SYNCED,
                ConditionStatus::False,
                Reason::InUse,
                "in use",
                Some(1),
            )],
        );
        assert_eq!(merged.len(), 2, "conditions not recomputed are kept");
        let synced = find(&merged, SYNCED).unwrap();
        assert_ne!(synced.last_transition_time, old_time);
        assert!(!is_true(&merged, SYNCED));
        assert!(is_true(&merged, READY));
    }
}
