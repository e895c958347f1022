//! The numeric fields of the telemetry events, found in their Avro schemas, and the hostile values
//! to set them to: shared by the unit-level fuzz test of the edge and processor
//! (`producers/tests/hostile_numbers.rs`) and the end-to-end one through the gateway and the
//! running processor (`tests/hostile_numbers_e2e.rs`).
use secpipe_schemas::telemetry::{sample, TelemetryKind};
use serde_json::Value;

/// The values every numeric field is set to: the list, then the extremes of the other
/// JSON number types (u64, i32 and its neighbours, floats).
pub fn hostile_values() -> Vec<Value> {
    let mut values: Vec<Value> = [i64::MIN, -1, 0, i64::MAX, 4_611_686_018_427_387_905]
        .map(Value::from)
        .into();
    values.extend([u64::MAX, 1 << 63].map(Value::from));
    values.extend(
        [
            i64::from(i32::MIN),
            i64::from(i32::MIN) - 1,
            i64::from(i32::MAX),
            i64::from(i32::MAX) + 1,
            65_536,
        ]
        .map(Value::from),
    );
    values.extend([1.5, -0.0, 1e300, f64::MAX, f64::MIN].map(Value::from));
    values
}

/// A step of a JSON path.
#[derive(Debug, Clone)]
pub enum Step {
    Key(String),
    Index(usize),
}

/// The path as the edge names fields: `open_descriptors[0].local_port`.
pub fn render(path: &[Step]) -> String {
    let mut out = String::new();
    for step in path {
        match step {
            Step::Key(k) if out.is_empty() => out.push_str(k),
            Step::Key(k) => {
                out.push('.');
                out.push_str(k);
            }
            Step::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

/// The place `path` points at in `json`.
pub fn slot<'v>(json: &'v mut Value, path: &[Step]) -> &'v mut Value {
    path.iter().fold(json, |v, step| match step {
        Step::Key(k) => &mut v[k.as_str()],
        Step::Index(i) => &mut v[*i],
    })
}

/// Every numeric field of an Avro record schema (JSON text), arrays entered at index 0.
pub fn numeric_paths(schema: &str) -> Vec<Vec<Step>> {
    fn walk(
        ty: &Value,
        path: &mut Vec<Step>,
        named: &mut Vec<(String, Value)>,
        out: &mut Vec<Vec<Step>>,
    ) {
        match ty {
            Value::String(name) => match name.as_str() {
                "int" | "long" | "float" | "double" => out.push(path.clone()),
                other => {
                    let known = named
                        .iter()
                        .find(|(n, _)| n == other || n.ends_with(&format!(".{other}")));
                    if let Some((_, def)) = known.cloned() {
                        walk(&def, path, named, out);
                    }
                }
            },
            Value::Array(union) => union.iter().for_each(|t| walk(t, path, named, out)),
            Value::Object(o) => match o.get("type").and_then(Value::as_str) {
                Some("record") => {
                    let name = o["name"].as_str().unwrap_or_default().to_string();
                    named.push((name, ty.clone()));
                    for field in o["fields"].as_array().into_iter().flatten() {
                        path.push(Step::Key(field["name"].as_str().unwrap().into()));
                        walk(&field["type"], path, named, out);
                        path.pop();
                    }
                }
                Some("array") => {
                    path.push(Step::Index(0));
                    walk(&o["items"], path, named, out);
                    path.pop();
                }
                Some(primitive) => walk(&Value::from(primitive), path, named, out),
                None => {}
            },
            _ => {}
        }
    }
    let schema: Value = serde_json::from_str(schema).unwrap();
    let mut out = Vec::new();
    walk(&schema, &mut Vec::new(), &mut Vec::new(), &mut out);
    out
}

/// A sample event of `kind` in which every numeric path exists (its arrays are not empty), its
/// `envelope.event_time` set to `event_time`.
pub fn base_event(kind: TelemetryKind, paths: &[Vec<Step>], event_time: i64) -> Value {
    (0..500)
        .flat_map(sample::one_of_each)
        .filter(|e| e.kind() == kind)
        .map(|mut e| {
            // Fresh, as an agent's event is, so the processor's horizon keeps it.
            e.envelope_mut().event_time = event_time;
            serde_json::to_value(e).unwrap()
        })
        .find(|json| {
            paths.iter().all(|p| {
                let parent = p[..p.len() - 1]
                    .iter()
                    .try_fold(json, |v, step| match step {
                        Step::Key(k) => v.get(k),
                        Step::Index(i) => v.get(i),
                    });
                parent.is_some_and(|v| !v.is_null())
            })
        })
        .unwrap_or_else(|| panic!("no sample {kind} has every numeric field"))
}
