//! The deployment manifests (`deploy/compose`, `deploy/k8s`) checked against the code, since
//! neither Docker nor a cluster is available where the tests run:
//! - every YAML document parses;
//! - every `SECPIPE__*` variable they set, and every mounted configuration file, loads with the
//!   real configuration structs (which reject unknown keys and bad values);
//! - every command is a real `secpipe` subcommand;
//! - probes, scrape annotations, resources and grace periods are where they must be;
//! - every KEDA ScaledObject targets an existing Deployment with the consumer group, topic and
//!   brokers that Deployment really uses, and never scales past the partition count;
//! - the ClickHouse cluster settings are well-formed XML with the elements a replicated cluster
//!   needs.
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

use secpipe::Settings;
use serde::Deserialize;
use serde_yaml::Value;

/// Configuration sections the deployments already use but the configuration structs may not
/// have yet (issue 8 adds `ops.listen`). While a section is missing from [`Settings`], its
/// variables are checked here instead (see [`check_pending`]) and reported; once the section
/// exists, they are loaded like every other variable.
const PENDING_SECTIONS: &[&str] = &["ops"];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn rel(path: &Path) -> String {
    path.strip_prefix(root())
        .unwrap_or(path)
        .display()
        .to_string()
}

/// Every `.yml`/`.yaml` file under `dir`, recursively, sorted.
fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for entry in std::fs::read_dir(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display())) {
            let path = entry.unwrap().path();
            if path.is_dir() {
                todo.push(path);
            } else if matches!(
                path.extension().and_then(|e| e.to_str()),
                Some("yml" | "yaml")
            ) {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// YAML merge keys (`<<: *anchor`), nested ones included, as Compose applies them.
fn resolve_merges(value: &mut Value) {
    match value {
        Value::Mapping(map) => {
            for (_, child) in map.iter_mut() {
                resolve_merges(child);
            }
            if let Some(merge) = map.remove("<<") {
                let sources = match merge {
                    Value::Mapping(m) => vec![m],
                    Value::Sequence(seq) => seq
                        .into_iter()
                        .map(|v| match v {
                            Value::Mapping(m) => m,
                            other => panic!("merge key with a non-mapping element: {other:?}"),
                        })
                        .collect(),
                    other => panic!("merge key with a scalar: {other:?}"),
                };
                for source in sources {
                    for (k, v) in source {
                        map.entry(k).or_insert(v);
                    }
                }
            }
        }
        Value::Sequence(seq) => seq.iter_mut().for_each(resolve_merges),
        Value::Tagged(t) => resolve_merges(&mut t.value),
        _ => {}
    }
}

/// The documents of one YAML text (empty documents dropped), merge keys applied.
fn parse_documents(text: &str) -> Result<Vec<Value>, serde_yaml::Error> {
    let mut docs = Vec::new();
    for de in serde_yaml::Deserializer::from_str(text) {
        let mut v = Value::deserialize(de)?;
        if v.is_null() {
            continue;
        }
        resolve_merges(&mut v);
        docs.push(v);
    }
    Ok(docs)
}

/// One parsed document and where it came from.
struct Doc {
    file: String,
    value: Value,
}

impl Doc {
    fn kind(&self) -> &str {
        self.value["kind"].as_str().unwrap_or("")
    }
    fn name(&self) -> &str {
        self.value["metadata"]["name"].as_str().unwrap_or("")
    }
    fn namespace(&self) -> &str {
        self.value["metadata"]["namespace"]
            .as_str()
            .unwrap_or("default")
    }
    fn origin(&self) -> String {
        format!("{}: {} {}", self.file, self.kind(), self.name())
    }
}

fn k8s_docs() -> Vec<Doc> {
    let mut docs = Vec::new();
    for path in yaml_files(&root().join("deploy/k8s")) {
        let text = std::fs::read_to_string(&path).unwrap();
        for value in parse_documents(&text).unwrap_or_else(|e| panic!("{}: {e}", rel(&path))) {
            docs.push(Doc {
                file: rel(&path),
                value,
            });
        }
    }
    docs
}

fn compose_file() -> Value {
    let path = root().join("deploy/compose/docker-compose.yml");
    let text = std::fs::read_to_string(&path).unwrap();
    let mut docs = parse_documents(&text).unwrap();
    assert_eq!(docs.len(), 1, "{}: one document expected", rel(&path));
    docs.remove(0)
}

fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn strings(v: &Value) -> Vec<String> {
    match v {
        Value::Sequence(seq) => seq
            .iter()
            .map(|x| scalar(x).unwrap_or_else(|| panic!("not a string: {x:?}")))
            .collect(),
        Value::String(s) => s.split_whitespace().map(str::to_string).collect(),
        Value::Null => Vec::new(),
        other => panic!("not a list of strings: {other:?}"),
    }
}

/// Every `SECPIPE__*` variable set anywhere in `value`: keys of mappings (Compose environment
/// maps, ConfigMap data), `name`/`value` pairs (Kubernetes env lists) and `KEY=VALUE` strings
/// (Compose environment lists).
fn collect_secpipe_vars(value: &Value, origin: &str, out: &mut Vec<(String, String, String)>) {
    match value {
        Value::Mapping(map) => {
            if let (Some(name), Some(v)) =
                (map.get("name").and_then(Value::as_str), map.get("value"))
            {
                if name.starts_with("SECPIPE__") {
                    let v = scalar(v).unwrap_or_else(|| panic!("{origin}: {name} is not a scalar"));
                    out.push((origin.to_string(), name.to_string(), v));
                }
            }
            if let Some(name) = map.get("name").and_then(Value::as_str) {
                assert!(
                    !(name.starts_with("SECPIPE__") && map.contains_key("valueFrom")),
                    "{origin}: {name} comes from valueFrom, which this test cannot check: \
                     put secrets in the mounted configuration file instead"
                );
            }
            for (k, v) in map {
                if let Some(k) = k.as_str().filter(|k| k.starts_with("SECPIPE__")) {
                    let v = scalar(v).unwrap_or_else(|| panic!("{origin}: {k} is not a scalar"));
                    out.push((origin.to_string(), k.to_string(), v));
                }
                collect_secpipe_vars(v, origin, out);
            }
        }
        Value::Sequence(seq) => {
            for v in seq {
                if let Some((k, val)) = v
                    .as_str()
                    .and_then(|s| s.split_once('='))
                    .filter(|(k, _)| k.starts_with("SECPIPE__"))
                {
                    out.push((origin.to_string(), k.to_string(), val.to_string()));
                }
                collect_secpipe_vars(v, origin, out);
            }
        }
        Value::Tagged(t) => collect_secpipe_vars(&t.value, origin, out),
        _ => {}
    }
}

fn all_secpipe_vars() -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    collect_secpipe_vars(
        &compose_file(),
        "deploy/compose/docker-compose.yml",
        &mut out,
    );
    for doc in k8s_docs() {
        collect_secpipe_vars(&doc.value, &doc.origin(), &mut out);
    }
    out
}

/// The top-level sections [`Settings`] has today.
fn known_sections() -> BTreeSet<String> {
    match serde_json::to_value(Settings::default()).unwrap() {
        serde_json::Value::Object(map) => map.keys().cloned().collect(),
        other => panic!("settings serialize to {other}"),
    }
}

fn section_of(var: &str) -> String {
    var.trim_start_matches("SECPIPE__")
        .split("__")
        .next()
        .unwrap_or("")
        .to_ascii_lowercase()
}

/// Checks a variable of a section [`Settings`] does not have yet, as that section will take it.
fn check_pending(var: &str, value: &str) -> Result<(), String> {
    match var {
        "SECPIPE__OPS__LISTEN" => value
            .parse::<SocketAddr>()
            .map(|_| ())
            .map_err(|e| format!("{var}={value}: not a socket address: {e}")),
        _ => Err(format!("{var}: no such key in the pending section")),
    }
}

/// `Settings::load_with_env`, except that variables of a pending section that [`Settings`] does
/// not know yet are checked by [`check_pending`] and reported instead of loaded.
fn load(file: Option<&Path>, env: &BTreeMap<String, String>) -> Result<Settings, String> {
    let known = known_sections();
    let mut loaded = Vec::new();
    for (k, v) in env {
        let section = section_of(k);
        if k.starts_with("SECPIPE__")
            && !known.contains(&section)
            && PENDING_SECTIONS.contains(&section.as_str())
        {
            check_pending(k, v)?;
        } else {
            loaded.push((k.clone(), v.clone()));
        }
    }
    Settings::load_with_env(file, loaded).map_err(|e| e.to_string())
}

#[test]
fn every_yaml_document_parses() {
    let mut files = 0;
    let mut documents = 0;
    let mut errors = Vec::new();
    for dir in ["deploy/compose", "deploy/k8s"] {
        let found = yaml_files(&root().join(dir));
        assert!(!found.is_empty(), "no YAML under {dir}");
        for path in found {
            files += 1;
            let text = std::fs::read_to_string(&path).unwrap();
            match parse_documents(&text) {
                Ok(docs) => documents += docs.len(),
                Err(e) => errors.push(format!("{}: {e}", rel(&path))),
            }
        }
    }
    assert!(
        errors.is_empty(),
        "YAML that does not parse:\n{}",
        errors.join("\n")
    );
    // Multi-document files count every document: more documents than files.
    assert!(documents > files, "{documents} documents in {files} files");
}

#[test]
fn the_parser_rejects_broken_yaml_and_reads_every_document() {
    assert!(parse_documents("a: [1, 2\nb: 3\n").is_err());
    assert!(parse_documents("a: 1\n  b: 2\n").is_err());
    let docs = parse_documents("a: 1\n---\nb: &x {c: 2}\nd:\n  <<: *x\n  e: 3\n").unwrap();
    assert_eq!(docs.len(), 2);
    assert_eq!(docs[1]["d"]["c"], Value::from(2));
}

#[test]
fn every_secpipe_variable_is_a_real_configuration_key() {
    let vars = all_secpipe_vars();
    assert!(
        vars.len() >= 6,
        "only {} SECPIPE__ variables found",
        vars.len()
    );
    let mut bad = Vec::new();
    for (origin, k, v) in &vars {
        let env = BTreeMap::from([(k.clone(), v.clone())]);
        if let Err(e) = load(None, &env) {
            bad.push(format!("{origin}: {k}={v}: {e}"));
        }
    }
    assert!(
        bad.is_empty(),
        "variables the configuration rejects:\n{}",
        bad.join("\n")
    );
    let pending: BTreeSet<&str> = vars
        .iter()
        .map(|(_, k, _)| k.as_str())
        .filter(|k| !known_sections().contains(&section_of(k)))
        .collect();
    // Variables of a section the configuration does not have yet: loading them for real must
    // fail on that section and nothing else (their values were checked by `check_pending`).
    for k in &pending {
        let section = section_of(k);
        let (_, _, v) = vars.iter().find(|(_, name, _)| name == k).unwrap();
        let err = Settings::load_with_env(None, [(k.to_string(), v.clone())])
            .expect_err("a section the configuration lacks cannot load")
            .to_string();
        assert!(
            err.contains(&format!("`{section}`")),
            "{k} fails for another reason than the missing [{section}] section: {err}"
        );
        eprintln!(
            "NOTE: {k} is not a configuration key yet: loading it fails only because the \
             configuration has no [{section}] section ({err}); its value was checked on its own"
        );
    }
}

#[test]
fn the_loader_rejects_unknown_keys_and_bad_values() {
    let one = |k: &str, v: &str| BTreeMap::from([(k.to_string(), v.to_string())]);
    assert!(load(None, &one("SECPIPE__KAFKA__BROKERZ", "kafka:9092")).is_err());
    assert!(load(None, &one("SECPIPE__NOSUCH__LISTEN", "0.0.0.0:1")).is_err());
    assert!(load(None, &one("SECPIPE__GATEWAY__LISTEN", "everywhere")).is_err());
    assert!(load(None, &one("SECPIPE__OPS__LISTEN", "not-an-address")).is_err());
    assert!(load(None, &one("SECPIPE__OPS__LISTENER", "0.0.0.0:9464")).is_err());
    assert!(load(None, &one("SECPIPE__KAFKA__PARTITIONS", "0")).is_err());
    assert!(load(None, &one("SECPIPE__OPS__LISTEN", "0.0.0.0:9464")).is_ok());
}

/// One secpipe container of a deployment, with everything it gets.
struct Container {
    origin: String,
    /// `secpipe` and its arguments.
    argv: Vec<String>,
    env: BTreeMap<String, String>,
    /// The text of the configuration file named by SECPIPE_CONFIG.
    config: Option<String>,
    /// The Compose service or Kubernetes object.
    owner: Value,
    container: Value,
}

impl Container {
    /// `gateway`, `process telemetry`, `sink clickhouse`, `topics create`, ...
    fn role(&self) -> String {
        self.argv[1..]
            .iter()
            .filter(|a| !a.starts_with('-'))
            .cloned()
            .collect::<Vec<_>>()
            .join(" ")
    }

    fn is_job(&self) -> bool {
        matches!(self.role().as_str(), "topics create" | "migrate")
    }

    fn settings(&self) -> Settings {
        let file = self.config.as_ref().map(|text| {
            static N: AtomicUsize = AtomicUsize::new(0);
            let path = std::env::temp_dir().join(format!(
                "secpipe-deploy-test-{}-{}.toml",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ));
            std::fs::write(&path, text).unwrap();
            path
        });
        let result = load(file.as_deref(), &self.env);
        if let Some(f) = &file {
            let _ = std::fs::remove_file(f);
        }
        result.unwrap_or_else(|e| panic!("{}: configuration does not load: {e}", self.origin))
    }

    fn ops_port(&self) -> u16 {
        let listen = self
            .env
            .get("SECPIPE__OPS__LISTEN")
            .unwrap_or_else(|| panic!("{}: SECPIPE__OPS__LISTEN is not set", self.origin));
        let addr: SocketAddr = listen.parse().unwrap();
        assert!(
            addr.ip().is_unspecified(),
            "{}: ops listens on {addr}, unreachable from outside the container",
            self.origin
        );
        addr.port()
    }
}

fn compose_containers() -> Vec<Container> {
    let compose = compose_file();
    let services = compose["services"].as_mapping().expect("services");
    let mut out = Vec::new();
    for (name, svc) in services {
        let name = name.as_str().unwrap();
        if !svc["image"].as_str().unwrap_or("").starts_with("secpipe") {
            continue;
        }
        let origin = format!("deploy/compose/docker-compose.yml: service {name}");
        let mut env = BTreeMap::new();
        match &svc["environment"] {
            Value::Mapping(m) => {
                for (k, v) in m {
                    env.insert(
                        k.as_str().unwrap().to_string(),
                        scalar(v).unwrap_or_default(),
                    );
                }
            }
            Value::Sequence(seq) => {
                for item in seq {
                    let (k, v) = item.as_str().unwrap().split_once('=').unwrap();
                    env.insert(k.to_string(), v.to_string());
                }
            }
            _ => {}
        }
        let config = env.get("SECPIPE_CONFIG").map(|path| {
            let source = strings(&svc["volumes"])
                .into_iter()
                .find_map(|v| {
                    let mut parts = v.split(':');
                    let (src, dst) = (parts.next()?, parts.next()?);
                    (dst == path).then(|| src.to_string())
                })
                .unwrap_or_else(|| panic!("{origin}: nothing is mounted at {path}"));
            std::fs::read_to_string(root().join("deploy/compose").join(&source))
                .unwrap_or_else(|e| panic!("{origin}: {source}: {e}"))
        });
        out.push(Container {
            origin,
            argv: strings(&svc["command"]),
            env,
            config,
            owner: svc.clone(),
            container: svc.clone(),
        });
    }
    out
}

fn find<'a>(docs: &'a [Doc], kind: &str, namespace: &str, name: &str) -> Option<&'a Doc> {
    docs.iter()
        .find(|d| d.kind() == kind && d.namespace() == namespace && d.name() == name)
}

fn k8s_containers(docs: &[Doc]) -> Vec<Container> {
    let mut out = Vec::new();
    for doc in docs
        .iter()
        .filter(|d| matches!(d.kind(), "Deployment" | "Job"))
    {
        let pod = &doc.value["spec"]["template"]["spec"];
        for c in pod["containers"].as_sequence().expect("containers") {
            let origin = format!(
                "{}, container {}",
                doc.origin(),
                c["name"].as_str().unwrap()
            );
            let mut argv = strings(&c["command"]);
            argv.extend(strings(&c["args"]));
            let mut env = BTreeMap::new();
            for from in c["envFrom"].as_sequence().into_iter().flatten() {
                let cm = from["configMapRef"]["name"]
                    .as_str()
                    .unwrap_or_else(|| panic!("{origin}: only configMapRef is checked"));
                let cm = find(docs, "ConfigMap", doc.namespace(), cm)
                    .unwrap_or_else(|| panic!("{origin}: no ConfigMap {cm}"));
                for (k, v) in cm.value["data"].as_mapping().expect("data") {
                    env.insert(k.as_str().unwrap().to_string(), scalar(v).unwrap());
                }
            }
            for e in c["env"].as_sequence().into_iter().flatten() {
                if let Some(v) = scalar(&e["value"]) {
                    env.insert(e["name"].as_str().unwrap().to_string(), v);
                }
            }
            let config = env.get("SECPIPE_CONFIG").map(|path| {
                secret_file(docs, doc, pod, c, path)
                    .unwrap_or_else(|| panic!("{origin}: no Secret key is mounted at {path}"))
            });
            out.push(Container {
                origin,
                argv,
                env,
                config,
                owner: doc.value.clone(),
                container: c.clone(),
            });
        }
    }
    out
}

/// The text of the Secret key mounted at `path` in container `c`.
fn secret_file(docs: &[Doc], doc: &Doc, pod: &Value, c: &Value, path: &str) -> Option<String> {
    for mount in c["volumeMounts"].as_sequence()? {
        let dir = mount["mountPath"].as_str()?;
        let Some(key) = path.strip_prefix(&format!("{}/", dir.trim_end_matches('/'))) else {
            continue;
        };
        let volume = pod["volumes"]
            .as_sequence()?
            .iter()
            .find(|v| v["name"] == mount["name"])?;
        let secret = volume["secret"]["secretName"].as_str()?;
        let secret = find(docs, "Secret", doc.namespace(), secret)?;
        return secret.value["stringData"][key].as_str().map(str::to_string);
    }
    None
}

/// The roles every deployment must run: each long-running role and both jobs.
fn expected_roles() -> BTreeSet<String> {
    let mut roles: BTreeSet<String> = [
        "gateway",
        "sink clickhouse",
        "sink notify",
        "topics create",
        "migrate",
    ]
    .into_iter()
    .map(str::to_string)
    .collect();
    for p in secpipe::topics::PROCESSORS {
        roles.insert(format!("process {p}"));
    }
    roles
}

#[test]
fn every_container_runs_a_role_and_its_configuration_loads() {
    let docs = k8s_docs();
    for (what, containers) in [
        ("compose", compose_containers()),
        ("k8s", k8s_containers(&docs)),
    ] {
        let roles: BTreeSet<String> = containers.iter().map(Container::role).collect();
        assert_eq!(roles, expected_roles(), "{what}: roles deployed");
        for c in &containers {
            assert!(c.config.is_some(), "{}: no configuration file", c.origin);
            let settings = c.settings();
            if !settings.notify.integrations.is_empty() {
                secpipe_sinks::notify::Notifier::new(&settings.notify)
                    .unwrap_or_else(|e| panic!("{}: [notify] does not build: {e}", c.origin));
            }
            assert!(
                !settings.gateway.tokens.is_empty(),
                "{}: no gateway token: every request would get 401",
                c.origin
            );
            assert!(
                !settings.gateway.redaction_key.is_empty(),
                "{}: no redaction key: gateway and telemetry processor would disagree",
                c.origin
            );
            if c.role() == "gateway" {
                assert!(
                    settings.gateway.listen.ip().is_unspecified(),
                    "{}: the gateway listens on {}",
                    c.origin,
                    settings.gateway.listen
                );
            }
        }
    }
}

#[test]
fn every_command_is_a_real_secpipe_subcommand() {
    let help = |args: &[String]| {
        Command::new(env!("CARGO_BIN_EXE_secpipe"))
            .args(args)
            .arg("--help")
            .env_remove("SECPIPE_CONFIG")
            .output()
            .unwrap()
    };
    // The check can fail: a made-up role is refused.
    assert!(!help(&["process".into(), "no-such-processor".into()])
        .status
        .success());
    assert!(!help(&["no-such-role".into()]).status.success());
    let docs = k8s_docs();
    let mut containers = compose_containers();
    containers.extend(k8s_containers(&docs));
    for c in &containers {
        assert_eq!(
            c.argv.first().map(String::as_str),
            Some("secpipe"),
            "{}: {:?} does not run secpipe",
            c.origin,
            c.argv
        );
        let out = help(&c.argv[1..]);
        assert!(
            out.status.success(),
            "{}: `{}` is not a secpipe command: {}",
            c.origin,
            c.argv.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

fn int(v: &Value) -> Option<i64> {
    v.as_i64().or_else(|| v.as_str()?.parse().ok())
}

/// `kafka.partitions` of the Kubernetes deployment: what its `secpipe topics create` Job makes.
fn k8s_partitions(containers: &[Container]) -> i32 {
    let topics = containers
        .iter()
        .find(|c| c.role() == "topics create")
        .expect("a topics create Job");
    topics.settings().kafka.partitions
}

fn container_port(container: &Value, port: &Value) -> Option<u16> {
    if let Some(n) = int(port) {
        return u16::try_from(n).ok();
    }
    let name = port.as_str()?;
    container["ports"]
        .as_sequence()?
        .iter()
        .find(|p| p["name"].as_str() == Some(name))
        .and_then(|p| int(&p["containerPort"]))
        .and_then(|n| u16::try_from(n).ok())
}

#[test]
fn every_deployment_has_probes_scrape_annotations_resources_and_grace() {
    let docs = k8s_docs();
    let containers = k8s_containers(&docs);
    let partitions = k8s_partitions(&containers);
    let deployments: Vec<&Container> = containers
        .iter()
        .filter(|c| c.owner["kind"] == "Deployment")
        .collect();
    assert!(deployments.len() >= 6, "{} Deployments", deployments.len());
    for c in deployments {
        let o = &c.origin;
        let port = c.ops_port();
        for (probe, path) in [("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")] {
            let get = &c.container[probe]["httpGet"];
            assert_eq!(get["path"].as_str(), Some(path), "{o}: {probe} path");
            assert_eq!(
                container_port(&c.container, &get["port"]),
                Some(port),
                "{o}: {probe} must probe the ops port {port}"
            );
        }
        let template = &c.owner["spec"]["template"];
        let ann = &template["metadata"]["annotations"];
        assert_eq!(ann["prometheus.io/scrape"].as_str(), Some("true"), "{o}");
        assert_eq!(
            int(&ann["prometheus.io/port"]),
            Some(i64::from(port)),
            "{o}"
        );
        assert_eq!(ann["prometheus.io/path"].as_str(), Some("/metrics"), "{o}");
        let res = &c.container["resources"];
        for key in [
            &res["requests"]["cpu"],
            &res["requests"]["memory"],
            &res["limits"]["memory"],
        ] {
            assert!(scalar(key).is_some(), "{o}: resources: {res:?}");
        }
        let grace = int(&template["spec"]["terminationGracePeriodSeconds"]);
        assert!(
            grace.is_some_and(|g| g > 30),
            "{o}: terminationGracePeriodSeconds {grace:?}: secpipe may take 30 s to stop"
        );
        if let Some(replicas) = int(&c.owner["spec"]["replicas"]) {
            if c.role() != "gateway" {
                assert!(
                    replicas <= i64::from(partitions),
                    "{o}: {replicas} replicas, {partitions} partitions"
                );
            }
        }
    }
}

#[test]
fn the_gateway_service_reaches_the_gateway_port() {
    let docs = k8s_docs();
    let containers = k8s_containers(&docs);
    let gw = containers
        .iter()
        .find(|c| c.role() == "gateway")
        .expect("gateway");
    let listen = gw.settings().gateway.listen.port();
    let labels = &gw.owner["spec"]["template"]["metadata"]["labels"];
    let services: Vec<&Doc> = docs
        .iter()
        .filter(|d| d.kind() == "Service")
        .filter(|d| {
            d.value["spec"]["selector"]
                .as_mapping()
                .is_some_and(|sel| sel.iter().all(|(k, v)| &labels[k.as_str().unwrap()] == v))
        })
        .collect();
    assert_eq!(services.len(), 1, "one Service selects the gateway pods");
    let ports = services[0].value["spec"]["ports"].as_sequence().unwrap();
    assert!(
        ports
            .iter()
            .any(|p| container_port(&gw.container, &p["targetPort"]) == Some(listen)),
        "{}: no port targets the gateway's {listen}",
        services[0].origin()
    );
}

/// The consumer group and input topic a role really uses, from its settings.
fn consumer_of(role: &str, s: &Settings) -> Option<(String, Option<String>)> {
    let t = &s.kafka.topics;
    let group = |p: &str| format!("{}{p}", s.processors.group_prefix);
    Some(match role {
        "process admin-events" => (group("admin-events"), Some(t.scan_failures.clone())),
        "process scan-results" => (group("scan-results"), Some(t.scan_results.clone())),
        "process telemetry" => (group("telemetry"), Some(t.telemetry.clone())),
        // One consumer group per table; the loader scales on its dominant one.
        "sink clickhouse" => (
            format!("{}.telemetry_events", s.loader.group_id),
            Some(t.telemetry_clean.clone()),
        ),
        "sink notify" => (s.notifier.group_id.clone(), Some(t.alerts.clone())),
        other => {
            assert!(
                !other.starts_with("process "),
                "{other}: add its consumer group and input topic to this test"
            );
            return None;
        }
    })
}

#[test]
fn every_scaled_object_targets_a_deployment_within_the_partition_count() {
    let docs = k8s_docs();
    let containers = k8s_containers(&docs);
    let partitions = k8s_partitions(&containers);
    let readme = std::fs::read_to_string(root().join("deploy/README.md")).unwrap();
    assert!(
        readme.contains(&format!("`kafka.partitions = {partitions}`")),
        "deploy/README.md must document the partition count of the manifests ({partitions})"
    );
    let mut scaled = BTreeSet::new();
    for so in docs.iter().filter(|d| d.kind() == "ScaledObject") {
        let o = so.origin();
        assert_eq!(
            so.value["apiVersion"].as_str(),
            Some("keda.sh/v1alpha1"),
            "{o}"
        );
        let spec = &so.value["spec"];
        let target = &spec["scaleTargetRef"];
        assert!(
            matches!(target["kind"].as_str(), None | Some("Deployment")),
            "{o}: scales a {:?}",
            target["kind"]
        );
        let name = target["name"].as_str().expect("scaleTargetRef.name");
        let deployment = find(&docs, "Deployment", so.namespace(), name)
            .unwrap_or_else(|| panic!("{o}: no Deployment {name} in {}", so.namespace()));
        let c = containers
            .iter()
            .find(|c| c.owner == deployment.value)
            .unwrap();
        let max = int(&spec["maxReplicaCount"]).expect("maxReplicaCount");
        let min = int(&spec["minReplicaCount"]).unwrap_or(0);
        assert!(
            (1..=i64::from(partitions)).contains(&max),
            "{o}: maxReplicaCount {max} with {partitions} partitions"
        );
        assert!((1..=max).contains(&min), "{o}: minReplicaCount {min}");
        let settings = c.settings();
        let (group, topic) = consumer_of(&c.role(), &settings)
            .unwrap_or_else(|| panic!("{o}: {} is not a consumer", c.role()));
        let triggers = spec["triggers"].as_sequence().expect("triggers");
        assert_eq!(triggers.len(), 1, "{o}: one trigger");
        let t = &triggers[0];
        assert_eq!(t["type"].as_str(), Some("kafka"), "{o}");
        let m = &t["metadata"];
        assert_eq!(m["consumerGroup"].as_str(), Some(group.as_str()), "{o}");
        assert_eq!(
            m["bootstrapServers"].as_str(),
            Some(settings.kafka.brokers.as_str()),
            "{o}: KEDA must ask the brokers the consumers use"
        );
        match (&topic, m["topic"].as_str()) {
            (Some(want), got) => assert_eq!(got, Some(want.as_str()), "{o}: topic"),
            (None, Some(got)) => assert!(
                settings.kafka.topics.all().contains(&got),
                "{o}: topic {got} is not a configured topic"
            ),
            (None, None) => {}
        }
        assert!(
            int(&m["lagThreshold"]).is_some_and(|l| l > 0),
            "{o}: lagThreshold {:?}",
            m["lagThreshold"]
        );
        assert!(scaled.insert(c.role()), "{o}: {} scaled twice", c.role());
    }
    let mut want: BTreeSet<String> = secpipe::topics::PROCESSORS
        .iter()
        .map(|p| format!("process {p}"))
        .collect();
    want.insert("sink clickhouse".into());
    assert!(
        want.is_subset(&scaled),
        "ScaledObjects for {want:?}, found {scaled:?}"
    );
}

fn duration_secs(v: &Value) -> Option<u64> {
    let s = scalar(v)?;
    if let Some(m) = s.strip_suffix('m') {
        return m.parse::<u64>().ok().map(|m| m * 60);
    }
    s.trim_end_matches('s').parse().ok()
}

#[test]
fn compose_roles_have_health_checks_and_real_dependencies() {
    let compose = compose_file();
    let services = compose["services"].as_mapping().unwrap();
    let names: BTreeSet<&str> = services.keys().filter_map(Value::as_str).collect();
    for (name, svc) in services {
        for (dep, cond) in svc["depends_on"].as_mapping().into_iter().flatten() {
            let dep = dep.as_str().unwrap();
            assert!(names.contains(dep), "{name:?} depends on unknown {dep}");
            assert!(
                matches!(
                    cond["condition"].as_str(),
                    Some("service_started" | "service_healthy" | "service_completed_successfully")
                ),
                "{name:?} -> {dep}: {cond:?}"
            );
        }
    }
    let containers = compose_containers();
    let job_service = |role: &str| {
        let c = containers.iter().find(|c| c.role() == role).unwrap();
        services
            .iter()
            .find(|(_, s)| **s == c.owner)
            .unwrap()
            .0
            .as_str()
            .unwrap()
            .to_string()
    };
    let (topics, migrate) = (job_service("topics create"), job_service("migrate"));
    for c in &containers {
        let o = &c.origin;
        let svc = &c.owner;
        assert!(
            duration_secs(&svc["stop_grace_period"]).is_some_and(|s| s > 30),
            "{o}: stop_grace_period {:?}",
            svc["stop_grace_period"]
        );
        if c.is_job() {
            assert_eq!(svc["restart"].as_str(), Some("no"), "{o}: a job runs once");
            continue;
        }
        let test = strings(&svc["healthcheck"]["test"]).join(" ");
        let port = c.ops_port();
        assert!(
            test.contains(&format!(":{port}/healthz")),
            "{o}: health check {test:?} must GET /healthz on port {port}"
        );
        let after = |job: &str| svc["depends_on"][job]["condition"].as_str();
        assert_eq!(
            after(&topics),
            Some("service_completed_successfully"),
            "{o}: must start after {topics}"
        );
        if c.role() != "gateway" {
            assert_eq!(
                after(&migrate),
                Some("service_completed_successfully"),
                "{o}: must start after {migrate}"
            );
        }
    }
}

#[test]
fn the_kustomizations_list_every_manifest() {
    let dir = root().join("deploy/k8s");
    let k: Value =
        serde_yaml::from_str(&std::fs::read_to_string(dir.join("kustomization.yaml")).unwrap())
            .unwrap();
    let listed: BTreeSet<String> = strings(&k["resources"]).into_iter().collect();
    let present: BTreeSet<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".yaml") && n != "kustomization.yaml")
        .collect();
    assert_eq!(listed, present, "deploy/k8s/kustomization.yaml resources");
    let ch = dir.join("clickhouse");
    let k: Value =
        serde_yaml::from_str(&std::fs::read_to_string(ch.join("kustomization.yaml")).unwrap())
            .unwrap();
    let generated = k["configMapGenerator"].as_sequence().unwrap();
    assert!(!generated.is_empty());
    for g in generated {
        for f in strings(&g["files"]) {
            assert!(
                ch.join(&f).is_file(),
                "deploy/k8s/clickhouse: {f} is missing"
            );
        }
    }
}

/// A minimal XML element tree: enough to check that a ClickHouse config file is well-formed and
/// to read its elements.
#[derive(Debug)]
struct Element {
    name: String,
    children: Vec<Element>,
    text: String,
}

impl Element {
    fn child(&self, name: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.name == name)
    }
}

fn parse_xml(text: &str) -> Result<Element, String> {
    let mut stack = vec![Element {
        name: String::new(),
        children: Vec::new(),
        text: String::new(),
    }];
    let mut rest = text;
    while let Some(start) = rest.find('<') {
        stack
            .last_mut()
            .unwrap()
            .text
            .push_str(rest[..start].trim());
        rest = &rest[start..];
        let (end_marker, skip) = if rest.starts_with("<!--") {
            ("-->", true)
        } else if rest.starts_with("<?") {
            ("?>", true)
        } else {
            (">", false)
        };
        let end = rest
            .find(end_marker)
            .ok_or_else(|| format!("unterminated {}", &rest[..rest.len().min(20)]))?;
        let tag = &rest[1..end];
        rest = &rest[end + end_marker.len()..];
        if skip {
            continue;
        }
        if let Some(name) = tag.strip_prefix('/') {
            let done = stack
                .pop()
                .filter(|e| !e.name.is_empty())
                .ok_or("stray end tag")?;
            if done.name != name.trim() {
                return Err(format!("<{}> closed by </{}>", done.name, name.trim()));
            }
            stack.last_mut().unwrap().children.push(done);
            continue;
        }
        let self_closing = tag.ends_with('/');
        let name = tag
            .trim_end_matches('/')
            .split_whitespace()
            .next()
            .ok_or("empty tag")?
            .to_string();
        if name.contains(['<', '>', '"', '=']) {
            return Err(format!("bad tag <{tag}>"));
        }
        let element = Element {
            name,
            children: Vec::new(),
            text: String::new(),
        };
        if self_closing {
            stack.last_mut().unwrap().children.push(element);
        } else {
            stack.push(element);
        }
    }
    if stack.len() != 1 {
        return Err(format!("<{}> is never closed", stack.last().unwrap().name));
    }
    let mut doc = stack.pop().unwrap();
    if doc.children.len() != 1 || !rest.trim().is_empty() {
        return Err("not exactly one root element".into());
    }
    Ok(doc.children.pop().unwrap())
}

#[test]
fn the_xml_checker_rejects_malformed_xml() {
    assert!(parse_xml("<a><b></a></b>").is_err());
    assert!(parse_xml("<a><b></b>").is_err());
    assert!(parse_xml("<a></a><b/>").is_err());
    assert!(parse_xml("<a><!-- unterminated </a>").is_err());
    let ok = parse_xml("<?xml version=\"1.0\"?><a><!-- <x> --><b k=\"v\"/><c>t</c></a>").unwrap();
    assert_eq!(ok.child("c").unwrap().text, "t");
}

#[test]
fn the_clickhouse_cluster_settings_are_complete() {
    let ch = root().join("deploy/k8s/clickhouse");
    let server =
        parse_xml(&std::fs::read_to_string(ch.join("config.d/secpipe-cluster.xml")).unwrap())
            .unwrap_or_else(|e| panic!("config.d/secpipe-cluster.xml: {e}"));
    assert_eq!(server.name, "clickhouse");
    let clusters = server.child("remote_servers").expect("remote_servers");
    let macros = server.child("macros").expect("macros");
    let cluster = &macros.child("cluster").expect("macros/cluster").text;
    let replicas = &clusters
        .child(cluster)
        .unwrap_or_else(|| panic!("remote_servers has no cluster {cluster}"))
        .child("shard")
        .expect("shard")
        .children;
    let replica_hosts: BTreeSet<&str> = replicas
        .iter()
        .filter(|r| r.name == "replica")
        .map(|r| r.child("host").expect("host").text.as_str())
        .collect();
    assert!(
        replica_hosts.len() >= 2,
        "a replicated cluster: {replica_hosts:?}"
    );
    for m in ["shard", "replica"] {
        assert!(macros.child(m).is_some(), "macros/{m}");
    }
    let keeper_nodes = server
        .child("zookeeper")
        .expect("zookeeper")
        .children
        .iter()
        .filter(|n| n.name == "node")
        .count();
    let keeper = parse_xml(&std::fs::read_to_string(ch.join("keeper/keeper.xml")).unwrap())
        .unwrap_or_else(|e| panic!("keeper/keeper.xml: {e}"));
    let raft = keeper
        .child("keeper_server")
        .and_then(|k| k.child("raft_configuration"))
        .expect("keeper_server/raft_configuration");
    let raft_servers = raft.children.iter().filter(|s| s.name == "server").count();
    assert_eq!(raft_servers % 2, 1, "an odd number of Keeper servers");
    assert_eq!(
        keeper_nodes, raft_servers,
        "the server's zookeeper section names every Keeper server"
    );
    let readme = std::fs::read_to_string(ch.join("README.md")).unwrap();
    assert!(readme.contains("ReplicatedReplacingMergeTree"));
}

#[test]
fn kubernetes_runs_clickhouse_in_cluster_mode_and_kafka_over_sasl() {
    let ch = root().join("deploy/k8s/clickhouse");
    let server =
        parse_xml(&std::fs::read_to_string(ch.join("config.d/secpipe-cluster.xml")).unwrap())
            .unwrap();
    let cluster = server
        .child("macros")
        .and_then(|m| m.child("cluster"))
        .expect("macros/cluster")
        .text
        .clone();
    let docs = k8s_docs();
    let containers = k8s_containers(&docs);
    assert!(!containers.is_empty());
    for c in &containers {
        let s = c.settings();
        assert_eq!(
            s.clickhouse.cluster, cluster,
            "{}: clickhouse.cluster names the servers' cluster",
            c.origin
        );
        assert!(
            s.kafka.security_protocol.starts_with("sasl_"),
            "{}: Kafka over SASL",
            c.origin
        );
        assert!(!s.kafka.sasl_username.is_empty(), "{}", c.origin);
    }
    // Every KEDA kafka trigger logs in through a TriggerAuthentication whose Secret exists.
    let mut triggers = 0;
    for d in docs.iter().filter(|d| d.kind() == "ScaledObject") {
        for t in d.value["spec"]["triggers"].as_sequence().unwrap() {
            triggers += 1;
            let auth = t["authenticationRef"]["name"]
                .as_str()
                .unwrap_or_else(|| panic!("{}: a trigger without authenticationRef", d.origin()));
            let ta = find(&docs, "TriggerAuthentication", d.namespace(), auth)
                .unwrap_or_else(|| panic!("{}: no TriggerAuthentication {auth}", d.origin()));
            let params: BTreeSet<&str> = ta.value["spec"]["secretTargetRef"]
                .as_sequence()
                .unwrap()
                .iter()
                .map(|r| {
                    let secret = r["name"].as_str().unwrap();
                    assert!(
                        find(&docs, "Secret", d.namespace(), secret).is_some(),
                        "{auth}: Secret {secret}"
                    );
                    r["parameter"].as_str().unwrap()
                })
                .collect();
            assert_eq!(params, BTreeSet::from(["sasl", "username", "password"]));
        }
    }
    assert!(triggers > 0);
}

#[test]
fn compose_runs_clickhouse_in_cluster_mode_on_a_cluster_it_defines() {
    let xml =
        std::fs::read_to_string(root().join("deploy/compose/clickhouse-cluster.xml")).unwrap();
    let server = parse_xml(&xml).unwrap_or_else(|e| panic!("clickhouse-cluster.xml: {e}"));
    let macros = server.child("macros").expect("macros");
    let cluster = macros
        .child("cluster")
        .expect("macros/cluster")
        .text
        .clone();
    for m in ["shard", "replica"] {
        assert!(macros.child(m).is_some(), "macros/{m}");
    }
    assert!(
        server
            .child("remote_servers")
            .and_then(|r| r.child(&cluster))
            .is_some(),
        "remote_servers defines {cluster}"
    );
    assert!(server.child("zookeeper").is_some() && server.child("keeper_server").is_some());
    let compose = compose_file();
    let mounts = strings(&compose["services"]["clickhouse"]["volumes"]);
    assert!(
        mounts
            .iter()
            .any(|m| m.starts_with("./clickhouse-cluster.xml:/etc/clickhouse-server/config.d/")),
        "{mounts:?}"
    );
    for c in compose_containers() {
        assert_eq!(c.settings().clickhouse.cluster, cluster, "{}", c.origin);
    }
}
