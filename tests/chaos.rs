//! Chaos run: many faults at once on the real control plane, then invariants.
//!
//! ServiceProfiles and ConnectivitySubscriptions on emnify, BICS and Telenor (simulators in this
//! process) get a seeded stream of spec changes (modes, profile references, deletions with both
//! policies, confirmed and unconfirmed terminations) while every simulator fails a seeded share of
//! all calls (`vendor_sim::chaos`: 5xx before and after a write applied, stalls past the
//! operator's timeout that applied or not, 429 bursts with and without `Retry-After`; on BICS
//! these are 10239 / 10240, on Telenor 504 on the asynchronous writes), every issued token is
//! revoked mid-run, the operator (its own process) is killed with SIGKILL three times, the first
//! time while vendor writes that applied wait for their answer (so between a create and its status
//! write), and the kube-apiserver is restarted once. Then the faults stop, the run waits until
//! everything converged, and checks from the simulators' own state and the API:
//!
//! - every object's desired state is reached at the vendor (or its condition says why not);
//! - no duplicate vendor object, and no create re-sent after it had applied;
//! - no termination without the confirming annotation;
//! - no finalizer left on a deleted object;
//! - no credential in any log line, Event or status.
//!
//! It prints a table (objects, changes, faults by kind, restarts, time to converge, vendor calls,
//! each invariant with its count). The short run is part of the cluster tier in
//! `scripts/test.sh`; the full one (1,000 ServiceProfiles, 10,000 subscriptions) is
//! `bash scripts/chaos.sh`. Both need the control plane of `scripts/control-plane.sh run`
//! (`KUBECONFIG`, and `CONTROL_PLANE_DIR` for the apiserver restart). `CHAOS_SEED` picks the seed.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use connectivity_operator::crd::conditions::{self, READY};
use connectivity_operator::crd::subscription::CONFIRM_TERMINATION_ANNOTATION;
use connectivity_operator::crd::{ConnectivitySubscription, ServiceProfile};
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube::{Client, ResourceExt};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use vendor_sim::chaos::{ChaosConfig, ChaosCounts};

const NS: &str = "chaos";
const GITOPS: &str = "chaos-gitops";
/// Every vendor request of the operator times out after this; stalls last longer.
const VENDOR_TIMEOUT: &str = "3s";
const STALL_MS: u64 = 4_000;

#[derive(Clone, Copy, Debug)]
struct Scale {
    /// ServiceProfiles: emnify, BICS, Telenor.
    profiles: [usize; 3],
    /// ConnectivitySubscriptions: emnify, BICS, Telenor.
    subscriptions: [usize; 3],
    /// Rounds of spec changes, how many changes each, and the pause between rounds.
    rounds: usize,
    per_round: usize,
    gap: Duration,
    /// The longest the quiet phase may take before what has not converged is reported.
    converge_limit: Duration,
    /// `spec.rateLimit.requestsPerSecond` of the three accounts (`None`: the vendors' defaults,
    /// BICS 1/s). At full scale the defaults would make the run measure BICS's pace (3,000 SIMs
    /// needing an endpoint each: two calls, ~100 minutes at 1/s), not the faults; the simulators
    /// still answer their own 429 bursts.
    requests_per_second: Option<f64>,
}

impl Scale {
    fn short() -> Scale {
        Scale {
            profiles: [12, 12, 6],
            subscriptions: [120, 90, 90],
            rounds: 12,
            per_round: 8,
            gap: Duration::from_secs(2),
            converge_limit: Duration::from_secs(420),
            requests_per_second: None,
        }
    }

    fn full() -> Scale {
        Scale {
            profiles: [450, 400, 150],
            subscriptions: [4_000, 3_000, 3_000],
            rounds: 30,
            per_round: 150,
            gap: Duration::from_secs(3),
            converge_limit: Duration::from_secs(1_800),
            requests_per_second: Some(50.0),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Vendor {
    Emnify,
    Bics,
    Telenor,
}

impl Vendor {
    const ALL: [Vendor; 3] = [Vendor::Emnify, Vendor::Bics, Vendor::Telenor];

    fn provider(self) -> &'static str {
        match self {
            Vendor::Emnify => "emnify",
            Vendor::Bics => "bics",
            Vendor::Telenor => "telenor",
        }
    }

    fn short(self) -> char {
        match self {
            Vendor::Emnify => 'e',
            Vendor::Bics => 'b',
            Vendor::Telenor => 't',
        }
    }
}

/// What Git wants for one ServiceProfile.
#[derive(Clone, Debug)]
struct Profile {
    name: String,
    vendor: Vendor,
    /// Never referenced by a subscription, so it may be deleted during the run.
    spare: bool,
    /// Telenor: the service policy it names.
    policy: Option<String>,
    description: String,
    orphan: bool,
    deleted: bool,
}

/// What Git wants for one ConnectivitySubscription.
#[derive(Clone, Debug)]
struct Sub {
    name: String,
    vendor: Vendor,
    imsi: String,
    iccid: String,
    mode: &'static str,
    /// Index into the profiles.
    profile: Option<usize>,
    /// BICS: a SIM from inventory, which gets an endpoint with this plan.
    plan: Option<&'static str>,
    deactivate_on_delete: bool,
    /// `Some(true)`: Terminated with the confirming annotation; `Some(false)`: without.
    terminate: Option<bool>,
    deleted: bool,
}

/// The operator binary as its own process, its log in a file of its own.
struct Operator {
    child: Child,
}

impl Operator {
    fn start(kubeconfig: &Path, dir: &Path, incarnation: usize) -> Operator {
        let log = std::fs::File::create(dir.join(format!("operator-{incarnation}.log"))).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_connectivity-operator"))
            .arg("run")
            .args(["--namespace", NS, "--metrics-addr", "127.0.0.1:0"])
            .args([
                "--vendor-timeout",
                VENDOR_TIMEOUT,
                "--slow-vendor-timeout",
                VENDOR_TIMEOUT,
            ])
            .args(["--pending-poll-interval", "1s", "--resync-interval", "45s"])
            .env("KUBECONFIG", kubeconfig)
            .env("RUST_LOG", "info")
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("the operator binary starts");
        Operator { child }
    }

    /// SIGKILL: no shutdown, nothing flushed, in-flight reconciles lost.
    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        self.kill();
    }
}

struct Sims {
    emnify: vendor_sim::emnify::RunningSim,
    bics: vendor_sim::bics::RunningSim,
    telenor: vendor_sim::telenor::RunningSim,
}

impl Sims {
    async fn start(scale: &Scale) -> Sims {
        let any = "127.0.0.1:0".parse().unwrap();
        let emnify = vendor_sim::emnify::EmnifySim::new(vendor_sim::emnify::EmnifyConfig {
            rate_limits: false,
            latency: Duration::from_millis(5),
            seed: vendor_sim::emnify::SeedConfig {
                endpoints: scale.subscriptions[0] * 3 / 2,
                free_sims: 10,
                ..Default::default()
            },
            ..Default::default()
        })
        .serve(any)
        .await
        .unwrap();
        let bics = vendor_sim::bics::BicsSim::new(vendor_sim::bics::BicsConfig {
            rate_limit: None,
            latency: Duration::from_millis(5),
            seed: vendor_sim::bics::BicsSeed {
                endpoints: scale.subscriptions[1] * 3 / 2,
                free_sims: scale.subscriptions[1] / 5 + 5,
                ..Default::default()
            },
            ..Default::default()
        })
        .serve(any)
        .await
        .unwrap();
        let telenor = vendor_sim::telenor::TelenorSim::new(vendor_sim::telenor::TelenorConfig {
            rate_limit: None,
            latency: Duration::from_millis(5),
            async_delay: Duration::from_secs(1),
            seed: vendor_sim::telenor::TelenorSeed {
                subscriptions: scale.subscriptions[2] * 3 / 2,
                ..Default::default()
            },
            ..Default::default()
        })
        .serve(any)
        .await
        .unwrap();
        Sims { emnify, bics, telenor }
    }

    /// Seeded faults on every simulator (each its own stream); `None` turns them off.
    fn chaos(&self, seed: Option<u64>) {
        let config = |vendor: u64, retry_after: Option<u32>| match seed {
            None => ChaosConfig::default(),
            Some(seed) => ChaosConfig {
                seed: seed.wrapping_mul(31).wrapping_add(vendor),
                server_error: 0.10,
                error_after_apply: 0.03,
                stall: 0.05,
                stall_applied: 0.5,
                stall_ms: STALL_MS,
                throttle: 0.01,
                burst: 5,
                retry_after,
                writes_only: false,
            },
        };
        // 429s with Retry-After on Telenor, without on emnify and BICS.
        self.emnify.sim.set_chaos(config(1, None)).unwrap();
        self.bics.sim.set_chaos(config(2, None)).unwrap();
        self.telenor.sim.set_chaos(config(3, Some(1))).unwrap();
    }

    /// Every write that arrives applies and then stalls past the operator's timeout; reads stall.
    fn stall_every_write(&self) {
        let config = ChaosConfig {
            stall: 1.0,
            stall_applied: 1.0,
            stall_ms: 20_000,
            // Reads answer, so the operator gets as far as its creates.
            writes_only: true,
            ..ChaosConfig::default()
        };
        self.emnify.sim.set_chaos(config.clone()).unwrap();
        self.bics.sim.set_chaos(config).unwrap();
    }

    fn stalled_writes(&self) -> u64 {
        self.emnify.sim.chaos_counts().stalls_applied + self.bics.sim.chaos_counts().stalls_applied
    }

    fn expire_tokens(&self) {
        self.emnify.sim.expire_tokens();
        self.telenor.sim.expire_tokens();
        self.bics.sim.inject(vendor_sim::bics::BicsFault::ExpireTokens);
    }

    fn counts(&self) -> [(Vendor, ChaosCounts); 3] {
        [
            (Vendor::Emnify, self.emnify.sim.chaos_counts()),
            (Vendor::Bics, self.bics.sim.chaos_counts()),
            (Vendor::Telenor, self.telenor.sim.chaos_counts()),
        ]
    }

    fn calls(&self) -> [(Vendor, u64); 3] {
        [
            (Vendor::Emnify, self.emnify.sim.request_count()),
            (Vendor::Bics, self.bics.sim.request_count()),
            (Vendor::Telenor, self.telenor.sim.request_count()),
        ]
    }

    /// The credentials Secrets hold, which must never show up anywhere.
    fn secrets(&self) -> Vec<String> {
        let e = self.emnify.credentials();
        let b = self.bics.credentials();
        let t = self.telenor.credentials();
        [&e["application_token"], &b["password"], &t["client_secret"]]
            .iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect()
    }
}

fn str_of(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => String::new(),
    }
}

// --- the objects ---------------------------------------------------------------------------------

/// The subscriptions' SIMs, from the simulators' own state: SIMs in a state our modes can move.
fn fleet(sims: &Sims, scale: &Scale, rng: &mut StdRng) -> Vec<Sub> {
    let mut subs = Vec::new();
    let mut push = |vendor: Vendor, imsi: String, iccid: String, plan: Option<&'static str>, rng: &mut StdRng| {
        let i = subs.iter().filter(|s: &&Sub| s.vendor == vendor).count();
        subs.push(Sub {
            name: format!("cs-{}-{i:05}", vendor.short()),
            vendor,
            imsi,
            iccid,
            mode: if rng.random_bool(0.7) { "Active" } else { "Paused" },
            profile: None,
            plan,
            deactivate_on_delete: false,
            terminate: None,
            deleted: false,
        });
    };
    // emnify: SIMs on an endpoint, Activated or Suspended.
    let emnify: Vec<Value> = sims
        .emnify
        .sim
        .endpoints()
        .into_iter()
        .map(|e| e["sim"].clone())
        .filter(|sim| {
            sim.is_object() && matches!(sim["status"]["description"].as_str(), Some("Activated" | "Suspended"))
        })
        .take(scale.subscriptions[0])
        .collect();
    for sim in emnify {
        push(Vendor::Emnify, str_of(&sim["imsi"]), str_of(&sim["iccid"]), None, rng);
    }
    // BICS: endpoints Active or Suspended, and a fifth from inventory (they get an endpoint).
    let from_inventory = scale.subscriptions[1] / 5;
    let linked: Vec<Value> = sims
        .bics
        .sim
        .endpoints()
        .into_iter()
        .filter(|e| matches!(e["status"].as_str(), Some("Active" | "Suspended")))
        .take(scale.subscriptions[1] - from_inventory)
        .collect();
    for e in linked {
        push(Vendor::Bics, str_of(&e["imsi"]), str_of(&e["iccid"]), None, rng);
    }
    let free: Vec<Value> = sims
        .bics
        .sim
        .sims()
        .into_iter()
        .filter(|s| s["endPointId"].as_str().is_none_or(|e| e.is_empty() || e == "-"))
        .take(from_inventory)
        .collect();
    for s in free {
        push(
            Vendor::Bics,
            str_of(&s["imsi"]),
            str_of(&s["iccid"]),
            Some("572960"),
            rng,
        );
    }
    // Telenor: every mode but TERMINATED.
    let telenor: Vec<Value> = sims
        .telenor
        .sim
        .subscriptions()
        .into_iter()
        .filter(|s| s["mode"] != "TERMINATED")
        .take(scale.subscriptions[2])
        .collect();
    for s in telenor {
        push(Vendor::Telenor, str_of(&s["imsi"]), str_of(&s["iccid"]), None, rng);
    }
    subs
}

fn profiles(sims: &Sims, scale: &Scale) -> Vec<Profile> {
    let policies: Vec<String> = sims
        .telenor
        .sim
        .service_policies()
        .iter()
        .filter_map(|p| p["attributes"]["name"].as_str().map(str::to_string))
        .collect();
    let mut out = Vec::new();
    for vendor in Vendor::ALL {
        let n = scale.profiles[vendor as usize];
        for i in 0..n {
            out.push(Profile {
                name: format!("sp-{}-{i:04}", vendor.short()),
                vendor,
                // the last third is never referenced: those may be deleted
                spare: i >= n * 2 / 3,
                policy: (vendor == Vendor::Telenor).then(|| policies[i % policies.len()].clone()),
                description: format!("chaos profile {i}"),
                orphan: i % 2 == 0,
                deleted: false,
            });
        }
    }
    out
}

fn profile_manifest(p: &Profile) -> Value {
    let mut spec = json!({
        "providerConfigRef": {"name": p.vendor.provider()},
        "deletionPolicy": if p.orphan { "Orphan" } else { "Delete" },
    });
    match p.vendor {
        Vendor::Emnify => {
            spec["description"] = json!(p.description);
            spec["emnify"] = json!({"allowed3g": false});
        }
        Vendor::Bics => {
            spec["bicsSft"] = json!({"category": "Base", "status": "Active", "services": ["Data", "SmsMo", "SmsMt"],
                                     "accessType": "2G/3G/4G/5G"});
        }
        Vendor::Telenor => spec["name"] = json!(p.policy),
    }
    json!({"apiVersion": "connectivity-operator.dev/v1alpha1", "kind": "ServiceProfile",
           "metadata": {"name": p.name, "namespace": NS}, "spec": spec})
}

fn sub_manifest(s: &Sub, profiles: &[Profile]) -> Value {
    let mut spec = json!({
        "providerConfigRef": {"name": s.vendor.provider()},
        "mode": s.mode,
        "deletionPolicy": if s.deactivate_on_delete { "Deactivate" } else { "Orphan" },
    });
    match s.vendor {
        Vendor::Bics => spec["iccid"] = json!(s.iccid),
        Vendor::Emnify | Vendor::Telenor => spec["imsi"] = json!(s.imsi),
    }
    if let Some(p) = s.profile {
        spec["serviceProfileRef"] = json!({"name": profiles[p].name});
    }
    if let Some(plan) = s.plan {
        spec["bicsSft"] = json!({"planId": plan});
    }
    let mut metadata = json!({"name": s.name, "namespace": NS});
    if s.terminate == Some(true) {
        metadata["annotations"] = json!({CONFIRM_TERMINATION_ANNOTATION: s.iccid});
    }
    json!({"apiVersion": "connectivity-operator.dev/v1alpha1", "kind": "ConnectivitySubscription",
           "metadata": metadata, "spec": spec})
}

// --- the cluster ---------------------------------------------------------------------------------

async fn install_crds(client: &Client) {
    connectivity_operator::crd::install(client, GITOPS)
        .await
        .expect("CRDs installed");
}

/// Server-side apply as Git would, retried while the API server is away (it is restarted once).
async fn apply(client: &Client, object: &Value) {
    let name = object["metadata"]["name"].as_str().unwrap();
    let api_version = object["apiVersion"].as_str().unwrap();
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    let gvk = kube::api::GroupVersionKind::gvk(group, version, object["kind"].as_str().unwrap());
    let api: Api<kube::api::DynamicObject> =
        Api::namespaced_with(client.clone(), NS, &kube::api::ApiResource::from_gvk(&gvk));
    let pp = PatchParams::apply(GITOPS).force();
    for attempt in 0.. {
        match api.patch(name, &pp, &Patch::Apply(object)).await {
            Ok(_) => return,
            Err(e) if attempt < 120 => {
                tracing::debug!(error = %e, name, "apply failed; again");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => panic!("apply {name}: {e}"),
        }
    }
}

async fn delete<K>(client: &Client, name: &str)
where
    K: kube::Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    let api: Api<K> = Api::namespaced(client.clone(), NS);
    for attempt in 0.. {
        match api.delete(name, &DeleteParams::default()).await {
            Ok(_) => return,
            Err(kube::Error::Api(s)) if s.code == 404 => return,
            Err(e) if attempt < 120 => {
                tracing::debug!(error = %e, name, "delete failed; again");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => panic!("delete {name}: {e}"),
        }
    }
}

async fn apply_all(client: &Client, objects: Vec<Value>) {
    use futures::StreamExt;
    futures::stream::iter(objects)
        .for_each_concurrent(16, |o| {
            let client = client.clone();
            async move { apply(&client, &o).await }
        })
        .await;
}

fn restart_apiserver() {
    let dir = std::env::var("CONTROL_PLANE_DIR").expect(
        "CONTROL_PLANE_DIR: run under `bash scripts/control-plane.sh run --` (the chaos run restarts its apiserver)",
    );
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let status = Command::new("bash")
        .arg(repo.join("scripts/control-plane.sh"))
        .args(["restart-apiserver", &dir])
        .status()
        .expect("control-plane.sh runs");
    assert!(status.success(), "control-plane.sh restart-apiserver failed");
}

// --- the run -------------------------------------------------------------------------------------

#[derive(Default, Debug)]
struct Changes {
    by_kind: BTreeMap<&'static str, usize>,
}

impl Changes {
    fn add(&mut self, kind: &'static str) {
        *self.by_kind.entry(kind).or_default() += 1;
    }

    fn total(&self) -> usize {
        self.by_kind.values().sum()
    }
}

/// One seeded change to the desired state; returns what it was, or `None` when nothing fit.
fn change(rng: &mut StdRng, subs: &mut [Sub], profiles: &mut [Profile]) -> Option<(&'static str, Value, bool)> {
    let live: Vec<usize> = (0..subs.len())
        .filter(|&i| !subs[i].deleted && subs[i].terminate.is_none())
        .collect();
    let pick = rng.random_range(0..100);
    if pick >= 90 {
        // a spare profile deleted (Delete or Orphan)
        let spare: Vec<usize> = (0..profiles.len())
            .filter(|&i| profiles[i].spare && !profiles[i].deleted)
            .collect();
        let i = *spare.get(rng.random_range(0..spare.len().max(1)))?;
        profiles[i].deleted = true;
        let kind = if profiles[i].orphan {
            "profile deleted (Orphan)"
        } else {
            "profile deleted (Delete)"
        };
        return Some((kind, json!({"kind": "ServiceProfile", "name": profiles[i].name}), true));
    }
    if pick >= 85 {
        // an emnify profile's description
        let candidates: Vec<usize> = (0..profiles.len())
            .filter(|&i| profiles[i].vendor == Vendor::Emnify && !profiles[i].deleted)
            .collect();
        let i = *candidates.get(rng.random_range(0..candidates.len().max(1)))?;
        profiles[i].description = format!("chaos profile, edit {}", rng.random_range(0..1_000_000));
        return Some(("profile changed", profile_manifest(&profiles[i]), false));
    }
    let s = *live.get(rng.random_range(0..live.len().max(1)))?;
    let sub = &mut subs[s];
    let kind = match pick {
        0..45 => {
            let modes: &[&'static str] = match sub.vendor {
                Vendor::Bics => &["Active", "Paused"],
                _ => &["Active", "Paused", "Deactivated"],
            };
            let next = modes.iter().copied().filter(|m| *m != sub.mode).collect::<Vec<_>>();
            sub.mode = next[rng.random_range(0..next.len())];
            "mode"
        }
        45..65 if sub.vendor != Vendor::Bics => {
            let own: Vec<usize> = (0..profiles.len())
                .filter(|&i| profiles[i].vendor == sub.vendor && !profiles[i].spare)
                .collect();
            sub.profile = Some(own[rng.random_range(0..own.len())]);
            "profile reference"
        }
        65..75 => {
            sub.deleted = true;
            sub.deactivate_on_delete = rng.random_bool(0.5);
            let kind = if sub.deactivate_on_delete {
                "subscription deleted (Deactivate)"
            } else {
                "subscription deleted (Orphan)"
            };
            // the policy first (Git changes it, then removes the object)
            return Some((kind, sub_manifest(sub, profiles), true));
        }
        75..80 => {
            sub.mode = "Terminated";
            sub.terminate = Some(true);
            "termination, confirmed"
        }
        80..85 => {
            sub.mode = "Terminated";
            sub.terminate = Some(false);
            "termination, not confirmed"
        }
        _ => return None,
    };
    Some((kind, sub_manifest(sub, profiles), false))
}

/// The desired state at the vendor for each subscription, from the simulators.
struct VendorView {
    /// emnify, by IMSI: (SIM status, endpoint status, endpoint's service profile id).
    emnify: BTreeMap<String, (String, String, String)>,
    emnify_deleted: BTreeSet<String>,
    emnify_profile_names: BTreeMap<String, Vec<String>>,
    emnify_endpoint_names: BTreeMap<String, usize>,
    /// BICS, by ICCID: endpoint status.
    bics: BTreeMap<String, String>,
    bics_delinked: BTreeSet<String>,
    bics_profile_names: BTreeMap<String, Vec<String>>,
    bics_endpoint_names: BTreeMap<String, usize>,
    /// Telenor, by IMSI: (mode, service policy id).
    telenor: BTreeMap<String, (String, String)>,
}

impl VendorView {
    fn read(sims: &Sims) -> VendorView {
        let mut v = VendorView {
            emnify: BTreeMap::new(),
            emnify_deleted: sims
                .emnify
                .sim
                .deleted_sims()
                .into_iter()
                .map(|(_, imsi)| imsi)
                .collect(),
            emnify_profile_names: BTreeMap::new(),
            emnify_endpoint_names: BTreeMap::new(),
            bics: BTreeMap::new(),
            bics_delinked: sims.bics.sim.delinked().into_iter().collect(),
            bics_profile_names: BTreeMap::new(),
            bics_endpoint_names: BTreeMap::new(),
            telenor: BTreeMap::new(),
        };
        for e in sims.emnify.sim.endpoints() {
            *v.emnify_endpoint_names.entry(str_of(&e["name"])).or_default() += 1;
            if e["sim"].is_object() {
                v.emnify.insert(
                    str_of(&e["sim"]["imsi"]),
                    (
                        str_of(&e["sim"]["status"]["description"]),
                        str_of(&e["status"]["description"]),
                        str_of(&e["service_profile"]["id"]),
                    ),
                );
            }
        }
        for p in sims.emnify.sim.service_profiles() {
            v.emnify_profile_names
                .entry(str_of(&p["name"]))
                .or_default()
                .push(str_of(&p["id"]));
        }
        for e in sims.bics.sim.endpoints() {
            *v.bics_endpoint_names.entry(str_of(&e["name"])).or_default() += 1;
            if let Some(iccid) = e["iccid"].as_str().filter(|i| *i != "-") {
                v.bics.insert(iccid.to_string(), str_of(&e["status"]));
            }
        }
        for p in sims.bics.sim.service_profiles() {
            v.bics_profile_names
                .entry(str_of(&p["profileName"]))
                .or_default()
                .push(str_of(&p["profileId"]));
        }
        for s in sims.telenor.sim.subscriptions() {
            v.telenor
                .insert(str_of(&s["imsi"]), (str_of(&s["mode"]), str_of(&s["servicePolicyId"])));
        }
        v
    }

    /// Whether the SIM of `s` is terminated at its vendor.
    fn terminated(&self, s: &Sub) -> bool {
        match s.vendor {
            Vendor::Emnify => self.emnify_deleted.contains(&s.imsi),
            // BICS has no retirement call: terminating de-links the SIM and deletes its endpoint,
            // leaving it in inventory (README, modes per vendor). A SIM that had no endpoint is
            // in that state already and needs no call (the first full run counted 7 such SIMs as
            // not terminated because nothing was de-linked).
            Vendor::Bics => !self.bics.contains_key(&s.iccid),
            Vendor::Telenor => self.telenor.get(&s.imsi).is_some_and(|(m, _)| m == "TERMINATED"),
        }
    }

    /// Whether a call terminated the SIM of `s` (BICS: it was de-linked, and has no endpoint).
    fn terminated_by_a_call(&self, s: &Sub) -> bool {
        match s.vendor {
            Vendor::Bics => self.bics_delinked.contains(&s.iccid) && !self.bics.contains_key(&s.iccid),
            _ => self.terminated(s),
        }
    }

    /// Whether the vendor shows the SIM of `s` in `mode` (the README's mode table).
    fn in_mode(&self, s: &Sub, mode: &str) -> bool {
        if mode == "Terminated" {
            return self.terminated(s);
        }
        match s.vendor {
            Vendor::Emnify => self.emnify.get(&s.imsi).is_some_and(|(sim, ep, _)| {
                matches!(
                    (mode, sim.as_str(), ep.as_str()),
                    ("Active", "Activated", "Enabled")
                        | ("Paused", "Activated", "Disabled")
                        | ("Deactivated", "Suspended" | "Issued", "Disabled")
                )
            }),
            Vendor::Bics => match self.bics.get(&s.iccid).map(String::as_str) {
                Some("Active") => mode == "Active",
                Some("Suspended") => matches!(mode, "Paused" | "Deactivated"),
                Some("Pre-Active") | None => mode == "Deactivated",
                _ => false,
            },
            Vendor::Telenor => self.telenor.get(&s.imsi).is_some_and(|(m, _)| {
                matches!(
                    (mode, m.as_str()),
                    ("Active", "ACTIVE") | ("Paused", "PAUSED") | ("Deactivated", "DEACTIVATED")
                )
            }),
        }
    }
}

#[derive(Debug, Default)]
struct Report {
    seed: u64,
    profiles: usize,
    subscriptions: usize,
    changes: Changes,
    faults: Vec<(Vendor, ChaosCounts)>,
    token_revocations: usize,
    operator_kills: usize,
    apiserver_restarts: usize,
    converge: Duration,
    unconverged: Vec<String>,
    /// Subscriptions deleted before the operator had put its finalizer on them.
    unclaimed: usize,
    /// Operator log lines about the objects an invariant names.
    log_lines: Vec<String>,
    vendor_calls: Vec<(Vendor, u64)>,
    /// Invariant -> offending objects (empty: held).
    invariants: BTreeMap<&'static str, Vec<String>>,
}

impl Report {
    fn print(&self) {
        let mut out = String::new();
        let row = |out: &mut String, k: &str, v: String| out.push_str(&format!("| {k} | {v} |\n"));
        out.push_str(&format!("\nchaos run, seed {}\n\n| | |\n|---|---|\n", self.seed));
        row(
            &mut out,
            "objects",
            format!(
                "{} ServiceProfiles, {} ConnectivitySubscriptions",
                self.profiles, self.subscriptions
            ),
        );
        let changes: Vec<String> = self.changes.by_kind.iter().map(|(k, n)| format!("{k} {n}")).collect();
        row(
            &mut out,
            "spec changes",
            format!("{} ({})", self.changes.total(), changes.join(", ")),
        );
        for (vendor, c) in &self.faults {
            row(
                &mut out,
                &format!("faults, {}", vendor.provider()),
                format!(
                    "{} calls drawn: {} 5xx, {} errors after the write applied, {} stalls applied, {} stalls not applied, {} 429s in {} bursts",
                    c.calls,
                    c.server_errors,
                    c.errors_after_apply,
                    c.stalls_applied,
                    c.stalls_not_applied,
                    c.throttled,
                    c.bursts
                ),
            );
        }
        row(
            &mut out,
            "token revocations",
            format!("{} (every vendor)", self.token_revocations),
        );
        row(
            &mut out,
            "operator SIGKILLs / apiserver restarts",
            format!("{} / {}", self.operator_kills, self.apiserver_restarts),
        );
        row(
            &mut out,
            "subscriptions deleted before the operator claimed them (no policy can run)",
            self.unclaimed.to_string(),
        );
        row(
            &mut out,
            "time to converge after the faults stopped",
            format!(
                "{:.1} s ({} not converged)",
                self.converge.as_secs_f64(),
                self.unconverged.len()
            ),
        );
        let calls: Vec<String> = self
            .vendor_calls
            .iter()
            .map(|(v, n)| format!("{} {n}", v.provider()))
            .collect();
        row(&mut out, "vendor calls", calls.join(", "));
        out.push_str("\n| invariant | count | target |\n|---|---|---|\n");
        for (name, offenders) in &self.invariants {
            out.push_str(&format!("| {name} | {} | 0 |\n", offenders.len()));
        }
        println!("{out}");
        for (name, offenders) in &self.invariants {
            if !offenders.is_empty() {
                println!(
                    "{name}: {}",
                    offenders.iter().take(20).cloned().collect::<Vec<_>>().join("; ")
                );
            }
        }
    }
}

fn condition_reason(conds: &[connectivity_operator::crd::Condition], reason: &str) -> bool {
    conds.iter().any(|c| c.reason == reason)
}

/// Whether a live subscription has settled where Git wants it (or where its condition says why not).
fn sub_settled(c: &ConnectivitySubscription, want: &Sub) -> bool {
    let Some(s) = c.status.as_ref() else { return false };
    if s.observed_generation != c.metadata.generation {
        return false;
    }
    match want.terminate {
        Some(false) => condition_reason(&s.conditions, "TerminationNotConfirmed"),
        _ => conditions::is_true(&s.conditions, READY) && s.pending_change.is_none(),
    }
}

fn profile_settled(p: &ServiceProfile) -> bool {
    p.status
        .as_ref()
        .is_some_and(|s| s.observed_generation == p.metadata.generation && conditions::is_true(&s.conditions, READY))
}

/// Objects still away from their desired state: live ones not settled, deleted ones still there.
async fn unsettled(client: &Client, subs: &[Sub], profiles: &[Profile]) -> Option<Vec<String>> {
    let csubs = Api::<ConnectivitySubscription>::namespaced(client.clone(), NS)
        .list(&ListParams::default())
        .await
        .ok()?;
    let sps = Api::<ServiceProfile>::namespaced(client.clone(), NS)
        .list(&ListParams::default())
        .await
        .ok()?;
    let csubs: BTreeMap<String, ConnectivitySubscription> =
        csubs.items.into_iter().map(|c| (c.name_any(), c)).collect();
    let sps: BTreeMap<String, ServiceProfile> = sps.items.into_iter().map(|p| (p.name_any(), p)).collect();
    let mut out = Vec::new();
    for s in subs {
        match (csubs.get(&s.name), s.deleted) {
            (Some(_), true) => out.push(format!("{}: deleted, still there", s.name)),
            (Some(c), false) if !sub_settled(c, s) => out.push(format!(
                "{}: {:?}",
                s.name,
                c.status.as_ref().map(|st| st
                    .conditions
                    .iter()
                    .map(|c| format!("{}={:?} {}", c.type_, c.status, c.reason))
                    .collect::<Vec<_>>())
            )),
            (None, false) => out.push(format!("{}: missing", s.name)),
            _ => {}
        }
    }
    for p in profiles {
        match (sps.get(&p.name), p.deleted) {
            (Some(_), true) => out.push(format!("{}: deleted, still there", p.name)),
            (Some(sp), false) if !profile_settled(sp) => out.push(format!("{}: not Ready", p.name)),
            (None, false) => out.push(format!("{}: missing", p.name)),
            _ => {}
        }
    }
    Some(out)
}

async fn run(scale: Scale, seed: u64) -> Report {
    connectivity_operator::install_crypto_provider();
    let client = Client::try_default()
        .await
        .expect("a kubeconfig with admin rights (KUBECONFIG): run under scripts/control-plane.sh run");
    let kubeconfig = PathBuf::from(std::env::var("KUBECONFIG").expect("KUBECONFIG"));
    let dir = tempfile::tempdir().unwrap();
    let mut rng = StdRng::seed_from_u64(seed);
    install_crds(&client).await;
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .patch(
            NS,
            &PatchParams::apply(GITOPS).force(),
            &Patch::Apply(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})),
        )
        .await
        .unwrap();

    let sims = Sims::start(&scale).await;
    let mut profiles = profiles(&sims, &scale);
    let mut subs = fleet(&sims, &scale, &mut rng);
    assert_eq!(
        subs.len(),
        scale.subscriptions.iter().sum::<usize>(),
        "the simulators seeded too few SIMs"
    );
    // initial profile references (emnify and Telenor), to non-spare profiles of the same vendor
    for s in subs.iter_mut().filter(|s| s.vendor != Vendor::Bics) {
        if rng.random_bool(0.5) {
            let own: Vec<usize> = (0..profiles.len())
                .filter(|&i| profiles[i].vendor == s.vendor && !profiles[i].spare)
                .collect();
            s.profile = Some(own[rng.random_range(0..own.len())]);
        }
    }
    let mut report = Report {
        seed,
        profiles: profiles.len(),
        subscriptions: subs.len(),
        ..Report::default()
    };

    // Accounts (no faults yet).
    let e = sims.emnify.credentials();
    let b = sims.bics.credentials();
    let t = sims.telenor.credentials();
    let accounts = [
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "emnify", "namespace": NS},
               "stringData": {"applicationToken": e["application_token"]}}),
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "bics", "namespace": NS},
               "stringData": {"username": b["username"], "password": b["password"]}}),
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "telenor", "namespace": NS},
               "stringData": {"clientId": t["client_id"], "clientSecret": t["client_secret"]}}),
        json!({"apiVersion": "connectivity-operator.dev/v1alpha1", "kind": "ProviderConfig", "metadata": {"name": "emnify", "namespace": NS},
               "spec": {"vendor": "emnify", "endpoint": sims.emnify.url, "credentialsSecretRef": {"name": "emnify"}}}),
        json!({"apiVersion": "connectivity-operator.dev/v1alpha1", "kind": "ProviderConfig", "metadata": {"name": "bics", "namespace": NS},
               "spec": {"vendor": "bicsSft", "endpoint": sims.bics.url, "credentialsSecretRef": {"name": "bics"},
                        "bicsSft": {"defaultRoamingProfileIds": ["RP_1"]}}}),
        json!({"apiVersion": "connectivity-operator.dev/v1alpha1", "kind": "ProviderConfig", "metadata": {"name": "telenor", "namespace": NS},
               "spec": {"vendor": "telenorIotConnect", "endpoint": sims.telenor.url, "credentialsSecretRef": {"name": "telenor"},
                        "telenorIotConnect": {"tokenUrl": sims.telenor.token_url}}}),
    ];
    let mut accounts = accounts.to_vec();
    if let Some(rps) = scale.requests_per_second {
        for pc in accounts.iter_mut().filter(|o| o["kind"] == "ProviderConfig") {
            pc["spec"]["rateLimit"] = json!({"requestsPerSecond": rps, "burst": rps as u32});
        }
    }
    apply_all(&client, accounts).await;

    // Faults on, the operator up, everything applied; the first kill while writes that applied
    // wait for their answer (between a vendor create and its status write).
    let mut incarnation = 0;
    let mut operator = Operator::start(&kubeconfig, dir.path(), incarnation);
    sims.chaos(Some(seed));
    let objects: Vec<Value> = profiles
        .iter()
        .map(profile_manifest)
        .chain(subs.iter().map(|s| sub_manifest(s, &profiles)))
        .collect();
    let applying = {
        let client = client.clone();
        tokio::spawn(async move { apply_all(&client, objects).await })
    };
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = sims.stalled_writes();
    sims.stall_every_write();
    // At full scale the first writes wait for the operator's caches and the first sweeps, behind
    // 11,000 creates on a busy API server: minutes, not seconds.
    let deadline = Instant::now() + Duration::from_secs(600);
    while sims.stalled_writes() == before && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        sims.stalled_writes() > before,
        "no vendor write arrived in 10 minutes to kill the operator after"
    );
    operator.kill();
    report.operator_kills += 1;
    sims.chaos(Some(seed.wrapping_add(1)));
    incarnation += 1;
    operator = Operator::start(&kubeconfig, dir.path(), incarnation);
    applying.await.unwrap();

    // The stream of changes, with two more kills, one apiserver restart and a token revocation
    // at seeded rounds.
    let mut kill_rounds: BTreeSet<usize> = BTreeSet::new();
    while kill_rounds.len() < 2 {
        kill_rounds.insert(rng.random_range(1..scale.rounds));
    }
    let mut unclaimed: BTreeSet<String> = BTreeSet::new();
    let restart_round = rng.random_range(1..scale.rounds);
    let revoke_round = rng.random_range(1..scale.rounds);
    for round in 0..scale.rounds {
        let mut deletions = Vec::new();
        let mut applies = Vec::new();
        for _ in 0..scale.per_round {
            if let Some((kind, object, delete)) = change(&mut rng, &mut subs, &mut profiles) {
                report.changes.add(kind);
                if delete {
                    deletions.push(object);
                } else {
                    applies.push(object);
                }
            }
        }
        apply_all(&client, applies).await;
        for d in deletions {
            let name = d["metadata"]["name"]
                .as_str()
                .or(d["name"].as_str())
                .unwrap()
                .to_string();
            if d["kind"] == "ServiceProfile" {
                delete::<ServiceProfile>(&client, &name).await;
            } else {
                apply(&client, &d).await;
                // Deleted before the operator put its finalizer on it: Kubernetes removes it at
                // once and no deletion policy can run (as for any finalizer-based controller).
                let claimed = Api::<ConnectivitySubscription>::namespaced(client.clone(), NS)
                    .get_opt(&name)
                    .await
                    .ok()
                    .flatten()
                    .is_some_and(|c| {
                        c.finalizers()
                            .iter()
                            .any(|f| f == connectivity_operator::crd::FINALIZER)
                    });
                if !claimed {
                    unclaimed.insert(name.clone());
                }
                delete::<ConnectivitySubscription>(&client, &name).await;
            }
        }
        if kill_rounds.contains(&round) {
            tokio::time::sleep(Duration::from_millis(rng.random_range(0..1_500))).await;
            operator.kill();
            report.operator_kills += 1;
            incarnation += 1;
            operator = Operator::start(&kubeconfig, dir.path(), incarnation);
        }
        if round == restart_round {
            restart_apiserver();
            report.apiserver_restarts += 1;
        }
        if round == revoke_round {
            sims.expire_tokens();
            report.token_revocations += 1;
        }
        tokio::time::sleep(scale.gap).await;
    }

    // Quiet: no more faults, until everything settled.
    sims.chaos(None);
    let quiet = Instant::now();
    let mut left = Vec::new();
    while quiet.elapsed() < scale.converge_limit {
        match unsettled(&client, &subs, &profiles).await {
            Some(l) if l.is_empty() => {
                left.clear();
                break;
            }
            Some(l) => left = l,
            None => {}
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    report.converge = quiet.elapsed();
    report.unconverged = left.clone();
    report.faults = sims.counts().to_vec();
    report.vendor_calls = sims.calls().to_vec();

    // Invariants, from the simulators' own state and the API.
    let view = VendorView::read(&sims);
    let mut not_reached = left;
    let sps = Api::<ServiceProfile>::namespaced(client.clone(), NS)
        .list(&ListParams::default())
        .await
        .unwrap();
    let sp_ids: BTreeMap<String, String> = sps
        .items
        .iter()
        .filter_map(|p| Some((p.name_any(), p.status.as_ref()?.id.clone()?)))
        .collect();
    let live: BTreeMap<String, ConnectivitySubscription> =
        Api::<ConnectivitySubscription>::namespaced(client.clone(), NS)
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .map(|c| (c.name_any(), c))
            .collect();
    for s in &subs {
        if s.deleted && (!s.deactivate_on_delete || unclaimed.contains(&s.name)) {
            continue; // Orphan (or never claimed): left as it was when it was deleted
        }
        let want = if s.deleted { "Deactivated" } else { s.mode };
        match s.terminate {
            // Unconfirmed: the operator refuses it from the spec alone, so nothing may have
            // terminated the SIM. A BICS SIM from inventory that never got its endpoint is in
            // BICS's terminated state without any call, as it was before (the full runs at
            // bf4b17b and ef3213c counted the same 10 such SIMs as "not Terminated").
            Some(false) if view.terminated_by_a_call(s) => {
                not_reached.push(format!(
                    "{}: terminated at {} without confirmation",
                    s.name,
                    s.vendor.provider()
                ));
            }
            Some(false) => {}
            _ if !view.in_mode(s, want) => {
                let seen = match s.vendor {
                    Vendor::Bics => format!(
                        " (BICS endpoint {:?}, de-linked {}, SIM {})",
                        view.bics.get(&s.iccid),
                        view.bics_delinked.contains(&s.iccid),
                        sims.bics
                            .sim
                            .sims()
                            .iter()
                            .find(|r| r["iccid"] == s.iccid.as_str())
                            .map(|r| format!("{} on endpoint {}", r["simStatus"], r["endPointId"]))
                            .unwrap_or_default()
                    ),
                    Vendor::Emnify => format!(" (emnify {:?})", view.emnify.get(&s.imsi)),
                    Vendor::Telenor => format!(" (Telenor {:?})", view.telenor.get(&s.imsi)),
                };
                let status = live
                    .get(s.name.as_str())
                    .and_then(|c| c.status.as_ref())
                    .map(|st| {
                        format!(
                            "; status mode {:?}, {}",
                            st.mode,
                            st.conditions
                                .iter()
                                .map(|c| format!("{}={:?} {}", c.type_, c.status, c.reason))
                                .collect::<Vec<_>>()
                                .join(", ")
                        )
                    })
                    .unwrap_or_default();
                not_reached.push(format!(
                    "{}: not {want} at {}{seen}{status}",
                    s.name,
                    s.vendor.provider()
                ));
            }
            _ => {}
        }
        if let (Some(p), false, None) = (s.profile, s.deleted, s.terminate) {
            let want_id = sp_ids.get(&profiles[p].name).cloned().unwrap_or_default();
            let have = match s.vendor {
                Vendor::Emnify => view.emnify.get(&s.imsi).map(|(_, _, id)| id.clone()),
                Vendor::Telenor => view.telenor.get(&s.imsi).map(|(_, id)| id.clone()),
                Vendor::Bics => None,
            };
            if have.as_deref() != Some(want_id.as_str()) {
                not_reached.push(format!("{}: profile {want_id} wanted, vendor has {have:?}", s.name));
            }
        }
    }
    for p in &profiles {
        let names = match p.vendor {
            Vendor::Emnify => view.emnify_profile_names.get(&p.name),
            Vendor::Bics => view.bics_profile_names.get(&p.name),
            Vendor::Telenor => continue,
        };
        let exists = names.is_some_and(|ids| !ids.is_empty());
        // Orphaned: left as it was, which may be "never created" when it went early.
        let want = match (p.deleted, p.orphan) {
            (false, _) => Some(true),
            (true, true) => None,
            (true, false) => Some(false),
        };
        if want.is_some_and(|w| w != exists) {
            not_reached.push(format!("{}: vendor profile exists={exists}, wanted {want:?}", p.name));
        }
    }
    report
        .invariants
        .insert("desired state not reached (or unexplained)", not_reached);

    let mut duplicates = Vec::new();
    for (vendor, names) in [
        (Vendor::Emnify, &view.emnify_profile_names),
        (Vendor::Bics, &view.bics_profile_names),
    ] {
        for (name, ids) in names {
            if ids.len() > 1 {
                duplicates.push(format!("{} profile {name}: {ids:?}", vendor.provider()));
            }
        }
    }
    for (vendor, names) in [
        (Vendor::Emnify, &view.emnify_endpoint_names),
        (Vendor::Bics, &view.bics_endpoint_names),
    ] {
        for (name, n) in names {
            if *n > 1 && name.starts_with("cs-") {
                duplicates.push(format!("{} endpoint {name}: {n}", vendor.provider()));
            }
        }
    }
    report.invariants.insert("duplicate vendor objects", duplicates);
    let repeated = sims.emnify.sim.repeated_creates() + sims.bics.sim.repeated_creates();
    report.invariants.insert(
        "creates re-sent after they had applied",
        (0..repeated).map(|i| format!("repeat {i}")).collect(),
    );

    let confirmed: BTreeSet<&str> = subs
        .iter()
        .filter(|s| s.terminate == Some(true))
        .map(|s| s.name.as_str())
        .collect();
    let unconfirmed: Vec<String> = subs
        .iter()
        .filter(|s| view.terminated_by_a_call(s) && !confirmed.contains(s.name.as_str()))
        .map(|s| s.name.clone())
        .chain(
            // a SIM terminated at the vendor that no subscription of the run names
            view.emnify_deleted
                .iter()
                .filter(|imsi| !subs.iter().any(|s| &s.imsi == *imsi))
                .cloned(),
        )
        .collect();
    report
        .invariants
        .insert("terminations without the confirming annotation", unconfirmed);

    let finalizers: Vec<String> = report
        .unconverged
        .iter()
        .filter(|l| l.ends_with("deleted, still there"))
        .cloned()
        .collect();
    report
        .invariants
        .insert("finalizers left on deleted objects", finalizers);

    // Secrets: every operator log line, Event and status.
    let secrets = sims.secrets();
    let mut leaks = Vec::new();
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        for (n, line) in text.lines().enumerate() {
            if secrets.iter().any(|s| line.contains(s.as_str())) {
                leaks.push(format!("{}:{}", path.display(), n + 1));
            }
        }
    }
    let events = Api::<Event>::namespaced(client.clone(), NS)
        .list(&ListParams::default())
        .await
        .unwrap();
    for ev in events.items {
        let text = serde_json::to_string(&ev).unwrap();
        if secrets.iter().any(|s| text.contains(s.as_str())) {
            leaks.push(format!("event {}", ev.name_any()));
        }
    }
    let statuses = [
        serde_json::to_string(&sps.items.iter().map(|p| &p.status).collect::<Vec<_>>()).unwrap(),
        serde_json::to_string(
            &Api::<ConnectivitySubscription>::namespaced(client.clone(), NS)
                .list(&ListParams::default())
                .await
                .unwrap()
                .items
                .iter()
                .map(|c| &c.status)
                .collect::<Vec<_>>(),
        )
        .unwrap(),
        serde_json::to_string(
            &Api::<connectivity_operator::crd::ProviderConfig>::namespaced(client.clone(), NS)
                .list(&ListParams::default())
                .await
                .unwrap()
                .items
                .iter()
                .map(|c| &c.status)
                .collect::<Vec<_>>(),
        )
        .unwrap(),
    ];
    for (kind, text) in ["ServiceProfile", "ConnectivitySubscription", "ProviderConfig"]
        .iter()
        .zip(statuses)
    {
        if secrets.iter().any(|s| text.contains(s.as_str())) {
            leaks.push(format!("{kind} status"));
        }
    }
    report.invariants.insert("credentials in logs, Events or status", leaks);
    report.unclaimed = unclaimed.len();
    // The operator's log about each object an invariant names (the logs go with the run).
    let named: BTreeSet<String> = report
        .invariants
        .values()
        .flatten()
        .filter_map(|o| o.split(':').next().map(str::to_string))
        .filter(|n| n.starts_with("cs-") || n.starts_with("sp-"))
        .collect();
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        for line in text.lines().filter(|l| named.iter().any(|n| l.contains(n.as_str()))) {
            report
                .log_lines
                .push(format!("{}: {line}", path.file_name().unwrap().to_string_lossy()));
        }
    }
    drop(operator);

    // Leave nothing behind for the next test of the tier.
    let _ = namespaces.delete(NS, &DeleteParams::default()).await;
    report
}

fn seed() -> u64 {
    std::env::var("CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20_261_202)
}

fn check(report: &Report) {
    report.print();
    for (name, offenders) in &report.invariants {
        assert!(
            offenders.is_empty(),
            "{name}: {} ({:?})",
            offenders.len(),
            offenders.iter().take(10).collect::<Vec<_>>()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the control plane: bash scripts/control-plane.sh run -- cargo test --test chaos -- --ignored chaos_short"]
async fn chaos_short() {
    check(&run(Scale::short(), seed()).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "the full run: bash scripts/chaos.sh"]
async fn chaos_full() {
    check(&run(Scale::full(), seed()).await);
}
