//! BICS SIM for Things HTTP client: `POST /api/login` and `GET /api/RefreshToken`, the
//! `X-Authorization: Bearer` and `X-Requested-With: XMLHttpRequest` headers, the
//! `Request.requestParam` / `Response.resultParam` envelopes, result codes mapped onto the
//! contract's kinds, and an expired token seen either as HTTP 401 or as HTTP 200 with inner code
//! `401` (refresh, then log in again).

use std::time::Duration;

use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::sync::Mutex;

use crate::backend::http::{HttpCore, kind_for_status, timed_out};
use crate::backend::{BackendError, ErrorKind, SecretString};
use crate::metrics::Metrics;

pub const VENDOR: &str = "bicsSft";

#[derive(Clone, Debug)]
pub struct ClientConfig {
    pub base_url: String,
    pub username: String,
    pub password: SecretString,
    pub target_account_id: Option<String>,
    pub requests_per_second: f64,
    pub burst: u32,
    pub timeout: Duration,
    /// Timeout of the verbs in [`SLOW_VERBS`].
    pub slow_timeout: Duration,
}

/// Verbs BICS documents with an extended timeout of 180 seconds ("14. Endpoint": Create
/// Endpoint, Link / De-Link SIM, Endpoint Activation, Endpoint Lifecycle Change).
pub const SLOW_VERBS: &[&str] = &[
    "CreateEndPoint",
    "LinkSim",
    "DeLinkSim",
    "EndPointActivation",
    "EndPointLifeCycleChange",
];

#[derive(Default)]
struct Tokens {
    access: Option<SecretString>,
    refresh: Option<SecretString>,
}

pub struct BicsClient {
    core: HttpCore,
    username: String,
    password: SecretString,
    target_account_id: Option<String>,
    tokens: Mutex<Tokens>,
    slow_timeout: Duration,
}

impl std::fmt::Debug for BicsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BicsClient")
            .field("core", &self.core)
            .field("username", &self.username)
            .field("password", &self.password)
            .finish()
    }
}

/// A business error in the envelope: `resultParam.resultCode` and its description.
pub fn result_code(response: &Value) -> (Option<String>, String) {
    let param = &response["resultParam"];
    let code = match &param["resultCode"] {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    };
    (
        code,
        param["resultDescription"].as_str().unwrap_or_default().to_string(),
    )
}

/// Contract kind for a BICS result code (`shared/vendors/bics-sft.md` §9 and the simulator's
/// documented synthetic codes).
pub fn kind_for_code(code: &str, description: &str) -> ErrorKind {
    match code {
        "401" => ErrorKind::Unauthorized,
        "1359" => ErrorKind::NotFound,
        // duplicate name, attached to a plan, state conflicts
        "6554" | "1338" | "99002" => ErrorKind::Conflict,
        // failed / timed out: verify completion
        "10239" | "10240" => ErrorKind::OutcomeUnknown,
        "429" => ErrorKind::RateLimited { retry_after: None },
        _ if description.to_ascii_lowercase().contains("rate limit") => ErrorKind::RateLimited { retry_after: None },
        // validation and vendor rules (10085 RAT downgrade once attached, 10100 addon services,
        // 10111 obsolete access type, 6565 child configuration, 13xx failures, 99001 invalid)
        _ => ErrorKind::Invalid,
    }
}

impl BicsClient {
    pub fn new(config: ClientConfig, metrics: Option<Metrics>) -> Result<Self, BackendError> {
        Ok(BicsClient {
            core: HttpCore::new(
                VENDOR,
                &config.base_url,
                config.requests_per_second,
                config.burst,
                config.timeout,
                metrics,
            )?,
            username: config.username,
            password: config.password,
            target_account_id: config.target_account_id,
            tokens: Mutex::new(Tokens::default()),
            slow_timeout: config.slow_timeout.max(config.timeout),
        })
    }

    pub fn requests_sent(&self) -> u64 {
        self.core.requests_sent()
    }

    fn request(&self, method: Method, verb: &str) -> reqwest::RequestBuilder {
        let request = self
            .core
            .request(method, &format!("/api/{verb}"))
            .header("X-Requested-With", "XMLHttpRequest");
        if SLOW_VERBS.contains(&verb) {
            request.timeout(self.slow_timeout)
        } else {
            request
        }
    }

    /// The current access token, logging in when there is none.
    pub async fn access_token(&self) -> Result<SecretString, BackendError> {
        let mut tokens = self.tokens.lock().await;
        if let Some(t) = &tokens.access {
            return Ok(t.clone());
        }
        self.login(&mut tokens).await
    }

    async fn login(&self, tokens: &mut Tokens) -> Result<SecretString, BackendError> {
        const ACTION: &str = "log in at BICS SIM for Things";
        let mut body = json!({"username": self.username, "password": self.password.expose()});
        if let Some(account) = &self.target_account_id {
            body["targetAccountId"] = json!(account);
        }
        let req = self.request(Method::POST, "login").json(&body);
        let answer = self.core.send("login", ACTION, req, error_for).await?;
        let value: Value = answer.json(ACTION)?;
        self.store(tokens, &value, ACTION)
    }

    fn store(&self, tokens: &mut Tokens, value: &Value, action: &str) -> Result<SecretString, BackendError> {
        match (value["AccessToken"].as_str(), value["RefreshToken"].as_str()) {
            (Some(access), refresh) if !access.is_empty() => {
                let access = SecretString::new(access);
                tokens.access = Some(access.clone());
                tokens.refresh = refresh.map(SecretString::new).or(tokens.refresh.take());
                Ok(access)
            }
            _ => {
                let (code, description) = result_code(&value["Response"]);
                Err(BackendError::new(
                    action,
                    ErrorKind::Unauthorized,
                    format!(
                        "no AccessToken in the answer ({} {description})",
                        code.unwrap_or_default()
                    ),
                ))
            }
        }
    }

    /// After a 401: refresh the pair, else log in again.
    async fn renew(&self, used: &SecretString) -> Result<(), BackendError> {
        let mut tokens = self.tokens.lock().await;
        if tokens.access.as_ref() != Some(used) {
            return Ok(()); // someone else renewed already
        }
        tokens.access = None;
        if let Some(refresh) = tokens.refresh.take() {
            const ACTION: &str = "refresh the BICS SIM for Things token";
            let req = self
                .request(Method::GET, "RefreshToken")
                .header("X-Authorization", format!("Bearer {}", refresh.expose()));
            if let Ok(answer) = self.core.send("refresh", ACTION, req, error_for).await
                && let Ok(value) = answer.json::<Value>(ACTION)
                && self.store(&mut tokens, &value, ACTION).is_ok()
            {
                return Ok(());
            }
        }
        self.login(&mut tokens).await.map(drop)
    }

    /// Call an API verb; `Ok` is the `Response` object of a successful envelope (or of one whose
    /// code is in `also_ok`). POSTs that time out (transport or 5xx) have an unknown outcome.
    #[allow(clippy::too_many_arguments)]
    pub async fn call(
        &self,
        verb: &str,
        method: Method,
        query: &[(&str, String)],
        body: Option<&Value>,
        action: &str,
        also_ok: &[&str],
    ) -> Result<Value, BackendError> {
        let mut renewed = false;
        loop {
            let token = self.access_token().await?;
            let mut req = self
                .request(method.clone(), verb)
                .header("X-Authorization", format!("Bearer {}", token.expose()));
            if !query.is_empty() {
                req = req.query(query);
            }
            if let Some(body) = body {
                req = req.json(body);
            }
            let result = self
                .core
                .send(verb, action, req, error_for)
                .await
                .and_then(|a| a.json::<Value>(action));
            let response = match result {
                Ok(value) => value["Response"].clone(),
                Err(e) if e.kind == ErrorKind::Unauthorized && !renewed => {
                    self.renew(&token).await?;
                    renewed = true;
                    continue;
                }
                Err(e)
                    if method == Method::POST
                        && (timed_out(&e) || (e.kind == ErrorKind::Transient && e.message.starts_with("HTTP 5"))) =>
                {
                    return Err(BackendError {
                        kind: ErrorKind::OutcomeUnknown,
                        ..e
                    });
                }
                Err(e) => return Err(e),
            };
            if response["resultCode"].as_str() == Some("0") {
                return Ok(response);
            }
            let (code, description) = result_code(&response);
            let code = code.unwrap_or_default();
            if also_ok.contains(&code.as_str()) {
                return Ok(response);
            }
            let kind = kind_for_code(&code, &description);
            if kind == ErrorKind::Unauthorized && !renewed {
                self.renew(&token).await?;
                renewed = true;
                continue;
            }
            return Err(BackendError::new(
                action,
                kind,
                format!("result code {code}: {description}"),
            ));
        }
    }
}

/// HTTP-level errors (401, 429, 5xx) with the envelope's description as detail.
pub fn error_for(action: &str, status: StatusCode, headers: &HeaderMap, body: &[u8]) -> BackendError {
    let parsed: Value = serde_json::from_slice(body).unwrap_or_default();
    let (code, description) = result_code(&parsed["Response"]);
    let detail = [code.unwrap_or_default(), description].join(" ").trim().to_string();
    let message = if detail.is_empty() {
        format!("HTTP {}", status.as_u16())
    } else {
        format!("HTTP {}: {detail}", status.as_u16())
    };
    BackendError::new(action, kind_for_status(status, headers), message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn result_codes_map_onto_kinds() {
        assert_eq!(kind_for_code("6554", ""), ErrorKind::Conflict);
        assert_eq!(kind_for_code("1338", ""), ErrorKind::Conflict);
        assert_eq!(kind_for_code("1359", ""), ErrorKind::NotFound);
        assert_eq!(kind_for_code("10239", ""), ErrorKind::OutcomeUnknown);
        assert_eq!(kind_for_code("10240", ""), ErrorKind::OutcomeUnknown);
        assert_eq!(kind_for_code("401", ""), ErrorKind::Unauthorized);
        assert_eq!(kind_for_code("10085", "RAT privileges conflict"), ErrorKind::Invalid);
        assert_eq!(kind_for_code("10100", ""), ErrorKind::Invalid);
        assert_eq!(
            kind_for_code("7777", "Request rate limit exceeded"),
            ErrorKind::RateLimited { retry_after: None }
        );
    }
}
