//! HS384 JWTs shaped like emnify's auth tokens (spec §1.2).
//!
//! Tokens are signed with a per-simulator random key, so a token from one simulator is rejected
//! (1102) by another. Claims mirror the recorded ones; `esc.typ` is our own marker that keeps
//! refresh tokens from being used as bearer tokens and vice versa.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha384;

type HmacSha384 = Hmac<Sha384>;

/// What went wrong when checking a presented token.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum TokenProblem {
    /// Not three dot-separated parts: the API Gateway rejects it before emnify sees it.
    Segments,
    /// Undecodable or signed by someone else.
    Invalid,
}

pub(crate) fn sign(key: &[u8], claims: &Value) -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS384"}"#);
    let payload = URL_SAFE_NO_PAD.encode(claims.to_string().as_bytes());
    let signing_input = format!("{header}.{payload}");
    let sig = mac(key, signing_input.as_bytes());
    format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(sig))
}

fn mac(key: &[u8], data: &[u8]) -> Vec<u8> {
    // HMAC accepts keys of any length, so this cannot fail; fall back to an empty tag anyway
    // rather than panicking inside a request handler.
    match HmacSha384::new_from_slice(key) {
        Ok(mut m) => {
            m.update(data);
            m.finalize().into_bytes().to_vec()
        }
        Err(_) => Vec::new(),
    }
}

/// Verifies structure and signature and returns the claims; expiry is checked by the caller,
/// which also knows about tokens expired through the test hook.
pub(crate) fn verify(key: &[u8], token: &str) -> Result<Value, TokenProblem> {
    let parts: Vec<&str> = token.split('.').collect();
    if parts.len() != 3 {
        return Err(TokenProblem::Segments);
    }
    let sig = URL_SAFE_NO_PAD.decode(parts[2]).map_err(|_| TokenProblem::Invalid)?;
    let mut m = HmacSha384::new_from_slice(key).map_err(|_| TokenProblem::Invalid)?;
    m.update(format!("{}.{}", parts[0], parts[1]).as_bytes());
    m.verify_slice(&sig).map_err(|_| TokenProblem::Invalid)?;
    let payload = URL_SAFE_NO_PAD.decode(parts[1]).map_err(|_| TokenProblem::Invalid)?;
    serde_json::from_slice(&payload).map_err(|_| TokenProblem::Invalid)
}

/// Claims of an auth token issued for an application token or a user.
pub(crate) fn auth_claims(org_id: i64, org_name: &str, subject: &Subject, iat: i64, exp: i64) -> Value {
    let mut c = json!({
        "aud": "/api/v1/authentication",
        "esc.org": org_id,
        "esc.orgName": org_name,
        "iss": "spc-frontend001@spc-frontend",
        "iat": iat,
        "exp": exp,
        "esc.typ": "auth",
    });
    match subject {
        Subject::App(app_id) => {
            c["esc.app"] = json!(app_id);
            c["api_key"] = json!(true);
        }
        Subject::User { id, username } => {
            c["esc.usr"] = json!(id);
            c["sub"] = json!(username);
            c["api_key"] = json!(false);
        }
    }
    c
}

/// Who a token was issued to.
#[derive(Debug, Clone)]
pub(crate) enum Subject {
    App(i64),
    User { id: i64, username: String },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_tamper() {
        let key = b"k".repeat(48);
        let t = sign(&key, &json!({"a": 1}));
        assert_eq!(verify(&key, &t).unwrap()["a"], 1);
        assert_eq!(verify(b"other", &t), Err(TokenProblem::Invalid));
        assert_eq!(verify(&key, "None"), Err(TokenProblem::Segments));
        let header = t.split('.').next().unwrap();
        let decoded = URL_SAFE_NO_PAD.decode(header).unwrap();
        assert_eq!(decoded, br#"{"alg":"HS384"}"#);
    }
}
