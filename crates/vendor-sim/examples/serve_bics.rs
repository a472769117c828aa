//! Serves the BICS SIM for Things simulator on a free local port for demos and scripts.
//!
//! Prints one JSON line, `{"vendor":"bics","url":...,"credentials":{"username","password"}}`,
//! then runs until killed. The URL plays `https://sft.bics.com` (calls go to `<url>/api/...`).
//! `BICS_SIM_NO_RATE_LIMIT=1` turns the per-account rate limit off; `BICS_SIM_HTTP_401=1`
//! answers expired tokens with a real HTTP 401.

use std::io::Write;
use std::net::SocketAddr;

use vendor_sim::bics::{BicsConfig, BicsSim};

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let mut config = BicsConfig::default();
    if std::env::var_os("BICS_SIM_NO_RATE_LIMIT").is_some() {
        config.rate_limit = None;
    }
    if std::env::var_os("BICS_SIM_HTTP_401").is_some() {
        config.http_401 = true;
    }
    let addr: SocketAddr = ([127, 0, 0, 1], 0).into();
    let running = BicsSim::new(config).serve(addr).await?;
    // Written by hand so the keys come out in the documented order (serde_json sorts maps).
    let line = format!(
        r#"{{"vendor":"bics","url":{},"credentials":{}}}"#,
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
