//! Import benchmark: `connectivity-operator import` as a user runs it (its own process, output
//! into a folder, one file per object) against each vendor's simulator (its own process, 20 ms
//! latency per request, the vendor's documented rate limits) holding N SIMs. Side by side with the
//! baseline the import issue names, one inventory sweep of the same account (the library's
//! `inventory()`, as the operator resyncs), it prints: SIMs written, vendor requests (import, and
//! the sweep alone), wall time, SIMs per second, the import's peak RSS, and the output's size.
//!
//!   cargo bench --bench import                                  # N = 10000, every vendor
//!   cargo bench --bench import -- --n 10000,100000 --vendor emnify

use std::path::Path;
use std::process::Stdio;
use std::time::Instant;

use connectivity_operator::offline::{OfflineOptions, OfflineRun};
use serde_json::Value;

mod common;
use common::{Sim, proc_kib};

const BIN: &str = env!("CARGO_BIN_EXE_connectivity-operator");
const LATENCY: &str = "20ms";

async fn start_sim(vendor: &str, n: usize) -> Sim {
    let mut args: Vec<String> = [
        "sim",
        "--vendor",
        vendor,
        "--listen",
        "127.0.0.1:0",
        "--latency",
        LATENCY,
    ]
    .map(String::from)
    .to_vec();
    match vendor {
        "telenor" => args.extend(["--subscriptions".into(), n.to_string()]),
        _ => args.extend(["--endpoints".into(), n.to_string(), "--free-sims".into(), "0".into()]),
    }
    common::spawn_sim(BIN, &args).await
}

/// The account files for a running simulator.
fn account(dir: &Path, vendor: &str, info: &Value) -> std::path::PathBuf {
    let c = &info["credentials"];
    let s = |k: &str| c[k].as_str().unwrap_or_default().to_string();
    let (kind, credentials, extra) = match vendor {
        "emnify" => (
            "emnify",
            format!("applicationToken: {}", s("application_token")),
            String::new(),
        ),
        "bics-sft" => (
            "bicsSft",
            format!("username: {}, password: {}", s("username"), s("password")),
            String::new(),
        ),
        _ => (
            "telenorIotConnect",
            format!("clientId: {}, clientSecret: {}", s("client_id"), s("client_secret")),
            format!(
                ", telenorIotConnect: {{tokenUrl: '{}'}}",
                info["token_url"].as_str().unwrap_or_default()
            ),
        ),
    };
    let path = dir.join("account.yaml");
    std::fs::write(
        &path,
        format!(
            "apiVersion: v1\nkind: Secret\nmetadata: {{name: creds}}\nstringData: {{{credentials}}}\n---\n\
             apiVersion: connectivity-operator.dev/v1alpha1\nkind: ProviderConfig\nmetadata: {{name: acct}}\n\
             spec: {{vendor: {kind}, endpoint: '{}', credentialsSecretRef: {{name: creds}}{extra}}}\n",
            info["url"].as_str().unwrap_or_default()
        ),
    )
    .expect("account file");
    path
}

/// One sweep of the account through the library, as the operator resyncs: (SIMs, requests).
async fn sweep(account: &Path) -> (usize, u64) {
    let run = OfflineRun::start(&OfflineOptions {
        paths: vec![account.to_path_buf()],
        ..Default::default()
    })
    .await
    .expect("account loads");
    let provider = run
        .ctx
        .providers
        .resolve(&run.cluster.client, "default", "acct")
        .await
        .expect("provider");
    let inventory = provider.subscriptions.inventory().await.expect("sweep");
    (inventory.len(), inventory.requests)
}

fn folder_bytes(dir: &Path) -> u64 {
    let mut total = 0;
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        total += if path.is_dir() {
            folder_bytes(&path)
        } else {
            entry.metadata().map(|m| m.len()).unwrap_or(0)
        };
    }
    total
}

async fn scenario(vendor: &str, n: usize) -> String {
    let mut sim = start_sim(vendor, n).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let account = account(dir.path(), vendor, &sim.info);
    let out = dir.path().join("imported");
    let started = Instant::now();
    let mut child = tokio::process::Command::new(BIN)
        .args(["import", "-f"])
        .arg(&account)
        .arg("-o")
        .arg(&out)
        .env("RUST_LOG", "warn")
        .stderr(Stdio::piped())
        .spawn()
        .expect("import runs");
    let pid = child.id().unwrap_or_default();
    // Read while it runs: its notes could fill the pipe.
    let mut pipe = child.stderr.take().expect("stderr");
    let reader = tokio::spawn(async move {
        use tokio::io::AsyncReadExt;
        let mut text = String::new();
        pipe.read_to_string(&mut text).await.map(|_| text)
    });
    let mut peak: f64 = 0.0;
    // The peak RSS, read until the process ends (its /proc entry goes with it).
    let status = loop {
        peak = peak.max(proc_kib(pid, "VmHWM:") as f64 / 1024.0);
        if let Some(status) = child.try_wait().expect("import waits") {
            break status;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    let wall = started.elapsed();
    let stderr = reader.await.expect("reader").expect("stderr");
    assert!(status.success(), "import failed: {stderr}");
    let summary = stderr
        .lines()
        .rev()
        .find(|l| l.starts_with("# imported"))
        .unwrap_or("")
        .to_string();
    let number_before = |word: &str| -> u64 {
        let words: Vec<&str> = summary.split_whitespace().collect();
        words
            .windows(2)
            .find(|w| w[1].starts_with(word))
            .and_then(|w| w[0].trim_start_matches('(').parse().ok())
            .unwrap_or(0)
    };
    let written = number_before("ConnectivitySubscriptions");
    let requests = number_before("vendor");
    let (swept, sweep_requests) = sweep(&account).await;
    let _ = sim.child.kill().await;
    format!(
        "{vendor:<9} {n:>7} {written:>8} {requests:>9} {sweep_requests:>9} {swept:>8} {:>8.1} {:>8.0} {peak:>9.1} {:>9.1}",
        wall.as_secs_f64(),
        written as f64 / wall.as_secs_f64(),
        folder_bytes(&out) as f64 / (1 << 20) as f64
    )
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let value = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let ns: Vec<usize> = value("--n")
        .unwrap_or_else(|| "10000".into())
        .split(',')
        .map(|n| n.parse().expect("--n takes numbers"))
        .collect();
    let vendors: Vec<String> = value("--vendor")
        .unwrap_or_else(|| "emnify,bics-sft,telenor".into())
        .split(',')
        .map(str::to_string)
        .collect();
    println!(
        "{:<9} {:>7} {:>8} {:>9} {:>9} {:>8} {:>8} {:>8} {:>9} {:>9}",
        "vendor", "SIMs", "written", "requests", "sweep", "swept", "wall s", "SIMs/s", "RSS MiB", "out MiB"
    );
    println!("          (import: every request incl. auth and profiles; sweep: the operator's inventory sweep alone)");
    for n in &ns {
        for vendor in &vendors {
            println!("{}", scenario(vendor, *n).await);
        }
    }
}
