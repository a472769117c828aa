//! The object store and the write rules of the real API server.
//!
//! Every mutation (create, update, patch, apply, delete) funnels into [`State::create`],
//! [`State::update`] or [`State::delete`], which enforce the metadata rules controllers depend
//! on and append a [`Change`] to the watch history. The HTTP layer (`server.rs`) only parses
//! requests and renders results.

use std::{
    collections::{BTreeMap, VecDeque, hash_map::RandomState},
    hash::{BuildHasher, Hasher},
    sync::Arc,
};

use base64::Engine as _;
use serde_json::{Map, Value, json};
use tokio::sync::broadcast;

use crate::{RecordedRequest, ResourceType, status::ApiError};

/// How many changes are kept for watches resuming from an older `resourceVersion` (and for
/// continue tokens); older resumes get `410 Expired` and relist, as with etcd compaction.
const HISTORY_LIMIT: usize = 10_000;
/// Changes younger than this are kept beyond [`HISTORY_LIMIT`]: the real watch cache keeps at
/// least 75 s of events (`eventFreshDuration`) and etcd compacts every 5 minutes, so under a
/// burst of writes a paginated list of 100,000 objects and the watch that follows it still
/// resume, where a count alone expired them in a few seconds and the client relisted forever.
pub(crate) const HISTORY_WINDOW: std::time::Duration = std::time::Duration::from_secs(75);
/// Buffer of the live watch channel; a watcher lagging further behind gets `410 Expired`.
const BROADCAST_CAPACITY: usize = 4_096;

/// Identity of a stored object. Storage is per group and kind, not per version.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct ObjKey {
    pub group: String,
    pub kind: String,
    /// Empty for cluster-scoped objects.
    pub namespace: String,
    pub name: String,
}

impl ObjKey {
    pub fn new(rt: &ResourceType, namespace: &str, name: &str) -> Self {
        Self {
            group: rt.group.clone(),
            kind: rt.kind.clone(),
            namespace: if rt.namespaced {
                namespace.to_string()
            } else {
                String::new()
            },
            name: name.to_string(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ChangeType {
    Added,
    Modified,
    Deleted,
}

/// One entry of the watch history.
#[derive(Debug)]
pub(crate) struct Change {
    pub rv: u64,
    /// When it happened, for the history's time window.
    pub at: std::time::Instant,
    pub group: String,
    pub kind: String,
    pub namespace: String,
    pub change: ChangeType,
    pub object: Value,
    /// The object before a modification, so label-selector watches can turn a change that
    /// leaves the selection into `DELETED` like the real watch cache does.
    pub previous: Option<Value>,
}

/// Which part of an object a write may change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scope {
    Main,
    Status,
}

#[derive(Debug, Clone)]
pub(crate) struct InjectedFailure {
    pub method: String,
    pub path_contains: String,
    pub status: u16,
}

#[derive(Debug, Default, Clone)]
pub(crate) struct CreateOptions {
    pub dry_run: bool,
    /// Keep `.status` of a type with a status subresource (used by `insert`).
    pub keep_status: bool,
    /// Drop a `resourceVersion` instead of rejecting it (manifests exported from clusters).
    pub clear_resource_version: bool,
    /// `metadata.managedFields` to store (server-side apply).
    pub managed_fields: Option<Value>,
}

#[derive(Debug, Default, Clone)]
pub(crate) struct UpdateOptions {
    pub dry_run: bool,
    /// `PUT` of a custom resource must carry `metadata.resourceVersion`.
    pub require_resource_version: bool,
    pub managed_fields: Option<Value>,
}

#[derive(Debug, Default, Clone)]
pub(crate) struct DeleteOptions {
    pub dry_run: bool,
    pub precondition_uid: Option<String>,
    pub precondition_resource_version: Option<String>,
}

pub(crate) enum DeleteOutcome {
    /// Removed from the store.
    Gone(Value),
    /// Finalizers pending: `deletionTimestamp` is set and the object stays.
    Pending(Value),
}

/// Counters of what the server served (`MemoryApiServer::stats`).
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub lists: u64,
    pub listed_items: u64,
    pub watches: u64,
    pub watches_closed_lagging: Arc<std::sync::atomic::AtomicU64>,
    /// Requests by verb (`GET`, `LIST`, `WATCH`, `POST`, `PATCH`, `PUT`, `DELETE`).
    pub verbs: BTreeMap<&'static str, u64>,
}

pub(crate) struct State {
    pub types: Vec<ResourceType>,
    pub stats: Counters,
    pub objects: BTreeMap<ObjKey, Value>,
    /// The global `resourceVersion` counter (last version handed out).
    pub rv: u64,
    pub history: VecDeque<Arc<Change>>,
    /// Changes at or below this version were dropped from `history`.
    pub history_floor: u64,
    /// Changes younger than this are kept beyond the count limit ([`HISTORY_WINDOW`]).
    pub history_window: std::time::Duration,
    pub events: broadcast::Sender<Arc<Change>>,
    pub requests: Vec<RecordedRequest>,
    /// Whether requests are recorded (on by default; long runs such as benchmarks turn it off).
    pub recording: bool,
    pub failures: Vec<InjectedFailure>,
    uid_counter: u64,
}

impl State {
    pub fn new() -> Self {
        let (events, _) = broadcast::channel(BROADCAST_CAPACITY);
        Self {
            types: Vec::new(),
            stats: Counters::default(),
            objects: BTreeMap::new(),
            rv: 0,
            history: VecDeque::new(),
            history_floor: 0,
            history_window: HISTORY_WINDOW,
            events,
            requests: Vec::new(),
            recording: true,
            failures: Vec::new(),
            uid_counter: 0,
        }
    }

    /// Objects of one group and kind (in one namespace, if given), in key order, found by a
    /// range of the ordered store rather than a scan of every kind.
    pub fn of_kind<'s>(
        &'s self,
        group: &str,
        kind: &str,
        namespace: Option<&str>,
    ) -> impl Iterator<Item = (&'s ObjKey, &'s Value)> + 's {
        self.of_kind_after(group, kind, namespace, None)
    }

    /// [`State::of_kind`] from just after `(namespace, name)`: where a list's next page starts,
    /// found in the ordered store (a scan from the first object made every page cost the whole
    /// kind, and a 100,000-object list outlived the kept history).
    pub fn of_kind_after<'s>(
        &'s self,
        group: &str,
        kind: &str,
        namespace: Option<&str>,
        after: Option<(&str, &str)>,
    ) -> impl Iterator<Item = (&'s ObjKey, &'s Value)> + 's {
        use std::ops::Bound;
        let key = |ns: &str, name: &str| ObjKey {
            group: group.to_string(),
            kind: kind.to_string(),
            namespace: ns.to_string(),
            name: name.to_string(),
        };
        let start = match after {
            // A token from another namespace than the one asked for cannot be past it.
            Some((ns, name)) if namespace.is_none_or(|want| want <= ns) => Bound::Excluded(key(ns, name)),
            _ => Bound::Included(key(namespace.unwrap_or_default(), "")),
        };
        let namespace = namespace.map(str::to_string);
        let (group, kind) = (group.to_string(), kind.to_string());
        self.objects.range((start, Bound::Unbounded)).take_while(move |(k, _)| {
            k.group == group && k.kind == kind && namespace.as_ref().is_none_or(|ns| k.namespace == *ns)
        })
    }

    /// The registered type for an `apiVersion` and `kind`; another registered version of the
    /// same group and kind is accepted, since storage is shared across versions.
    pub fn find_kind(&self, api_version: &str, kind: &str) -> Option<ResourceType> {
        let (group, version) = split_api_version(api_version);
        self.types
            .iter()
            .find(|t| t.group == group && t.version == version && t.kind == kind)
            .or_else(|| self.types.iter().find(|t| t.group == group && t.kind == kind))
            .cloned()
    }

    pub fn find_plural(&self, group: &str, version: &str, plural: &str) -> Option<ResourceType> {
        self.types
            .iter()
            .find(|t| t.group == group && t.version == version && t.plural == plural)
            .cloned()
    }

    fn next_rv(&mut self) -> u64 {
        self.rv += 1;
        self.rv
    }

    fn random_u64(&mut self) -> u64 {
        // RandomState is seeded randomly per instance; hashing a counter gives unique-enough
        // values for uids and generateName suffixes without pulling in a random crate.
        self.uid_counter += 1;
        let mut hasher = RandomState::new().build_hasher();
        hasher.write_u64(self.uid_counter);
        hasher.finish()
    }

    fn new_uid(&mut self) -> String {
        let a = self.random_u64();
        let b = self.random_u64();
        // Shaped like a version-4 UUID.
        format!(
            "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
            a >> 32,
            (a >> 16) & 0xffff,
            a & 0x0fff,
            0x8000 | ((b >> 48) & 0x3fff),
            b & 0xffff_ffff_ffff
        )
    }

    fn emit(&mut self, change: ChangeType, key: &ObjKey, object: Value, previous: Option<Value>) {
        let change = Arc::new(Change {
            rv: self.rv,
            at: std::time::Instant::now(),
            group: key.group.clone(),
            kind: key.kind.clone(),
            namespace: key.namespace.clone(),
            change,
            object,
            previous,
        });
        self.history.push_back(change.clone());
        while self.history.len() > HISTORY_LIMIT
            && self
                .history
                .front()
                .is_some_and(|oldest| oldest.at.elapsed() >= self.history_window)
        {
            if let Some(dropped) = self.history.pop_front() {
                self.history_floor = dropped.rv;
            }
        }
        // No receivers just means nobody is watching.
        let _ = self.events.send(change);
    }

    /// Creates an object; `namespace` comes from the request path (namespaced types only).
    pub fn create(
        &mut self,
        rt: &ResourceType,
        namespace: Option<&str>,
        mut obj: Value,
        options: CreateOptions,
    ) -> Result<Value, ApiError> {
        check_type_meta(rt, &obj)?;
        let name_hint = obj
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let Some(root) = obj.as_object_mut() else {
            return Err(ApiError::bad_request("the request body is not a JSON object"));
        };
        root.insert("apiVersion".into(), json!(rt.api_version()));
        root.insert("kind".into(), json!(rt.kind));
        let meta = metadata_mut(root);

        let namespace = if rt.namespaced {
            let Some(ns) = namespace.filter(|ns| !ns.is_empty()) else {
                return Err(ApiError::bad_request(
                    "a namespace is required to create a namespaced object",
                ));
            };
            if let Some(body_ns) = meta.get("namespace").and_then(Value::as_str)
                && !body_ns.is_empty()
                && body_ns != ns
            {
                return Err(ApiError::bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request",
                ));
            }
            meta.insert("namespace".into(), json!(ns));
            ns.to_string()
        } else {
            meta.remove("namespace");
            String::new()
        };

        if meta
            .get("resourceVersion")
            .and_then(Value::as_str)
            .is_some_and(|rv| !rv.is_empty())
        {
            if options.clear_resource_version {
                meta.remove("resourceVersion");
            } else {
                return Err(ApiError::internal(
                    "resourceVersion should not be set on objects to be created",
                ));
            }
        }

        let name = match meta.get("name").and_then(Value::as_str).filter(|n| !n.is_empty()) {
            Some(name) => name.to_string(),
            None => match meta
                .get("generateName")
                .and_then(Value::as_str)
                .filter(|g| !g.is_empty())
            {
                Some(prefix) => {
                    let prefix = prefix.to_string();
                    self.generate_name(rt, &namespace, &prefix)
                }
                None => {
                    return Err(ApiError::invalid(
                        rt,
                        &name_hint,
                        "metadata.name",
                        "Required value: name or generateName is required",
                    ));
                }
            },
        };
        if let Some(why) = invalid_name(&name) {
            return Err(ApiError::invalid(rt, &name, "metadata.name", &why));
        }
        let key = ObjKey::new(rt, &namespace, &name);
        if self.objects.contains_key(&key) {
            return Err(ApiError::already_exists(rt, &name));
        }

        let uid = self.new_uid();
        let Some(root) = obj.as_object_mut() else {
            return Err(ApiError::bad_request("the request body is not a JSON object"));
        };
        if rt.has_status_subresource && !options.keep_status {
            // The status subresource owns `.status`; a create cannot set it.
            root.remove("status");
        }
        normalize_secret(rt, root);
        let meta = metadata_mut(root);
        for server_owned in [
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "generation",
            "selfLink",
            "managedFields",
        ] {
            meta.remove(server_owned);
        }
        meta.insert("name".into(), json!(name));
        meta.insert("uid".into(), json!(uid));
        meta.insert("creationTimestamp".into(), json!(now()));
        meta.insert("generation".into(), json!(1));
        if let Some(managed) = options.managed_fields {
            meta.insert("managedFields".into(), managed);
        }
        if options.dry_run {
            return Ok(obj);
        }
        let rv = self.next_rv();
        metadata_mut_value(&mut obj).insert("resourceVersion".into(), json!(rv.to_string()));
        self.objects.insert(key.clone(), obj.clone());
        self.emit(ChangeType::Added, &key, obj.clone(), None);
        Ok(obj)
    }

    fn generate_name(&mut self, rt: &ResourceType, namespace: &str, prefix: &str) -> String {
        // Same alphabet as the real server's name generator (no vowels, no confusable digits).
        const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
        loop {
            let mut bits = self.random_u64();
            let mut name = prefix.to_string();
            for _ in 0..5 {
                name.push(char::from(ALPHABET[(bits % ALPHABET.len() as u64) as usize]));
                bits /= ALPHABET.len() as u64;
            }
            if !self.objects.contains_key(&ObjKey::new(rt, namespace, &name)) {
                return name;
            }
        }
    }

    /// Replaces an existing object with `new` under the rules of `scope`. Patches and applies
    /// compute `new` from the stored object first. Returns the stored object, which is the
    /// unchanged old one when the write changes nothing.
    pub fn update(
        &mut self,
        rt: &ResourceType,
        key: &ObjKey,
        new: Value,
        scope: Scope,
        options: UpdateOptions,
    ) -> Result<Value, ApiError> {
        let Some(old) = self.objects.get(key).cloned() else {
            return Err(ApiError::not_found(rt, &key.name));
        };
        check_type_meta(rt, &new)?;
        if !new.is_object() {
            return Err(ApiError::bad_request("the request body is not a JSON object"));
        }
        if let Some(name) = new.pointer("/metadata/name").and_then(Value::as_str)
            && name != key.name
        {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({name}) does not match the name on the URL ({})",
                key.name
            )));
        }
        if rt.namespaced
            && let Some(ns) = new.pointer("/metadata/namespace").and_then(Value::as_str)
            && !ns.is_empty()
            && ns != key.namespace
        {
            return Err(ApiError::bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            ));
        }
        let old_rv = old
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        match new
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str)
            .filter(|rv| !rv.is_empty())
        {
            Some(rv) if rv != old_rv => return Err(ApiError::stale(rt, &key.name)),
            Some(_) => {}
            None if options.require_resource_version => {
                return Err(ApiError::invalid(
                    rt,
                    &key.name,
                    "metadata.resourceVersion",
                    "Invalid value: 0x0: must be specified for an update",
                ));
            }
            None => {}
        }

        let mut merged = match scope {
            Scope::Status => {
                let mut merged = old.clone();
                set_or_remove(&mut merged, "status", new.get("status").cloned());
                merged
            }
            Scope::Main => {
                let mut merged = new;
                if rt.has_status_subresource {
                    set_or_remove(&mut merged, "status", old.get("status").cloned());
                }
                merged
            }
        };
        let Some(root) = merged.as_object_mut() else {
            return Err(ApiError::bad_request("the request body is not a JSON object"));
        };
        // Storage keeps the version the object was created with; responses rewrite it.
        root.insert("apiVersion".into(), old["apiVersion"].clone());
        root.insert("kind".into(), json!(rt.kind));
        normalize_secret(rt, root);
        let meta = metadata_mut(root);
        for server_owned in [
            "name",
            "namespace",
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "generation",
            "resourceVersion",
            "managedFields",
        ] {
            match old["metadata"].get(server_owned) {
                Some(v) => meta.insert(server_owned.into(), v.clone()),
                None => meta.remove(server_owned),
            };
        }
        meta.remove("selfLink");
        let applied = options.managed_fields.is_some();
        if let Some(managed) = options.managed_fields {
            meta.insert("managedFields".into(), managed);
        }
        if !applied && let Some(managed) = crate::apply::disown_changed(rt, &old, &merged) {
            metadata_mut_value(&mut merged).insert("managedFields".into(), managed);
        }

        if old.pointer("/metadata/deletionTimestamp").is_some() {
            let before = finalizers(&old);
            let added: Vec<String> = finalizers(&merged)
                .into_iter()
                .filter(|f| !before.contains(f))
                .collect();
            if !added.is_empty() {
                return Err(ApiError::invalid(
                    rt,
                    &key.name,
                    "metadata.finalizers",
                    &format!(
                        "Forbidden: no new finalizers can be added if the object is being deleted, found new finalizers {added:?}"
                    ),
                ));
            }
        }

        if merged == old {
            // The real server skips the storage write for no-op updates, so resourceVersion
            // stays and watchers see nothing; controllers rely on this not to loop.
            return Ok(old);
        }
        if spec_part(&merged) != spec_part(&old) {
            let generation = old.pointer("/metadata/generation").and_then(Value::as_i64).unwrap_or(0);
            metadata_mut_value(&mut merged).insert("generation".into(), json!(generation + 1));
        }
        if options.dry_run {
            return Ok(merged);
        }
        let rv = self.next_rv();
        metadata_mut_value(&mut merged).insert("resourceVersion".into(), json!(rv.to_string()));
        if merged.pointer("/metadata/deletionTimestamp").is_some() && finalizers(&merged).is_empty() {
            // The last finalizer is gone: deletion completes now.
            self.objects.remove(key);
            self.emit(ChangeType::Deleted, key, merged.clone(), Some(old));
            self.collect_garbage(&merged);
        } else {
            self.objects.insert(key.clone(), merged.clone());
            self.emit(ChangeType::Modified, key, merged.clone(), Some(old));
        }
        Ok(merged)
    }

    pub fn delete(
        &mut self,
        rt: &ResourceType,
        key: &ObjKey,
        options: &DeleteOptions,
    ) -> Result<DeleteOutcome, ApiError> {
        let Some(old) = self.objects.get(key).cloned() else {
            return Err(ApiError::not_found(rt, &key.name));
        };
        let uid = old.pointer("/metadata/uid").and_then(Value::as_str).unwrap_or_default();
        if let Some(want) = &options.precondition_uid
            && want != uid
        {
            return Err(ApiError::conflict(
                rt,
                &key.name,
                &format!("Precondition failed: UID in precondition: {want}, UID in object meta: {uid}"),
            ));
        }
        let rv = old
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if let Some(want) = &options.precondition_resource_version
            && want != rv
        {
            return Err(ApiError::conflict(
                rt,
                &key.name,
                &format!(
                    "Precondition failed: ResourceVersion in precondition: {want}, ResourceVersion in object meta: {rv}"
                ),
            ));
        }

        if !finalizers(&old).is_empty() {
            if old.pointer("/metadata/deletionTimestamp").is_some() {
                return Ok(DeleteOutcome::Pending(old));
            }
            let mut marked = old.clone();
            let generation = old.pointer("/metadata/generation").and_then(Value::as_i64).unwrap_or(0);
            let meta = metadata_mut_value(&mut marked);
            meta.insert("deletionTimestamp".into(), json!(now()));
            meta.insert("deletionGracePeriodSeconds".into(), json!(0));
            // The real server bumps generation when it marks an object for deletion, since
            // the object's desired state changed (it should go away).
            if generation > 0 {
                meta.insert("generation".into(), json!(generation + 1));
            }
            if options.dry_run {
                return Ok(DeleteOutcome::Pending(marked));
            }
            let rv = self.next_rv();
            metadata_mut_value(&mut marked).insert("resourceVersion".into(), json!(rv.to_string()));
            self.objects.insert(key.clone(), marked.clone());
            self.emit(ChangeType::Modified, key, marked.clone(), Some(old));
            return Ok(DeleteOutcome::Pending(marked));
        }

        if options.dry_run {
            return Ok(DeleteOutcome::Gone(old));
        }
        self.objects.remove(key);
        let rv = self.next_rv();
        let mut gone = old.clone();
        metadata_mut_value(&mut gone).insert("resourceVersion".into(), json!(rv.to_string()));
        self.emit(ChangeType::Deleted, key, gone.clone(), Some(old));
        self.collect_garbage(&gone);
        Ok(DeleteOutcome::Gone(gone))
    }

    /// Background garbage collection, which the real cluster runs in kube-controller-manager:
    /// once `owner` is gone, objects whose `ownerReferences` all point at missing objects are
    /// deleted (objects with finalizers are marked, as any delete would). Done synchronously so
    /// offline runs and tests see the final state without waiting.
    fn collect_garbage(&mut self, owner: &Value) {
        let Some(owner_uid) = owner.pointer("/metadata/uid").and_then(Value::as_str) else {
            return;
        };
        let live: std::collections::HashSet<&str> = self
            .objects
            .values()
            .filter_map(|o| o.pointer("/metadata/uid").and_then(Value::as_str))
            .collect();
        let orphaned: Vec<ObjKey> = self
            .objects
            .iter()
            .filter(|(_, obj)| {
                let owners = owner_uids(obj);
                owners.contains(&owner_uid) && owners.iter().all(|uid| !live.contains(uid))
            })
            .map(|(key, _)| key.clone())
            .collect();
        for key in orphaned {
            let rt = self
                .types
                .iter()
                .find(|t| t.group == key.group && t.kind == key.kind)
                .cloned();
            if let Some(rt) = rt
                && let Err(e) = self.delete(&rt, &key, &DeleteOptions::default())
            {
                tracing::debug!(name = %key.name, error = %e.message, "garbage collection skipped a dependent");
            }
        }
    }
}

/// `(group, version)` of an `apiVersion`; the core group is `""`.
pub(crate) fn split_api_version(api_version: &str) -> (&str, &str) {
    api_version.split_once('/').unwrap_or(("", api_version))
}

/// The object as served for `rt`: `apiVersion` is the version the request addressed.
pub(crate) fn present(rt: &ResourceType, mut obj: Value) -> Value {
    if let Some(root) = obj.as_object_mut() {
        root.insert("apiVersion".into(), json!(rt.api_version()));
        root.insert("kind".into(), json!(rt.kind));
    }
    obj
}

/// Rejects a body whose `kind` or API group names another type.
fn check_type_meta(rt: &ResourceType, obj: &Value) -> Result<(), ApiError> {
    if let Some(kind) = obj.get("kind").and_then(Value::as_str)
        && !kind.is_empty()
        && kind != rt.kind
    {
        return Err(ApiError::bad_request(format!(
            "the kind of the provided object ({kind}) does not match the kind of the resource ({})",
            rt.kind
        )));
    }
    if let Some(api_version) = obj.get("apiVersion").and_then(Value::as_str)
        && !api_version.is_empty()
        && split_api_version(api_version).0 != rt.group
    {
        return Err(ApiError::bad_request(format!(
            "the API version in the data ({api_version}) does not match the expected API version ({})",
            rt.api_version()
        )));
    }
    Ok(())
}

/// DNS-1123 subdomain check, which is what most kinds (and all custom resources) require.
fn invalid_name(name: &str) -> Option<String> {
    let valid_chars = name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.');
    let ends_ok =
        name.starts_with(|c: char| c.is_ascii_alphanumeric()) && name.ends_with(|c: char| c.is_ascii_alphanumeric());
    if name.len() > 253 || !valid_chars || !ends_ok {
        Some(format!(
            "Invalid value: \"{name}\": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character"
        ))
    } else {
        None
    }
}

/// `metadata` of an object map, created if missing or not a map.
pub(crate) fn metadata_mut(root: &mut Map<String, Value>) -> &mut Map<String, Value> {
    let meta = root.entry("metadata").or_insert_with(|| json!({}));
    if !meta.is_object() {
        *meta = json!({});
    }
    match meta {
        Value::Object(m) => m,
        // Unreachable: replaced by an object just above.
        _ => unreachable!("metadata was just made an object"),
    }
}

fn metadata_mut_value(obj: &mut Value) -> &mut Map<String, Value> {
    if !obj.is_object() {
        *obj = json!({});
    }
    match obj {
        Value::Object(root) => metadata_mut(root),
        _ => unreachable!("object was just made an object"),
    }
}

fn set_or_remove(obj: &mut Value, field: &str, value: Option<Value>) {
    if let Some(root) = obj.as_object_mut() {
        match value {
            Some(v) => root.insert(field.into(), v),
            None => root.remove(field),
        };
    }
}

fn owner_uids(obj: &Value) -> Vec<&str> {
    obj.pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .map(|refs| {
            refs.iter()
                .filter_map(|r| r.get("uid").and_then(Value::as_str))
                .collect()
        })
        .unwrap_or_default()
}

pub(crate) fn finalizers(obj: &Value) -> Vec<String> {
    obj.pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .map(|fs| fs.iter().filter_map(Value::as_str).map(String::from).collect())
        .unwrap_or_default()
}

/// Everything `generation` tracks: the object without `metadata`, `status` and type meta.
fn spec_part(obj: &Value) -> Value {
    let mut part = obj.clone();
    if let Some(root) = part.as_object_mut() {
        for ignored in ["metadata", "status", "apiVersion", "kind"] {
            root.remove(ignored);
        }
    }
    part
}

/// The real server folds a Secret's write-only `stringData` into base64 `data`.
fn normalize_secret(rt: &ResourceType, root: &mut Map<String, Value>) {
    if !(rt.group.is_empty() && rt.kind == "Secret") {
        return;
    }
    let Some(Value::Object(string_data)) = root.remove("stringData") else {
        return;
    };
    let data = root.entry("data").or_insert_with(|| json!({}));
    if !data.is_object() {
        *data = json!({});
    }
    if let Value::Object(data) = data {
        for (k, v) in string_data {
            let text = match v {
                Value::String(s) => s,
                other => other.to_string(),
            };
            data.insert(k, json!(base64::engine::general_purpose::STANDARD.encode(text)));
        }
    }
}

/// RFC 3339 timestamp with second precision, as in `metadata.creationTimestamp`.
pub(crate) fn now() -> String {
    chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string()
}
