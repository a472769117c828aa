//! Test harness: the real reconcile pipeline with a real `kube::Client` on the in-memory API
//! server and a real emnify simulator on 127.0.0.1:0.
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use connectivity_operator::controller::{
    Clock, Context, Settings, managed, provider_config, service_profile, subscription,
};
use connectivity_operator::crd::{ConnectivitySubscription, ProviderConfig, ServiceProfile};
use connectivity_operator::metrics::Metrics;
use connectivity_operator::offline::{Manifest, memory_server, prepare_object};
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use memory_apiserver::MemoryApiServer;
use serde_json::{Value, json};
use vendor_sim::emnify::{EmnifyConfig, EmnifySim, RunningSim};

pub const NS: &str = "default";

pub struct Harness {
    pub server: MemoryApiServer,
    pub client: kube::Client,
    pub ctx: Arc<Context>,
    pub sim: RunningSim,
    /// Telenor IoT Connect simulator with ProviderConfig `telenor`, when asked for.
    pub telenor: Option<vendor_sim::telenor::RunningSim>,
    /// BICS SIM for Things simulator with ProviderConfig `bics`, when asked for.
    pub bics: Option<vendor_sim::bics::RunningSim>,
}

pub fn quiet_sim() -> EmnifyConfig {
    // Vendor rate limits off: tests that need 429s inject them.
    EmnifyConfig {
        rate_limits: false,
        ..EmnifyConfig::default()
    }
}

impl Harness {
    /// Simulator, Secret `emnify-credentials` and ProviderConfig `emnify` pointing at it.
    pub async fn new() -> Self {
        Self::with_sim(quiet_sim()).await
    }

    pub async fn with_sim(config: EmnifyConfig) -> Self {
        connectivity_operator::install_crypto_provider();
        let sim = EmnifySim::new(config)
            .serve("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let server = memory_server();
        let client = kube::Client::new(server.clone(), NS);
        let settings = Settings {
            min_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_secs(1),
            vendor_timeout: Duration::from_secs(5),
            // Above the simulator's slow faults (5.5 s) only for the calls BICS documents as slow.
            slow_vendor_timeout: Duration::from_secs(8),
            // Pending changes are read again on every reconcile a test makes. (With a poll interval
            // above zero, whether a reconcile polls would depend on the clock having moved.)
            pending_poll_interval: Duration::ZERO,
            // Writes with unknown outcome are read back for at most this long (BICS).
            verify_timeout: Duration::from_secs(2),
            // Tests change Secrets and ProviderConfigs between reconciles and expect them read.
            provider_cache_ttl: Duration::ZERO,
            // One reconcile is one write here, as these tests step objects one at a time; the
            // bulk write (whose answer arrives with a later reconcile) is tested with running
            // controllers in tests/bulk_writes.rs.
            bulk_writes: false,
            ..Settings::default()
        };
        // Decisions are made by a clock that stands still unless a test moves it: no outcome
        // depends on how quickly the machine ran the steps before it.
        let clock = Clock::manual(chrono::Utc::now());
        let ctx = Arc::new(Context::new(client.clone(), Metrics::new(), settings).with_clock(clock));
        let h = Harness {
            server,
            client,
            ctx,
            sim,
            telenor: None,
            bics: None,
        };
        let token = h.sim.credentials()["application_token"].as_str().unwrap().to_string();
        h.add(json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "emnify-credentials", "namespace": NS},
            "stringData": {"applicationToken": token}
        }));
        let tariff = emnify_tariff_profile(&h.sim).await;
        h.add(json!({
            "apiVersion": "connectivity-operator.dev/v1alpha1", "kind": "ProviderConfig",
            "metadata": {"name": "emnify", "namespace": NS},
            "spec": {"vendor": "emnify", "endpoint": h.sim.url, "credentialsSecretRef": {"name": "emnify-credentials"},
                     "rateLimit": {"requestsPerSecond": 1000.0, "burst": 1000},
                     "emnify": {"defaultTariffProfileId": tariff}}
        }));
        h
    }

    /// Also a Telenor IoT Connect simulator (async writes applied only when a test says so) and
    /// the ProviderConfig `telenor` with Secret `telenor-credentials`.
    pub async fn with_telenor() -> Self {
        let mut h = Self::new().await;
        let config = vendor_sim::telenor::TelenorConfig {
            async_delay: Duration::from_secs(3600),
            rate_limit: None,
            ..Default::default()
        };
        let sim = vendor_sim::telenor::TelenorSim::new(config)
            .serve("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let creds = sim.credentials();
        h.add(json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "telenor-credentials", "namespace": NS},
            "stringData": {"clientId": creds["client_id"], "clientSecret": creds["client_secret"]}
        }));
        h.add(json!({
            "apiVersion": "connectivity-operator.dev/v1alpha1", "kind": "ProviderConfig",
            "metadata": {"name": "telenor", "namespace": NS},
            "spec": {"vendor": "telenorIotConnect", "endpoint": sim.url, "credentialsSecretRef": {"name": "telenor-credentials"},
                     "telenorIotConnect": {"tokenUrl": sim.token_url},
                     "rateLimit": {"requestsPerSecond": 1000.0, "burst": 1000}}
        }));
        h.telenor = Some(sim);
        h
    }

    /// Also a BICS SIM for Things simulator and the ProviderConfig `bics` (Secret
    /// `bics-credentials`).
    pub async fn with_bics(config: vendor_sim::bics::BicsConfig) -> Self {
        let mut h = Self::new().await;
        let sim = vendor_sim::bics::BicsSim::new(config)
            .serve("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let creds = sim.credentials();
        h.add(json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "bics-credentials", "namespace": NS},
            "stringData": {"username": creds["username"], "password": creds["password"]}
        }));
        h.add(json!({
            "apiVersion": "connectivity-operator.dev/v1alpha1", "kind": "ProviderConfig",
            "metadata": {"name": "bics", "namespace": NS},
            "spec": {"vendor": "bicsSft", "endpoint": sim.url, "credentialsSecretRef": {"name": "bics-credentials"},
                     "bicsSft": {"defaultRoamingProfileIds": ["RP_1"]},
                     "rateLimit": {"requestsPerSecond": 1000.0, "burst": 1000}}
        }));
        h.bics = Some(sim);
        h
    }

    pub fn bics(&self) -> &vendor_sim::bics::BicsSim {
        &self.bics.as_ref().expect("harness with BICS").sim
    }

    pub fn telenor(&self) -> &vendor_sim::telenor::TelenorSim {
        &self.telenor.as_ref().expect("harness with Telenor").sim
    }

    pub fn csubs(&self) -> Api<ConnectivitySubscription> {
        Api::namespaced(self.client.clone(), NS)
    }

    pub async fn csub(&self, name: &str) -> ConnectivitySubscription {
        self.csubs().get(name).await.unwrap()
    }

    /// Insert a ConnectivitySubscription with the given spec.
    pub fn add_csub(&self, name: &str, spec: Value) {
        self.add(json!({
            "apiVersion": "connectivity-operator.dev/v1alpha1", "kind": "ConnectivitySubscription",
            "metadata": {"name": name, "namespace": NS},
            "spec": spec
        }));
    }

    pub async fn reconcile_csub(&self, name: &str) -> Result<Action, managed::Error<subscription::Error>> {
        let c = self.csub(name).await;
        managed::reconcile(Arc::new(c), self.ctx.clone()).await
    }

    /// Moves the clock the reconciles decide by (it stands still otherwise).
    pub fn advance(&self, by: Duration) {
        self.ctx.clock.advance(by);
    }

    /// First pass adds the finalizer, second does the work. Panics on error.
    pub async fn sync_csub(&self, name: &str) -> ConnectivitySubscription {
        for _ in 0..2 {
            self.reconcile_csub(name)
                .await
                .unwrap_or_else(|e| panic!("reconcile of {name} failed: {e}"));
        }
        self.csub(name).await
    }

    /// Forget when the subscription last synced, as if the resync interval had passed (the
    /// resync clock lives in the operator's memory).
    pub async fn csub_resync_due(&self, name: &str) {
        self.ctx.synced.forget(&self.csub(name).await);
    }

    /// Insert an object as `kubectl apply` would have created it (defaults applied).
    pub fn add(&self, object: Value) {
        let mut m = Manifest {
            source: PathBuf::from("test"),
            object,
        };
        prepare_object(&mut m).expect("valid manifest");
        self.server.insert(m.object).expect("insert");
    }

    /// Insert a ServiceProfile with the given spec (providerConfigRef defaults to `emnify`).
    pub fn add_sp(&self, name: &str, mut spec: Value) {
        if spec.get("providerConfigRef").is_none() {
            spec["providerConfigRef"] = json!({"name": "emnify"});
        }
        self.add(json!({
            "apiVersion": "connectivity-operator.dev/v1alpha1", "kind": "ServiceProfile",
            "metadata": {"name": name, "namespace": NS},
            "spec": spec
        }));
    }

    pub fn sps(&self) -> Api<ServiceProfile> {
        Api::namespaced(self.client.clone(), NS)
    }

    pub fn pcs(&self) -> Api<ProviderConfig> {
        Api::namespaced(self.client.clone(), NS)
    }

    pub async fn sp(&self, name: &str) -> ServiceProfile {
        self.sps().get(name).await.unwrap()
    }

    pub async fn sp_exists(&self, name: &str) -> bool {
        self.sps().get_opt(name).await.unwrap().is_some()
    }

    pub async fn reconcile_sp(&self, name: &str) -> Result<Action, managed::Error<service_profile::Error>> {
        let sp = self.sp(name).await;
        managed::reconcile(Arc::new(sp), self.ctx.clone()).await
    }

    pub async fn reconcile_pc(&self, name: &str) -> Result<Action, managed::Error<provider_config::Error>> {
        let pc = self.pcs().get(name).await.unwrap();
        managed::reconcile(Arc::new(pc), self.ctx.clone()).await
    }

    /// Reconcile as the controller would on the watch events that follow: the first pass adds
    /// the finalizer, the second does the work. Panics on error.
    pub async fn sync_sp(&self, name: &str) -> ServiceProfile {
        for _ in 0..2 {
            self.reconcile_sp(name)
                .await
                .unwrap_or_else(|e| panic!("reconcile of {name} failed: {e}"));
        }
        self.sp(name).await
    }

    /// Change the spec the way a user's `kubectl apply` would (bumps generation).
    pub async fn patch_spec(&self, name: &str, spec_patch: Value) {
        self.sps()
            .patch(
                name,
                &PatchParams::default(),
                &Patch::Merge(json!({ "spec": spec_patch })),
            )
            .await
            .unwrap();
    }

    /// Forget when the profile last synced, as if the resync interval had passed (the resync
    /// clock lives in the operator's memory).
    pub async fn resync_due(&self, name: &str) {
        self.ctx.synced.forget(&self.sp(name).await);
    }

    pub async fn delete_sp(&self, name: &str) {
        self.sps().delete(name, &DeleteParams::default()).await.unwrap();
    }

    /// Events recorded for an object: (type, reason, note).
    pub fn events_for(&self, name: &str) -> Vec<(String, String, String)> {
        self.server
            .list("events.k8s.io/v1", "Event")
            .into_iter()
            .filter(|e| e["regarding"]["name"] == name)
            .map(|e| {
                (
                    e["type"].as_str().unwrap_or("").to_string(),
                    e["reason"].as_str().unwrap_or("").to_string(),
                    e["note"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect()
    }

    pub fn has_event(&self, name: &str, reason: &str) -> bool {
        self.events_for(name).iter().any(|(_, r, _)| r == reason)
    }

    /// Vendor profiles with this exact name.
    pub fn vendor_profiles_named(&self, name: &str) -> Vec<Value> {
        self.sim
            .sim
            .service_profiles()
            .into_iter()
            .filter(|p| p["name"] == name)
            .collect()
    }

    pub fn vendor_profile(&self, id: &str) -> Option<Value> {
        self.sim.sim.service_profile(id.parse().unwrap())
    }

    /// emnify requests made so far: (method, path, status).
    pub fn vendor_requests(&self) -> Vec<(String, String, u16)> {
        self.sim.sim.requests()
    }
}

pub fn condition<'a>(sp: &'a ServiceProfile, type_: &str) -> &'a connectivity_operator::crd::Condition {
    let status = sp.status.as_ref().expect("status written");
    connectivity_operator::crd::conditions::find(&status.conditions, type_)
        .unwrap_or_else(|| panic!("no {type_} condition in {status:?}"))
}

/// A bearer token for calling the emnify simulator directly (as a user's script would).
pub async fn emnify_token(sim: &RunningSim) -> String {
    let token = sim.credentials()["application_token"].as_str().unwrap().to_string();
    let auth: Value = reqwest::Client::new()
        .post(format!("{}/api/v1/authenticate", sim.url))
        .json(&json!({"application_token": token}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    auth["auth_token"].as_str().unwrap().to_string()
}

/// GET an emnify API path on the simulator.
pub async fn emnify_get(sim: &RunningSim, path: &str) -> Value {
    reqwest::Client::new()
        .get(format!("{}{path}", sim.url))
        .bearer_auth(emnify_token(sim).await)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

async fn emnify_tariff_profile(sim: &RunningSim) -> i64 {
    emnify_get(sim, "/api/v1/tariff_profile").await[0]["id"]
        .as_i64()
        .unwrap()
}

/// Wait (polling every 50 ms, at most `limit`) until `check` holds; panics naming `what` after.
pub async fn wait_for<F, Fut>(what: &str, limit: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = std::time::Instant::now() + limit;
    while std::time::Instant::now() < deadline {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}
