//! A string that never prints: credentials and tokens are wrapped in it so that `Debug`,
//! `Display`, logs, events and status can never show them. The value is held by `secrecy`
//! (zeroed when dropped); this wrapper keeps the two things our clients need on top: `Display`
//! (redacted, so a secret in a format string cannot leak) and equality (a token compared with
//! the one a request used).

use std::fmt;

use secrecy::{ExposeSecret, SecretString as Inner};

#[derive(Clone)]
pub struct SecretString(Inner);

impl SecretString {
    pub fn new(value: impl Into<String>) -> Self {
        SecretString(Inner::from(value.into()))
    }

    /// The secret itself, for the one place that must send it.
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }

    pub fn is_empty(&self) -> bool {
        self.expose().is_empty()
    }
}

impl Default for SecretString {
    fn default() -> Self {
        SecretString::new(String::new())
    }
}

impl PartialEq for SecretString {
    fn eq(&self, other: &Self) -> bool {
        self.expose() == other.expose()
    }
}

impl Eq for SecretString {}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretString(<redacted>)")
    }
}

impl fmt::Display for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_prints() {
        let s = SecretString::new("hunter2");
        assert!(!format!("{s:?} {s}").contains("hunter2"));
        assert_eq!(s.expose(), "hunter2");
        assert_eq!(s, SecretString::new("hunter2"));
        assert!(SecretString::default().is_empty());
    }
}
