//! ServiceProfile steps for the [managed reconciler](super::managed):
//! resolve (ProviderConfig + Secret -> backend) -> observe (by `status.id`, else
//! `spec.externalId`, else exact name) -> plan (pure [`decide`]) -> act (create / update) ->
//! delete (under the finalizer, per `deletionPolicy`).
//!
//! Crash safety: the vendor id is written to status right after a create, and a profile whose
//! id never reached status is found again by name and adopted, so an interrupted create never
//! produces a second profile.

use std::sync::Arc;

use kube::runtime::events::EventType;

use super::Context;
use super::managed::{self, Cleaned, Facts, Managed, Outcome, StepError, WriteStatusError};
use super::resolve::{Provider, ResolveError};
use super::status::event;
use crate::backend::{
    BackendError, DesiredServiceProfile, ErrorKind, Lookup, Observation, ObservedProfile, ProfileChange,
    ProfileSection, ServiceProfileBackend,
};
use crate::crd::conditions::{self, READY};
use crate::crd::{DeletionPolicy, ManagementPolicy, ServiceProfile, ServiceProfileStatus, Vendor};
use crate::reason::Reason;

crate::managed_status!(ServiceProfileStatus, last_sync_time);

/// Failures of one ServiceProfile step, named for what failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Resolve(#[from] ResolveError),
    #[error("spec.{section} is required: ProviderConfig {provider} is a {vendor} account")]
    VendorSectionMissing {
        section: &'static str,
        vendor: Vendor,
        provider: String,
    },
    #[error("spec.{section} does not apply: ProviderConfig {provider} is a {vendor} account{}", match expected {
        Some(e) => format!(", whose profiles take spec.{e}"),
        None => ", whose profiles are only observed by name".to_string(),
    })]
    VendorSectionForeign {
        section: &'static str,
        expected: Option<&'static str>,
        vendor: Vendor,
        provider: String,
    },
    #[error(transparent)]
    Vendor(#[from] BackendError),
    #[error("{vendor} service profile {id} is still in use, deletion will be retried: {source}")]
    InUse {
        vendor: Vendor,
        id: String,
        source: BackendError,
    },
    #[error("{} {vendor} service profiles are named {name:?} (ids {}); set spec.externalId to choose one", ids.len(), ids.join(", "))]
    Ambiguous {
        vendor: Vendor,
        name: String,
        ids: Vec<String>,
    },
    #[error("spec.externalId {id} does not exist at {vendor}")]
    ExternalIdNotFound { vendor: Vendor, id: String },
    #[error(transparent)]
    WriteStatus(#[from] WriteStatusError),
}

impl StepError for Error {
    fn reason(&self) -> Reason {
        match self {
            Error::Resolve(e) => e.reason(),
            Error::VendorSectionMissing { .. } => Reason::VendorSectionMissing,
            Error::VendorSectionForeign { .. } => Reason::InvalidSpec,
            Error::Vendor(e) => e.kind.reason(),
            Error::InUse { .. } => Reason::InUse,
            Error::Ambiguous { .. } => Reason::Conflict,
            Error::ExternalIdNotFound { .. } => Reason::ExternalIdNotFound,
            Error::WriteStatus(_) => Reason::StatusWriteFailed,
        }
    }

    fn backend(&self) -> Option<&BackendError> {
        match self {
            Error::Vendor(e) | Error::InUse { source: e, .. } => Some(e),
            _ => None,
        }
    }

    fn resolve(&self) -> Option<&ResolveError> {
        match self {
            Error::Resolve(e) => Some(e),
            _ => None,
        }
    }
}

/// Where the observed object was looked up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LookupSource {
    StatusId,
    ExternalId,
    Name,
}

/// What the act step will do: the pure outcome of the plan step.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Nothing at the vendor: create it.
    Create,
    /// The vendor object differs: apply `observed.changes`.
    Update(ObservedProfile),
    /// The vendor object matches the spec.
    UpToDate(ObservedProfile),
    /// Several vendor objects carry the name: refuse to guess.
    Conflict { ids: Vec<String> },
    /// `spec.externalId` names nothing: never create in its place.
    ExternalIdNotFound,
    /// Observe-only and nothing found.
    ReportMissing,
    /// Observe-only and the vendor object differs from the spec.
    ReportDrift(ObservedProfile),
}

impl Decision {
    /// Whether acting on this decision writes at the vendor.
    pub fn changes_vendor(&self) -> bool {
        matches!(self, Decision::Create | Decision::Update(_))
    }
}

/// On vendors whose profiles are read-only (Telenor) the operator only observes, whatever the spec
/// says; `Paused` stays paused. Pure.
pub fn effective_policy(policy: ManagementPolicy, read_only: bool) -> ManagementPolicy {
    match policy {
        ManagementPolicy::Full if read_only => ManagementPolicy::ObserveOnly,
        other => other,
    }
}

/// The plan step: decide from the management policy and the observation. Pure.
pub fn decide(policy: ManagementPolicy, source: LookupSource, observation: Observation<ObservedProfile>) -> Decision {
    let observe_only = policy != ManagementPolicy::Full;
    match observation {
        Observation::Missing if source == LookupSource::ExternalId => Decision::ExternalIdNotFound,
        Observation::Missing if observe_only => Decision::ReportMissing,
        Observation::Missing => Decision::Create,
        Observation::Ambiguous { ids } => Decision::Conflict { ids },
        Observation::Present(o) if o.changes.is_empty() => Decision::UpToDate(o),
        Observation::Present(o) if observe_only => Decision::ReportDrift(o),
        Observation::Present(o) => Decision::Update(o),
    }
}

/// What resolve found: the account, and how this profile is managed there.
pub struct Resolved {
    pub provider: Arc<Provider>,
    /// The policy in effect (read-only profiles are only observed).
    pub policy: ManagementPolicy,
    /// The name the vendor profile carries.
    pub vendor_name: String,
    /// The write-only settings compared against: what was last sent, or under observe-only what
    /// the spec says (observe-only never sends them, and what it cannot read is no drift).
    written: Option<String>,
}

impl Resolved {
    fn desired<'a>(&self, sp: &'a ServiceProfile) -> DesiredServiceProfile<'a> {
        DesiredServiceProfile {
            name: self.vendor_name.clone(),
            spec: &sp.spec,
            written: self.written.clone(),
        }
    }
}

impl Managed for ServiceProfile {
    type Status = ServiceProfileStatus;
    type Resolved = Resolved;
    type Observed = (LookupSource, Observation<ObservedProfile>);
    type Plan = Decision;
    type Error = Error;

    crate::managed_accessors!();

    async fn resolve(&self, ctx: &Context, _status: &mut ServiceProfileStatus) -> Result<Resolved, Error> {
        let provider_name = &self.spec.provider_config_ref.name;
        let provider = ctx.provider_for(self).await?;
        let capabilities = provider.capabilities;
        if let Some(section) = capabilities.profile_section
            && !section.present(&self.spec)
        {
            return Err(Error::VendorSectionMissing {
                section: section.field(),
                vendor: provider.vendor,
                provider: provider_name.clone(),
            });
        }
        // A section of another API would be silently ignored: say so before any vendor call.
        if let Some(foreign) = ProfileSection::ALL
            .into_iter()
            .find(|s| s.present(&self.spec) && Some(*s) != capabilities.profile_section)
        {
            return Err(Error::VendorSectionForeign {
                section: foreign.field(),
                expected: capabilities.profile_section.map(ProfileSection::field),
                vendor: provider.vendor,
                provider: provider_name.clone(),
            });
        }
        let policy = effective_policy(self.spec.management_policy, capabilities.read_only_profiles);
        let mut resolved = Resolved {
            provider,
            policy,
            vendor_name: self.vendor_name(),
            written: self.status.as_ref().and_then(|s| s.write_only.clone()),
        };
        if policy != ManagementPolicy::Full {
            resolved.written = resolved.provider.service_profiles.write_only(&resolved.desired(self));
        }
        Ok(resolved)
    }

    /// By `status.id`, else `spec.externalId`, else name. A `status.id` that vanished at the
    /// vendor falls back to the name (the profile may have been recreated in the portal).
    async fn observe(&self, _ctx: &Context, resolved: &Resolved) -> Result<Self::Observed, Error> {
        let backend = resolved.provider.service_profiles.as_ref();
        let desired = resolved.desired(self);
        let status_id = self.status.as_ref().and_then(|s| s.id.clone());
        if let Some(id) = status_id.clone() {
            let observation = backend.observe(&desired, &Lookup::Id(id)).await?;
            if observation != Observation::Missing {
                return Ok((LookupSource::StatusId, observation));
            }
        }
        // `status.writeOnly` records what was sent to the profile `status.id` names: another
        // profile (adopted, or recreated in the portal) has had nothing sent yet, unless the
        // policy never sends (observe-only: nothing written, nothing to compare).
        let mut other = desired.clone();
        if self.spec.management_policy == ManagementPolicy::Full && status_id.is_some() {
            other.written = None;
        }
        if status_id.is_none()
            && let Some(id) = &self.spec.external_id
        {
            let observation = backend.observe(&other, &Lookup::Id(id.clone())).await?;
            return Ok((LookupSource::ExternalId, observation));
        }
        let observation = backend.observe(&other, &Lookup::Name(other.name.clone())).await?;
        Ok((LookupSource::Name, observation))
    }

    fn plan(facts: Facts<'_, Self>) -> Decision {
        let (source, observation) = facts.observed;
        decide(facts.resolved.policy, source, observation)
    }

    async fn act(
        &self,
        ctx: &Context,
        resolved: Resolved,
        decision: Decision,
        status: &mut ServiceProfileStatus,
    ) -> Result<Outcome, Error> {
        let backend = resolved.provider.service_profiles.as_ref();
        let vendor = resolved.provider.vendor;
        let vendor_name = &resolved.vendor_name;
        let mut desired = resolved.desired(self);
        let known_id = status.id.clone();
        let adopted = |id: &str| known_id.as_deref() != Some(id);
        let (observed, written) = match decision {
            Decision::Create => {
                let id = backend.create(&desired).await?;
                let note = format!("created {vendor} service profile {vendor_name:?} with id {id}");
                event(ctx, self, EventType::Normal, Reason::Created, "Create", note).await;
                // The create carried the write-only settings.
                desired.written = backend.write_only(&desired);
                // Record the id before anything else, so a crash from here on adopts instead of creating again.
                record_id(ctx, self, status, &id, desired.written.clone()).await?;
                let observed = self.update_until_in_sync(ctx, backend, &desired, &id).await?;
                (observed, desired.written)
            }
            Decision::Update(observed) => {
                if adopted(&observed.id) {
                    adopt_event(ctx, self, vendor, &observed.id).await;
                    // Record the adopted id first: if the vendor refuses the changes, status still
                    // says which profile this object owns.
                    record_id(ctx, self, status, &observed.id, None).await?;
                }
                self.apply_changes(ctx, backend, &observed.id, &observed.changes)
                    .await?;
                // The planned changes carried the write-only settings when they differed.
                desired.written = backend.write_only(&desired);
                let observed = present(
                    backend.observe(&desired, &Lookup::Id(observed.id.clone())).await?,
                    &observed.id,
                )?;
                (observed, desired.written)
            }
            Decision::UpToDate(observed) => {
                if adopted(&observed.id) {
                    adopt_event(ctx, self, vendor, &observed.id).await;
                }
                (observed, None)
            }
            Decision::ReportDrift(observed) => (observed, None),
            Decision::ReportMissing => {
                let message = format!("observe-only: no {vendor} service profile named {vendor_name:?}");
                return Ok(Outcome::not_ready(Reason::NotFound, message));
            }
            Decision::Conflict { ids } => {
                return Err(Error::Ambiguous {
                    vendor,
                    name: vendor_name.clone(),
                    ids,
                });
            }
            Decision::ExternalIdNotFound => {
                return Err(Error::ExternalIdNotFound {
                    vendor,
                    id: self.spec.external_id.clone().unwrap_or_default(),
                });
            }
        };
        status.id = Some(observed.id.clone());
        status.write_only = written.or(status.write_only.take());
        status.used_count = observed.used_count;
        status.observed = Some(observed.summary.clone());
        Ok(readiness(&observed))
    }

    async fn delete(&self, ctx: &Context) -> Result<Cleaned, Error> {
        let keep = self.spec.deletion_policy == DeletionPolicy::Orphan
            || self.spec.management_policy != ManagementPolicy::Full;
        let recorded = self.owned_id().map(str::to_string);
        if keep {
            return Ok(recorded.map(|id| (Reason::Orphaned, format!("left vendor service profile {id} in place"))));
        }
        let provider = ctx.provider_for(self).await?;
        if provider.capabilities.read_only_profiles {
            // Observed only (Telenor): never ours to delete.
            return Ok(recorded.map(|id| (Reason::Orphaned, format!("left vendor service profile {id} in place"))));
        }
        let vendor = provider.vendor;
        let id = match recorded {
            Some(id) => id,
            // No id in status: a create may have applied without its answer reaching status (the
            // operator killed or the status write failed in between). The profile is found by
            // name, as a reconcile would adopt it, so that it does not outlive its object.
            None => {
                let desired = DesiredServiceProfile {
                    name: self.vendor_name(),
                    spec: &self.spec,
                    written: None,
                };
                match provider
                    .service_profiles
                    .observe(&desired, &Lookup::Name(desired.name.clone()))
                    .await?
                {
                    Observation::Missing => return Ok(None),
                    Observation::Ambiguous { ids } => {
                        return Err(Error::Ambiguous {
                            vendor,
                            name: desired.name,
                            ids,
                        });
                    }
                    Observation::Present(found) => found.id,
                }
            }
        };
        match provider.service_profiles.delete(&id).await {
            Ok(()) => Ok(Some((
                Reason::Deleted,
                format!("deleted {vendor} service profile {id}"),
            ))),
            Err(source) if source.kind == ErrorKind::Conflict => Err(Error::InUse { vendor, id, source }),
            Err(e) => Err(e.into()),
        }
    }

    fn left_behind(&self) -> String {
        match self.owned_id() {
            Some(id) => format!("vendor service profile {id}"),
            None => "the vendor service profile".into(),
        }
    }
}

impl ServiceProfile {
    /// The vendor profile this object owns: the recorded id, else the one `spec.externalId` names.
    fn owned_id(&self) -> Option<&str> {
        let recorded = self.status.as_ref().and_then(|s| s.id.as_deref());
        recorded.or(self.spec.external_id.as_deref())
    }

    /// After a create: apply what the create body could not carry (services, limits).
    async fn update_until_in_sync(
        &self,
        ctx: &Context,
        backend: &dyn ServiceProfileBackend,
        desired: &DesiredServiceProfile<'_>,
        id: &str,
    ) -> Result<ObservedProfile, Error> {
        let observed = present(backend.observe(desired, &Lookup::Id(id.to_string())).await?, id)?;
        if observed.changes.is_empty() {
            return Ok(observed);
        }
        self.apply_changes(ctx, backend, id, &observed.changes).await?;
        Ok(present(
            backend.observe(desired, &Lookup::Id(id.to_string())).await?,
            id,
        )?)
    }

    async fn apply_changes(
        &self,
        ctx: &Context,
        backend: &dyn ServiceProfileBackend,
        id: &str,
        changes: &[ProfileChange],
    ) -> Result<(), Error> {
        backend.update(id, changes).await?;
        let list: Vec<&str> = changes.iter().map(|c| c.description.as_str()).collect();
        let note = format!("service profile {id}: {}", list.join("; "));
        event(ctx, self, EventType::Normal, Reason::Updated, "Update", note).await;
        Ok(())
    }
}

async fn adopt_event(ctx: &Context, sp: &ServiceProfile, vendor: Vendor, id: &str) {
    let note = format!("adopted existing {vendor} service profile {id}");
    event(ctx, sp, EventType::Normal, Reason::Adopted, "Adopt", note).await;
}

fn present(observation: Observation<ObservedProfile>, id: &str) -> Result<ObservedProfile, BackendError> {
    match observation {
        Observation::Present(o) => Ok(o),
        _ => Err(BackendError::new(
            format!("read back service profile {id}"),
            ErrorKind::Transient,
            "the profile disappeared right after it was written",
        )),
    }
}

/// `Ready` from what the vendor profile is now.
fn readiness(observed: &ObservedProfile) -> Outcome {
    if observed.changes.is_empty() {
        Outcome::ready(Reason::Available, "the vendor profile matches the spec")
    } else {
        let list: Vec<&str> = observed.changes.iter().map(|c| c.description.as_str()).collect();
        Outcome::not_ready(Reason::Drifted, format!("differs from the spec: {}", list.join("; ")))
    }
}

/// Write the vendor id (and what the create sent) at once, with `Ready=False` / `Creating` until
/// the rest of the spec is applied.
async fn record_id(
    ctx: &Context,
    sp: &ServiceProfile,
    status: &mut ServiceProfileStatus,
    id: &str,
    written: Option<String>,
) -> Result<(), Error> {
    status.id = Some(id.to_string());
    status.write_only = written.or(status.write_only.take());
    let creating = managed::condition(
        READY,
        false,
        Reason::Creating,
        "created at the vendor; applying services and limits",
        sp,
    );
    status.conditions = conditions::merge(&status.conditions, vec![creating]);
    Ok(managed::checkpoint(ctx, sp, status).await?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::ProfileOp;
    use crate::backend::emnify::map::Change;

    fn present(changes: Vec<ProfileChange>) -> Observation<ObservedProfile> {
        Observation::Present(ObservedProfile {
            id: "7".into(),
            used_count: Some(0),
            summary: Default::default(),
            changes,
        })
    }

    fn change() -> ProfileChange {
        ProfileChange {
            description: "add service Data (38)".into(),
            op: ProfileOp::Emnify(Change::AddService { service_id: 38 }),
        }
    }

    fn observed(changes: Vec<ProfileChange>) -> ObservedProfile {
        ObservedProfile {
            id: "7".into(),
            used_count: Some(0),
            summary: Default::default(),
            changes,
        }
    }

    #[test]
    fn missing_is_created_only_under_full_management() {
        assert_eq!(
            decide(ManagementPolicy::Full, LookupSource::Name, Observation::Missing),
            Decision::Create
        );
        assert_eq!(
            decide(ManagementPolicy::Full, LookupSource::StatusId, Observation::Missing),
            Decision::Create
        );
        assert_eq!(
            decide(ManagementPolicy::ObserveOnly, LookupSource::Name, Observation::Missing),
            Decision::ReportMissing
        );
        assert!(Decision::Create.changes_vendor());
    }

    #[test]
    fn missing_external_id_is_never_created() {
        for policy in [ManagementPolicy::Full, ManagementPolicy::ObserveOnly] {
            assert_eq!(
                decide(policy, LookupSource::ExternalId, Observation::Missing),
                Decision::ExternalIdNotFound
            );
        }
    }

    #[test]
    fn several_matches_are_a_conflict() {
        let obs = Observation::Ambiguous {
            ids: vec!["1".into(), "2".into()],
        };
        let decision = decide(ManagementPolicy::Full, LookupSource::Name, obs);
        assert_eq!(
            decision,
            Decision::Conflict {
                ids: vec!["1".into(), "2".into()]
            }
        );
        assert!(!decision.changes_vendor());
    }

    #[test]
    fn differences_are_updated_or_reported() {
        assert_eq!(
            decide(ManagementPolicy::Full, LookupSource::StatusId, present(vec![change()])),
            Decision::Update(observed(vec![change()]))
        );
        let drift = decide(
            ManagementPolicy::ObserveOnly,
            LookupSource::StatusId,
            present(vec![change()]),
        );
        assert_eq!(drift, Decision::ReportDrift(observed(vec![change()])));
        assert!(!drift.changes_vendor(), "observe-only never writes");
        assert_eq!(
            decide(ManagementPolicy::Full, LookupSource::Name, present(vec![])),
            Decision::UpToDate(observed(vec![]))
        );
    }

    #[test]
    fn errors_carry_reasons_and_retry_policy() {
        let limited = managed::Error::Step(Error::Vendor(BackendError::new(
            "list emnify services",
            ErrorKind::RateLimited {
                retry_after: Some(std::time::Duration::from_secs(3)),
            },
            "HTTP 429",
        )));
        assert_eq!(limited.reason(), "RateLimited");
        assert_eq!(limited.retry_after(), Some(std::time::Duration::from_secs(3)));
        assert!(!limited.is_permanent());
        let missing = Error::VendorSectionMissing {
            section: "emnify",
            vendor: Vendor::Emnify,
            provider: "acct".into(),
        };
        assert_eq!(missing.reason(), "VendorSectionMissing");
        assert!(missing.reason().is_permanent());
        assert_eq!(
            missing.to_string(),
            "spec.emnify is required: ProviderConfig acct is a emnify account"
        );
        let in_use = Error::InUse {
            vendor: Vendor::Emnify,
            id: "7".into(),
            source: BackendError::new("delete emnify service profile 7", ErrorKind::Conflict, "HTTP 409"),
        };
        assert_eq!(in_use.reason(), "InUse");
    }
}
