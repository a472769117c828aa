//! Telenor IoT Connect HTTP client: OAuth2 client-credentials token (endpoint configurable; our
//! assumption, Telenor does not document it) cached until `expires_in`, one renewal on 401, the
//! client-side rate limit, error bodies mapped onto the contract's kinds, and write timeouts (HTTP
//! 504 or no answer) reported as "outcome unknown".

use std::time::{Duration, Instant};

use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::sync::Mutex;

use super::api::{self, ErrorBody, TokenResponse};
use crate::backend::http::{Answer, HttpCore, kind_for_status, timed_out};
use crate::backend::{BackendError, ErrorKind, SecretString};
use crate::metrics::Metrics;

pub const VENDOR: &str = "telenorIotConnect";

/// At most this many search pages in one listing: a cursor that never ends cannot keep a sweep
/// running forever.
const MAX_PAGES: u64 = 100_000;

/// The longest token lifetime believed, in seconds (`expires_in` is vendor input): a day.
const MAX_TOKEN_LIFETIME_SECS: u64 = 86_400;

/// Connection settings for one Telenor IoT Connect account.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    pub base_url: String,
    /// Token endpoint; `None`: `<base_url>/oauth2/token`.
    pub token_url: Option<String>,
    pub client_id: String,
    pub client_secret: SecretString,
    pub requests_per_second: f64,
    pub burst: u32,
    pub timeout: Duration,
}

pub struct TelenorClient {
    core: HttpCore,
    token_url: String,
    client_id: String,
    client_secret: SecretString,
    token: Mutex<Option<(SecretString, Instant)>>,
}

impl std::fmt::Debug for TelenorClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TelenorClient")
            .field("base", &self.core.base_url())
            .field("token_url", &self.token_url)
            .field("client_id", &self.client_id)
            .field("client_secret", &self.client_secret)
            .finish()
    }
}

impl TelenorClient {
    pub fn new(config: ClientConfig, metrics: Option<Metrics>) -> Result<Self, BackendError> {
        let core = HttpCore::new(
            VENDOR,
            &config.base_url,
            config.requests_per_second,
            config.burst,
            config.timeout,
            metrics,
        )?;
        let token_url = config
            .token_url
            .unwrap_or_else(|| format!("{}{}", core.base_url(), api::DEFAULT_TOKEN_PATH));
        Ok(TelenorClient {
            core,
            token_url,
            client_id: config.client_id,
            client_secret: config.client_secret,
            token: Mutex::new(None),
        })
    }

    pub fn requests_sent(&self) -> u64 {
        self.core.requests_sent()
    }

    /// A valid access token: the cached one until 60 s before it expires, else a new one.
    pub async fn access_token(&self) -> Result<SecretString, BackendError> {
        let mut cached = self.token.lock().await;
        if let Some((token, expires)) = cached.as_ref()
            && *expires > Instant::now() + Duration::from_secs(60)
        {
            return Ok(token.clone());
        }
        const ACTION: &str = "get a Telenor IoT Connect access token";
        let form = [
            ("grant_type", "client_credentials"),
            ("client_id", self.client_id.as_str()),
            ("client_secret", self.client_secret.expose()),
        ];
        let req = self.core.request(Method::POST, &self.token_url).form(&form);
        let answer = self.core.send("token", ACTION, req, error_for).await?;
        let resp: TokenResponse = answer.json(ACTION)?;
        let token = SecretString::new(resp.access_token);
        // Without `expires_in`, assume an hour (the simulator's default) and rely on 401 renewal.
        // The value is vendor input: kept within a day, so `Instant` arithmetic cannot overflow
        // and a token is read again at least daily.
        let lifetime = Duration::from_secs(resp.expires_in.unwrap_or(3600).min(MAX_TOKEN_LIFETIME_SECS));
        *cached = Some((token.clone(), Instant::now() + lifetime));
        Ok(token)
    }

    async fn invalidate(&self, used: &SecretString) {
        let mut cached = self.token.lock().await;
        if cached.as_ref().is_some_and(|(t, _)| t == used) {
            *cached = None;
        }
    }

    /// An authenticated call; on 401 renew the token once and replay. For writes (`write`), a
    /// 504 or a timeout becomes [`ErrorKind::OutcomeUnknown`].
    #[allow(clippy::too_many_arguments)]
    pub async fn call(
        &self,
        operation: &str,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
        action: &str,
        write: bool,
    ) -> Result<Answer, BackendError> {
        let mut replayed = false;
        loop {
            let token = self.access_token().await?;
            let mut req = self.core.request(method.clone(), path).bearer_auth(token.expose());
            if !query.is_empty() {
                req = req.query(query);
            }
            if let Some(body) = body {
                req = req.json(body);
            }
            match self.core.send(operation, action, req, error_for).await {
                Err(e) if e.kind == ErrorKind::Unauthorized && !replayed => {
                    self.invalidate(&token).await;
                    replayed = true;
                }
                Err(e) if write && (timed_out(&e) || e.message.starts_with("HTTP 504")) => {
                    return Err(BackendError {
                        kind: ErrorKind::OutcomeUnknown,
                        ..e
                    });
                }
                other => return other,
            }
        }
    }

    /// The whole inventory search, following the `after` cursor (each page well within the
    /// cursor's 2-minute life). Each page's items go to `visit` as the page arrives, so a caller
    /// that keeps only part of each item never holds the whole inventory as the vendor sent it.
    /// Returns the number of pages read.
    pub async fn search_each(
        &self,
        filters: Option<Value>,
        mut visit: impl FnMut(Vec<api::SearchItem>),
    ) -> Result<u64, BackendError> {
        let action = "search the Telenor IoT Connect inventory";
        let mut pages = 0u64;
        // As Telenor's sorting example: no `filters` key when there is nothing to filter.
        let mut body = json!({
            "sortBy": [{"direction": "asc", "field": "iotSubscription.iotSubscriptionId"}],
        });
        if let Some(filters) = filters {
            body["filters"] = filters;
        }
        loop {
            let answer = self
                .call(
                    "inventory.search",
                    Method::POST,
                    api::SEARCH,
                    &[],
                    Some(&body),
                    action,
                    false,
                )
                .await?;
            pages += 1;
            if pages > MAX_PAGES {
                return Err(BackendError::new(
                    action,
                    ErrorKind::Transient,
                    format!("more than {MAX_PAGES} pages: stopped"),
                ));
            }
            let page: api::SearchPage = answer.json(action)?;
            let empty = page.items.is_empty();
            visit(page.items);
            match page.pagination.next {
                // The docs do not say whether the rest of the body must be repeated with
                // `after`: repeating it is right under either reading.
                Some(next) if !next.is_empty() && !empty => body["after"] = json!(next),
                _ => return Ok(pages),
            }
        }
    }
}

/// Error answers: by HTTP status, the `{name, message, errors[]}` body as detail.
pub fn error_for(action: &str, status: StatusCode, headers: &HeaderMap, body: &[u8]) -> BackendError {
    let parsed: ErrorBody = serde_json::from_slice(body).unwrap_or_default();
    let detail = parsed.summary();
    let message = if detail.is_empty() {
        format!("HTTP {}", status.as_u16())
    } else {
        format!("HTTP {}: {detail}", status.as_u16())
    };
    BackendError::new(action, kind_for_status(status, headers), message)
}
