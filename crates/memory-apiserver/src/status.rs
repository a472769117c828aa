//! API errors and their `metav1.Status` wire form.
//!
//! Every rejection the fake makes goes through [`ApiError`], so the HTTP layer renders the same
//! `{kind: Status, status: Failure, reason, code, details}` body the real API server does and
//! `kube::Error::Api` carries the reason callers match on (`NotFound`, `Conflict`, ...).

use serde_json::{Value, json};

use crate::ResourceType;

/// A rejected request, as the real API server would describe it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ApiError {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
    pub details: Option<Value>,
}

impl ApiError {
    fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            reason,
            message: message.into(),
            details: None,
        }
    }

    fn with_details(mut self, details: Value) -> Self {
        self.details = Some(details);
        self
    }

    /// `404 NotFound` for a named object, worded like the real server (`secrets "x" not found`).
    pub fn not_found(rt: &ResourceType, name: &str) -> Self {
        Self::new(404, "NotFound", format!("{} \"{name}\" not found", rt.group_resource()))
            .with_details(identity_details(rt, name))
    }

    /// `404 NotFound` for a path that names no registered resource.
    pub fn unknown_path() -> Self {
        Self::new(404, "NotFound", "the server could not find the requested resource")
            .with_details(json!({"causes": [{"reason": "UnexpectedServerResponse", "message": "404 page not found"}]}))
    }

    pub fn already_exists(rt: &ResourceType, name: &str) -> Self {
        Self::new(
            409,
            "AlreadyExists",
            format!("{} \"{name}\" already exists", rt.group_resource()),
        )
        .with_details(identity_details(rt, name))
    }

    /// `409 Conflict` for a stale `resourceVersion` (optimistic concurrency).
    pub fn stale(rt: &ResourceType, name: &str) -> Self {
        Self::conflict(
            rt,
            name,
            "the object has been modified; please apply your changes to the latest version and try again",
        )
    }

    pub fn conflict(rt: &ResourceType, name: &str, why: &str) -> Self {
        Self::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {} \"{name}\": {why}",
                rt.group_resource()
            ),
        )
        .with_details(identity_details(rt, name))
    }

    /// `409 Conflict` from server-side apply: another manager owns a field with another value.
    pub fn apply_conflict(rt: &ResourceType, name: &str, message: String, causes: Value) -> Self {
        let mut details = identity_details(rt, name);
        details["causes"] = causes;
        Self::new(409, "Conflict", message).with_details(details)
    }

    /// `422 Invalid` with one field cause, e.g. `metadata.name: Required value`.
    pub fn invalid(rt: &ResourceType, name: &str, field: &str, why: &str) -> Self {
        let group_kind = if rt.group.is_empty() {
            rt.kind.clone()
        } else {
            format!("{}.{}", rt.kind, rt.group)
        };
        let mut details = identity_details(rt, name);
        details["kind"] = json!(rt.kind);
        details["causes"] = json!([{"reason": "FieldValueInvalid", "message": why, "field": field}]);
        Self::new(
            422,
            "Invalid",
            format!("{group_kind} \"{name}\" is invalid: {field}: {why}"),
        )
        .with_details(details)
    }

    /// `422 Invalid` as returned for a JSON patch that cannot be applied (failed `test`, bad path).
    pub fn patch_rejected(why: &str) -> Self {
        Self::new(
            422,
            "Invalid",
            format!("the server rejected our request due to an error in our request: {why}"),
        )
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message)
    }

    pub fn method_not_allowed(method: &str) -> Self {
        Self::new(
            405,
            "MethodNotAllowed",
            format!("the server does not allow this method on the requested resource ({method})"),
        )
    }

    pub fn unsupported_media_type(content_type: &str) -> Self {
        Self::new(
            415,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml (got {content_type:?})"
            ),
        )
    }

    /// `410 Expired`: the watch asked for history the fake no longer keeps.
    pub fn gone(message: impl Into<String>) -> Self {
        Self::new(410, "Expired", message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(500, "InternalError", message)
    }

    /// An error injected with `fail_next`; the reason follows the code the way the real server
    /// pairs them, so callers classifying errors by reason see the usual one.
    pub fn injected(code: u16) -> Self {
        let reason = match code {
            400 => "BadRequest",
            401 => "Unauthorized",
            403 => "Forbidden",
            404 => "NotFound",
            405 => "MethodNotAllowed",
            409 => "Conflict",
            410 => "Expired",
            422 => "Invalid",
            429 => "TooManyRequests",
            503 => "ServiceUnavailable",
            504 => "Timeout",
            _ => "InternalError",
        };
        Self::new(code, reason, format!("injected failure ({code} {reason})"))
    }

    /// The `metav1.Status` body.
    pub fn to_status(&self) -> Value {
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if let Some(details) = &self.details {
            status["details"] = details.clone();
        }
        status
    }
}

/// `details` naming the object, as in real `Status` responses (`kind` holds the plural there).
fn identity_details(rt: &ResourceType, name: &str) -> Value {
    json!({"name": name, "group": rt.group, "kind": rt.plural})
}

/// The `Status` a successful immediate delete returns.
pub(crate) fn delete_success(rt: &ResourceType, name: &str, uid: &str) -> Value {
    json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "details": {"name": name, "group": rt.group, "kind": rt.plural, "uid": uid},
    })
}
