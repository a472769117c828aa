//! Contract for connectivity subscriptions (one SIM each). Observation comes in two forms: an
//! inventory sweep of the whole account through the vendor's list / search endpoints (shared by
//! every subscription on a ProviderConfig, once per resync) and a single read for one SIM (used
//! while a change is pending). Writes are idempotent and report whether the vendor applied them
//! at once or accepted them for later.

use std::collections::HashMap;
use std::fmt;

use async_trait::async_trait;

use super::BackendError;
use crate::crd::{ConnectivitySubscriptionSpec, SubscriptionMode};

/// How a SIM is identified in the spec.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SimIdentity {
    pub imsi: Option<String>,
    pub iccid: Option<String>,
}

impl fmt::Display for SimIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.imsi, &self.iccid) {
            (Some(imsi), Some(iccid)) => write!(f, "IMSI {imsi} / ICCID {iccid}"),
            (Some(imsi), None) => write!(f, "IMSI {imsi}"),
            (None, Some(iccid)) => write!(f, "ICCID {iccid}"),
            (None, None) => f.write_str("a SIM without IMSI or ICCID"),
        }
    }
}

/// One SIM as the vendor reports it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ObservedSubscription {
    pub imsi: Option<String>,
    pub iccid: Option<String>,
    pub msisdn: Option<String>,
    pub imei: Option<String>,
    /// Vendor id of the SIM object, where it has one.
    pub id: Option<String>,
    /// Vendor id of the device / endpoint, where it has one.
    pub endpoint_id: Option<String>,
    /// The vendor's own mode value, for status.
    pub vendor_mode: String,
    /// The vendor state in our words; `None` when it is none of them (e.g. a test or
    /// half-configured state), which never matches a desired mode.
    pub mode: Option<SubscriptionMode>,
    /// Other modes this vendor state also satisfies (a vendor with fewer states than we have
    /// words: BICS's one suspended state is both Paused and Deactivated).
    pub equivalent: Vec<SubscriptionMode>,
    pub service_profile_id: Option<String>,
    pub first_activation_date: Option<String>,
}

impl ObservedSubscription {
    /// Whether the SIM is in `mode` (or a vendor state equivalent to it).
    pub fn satisfies(&self, mode: SubscriptionMode) -> bool {
        self.mode == Some(mode) || self.equivalent.contains(&mode)
    }

    /// Whether this SIM is the one `identity` names (every identifier given must match).
    pub fn matches(&self, identity: &SimIdentity) -> bool {
        let imsi_ok = identity.imsi.as_ref().is_none_or(|i| self.imsi.as_ref() == Some(i));
        let iccid_ok = identity
            .iccid
            .as_ref()
            .is_none_or(|i| iccid_eq(self.iccid.as_deref(), i));
        (identity.imsi.is_some() || identity.iccid.is_some()) && imsi_ok && iccid_ok
    }
}

/// ICCIDs compare with or without the trailing Luhn digit (emnify reports 19 digits in `iccid`
/// and 20 in `iccid_with_luhn`; other vendors use 20).
pub fn iccid_eq(have: Option<&str>, want: &str) -> bool {
    match have {
        None => false,
        Some(have) if have == want => true,
        Some(have) if have.len() + 1 == want.len() => want.starts_with(have),
        Some(have) if want.len() + 1 == have.len() => have.starts_with(want),
        Some(_) => false,
    }
}

/// Every SIM of an account, from one sweep.
#[derive(Debug, Default)]
pub struct Inventory {
    subscriptions: Vec<ObservedSubscription>,
    by_imsi: HashMap<String, usize>,
    by_iccid: HashMap<String, usize>,
    /// Vendor requests the sweep took.
    pub requests: u64,
}

impl Inventory {
    pub fn new(subscriptions: Vec<ObservedSubscription>, requests: u64) -> Self {
        let mut by_imsi = HashMap::with_capacity(subscriptions.len());
        let mut by_iccid = HashMap::with_capacity(subscriptions.len());
        for (i, s) in subscriptions.iter().enumerate() {
            if let Some(imsi) = &s.imsi {
                by_imsi.insert(imsi.clone(), i);
            }
            if let Some(iccid) = &s.iccid {
                // Index by the 19-digit form so 19- and 20-digit ICCIDs find each other.
                by_iccid.insert(iccid.chars().take(19).collect(), i);
            }
        }
        Inventory {
            subscriptions,
            by_imsi,
            by_iccid,
            requests,
        }
    }

    pub fn len(&self) -> usize {
        self.subscriptions.len()
    }

    pub fn iter(&self) -> impl Iterator<Item = &ObservedSubscription> {
        self.subscriptions.iter()
    }

    pub fn is_empty(&self) -> bool {
        self.subscriptions.is_empty()
    }

    /// Replace (or add) one SIM, e.g. with the state a synchronous write left it in.
    pub fn upsert(&mut self, observed: ObservedSubscription) {
        let identity = SimIdentity {
            imsi: observed.imsi.clone(),
            iccid: observed.iccid.clone(),
        };
        let existing = identity
            .imsi
            .as_ref()
            .and_then(|i| self.by_imsi.get(i))
            .copied()
            .or_else(|| {
                identity
                    .iccid
                    .as_ref()
                    .and_then(|i| self.by_iccid.get(&i.chars().take(19).collect::<String>()))
                    .copied()
            });
        match existing {
            Some(i) => self.subscriptions[i] = observed,
            None => {
                let i = self.subscriptions.len();
                if let Some(imsi) = &observed.imsi {
                    self.by_imsi.insert(imsi.clone(), i);
                }
                if let Some(iccid) = &observed.iccid {
                    self.by_iccid.insert(iccid.chars().take(19).collect(), i);
                }
                self.subscriptions.push(observed);
            }
        }
    }

    pub fn find(&self, identity: &SimIdentity) -> Option<&ObservedSubscription> {
        let by_imsi = identity.imsi.as_ref().and_then(|i| self.by_imsi.get(i));
        let by_iccid = identity
            .iccid
            .as_ref()
            .and_then(|i| self.by_iccid.get(&i.chars().take(19).collect::<String>()));
        by_imsi
            .or(by_iccid)
            .map(|&i| &self.subscriptions[i])
            .filter(|s| s.matches(identity))
    }
}

/// What the spec asks for one SIM.
#[derive(Debug, Clone)]
pub struct DesiredSubscription<'a> {
    /// Name of the Kubernetes object (names an endpoint the operator creates).
    pub name: String,
    pub identity: SimIdentity,
    pub mode: Option<SubscriptionMode>,
    /// Resolved vendor id of `spec.serviceProfileRef`.
    pub service_profile_id: Option<String>,
    pub spec: &'a ConnectivitySubscriptionSpec,
    /// ProviderConfig default tariff profile (emnify).
    pub default_tariff_profile_id: Option<i64>,
}

/// One change to a SIM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubscriptionChange {
    SetServiceProfile(String),
    SetMode(SubscriptionMode),
}

impl fmt::Display for SubscriptionChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SubscriptionChange::SetServiceProfile(id) => write!(f, "set service profile {id}"),
            SubscriptionChange::SetMode(mode) => write!(f, "set mode {mode}"),
        }
    }
}

/// How the vendor took a write.
#[derive(Debug, Clone, PartialEq)]
pub enum WriteOutcome {
    /// Done; the SIM as it now is (synchronous vendors know it without another read).
    Applied(Box<ObservedSubscription>),
    /// Accepted for asynchronous processing (HTTP 202); a later read shows it.
    Accepted,
}

/// Contract for connectivity subscriptions at a vendor.
#[async_trait]
pub trait SubscriptionBackend: Send + Sync {
    /// Sweep the vendor's list / search endpoints: every SIM of the account. Never mutates.
    async fn inventory(&self) -> Result<Inventory, BackendError>;

    /// Read one SIM. `None` when the vendor has no such SIM. Never mutates.
    async fn observe(&self, identity: &SimIdentity) -> Result<Option<ObservedSubscription>, BackendError>;

    /// Apply changes to the SIM, in order. Idempotent: a change already in place is success.
    async fn update(
        &self,
        desired: &DesiredSubscription<'_>,
        observed: &ObservedSubscription,
        changes: &[SubscriptionChange],
    ) -> Result<WriteOutcome, BackendError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sim(imsi: &str, iccid: &str) -> ObservedSubscription {
        ObservedSubscription {
            imsi: Some(imsi.into()),
            iccid: Some(iccid.into()),
            ..Default::default()
        }
    }

    #[test]
    fn inventory_finds_by_imsi_or_iccid_with_or_without_luhn() {
        let inv = Inventory::new(
            vec![
                sim("295050901900082", "8988303000006738593"),
                sim("295050901900083", "8988303000006738601"),
            ],
            2,
        );
        let by_imsi = SimIdentity {
            imsi: Some("295050901900082".into()),
            iccid: None,
        };
        assert_eq!(
            inv.find(&by_imsi).unwrap().iccid.as_deref(),
            Some("8988303000006738593")
        );
        let with_luhn = SimIdentity {
            imsi: None,
            iccid: Some("89883030000067386017".into()),
        };
        assert_eq!(inv.find(&with_luhn).unwrap().imsi.as_deref(), Some("295050901900083"));
        let mismatch = SimIdentity {
            imsi: Some("295050901900082".into()),
            iccid: Some("8988303000006738601".into()),
        };
        assert!(inv.find(&mismatch).is_none(), "both identifiers must name the same SIM");
        assert!(inv.find(&SimIdentity::default()).is_none());
    }
}
