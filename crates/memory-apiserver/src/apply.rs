//! Server-side apply (`application/apply-patch+yaml`), approximated.
//!
//! The real server merges by the OpenAPI schema's list types and tracks ownership per list
//! element. Without schemas this fake treats every list as atomic (an applied list replaces the
//! stored one) and tracks ownership of map fields only. What it keeps from real SSA:
//! - the object is created when absent;
//! - applied maps merge into the stored object field by field;
//! - `metadata.managedFields` gets one `Apply` entry per manager (and subresource), in the
//!   `FieldsV1` format, so a manager can see what it owns;
//! - a field a manager applied before and no longer applies is removed, unless another manager
//!   owns it (this is how an operator drops a status field it stopped setting);
//! - applying a different value to a field another manager owns is a `409 Conflict` unless
//!   `force=true`, which transfers ownership.
//!
//! Non-apply writes do not record `Update` entries (the real server attributes them to the
//! client's user agent), so conflicts only arise between appliers. As on the real server, a
//! non-apply write takes the fields it changes or removes away from their appliers, so a field a
//! patch cleared can be applied afresh by another manager without a conflict (leader election
//! releases a Lease that way).

use std::collections::BTreeSet;

use serde_json::{Map, Value, json};

use crate::{
    ResourceType,
    status::ApiError,
    store::{CreateOptions, ObjKey, Scope, State, UpdateOptions, now},
};

type FieldPath = Vec<String>;
type FieldSet = BTreeSet<FieldPath>;

/// Metadata fields that identify or are owned by the server, never by a manager.
const UNOWNED_METADATA: &[&str] = &[
    "name",
    "namespace",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "managedFields",
    "selfLink",
];

/// One `metadata.managedFields` entry.
#[derive(Debug, Clone)]
struct ManagedEntry {
    manager: String,
    operation: String,
    subresource: String,
    fields: FieldSet,
    /// The entry as stored, kept verbatim when its fields do not change so a repeated apply
    /// stays a no-op (a fresh `time` would otherwise count as a change).
    raw: Value,
}

pub(crate) struct ApplyRequest<'a> {
    pub rt: &'a ResourceType,
    pub namespace: Option<&'a str>,
    pub name: &'a str,
    pub scope: Scope,
    pub manager: &'a str,
    pub force: bool,
    pub dry_run: bool,
}

impl State {
    /// Applies `applied` for `req.manager`. Returns the stored object and whether it was created.
    pub fn apply(&mut self, req: &ApplyRequest<'_>, applied: Value) -> Result<(Value, bool), ApiError> {
        let rt = req.rt;
        if !applied.is_object() {
            return Err(ApiError::bad_request("apply patch body must be an object"));
        }
        let applied_kind = applied.get("kind").and_then(Value::as_str).unwrap_or_default();
        let applied_version = applied.get("apiVersion").and_then(Value::as_str).unwrap_or_default();
        if applied_kind.is_empty() || applied_version.is_empty() {
            return Err(ApiError::bad_request(
                "apiVersion and kind must be set in an apply patch",
            ));
        }
        if let Some(name) = applied.pointer("/metadata/name").and_then(Value::as_str)
            && name != req.name
        {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({name}) does not match the name on the URL ({})",
                req.name
            )));
        }

        let scoped = scope_filter(rt, req.scope, &applied);
        let new_fields = owned_fields(&scoped);
        let subresource = match req.scope {
            Scope::Main => "",
            Scope::Status => "status",
        };
        let key = ObjKey::new(rt, req.namespace.unwrap_or_default(), req.name);
        let existing = self.objects.get(&key).cloned();

        let Some(old) = existing else {
            if req.scope == Scope::Status {
                return Err(ApiError::not_found(rt, req.name));
            }
            let entry = new_entry(rt, req.manager, subresource, &new_fields);
            let mut obj = scoped;
            if let Some(root) = obj.as_object_mut() {
                let meta = crate::store::metadata_mut(root);
                meta.insert("name".into(), json!(req.name));
            }
            let options = CreateOptions {
                dry_run: req.dry_run,
                managed_fields: Some(json!([entry])),
                ..CreateOptions::default()
            };
            let created = self.create(rt, req.namespace, obj, options)?;
            return Ok((created, true));
        };

        let mut entries = parse_managed_fields(&old);
        let is_own =
            |e: &ManagedEntry| e.manager == req.manager && e.operation == "Apply" && e.subresource == subresource;

        let mut conflicts = Vec::new();
        for entry in entries.iter().filter(|e| !is_own(e)) {
            for path in &new_fields {
                let overlapping = entry.fields.iter().any(|owned| overlaps(owned, path));
                if overlapping && value_at(&old, path) != value_at(&scoped, path) {
                    conflicts.push((entry.manager.clone(), path.clone()));
                }
            }
        }
        if !conflicts.is_empty() && !req.force {
            return Err(conflict_error(rt, req.name, &conflicts));
        }
        if req.force {
            // Forcing takes the conflicting fields away from their previous managers.
            for entry in entries.iter_mut().filter(|e| !is_own(e)) {
                let before = entry.fields.len();
                entry
                    .fields
                    .retain(|owned| !new_fields.iter().any(|path| overlaps(owned, path)));
                if entry.fields.len() != before {
                    entry.raw = Value::Null;
                }
            }
        }

        let previous_own: FieldSet = entries
            .iter()
            .find(|e| is_own(e))
            .map(|e| e.fields.clone())
            .unwrap_or_default();
        let mut merged = old.clone();
        for dropped in previous_own.difference(&new_fields) {
            let still_owned = entries
                .iter()
                .filter(|e| !is_own(e))
                .any(|e| e.fields.iter().any(|owned| overlaps(owned, dropped)))
                || new_fields.iter().any(|path| overlaps(path, dropped));
            if !still_owned {
                remove_path(&mut merged, dropped);
            }
        }
        merge_applied(&mut merged, &scoped);

        // Rebuild managedFields: keep other entries (dropping emptied ones), replace ours.
        let mut rebuilt = Vec::new();
        let mut own_written = false;
        for entry in entries.drain(..) {
            if is_own(&entry) {
                own_written = true;
                if entry.fields == new_fields && !entry.raw.is_null() {
                    rebuilt.push(entry.raw);
                } else {
                    rebuilt.push(new_entry(rt, req.manager, subresource, &new_fields));
                }
            } else if !entry.fields.is_empty() {
                rebuilt.push(if entry.raw.is_null() {
                    rebuild_entry(rt, &entry)
                } else {
                    entry.raw
                });
            }
        }
        if !own_written {
            rebuilt.push(new_entry(rt, req.manager, subresource, &new_fields));
        }

        let options = UpdateOptions {
            dry_run: req.dry_run,
            require_resource_version: false,
            managed_fields: Some(Value::Array(rebuilt)),
        };
        let stored = self.update(rt, &key, merged, req.scope, options)?;
        Ok((stored, false))
    }
}

/// The part of the applied object a write in `scope` may touch.
fn scope_filter(rt: &ResourceType, scope: Scope, applied: &Value) -> Value {
    let mut scoped = applied.clone();
    if let Some(root) = scoped.as_object_mut() {
        match scope {
            Scope::Main if rt.has_status_subresource => {
                root.remove("status");
            }
            Scope::Main => {}
            Scope::Status => root.retain(|k, _| matches!(k.as_str(), "apiVersion" | "kind" | "metadata" | "status")),
        }
    }
    scoped
}

/// Leaf paths of the fields a manager owns by applying `applied`.
fn owned_fields(applied: &Value) -> FieldSet {
    let mut owned = applied.clone();
    if let Some(root) = owned.as_object_mut() {
        root.remove("apiVersion");
        root.remove("kind");
        if let Some(Value::Object(meta)) = root.get_mut("metadata") {
            meta.retain(|k, _| !UNOWNED_METADATA.contains(&k.as_str()));
        }
        if root
            .get("metadata")
            .is_some_and(|m| m.as_object().is_some_and(Map::is_empty))
        {
            root.remove("metadata");
        }
    }
    let mut out = FieldSet::new();
    collect_leaves(&owned, &mut Vec::new(), &mut out);
    out
}

fn collect_leaves(v: &Value, prefix: &mut FieldPath, out: &mut FieldSet) {
    match v {
        Value::Object(map) if !map.is_empty() => {
            for (k, child) in map {
                prefix.push(k.clone());
                collect_leaves(child, prefix, out);
                prefix.pop();
            }
        }
        _ if !prefix.is_empty() => {
            out.insert(prefix.clone());
        }
        _ => {}
    }
}

/// One path is the other or lies inside it.
fn overlaps(a: &FieldPath, b: &FieldPath) -> bool {
    a.starts_with(b) || b.starts_with(a)
}

fn value_at<'v>(obj: &'v Value, path: &FieldPath) -> Option<&'v Value> {
    path.iter().try_fold(obj, |v, seg| v.get(seg))
}

/// Removes a leaf and then any maps it leaves empty below the top-level field.
fn remove_path(obj: &mut Value, path: &FieldPath) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut cursor = &mut *obj;
    for seg in parents {
        match cursor.get_mut(seg) {
            Some(next) => cursor = next,
            None => return,
        }
    }
    if let Some(map) = cursor.as_object_mut() {
        map.remove(last);
    }
    if parents.len() > 1 {
        let parent: FieldPath = parents.to_vec();
        if value_at(obj, &parent).is_some_and(|v| v.as_object().is_some_and(Map::is_empty)) {
            remove_path(obj, &parent);
        }
    }
}

/// Maps merge key by key; anything else (scalars, lists) replaces. A `null` removes, as in a
/// merge patch.
fn merge_applied(target: &mut Value, applied: &Value) {
    match (target, applied) {
        (Value::Object(t), Value::Object(a)) => {
            for (k, v) in a {
                if v.is_null() {
                    t.remove(k);
                } else if v.is_object() && t.get(k).is_some_and(Value::is_object) {
                    if let Some(child) = t.get_mut(k) {
                        merge_applied(child, v);
                    }
                } else {
                    t.insert(k.clone(), v.clone());
                }
            }
        }
        (t, a) => *t = a.clone(),
    }
}

fn fields_v1(fields: &FieldSet) -> Value {
    let mut root = Map::new();
    for path in fields {
        let mut cursor = &mut root;
        for seg in path {
            let child = cursor.entry(format!("f:{seg}")).or_insert_with(|| json!({}));
            if !child.is_object() {
                *child = json!({});
            }
            match child {
                Value::Object(m) => cursor = m,
                _ => break,
            }
        }
    }
    Value::Object(root)
}

/// Leaf paths of a `fieldsV1` tree. Keys other than `f:` (list element keys `k:`/`v:`/`i:`,
/// the `.` marker) make their parent a leaf, matching the atomic-list approximation.
fn parse_fields_v1(v: &Value, prefix: &mut FieldPath, out: &mut FieldSet) {
    let children: Vec<(&str, &Value)> = v
        .as_object()
        .map(|m| {
            m.iter()
                .filter_map(|(k, c)| k.strip_prefix("f:").map(|name| (name, c)))
                .collect()
        })
        .unwrap_or_default();
    if children.is_empty() {
        if !prefix.is_empty() {
            out.insert(prefix.clone());
        }
        return;
    }
    for (name, child) in children {
        prefix.push(name.to_string());
        parse_fields_v1(child, prefix, out);
        prefix.pop();
    }
}

/// `managedFields` after a non-apply write from `old` to `new`: every applier keeps only the
/// fields the write left as they were. `None` when nothing changes.
pub(crate) fn disown_changed(rt: &ResourceType, old: &Value, new: &Value) -> Option<Value> {
    let entries = parse_managed_fields(old);
    let mut changed = false;
    let kept: Vec<Value> = entries
        .into_iter()
        .filter_map(|mut entry| {
            let before = entry.fields.len();
            entry
                .fields
                .retain(|path| value_at(new, path).is_some() && value_at(old, path) == value_at(new, path));
            if entry.fields.len() == before {
                return Some(entry.raw);
            }
            changed = true;
            (!entry.fields.is_empty()).then(|| rebuild_entry(rt, &entry))
        })
        .collect();
    changed.then_some(Value::Array(kept))
}

fn parse_managed_fields(obj: &Value) -> Vec<ManagedEntry> {
    let Some(entries) = obj.pointer("/metadata/managedFields").and_then(Value::as_array) else {
        return Vec::new();
    };
    entries
        .iter()
        .map(|raw| {
            let text = |k: &str| raw.get(k).and_then(Value::as_str).unwrap_or_default().to_string();
            let mut fields = FieldSet::new();
            if let Some(tree) = raw.get("fieldsV1") {
                parse_fields_v1(tree, &mut Vec::new(), &mut fields);
            }
            ManagedEntry {
                manager: text("manager"),
                operation: text("operation"),
                subresource: text("subresource"),
                fields,
                raw: raw.clone(),
            }
        })
        .collect()
}

fn new_entry(rt: &ResourceType, manager: &str, subresource: &str, fields: &FieldSet) -> Value {
    let mut entry = json!({
        "manager": manager,
        "operation": "Apply",
        "apiVersion": rt.api_version(),
        "time": now(),
        "fieldsType": "FieldsV1",
        "fieldsV1": fields_v1(fields),
    });
    if !subresource.is_empty() {
        entry["subresource"] = json!(subresource);
    }
    entry
}

fn rebuild_entry(rt: &ResourceType, entry: &ManagedEntry) -> Value {
    let mut raw = new_entry(rt, &entry.manager, &entry.subresource, &entry.fields);
    raw["operation"] = json!(entry.operation);
    raw
}

fn conflict_error(rt: &ResourceType, name: &str, conflicts: &[(String, FieldPath)]) -> ApiError {
    let described: Vec<String> = conflicts
        .iter()
        .map(|(manager, path)| format!("conflict with \"{manager}\": .{}", path.join(".")))
        .collect();
    let message = format!(
        "Apply failed with {} conflict{}: {}",
        conflicts.len(),
        if conflicts.len() == 1 { "" } else { "s" },
        described.join("\n")
    );
    let causes: Vec<Value> = conflicts
        .iter()
        .map(|(manager, path)| {
            json!({
                "reason": "FieldManagerConflict",
                "message": format!("conflict with \"{manager}\""),
                "field": format!(".{}", path.join(".")),
            })
        })
        .collect();
    ApiError::apply_conflict(rt, name, message, json!(causes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_v1_round_trip() {
        let applied = json!({
            "apiVersion": "example.com/v1", "kind": "Widget",
            "metadata": {"name": "w", "labels": {"a": "1"}},
            "spec": {"size": 3, "tags": ["x"], "nested": {"deep": true}},
        });
        let fields = owned_fields(&applied);
        let expected: FieldSet = [
            vec!["metadata", "labels", "a"],
            vec!["spec", "nested", "deep"],
            vec!["spec", "size"],
            vec!["spec", "tags"],
        ]
        .into_iter()
        .map(|p| p.into_iter().map(String::from).collect())
        .collect();
        assert_eq!(fields, expected);
        let tree = fields_v1(&fields);
        assert_eq!(tree["f:spec"]["f:nested"]["f:deep"], json!({}));
        let mut parsed = FieldSet::new();
        parse_fields_v1(&tree, &mut Vec::new(), &mut parsed);
        assert_eq!(parsed, fields);
    }

    #[test]
    fn remove_path_prunes_empty_maps() {
        let mut obj = json!({"spec": {"a": {"b": 1}, "c": 2}});
        remove_path(&mut obj, &vec!["spec".into(), "a".into(), "b".into()]);
        assert_eq!(obj, json!({"spec": {"c": 2}}));
    }
}
