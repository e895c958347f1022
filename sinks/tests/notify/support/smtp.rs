//! A real SMTP server for the email tests: EHLO, STARTTLS (rustls, a self-signed certificate for
//! localhost and 127.0.0.1), AUTH PLAIN (only over TLS), MAIL, RCPT, DATA, QUIT. It records
//! each accepted message with whether it came over TLS and who authenticated.

use std::sync::{Arc, Mutex};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use rustls_pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

/// One message the server accepted.
#[derive(Debug, Clone)]
pub struct Received {
    pub mail_from: String,
    pub rcpt_to: Vec<String>,
    /// The message as the client sent it, dot-unstuffed.
    pub data: String,
    pub tls: bool,
    pub auth_user: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Advertise and require STARTTLS (MAIL before it gets 530).
    pub starttls: bool,
    /// Require AUTH PLAIN with these credentials before MAIL.
    pub credentials: Option<(String, String)>,
    /// Answer this many RCPT commands with 451 before accepting.
    pub transient_rcpt_failures: usize,
}

pub struct SmtpServer {
    pub port: u16,
    /// The server certificate in PEM, for the client's `ca_file`.
    pub ca_pem: String,
    received: Arc<Mutex<Vec<Received>>>,
    commands: Arc<Mutex<Vec<String>>>,
    task: JoinHandle<()>,
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct State {
    options: Mutex<Options>,
    acceptor: TlsAcceptor,
    received: Arc<Mutex<Vec<Received>>>,
    commands: Arc<Mutex<Vec<String>>>,
}

#[derive(Default)]
struct Session {
    tls: bool,
    auth_user: Option<String>,
    mail_from: Option<String>,
    rcpt_to: Vec<String>,
}

impl SmtpServer {
    pub async fn start(options: Options) -> Self {
        let certified =
            rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])
                .unwrap();
        let key =
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(certified.key_pair.serialize_der()));
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![certified.cert.der().clone()], key)
        .unwrap();
        let received = Arc::new(Mutex::new(Vec::new()));
        let commands = Arc::new(Mutex::new(Vec::new()));
        let state = Arc::new(State {
            options: Mutex::new(options),
            acceptor: TlsAcceptor::from(Arc::new(config)),
            received: received.clone(),
            commands: commands.clone(),
        });
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let state = state.clone();
                tokio::spawn(async move {
                    let mut session = Session::default();
                    let Some(tcp) = converse(tcp, &state, &mut session, true).await else {
                        return;
                    };
                    let Ok(tls) = state.acceptor.accept(tcp).await else {
                        return;
                    };
                    session = Session {
                        tls: true,
                        ..Session::default()
                    };
                    converse(tls, &state, &mut session, false).await;
                });
            }
        });
        SmtpServer {
            port,
            ca_pem: certified.cert.pem(),
            received,
            commands,
            task,
        }
    }

    pub fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    /// Every command line received, in order, across connections.
    pub fn commands(&self) -> Vec<String> {
        self.commands.lock().unwrap().clone()
    }
}

/// Serves commands until QUIT or the end of the connection; returns the stream when the client
/// starts TLS.
async fn converse<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    state: &State,
    session: &mut Session,
    greet: bool,
) -> Option<S> {
    let mut io = BufReader::new(stream);
    if greet {
        io.get_mut()
            .write_all(b"220 localhost ESMTP test\r\n")
            .await
            .ok()?;
    }
    loop {
        let mut line = String::new();
        if io.read_line(&mut line).await.ok()? == 0 {
            return None;
        }
        let line = line.trim_end().to_string();
        state.commands.lock().unwrap().push(line.clone());
        let upper = line.to_ascii_uppercase();
        let options = state.options.lock().unwrap().clone();
        let reply: String = if upper.starts_with("EHLO") {
            let mut r = String::from("250-localhost\r\n");
            if options.starttls && !session.tls {
                r.push_str("250-STARTTLS\r\n");
            }
            if session.tls || !options.starttls {
                r.push_str("250-AUTH PLAIN\r\n");
            }
            r.push_str("250 8BITMIME\r\n");
            r
        } else if upper == "STARTTLS" {
            if !options.starttls || session.tls {
                "503 no STARTTLS here\r\n".into()
            } else {
                io.get_mut().write_all(b"220 go ahead\r\n").await.ok()?;
                return Some(io.into_inner());
            }
        } else if let Some(token) = line.strip_prefix("AUTH PLAIN ") {
            if options.starttls && !session.tls {
                "538 encryption required\r\n".into()
            } else {
                let decoded = BASE64.decode(token).unwrap_or_default();
                let parts: Vec<&[u8]> = decoded.split(|b| *b == 0).collect();
                let given = (parts.len() == 3).then(|| {
                    (
                        String::from_utf8_lossy(parts[1]).to_string(),
                        String::from_utf8_lossy(parts[2]).to_string(),
                    )
                });
                if given.is_some() && given == options.credentials {
                    session.auth_user = given.map(|g| g.0);
                    "235 authenticated\r\n".into()
                } else {
                    "535 bad credentials\r\n".into()
                }
            }
        } else if upper.starts_with("MAIL FROM:") {
            if options.starttls && !session.tls {
                "530 issue STARTTLS first\r\n".into()
            } else if options.credentials.is_some() && session.auth_user.is_none() {
                "530 authentication required\r\n".into()
            } else {
                session.mail_from = Some(address(&line["MAIL FROM:".len()..]));
                "250 ok\r\n".into()
            }
        } else if upper.starts_with("RCPT TO:") {
            let mut o = state.options.lock().unwrap();
            if session.mail_from.is_none() {
                "503 MAIL first\r\n".into()
            } else if o.transient_rcpt_failures > 0 {
                o.transient_rcpt_failures -= 1;
                "451 try again later\r\n".into()
            } else {
                session.rcpt_to.push(address(&line["RCPT TO:".len()..]));
                "250 ok\r\n".into()
            }
        } else if upper == "DATA" {
            if session.rcpt_to.is_empty() {
                "503 RCPT first\r\n".into()
            } else {
                io.get_mut().write_all(b"354 end with .\r\n").await.ok()?;
                let mut data = String::new();
                loop {
                    let mut l = String::new();
                    if io.read_line(&mut l).await.ok()? == 0 {
                        return None;
                    }
                    if l == ".\r\n" {
                        break;
                    }
                    data.push_str(l.strip_prefix('.').unwrap_or(&l));
                }
                state.received.lock().unwrap().push(Received {
                    mail_from: session.mail_from.take().unwrap_or_default(),
                    rcpt_to: std::mem::take(&mut session.rcpt_to),
                    data,
                    tls: session.tls,
                    auth_user: session.auth_user.clone(),
                });
                "250 queued\r\n".into()
            }
        } else if upper == "QUIT" {
            io.get_mut().write_all(b"221 bye\r\n").await.ok()?;
            return None;
        } else if upper == "RSET" || upper == "NOOP" {
            "250 ok\r\n".into()
        } else {
            "502 not implemented\r\n".into()
        };
        io.get_mut().write_all(reply.as_bytes()).await.ok()?;
    }
}

fn address(s: &str) -> String {
    s.trim()
        .trim_start_matches('<')
        .trim_end_matches('>')
        .to_string()
}
