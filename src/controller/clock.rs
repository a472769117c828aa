//! The time the controllers decide by: whether a resync or a pending poll is due, how old a
//! pending change is, whether a cached inventory sweep is fresh enough. The operator reads the
//! system clock; tests pass a [`Clock::manual`] clock and move it themselves, so no decision in a
//! test depends on how fast the machine ran the steps before it.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};

/// Where a [`super::Context`] reads the current time.
#[derive(Clone, Debug, Default)]
pub enum Clock {
    /// The system clock (the operator, the offline commands).
    #[default]
    System,
    /// A clock that stands still until [`Clock::advance`] moves it (tests).
    Manual(Arc<Mutex<DateTime<Utc>>>),
}

impl Clock {
    /// A clock standing at `start` until it is advanced.
    pub fn manual(start: DateTime<Utc>) -> Self {
        Clock::Manual(Arc::new(Mutex::new(start)))
    }

    pub fn now(&self) -> DateTime<Utc> {
        match self {
            Clock::System => Utc::now(),
            Clock::Manual(at) => *at.lock().unwrap_or_else(|p| p.into_inner()),
        }
    }

    /// Moves a manual clock forward; the system clock moves on its own, so this does nothing there.
    pub fn advance(&self, by: Duration) {
        if let Clock::Manual(at) = self {
            let mut at = at.lock().unwrap_or_else(|p| p.into_inner());
            *at += chrono::Duration::from_std(by).unwrap_or(chrono::Duration::MAX);
        }
    }

    /// Time since `then`; zero when `then` is in the future (a clock that stepped back).
    pub fn since(&self, then: DateTime<Utc>) -> Duration {
        (self.now() - then).to_std().unwrap_or(Duration::ZERO)
    }
}

/// When each object was last synced with its vendor: the resync clock, kept in memory so that a
/// resync that finds nothing new writes nothing to the API server (no heartbeat in status).
/// After a restart it is empty, so every object syncs once: for subscriptions one sweep per
/// account. Keyed by a hash of kind, namespace, name and uid (a recreated object starts afresh);
/// about 30 bytes per object.
#[derive(Default)]
pub struct SyncTimes {
    times: Mutex<std::collections::HashMap<u64, DateTime<Utc>>>,
}

impl SyncTimes {
    fn key<K: kube::Resource<DynamicType = ()>>(obj: &K) -> u64 {
        use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
        let meta = obj.meta();
        BuildHasherDefault::<DefaultHasher>::default().hash_one((K::kind(&()), &meta.namespace, &meta.name, &meta.uid))
    }

    /// When `obj` was last synced, if since this process started.
    pub fn get<K: kube::Resource<DynamicType = ()>>(&self, obj: &K) -> Option<DateTime<Utc>> {
        self.times
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&Self::key(obj))
            .copied()
    }

    pub fn set<K: kube::Resource<DynamicType = ()>>(&self, obj: &K, at: DateTime<Utc>) {
        self.times
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(Self::key(obj), at);
    }

    /// Forget `obj` (deleted, or a resync wanted at once).
    pub fn forget<K: kube::Resource<DynamicType = ()>>(&self, obj: &K) {
        self.times
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&Self::key(obj));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_clock_moves_only_when_advanced() {
        let start = DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z").unwrap().to_utc();
        let clock = Clock::manual(start);
        assert_eq!(clock.now(), start);
        assert_eq!(clock.now(), start, "reading it does not move it");
        clock.advance(Duration::from_secs(10));
        assert_eq!(clock.since(start), Duration::from_secs(10));
        let copy = clock.clone();
        copy.advance(Duration::from_secs(5));
        assert_eq!(clock.since(start), Duration::from_secs(15), "clones share one time");
        assert_eq!(
            Clock::manual(start).since(start + chrono::Duration::seconds(1)),
            Duration::ZERO,
            "a time in the future is zero ago"
        );
    }
}
