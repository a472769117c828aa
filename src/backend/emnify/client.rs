//! emnify HTTP client: authentication (application token, or user + password with refresh
//! token), a token cached until its JWT `exp`, one re-authentication on 401, the client-side rate
//! limit, paging by `X-Total-Pages`, and mapping of HTTP answers onto [`ErrorKind`]s.
//! Tokens and passwords are [`SecretString`]s: they never reach logs, `Debug` or errors.

use std::time::Duration;

use base64::Engine;
use chrono::{DateTime, Utc};
use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use sha1::{Digest, Sha1};
use tokio::sync::Mutex;

use super::api::{AuthResponse, ErrorBody};
pub use crate::backend::http::Answer;
use crate::backend::http::{HttpCore, kind_for_status};
use crate::backend::{BackendError, ErrorKind, SecretString};
use crate::metrics::Metrics;

/// Vendor label in metrics and logs.
pub const VENDOR: &str = "emnify";

/// At most this many pages in one listing (25 million SIMs at emnify's 2,500 a page): a vendor
/// that never ends a listing cannot keep a sweep running forever.
const MAX_PAGES: u64 = 10_000;

/// How the client logs in.
#[derive(Clone, Debug)]
pub enum Credentials {
    /// Application token (recommended for machines): no refresh token, re-authenticate near `exp`.
    ApplicationToken(SecretString),
    /// User login; `password` is the plain password, sent as its SHA-1 hex digest as emnify requires.
    User { username: String, password: SecretString },
}

/// Connection settings for one emnify account.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// Base URL playing the role of `https://cdn.emnify.net` (no `/api/v1`).
    pub base_url: String,
    pub credentials: Credentials,
    /// Client-side token bucket: requests per second and burst.
    pub requests_per_second: f64,
    pub burst: u32,
    /// Per-request timeout.
    pub timeout: Duration,
}

#[derive(Default)]
struct TokenState {
    auth: Option<(SecretString, Option<DateTime<Utc>>)>,
    refresh: Option<SecretString>,
}

/// HTTP client for one emnify account.
pub struct EmnifyClient {
    core: HttpCore,
    credentials: Credentials,
    tokens: Mutex<TokenState>,
}

impl std::fmt::Debug for EmnifyClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmnifyClient")
            .field("base", &self.core.base_url())
            .field("credentials", &self.credentials)
            .finish()
    }
}

impl EmnifyClient {
    pub fn new(config: ClientConfig, metrics: Option<Metrics>) -> Result<Self, BackendError> {
        Ok(EmnifyClient {
            core: HttpCore::new(
                VENDOR,
                &config.base_url,
                config.requests_per_second,
                config.burst,
                config.timeout,
                metrics,
            )?,
            credentials: config.credentials,
            tokens: Mutex::new(TokenState::default()),
        })
    }

    /// Requests sent so far (including authentication).
    pub fn requests_sent(&self) -> u64 {
        self.core.requests_sent()
    }

    pub fn base_url(&self) -> &str {
        self.core.base_url()
    }

    /// Account name from the current token's `esc.orgName` claim, when present.
    pub async fn account_name(&self) -> Result<Option<String>, BackendError> {
        let token = self.auth_token().await?;
        Ok(jwt_claims(token.expose()).and_then(|c| c.get("esc.orgName").and_then(Value::as_str).map(str::to_string)))
    }

    /// A valid auth token: the cached one until 60 s before its `exp`, else a new one.
    pub async fn auth_token(&self) -> Result<SecretString, BackendError> {
        let mut state = self.tokens.lock().await;
        if let Some((token, exp)) = &state.auth {
            // `exp` is vendor input: checked arithmetic, so a token dated at the edge of time
            // counts as expired instead of panicking.
            let fresh = exp.is_none_or(|exp| {
                exp.checked_sub_signed(chrono::Duration::seconds(60))
                    .is_some_and(|renew_at| renew_at > Utc::now())
            });
            if fresh {
                return Ok(token.clone());
            }
        }
        state.auth = None;
        if let Some(refresh) = state.refresh.take() {
            match self.authenticate(json!({ "refresh_token": refresh.expose() })).await {
                Ok(resp) => return Ok(self.store(&mut state, resp, Some(refresh))),
                // An expired or revoked refresh token: fall back to a full login.
                Err(e) if e.kind == ErrorKind::Unauthorized => {}
                Err(e) => return Err(e),
            }
        }
        let body = match &self.credentials {
            Credentials::ApplicationToken(token) => json!({ "application_token": token.expose() }),
            Credentials::User { username, password } => {
                json!({ "username": username, "password": hex::encode(Sha1::digest(password.expose().as_bytes())) })
            }
        };
        let resp = self.authenticate(body).await?;
        Ok(self.store(&mut state, resp, None))
    }

    fn store(&self, state: &mut TokenState, resp: AuthResponse, old_refresh: Option<SecretString>) -> SecretString {
        let token = SecretString::new(resp.auth_token.unwrap_or_default());
        let exp = jwt_claims(token.expose())
            .and_then(|c| c.get("exp")?.as_i64())
            .and_then(|e| DateTime::from_timestamp(e, 0));
        state.auth = Some((token.clone(), exp));
        state.refresh = resp.refresh_token.map(SecretString::new).or(old_refresh);
        token
    }

    async fn authenticate(&self, body: Value) -> Result<AuthResponse, BackendError> {
        const ACTION: &str = "authenticate at emnify";
        let answer = self
            .exchange(
                None,
                "authenticate",
                Method::POST,
                "/api/v1/authenticate",
                None,
                Some(&body),
                ACTION,
            )
            .await?;
        let resp: AuthResponse = answer.json(ACTION)?;
        if resp.mfa_token.is_some() && resp.auth_token.is_none() {
            return Err(BackendError::new(
                ACTION,
                ErrorKind::Unauthorized,
                "the user has multi-factor authentication enabled; use an application token",
            ));
        }
        if resp.auth_token.as_deref().is_none_or(str::is_empty) {
            return Err(BackendError::new(
                ACTION,
                ErrorKind::Transient,
                "answer has no auth_token",
            ));
        }
        Ok(resp)
    }

    async fn invalidate(&self, used: &SecretString) {
        let mut state = self.tokens.lock().await;
        if state.auth.as_ref().is_some_and(|(t, _)| t == used) {
            state.auth = None;
        }
    }

    /// Make an authenticated call; on 401 re-authenticate once and replay.
    pub async fn call(
        &self,
        operation: &str,
        method: Method,
        path: &str,
        query: Option<&[(&str, String)]>,
        body: Option<&Value>,
        action: &str,
    ) -> Result<Answer, BackendError> {
        let mut replayed = false;
        loop {
            let token = self.auth_token().await?;
            match self
                .exchange(Some(&token), operation, method.clone(), path, query, body, action)
                .await
            {
                Err(e) if e.kind == ErrorKind::Unauthorized && !replayed => {
                    tracing::debug!(operation, "emnify answered 401; re-authenticating once");
                    self.invalidate(&token).await;
                    replayed = true;
                }
                other => return other,
            }
        }
    }

    /// GET a paged collection, following `X-Total-Pages` (not `Link`, which emnify sometimes omits).
    pub async fn list_paged<T: DeserializeOwned>(
        &self,
        operation: &str,
        path: &str,
        query: &[(&str, String)],
        per_page: u32,
        action: &str,
    ) -> Result<Vec<T>, BackendError> {
        let mut items = Vec::new();
        self.for_each_page(operation, path, query, per_page, action, |batch: Vec<T>| {
            items.extend(batch)
        })
        .await?;
        Ok(items)
    }

    /// GET a paged collection and hand each page to `visit` as it arrives, so a caller that keeps
    /// only part of each item never holds the whole collection as the vendor sent it.
    pub async fn for_each_page<T: DeserializeOwned>(
        &self,
        operation: &str,
        path: &str,
        query: &[(&str, String)],
        per_page: u32,
        action: &str,
        mut visit: impl FnMut(Vec<T>),
    ) -> Result<(), BackendError> {
        // emnify's docs describe `X-Total-Pages`; its OpenAPI spec declares no paging headers.
        // Without the header the listing ends at an empty page, or at one shorter than the
        // longest seen (a page-size cap below `per_page` is then known).
        let mut longest = 0usize;
        let mut previous: Option<u64> = None;
        for page in 1..=MAX_PAGES {
            let mut q: Vec<(&str, String)> = query.to_vec();
            q.push(("page", page.to_string()));
            q.push(("per_page", per_page.to_string()));
            let answer = self.call(operation, Method::GET, path, Some(&q), None, action).await?;
            let total = answer
                .header_u64("x-total-pages")
                .or_else(|| answer.header_u64("x-pages"));
            // Without the header, a page past the end may repeat the last one (as emnify's
            // listings clamp `page`): the same bytes again end the listing, unvisited.
            if total.is_none() {
                let digest = {
                    let mut h = std::collections::hash_map::DefaultHasher::new();
                    std::hash::Hash::hash(&answer.body[..], &mut h);
                    std::hash::Hasher::finish(&h)
                };
                if previous == Some(digest) {
                    return Ok(());
                }
                previous = Some(digest);
            }
            let batch: Vec<T> = answer.json(action)?;
            let got = batch.len();
            visit(batch);
            let more = match total {
                Some(total) => page < total,
                None => got > 0 && got >= longest,
            };
            if !more || got == 0 {
                return Ok(());
            }
            longest = longest.max(got);
        }
        Err(BackendError::new(
            action,
            ErrorKind::Transient,
            format!("more than {MAX_PAGES} pages: stopped"),
        ))
    }
}

impl EmnifyClient {
    /// One HTTP exchange, with a bearer token or (for `/authenticate`) without.
    #[allow(clippy::too_many_arguments)]
    async fn exchange(
        &self,
        token: Option<&SecretString>,
        operation: &str,
        method: Method,
        path: &str,
        query: Option<&[(&str, String)]>,
        body: Option<&Value>,
        action: &str,
    ) -> Result<Answer, BackendError> {
        let mut req = self.core.request(method, path);
        if let Some(token) = token {
            req = req.bearer_auth(token.expose());
        }
        if let Some(q) = query {
            req = req.query(q);
        }
        if let Some(body) = body {
            req = req.json(body);
        }
        self.core.send(operation, action, req, error_for).await
    }
}

/// Map an error answer onto the contract's kinds: by HTTP status first, the body only as detail.
pub fn error_for(action: &str, status: StatusCode, headers: &HeaderMap, body: &[u8]) -> BackendError {
    let parsed: ErrorBody = serde_json::from_slice(body).unwrap_or_default();
    let detail = parsed.summary();
    let message = if detail.is_empty() {
        format!("HTTP {}", status.as_u16())
    } else {
        format!("HTTP {}: {detail}", status.as_u16())
    };
    let kind = kind_for_status(status, headers);
    BackendError::new(action, kind, message)
}

/// Claims of a JWT, decoded without verification (we only need `exp` and the org name).
pub fn jwt_claims(token: &str) -> Option<serde_json::Map<String, Value>> {
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    match serde_json::from_slice(&bytes).ok()? {
        Value::Object(map) => Some(map),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::RETRY_AFTER;

    #[test]
    fn jwt_exp_is_read_without_verification() {
        let payload =
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(r#"{"exp":1700000000,"esc.orgName":"Acme"}"#);
        let claims = jwt_claims(&format!("eyJhbGciOiJIUzM4NCJ9.{payload}.sig")).unwrap();
        assert_eq!(claims["exp"], 1700000000);
        assert_eq!(claims["esc.orgName"], "Acme");
        assert!(jwt_claims("None").is_none());
    }

    #[test]
    fn statuses_map_onto_kinds() {
        let h = HeaderMap::new();
        assert_eq!(error_for("x", StatusCode::CONFLICT, &h, b"").kind, ErrorKind::Conflict);
        assert_eq!(
            error_for("x", StatusCode::NOT_FOUND, &h, b"<html>").kind,
            ErrorKind::NotFound
        );
        assert_eq!(
            error_for("x", StatusCode::UNPROCESSABLE_ENTITY, &h, b"").kind,
            ErrorKind::Invalid
        );
        assert_eq!(
            error_for("x", StatusCode::BAD_GATEWAY, &h, b"").kind,
            ErrorKind::Transient
        );
        let mut h429 = HeaderMap::new();
        h429.insert(RETRY_AFTER, "7".parse().unwrap());
        assert_eq!(
            error_for("x", StatusCode::TOO_MANY_REQUESTS, &h429, b"").kind,
            ErrorKind::RateLimited {
                retry_after: Some(Duration::from_secs(7))
            }
        );
        let e = error_for(
            "delete emnify service profile 7",
            StatusCode::CONFLICT,
            &h,
            br#"{"error_code":1409,"error_token":"Conflict","message":"in use"}"#,
        );
        assert_eq!(
            e.to_string(),
            "failed to delete emnify service profile 7: HTTP 409: Conflict (1409): in use"
        );
    }
}
