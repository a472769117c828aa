//! The watches behind every controller, trimmed for fleet scale: cached objects with only the
//! metadata the operator reads, reconciles triggered only by spec or
//! metadata changes ([`Triggers`], our own: kube's `predicate_filter` keeps three strings per
//! object for an hour after a delete, this two numbers and forgets deletes at once; for 10,000
//! subscriptions 0.39 MiB against 1.99 MiB, `cargo bench --bench footprint -- --n 10000`),
//! requests by namespace and name only (`bare_ref`).

use futures::StreamExt;
use kube::Api;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{Controller, WatchStreamExt, reflector, watcher};

/// The prefix of the annotations the operator reads (resync interval, termination confirmation).
const OUR_ANNOTATIONS: &str = "connectivity-operator.dev/";

/// What the cache keeps of an object's metadata: what the operator reads. Gone are
/// `managedFields`, `resourceVersion` (the watch keeps its own), labels and every annotation
/// not ours: kubectl's last-applied copy of the whole object, Argo CD's tracking id and the
/// like. An object's first annotation alone costs a B-tree node of about 550 bytes in the cache.
pub fn trim(meta: &mut kube::api::ObjectMeta) {
    meta.managed_fields = None;
    meta.resource_version = None;
    meta.labels = None;
    if let Some(annotations) = meta.annotations.as_mut() {
        annotations.retain(|key, _| key.starts_with(OUR_ANNOTATIONS));
        if annotations.is_empty() {
            meta.annotations = None;
        }
    }
}

/// What a change must touch to trigger a reconcile: the spec (generation), annotations (resync,
/// termination confirmation), finalizers (the finalizer helper's first pass) or deletion.
/// Status-only changes, which are nearly all the operator's own writes, do not: at fleet scale
/// each would otherwise cost a reconcile that finds nothing to do.
fn spec_or_metadata<K: kube::Resource>(obj: &K) -> Option<u64> {
    use std::hash::{DefaultHasher, Hash, Hasher};
    let meta = obj.meta();
    let mut h = DefaultHasher::new();
    meta.generation.hash(&mut h);
    meta.annotations.hash(&mut h);
    meta.finalizers.hash(&mut h);
    meta.deletion_timestamp.as_ref().map(|t| t.0.as_second()).hash(&mut h);
    Some(h.finish())
}

/// An object's reference by namespace and name only. Requests built with
/// [`ObjectRef::from_obj`] also carry the object's uid and resourceVersion, which nothing
/// downstream reads but the controller's scheduler keeps (twice) for every object waiting for
/// its next resync: at 10,000 objects that is megabytes of copies.
pub(super) fn bare_ref<K: kube::Resource<DynamicType = ()>>(obj: &K) -> ObjectRef<K> {
    let name = obj.meta().name.as_deref().unwrap_or_default();
    match obj.meta().namespace.as_deref() {
        Some(ns) => ObjectRef::new(name).within(ns),
        None => ObjectRef::new(name),
    }
}

/// Passes on the objects whose `spec_or_metadata` changed, like kube's `predicate_filter`,
/// but remembers each object as two numbers (a hash of namespace, name and uid, and the
/// predicate's hash) instead of three strings, and forgets deleted objects at once (kube's keeps
/// them for an hour).
/// Public for the footprint benchmark (figures in the module doc).
#[derive(Default)]
pub struct Triggers {
    seen: std::collections::HashMap<u64, (u64, u32)>,
    /// Bumped at every (re)list; entries not seen in a relist are dropped when it ends.
    epoch: u32,
}

impl Triggers {
    fn key<K: kube::Resource>(obj: &K) -> u64 {
        use std::hash::{DefaultHasher, Hash, Hasher};
        let meta = obj.meta();
        let mut h = DefaultHasher::new();
        (&meta.namespace, &meta.name, &meta.uid).hash(&mut h);
        h.finish()
    }

    /// The object to reconcile for `event`, if any.
    pub fn on<K: kube::Resource>(&mut self, event: watcher::Event<K>) -> Option<K> {
        match event {
            watcher::Event::Apply(obj) | watcher::Event::InitApply(obj) => {
                let hash = spec_or_metadata(&obj)?;
                let epoch = self.epoch;
                match self.seen.insert(Self::key(&obj), (hash, epoch)) {
                    Some((old, _)) if old == hash => None,
                    _ => Some(obj),
                }
            }
            watcher::Event::Delete(obj) => {
                self.seen.remove(&Self::key(&obj));
                None
            }
            watcher::Event::Init => {
                self.epoch = self.epoch.wrapping_add(1);
                None
            }
            watcher::Event::InitDone => {
                let epoch = self.epoch;
                self.seen.retain(|_, (_, seen)| *seen == epoch);
                None
            }
        }
    }
}

/// A controller whose cache keeps objects without what the operator never reads ([`trim`]:
/// `managedFields`, kubectl's last-applied annotation and the like are most of a small
/// object's size), so a cache of 10,000 subscriptions holds a fraction of what the API server
/// sends (controller-runtime's `TransformStripManagedFields` does the same). It is triggered by
/// [`spec_or_metadata`] changes ([`Triggers`]), with requests by namespace and name
/// ([`bare_ref`]); requeues and the other watches do the rest. Watch errors are logged and
/// retried with kube's default backoff.
///
/// The receiver turns `true` once the cache holds the first complete list (`/readyz`). Not the
/// store's `wait_until_ready`: kube-runtime 5's store readiness is a oneshot receiver that keeps
/// one waker, so a second task waiting on it beside the controller's own wait is never woken
/// (or, the other way round, the controller is not): `/readyz` then stayed `caches not synced`
/// for good, measured with `cargo bench --bench subscriptions`.
pub(super) fn trimmed_controller<K>(api: Api<K>, config: watcher::Config) -> (Controller<K>, Synced)
where
    K: kube::Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
{
    let (reader, writer) = reflector::store();
    let (synced_tx, synced) = tokio::sync::watch::channel(false);
    let mut triggers = Triggers::default();
    let requests = watcher(api, config)
        .default_backoff()
        .modify(|obj: &mut K| trim(obj.meta_mut()))
        .reflect(writer)
        .inspect(move |event| {
            if matches!(event, Ok(watcher::Event::InitDone)) {
                synced_tx.send_replace(true);
            }
        })
        .filter_map(move |event| {
            let request = match event {
                Ok(event) => triggers.on(event).map(|obj| bare_ref(&obj)),
                Err(error) => {
                    tracing::warn!(kind = %K::kind(&()), %error, "watch failed; retrying with backoff");
                    None
                }
            };
            futures::future::ready(request)
        });
    (
        Controller::for_stream(futures::stream::pending(), reader).reconcile_on(requests),
        synced,
    )
}

/// Turns `true` when a controller's cache holds its first complete list.
pub(super) type Synced = tokio::sync::watch::Receiver<bool>;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::ServiceProfile;
    use kube::ResourceExt;
    use kube::api::ObjectMeta;

    fn profile(name: &str, uid: &str, generation: i64, resource_version: &str) -> ServiceProfile {
        let mut sp = ServiceProfile::new(
            name,
            serde_json::from_value(serde_json::json!({"providerConfigRef": {"name": "acct"}, "name": name})).unwrap(),
        );
        sp.metadata = ObjectMeta {
            name: Some(name.into()),
            namespace: Some("ns".into()),
            uid: Some(uid.into()),
            generation: Some(generation),
            resource_version: Some(resource_version.into()),
            ..Default::default()
        };
        sp
    }

    fn on(t: &mut Triggers, event: watcher::Event<ServiceProfile>) -> Option<ServiceProfile> {
        t.on(event)
    }

    fn names(out: Vec<Option<ServiceProfile>>) -> Vec<Option<String>> {
        out.into_iter().map(|o| o.map(|sp| sp.name_any())).collect()
    }

    #[test]
    fn triggers_pass_spec_and_metadata_changes_and_new_objects_only() {
        let mut t = Triggers::default();
        let out = vec![
            on(&mut t, watcher::Event::Init),
            on(&mut t, watcher::Event::InitApply(profile("a", "u1", 1, "1"))),
            on(&mut t, watcher::Event::InitDone),
            // A status-only write: new resourceVersion, same generation.
            on(&mut t, watcher::Event::Apply(profile("a", "u1", 1, "2"))),
            // A spec change.
            on(&mut t, watcher::Event::Apply(profile("a", "u1", 2, "3"))),
            // Deleted and created again under the same name: a new object.
            on(&mut t, watcher::Event::Delete(profile("a", "u1", 2, "4"))),
            on(&mut t, watcher::Event::Apply(profile("a", "u2", 2, "5"))),
        ];
        assert_eq!(
            names(out),
            [
                None,
                Some("a".into()),
                None,
                None,
                Some("a".into()),
                None,
                Some("a".into())
            ]
        );
        assert_eq!(t.seen.len(), 1, "the deleted object is forgotten");
    }

    #[test]
    fn the_cache_keeps_only_the_metadata_the_operator_reads() {
        let mut sp = profile("a", "u1", 3, "42");
        let meta = &mut sp.metadata;
        meta.labels = Some([("app.kubernetes.io/instance".to_string(), "fleet".to_string())].into());
        meta.annotations = Some(
            [
                ("kubectl.kubernetes.io/last-applied-configuration", "{}"),
                (
                    "argocd.argoproj.io/tracking-id",
                    "fleet:connectivity-operator.dev/ServiceProfile:ns/a",
                ),
                (crate::crd::RESYNC_ANNOTATION, "90s"),
            ]
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .into(),
        );
        meta.managed_fields = Some(vec![Default::default()]);
        meta.finalizers = Some(vec![crate::crd::FINALIZER.into()]);
        trim(meta);
        assert_eq!(meta.name.as_deref(), Some("a"));
        assert_eq!(meta.uid.as_deref(), Some("u1"), "the uid keys the resync clock");
        assert_eq!(meta.generation, Some(3));
        assert!(meta.finalizers.is_some());
        assert!(meta.managed_fields.is_none() && meta.resource_version.is_none() && meta.labels.is_none());
        assert_eq!(
            meta.annotations.as_ref().map(|a| a.keys().cloned().collect::<Vec<_>>()),
            Some(vec![crate::crd::RESYNC_ANNOTATION.to_string()])
        );
        let mut bare = profile("b", "u2", 1, "1");
        bare.metadata.annotations = Some([("x".to_string(), "y".to_string())].into());
        trim(&mut bare.metadata);
        assert!(bare.metadata.annotations.is_none(), "no empty map left behind");
    }

    #[test]
    fn a_relist_forgets_objects_that_are_gone_and_passes_nothing_unchanged() {
        let mut t = Triggers::default();
        on(&mut t, watcher::Event::Init);
        on(&mut t, watcher::Event::InitApply(profile("a", "u1", 1, "1")));
        on(&mut t, watcher::Event::InitApply(profile("b", "u2", 1, "1")));
        on(&mut t, watcher::Event::InitDone);
        // The watch broke; "b" was deleted meanwhile and the relist does not have it.
        let out = vec![
            on(&mut t, watcher::Event::Init),
            on(&mut t, watcher::Event::InitApply(profile("a", "u1", 1, "7"))),
            on(&mut t, watcher::Event::InitDone),
        ];
        assert_eq!(names(out), [None, None, None]);
        assert_eq!(t.seen.len(), 1, "b is forgotten at the end of the relist");
        let request = bare_ref(&profile("a", "u1", 1, "7"));
        assert_eq!(request.name, "a");
        assert_eq!(request.namespace.as_deref(), Some("ns"));
        assert!(request.extra.uid.is_none() && request.extra.resource_version.is_none());
    }
}
