//! Seeded random faults for chaos runs, one model for the three simulators.
//!
//! Scripted faults (`POST /_sim/faults`) fail the next few matching calls; a chaos run instead
//! wants a share of *all* calls to fail, reproducibly. [`Chaos`] draws one [`Draw`] per API call
//! from a seeded stream, so the same seed and the same sequence of calls give the same faults.
//! Each simulator turns a draw into what its vendor does in that situation:
//!
//! | Draw | emnify | Telenor | BICS |
//! |---|---|---|---|
//! | [`Draw::Error`] | 500, nothing handled | 500, nothing handled | HTTP 500, nothing processed |
//! | [`Draw::ErrorAfterApply`] (writes) | handled, answered 5xx | handled, answered 504 | processed, resultCode 10239 |
//! | [`Draw::Stall`] | stalls past the client's timeout, applied or not | same | same (10240 when not committed) |
//! | [`Draw::Throttle`] | 429 burst | 429 burst | 429 burst (HTTP, as the gateway) |
//!
//! No vendor documents `Retry-After` on 429, so throttles carry it only when
//! [`ChaosConfig::retry_after`] says so (a run sets it on some simulators and not on others).
//!
//! Set with `POST /_sim/chaos` (a [`ChaosConfig`] as JSON; `{}` turns it off) or `sim --chaos`;
//! `GET /_sim/chaos` reports what was injected ([`ChaosCounts`]).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::State as AxumState;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// Shares are per API call, between 0 and 1; they are drawn in the order of the fields below, so
/// their sum is the share of calls that fail (capped at 1).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ChaosConfig {
    /// Seed of the fault stream.
    pub seed: u64,
    /// Calls answered with a 5xx before anything is handled.
    pub server_error: f64,
    /// Writes handled and then answered with an error, so the caller cannot know they applied.
    pub error_after_apply: f64,
    /// Calls that stall for `stall_ms` before answering (past the caller's timeout).
    pub stall: f64,
    /// Of the stalled writes, the share that applies (on receipt) all the same.
    pub stall_applied: f64,
    /// How long a stalled call waits before it answers.
    pub stall_ms: u64,
    /// Calls that start a burst of 429s (this call and the next `burst - 1`).
    pub throttle: f64,
    /// Length of a 429 burst (at least 1).
    pub burst: u32,
    /// `Retry-After` seconds on the throttles (none when unset).
    pub retry_after: Option<u32>,
    /// Faults on writes only; reads pass (e.g. every write stalls while reads still answer, so
    /// a caller reaches its writes).
    pub writes_only: bool,
}

impl ChaosConfig {
    /// Whether any fault can be drawn.
    pub fn is_active(&self) -> bool {
        self.server_error > 0.0 || self.error_after_apply > 0.0 || self.stall > 0.0 || self.throttle > 0.0
    }

    /// A configuration error a caller can fix, if any.
    pub fn check(&self) -> Result<(), String> {
        let shares = [
            ("server_error", self.server_error),
            ("error_after_apply", self.error_after_apply),
            ("stall", self.stall),
            ("stall_applied", self.stall_applied),
            ("throttle", self.throttle),
        ];
        for (name, share) in shares {
            if !(0.0..=1.0).contains(&share) {
                return Err(format!("{name} must be a share between 0 and 1, not {share}"));
            }
        }
        if self.stall > 0.0 && self.stall_ms == 0 {
            return Err("stall needs stall_ms (how long a stalled call waits)".into());
        }
        Ok(())
    }

    pub fn stall_for(&self) -> Duration {
        Duration::from_millis(self.stall_ms)
    }
}

/// What happens to one API call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Draw {
    /// Handled normally.
    Pass,
    /// A 5xx before anything is handled.
    Error,
    /// Handled (a write applies), then answered with an error.
    ErrorAfterApply,
    /// Stalls before answering; a write applies on receipt when `applied`, never otherwise.
    Stall { applied: bool },
    /// 429.
    Throttle,
}

/// Faults injected so far, by kind.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChaosCounts {
    pub calls: u64,
    pub server_errors: u64,
    pub errors_after_apply: u64,
    pub stalls_applied: u64,
    pub stalls_not_applied: u64,
    pub throttled: u64,
    pub bursts: u64,
}

/// The fault stream of one simulator.
#[derive(Clone, Debug)]
pub struct Chaos {
    config: ChaosConfig,
    state: u64,
    burst_left: u32,
    counts: ChaosCounts,
}

impl Chaos {
    pub fn new(config: ChaosConfig) -> Chaos {
        Chaos {
            state: config.seed,
            config,
            burst_left: 0,
            counts: ChaosCounts::default(),
        }
    }

    pub fn config(&self) -> &ChaosConfig {
        &self.config
    }

    pub fn counts(&self) -> ChaosCounts {
        self.counts
    }

    /// SplitMix64 (portable and stable across `rand` versions): a uniform value in [0, 1).
    fn next_unit(&mut self) -> f64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }

    /// The fate of the next call; `write` says whether it can change anything (only writes
    /// apply-then-fail; a read drawn so is answered with an error).
    pub fn draw(&mut self, write: bool) -> Draw {
        self.counts.calls += 1;
        if self.burst_left > 0 {
            self.burst_left -= 1;
            self.counts.throttled += 1;
            return Draw::Throttle;
        }
        let c = &self.config;
        if c.writes_only && !write {
            return Draw::Pass;
        }
        let (error, after, stall, throttle) = (c.server_error, c.error_after_apply, c.stall, c.throttle);
        let x = self.next_unit();
        let draw = if x < error {
            Draw::Error
        } else if x < error + after {
            if write { Draw::ErrorAfterApply } else { Draw::Error }
        } else if x < error + after + stall {
            let applied = write && self.next_unit() < self.config.stall_applied;
            Draw::Stall { applied }
        } else if x < error + after + stall + throttle {
            self.burst_left = self.config.burst.max(1) - 1;
            self.counts.bursts += 1;
            Draw::Throttle
        } else {
            Draw::Pass
        };
        match draw {
            Draw::Error => self.counts.server_errors += 1,
            Draw::ErrorAfterApply => self.counts.errors_after_apply += 1,
            Draw::Stall { applied: true } => self.counts.stalls_applied += 1,
            Draw::Stall { applied: false } => self.counts.stalls_not_applied += 1,
            Draw::Throttle => self.counts.throttled += 1,
            Draw::Pass => {}
        }
        draw
    }
}

impl std::ops::AddAssign for ChaosCounts {
    fn add_assign(&mut self, o: ChaosCounts) {
        self.calls += o.calls;
        self.server_errors += o.server_errors;
        self.errors_after_apply += o.errors_after_apply;
        self.stalls_applied += o.stalls_applied;
        self.stalls_not_applied += o.stalls_not_applied;
        self.throttled += o.throttled;
        self.bursts += o.bursts;
    }
}

/// A simulator's chaos stream, if one is set, and what earlier streams injected.
#[derive(Clone, Debug, Default)]
pub struct ChaosSlot(Arc<Mutex<Slot>>);

#[derive(Debug, Default)]
struct Slot {
    chaos: Option<Chaos>,
    /// Counts of the streams replaced so far (a run turns faults off to converge, then reads them).
    before: ChaosCounts,
}

impl ChaosSlot {
    fn lock(&self) -> std::sync::MutexGuard<'_, Slot> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts a new stream (an inactive config turns faults off); the counts keep adding up.
    pub fn set(&self, config: ChaosConfig) -> Result<(), String> {
        config.check()?;
        let mut slot = self.lock();
        if let Some(old) = slot.chaos.take() {
            slot.before += old.counts();
        }
        slot.chaos = config.is_active().then(|| Chaos::new(config));
        Ok(())
    }

    /// The fate of the next API call (`Pass` when no stream is set), with the stall length and
    /// the `Retry-After` of the current stream.
    pub fn draw(&self, write: bool) -> (Draw, Duration, Option<u32>) {
        let mut slot = self.lock();
        match slot.chaos.as_mut() {
            Some(chaos) => {
                let draw = chaos.draw(write);
                (draw, chaos.config().stall_for(), chaos.config().retry_after)
            }
            None => (Draw::Pass, Duration::ZERO, None),
        }
    }

    /// Everything injected since the simulator started.
    pub fn counts(&self) -> ChaosCounts {
        let slot = self.lock();
        let mut counts = slot.before;
        if let Some(chaos) = &slot.chaos {
            counts += chaos.counts();
        }
        counts
    }

    /// `GET /_sim/chaos`: the current config (null when off) and the counts.
    pub fn report(&self) -> Value {
        let config = self.lock().chaos.as_ref().map(|c| c.config().clone());
        json!({"config": config, "counts": self.counts()})
    }
}

/// Each simulator hands the admin routes its slot.
pub(crate) trait HasChaos {
    fn chaos(&self) -> &ChaosSlot;
}

/// `GET /_sim/chaos`.
pub(crate) async fn admin_get<S: HasChaos>(AxumState(sim): AxumState<S>) -> Response {
    axum::Json(sim.chaos().report()).into_response()
}

/// `POST /_sim/chaos` with a [`ChaosConfig`]; `{}` turns faults off.
pub(crate) async fn admin_set<S: HasChaos>(AxumState(sim): AxumState<S>, body: Body) -> Response {
    let bad = |message: String| (StatusCode::BAD_REQUEST, axum::Json(json!({"message": message}))).into_response();
    let bytes = match axum::body::to_bytes(body, 64 * 1024).await {
        Ok(b) => b,
        Err(e) => return bad(format!("unreadable body: {e}")),
    };
    let config: ChaosConfig = match serde_json::from_slice(&bytes) {
        Ok(c) => c,
        Err(e) => return bad(format!("invalid chaos config: {e}")),
    };
    match sim.chaos().set(config) {
        Ok(()) => axum::Json(sim.chaos().report()).into_response(),
        Err(message) => bad(message),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(config: ChaosConfig, calls: usize) -> (Vec<Draw>, ChaosCounts) {
        let mut chaos = Chaos::new(config);
        let draws = (0..calls).map(|i| chaos.draw(i % 2 == 0)).collect();
        (draws, chaos.counts())
    }

    fn config() -> ChaosConfig {
        ChaosConfig {
            seed: 7,
            server_error: 0.10,
            error_after_apply: 0.03,
            stall: 0.05,
            stall_applied: 0.5,
            stall_ms: 100,
            throttle: 0.01,
            burst: 5,
            retry_after: None,
            writes_only: false,
        }
    }

    #[test]
    fn the_same_seed_draws_the_same_faults_and_another_seed_others() {
        let (a, _) = run(config(), 2000);
        let (b, _) = run(config(), 2000);
        assert_eq!(a, b);
        let (c, _) = run(ChaosConfig { seed: 8, ..config() }, 2000);
        assert_ne!(a, c);
    }

    #[test]
    fn shares_are_met_over_many_calls() {
        let n = 100_000;
        let (_, counts) = run(config(), n);
        let share = |k: u64| k as f64 / n as f64;
        assert_eq!(counts.calls, n as u64);
        // reads drawn "after apply" are plain errors: 10% + half of 3%
        assert!((share(counts.server_errors) - 0.115).abs() < 0.01, "{counts:?}");
        assert!((share(counts.errors_after_apply) - 0.015).abs() < 0.005, "{counts:?}");
        let stalls = counts.stalls_applied + counts.stalls_not_applied;
        assert!((share(stalls) - 0.05).abs() < 0.01, "{counts:?}");
        // half the stalls are reads (never applied), half of the writes' stalls apply
        assert!((share(counts.stalls_applied) - 0.0125).abs() < 0.005, "{counts:?}");
        assert!(counts.bursts > 0 && counts.throttled >= counts.bursts, "{counts:?}");
    }

    #[test]
    fn a_throttle_is_a_burst_of_the_configured_length() {
        let mut chaos = Chaos::new(ChaosConfig {
            throttle: 1.0,
            burst: 4,
            ..ChaosConfig::default()
        });
        for _ in 0..8 {
            assert_eq!(chaos.draw(false), Draw::Throttle);
        }
        assert_eq!(chaos.counts().bursts, 2);
        assert_eq!(chaos.counts().throttled, 8);
    }

    #[test]
    fn reads_never_apply_and_an_inactive_config_draws_nothing() {
        let mut chaos = Chaos::new(ChaosConfig {
            error_after_apply: 0.5,
            stall: 0.5,
            stall_applied: 1.0,
            stall_ms: 10,
            ..ChaosConfig::default()
        });
        for _ in 0..1000 {
            let d = chaos.draw(false);
            assert!(matches!(d, Draw::Error | Draw::Stall { applied: false }), "{d:?}");
        }
        let mut off = Chaos::new(ChaosConfig::default());
        assert!(!off.config().is_active());
        assert!((0..1000).all(|_| off.draw(true) == Draw::Pass));
    }

    #[test]
    fn writes_only_lets_reads_pass() {
        let mut chaos = Chaos::new(ChaosConfig {
            stall: 1.0,
            stall_applied: 1.0,
            stall_ms: 10,
            writes_only: true,
            ..ChaosConfig::default()
        });
        assert_eq!(chaos.draw(false), Draw::Pass);
        assert_eq!(chaos.draw(true), Draw::Stall { applied: true });
        assert_eq!(chaos.counts().calls, 2);
    }

    #[test]
    fn bad_shares_are_refused_with_the_field() {
        let bad = ChaosConfig {
            server_error: 1.5,
            ..ChaosConfig::default()
        };
        assert!(bad.check().unwrap_err().contains("server_error"));
        let no_wait = ChaosConfig {
            stall: 0.1,
            ..ChaosConfig::default()
        };
        assert!(no_wait.check().unwrap_err().contains("stall_ms"));
        assert!(config().check().is_ok());
    }
}
