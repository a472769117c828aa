//! The files generated from src/reason.rs (the README's reasons table, the Argo CD health checks'
//! reason tables) are what `connectivity-operator generate` writes.

#[test]
fn generated_files_match_the_sources() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let drifted = connectivity_operator::generate::drifted(root).unwrap();
    assert!(
        drifted.is_empty(),
        "regenerate with `cargo run -- generate`: {drifted:?}"
    );
}
