//! Subscription benchmark: `connectivity-operator run` as its own process, against the vendor
//! simulators (separate processes, 20 ms latency per request, the vendors' rate limits scaled so
//! the per-object bound of a fleet-wide change is about 100 s whatever N is) and against a
//! Kubernetes API server: the in-memory one (served over HTTP by this benchmark) and the real
//! kube-apiserver with etcd that `scripts/control-plane.sh` starts. For N subscriptions on one
//! account, our way (one inventory sweep per account, bulk writes where the vendor documents them)
//! and the peers' way (one read and one write per object: `--bulk-observation false
//! --bulk-writes false`), it prints side by side:
//!
//! - the time from creating N new ConnectivitySubscriptions (server-side apply, as `kubectl apply
//!   --server-side` sends them) to all `Ready`;
//! - a full resync (a new operator process, whose resync clock is empty): vendor calls, wall time,
//!   Kubernetes API writes;
//! - a fleet-wide mode change (Active -> Paused on all N): vendor write calls, reads, wall time,
//!   and its ratio to the per-object bound N / write rate; Kubernetes API requests by verb;
//! - three idle resync intervals (a new operator with `--resync-interval 15s`): API requests by
//!   verb and vendor calls;
//! - the operator's peak and idle RSS and CPU seconds; 429s from the vendor and the API server.
//!
//!   cargo bench --bench subscriptions                     # N = 10000, emnify and Telenor, both API servers, both ways
//!   cargo bench --bench subscriptions -- --n 10000,100000 --vendor emnify --api real --way ours
//!
//! Each scenario runs in its own process. The real API server needs the control-plane binaries
//! (`bash scripts/control-plane.sh build`, cached outside the repository; built on first use).

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use connectivity_operator::controller::{Context, Settings};
use connectivity_operator::crd::{ConnectivitySubscription, SubscriptionMode};
use connectivity_operator::metrics::Metrics;
use connectivity_operator::offline::memory_server;
use futures::{StreamExt, TryStreamExt};
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::watcher;
use serde_json::{Value, json};

mod common;
use common::{Sim, proc_kib};

const BIN: &str = env!("CARGO_BIN_EXE_connectivity-operator");
const NS: &str = "default";
const LATENCY: &str = "20ms";
/// Requests the benchmark itself keeps in flight when it creates or changes objects.
const CONCURRENCY: usize = 32;
/// How long a resync interval the idle measurement runs the operator with (three of them).
const IDLE_RESYNC: Duration = Duration::from_secs(15);
/// The longest one phase may take before the benchmark reports what it has.
const PHASE_LIMIT: Duration = Duration::from_secs(3600);

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Vendor {
    Emnify,
    Telenor,
}

impl Vendor {
    fn name(self) -> &'static str {
        match self {
            Vendor::Emnify => "emnify",
            Vendor::Telenor => "telenor",
        }
    }

    /// The vendor's documented (emnify) or assumed (Telenor, our simulator's default) rate limit
    /// for one account, requests per second.
    fn documented_rate(self) -> f64 {
        match self {
            // 2000 requests per 5 minutes per IP.
            Vendor::Emnify => 2000.0 / 300.0,
            Vendor::Telenor => 10.0,
        }
    }

    /// Pages one sweep of N subscriptions needs (the target is this + 2).
    fn sweep_pages(self, n: usize) -> u64 {
        match self {
            // endpoint list at 1000 per page + SIM list at 2500 per page
            Vendor::Emnify => n.div_ceil(1000).max(1) as u64 + n.div_ceil(2500).max(1) as u64,
            // inventory search at 100 per page
            Vendor::Telenor => n.div_ceil(100).max(1) as u64,
        }
    }

    /// The vendor's mode text of a Paused SIM.
    fn paused(self, wire: &str) -> bool {
        match self {
            Vendor::Emnify => wire == "Activated/Disabled",
            Vendor::Telenor => wire == "PAUSED",
        }
    }
}

/// Which Kubernetes API server.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum ApiKind {
    Memory,
    Real,
}

impl ApiKind {
    fn name(self) -> &'static str {
        match self {
            ApiKind::Memory => "memory",
            ApiKind::Real => "real",
        }
    }
}

/// How the operator observes and writes.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Way {
    /// One sweep per account, bulk writes (the defaults).
    Ours,
    /// One read and one write per object, as the peers work.
    PerObject,
}

impl Way {
    fn name(self) -> &'static str {
        match self {
            Way::Ours => "ours",
            Way::PerObject => "per-object",
        }
    }

    fn flags(self) -> &'static [&'static str] {
        match self {
            Way::Ours => &[],
            Way::PerObject => &["--bulk-observation", "false", "--bulk-writes", "false"],
        }
    }
}

async fn start_sim(vendor: Vendor, n: usize, scale: f64) -> Sim {
    let mut args: Vec<String> = vec![
        "sim".into(),
        "--vendor".into(),
        vendor.name().into(),
        "--listen".into(),
        "127.0.0.1:0".into(),
    ];
    args.extend([
        "--latency".into(),
        LATENCY.into(),
        "--rate-limit-scale".into(),
        scale.to_string(),
    ]);
    match vendor {
        Vendor::Emnify => args.extend(["--endpoints".into(), n.to_string(), "--free-sims".into(), "0".into()]),
        Vendor::Telenor => args.extend([
            "--subscriptions".into(),
            n.to_string(),
            "--async-delay".into(),
            "2s".into(),
        ]),
    }
    common::spawn_sim(BIN, &args).await
}

/// A process's RSS now, its peak, and the anonymous and file-backed parts, in MiB.
fn memory_summary(pid: u32) -> String {
    let mib = |field| proc_kib(pid, field) as f64 / 1024.0;
    format!(
        "rss {:>6.1} MiB (peak {:>6.1}, anon {:>6.1}, file {:>5.1})",
        mib("VmRSS:"),
        mib("VmHWM:"),
        mib("RssAnon:"),
        mib("RssFile:")
    )
}

/// The operator's allocator figures from its `/metrics` (live and resident heap), in MiB.
async fn heap_summary(http: &reqwest::Client, addr: std::net::SocketAddr) -> String {
    let text = match http.get(format!("http://{addr}/metrics")).send().await {
        Ok(r) => r.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    };
    let gauge = |name: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .unwrap_or(0.0)
            / 1024.0
            / 1024.0
    };
    format!(
        "heap {:>6.1} live / {:>6.1} resident",
        gauge("connectivity_operator_heap_allocated_bytes"),
        gauge("connectivity_operator_heap_resident_bytes")
    )
}

/// BENCH_TRACE: one line every 5 s about an operator process, whatever the benchmark is doing
/// (creating, patching, waiting): phase, objects converged, RSS, heap, CPU.
struct Trace {
    phase: Arc<std::sync::Mutex<(&'static str, Instant)>>,
    converged: Arc<std::sync::atomic::AtomicUsize>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Trace {
    fn start(pid: u32, addr: std::net::SocketAddr, n: usize, phase: &'static str) -> Trace {
        let mut trace = Trace {
            phase: Arc::new(std::sync::Mutex::new((phase, Instant::now()))),
            converged: Arc::default(),
            task: None,
        };
        if std::env::var_os("BENCH_TRACE").is_none() {
            return trace;
        }
        let (shared, converged) = (trace.phase.clone(), trace.converged.clone());
        let task = tokio::spawn(async move {
            let http = reqwest::Client::new();
            let mut ticker = tokio::time::interval(Duration::from_secs(5));
            loop {
                ticker.tick().await;
                let (phase, since) = *shared.lock().unwrap();
                eprintln!(
                    "   {phase}: t={:>5.0}s {}/{n} {} {} cpu {:.1}s",
                    since.elapsed().as_secs_f64(),
                    converged.load(std::sync::atomic::Ordering::Relaxed),
                    memory_summary(pid),
                    heap_summary(&http, addr).await,
                    cpu_secs(&pid.to_string())
                );
            }
        });
        trace.task = Some(task);
        trace
    }

    fn phase(&self, phase: &'static str) {
        *self.phase.lock().unwrap() = (phase, Instant::now());
        self.converged.store(0, std::sync::atomic::Ordering::Relaxed);
    }
}

impl Drop for Trace {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// CPU seconds (user + system) a process has used, from `/proc/<pid>/stat`.
fn cpu_secs(pid: &str) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // Fields after the parenthesised command name; utime and stime are the 12th and 13th.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

/// `(operation, status, count)` of the vendor requests an operator process has made, from its
/// `/metrics` (empty when it cannot be read).
/// Reconciles of `kind` the operator has run, from its `/metrics`.
async fn operator_reconciles(http: &reqwest::Client, addr: std::net::SocketAddr, kind: &str) -> u64 {
    let text = match http.get(format!("http://{addr}/metrics")).send().await {
        Ok(r) => r.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    };
    let prefix = format!("connectivity_operator_reconciles_total{{kind=\"{kind}\"}} ");
    text.lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

async fn operator_counts(http: &reqwest::Client, addr: std::net::SocketAddr) -> Vec<(String, String, u64)> {
    let text = match http.get(format!("http://{addr}/metrics")).send().await {
        Ok(r) => r.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    };
    connectivity_operator::metrics::parse_vendor_request_counts(&text)
        .into_iter()
        .map(|(_, op, status, n)| (op, status, n))
        .collect()
}

/// `connectivity-operator run` in its own process against the benchmark's API server.
/// BENCH_OPERATOR_WRAP runs it under a profiler, e.g. "heaptrack" (its RSS figures are
/// then the wrapper's).
fn spawn_operator(
    kubeconfig: &std::path::Path,
    metrics_addr: std::net::SocketAddr,
    extra: &[&str],
) -> tokio::process::Child {
    let wrap: Vec<String> = std::env::var("BENCH_OPERATOR_WRAP")
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_string)
        .collect();
    let mut operator = match wrap.split_first() {
        Some((program, args)) => {
            let mut c = tokio::process::Command::new(program);
            // Its own process group, so that `stop` reaches the operator under the wrapper.
            c.args(args).arg(BIN).process_group(0);
            c
        }
        None => tokio::process::Command::new(BIN),
    };
    operator
        .args([
            "run",
            "--namespace",
            NS,
            "--metrics-addr",
            &metrics_addr.to_string(),
            "--pending-poll-interval",
            "2s",
        ])
        .args(extra)
        .env("KUBECONFIG", kubeconfig)
        .env(
            "RUST_LOG",
            std::env::var("BENCH_OPERATOR_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .kill_on_drop(true)
        .spawn()
        .expect("operator starts")
}

/// Stops an operator. Under BENCH_OPERATOR_WRAP, SIGTERM to its process group first: killing
/// the wrapper alone left the operator running and the profiler without its data.
async fn stop(operator: &mut tokio::process::Child) {
    if std::env::var_os("BENCH_OPERATOR_WRAP").is_some()
        && let Some(pid) = operator.id()
    {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &format!("-{pid}")])
            .status();
        let _ = tokio::time::timeout(Duration::from_secs(120), operator.wait()).await;
    }
    let _ = operator.kill().await;
}

/// A Kubernetes API server for one scenario, and how to read what it served.
struct ApiServer {
    kubeconfig: PathBuf,
    client: kube::Client,
    memory: Option<memory_apiserver::MemoryApiServer>,
    /// `control-plane.sh up` folder (real), stopped on drop.
    control_plane: Option<PathBuf>,
    _dir: tempfile::TempDir,
}

impl ApiServer {
    async fn start(kind: ApiKind) -> ApiServer {
        let dir = tempfile::tempdir().unwrap();
        match kind {
            ApiKind::Memory => {
                let server = memory_server();
                server.set_recording(false);
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                let addr = listener.local_addr().unwrap();
                let app = axum::Router::new().fallback_service(server.clone());
                tokio::spawn(async move { axum::serve(listener, app).await });
                let kubeconfig = dir.path().join("kubeconfig");
                std::fs::write(
                    &kubeconfig,
                    format!(
                        "apiVersion: v1\nkind: Config\nclusters: [{{name: mem, cluster: {{server: 'http://{addr}'}}}}]\n\
                         users: [{{name: mem, user: {{}}}}]\ncontexts: [{{name: mem, context: {{cluster: mem, user: mem, namespace: {NS}}}}}]\n\
                         current-context: mem\n"
                    ),
                )
                .unwrap();
                ApiServer {
                    client: client_for(&kubeconfig).await,
                    kubeconfig,
                    memory: Some(server),
                    control_plane: None,
                    _dir: dir,
                }
            }
            ApiKind::Real => {
                let folder = dir.path().join("control-plane");
                let status = std::process::Command::new("bash")
                    .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/control-plane.sh"))
                    .arg("up")
                    .arg(&folder)
                    .stdout(Stdio::null())
                    .status()
                    .expect("control-plane.sh runs");
                assert!(status.success(), "control-plane.sh up failed");
                let kubeconfig = folder.join("kubeconfig");
                let client = client_for(&kubeconfig).await;
                install_crds(&client).await;
                ApiServer {
                    client,
                    kubeconfig,
                    memory: None,
                    control_plane: Some(folder),
                    _dir: dir,
                }
            }
        }
    }

    /// Requests served so far, by verb, and the 429s among them. In-memory: every request. Real:
    /// the apiserver's `apiserver_request_total` for the resources the operator uses (our kinds,
    /// Secrets, Events), not the controller manager's own traffic.
    async fn served(&self) -> (BTreeMap<String, u64>, u64) {
        if let Some(server) = &self.memory {
            let verbs = server.stats().verbs.iter().map(|(v, n)| (v.to_string(), *n)).collect();
            return (verbs, 0);
        }
        let request = http::Request::get("/metrics").body(Vec::new()).unwrap();
        let text = self.client.request_text(request).await.unwrap_or_default();
        let mut verbs = BTreeMap::new();
        let mut throttled = 0;
        for line in text.lines().filter(|l| l.starts_with("apiserver_request_total{")) {
            let label = |name: &str| {
                let key = format!("{name}=\"");
                line.split_once(&key)
                    .and_then(|(_, rest)| rest.split_once('"'))
                    .map(|(v, _)| v.to_string())
                    .unwrap_or_default()
            };
            let Some(n) = line.rsplit_once(' ').and_then(|(_, n)| n.parse::<f64>().ok()) else {
                continue;
            };
            let ours = matches!(
                label("resource").as_str(),
                "connectivitysubscriptions" | "serviceprofiles" | "providerconfigs" | "secrets" | "events"
            );
            if !ours {
                continue;
            }
            if label("code") == "429" {
                throttled += n as u64;
            }
            *verbs.entry(label("verb")).or_default() += n as u64;
        }
        (verbs, throttled)
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        if let Some(folder) = &self.control_plane {
            let _ = std::process::Command::new("bash")
                .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/control-plane.sh"))
                .arg("down")
                .arg(folder)
                .stdout(Stdio::null())
                .status();
        }
    }
}

async fn client_for(kubeconfig: &Path) -> kube::Client {
    let config = kube::config::Kubeconfig::read_from(kubeconfig).expect("kubeconfig");
    let mut config = kube::Config::from_custom_kubeconfig(config, &Default::default())
        .await
        .expect("client config");
    // The benchmark's own client must not be what limits the API server.
    config.read_timeout = Some(Duration::from_secs(300));
    kube::Client::try_from(config).expect("client")
}

/// The CRDs from the Rust types, applied and `Established`.
async fn install_crds(client: &kube::Client) {
    connectivity_operator::crd::install(client, "bench")
        .await
        .expect("CRDs installed");
}

/// Verbs served between two readings.
fn delta(after: &BTreeMap<String, u64>, before: &BTreeMap<String, u64>) -> BTreeMap<String, u64> {
    after
        .iter()
        .map(|(verb, n)| (verb.clone(), n - before.get(verb).copied().unwrap_or(0)))
        .filter(|(_, n)| *n > 0)
        .collect()
}

fn writes(verbs: &BTreeMap<String, u64>) -> u64 {
    ["POST", "PATCH", "APPLY", "PUT", "DELETE"]
        .iter()
        .filter_map(|v| verbs.get(*v))
        .sum()
}

fn is_write(op: &str) -> bool {
    matches!(
        op,
        "endpoint.update"
            | "endpoint.bulk_update"
            | "sim.update"
            | "endpoint.create"
            | "sim.delete"
            | "subscription.mode"
            | "subscription.service_policy"
    )
}

/// Watches ConnectivitySubscriptions until `done` holds for `n` of them (or the phase limit);
/// returns how long that took from `since` and how many it saw done.
async fn converge(
    client: &kube::Client,
    n: usize,
    since: Instant,
    done: impl Fn(&ConnectivitySubscription) -> bool,
    progress: &std::sync::atomic::AtomicUsize,
) -> (Duration, usize) {
    let api: Api<ConnectivitySubscription> = Api::namespaced(client.clone(), NS);
    let mut stream = watcher(api, watcher::Config::default().page_size(500)).boxed();
    let mut converged: HashSet<String> = HashSet::new();
    let limit = tokio::time::sleep(PHASE_LIMIT);
    tokio::pin!(limit);
    while converged.len() < n {
        tokio::select! {
            event = stream.try_next() => match event {
                Ok(Some(watcher::Event::Apply(c) | watcher::Event::InitApply(c))) => {
                    let name = c.metadata.name.clone().unwrap_or_default();
                    if done(&c) { converged.insert(name); } else { converged.remove(&name); }
                    progress.store(converged.len(), std::sync::atomic::Ordering::Relaxed);
                }
                Ok(Some(watcher::Event::Delete(c))) => {
                    converged.remove(&c.metadata.name.unwrap_or_default());
                }
                Ok(Some(watcher::Event::Init | watcher::Event::InitDone)) => {}
                Ok(None) => break,
                Err(e) => {
                    eprintln!("   watch failed ({e}); watching again");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            },
            () = &mut limit => {
                eprintln!("   gave up: {} of {n} converged", converged.len());
                break;
            }
        }
    }
    (since.elapsed(), converged.len())
}

/// Ready in the vendor mode `wire` accepts, for the object's current generation.
fn ready_in(c: &ConnectivitySubscription, wire: impl Fn(&str) -> bool) -> bool {
    let Some(s) = c.status.as_ref() else { return false };
    s.observed_generation == c.metadata.generation
        && s.pending_change.is_none()
        && s.mode.as_deref().is_some_and(wire)
        && connectivity_operator::crd::conditions::is_true(&s.conditions, connectivity_operator::crd::conditions::READY)
}

/// The operator's vendor calls: (total, writes that succeeded, reads, 429s).
async fn vendor_calls(http: &reqwest::Client, addr: std::net::SocketAddr) -> (u64, u64, u64, u64) {
    let counts = operator_counts(http, addr).await;
    let sum = |f: &dyn Fn(&str, &str) -> bool| -> u64 {
        counts.iter().filter(|(op, s, _)| f(op, s)).map(|(_, _, c)| c).sum()
    };
    (
        sum(&|_, _| true),
        sum(&|op, s| is_write(op) && s.starts_with('2')),
        sum(&|op, _| !is_write(op)),
        sum(&|_, s| s == "429"),
    )
}

fn free_addr() -> std::net::SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

#[derive(Default, Debug, Clone, serde::Serialize, serde::Deserialize)]
struct Report {
    vendor: String,
    n: usize,
    api: String,
    way: String,
    scale: f64,
    /// The operator's write rate limit (spec.rateLimit: 0.95 x the scaled vendor limit).
    rate: f64,
    /// Creating N objects to all Ready: seconds, objects Ready, vendor calls, API requests.
    apply_secs: f64,
    apply_ready: usize,
    apply_vendor_calls: u64,
    apply_api: BTreeMap<String, u64>,
    /// Full resync by a new operator process.
    resync_calls: u64,
    resync_secs: f64,
    resync_api: BTreeMap<String, u64>,
    /// Mode change on all N.
    change_writes: u64,
    change_reads: u64,
    change_secs: f64,
    /// When the benchmark's last spec patch was accepted (the change cannot be done before).
    change_patched_secs: f64,
    change_converged: usize,
    change_api: BTreeMap<String, u64>,
    /// Idle: a new operator's start-up pass, then three resync intervals.
    idle_startup_api: BTreeMap<String, u64>,
    idle_api: BTreeMap<String, u64>,
    idle_vendor_calls: u64,
    vendor_429: u64,
    api_429: u64,
    /// Peak RSS of the operator that took the N new objects to Ready.
    #[serde(default)]
    rss_apply_peak_mib: f64,
    /// Peak RSS of the operator that did the full resync and the mode change.
    rss_peak_mib: f64,
    rss_idle_mib: f64,
    cpu_secs: f64,
}

async fn scenario(vendor: Vendor, n: usize, kind: ApiKind, way: Way) -> Report {
    // Scale the documented limits so the per-object bound of the mode change is about 100 s
    // whatever N is: long enough that fixed delays stay small next to it, short enough that a
    // run takes minutes.
    let scale = (n as f64 / (vendor.documented_rate() * 100.0)).max(1.0);
    let mut sim = start_sim(vendor, n, scale).await;
    let url = sim.info["url"].as_str().unwrap().to_string();
    let rate = vendor.documented_rate() * scale * 0.95;
    let server = ApiServer::start(kind).await;
    let client = server.client.clone();
    let (secret, pc_extra) = match vendor {
        Vendor::Emnify => (
            json!({"applicationToken": sim.info["credentials"]["application_token"]}),
            json!({}),
        ),
        Vendor::Telenor => (
            json!({"clientId": sim.info["credentials"]["client_id"], "clientSecret": sim.info["credentials"]["client_secret"]}),
            json!({"telenorIotConnect": {"tokenUrl": sim.info["token_url"]}}),
        ),
    };
    let apply = |object: Value| {
        let client = client.clone();
        async move {
            let name = object["metadata"]["name"].as_str().unwrap().to_string();
            let api_version = object["apiVersion"].as_str().unwrap().to_string();
            let (group, version) = api_version.split_once('/').unwrap_or(("", &api_version));
            let kind = object["kind"].as_str().unwrap();
            let gvk = kube::api::GroupVersionKind::gvk(group, version, kind);
            let resource = kube::api::ApiResource::from_gvk(&gvk);
            let api: Api<kube::api::DynamicObject> = Api::namespaced_with(client, NS, &resource);
            api.patch(&name, &PatchParams::apply("kubectl").force(), &Patch::Apply(&object))
                .await
                .expect("server-side apply")
        }
    };
    apply(json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "creds", "namespace": NS}, "stringData": secret})).await;
    let mut spec = json!({
        "vendor": if vendor == Vendor::Emnify { "emnify" } else { "telenorIotConnect" },
        "endpoint": url, "credentialsSecretRef": {"name": "creds"},
        "rateLimit": {"requestsPerSecond": rate, "burst": (rate / 10.0).ceil().max(1.0) as u32},
    });
    spec.as_object_mut()
        .unwrap()
        .extend(pc_extra.as_object().unwrap().clone());
    apply(json!({"apiVersion": "connectivity-operator.dev/v1alpha1", "kind": "ProviderConfig", "metadata": {"name": "bench", "namespace": NS}, "spec": spec})).await;

    // The account's SIMs (read once, here), one object each, desired mode = the mode they are in.
    let ctx = Arc::new(Context::new(client.clone(), Metrics::new(), Settings::default()));
    let provider = ctx.providers.resolve(&client, NS, "bench").await.expect("provider");
    let manifests: Vec<Value> = provider
        .subscriptions
        .inventory()
        .await
        .expect("inventory")
        .iter()
        .enumerate()
        .map(|(i, sim)| {
            let mut spec = json!({"providerConfigRef": {"name": "bench"}, "imsi": sim.imsi});
            if let Some(mode) = sim.mode {
                spec["mode"] = json!(mode);
            }
            json!({"apiVersion": "connectivity-operator.dev/v1alpha1", "kind": "ConnectivitySubscription",
                   "metadata": {"name": format!("sim-{i:06}"), "namespace": NS}, "spec": spec})
        })
        .collect();
    drop((provider, ctx));
    assert_eq!(manifests.len(), n, "the simulator seeded {} SIMs", manifests.len());
    let http = reqwest::Client::new();
    let mut report = Report {
        vendor: vendor.name().into(),
        n,
        api: kind.name().into(),
        way: way.name().into(),
        scale,
        rate,
        ..Default::default()
    };

    // 1. Apply N new objects with the operator running: until all are Ready.
    let addr = free_addr();
    let mut operator = spawn_operator(&server.kubeconfig, addr, way.flags());
    wait_ready(&http, addr).await;
    let trace = Trace::start(operator.id().unwrap_or_default(), addr, n, "create");
    let (api_before, _) = server.served().await;
    let started = Instant::now();
    futures::stream::iter(manifests)
        .map(apply)
        .buffer_unordered(CONCURRENCY)
        .collect::<Vec<_>>()
        .await;
    eprintln!("   created {n} objects in {:.1}s", started.elapsed().as_secs_f64());
    trace.phase("apply");
    let pid = operator.id().unwrap_or_default();
    let (took, ready) = converge(&client, n, started, |c| ready_in(c, |_| true), &trace.converged).await;
    drop(trace);
    report.apply_secs = took.as_secs_f64();
    report.apply_ready = ready;
    report.apply_vendor_calls = vendor_calls(&http, addr).await.0;
    report.apply_api = delta(&server.served().await.0, &api_before);
    report.rss_apply_peak_mib = proc_kib(pid, "VmHWM:") as f64 / 1024.0;
    stop(&mut operator).await;

    // 2. A full resync: a new operator (empty resync clock) syncs every object.
    let addr = free_addr();
    let (api_before, api_429_before) = server.served().await;
    let started = Instant::now();
    let mut operator = spawn_operator(&server.kubeconfig, addr, way.flags());
    let pid = operator.id().unwrap_or_default();
    let trace = Trace::start(pid, addr, n, "resync");
    let settled_after = settle_timed(&http, addr, n, started).await;
    report.resync_secs = settled_after.as_secs_f64();
    report.resync_calls = vendor_calls(&http, addr).await.0;
    report.resync_api = delta(&server.served().await.0, &api_before);
    report.rss_idle_mib = proc_kib(pid, "VmRSS:") as f64 / 1024.0;

    // 3. The mode change on all N, with that operator.
    let calls_before = vendor_calls(&http, addr).await;
    let (api_before_change, _) = server.served().await;
    let started = Instant::now();
    trace.phase("patch");
    let api: Api<ConnectivitySubscription> = Api::namespaced(client.clone(), NS);
    futures::stream::iter(0..n)
        .map(|i| {
            let api = api.clone();
            async move {
                api.patch(
                    &format!("sim-{i:06}"),
                    &PatchParams::default(),
                    &Patch::Merge(json!({"spec": {"mode": SubscriptionMode::Paused}})),
                )
                .await
                .expect("spec patch")
            }
        })
        .buffer_unordered(CONCURRENCY)
        .collect::<Vec<_>>()
        .await;
    report.change_patched_secs = started.elapsed().as_secs_f64();
    trace.phase("change");
    let (took, converged) = converge(
        &client,
        n,
        started,
        |c| ready_in(c, |m| vendor.paused(m)),
        &trace.converged,
    )
    .await;
    drop(trace);
    let calls_after = vendor_calls(&http, addr).await;
    let (api_after, api_429_after) = server.served().await;
    report.change_secs = took.as_secs_f64();
    report.change_converged = converged;
    report.change_writes = calls_after.1 - calls_before.1;
    report.change_reads = calls_after.2 - calls_before.2;
    report.change_api = delta(&api_after, &api_before_change);
    report.vendor_429 = calls_after.3;
    report.api_429 = api_429_after - api_429_before;
    report.rss_peak_mib = proc_kib(pid, "VmHWM:") as f64 / 1024.0;
    report.cpu_secs = cpu_secs(&pid.to_string());
    stop(&mut operator).await;

    // 4. Idle: a new operator with a short resync interval, settled after its start-up pass,
    // then three resync intervals in which nothing changes in Git or at the vendor. Our way
    // only: one object at a time, a resync of N takes longer than the interval.
    if way == Way::PerObject {
        let _ = sim.child.kill().await;
        return report;
    }
    let addr = free_addr();
    let (before_start, _) = server.served().await;
    let resync = format!("{}s", IDLE_RESYNC.as_secs());
    let mut args: Vec<&str> = vec!["--resync-interval", &resync];
    args.extend(way.flags());
    let mut operator = spawn_operator(&server.kubeconfig, addr, &args);
    let trace = Trace::start(operator.id().unwrap_or_default(), addr, n, "idle");
    settle_timed(&http, addr, n, Instant::now()).await;
    let (before_idle, _) = server.served().await;
    report.idle_startup_api = delta(&before_idle, &before_start);
    let calls_before = vendor_calls(&http, addr).await.0;
    tokio::time::sleep(IDLE_RESYNC * 3).await;
    report.idle_api = delta(&server.served().await.0, &before_idle);
    report.idle_vendor_calls = vendor_calls(&http, addr).await.0 - calls_before;
    drop(trace);
    stop(&mut operator).await;
    let _ = sim.child.kill().await;
    drop(server);
    report
}

async fn wait_ready(http: &reqwest::Client, addr: std::net::SocketAddr) {
    for _ in 0..600 {
        if http
            .get(format!("http://{addr}/readyz"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until the operator has reconciled `n` subscriptions and made no vendor request for two
/// seconds; returns when, from `since`, its vendor calls last changed.
async fn settle_timed(http: &reqwest::Client, addr: std::net::SocketAddr, n: usize, since: Instant) -> Duration {
    wait_ready(http, addr).await;
    let mut last = u64::MAX;
    let mut changed_at = since.elapsed();
    let mut quiet = 0;
    let deadline = Instant::now() + PHASE_LIMIT;
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let total = vendor_calls(http, addr).await.0;
        let reconciled = operator_reconciles(http, addr, "ConnectivitySubscription").await;
        if total != last {
            changed_at = since.elapsed();
            last = total;
            quiet = 0;
        } else if reconciled >= n as u64 {
            quiet += 1;
            if quiet >= 4 {
                break;
            }
        }
    }
    changed_at
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let value = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let list = |flag: &str, default: &str| -> Vec<String> {
        value(flag)
            .unwrap_or_else(|| default.to_string())
            .split(',')
            .map(str::to_string)
            .collect()
    };
    // One scenario in this process: print its figures as one JSON line.
    if let Some(one) = value("--one") {
        let parts: Vec<&str> = one.split(':').collect();
        let vendor = match parts[0] {
            "emnify" => Vendor::Emnify,
            _ => Vendor::Telenor,
        };
        let n: usize = parts[1].parse().expect("n");
        let kind = if parts[2] == "real" {
            ApiKind::Real
        } else {
            ApiKind::Memory
        };
        let way = if parts[3] == "per-object" {
            Way::PerObject
        } else {
            Way::Ours
        };
        connectivity_operator::install_crypto_provider();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let r = runtime.block_on(scenario(vendor, n, kind, way));
        println!("RESULT {}", serde_json::to_string(&r).unwrap());
        return;
    }
    let ns: Vec<usize> = list("--n", "10000").iter().filter_map(|x| x.parse().ok()).collect();
    let vendors = list("--vendor", "emnify,telenor");
    let apis = list("--api", "memory,real");
    let ways = list("--way", "ours,per-object");
    let me = std::env::current_exe().expect("own path");
    let mut reports: Vec<Report> = Vec::new();
    for vendor in &vendors {
        for n in &ns {
            for api in &apis {
                for way in &ways {
                    let key = format!("{vendor}:{n}:{api}:{way}");
                    eprintln!("== {key}");
                    // Each scenario in a fresh process, so figures and RSS do not carry over.
                    let out = std::process::Command::new(&me)
                        .args(["--one", &key])
                        .stderr(Stdio::inherit())
                        .output()
                        .expect("scenario runs");
                    let text = String::from_utf8_lossy(&out.stdout);
                    match text.lines().find_map(|l| l.strip_prefix("RESULT ")) {
                        Some(line) => {
                            let r: Report = serde_json::from_str(line).expect("result JSON");
                            eprintln!("   {}", line);
                            reports.push(r);
                        }
                        None => eprintln!("scenario {key} failed: {text}"),
                    }
                }
            }
        }
    }
    print_tables(&reports);
}

fn print_tables(reports: &[Report]) {
    let pages = |r: &Report| match r.vendor.as_str() {
        "emnify" => Vendor::Emnify.sweep_pages(r.n),
        _ => Vendor::Telenor.sweep_pages(r.n),
    };
    println!(
        "\nApply N new ConnectivitySubscriptions (server-side apply, {CONCURRENCY} at a time) until all are Ready; full resync by a new operator process:"
    );
    println!(
        "{:<8} {:>6} {:<6} {:<10} | {:>9} {:>7} {:>8} {:>9} | {:>8} {:>9} {:>8} {:>10}",
        "vendor", "N", "api", "way", "apply s", "ready", "calls", "k8s wr", "resync", "target", "wall s", "k8s writes"
    );
    for r in reports {
        println!(
            "{:<8} {:>6} {:<6} {:<10} | {:>9.1} {:>7} {:>8} {:>9} | {:>8} {:>9} {:>8.1} {:>10}",
            r.vendor,
            r.n,
            r.api,
            r.way,
            r.apply_secs,
            r.apply_ready,
            r.apply_vendor_calls,
            writes(&r.apply_api),
            r.resync_calls,
            format!("<= {}", pages(r) + 2),
            r.resync_secs,
            writes(&r.resync_api)
        );
    }
    println!(
        "\nMode change Active -> Paused on all N. bound = N / the operator's write rate limit (spec.rateLimit, 0.95 x the vendor's), \
         the per-object way's floor; targets for emnify at 10,000: <= 10 write calls, ratio <= 0.05; \
         patched s: when the benchmark's last spec patch was accepted (the change cannot converge before)"
    );
    println!(
        "{:<8} {:>6} {:<6} {:<10} | {:>7} {:>6} {:>7} {:>8} {:>8} {:>7} {:>9} {:>9} | {:>5} {:>7} | {:>9} {:>9} {:>7}",
        "vendor",
        "N",
        "api",
        "way",
        "writes",
        "reads",
        "rate/s",
        "bound s",
        "took s",
        "ratio",
        "patched s",
        "converged",
        "429v",
        "429api",
        "peak MiB",
        "idle MiB",
        "cpu s"
    );
    for r in reports {
        let bound = r.n as f64 / r.rate.max(f64::EPSILON);
        println!(
            "{:<8} {:>6} {:<6} {:<10} | {:>7} {:>6} {:>7.1} {:>8.1} {:>8.1} {:>7.3} {:>9.1} {:>9} | {:>5} {:>7} | {:>9.1} {:>9.1} {:>7.1}",
            r.vendor,
            r.n,
            r.api,
            r.way,
            r.change_writes,
            r.change_reads,
            r.rate,
            bound,
            r.change_secs,
            r.change_secs / bound,
            r.change_patched_secs,
            r.change_converged,
            r.vendor_429,
            r.api_429,
            r.rss_peak_mib,
            r.rss_idle_mib,
            r.cpu_secs
        );
    }
    println!(
        "\nOperator memory per SIM (RSS / N, the process's fixed part included; where the bytes go: \
         `cargo bench --bench footprint`):"
    );
    for r in reports {
        let per = |mib: f64| mib * 1024.0 * 1024.0 / r.n.max(1) as f64;
        println!(
            "{:<8} {:>6} {:<6} {:<10} | apply: peak {:>6.1} MiB {:>5.0} B/SIM | resync + change: peak {:>6.1} MiB {:>5.0} B/SIM, idle {:>6.1} MiB {:>5.0} B/SIM",
            r.vendor,
            r.n,
            r.api,
            r.way,
            r.rss_apply_peak_mib,
            per(r.rss_apply_peak_mib),
            r.rss_peak_mib,
            per(r.rss_peak_mib),
            r.rss_idle_mib,
            per(r.rss_idle_mib)
        );
    }
    let verbs = |api: &BTreeMap<String, u64>| {
        let all: Vec<String> = api.iter().map(|(verb, n)| format!("{verb} {n}")).collect();
        format!("writes {:>7} ({})", writes(api), all.join(", "))
    };
    println!(
        "\nKubernetes API requests by verb (writes = POST + PATCH + APPLY + PUT + DELETE; the apply and the change include the benchmark's own N requests):"
    );
    for r in reports {
        let row = format!("{:<8} {:>6} {:<6} {:<10}", r.vendor, r.n, r.api, r.way);
        println!("{row} | apply:                  {}", verbs(&r.apply_api));
        println!("{row} | full resync:            {}", verbs(&r.resync_api));
        println!("{row} | mode change:            {}", verbs(&r.change_api));
        if r.way == Way::PerObject.name() {
            println!("{row} | idle: not measured (one object at a time, a resync outlasts the 15 s interval)");
            continue;
        }
        println!("{row} | new operator start-up:  {}", verbs(&r.idle_startup_api));
        println!(
            "{row} | 3 idle resyncs ({}s):   {}; vendor calls {}",
            IDLE_RESYNC.as_secs(),
            verbs(&r.idle_api),
            r.idle_vendor_calls
        );
    }
}
