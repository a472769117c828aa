//! Token buckets for emnify's documented rate limits (spec §3).
//!
//! The simulator hosts one organisation and does not distinguish client IPs, so "per org" and
//! "per IP" buckets are both global. Each documented path template gets its own bucket
//! (`GET sim` and `GET endpoint` do not share one), which is how a per-path gateway throttle
//! behaves. The monthly 10 M per-org quota is not modelled: no simulator run gets near it.

use std::collections::HashMap;
use std::time::Instant;

/// A documented limit: sustained `rate` per second with `burst` capacity.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Limit {
    pub rate: f64,
    pub burst: f64,
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

#[derive(Debug, Default)]
pub(crate) struct Buckets {
    buckets: HashMap<String, Bucket>,
}

/// The whole-API window: 2 000 requests per 5 minutes per source IP.
pub(crate) const PER_IP: Limit = Limit {
    rate: 2000.0 / 300.0,
    burst: 2000.0,
};
/// `POST /api/v1/authenticate`: 100 per 5 minutes.
pub(crate) const AUTHENTICATE: Limit = Limit {
    rate: 100.0 / 300.0,
    burst: 100.0,
};
const SLOW: Limit = Limit { rate: 10.0, burst: 5.0 };
const FAST: Limit = Limit {
    rate: 100.0,
    burst: 50.0,
};
const MEDIUM: Limit = Limit {
    rate: 50.0,
    burst: 25.0,
};

/// Maps a request (path segments after `/api/v1/`) to its per-path bucket, if §3 lists it.
pub(crate) fn classify(method: &str, segs: &[&str]) -> Option<(String, Limit)> {
    if method == "POST" && segs == ["authenticate"] {
        return Some(("POST authenticate".into(), AUTHENTICATE));
    }
    if method != "GET" {
        return None;
    }
    let numeric = |s: &str| s.parse::<i64>().is_ok();
    let (template, limit): (&str, Limit) = match segs {
        ["sim"] => ("sim", SLOW),
        ["endpoint"] => ("endpoint", SLOW),
        ["event"] => ("event", SLOW),
        ["stats"] => ("stats", SLOW),
        ["organisation", _, "stats"] => ("organisation/{id}/stats", SLOW),
        ["organisation", _, "billing"] => ("organisation/{id}/billing", SLOW),
        ["sim", id, "stats"] if numeric(id) => ("sim/{id}/stats", SLOW),
        ["endpoint", id, "connectivity_info"] if numeric(id) => ("endpoint/{id}/connectivity_info", SLOW),
        ["sim", id] if numeric(id) => ("sim/{id}", FAST),
        ["service_profile"] => ("service_profile", FAST),
        ["tariff_profile"] => ("tariff_profile", FAST),
        ["endpoint", "stats"] => ("endpoint/stats", FAST),
        ["endpoint", id, "stats", ..] if numeric(id) => ("endpoint/{id}/stats/*", FAST),
        ["event", "alerts_pending"] => ("event/alerts_pending", FAST),
        ["endpoint", id] if numeric(id) => ("endpoint/{id}", MEDIUM),
        ["endpoint", id, "connectivity"] if numeric(id) => ("endpoint/{id}/connectivity", MEDIUM),
        _ => return None,
    };
    Some((format!("GET {template}"), limit))
}

impl Buckets {
    /// Takes one token from `key`'s bucket; `false` means the request must get a 429.
    pub fn take(&mut self, key: &str, limit: Limit, scale: f64, now: Instant) -> bool {
        let capacity = (limit.burst * scale).max(1.0);
        let rate = limit.rate * scale;
        let b = self.buckets.entry(key.to_string()).or_insert(Bucket {
            tokens: capacity,
            last: now,
        });
        let elapsed = now.saturating_duration_since(b.last).as_secs_f64();
        b.tokens = (b.tokens + elapsed * rate).min(capacity);
        b.last = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn burst_then_refill() {
        let mut b = Buckets::default();
        let t0 = Instant::now();
        let (key, limit) = classify("GET", &["endpoint"]).unwrap();
        assert_eq!(limit, SLOW);
        for _ in 0..5 {
            assert!(b.take(&key, limit, 1.0, t0));
        }
        assert!(!b.take(&key, limit, 1.0, t0));
        // 10 req/s refills one token every 100 ms.
        assert!(b.take(&key, limit, 1.0, t0 + Duration::from_millis(110)));
        assert!(classify("GET", &["endpoint", "12"]).is_some_and(|(k, _)| k == "GET endpoint/{id}"));
        assert!(classify("PATCH", &["endpoint", "12"]).is_none());
    }
}
