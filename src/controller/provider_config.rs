//! ProviderConfig steps for the [managed reconciler](super::managed): resolve (Secret ->
//! credentials -> backend; the Secret is protected by a finalizer while this account exists) ->
//! observe (authenticate at the vendor) -> plan (what status records) -> act. Its finalizer keeps
//! a ProviderConfig alive while ServiceProfiles or subscriptions still reference it, so their
//! vendor objects can still be deleted.

use std::sync::Arc;

use kube::api::ListParams;
use kube::runtime::events::EventType;
use kube::{Api, ResourceExt};

use super::Context;
use super::credentials::{self, CredentialsError};
use super::managed::{self, Cleaned, Facts, Managed, Outcome, StepError};
use super::resolve::{Provider, ResolveError};
use super::status::event;
use crate::backend::{AccountInfo, BackendError, ErrorKind};
use crate::crd::conditions::{self, READY};
use crate::crd::{ConnectivitySubscription, ProviderConfig, ProviderConfigStatus, ServiceProfile};
use crate::reason::Reason;

crate::managed_status!(ProviderConfigStatus, last_checked_time);

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
}

impl StepError for Error {
    fn reason(&self) -> Reason {
        match self {
            Error::Resolve(e) => e.reason(),
            Error::Verify { source, .. } => match source.kind {
                ErrorKind::Unauthorized => Reason::CredentialsRejected,
                _ => source.kind.reason(),
            },
            Error::InUse { .. } => Reason::InUse,
            Error::ListUsers { .. } | Error::Credentials(_) => Reason::KubernetesApiError,
        }
    }

    fn backend(&self) -> Option<&BackendError> {
        match self {
            Error::Verify { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// What act records: where the account is and what the vendor says it is.
pub struct Record {
    pub endpoint: String,
    pub info: AccountInfo,
}

impl Managed for ProviderConfig {
    type Status = ProviderConfigStatus;
    type Resolved = Arc<Provider>;
    type Observed = AccountInfo;
    type Plan = Record;
    type Error = Error;

    fn status(&self) -> Option<&ProviderConfigStatus> {
        self.status.as_ref()
    }

    fn account(&self) -> Option<&str> {
        None
    }

    /// A ProviderConfig is ready only while its credentials work: any failure says it is not.
    fn failure_clears_ready(&self, _err: &Error) -> bool {
        true
    }

    /// The credentials Secret, protected while this account exists (a Secret no longer used
    /// is let go), and the backend built from it. One read of the Secret serves both.
    async fn resolve(&self, ctx: &Context, status: &mut ProviderConfigStatus) -> Result<Arc<Provider>, Error> {
        status.endpoint = Some(self.spec.endpoint_or_default());
        let secret_name = &self.spec.credentials_secret_ref.name;
        let previous = self.status.as_ref().and_then(|s| s.protected_secret.as_deref());
        let secret = super::resolve::credentials_secret(&ctx.client, self).await;
        let protected = match &secret {
            Ok(secret) => credentials::protect(&ctx.client, secret).await?,
            Err(_) => false,
        };
        if let Some(old) = previous.filter(|old| old != secret_name) {
            credentials::release(&ctx.client, &managed::namespace(self), &[old], &self.name_any()).await?;
        }
        status.protected_secret = protected.then(|| secret_name.clone());
        Ok(ctx.providers.with_secret(self, &secret?)?)
    }

    /// Authenticate at the vendor.
    async fn observe(&self, _ctx: &Context, provider: &Arc<Provider>) -> Result<AccountInfo, Error> {
        provider.account.verify().await.map_err(|source| Error::Verify {
            name: self.name_any(),
            source,
        })
    }

    fn plan(facts: Facts<'_, Self>) -> Record {
        Record {
            endpoint: facts.resolved.endpoint.clone(),
            info: facts.observed,
        }
    }

    async fn act(
        &self,
        ctx: &Context,
        _provider: Arc<Provider>,
        record: Record,
        status: &mut ProviderConfigStatus,
    ) -> Result<Outcome, Error> {
        status.endpoint = Some(record.endpoint);
        status.account = record.info.account;
        let was_ready = self
            .status
            .as_ref()
            .is_some_and(|s| conditions::is_true(&s.conditions, READY));
        if !was_ready {
            let note = format!("credentials accepted by {}", self.spec.vendor);
            event(ctx, self, EventType::Normal, Reason::Authenticated, "Verify", note).await;
        }
        Ok(Outcome::ready(
            Reason::Authenticated,
            "the credentials authenticate at the vendor",
        ))
    }

    async fn delete(&self, ctx: &Context) -> Result<Cleaned, Error> {
        cleanup(self, ctx).await
    }

    fn left_behind(&self) -> String {
        "the account".into()
    }
}

/// Refused while objects still use the account; then the credentials are let go.
async fn cleanup(pc: &ProviderConfig, ctx: &Context) -> Result<Cleaned, Error> {
    let namespace = managed::namespace(pc);
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
        return Err(Error::InUse {
            name: name.clone(),
            users: users.join(", "),
        });
    }
    // Nothing needs the credentials any more (unless another ProviderConfig shares them).
    let mut secrets = vec![pc.spec.credentials_secret_ref.name.as_str()];
    secrets.extend(pc.status.as_ref().and_then(|s| s.protected_secret.as_deref()));
    secrets.dedup();
    credentials::release(&ctx.client, &namespace, &secrets, &name).await?;
    ctx.providers.forget(&namespace, &name);
    Ok(None)
}
