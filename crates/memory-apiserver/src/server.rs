//! The HTTP face of the fake: routing, verbs, patch formats, watches and request recording.
//!
//! Each request is handled synchronously under the state lock (so every request sees and
//! leaves a consistent store); only watch bodies outlive the lock, streaming changes from the
//! broadcast channel the store publishes to.

use std::{
    collections::{BTreeMap, VecDeque},
    sync::Arc,
};

use base64::Engine as _;
use bytes::Bytes;
use http::{Method, StatusCode, header};
use serde_json::{Value, json};
use tokio::{sync::broadcast, time::Instant};

use crate::{
    MemoryApiServer, RecordedRequest, ResourceType,
    apply::ApplyRequest,
    body::ResponseBody,
    selector::Selector,
    status::{self, ApiError},
    store::{
        self, Change, ChangeType, CreateOptions, DeleteOptions, DeleteOutcome, ObjKey, Scope, State, UpdateOptions,
    },
};

/// What the real server uses when a watch gives no `timeoutSeconds` (its minimum request timeout).
const DEFAULT_WATCH_TIMEOUT_SECS: u64 = 1800;

/// The parts of a request the handlers need.
struct Req {
    method: Method,
    path: String,
    query: BTreeMap<String, String>,
    content_type: String,
    accept: String,
    body: Bytes,
}

impl Req {
    fn param(&self, name: &str) -> Option<&str> {
        self.query.get(name).map(String::as_str)
    }

    fn flag(&self, name: &str) -> bool {
        matches!(self.param(name), Some("true" | "1"))
    }

    fn dry_run(&self) -> bool {
        self.param("dryRun") == Some("All")
    }

    /// `Accept: application/json;as=PartialObjectMetadata...`, sent by `Api::*_metadata`.
    fn metadata_only(&self) -> bool {
        self.accept.contains("as=PartialObjectMetadata")
    }

    fn is_apply(&self) -> bool {
        self.content_type.starts_with("application/apply-patch")
    }

    /// The body as JSON; apply patches may also be YAML.
    fn json_body(&self) -> Result<Value, ApiError> {
        if self.body.is_empty() {
            return Err(ApiError::bad_request("the request body is empty"));
        }
        match serde_json::from_slice(&self.body) {
            Ok(v) => Ok(v),
            Err(json_err) if self.is_apply() => serde_norway::from_slice(&self.body)
                .map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e} (as JSON: {json_err})"))),
            Err(e) => Err(ApiError::bad_request(format!(
                "couldn't decode the request body as JSON: {e}"
            ))),
        }
    }
}

/// Where a path points.
enum Route {
    Version,
    CoreVersions,
    Groups,
    Group(String),
    Resources {
        group: String,
        version: String,
    },
    Collection {
        rt: ResourceType,
        namespace: Option<String>,
    },
    Object {
        rt: ResourceType,
        namespace: Option<String>,
        name: String,
        scope: Scope,
    },
}

impl MemoryApiServer {
    pub(crate) fn handle(&self, parts: http::request::Parts, body: Bytes) -> http::Response<ResponseBody> {
        let header_text = |name: header::HeaderName| {
            parts
                .headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string()
        };
        let req = Req {
            method: parts.method.clone(),
            path: parts.uri.path().to_string(),
            query: parts
                .uri
                .query()
                .map(|q| url::form_urlencoded::parse(q.as_bytes()).into_owned().collect())
                .unwrap_or_default(),
            content_type: header_text(header::CONTENT_TYPE),
            accept: header_text(header::ACCEPT),
            body,
        };

        let mut state = self.lock();
        *state.stats.verbs.entry(verb(&req)).or_default() += 1;
        let injected = state
            .failures
            .iter()
            .position(|f| f.method == req.method.as_str() && req.path.contains(&f.path_contains));
        let response = match injected {
            Some(i) => {
                let failure = state.failures.remove(i);
                tracing::debug!(method = %req.method, path = %req.path, status = failure.status, "injected failure");
                error_response(&ApiError::injected(failure.status))
            }
            None => match dispatch(&mut state, &req) {
                Ok(response) => response,
                Err(err) => error_response(&err),
            },
        };

        if !state.recording {
            return response;
        }
        let recorded_body = if req.body.is_empty() {
            None
        } else {
            req.json_body().ok()
        };
        state.requests.push(RecordedRequest {
            method: req.method.to_string(),
            path: req.path.clone(),
            query: req.query.clone(),
            content_type: (!req.content_type.is_empty()).then(|| req.content_type.clone()),
            body: recorded_body,
            status: response.status().as_u16(),
        });
        response
    }
}

/// The Kubernetes verb of a request: a GET is `WATCH` with `watch=true`, `LIST` on a collection.
fn verb(req: &Req) -> &'static str {
    match req.method.as_str() {
        "GET" if matches!(req.query.get("watch").map(String::as_str), Some("true" | "1")) => "WATCH",
        "GET" if is_collection(&req.path) => "LIST",
        "GET" => "GET",
        "POST" => "POST",
        "PATCH" => "PATCH",
        "PUT" => "PUT",
        "DELETE" => "DELETE",
        _ => "OTHER",
    }
}

/// Whether a path names a collection: `/api/v1/namespaces/ns/secrets`, not `.../secrets/name`.
fn is_collection(path: &str) -> bool {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    // /api/v1/<plural> | /api/v1/namespaces/<ns>/<plural> | /apis/<g>/<v>/<plural> | /apis/<g>/<v>/namespaces/<ns>/<plural>
    let rest = match parts.first() {
        Some(&"api") => &parts[parts.len().min(2)..],
        Some(&"apis") => &parts[parts.len().min(3)..],
        _ => return false,
    };
    matches!(rest, [_] | ["namespaces", _, _])
}

pub(crate) fn error_response(err: &ApiError) -> http::Response<ResponseBody> {
    let code = StatusCode::from_u16(err.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    json_response(code, &err.to_status())
}

fn json_response(code: StatusCode, body: &Value) -> http::Response<ResponseBody> {
    let mut response = http::Response::new(ResponseBody::full(body.to_string()));
    *response.status_mut() = code;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    response
}

fn route(state: &State, path: &str) -> Result<Route, ApiError> {
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    match segments.as_slice() {
        ["version"] => Ok(Route::Version),
        ["api"] => Ok(Route::CoreVersions),
        ["api", version] => Ok(Route::Resources {
            group: String::new(),
            version: (*version).to_string(),
        }),
        ["api", version, rest @ ..] => resource_route(state, "", version, rest),
        ["apis"] => Ok(Route::Groups),
        ["apis", group] => Ok(Route::Group((*group).to_string())),
        ["apis", group, version] => Ok(Route::Resources {
            group: (*group).to_string(),
            version: (*version).to_string(),
        }),
        ["apis", group, version, rest @ ..] => resource_route(state, group, version, rest),
        _ => Err(ApiError::unknown_path()),
    }
}

fn resource_route(state: &State, group: &str, version: &str, rest: &[&str]) -> Result<Route, ApiError> {
    // `/namespaces/{ns}/{plural}/...` unless it is the Namespace kind's own `/namespaces/{name}`.
    let namespaced = match rest {
        ["namespaces", ns, plural, tail @ ..] => state
            .find_plural(group, version, plural)
            .filter(|rt| rt.namespaced)
            .map(|rt| (rt, Some((*ns).to_string()), tail)),
        _ => None,
    };
    let (rt, namespace, tail) = match namespaced {
        Some(found) => found,
        None => {
            let [plural, tail @ ..] = rest else {
                return Err(ApiError::unknown_path());
            };
            let rt = state
                .find_plural(group, version, plural)
                .ok_or_else(ApiError::unknown_path)?;
            // A named namespaced object needs its namespace in the path.
            if rt.namespaced && !tail.is_empty() {
                return Err(ApiError::unknown_path());
            }
            (rt, None, tail)
        }
    };
    match tail {
        [] => Ok(Route::Collection { rt, namespace }),
        [name] => Ok(Route::Object {
            rt,
            namespace,
            name: (*name).to_string(),
            scope: Scope::Main,
        }),
        [name, "status"] if rt.has_status_subresource => Ok(Route::Object {
            rt,
            namespace,
            name: (*name).to_string(),
            scope: Scope::Status,
        }),
        _ => Err(ApiError::unknown_path()),
    }
}

fn dispatch(state: &mut State, req: &Req) -> Result<http::Response<ResponseBody>, ApiError> {
    let route = route(state, &req.path)?;
    if req.method != Method::GET
        && matches!(
            route,
            Route::Version | Route::CoreVersions | Route::Groups | Route::Group(_) | Route::Resources { .. }
        )
    {
        return Err(ApiError::method_not_allowed(req.method.as_str()));
    }
    match route {
        Route::Version => Ok(json_response(StatusCode::OK, &version_info())),
        Route::CoreVersions => Ok(json_response(StatusCode::OK, &core_versions())),
        Route::Groups => Ok(json_response(StatusCode::OK, &group_list(state))),
        Route::Group(group) => {
            let body = group_list(state)["groups"]
                .as_array()
                .and_then(|gs| gs.iter().find(|g| g["name"] == group.as_str()).cloned())
                .ok_or_else(ApiError::unknown_path)?;
            let mut body = body;
            body["kind"] = json!("APIGroup");
            body["apiVersion"] = json!("v1");
            Ok(json_response(StatusCode::OK, &body))
        }
        Route::Resources { group, version } => {
            Ok(json_response(StatusCode::OK, &resource_list(state, &group, &version)?))
        }
        Route::Collection { rt, namespace } => match req.method {
            Method::GET if req.flag("watch") => start_watch(state, req, &rt, namespace),
            Method::GET => list(state, req, &rt, namespace.as_deref()),
            Method::POST if !rt.namespaced || namespace.is_some() => create(state, req, &rt, namespace.as_deref()),
            Method::DELETE => delete_collection(state, req, &rt, namespace.as_deref()),
            _ => Err(ApiError::method_not_allowed(req.method.as_str())),
        },
        Route::Object {
            rt,
            namespace,
            name,
            scope,
        } => {
            let key = ObjKey::new(&rt, namespace.as_deref().unwrap_or_default(), &name);
            match req.method {
                Method::GET => {
                    let obj = state
                        .objects
                        .get(&key)
                        .cloned()
                        .ok_or_else(|| ApiError::not_found(&rt, &name))?;
                    Ok(object_response(StatusCode::OK, req, &rt, obj))
                }
                Method::PUT => {
                    let options = UpdateOptions {
                        dry_run: req.dry_run(),
                        require_resource_version: !rt.allows_unconditional_update(),
                        managed_fields: None,
                    };
                    let stored = state.update(&rt, &key, req.json_body()?, scope, options)?;
                    Ok(object_response(StatusCode::OK, req, &rt, stored))
                }
                Method::PATCH => patch(state, req, &rt, namespace.as_deref(), &key, scope),
                Method::DELETE if scope == Scope::Main => delete(state, req, &rt, &key),
                _ => Err(ApiError::method_not_allowed(req.method.as_str())),
            }
        }
    }
}

fn object_response(code: StatusCode, req: &Req, rt: &ResourceType, obj: Value) -> http::Response<ResponseBody> {
    let obj = store::present(rt, obj);
    let obj = if req.metadata_only() {
        partial_metadata(&obj)
    } else {
        obj
    };
    json_response(code, &obj)
}

fn partial_metadata(obj: &Value) -> Value {
    json!({
        "apiVersion": "meta.k8s.io/v1",
        "kind": "PartialObjectMetadata",
        "metadata": obj.get("metadata").cloned().unwrap_or_else(|| json!({})),
    })
}

fn create(
    state: &mut State,
    req: &Req,
    rt: &ResourceType,
    namespace: Option<&str>,
) -> Result<http::Response<ResponseBody>, ApiError> {
    let options = CreateOptions {
        dry_run: req.dry_run(),
        ..CreateOptions::default()
    };
    let stored = state.create(rt, namespace, req.json_body()?, options)?;
    Ok(object_response(StatusCode::CREATED, req, rt, stored))
}

fn patch(
    state: &mut State,
    req: &Req,
    rt: &ResourceType,
    namespace: Option<&str>,
    key: &ObjKey,
    scope: Scope,
) -> Result<http::Response<ResponseBody>, ApiError> {
    let patch = req.json_body()?;
    let media_type = req.content_type.split(';').next().unwrap_or_default().trim();
    if media_type == "application/apply-patch+yaml" {
        let Some(manager) = req.param("fieldManager").filter(|m| !m.is_empty()) else {
            return Err(ApiError::bad_request(
                "PATCH requests with apply content type require fieldManager",
            ));
        };
        let apply = ApplyRequest {
            rt,
            namespace,
            name: &key.name,
            scope,
            manager,
            force: req.flag("force"),
            dry_run: req.dry_run(),
        };
        let (stored, created) = state.apply(&apply, patch)?;
        let code = if created { StatusCode::CREATED } else { StatusCode::OK };
        return Ok(object_response(code, req, rt, stored));
    }

    let current = state
        .objects
        .get(key)
        .cloned()
        .ok_or_else(|| ApiError::not_found(rt, &key.name))?;
    // Patch the object as served, so patches written against the requested apiVersion apply.
    let mut patched = store::present(rt, current);
    match media_type {
        // Strategic merge needs the Go structs' patch strategies; a plain merge patch is the
        // same for maps and scalars and replaces lists wholesale.
        "application/merge-patch+json" | "application/strategic-merge-patch+json" => {
            if !patch.is_object() {
                return Err(ApiError::bad_request("a merge patch must be a JSON object"));
            }
            json_patch::merge(&mut patched, &patch);
        }
        "application/json-patch+json" => {
            let ops: json_patch::Patch =
                serde_json::from_value(patch).map_err(|e| ApiError::bad_request(format!("invalid JSON patch: {e}")))?;
            apply_json_patch(&mut patched, ops)?;
        }
        other => return Err(ApiError::unsupported_media_type(other)),
    }
    let options = UpdateOptions {
        dry_run: req.dry_run(),
        require_resource_version: false,
        managed_fields: None,
    };
    let stored = state.update(rt, key, patched, scope, options)?;
    Ok(object_response(StatusCode::OK, req, rt, stored))
}

/// Applies a JSON patch with the real server's (evanphx/json-patch) reading of `test`: a missing
/// path equals `null`. `kube::runtime::finalizer` relies on this when it tests that
/// `/metadata/finalizers` is null before adding the first finalizer.
fn apply_json_patch(doc: &mut Value, ops: json_patch::Patch) -> Result<(), ApiError> {
    for op in ops.0 {
        if let json_patch::PatchOperation::Test(test) = &op
            && test.value.is_null()
            && doc.pointer(test.path.as_str()).is_none_or(Value::is_null)
        {
            continue;
        }
        // `doc` is a copy of the stored object, so failing part-way leaves nothing behind.
        json_patch::patch(doc, std::slice::from_ref(&op)).map_err(|e| ApiError::patch_rejected(&e.to_string()))?;
    }
    Ok(())
}

fn delete_options(req: &Req) -> Result<DeleteOptions, ApiError> {
    let body = if req.body.is_empty() {
        json!({})
    } else {
        req.json_body()?
    };
    let text = |pointer: &str| body.pointer(pointer).and_then(Value::as_str).map(String::from);
    let dry_run_body = body
        .get("dryRun")
        .and_then(Value::as_array)
        .is_some_and(|d| d.iter().any(|v| v == "All"));
    Ok(DeleteOptions {
        dry_run: req.dry_run() || dry_run_body,
        precondition_uid: text("/preconditions/uid"),
        precondition_resource_version: text("/preconditions/resourceVersion"),
    })
}

fn delete(
    state: &mut State,
    req: &Req,
    rt: &ResourceType,
    key: &ObjKey,
) -> Result<http::Response<ResponseBody>, ApiError> {
    let options = delete_options(req)?;
    match state.delete(rt, key, &options)? {
        DeleteOutcome::Pending(obj) => Ok(object_response(StatusCode::OK, req, rt, obj)),
        DeleteOutcome::Gone(obj) => {
            let uid = obj.pointer("/metadata/uid").and_then(Value::as_str).unwrap_or_default();
            Ok(json_response(
                StatusCode::OK,
                &status::delete_success(rt, &key.name, uid),
            ))
        }
    }
}

fn selector(req: &Req) -> Result<Selector, ApiError> {
    Selector::parse(req.param("labelSelector"), req.param("fieldSelector"))
}

fn matching<'s>(
    state: &'s State,
    rt: &'s ResourceType,
    namespace: Option<&'s str>,
    selector: &'s Selector,
    after: Option<(&'s str, &'s str)>,
) -> impl Iterator<Item = (&'s ObjKey, &'s Value)> + 's {
    state
        .of_kind_after(&rt.group, &rt.kind, namespace, after)
        .filter(move |(_, obj)| selector.matches(obj))
}

fn list_body(req: &Req, rt: &ResourceType, rv: u64, items: Vec<Value>) -> Value {
    let metadata_only = req.metadata_only();
    let items: Vec<Value> = items
        .into_iter()
        .map(|obj| {
            let obj = store::present(rt, obj);
            if metadata_only { partial_metadata(&obj) } else { obj }
        })
        .collect();
    let (api_version, kind) = if metadata_only {
        ("meta.k8s.io/v1".to_string(), "PartialObjectMetadataList".to_string())
    } else {
        (rt.api_version(), format!("{}List", rt.kind))
    };
    json!({
        "apiVersion": api_version,
        "kind": kind,
        "metadata": {"resourceVersion": rv.to_string()},
        "items": items,
    })
}

/// Where the next page of a paginated list starts: the list's `resourceVersion` and the last
/// object of the previous page. Opaque to clients (base64 JSON, like the real server's token).
struct ContinueToken {
    rv: u64,
    namespace: String,
    name: String,
}

impl ContinueToken {
    fn encode(&self) -> String {
        let text = json!({"rv": self.rv, "namespace": self.namespace, "name": self.name}).to_string();
        base64::engine::general_purpose::STANDARD.encode(text)
    }

    fn decode(text: &str) -> Result<Self, ApiError> {
        let value: Option<Value> = base64::engine::general_purpose::STANDARD
            .decode(text)
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok());
        let field = |v: &Value, name: &str| v.get(name).and_then(Value::as_str).map(str::to_string);
        value
            .and_then(|v| {
                Some(ContinueToken {
                    rv: v.get("rv")?.as_u64()?,
                    namespace: field(&v, "namespace")?,
                    name: field(&v, "name")?,
                })
            })
            .ok_or_else(|| ApiError::bad_request("continue key is not valid"))
    }
}

/// A list, paginated like the real server when `limit` is given: at most `limit` items, and a
/// `continue` token while more remain. Every page reports the first page's `resourceVersion`,
/// so a watch started from it replays whatever changed while the pages were read (the real
/// server serves every page from one snapshot; here later pages show the current state, which a
/// reflector reconciles through the replayed changes). A token older than the kept history is
/// `410 Expired`, as when etcd has compacted the snapshot away.
fn list(
    state: &mut State,
    req: &Req,
    rt: &ResourceType,
    namespace: Option<&str>,
) -> Result<http::Response<ResponseBody>, ApiError> {
    let selector = selector(req)?;
    let limit = match req.param("limit") {
        None | Some("") => 0,
        Some(l) => l
            .parse::<usize>()
            .map_err(|_| ApiError::bad_request(format!("invalid limit {l:?}")))?,
    };
    let token = match req.param("continue").filter(|c| !c.is_empty()) {
        Some(text) => Some(ContinueToken::decode(text)?),
        None => None,
    };
    let rv = match &token {
        Some(t) if t.rv < state.history_floor => {
            return Err(ApiError::gone(
                "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.",
            ));
        }
        Some(t) => t.rv,
        None => state.rv,
    };
    let (items, remaining, last) = {
        let after = token.as_ref().map(|t| (t.namespace.as_str(), t.name.as_str()));
        let mut selected = matching(state, rt, namespace, &selector, after);
        let mut items = Vec::new();
        let mut last = None;
        for (key, obj) in selected.by_ref() {
            items.push(obj.clone());
            last = Some((key.namespace.clone(), key.name.clone()));
            if limit > 0 && items.len() == limit {
                break;
            }
        }
        let remaining = if limit > 0 { selected.count() } else { 0 };
        (items, remaining, last)
    };
    let mut body = list_body(req, rt, rv, items);
    if remaining > 0
        && let Some((namespace, name)) = last
    {
        let next = ContinueToken { rv, namespace, name };
        body["metadata"]["continue"] = json!(next.encode());
        body["metadata"]["remainingItemCount"] = json!(remaining);
    }
    state.stats.lists += 1;
    state.stats.listed_items += body["items"].as_array().map_or(0, Vec::len) as u64;
    Ok(json_response(StatusCode::OK, &body))
}

fn delete_collection(
    state: &mut State,
    req: &Req,
    rt: &ResourceType,
    namespace: Option<&str>,
) -> Result<http::Response<ResponseBody>, ApiError> {
    let selector = selector(req)?;
    let options = delete_options(req)?;
    let keys: Vec<ObjKey> = matching(state, rt, namespace, &selector, None)
        .map(|(k, _)| k.clone())
        .collect();
    let mut items = Vec::new();
    for key in keys {
        match state.delete(rt, &key, &options)? {
            DeleteOutcome::Gone(obj) | DeleteOutcome::Pending(obj) => items.push(obj),
        }
    }
    Ok(json_response(StatusCode::OK, &list_body(req, rt, state.rv, items)))
}

/// What a watch sends: objects of one type, optionally one namespace, matching a selector.
struct WatchFilter {
    rt: ResourceType,
    namespace: Option<String>,
    selector: Selector,
    metadata_only: bool,
}

impl WatchFilter {
    fn covers(&self, group: &str, kind: &str, namespace: &str) -> bool {
        group == self.rt.group && kind == self.rt.kind && self.namespace.as_deref().is_none_or(|ns| ns == namespace)
    }

    /// The watch event line for a change, if this watch sees it. Selector transitions turn into
    /// `ADDED`/`DELETED` as in the real watch cache.
    fn render(&self, change: &Change) -> Option<Bytes> {
        if !self.covers(&change.group, &change.kind, &change.namespace) {
            return None;
        }
        let now = self.selector.matches(&change.object);
        let before = change.previous.as_ref().is_some_and(|p| self.selector.matches(p));
        let event = match change.change {
            ChangeType::Added if now => "ADDED",
            ChangeType::Modified if now && before => "MODIFIED",
            ChangeType::Modified if now => "ADDED",
            ChangeType::Modified if before => "DELETED",
            ChangeType::Deleted if now || before => "DELETED",
            _ => return None,
        };
        Some(self.line(event, change.object.clone()))
    }

    fn line(&self, event: &str, obj: Value) -> Bytes {
        let obj = store::present(&self.rt, obj);
        let obj = if self.metadata_only {
            partial_metadata(&obj)
        } else {
            obj
        };
        event_line(event, obj)
    }

    fn bookmark(&self, rv: u64, initial_events_end: bool) -> Bytes {
        let mut metadata = json!({"resourceVersion": rv.to_string()});
        if initial_events_end {
            metadata["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        let (api_version, kind) = if self.metadata_only {
            ("meta.k8s.io/v1".to_string(), "PartialObjectMetadata".to_string())
        } else {
            (self.rt.api_version(), self.rt.kind.clone())
        };
        event_line(
            "BOOKMARK",
            json!({"apiVersion": api_version, "kind": kind, "metadata": metadata}),
        )
    }
}

fn event_line(event: &str, obj: Value) -> Bytes {
    let mut line = json!({"type": event, "object": obj}).to_string();
    line.push('\n');
    Bytes::from(line)
}

struct WatchStream {
    backlog: VecDeque<Bytes>,
    /// Counts watches closed for falling behind (`MemoryApiServer::stats`).
    lagged: Arc<std::sync::atomic::AtomicU64>,
    live: Option<broadcast::Receiver<Arc<Change>>>,
    deadline: Instant,
    filter: WatchFilter,
    last_rv: u64,
    bookmarks: bool,
}

fn start_watch(
    state: &mut State,
    req: &Req,
    rt: &ResourceType,
    namespace: Option<String>,
) -> Result<http::Response<ResponseBody>, ApiError> {
    let filter = WatchFilter {
        rt: rt.clone(),
        namespace,
        selector: selector(req)?,
        metadata_only: req.metadata_only(),
    };
    let timeout = match req.param("timeoutSeconds") {
        Some(t) => t
            .parse::<u64>()
            .map_err(|_| ApiError::bad_request(format!("invalid timeoutSeconds {t:?}")))?,
        None => 0,
    };
    // Like the real server, 0 (or no value) means "the server's default".
    let timeout = if timeout == 0 {
        DEFAULT_WATCH_TIMEOUT_SECS
    } else {
        timeout
    };
    let bookmarks = req.flag("allowWatchBookmarks");
    let send_initial = req.flag("sendInitialEvents");
    if send_initial && !bookmarks {
        return Err(ApiError::invalid(
            rt,
            "",
            "sendInitialEvents",
            "Forbidden: sendInitialEvents requires setting allowWatchBookmarks=true",
        ));
    }
    let from = match req.param("resourceVersion").filter(|rv| !rv.is_empty()) {
        None => None,
        Some(rv) => Some(
            rv.parse::<u64>()
                .map_err(|_| ApiError::bad_request(format!("invalid resourceVersion {rv:?}")))?,
        ),
    };

    let mut backlog = VecDeque::new();
    match from {
        // No or zero resourceVersion (or a streaming list): start with the current state as
        // ADDED events; a streaming list ends them with the `initial-events-end` bookmark.
        None | Some(0) => backlog.extend(current_objects(state, &filter)),
        Some(_) if send_initial => backlog.extend(current_objects(state, &filter)),
        Some(rv) if rv < state.history_floor => {
            let err = ApiError::gone(format!("too old resource version: {rv} ({})", state.history_floor + 1));
            backlog.push_back(event_line("ERROR", err.to_status()));
            let body = ResponseBody::stream(futures::stream::iter(backlog));
            return Ok(watch_response(body));
        }
        Some(rv) => {
            for change in state.history.iter().filter(|c| c.rv > rv) {
                if let Some(line) = filter.render(change) {
                    backlog.push_back(line);
                }
            }
        }
    }

    if send_initial {
        backlog.push_back(filter.bookmark(state.rv, true));
    }

    state.stats.watches += 1;
    let watch = WatchStream {
        backlog,
        lagged: state.stats.watches_closed_lagging.clone(),
        // Subscribing under the same lock that produced the backlog means no change is missed
        // or sent twice between the replay and the live stream.
        live: Some(state.events.subscribe()),
        deadline: Instant::now() + std::time::Duration::from_secs(timeout),
        filter,
        last_rv: state.rv,
        bookmarks,
    };
    let stream = futures::stream::unfold(watch, |mut watch| async move {
        loop {
            if let Some(line) = watch.backlog.pop_front() {
                return Some((line, watch));
            }
            let live = watch.live.as_mut()?;
            tokio::select! {
                received = live.recv() => match received {
                    Ok(change) => {
                        watch.last_rv = change.rv;
                        if let Some(line) = watch.filter.render(&change) {
                            return Some((line, watch));
                        }
                    }
                    // Like the real server's watch cache, a watcher too slow to keep up is
                    // closed; the client watches again from the last version it saw, which
                    // the history serves (or answers with 410 when it is older than that).
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        watch.live = None;
                        watch.lagged.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                    Err(broadcast::error::RecvError::Closed) => watch.live = None,
                },
                () = tokio::time::sleep_until(watch.deadline) => {
                    watch.live = None;
                    // A closing bookmark lets the client resume from the newest version
                    // instead of the last event it happened to see.
                    if watch.bookmarks {
                        let bookmark = watch.filter.bookmark(watch.last_rv, false);
                        watch.backlog.push_back(bookmark);
                    }
                }
            }
        }
    });
    Ok(watch_response(ResponseBody::stream(stream)))
}

fn current_objects(state: &State, filter: &WatchFilter) -> Vec<Bytes> {
    state
        .of_kind(&filter.rt.group, &filter.rt.kind, filter.namespace.as_deref())
        .filter(|(_, obj)| filter.selector.matches(obj))
        .map(|(_, obj)| filter.line("ADDED", obj.clone()))
        .collect()
}

fn watch_response(body: ResponseBody) -> http::Response<ResponseBody> {
    let mut response = http::Response::new(body);
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    response
}

fn version_info() -> Value {
    json!({
        "major": "1",
        "minor": "33",
        "gitVersion": "v1.33.0-memory-apiserver",
        "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean",
        "buildDate": "2025-01-01T00:00:00Z",
        "goVersion": "go1.24",
        "compiler": "gc",
        "platform": "linux/amd64",
    })
}

fn core_versions() -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "memory-apiserver"}],
    })
}

fn group_list(state: &State) -> Value {
    let mut groups: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for rt in state.types.iter().filter(|t| !t.group.is_empty()) {
        let versions = groups.entry(rt.group.as_str()).or_default();
        if !versions.contains(&rt.version.as_str()) {
            versions.push(rt.version.as_str());
        }
    }
    let groups: Vec<Value> = groups
        .into_iter()
        .map(|(group, versions)| {
            let versions: Vec<Value> = versions
                .iter()
                .map(|v| json!({"groupVersion": format!("{group}/{v}"), "version": v}))
                .collect();
            json!({"name": group, "preferredVersion": versions[0].clone(), "versions": versions})
        })
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

fn resource_list(state: &State, group: &str, version: &str) -> Result<Value, ApiError> {
    let verbs = json!([
        "create",
        "delete",
        "deletecollection",
        "get",
        "list",
        "patch",
        "update",
        "watch"
    ]);
    let mut resources = Vec::new();
    for rt in state.types.iter().filter(|t| t.group == group && t.version == version) {
        resources.push(json!({
            "name": rt.plural,
            "singularName": rt.kind.to_lowercase(),
            "namespaced": rt.namespaced,
            "kind": rt.kind,
            "verbs": verbs,
        }));
        if rt.has_status_subresource {
            resources.push(json!({
                "name": format!("{}/status", rt.plural),
                "singularName": "",
                "namespaced": rt.namespaced,
                "kind": rt.kind,
                "verbs": ["get", "patch", "update"],
            }));
        }
    }
    if resources.is_empty() {
        return Err(ApiError::unknown_path());
    }
    let group_version = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    Ok(json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": group_version,
        "resources": resources,
    }))
}
