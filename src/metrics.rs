//! Prometheus metrics served on `/metrics`: reconciles, errors and durations by kind; vendor
//! requests by vendor, operation and status, with latency.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
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
    heap: Option<Heap>,
}

/// What the process's allocator holds, in bytes (the operator binary's jemalloc).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HeapStats {
    /// Bytes in live allocations.
    pub allocated: u64,
    /// Bytes in pages the allocator keeps mapped and resident (live allocations, freed
    /// memory not yet returned to the system, and its own metadata).
    pub resident: u64,
}

/// The allocator's figures, read again at each `/metrics` scrape.
#[derive(Clone)]
struct Heap {
    read: fn() -> Option<HeapStats>,
    allocated: Gauge,
    resident: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        Self::build(None)
    }

    /// Also exports `heap_allocated_bytes` and `heap_resident_bytes`, read with `read` at each
    /// scrape (the binary passes its allocator's statistics; the library cannot know them).
    pub fn with_heap_stats(read: fn() -> Option<HeapStats>) -> Self {
        Self::build(Some(read))
    }

    fn build(heap: Option<fn() -> Option<HeapStats>>) -> Self {
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
        let heap = heap.map(|read| {
            let heap = Heap {
                read,
                allocated: Gauge::default(),
                resident: Gauge::default(),
            };
            registry.register(
                "heap_allocated_bytes",
                "Bytes in the operator's live heap allocations",
                heap.allocated.clone(),
            );
            registry.register(
                "heap_resident_bytes",
                "Bytes of heap pages the allocator holds resident (live, freed but not yet returned, metadata)",
                heap.resident.clone(),
            );
            heap
        });
        Metrics {
            registry: Arc::new(registry),
            reconciles,
            errors,
            durations,
            vendor_requests,
            vendor_latency,
            vendor_total: Arc::new(AtomicU64::new(0)),
            heap,
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
        if let Some(heap) = &self.heap
            && let Some(stats) = (heap.read)()
        {
            heap.allocated.set(i64::try_from(stats.allocated).unwrap_or(i64::MAX));
            heap.resident.set(i64::try_from(stats.resident).unwrap_or(i64::MAX));
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn gauge(text: &str, name: &str) -> Option<u64> {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
    }

    #[test]
    fn heap_gauges_are_read_at_each_scrape_and_absent_without_an_allocator_reader() {
        use std::sync::atomic::AtomicU64;
        static LIVE: AtomicU64 = AtomicU64::new(5 << 20);
        let metrics = Metrics::with_heap_stats(|| {
            Some(HeapStats {
                allocated: LIVE.load(Ordering::Relaxed),
                resident: 9 << 20,
            })
        });
        let text = metrics.encode();
        assert_eq!(
            gauge(&text, "connectivity_operator_heap_allocated_bytes"),
            Some(5 << 20)
        );
        assert_eq!(gauge(&text, "connectivity_operator_heap_resident_bytes"), Some(9 << 20));
        LIVE.store(7 << 20, Ordering::Relaxed);
        let text = metrics.encode();
        assert_eq!(
            gauge(&text, "connectivity_operator_heap_allocated_bytes"),
            Some(7 << 20)
        );

        let text = Metrics::new().encode();
        assert_eq!(gauge(&text, "connectivity_operator_heap_allocated_bytes"), None);
        assert!(!text.contains("heap_resident"), "{text}");
    }
}
