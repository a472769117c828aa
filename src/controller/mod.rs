//! The controllers: a shared [`Context`], the [`managed`] reconciler every kind runs through, the
//! resolve step every kind starts with (ProviderConfig and credentials Secret to a connected
//! vendor backend) and per-object backoff. Each kind's module supplies only its steps (resolve,
//! observe, a pure plan, act, delete); [`crate::run`] wires the kube-runtime controllers together.

pub mod batch;
pub mod claims;
pub mod clock;
pub mod credentials;
pub mod events;
pub mod inventory;
pub mod managed;
pub mod provider_config;
pub mod resolve;
pub mod service_profile;
pub mod status;
pub mod subscription;

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use kube::Client;
use kube::runtime::events::Reporter;

use crate::metrics::Metrics;
pub use clock::{Clock, SyncTimes};
pub use resolve::{Provider, Providers, ResolveError};

/// Field manager for every write the operator makes (status through server-side apply).
pub const FIELD_MANAGER: &str = "connectivity-operator";

/// Operator-wide settings.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Default interval between two reconciles of an unchanged object (drift correction,
    /// `usedCount` refresh). Overridable per object with the resync annotation.
    pub resync_interval: Duration,
    /// Timeout of one vendor request.
    pub vendor_timeout: Duration,
    /// Timeout of the requests a vendor documents as slow (BICS: 180 s for CreateEndPoint,
    /// LinkSim / DeLinkSim, EndPointActivation and EndPointLifeCycleChange); at least
    /// `vendor_timeout`.
    pub slow_vendor_timeout: Duration,
    /// First retry delay after a failure; doubles up to `max_backoff`.
    pub min_backoff: Duration,
    pub max_backoff: Duration,
    /// How often a subscription with a pending (asynchronous) vendor change is read again.
    pub pending_poll_interval: Duration,
    /// How long a pending change may stay unapplied before it is sent again.
    pub pending_timeout: Duration,
    /// Reconciles of one kind running at once. Bounded so that a fleet-wide change does not hold
    /// thousands of reconciles (and their requests) in memory while they wait for the vendor's
    /// rate limit; the limit, not concurrency, sets the pace.
    pub max_concurrent_reconciles: u16,
    /// How long to keep reading back after a write whose outcome is unknown (BICS "verify
    /// completion") before sending it again.
    pub verify_timeout: Duration,
    /// Observe subscriptions through one inventory sweep per account (default). `false` reads
    /// each SIM on its own: the baseline the benchmark compares against.
    pub bulk_observation: bool,
    /// Send changes the vendor can take in bulk (emnify: endpoint status and service profile)
    /// through its bulk write, batched per account (default). `false` writes each SIM with its
    /// own request: the baseline the benchmark compares against.
    pub bulk_writes: bool,
    /// A bulk write goes out once no further change arrived for this long (or at the vendor's
    /// maximum per call, or after `bulk_write_max_delay`).
    pub bulk_write_window: Duration,
    /// The longest the first change of a bulk write waits while more keep arriving.
    pub bulk_write_max_delay: Duration,
    /// How long a resolved ProviderConfig (and its credentials Secret) is reused before both are
    /// read again; a ProviderConfig change is picked up at once, a rotated Secret within this.
    pub provider_cache_ttl: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            resync_interval: Duration::from_secs(600),
            vendor_timeout: Duration::from_secs(30),
            slow_vendor_timeout: Duration::from_secs(190),
            min_backoff: Duration::from_secs(5),
            max_backoff: Duration::from_secs(300),
            pending_poll_interval: Duration::from_secs(10),
            pending_timeout: Duration::from_secs(300),
            bulk_observation: true,
            bulk_writes: true,
            bulk_write_window: Duration::from_millis(500),
            bulk_write_max_delay: Duration::from_secs(10),
            verify_timeout: Duration::from_secs(180),
            max_concurrent_reconciles: 64,
            provider_cache_ttl: Duration::from_secs(30),
        }
    }
}

/// Everything a reconcile needs, shared by all controllers.
pub struct Context {
    pub client: Client,
    pub recorder: events::EventRecorder,
    pub metrics: Metrics,
    pub providers: Providers,
    pub inventories: std::sync::Arc<inventory::Inventories>,
    /// Which subscription manages each SIM (duplicates are refused).
    pub claims: std::sync::Arc<claims::Claims>,
    pub settings: Settings,
    /// The time every decision is made by (the system clock; tests move their own).
    pub clock: Clock,
    /// When each object last synced (the resync clock; in memory, never in status).
    pub synced: SyncTimes,
    backoff: Backoff,
}

impl Context {
    pub fn new(client: Client, metrics: Metrics, settings: Settings) -> Self {
        let reporter = Reporter {
            controller: "connectivity-operator".into(),
            instance: std::env::var("POD_NAME").ok(),
        };
        Context {
            recorder: events::EventRecorder::new(client.clone(), reporter),
            providers: Providers::new(
                metrics.clone(),
                settings.vendor_timeout,
                settings.slow_vendor_timeout,
                settings.verify_timeout,
            )
            .with_reuse(settings.provider_cache_ttl),
            inventories: Default::default(),
            claims: Default::default(),
            client,
            metrics,
            settings,
            clock: Clock::System,
            synced: SyncTimes::default(),
            backoff: Backoff::default(),
        }
    }

    /// The same context deciding by `clock` (tests: a [`Clock::manual`] clock).
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// Delay before retrying a failed object: `retry_after` when the vendor gave one, else capped
    /// exponential backoff with jitter (permanent errors wait the longest).
    pub fn retry_delay(&self, key: &str, retry_after: Option<Duration>, permanent: bool) -> Duration {
        let attempt = self.backoff.fail(key);
        if let Some(after) = retry_after {
            return after;
        }
        if permanent {
            return self.settings.max_backoff;
        }
        let base = self.settings.min_backoff.as_secs_f64() * 2f64.powi(attempt.min(16) as i32);
        let capped = base.min(self.settings.max_backoff.as_secs_f64());
        // Up to 20 % jitter so objects failing together do not retry together.
        let jitter = 1.0 + rand::random::<f64>() * 0.2;
        Duration::from_secs_f64((capped * jitter).min(self.settings.max_backoff.as_secs_f64()))
    }

    /// The connected account the object uses (its `spec.providerConfigRef`).
    pub async fn provider_for<K: managed::Managed>(&self, obj: &K) -> Result<std::sync::Arc<Provider>, ResolveError> {
        let name = obj.account().unwrap_or_default();
        self.providers
            .resolve(&self.client, &managed::namespace(obj), name)
            .await
    }

    pub fn reset_backoff(&self, key: &str) {
        self.backoff.reset(key);
    }

    /// Resync interval for an object: its annotation, else the operator default.
    pub fn resync_for(&self, annotations: Option<&std::collections::BTreeMap<String, String>>) -> Duration {
        annotations
            .and_then(|a| a.get(crate::crd::RESYNC_ANNOTATION))
            .and_then(|v| crate::crd::parse_duration(v))
            .filter(|d| !d.is_zero())
            .unwrap_or(self.settings.resync_interval)
    }
}

/// Consecutive failures per object.
#[derive(Default)]
struct Backoff {
    failures: Mutex<HashMap<String, u32>>,
}

impl Backoff {
    fn fail(&self, key: &str) -> u32 {
        let mut map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let n = map.entry(key.to_string()).or_insert(0);
        let attempt = *n;
        *n = n.saturating_add(1);
        attempt
    }

    fn reset(&self, key: &str) {
        self.failures.lock().unwrap_or_else(|p| p.into_inner()).remove(key);
    }
}

/// `namespace/name` key of an object.
pub fn key_of<K: kube::Resource<DynamicType = ()>>(obj: &K) -> String {
    format!(
        "{}/{}/{}",
        K::kind(&()),
        obj.meta().namespace.as_deref().unwrap_or(""),
        obj.meta().name.as_deref().unwrap_or("")
    )
}
