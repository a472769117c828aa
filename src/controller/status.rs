//! Status step and events: status is written with server-side apply under one field manager on
//! the status subresource (the operator never writes `spec`); events go through the bounded
//! [`super::events::EventRecorder`].

use kube::api::{Patch, PatchParams};
use kube::runtime::events::{Event, EventType};
use kube::{Api, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::json;

use super::{Context, FIELD_MANAGER};
use crate::reason::Reason;

/// Server-side apply `status` on the status subresource of `obj`.
pub async fn apply_status<K, S>(ctx: &Context, obj: &K, status: &S) -> Result<(), kube::Error>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug,
    S: Serialize,
{
    let api: Api<K> = Api::namespaced(ctx.client.clone(), &obj.namespace().unwrap_or_default());
    let body = json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "status": status,
    });
    api.patch_status(
        &obj.name_any(),
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&body),
    )
    .await
    .map(drop)
}

/// Publish an event about `obj`; failures are logged, never fatal (events are best effort).
pub async fn event<K>(ctx: &Context, obj: &K, type_: EventType, reason: Reason, action: &str, note: impl Into<String>)
where
    K: Resource<DynamicType = ()>,
{
    let mut note: String = note.into();
    if note.len() > 1000 {
        let mut cut = 1000;
        while !note.is_char_boundary(cut) {
            cut -= 1;
        }
        note.truncate(cut);
    }
    let ev = Event {
        type_,
        reason: reason.as_str().into(),
        note: Some(note),
        action: action.into(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&ev, &obj.object_ref(&())).await {
        // A namespace being deleted takes no new objects, Events included; its objects' cleanup
        // still runs and says what it did in the log.
        if namespace_terminating(&e) {
            tracing::debug!(%reason, "namespace is terminating: event not recorded");
            return;
        }
        tracing::warn!(error = %e, %reason, "failed to publish event");
    }
}

/// Whether the apiserver refused a create because the namespace is being deleted.
fn namespace_terminating(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(status) if status.code == 403
        && status.details.as_ref().is_some_and(|d| d.causes.iter().any(|c| c.reason == "NamespaceTerminating")))
}
