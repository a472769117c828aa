//! JWT-shaped access and refresh tokens (spec §2) and the per-account token bucket (spec §8).
//!
//! Tokens are HS256-signed with a per-simulator random key so they look and decode like BICS's
//! JWTs, but validity is decided by the simulator's token table: that is what lets
//! `BicsFault::ExpireTokens` expire every access token issued so far, and sub-second TTLs work
//! in tests (JWT `exp` has one-second resolution).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Access,
    Refresh,
}

#[derive(Debug, Clone)]
pub(crate) struct Token {
    pub kind: Kind,
    pub account: String,
    pub expires: Instant,
    /// Issue order; access tokens with `seq <= Tokens::expired_upto` count as expired.
    pub seq: u64,
}

/// Every token issued and not yet pruned.
#[derive(Debug, Default)]
pub(crate) struct Tokens {
    by_value: HashMap<String, Token>,
    seq: u64,
    expired_upto: u64,
}

impl Tokens {
    /// Issues an access + refresh pair for `account` (claims `sub`, `accountId`, `typ`, `iat`,
    /// `exp`, `jti`).
    pub fn issue_pair(
        &mut self,
        key: &[u8],
        username: &str,
        account: &str,
        access_ttl: Duration,
        refresh_ttl: Duration,
    ) -> (String, String) {
        let now = Instant::now();
        self.by_value.retain(|_, t| t.expires > now);
        let access = self.issue(key, Kind::Access, username, account, now, access_ttl);
        let refresh = self.issue(key, Kind::Refresh, username, account, now, refresh_ttl);
        (access, refresh)
    }

    fn issue(&mut self, key: &[u8], kind: Kind, username: &str, account: &str, now: Instant, ttl: Duration) -> String {
        self.seq += 1;
        let iat = chrono::Utc::now().timestamp();
        let ttl_secs = i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX / 4);
        let claims = json!({
            "sub": username,
            "accountId": account,
            "typ": match kind { Kind::Access => "access", Kind::Refresh => "refresh" },
            "iat": iat,
            "exp": iat.saturating_add(ttl_secs),
            "jti": self.seq.to_string(),
        });
        let value = sign(key, &claims);
        let expires = now
            .checked_add(ttl)
            .unwrap_or(now + Duration::from_secs(86_400 * 365 * 10));
        self.by_value.insert(
            value.clone(),
            Token {
                kind,
                account: account.to_string(),
                expires,
                seq: self.seq,
            },
        );
        value
    }

    /// The account behind a live token of `kind`, or `None` when unknown, expired or of the
    /// other kind.
    pub fn check(&self, value: &str, kind: Kind) -> Option<&str> {
        let t = self.by_value.get(value)?;
        let live =
            t.kind == kind && t.expires > Instant::now() && !(kind == Kind::Access && t.seq <= self.expired_upto);
        live.then_some(t.account.as_str())
    }

    /// Every access token issued so far is expired from now on; refresh tokens stay valid.
    pub fn expire_access_tokens(&mut self) {
        self.expired_upto = self.seq;
    }

    /// Access tokens that would still be accepted.
    pub fn live_access_tokens(&self) -> usize {
        let now = Instant::now();
        self.by_value
            .values()
            .filter(|t| t.kind == Kind::Access && t.expires > now && t.seq > self.expired_upto)
            .count()
    }
}

fn sign(key: &[u8], claims: &Value) -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let payload = URL_SAFE_NO_PAD.encode(claims.to_string().as_bytes());
    let input = format!("{header}.{payload}");
    // HMAC takes keys of any length; an empty tag beats a panic in a handler all the same.
    let sig = match Hmac::<Sha256>::new_from_slice(key) {
        Ok(mut m) => {
            m.update(input.as_bytes());
            m.finalize().into_bytes().to_vec()
        }
        Err(_) => Vec::new(),
    };
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig))
}

/// One token bucket per account (spec §8: about 2 transactions per second per account).
#[derive(Debug, Default)]
pub(crate) struct Buckets {
    buckets: HashMap<String, (f64, Instant)>,
}

impl Buckets {
    /// Takes a token from `key`'s bucket (`rate` per second, capacity `burst`, starting full);
    /// `false` means the request gets a 429.
    pub fn take(&mut self, key: &str, rate: f64, burst: u32, now: Instant) -> bool {
        let capacity = f64::from(burst.max(1));
        let (tokens, last) = self.buckets.entry(key.to_string()).or_insert((capacity, now));
        let elapsed = now.saturating_duration_since(*last).as_secs_f64();
        *tokens = (*tokens + elapsed * rate.max(0.0)).min(capacity);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_expire_by_kind_ttl_and_watermark() {
        let mut t = Tokens::default();
        let key = b"k".repeat(32);
        let (a, r) = t.issue_pair(&key, "u", "100001", Duration::from_secs(60), Duration::from_secs(600));
        assert_eq!(a.split('.').count(), 3);
        assert_eq!(t.check(&a, Kind::Access), Some("100001"));
        assert_eq!(t.check(&a, Kind::Refresh), None);
        assert_eq!(t.check(&r, Kind::Refresh), Some("100001"));
        t.expire_access_tokens();
        assert_eq!(t.check(&a, Kind::Access), None);
        assert_eq!(t.check(&r, Kind::Refresh), Some("100001"));
        let (a2, _) = t.issue_pair(&key, "u", "100001", Duration::ZERO, Duration::from_secs(600));
        assert_eq!(t.check(&a2, Kind::Access), None, "zero TTL is expired at once");
        assert_eq!(t.live_access_tokens(), 0);
    }

    #[test]
    fn bucket_burst_then_refill() {
        let mut b = Buckets::default();
        let t0 = Instant::now();
        assert!(b.take("a", 2.0, 2, t0));
        assert!(b.take("a", 2.0, 2, t0));
        assert!(!b.take("a", 2.0, 2, t0));
        assert!(b.take("other", 2.0, 2, t0), "buckets are per account");
        assert!(b.take("a", 2.0, 2, t0 + Duration::from_millis(510)));
    }
}
