//! ConnectivitySubscription steps for the [managed reconciler](super::managed):
//! resolve (ProviderConfig -> backend; `serviceProfileRef` -> vendor profile id) -> observe (as
//! the account's [read policy](super::inventory::plan_read) says: the shared inventory sweep, or
//! a single read while a change is pending) -> plan (pure [`decide`], with the termination guard)
//! -> act (vendor write; asynchronous vendors leave a pending change) -> delete (`Deactivate` or
//! `Orphan`, never terminate).

use compact_str::CompactString;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::events::EventType;

use super::batch::{Submitted, Timing};
use super::claims::Identifiers;
use super::inventory::{ReadInput, WriteWait};
use super::managed::{self, Cleaned, Facts, Managed, Outcome, Schedule, StepError};
use super::resolve::{Provider, ResolveError};
use super::status::event;
use super::{Context, key_of};
use crate::backend::subscription::list_changes;
use crate::backend::{
    BackendError, DesiredSubscription, ErrorKind, ObservedSubscription, ProfileSection, SimIdentity,
    SubscriptionChange, SubscriptionProfile, WriteOutcome,
};
use crate::crd::conditions::{self, ConditionStatus, SYNCED};
use crate::crd::{
    ConnectivitySubscription, ConnectivitySubscriptionStatus, ManagementPolicy, PendingChange, PendingOutcome,
    ServiceProfile, SubscriptionDeletionPolicy, SubscriptionMode, Vendor,
};
use crate::reason::Reason;

crate::managed_status!(ConnectivitySubscriptionStatus, last_observed_time);

/// A pending change waiting for its account's writes is woken when they are out; it looks again
/// after this at the latest in case the wake was lost.
const WAKE_GUARD: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Resolve(#[from] ResolveError),
    #[error("ServiceProfile {name} (spec.serviceProfileRef) not found")]
    ServiceProfileNotFound { name: String },
    #[error("failed to get ServiceProfile {name}: {source}")]
    GetServiceProfile { name: String, source: kube::Error },
    #[error("ServiceProfile {name} has no vendor id yet; waiting for it to become Ready")]
    ServiceProfileNotReady { name: String },
    #[error("ServiceProfile {name} belongs to ProviderConfig {actual}, not {expected}")]
    ServiceProfileElsewhere {
        name: String,
        actual: String,
        expected: String,
    },
    #[error("{vendor} has no SIM with {identity}")]
    SimNotFound { vendor: Vendor, identity: String },
    #[error(
        "spec.imsi and spec.iccid name two different SIMs at {vendor}: {found}; correct one of them (nothing was sent)"
    )]
    IdentityMismatch { vendor: Vendor, found: String },
    #[error(
        "ConnectivitySubscription {first}, created earlier on ProviderConfig {account}, already manages this SIM ({identity}): delete one of the two or point this one at another SIM (nothing is sent for this one, also not when it is deleted)"
    )]
    DuplicateIdentity {
        first: String,
        account: String,
        identity: String,
    },
    #[error("{0}")]
    InvalidSpec(String),
    #[error(transparent)]
    Vendor(#[from] BackendError),
    #[error(
        "mode Terminated is irreversible: set the annotation connectivity-operator.dev/confirm-termination to this SIM's ICCID or IMSI to allow it; nothing was sent"
    )]
    TerminationNotConfirmed,
    #[error("the SIM is terminated at {vendor}, which is irreversible; it cannot become {desired} again")]
    Terminated { vendor: Vendor, desired: SubscriptionMode },
}

impl StepError for Error {
    fn reason(&self) -> Reason {
        match self {
            Error::Resolve(e) => e.reason(),
            Error::ServiceProfileNotFound { .. } => Reason::ServiceProfileNotFound,
            Error::GetServiceProfile { .. } => Reason::KubernetesApiError,
            Error::ServiceProfileNotReady { .. } => Reason::ServiceProfileNotReady,
            Error::ServiceProfileElsewhere { .. } => Reason::InvalidReference,
            Error::SimNotFound { .. } => Reason::SimNotFound,
            Error::IdentityMismatch { .. } => Reason::IdentityMismatch,
            Error::DuplicateIdentity { .. } => Reason::DuplicateIdentity,
            Error::InvalidSpec(_) => Reason::InvalidSpec,
            Error::Vendor(e) => e.kind.reason(),
            Error::TerminationNotConfirmed => Reason::TerminationNotConfirmed,
            Error::Terminated { .. } => Reason::Terminated,
        }
    }

    fn backend(&self) -> Option<&BackendError> {
        match self {
            Error::Vendor(e) => Some(e),
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

/// What the act step will do: the pure outcome of the plan step.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// The SIM matches the spec (or the spec asks for nothing).
    InSync,
    /// Send these changes.
    Apply(Vec<SubscriptionChange>),
    /// The same changes were already sent and are not applied yet: wait, do not resend.
    AwaitPending(Vec<SubscriptionChange>),
    /// Observe-only: these changes would be needed.
    Report(Vec<SubscriptionChange>),
    /// `Terminated` asked without the confirmation annotation: send nothing.
    TerminationNotConfirmed,
    /// The SIM is terminated and the spec asks for another mode.
    Irreversible(SubscriptionMode),
}

/// Everything the plan step reads: what the spec asks for, what the vendor has, and what is in
/// flight.
#[derive(Clone, Copy)]
pub struct PlanInput<'a> {
    pub mode: Option<SubscriptionMode>,
    /// The vendor id of the referenced profile (BICS: the plan).
    pub service_profile_id: Option<&'a str>,
    pub observed: &'a ObservedSubscription,
    pub pending: Option<&'a PendingChange>,
    pub termination_confirmed: bool,
    pub policy: ManagementPolicy,
    pub now: DateTime<Utc>,
    /// How long a pending change may stay unapplied before it is sent again.
    pub pending_timeout: Duration,
}

/// The plan step. Pure.
pub fn decide(input: &PlanInput<'_>) -> Decision {
    let &PlanInput {
        mode,
        service_profile_id,
        observed,
        pending,
        termination_confirmed,
        policy,
        now,
        pending_timeout,
    } = input;
    let terminated = observed.mode == Some(SubscriptionMode::Terminated);
    let mut changes = Vec::new();
    if let Some(want) = mode
        && !observed.satisfies(want)
    {
        if terminated {
            return Decision::Irreversible(want);
        }
        // The profile first: a vendor may need it to bring the SIM up (emnify creates the endpoint
        // with it). Not for a SIM about to be terminated: a profile there is of no use, and a SIM
        // without an endpoint would get one created only to be deleted (found by the full chaos
        // run: an emnify SIM without endpoint asked for Terminated tried to create one).
        if let Some(profile) = service_profile_id
            && want != SubscriptionMode::Terminated
            && observed.service_profile_id.as_deref() != Some(profile)
        {
            changes.push(SubscriptionChange::SetServiceProfile(profile.to_string()));
        }
        changes.push(SubscriptionChange::SetMode(want));
    } else if let Some(profile) = service_profile_id
        && observed.service_profile_id.as_deref() != Some(profile)
        && !terminated
    {
        changes.push(SubscriptionChange::SetServiceProfile(profile.to_string()));
    }
    if changes.is_empty() {
        return Decision::InSync;
    }
    if policy != ManagementPolicy::Full {
        return Decision::Report(changes);
    }
    if changes.contains(&SubscriptionChange::SetMode(SubscriptionMode::Terminated)) && !termination_confirmed {
        return Decision::TerminationNotConfirmed;
    }
    if let Some(p) = pending {
        let same = changes.iter().all(|c| match c {
            SubscriptionChange::SetMode(m) => p.mode == Some(*m),
            SubscriptionChange::SetServiceProfile(id) => p.service_profile_id.as_deref() == Some(id.as_str()),
        });
        let fresh = (now - p.requested_at).to_std().is_ok_and(|age| age < pending_timeout);
        if same && fresh {
            return Decision::AwaitPending(changes);
        }
    }
    Decision::Apply(changes)
}

/// Whether a SIM a write left behind is in the desired mode, or a vendor state equivalent to it
/// (a BICS SIM de-linked back to inventory is `Terminated` as far as BICS goes: found by the chaos
/// run, where such SIMs stayed `Ready=False` / `Drifted` until the next resync).
fn in_desired_mode(desired: Option<SubscriptionMode>, after: &ObservedSubscription) -> bool {
    desired.is_none_or(|m| after.satisfies(m))
}

fn identity(csub: &ConnectivitySubscription) -> SimIdentity {
    SimIdentity {
        imsi: csub.spec.imsi.clone(),
        iccid: csub.spec.iccid.clone(),
    }
}

fn account_key(csub: &ConnectivitySubscription) -> String {
    format!("{}/{}", managed::namespace(csub), csub.spec.provider_config_ref.name)
}

/// What resolve found: the account, and the vendor id of the profile the SIM should have.
pub struct Resolved {
    pub provider: Arc<Provider>,
    /// The vendor id of the referenced ServiceProfile (BICS: the plan).
    pub profile_id: Option<String>,
}

/// The plan act carries out, with the observation it was made from.
pub struct Planned {
    pub observed: ObservedSubscription,
    pub decision: Decision,
}

impl Managed for ConnectivitySubscription {
    type Status = ConnectivitySubscriptionStatus;
    type Resolved = Resolved;
    type Observed = ObservedSubscription;
    type Plan = Planned;
    type Error = Error;

    crate::managed_accessors!();

    /// While a change is pending the object settles on `Synced=False` / `Pending` and is read
    /// again at the pending poll interval; otherwise as every kind.
    fn schedule(&self, ctx: &Context) -> Schedule {
        let status = self.status.as_ref();
        let synced = status
            .and_then(|s| conditions::find(&s.conditions, SYNCED))
            .map(|c| (c.status, c.reason.as_str()));
        let since = ctx.synced.get(self);
        match status.and_then(|s| s.pending_change.as_ref()) {
            Some(_) => Schedule {
                settled: synced == Some((ConditionStatus::False, Reason::Pending.as_str())),
                since,
                every: ctx.settings.pending_poll_interval,
            },
            None => Schedule {
                settled: synced.is_some_and(|(s, _)| s == ConditionStatus::True),
                since,
                every: ctx.resync_for(self.metadata.annotations.as_ref()),
            },
        }
    }

    /// While a fleet-wide change is still being written, verification reads would only compete
    /// with the writes for the rate limit: a pending change waits until the writes are out.
    fn hold(&self, ctx: &Context) -> Option<Duration> {
        let status = self.status.as_ref()?;
        if status.pending_change.is_none() || status.observed_generation != self.metadata.generation {
            return None;
        }
        let namespace = self.namespace().unwrap_or_default();
        match ctx
            .inventories
            .wait_for_writes(&account_key(self), &namespace, &self.name_any())
        {
            WriteWait::Clear => None,
            // Woken when the writes are out; the requeue only guards against a lost wake.
            WriteWait::Registered => Some(ctx.settings.pending_poll_interval.max(WAKE_GUARD)),
            WriteWait::Poll => Some(ctx.settings.pending_poll_interval),
        }
    }

    /// The account and the vendor id of the referenced ServiceProfile.
    async fn resolve(&self, ctx: &Context, _status: &mut ConnectivitySubscriptionStatus) -> Result<Resolved, Error> {
        // An unconfirmed termination costs no vendor call: refused from the spec alone.
        if self.termination_refused_from_spec() {
            return Err(Error::TerminationNotConfirmed);
        }
        // A SIM an older subscription manages costs no vendor call either.
        self.not_a_duplicate(ctx, Identifiers::of(self)).await?;
        let provider = ctx.provider_for(self).await?;
        let capabilities = provider.capabilities;
        let account = &self.spec.provider_config_ref.name;
        if self.spec.bics_sft.is_some() && capabilities.subscription_profile != SubscriptionProfile::WriteOnlyPlan {
            return Err(Error::InvalidSpec(format!(
                "spec.bicsSft applies to BICS SIM for Things accounts on its RPC API; ProviderConfig {account} is a {} account: remove it",
                provider.vendor
            )));
        }
        if self.spec.emnify.is_some() && capabilities.profile_section != Some(ProfileSection::Emnify) {
            return Err(Error::InvalidSpec(format!(
                "spec.emnify applies to accounts on emnify's API (emnify, BICS with api: rest); ProviderConfig {account} is a {} account: remove it",
                provider.vendor
            )));
        }
        if provider.capabilities.subscription_profile == SubscriptionProfile::WriteOnlyPlan {
            // BICS assigns service profiles through plans: the plan is what a SIM is given.
            if self.spec.service_profile_ref.is_some() {
                return Err(Error::InvalidSpec(
                    "on BICS SIM for Things a SIM gets its service profile through its plan: set spec.bicsSft.planId instead of spec.serviceProfileRef".into(),
                ));
            }
            let profile_id = self.spec.bics_sft.as_ref().and_then(|b| b.plan_id.clone());
            return Ok(Resolved { provider, profile_id });
        }
        let Some(reference) = &self.spec.service_profile_ref else {
            return Ok(Resolved {
                provider,
                profile_id: None,
            });
        };
        let name = &reference.name;
        let profiles: Api<ServiceProfile> = Api::namespaced(ctx.client.clone(), &managed::namespace(self));
        let sp = profiles
            .get_opt(name)
            .await
            .map_err(|source| Error::GetServiceProfile {
                name: name.clone(),
                source,
            })?
            .ok_or_else(|| Error::ServiceProfileNotFound { name: name.clone() })?;
        if sp.spec.provider_config_ref.name != self.spec.provider_config_ref.name {
            return Err(Error::ServiceProfileElsewhere {
                name: name.clone(),
                actual: sp.spec.provider_config_ref.name.clone(),
                expected: self.spec.provider_config_ref.name.clone(),
            });
        }
        let id = sp
            .status
            .and_then(|s| s.id)
            .ok_or_else(|| Error::ServiceProfileNotReady { name: name.clone() })?;
        Ok(Resolved {
            provider,
            profile_id: Some(id),
        })
    }

    /// Read the SIM the way the account's read policy says (shared sweep or single read).
    async fn observe(&self, ctx: &Context, resolved: &Resolved) -> Result<ObservedSubscription, Error> {
        let provider = &resolved.provider;
        let id = identity(self);
        let status = self.status.as_ref();
        let input = ReadInput {
            bulk: ctx.settings.bulk_observation,
            pending: status.is_some_and(|s| s.pending_change.is_some()),
            last_observed: ctx.synced.get(self),
            resync: ctx.resync_for(self.metadata.annotations.as_ref()),
            pending_poll: ctx.settings.pending_poll_interval,
        };
        let found = ctx
            .inventories
            .read(
                &ctx.clock,
                &account_key(self),
                provider.subscriptions.as_ref(),
                &id,
                input,
            )
            .await?;
        let mut found = match found {
            Some(found) => found,
            None => match gone_after_termination(status) {
                Some(gone) => gone,
                None => return Err(self.not_found(ctx, provider, &id, input).await),
            },
        };
        // The SIM as the vendor reports it: an older subscription may name it by its other identifier.
        self.not_a_duplicate(
            ctx,
            Identifiers {
                imsi: found.imsi.as_deref(),
                iccid: found.iccid.as_deref(),
            },
        )
        .await?;
        if provider.capabilities.subscription_profile == SubscriptionProfile::WriteOnlyPlan {
            found.service_profile_id = recorded_profile(status, &found);
        }
        Ok(found)
    }

    fn plan(facts: Facts<'_, Self>) -> Planned {
        let csub = facts.object;
        let decision = decide(&PlanInput {
            mode: csub.spec.mode,
            service_profile_id: facts.resolved.profile_id.as_deref(),
            observed: &facts.observed,
            pending: csub.status.as_ref().and_then(|s| s.pending_change.as_deref()),
            termination_confirmed: csub.termination_confirmed(),
            policy: csub.spec.management_policy,
            now: facts.now,
            pending_timeout: facts.settings.pending_timeout,
        });
        Planned {
            observed: facts.observed,
            decision,
        }
    }

    async fn act(
        &self,
        ctx: &Context,
        resolved: Resolved,
        planned: Planned,
        status: &mut ConnectivitySubscriptionStatus,
    ) -> Result<Outcome, Error> {
        *status = with_observed(std::mem::take(status), &planned.observed, ctx.clock.now());
        let outcome = self.carry_out(ctx, resolved, planned, status).await?;
        ctx.inventories
            .set_pending(&account_key(self), &key_of(self), status.pending_change.is_some());
        Ok(outcome)
    }

    /// Deleting never terminates: `Orphan` leaves the SIM, `Deactivate` deactivates it.
    async fn delete(&self, ctx: &Context) -> Result<Cleaned, Error> {
        ctx.inventories.set_pending(&account_key(self), &key_of(self), false);
        // A duplicate never touched the SIM: deleting it must not deactivate the SIM its first
        // holder manages.
        let duplicate_of = match self.not_a_duplicate(ctx, Identifiers::of(self)).await {
            Err(Error::DuplicateIdentity { first, .. }) => Some(first),
            _ => None,
        };
        ctx.claims.release(self);
        if let Some(first) = duplicate_of {
            let note = format!("the SIM is managed by ConnectivitySubscription {first}: left as it is");
            return Ok(Some((Reason::Orphaned, note)));
        }
        let object = (managed::namespace(self), self.name_any());
        ctx.inventories.batches.forget(&account_key(self), &object);
        if self.spec.deletion_policy == SubscriptionDeletionPolicy::Orphan
            || self.spec.management_policy != ManagementPolicy::Full
        {
            return Ok(None);
        }
        let provider = ctx.provider_for(self).await?;
        let Some(observed) = provider.subscriptions.observe(&identity(self)).await? else {
            return Ok(None);
        };
        if matches!(
            observed.mode,
            Some(SubscriptionMode::Deactivated | SubscriptionMode::Terminated)
        ) {
            return Ok(None);
        }
        let deactivate = SubscriptionChange::SetMode(SubscriptionMode::Deactivated);
        let desired = DesiredSubscription {
            name: self.name_any(),
            identity: identity(self),
            mode: Some(SubscriptionMode::Deactivated),
            service_profile_id: None,
            spec: &self.spec,
            defaults: provider.endpoint_defaults.clone(),
        };
        provider
            .subscriptions
            .update(&desired, &observed, &[deactivate])
            .await?;
        let note = format!("deactivated the SIM at {}", provider.vendor);
        Ok(Some((Reason::Deactivated, note)))
    }

    fn left_behind(&self) -> String {
        "the SIM".into()
    }
}

impl ConnectivitySubscription {
    /// Refused when an older subscription on the same account manages the SIM these identify.
    async fn not_a_duplicate(&self, ctx: &Context, ids: Identifiers<'_>) -> Result<(), Error> {
        if self.spec.management_policy != ManagementPolicy::Full {
            return Ok(());
        }
        match ctx.claims.first_holder(self, ids).await {
            None => Ok(()),
            Some(first) => Err(Error::DuplicateIdentity {
                first,
                account: self.spec.provider_config_ref.name.clone(),
                identity: identity(self).to_string(),
            }),
        }
    }

    /// Why no SIM has both identifiers: when each names a SIM of its own, say which.
    async fn not_found(&self, ctx: &Context, provider: &Provider, id: &SimIdentity, input: ReadInput) -> Error {
        let not_found = Error::SimNotFound {
            vendor: provider.vendor,
            identity: id.to_string(),
        };
        let (Some(imsi), Some(iccid)) = (&id.imsi, &id.iccid) else {
            return not_found;
        };
        let alone = |imsi: Option<&String>, iccid: Option<&String>| SimIdentity {
            imsi: imsi.cloned(),
            iccid: iccid.cloned(),
        };
        let mut found = Vec::new();
        for (what, partial) in [
            (format!("IMSI {imsi}"), alone(Some(imsi), None)),
            (format!("ICCID {iccid}"), alone(None, Some(iccid))),
        ] {
            let sim = ctx
                .inventories
                .read(
                    &ctx.clock,
                    &account_key(self),
                    provider.subscriptions.as_ref(),
                    &partial,
                    input,
                )
                .await;
            match sim {
                Ok(Some(sim)) => found.push(format!(
                    "{what} is the SIM with {}",
                    match (&partial.imsi, &sim.iccid, &sim.imsi) {
                        (Some(_), Some(other), _) => format!("ICCID {other}"),
                        (None, _, Some(other)) => format!("IMSI {other}"),
                        _ => "no other identifier".to_string(),
                    }
                )),
                Ok(None) => found.push(format!("no SIM has {what}")),
                // The question was only to explain: the answer stays "not found".
                Err(_) => return not_found,
            }
        }
        if found.iter().all(|f| f.starts_with("no SIM")) {
            return not_found;
        }
        Error::IdentityMismatch {
            vendor: provider.vendor,
            found: found.join("; "),
        }
    }

    /// The act step proper: the plan's vendor write, or what to report instead.
    async fn carry_out(
        &self,
        ctx: &Context,
        resolved: Resolved,
        Planned { observed, decision }: Planned,
        status: &mut ConnectivitySubscriptionStatus,
    ) -> Result<Outcome, Error> {
        let vendor = resolved.provider.vendor;
        let account = account_key(self);
        let object = (managed::namespace(self), self.name_any());
        // Nothing to write: an answer kept for an earlier bulk item is dropped (and said, when
        // it is what brought the SIM in line).
        let answered = match decision {
            Decision::Apply(_) => None,
            _ => ctx.inventories.batches.forget(&account, &object),
        };
        let changes = match decision {
            Decision::Apply(changes) => changes,
            Decision::InSync => {
                if let Some((item, Ok(_))) = answered {
                    let note = format!("{vendor}: {} (bulk write)", list_changes(&item.changes));
                    event(ctx, self, EventType::Normal, Reason::Updated, "Update", note).await;
                }
                status.pending_change = None;
                return Ok(match self.spec.mode {
                    Some(_) => Outcome::ready(Reason::Available, describe(&observed)),
                    None => Outcome::ready(Reason::Observed, "observe only: no desired mode"),
                });
            }
            Decision::Report(changes) => {
                let message = format!("observe-only; would {}", list_changes(&changes));
                return Ok(Outcome::not_ready(Reason::Drifted, message));
            }
            Decision::TerminationNotConfirmed => return Err(Error::TerminationNotConfirmed),
            Decision::Irreversible(desired) => return Err(Error::Terminated { vendor, desired }),
            Decision::AwaitPending(changes) => {
                let message = format!("waiting for {vendor} to apply: {}", list_changes(&changes));
                return Ok(Outcome::Pending { message });
            }
        };
        let desired = DesiredSubscription {
            name: self.name_any(),
            identity: identity(self),
            mode: self.spec.mode,
            service_profile_id: resolved.profile_id.clone(),
            spec: &self.spec,
            defaults: resolved.provider.endpoint_defaults.clone(),
        };
        let key = account;
        let requested_at = ctx.clock.now();
        let backend = &resolved.provider.subscriptions;
        let bulk = ctx
            .settings
            .bulk_writes
            .then(|| backend.bulk_item(&observed, &changes))
            .flatten();
        let timing = Timing {
            window: ctx.settings.bulk_write_window,
            max_delay: ctx.settings.bulk_write_max_delay,
        };
        let queued = Outcome::Queued {
            recheck: match ctx.inventories.wakeable() {
                true => WAKE_GUARD.max(timing.max_delay * 2),
                false => timing.window * 2,
            },
        };
        let written = match bulk {
            Some(item) => match ctx.inventories.submit(&key, backend.clone(), object, item, timing) {
                Submitted::Queued => return Ok(queued),
                Submitted::Done(result) => result.map(WriteOutcome::Applied),
            },
            // A write of its own waits for the SIM's bulk item that is out: never two writes at once.
            None if ctx.inventories.batches.in_flight(&key, &object) => return Ok(queued),
            None => {
                ctx.inventories.batches.forget(&key, &object);
                let _writing = ctx.inventories.writing(&key);
                backend.update(&desired, &observed, &changes).await
            }
        };
        let pending = |outcome| pending_change(&changes, requested_at, outcome);
        match written {
            Ok(WriteOutcome::Applied(after)) => {
                ctx.inventories.record(&key, &after).await;
                let note = format!("{vendor}: {}", list_changes(&changes));
                event(ctx, self, EventType::Normal, Reason::Updated, "Update", note).await;
                *status = with_observed(std::mem::take(status), &after, ctx.clock.now());
                status.pending_change = None;
                let message = describe(&after);
                Ok(if in_desired_mode(self.spec.mode, &after) {
                    Outcome::ready(Reason::Available, message)
                } else {
                    Outcome::not_ready(Reason::Drifted, message)
                })
            }
            Ok(WriteOutcome::Accepted) => {
                let message = format!("{vendor} accepted: {}; applied asynchronously", list_changes(&changes));
                let pending = pending(PendingOutcome::Accepted);
                Ok(self
                    .in_flight(
                        ctx,
                        status,
                        pending,
                        EventType::Normal,
                        Reason::ChangeRequested,
                        message,
                    )
                    .await)
            }
            Err(e) if e.kind == ErrorKind::OutcomeUnknown => {
                // It may land at any moment until now: a sweep that began before cannot show it.
                ctx.inventories.mark_stale(&key, &desired.identity, ctx.clock.now());
                let message = format!("{e}; observing before sending it again");
                let pending = pending(PendingOutcome::Unknown);
                Ok(self
                    .in_flight(
                        ctx,
                        status,
                        pending,
                        EventType::Warning,
                        Reason::OutcomeUnknown,
                        message,
                    )
                    .await)
            }
            Err(e) => {
                // Some of the write may have landed: no sweep from before now tells.
                ctx.inventories.mark_stale(&key, &desired.identity, ctx.clock.now());
                Err(e.into())
            }
        }
    }

    /// A write whose effect is not visible yet: recorded as pending, and said in an Event.
    async fn in_flight(
        &self,
        ctx: &Context,
        status: &mut ConnectivitySubscriptionStatus,
        pending: PendingChange,
        type_: EventType,
        reason: Reason,
        message: String,
    ) -> Outcome {
        event(ctx, self, type_, reason, "Update", message.clone()).await;
        status.pending_change = Some(Box::new(pending));
        Outcome::Pending { message }
    }
}

/// `Ready`'s message: the same words for the same SIM state, however it was reached (a
/// resync that finds the state unchanged must not rewrite the message).
fn describe(o: &ObservedSubscription) -> String {
    match o.mode {
        Some(mode) => format!("the SIM is {mode} ({})", o.vendor_mode),
        None => format!("the SIM is {}", o.vendor_mode),
    }
}

/// The change in flight after a write whose effect is not visible yet.
fn pending_change(
    changes: &[SubscriptionChange],
    requested_at: DateTime<Utc>,
    outcome: PendingOutcome,
) -> PendingChange {
    let mut pending = PendingChange {
        mode: None,
        service_profile_id: None,
        requested_at,
        outcome,
    };
    for change in changes {
        match change {
            SubscriptionChange::SetMode(mode) => pending.mode = Some(*mode),
            SubscriptionChange::SetServiceProfile(id) => pending.service_profile_id = Some(id.clone()),
        }
    }
    pending
}

/// A SIM seen terminated that the vendor no longer lists (emnify deletes terminated SIMs): still
/// terminated, as last seen. Pure.
fn gone_after_termination(status: Option<&ConnectivitySubscriptionStatus>) -> Option<ObservedSubscription> {
    let status = status.filter(|s| s.terminated_at.is_some())?;
    Some(ObservedSubscription {
        imsi: owned(&status.imsi),
        iccid: owned(&status.iccid),
        msisdn: owned(&status.msisdn),
        imei: None,
        id: owned(&status.id),
        endpoint_id: None,
        vendor_mode: "terminated (no longer listed by the vendor)".into(),
        mode: Some(SubscriptionMode::Terminated),
        equivalent: Vec::new(),
        service_profile_id: None,
        first_activation_date: owned(&status.first_activation_date),
    })
}

/// Where the vendor never reports a SIM's profile (BICS plans): the one the operator last set, as
/// long as the SIM is still on the endpoint it was set on. Pure.
fn recorded_profile(
    status: Option<&ConnectivitySubscriptionStatus>,
    observed: &ObservedSubscription,
) -> Option<String> {
    let status = status?;
    (status.endpoint_id.is_some() && status.endpoint_id.as_deref() == observed.endpoint_id.as_deref())
        .then(|| owned(&status.service_profile_id))
        .flatten()
}

/// A status text as an owned `String` (status keeps short texts inline, `CompactString`).
fn owned(text: &Option<CompactString>) -> Option<String> {
    text.as_deref().map(str::to_string)
}

/// An observed text as status keeps it.
fn compact(text: &Option<String>) -> Option<CompactString> {
    text.as_deref().map(CompactString::from)
}

fn with_observed(
    mut status: ConnectivitySubscriptionStatus,
    o: &ObservedSubscription,
    now: DateTime<Utc>,
) -> ConnectivitySubscriptionStatus {
    status.mode = Some(o.vendor_mode.as_str().into());
    status.imsi = compact(&o.imsi).or(status.imsi);
    status.iccid = compact(&o.iccid).or(status.iccid);
    status.msisdn = compact(&o.msisdn).or(status.msisdn);
    status.imei = compact(&o.imei).or(status.imei);
    status.service_profile_id = compact(&o.service_profile_id);
    status.id = compact(&o.id).or(status.id);
    status.endpoint_id = compact(&o.endpoint_id);
    status.first_activation_date = compact(&o.first_activation_date).or(status.first_activation_date);
    if o.mode == Some(SubscriptionMode::Terminated) {
        status.terminated_at = status.terminated_at.or(Some(now));
    }
    status
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_termination_sets_no_profile_first() {
        let observed = ObservedSubscription {
            mode: Some(SubscriptionMode::Deactivated),
            service_profile_id: None,
            ..Default::default()
        };
        let decision = decide(&PlanInput {
            mode: Some(SubscriptionMode::Terminated),
            service_profile_id: Some("7"),
            observed: &observed,
            pending: None,
            termination_confirmed: true,
            policy: ManagementPolicy::Full,
            now: chrono::Utc::now(),
            pending_timeout: Duration::from_secs(600),
        });
        assert_eq!(
            decision,
            Decision::Apply(vec![SubscriptionChange::SetMode(SubscriptionMode::Terminated)])
        );
    }

    #[test]
    fn a_write_that_leaves_an_equivalent_state_is_in_the_desired_mode() {
        let delinked = ObservedSubscription {
            mode: None,
            equivalent: vec![SubscriptionMode::Deactivated, SubscriptionMode::Terminated],
            ..Default::default()
        };
        assert!(in_desired_mode(Some(SubscriptionMode::Terminated), &delinked));
        assert!(!in_desired_mode(Some(SubscriptionMode::Active), &delinked));
        assert!(in_desired_mode(None, &delinked));
    }

    use super::*;
    use chrono::TimeZone;

    fn sim(mode: Option<SubscriptionMode>, profile: Option<&str>) -> ObservedSubscription {
        ObservedSubscription {
            imsi: Some("242010000000001".into()),
            iccid: Some("89470100000000000017".into()),
            mode,
            vendor_mode: format!("{mode:?}"),
            service_profile_id: profile.map(str::to_string),
            ..Default::default()
        }
    }

    fn t(secs: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap() + chrono::Duration::seconds(secs)
    }

    const TIMEOUT: Duration = Duration::from_secs(300);
    use SubscriptionMode::*;

    fn d(mode: Option<SubscriptionMode>, profile: Option<&str>, observed: &ObservedSubscription) -> Decision {
        decide(&PlanInput {
            mode,
            service_profile_id: profile,
            observed,
            pending: None,
            termination_confirmed: false,
            policy: ManagementPolicy::Full,
            now: t(0),
            pending_timeout: TIMEOUT,
        })
    }

    #[test]
    fn absent_mode_only_observes() {
        assert_eq!(d(None, None, &sim(Some(Paused), Some("22A8BC76"))), Decision::InSync);
    }

    #[test]
    fn mode_and_profile_changes_profile_first() {
        assert_eq!(
            d(Some(Active), Some("22GLBDAT"), &sim(Some(Paused), Some("22A8BC76"))),
            Decision::Apply(vec![
                SubscriptionChange::SetServiceProfile("22GLBDAT".into()),
                SubscriptionChange::SetMode(Active)
            ])
        );
        assert_eq!(
            d(Some(Active), Some("22GLBDAT"), &sim(Some(Active), Some("22A8BC76"))),
            Decision::Apply(vec![SubscriptionChange::SetServiceProfile("22GLBDAT".into())])
        );
        assert_eq!(
            d(Some(Active), Some("22A8BC76"), &sim(Some(Active), Some("22A8BC76"))),
            Decision::InSync
        );
    }

    #[test]
    fn unknown_vendor_states_never_match() {
        // e.g. Telenor ACTIVE_NO_BILLING or emnify's half-configured pairs
        assert_eq!(
            d(Some(Active), None, &sim(None, None)),
            Decision::Apply(vec![SubscriptionChange::SetMode(Active)])
        );
    }

    #[test]
    fn termination_needs_confirmation() {
        let s = sim(Some(Active), None);
        assert_eq!(d(Some(Terminated), None, &s), Decision::TerminationNotConfirmed);
        assert_eq!(
            decide(&PlanInput {
                mode: Some(Terminated),
                service_profile_id: None,
                observed: &s,
                pending: None,
                termination_confirmed: true,
                policy: ManagementPolicy::Full,
                now: t(0),
                pending_timeout: TIMEOUT
            }),
            Decision::Apply(vec![SubscriptionChange::SetMode(Terminated)])
        );
        assert_eq!(
            d(Some(Terminated), Some("22X"), &s),
            Decision::TerminationNotConfirmed,
            "nothing at all is sent, not even the profile change"
        );
    }

    #[test]
    fn terminated_is_final() {
        assert_eq!(
            d(Some(Active), None, &sim(Some(Terminated), None)),
            Decision::Irreversible(Active)
        );
        assert_eq!(
            d(Some(Terminated), None, &sim(Some(Terminated), None)),
            Decision::InSync
        );
        assert_eq!(
            d(None, Some("22X"), &sim(Some(Terminated), Some("22Y"))),
            Decision::InSync,
            "no profile change on a terminated SIM"
        );
    }

    #[test]
    fn pending_changes_are_not_resent_until_they_time_out() {
        let s = sim(Some(Paused), None);
        let pending = PendingChange {
            mode: Some(Active),
            service_profile_id: None,
            requested_at: t(0),
            outcome: PendingOutcome::Unknown,
        };
        let at = |secs| {
            decide(&PlanInput {
                mode: Some(Active),
                service_profile_id: None,
                observed: &s,
                pending: Some(&pending),
                termination_confirmed: false,
                policy: ManagementPolicy::Full,
                now: t(secs),
                pending_timeout: TIMEOUT,
            })
        };
        assert_eq!(
            at(10),
            Decision::AwaitPending(vec![SubscriptionChange::SetMode(Active)])
        );
        assert_eq!(
            at(301),
            Decision::Apply(vec![SubscriptionChange::SetMode(Active)]),
            "resent after the timeout"
        );
        // A different desired mode than the one pending is sent at once.
        assert_eq!(
            decide(&PlanInput {
                mode: Some(Deactivated),
                service_profile_id: None,
                observed: &s,
                pending: Some(&pending),
                termination_confirmed: false,
                policy: ManagementPolicy::Full,
                now: t(10),
                pending_timeout: TIMEOUT
            }),
            Decision::Apply(vec![SubscriptionChange::SetMode(Deactivated)])
        );
    }

    #[test]
    fn observe_only_reports() {
        assert_eq!(
            decide(&PlanInput {
                mode: Some(Active),
                service_profile_id: None,
                observed: &sim(Some(Paused), None),
                pending: None,
                termination_confirmed: false,
                policy: ManagementPolicy::ObserveOnly,
                now: t(0),
                pending_timeout: TIMEOUT,
            }),
            Decision::Report(vec![SubscriptionChange::SetMode(Active)])
        );
    }
}
