//! The resync driver: one timer per controller instead of one per object.
//!
//! A settled object used to ask kube's controller to come back after the resync interval
//! (`Action::requeue`), which keeps an entry per object in the controller's scheduler, two
//! copies of its reconcile request and a delay-queue slot: about 700 bytes per object (heaptrack
//! under `cargo bench --bench subscriptions` at 10,000 subscriptions), 70 MiB at 100,000. Now a settled object
//! waits for a change (`Action::await_change`), and this driver looks through the controller's
//! cache every tick and wakes the objects whose resync is due ([`Schedule::resync_due`]), like
//! controller-runtime's informer `SyncPeriod`. The objects of one account fall due together, so
//! they still share one sweep of the vendor.
//!
//! The tick is a twentieth of the shortest interval in the cache (the operator's
//! `--resync-interval`, an object's resync annotation, the pending poll interval), between one
//! and thirty seconds: a resync runs at most that late. A pass over 100,000 cached objects reads
//! each one's schedule and allocates nothing per object that is not due.
//!
//! [`Schedule::resync_due`]: crate::controller::managed::Schedule::resync_due

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::{Stream, StreamExt};
use kube::runtime::reflector::{ObjectRef, Store};

use super::watch::bare_ref;
use crate::controller::Context;
use crate::controller::managed::{Managed, Schedule};

/// Bounds of the driver's tick.
const TICK_MIN: Duration = Duration::from_secs(1);
const TICK_MAX: Duration = Duration::from_secs(30);

/// How often to look for due objects when the shortest interval in the cache is `shortest`.
pub(super) fn tick_for(shortest: Duration) -> Duration {
    (shortest / 20).clamp(TICK_MIN, TICK_MAX)
}

/// At most this many objects are handed to the controller per pass; with more due, the next pass
/// comes after [`TICK_MIN`]. The controller's scheduler keeps the capacity its queue once grew
/// to: 100,000 objects falling due at once (a fleet on one account, synced together) grew it by
/// ~22 MiB for good and put the operator's peak at 261.6 MiB, the resync's sweep included
/// (`BENCH_TRACE=1 cargo bench --bench subscriptions -- --n 100000 --vendor emnify --api real
/// --way ours`). A pass's objects still share one sweep: it stays fresh for the whole interval.
pub(super) const MAX_DUE_PER_PASS: usize = 2_000;

/// One pass over the cache: the first `cap` due objects, the shortest interval seen, and whether
/// more were due than handed out. Pure.
pub(super) fn pick<R>(
    entries: impl IntoIterator<Item = (R, Schedule)>,
    now: DateTime<Utc>,
    default_every: Duration,
    cap: usize,
) -> Pass<R> {
    let mut pass = Pass {
        due: Vec::new(),
        shortest: default_every,
        backlog: false,
    };
    for (item, schedule) in entries {
        pass.shortest = pass.shortest.min(schedule.every);
        if schedule.resync_due(now) {
            if pass.due.len() < cap {
                pass.due.push(item);
            } else {
                pass.backlog = true;
            }
        }
    }
    pass
}

pub(super) struct Pass<R> {
    pub due: Vec<R>,
    pub shortest: Duration,
    pub backlog: bool,
}

impl<R> Pass<R> {
    /// When to look again: soon while objects wait their turn, else a twentieth of the
    /// shortest interval.
    pub fn next_tick(&self) -> Duration {
        if self.backlog {
            TICK_MIN
        } else {
            tick_for(self.shortest)
        }
    }
}

/// The objects of `store` whose resync is due, checked every tick (module docs).
pub(super) fn due_resyncs<K: Managed>(store: Store<K>, ctx: Arc<Context>) -> impl Stream<Item = ObjectRef<K>> + Send {
    let first = tick_for(ctx.settings.resync_interval);
    futures::stream::unfold((store, ctx, first), |(store, ctx, tick)| async move {
        tokio::time::sleep(tick).await;
        let now = ctx.clock.now();
        let objects = store.state();
        let pass = pick(
            objects.iter().map(|obj| (obj, obj.schedule(&ctx))),
            now,
            ctx.settings.resync_interval,
            MAX_DUE_PER_PASS,
        );
        if !pass.due.is_empty() {
            tracing::debug!(kind = %K::kind(&()), due = pass.due.len(), more = pass.backlog, "resync due");
        }
        let next = pass.next_tick();
        let due: Vec<ObjectRef<K>> = pass.due.into_iter().map(|obj| bare_ref(obj.as_ref())).collect();
        Some((futures::stream::iter(due), (store, ctx, next)))
    })
    .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pass_hands_out_at_most_its_cap_and_comes_back_soon_for_the_rest() {
        let now = Utc::now();
        let every = Duration::from_secs(600);
        let rested = Schedule {
            settled: true,
            since: Some(now - chrono::Duration::seconds(601)),
            every,
        };
        let fresh = Schedule {
            since: Some(now),
            ..rested
        };
        let short = Schedule {
            every: Duration::from_secs(60),
            ..fresh
        };
        let entries = (0..10).map(|i| (i, if i % 2 == 0 { rested } else { fresh }));
        let pass = pick(entries.clone().chain([(99, short)]), now, every, 3);
        assert_eq!(pass.due, vec![0, 2, 4]);
        assert!(pass.backlog);
        assert_eq!(pass.shortest, Duration::from_secs(60));
        assert_eq!(pass.next_tick(), TICK_MIN);
        let pass = pick(entries, now, every, 5);
        assert_eq!(pass.due, vec![0, 2, 4, 6, 8]);
        assert!(!pass.backlog);
        assert_eq!(pass.next_tick(), Duration::from_secs(30));
    }

    #[test]
    fn tick_is_a_twentieth_of_the_shortest_interval_within_bounds() {
        assert_eq!(tick_for(Duration::from_secs(600)), Duration::from_secs(30));
        assert_eq!(tick_for(Duration::from_secs(3600)), TICK_MAX);
        assert_eq!(tick_for(Duration::from_secs(60)), Duration::from_secs(3));
        assert_eq!(tick_for(Duration::from_secs(15)), TICK_MIN);
        assert_eq!(tick_for(Duration::ZERO), TICK_MIN);
    }
}
