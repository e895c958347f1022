//! The Confluent framing and the registry client, against a local HTTP server that speaks the
//! Schema Registry's REST API (`POST /subjects/{subject}/versions`, `GET /schemas/ids/{id}`).
use secpipe_schemas::{
    catalog,
    registry::{RegistryError, RegistryIds, SchemaRegistryClient},
    scan::{RepoContext, ScanReport},
    Codec, DecodeError, Framing,
};

#[path = "support/registry.rs"]
mod registry_server;
use registry_server::start_registry;

fn report() -> ScanReport {
    ScanReport {
        id: "a7d6e2f0-1111-4222-8333-944455556666".into(),
        scan_mode: Some("ci".into()),
        tool: None,
        repo_context: RepoContext {
            repository_name: Some("billing".into()),
            ..Default::default()
        },
        repo_type: vec!["go".into()],
        team: Some("payments".into()),
        report_summary: vec![],
        origin: "track".into(),
        received_at: 1_700_000_000_000_000,
    }
}

#[tokio::test]
async fn records_framed_with_registry_ids_round_trip_and_both_framings_decode() {
    let (url, shared) = start_registry().await;
    let client = SchemaRegistryClient::new(&url).unwrap();
    let catalog = catalog().unwrap();
    let ids = client.register_catalog(catalog).await.unwrap();
    assert_eq!(
        ids.len(),
        catalog.versions().len(),
        "every version registered"
    );
    // Registering again is idempotent: the same ids come back.
    let again = client.register_catalog(catalog).await.unwrap();
    let current = catalog.current("io.secpipe.scan.ScanReport").unwrap();
    assert_eq!(again.id(current.fingerprint), ids.id(current.fingerprint));
    assert!(shared
        .lock()
        .unwrap()
        .subjects
        .contains_key("io.secpipe.scan.ScanReport"));

    let confluent = Codec::<ScanReport>::new()
        .unwrap()
        .with_registry(&ids)
        .unwrap();
    let id = ids.id(current.fingerprint).unwrap();
    assert_eq!(confluent.framing(), Framing::Confluent { schema_id: id });
    let bytes = confluent.encode(&report()).unwrap();
    assert_eq!(bytes[0], 0);
    assert_eq!(u32::from_be_bytes(bytes[1..5].try_into().unwrap()), id);
    assert_eq!(confluent.decode(&bytes).unwrap(), report());

    // A single-object record decodes with the same codec, and vice versa.
    let single = Codec::<ScanReport>::new().unwrap();
    let so = single.encode(&report()).unwrap();
    assert_eq!(confluent.decode(&so).unwrap(), report());
    assert!(matches!(single.decode(&bytes), Err(DecodeError::UnknownSchemaId(i)) if i == id));

    // An id nobody registered is a typed error.
    let mut unknown = bytes.clone();
    unknown[1..5].copy_from_slice(&9999u32.to_be_bytes());
    assert_eq!(
        confluent.decode(&unknown),
        Err(DecodeError::UnknownSchemaId(9999))
    );
}

#[tokio::test]
async fn ids_registered_by_another_producer_are_learned_only_for_known_schemas() {
    let (url, _shared) = start_registry().await;
    let client = SchemaRegistryClient::new(&url).unwrap();
    let catalog = catalog().unwrap();
    let current = catalog.current("io.secpipe.scan.ScanReport").unwrap();
    // Another producer registers secpipe's schema (its own text, same canonical form) ...
    let theirs = client
        .register("shared-subject", current.source)
        .await
        .unwrap();
    let mut ids = RegistryIds::default();
    assert_eq!(
        client.learn(theirs, catalog, &mut ids).await.unwrap(),
        current.fingerprint
    );
    assert_eq!(ids.fingerprint(theirs), Some(current.fingerprint));
    // ... and a schema secpipe does not know.
    let foreign = client
        .register(
            "other",
            r#"{"type":"record","name":"Other","fields":[{"name":"x","type":"int"}]}"#,
        )
        .await
        .unwrap();
    assert!(matches!(
        client.learn(foreign, catalog, &mut ids).await,
        Err(RegistryError::ForeignSchema { .. })
    ));
    assert!(matches!(
        client.schema(4242).await,
        Err(RegistryError::Refused { status: 404, .. })
    ));
}

#[tokio::test]
async fn an_unreachable_registry_is_a_typed_error() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let client = SchemaRegistryClient::new(&url).unwrap();
    assert!(matches!(
        client.register_catalog(catalog().unwrap()).await,
        Err(RegistryError::Unreachable { .. })
    ));
}
