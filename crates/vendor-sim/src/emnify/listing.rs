//! Paging, filtering (`q`) and sorting (`sort`) of large collections (spec §4).
//!
//! Collections are bare JSON arrays; paging metadata travels in `X-*` headers and `Link`.
//! Match semantics are undocumented; we use: ids/status exact (`null` matches "none"), text
//! case-insensitive substring, dates prefix of the `2022-04-07T12:06:06.000+0000` form.

use std::cmp::Ordering;
use std::collections::HashMap;

use serde_json::Value;

use super::error::{ApiError, Reply};

/// A filterable / sortable attribute of a collection item.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Attr {
    Id(Option<i64>),
    Text(Option<String>),
    Date(Option<String>),
    Bool(bool),
}

impl Attr {
    fn matches(&self, field: &str, criteria: &str) -> Result<bool, ApiError> {
        let is_null = criteria.eq_ignore_ascii_case("null");
        Ok(match self {
            Attr::Id(v) => {
                if is_null {
                    v.is_none()
                } else {
                    let want: i64 = criteria.trim().parse().map_err(|_| {
                        ApiError::emnify(
                            422,
                            1301,
                            "InvalidQueryCriteria",
                            format!("Invalid query criteria for field '{field}': '{criteria}'"),
                        )
                    })?;
                    *v == Some(want)
                }
            }
            Attr::Text(v) => match v {
                None => is_null,
                Some(s) => !is_null && s.to_lowercase().contains(&criteria.to_lowercase()),
            },
            Attr::Date(v) => match v {
                None => is_null,
                // Accept "2022-04-07", "2022-04-07T12" and "2022-04-07 12:06" alike.
                Some(s) => !is_null && s.starts_with(&criteria.trim().replace(' ', "T")),
            },
            Attr::Bool(b) => match criteria.to_ascii_lowercase().as_str() {
                "true" | "1" => *b,
                "false" | "0" => !*b,
                _ => false,
            },
        })
    }

    fn cmp(&self, other: &Attr) -> Ordering {
        match (self, other) {
            (Attr::Id(a), Attr::Id(b)) => a.cmp(b),
            (Attr::Text(a), Attr::Text(b)) | (Attr::Date(a), Attr::Date(b)) => {
                let a = a.as_ref().map(|s| s.to_lowercase());
                let b = b.as_ref().map(|s| s.to_lowercase());
                a.cmp(&b)
            }
            (Attr::Bool(a), Attr::Bool(b)) => a.cmp(b),
            _ => Ordering::Equal,
        }
    }
}

/// Per-collection paging rules and supported `q` / `sort` fields.
pub(crate) struct Spec {
    pub path: &'static str,
    pub q_fields: &'static [&'static str],
    pub sort_fields: &'static [&'static str],
    pub default_per_page: usize,
    pub max_per_page: usize,
}

pub(crate) const ENDPOINTS: Spec = Spec {
    path: "/api/v1/endpoint",
    q_fields: &[
        "status",
        "service_profile",
        "tariff_profile",
        "id",
        "name",
        "created",
        "last_updated",
        "tags",
        "ip_address",
        "imei",
        "iccid",
        "iccid_with_luhn",
        "eid",
        "sim_status",
    ],
    sort_fields: &[
        "id",
        "name",
        "status",
        "last_updated",
        "created",
        "tags",
        "ip_address",
        "imei",
        "eid",
        "service_profile",
        "tariff_profile",
    ],
    default_per_page: 1000,
    max_per_page: 1000,
};

pub(crate) const SIMS: Spec = Spec {
    path: "/api/v1/sim",
    q_fields: &[
        "id",
        "issuer_org",
        "reseller_org",
        "customer_org",
        "iccid",
        "iccid_with_luhn",
        "status",
        "production_date",
        "imsi",
        "msisdn",
        "endpoint",
        "model",
        "eid",
        "satellite_capable",
    ],
    sort_fields: &[
        "id",
        "issuer_org",
        "reseller_org",
        "customer_org",
        "iccid",
        "eid",
        "status",
        "production_date",
        "endpoint",
        "model",
    ],
    default_per_page: 2000,
    max_per_page: 2500,
};

/// Filters, sorts and pages `items` according to `params` and renders the page with headers.
pub(crate) fn respond<T>(
    spec: &Spec,
    base_url: &str,
    params: &HashMap<String, String>,
    items: Vec<&T>,
    attr: impl Fn(&T, &str) -> Attr,
    render: impl Fn(&T) -> Value,
) -> Result<Reply, ApiError> {
    let q = params.get("q").map(String::as_str).unwrap_or("");
    let sort = params.get("sort").map(String::as_str).unwrap_or("");

    let mut criteria: Vec<(&str, &str)> = Vec::new();
    for part in q.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let Some((field, value)) = part.split_once(':') else {
            return Err(invalid_query(part));
        };
        if !spec.q_fields.contains(&field) {
            return Err(invalid_query(field));
        }
        criteria.push((field, value));
    }
    let mut order: Vec<(&str, bool)> = Vec::new();
    for part in sort.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (field, desc) = match part.strip_prefix('-') {
            Some(f) => (f, true),
            None => (part.strip_prefix('+').unwrap_or(part), false),
        };
        if !spec.sort_fields.contains(&field) {
            return Err(ApiError::emnify(
                422,
                1302,
                "InvalidSortCriteria",
                format!("Invalid sort criteria: field '{field}' is not sortable"),
            ));
        }
        order.push((field, desc));
    }

    let mut selected = Vec::new();
    'items: for item in items {
        for (field, value) in &criteria {
            if !attr(item, field).matches(field, value)? {
                continue 'items;
            }
        }
        selected.push(item);
    }
    selected.sort_by(|a, b| {
        for (field, desc) in &order {
            let o = attr(a, field).cmp(&attr(b, field));
            let o = if *desc { o.reverse() } else { o };
            if o != Ordering::Equal {
                return o;
            }
        }
        // Ties (and the default order) by id ascending.
        attr(a, "id").cmp(&attr(b, "id"))
    });

    let per_page = match params.get("per_page").and_then(|p| p.trim().parse::<i64>().ok()) {
        Some(n) if n >= 1 => (n as usize).min(spec.max_per_page),
        _ => spec.default_per_page,
    };
    let total = selected.len();
    // An empty collection still has one (empty) page, so "page > last" never underflows.
    let total_pages = total.div_ceil(per_page).max(1);
    let page = match params.get("page").and_then(|p| p.trim().parse::<i64>().ok()) {
        Some(n) if n >= 1 => (n as usize).min(total_pages),
        _ => 1,
    };
    let body: Vec<Value> = selected
        .iter()
        .skip((page - 1) * per_page)
        .take(per_page)
        .map(|i| render(i))
        .collect();

    let link_for = |p: usize| {
        let mut url = format!("{base_url}{}?page={p}&per_page={per_page}", spec.path);
        if !q.is_empty() {
            url.push_str(&format!("&q={}", encode(q)));
        }
        if !sort.is_empty() {
            url.push_str(&format!("&sort={}", encode(sort)));
        }
        url
    };
    let mut links = vec![format!("<{}>; rel=\"first\"", link_for(1))];
    if page > 1 {
        links.push(format!("<{}>; rel=\"prev\"", link_for(page - 1)));
    }
    if page < total_pages {
        links.push(format!("<{}>; rel=\"next\"", link_for(page + 1)));
    }
    links.push(format!("<{}>; rel=\"last\"", link_for(total_pages)));

    Ok(Reply::json(Value::Array(body))
        .header("x-count-per-page", per_page.to_string())
        .header("x-current-page", page.to_string())
        .header("x-total-count", total.to_string())
        .header("x-total-pages", total_pages.to_string())
        .header("x-filter", q)
        .header("x-sort", if sort.is_empty() { "id" } else { sort })
        .header("link", links.join(", ")))
}

fn invalid_query(what: &str) -> ApiError {
    ApiError::emnify(
        422,
        1301,
        "InvalidQueryCriteria",
        format!("Invalid query criteria: '{what}' is not a supported filter"),
    )
}

/// Minimal percent-encoding for the query values we echo into `Link`.
fn encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b':' | b',' => out.push(b as char),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attr_matching() {
        assert!(Attr::Id(None).matches("endpoint", "null").unwrap());
        assert!(!Attr::Id(Some(3)).matches("endpoint", "null").unwrap());
        assert!(Attr::Id(Some(3)).matches("id", "3").unwrap());
        assert!(Attr::Id(Some(3)).matches("id", "x").is_err());
        assert!(Attr::Text(Some("Sensor-01".into())).matches("name", "sensor").unwrap());
        assert!(
            Attr::Date(Some("2022-04-07T12:06:06.000+0000".into()))
                .matches("created", "2022-04-07")
                .unwrap()
        );
    }
}
