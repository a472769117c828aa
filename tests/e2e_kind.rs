//! Cluster end to end with the real packaging, for users with Docker and kind:
//! `cargo test --test e2e_kind -- --ignored`. It runs `scripts/e2e-kind.sh`, which builds the
//! image, loads it into a kind cluster, installs the chart with the simulators enabled, applies
//! the examples, waits for `Ready`, deletes them and checks the finalizers are gone.

#[test]
#[ignore = "needs cluster"]
fn chart_install_examples_ready_and_clean_deletion_on_kind() {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/e2e-kind.sh");
    let status = std::process::Command::new("bash")
        .arg(&script)
        .status()
        .expect("bash runs");
    assert!(status.success(), "{} failed: {status}", script.display());
}
