//! BICS-shaped answers: the `{"Response": {...}}` envelope of spec §1.2 and the result codes.
//!
//! Handlers return an [`Answer`]; the request pipeline may replace its result code (injected
//! "verify completion" faults) before [`Answer::render`] stamps `responseId` and
//! `responseTimestamp` and turns it into an HTTP response. Every scalar goes out as a string.

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

/// `resultParam.resultCode` values. Documented ones first; the synthetic ones (our choice where
/// BICS documents nothing) are listed in the crate README as such.
pub(crate) mod codes {
    /// Access token invalid or expired (HTTP 200 + top-level "1" by default) [CODE].
    pub const TOKEN: &str = "401";
    pub const SP_CREATED: &str = "1323";
    pub const SP_CREATE_FAILED: &str = "1324";
    pub const SP_MODIFIED: &str = "1325";
    pub const SP_MODIFY_FAILED: &str = "1326";
    pub const SP_DELETED: &str = "1329";
    pub const SP_DELETE_FAILED: &str = "1330";
    pub const SP_GET_OK: &str = "1331";
    /// Service profile attached to a plan; delete refused.
    pub const SP_ATTACHED: &str = "1338";
    /// No data available: the target id of a read, modify, delete or action does not exist.
    pub const NO_DATA: &str = "1359";
    pub const DUPLICATE_NAME: &str = "6554";
    pub const INVALID_CHILD_CONFIG: &str = "6565";
    /// Service profile change denied due to RAT privileges conflict (refused RAT downgrade).
    pub const RAT_CONFLICT: &str = "10085";
    /// Service modification not allowed for addon service.
    pub const ADDON_SERVICE: &str = "10100";
    pub const OBSOLETE_ACCESS_TYPE: &str = "10111";
    pub const VERIFY_FAILED: &str = "10239";
    pub const VERIFY_TIMEOUT: &str = "10240";
    pub const ALREADY_ACTIVE: &str = "2507";
    pub const ENDPOINT_ACTIVATED: &str = "5014";
    pub const LIFECYCLE_CHANGED: &str = "5017";
    pub const SIM_DELINKED: &str = "6413";
    pub const SIM_NOT_ATTACHED: &str = "6420";
    pub const PLAN_CHANGED: &str = "7001";
    pub const ENDPOINT_DELETED: &str = "10159";

    // --- synthetic
    /// Success of an API whose real success code is unknown.
    pub const OK: &str = "99000";
    /// Malformed body, missing mandatory field or invalid value, for APIs without a documented
    /// failure code.
    pub const INVALID_REQUEST: &str = "99001";
    /// The request is well-formed but the current state forbids it (SIM busy, plan in use, ...).
    pub const CONFLICT: &str = "99002";
    /// `POST /api/login` with wrong or missing credentials.
    pub const LOGIN_FAILED: &str = "99003";
    /// `POST /api/login` with a `targetAccountId` that is not the account or one of its children.
    pub const UNKNOWN_TARGET: &str = "99004";
    /// `X-Requested-With: XMLHttpRequest` missing while the strictness flag is on (HTTP 403).
    pub const FORBIDDEN: &str = "403";
    /// No such API (HTTP 404) or wrong method (HTTP 405).
    pub const NO_SUCH_API: &str = "404";
    pub const WRONG_METHOD: &str = "405";
    /// Per-account rate limit exceeded (HTTP 429).
    pub const RATE_LIMITED: &str = "429";
}

/// What a handler decided; rendered at the edge.
#[derive(Debug, Clone)]
pub(crate) struct Answer {
    pub status: u16,
    pub body: AnswerBody,
}

#[derive(Debug, Clone)]
pub(crate) enum AnswerBody {
    /// The §1.2 envelope; `extra` holds keys placed directly under `Response`.
    Envelope {
        success: bool,
        code: String,
        description: String,
        extra: Map<String, Value>,
    },
    /// An un-enveloped body (login and refresh answer `{AccessToken, RefreshToken}`).
    Raw(Value),
}

impl Answer {
    /// `Response.resultCode "0"` with `code` as `resultParam.resultCode`.
    pub fn ok(code: &str, description: impl Into<String>) -> Self {
        Self::envelope(true, code, description.into())
    }

    /// `Response.resultCode "1"`; HTTP 200 like every BICS business error.
    pub fn fail(code: &str, description: impl Into<String>) -> Self {
        Self::envelope(false, code, description.into())
    }

    fn envelope(success: bool, code: &str, description: String) -> Self {
        Self {
            status: 200,
            body: AnswerBody::Envelope {
                success,
                code: code.to_string(),
                description,
                extra: Map::new(),
            },
        }
    }

    pub fn raw(body: Value) -> Self {
        Self {
            status: 200,
            body: AnswerBody::Raw(body),
        }
    }

    pub fn with_status(mut self, status: u16) -> Self {
        self.status = status;
        self
    }

    /// Adds `key` directly under `Response` (e.g. `serviceProfile`, `endPointId`, `info`).
    pub fn with(mut self, key: &str, value: Value) -> Self {
        if let AnswerBody::Envelope { extra, .. } = &mut self.body {
            extra.insert(key.to_string(), value);
        }
        self
    }

    /// `Response.responseParam.rows`, the list form of every read.
    pub fn rows(self, rows: Vec<Value>) -> Self {
        self.with("responseParam", json!({ "rows": rows }))
    }

    /// The JSON body with `responseId` and `responseTimestamp` filled in.
    pub fn to_json(&self, response_id: &str, timestamp: &str) -> Value {
        match &self.body {
            AnswerBody::Raw(v) => v.clone(),
            AnswerBody::Envelope {
                success,
                code,
                description,
                extra,
            } => {
                let mut resp = extra.clone();
                resp.insert("resultCode".into(), json!(if *success { "0" } else { "1" }));
                resp.insert("responseId".into(), json!(response_id));
                resp.insert("responseTimestamp".into(), json!(timestamp));
                resp.insert(
                    "resultParam".into(),
                    json!({"resultCode": code, "resultDescription": description}),
                );
                json!({ "Response": resp })
            }
        }
    }

    pub fn render(&self, response_id: &str, timestamp: &str) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut resp = (status, self.to_json(response_id, timestamp).to_string()).into_response();
        resp.headers_mut().insert(
            axum::http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        resp
    }
}

/// Plain JSON for the `/_sim/` admin routes (no envelope).
pub(crate) fn admin_json(status: u16, body: Value) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut resp = (status, body.to_string()).into_response();
    resp.headers_mut().insert(
        axum::http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_has_string_codes_and_ids() {
        let a = Answer::fail(codes::DUPLICATE_NAME, "dup").with("serviceProfile", json!("SP_1"));
        let v = a.to_json("42", "2024-01-01T00:00:00.000Z");
        assert_eq!(v["Response"]["resultCode"], "1");
        assert_eq!(v["Response"]["responseId"], "42");
        assert_eq!(v["Response"]["resultParam"]["resultCode"], "6554");
        assert_eq!(v["Response"]["serviceProfile"], "SP_1");
        let raw = Answer::raw(json!({"AccessToken": "a"}));
        assert_eq!(raw.to_json("1", "t"), json!({"AccessToken": "a"}));
    }
}
