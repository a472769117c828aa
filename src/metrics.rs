//! Prometheus metrics served on `/metrics`: reconciles, errors and durations by kind; vendor
//! requests by vendor, operation and status, with latency.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    pub kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    pub kind: String,
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct VendorLabels {
    pub vendor: String,
    pub operation: String,
    pub status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct VendorOpLabels {
    pub vendor: String,
    pub operation: String,
}

/// All metric families, cheap to clone.
#[derive(Clone)]
pub struct Metrics {
    pub registry: Arc<Registry>,
    reconciles: Family<KindLabels, Counter>,
    errors: Family<ErrorLabels, Counter>,
    durations: Family<KindLabels, Histogram>,
    vendor_requests: Family<VendorLabels, Counter>,
    vendor_latency: Family<VendorOpLabels, Histogram>,
    vendor_total: Arc<AtomicU64>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("connectivity_operator");
        let reconciles = Family::<KindLabels, Counter>::default();
        let errors = Family::<ErrorLabels, Counter>::default();
        let durations = Family::<KindLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.005, 2.0, 14))
        });
        let vendor_requests = Family::<VendorLabels, Counter>::default();
        let vendor_latency = Family::<VendorOpLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.005, 2.0, 14))
        });
        registry.register("reconciles", "Reconciles run, by kind", reconciles.clone());
        registry.register(
            "reconcile_errors",
            "Reconciles that failed, by kind and reason",
            errors.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Reconcile duration, by kind",
            durations.clone(),
        );
        registry.register(
            "vendor_requests",
            "Vendor API requests, by vendor, operation and HTTP status (or `error`)",
            vendor_requests.clone(),
        );
        registry.register(
            "vendor_request_duration_seconds",
            "Vendor API request latency, by vendor and operation",
            vendor_latency.clone(),
        );
        Metrics {
            registry: Arc::new(registry),
            reconciles,
            errors,
            durations,
            vendor_requests,
            vendor_latency,
            vendor_total: Arc::new(AtomicU64::new(0)),
        }
    }

    pub fn reconciled(&self, kind: &str, duration: Duration) {
        let labels = KindLabels { kind: kind.to_string() };
        self.reconciles.get_or_create(&labels).inc();
        self.durations.get_or_create(&labels).observe(duration.as_secs_f64());
    }

    pub fn reconcile_failed(&self, kind: &str, reason: &str) {
        self.errors
            .get_or_create(&ErrorLabels {
                kind: kind.to_string(),
                reason: reason.to_string(),
            })
            .inc();
    }

    pub fn vendor_request(&self, vendor: &str, operation: &str, status: &str, latency: Duration) {
        self.vendor_total.fetch_add(1, Ordering::Relaxed);
        self.vendor_requests
            .get_or_create(&VendorLabels {
                vendor: vendor.to_string(),
                operation: operation.to_string(),
                status: status.to_string(),
            })
            .inc();
        self.vendor_latency
            .get_or_create(&VendorOpLabels {
                vendor: vendor.to_string(),
                operation: operation.to_string(),
            })
            .observe(latency.as_secs_f64());
    }

    /// Total vendor requests recorded (all labels), for benchmarks and tests.
    pub fn vendor_request_total(&self) -> u64 {
        self.vendor_total.load(Ordering::Relaxed)
    }

    /// Vendor request counts as `(vendor, operation, status, count)`, read back from the
    /// exposition (for benchmarks and tests).
    pub fn vendor_request_counts(&self) -> Vec<(String, String, String, u64)> {
        parse_vendor_request_counts(&self.encode())
    }

    /// OpenMetrics text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Encoding into a String cannot fail for these metric types.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// `(vendor, operation, status, count)` of the vendor request counter in an exposition (this
/// process's, or another operator's `/metrics` as the benchmark reads it).
pub fn parse_vendor_request_counts(text: &str) -> Vec<(String, String, String, u64)> {
    let label = |line: &str, name: &str| -> String {
        line.split(&format!("{name}=\""))
            .nth(1)
            .and_then(|r| r.split('"').next())
            .unwrap_or_default()
            .to_string()
    };
    text.lines()
        .filter(|l| l.starts_with("connectivity_operator_vendor_requests_total{"))
        .filter_map(|l| {
            let count = l.rsplit(' ').next()?.parse().ok()?;
            Some((label(l, "vendor"), label(l, "operation"), label(l, "status"), count))
        })
        .collect()
}
