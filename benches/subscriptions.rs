//! Subscription benchmark: the real reconcile pipeline against the vendor simulators (run as
//! separate processes, with 20 ms latency per request and the vendors' rate limits scaled up so
//! a run takes minutes, not hours), for N subscriptions on one account. Prints, side by side for
//! the bulk sweep and for one read per object: vendor calls per full resync, wall time per resync,
//! 429s; then the time a mode change on all N takes to converge against the bound
//! (writes needed) / (write rate limit); and the peak RSS of this process.
//!
//!   cargo bench --bench subscriptions                      # N = 1000 and 10000, emnify and Telenor
//!   cargo bench --bench subscriptions -- --n 1000 --vendor telenor
//!
//! Each scenario runs in its own process. The resyncs drive the reconcile function directly; the
//! mode change runs `connectivity-operator run` as a separate process against the in-memory
//! Kubernetes API server (served over HTTP by the benchmark), so the operator's own RSS is what
//! is reported (idle after start-up, and peak).

use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use connectivity_operator::controller::{Context, Settings};
use connectivity_operator::crd::{ConnectivitySubscription, SubscriptionMode};
use connectivity_operator::metrics::Metrics;
use connectivity_operator::offline::{Manifest, memory_server, prepare_object};
use futures::StreamExt;
use kube::api::{Api, Patch, PatchParams};
use serde_json::{Value, json};
use tokio::io::AsyncBufReadExt;

const BIN: &str = env!("CARGO_BIN_EXE_connectivity-operator");
const NS: &str = "default";
const LATENCY: &str = "20ms";
/// Reconciles in flight at once when the benchmark drives a resync itself (the controller's
/// own concurrency is unbounded by default).
const CONCURRENCY: usize = 512;

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
}

struct Sim {
    child: tokio::process::Child,
    info: Value,
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
    let mut child = tokio::process::Command::new(BIN)
        .args(&args)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("simulator starts");
    let stdout = child.stdout.take().expect("stdout");
    let line = tokio::io::BufReader::new(stdout)
        .lines()
        .next_line()
        .await
        .expect("line")
        .expect("JSON line");
    Sim {
        child,
        info: serde_json::from_str(&line).expect("JSON"),
    }
}

/// A `/proc/<pid>/status` field in KiB (`pid` may be `self`), 0 when it cannot be read.
fn proc_kib(pid: impl std::fmt::Display, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn rss_kib(field: &str) -> u64 {
    proc_kib("self", field)
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
/// BENCH_OPERATOR_WRAP runs it under a profiler, e.g. "heaptrack -o /tmp/op" (its RSS figures are
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
            c.args(args).arg(BIN);
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
        // As the image and the chart run it.
        .env("MALLOC_ARENA_MAX", "1")
        .env(
            "RUST_LOG",
            std::env::var("BENCH_OPERATOR_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .kill_on_drop(true)
        .spawn()
        .expect("operator starts")
}

/// Waits until the operator answers `/readyz`, then until it has reconciled `n` subscriptions
/// and made no vendor request for a second.
async fn settle(http: &reqwest::Client, addr: std::net::SocketAddr, n: usize) {
    for _ in 0..600 {
        if http
            .get(format!("http://{addr}/readyz"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut last = u64::MAX;
    for _ in 0..600 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let total: u64 = operator_counts(http, addr).await.iter().map(|(_, _, c)| c).sum();
        let reconciled = operator_reconciles(http, addr, "ConnectivitySubscription").await;
        if total == last && reconciled >= n as u64 {
            return;
        }
        last = total;
    }
}

/// What the API server served since `before`, by verb (only verbs that occurred).
fn verbs_since(
    server: &memory_apiserver::MemoryApiServer,
    before: &std::collections::BTreeMap<&'static str, u64>,
) -> std::collections::BTreeMap<String, u64> {
    server
        .stats()
        .verbs
        .iter()
        .map(|(verb, n)| (verb.to_string(), n - before.get(verb).copied().unwrap_or(0)))
        .filter(|(_, n)| *n > 0)
        .collect()
}

fn add(server: &memory_apiserver::MemoryApiServer, object: Value) {
    let mut m = Manifest {
        source: "bench".into(),
        object,
    };
    prepare_object(&mut m).expect("valid manifest");
    server.insert(m.object).expect("insert");
}

#[derive(Default, Debug, Clone)]
struct Resync {
    calls: u64,
    wall: Duration,
    throttled: u64,
    /// Kubernetes API writes (POST, PATCH, PUT, DELETE) the resync made.
    api_writes: u64,
}

#[derive(Default, Debug, Clone)]
struct Converge {
    writes: u64,
    /// Reads made during the change (sweeps that verify it).
    reads: u64,
    /// The operator's write rate limit (the ProviderConfig's `spec.rateLimit`).
    rate: f64,
    /// The (scaled) vendor limit the operator stays below.
    vendor_rate: f64,
    time: Duration,
    throttled: u64,
    /// Kubernetes API requests during the change, by verb.
    api: std::collections::BTreeMap<String, u64>,
}

fn count(metrics: &Metrics, pred: impl Fn(&str, &str) -> bool) -> u64 {
    metrics
        .vendor_request_counts()
        .iter()
        .filter(|(_, op, status, _)| pred(op, status))
        .map(|(_, _, _, c)| c)
        .sum()
}

fn is_write(op: &str) -> bool {
    matches!(
        op,
        "endpoint.update"
            | "sim.update"
            | "endpoint.create"
            | "sim.delete"
            | "subscription.mode"
            | "subscription.service_policy"
    )
}

async fn reconcile_all(ctx: &Arc<Context>, api: &Api<ConnectivitySubscription>, names: &[String]) {
    futures::stream::iter(names.iter().cloned())
        .map(|name| {
            let ctx = ctx.clone();
            let api = api.clone();
            async move {
                let c = api.get(&name).await.expect("object");
                if let Err(e) = connectivity_operator::controller::managed::reconcile(Arc::new(c), ctx).await {
                    eprintln!("reconcile of {name} failed: {e}");
                }
            }
        })
        .buffer_unordered(CONCURRENCY)
        .collect::<Vec<()>>()
        .await;
}

/// How long a resync interval the idle measurement runs the operator with (three of them).
const IDLE_RESYNC: Duration = Duration::from_secs(15);

#[derive(Default, Debug, Clone)]
struct Idle {
    /// API requests of a new operator's start-up pass, by verb.
    startup_api: std::collections::BTreeMap<String, u64>,
    /// API requests during three resync intervals after it, by verb.
    api: std::collections::BTreeMap<String, u64>,
    /// Vendor calls in those intervals.
    vendor_calls: u64,
}

struct Report {
    vendor: Vendor,
    n: usize,
    scale: f64,
    bulk: Resync,
    per_object: Resync,
    converge: Converge,
    idle: Idle,
    rss_total_mib: f64,
    rss_apiserver_mib: f64,
}

async fn scenario(vendor: Vendor, n: usize) -> Report {
    // Scale the documented limits so the mode change's bound is about 100 s whatever N is: long
    // enough that fixed delays (the vendor's asynchronous apply, one poll) stay small next to it,
    // short enough that a run takes minutes.
    let scale = (n as f64 / (vendor.documented_rate() * 100.0)).max(1.0);
    let mut sim = start_sim(vendor, n, scale).await;
    let sim_pid = sim.child.id().unwrap_or_default();
    let url = sim.info["url"].as_str().unwrap().to_string();
    // The operator stays below the (scaled) vendor limit, as its defaults do for real accounts.
    let rate = vendor.documented_rate() * scale * 0.95;
    let server = memory_server();
    server.set_recording(false);
    let client = kube::Client::new(server.clone(), NS);
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
    add(
        &server,
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "creds", "namespace": NS}, "stringData": secret}),
    );
    let mut spec = json!({
        "vendor": if vendor == Vendor::Emnify { "emnify" } else { "telenorIotConnect" },
        "endpoint": url, "credentialsSecretRef": {"name": "creds"},
        "rateLimit": {"requestsPerSecond": rate, "burst": (rate / 10.0).ceil().max(1.0) as u32},
    });
    spec.as_object_mut()
        .unwrap()
        .extend(pc_extra.as_object().unwrap().clone());
    add(
        &server,
        json!({"apiVersion": "connectivity-operator.dev/v1alpha1", "kind": "ProviderConfig", "metadata": {"name": "bench", "namespace": NS}, "spec": spec}),
    );

    let settings = Settings {
        pending_poll_interval: Duration::from_secs(2),
        ..Settings::default()
    };
    let metrics = Metrics::new();
    let ctx = Arc::new(Context::new(client.clone(), metrics.clone(), settings.clone()));

    // The account's SIMs, one object each, desired mode = the mode they are in.
    let provider = ctx.providers.resolve(&client, NS, "bench").await.expect("provider");
    let inventory = provider.subscriptions.inventory().await.expect("inventory");
    let mut names = Vec::new();
    for (i, sim) in inventory.iter().enumerate() {
        let name = format!("sim-{i:05}");
        let mut spec = json!({"providerConfigRef": {"name": "bench"}, "imsi": sim.imsi});
        if let Some(mode) = sim.mode {
            spec["mode"] = json!(mode);
        }
        add(
            &server,
            json!({"apiVersion": "connectivity-operator.dev/v1alpha1", "kind": "ConnectivitySubscription", "metadata": {"name": name, "namespace": NS}, "spec": spec}),
        );
        names.push(name);
    }
    assert_eq!(names.len(), n, "the simulator seeded {} SIMs", names.len());
    let api: Api<ConnectivitySubscription> = Api::namespaced(client.clone(), NS);
    let rss_apiserver_kib = rss_kib("VmRSS:");
    eprintln!(
        "   RSS after loading {n} objects into the in-memory API server: {:.1} MiB",
        rss_apiserver_kib as f64 / 1024.0
    );

    // Initial sync (finalizers, first status) with the bulk strategy.
    reconcile_all(&ctx, &api, &names).await;
    reconcile_all(&ctx, &api, &names).await;

    eprintln!(
        "   RSS after the initial sync: {:.1} MiB",
        rss_kib("VmRSS:") as f64 / 1024.0
    );

    // A full resync, both strategies.
    let mut results = Vec::new();
    // BENCH_SKIP_PER_OBJECT=1 skips the slow per-object resync while iterating on the mode change.
    let skip_per_object = std::env::var_os("BENCH_SKIP_PER_OBJECT").is_some();
    for bulk in [true, false] {
        if !bulk && skip_per_object {
            results.push(Resync::default());
            continue;
        }
        let ctx = Arc::new(Context::new(
            client.clone(),
            metrics.clone(),
            Settings {
                bulk_observation: bulk,
                ..settings.clone()
            },
        ));
        // A fresh context has no resync clock: every object is due, as after a restart.
        let before_writes = server.stats().writes();
        let before_calls = metrics.vendor_request_total();
        let before_429 = count(&metrics, |_, s| s == "429");
        let started = Instant::now();
        reconcile_all(&ctx, &api, &names).await;
        results.push(Resync {
            calls: metrics.vendor_request_total() - before_calls,
            wall: started.elapsed(),
            throttled: count(&metrics, |_, s| s == "429") - before_429,
            api_writes: server.stats().writes() - before_writes,
        });
    }

    eprintln!(
        "   RSS after both resyncs: {:.1} MiB (peak {:.1})",
        rss_kib("VmRSS:") as f64 / 1024.0,
        rss_kib("VmHWM:") as f64 / 1024.0
    );

    // A mode change on all N, converged by the real controllers running as their own process
    // (`connectivity-operator run`), against the in-memory API server served over HTTP, so that
    // the operator's own peak RSS can be read.
    let target = SubscriptionMode::Paused;
    let wire = |m: &str| match vendor {
        Vendor::Emnify => m == "Activated/Disabled",
        Vendor::Telenor => m == "PAUSED",
    };
    let api_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let api_addr = api_listener.local_addr().unwrap();
    let app = axum::Router::new().fallback_service(server.clone());
    tokio::spawn(async move { axum::serve(api_listener, app).await });
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters: [{{name: mem, cluster: {{server: 'http://{api_addr}'}}}}]\n\
             users: [{{name: mem, user: {{}}}}]\ncontexts: [{{name: mem, context: {{cluster: mem, user: mem, namespace: {NS}}}}}]\n\
             current-context: mem\n"
        ),
    )
    .unwrap();
    let metrics_addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    // A new process has no resync clock: its start-up pass syncs every SIM (one sweep of the
    // account, as a long-running operator's resync would), before the change arrives.
    let mut operator = spawn_operator(&kubeconfig, metrics_addr, &[]);
    let operator_pid = operator.id().expect("pid");
    let http = reqwest::Client::new();
    // Settled: the start-up pass has reconciled every SIM and no vendor request was made for a
    // second. (Nothing changed, so nothing was written: the count comes from the operator.)
    settle(&http, metrics_addr, n).await;
    let vendor_calls_before = operator_counts(&http, metrics_addr).await;
    let operator_rss_idle = proc_kib(operator_pid, "VmRSS:");
    if std::env::var_os("BENCH_TRACE").is_some() {
        eprintln!("   settled: {}", memory_summary(operator_pid));
    }
    let mut changes = server.changes();
    let verbs_before = server.stats().verbs;
    let started = Instant::now();
    futures::stream::iter(names.iter().cloned())
        .map(|name| {
            let api = api.clone();
            async move {
                api.patch(
                    &name,
                    &PatchParams::default(),
                    &Patch::Merge(json!({"spec": {"mode": target}})),
                )
                .await
                .expect("spec patch");
            }
        })
        .buffer_unordered(CONCURRENCY)
        .collect::<Vec<()>>()
        .await;
    // Converged objects are tracked from the server's change feed (no polling of the store,
    // which would hold its lock); the trace (BENCH_TRACE=1) prints progress every 5 s:
    // converged objects, the operator's vendor writes and reads, its RSS and CPU, and what the
    // API server served.
    let trace = std::env::var_os("BENCH_TRACE").is_some();
    let is_converged =
        |c: &Value| c["status"]["mode"].as_str().is_some_and(wire) && c["status"]["pendingChange"].is_null();
    let recount = || {
        server
            .list("connectivity-operator.dev/v1alpha1", "ConnectivitySubscription")
            .into_iter()
            .filter(|c| is_converged(c))
            .filter_map(|c| c["metadata"]["name"].as_str().map(str::to_string))
            .collect::<std::collections::HashSet<String>>()
    };
    let mut converged = recount();
    let mut ticker = tokio::time::interval(Duration::from_secs(5));
    let give_up = tokio::time::sleep(Duration::from_secs(1800));
    tokio::pin!(give_up);
    let (mut seen, mut lags) = (0u64, 0u64);
    while converged.len() < n {
        tokio::select! {
            change = changes.next() => match change {
                Some(Ok(c)) if c.kind() == "ConnectivitySubscription" => {
                    seen += 1;
                    let name = c.object()["metadata"]["name"].as_str().unwrap_or_default().to_string();
                    if !c.is_deleted() && is_converged(c.object()) {
                        converged.insert(name);
                    } else {
                        converged.remove(&name);
                    }
                }
                Some(Ok(_)) => {}
                // Fell behind: subscribe afresh (at the newest change), then read the store,
                // which is at least as new; later changes apply on top.
                Some(Err(_)) => {
                    lags += 1;
                    changes = server.changes();
                    converged = recount();
                }
                None => break,
            },
            _ = ticker.tick(), if trace => {
                let counts = operator_counts(&http, metrics_addr).await;
                let sum = |f: &dyn Fn(&str, &str) -> bool| -> u64 {
                    counts.iter().filter(|(op, s, _)| f(op, s)).map(|(_, _, c)| c).sum()
                };
                let stats = server.stats();
                eprintln!(
                    "   t={:>6.1}s converged {:>6}/{n} writes {:>6} reads {:>6} 429s {:>3} {} lists {} items {} watches {} lagged {} cpu s: operator {:.1} sim {:.1} bench {:.1} feed {seen} lags {lags}",
                    started.elapsed().as_secs_f64(),
                    converged.len(),
                    sum(&|op, s| is_write(op) && s.starts_with('2')),
                    sum(&|op, _| !is_write(op)),
                    sum(&|_, s| s == "429"),
                    memory_summary(operator_pid),
                    stats.lists,
                    stats.listed_items,
                    stats.watches,
                    stats.watches_closed_lagging,
                    cpu_secs(&operator_pid.to_string()),
                    cpu_secs(&sim_pid.to_string()),
                    cpu_secs("self"),
                );
            }
            () = &mut give_up => {
                eprintln!("gave up waiting: {} of {n} converged", converged.len());
                break;
            }
        }
    }
    let took = started.elapsed();
    let api = verbs_since(&server, &verbs_before);
    let operator_rss_peak = proc_kib(operator_pid, "VmHWM:");
    let counts = operator_counts(&http, metrics_addr).await;
    // Calls made for the change: totals now minus those of the start-up pass.
    let since = |pred: &dyn Fn(&str, &str) -> bool| -> u64 {
        let total =
            |c: &[(String, String, u64)]| -> u64 { c.iter().filter(|(op, s, _)| pred(op, s)).map(|(_, _, n)| n).sum() };
        total(&counts) - total(&vendor_calls_before)
    };
    let converge = Converge {
        writes: since(&|op, s| is_write(op) && s.starts_with('2')),
        reads: since(&|op, _| !is_write(op)),
        rate,
        vendor_rate: vendor.documented_rate() * scale,
        time: took,
        throttled: since(&|_, s| s == "429"),
        api,
    };
    let _ = operator.kill().await;
    // Idle: a new operator process with a short resync interval, settled after its start-up
    // pass (a full resync from an empty resync clock), then three resync intervals in which
    // nothing changes in Git or at the vendor.
    let idle_addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let verbs_before_start = server.stats().verbs;
    let mut idle_operator = spawn_operator(
        &kubeconfig,
        idle_addr,
        &["--resync-interval", &format!("{}s", IDLE_RESYNC.as_secs())],
    );
    settle(&http, idle_addr, n).await;
    let startup_api = verbs_since(&server, &verbs_before_start);
    let verbs_before_idle = server.stats().verbs;
    let calls_before_idle: u64 = operator_counts(&http, idle_addr).await.iter().map(|(_, _, c)| c).sum();
    tokio::time::sleep(IDLE_RESYNC * 3).await;
    let idle = Idle {
        startup_api,
        api: verbs_since(&server, &verbs_before_idle),
        vendor_calls: operator_counts(&http, idle_addr)
            .await
            .iter()
            .map(|(_, _, c)| c)
            .sum::<u64>()
            - calls_before_idle,
    };
    let _ = idle_operator.kill().await;
    let _ = sim.child.kill().await;
    Report {
        vendor,
        n,
        scale,
        bulk: results[0].clone(),
        per_object: results[1].clone(),
        converge,
        idle,
        rss_total_mib: operator_rss_peak as f64 / 1024.0,
        rss_apiserver_mib: operator_rss_idle as f64 / 1024.0,
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let value = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let parse_vendor = |x: &str| match x {
        "emnify" => Some(Vendor::Emnify),
        "telenor" => Some(Vendor::Telenor),
        _ => None,
    };
    // One scenario in this process: print its figures as one JSON line.
    if let Some(one) = value("--one") {
        let (v, n) = one.split_once(':').expect("--one vendor:n");
        let vendor = parse_vendor(v).expect("vendor");
        let n: usize = n.parse().expect("n");
        connectivity_operator::install_crypto_provider();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let r = runtime.block_on(scenario(vendor, n));
        print_one(&r);
        println!(
            "RESULT {}",
            json!({
                "scale": r.scale,
                "bulk": [r.bulk.calls, r.bulk.wall.as_secs_f64(), r.bulk.throttled, r.bulk.api_writes],
                "per_object": [r.per_object.calls, r.per_object.wall.as_secs_f64(), r.per_object.throttled, r.per_object.api_writes],
                "api": r.converge.api,
                "idle": {"startup": r.idle.startup_api, "api": r.idle.api, "vendor_calls": r.idle.vendor_calls},
                "converge": [r.converge.writes, r.converge.rate, r.converge.time.as_secs_f64(), r.converge.throttled, r.converge.reads, r.converge.vendor_rate],
                "rss": [r.rss_total_mib, r.rss_apiserver_mib],
            })
        );
        return;
    }
    let ns: Vec<usize> = value("--n").map_or(vec![1000, 10_000], |v| {
        v.split(',').filter_map(|x| x.parse().ok()).collect()
    });
    let vendors: Vec<Vendor> = value("--vendor").map_or(vec![Vendor::Emnify, Vendor::Telenor], |v| {
        v.split(',').filter_map(parse_vendor).collect()
    });
    let me = std::env::current_exe().expect("own path");
    let mut reports = Vec::new();
    for vendor in &vendors {
        for n in &ns {
            eprintln!("== {} N={n}", vendor.name());
            // Each scenario in a fresh process, so figures and RSS do not carry over.
            let out = std::process::Command::new(&me)
                .args(["--one", &format!("{}:{n}", vendor.name())])
                .stderr(Stdio::inherit())
                .output()
                .expect("scenario runs");
            let text = String::from_utf8_lossy(&out.stdout);
            let Some(line) = text.lines().find_map(|l| l.strip_prefix("RESULT ")) else {
                eprintln!("scenario {} N={n} failed: {text}", vendor.name());
                continue;
            };
            let v: Value = serde_json::from_str(line).expect("result JSON");
            let f = |key: &str, i: usize| v[key][i].as_f64().unwrap_or_default();
            reports.push(Report {
                vendor: *vendor,
                n: *n,
                scale: v["scale"].as_f64().unwrap_or_default(),
                bulk: Resync {
                    calls: f("bulk", 0) as u64,
                    wall: Duration::from_secs_f64(f("bulk", 1)),
                    throttled: f("bulk", 2) as u64,
                    api_writes: f("bulk", 3) as u64,
                },
                per_object: Resync {
                    calls: f("per_object", 0) as u64,
                    wall: Duration::from_secs_f64(f("per_object", 1)),
                    throttled: f("per_object", 2) as u64,
                    api_writes: f("per_object", 3) as u64,
                },
                converge: Converge {
                    writes: f("converge", 0) as u64,
                    rate: f("converge", 1),
                    time: Duration::from_secs_f64(f("converge", 2)),
                    throttled: f("converge", 3) as u64,
                    reads: f("converge", 4) as u64,
                    vendor_rate: f("converge", 5),
                    api: serde_json::from_value(v["api"].clone()).unwrap_or_default(),
                },
                idle: Idle {
                    startup_api: serde_json::from_value(v["idle"]["startup"].clone()).unwrap_or_default(),
                    api: serde_json::from_value(v["idle"]["api"].clone()).unwrap_or_default(),
                    vendor_calls: v["idle"]["vendor_calls"].as_u64().unwrap_or_default(),
                },
                rss_total_mib: f("rss", 0),
                rss_apiserver_mib: f("rss", 1),
            });
        }
    }
    println!("\nFull resync (vendor calls, wall time, 429s received, Kubernetes API writes):");
    println!(
        "{:<8} {:>6} {:>6} | {:>12} {:>9} {:>8} {:>5} {:>10} | {:>12} {:>9} {:>5} {:>10}",
        "vendor",
        "N",
        "scale",
        "bulk calls",
        "target",
        "wall s",
        "429",
        "k8s writes",
        "per-obj calls",
        "wall s",
        "429",
        "k8s writes"
    );
    for r in &reports {
        println!(
            "{:<8} {:>6} {:>5.1}x | {:>12} {:>9} {:>8.1} {:>5} {:>10} | {:>12} {:>9.1} {:>5} {:>10}",
            r.vendor.name(),
            r.n,
            r.scale,
            r.bulk.calls,
            format!("<= {}", r.vendor.sweep_pages(r.n) + 2),
            r.bulk.wall.as_secs_f64(),
            r.bulk.throttled,
            r.bulk.api_writes,
            r.per_object.calls,
            r.per_object.wall.as_secs_f64(),
            r.per_object.throttled,
            r.per_object.api_writes
        );
    }
    println!("\nMode change on all N (bulk), converged by `connectivity-operator run` in its own process:");
    println!(
        "bound = writes / the operator's write rate limit (spec.rateLimit, 0.95 x the vendor's); \
         the last ratio is against the vendor's own limit"
    );
    println!(
        "{:<8} {:>6} | {:>7} {:>6} {:>7} {:>8} {:>8} {:>6} {:>9} {:>5} | {:>13} {:>13}",
        "vendor",
        "N",
        "writes",
        "reads",
        "rate/s",
        "bound s",
        "took s",
        "ratio",
        "vs vendor",
        "429",
        "peak RSS MiB",
        "idle RSS MiB"
    );
    for r in &reports {
        let bound = r.converge.writes as f64 / r.converge.rate;
        let vendor_bound = r.converge.writes as f64 / r.converge.vendor_rate.max(f64::EPSILON);
        println!(
            "{:<8} {:>6} | {:>7} {:>6} {:>7.1} {:>8.1} {:>8.1} {:>6.2} {:>9.2} {:>5} | {:>13.1} {:>13.1}",
            r.vendor.name(),
            r.n,
            r.converge.writes,
            r.converge.reads,
            r.converge.rate,
            bound,
            r.converge.time.as_secs_f64(),
            r.converge.time.as_secs_f64() / bound.max(f64::EPSILON),
            r.converge.time.as_secs_f64() / vendor_bound.max(f64::EPSILON),
            r.converge.throttled,
            r.rss_total_mib,
            r.rss_apiserver_mib
        );
    }
    let verbs = |api: &std::collections::BTreeMap<String, u64>| {
        let writes: u64 = ["POST", "PATCH", "PUT", "DELETE"]
            .iter()
            .filter_map(|v| api.get(*v))
            .sum();
        let all: Vec<String> = api.iter().map(|(verb, n)| format!("{verb} {n}")).collect();
        format!("writes {writes:>6} ({})", all.join(", "))
    };
    println!("\nKubernetes API requests by verb (writes = POST + PATCH + PUT + DELETE):");
    for r in &reports {
        println!(
            "{:<8} {:>6} | mode change:            {} (PATCH includes the benchmark's {} spec patches)",
            r.vendor.name(),
            r.n,
            verbs(&r.converge.api),
            r.n
        );
        println!(
            "{:<8} {:>6} | new operator start-up:  {}",
            r.vendor.name(),
            r.n,
            verbs(&r.idle.startup_api)
        );
        println!(
            "{:<8} {:>6} | 3 idle resyncs ({}s):   {}; vendor calls {}",
            r.vendor.name(),
            r.n,
            IDLE_RESYNC.as_secs(),
            verbs(&r.idle.api),
            r.idle.vendor_calls
        );
    }
}

fn print_one(r: &Report) {
    eprintln!(
        "   resync bulk: {} calls in {:.1}s ({} x 429); per object: {} calls in {:.1}s ({} x 429); converge: {} writes in {:.1}s; operator peak RSS {:.1} MiB",
        r.bulk.calls,
        r.bulk.wall.as_secs_f64(),
        r.bulk.throttled,
        r.per_object.calls,
        r.per_object.wall.as_secs_f64(),
        r.per_object.throttled,
        r.converge.writes,
        r.converge.time.as_secs_f64(),
        r.rss_total_mib
    );
}
