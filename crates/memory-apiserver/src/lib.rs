//! An in-memory stand-in for the Kubernetes API server, served as a [`tower_service::Service`].
//!
//! `connectivity-operator apply -f manifests/` (offline mode) and the reconcile tests build a real
//! `kube::Client` on top of [`MemoryApiServer`] with `kube::Client::new(server, "default")`, so
//! the operator's own code paths (typed `Api` calls, `kube::runtime::finalizer`, the event
//! `Recorder`, the `Controller`'s watcher) run unchanged against it. That only helps if the fake
//! behaves like the real server where controllers notice, so this crate implements the
//! semantics they depend on: optimistic concurrency, no-op writes that keep `resourceVersion`,
//! `generation` bumps only for spec changes, the status subresource, finalizer-driven deletion,
//! JSON/merge/apply patches, and resumable watches. The crate README lists what is approximated.
//!
//! ```
//! use memory_apiserver::MemoryApiServer;
//! use serde_json::json;
//!
//! let server = MemoryApiServer::new();
//! let stored = server
//!     .insert(json!({
//!         "apiVersion": "v1",
//!         "kind": "ConfigMap",
//!         "metadata": {"name": "settings", "namespace": "default"},
//!         "data": {"region": "eu"},
//!     }))
//!     .expect("configmaps are pre-registered");
//! assert_eq!(stored["metadata"]["generation"], 1);
//! assert!(server.get("v1", "ConfigMap", Some("default"), "settings").is_some());
//! ```

mod apply;
mod body;
mod selector;
mod server;
mod status;
mod store;

use std::{
    collections::BTreeMap,
    convert::Infallible,
    future::Future,
    pin::Pin,
    sync::{Arc, Mutex, MutexGuard},
    task::{Context, Poll},
};

use http_body_util::BodyExt;
use serde_json::Value;

pub use body::ResponseBody;
use store::{CreateOptions, State};

/// A resource type the fake serves, i.e. what a CRD or a built-in API registers.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ResourceType {
    /// API group, `""` for the core group.
    pub group: String,
    /// API version within the group, e.g. `v1`.
    pub version: String,
    /// Kind, e.g. `ConfigMap`.
    pub kind: String,
    /// Lower-case plural used in URL paths, e.g. `configmaps`.
    pub plural: String,
    /// Whether objects live in namespaces (`false` for e.g. `Namespace`).
    pub namespaced: bool,
    /// Whether `/status` is a separate subresource (then main writes ignore `.status`).
    pub has_status_subresource: bool,
}

impl ResourceType {
    /// Convenience constructor taking anything string-like.
    pub fn new(
        group: impl Into<String>,
        version: impl Into<String>,
        kind: impl Into<String>,
        plural: impl Into<String>,
        namespaced: bool,
        has_status_subresource: bool,
    ) -> Self {
        Self {
            group: group.into(),
            version: version.into(),
            kind: kind.into(),
            plural: plural.into(),
            namespaced,
            has_status_subresource,
        }
    }

    /// `v1` for the core group, `group/version` otherwise.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// `plural` or `plural.group`, the way the real server names resources in messages.
    fn group_resource(&self) -> String {
        if self.group.is_empty() {
            self.plural.clone()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    /// Built-in types accept a `PUT` without `metadata.resourceVersion` (an unconditional
    /// update); custom resources reject it. Custom resource groups always contain a dot and are
    /// not under `k8s.io`, which is how this is told apart without another field.
    fn allows_unconditional_update(&self) -> bool {
        !self.group.contains('.') || self.group.ends_with(".k8s.io")
    }
}

/// One request the fake served, for test assertions.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedRequest {
    /// HTTP method, upper case (`GET`, `PATCH`, ...).
    pub method: String,
    /// URL path without the query string.
    pub path: String,
    /// Query parameters (compare single parameters, not whole query strings).
    pub query: BTreeMap<String, String>,
    /// The `Content-Type` header, if any.
    pub content_type: Option<String>,
    /// The request body parsed as JSON (YAML for apply patches); `None` when empty or unparsable.
    pub body: Option<Value>,
    /// HTTP status of the response.
    pub status: u16,
}

impl RecordedRequest {
    /// The value of one query parameter.
    pub fn query_param(&self, name: &str) -> Option<&str> {
        self.query.get(name).map(String::as_str)
    }

    /// Whether this request was a watch (`?watch=true` or `?watch=1`).
    pub fn is_watch(&self) -> bool {
        matches!(self.query_param("watch"), Some("true" | "1"))
    }
}

/// Why [`MemoryApiServer::insert`] refused a manifest.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Error {
    /// The manifest's `apiVersion`/`kind` is not registered.
    #[error("no resource type registered for apiVersion {api_version:?} kind {kind:?}")]
    UnknownType {
        /// `apiVersion` of the manifest.
        api_version: String,
        /// `kind` of the manifest.
        kind: String,
    },
    /// The API server semantics reject the object (e.g. it already exists, or has no name).
    #[error("failed to create object: {message} ({code} {reason})")]
    Rejected {
        /// HTTP status code the real server would answer.
        code: u16,
        /// `Status.reason`, e.g. `AlreadyExists`.
        reason: String,
        /// Human-readable message.
        message: String,
    },
}

/// A stateful in-memory Kubernetes API server; cheap to clone (all clones share state).
/// One stored change, from [`MemoryApiServer::changes`].
#[derive(Clone, Debug)]
pub struct StoredChange(Arc<store::Change>);

impl StoredChange {
    /// API group of the object (`""` for core).
    pub fn group(&self) -> &str {
        &self.0.group
    }

    pub fn kind(&self) -> &str {
        &self.0.kind
    }

    /// `true` when the object was removed.
    pub fn is_deleted(&self) -> bool {
        self.0.change == store::ChangeType::Deleted
    }

    /// The object as stored after the change (before, for a deletion).
    pub fn object(&self) -> &Value {
        &self.0.object
    }
}

/// Changes a subscriber of [`MemoryApiServer::changes`] receives.
pub struct Changes(tokio::sync::broadcast::Receiver<Arc<store::Change>>);

impl Changes {
    /// The next change; `Err(n)` when the subscriber fell `n` changes behind and missed them
    /// (read the store again to catch up).
    pub async fn next(&mut self) -> Option<Result<StoredChange, u64>> {
        match self.0.recv().await {
            Ok(change) => Some(Ok(StoredChange(change))),
            Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => Some(Err(n)),
            Err(tokio::sync::broadcast::error::RecvError::Closed) => None,
        }
    }
}

/// Counters of what the server served, from [`MemoryApiServer::stats`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// List responses (pages) served.
    pub lists: u64,
    /// Objects in those pages.
    pub listed_items: u64,
    /// Watches started.
    pub watches: u64,
    /// Watches closed because the client read too slowly (it then watches again from the
    /// last version it saw).
    pub watches_closed_lagging: u64,
    /// Requests served, by verb (`GET`, `LIST`, `WATCH`, `POST`, `PATCH`, `PUT`, `DELETE`).
    pub verbs: BTreeMap<&'static str, u64>,
}

impl Stats {
    /// Write requests (`POST`, `PATCH`, `PUT`, `DELETE`).
    pub fn writes(&self) -> u64 {
        ["POST", "PATCH", "PUT", "DELETE"]
            .iter()
            .map(|v| self.verbs.get(v).copied().unwrap_or(0))
            .sum()
    }
}

#[derive(Clone)]
pub struct MemoryApiServer {
    state: Arc<Mutex<State>>,
}

impl Default for MemoryApiServer {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for MemoryApiServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.lock();
        f.debug_struct("MemoryApiServer")
            .field("objects", &state.objects.len())
            .field("resource_version", &state.rv)
            .finish()
    }
}

impl MemoryApiServer {
    /// An empty server with the built-in types the operator touches pre-registered: core/v1
    /// `Secret`, `ConfigMap`, `Namespace` and `Event`, `events.k8s.io/v1` `Event`, and
    /// `coordination.k8s.io/v1` `Lease`.
    pub fn new() -> Self {
        let server = Self {
            state: Arc::new(Mutex::new(State::new())),
        };
        for rt in [
            ResourceType::new("", "v1", "Secret", "secrets", true, false),
            ResourceType::new("", "v1", "ConfigMap", "configmaps", true, false),
            ResourceType::new("", "v1", "Namespace", "namespaces", false, true),
            ResourceType::new("", "v1", "Event", "events", true, false),
            ResourceType::new("events.k8s.io", "v1", "Event", "events", true, false),
            ResourceType::new("coordination.k8s.io", "v1", "Lease", "leases", true, false),
        ] {
            server.register(rt);
        }
        server
    }

    /// Registers a resource type so its paths are routed; re-registering the same group,
    /// version and plural replaces the earlier registration. Several versions of one group and
    /// kind share storage (without conversion: objects are served as stored, with `apiVersion`
    /// rewritten to the version asked for).
    pub fn register(&self, r: ResourceType) {
        let mut state = self.lock();
        state
            .types
            .retain(|t| !(t.group == r.group && t.version == r.version && t.plural == r.plural));
        state.types.push(r);
    }

    /// Loads a manifest as if it had been created: fills `uid`, `resourceVersion`,
    /// `generation: 1` and `creationTimestamp`, defaults the namespace of namespaced kinds to
    /// `default`, and emits an `ADDED` watch event. Unlike an API create, `.status` is kept, so
    /// tests can seed objects that were already reconciled. Returns the stored object.
    pub fn insert(&self, obj: Value) -> Result<Value, Error> {
        let api_version = obj["apiVersion"].as_str().unwrap_or_default().to_string();
        let kind = obj["kind"].as_str().unwrap_or_default().to_string();
        let mut state = self.lock();
        let rt = state
            .find_kind(&api_version, &kind)
            .ok_or(Error::UnknownType { api_version, kind })?;
        let namespace = rt.namespaced.then(|| {
            obj.pointer("/metadata/namespace")
                .and_then(Value::as_str)
                .filter(|ns| !ns.is_empty())
                .unwrap_or("default")
                .to_string()
        });
        let options = CreateOptions {
            keep_status: true,
            clear_resource_version: true,
            ..CreateOptions::default()
        };
        state
            .create(&rt, namespace.as_deref(), obj, options)
            .map(|stored| store::present(&rt, stored))
            .map_err(|e| Error::Rejected {
                code: e.code,
                reason: e.reason.to_string(),
                message: e.message,
            })
    }

    /// The stored object, if any (`namespace` is ignored for cluster-scoped kinds).
    pub fn get(&self, api_version: &str, kind: &str, namespace: Option<&str>, name: &str) -> Option<Value> {
        let state = self.lock();
        let rt = state.find_kind(api_version, kind)?;
        let key = store::ObjKey::new(&rt, namespace.unwrap_or_default(), name);
        state.objects.get(&key).map(|obj| store::present(&rt, obj.clone()))
    }

    /// All stored objects of a kind, across namespaces, ordered by namespace and name.
    pub fn list(&self, api_version: &str, kind: &str) -> Vec<Value> {
        let state = self.lock();
        let Some(rt) = state.find_kind(api_version, kind) else {
            return Vec::new();
        };
        state
            .of_kind(&rt.group, &rt.kind, None)
            .map(|(_, obj)| store::present(&rt, obj.clone()))
            .collect()
    }

    /// How many objects of a kind (across namespaces) satisfy `pred`, without copying them.
    pub fn count(&self, api_version: &str, kind: &str, pred: impl Fn(&Value) -> bool) -> usize {
        let state = self.lock();
        let Some(rt) = state.find_kind(api_version, kind) else {
            return 0;
        };
        state
            .of_kind(&rt.group, &rt.kind, None)
            .filter(|(_, obj)| pred(obj))
            .count()
    }

    /// Every change stored from now on, without polling the store (observing a long run).
    pub fn changes(&self) -> Changes {
        Changes(self.lock().events.subscribe())
    }

    /// What the server has served so far: list pages and the items in them, watches started, and
    /// watches closed because the client fell behind.
    pub fn stats(&self) -> Stats {
        let state = self.lock();
        Stats {
            lists: state.stats.lists,
            listed_items: state.stats.listed_items,
            watches: state.stats.watches,
            watches_closed_lagging: state
                .stats
                .watches_closed_lagging
                .load(std::sync::atomic::Ordering::Relaxed),
            verbs: state.stats.verbs.clone(),
        }
    }

    /// Every request served so far (including watches), oldest first.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.lock().requests.clone()
    }

    /// Turns request recording on (the default) or off. Recorded requests keep their bodies, so
    /// long runs (benchmarks, large offline applies) turn it off to keep memory flat.
    pub fn set_recording(&self, on: bool) {
        let mut state = self.lock();
        state.recording = on;
        if !on {
            state.requests = Vec::new();
        }
    }

    /// How long changes stay in the watch history beyond its 10,000-change floor (75 s by
    /// default, like the real watch cache); zero keeps the count only, so a test can make a
    /// version "compacted" without waiting.
    pub fn set_history_window(&self, window: std::time::Duration) {
        self.lock().history_window = window;
    }

    /// Forgets the recorded requests.
    pub fn clear_requests(&self) {
        self.lock().requests.clear();
    }

    /// Makes the next request whose method equals `method` (case-insensitive) and whose path
    /// contains `path_contains` fail with `status` and a matching `Status` reason, without
    /// touching state. Injections queue up and each fires once.
    pub fn fail_next(&self, method: &str, path_contains: &str, status: u16) {
        self.lock().failures.push(store::InjectedFailure {
            method: method.to_ascii_uppercase(),
            path_contains: path_contains.to_string(),
            status,
        });
    }

    /// The current global `resourceVersion` counter.
    pub fn resource_version(&self) -> u64 {
        self.lock().rv
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock (only possible from a bug in this crate) must not turn
        // every later request into a second panic; the state is still structurally valid.
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl<B> tower_service::Service<http::Request<B>> for MemoryApiServer
where
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Response = http::Response<ResponseBody>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let server = self.clone();
        Box::pin(async move {
            let (parts, body) = req.into_parts();
            let bytes = match body.collect().await {
                Ok(collected) => collected.to_bytes(),
                Err(e) => {
                    let e: Box<dyn std::error::Error + Send + Sync> = e.into();
                    let err = status::ApiError::bad_request(format!("failed to read request body: {e}"));
                    return Ok(server::error_response(&err));
                }
            };
            Ok(server.handle(parts, bytes))
        })
    }
}
