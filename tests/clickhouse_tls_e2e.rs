//! ClickHouse over https with a configured CA: a TLS-terminating proxy (certificate signed by a
//! CA made here) in front of the local server's HTTP port. secpipe migrates and loads through it
//! when `ca_file` names that CA, and refuses the server when it trusts another CA or only the
//! public roots.
mod common;

use std::{path::PathBuf, sync::Arc};

use common::*;
use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
use rustls::pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer};

/// A CA, and a certificate for `localhost` it signed: (ca.pem, cert.pem, key.pem) in `dir`.
fn pki(dir: &std::path::Path) -> (PathBuf, PathBuf, PathBuf) {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .signed_by(&key, &ca, &ca_key)
        .unwrap();
    let paths = (
        dir.join("ca.pem"),
        dir.join("cert.pem"),
        dir.join("key.pem"),
    );
    std::fs::write(&paths.0, ca.pem()).unwrap();
    std::fs::write(&paths.1, cert.pem()).unwrap();
    std::fs::write(&paths.2, key.serialize_pem()).unwrap();
    paths
}

/// Terminates TLS on a free port and forwards each connection to `upstream` (host:port).
async fn tls_proxy(cert: &std::path::Path, key: &std::path::Path, upstream: String) -> u16 {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_file(key).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((client, _)) = listener.accept().await else {
                return;
            };
            let (acceptor, upstream) = (acceptor.clone(), upstream.clone());
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(client).await else {
                    return;
                };
                if let Ok(mut server) = tokio::net::TcpStream::connect(&upstream).await {
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut server).await;
                }
            });
        }
    });
    port
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clickhouse_over_https_trusts_the_configured_ca_and_nothing_else() {
    let s = settings("ch-tls");
    require_stack(&s).await;
    let dir = std::env::temp_dir().join(format!("secpipe-chtls-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let (ca, cert, key) = pki(&dir);
    let upstream = s.clickhouse.url.trim_start_matches("http://").to_string();
    let port = tls_proxy(&cert, &key, upstream).await;

    let mut tls = s.clone();
    tls.clickhouse.url = format!("https://localhost:{port}");
    tls.clickhouse.ca_file = ca.to_str().unwrap().into();
    tls.clickhouse.validate().expect("the CA file is valid");
    // Migrations, then rows in and out, all through TLS.
    fresh_database(&mut tls).await;
    produce_many(&s, &s.kafka.topics.findings, &findings("tls", 0, 20)).await;
    let mut loading = tls.clone();
    loading.kafka.topics = s.kafka.topics.clone();
    let (trigger, shutdown) = secpipe::runtime::Shutdown::new();
    let loader = tokio::spawn(secpipe::roles::clickhouse_loader(loading, shutdown));
    eventually(60, "20 findings loaded over https", || async {
        (finding_rows(&tls).await == 20).then_some(())
    })
    .await;
    trigger.trigger();
    loader.await.unwrap().expect("the loader ran without error");

    // Another CA, or only the public roots: the server is refused.
    let other = dir.join("other");
    std::fs::create_dir_all(&other).unwrap();
    let (other_ca, _, _) = pki(&other);
    let mut wrong = tls.clone();
    wrong.clickhouse.ca_file = other_ca.to_str().unwrap().into();
    let mut public = tls.clone();
    public.clickhouse.ca_file = String::new();
    for (what, cfg) in [("another CA", &wrong), ("the public roots", &public)] {
        let e = cfg
            .clickhouse
            .client()
            .query("SELECT 1")
            .fetch_one::<u8>()
            .await
            .expect_err(what);
        let text = format!("{e:?}");
        assert!(text.contains("InvalidCertificate"), "{what}: {text}");
    }

    // A CA file that is missing or holds no certificate fails validation, naming the setting.
    let mut missing = tls.clone();
    missing.clickhouse.ca_file = dir.join("absent.pem").to_str().unwrap().into();
    let e = missing.clickhouse.validate().unwrap_err();
    assert!(e.contains("clickhouse.ca_file"), "{e}");
    std::fs::write(dir.join("empty.pem"), "not a certificate\n").unwrap();
    missing.clickhouse.ca_file = dir.join("empty.pem").to_str().unwrap().into();
    assert!(missing.clickhouse.validate().is_err());
}
