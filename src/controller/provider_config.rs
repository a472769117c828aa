//! ProviderConfig pipeline: resolve (Secret -> credentials -> backend) -> verify (authenticate
//! at the vendor) -> status (`Ready` with what is wrong when it is not). Its finalizer keeps a
//! ProviderConfig alive while ServiceProfiles still reference it, so their vendor objects can
//! still be deleted.

use std::sync::Arc;

use kube::api::ListParams;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::finalizer::{self, Event as FinalizerEvent};
use kube::{Api, ResourceExt};

use super::credentials::{self, CredentialsError};
use super::resolve::ResolveError;
use super::status::{apply_status, event};
use super::{Context, key_of};
use crate::backend::BackendError;
use crate::crd::conditions::{self, Condition, ConditionStatus, READY};
use crate::crd::{ConnectivitySubscription, FINALIZER, ProviderConfig, ServiceProfile};
use crate::reason::Reason;

pub const KIND: &str = "ProviderConfig";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Resolve(#[from] ResolveError),
    #[error("credentials of ProviderConfig {name} were not accepted: {source}")]
    Verify { name: String, source: BackendError },
    #[error("ProviderConfig {name} is still used by {users}; delete those first")]
    InUse { name: String, users: String },
    #[error("failed to list the objects using ProviderConfig {name}: {source}")]
    ListUsers { name: String, source: kube::Error },
    #[error(transparent)]
    Credentials(#[from] CredentialsError),
    #[error("failed to write status of ProviderConfig {name}: {source}")]
    WriteStatus { name: String, source: kube::Error },
    #[error("failed to manage the finalizer of ProviderConfig {name}: {source}")]
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
            Error::Verify { source, .. } => match source.kind {
                crate::backend::ErrorKind::Unauthorized => Reason::CredentialsRejected,
                _ => source.kind.reason(),
            },
            Error::InUse { .. } => Reason::InUse,
            Error::ListUsers { .. } | Error::Credentials(_) => Reason::KubernetesApiError,
            Error::WriteStatus { .. } => Reason::StatusWriteFailed,
            Error::Finalizer { .. } => Reason::FinalizerFailed,
        }
    }

    fn retry_after(&self) -> Option<std::time::Duration> {
        match self.root() {
            Error::Verify {
                source:
                    BackendError {
                        kind: crate::backend::ErrorKind::RateLimited { retry_after },
                        ..
                    },
                ..
            } => *retry_after,
            _ => None,
        }
    }

    /// Worth another try soon (offline runner).
    pub fn is_retryable(&self) -> bool {
        !self.is_permanent() && !matches!(self.root(), Error::InUse { .. })
    }

    fn is_permanent(&self) -> bool {
        self.reason().is_permanent()
    }
}

pub async fn reconcile(pc: Arc<ProviderConfig>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = std::time::Instant::now();
    let name = pc.name_any();
    let api: Api<ProviderConfig> =
        Api::namespaced(ctx.client.clone(), &pc.namespace().unwrap_or_else(|| "default".into()));
    let result = finalizer::finalizer(&api, FINALIZER, pc, |ev| async {
        match ev {
            FinalizerEvent::Apply(pc) => apply(&pc, &ctx).await,
            FinalizerEvent::Cleanup(pc) => cleanup(&pc, &ctx).await,
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

pub fn error_policy(pc: Arc<ProviderConfig>, err: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics.reconcile_failed(KIND, err.reason().as_str());
    tracing::warn!(providerconfig = %pc.name_any(), namespace = pc.namespace().unwrap_or_default(), reason = %err.reason(), error = %err, "reconcile failed");
    Action::requeue(ctx.retry_delay(&key_of(pc.as_ref()), err.retry_after(), err.is_permanent()))
}

async fn apply(pc: &ProviderConfig, ctx: &Context) -> Result<Action, Error> {
    let generation = pc.metadata.generation;
    let resync = ctx.resync_for(pc.metadata.annotations.as_ref());
    if let Some(status) = &pc.status
        && let Some(wait) = super::next_sync_in(
            conditions::is_true(&status.conditions, READY),
            status.observed_generation,
            generation,
            status.last_checked_time,
            resync,
            ctx.clock.now(),
        )
    {
        return Ok(Action::requeue(wait));
    }
    let namespace = pc.namespace().unwrap_or_else(|| "default".into());
    let secret_name = &pc.spec.credentials_secret_ref.name;
    let previous = pc.status.as_ref().and_then(|s| s.protected_secret.as_deref());
    // One read of the Secret serves its protection and the resolve step.
    let secret = super::resolve::credentials_secret(&ctx.client, pc).await;
    // Keep the credentials while this account exists; let go of a Secret no longer used.
    let protection = async {
        let protected = match &secret {
            Ok(secret) => credentials::protect(&ctx.client, secret).await?,
            Err(_) => false,
        };
        if let Some(old) = previous.filter(|old| old != secret_name) {
            credentials::release(&ctx.client, &namespace, &[old], &pc.name_any()).await?;
        }
        Ok::<_, Error>(protected.then(|| secret_name.clone()))
    }
    .await;
    let mut status = pc.status.clone().unwrap_or_default();
    let result = match protection {
        Err(e) => Err(e),
        Ok(protected) => {
            status.protected_secret = protected;
            async {
                let provider = ctx.providers.with_secret(pc, &secret?)?;
                let info = provider.account.verify().await.map_err(|source| Error::Verify {
                    name: pc.name_any(),
                    source,
                })?;
                Ok::<_, Error>((provider.endpoint.clone(), info))
            }
            .await
        }
    };
    status.observed_generation = generation;
    status.last_checked_time = Some(ctx.clock.now());
    status.endpoint = Some(pc.spec.endpoint_or_default());
    let was_ready = conditions::is_true(&status.conditions, READY);
    match result {
        Ok((endpoint, info)) => {
            ctx.reset_backoff(&key_of(pc));
            status.endpoint = Some(endpoint);
            status.account = info.account;
            status.conditions = conditions::merge(
                &status.conditions,
                vec![Condition::new(
                    READY,
                    ConditionStatus::True,
                    Reason::Authenticated,
                    "the credentials authenticate at the vendor",
                    generation,
                )],
            );
            write(ctx, pc, &status).await?;
            if !was_ready {
                event(
                    ctx,
                    pc,
                    EventType::Normal,
                    Reason::Authenticated,
                    "Verify",
                    format!("credentials accepted by {}", pc.spec.vendor),
                )
                .await;
            }
            Ok(Action::requeue(resync))
        }
        Err(err) => {
            status.conditions = conditions::merge(
                &status.conditions,
                vec![Condition::new(
                    READY,
                    ConditionStatus::False,
                    err.reason(),
                    err.to_string(),
                    generation,
                )],
            );
            if let Err(e) = write(ctx, pc, &status).await {
                tracing::warn!(error = %e, "failed to record the failure in status");
            }
            event(ctx, pc, EventType::Warning, err.reason(), "Verify", err.to_string()).await;
            Err(err)
        }
    }
}

async fn cleanup(pc: &ProviderConfig, ctx: &Context) -> Result<Action, Error> {
    let namespace = pc.namespace().unwrap_or_else(|| "default".into());
    let name = pc.name_any();
    let list_error = |source| Error::ListUsers {
        name: name.clone(),
        source,
    };
    let profiles: Api<ServiceProfile> = Api::namespaced(ctx.client.clone(), &namespace);
    let subscriptions: Api<ConnectivitySubscription> = Api::namespaced(ctx.client.clone(), &namespace);
    let mut users: Vec<String> = profiles
        .list(&ListParams::default())
        .await
        .map_err(list_error)?
        .items
        .into_iter()
        .filter(|sp| sp.spec.provider_config_ref.name == name)
        .map(|sp| format!("ServiceProfile {}", sp.name_any()))
        .collect();
    // Subscriptions too: their `Deactivate` deletion policy needs the account.
    users.extend(
        subscriptions
            .list(&ListParams::default())
            .await
            .map_err(list_error)?
            .items
            .into_iter()
            .filter(|c| c.spec.provider_config_ref.name == name)
            .map(|c| format!("ConnectivitySubscription {}", c.name_any())),
    );
    if !users.is_empty() {
        let err = Error::InUse {
            name: name.clone(),
            users: users.join(", "),
        };
        let mut status = pc.status.clone().unwrap_or_default();
        status.conditions = conditions::merge(
            &status.conditions,
            vec![Condition::new(
                READY,
                ConditionStatus::False,
                Reason::InUse,
                err.to_string(),
                pc.metadata.generation,
            )],
        );
        if let Err(e) = write(ctx, pc, &status).await {
            tracing::warn!(error = %e, "failed to record the failure in status");
        }
        event(ctx, pc, EventType::Warning, Reason::InUse, "Delete", err.to_string()).await;
        return Err(err);
    }
    // Nothing needs the credentials any more (unless another ProviderConfig shares them).
    let mut secrets = vec![pc.spec.credentials_secret_ref.name.as_str()];
    secrets.extend(pc.status.as_ref().and_then(|s| s.protected_secret.as_deref()));
    secrets.dedup();
    credentials::release(&ctx.client, &namespace, &secrets, &name).await?;
    ctx.providers.forget(&namespace, &name);
    Ok(Action::await_change())
}

async fn write(ctx: &Context, pc: &ProviderConfig, status: &crate::crd::ProviderConfigStatus) -> Result<(), Error> {
    apply_status(ctx, pc, status)
        .await
        .map_err(|source| Error::WriteStatus {
            name: pc.name_any(),
            source,
        })
}
