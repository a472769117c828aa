//! What the benchmarks share: a vendor simulator as its own process, and `/proc` readings.

use std::process::Stdio;

use serde_json::Value;
use tokio::io::AsyncBufReadExt;

/// A simulator process (killed when dropped) and the JSON line it printed (URL, credentials).
pub struct Sim {
    pub child: tokio::process::Child,
    pub info: Value,
}

/// `BIN sim ARGS`: start it and read its line.
pub async fn spawn_sim(bin: &str, args: &[String]) -> Sim {
    let mut child = tokio::process::Command::new(bin)
        .args(args)
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
pub fn proc_kib(pid: impl std::fmt::Display, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}
