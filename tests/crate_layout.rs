//! The producer library stays light: an agent that links `secpipe_producers::Ingestor` compiles
//! neither ClickHouse (the admin read APIs live in `secpipe-gateway`) nor the notification
//! integrations (`secpipe-sinks`).

#[test]
fn the_producer_library_depends_on_neither_clickhouse_nor_the_sinks() {
    let out = std::process::Command::new(env!("CARGO"))
        .args([
            "tree",
            "--offline",
            "-p",
            "secpipe-producers",
            "-e",
            "normal",
            "--prefix",
            "none",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo tree runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tree = String::from_utf8_lossy(&out.stdout);
    assert!(tree.contains("secpipe-producers"), "{tree}");
    assert!(tree.contains("rdkafka"), "the tree is the real one: {tree}");
    for forbidden in ["clickhouse ", "secpipe-sinks", "secpipe-gateway", "axum "] {
        assert!(
            !tree.lines().any(|l| l.starts_with(forbidden)),
            "secpipe-producers depends on {forbidden}"
        );
    }
}
