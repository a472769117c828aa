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

use futures::{Stream, StreamExt};
use kube::runtime::reflector::{ObjectRef, Store};

use super::watch::bare_ref;
use crate::controller::Context;
use crate::controller::managed::Managed;

/// Bounds of the driver's tick.
const TICK_MIN: Duration = Duration::from_secs(1);
const TICK_MAX: Duration = Duration::from_secs(30);

/// How often to look for due objects when the shortest interval in the cache is `shortest`.
pub(super) fn tick_for(shortest: Duration) -> Duration {
    (shortest / 20).clamp(TICK_MIN, TICK_MAX)
}

/// The objects of `store` whose resync is due, checked every tick (module docs).
pub(super) fn due_resyncs<K: Managed>(store: Store<K>, ctx: Arc<Context>) -> impl Stream<Item = ObjectRef<K>> + Send {
    let first = tick_for(ctx.settings.resync_interval);
    futures::stream::unfold((store, ctx, first), |(store, ctx, tick)| async move {
        tokio::time::sleep(tick).await;
        let now = ctx.clock.now();
        let mut shortest = ctx.settings.resync_interval;
        let mut due = Vec::new();
        for obj in store.state() {
            let schedule = obj.schedule(&ctx);
            shortest = shortest.min(schedule.every);
            if schedule.resync_due(now) {
                due.push(bare_ref(obj.as_ref()));
            }
        }
        if !due.is_empty() {
            tracing::debug!(kind = %K::kind(&()), due = due.len(), "resync due");
        }
        let next = tick_for(shortest);
        Some((futures::stream::iter(due), (store, ctx, next)))
    })
    .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tick_is_a_twentieth_of_the_shortest_interval_within_bounds() {
        assert_eq!(tick_for(Duration::from_secs(600)), Duration::from_secs(30));
        assert_eq!(tick_for(Duration::from_secs(3600)), TICK_MAX);
        assert_eq!(tick_for(Duration::from_secs(60)), Duration::from_secs(3));
        assert_eq!(tick_for(Duration::from_secs(15)), TICK_MIN);
        assert_eq!(tick_for(Duration::ZERO), TICK_MIN);
    }
}
