//! Records written by secpipe are readable by a second Avro implementation (Python's fastavro)
//! given only the `.avsc` files, and records fastavro writes are readable by secpipe.
use std::{fmt::Debug, path::Path, process::Command};

use secpipe_schemas::{catalog, AvroRecord, Codec};
use serde::Serialize;

#[path = "interop/samples.rs"]
mod samples;

struct Work {
    dir: std::path::PathBuf,
    n: usize,
}

impl Work {
    fn add<T: AvroRecord + Serialize>(&mut self, record: &T) {
        let codec = Codec::<T>::new().unwrap();
        let avsc = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("avro")
            .join(codec.current().path);
        let stem = self.dir.join(format!("{:03}", self.n));
        std::fs::write(stem.with_extension("bin"), codec.encode(record).unwrap()).unwrap();
        std::fs::write(
            stem.with_extension("json"),
            serde_json::to_vec(record).unwrap(),
        )
        .unwrap();
        std::fs::write(stem.with_extension("schema"), avsc.display().to_string()).unwrap();
        self.n += 1;
    }

    fn check_back<T: AvroRecord + PartialEq + Debug>(&self, index: usize, record: &T) {
        let codec = Codec::<T>::new().unwrap();
        let stem = self.dir.join(format!("{index:03}"));
        for ext in ["py.bin", "fromjson.bin"] {
            let bytes = std::fs::read(stem.with_extension(ext)).unwrap();
            assert_eq!(&codec.decode(&bytes).unwrap(), record, "{index:03}.{ext}");
        }
    }
}

#[test]
fn records_round_trip_through_fastavro() {
    let dir = std::env::temp_dir().join(format!("secpipe-interop-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let mut work = Work {
        dir: dir.clone(),
        n: 0,
    };

    let samples = samples::all();
    samples.write(&mut work);
    let covered = samples.record_names();
    for name in catalog().unwrap().record_names() {
        assert!(covered.contains(&name), "no interop sample for {name}");
    }

    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/fastavro_check.py");
    let out = Command::new("python3")
        .arg(&script)
        .arg(&dir)
        .output()
        .expect("python3 must be installed for the interop test");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("No module named 'fastavro'"),
        "fastavro is missing: pip install fastavro==1.13.1 (deploy/local/test.sh installs it)"
    );
    assert!(
        out.status.success(),
        "fastavro check failed:\n{stderr}\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains(&format!("{} records read", work.n)));

    samples.check_back(&work);
    let _ = std::fs::remove_dir_all(&dir);
}
