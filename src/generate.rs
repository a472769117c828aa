//! Files generated from the Rust sources, like `crds/`: the reasons table in the README and the
//! reason tables of the three Argo CD `health.lua` files, all from [`crate::reason::Reason`].
//! `connectivity-operator generate` rewrites them; `tests/generated_sync.rs` (and so CI) fails
//! when one drifts.

use std::path::{Path, PathBuf};

use crate::reason::Reason;

/// The Argo CD health checks, one per kind; the three files are identical.
pub const HEALTH_LUA: [&str; 3] = [
    "argocd/resource_customizations/connectivity-operator.dev/ProviderConfig/health.lua",
    "argocd/resource_customizations/connectivity-operator.dev/ServiceProfile/health.lua",
    "argocd/resource_customizations/connectivity-operator.dev/ConnectivitySubscription/health.lua",
];

const LUA_BEGIN: &str =
    "-- BEGIN reason tables (generated from src/reason.rs by `connectivity-operator generate`; do not edit)\n";
const LUA_END: &str = "-- END reason tables\n";
const MD_BEGIN: &str =
    "<!-- BEGIN reasons (generated from src/reason.rs by `connectivity-operator generate`; do not edit) -->\n";
const MD_END: &str = "<!-- END reasons -->\n";

/// `text` with what lies between the `begin` and `end` marker lines replaced by `body`.
fn replace_between(text: &str, begin: &str, end: &str, body: &str, what: &str) -> Result<String, String> {
    let start = text
        .find(begin)
        .ok_or_else(|| format!("{what}: no line {:?}", begin.trim_end()))?
        + begin.len();
    let stop = text[start..]
        .find(end)
        .map(|i| start + i)
        .ok_or_else(|| format!("{what}: no line {:?} after the first marker", end.trim_end()))?;
    Ok(format!("{}{body}{}", &text[..start], &text[stop..]))
}

/// A `health.lua` with its reason tables regenerated.
pub fn health_lua(current: &str) -> Result<String, String> {
    replace_between(current, LUA_BEGIN, LUA_END, &Reason::lua_tables(), "health.lua")
}

/// The README with its reasons table regenerated.
pub fn readme(current: &str) -> Result<String, String> {
    replace_between(current, MD_BEGIN, MD_END, &Reason::markdown_table(), "README.md")
}

/// Every generated file under `root` as it should be: (path, content).
pub fn expected(root: &Path) -> Result<Vec<(PathBuf, String)>, String> {
    let read = |p: &Path| std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()));
    let mut out = Vec::new();
    // The first health.lua is the source of the other two (they are identical).
    let first = root.join(HEALTH_LUA[0]);
    let lua = health_lua(&read(&first)?)?;
    for path in HEALTH_LUA {
        out.push((root.join(path), lua.clone()));
    }
    let readme_path = root.join("README.md");
    out.push((readme_path.clone(), readme(&read(&readme_path)?)?));
    Ok(out)
}

/// The generated files under `root` that differ from what they should be.
pub fn drifted(root: &Path) -> Result<Vec<PathBuf>, String> {
    Ok(expected(root)?
        .into_iter()
        .filter(|(path, want)| std::fs::read_to_string(path).ok().as_deref() != Some(want.as_str()))
        .map(|(path, _)| path)
        .collect())
}

/// Write every generated file under `root`; returns those that changed.
pub fn write(root: &Path) -> Result<Vec<PathBuf>, String> {
    let mut changed = Vec::new();
    for (path, want) in expected(root)? {
        if std::fs::read_to_string(&path).ok().as_deref() != Some(want.as_str()) {
            std::fs::write(&path, &want).map_err(|e| format!("{}: {e}", path.display()))?;
            changed.push(path);
        }
    }
    Ok(changed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_are_required_and_kept() {
        let text = format!("head\n{LUA_BEGIN}old\n{LUA_END}tail\n");
        let new = health_lua(&text).unwrap();
        assert!(new.starts_with(&format!("head\n{LUA_BEGIN}")) && new.ends_with(&format!("{LUA_END}tail\n")));
        assert!(new.contains("local needsPerson = {\n") && new.contains("  SecretNotFound = true,\n"));
        assert!(health_lua("no markers").unwrap_err().contains("no line"));
    }
}
