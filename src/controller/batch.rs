//! Bulk vendor writes: changes that many subscriptions on one account want at about the same
//! time go out as one vendor call, where the vendor documents one (emnify's endpoint bulk
//! update, up to 2,000 endpoints; see docs/bulk-writes.md).
//!
//! - **Submit** ([`Inventories::submit`]): a reconcile hands its item over and returns at once
//!   (`Queued`: no status write, no vendor call of its own); the object is woken when its item
//!   has an answer, and its next reconcile takes that answer as the outcome of its write. An
//!   object has at most one item queued or in flight: a second submission replaces a queued one
//!   (nothing was sent yet) and waits behind one in flight, so nothing is sent twice.
//! - **Flush** (one task per account while items wait): after a short window (or at once when a
//!   full batch waits) up to the vendor's maximum go out in one call, one call at a time, as
//!   emnify asks ("execute bulk operations sequentially"). While a call is out the account
//!   counts as writing, so pending verifications park instead of competing with it.
//! - **Settle** ([`send`]): the vendor answers for the whole request. On a failure each item's
//!   own outcome is found by reading the items back: those in effect are done and never sent
//!   again; when the failure was the request's content (a 4xx such as 422) the rest are split in
//!   halves and sent again, down to single items, so one invalid item costs about 2 log2(n)
//!   extra calls and fails alone; any other failure (5xx, timeout, 429, credentials) is each
//!   remaining item's failure, retried by its object's own retry policy.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use futures::future::BoxFuture;

use super::inventory::Inventories;
use crate::backend::{BackendError, BulkItem, ErrorKind, ObservedSubscription, SubscriptionBackend};

/// An object: (namespace, name).
pub type ObjectKey = (String, String);

/// When a batch goes out: once no change arrived for `window`, or its first change has waited
/// `max_delay`, or the vendor's maximum is reached.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    pub window: Duration,
    pub max_delay: Duration,
}

/// What became of a submission.
#[derive(Debug)]
pub enum Submitted {
    /// Waiting for (or in) a bulk call; the object is woken when it has an answer.
    Queued,
    /// The answer to this very item, from the bulk call that carried it.
    Done(Result<Box<ObservedSubscription>, BackendError>),
}

struct Entry {
    object: ObjectKey,
    item: BulkItem,
}

/// An answered item, kept until its object's next reconcile takes it.
struct Answered {
    item: BulkItem,
    result: Result<ObservedSubscription, BackendError>,
}

/// One account's bulk writes.
#[derive(Default)]
struct Account {
    queue: VecDeque<Entry>,
    /// When the oldest queued item and the newest arrived.
    oldest: Option<Instant>,
    newest: Option<Instant>,
    /// Objects whose item is in the call that is out.
    sending: HashSet<ObjectKey>,
    answered: HashMap<ObjectKey, Answered>,
    /// A flush task runs for this account.
    flushing: bool,
}

/// Whether two items ask the same of the same vendor object (the observation they carry may
/// differ in fields they do not touch).
fn same(a: &BulkItem, b: &BulkItem) -> bool {
    a.target == b.target && a.changes == b.changes
}

impl Account {
    /// Take a submission. Returns what became of it and whether a flush task must be started.
    fn submit(&mut self, object: ObjectKey, item: BulkItem) -> (Submitted, bool) {
        if let Some(answered) = self.answered.remove(&object)
            && same(&answered.item, &item)
        {
            return (Submitted::Done(answered.result.map(Box::new)), false);
        }
        // An answer to an older item is dropped: the plan that made this item saw the object
        // since, and its item is what is wanted now.
        if self.sending.contains(&object) {
            // Behind the call that is out: its answer comes first, then this is planned again.
            return (Submitted::Queued, false);
        }
        if let Some(queued) = self.queue.iter_mut().find(|e| e.object == object) {
            queued.item = item;
            return (Submitted::Queued, false);
        }
        self.queue.push_back(Entry { object, item });
        let now = Instant::now();
        self.oldest.get_or_insert(now);
        self.newest = Some(now);
        let start = !self.flushing;
        self.flushing = true;
        (Submitted::Queued, start)
    }

    /// The next batch (at most `limit` items), marked as sending; empty when nothing waits,
    /// which also ends the flush task.
    fn take(&mut self, limit: usize) -> Vec<Entry> {
        let n = self.queue.len().min(limit);
        let batch: Vec<Entry> = self.queue.drain(..n).collect();
        if batch.is_empty() {
            self.flushing = false;
        }
        // What stays waited since before this batch; it is sent with the next one.
        if self.queue.is_empty() {
            self.oldest = None;
            self.newest = None;
        }
        self.sending.extend(batch.iter().map(|e| e.object.clone()));
        batch
    }

    /// How long until the queue should go out (`None`: now, or nothing waits): when it holds a
    /// full batch, has been quiet for `window` (no item arrived), or its oldest item has waited
    /// `max_delay`. Changes that keep arriving (a fleet-wide change applied object by object)
    /// are collected until one of those, instead of going out every `window`.
    fn due_in(&self, limit: usize, window: Duration, max_delay: Duration, now: Instant) -> Option<Duration> {
        let (oldest, newest) = (self.oldest?, self.newest?);
        if self.queue.len() >= limit {
            return None;
        }
        let quiet = window.checked_sub(now.saturating_duration_since(newest))?;
        let waited = max_delay.checked_sub(now.saturating_duration_since(oldest))?;
        Some(quiet.min(waited)).filter(|d| !d.is_zero())
    }

    /// Record each item's answer; returns the objects to wake.
    fn settle(&mut self, batch: Vec<Entry>, results: Vec<Result<(), BackendError>>) -> Vec<ObjectKey> {
        let mut woken = Vec::with_capacity(batch.len());
        for (entry, result) in batch.into_iter().zip(results) {
            self.sending.remove(&entry.object);
            let result = result.map(|()| entry.item.after.clone());
            woken.push(entry.object.clone());
            self.answered.insert(
                entry.object,
                Answered {
                    item: entry.item,
                    result,
                },
            );
        }
        woken
    }
}

/// Every account's bulk writes.
#[derive(Default)]
pub struct Batches {
    accounts: std::sync::Mutex<HashMap<String, Account>>,
}

impl Batches {
    fn with<T>(&self, account: &str, f: impl FnOnce(&mut Account) -> T) -> T {
        let mut accounts = self.accounts.lock().unwrap_or_else(|p| p.into_inner());
        match accounts.get_mut(account) {
            Some(a) => f(a),
            None => f(accounts.entry(account.to_string()).or_default()),
        }
    }

    /// `f` on the account if it ever had a bulk write; `None` otherwise, without creating one
    /// (every resync asks, most accounts never batch).
    fn existing<T>(&self, account: &str, f: impl FnOnce(&mut Account) -> T) -> Option<T> {
        let mut accounts = self.accounts.lock().unwrap_or_else(|p| p.into_inner());
        accounts.get_mut(account).map(f)
    }

    /// Drop what is kept for `object` (its answer, a queued item): it was deleted, or its next
    /// reconcile wrote without the bulk call. Returns a kept answer.
    pub fn forget(
        &self,
        account: &str,
        object: &ObjectKey,
    ) -> Option<(BulkItem, Result<ObservedSubscription, BackendError>)> {
        self.existing(account, |a| {
            a.queue.retain(|e| &e.object != object);
            a.answered.remove(object).map(|x| (x.item, x.result))
        })
        .flatten()
    }

    /// Whether `object` has an item in the bulk call that is out.
    pub fn in_flight(&self, account: &str, object: &ObjectKey) -> bool {
        self.existing(account, |a| a.sending.contains(object)).unwrap_or(false)
    }
}

impl Inventories {
    /// Hand `item` for `object` on `account` to the account's bulk writes (see the module doc).
    /// `timing` says when a batch goes out.
    pub fn submit(
        self: &Arc<Self>,
        account: &str,
        backend: Arc<dyn SubscriptionBackend>,
        object: ObjectKey,
        item: BulkItem,
        timing: Timing,
    ) -> Submitted {
        let (submitted, start) = self.batches.with(account, |a| a.submit(object, item));
        if start {
            let inventories = self.clone();
            let account = account.to_string();
            tokio::spawn(async move { inventories.flush(account, backend, timing).await });
        }
        submitted
    }

    /// The account's flush task: one bulk call at a time until nothing waits.
    async fn flush(self: Arc<Self>, account: String, backend: Arc<dyn SubscriptionBackend>, timing: Timing) {
        let limit = backend.bulk_limit().max(1);
        let mut interrupted = Interrupted {
            inventories: &self,
            account: &account,
            batch: Vec::new(),
        };
        loop {
            while let Some(wait) = self.batches.with(&account, |a| {
                a.due_in(limit, timing.window, timing.max_delay, Instant::now())
            }) {
                tokio::time::sleep(wait).await;
            }
            let batch = self.batches.with(&account, |a| a.take(limit));
            if batch.is_empty() {
                return;
            }
            interrupted.batch = batch.iter().map(|e| e.object.clone()).collect();
            let items: Vec<BulkItem> = batch.iter().map(|e| e.item.clone()).collect();
            let started = std::time::Instant::now();
            let results = {
                let _writing = self.writing(&account);
                send(backend.as_ref(), items).await
            };
            let failed = results.iter().filter(|r| r.is_err()).count();
            tracing::info!(
                provider = %account,
                items = results.len(),
                failed,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "bulk write answered"
            );
            interrupted.batch.clear();
            let woken = self.batches.with(&account, |a| a.settle(batch, results));
            self.wake(woken);
        }
    }
}

/// Ends a flush task that stops without settling its batch (a panic, the runtime shutting
/// down): the batch's objects get an outcome-unknown answer (they read the vendor before writing
/// again) and are woken, and the account may start a new task.
struct Interrupted<'a> {
    inventories: &'a Arc<Inventories>,
    account: &'a str,
    batch: Vec<ObjectKey>,
}

impl Drop for Interrupted<'_> {
    fn drop(&mut self) {
        if self.batch.is_empty() {
            return;
        }
        let objects = std::mem::take(&mut self.batch);
        self.inventories.batches.with(self.account, |a| {
            // The next submission starts a new task for whatever still waits.
            a.flushing = false;
            for object in &objects {
                a.sending.remove(object);
                a.answered.remove(object);
            }
        });
        self.inventories.wake(objects);
    }
}

/// Whether a failed bulk request may be split to find the items that failed it: failures of
/// the request's content, not of the vendor, the rate limit or the credentials.
fn splittable(kind: &ErrorKind) -> bool {
    matches!(kind, ErrorKind::Invalid | ErrorKind::NotFound | ErrorKind::Conflict)
}

/// One bulk write of `items` and each item's outcome (see the module doc).
pub fn send(backend: &dyn SubscriptionBackend, items: Vec<BulkItem>) -> BoxFuture<'_, Vec<Result<(), BackendError>>> {
    Box::pin(async move {
        let failure = match backend.bulk_update(&items).await {
            Ok(()) => return items.iter().map(|_| Ok(())).collect(),
            Err(e) => e,
        };
        let in_effect = match backend.bulk_in_effect(&items).await {
            Ok(flags) if flags.len() == items.len() => flags,
            Ok(_) => return unknown(&failure, "the read-back did not answer for every item", items.len()),
            Err(e) => return unknown(&failure, &e.to_string(), items.len()),
        };
        let mut results: Vec<Option<Result<(), BackendError>>> =
            in_effect.iter().map(|&done| done.then_some(Ok(()))).collect();
        let rest: Vec<usize> = (0..items.len()).filter(|&i| !in_effect[i]).collect();
        if items.len() > 1 && splittable(&failure.kind) {
            let (left, right) = rest.split_at(rest.len().div_ceil(2));
            for half in [left, right] {
                if half.is_empty() {
                    continue;
                }
                let sub: Vec<BulkItem> = half.iter().map(|&i| items[i].clone()).collect();
                for (&i, result) in half.iter().zip(send(backend, sub).await) {
                    results[i] = Some(result);
                }
            }
        } else {
            for &i in &rest {
                results[i] = Some(Err(failure.duplicate()));
            }
        }
        results
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Err(failure.duplicate())))
            .collect()
    })
}

/// Every item's outcome when a failed bulk write could not be read back: unknown, so each
/// object reads the vendor before it writes again.
fn unknown(failure: &BackendError, why: &str, n: usize) -> Vec<Result<(), BackendError>> {
    (0..n)
        .map(|_| {
            Err(BackendError::new(
                failure.action.clone(),
                ErrorKind::OutcomeUnknown,
                format!("{}; reading the items back failed ({why})", failure.message),
            ))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::SubscriptionChange;
    use crate::crd::SubscriptionMode;

    fn item(target: &str, mode: SubscriptionMode) -> BulkItem {
        BulkItem {
            target: target.into(),
            changes: vec![SubscriptionChange::SetMode(mode)],
            after: ObservedSubscription {
                mode: Some(mode),
                ..Default::default()
            },
        }
    }

    fn key(name: &str) -> ObjectKey {
        ("ns".into(), name.into())
    }

    #[test]
    fn one_item_per_object_queued_or_in_flight() {
        let mut a = Account::default();
        let (s, start) = a.submit(key("a"), item("1", SubscriptionMode::Paused));
        assert!(matches!(s, Submitted::Queued) && start, "the first item starts a flush");
        let (_, start) = a.submit(key("b"), item("2", SubscriptionMode::Paused));
        assert!(!start, "one flush task per account");
        // A newer plan for a queued object replaces its item: nothing was sent yet.
        a.submit(key("a"), item("1", SubscriptionMode::Active));
        assert_eq!(a.queue.len(), 2);
        let batch = a.take(10);
        assert_eq!(
            batch[0].item.changes,
            [SubscriptionChange::SetMode(SubscriptionMode::Active)]
        );
        // In flight: a resubmission waits for the answer instead of queueing a second write.
        let (s, _) = a.submit(key("a"), item("1", SubscriptionMode::Active));
        assert!(matches!(s, Submitted::Queued));
        assert!(a.queue.is_empty(), "never a second item while one is out");
        let woken = a.settle(
            batch,
            vec![Ok(()), Err(BackendError::new("x", ErrorKind::Invalid, "bad"))],
        );
        assert_eq!(woken, [key("a"), key("b")]);
        // The answer goes to the submission of the same item, once.
        let (s, _) = a.submit(key("a"), item("1", SubscriptionMode::Active));
        assert!(matches!(s, Submitted::Done(Ok(ref o)) if o.mode == Some(SubscriptionMode::Active)));
        let (s, _) = a.submit(key("b"), item("2", SubscriptionMode::Paused));
        assert!(matches!(s, Submitted::Done(Err(_))));
        // Nothing left: a later submission of the same item is a new write.
        let (s, _) = a.submit(key("a"), item("1", SubscriptionMode::Active));
        assert!(matches!(s, Submitted::Queued));
    }

    #[test]
    fn an_answer_to_an_older_item_is_not_taken_for_a_new_one() {
        let mut a = Account::default();
        a.submit(key("a"), item("1", SubscriptionMode::Paused));
        let batch = a.take(10);
        a.settle(batch, vec![Ok(())]);
        let (s, start) = a.submit(key("a"), item("1", SubscriptionMode::Active));
        assert!(matches!(s, Submitted::Queued));
        assert!(!start, "the flush task of the first batch is still running");
        assert!(a.answered.is_empty());
    }

    #[test]
    fn a_batch_goes_out_when_quiet_full_or_waited_long_enough() {
        let window = Duration::from_millis(200);
        let max_delay = Duration::from_secs(5);
        let ms = Duration::from_millis;
        let mut a = Account::default();
        let t0 = Instant::now();
        assert_eq!(a.due_in(10, window, max_delay, t0), None, "nothing waits");
        a.submit(key("a"), item("1", SubscriptionMode::Paused));
        let t0 = a.oldest.unwrap();
        assert_eq!(
            a.due_in(10, window, max_delay, t0 + ms(50)),
            Some(ms(150)),
            "waits for quiet"
        );
        assert_eq!(
            a.due_in(10, window, max_delay, t0 + ms(200)),
            None,
            "quiet for the window: out"
        );
        // A steady trickle keeps it collecting, up to the maximum delay.
        a.newest = Some(t0 + ms(4900));
        assert_eq!(a.due_in(10, window, max_delay, t0 + ms(4950)), Some(ms(50)));
        assert_eq!(
            a.due_in(10, window, max_delay, t0 + ms(5000)),
            None,
            "waited long enough"
        );
        // A full batch goes at once.
        a.newest = Some(t0);
        assert_eq!(a.due_in(1, window, max_delay, t0), None);
        // What is left after a take keeps its arrival times; an empty queue forgets them.
        a.submit(key("b"), item("2", SubscriptionMode::Paused));
        a.take(1);
        assert!(a.oldest.is_some());
        a.take(1);
        assert!(a.oldest.is_none() && a.newest.is_none());
    }

    #[test]
    fn take_respects_the_limit_and_ends_the_flush_when_empty() {
        let mut a = Account::default();
        for i in 0..5 {
            a.submit(key(&i.to_string()), item(&i.to_string(), SubscriptionMode::Paused));
        }
        assert_eq!(a.take(2).len(), 2);
        assert_eq!(a.take(2).len(), 2);
        assert_eq!(a.take(2).len(), 1);
        assert!(a.flushing);
        assert!(a.take(2).is_empty());
        assert!(!a.flushing, "an empty take ends the task");
    }
}
