//! ServiceProfile pipeline. One reconcile reads as:
//! resolve (ProviderConfig + Secret -> backend) -> observe (by `status.id`, else
//! `spec.externalId`, else exact name) -> plan (pure [`decide`]) -> act (create / update, or
//! delete under the finalizer) -> status (server-side apply, never `spec`).
//!
//! Crash safety: the vendor id is written to status right after a create, and a profile whose
//! id never reached status is found again by name and adopted, so an interrupted create never
//! produces a second profile.

use std::sync::Arc;

use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::finalizer::{self, Event as FinalizerEvent};
use kube::{Api, ResourceExt};

use super::resolve::{Provider, ResolveError};
use super::status::{apply_status, event};
use super::{Context, key_of};
use crate::backend::{
    BackendError, DesiredServiceProfile, ErrorKind, Lookup, Observation, ObservedProfile, ProfileChange,
    ServiceProfileBackend,
};
use crate::crd::conditions::{self, Condition, ConditionStatus, READY, SYNCED};
use crate::crd::{DeletionPolicy, FINALIZER, ManagementPolicy, ServiceProfile, ServiceProfileStatus, Vendor};
use crate::reason::Reason;

pub const KIND: &str = "ServiceProfile";

/// Failures of one ServiceProfile reconcile, named for the step that failed.
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
    #[error("failed to write status of ServiceProfile {name}: {source}")]
    WriteStatus { name: String, source: kube::Error },
    #[error("failed to manage the finalizer of ServiceProfile {name}: {source}")]
    Finalizer {
        name: String,
        source: Box<finalizer::Error<Error>>,
    },
}

impl Error {
    /// The error that decided the outcome (unwrapping the finalizer helper's wrapper).
    pub fn root(&self) -> &Error {
        match self {
            Error::Finalizer { source, .. } => match source.as_ref() {
                finalizer::Error::ApplyFailed(e) | finalizer::Error::CleanupFailed(e) => e.root(),
                _ => self,
            },
            _ => self,
        }
    }

    /// PascalCase reason for conditions, events and metrics.
    pub fn reason(&self) -> Reason {
        match self.root() {
            Error::Resolve(e) => e.reason(),
            Error::VendorSectionMissing { .. } => Reason::VendorSectionMissing,
            Error::Vendor(e) => e.kind.reason(),
            Error::InUse { .. } => Reason::InUse,
            Error::Ambiguous { .. } => Reason::Conflict,
            Error::ExternalIdNotFound { .. } => Reason::ExternalIdNotFound,
            Error::WriteStatus { .. } => Reason::StatusWriteFailed,
            Error::Finalizer { .. } => Reason::FinalizerFailed,
        }
    }

    /// `Retry-After` the vendor asked for.
    pub fn retry_after(&self) -> Option<std::time::Duration> {
        match self.root() {
            Error::Vendor(BackendError {
                kind: ErrorKind::RateLimited { retry_after },
                ..
            }) => *retry_after,
            _ => None,
        }
    }

    /// Errors only a change can fix (spec, Secret, vendor state) wait the longest backoff.
    pub fn is_permanent(&self) -> bool {
        self.reason().is_permanent()
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

/// Everything the plan step produced, for `act` or for the offline `plan` command.
pub struct Planned {
    pub provider: Arc<Provider>,
    pub vendor_name: String,
    pub decision: Decision,
}

/// Resolve, observe and plan (no vendor writes). Shared by reconcile and `plan`.
pub async fn plan(sp: &ServiceProfile, ctx: &Context) -> Result<Planned, Error> {
    // resolve
    let namespace = sp.namespace().unwrap_or_else(|| "default".into());
    let provider_name = &sp.spec.provider_config_ref.name;
    let provider = ctx.providers.resolve(&ctx.client, &namespace, provider_name).await?;
    let capabilities = provider.capabilities;
    if let Some(section) = capabilities.profile_section
        && !section.present(&sp.spec)
    {
        return Err(Error::VendorSectionMissing {
            section: section.field(),
            vendor: provider.vendor,
            provider: provider_name.clone(),
        });
    }
    let policy = effective_policy(sp.spec.management_policy, capabilities.read_only_profiles);
    let mut desired = DesiredServiceProfile {
        name: sp.vendor_name(),
        spec: &sp.spec,
        written: sp.status.as_ref().and_then(|s| s.write_only.clone()),
    };
    if policy != ManagementPolicy::Full {
        // Observe-only never sends write-only settings, and what it cannot read is no drift.
        desired.written = provider.service_profiles.write_only(&desired);
    }
    // observe
    let (source, observation) = observe(provider.service_profiles.as_ref(), &desired, sp).await?;
    // plan
    let decision = decide(policy, source, observation);
    Ok(Planned {
        provider,
        vendor_name: desired.name.clone(),
        decision,
    })
}

/// Observe by `status.id`, else `spec.externalId`, else name. A `status.id` that vanished at the
/// vendor falls back to the name (the profile may have been recreated in the portal).
async fn observe(
    backend: &dyn ServiceProfileBackend,
    desired: &DesiredServiceProfile<'_>,
    sp: &ServiceProfile,
) -> Result<(LookupSource, Observation<ObservedProfile>), BackendError> {
    if let Some(id) = sp.status.as_ref().and_then(|s| s.id.clone()) {
        let observation = backend.observe(desired, &Lookup::Id(id)).await?;
        if observation != Observation::Missing {
            return Ok((LookupSource::StatusId, observation));
        }
    }
    // `status.writeOnly` records what was sent to the profile `status.id` names: another
    // profile (adopted, or recreated in the portal) has had nothing sent yet, unless the
    // policy never sends (observe-only: nothing written, nothing to compare).
    let mut other = desired.clone();
    if sp.spec.management_policy == ManagementPolicy::Full && sp.status.as_ref().is_some_and(|s| s.id.is_some()) {
        other.written = None;
    }
    if sp.status.as_ref().and_then(|s| s.id.as_ref()).is_none()
        && let Some(id) = &sp.spec.external_id
    {
        return Ok((
            LookupSource::ExternalId,
            backend.observe(&other, &Lookup::Id(id.clone())).await?,
        ));
    }
    Ok((
        LookupSource::Name,
        backend.observe(&other, &Lookup::Name(other.name.clone())).await?,
    ))
}

/// Reconcile entry point for the controller and the offline runner.
pub async fn reconcile(sp: Arc<ServiceProfile>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = std::time::Instant::now();
    let name = sp.name_any();
    let api: Api<ServiceProfile> =
        Api::namespaced(ctx.client.clone(), &sp.namespace().unwrap_or_else(|| "default".into()));
    let result = finalizer::finalizer(&api, FINALIZER, sp, |ev| async {
        match ev {
            FinalizerEvent::Apply(sp) => apply(&sp, &ctx).await,
            FinalizerEvent::Cleanup(sp) => cleanup(&sp, &ctx).await,
        }
    })
    .await
    .map_err(|source| Error::Finalizer {
        name,
        source: Box::new(source),
    });
    ctx.metrics.reconciled(KIND, started.elapsed());
    result
}

/// Retry policy after a failed reconcile.
pub fn error_policy(sp: Arc<ServiceProfile>, err: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics.reconcile_failed(KIND, err.reason().as_str());
    tracing::warn!(serviceprofile = %sp.name_any(), namespace = sp.namespace().unwrap_or_default(), reason = %err.reason(), error = %err, "reconcile failed");
    Action::requeue(ctx.retry_delay(&key_of(sp.as_ref()), err.retry_after(), err.is_permanent()))
}

/// Outcome of a successful converge, for the status step.
struct Outcome {
    id: Option<String>,
    observed: Option<ObservedProfile>,
    ready: Condition,
    /// The write-only fingerprint sent by this reconcile (`None`: nothing sent).
    written: Option<String>,
}

async fn apply(sp: &ServiceProfile, ctx: &Context) -> Result<Action, Error> {
    let generation = sp.metadata.generation;
    if sp.spec.management_policy == ManagementPolicy::Paused {
        let mut status = sp.status.clone().unwrap_or_default();
        status.observed_generation = generation;
        status.conditions = conditions::merge(
            &status.conditions,
            vec![Condition::new(
                SYNCED,
                ConditionStatus::False,
                Reason::Paused,
                "managementPolicy is Paused: no vendor calls",
                generation,
            )],
        );
        write_status(ctx, sp, &status).await?;
        return Ok(Action::await_change());
    }
    let resync = ctx.resync_for(sp.metadata.annotations.as_ref());
    if let Some(status) = &sp.status
        && let Some(wait) = super::next_sync_in(
            conditions::is_true(&status.conditions, SYNCED),
            status.observed_generation,
            generation,
            status.last_sync_time,
            resync,
            ctx.clock.now(),
        )
    {
        return Ok(Action::requeue(wait));
    }
    match converge(sp, ctx).await {
        Ok(outcome) => {
            ctx.reset_backoff(&key_of(sp));
            let mut status = sp.status.clone().unwrap_or_default();
            status.id = outcome.id.or(status.id);
            status.write_only = outcome.written.or(status.write_only);
            if let Some(observed) = &outcome.observed {
                status.used_count = observed.used_count;
                status.observed = Some(observed.summary.clone());
            }
            status.observed_generation = generation;
            status.last_sync_time = Some(ctx.clock.now());
            status.conditions = conditions::merge(
                &status.conditions,
                vec![
                    outcome.ready,
                    Condition::new(SYNCED, ConditionStatus::True, Reason::ReconcileSuccess, "", generation),
                ],
            );
            write_status(ctx, sp, &status).await?;
            Ok(Action::requeue(resync))
        }
        Err(err) => {
            report_failure(ctx, sp, &err, "Reconcile").await;
            Err(err)
        }
    }
}

/// Resolve, observe, plan, act. Returns what the status step records.
async fn converge(sp: &ServiceProfile, ctx: &Context) -> Result<Outcome, Error> {
    let generation = sp.metadata.generation;
    let Planned {
        provider,
        vendor_name,
        decision,
    } = plan(sp, ctx).await?;
    let backend = provider.service_profiles.as_ref();
    let vendor = provider.vendor;
    let mut desired = DesiredServiceProfile {
        name: vendor_name.clone(),
        spec: &sp.spec,
        written: sp.status.as_ref().and_then(|s| s.write_only.clone()),
    };
    let known_id = sp.status.as_ref().and_then(|s| s.id.clone());
    let adopted = |id: &str| known_id.as_deref() != Some(id);
    let done = |observed: ObservedProfile, written: Option<String>| Outcome {
        id: Some(observed.id.clone()),
        ready: ready_condition(&observed, generation),
        observed: Some(observed),
        written,
    };
    match decision {
        Decision::Create => {
            let id = backend.create(&desired).await?;
            let note = format!("created {vendor} service profile {vendor_name:?} with id {id}");
            event(ctx, sp, EventType::Normal, Reason::Created, "Create", note).await;
            // The create carried the write-only settings.
            desired.written = backend.write_only(&desired);
            // Record the id before anything else, so a crash from here on adopts instead of creating again.
            record_id(ctx, sp, &id, desired.written.as_deref(), generation).await?;
            let written = desired.written.clone();
            Ok(done(
                update_until_in_sync(backend, &desired, &id, ctx, sp).await?,
                written,
            ))
        }
        Decision::Update(observed) => {
            if adopted(&observed.id) {
                adopt_event(ctx, sp, vendor, &observed.id).await;
                // Record the adopted id first: if the vendor refuses the changes, status still
                // says which profile this object owns.
                record_id(ctx, sp, &observed.id, None, generation).await?;
            }
            apply_changes(backend, &observed.id, &observed.changes, ctx, sp).await?;
            // The planned changes carried the write-only settings when they differed.
            desired.written = backend.write_only(&desired);
            let written = desired.written.clone();
            Ok(done(
                present(
                    backend.observe(&desired, &Lookup::Id(observed.id.clone())).await?,
                    &observed.id,
                )?,
                written,
            ))
        }
        Decision::UpToDate(observed) => {
            if adopted(&observed.id) {
                adopt_event(ctx, sp, vendor, &observed.id).await;
            }
            Ok(done(observed, None))
        }
        Decision::Conflict { ids } => Err(Error::Ambiguous {
            vendor,
            name: vendor_name,
            ids,
        }),
        Decision::ExternalIdNotFound => Err(Error::ExternalIdNotFound {
            vendor,
            id: sp.spec.external_id.clone().unwrap_or_default(),
        }),
        Decision::ReportMissing => Ok(Outcome {
            id: None,
            observed: None,
            ready: Condition::new(
                READY,
                ConditionStatus::False,
                Reason::NotFound,
                format!("observe-only: no {vendor} service profile named {vendor_name:?}"),
                generation,
            ),
            written: None,
        }),
        Decision::ReportDrift(observed) => Ok(done(observed, None)),
    }
}

async fn adopt_event(ctx: &Context, sp: &ServiceProfile, vendor: Vendor, id: &str) {
    let note = format!("adopted existing {vendor} service profile {id}");
    event(ctx, sp, EventType::Normal, Reason::Adopted, "Adopt", note).await;
}

/// After a create: apply what the create body could not carry (services, limits).
async fn update_until_in_sync(
    backend: &dyn ServiceProfileBackend,
    desired: &DesiredServiceProfile<'_>,
    id: &str,
    ctx: &Context,
    sp: &ServiceProfile,
) -> Result<ObservedProfile, Error> {
    let observed = present(backend.observe(desired, &Lookup::Id(id.to_string())).await?, id)?;
    if observed.changes.is_empty() {
        return Ok(observed);
    }
    apply_changes(backend, id, &observed.changes, ctx, sp).await?;
    Ok(present(
        backend.observe(desired, &Lookup::Id(id.to_string())).await?,
        id,
    )?)
}

async fn apply_changes(
    backend: &dyn ServiceProfileBackend,
    id: &str,
    changes: &[ProfileChange],
    ctx: &Context,
    sp: &ServiceProfile,
) -> Result<(), Error> {
    backend.update(id, changes).await?;
    let list: Vec<&str> = changes.iter().map(|c| c.description.as_str()).collect();
    event(
        ctx,
        sp,
        EventType::Normal,
        Reason::Updated,
        "Update",
        format!("service profile {id}: {}", list.join("; ")),
    )
    .await;
    Ok(())
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

fn ready_condition(observed: &ObservedProfile, generation: Option<i64>) -> Condition {
    if observed.changes.is_empty() {
        Condition::new(
            READY,
            ConditionStatus::True,
            Reason::Available,
            "the vendor profile matches the spec",
            generation,
        )
    } else {
        let list: Vec<&str> = observed.changes.iter().map(|c| c.description.as_str()).collect();
        Condition::new(
            READY,
            ConditionStatus::False,
            Reason::Drifted,
            format!("differs from the spec: {}", list.join("; ")),
            generation,
        )
    }
}

async fn record_id(
    ctx: &Context,
    sp: &ServiceProfile,
    id: &str,
    written: Option<&str>,
    generation: Option<i64>,
) -> Result<(), Error> {
    let mut status = sp.status.clone().unwrap_or_default();
    status.id = Some(id.to_string());
    if let Some(w) = written {
        status.write_only = Some(w.to_string());
    }
    status.conditions = conditions::merge(
        &status.conditions,
        vec![Condition::new(
            READY,
            ConditionStatus::False,
            Reason::Creating,
            "created at the vendor; applying services and limits",
            generation,
        )],
    );
    write_status(ctx, sp, &status).await
}

async fn write_status(ctx: &Context, sp: &ServiceProfile, status: &ServiceProfileStatus) -> Result<(), Error> {
    apply_status(ctx, sp, status)
        .await
        .map_err(|source| Error::WriteStatus {
            name: sp.name_any(),
            source,
        })
}

/// Record a failure: `Synced=False` with the reason and message, a Warning event. `Ready` turns
/// `False` only for errors that say the vendor object cannot match the spec.
async fn report_failure(ctx: &Context, sp: &ServiceProfile, err: &Error, action: &str) {
    let generation = sp.metadata.generation;
    // Start from the stored status: this reconcile may already have recorded an id in it.
    let api: Api<ServiceProfile> =
        Api::namespaced(ctx.client.clone(), &sp.namespace().unwrap_or_else(|| "default".into()));
    let stored = api.get_opt(&sp.name_any()).await.ok().flatten().and_then(|s| s.status);
    let mut status = stored.or_else(|| sp.status.clone()).unwrap_or_default();
    let message = err.to_string();
    let mut fresh = vec![Condition::new(
        SYNCED,
        ConditionStatus::False,
        err.reason(),
        message.clone(),
        generation,
    )];
    let ready_known = conditions::find(&status.conditions, READY).is_some();
    if !ready_known || err.is_permanent() {
        fresh.push(Condition::new(
            READY,
            ConditionStatus::False,
            err.reason(),
            message.clone(),
            generation,
        ));
    }
    status.conditions = conditions::merge(&status.conditions, fresh);
    status.observed_generation = generation;
    if let Err(e) = write_status(ctx, sp, &status).await {
        tracing::warn!(error = %e, "failed to record the failure in status");
    }
    event(ctx, sp, EventType::Warning, err.reason(), action, message).await;
}

async fn cleanup(sp: &ServiceProfile, ctx: &Context) -> Result<Action, Error> {
    let keep = sp.spec.deletion_policy == DeletionPolicy::Orphan || sp.spec.management_policy != ManagementPolicy::Full;
    let id = sp
        .status
        .as_ref()
        .and_then(|s| s.id.clone())
        .or_else(|| sp.spec.external_id.clone());
    let Some(id) = id else {
        // Nothing was ever recorded: there is no vendor object we own.
        return Ok(Action::await_change());
    };
    if keep {
        event(
            ctx,
            sp,
            EventType::Normal,
            Reason::Orphaned,
            "Delete",
            format!("left vendor service profile {id} in place"),
        )
        .await;
        return Ok(Action::await_change());
    }
    let result = async {
        let namespace = sp.namespace().unwrap_or_else(|| "default".into());
        let provider = ctx
            .providers
            .resolve(&ctx.client, &namespace, &sp.spec.provider_config_ref.name)
            .await?;
        if provider.capabilities.read_only_profiles {
            // Observed only (Telenor): never ours to delete.
            return Ok(None);
        }
        match provider.service_profiles.delete(&id).await {
            Ok(()) => Ok(Some(provider.vendor)),
            Err(e) if e.kind == ErrorKind::Conflict => Err(Error::InUse {
                vendor: provider.vendor,
                id: id.clone(),
                source: e,
            }),
            Err(e) => Err(e.into()),
        }
    }
    .await;
    match result {
        Ok(None) => {
            event(
                ctx,
                sp,
                EventType::Normal,
                Reason::Orphaned,
                "Delete",
                format!("left vendor service profile {id} in place"),
            )
            .await;
            Ok(Action::await_change())
        }
        Ok(Some(vendor)) => {
            ctx.reset_backoff(&key_of(sp));
            event(
                ctx,
                sp,
                EventType::Normal,
                Reason::Deleted,
                "Delete",
                format!("deleted {vendor} service profile {id}"),
            )
            .await;
            Ok(Action::await_change())
        }
        Err(Error::Resolve(e))
            if super::resolve::credentials_gone_for_good(
                &ctx.client,
                &e,
                &sp.namespace().unwrap_or_else(|| "default".into()),
                &sp.spec.provider_config_ref.name,
            )
            .await =>
        {
            event(
                ctx,
                sp,
                EventType::Warning,
                Reason::CredentialsGone,
                "Delete",
                format!("left vendor service profile {id} in place: its account is being deleted and {e}"),
            )
            .await;
            Ok(Action::await_change())
        }
        Err(err) => {
            report_failure(ctx, sp, &err, "Delete").await;
            Err(err)
        }
    }
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
        let limited = Error::Vendor(BackendError::new(
            "list emnify services",
            ErrorKind::RateLimited {
                retry_after: Some(std::time::Duration::from_secs(3)),
            },
            "HTTP 429",
        ));
        assert_eq!(limited.reason(), "RateLimited");
        assert_eq!(limited.retry_after(), Some(std::time::Duration::from_secs(3)));
        assert!(!limited.is_permanent());
        let missing = Error::VendorSectionMissing {
            section: "emnify",
            vendor: Vendor::Emnify,
            provider: "acct".into(),
        };
        assert_eq!(missing.reason(), "VendorSectionMissing");
        assert!(missing.is_permanent());
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
