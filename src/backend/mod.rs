//! The vendor contract. Every vendor backend implements, per kind, `observe / create / update /
//! delete`; the [managed reconciler](crate::controller::managed) owns finalizers, conditions,
//! events and requeues. Rules every backend follows:
//!
//! - `observe` never mutates. It returns an explicit [`Observation`]: missing, ambiguous (several
//!   vendor objects match a name), or present with the changes still needed to match the spec
//!   (empty when up to date). Computing those changes is a pure function of spec and vendor object.
//! - `create`, `update` and `delete` are idempotent: "already exists" found by a prior observe is
//!   adopted, "not found" on delete is success, and `update` sends only the planned changes.
//! - Errors are [`BackendError`]s whose [`ErrorKind`] tells the pipeline whether to retry.

pub mod bics;
pub mod emnify;
pub mod http;
pub mod ratelimit;
mod secret;
pub mod subscription;
pub mod telenor;

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;

use crate::crd::{BicsServiceProfile, EmnifyServiceProfile, ObservedServiceProfile, ServiceProfileSpec};
use crate::reason::Reason;
pub use secret::SecretString;
pub use subscription::{
    BulkItem, DesiredSubscription, EndpointDefaults, Inventory, InventoryBuilder, ObservedSubscription, SimIdentity,
    SubscriptionBackend, SubscriptionChange, WriteOutcome,
};

/// What kind of failure a vendor call ended in; decides retry and the condition reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErrorKind {
    /// The object does not exist at the vendor.
    NotFound,
    /// The vendor refused because of the object's state: in use, already exists, duplicated.
    Conflict,
    /// The request can never succeed as it is (validation, unknown reference): needs a spec change.
    Invalid,
    /// The credentials were rejected (after one re-authentication).
    Unauthorized,
    /// The credentials are valid but may not do this (HTTP 403: emnify's "no access permissions
    /// to the requested resource", a profile of another organisation): re-authenticating cannot
    /// help, a person must grant the right or change the reference.
    Forbidden,
    /// The vendor (or our client-side limiter) asked us to slow down.
    RateLimited { retry_after: Option<Duration> },
    /// Network errors, timeouts, 5xx: retry with backoff.
    Transient,
    /// A write timed out (e.g. HTTP 504): it may or may not have been applied. Observe before
    /// sending it again.
    OutcomeUnknown,
}

impl ErrorKind {
    /// The reason reported for it (condition, Event, metric label).
    pub fn reason(&self) -> Reason {
        match self {
            ErrorKind::NotFound => Reason::NotFound,
            ErrorKind::Conflict => Reason::Conflict,
            ErrorKind::Invalid => Reason::InvalidRequest,
            ErrorKind::Unauthorized => Reason::Unauthorized,
            ErrorKind::Forbidden => Reason::Forbidden,
            ErrorKind::RateLimited { .. } => Reason::RateLimited,
            ErrorKind::Transient => Reason::VendorUnavailable,
            ErrorKind::OutcomeUnknown => Reason::OutcomeUnknown,
        }
    }

    /// Permanent errors wait for a change instead of a quick retry (the reason's policy).
    pub fn is_permanent(&self) -> bool {
        self.reason().is_permanent()
    }
}

/// A failed vendor call: which action failed, how, the vendor's message, and the source error.
#[derive(Debug)]
pub struct BackendError {
    /// The action that failed, lowercase with the object it concerns, e.g.
    /// `create emnify service profile "iot-eu"`.
    pub action: String,
    pub kind: ErrorKind,
    /// The vendor's message (never contains credentials).
    pub message: String,
    pub source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl BackendError {
    pub fn new(action: impl Into<String>, kind: ErrorKind, message: impl Into<String>) -> Self {
        BackendError {
            action: action.into(),
            kind,
            message: message.into(),
            source: None,
        }
    }

    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.source = Some(Box::new(source));
        self
    }

    /// The same failure for another object that one call served (a bulk write answered for
    /// all its items at once); the source is kept as its message.
    pub fn duplicate(&self) -> BackendError {
        let mut message = self.message.clone();
        if let Some(source) = &self.source {
            let source = source.to_string();
            if !message.contains(&source) {
                message = format!("{message} ({source})");
            }
        }
        BackendError::new(self.action.clone(), self.kind.clone(), message)
    }

    pub fn is_not_found(&self) -> bool {
        self.kind == ErrorKind::NotFound
    }
}

impl fmt::Display for BackendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "failed to {}: {}", self.action, self.message)
    }
}

impl std::error::Error for BackendError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.as_deref().map(|e| e as &(dyn std::error::Error + 'static))
    }
}

/// How to find the vendor object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// By the vendor's id (from `status.id` or `spec.externalId`).
    Id(String),
    /// By exact name.
    Name(String),
}

/// What the spec asks for, as the backends see it.
#[derive(Debug, Clone)]
pub struct DesiredServiceProfile<'a> {
    /// Name at the vendor (`spec.name`, else `metadata.name`).
    pub name: String,
    pub spec: &'a ServiceProfileSpec,
    /// `status.writeOnly`: fingerprint of the settings the vendor cannot return, as last sent
    /// (see [`ServiceProfileBackend::write_only`]); `None` when never sent or unknown.
    pub written: Option<String>,
}

/// One change a backend will make to bring the vendor object in line with the spec.
#[derive(Debug, Clone, PartialEq)]
pub struct ProfileChange {
    /// Human-readable description, shown by `plan`, in events and in `status.observed.drift`.
    pub description: String,
    /// The vendor operation.
    pub op: ProfileOp,
}

/// Vendor-specific operation behind a [`ProfileChange`].
#[derive(Debug, Clone, PartialEq)]
pub enum ProfileOp {
    Emnify(emnify::map::Change),
    Bics(bics::map::Change),
}

impl fmt::Display for ProfileChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.description)
    }
}

/// A vendor service profile as observed.
#[derive(Debug, Clone, PartialEq)]
pub struct ObservedProfile {
    pub id: String,
    pub used_count: Option<i64>,
    pub summary: ObservedServiceProfile,
    /// Changes needed to match the spec; empty when up to date.
    pub changes: Vec<ProfileChange>,
}

/// Result of `observe`.
#[derive(Debug, Clone, PartialEq)]
pub enum Observation<T> {
    /// No vendor object matches.
    Missing,
    /// Several vendor objects match the name; the operator will not guess.
    Ambiguous { ids: Vec<String> },
    /// Exactly one vendor object matches.
    Present(T),
}

/// Contract for service profiles at a vendor.
#[async_trait]
pub trait ServiceProfileBackend: Send + Sync {
    /// Read the vendor object (by id or name) and plan the changes the spec needs. Never mutates.
    async fn observe(
        &self,
        desired: &DesiredServiceProfile<'_>,
        lookup: &Lookup,
    ) -> Result<Observation<ObservedProfile>, BackendError>;

    /// Create the vendor object with the spec's settings; returns its id. Sub-resources (services,
    /// limits) are left to `update`, so the id can be recorded before anything else happens.
    async fn create(&self, desired: &DesiredServiceProfile<'_>) -> Result<String, BackendError>;

    /// Apply planned changes, in order.
    async fn update(&self, id: &str, changes: &[ProfileChange]) -> Result<(), BackendError>;

    /// Delete the vendor object. Not found is success; in use is [`ErrorKind::Conflict`].
    async fn delete(&self, id: &str) -> Result<(), BackendError>;

    /// Every profile of the account, each with the settings that describe it as it is (import).
    /// Never mutates.
    async fn list(&self) -> Result<Vec<ListedProfile>, BackendError>;

    /// Fingerprint of the spec's write-only settings: those the vendor accepts but never returns
    /// (BICS's profile `status`). Recorded in `status.writeOnly` after a create or update; when it
    /// differs from the spec's, `observe` plans to send them again. `None`: nothing is write-only.
    fn write_only(&self, _desired: &DesiredServiceProfile<'_>) -> Option<String> {
        None
    }
}

/// A vendor service profile as `import` writes it into a spec.
#[derive(Debug, Clone, PartialEq)]
pub struct ListedProfile {
    /// The vendor's id (`spec.externalId`).
    pub id: String,
    /// The vendor's name (`spec.name`).
    pub name: String,
    /// The settings, such that planning them against this profile gives no change; `Err` says
    /// why the profile cannot be written as a spec (e.g. a service this operator has no word for).
    pub settings: Result<ProfileSettings, String>,
}

/// The vendor settings of a [`ListedProfile`], as `ServiceProfile.spec` holds them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProfileSettings {
    pub description: Option<String>,
    pub emnify: Option<EmnifyServiceProfile>,
    pub bics_sft: Option<BicsServiceProfile>,
    /// Settings that could not be written and are left unmanaged (absent from the spec), each
    /// with the reason.
    pub unmanaged: Vec<String>,
}

/// What a vendor API can and cannot do, as the controllers need to know it: they ask the backend
/// instead of matching on the vendor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capabilities {
    /// The section of `ServiceProfile.spec` this API's profiles take (`None`: no settings).
    pub profile_section: Option<ProfileSection>,
    /// Service profiles cannot be written: the operator only observes them.
    pub read_only_profiles: bool,
    /// How a subscription names what its SIM gets.
    pub subscription_profile: SubscriptionProfile,
    /// The identifier that names a SIM for good at this vendor: the one `import` writes into
    /// `spec` (a second one could change under it, e.g. emnify's multi-IMSI SIMs).
    pub sim_key: SimKey,
}

/// A SIM identifier (see [`Capabilities::sim_key`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SimKey {
    Iccid,
    Imsi,
}

/// A vendor section of `ServiceProfile.spec`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProfileSection {
    /// `spec.emnify` (emnify's REST API, also BICS accounts on it).
    Emnify,
    /// `spec.bicsSft` (BICS's RPC API).
    BicsSft,
}

impl ProfileSection {
    /// The field name, for messages.
    pub fn field(self) -> &'static str {
        match self {
            ProfileSection::Emnify => "emnify",
            ProfileSection::BicsSft => "bicsSft",
        }
    }

    /// Every section a ServiceProfile may carry.
    pub const ALL: [ProfileSection; 2] = [ProfileSection::Emnify, ProfileSection::BicsSft];

    /// Whether `spec` carries this section.
    pub fn present(self, spec: &ServiceProfileSpec) -> bool {
        match self {
            ProfileSection::Emnify => spec.emnify.is_some(),
            ProfileSection::BicsSft => spec.bics_sft.is_some(),
        }
    }
}

/// How a subscription names the profile its SIM gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubscriptionProfile {
    /// `spec.serviceProfileRef`; the vendor reports each SIM's profile.
    ServiceProfileRef,
    /// `spec.bicsSft.planId` (BICS gives SIMs their service profile through plans); no documented
    /// read returns it, so it is compared with the plan the operator last set.
    WriteOnlyPlan,
}

/// Result of checking a vendor account's credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountInfo {
    /// Organisation / workspace name as the vendor reports it, when it does.
    pub account: Option<String>,
}

/// Operations on the account itself.
#[async_trait]
pub trait AccountBackend: Send + Sync {
    /// Authenticate (using a cached token when valid) and report the account.
    async fn verify(&self) -> Result<AccountInfo, BackendError>;

    /// What this vendor API can do.
    fn capabilities(&self) -> Capabilities;
}
