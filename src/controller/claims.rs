//! One SIM, one manager: when two ConnectivitySubscriptions on the same ProviderConfig name the
//! same SIM (the same IMSI, or the same ICCID with or without its check digit) and both manage it
//! (`managementPolicy: Full`; observers may share a SIM), the one created first manages it and
//! every later one is refused with `DuplicateIdentity`, before any vendor
//! call, naming the first. Without this the two would take turns writing their modes to one SIM
//! on every resync.
//!
//! The index maps each identifier (hashed with its account) to the object that holds it (hashed
//! too): 16 bytes an identifier, about 4.5 MiB at 100,000 subscriptions with both IMSI and ICCID.
//! It is filled from the controller's cache once the cache holds its first complete list, in
//! creation order, so which object is first never depends on the order of reconciles after a
//! restart; afterwards each reconcile checks and claims its own identifiers. An entry is proven
//! only when it refuses someone: the holder is then looked up in the cache, and a holder that is
//! gone, being deleted, or no longer names the SIM gives way. The same check runs again with the
//! identifiers of the SIM the vendor reports, which finds an IMSI in one object and the ICCID of
//! the same SIM in another.

use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
use std::sync::Mutex;

use kube::ResourceExt;
use kube::runtime::reflector::Store;
use tokio::sync::watch;

use super::managed;
use crate::crd::{ConnectivitySubscription, ManagementPolicy};

/// One controller's cache of subscriptions (a namespace, or all), and whether it holds its first
/// complete list.
struct Scope {
    store: Store<ConnectivitySubscription>,
    synced: watch::Receiver<bool>,
    seeded: bool,
}

/// Which subscription holds each SIM identifier.
#[derive(Default)]
pub struct Claims {
    scopes: Mutex<Vec<Scope>>,
    /// Identifier key -> holder key.
    holders: Mutex<HashMap<u64, u64>>,
}

/// A SIM's identifiers, as a spec names them or a vendor reports them.
#[derive(Clone, Copy, Debug)]
pub struct Identifiers<'a> {
    pub imsi: Option<&'a str>,
    pub iccid: Option<&'a str>,
}

impl Identifiers<'_> {
    pub fn of(csub: &ConnectivitySubscription) -> Identifiers<'_> {
        Identifiers {
            imsi: csub.spec.imsi.as_deref(),
            iccid: csub.spec.iccid.as_deref(),
        }
    }

    /// The index keys on `account`: the IMSI, and the ICCID's first 19 digits (so that the 19-
    /// and 20-digit forms meet).
    fn keys(&self, account: &str) -> impl Iterator<Item = u64> + use<> {
        let imsi = self.imsi.map(|i| hash(&[account, "imsi", i]));
        let iccid = self.iccid.map(|i| hash(&[account, "iccid", i.get(..19).unwrap_or(i)]));
        imsi.into_iter().chain(iccid)
    }

    /// Whether `other` shares an identifier with these.
    fn shared_with(&self, other: &Identifiers<'_>) -> bool {
        let same_imsi = matches!((self.imsi, other.imsi), (Some(a), Some(b)) if a == b);
        let same_iccid = matches!((self.iccid, other.iccid), (Some(a), Some(b))
            if a.get(..19).unwrap_or(a) == b.get(..19).unwrap_or(b));
        same_imsi || same_iccid
    }
}

fn hash(parts: &[&str]) -> u64 {
    BuildHasherDefault::<DefaultHasher>::default().hash_one(parts)
}

/// The account a subscription is on: its namespace and ProviderConfig.
fn account(csub: &ConnectivitySubscription) -> String {
    format!("{}/{}", managed::namespace(csub), csub.spec.provider_config_ref.name)
}

/// Whether a subscription writes to its SIM: only those compete for it (observers may share).
pub fn manages(csub: &ConnectivitySubscription) -> bool {
    csub.metadata.deletion_timestamp.is_none() && csub.spec.management_policy == ManagementPolicy::Full
}

fn holder_key(csub: &ConnectivitySubscription) -> u64 {
    hash(&[&managed::namespace(csub), &csub.name_any()])
}

/// Created first wins; the name decides between objects created in the same second.
fn order(csub: &ConnectivitySubscription) -> (Option<i64>, String) {
    (
        csub.metadata.creation_timestamp.as_ref().map(|t| t.0.as_second()),
        csub.name_any(),
    )
}

impl Claims {
    /// Track a controller's cache (its receiver turns `true` with the first complete list).
    pub fn add_scope(&self, store: Store<ConnectivitySubscription>, synced: watch::Receiver<bool>) {
        self.scopes.lock().unwrap_or_else(|p| p.into_inner()).push(Scope {
            store,
            synced,
            seeded: false,
        });
    }

    /// Wait until every cache holds its first complete list, and fill the index from the caches
    /// that just did. Without a cache (offline tools, tests) there is nothing to compare with.
    async fn seeded(&self) {
        loop {
            let waiting = {
                let mut scopes = self.scopes.lock().unwrap_or_else(|p| p.into_inner());
                let mut waiting = None;
                for scope in scopes.iter_mut().filter(|s| !s.seeded) {
                    if *scope.synced.borrow() {
                        self.seed(&scope.store);
                        scope.seeded = true;
                    } else {
                        waiting = Some(scope.synced.clone());
                    }
                }
                waiting
            };
            match waiting {
                Some(mut synced) => {
                    // A closed channel (the controller stopped before its first list) ends the
                    // wait: the check goes on with what is seeded rather than spin on it.
                    if synced.wait_for(|s| *s).await.is_err() {
                        return;
                    }
                }
                None => return,
            }
        }
    }

    fn seed(&self, store: &Store<ConnectivitySubscription>) {
        let mut all: Vec<_> = store.state().into_iter().filter(|c| manages(c)).collect();
        all.sort_by_cached_key(|c| order(c));
        let mut holders = self.holders.lock().unwrap_or_else(|p| p.into_inner());
        holders.reserve(all.len() * 2);
        for csub in &all {
            let holder = holder_key(csub);
            for key in Identifiers::of(csub).keys(&account(csub)) {
                holders.entry(key).or_insert(holder);
            }
        }
    }

    /// The subscription (by name) created before `csub` that names the SIM with `ids` on the same
    /// account and manages it (`managementPolicy: Full`), if there is one; otherwise `csub` now
    /// holds these identifiers.
    pub async fn first_holder(&self, csub: &ConnectivitySubscription, ids: Identifiers<'_>) -> Option<String> {
        self.seeded().await;
        let me = holder_key(csub);
        let account = account(csub);
        let contested: Vec<(u64, u64)> = {
            let mut holders = self.holders.lock().unwrap_or_else(|p| p.into_inner());
            ids.keys(&account)
                .filter_map(|key| {
                    let holder = *holders.entry(key).or_insert(me);
                    (holder != me).then_some((key, holder))
                })
                .collect()
        };
        for (key, holder) in contested {
            match self.find(holder) {
                Some(other)
                    if manages(&other)
                        && managed::namespace(&*other) == managed::namespace(csub)
                        && other.spec.provider_config_ref.name == csub.spec.provider_config_ref.name
                        && Identifiers::of(&other).shared_with(&ids)
                        && order(&other) < order(csub) =>
                {
                    return Some(other.name_any());
                }
                // Gone, leaving, elsewhere, no longer naming the SIM, or created later: it gives way.
                _ => {
                    let mut holders = self.holders.lock().unwrap_or_else(|p| p.into_inner());
                    if holders.get(&key) == Some(&holder) {
                        holders.insert(key, me);
                    }
                }
            }
        }
        None
    }

    /// The subscription whose holder key is `holder` (a scan of the caches: only when a claim
    /// refuses someone).
    fn find(&self, holder: u64) -> Option<std::sync::Arc<ConnectivitySubscription>> {
        let scopes = self.scopes.lock().unwrap_or_else(|p| p.into_inner());
        scopes
            .iter()
            .find_map(|s| s.store.state().into_iter().find(|c| holder_key(c) == holder))
    }

    /// A deleted subscription lets go of what it held.
    pub fn release(&self, csub: &ConnectivitySubscription) {
        let me = holder_key(csub);
        let mut holders = self.holders.lock().unwrap_or_else(|p| p.into_inner());
        for key in Identifiers::of(csub).keys(&account(csub)) {
            if holders.get(&key) == Some(&me) {
                holders.remove(&key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use kube::runtime::watcher::Event;

    fn csub(name: &str, created: i64, imsi: Option<&str>, iccid: Option<&str>) -> ConnectivitySubscription {
        let mut c = ConnectivitySubscription::new(
            name,
            serde_json::from_value(serde_json::json!({
                "providerConfigRef": {"name": "acct"}, "imsi": imsi, "iccid": iccid, "mode": "Active"
            }))
            .unwrap(),
        );
        c.metadata.namespace = Some("ns".into());
        c.metadata.creation_timestamp = Some(Time(k8s_openapi::jiff::Timestamp::from_second(created).unwrap()));
        c
    }

    fn claims(
        objects: &[&ConnectivitySubscription],
    ) -> (
        Claims,
        kube::runtime::reflector::store::Writer<ConnectivitySubscription>,
    ) {
        let (store, mut writer) = kube::runtime::reflector::store();
        for o in objects {
            writer.apply_watcher_event(&Event::Apply((*o).clone()));
        }
        let claims = Claims::default();
        claims.add_scope(store, watch::channel(true).1);
        (claims, writer)
    }

    #[tokio::test]
    async fn a_cache_that_never_synced_does_not_hold_the_check() {
        let (store, _writer) = kube::runtime::reflector::store::<ConnectivitySubscription>();
        let claims = Claims::default();
        // The controller (the sender) is gone before its first complete list.
        claims.add_scope(store, watch::channel(false).1);
        let c = csub("c", 100, Some("295050903090853"), None);
        assert_eq!(claims.first_holder(&c, Identifiers::of(&c)).await, None);
    }

    #[tokio::test]
    async fn the_first_created_manages_the_sim_whatever_order_they_reconcile_in() {
        let old = csub("zz-old", 100, None, Some("89883030004247214070"));
        let new = csub("aa-new", 200, None, Some("8988303000424721407"));
        let (claims, _w) = claims(&[&new, &old]);
        // The newer one reconciles first: the cache seeded the index in creation order.
        assert_eq!(
            claims.first_holder(&new, Identifiers::of(&new)).await.as_deref(),
            Some("zz-old")
        );
        assert_eq!(claims.first_holder(&old, Identifiers::of(&old)).await, None);
        assert_eq!(
            claims.first_holder(&new, Identifiers::of(&new)).await.as_deref(),
            Some("zz-old")
        );
    }

    #[tokio::test]
    async fn a_holder_that_is_gone_or_names_another_sim_gives_way() {
        let old = csub("old", 100, Some("295050903090853"), None);
        let new = csub("new", 200, Some("295050903090853"), None);
        let (claims, mut writer) = claims(&[&old, &new]);
        assert_eq!(
            claims.first_holder(&new, Identifiers::of(&new)).await.as_deref(),
            Some("old")
        );
        // The old one now names another SIM (in the cache, not yet reconciled).
        let moved = csub("old", 100, Some("295050903090999"), None);
        writer.apply_watcher_event(&Event::Apply(moved.clone()));
        assert_eq!(claims.first_holder(&new, Identifiers::of(&new)).await, None);
        // Deleted: its identifiers are free.
        claims.release(&moved);
        writer.apply_watcher_event(&Event::Delete(moved));
        assert_eq!(claims.first_holder(&new, Identifiers::of(&new)).await, None);
    }

    #[tokio::test]
    async fn observers_share_and_other_accounts_do_not_compete() {
        let old = csub("old", 100, Some("295050903090853"), None);
        let mut observer = csub("observer", 50, Some("295050903090853"), None);
        observer.spec.management_policy = ManagementPolicy::ObserveOnly;
        let mut elsewhere = csub("elsewhere", 10, Some("295050903090853"), None);
        elsewhere.spec.provider_config_ref.name = "other-account".into();
        let (claims, _w) = claims(&[&old, &observer, &elsewhere]);
        assert_eq!(claims.first_holder(&old, Identifiers::of(&old)).await, None);
    }

    #[tokio::test]
    async fn the_sims_other_identifier_finds_a_duplicate_by_imsi_and_iccid() {
        let by_iccid = csub("by-iccid", 100, None, Some("8988303000424721407"));
        let by_imsi = csub("by-imsi", 200, Some("295050903090854"), None);
        let (claims, _w) = claims(&[&by_iccid, &by_imsi]);
        assert_eq!(claims.first_holder(&by_imsi, Identifiers::of(&by_imsi)).await, None);
        // The vendor reports the SIM with both: the same check with its identifiers.
        let sim = Identifiers {
            imsi: Some("295050903090854"),
            iccid: Some("89883030004247214070"),
        };
        assert_eq!(claims.first_holder(&by_imsi, sim).await.as_deref(), Some("by-iccid"));
        assert_eq!(claims.first_holder(&by_iccid, sim).await, None);
    }
}
