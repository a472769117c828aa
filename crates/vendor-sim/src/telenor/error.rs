//! Telenor-shaped HTTP replies and errors.
//!
//! Every handler returns `Result<Reply, ApiError>`; both become an axum response at the edge.
//! API errors use the single body of spec §6 (`{name, message, errors[{message, errorCode, path?}]}`);
//! only the token endpoint, which is our own invention (spec §1), answers OAuth2-style
//! `{"error": ...}` bodies. Every answer carries the CORS headers the portal documents.

use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// A successful answer.
#[derive(Debug)]
pub(crate) struct Reply {
    pub status: u16,
    pub body: Option<Value>,
    /// Already serialised JSON, sent instead of `body` (search pages).
    pub raw: Option<String>,
    pub headers: Vec<(&'static str, String)>,
}

impl Reply {
    pub fn json(body: Value) -> Self {
        Self {
            status: 200,
            body: Some(body),
            raw: None,
            headers: Vec::new(),
        }
    }

    /// `200` with a body serialised by the caller.
    pub fn raw_json(body: String) -> Self {
        Self {
            status: 200,
            body: None,
            raw: Some(body),
            headers: Vec::new(),
        }
    }

    pub fn with_status(status: u16, body: Value) -> Self {
        Self {
            status,
            body: Some(body),
            raw: None,
            headers: Vec::new(),
        }
    }

    /// `202` with no body: how the async writes of spec §4 answer.
    pub fn accepted() -> Self {
        Self::empty(202)
    }

    pub fn empty(status: u16) -> Self {
        Self {
            status,
            body: None,
            raw: None,
            headers: Vec::new(),
        }
    }
}

/// An error answer; `body` is the exact JSON sent.
#[derive(Debug)]
pub(crate) struct ApiError {
    pub status: u16,
    pub body: Value,
    pub headers: Vec<(&'static str, String)>,
}

impl ApiError {
    /// The §6 body with no item in `errors`.
    pub fn plain(status: u16, name: &str, message: impl Into<String>) -> Self {
        Self {
            status,
            body: json!({"name": name, "message": message.into(), "errors": []}),
            headers: Vec::new(),
        }
    }

    /// The §6 body with one item in `errors`; `path` names the offending input when there is one.
    pub fn detailed(status: u16, name: &str, message: impl Into<String>, error_code: &str, path: Option<&str>) -> Self {
        let message = message.into();
        let mut item = json!({"message": message, "errorCode": error_code});
        if let Some(p) = path {
            item["path"] = Value::String(p.to_string());
        }
        Self {
            status,
            body: json!({"name": name, "message": message, "errors": [item]}),
            headers: Vec::new(),
        }
    }

    /// 400 for a value that breaks a documented regex or enum; `path` is the parameter name.
    pub fn invalid(path: &str, message: impl Into<String>) -> Self {
        Self::detailed(400, "BadRequest", message, "INVALID_FORMAT", Some(path))
    }

    /// 400 for a change the subscription's current mode does not allow.
    pub fn invalid_transition(path: Option<&str>, message: impl Into<String>) -> Self {
        Self::detailed(400, "BadRequest", message, "INVALID_STATE_TRANSITION", path)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::detailed(404, "NotFound", message, "NOT_FOUND", None)
    }

    /// 401 with the body the simulator spec fixes for any invalid, expired or missing token.
    pub fn unauthorized() -> Self {
        Self::plain(401, "Unauthorized", "Your token is not valid.")
    }

    /// 429 from the per-token bucket, with our `Retry-After: 1`.
    pub fn rate_limited() -> Self {
        let mut e = Self::plain(429, "RateLimitError", "Too Many Requests.");
        e.headers.push(("retry-after", "1".to_string()));
        e
    }

    /// OAuth2 (RFC 6749 §5.2) error of the token endpoint.
    pub fn oauth(status: u16, error: &str, description: &str) -> Self {
        let mut e = Self {
            status,
            body: json!({"error": error, "error_description": description}),
            headers: Vec::new(),
        };
        if status == 401 {
            e.headers
                .push(("www-authenticate", "Basic realm=\"iot-connect\"".to_string()));
        }
        e
    }

    /// The answer of an injected fault: the §6 body named after the status.
    pub fn injected(status: u16) -> Self {
        let name = match status {
            400 => "BadRequest",
            401 => "Unauthorized",
            403 => "Forbidden",
            404 => "NotFound",
            429 => "RateLimitError",
            500 => "InternalServerError",
            502 => "BadGateway",
            503 => "ServiceUnavailable",
            504 => "GatewayTimeout",
            _ => "Error",
        };
        let reason = StatusCode::from_u16(status)
            .ok()
            .and_then(|s| s.canonical_reason())
            .unwrap_or("Injected fault");
        Self::plain(status, name, format!("{reason}."))
    }
}

pub(crate) type ApiResult = Result<Reply, ApiError>;

fn build(status: u16, body: Option<String>, headers: Vec<(&'static str, String)>) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let has_body = body.is_some();
    let mut resp = (status, body.unwrap_or_default()).into_response();
    let h = resp.headers_mut();
    if has_body {
        h.insert(
            axum::http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
    } else {
        h.remove(axum::http::header::CONTENT_TYPE);
    }
    // Documented on every response of the portal pages (spec §0).
    h.insert("access-control-allow-origin", HeaderValue::from_static("*"));
    h.insert(
        "access-control-allow-methods",
        HeaderValue::from_static("GET,POST,PUT,DELETE,OPTIONS"),
    );
    h.insert(
        "access-control-allow-headers",
        HeaderValue::from_static("Authorization,Content-Type"),
    );
    for (name, value) in headers {
        if let Ok(v) = HeaderValue::from_str(&value) {
            h.append(HeaderName::from_static(name), v);
        }
    }
    resp
}

impl IntoResponse for Reply {
    fn into_response(self) -> Response {
        let body = self.raw.or_else(|| self.body.map(|v| v.to_string()));
        build(self.status, body, self.headers)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        build(self.status, Some(self.body.to_string()), self.headers)
    }
}
