//! Stateful HTTP simulators of the IoT connectivity vendors' REST APIs.
//!
//! connectivity-operator talks to real vendor APIs in production; these simulators stand in for
//! them in local demos, users' CI and our own tests. Each simulator is a real HTTP server with
//! in-memory state, seeded deterministically, with switches for rate limits, latency and fault
//! injection, plus admin routes under `/_sim/` that scripts can drive.
//!
//! * [`emnify`]: the emnify REST API (`https://cdn.emnify.net/api/v1/...`).
//! * [`telenor`]: Telenor IoT Connect (`https://api.iot.telenor.com/iot-connect/...`).
//! * [`bics`]: BICS SIM for Things (`https://sft.bics.com/api/...`).
#![forbid(unsafe_code)]

pub mod bics;
pub mod chaos;

/// Accepted connections answer without Nagle's delay, as a production HTTP server does: a
/// response written in two segments would otherwise wait for the client's delayed ACK (40 ms on
/// Linux) and make every paged sweep look slow.
pub(crate) fn no_delay(
    listener: tokio::net::TcpListener,
) -> impl axum::serve::Listener<Io = tokio::net::TcpStream, Addr = std::net::SocketAddr> {
    use axum::serve::ListenerExt;
    listener.tap_io(|stream| {
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(error = %e, "failed to set TCP_NODELAY");
        }
    })
}
pub mod emnify;
pub mod telenor;
