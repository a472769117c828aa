//! Credentials protection: a finalizer on each ProviderConfig's credentials Secret for as long as
//! the ProviderConfig exists. Deleting a namespace (or an Argo CD application) deletes everything
//! in it at once; without the finalizer the Secret goes first and the ServiceProfiles' `Delete`
//! cleanup, which needs the credentials, could never run, leaving the namespace `Terminating`.
//! With it, the Secret stays readable (marked for deletion) until the last ProviderConfig using it
//! is gone, and the deletion policies are honoured at the vendor.
//!
//! The ProviderConfig controller calls [`protect`] on every reconcile (with the Secret its resolve
//! step reads anyway) and [`release`] when the ProviderConfig is deleted or points at another
//! Secret; both are idempotent JSON patches guarded by the Secret's resourceVersion.

use json_patch::jsonptr::PointerBuf;
use json_patch::{AddOperation, PatchOperation, RemoveOperation, TestOperation};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{ListParams, Patch, PatchParams};
use kube::{Api, Client, ResourceExt};

use crate::crd::ProviderConfig;

/// Finalizer the operator puts on credentials Secrets in use.
pub const CREDENTIALS_FINALIZER: &str = "connectivity-operator.dev/credentials-in-use";

#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    #[error("failed to read Secret {namespace}/{name} to release it: {source}")]
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
    #[error("failed to list the ProviderConfigs in {namespace} that may share a Secret: {source}")]
    List { namespace: String, source: kube::Error },
}

/// Puts the finalizer on `secret` unless it is there or the Secret is already being deleted (no
/// finalizer may be added then). Returns whether the Secret carries the finalizer afterwards.
pub async fn protect(client: &Client, secret: &Secret) -> Result<bool, CredentialsError> {
    if secret.finalizers().iter().any(|f| f == CREDENTIALS_FINALIZER) {
        return Ok(true);
    }
    if secret.metadata.deletion_timestamp.is_some() {
        return Ok(false);
    }
    let add = if secret.metadata.finalizers.is_none() {
        PatchOperation::Add(AddOperation {
            path: PointerBuf::from_tokens(["metadata", "finalizers"]),
            value: serde_json::json!([CREDENTIALS_FINALIZER]),
        })
    } else {
        PatchOperation::Add(AddOperation {
            path: PointerBuf::from_tokens(["metadata", "finalizers", "-"]),
            value: CREDENTIALS_FINALIZER.into(),
        })
    };
    patch(client, secret, add, "add").await.map(|()| true)
}

/// Removes the finalizer from each of the Secrets `names` in `namespace` that no ProviderConfig
/// other than `except` (one not yet gone, deleting or not) still uses. A missing Secret is
/// released already.
pub async fn release(client: &Client, namespace: &str, names: &[&str], except: &str) -> Result<(), CredentialsError> {
    let pcs: Api<ProviderConfig> = Api::namespaced(client.clone(), namespace);
    let others = pcs
        .list(&ListParams::default())
        .await
        .map_err(|source| CredentialsError::List {
            namespace: namespace.into(),
            source,
        })?
        .items;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    for name in names {
        if others
            .iter()
            .any(|pc| pc.name_any() != except && pc.spec.credentials_secret_ref.name == *name)
        {
            continue;
        }
        let secret = secrets.get_opt(name).await.map_err(|source| CredentialsError::Get {
            namespace: namespace.into(),
            name: (*name).into(),
            source,
        })?;
        let Some(secret) = secret else { continue };
        let Some(index) = secret.finalizers().iter().position(|f| f == CREDENTIALS_FINALIZER) else {
            continue;
        };
        let remove = PatchOperation::Remove(RemoveOperation {
            path: PointerBuf::from_tokens(["metadata", "finalizers", &index.to_string()]),
        });
        patch(client, &secret, remove, "remove").await?;
    }
    Ok(())
}

async fn patch(
    client: &Client,
    secret: &Secret,
    op: PatchOperation,
    action: &'static str,
) -> Result<(), CredentialsError> {
    let namespace = secret.namespace().unwrap_or_default();
    // The test makes a concurrent change (another finalizer, a rotation) fail the patch instead
    // of the index pointing at the wrong finalizer; the next reconcile reads it again.
    let guard = PatchOperation::Test(TestOperation {
        path: PointerBuf::from_tokens(["metadata", "resourceVersion"]),
        value: secret.resource_version().into(),
    });
    Api::<Secret>::namespaced(client.clone(), &namespace)
        .patch(
            &secret.name_any(),
            &PatchParams::default(),
            &Patch::<()>::Json(json_patch::Patch(vec![guard, op])),
        )
        .await
        .map(drop)
        .map_err(|source| CredentialsError::Patch {
            action,
            namespace,
            name: secret.name_any(),
            source,
        })
}
