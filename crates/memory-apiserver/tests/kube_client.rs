//! End-to-end tests: a real `kube::Client` (and kube-runtime) talking to `MemoryApiServer`.

use std::{sync::Arc, time::Duration};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::{
    core::v1::{ConfigMap, Secret},
    events::v1::Event as K8sEvent,
};
use kube::{
    Client, CustomResource, Resource, ResourceExt,
    api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams},
    runtime::{
        Controller,
        controller::Action,
        events::{Event, EventType, Recorder, Reporter},
        finalizer::{Event as FinalizerEvent, finalizer},
        watcher,
    },
};
use memory_apiserver::{MemoryApiServer, ResourceType};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "test.example.com",
    version = "v1",
    kind = "Widget",
    namespaced,
    status = "WidgetStatus"
)]
pub struct WidgetSpec {
    size: i32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    color: Option<String>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WidgetStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    phase: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    observed_generation: Option<i64>,
}

fn setup() -> (MemoryApiServer, Client, Api<Widget>) {
    let server = MemoryApiServer::new();
    server.register(ResourceType::new(
        "test.example.com",
        "v1",
        "Widget",
        "widgets",
        true,
        true,
    ));
    let client = Client::new(server.clone(), "default");
    let widgets = Api::namespaced(client.clone(), "default");
    (server, client, widgets)
}

fn widget(name: &str, size: i32) -> Widget {
    Widget::new(name, WidgetSpec { size, color: None })
}

fn api_error(err: kube::Error) -> (u16, String) {
    match err {
        kube::Error::Api(status) => (status.code, status.reason.clone()),
        other => panic!("expected an API error, got {other:?}"),
    }
}

fn rv(obj: &impl Resource) -> String {
    obj.meta().resource_version.clone().expect("resourceVersion is set")
}

#[tokio::test]
async fn create_get_list_replace_delete() {
    let (server, _client, widgets) = setup();
    let mut labelled = widget("a", 1);
    labelled.labels_mut().insert("tier".into(), "gold".into());
    let created = widgets.create(&PostParams::default(), &labelled).await.unwrap();
    assert!(created.uid().is_some());
    assert!(created.creation_timestamp().is_some());
    assert_eq!(created.meta().generation, Some(1));
    assert_eq!(created.namespace().as_deref(), Some("default"));
    widgets.create(&PostParams::default(), &widget("b", 2)).await.unwrap();

    let dup = widgets
        .create(&PostParams::default(), &widget("a", 9))
        .await
        .unwrap_err();
    assert_eq!(api_error(dup), (409, "AlreadyExists".into()));

    let fetched = widgets.get("a").await.unwrap();
    assert_eq!(fetched.spec.size, 1);
    assert_eq!(rv(&fetched), rv(&created));
    assert_eq!(
        api_error(widgets.get("nope").await.unwrap_err()),
        (404, "NotFound".into())
    );

    let all = widgets.list(&ListParams::default()).await.unwrap();
    assert_eq!(all.items.iter().map(|w| w.name_any()).collect::<Vec<_>>(), ["a", "b"]);
    assert!(all.metadata.resource_version.is_some());
    let gold = widgets.list(&ListParams::default().labels("tier=gold")).await.unwrap();
    assert_eq!(gold.items.len(), 1);
    let not_gold = widgets.list(&ListParams::default().labels("tier!=gold")).await.unwrap();
    assert_eq!(not_gold.items[0].name_any(), "b");
    let by_name = widgets
        .list(&ListParams::default().fields("metadata.name=b"))
        .await
        .unwrap();
    assert_eq!(by_name.items.len(), 1);
    let elsewhere: Api<Widget> = Api::namespaced(widgets.clone().into_client(), "other");
    assert!(elsewhere.list(&ListParams::default()).await.unwrap().items.is_empty());
    let everywhere: Api<Widget> = Api::all(widgets.clone().into_client());
    assert_eq!(everywhere.list(&ListParams::default()).await.unwrap().items.len(), 2);

    // Replace: fresh resourceVersion succeeds and bumps generation; stale one conflicts.
    let mut changed = fetched.clone();
    changed.spec.size = 5;
    let replaced = widgets.replace("a", &PostParams::default(), &changed).await.unwrap();
    assert_eq!(replaced.meta().generation, Some(2));
    assert_ne!(rv(&replaced), rv(&fetched));
    let stale = widgets
        .replace("a", &PostParams::default(), &changed)
        .await
        .unwrap_err();
    assert_eq!(api_error(stale), (409, "Conflict".into()));
    // Custom resources need a resourceVersion on PUT.
    let mut unconditional = replaced.clone();
    unconditional.metadata.resource_version = None;
    let err = widgets
        .replace("a", &PostParams::default(), &unconditional)
        .await
        .unwrap_err();
    assert_eq!(api_error(err), (422, "Invalid".into()));

    let deleted = widgets.delete("a", &DeleteParams::default()).await.unwrap();
    assert!(deleted.is_right(), "no finalizers: deleted at once");
    assert_eq!(api_error(widgets.get("a").await.unwrap_err()), (404, "NotFound".into()));
    assert_eq!(server.list("test.example.com/v1", "Widget").len(), 1);
}

#[tokio::test]
async fn builtin_types_and_generate_name() {
    let (server, client, _) = setup();
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let mut cm = ConfigMap::default();
    cm.metadata.generate_name = Some("settings-".into());
    cm.data = Some([("k".to_string(), "v".to_string())].into());
    let created = cms.create(&PostParams::default(), &cm).await.unwrap();
    let name = created.name_any();
    assert!(
        name.starts_with("settings-") && name.len() == "settings-".len() + 5,
        "{name}"
    );
    // Built-in kinds allow an unconditional PUT (no resourceVersion).
    let mut update = created.clone();
    update.metadata.resource_version = None;
    update.data = Some([("k".to_string(), "w".to_string())].into());
    let replaced = cms.replace(&name, &PostParams::default(), &update).await.unwrap();
    assert_eq!(replaced.data.unwrap()["k"], "w");

    // Secrets fold stringData into base64 data like the real server.
    let secrets: Api<Secret> = Api::namespaced(client, "default");
    let mut secret = Secret::default();
    secret.metadata.name = Some("creds".into());
    secret.string_data = Some([("token".to_string(), "hunter2".to_string())].into());
    let stored = secrets.create(&PostParams::default(), &secret).await.unwrap();
    assert!(stored.string_data.is_none());
    assert_eq!(stored.data.unwrap()["token"].0, b"hunter2");
    let raw = server.get("v1", "Secret", Some("default"), "creds").unwrap();
    assert_eq!(raw["data"]["token"], "aHVudGVyMg==");
}

#[tokio::test]
async fn merge_json_and_apply_patches() {
    let (server, _client, widgets) = setup();
    widgets.create(&PostParams::default(), &widget("w", 1)).await.unwrap();

    let merged = widgets
        .patch(
            "w",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"color": "red"}})),
        )
        .await
        .unwrap();
    assert_eq!(merged.spec.color.as_deref(), Some("red"));
    assert_eq!(merged.meta().generation, Some(2));

    // A merge patch carrying a stale resourceVersion is an optimistic-concurrency conflict.
    let stale = json!({"metadata": {"resourceVersion": "1"}, "spec": {"size": 3}});
    let err = widgets
        .patch("w", &PatchParams::default(), &Patch::Merge(stale))
        .await
        .unwrap_err();
    assert_eq!(api_error(err), (409, "Conflict".into()));

    let ops: json_patch::Patch = serde_json::from_value(json!([
        {"op": "test", "path": "/spec/size", "value": 1},
        {"op": "replace", "path": "/spec/size", "value": 4},
    ]))
    .unwrap();
    let patched = widgets
        .patch("w", &PatchParams::default(), &Patch::Json::<()>(ops))
        .await
        .unwrap();
    assert_eq!(patched.spec.size, 4);
    let failing: json_patch::Patch =
        serde_json::from_value(json!([{"op": "test", "path": "/spec/size", "value": 1}])).unwrap();
    let err = widgets
        .patch("w", &PatchParams::default(), &Patch::Json::<()>(failing))
        .await
        .unwrap_err();
    assert_eq!(api_error(err), (422, "Invalid".into()));

    // Server-side apply creates when absent and records managedFields.
    let applied = json!({
        "apiVersion": "test.example.com/v1", "kind": "Widget",
        "metadata": {"name": "x", "labels": {"owner": "ops"}},
        "spec": {"size": 7, "color": "blue"},
    });
    let ops_apply = PatchParams::apply("ops");
    let created = widgets.patch("x", &ops_apply, &Patch::Apply(&applied)).await.unwrap();
    assert_eq!(created.spec.size, 7);
    let managed = created.meta().managed_fields.clone().unwrap();
    assert_eq!(managed.len(), 1);
    assert_eq!(managed[0].manager.as_deref(), Some("ops"));
    assert_eq!(managed[0].operation.as_deref(), Some("Apply"));
    assert!(managed[0].fields_v1.as_ref().unwrap().0["f:spec"]["f:size"].is_object());
    let creating_request = server
        .requests()
        .into_iter()
        .rev()
        .find(|r| r.method == "PATCH")
        .unwrap();
    assert_eq!(creating_request.status, 201);
    assert_eq!(creating_request.query_param("fieldManager"), Some("ops"));
    assert_eq!(
        creating_request.content_type.as_deref(),
        Some("application/apply-patch+yaml")
    );

    // Re-applying the same configuration is a no-op.
    let again = widgets.patch("x", &ops_apply, &Patch::Apply(&applied)).await.unwrap();
    assert_eq!(rv(&again), rv(&created));

    // Another manager setting a different value conflicts unless forced.
    let other = json!({"apiVersion": "test.example.com/v1", "kind": "Widget", "spec": {"size": 8}});
    let err = widgets
        .patch("x", &PatchParams::apply("other"), &Patch::Apply(&other))
        .await
        .unwrap_err();
    assert_eq!(api_error(err), (409, "Conflict".into()));
    let forced = widgets
        .patch("x", &PatchParams::apply("other").force(), &Patch::Apply(&other))
        .await
        .unwrap();
    assert_eq!(forced.spec.size, 8);
    let managers: Vec<_> = forced
        .meta()
        .managed_fields
        .iter()
        .flatten()
        .filter_map(|m| m.manager.clone())
        .collect();
    assert_eq!(managers, ["ops", "other"]);

    // Dropping a field from the applied configuration removes it (nobody else owns it).
    let smaller = json!({
        "apiVersion": "test.example.com/v1", "kind": "Widget",
        "metadata": {"name": "x"},
        "spec": {"size": 8},
    });
    let shrunk = widgets.patch("x", &ops_apply, &Patch::Apply(&smaller)).await.unwrap();
    assert_eq!(shrunk.spec.color, None);
    assert!(shrunk.labels().get("owner").is_none());
    assert_eq!(shrunk.spec.size, 8, "still owned by `other`");

    // Apply without a field manager is rejected like the real server.
    let err = widgets
        .patch("x", &PatchParams::default(), &Patch::Apply(&smaller))
        .await;
    assert!(err.is_err());
}

#[tokio::test]
async fn status_subresource_isolation_and_generation() {
    let (_server, _client, widgets) = setup();
    let mut with_status = widget("s", 1);
    with_status.status = Some(WidgetStatus {
        phase: Some("Bogus".into()),
        observed_generation: None,
    });
    let created = widgets.create(&PostParams::default(), &with_status).await.unwrap();
    assert_eq!(created.status, None, "create ignores .status");

    // A status write changes only .status and never generation.
    let patch = json!({"spec": {"size": 99}, "status": {"phase": "Ready", "observedGeneration": 1}});
    let after_status = widgets
        .patch_status("s", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    assert_eq!(after_status.spec.size, 1);
    assert_eq!(after_status.status.as_ref().unwrap().phase.as_deref(), Some("Ready"));
    assert_eq!(after_status.meta().generation, Some(1));
    assert_ne!(rv(&after_status), rv(&created));

    // A main-resource write ignores .status.
    let patch = json!({"spec": {"size": 2}, "status": {"phase": "Hijacked"}});
    let after_main = widgets
        .patch("s", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    assert_eq!(after_main.spec.size, 2);
    assert_eq!(after_main.status.as_ref().unwrap().phase.as_deref(), Some("Ready"));
    assert_eq!(after_main.meta().generation, Some(2));

    // Metadata-only changes do not bump generation.
    let labels = json!({"metadata": {"labels": {"x": "y"}}});
    let relabelled = widgets
        .patch("s", &PatchParams::default(), &Patch::Merge(&labels))
        .await
        .unwrap();
    assert_eq!(relabelled.meta().generation, Some(2));

    // replace_status and server-side apply on /status behave the same way.
    let mut desired = relabelled.clone();
    desired.spec.size = 50;
    desired.status = Some(WidgetStatus {
        phase: Some("Degraded".into()),
        observed_generation: Some(2),
    });
    let replaced = widgets
        .replace_status("s", &PostParams::default(), &desired)
        .await
        .unwrap();
    assert_eq!(replaced.spec.size, 2);
    assert_eq!(replaced.status.as_ref().unwrap().phase.as_deref(), Some("Degraded"));
    let applied = json!({
        "apiVersion": "test.example.com/v1", "kind": "Widget",
        "status": {"phase": "Ready", "observedGeneration": 2},
    });
    let applied = widgets
        .patch_status("s", &PatchParams::apply("operator").force(), &Patch::Apply(&applied))
        .await
        .unwrap();
    assert_eq!(applied.status.as_ref().unwrap().phase.as_deref(), Some("Ready"));
    assert_eq!(applied.meta().generation, Some(2));
    let entry = applied
        .meta()
        .managed_fields
        .iter()
        .flatten()
        .find(|m| m.manager.as_deref() == Some("operator"))
        .unwrap();
    assert_eq!(entry.subresource.as_deref(), Some("status"));
}

#[tokio::test]
async fn no_op_writes_keep_resource_version() {
    let (server, _client, widgets) = setup();
    let created = widgets.create(&PostParams::default(), &widget("n", 1)).await.unwrap();
    let before = server.resource_version();

    let same = widgets
        .patch(
            "n",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"size": 1}})),
        )
        .await
        .unwrap();
    assert_eq!(rv(&same), rv(&created));
    let replaced = widgets.replace("n", &PostParams::default(), &created).await.unwrap();
    assert_eq!(rv(&replaced), rv(&created));
    let status = json!({"status": {"phase": "Ready"}});
    let first = widgets
        .patch_status("n", &PatchParams::default(), &Patch::Merge(&status))
        .await
        .unwrap();
    let second = widgets
        .patch_status("n", &PatchParams::default(), &Patch::Merge(&status))
        .await
        .unwrap();
    assert_eq!(rv(&first), rv(&second));
    assert_eq!(
        server.resource_version(),
        before + 1,
        "only the first status write counted"
    );
}

#[tokio::test]
async fn finalizer_lifecycle_with_kube_runtime() {
    #[derive(Debug, thiserror::Error)]
    #[error("never fails")]
    struct Never;

    let (server, _client, widgets) = setup();
    const NAME: &str = "test.example.com/cleanup";
    widgets.create(&PostParams::default(), &widget("f", 1)).await.unwrap();

    let run = |obj: Widget| {
        let widgets = widgets.clone();
        async move {
            let mut seen = None;
            finalizer(&widgets, NAME, Arc::new(obj), |event| {
                seen = Some(match event {
                    FinalizerEvent::Apply(_) => "apply",
                    FinalizerEvent::Cleanup(_) => "cleanup",
                });
                async { Ok::<_, Never>(Action::await_change()) }
            })
            .await
            .unwrap();
            seen
        }
    };

    // First pass adds the finalizer (JSON patch with `test` ops) and does not reconcile.
    assert_eq!(run(widgets.get("f").await.unwrap()).await, None);
    let with_finalizer = widgets.get("f").await.unwrap();
    assert_eq!(with_finalizer.finalizers(), [NAME]);
    assert_eq!(run(with_finalizer).await, Some("apply"));

    // Deleting only marks the object while the finalizer is present.
    let pending = widgets.delete("f", &DeleteParams::default()).await.unwrap();
    let marked = pending.left().expect("finalizer keeps the object");
    assert!(marked.meta().deletion_timestamp.is_some());
    let marked = widgets.get("f").await.unwrap();
    assert!(marked.meta().deletion_timestamp.is_some());
    assert_eq!(marked.meta().deletion_grace_period_seconds, Some(0));
    assert_eq!(
        marked.meta().generation,
        Some(2),
        "marking for deletion bumps generation"
    );

    // No new finalizers may be added to an object being deleted.
    let add = json!({"metadata": {"finalizers": [NAME, "other/finalizer"]}});
    let err = widgets
        .patch("f", &PatchParams::default(), &Patch::Merge(&add))
        .await
        .unwrap_err();
    assert_eq!(api_error(err), (422, "Invalid".into()));

    // Cleanup removes the finalizer, which completes the deletion.
    assert_eq!(run(marked).await, Some("cleanup"));
    assert_eq!(api_error(widgets.get("f").await.unwrap_err()), (404, "NotFound".into()));
    assert!(
        server
            .get("test.example.com/v1", "Widget", Some("default"), "f")
            .is_none()
    );
}

#[tokio::test]
async fn recorder_publishes_and_patches_event_series() {
    let (server, client, widgets) = setup();
    let w = widgets.create(&PostParams::default(), &widget("e", 1)).await.unwrap();
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: "connectivity-operator".into(),
            instance: Some("test".into()),
        },
    );
    let event = Event {
        type_: EventType::Normal,
        reason: "Provisioned".into(),
        note: Some("created at vendor".into()),
        action: "Reconcile".into(),
        secondary: None,
    };
    let reference = w.object_ref(&());
    recorder.publish(&event, &reference).await.unwrap();
    // The same event again becomes a series, written with a merge PATCH.
    recorder.publish(&event, &reference).await.unwrap();

    let events: Api<K8sEvent> = Api::namespaced(client, "default");
    let list = events.list(&ListParams::default()).await.unwrap();
    assert_eq!(list.items.len(), 1);
    let stored = &list.items[0];
    assert_eq!(stored.reason.as_deref(), Some("Provisioned"));
    assert_eq!(stored.regarding.as_ref().unwrap().name.as_deref(), Some("e"));
    assert_eq!(stored.series.as_ref().map(|s| s.count), Some(2));
    let methods: Vec<_> = server
        .requests()
        .into_iter()
        .filter(|r| r.path.starts_with("/apis/events.k8s.io/v1/namespaces/default/events") && r.method != "GET")
        .map(|r| (r.method, r.status))
        .collect();
    assert_eq!(methods, [("POST".to_string(), 201), ("PATCH".to_string(), 200)]);
}

#[tokio::test]
async fn controller_reconciles_creates_and_updates() {
    #[derive(Debug, thiserror::Error)]
    #[error("reconcile failed: {0}")]
    struct ReconcileError(#[from] kube::Error);

    async fn reconcile(obj: Arc<Widget>, api: Arc<Api<Widget>>) -> Result<Action, ReconcileError> {
        let status = json!({"status": {"phase": "Ready", "observedGeneration": obj.meta().generation}});
        api.patch_status(&obj.name_any(), &PatchParams::default(), &Patch::Merge(&status))
            .await?;
        Ok(Action::await_change())
    }

    let (server, _client, widgets) = setup();
    widgets
        .create(&PostParams::default(), &widget("pre-existing", 1))
        .await
        .unwrap();
    let controller = Controller::new(widgets.clone(), watcher::Config::default())
        .run(
            reconcile,
            |_, _, _| Action::requeue(Duration::from_millis(100)),
            Arc::new(widgets.clone()),
        )
        .for_each(|_| async {});
    let controller = tokio::spawn(controller);

    let observed = |name: &str| {
        server
            .get("test.example.com/v1", "Widget", Some("default"), name)
            .and_then(|w| w.pointer("/status/observedGeneration").and_then(Value::as_i64))
    };
    let wait_for = |name: &'static str, generation: i64| {
        let observed = &observed;
        async move {
            while observed(name) != Some(generation) {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };

    let outcome = tokio::time::timeout(Duration::from_secs(20), async {
        wait_for("pre-existing", 1).await;
        // Created after the controller started: seen through the watch.
        widgets
            .create(&PostParams::default(), &widget("late", 1))
            .await
            .unwrap();
        wait_for("late", 1).await;
        // A spec change bumps generation and triggers another reconcile.
        widgets
            .patch(
                "late",
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"size": 2}})),
            )
            .await
            .unwrap();
        wait_for("late", 2).await;
    })
    .await;
    controller.abort();
    assert!(
        outcome.is_ok(),
        "controller did not converge; requests: {:#?}",
        server.requests()
    );
    assert!(server.requests().iter().any(|r| r.is_watch() && r.status == 200));
}

#[tokio::test]
async fn watch_streams_changes_and_ends_after_timeout() {
    let (_server, client, widgets) = setup();
    let first = widgets.create(&PostParams::default(), &widget("one", 1)).await.unwrap();

    // From "0": current state as ADDED.
    let initial: Vec<_> = widgets
        .watch(&WatchParams::default().timeout(1).disable_bookmarks(), "0")
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    assert!(matches!(&initial[..], [WatchEvent::Added(w)] if w.name_any() == "one"));

    // From a resourceVersion: only later changes, in order, then a closing bookmark.
    let stream = widgets
        .watch(&WatchParams::default().timeout(1), &rv(&first))
        .await
        .unwrap();
    widgets.create(&PostParams::default(), &widget("two", 2)).await.unwrap();
    widgets
        .patch(
            "one",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"size": 5}})),
        )
        .await
        .unwrap();
    widgets.delete("two", &DeleteParams::default()).await.unwrap();
    let events: Vec<_> = tokio::time::timeout(Duration::from_secs(5), stream.try_collect::<Vec<_>>())
        .await
        .expect("watch ends after timeoutSeconds")
        .unwrap();
    let summary: Vec<String> = events
        .iter()
        .map(|e| match e {
            WatchEvent::Added(w) => format!("ADDED {}", w.name_any()),
            WatchEvent::Modified(w) => format!("MODIFIED {} size={}", w.name_any(), w.spec.size),
            WatchEvent::Deleted(w) => format!("DELETED {}", w.name_any()),
            WatchEvent::Bookmark(_) => "BOOKMARK".into(),
            WatchEvent::Error(e) => format!("ERROR {}", e.code),
        })
        .collect();
    assert_eq!(summary, ["ADDED two", "MODIFIED one size=5", "DELETED two", "BOOKMARK"]);

    // Label-selector watch: losing the label reads as DELETED.
    let labelled: Api<ConfigMap> = Api::namespaced(client, "default");
    let mut cm = ConfigMap::default();
    cm.metadata.name = Some("cm".into());
    cm.metadata.labels = Some([("app".to_string(), "x".to_string())].into());
    let cm = labelled.create(&PostParams::default(), &cm).await.unwrap();
    let stream = labelled
        .watch(
            &WatchParams::default().labels("app=x").timeout(1).disable_bookmarks(),
            &rv(&cm),
        )
        .await
        .unwrap();
    labelled
        .patch(
            "cm",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"app": null}}})),
        )
        .await
        .unwrap();
    let events: Vec<_> = stream.try_collect().await.unwrap();
    assert!(matches!(&events[..], [WatchEvent::Deleted(c)] if c.name_any() == "cm"));
}

#[tokio::test]
async fn streaming_list_watcher_gets_initial_events_end() {
    let (_server, _client, widgets) = setup();
    widgets.create(&PostParams::default(), &widget("a", 1)).await.unwrap();
    let config = watcher::Config::default().streaming_lists().timeout(1);
    let events: Vec<_> = watcher(widgets, config).take(3).try_collect().await.unwrap();
    assert!(matches!(events[0], watcher::Event::Init));
    assert!(matches!(&events[1], watcher::Event::InitApply(w) if w.name_any() == "a"));
    assert!(matches!(events[2], watcher::Event::InitDone));
}

#[tokio::test]
async fn injected_failures_fire_once() {
    let (server, _client, widgets) = setup();
    widgets.create(&PostParams::default(), &widget("i", 1)).await.unwrap();
    server.fail_next("patch", "/widgets/i/status", 500);
    let status = json!({"status": {"phase": "Ready"}});
    let err = widgets
        .patch_status("i", &PatchParams::default(), &Patch::Merge(&status))
        .await
        .unwrap_err();
    assert_eq!(api_error(err), (500, "InternalError".into()));
    assert!(
        widgets.get("i").await.unwrap().status.is_none(),
        "failed write changed nothing"
    );
    let ok = widgets
        .patch_status("i", &PatchParams::default(), &Patch::Merge(&status))
        .await
        .unwrap();
    assert_eq!(ok.status.unwrap().phase.as_deref(), Some("Ready"));
    let statuses: Vec<u16> = server
        .requests()
        .iter()
        .filter(|r| r.method == "PATCH")
        .map(|r| r.status)
        .collect();
    assert_eq!(statuses, [500, 200]);
    server.clear_requests();
    assert!(server.requests().is_empty());
}

#[tokio::test]
async fn insert_get_list_and_metadata_requests() {
    let (server, client, widgets) = setup();
    let stored = server
        .insert(json!({
            "apiVersion": "test.example.com/v1", "kind": "Widget",
            "metadata": {"name": "seeded", "resourceVersion": "999"},
            "spec": {"size": 3},
            "status": {"phase": "Ready"},
        }))
        .unwrap();
    assert_eq!(stored["metadata"]["namespace"], "default");
    assert_eq!(stored["metadata"]["generation"], 1);
    assert_eq!(stored["status"]["phase"], "Ready", "insert keeps status for seeding");
    assert_ne!(stored["metadata"]["resourceVersion"], "999");
    assert!(server.insert(stored.clone()).is_err(), "already exists");
    assert!(matches!(
        server.insert(json!({"apiVersion": "nope/v1", "kind": "Nope", "metadata": {"name": "x"}})),
        Err(memory_apiserver::Error::UnknownType { .. })
    ));

    let meta = widgets.get_metadata("seeded").await.unwrap();
    assert_eq!(meta.metadata.name.as_deref(), Some("seeded"));
    let metas = widgets.list_metadata(&ListParams::default()).await.unwrap();
    assert_eq!(metas.items.len(), 1);

    // Namespaces are cluster-scoped.
    let ns = server
        .insert(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team-a"}}))
        .unwrap();
    assert!(ns["metadata"].get("namespace").is_none());
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
    assert_eq!(namespaces.get("team-a").await.unwrap().name_any(), "team-a");

    // Legacy discovery sees registered types.
    let discovery = kube::discovery::Discovery::new(client).run().await.unwrap();
    assert!(discovery.groups().any(|g| g.name() == "test.example.com"));

    // Unknown resources are 404.
    let unknown = server.requests().len();
    let api: Api<k8s_openapi::api::apps::v1::Deployment> = Api::default_namespaced(widgets.into_client());
    assert_eq!(api_error(api.get("x").await.unwrap_err()).0, 404);
    assert_eq!(server.requests().len(), unknown + 1);
}

#[tokio::test]
async fn dry_run_preconditions_delete_collection_and_garbage_collection() {
    let (server, client, widgets) = setup();
    let dry = widgets
        .create(
            &PostParams {
                dry_run: true,
                ..PostParams::default()
            },
            &widget("d", 1),
        )
        .await
        .unwrap();
    assert_eq!(dry.name_any(), "d");
    assert!(
        server
            .get("test.example.com/v1", "Widget", Some("default"), "d")
            .is_none(),
        "dry run stores nothing"
    );

    let owner = widgets
        .create(&PostParams::default(), &widget("owner", 1))
        .await
        .unwrap();
    let stale = DeleteParams {
        preconditions: Some(kube::api::Preconditions {
            resource_version: Some("0".into()),
            uid: None,
        }),
        ..DeleteParams::default()
    };
    let err = widgets.delete("owner", &stale).await.unwrap_err();
    assert_eq!(api_error(err), (409, "Conflict".into()));

    // A ConfigMap owned by the widget is garbage-collected when the widget goes.
    let cms: Api<ConfigMap> = Api::namespaced(client, "default");
    let mut child = ConfigMap::default();
    child.metadata.name = Some("child".into());
    child.metadata.owner_references = Some(vec![owner.controller_owner_ref(&()).unwrap()]);
    cms.create(&PostParams::default(), &child).await.unwrap();
    let mut unrelated = ConfigMap::default();
    unrelated.metadata.name = Some("unrelated".into());
    cms.create(&PostParams::default(), &unrelated).await.unwrap();
    widgets.delete("owner", &DeleteParams::default()).await.unwrap();
    assert_eq!(api_error(cms.get("child").await.unwrap_err()).0, 404);
    assert!(cms.get("unrelated").await.is_ok());

    // Delete collection honours the label selector.
    for (name, tier) in [("c1", "a"), ("c2", "a"), ("c3", "b")] {
        let mut w = widget(name, 1);
        w.labels_mut().insert("tier".into(), tier.into());
        widgets.create(&PostParams::default(), &w).await.unwrap();
    }
    let deleted = widgets
        .delete_collection(&DeleteParams::default(), &ListParams::default().labels("tier=a"))
        .await
        .unwrap();
    let names: Vec<String> = deleted.left().unwrap().items.iter().map(|w| w.name_any()).collect();
    assert_eq!(names, ["c1", "c2"]);
    let left: Vec<String> = widgets
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .iter()
        .map(|w| w.name_any())
        .collect();
    assert_eq!(left, ["c3"]);
}

#[tokio::test]
async fn watch_from_compacted_resource_version_is_gone() {
    let (server, client, _) = setup();
    for i in 0..10_050 {
        server
            .insert(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": format!("young-{i}")}}))
            .unwrap();
    }
    // More changes than the count keeps, but all younger than the time window: still served.
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let replayed = cms
        .watch(&WatchParams::default().timeout(1), "1")
        .await
        .unwrap()
        .try_collect::<Vec<_>>()
        .await
        .unwrap();
    assert_eq!(
        replayed.iter().filter(|e| matches!(e, WatchEvent::Added(_))).count(),
        10_049,
        "every change after resourceVersion 1"
    );
    // More changes than the history keeps (and no time window), so resourceVersion 1 has been
    // "compacted".
    server.set_history_window(std::time::Duration::ZERO);
    for i in 0..10_050 {
        server
            .insert(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": format!("cm-{i}")}}))
            .unwrap();
    }
    let cms: Api<ConfigMap> = Api::namespaced(client, "default");
    let events: Vec<_> = cms
        .watch(&WatchParams::default().timeout(1), "1")
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    assert!(
        matches!(&events[..], [WatchEvent::Error(e)] if e.code == 410),
        "{events:?}"
    );
    // A watcher recovers by relisting.
    let listed = cms.list(&ListParams::default()).await.unwrap();
    assert_eq!(listed.items.len(), 20_100);
}

/// The page after `previous` (its continue token), `limit` items at most.
async fn next_page<K>(api: &Api<K>, limit: u32, previous: &kube::core::ObjectList<K>) -> kube::core::ObjectList<K>
where
    K: Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let token = previous.metadata.continue_.as_deref().expect("a continue token");
    api.list(&ListParams::default().limit(limit).continue_token(token))
        .await
        .unwrap()
}

/// Pages continue from the last object served, across namespaces for an all-namespaces list,
/// even when that object was deleted in between (each page starts in the ordered store where the
/// last one ended, instead of scanning the kind from its first object).
#[tokio::test]
async fn pages_continue_after_the_last_object_across_namespaces() {
    let (_server, client, _) = setup();
    for (ns, name) in [("a", "w1"), ("a", "w2"), ("b", "w0"), ("b", "w3"), ("c", "w9")] {
        Api::<Widget>::namespaced(client.clone(), ns)
            .create(&PostParams::default(), &widget(name, 1))
            .await
            .unwrap();
    }
    let all: Api<Widget> = Api::all(client.clone());
    let label = |l: &kube::core::ObjectList<Widget>| {
        l.items
            .iter()
            .map(|w| format!("{}/{}", w.namespace().unwrap(), w.name_any()))
            .collect::<Vec<_>>()
    };
    let first = all.list(&ListParams::default().limit(2)).await.unwrap();
    assert_eq!(label(&first), ["a/w1", "a/w2"]);
    // The page's last object goes away: the next page still starts after it.
    Api::<Widget>::namespaced(client.clone(), "a")
        .delete("w2", &Default::default())
        .await
        .unwrap();
    let token = first.metadata.continue_.clone().unwrap();
    let second = all
        .list(&ListParams::default().limit(2).continue_token(&token))
        .await
        .unwrap();
    assert_eq!(label(&second), ["b/w0", "b/w3"]);
    let third = next_page(&all, 2, &second).await;
    assert_eq!(label(&third), ["c/w9"]);
    // A namespaced list pages within its namespace only.
    let b: Api<Widget> = Api::namespaced(client.clone(), "b");
    let page = b.list(&ListParams::default().limit(1)).await.unwrap();
    assert_eq!(label(&page), ["b/w0"]);
    let rest = next_page(&b, 1, &page).await;
    assert_eq!(label(&rest), ["b/w3"]);
    assert_eq!(rest.metadata.continue_.as_deref().unwrap_or(""), "");
}

#[tokio::test]
async fn lists_are_paginated_with_limit_and_continue() {
    let (server, client, widgets) = setup();
    for i in 0..5 {
        widgets
            .create(&PostParams::default(), &widget(&format!("w{i}"), i))
            .await
            .unwrap();
    }
    let first = widgets.list(&ListParams::default().limit(2)).await.unwrap();
    let names = |l: &kube::core::ObjectList<Widget>| l.items.iter().map(|w| w.name_any()).collect::<Vec<_>>();
    assert_eq!(names(&first), ["w0", "w1"]);
    assert_eq!(first.metadata.remaining_item_count, Some(3));
    let token = first
        .metadata
        .continue_
        .clone()
        .expect("a continue token while items remain");
    // A change between pages: later pages show it, and every page reports the first page's
    // resourceVersion, so a watch from there replays it.
    widgets
        .patch(
            "w3",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"size": 30}})),
        )
        .await
        .unwrap();
    let second = widgets
        .list(&ListParams::default().limit(2).continue_token(&token))
        .await
        .unwrap();
    assert_eq!(names(&second), ["w2", "w3"]);
    assert_eq!(second.items[1].spec.size, 30);
    assert_eq!(second.metadata.resource_version, first.metadata.resource_version);
    let third = next_page(&widgets, 2, &second).await;
    assert_eq!(names(&third), ["w4"]);
    assert_eq!(third.metadata.continue_.as_deref().unwrap_or(""), "");
    let replayed: Vec<_> = widgets
        .watch(
            &WatchParams::default().timeout(1),
            first.metadata.resource_version.as_deref().unwrap(),
        )
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    assert!(
        matches!(&replayed[..], [WatchEvent::Modified(w), WatchEvent::Bookmark(_)] if w.name_any() == "w3"),
        "{replayed:?}"
    );
    // A bad token is a 400; no limit is one page.
    let err = widgets
        .list(&ListParams::default().limit(2).continue_token("not-a-token"))
        .await
        .unwrap_err();
    assert_eq!(api_error(err).0, 400);
    assert_eq!(widgets.list(&ListParams::default()).await.unwrap().items.len(), 5);
    // The kube watcher pages through the initial list and sees every object once.
    let stats_before = server.stats();
    let seen: Vec<Widget> = watcher(widgets.clone(), watcher::Config::default().page_size(2))
        .take_while(|e| futures::future::ready(!matches!(e, Ok(watcher::Event::InitDone))))
        .filter_map(|e| async move {
            match e {
                Ok(watcher::Event::InitApply(w)) => Some(w),
                _ => None,
            }
        })
        .collect()
        .await;
    assert_eq!(seen.len(), 5);
    let stats = server.stats();
    assert_eq!(stats.lists - stats_before.lists, 3, "three pages of two");
    assert_eq!(stats.listed_items - stats_before.listed_items, 5);
    let _ = client;
}

#[tokio::test]
async fn continue_token_older_than_the_history_is_gone() {
    let (server, client, _) = setup();
    for i in 0..3 {
        server
            .insert(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": format!("cm-{i}")}}))
            .unwrap();
    }
    let cms: Api<ConfigMap> = Api::namespaced(client, "default");
    let first = cms.list(&ListParams::default().limit(1)).await.unwrap();
    // Within the history's time window the token stays good however many changes followed.
    for i in 0..10_050 {
        server
            .insert(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": format!("young-{i}")}}))
            .unwrap();
    }
    let token = first.metadata.continue_.as_deref().unwrap();
    let second = cms
        .list(&ListParams::default().limit(1).continue_token(token))
        .await
        .unwrap();
    assert_eq!(second.items[0].metadata.name.as_deref(), Some("cm-1"));
    // Without the window, 10,000 changes later it has been "compacted".
    server.set_history_window(std::time::Duration::ZERO);
    for i in 0..10_050 {
        server
            .insert(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": format!("later-{i}")}}))
            .unwrap();
    }
    let err = cms
        .list(
            &ListParams::default()
                .limit(1)
                .continue_token(first.metadata.continue_.as_deref().unwrap()),
        )
        .await
        .unwrap_err();
    assert_eq!(api_error(err), (410, "Expired".to_string()));
}

#[tokio::test]
async fn a_watcher_that_falls_behind_is_closed_and_resumes_from_history() {
    let (server, client, _) = setup();
    let cms: Api<ConfigMap> = Api::namespaced(client, "default");
    let start = server.resource_version().to_string();
    let mut stream = cms
        .watch(&WatchParams::default().timeout(30), &start)
        .await
        .unwrap()
        .boxed();
    // More changes than the live channel buffers, while the client reads nothing.
    for i in 0..5_000 {
        server
            .insert(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": format!("cm-{i:04}")}}))
            .unwrap();
    }
    let mut last_rv = start;
    let mut seen = 0;
    while let Some(event) = stream.try_next().await.unwrap() {
        match event {
            WatchEvent::Added(cm) => {
                last_rv = rv(&cm);
                seen += 1;
            }
            other => panic!("the stream ends without an error event, got {other:?}"),
        }
    }
    assert!(seen < 5_000, "the stream was closed early ({seen} events)");
    assert_eq!(server.stats().watches_closed_lagging, 1);
    // Watching again from the last version seen delivers the rest from history.
    let rest: Vec<_> = cms
        .watch(&WatchParams::default().timeout(1), &last_rv)
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    let added = rest.iter().filter(|e| matches!(e, WatchEvent::Added(_))).count();
    assert_eq!(seen + added, 5_000);
}

#[tokio::test]
async fn requests_are_counted_by_verb() {
    let (server, _client, widgets) = setup();
    widgets.create(&PostParams::default(), &widget("w", 1)).await.unwrap();
    widgets.get("w").await.unwrap();
    widgets.list(&ListParams::default()).await.unwrap();
    widgets
        .patch_status(
            "w",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"phase": "Ready"}})),
        )
        .await
        .unwrap();
    widgets.delete("w", &DeleteParams::default()).await.unwrap();
    let stats = server.stats();
    let count = |verb| stats.verbs.get(verb).copied().unwrap_or(0);
    assert_eq!(
        ["POST", "GET", "LIST", "PATCH", "DELETE", "WATCH"].map(count),
        [1, 1, 1, 1, 1, 0]
    );
    assert_eq!(stats.writes(), 3);
}
