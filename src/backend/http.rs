//! HTTP plumbing every vendor client shares: the client-side token bucket, request counting,
//! metrics by vendor / operation / status, transport errors as transient, and the answer type.
//! Vendor clients add authentication and map error answers onto the contract's kinds.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use reqwest::header::{HeaderMap, LOCATION, RETRY_AFTER};
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;

use super::ratelimit::RateLimiter;
use super::{BackendError, ErrorKind};
use crate::metrics::Metrics;

/// A successful answer.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: bytes::Bytes,
}

impl Answer {
    pub fn json<T: DeserializeOwned>(&self, action: &str) -> Result<T, BackendError> {
        serde_json::from_slice(&self.body).map_err(|e| {
            BackendError::new(action, ErrorKind::Transient, format!("unexpected response body: {e}")).with_source(e)
        })
    }

    /// Id from the `Location` header's last path segment (absolute or relative URL).
    pub fn location_id(&self) -> Option<i64> {
        let loc = self.headers.get(LOCATION)?.to_str().ok()?;
        loc.trim_end_matches('/').rsplit('/').next()?.parse().ok()
    }

    pub fn header_u64(&self, name: &str) -> Option<u64> {
        self.headers.get(name)?.to_str().ok()?.trim().parse().ok()
    }
}

/// Maps an error answer (action, status, headers, body) onto a [`BackendError`].
pub type ErrorMapper = fn(&str, StatusCode, &HeaderMap, &[u8]) -> BackendError;

/// Connection to one vendor account: base URL, limiter, metrics.
pub struct HttpCore {
    http: reqwest::Client,
    base: String,
    vendor: &'static str,
    limiter: RateLimiter,
    metrics: Option<Metrics>,
    sent: AtomicU64,
}

impl std::fmt::Debug for HttpCore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpCore")
            .field("vendor", &self.vendor)
            .field("base", &self.base)
            .finish()
    }
}

impl HttpCore {
    pub fn new(
        vendor: &'static str,
        base_url: &str,
        requests_per_second: f64,
        burst: u32,
        timeout: Duration,
        metrics: Option<Metrics>,
    ) -> Result<Self, BackendError> {
        crate::install_crypto_provider();
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .user_agent(concat!("connectivity-operator/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| {
                BackendError::new(format!("build {vendor} http client"), ErrorKind::Invalid, e.to_string())
                    .with_source(e)
            })?;
        Ok(HttpCore {
            http,
            base: base_url.trim_end_matches('/').to_string(),
            vendor,
            limiter: RateLimiter::new(requests_per_second, burst),
            metrics,
            sent: AtomicU64::new(0),
        })
    }

    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// Requests sent so far.
    pub fn requests_sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    /// A request to `path` under the base URL, or to an absolute URL.
    pub fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        let url = if path.starts_with("http://") || path.starts_with("https://") {
            path.to_string()
        } else {
            format!("{}{}", self.base, path)
        };
        self.http.request(method, url).header("accept", "application/json")
    }

    /// Send after the rate limiter allows it; 2xx is an [`Answer`], anything else goes through
    /// `map_error`; transport failures are transient.
    pub async fn send(
        &self,
        operation: &str,
        action: &str,
        request: reqwest::RequestBuilder,
        map_error: ErrorMapper,
    ) -> Result<Answer, BackendError> {
        self.limiter.acquire().await;
        self.sent.fetch_add(1, Ordering::Relaxed);
        let started = Instant::now();
        let result = request.send().await;
        let elapsed = started.elapsed();
        let resp = match result {
            Ok(resp) => resp,
            Err(e) => {
                self.record(operation, "error", elapsed);
                let what = if e.is_timeout() {
                    "request timed out"
                } else {
                    "request failed"
                };
                return Err(
                    BackendError::new(action, ErrorKind::Transient, format!("{what}: {}", describe(&e))).with_source(e),
                );
            }
        };
        let status = resp.status();
        self.record(operation, status.as_str(), elapsed);
        let headers = resp.headers().clone();
        let body = resp.bytes().await.map_err(|e| {
            BackendError::new(action, ErrorKind::Transient, format!("reading response failed: {e}")).with_source(e)
        })?;
        tracing::debug!(
            vendor = self.vendor,
            operation,
            status = status.as_u16(),
            elapsed_ms = elapsed.as_millis() as u64,
            "vendor call"
        );
        if status.is_success() {
            return Ok(Answer { status, headers, body });
        }
        Err(map_error(action, status, &headers, &body))
    }

    fn record(&self, operation: &str, status: &str, elapsed: Duration) {
        if let Some(m) = &self.metrics {
            m.vendor_request(self.vendor, operation, status, elapsed);
        }
    }
}

/// Whether a failed call timed out on the wire (the vendor may still have done it).
pub fn timed_out(err: &BackendError) -> bool {
    err.source
        .as_deref()
        .and_then(|s| s.downcast_ref::<reqwest::Error>())
        .is_some_and(reqwest::Error::is_timeout)
}

/// Contract kind for an HTTP status, shared by the REST vendors: by status first, the body only
/// as detail.
pub fn kind_for_status(status: StatusCode, headers: &HeaderMap) -> ErrorKind {
    match status.as_u16() {
        401 => ErrorKind::Unauthorized,
        // Authenticated but not allowed: a new token would be refused the same way.
        403 => ErrorKind::Forbidden,
        404 => ErrorKind::NotFound,
        409 => ErrorKind::Conflict,
        400 | 405 | 413 | 422 => ErrorKind::Invalid,
        429 => ErrorKind::RateLimited {
            retry_after: retry_after(headers),
        },
        _ => ErrorKind::Transient,
    }
}

/// The longest `Retry-After` the operator honours. A vendor's value is input: an absurd one
/// (`Retry-After: 99999999999`) must neither overflow a timer nor park an object for a year; an
/// hour is longer than any rate-limit window the vendors document (emnify: 5 minutes).
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// `Retry-After` in seconds or as an HTTP date, at most [`MAX_RETRY_AFTER`].
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    let after = if let Ok(secs) = value.parse::<u64>() {
        Duration::from_secs(secs)
    } else {
        let at = DateTime::parse_from_rfc2822(value).ok()?.with_timezone(&Utc);
        (at - Utc::now()).to_std().ok()?
    };
    Some(after.min(MAX_RETRY_AFTER))
}

/// reqwest errors print the URL; ours never carry secrets in URLs, but keep messages short.
/// A transport failure in words: reqwest's message, its causes (e.g. "Connection refused") and
/// where it went (scheme, host and port only: paths and queries stay out of messages).
fn describe(e: &reqwest::Error) -> String {
    let mut msg = without_url(e);
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        let text = c.to_string();
        if !msg.contains(&text) {
            msg.push_str(": ");
            msg.push_str(&text);
        }
        cause = c.source();
    }
    match e.url() {
        Some(url) => format!("{msg} ({})", url.origin().ascii_serialization()),
        None => msg,
    }
}

fn without_url(e: &reqwest::Error) -> String {
    let mut msg = e.to_string();
    if let Some(url) = e.url() {
        msg = msg.replace(&format!(" for url ({url})"), "");
    }
    msg
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    fn after(value: &str) -> Option<Duration> {
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, HeaderValue::from_str(value).unwrap());
        retry_after(&headers)
    }

    #[test]
    fn retry_after_is_read_and_capped() {
        assert_eq!(after("7"), Some(Duration::from_secs(7)));
        assert_eq!(after("18446744073709551615"), Some(MAX_RETRY_AFTER));
        assert_eq!(after("Fri, 31 Dec 9999 23:59:59 GMT"), Some(MAX_RETRY_AFTER));
        assert_eq!(after("Thu, 01 Jan 1970 00:00:00 GMT"), None, "a date in the past");
        assert_eq!(after("soon"), None);
    }
}
