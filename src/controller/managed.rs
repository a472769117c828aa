//! The managed reconciler: the one pipeline every kind runs, and the only code that touches the
//! finalizer, the management policy, the resync gate, status, the `Ready` / `Synced` conditions,
//! Events, metrics and the retry policy. Crossplane's managed reconciler is the model; a kind
//! ([`ServiceProfile`](crate::crd::ServiceProfile), [`ConnectivitySubscription`](crate::crd::ConnectivitySubscription),
//! [`ProviderConfig`](crate::crd::ProviderConfig)) implements [`Managed`] and supplies only its
//! steps:
//!
//! ```text
//! resolve  ProviderConfig + Secret (+ referenced objects) -> a connected backend
//! observe  read the vendor object                       -> what is there
//! plan     pure: spec + observation + what is in flight  -> a typed plan
//! act      carry the plan out at the vendor              -> an Outcome (Ready, or Pending)
//! delete   under the finalizer, per the deletion policy  -> what was done
//! ```
//!
//! [`reconcile`] drives them in that order and records the result: status through server-side
//! apply on the status subresource (never `spec`), `Synced` for the last attempt and `Ready` for
//! the vendor object, both with `observedGeneration`, a Warning Event for every failure, and the
//! retry delay from the failure's [`Reason`].

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::finalizer::{self, Event as FinalizerEvent};
use kube::{Api, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::resolve::{ResolveError, credentials_gone_for_good};
use super::status::{apply_status, event};
use super::{Context, Settings, key_of};
use crate::backend::{BackendError, ErrorKind};
use crate::crd::conditions::{self, Condition, ConditionStatus, READY, SYNCED};
use crate::crd::{FINALIZER, ManagementPolicy};
use crate::reason::Reason;

/// The status fields the reconciler owns; the rest belongs to the kind.
pub trait ManagedStatus: Default + Clone + PartialEq + Serialize + Send + Sync + 'static {
    fn conditions(&self) -> &[Condition];
    fn conditions_mut(&mut self) -> &mut Vec<Condition>;
    fn observed_generation_mut(&mut self) -> &mut Option<i64>;
    fn observed_generation(&self) -> Option<i64>;
    /// Record when a sync last found something new (`lastSyncTime`, `lastObservedTime`, ...).
    fn set_last_sync(&mut self, at: DateTime<Utc>);
}

/// Implements [`ManagedStatus`] for a status struct with `conditions`, `observed_generation` and
/// the named last-sync field.
#[macro_export]
macro_rules! managed_status {
    ($status:ty, $last_sync:ident) => {
        impl $crate::controller::managed::ManagedStatus for $status {
            fn conditions(&self) -> &[$crate::crd::conditions::Condition] {
                &self.conditions
            }
            fn conditions_mut(&mut self) -> &mut Vec<$crate::crd::conditions::Condition> {
                &mut self.conditions
            }
            fn observed_generation_mut(&mut self) -> &mut Option<i64> {
                &mut self.observed_generation
            }
            fn observed_generation(&self) -> Option<i64> {
                self.observed_generation
            }
            fn set_last_sync(&mut self, at: chrono::DateTime<chrono::Utc>) {
                self.$last_sync = Some(at);
            }
        }
    };
}

/// The [`Managed`] accessors of a kind with `status`, `spec.managementPolicy` and
/// `spec.providerConfigRef` (used inside its `impl Managed`).
#[macro_export]
macro_rules! managed_accessors {
    () => {
        fn status(&self) -> Option<&Self::Status> {
            self.status.as_ref()
        }

        fn management_policy(&self) -> $crate::crd::ManagementPolicy {
            self.spec.management_policy
        }

        fn account(&self) -> Option<&str> {
            Some(&self.spec.provider_config_ref.name)
        }
    };
}

/// A kind's step failure: its [`Reason`] decides the condition, the Event, the metric label and
/// the retry policy.
pub trait StepError: std::error::Error + Send + Sync + 'static {
    fn reason(&self) -> Reason;
    /// The vendor failure behind this one, if any (its `Retry-After` is honoured).
    fn backend(&self) -> Option<&BackendError> {
        None
    }
    /// The resolve failure behind this one, if any (a deletion whose account is gone for good
    /// completes instead of waiting for ever).
    fn resolve(&self) -> Option<&ResolveError> {
        None
    }
}

/// When the next vendor sync of an object is due (see [`Managed::schedule`]).
#[derive(Debug, Clone, Copy)]
pub struct Schedule {
    /// The last attempt settled (no failure, nothing that needs a sooner look).
    pub settled: bool,
    /// When the vendor was last read (by this process).
    pub since: Option<DateTime<Utc>>,
    /// How long a settled object rests.
    pub every: Duration,
}

impl Schedule {
    /// Whether the resync driver (`run::resync`) should wake this object at `now`: it settled
    /// after a sync by this process and has rested for `every`. Objects never synced here are
    /// the watch's (its first list triggers each), failing ones the retry policy's. Pure.
    pub fn resync_due(&self, now: DateTime<Utc>) -> bool {
        self.settled && self.since.is_some() && resting_for(self.since, self.every, now).is_none()
    }
}

/// What a successful act step leaves the object as.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// `Synced=True`; `Ready` as given; back at the resync interval.
    Synced {
        ready: bool,
        reason: Reason,
        message: String,
    },
    /// A change is in flight at the vendor: `Ready=False` and `Synced=False` with reason
    /// `Pending`; read again at the pending poll interval.
    Pending { message: String },
    /// The write was handed to a bulk write and has no answer yet: nothing is recorded (no
    /// status write, the resync clock does not move); the object is woken when the answer is
    /// there and synced again then, or after `recheck` should the wake be lost.
    Queued { recheck: Duration },
}

impl Outcome {
    pub fn ready(reason: Reason, message: impl Into<String>) -> Self {
        Outcome::Synced {
            ready: true,
            reason,
            message: message.into(),
        }
    }

    pub fn not_ready(reason: Reason, message: impl Into<String>) -> Self {
        Outcome::Synced {
            ready: false,
            reason,
            message: message.into(),
        }
    }
}

/// What the delete step did, for the Normal Event that says so (`None`: nothing to say).
pub type Cleaned = Option<(Reason, String)>;

/// Everything the plan step reads, in one struct: the object, what resolve and observe found,
/// and the time and settings every decision is made by.
pub struct Facts<'a, K: Managed> {
    pub object: &'a K,
    pub resolved: &'a K::Resolved,
    pub observed: K::Observed,
    pub now: DateTime<Utc>,
    pub settings: &'a Settings,
}

/// A kind the managed reconciler drives: its steps, and the little it must say about itself.
pub trait Managed:
    Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
    + Clone
    + DeserializeOwned
    + Serialize
    + std::fmt::Debug
    + Send
    + Sync
    + 'static
{
    type Status: ManagedStatus;
    /// What resolve found (the connected account, referenced vendor ids).
    type Resolved: Send + Sync;
    type Observed: Send;
    /// The typed plan act carries out.
    type Plan: Send;
    type Error: StepError;

    fn status(&self) -> Option<&Self::Status>;

    fn management_policy(&self) -> ManagementPolicy {
        ManagementPolicy::Full
    }

    /// The ProviderConfig the object uses, if it uses one.
    fn account(&self) -> Option<&str>;

    /// When the next vendor sync is due. Default: settled when `Synced=True`, resting for the
    /// resync interval (the object's annotation, else the operator's) since the last sync.
    fn schedule(&self, ctx: &Context) -> Schedule {
        Schedule {
            settled: self
                .status()
                .is_some_and(|s| conditions::is_true(s.conditions(), SYNCED)),
            since: ctx.synced.get(self),
            every: ctx.resync_for(self.meta().annotations.as_ref()),
        }
    }

    /// A sync that is due but should wait anyway (a pending subscription while its account is
    /// still writing): how long at most.
    fn hold(&self, _ctx: &Context) -> Option<Duration> {
        None
    }

    /// Whether a failure also turns `Ready` False. Default: only failures that say the vendor
    /// object cannot match the spec (permanent ones); a transient failure leaves `Ready` as the
    /// last observation found it.
    fn failure_clears_ready(&self, err: &Self::Error) -> bool {
        err.reason().is_permanent()
    }

    /// Resolve: the account and anything referenced. May record what it found in `status`.
    fn resolve(
        &self,
        ctx: &Context,
        status: &mut Self::Status,
    ) -> impl Future<Output = Result<Self::Resolved, Self::Error>> + Send;

    /// Observe: read the vendor object (no writes).
    fn observe(
        &self,
        ctx: &Context,
        resolved: &Self::Resolved,
    ) -> impl Future<Output = Result<Self::Observed, Self::Error>> + Send;

    /// Plan: decide what act does. Pure.
    fn plan(facts: Facts<'_, Self>) -> Self::Plan;

    /// Act: carry the plan out and record what it left in `status`.
    fn act(
        &self,
        ctx: &Context,
        resolved: Self::Resolved,
        plan: Self::Plan,
        status: &mut Self::Status,
    ) -> impl Future<Output = Result<Outcome, Self::Error>> + Send;

    /// Delete under the finalizer, as the deletion policy says.
    fn delete(&self, ctx: &Context) -> impl Future<Output = Result<Cleaned, Self::Error>> + Send;

    /// What a deletion leaves at the vendor when its account is gone for good (for the Event).
    fn left_behind(&self) -> String;
}

/// A failed reconcile: a step's failure, or the reconciler's own.
#[derive(Debug)]
pub enum Error<E: StepError> {
    Step(E),
    WriteStatus(WriteStatusError),
    Finalizer {
        kind: std::borrow::Cow<'static, str>,
        name: String,
        source: Box<finalizer::Error<Error<E>>>,
    },
}

// By hand: a derived impl would bound itself through the finalizer error it wraps (recursively).
impl<E: StepError> std::fmt::Display for Error<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Step(e) => std::fmt::Display::fmt(e, f),
            Error::WriteStatus(e) => std::fmt::Display::fmt(e, f),
            Error::Finalizer { kind, name, source } => {
                write!(f, "failed to manage the finalizer of {kind} {name}: {source}")
            }
        }
    }
}

impl<E: StepError> std::error::Error for Error<E> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Step(e) => e.source(),
            Error::WriteStatus(e) => e.source(),
            Error::Finalizer { source, .. } => Some(source.as_ref()),
        }
    }
}

impl<E: StepError> From<WriteStatusError> for Error<E> {
    fn from(e: WriteStatusError) -> Self {
        Error::WriteStatus(e)
    }
}

/// A status write that failed.
#[derive(Debug, thiserror::Error)]
#[error("failed to write status of {kind} {name}: {source}")]
pub struct WriteStatusError {
    pub kind: std::borrow::Cow<'static, str>,
    pub name: String,
    pub source: kube::Error,
}

impl<E: StepError> Error<E> {
    /// The error that decided the outcome (unwrapping the finalizer helper's wrapper).
    pub fn root(&self) -> &Error<E> {
        match self {
            Error::Finalizer { source, .. } => match source.as_ref() {
                finalizer::Error::ApplyFailed(e) | finalizer::Error::CleanupFailed(e) => e.root(),
                _ => self,
            },
            _ => self,
        }
    }

    /// The step's own failure, if a step failed.
    pub fn step(&self) -> Option<&E> {
        match self.root() {
            Error::Step(e) => Some(e),
            _ => None,
        }
    }

    /// Reason for conditions, Events and metrics.
    pub fn reason(&self) -> Reason {
        match self.root() {
            Error::Step(e) => e.reason(),
            Error::WriteStatus(_) => Reason::StatusWriteFailed,
            Error::Finalizer { .. } => Reason::FinalizerFailed,
        }
    }

    /// `Retry-After` the vendor asked for.
    pub fn retry_after(&self) -> Option<Duration> {
        match self.step()?.backend()?.kind {
            ErrorKind::RateLimited { retry_after } => retry_after,
            _ => None,
        }
    }

    /// Errors only a change can fix (spec, Secret, vendor state) wait the longest backoff.
    pub fn is_permanent(&self) -> bool {
        self.reason().is_permanent()
    }
}

/// Reconcile entry point of every kind, for the controllers and the offline runner: the
/// finalizer, then `sync` or `delete`, timed.
pub async fn reconcile<K: Managed>(obj: Arc<K>, ctx: Arc<Context>) -> Result<Action, Error<K::Error>> {
    let started = std::time::Instant::now();
    let name = obj.name_any();
    let api: Api<K> = Api::namespaced(ctx.client.clone(), &namespace(obj.as_ref()));
    let result = finalizer::finalizer(&api, FINALIZER, obj, |ev| async {
        match ev {
            FinalizerEvent::Apply(obj) => sync(obj.as_ref(), &ctx).await,
            FinalizerEvent::Cleanup(obj) => delete(obj.as_ref(), &ctx).await,
        }
    })
    .await
    .map_err(|source| Error::Finalizer {
        kind: K::kind(&()),
        name,
        source: Box::new(source),
    });
    ctx.metrics.reconciled(&K::kind(&()), started.elapsed());
    result
}

/// Retry policy after a failed reconcile: the vendor's `Retry-After`, else backoff by reason.
pub fn error_policy<K: Managed>(obj: Arc<K>, err: &Error<K::Error>, ctx: Arc<Context>) -> Action {
    let reason = err.reason();
    ctx.metrics.reconcile_failed(&K::kind(&()), reason.as_str());
    tracing::warn!(kind = %K::kind(&()), name = %obj.name_any(), namespace = obj.namespace().unwrap_or_default(), %reason, error = %err, "reconcile failed");
    Action::requeue(ctx.retry_delay(&key_of(obj.as_ref()), err.retry_after(), err.is_permanent()))
}

/// Resolve, observe and plan without acting (the offline `plan` command).
pub async fn plan<K: Managed>(obj: &K, ctx: &Context) -> Result<(K::Resolved, K::Plan), K::Error> {
    let mut scratch = obj.status().cloned().unwrap_or_default();
    let resolved = obj.resolve(ctx, &mut scratch).await?;
    let observed = obj.observe(ctx, &resolved).await?;
    let plan = K::plan(Facts {
        object: obj,
        resolved: &resolved,
        observed,
        now: ctx.clock.now(),
        settings: &ctx.settings,
    });
    Ok((resolved, plan))
}

/// The pipeline, when the object is not being deleted.
async fn sync<K: Managed>(obj: &K, ctx: &Context) -> Result<Action, Error<K::Error>> {
    if obj.management_policy() == ManagementPolicy::Paused {
        return pause(obj, ctx).await;
    }
    match not_due(obj, ctx) {
        // Resting: the resync driver wakes it when due, so no timer per object.
        Some(NotDue::Resting) => return Ok(Action::await_change()),
        Some(NotDue::Held(wait)) => return Ok(Action::requeue(wait)),
        None => {}
    }
    let mut status = obj.status().cloned().unwrap_or_default();
    match steps(obj, ctx, &mut status).await {
        Ok(Outcome::Queued { recheck }) => Ok(Action::requeue(recheck)),
        Ok(outcome) => {
            ctx.reset_backoff(&key_of(obj));
            let next = update_status(obj, &mut status, &outcome, ctx);
            store(ctx, obj, status, true).await?;
            Ok(next)
        }
        Err(err) => {
            report_failure(ctx, obj, status, &err, "Reconcile").await;
            Err(Error::Step(err))
        }
    }
}

/// resolve -> observe -> plan -> act, each step's result feeding the next.
async fn steps<K: Managed>(obj: &K, ctx: &Context, status: &mut K::Status) -> Result<Outcome, K::Error> {
    let resolved = obj.resolve(ctx, status).await?;
    let observed = obj.observe(ctx, &resolved).await?;
    let observed_at = ctx.clock.now();
    let plan = K::plan(Facts {
        object: obj,
        resolved: &resolved,
        observed,
        now: observed_at,
        settings: &ctx.settings,
    });
    let outcome = obj.act(ctx, resolved, plan, status).await?;
    if !matches!(outcome, Outcome::Queued { .. }) {
        ctx.synced.set(obj, observed_at);
    }
    Ok(outcome)
}

/// `managementPolicy: Paused`: no vendor call, only `Synced=False` / `Paused`.
async fn pause<K: Managed>(obj: &K, ctx: &Context) -> Result<Action, Error<K::Error>> {
    let mut status = obj.status().cloned().unwrap_or_default();
    let message = "managementPolicy is Paused: no vendor calls";
    record(
        obj,
        &mut status,
        vec![condition(SYNCED, false, Reason::Paused, message, obj)],
    );
    store(ctx, obj, status, false).await?;
    Ok(Action::await_change())
}

/// Why a reconcile does not sync now.
enum NotDue {
    /// Settled and not due for a resync.
    Resting,
    /// Due, but the kind holds it back for at most this long.
    Held(Duration),
}

/// The resync gate, then the kind's hold (`None`: sync now).
fn not_due<K: Managed>(obj: &K, ctx: &Context) -> Option<NotDue> {
    let schedule = obj.schedule(ctx);
    let observed_generation = obj.status().and_then(ManagedStatus::observed_generation);
    next_sync_in(
        schedule.settled,
        observed_generation,
        obj.meta().generation,
        schedule.since,
        schedule.every,
        ctx.clock.now(),
    )
    .map(|_| NotDue::Resting)
    .or_else(|| obj.hold(ctx).map(NotDue::Held))
}

/// Under the finalizer: the kind's delete step, then the Event that says what it did.
async fn delete<K: Managed>(obj: &K, ctx: &Context) -> Result<Action, Error<K::Error>> {
    match obj.delete(ctx).await {
        Ok(cleaned) => {
            ctx.reset_backoff(&key_of(obj));
            ctx.synced.forget(obj);
            if let Some((reason, note)) = cleaned {
                event(ctx, obj, EventType::Normal, reason, "Delete", note).await;
            }
            Ok(Action::await_change())
        }
        Err(err) if account_gone_for_good(obj, &err, ctx).await => {
            let note = format!(
                "left {} as it is: its account is being deleted and {}",
                obj.left_behind(),
                err
            );
            event(ctx, obj, EventType::Warning, Reason::CredentialsGone, "Delete", note).await;
            Ok(Action::await_change())
        }
        Err(err) => {
            let status = obj.status().cloned().unwrap_or_default();
            report_failure(ctx, obj, status, &err, "Delete").await;
            Err(Error::Step(err))
        }
    }
}

/// The account a deletion needs is unreachable and going away: waiting would block for ever.
async fn account_gone_for_good<K: Managed>(obj: &K, err: &K::Error, ctx: &Context) -> bool {
    match (err.resolve(), obj.account()) {
        (Some(e), Some(account)) => credentials_gone_for_good(&ctx.client, e, &namespace(obj), account).await,
        _ => false,
    }
}

/// The status step after a successful act: conditions from the outcome, and when to come back.
fn update_status<K: Managed>(obj: &K, status: &mut K::Status, outcome: &Outcome, ctx: &Context) -> Action {
    match outcome {
        Outcome::Synced { ready, reason, message } => {
            let ready = condition(READY, *ready, *reason, message.clone(), obj);
            let synced = condition(SYNCED, true, Reason::ReconcileSuccess, "", obj);
            record(obj, status, vec![ready, synced]);
            // The resync driver wakes it when its interval has passed.
            Action::await_change()
        }
        Outcome::Pending { message } => {
            let ready = condition(READY, false, Reason::Pending, message.clone(), obj);
            let synced = condition(SYNCED, false, Reason::Pending, message.clone(), obj);
            record(obj, status, vec![ready, synced]);
            Action::requeue(ctx.settings.pending_poll_interval)
        }
        // `sync` returns before recording a queued write; nothing to record.
        Outcome::Queued { recheck } => Action::requeue(*recheck),
    }
}

/// Record a failure: `Synced=False` with the reason and message (and `Ready=False` when the kind
/// says so, or when nothing was known yet), and a Warning Event. A failing status write is
/// logged: the failure itself is what the caller returns.
async fn report_failure<K: Managed>(ctx: &Context, obj: &K, mut status: K::Status, err: &K::Error, action: &str) {
    let message = err.to_string();
    let mut fresh = vec![condition(SYNCED, false, err.reason(), message.clone(), obj)];
    if conditions::find(status.conditions(), READY).is_none() || obj.failure_clears_ready(err) {
        fresh.push(condition(READY, false, err.reason(), message.clone(), obj));
    }
    record(obj, &mut status, fresh);
    if let Err(e) = store(ctx, obj, status, false).await {
        tracing::warn!(error = %e, "failed to record the failure in status");
    }
    event(ctx, obj, EventType::Warning, err.reason(), action, message).await;
}

/// The resync gate: whether a vendor sync is due, or how long until it is. Our own status writes come back as watch
/// events; without this check every status write would trigger another vendor round trip, in a
/// loop. A sync is due when the spec changed (generation), the last attempt failed, or the resync
/// interval has passed. Pure.
pub fn next_sync_in(
    synced: bool,
    observed_generation: Option<i64>,
    generation: Option<i64>,
    last_sync: Option<chrono::DateTime<chrono::Utc>>,
    resync: Duration,
    now: chrono::DateTime<chrono::Utc>,
) -> Option<Duration> {
    if !synced || observed_generation != generation {
        return None;
    }
    resting_for(last_sync, resync, now)
}

/// How much longer an object synced at `since` rests before its resync (`None`: due now, also
/// when it was never synced here or the clock went back). The one rule of the resync gate and
/// the resync driver.
fn resting_for(since: Option<DateTime<Utc>>, every: Duration, now: DateTime<Utc>) -> Option<Duration> {
    let elapsed = (now - since?).to_std().ok()?;
    every.checked_sub(elapsed).filter(|left| !left.is_zero())
}

/// The status step's write: nothing when `status` is what the object already has (a resync
/// that found nothing new writes nothing: no heartbeat in status). A successful sync that
/// changed something also moves the last-sync time (`synced`).
async fn store<K: Managed>(
    ctx: &Context,
    obj: &K,
    mut status: K::Status,
    synced: bool,
) -> Result<(), WriteStatusError> {
    if obj.status() == Some(&status) {
        return Ok(());
    }
    if synced {
        status.set_last_sync(ctx.clock.now());
    }
    write_status(ctx, obj, &status).await
}

/// Status written in the middle of act (a created vendor id, before anything else can fail).
pub async fn checkpoint<K: Managed>(ctx: &Context, obj: &K, status: &K::Status) -> Result<(), WriteStatusError> {
    write_status(ctx, obj, status).await
}

async fn write_status<K: Managed>(ctx: &Context, obj: &K, status: &K::Status) -> Result<(), WriteStatusError> {
    apply_status(ctx, obj, status).await.map_err(|source| WriteStatusError {
        kind: K::kind(&()),
        name: obj.name_any(),
        source,
    })
}

/// Merge `fresh` conditions and stamp the generation they describe.
fn record<K: Managed>(obj: &K, status: &mut K::Status, fresh: Vec<Condition>) {
    let merged = conditions::merge(status.conditions(), fresh);
    *status.conditions_mut() = merged;
    *status.observed_generation_mut() = obj.meta().generation;
}

/// A condition about the object's current generation.
pub fn condition<K: Resource>(
    type_: &str,
    status: bool,
    reason: Reason,
    message: impl Into<String>,
    obj: &K,
) -> Condition {
    let status = if status {
        ConditionStatus::True
    } else {
        ConditionStatus::False
    };
    Condition::new(type_, status, reason, message, obj.meta().generation)
}

/// The object's namespace (`default` when unset, as the API server does).
pub fn namespace<K: Resource>(obj: &K) -> String {
    obj.meta().namespace.clone().unwrap_or_else(|| "default".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[derive(Debug, thiserror::Error)]
    #[error("vendor said no")]
    struct Refused(BackendError);

    impl StepError for Refused {
        fn reason(&self) -> Reason {
            self.0.kind.reason()
        }
        fn backend(&self) -> Option<&BackendError> {
            Some(&self.0)
        }
    }

    fn limited(after: u64) -> Refused {
        let kind = ErrorKind::RateLimited {
            retry_after: Some(Duration::from_secs(after)),
        };
        Refused(BackendError::new("list SIMs", kind, "HTTP 429"))
    }

    #[test]
    fn the_step_failure_decides_through_the_finalizer_wrapper() {
        let wrapped: Error<Refused> = Error::Finalizer {
            kind: "ServiceProfile".into(),
            name: "fleet".into(),
            source: Box::new(finalizer::Error::ApplyFailed(Error::Step(limited(7)))),
        };
        assert_eq!(wrapped.reason(), Reason::RateLimited);
        assert_eq!(wrapped.retry_after(), Some(Duration::from_secs(7)));
        assert!(!wrapped.is_permanent());
        assert!(wrapped.step().is_some());
        assert!(
            wrapped
                .to_string()
                .starts_with("failed to manage the finalizer of ServiceProfile fleet"),
            "{wrapped}"
        );
        let own: Error<Refused> = Error::Finalizer {
            kind: "ServiceProfile".into(),
            name: "fleet".into(),
            source: Box::new(finalizer::Error::UnnamedObject),
        };
        assert_eq!(own.reason(), Reason::FinalizerFailed);
        assert_eq!(own.retry_after(), None);
        assert!(own.step().is_none());
    }

    #[test]
    fn the_driver_wakes_settled_objects_synced_here_once_their_interval_has_passed() {
        let t0 = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        let at = |s| t0 + chrono::Duration::seconds(s);
        let every = Duration::from_secs(600);
        let schedule = |settled, since| Schedule { settled, since, every };
        assert!(!schedule(true, Some(t0)).resync_due(at(599)));
        assert!(schedule(true, Some(t0)).resync_due(at(600)));
        assert!(
            !schedule(false, Some(t0)).resync_due(at(900)),
            "failing: the retry policy's"
        );
        assert!(
            !schedule(true, None).resync_due(at(900)),
            "never synced here: the watch's"
        );
    }

    #[test]
    fn sync_is_skipped_only_when_nothing_changed_and_resync_is_not_due() {
        let t0 = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        let resync = Duration::from_secs(600);
        let later = t0 + chrono::Duration::seconds(60);
        assert_eq!(
            next_sync_in(true, Some(2), Some(2), Some(t0), resync, later),
            Some(Duration::from_secs(540))
        );
        assert_eq!(
            next_sync_in(true, Some(1), Some(2), Some(t0), resync, later),
            None,
            "spec changed"
        );
        assert_eq!(
            next_sync_in(false, Some(2), Some(2), Some(t0), resync, later),
            None,
            "last attempt failed"
        );
        assert_eq!(
            next_sync_in(true, Some(2), Some(2), None, resync, later),
            None,
            "never synced"
        );
        let due = t0 + chrono::Duration::seconds(600);
        assert_eq!(
            next_sync_in(true, Some(2), Some(2), Some(t0), resync, due),
            None,
            "resync due"
        );
    }
}
