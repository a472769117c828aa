//! Kubernetes events (`events.k8s.io/v1`) with series, from a bounded cache.
//!
//! Same wire behaviour as kube's `Recorder`: the first occurrence is created, a repeat of the
//! same event about the same object within six minutes PATCHes the first one's `series`
//! (`count`, `lastObservedTime`) instead of creating another object. Two differences, both
//! for fleets: the cache is bounded (at most [`SERIES_CAPACITY`] series, oldest dropped first,
//! as client-go's recorder bounds its own), and it keeps only what a repeat needs (the event's
//! name and count), not the whole event. kube's `Recorder` keeps every event it published for
//! six minutes and scans them all on every publish, which for a fleet-wide change (an event per
//! SIM) holds tens of megabytes: after 10,000 events about 10,000 objects kube's `Recorder`
//! holds 26.29 MiB, this 0.54 MiB (`cargo bench --bench footprint -- --n 10000`). The note is
//! part of an event's identity here, so "Updated:
//! mode Paused" and "Updated: mode Active" stay two events rather than one series showing the
//! first note.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Mutex;

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::Event as K8sEvent;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::Client;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::events::{Event, EventType, Reporter};
use serde_json::json;

/// A repeat within this long joins the first event's series.
pub const SERIES_TTL: SignedDuration = SignedDuration::from_mins(6);
/// At most this many series are remembered (client-go's recorder keeps 4096 as well).
pub const SERIES_CAPACITY: usize = 4096;

struct Series {
    name: String,
    count: i32,
    last: Timestamp,
}

pub struct EventRecorder {
    client: Client,
    reporter: Reporter,
    series: Mutex<HashMap<u64, Series>>,
}

impl EventRecorder {
    pub fn new(client: Client, reporter: Reporter) -> Self {
        EventRecorder {
            client,
            reporter,
            series: Mutex::new(HashMap::new()),
        }
    }

    fn key(&self, ev: &Event, regarding: &ObjectReference) -> u64 {
        let mut h = DefaultHasher::new();
        matches!(ev.type_, EventType::Warning).hash(&mut h);
        ev.reason.hash(&mut h);
        ev.action.hash(&mut h);
        ev.note.hash(&mut h);
        regarding.api_version.hash(&mut h);
        regarding.kind.hash(&mut h);
        regarding.namespace.hash(&mut h);
        regarding.name.hash(&mut h);
        regarding.uid.hash(&mut h);
        h.finish()
    }

    /// Series remembered now (for tests and metrics).
    pub fn remembered(&self) -> usize {
        self.series.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Publish `ev` about the object `regarding`: create it, or count a repeat into its series.
    pub async fn publish(&self, ev: &Event, regarding: &ObjectReference) -> Result<(), kube::Error> {
        let now = Timestamp::now();
        let key = self.key(ev, regarding);
        let namespace = regarding.namespace.clone().unwrap_or_else(|| "default".into());
        let api: Api<K8sEvent> = Api::namespaced(self.client.clone(), &namespace);
        let repeat = self
            .series
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
            .filter(|s| s.last + SERIES_TTL > now)
            .map(|s| (s.name.clone(), s.count + 1));
        let (name, count) = match repeat {
            Some((name, count)) => {
                let patch = json!({"series": {"count": count, "lastObservedTime": MicroTime(now)}});
                let result = api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch)).await;
                if let Err(e) = result {
                    // The first event is gone (or unreachable): start afresh next time.
                    self.series.lock().unwrap_or_else(|p| p.into_inner()).remove(&key);
                    return Err(e);
                }
                (name, count)
            }
            None => {
                let event = self.generate(ev, regarding, now);
                let name = event.metadata.name.clone().unwrap_or_default();
                api.create(&PostParams::default(), &event).await?;
                (name, 1)
            }
        };
        let mut series = self.series.lock().unwrap_or_else(|p| p.into_inner());
        if series.len() >= SERIES_CAPACITY && !series.contains_key(&key) {
            series.retain(|_, s| s.last + SERIES_TTL > now);
            if series.len() >= SERIES_CAPACITY {
                // Still full of live series: drop the oldest quarter.
                let mut by_age: Vec<(Timestamp, u64)> = series.iter().map(|(k, s)| (s.last, *k)).collect();
                by_age.sort_unstable();
                for (_, k) in by_age.iter().take(SERIES_CAPACITY / 4) {
                    series.remove(k);
                }
            }
        }
        series.insert(key, Series { name, count, last: now });
        Ok(())
    }

    fn generate(&self, ev: &Event, regarding: &ObjectReference, now: Timestamp) -> K8sEvent {
        K8sEvent {
            action: Some(ev.action.clone()),
            reason: Some(ev.reason.clone()),
            event_time: Some(MicroTime(now)),
            regarding: Some(regarding.clone()),
            related: ev.secondary.clone(),
            note: ev.note.clone(),
            metadata: ObjectMeta {
                namespace: regarding.namespace.clone(),
                name: Some(format!(
                    "{}.{:x}",
                    regarding.name.as_ref().unwrap_or(&self.reporter.controller),
                    now.as_nanosecond()
                )),
                ..Default::default()
            },
            reporting_controller: Some(self.reporter.controller.clone()),
            reporting_instance: Some(
                self.reporter
                    .instance
                    .clone()
                    .unwrap_or_else(|| self.reporter.controller.clone()),
            ),
            type_: Some(
                match ev.type_ {
                    EventType::Normal => "Normal",
                    EventType::Warning => "Warning",
                }
                .into(),
            ),
            ..Default::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::offline::memory_server;

    fn reference(name: &str) -> ObjectReference {
        ObjectReference {
            api_version: Some("connectivity-operator.dev/v1alpha1".into()),
            kind: Some("ConnectivitySubscription".into()),
            namespace: Some("default".into()),
            name: Some(name.into()),
            uid: Some(format!("uid-{name}")),
            ..Default::default()
        }
    }

    fn event(reason: &str, note: &str) -> Event {
        Event {
            type_: EventType::Normal,
            reason: reason.into(),
            note: Some(note.into()),
            action: "Update".into(),
            secondary: None,
        }
    }

    #[tokio::test]
    async fn repeats_join_a_series_and_other_notes_do_not() {
        let server = memory_server();
        let client = Client::new(server.clone(), "default");
        let recorder = EventRecorder::new(
            client,
            Reporter {
                controller: "connectivity-operator".into(),
                instance: Some("pod-0".into()),
            },
        );
        let sim = reference("sim-1");
        for _ in 0..3 {
            recorder.publish(&event("Updated", "mode Paused"), &sim).await.unwrap();
        }
        recorder.publish(&event("Updated", "mode Active"), &sim).await.unwrap();
        let events = server.list("events.k8s.io/v1", "Event");
        assert_eq!(events.len(), 2, "{events:#?}");
        let paused = events.iter().find(|e| e["note"] == "mode Paused").unwrap();
        assert_eq!(paused["series"]["count"], 3);
        assert_eq!(paused["reportingInstance"], "pod-0");
        assert_eq!(paused["regarding"]["name"], "sim-1");
        let active = events.iter().find(|e| e["note"] == "mode Active").unwrap();
        assert!(active["series"].is_null());
    }

    #[tokio::test]
    async fn the_cache_stays_bounded() {
        let server = memory_server();
        server.set_recording(false);
        let client = Client::new(server.clone(), "default");
        let recorder = EventRecorder::new(
            client,
            Reporter {
                controller: "connectivity-operator".into(),
                instance: None,
            },
        );
        for i in 0..SERIES_CAPACITY + 100 {
            recorder
                .publish(&event("Updated", "mode Paused"), &reference(&format!("sim-{i}")))
                .await
                .unwrap();
            assert!(recorder.remembered() <= SERIES_CAPACITY);
        }
        assert_eq!(
            server.list("events.k8s.io/v1", "Event").len(),
            SERIES_CAPACITY + 100,
            "every event is still published"
        );
        // The newest are remembered: a repeat of the last one joins its series.
        let last = reference(&format!("sim-{}", SERIES_CAPACITY + 99));
        recorder.publish(&event("Updated", "mode Paused"), &last).await.unwrap();
        assert_eq!(server.list("events.k8s.io/v1", "Event").len(), SERIES_CAPACITY + 100);
    }
}
