//! emnify-shaped HTTP replies and errors.
//!
//! Every handler returns `Result<Reply, ApiError>`; both are turned into an axum response at the
//! edge. Error bodies follow spec §2.1 (`{error_code, error_token, message[, errors]}`) except where
//! emnify's API Gateway answers itself (bare `{"message"}`), which the constructors name explicitly.

use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// A successful (or deliberately shaped) HTTP answer.
#[derive(Debug)]
pub(crate) struct Reply {
    pub status: u16,
    pub body: Option<Value>,
    pub headers: Vec<(&'static str, String)>,
}

impl Reply {
    pub fn json(body: Value) -> Self {
        Self {
            status: 200,
            body: Some(body),
            headers: Vec::new(),
        }
    }
    pub fn empty(status: u16) -> Self {
        Self {
            status,
            body: None,
            headers: Vec::new(),
        }
    }
    /// `201` with an empty body and an absolute `Location`, as recorded for endpoint creation.
    pub fn created(location: String) -> Self {
        Self {
            status: 201,
            body: None,
            headers: vec![("location", location)],
        }
    }
    pub fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }
}

/// An error answer; `status` is the HTTP code, `body` the exact JSON emnify (or its gateway) sends.
#[derive(Debug)]
pub(crate) struct ApiError {
    pub status: u16,
    pub body: Option<Value>,
    pub headers: Vec<(&'static str, String)>,
}

impl ApiError {
    pub fn emnify(status: u16, code: i64, token: &str, message: impl Into<String>) -> Self {
        Self {
            status,
            body: Some(json!({"error_code": code, "error_token": token, "message": message.into()})),
            headers: Vec::new(),
        }
    }
    /// 400 1000 BadRequest, e.g. a non-numeric path id (recorded for `PATCH /endpoint/None`).
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::emnify(400, 1000, "BadRequest", message)
    }
    pub fn bad_id(raw: &str) -> Self {
        Self::bad_request(format!(
            "Cannot parse parameter id as Long: For input string: \"{raw}\""
        ))
    }
    /// 404 1201 NotFound with the generic `{resource} with id {id} not found` message.
    pub fn not_found(resource: &str, id: impl std::fmt::Display) -> Self {
        Self::emnify(404, 1201, "NotFound", format!("{resource} with id {id} not found"))
    }
    /// 409 1405 Duplicated.
    pub fn duplicated(message: impl Into<String>) -> Self {
        Self::emnify(409, 1405, "Duplicated", message)
    }
    /// 409 with an invented 1409 Conflict code: emnify documents 409 for state conflicts but not
    /// the code (spec §5.2 [UNK]); clients must match on the HTTP status only.
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::emnify(409, 1409, "Conflict", message)
    }
    /// 422 1400 InputValidationFailed wrapping the individual failures.
    pub fn validation(message: impl Into<String>, errors: Vec<Value>) -> Self {
        Self {
            status: 422,
            body: Some(json!({
                "error_code": 1400,
                "error_token": "InputValidationFailed",
                "message": message.into(),
                "errors": errors,
            })),
            headers: Vec::new(),
        }
    }
    pub fn too_many_requests() -> Self {
        Self::emnify(429, 1105, "TooManyRequests", "Too Many Requests")
    }
    /// An answer produced by the API Gateway in front of emnify: a bare `{"message"}` body and an
    /// `x-amzn-ErrorType` header.
    pub fn gateway(status: u16, message: &str, error_type: &str) -> Self {
        Self {
            status,
            body: Some(json!({"message": message})),
            headers: vec![("x-amzn-errortype", error_type.to_string())],
        }
    }
}

/// Nested error items for the `errors[]` array of a 1400 wrapper.
pub(crate) fn invalid_reference(message: impl Into<String>) -> Value {
    json!({"error_code": 1401, "error_token": "InvalidReference", "message": message.into()})
}
pub(crate) fn required(object: &str, field: &str) -> Value {
    json!({"error_code": 1402, "error_token": "Required", "message": format!("{object} - {field} is required")})
}
pub(crate) fn invalid_format(object: &str, field: &str) -> Value {
    json!({"error_code": 1403, "error_token": "InvalidFormat", "message": format!("{object} - {field} has an invalid format")})
}
pub(crate) fn out_of_range(message: impl Into<String>) -> Value {
    json!({"error_code": 1404, "error_token": "OutOfRange", "message": message.into()})
}

pub(crate) type ApiResult = Result<Reply, ApiError>;

fn build(status: u16, body: Option<Value>, headers: Vec<(&'static str, String)>) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut resp = match body {
        Some(v) => (status, v.to_string()).into_response(),
        None => (status, String::new()).into_response(),
    };
    let h = resp.headers_mut();
    // emnify answers JSON even for empty 201/204 bodies (spec §0).
    h.insert(
        axum::http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.insert("access-control-allow-origin", HeaderValue::from_static("*"));
    for (name, value) in headers {
        if let Ok(v) = HeaderValue::from_str(&value) {
            h.append(HeaderName::from_static(name), v);
        }
    }
    resp
}

impl IntoResponse for Reply {
    fn into_response(self) -> Response {
        build(self.status, self.body, self.headers)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        build(self.status, self.body, self.headers)
    }
}
