//! Every migration on a current ClickHouse (chdb, ClickHouse 26.x in process, through
//! deploy/local/chdb_check.py): the single-server statements apply and every view selects; the
//! cluster-mode rewrite of every statement parses. The servers of the other tests are 18.16.
use std::process::Command;

use secpipe_sinks::clickhouse::{
    cluster::ClusterDdl, migration_statements, MIGRATIONS, SCHEMA_MIGRATIONS,
};

#[test]
fn every_migration_applies_and_every_view_selects_on_current_clickhouse() {
    let database = "secpipe_chdb";
    let mut single = vec![SCHEMA_MIGRATIONS.to_string()];
    let mut ddl = ClusterDdl::new("secpipe", database);
    let mut cluster = vec![ddl.create_database()];
    cluster.extend(ddl.rewrite(SCHEMA_MIGRATIONS).unwrap());
    for m in MIGRATIONS {
        for stmt in migration_statements(m.sql) {
            cluster.extend(ddl.rewrite(&stmt).unwrap());
            single.push(stmt);
        }
    }
    let spec = serde_json::json!({"database": database, "single": single, "cluster": cluster});
    let file = std::env::temp_dir().join(format!(
        "secpipe-chdb-{}.json",
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::write(&file, spec.to_string()).unwrap();
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/local/chdb_check.py");
    let out = Command::new("python3")
        .arg(&script)
        .arg(&file)
        .output()
        .expect("python3 runs");
    let _ = std::fs::remove_file(&file);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{}: {stderr}\n{stdout}\n(install chdb with `python3 -m pip install chdb==4.4.0`, as deploy/local/test.sh does)",
        script.display()
    );
    assert!(stdout.contains("ClickHouse 2"), "{stdout}");
    assert!(stdout.contains("view v_findings: selects"), "{stdout}");
    assert!(
        stdout.contains(&format!("parsed {} cluster-mode statements", cluster.len())),
        "{stdout}"
    );
}
