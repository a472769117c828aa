//! Label and field selectors for list, watch and delete-collection requests.
//!
//! Label selectors follow the real grammar (`a=b`, `a==b`, `a!=b`, `a`, `!a`, `a in (x,y)`,
//! `a notin (x,y)`). Field selectors accept `=`, `==` and `!=` on any dotted path to a scalar;
//! the real server only allows a per-type list of fields (for custom resources just
//! `metadata.name` and `metadata.namespace`), so this is deliberately more permissive.

use serde_json::Value;

use crate::status::ApiError;

#[derive(Debug, Clone, PartialEq)]
enum LabelTerm {
    Eq(String, String),
    NotEq(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    NotExists(String),
}

#[derive(Debug, Clone, PartialEq)]
struct FieldTerm {
    path: String,
    value: String,
    negated: bool,
}

/// A parsed `labelSelector` plus `fieldSelector`; the default selects everything.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Selector {
    labels: Vec<LabelTerm>,
    fields: Vec<FieldTerm>,
}

impl Selector {
    pub fn parse(label_selector: Option<&str>, field_selector: Option<&str>) -> Result<Self, ApiError> {
        let labels = match label_selector {
            Some(s) => split_terms(s)
                .into_iter()
                .map(|t| parse_label_term(&t))
                .collect::<Result<Vec<_>, _>>()?,
            None => Vec::new(),
        };
        let fields = match field_selector {
            Some(s) => split_terms(s)
                .into_iter()
                .map(|t| parse_field_term(&t))
                .collect::<Result<Vec<_>, _>>()?,
            None => Vec::new(),
        };
        Ok(Self { labels, fields })
    }

    pub fn matches(&self, obj: &Value) -> bool {
        let labels = obj.pointer("/metadata/labels").and_then(Value::as_object);
        let label = |k: &str| labels.and_then(|l| l.get(k)).and_then(Value::as_str);
        let labels_ok = self.labels.iter().all(|term| match term {
            LabelTerm::Eq(k, v) => label(k) == Some(v.as_str()),
            // As in Kubernetes, `!=` and `notin` also match objects without the label.
            LabelTerm::NotEq(k, v) => label(k) != Some(v.as_str()),
            LabelTerm::In(k, vs) => label(k).is_some_and(|l| vs.iter().any(|v| v == l)),
            LabelTerm::NotIn(k, vs) => !label(k).is_some_and(|l| vs.iter().any(|v| v == l)),
            LabelTerm::Exists(k) => label(k).is_some(),
            LabelTerm::NotExists(k) => label(k).is_none(),
        });
        labels_ok
            && self.fields.iter().all(|term| {
                let actual = field_value(obj, &term.path);
                (actual == term.value) != term.negated
            })
    }
}

/// Splits on commas outside parentheses, so `a in (x,y),b` is two terms.
fn split_terms(s: &str) -> Vec<String> {
    let mut terms = Vec::new();
    let mut depth = 0usize;
    let mut current = String::new();
    for c in s.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                terms.push(std::mem::take(&mut current));
                continue;
            }
            _ => {}
        }
        current.push(c);
    }
    terms.push(current);
    terms
        .into_iter()
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
        .collect()
}

fn parse_label_term(term: &str) -> Result<LabelTerm, ApiError> {
    let invalid = || {
        ApiError::bad_request(format!(
            "unable to parse requirement: invalid label selector term {term:?}"
        ))
    };
    let key = |k: &str| {
        let k = k.trim();
        if k.is_empty() || k.contains(char::is_whitespace) {
            Err(invalid())
        } else {
            Ok(k.to_string())
        }
    };
    if let Some(rest) = term.strip_prefix('!') {
        return Ok(LabelTerm::NotExists(key(rest)?));
    }
    for (op, negated) in [(" notin ", true), (" in ", false)] {
        if let Some((k, set)) = term.split_once(op) {
            let set = set.trim();
            let inner = set
                .strip_prefix('(')
                .and_then(|s| s.strip_suffix(')'))
                .ok_or_else(invalid)?;
            let values = inner.split(',').map(|v| v.trim().to_string()).collect();
            return Ok(if negated {
                LabelTerm::NotIn(key(k)?, values)
            } else {
                LabelTerm::In(key(k)?, values)
            });
        }
    }
    if let Some((k, v)) = term.split_once("!=") {
        return Ok(LabelTerm::NotEq(key(k)?, v.trim().to_string()));
    }
    if let Some((k, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
        return Ok(LabelTerm::Eq(key(k)?, v.trim().to_string()));
    }
    Ok(LabelTerm::Exists(key(term)?))
}

fn parse_field_term(term: &str) -> Result<FieldTerm, ApiError> {
    let (path, value, negated) = if let Some((p, v)) = term.split_once("!=") {
        (p, v, true)
    } else if let Some((p, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
        (p, v, false)
    } else {
        return Err(ApiError::bad_request(format!(
            "invalid selector: '{term}'; can't understand '{term}'"
        )));
    };
    Ok(FieldTerm {
        path: path.trim().to_string(),
        value: value.trim().to_string(),
        negated,
    })
}

/// The string form of a dotted field path; a missing field compares as the empty string, which
/// is how the real server treats e.g. `metadata.namespace` of cluster-scoped objects.
fn field_value(obj: &Value, path: &str) -> String {
    let pointer: String = path.split('.').map(|seg| format!("/{seg}")).collect();
    match obj.pointer(&pointer) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj() -> Value {
        json!({"metadata": {"name": "a", "namespace": "ns", "labels": {"app": "x", "tier": "web"}}, "spec": {"n": 3}})
    }

    #[test]
    fn label_terms() {
        let sel = |s: &str| Selector::parse(Some(s), None).unwrap().matches(&obj());
        assert!(sel("app=x"));
        assert!(sel("app==x,tier"));
        assert!(!sel("app=y"));
        assert!(sel("app!=y"));
        assert!(sel("missing!=y"));
        assert!(sel("!missing"));
        assert!(!sel("!app"));
        assert!(sel("tier in (api, web)"));
        assert!(!sel("tier notin (api,web),app"));
        assert!(sel(""));
    }

    #[test]
    fn field_terms() {
        let sel = |s: &str| Selector::parse(None, Some(s)).unwrap().matches(&obj());
        assert!(sel("metadata.name=a"));
        assert!(sel("metadata.namespace==ns,metadata.name!=b"));
        assert!(!sel("metadata.name=b"));
        assert!(sel("spec.n=3"));
        assert!(Selector::parse(None, Some("nonsense")).is_err());
        assert!(Selector::parse(Some("a in x"), None).is_err());
    }
}
