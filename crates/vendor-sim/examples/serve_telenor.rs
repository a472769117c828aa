//! Serves the Telenor IoT Connect simulator on a free local port for demos and scripts.
//!
//! Prints one JSON line, `{"vendor":"telenor","url":...,"token_url":...,"credentials":{...}}`,
//! then runs until killed. Environment switches:
//! `TELENOR_SIM_NO_RATE_LIMITS=1` turns the per-token rate limit off,
//! `TELENOR_SIM_SUBSCRIPTIONS=N` seeds N subscriptions (default 25),
//! `TELENOR_SIM_ASYNC_DELAY_MS=N` sets the delay before accepted writes apply (default 2000).

use std::io::Write;
use std::net::SocketAddr;
use std::time::Duration;

use vendor_sim::telenor::{TelenorConfig, TelenorSim};

fn env_number(name: &str) -> Option<u64> {
    let raw = std::env::var(name).ok()?;
    match raw.trim().parse() {
        Ok(n) => Some(n),
        Err(_) => {
            eprintln!("ignoring {name}={raw:?}: not a non-negative integer");
            None
        }
    }
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let mut config = TelenorConfig::default();
    if std::env::var_os("TELENOR_SIM_NO_RATE_LIMITS").is_some() {
        config.rate_limit = None;
    }
    if let Some(n) = env_number("TELENOR_SIM_SUBSCRIPTIONS") {
        config.seed.subscriptions = usize::try_from(n).unwrap_or(usize::MAX);
    }
    if let Some(ms) = env_number("TELENOR_SIM_ASYNC_DELAY_MS") {
        config.async_delay = Duration::from_millis(ms);
    }
    let addr: SocketAddr = ([127, 0, 0, 1], 0).into();
    let running = TelenorSim::new(config).serve(addr).await?;
    // Written by hand so the keys come out in the documented order (serde_json sorts maps).
    let line = format!(
        r#"{{"vendor":"telenor","url":{},"token_url":{},"credentials":{}}}"#,
        serde_json::Value::String(running.url.clone()),
        serde_json::Value::String(running.token_url.clone()),
        running.credentials()
    );
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}")?;
    out.flush()?;
    drop(out);
    // Run until the process is killed; the server lives in a background task.
    std::future::pending::<()>().await;
    Ok(())
}
