//! `import` as the round trip that proves it: for each vendor, import an account from its
//! simulator, `plan` the imported manifests against the same account (no change), then switch a
//! few objects to `Full`, change them, and `plan` again (exactly those changes). Also: a second
//! import of an unchanged account writes byte-identical files, and the SIMs cost the sweep's pages,
//! not a call each.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use connectivity_operator::crd::ManagementPolicy;
use connectivity_operator::import::{self, ImportOptions, ImportReport, Layout, Output, Selector};
use connectivity_operator::offline::{self, OfflineOptions};
use serde_json::Value;

/// The account files (Secret and ProviderConfig `acct`) for a simulator.
fn account(dir: &Path, vendor: &str, url: &str, credentials: &str, extra: &str) -> PathBuf {
    let path = dir.join("account.yaml");
    std::fs::write(
        &path,
        format!(
            "apiVersion: v1\nkind: Secret\nmetadata: {{name: creds, namespace: fleet}}\nstringData: {{{credentials}}}\n---\n\
             apiVersion: connectivity-operator.dev/v1alpha1\nkind: ProviderConfig\nmetadata: {{name: acct, namespace: fleet}}\n\
             spec: {{vendor: {vendor}, endpoint: '{url}', credentialsSecretRef: {{name: creds}}{extra}}}\n"
        ),
    )
    .unwrap();
    path
}

fn options(account: &Path, out: &Path, layout: Layout) -> ImportOptions {
    ImportOptions {
        offline: OfflineOptions {
            paths: vec![account.to_path_buf()],
            ..Default::default()
        },
        provider_config: None,
        profiles: true,
        subscriptions: true,
        selector: Selector::default(),
        policy: ManagementPolicy::ObserveOnly,
        namespace: None,
        output: Output::Directory {
            path: out.to_path_buf(),
            layout,
        },
    }
}

async fn import(options: &ImportOptions) -> ImportReport {
    let report = import::import(options, &mut std::io::sink())
        .await
        .unwrap_or_else(|e| panic!("import failed: {e}"));
    eprint!("{}", import::summary(&report));
    report
}

/// `plan` of the account and the imported folder: exit code and output.
async fn plan(account: &Path, imported: &Path) -> (i32, String) {
    let mut out = Vec::new();
    let code = offline::plan(
        &OfflineOptions {
            paths: vec![account.to_path_buf(), imported.to_path_buf()],
            ..Default::default()
        },
        &mut out,
    )
    .await
    .unwrap_or_else(|e| panic!("plan failed: {e}"));
    (code, String::from_utf8(out).unwrap())
}

/// Every file under `dir` with its bytes.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.insert(
                    path.strip_prefix(dir).unwrap().to_path_buf(),
                    std::fs::read(&path).unwrap(),
                );
            }
        }
    }
    out
}

fn yaml(path: &Path) -> Value {
    serde_yaml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn write_yaml(path: &Path, value: &Value) {
    std::fs::write(path, serde_yaml::to_string(value).unwrap()).unwrap();
}

/// Lines of a plan that announce a change, a drift or a failure.
fn change_lines(plan: &str) -> Vec<String> {
    plan.lines()
        .filter(|l| l.trim_start().starts_with(['~', '?', '!', '+']) || l.contains("cannot plan"))
        .map(|l| l.trim().to_string())
        .collect()
}

/// The import-then-plan checks every vendor shares; returns the imported folder.
async fn round_trip(dir: &Path, account: &Path, profiles: usize, sims: usize) -> PathBuf {
    let out = dir.join("imported");
    let report = import(&options(account, &out, Layout::PerObject)).await;
    assert_eq!(report.profiles, profiles, "{}", import::summary(&report));
    assert_eq!(report.subscriptions, sims, "{}", import::summary(&report));
    assert!(report.skipped.is_empty(), "{:?}", report.skipped);
    let files = snapshot(&out);
    assert_eq!(
        files.len(),
        profiles + sims + 1,
        "one file per object and a kustomization.yaml"
    );
    let kustomization = String::from_utf8(files[Path::new("kustomization.yaml")].clone()).unwrap();
    assert_eq!(
        kustomization.matches("\n- ").count(),
        profiles + sims,
        "{kustomization}"
    );

    // The imported manifests against the same account: nothing to do.
    let (code, text) = plan(account, &out).await;
    assert_eq!(change_lines(&text), Vec::<String>::new(), "{text}");
    assert_eq!(code, 0, "{text}");
    assert_eq!(
        text.lines().filter(|l| l.contains("up to date")).count(),
        profiles + sims,
        "{text}"
    );

    // Unchanged account, second import: byte-identical files, none rewritten.
    let again = import(&options(account, &out, Layout::PerObject)).await;
    assert_eq!(again.files.written, 0, "{:?}", again.files);
    assert_eq!(again.files.removed, 0);
    assert_eq!(snapshot(&out), files);
    out
}

/// The subscription files of a folder, in name order.
fn subscription_files(out: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(out.join("subscriptions"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files
}

/// Switch a subscription file to `Full` with another mode; returns its object name and new mode.
fn change_mode(path: &Path) -> (String, String) {
    let mut obj = yaml(path);
    let now = obj["spec"]["mode"].as_str().unwrap().to_string();
    let want = if now == "Active" { "Paused" } else { "Active" };
    obj["spec"]["mode"] = want.into();
    obj["spec"]["managementPolicy"] = "Full".into();
    write_yaml(path, &obj);
    (obj["metadata"]["name"].as_str().unwrap().to_string(), want.to_string())
}

/// The first two `Active` subscriptions switched to `Full` and `Paused`: (name, new mode) each.
fn change_two_active(out: &Path) -> Vec<(String, String)> {
    let files = subscription_files(out);
    let active: Vec<&PathBuf> = files
        .iter()
        .filter(|p| yaml(p)["spec"]["mode"] == "Active")
        .take(2)
        .collect();
    assert_eq!(active.len(), 2, "the seed has active SIMs");
    active.iter().map(|p| change_mode(p)).collect()
}

/// An object file switched to `Full` with the field at `pointer` set to `value`.
fn to_full(path: &Path, pointer: &str, value: Value) {
    let mut obj = yaml(path);
    obj["spec"]["managementPolicy"] = "Full".into();
    *obj.pointer_mut(pointer)
        .unwrap_or_else(|| panic!("no {pointer} in {}", path.display())) = value;
    write_yaml(path, &obj);
}

#[tokio::test(flavor = "multi_thread")]
async fn emnify_round_trip() {
    let sim = vendor_sim::emnify::EmnifySim::new(vendor_sim::emnify::EmnifyConfig::default())
        .serve("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let token = sim.credentials()["application_token"].as_str().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let acct = account(
        dir.path(),
        "emnify",
        &sim.url,
        &format!("applicationToken: {token}"),
        "",
    );
    let sims = sim.sim.sims().len();
    let profiles = sim.sim.service_profiles().len();
    let out = round_trip(dir.path(), &acct, profiles, sims).await;

    // The seeded profiles come with their settings: flags, references, services with limits,
    // data limits (the emnify seed has all of them).
    let data_only = yaml(&out.join("service-profiles/data-only-500-mb.yaml"));
    let spec = &data_only["spec"];
    assert_eq!(spec["name"], "Data only 500 MB");
    assert_eq!(spec["managementPolicy"], "ObserveOnly");
    assert_eq!(spec["deletionPolicy"], "Orphan");
    assert_eq!(spec["emnify"]["allowed3g"], false);
    assert_eq!(spec["emnify"]["breakoutRegionId"], 2);
    assert_eq!(spec["emnify"]["services"][0]["service"], "Data");
    assert_eq!(spec["emnify"]["services"][0]["trafficLimits"][0]["id"], 101);
    assert_eq!(spec["emnify"]["dataLimits"][0]["volume"], "500Mi");
    assert_eq!(spec["emnify"]["dataLimits"][0]["warningPercent"], 90);
    assert!(spec["externalId"].is_string());
    // SIMs name their profile by object name.
    let on_profile = subscription_files(&out)
        .iter()
        .map(|p| yaml(p))
        .filter(|s| s["spec"]["serviceProfileRef"]["name"].is_string())
        .count();
    assert!(on_profile > 0, "SIMs with endpoints reference their profile");

    // A few objects to Full, changed: the plan shows exactly those changes.
    let changed = change_two_active(&out);
    to_full(
        &out.join("service-profiles/data-only-500-mb.yaml"),
        "/spec/emnify/allowed3g",
        true.into(),
    );
    let (code, text) = plan(&acct, &out).await;
    assert_eq!(code, 2, "{text}");
    let mut want: Vec<String> = changed.iter().map(|(_, mode)| format!("~ set mode {mode}")).collect();
    want.insert(
        0,
        "~ update service profile: allowed_3g false -> true (profile ".to_string(),
    );
    let lines = change_lines(&text);
    assert_eq!(lines.len(), 3, "{text}");
    assert!(lines[0].starts_with(&want[0]), "{text}");
    assert_eq!(lines[1..], want[1..], "{text}");
    for (name, _) in &changed {
        assert!(
            text.contains(&format!("ConnectivitySubscription fleet/{name} (emnify, now")),
            "{text}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn bics_round_trip() {
    let sim = vendor_sim::bics::BicsSim::new(vendor_sim::bics::BicsConfig::default())
        .serve("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    sim.sim.create_profile_like("IoT EU", "1");
    let creds = sim.credentials();
    let dir = tempfile::tempdir().unwrap();
    let acct = account(
        dir.path(),
        "bicsSft",
        &sim.url,
        &format!(
            "username: {}, password: {}",
            creds["username"].as_str().unwrap(),
            creds["password"].as_str().unwrap()
        ),
        "",
    );
    let sims = sim.sim.sims().len();
    let profiles = sim.sim.service_profiles().len();
    let out = round_trip(dir.path(), &acct, profiles, sims).await;
    let eu = yaml(&out.join("service-profiles/iot-eu.yaml"));
    assert_eq!(
        eu["spec"]["bicsSft"]["services"],
        serde_json::json!(["Data", "SmsMo", "SmsMt"])
    );
    assert_eq!(eu["spec"]["bicsSft"]["accessType"], "2G/3G/4G");
    // BICS SIMs are named by ICCID alone (BICS finds SIMs by ICCID).
    for s in subscription_files(&out).iter().map(|p| yaml(p)) {
        assert!(s["spec"]["iccid"].is_string() && s["spec"]["imsi"].is_null(), "{s}");
    }

    let changed = change_two_active(&out);
    to_full(
        &out.join("service-profiles/iot-eu.yaml"),
        "/spec/bicsSft/accessType",
        "2G/3G/4G/5G".into(),
    );
    let (code, text) = plan(&acct, &out).await;
    assert_eq!(code, 2, "{text}");
    let lines = change_lines(&text);
    assert_eq!(lines.len(), 3, "{text}");
    // The access type, and the status BICS never returns (written once under Full, as documented).
    assert!(
        lines[0].starts_with("~ update service profile: accessType 2G/3G/4G -> 10, status -> Active"),
        "{text}"
    );
    let want: Vec<String> = changed.iter().map(|(_, mode)| format!("~ set mode {mode}")).collect();
    assert_eq!(lines[1..], want[..], "{text}");
}

/// A Telenor simulator with its default seed, a temp folder, and the account files for it there.
async fn telenor_account() -> (vendor_sim::telenor::RunningSim, tempfile::TempDir, PathBuf) {
    let sim = vendor_sim::telenor::TelenorSim::new(vendor_sim::telenor::TelenorConfig::default())
        .serve("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let acct = telenor_account_files(dir.path(), &sim);
    (sim, dir, acct)
}

/// The account files for a Telenor simulator.
fn telenor_account_files(dir: &Path, sim: &vendor_sim::telenor::RunningSim) -> PathBuf {
    let creds = sim.credentials();
    account(
        dir,
        "telenorIotConnect",
        &sim.url,
        &format!(
            "clientId: {}, clientSecret: {}",
            creds["client_id"].as_str().unwrap(),
            creds["client_secret"].as_str().unwrap()
        ),
        &format!(", telenorIotConnect: {{tokenUrl: '{}'}}", sim.token_url),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn telenor_round_trip() {
    let (sim, dir, acct) = telenor_account().await;
    let sims = sim.sim.subscriptions().len();
    let profiles = sim.sim.service_policies().len();
    let out = round_trip(dir.path(), &acct, profiles, sims).await;
    // Telenor subscriptions are keyed by IMSI.
    for s in subscription_files(&out).iter().map(|p| yaml(p)) {
        assert!(s["spec"]["imsi"].is_string() && s["spec"]["iccid"].is_null(), "{s}");
    }

    // One SIM to another policy, one to another mode.
    let files = subscription_files(&out);
    let with_policy: Vec<Value> = files.iter().map(|p| yaml(p)).collect();
    let policies: Vec<String> = std::fs::read_dir(out.join("service-profiles"))
        .unwrap()
        .map(|e| e.unwrap().path().file_stem().unwrap().to_string_lossy().to_string())
        .collect();
    let (i, current) = with_policy
        .iter()
        .enumerate()
        .find_map(|(i, s)| Some((i, s["spec"]["serviceProfileRef"]["name"].as_str()?.to_string())))
        .expect("a SIM with a policy");
    let other = policies.iter().find(|p| **p != current).unwrap().clone();
    let mut obj = with_policy[i].clone();
    obj["spec"]["serviceProfileRef"]["name"] = other.clone().into();
    obj["spec"]["managementPolicy"] = "Full".into();
    write_yaml(&files[i], &obj);
    let j = (0..files.len())
        .find(|j| *j != i && matches!(with_policy[*j]["spec"]["mode"].as_str(), Some("Active" | "Paused")))
        .expect("an active or paused SIM");
    let (_, mode) = change_mode(&files[j]);
    let (code, text) = plan(&acct, &out).await;
    assert_eq!(code, 2, "{text}");
    let lines = change_lines(&text);
    assert_eq!(lines.len(), 2, "{text}");
    assert!(lines.iter().any(|l| l.starts_with("~ set service profile")), "{text}");
    assert!(lines.contains(&format!("~ set mode {mode}")), "{text}");
}

/// The per-kind layout, a selector, and files of SIMs that left the account removed on the next
/// import (only files an import wrote).
#[tokio::test(flavor = "multi_thread")]
async fn per_kind_layout_selector_and_stale_files() {
    let (sim, dir, acct) = telenor_account().await;
    let out = dir.path().join("per-kind");
    let mut opts = options(&acct, &out, Layout::PerKind);
    opts.selector.modes = vec![Some(connectivity_operator::crd::SubscriptionMode::Active)];
    let report = import(&opts).await;
    let active = sim.sim.subscriptions().iter().filter(|s| s["mode"] == "ACTIVE").count();
    assert!(active > 0);
    assert_eq!(report.subscriptions, active);
    let files = snapshot(&out);
    let names: Vec<&str> = files.keys().map(|p| p.to_str().unwrap()).collect();
    assert_eq!(
        names,
        ["kustomization.yaml", "service-profiles.yaml", "subscriptions.yaml"]
    );

    // The per-object layout into the same folder replaces the per-kind files; a file of the
    // user's is kept.
    std::fs::write(out.join("mine.yaml"), "# the user's own\n").unwrap();
    let report = import(&options(&acct, &out, Layout::PerObject)).await;
    assert_eq!(report.files.removed, 2);
    let files = snapshot(&out);
    assert!(files.contains_key(Path::new("mine.yaml")));
    assert!(!files.contains_key(Path::new("subscriptions.yaml")));

    // A SIM leaves the account: its file goes on the next import.
    let gone = sim.sim.subscriptions()[0]["imsi"].as_str().unwrap().to_string();
    assert!(sim.sim.remove_subscription(&gone));
    let report = import(&options(&acct, &out, Layout::PerObject)).await;
    assert_eq!(report.files.removed, 1, "{:?}", report.files);
    assert!(!snapshot(&out).keys().any(|p| p.to_string_lossy().contains(&gone)));
}
