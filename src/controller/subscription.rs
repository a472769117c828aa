//! ConnectivitySubscription pipeline. One reconcile reads as:
//! resolve (ProviderConfig -> backend; `serviceProfileRef` -> vendor profile id) -> observe (the
//! account's shared inventory sweep; while a change is pending, a single read, or a fresh sweep
//! when many SIMs are pending at once) -> plan (pure [`decide`], with the termination guard) ->
//! act (vendor write; asynchronous vendors leave a pending change) -> status.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::finalizer::{self, Event as FinalizerEvent};

use super::inventory::{Freshness, WriteWait};
use super::resolve::{Provider, ResolveError};
use super::status::{apply_status, event};
use super::{Context, key_of};
use crate::backend::{
    BackendError, DesiredSubscription, ErrorKind, ObservedSubscription, SimIdentity, SubscriptionChange,
    SubscriptionProfile, WriteOutcome,
};
use crate::crd::conditions::{self, Condition, ConditionStatus, READY, SYNCED};
use crate::crd::{
    ConnectivitySubscription, ConnectivitySubscriptionStatus, FINALIZER, ManagementPolicy, PendingChange,
    PendingOutcome, ServiceProfile, SubscriptionDeletionPolicy, SubscriptionMode, Vendor,
};
use crate::reason::Reason;

pub const KIND: &str = "ConnectivitySubscription";

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
    #[error("failed to write status of ConnectivitySubscription {name}: {source}")]
    WriteStatus { name: String, source: kube::Error },
    #[error("failed to manage the finalizer of ConnectivitySubscription {name}: {source}")]
    Finalizer {
        name: String,
        source: Box<finalizer::Error<Error>>,
    },
}

impl Error {
    pub fn root(&self) -> &Error {
        match self {
            Error::Finalizer { source, .. } => match source.as_ref() {
                finalizer::Error::ApplyFailed(e) | finalizer::Error::CleanupFailed(e) => e.root(),
                _ => self,
            },
            _ => self,
        }
    }

    pub fn reason(&self) -> Reason {
        match self.root() {
            Error::Resolve(e) => e.reason(),
            Error::ServiceProfileNotFound { .. } => Reason::ServiceProfileNotFound,
            Error::GetServiceProfile { .. } => Reason::KubernetesApiError,
            Error::ServiceProfileNotReady { .. } => Reason::ServiceProfileNotReady,
            Error::ServiceProfileElsewhere { .. } => Reason::InvalidReference,
            Error::SimNotFound { .. } => Reason::SimNotFound,
            Error::InvalidSpec(_) => Reason::InvalidSpec,
            Error::Vendor(e) => e.kind.reason(),
            Error::TerminationNotConfirmed => Reason::TerminationNotConfirmed,
            Error::Terminated { .. } => Reason::Terminated,
            Error::WriteStatus { .. } => Reason::StatusWriteFailed,
            Error::Finalizer { .. } => Reason::FinalizerFailed,
        }
    }

    pub fn retry_after(&self) -> Option<Duration> {
        match self.root() {
            Error::Vendor(BackendError {
                kind: ErrorKind::RateLimited { retry_after },
                ..
            }) => *retry_after,
            _ => None,
        }
    }

    pub fn is_permanent(&self) -> bool {
        self.reason().is_permanent()
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
        // The profile first: a vendor may need it to bring the SIM up (emnify creates the endpoint with it).
        if let Some(profile) = service_profile_id
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

fn identity(csub: &ConnectivitySubscription) -> SimIdentity {
    SimIdentity {
        imsi: csub.spec.imsi.clone(),
        iccid: csub.spec.iccid.clone(),
    }
}

fn account_key(csub: &ConnectivitySubscription) -> String {
    format!(
        "{}/{}",
        csub.namespace().unwrap_or_else(|| "default".into()),
        csub.spec.provider_config_ref.name
    )
}

fn object_key(csub: &ConnectivitySubscription) -> String {
    format!("{}/{}", csub.namespace().unwrap_or_default(), csub.name_any())
}

pub async fn reconcile(csub: Arc<ConnectivitySubscription>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = std::time::Instant::now();
    let name = csub.name_any();
    let api: Api<ConnectivitySubscription> = Api::namespaced(
        ctx.client.clone(),
        &csub.namespace().unwrap_or_else(|| "default".into()),
    );
    let result = finalizer::finalizer(&api, FINALIZER, csub, |ev| async {
        match ev {
            FinalizerEvent::Apply(c) => apply(&c, &ctx).await,
            FinalizerEvent::Cleanup(c) => cleanup(&c, &ctx).await,
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

pub fn error_policy(csub: Arc<ConnectivitySubscription>, err: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics.reconcile_failed(KIND, err.reason().as_str());
    tracing::warn!(connectivitysubscription = %csub.name_any(), namespace = csub.namespace().unwrap_or_default(), reason = %err.reason(), error = %err, "reconcile failed");
    Action::requeue(ctx.retry_delay(&key_of(csub.as_ref()), err.retry_after(), err.is_permanent()))
}

/// Resolve step: the account and the vendor id of the referenced ServiceProfile.
async fn resolve(csub: &ConnectivitySubscription, ctx: &Context) -> Result<(Arc<Provider>, Option<String>), Error> {
    let namespace = csub.namespace().unwrap_or_else(|| "default".into());
    let provider = ctx
        .providers
        .resolve(&ctx.client, &namespace, &csub.spec.provider_config_ref.name)
        .await?;
    if provider.capabilities.subscription_profile == SubscriptionProfile::WriteOnlyPlan {
        // BICS assigns service profiles through plans: the plan is what a SIM is given.
        if csub.spec.service_profile_ref.is_some() {
            return Err(Error::InvalidSpec(
                "on BICS SIM for Things a SIM gets its service profile through its plan: set spec.bicsSft.planId instead of spec.serviceProfileRef".into(),
            ));
        }
        return Ok((provider, csub.spec.bics_sft.as_ref().and_then(|b| b.plan_id.clone())));
    }
    let Some(reference) = &csub.spec.service_profile_ref else {
        return Ok((provider, None));
    };
    let profiles: Api<ServiceProfile> = Api::namespaced(ctx.client.clone(), &namespace);
    let sp = profiles
        .get_opt(&reference.name)
        .await
        .map_err(|source| Error::GetServiceProfile {
            name: reference.name.clone(),
            source,
        })?
        .ok_or_else(|| Error::ServiceProfileNotFound {
            name: reference.name.clone(),
        })?;
    if sp.spec.provider_config_ref.name != csub.spec.provider_config_ref.name {
        return Err(Error::ServiceProfileElsewhere {
            name: reference.name.clone(),
            actual: sp.spec.provider_config_ref.name.clone(),
            expected: csub.spec.provider_config_ref.name.clone(),
        });
    }
    let id = sp
        .status
        .and_then(|s| s.id)
        .ok_or_else(|| Error::ServiceProfileNotReady {
            name: reference.name.clone(),
        })?;
    Ok((provider, Some(id)))
}

/// Observe step: from the shared sweep, or a single read while a change is pending.
async fn observe(
    csub: &ConnectivitySubscription,
    ctx: &Context,
    provider: &Provider,
    resync: Duration,
) -> Result<ObservedSubscription, Error> {
    let id = identity(csub);
    let key = account_key(csub);
    let backend = provider.subscriptions.as_ref();
    let pending = csub.status.as_ref().is_some_and(|s| s.pending_change.is_some());
    let found = if !ctx.settings.bulk_observation {
        backend.observe(&id).await?
    } else if pending {
        // Many SIMs waiting at once (a fleet-wide change): one fresh sweep serves them all and
        // costs fewer calls than a read each.
        // A sweep that began after this SIM was last looked at can show its change applied;
        // concurrent polls share it instead of each starting another.
        let sweep_cost = ctx.inventories.sweep_cost(&key).unwrap_or(u64::MAX);
        if ctx.inventories.pending(&key) as u64 > sweep_cost {
            let fresh = match csub.status.as_ref().and_then(|s| s.last_observed_time) {
                Some(seen) => Freshness::StartedAfter(seen),
                None => Freshness::MaxAge(ctx.settings.pending_poll_interval),
            };
            ctx.inventories.find(&ctx.clock, &key, backend, fresh, &id).await?
        } else {
            backend.observe(&id).await?
        }
    } else {
        match ctx
            .inventories
            .find(&ctx.clock, &key, backend, Freshness::MaxAge(resync), &id)
            .await?
        {
            Some(o) => Some(o),
            // The SIM may be newer than the sweep.
            None => backend.observe(&id).await?,
        }
    };
    let mut found = match found {
        Some(found) => found,
        None => gone_after_termination(csub.status.as_ref()).ok_or_else(|| Error::SimNotFound {
            vendor: provider.vendor,
            identity: id.to_string(),
        })?,
    };
    if provider.capabilities.subscription_profile == SubscriptionProfile::WriteOnlyPlan {
        found.service_profile_id = recorded_profile(csub.status.as_ref(), &found);
    }
    Ok(found)
}

/// A SIM seen terminated that the vendor no longer lists (emnify deletes terminated SIMs): still
/// terminated, as last seen. Pure.
fn gone_after_termination(status: Option<&ConnectivitySubscriptionStatus>) -> Option<ObservedSubscription> {
    let status = status.filter(|s| s.terminated_at.is_some())?;
    Some(ObservedSubscription {
        imsi: status.imsi.clone(),
        iccid: status.iccid.clone(),
        msisdn: status.msisdn.clone(),
        imei: None,
        id: status.id.clone(),
        endpoint_id: None,
        vendor_mode: "terminated (no longer listed by the vendor)".into(),
        mode: Some(SubscriptionMode::Terminated),
        equivalent: Vec::new(),
        service_profile_id: None,
        first_activation_date: status.first_activation_date.clone(),
    })
}

/// Where the vendor never reports a SIM's profile (BICS plans): the one the operator last set, as
/// long as the SIM is still on the endpoint it was set on. Pure.
fn recorded_profile(
    status: Option<&ConnectivitySubscriptionStatus>,
    observed: &ObservedSubscription,
) -> Option<String> {
    let status = status?;
    (status.endpoint_id.is_some() && status.endpoint_id == observed.endpoint_id)
        .then(|| status.service_profile_id.clone())
        .flatten()
}

async fn apply(csub: &ConnectivitySubscription, ctx: &Context) -> Result<Action, Error> {
    let generation = csub.metadata.generation;
    let status = csub.status.clone().unwrap_or_default();
    if csub.spec.management_policy == ManagementPolicy::Paused {
        let mut status = status;
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
        write_status(ctx, csub, &status).await?;
        return Ok(Action::await_change());
    }
    let resync = ctx.resync_for(csub.metadata.annotations.as_ref());
    let synced_reason = conditions::find(&status.conditions, SYNCED).map(|c| (c.status, c.reason.as_str()));
    let (quiet, interval) = match &status.pending_change {
        Some(_) => (
            synced_reason == Some((ConditionStatus::False, Reason::Pending.as_str())),
            ctx.settings.pending_poll_interval,
        ),
        None => (synced_reason.is_some_and(|(s, _)| s == ConditionStatus::True), resync),
    };
    if let Some(wait) = super::next_sync_in(
        quiet,
        status.observed_generation,
        generation,
        status.last_observed_time,
        interval,
        ctx.clock.now(),
    ) {
        return Ok(Action::requeue(wait));
    }
    let key = account_key(csub);
    // While a fleet-wide change is still being written, verification reads would only compete
    // with the writes for the rate limit: wait until the writes are out.
    if status.pending_change.is_some() && status.observed_generation == generation {
        let namespace = csub.namespace().unwrap_or_default();
        match ctx.inventories.wait_for_writes(&key, &namespace, &csub.name_any()) {
            WriteWait::Clear => {}
            // Woken when the writes are out; the requeue only guards against a lost wake.
            WriteWait::Registered => {
                return Ok(Action::requeue(ctx.settings.pending_poll_interval.max(WAKE_GUARD)));
            }
            WriteWait::Poll => return Ok(Action::requeue(ctx.settings.pending_poll_interval)),
        }
    }
    match converge(csub, ctx, resync).await {
        Ok((status, action)) => {
            ctx.reset_backoff(&key_of(csub));
            ctx.inventories
                .set_pending(&key, &object_key(csub), status.pending_change.is_some());
            write_status(ctx, csub, &status).await?;
            Ok(action)
        }
        Err(err) => {
            report_failure(ctx, csub, &err).await;
            Err(err)
        }
    }
}

/// Everything the plan step produced, for `act` or for the offline `plan` command.
pub struct Planned {
    pub provider: Arc<Provider>,
    pub profile_id: Option<String>,
    pub observed: ObservedSubscription,
    pub decision: Decision,
}

/// Resolve, observe and plan (no vendor writes). Shared by reconcile and `plan`.
pub async fn plan(csub: &ConnectivitySubscription, ctx: &Context, resync: Duration) -> Result<Planned, Error> {
    // resolve
    let (provider, profile_id) = resolve(csub, ctx).await?;
    // observe
    let observed = observe(csub, ctx, &provider, resync).await?;
    // plan
    let previous = csub.status.clone().unwrap_or_default();
    let decision = decide(&PlanInput {
        mode: csub.spec.mode,
        service_profile_id: profile_id.as_deref(),
        observed: &observed,
        pending: previous.pending_change.as_ref(),
        termination_confirmed: csub.termination_confirmed(),
        policy: csub.spec.management_policy,
        now: ctx.clock.now(),
        pending_timeout: ctx.settings.pending_timeout,
    });
    Ok(Planned {
        provider,
        profile_id,
        observed,
        decision,
    })
}

/// Resolve, observe, plan, act; returns the new status and when to come back.
async fn converge(
    csub: &ConnectivitySubscription,
    ctx: &Context,
    resync: Duration,
) -> Result<(ConnectivitySubscriptionStatus, Action), Error> {
    let generation = csub.metadata.generation;
    let now = ctx.clock.now();
    let Planned {
        provider,
        profile_id,
        observed,
        decision,
    } = plan(csub, ctx, resync).await?;
    let previous = csub.status.clone().unwrap_or_default();
    let vendor = provider.vendor;
    // After the observation (which may have waited for a sweep): a later poll of a pending
    // change accepts only a sweep that started after this.
    let observed_at = ctx.clock.now();
    let mut status = with_observed(previous, &observed, observed_at);
    status.observed_generation = generation;
    let poll = Action::requeue(ctx.settings.pending_poll_interval);
    // act
    match decision {
        Decision::InSync => {
            status.pending_change = None;
            let ready = match csub.spec.mode {
                Some(mode) => Condition::new(
                    READY,
                    ConditionStatus::True,
                    Reason::Available,
                    format!("the SIM is {mode}"),
                    generation,
                ),
                None => Condition::new(
                    READY,
                    ConditionStatus::True,
                    Reason::Observed,
                    "observe only: no desired mode",
                    generation,
                ),
            };
            status.conditions = conditions::merge(&status.conditions, vec![ready, synced_ok(generation)]);
            Ok((status, Action::requeue(resync)))
        }
        Decision::Report(changes) => {
            let message = format!("observe-only; would {}", list(&changes));
            status.conditions = conditions::merge(
                &status.conditions,
                vec![
                    Condition::new(READY, ConditionStatus::False, Reason::Drifted, message, generation),
                    synced_ok(generation),
                ],
            );
            Ok((status, Action::requeue(resync)))
        }
        Decision::TerminationNotConfirmed => Err(Error::TerminationNotConfirmed),
        Decision::Irreversible(desired) => Err(Error::Terminated { vendor, desired }),
        Decision::AwaitPending(changes) => {
            let message = format!("waiting for {vendor} to apply: {}", list(&changes));
            Ok((mark_pending(status, message, generation), poll))
        }
        Decision::Apply(changes) => {
            let desired = DesiredSubscription {
                name: csub.name_any(),
                identity: identity(csub),
                mode: csub.spec.mode,
                service_profile_id: profile_id.clone(),
                spec: &csub.spec,
                defaults: provider.endpoint_defaults.clone(),
            };
            let key = account_key(csub);
            let written = {
                let _writing = ctx.inventories.writing(&key);
                provider.subscriptions.update(&desired, &observed, &changes).await
            };
            let pending = |outcome| PendingChange {
                mode: changes.iter().find_map(|c| match c {
                    SubscriptionChange::SetMode(m) => Some(*m),
                    SubscriptionChange::SetServiceProfile(_) => None,
                }),
                service_profile_id: changes.iter().find_map(|c| match c {
                    SubscriptionChange::SetServiceProfile(id) => Some(id.clone()),
                    SubscriptionChange::SetMode(_) => None,
                }),
                requested_at: now,
                outcome,
            };
            match written {
                Ok(WriteOutcome::Applied(after)) => {
                    ctx.inventories.record(&key, &after).await;
                    event(
                        ctx,
                        csub,
                        EventType::Normal,
                        Reason::Updated,
                        "Update",
                        format!("{vendor}: {}", list(&changes)),
                    )
                    .await;
                    let mut status = with_observed(status, &after, ctx.clock.now());
                    status.pending_change = None;
                    let ready = if after.mode == csub.spec.mode || csub.spec.mode.is_none() {
                        Condition::new(
                            READY,
                            ConditionStatus::True,
                            Reason::Available,
                            format!("the SIM is {}", after.vendor_mode),
                            generation,
                        )
                    } else {
                        Condition::new(
                            READY,
                            ConditionStatus::False,
                            Reason::Drifted,
                            format!("the SIM is {}", after.vendor_mode),
                            generation,
                        )
                    };
                    status.conditions = conditions::merge(&status.conditions, vec![ready, synced_ok(generation)]);
                    Ok((status, Action::requeue(resync)))
                }
                Ok(WriteOutcome::Accepted) => {
                    let message = format!("{vendor} accepted: {}; applied asynchronously", list(&changes));
                    event(
                        ctx,
                        csub,
                        EventType::Normal,
                        Reason::ChangeRequested,
                        "Update",
                        message.clone(),
                    )
                    .await;
                    status.pending_change = Some(pending(PendingOutcome::Accepted));
                    Ok((mark_pending(status, message, generation), poll))
                }
                Err(e) if e.kind == ErrorKind::OutcomeUnknown => {
                    let message = format!("{e}; observing before sending it again");
                    event(
                        ctx,
                        csub,
                        EventType::Warning,
                        Reason::OutcomeUnknown,
                        "Update",
                        message.clone(),
                    )
                    .await;
                    status.pending_change = Some(pending(PendingOutcome::Unknown));
                    Ok((mark_pending(status, message, generation), poll))
                }
                Err(e) => Err(e.into()),
            }
        }
    }
}

fn list(changes: &[SubscriptionChange]) -> String {
    changes.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
}

/// `Ready=False` and `Synced=False` with reason `Pending` while a vendor change is in flight.
fn mark_pending(
    mut status: ConnectivitySubscriptionStatus,
    message: String,
    generation: Option<i64>,
) -> ConnectivitySubscriptionStatus {
    status.conditions = conditions::merge(
        &status.conditions,
        vec![
            Condition::new(
                READY,
                ConditionStatus::False,
                Reason::Pending,
                message.clone(),
                generation,
            ),
            Condition::new(SYNCED, ConditionStatus::False, Reason::Pending, message, generation),
        ],
    );
    status
}

fn synced_ok(generation: Option<i64>) -> Condition {
    Condition::new(SYNCED, ConditionStatus::True, Reason::ReconcileSuccess, "", generation)
}

fn with_observed(
    mut status: ConnectivitySubscriptionStatus,
    o: &ObservedSubscription,
    now: DateTime<Utc>,
) -> ConnectivitySubscriptionStatus {
    status.mode = Some(o.vendor_mode.clone());
    status.imsi = o.imsi.clone().or(status.imsi);
    status.iccid = o.iccid.clone().or(status.iccid);
    status.msisdn = o.msisdn.clone().or(status.msisdn);
    status.imei = o.imei.clone().or(status.imei);
    status.service_profile_id = o.service_profile_id.clone();
    status.id = o.id.clone().or(status.id);
    status.endpoint_id = o.endpoint_id.clone();
    status.first_activation_date = o.first_activation_date.clone().or(status.first_activation_date);
    if o.mode == Some(SubscriptionMode::Terminated) {
        status.terminated_at = status.terminated_at.or(Some(now));
    }
    status.last_observed_time = Some(now);
    status
}

async fn write_status(
    ctx: &Context,
    csub: &ConnectivitySubscription,
    status: &ConnectivitySubscriptionStatus,
) -> Result<(), Error> {
    apply_status(ctx, csub, status)
        .await
        .map_err(|source| Error::WriteStatus {
            name: csub.name_any(),
            source,
        })
}

async fn report_failure(ctx: &Context, csub: &ConnectivitySubscription, err: &Error) {
    let generation = csub.metadata.generation;
    let mut status = csub.status.clone().unwrap_or_default();
    let message = err.to_string();
    let mut fresh = vec![Condition::new(
        SYNCED,
        ConditionStatus::False,
        err.reason(),
        message.clone(),
        generation,
    )];
    if conditions::find(&status.conditions, READY).is_none() || err.is_permanent() {
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
    if let Err(e) = write_status(ctx, csub, &status).await {
        tracing::warn!(error = %e, "failed to record the failure in status");
    }
    event(ctx, csub, EventType::Warning, err.reason(), "Reconcile", message).await;
}

/// Deleting never terminates: `Orphan` leaves the SIM, `Deactivate` deactivates it.
async fn cleanup(csub: &ConnectivitySubscription, ctx: &Context) -> Result<Action, Error> {
    ctx.inventories
        .set_pending(&account_key(csub), &object_key(csub), false);
    if csub.spec.deletion_policy == SubscriptionDeletionPolicy::Orphan
        || csub.spec.management_policy != ManagementPolicy::Full
    {
        return Ok(Action::await_change());
    }
    let result = async {
        let namespace = csub.namespace().unwrap_or_else(|| "default".into());
        let provider = ctx
            .providers
            .resolve(&ctx.client, &namespace, &csub.spec.provider_config_ref.name)
            .await?;
        let Some(observed) = provider.subscriptions.observe(&identity(csub)).await? else {
            return Ok(None);
        };
        if matches!(
            observed.mode,
            Some(SubscriptionMode::Deactivated | SubscriptionMode::Terminated)
        ) {
            return Ok(None);
        }
        let desired = DesiredSubscription {
            name: csub.name_any(),
            identity: identity(csub),
            mode: Some(SubscriptionMode::Deactivated),
            service_profile_id: None,
            spec: &csub.spec,
            defaults: provider.endpoint_defaults.clone(),
        };
        provider
            .subscriptions
            .update(
                &desired,
                &observed,
                &[SubscriptionChange::SetMode(SubscriptionMode::Deactivated)],
            )
            .await?;
        Ok::<_, Error>(Some(provider.vendor))
    }
    .await;
    match result {
        Ok(deactivated) => {
            if let Some(vendor) = deactivated {
                event(
                    ctx,
                    csub,
                    EventType::Normal,
                    Reason::Deactivated,
                    "Delete",
                    format!("deactivated the SIM at {vendor}"),
                )
                .await;
            }
            Ok(Action::await_change())
        }
        Err(Error::Resolve(e))
            if super::resolve::credentials_gone_for_good(
                &ctx.client,
                &e,
                &csub.namespace().unwrap_or_else(|| "default".into()),
                &csub.spec.provider_config_ref.name,
            )
            .await =>
        {
            event(
                ctx,
                csub,
                EventType::Warning,
                Reason::CredentialsGone,
                "Delete",
                format!("left the SIM as it is: its account is being deleted and {e}"),
            )
            .await;
            Ok(Action::await_change())
        }
        Err(err) => {
            report_failure(ctx, csub, &err).await;
            Err(err)
        }
    }
}

#[cfg(test)]
mod tests {
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
