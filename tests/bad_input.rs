//! The bad-input corpus (`tests/bad-input/`), except `admission/`, which needs the real API
//! server (the cluster tier, `tests/e2e_cluster.rs`):
//!
//! - `semantic/*.yaml`: specs the schema cannot catch. Each file is a set of manifests with a
//!   header: `# target: Kind/name` (the bad object), `# expect-reason: Reason`, one or more
//!   `# expect-message: text` and, when the case needs the accounts as written (not pointed at
//!   the simulators), `# simulate: false`. The run reconciles everything else first, then the
//!   target, through the operator's own pipeline on the in-memory API server (as `apply` does):
//!   the target ends `Synced=False` with that reason and a message containing every text, a
//!   Warning Event says the same, it is not `Ready`, and reconciling it cost **0 vendor calls**
//!   (`# expect-calls: attempted` marks the one case whose fault only a call can find: an
//!   endpoint that points nowhere).
//! - `files/*`: malformed input for offline `apply` and `plan`. Header lines `# expect-exit: N`
//!   and `# expect-stderr: text`; both commands must exit N with every text on stderr and no
//!   panic (a JSON case has its header in `NAME.json.expect`). Generated cases, such as invalid
//!   UTF-8, are built in the test below.

use std::path::{Path, PathBuf};
use std::process::Output;

use connectivity_operator::crd::conditions::{self, READY, SYNCED};
use connectivity_operator::offline::{OfflineOptions, OfflineRun};

fn corpus(folder: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/bad-input")
        .join(folder);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

/// The values of `# key: value` header lines.
fn header(text: &str, key: &str) -> Vec<String> {
    let prefix = format!("# {key}: ");
    text.lines()
        .filter_map(|l| l.strip_prefix(&prefix))
        .map(|v| v.trim_end().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn semantic_errors_end_in_a_condition_and_a_warning_without_a_vendor_call() {
    connectivity_operator::install_crypto_provider();
    let cases = corpus("semantic");
    assert!(
        cases.len() >= 25,
        "the semantic corpus is there ({} cases)",
        cases.len()
    );
    let mut failures = Vec::new();
    for case in &cases {
        if let Err(why) = semantic_case(case).await {
            failures.push(format!("{}: {why}", case.file_name().unwrap().to_string_lossy()));
        }
    }
    all_passed(&failures, cases.len());
}

async fn semantic_case(case: &Path) -> Result<(), String> {
    let text = std::fs::read_to_string(case).unwrap();
    let target = header(&text, "target").pop().ok_or("no `# target:`")?;
    let (kind, name) = target.split_once('/').ok_or("target is not Kind/name")?;
    let reason = header(&text, "expect-reason").pop().ok_or("no `# expect-reason:`")?;
    let messages = header(&text, "expect-message");
    let simulate = header(&text, "simulate").pop().is_none_or(|v| v != "false");
    let calls_allowed = header(&text, "expect-calls").iter().any(|v| v == "attempted");
    let options = OfflineOptions {
        paths: vec![case.to_path_buf()],
        simulate,
        ..Default::default()
    };
    let run = OfflineRun::start(&options)
        .await
        .map_err(|e| format!("does not load: {e}"))?;
    let is_target = |m: &connectivity_operator::offline::Manifest| m.kind() == kind && m.name() == name;
    if !run.manifests.iter().any(is_target) {
        return Err(format!("{target} is not in the file"));
    }
    run.reconcile(|m| !is_target(m)).await.map_err(|e| e.to_string())?;
    let before = run.ctx.metrics.vendor_request_total();
    run.reconcile(is_target).await.map_err(|e| e.to_string())?;
    let calls = run.ctx.metrics.vendor_request_total() - before;
    if calls > 0 && !calls_allowed {
        return Err(format!("{calls} vendor calls for an invalid spec"));
    }
    if calls == 0 && calls_allowed {
        return Err("`expect-calls: attempted`, but no call was made".into());
    }
    let manifest = run.manifests.iter().find(|m| is_target(m)).unwrap();
    let object = run.object(manifest).ok_or("the target is gone")?;
    let conds: Vec<conditions::Condition> =
        serde_json::from_value(object["status"]["conditions"].clone()).unwrap_or_default();
    let synced =
        conditions::find(&conds, SYNCED).ok_or_else(|| format!("no Synced condition: {}", object["status"]))?;
    if synced.status != connectivity_operator::crd::ConditionStatus::False || synced.reason != reason.as_str() {
        return Err(format!(
            "Synced={:?} {} ({}), expected False {reason}",
            synced.status, synced.reason, synced.message
        ));
    }
    for m in &messages {
        if !synced.message.contains(m.as_str()) {
            return Err(format!("the condition's message lacks `{m}`: {}", synced.message));
        }
    }
    if conditions::is_true(&conds, READY) {
        return Err("Ready=True".into());
    }
    let warned = run.events().iter().any(|e| {
        e["type"] == "Warning"
            && e["regarding"]["name"] == name
            && e["regarding"]["kind"] == kind
            && e["reason"] == reason.as_str()
            && messages
                .iter()
                .all(|m| e["note"].as_str().is_some_and(|n| n.contains(m.as_str())))
    });
    if !warned {
        return Err(format!("no Warning Event {reason} with the message"));
    }
    Ok(())
}

fn all_passed(failures: &[String], cases: usize) {
    assert!(
        failures.is_empty(),
        "{} of {cases} cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

fn cli(args: &[&str]) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_connectivity-operator"))
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("the binary runs")
}

/// `apply` and `plan` on `path`: both exit `code` with every text on stderr, and nothing panics.
fn expect_cli(path: &Path, code: i32, stderr_has: &[String]) -> Result<(), String> {
    for command in ["apply", "plan"] {
        let out = cli(&[command, "-f", path.to_str().unwrap(), "--simulate"]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        if stderr.contains("panicked") {
            return Err(format!("{command} panicked: {stderr}"));
        }
        if out.status.code() != Some(code) {
            return Err(format!(
                "{command} exited {:?}, expected {code}: {stderr}",
                out.status.code()
            ));
        }
        for text in stderr_has {
            if !stderr.contains(text.as_str()) {
                return Err(format!("{command}'s stderr lacks `{text}`: {stderr}"));
            }
        }
    }
    Ok(())
}

#[test]
fn malformed_files_exit_as_documented_without_a_panic() {
    let cases = corpus("files");
    assert!(cases.len() >= 20, "the files corpus is there ({} cases)", cases.len());
    let mut failures = Vec::new();
    for case in cases.iter().filter(|c| c.extension().is_none_or(|e| e != "expect")) {
        // JSON cannot hold comments: a `NAME.json.expect` file next to it has its header.
        let sidecar = PathBuf::from(format!("{}.expect", case.display()));
        let text = std::fs::read(if sidecar.exists() { &sidecar } else { case }).unwrap();
        let text = String::from_utf8_lossy(&text).into_owned();
        let Some(code) = header(&text, "expect-exit").pop().and_then(|c| c.parse().ok()) else {
            failures.push(format!("{}: no `# expect-exit:`", case.display()));
            continue;
        };
        if let Err(why) = expect_cli(case, code, &header(&text, "expect-stderr")) {
            failures.push(format!("{}: {why}", case.file_name().unwrap().to_string_lossy()));
        }
    }
    all_passed(&failures, cases.len());
}

/// Cases a text file cannot hold: bytes that are not UTF-8, an empty folder, a very deep and a
/// very long document.
#[test]
fn generated_malformed_input_exits_as_documented() {
    let dir = tempfile::tempdir().unwrap();
    let not_utf8 = dir.path().join("latin1.yaml");
    std::fs::write(&not_utf8, b"apiVersion: v1\nkind: Secret\nmetadata: {name: caf\xe9}\n").unwrap();
    expect_cli(&not_utf8, 3, &["latin1.yaml".into()]).unwrap();

    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    // No manifests is nothing to do, not an error.
    let out = cli(&["apply", "-f", empty.to_str().unwrap(), "--simulate"]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));

    let deep = dir.path().join("deep.yaml");
    std::fs::write(&deep, format!("{}1{}", "[".repeat(100_000), "]".repeat(100_000))).unwrap();
    expect_cli(&deep, 3, &["deep.yaml".into()]).unwrap();

    let wide = dir.path().join("wide.yaml");
    let mut text = String::from(
        "apiVersion: connectivity-operator.dev/v1alpha1\nkind: ServiceProfile\nmetadata: {name: wide}\nspec:\n  providerConfigRef: {name: emnify}\n  description: \"",
    );
    text.push_str(&"x".repeat(5_000_000));
    text.push_str("\"\n");
    std::fs::write(&wide, text).unwrap();
    // Loads (offline mode leaves lengths to the API server) and fails on the missing account.
    let out = cli(&["apply", "-f", wide.to_str().unwrap(), "--simulate"]);
    assert!(!String::from_utf8_lossy(&out.stderr).contains("panicked"));
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
}
