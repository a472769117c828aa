//! Serves the emnify simulator on a free local port for demos and scripts.
//!
//! Prints one JSON line, `{"vendor":"emnify","url":...,"credentials":{...}}`, then runs until
//! killed. Point emnify's Python SDK at it with
//! `EMNIFY_SDK_API_ENDPOINT_URL=<url>/api EMNIFY_SDK_APPLICATION_TOKEN=<application_token>`.
//! `EMNIFY_SIM_NO_RATE_LIMITS=1` turns the documented rate limits off.

use std::io::Write;
use std::net::SocketAddr;

use vendor_sim::emnify::{EmnifyConfig, EmnifySim};

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let mut config = EmnifyConfig::default();
    if std::env::var_os("EMNIFY_SIM_NO_RATE_LIMITS").is_some() {
        config.rate_limits = false;
    }
    let addr: SocketAddr = ([127, 0, 0, 1], 0).into();
    let running = EmnifySim::new(config).serve(addr).await?;
    // Written by hand so the keys come out in the documented order (serde_json sorts maps).
    let line = format!(
        r#"{{"vendor":"emnify","url":{},"credentials":{}}}"#,
        serde_json::Value::String(running.url.clone()),
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
