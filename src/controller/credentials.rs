//! Credentials protection: a finalizer on each ProviderConfig's credentials Secret for as long as
//! the ProviderConfig exists. Deleting a namespace (or an Argo CD application) deletes everything
//! in it at once; without the finalizer the Secret goes first and the ServiceProfiles' `Delete`
//! cleanup, which needs the credentials, could never run, leaving the namespace `Terminating`.
//! With it, the Secret stays readable (marked for deletion) until the last ProviderConfig using it
//! is gone, and the deletion policies are honoured at the vendor.
//!
//! The ProviderConfig controller calls [`protect`] on every reconcile and [`release`] when the
//! ProviderConfig is deleted or points at another Secret; both are idempotent JSON patches guarded
//! by the Secret's resourceVersion.

use k8s_openapi::api::core::v1::Secret;
use kube::api::{ListParams, Patch, PatchParams};
use kube::{Api, Client, ResourceExt};
use serde_json::json;

use crate::crd::ProviderConfig;

/// Finalizer the operator puts on credentials Secrets in use.
pub const CREDENTIALS_FINALIZER: &str = "connectivity-operator.dev/credentials-in-use";

#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    #[error("failed to read Secret {namespace}/{name} to protect it: {source}")]
    Get {
        namespace: String,
        name: String,
        source: kube::Error,
    },
    #[error("failed to {action} the finalizer {CREDENTIALS_FINALIZER} on Secret {namespace}/{name}: {source}")]
    Patch {
        action: &'static str,
        namespace: String,
        name: String,
        source: kube::Error,
    },
    #[error("failed to list ProviderConfigs in {namespace} sharing Secret {name}: {source}")]
    List {
        namespace: String,
        name: String,
        source: kube::Error,
    },
}

/// Puts the finalizer on `namespace/name` unless it is there, the Secret is missing (resolve
/// reports that) or already being deleted (no finalizer may be added then). Returns whether the
/// Secret carries the finalizer afterwards.
pub async fn protect(client: &Client, namespace: &str, name: &str) -> Result<bool, CredentialsError> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let secret = secrets.get_opt(name).await.map_err(|source| CredentialsError::Get {
        namespace: namespace.into(),
        name: name.into(),
        source,
    })?;
    let Some(secret) = secret else { return Ok(false) };
    if secret.finalizers().iter().any(|f| f == CREDENTIALS_FINALIZER) {
        return Ok(true);
    }
    if secret.metadata.deletion_timestamp.is_some() {
        return Ok(false);
    }
    let add = if secret.metadata.finalizers.is_none() {
        json!({"op": "add", "path": "/metadata/finalizers", "value": [CREDENTIALS_FINALIZER]})
    } else {
        json!({"op": "add", "path": "/metadata/finalizers/-", "value": CREDENTIALS_FINALIZER})
    };
    patch(&secrets, &secret, add, "add").await.map(|()| true)
}

/// Removes the finalizer from `namespace/name` unless another ProviderConfig than `except` (one
/// not yet gone, deleting or not) still uses the Secret. A missing Secret is released already.
pub async fn release(client: &Client, namespace: &str, name: &str, except: &str) -> Result<(), CredentialsError> {
    let pcs: Api<ProviderConfig> = Api::namespaced(client.clone(), namespace);
    let shared = pcs
        .list(&ListParams::default())
        .await
        .map_err(|source| CredentialsError::List {
            namespace: namespace.into(),
            name: name.into(),
            source,
        })?
        .items
        .iter()
        .any(|pc| pc.name_any() != except && pc.spec.credentials_secret_ref.name == name);
    if shared {
        return Ok(());
    }
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let secret = secrets.get_opt(name).await.map_err(|source| CredentialsError::Get {
        namespace: namespace.into(),
        name: name.into(),
        source,
    })?;
    let Some(secret) = secret else { return Ok(()) };
    let Some(index) = secret.finalizers().iter().position(|f| f == CREDENTIALS_FINALIZER) else {
        return Ok(());
    };
    let remove = json!({"op": "remove", "path": format!("/metadata/finalizers/{index}")});
    patch(&secrets, &secret, remove, "remove").await
}

async fn patch(
    secrets: &Api<Secret>,
    secret: &Secret,
    op: serde_json::Value,
    action: &'static str,
) -> Result<(), CredentialsError> {
    // The test makes a concurrent change (another finalizer, a rotation) fail the patch instead
    // of the index pointing at the wrong finalizer; the next reconcile reads it again.
    let ops = json!([{"op": "test", "path": "/metadata/resourceVersion", "value": secret.resource_version()}, op]);
    let patch: json_patch::Patch = serde_json::from_value(ops).expect("a valid JSON patch");
    secrets
        .patch(&secret.name_any(), &PatchParams::default(), &Patch::<()>::Json(patch))
        .await
        .map(drop)
        .map_err(|source| CredentialsError::Patch {
            action,
            namespace: secret.namespace().unwrap_or_default(),
            name: secret.name_any(),
            source,
        })
}
