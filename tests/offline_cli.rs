//! The `apply` and `plan` commands as a user runs them: the binary on manifest folders, with the
//! embedded simulators (`--simulate`) or against an emnify endpoint given in the ProviderConfig.

mod common;

use std::path::Path;
use std::process::Output;

use serde_json::Value;
use vendor_sim::emnify::{EmnifyConfig, EmnifySim};

const BIN: &str = env!("CARGO_BIN_EXE_connectivity-operator");

async fn run(args: &[&str]) -> Output {
    tokio::process::Command::new(BIN)
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .await
        .expect("binary runs")
}

fn documents(stdout: &[u8]) -> Vec<Value> {
    let text = String::from_utf8_lossy(stdout);
    serde_yaml::Deserializer::from_str(&text)
        .map(|d| serde::Deserialize::deserialize(d).expect("YAML output"))
        .filter(|v: &Value| !v.is_null())
        .collect()
}

fn condition<'a>(obj: &'a Value, type_: &str) -> &'a Value {
    obj["status"]["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == type_))
        .unwrap_or_else(|| panic!("no {type_} condition in {obj}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn quickstart_applies_with_simulate() {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/quickstart");
    let out = run(&["apply", "-f", examples.to_str().unwrap(), "--simulate"]).await;
    assert!(
        out.status.success(),
        "exit {:?}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let docs = documents(&out.stdout);
    let profiles: Vec<&Value> = docs.iter().filter(|d| d["kind"] == "ServiceProfile").collect();
    assert_eq!(profiles.len(), 2);
    for sp in profiles {
        let status = &sp["status"];
        assert!(status["id"].as_str().is_some_and(|id| !id.is_empty()), "{sp}");
        assert!(status["usedCount"].is_i64(), "{sp}");
        assert_eq!(condition(sp, "Ready")["status"], "True", "{sp}");
        assert_eq!(condition(sp, "Synced")["status"], "True", "{sp}");
    }
    let pc = docs.iter().find(|d| d["kind"] == "ProviderConfig").unwrap();
    assert_eq!(condition(pc, "Ready")["status"], "True");
    assert!(docs.iter().all(|d| d["kind"] != "Secret"), "Secrets are never printed");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("Created"), "events are listed on stderr: {stderr}");
}

/// An emnify simulator on a free port, and its application token.
async fn emnify_sim() -> (vendor_sim::emnify::RunningSim, String) {
    let sim = EmnifySim::new(EmnifyConfig::default())
        .serve("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let token = sim.credentials()["application_token"].as_str().unwrap().to_string();
    (sim, token)
}

#[tokio::test(flavor = "multi_thread")]
async fn plan_apply_plan_against_an_emnify_endpoint() {
    let (sim, token) = emnify_sim().await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("account.yaml"),
        format!(
            "apiVersion: v1\nkind: Secret\nmetadata: {{name: creds}}\nstringData: {{applicationToken: {token}}}\n---\n\
             apiVersion: connectivity-operator.dev/v1alpha1\nkind: ProviderConfig\nmetadata: {{name: acct}}\n\
             spec: {{vendor: emnify, endpoint: '{}', credentialsSecretRef: {{name: creds}}}}\n",
            sim.url
        ),
    )
    .unwrap();
    let profile = |allowed_3g: bool| {
        format!(
            "apiVersion: connectivity-operator.dev/v1alpha1\nkind: ServiceProfile\nmetadata: {{name: gitops}}\n\
             spec:\n  providerConfigRef: {{name: acct}}\n  emnify:\n    allowed3g: {allowed_3g}\n    services:\n      - service: Data\n"
        )
    };
    std::fs::write(dir.path().join("profile.yaml"), profile(true)).unwrap();
    let path = dir.path().to_str().unwrap();

    let out = run(&["plan", "-f", path]).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "changes pending: {stdout}");
    assert!(
        stdout.contains("+ create emnify service profile \"gitops\""),
        "{stdout}"
    );
    assert!(
        sim.sim.service_profiles().iter().all(|p| p["name"] != "gitops"),
        "plan does not write"
    );

    let out = run(&["apply", "-f", path]).await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    let out = run(&["plan", "-f", path]).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(
        stdout.contains("ServiceProfile default/gitops (emnify): up to date"),
        "{stdout}"
    );

    std::fs::write(dir.path().join("profile.yaml"), profile(false)).unwrap();
    let out = run(&["plan", "-f", path]).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{stdout}");
    assert!(
        stdout.contains("~ update service profile: allowed_3g true -> false"),
        "{stdout}"
    );
    assert_eq!(
        sim.sim
            .service_profiles()
            .iter()
            .filter(|p| p["name"] == "gitops")
            .count(),
        1
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_manifests_fail_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("bad.yaml"),
        "apiVersion: connectivity-operator.dev/v1alpha1\nkind: ServiceProfile\nmetadata: {name: x}\nspec: {emnify: {}}\n",
    )
    .unwrap();
    let out = run(&["apply", "-f", dir.path().to_str().unwrap(), "--simulate"]).await;
    assert_eq!(out.status.code(), Some(3), "input the API server would refuse");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("ServiceProfile x is invalid") && stderr.contains("providerConfigRef"),
        "{stderr}"
    );

    let out = run(&["apply", "-f", "/nonexistent/manifests"]).await;
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("failed to read /nonexistent/manifests"));
    let out = run(&["plan", "-f", "/nonexistent/manifests"]).await;
    assert_eq!(out.status.code(), Some(3));

    // A command line that cannot be parsed is neither "changes pending" (2) nor bad input (3).
    let out = run(&["plan", "--no-such-flag"]).await;
    assert_eq!(out.status.code(), Some(64));
    let out = run(&["--help"]).await;
    assert_eq!(out.status.code(), Some(0));
}

#[tokio::test(flavor = "multi_thread")]
async fn crd_command_prints_every_crd() {
    let out = run(&["crd"]).await;
    assert!(out.status.success());
    let docs = documents(&out.stdout);
    let names: Vec<&str> = docs.iter().filter_map(|d| d["metadata"]["name"].as_str()).collect();
    assert_eq!(
        names,
        vec![
            "providerconfigs.connectivity-operator.dev",
            "serviceprofiles.connectivity-operator.dev",
            "connectivitysubscriptions.connectivity-operator.dev"
        ]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sim_command_prints_one_json_line() {
    let mut child = tokio::process::Command::new(BIN)
        .args(["sim", "--vendor", "emnify", "--listen", "127.0.0.1:0"])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(stdout));
    let line = lines.next_line().await.unwrap().expect("one line");
    let info: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(info["vendor"], "emnify");
    let url = info["url"].as_str().unwrap();
    assert!(url.starts_with("http://127.0.0.1:"));
    let token = info["credentials"]["application_token"].as_str().unwrap();
    connectivity_operator::install_crypto_provider();
    let auth: Value = reqwest::Client::new()
        .post(format!("{url}/api/v1/authenticate"))
        .json(&serde_json::json!({"application_token": token}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(auth["auth_token"].as_str().is_some_and(|t| t.split('.').count() == 3));
    child.kill().await.unwrap();
}

/// `apply` of a mode change drives the SIM there and prints it Ready: offline objects are written
/// one at a time (no bulk write, whose answer would come after the run moved on).
#[tokio::test(flavor = "multi_thread")]
async fn apply_pauses_an_emnify_sim() {
    let (sim, token) = emnify_sim().await;
    connectivity_operator::install_crypto_provider();
    let endpoints = common::emnify_get(&sim, "/api/v1/endpoint?per_page=1").await;
    let (endpoint, imsi) = (&endpoints[0]["id"], endpoints[0]["sim"]["imsi"].as_str().unwrap());
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("sim.yaml"),
        format!(
            "apiVersion: v1\nkind: Secret\nmetadata: {{name: creds}}\nstringData: {{applicationToken: {token}}}\n---\n\
             apiVersion: connectivity-operator.dev/v1alpha1\nkind: ProviderConfig\nmetadata: {{name: acct}}\n\
             spec: {{vendor: emnify, endpoint: '{}', credentialsSecretRef: {{name: creds}}}}\n---\n\
             apiVersion: connectivity-operator.dev/v1alpha1\nkind: ConnectivitySubscription\nmetadata: {{name: tracker}}\n\
             spec: {{providerConfigRef: {{name: acct}}, imsi: '{imsi}', mode: Paused}}\n",
            sim.url
        ),
    )
    .unwrap();
    let out = run(&["apply", "-f", dir.path().to_str().unwrap()]).await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let docs = documents(&out.stdout);
    let csub = docs.iter().find(|d| d["kind"] == "ConnectivitySubscription").unwrap();
    assert_eq!(csub["status"]["mode"], "Activated/Disabled", "{csub}");
    assert_eq!(condition(csub, "Ready")["status"], "True", "{csub}");
    let after = common::emnify_get(&sim, &format!("/api/v1/endpoint/{endpoint}")).await;
    assert_eq!(after["status"]["id"], 1, "the endpoint is Disabled");
}

/// `import --simulate` as the README's "Adopting an existing account" shows it: the quickstart's
/// ProviderConfig against the embedded emnify simulator (seeded the same way every run), then
/// `plan --simulate` of the imported folder: nothing to change. Without `-o`, YAML on stdout.
#[tokio::test(flavor = "multi_thread")]
async fn import_then_plan_with_simulate() {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/quickstart");
    let secret = examples.join("00-secret.yaml");
    let pc = examples.join("01-providerconfig.yaml");
    let (secret, pc) = (secret.to_str().unwrap(), pc.to_str().unwrap());
    let dir = tempfile::tempdir().unwrap();
    let fleet = dir.path().join("fleet");
    let fleet = fleet.to_str().unwrap();

    let out = run(&["import", "-f", secret, "-f", pc, "--simulate", "-o", fleet]).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("# imported 3 ServiceProfiles and 35 ConnectivitySubscriptions"),
        "{stderr}"
    );
    assert!(Path::new(fleet).join("kustomization.yaml").exists());

    let out = run(&["plan", "-f", secret, "-f", pc, "-f", fleet, "--simulate"]).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        stdout.lines().filter(|l| l.contains("up to date")).count(),
        38,
        "{stdout}"
    );

    let out = run(&[
        "import",
        "-f",
        secret,
        "-f",
        pc,
        "--simulate",
        "--kinds",
        "service-profiles",
    ])
    .await;
    assert_eq!(out.status.code(), Some(0));
    let docs = documents(&out.stdout);
    assert_eq!(docs.len(), 3);
    assert!(
        docs.iter()
            .all(|d| d["kind"] == "ServiceProfile" && d["spec"]["externalId"].is_string())
    );

    // Unusable input: no ProviderConfig in the files.
    let out = run(&["import", "-f", secret]).await;
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no ProviderConfig in the files"));
}
