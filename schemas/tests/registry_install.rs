//! With a registry in use (`schemas.registry_url`), every codec built afterwards writes the
//! Confluent wire format with the registered ids, and still reads single-object records.
#[path = "support/registry.rs"]
mod registry_server;

use secpipe_schemas::{
    catalog,
    ops::DeadLetter,
    registry::{self, SchemaRegistryClient},
    Codec, Framing,
};

#[tokio::test]
async fn installed_registry_ids_switch_every_new_codec_to_the_confluent_format() {
    let single = Codec::<DeadLetter>::new().unwrap();
    let (url, _) = registry_server::start_registry().await;
    let ids = SchemaRegistryClient::new(&url)
        .unwrap()
        .register_catalog(catalog().unwrap())
        .await
        .unwrap();
    assert!(registry::install(ids));
    let codec = Codec::<DeadLetter>::new().unwrap();
    assert!(matches!(codec.framing(), Framing::Confluent { .. }));
    let letter = DeadLetter {
        stage: "s".into(),
        topic: "t".into(),
        partition: 0,
        offset: 1,
        key: None,
        payload: vec![1],
        error: "e".into(),
        failed_at: 2,
    };
    let bytes = codec.encode(&letter).unwrap();
    assert_eq!(bytes[0], 0, "Confluent magic byte");
    assert_eq!(codec.decode(&bytes).unwrap(), letter);
    assert_eq!(
        codec.decode(&single.encode(&letter).unwrap()).unwrap(),
        letter,
        "old records still read"
    );
}
