//! A minimal SMTP submission client (RFC 5321, STARTTLS per RFC 3207, AUTH PLAIN per RFC 4954):
//! one connection per message, enough to hand a notification to a relay. Replies 4xx are
//! transient (retried), 5xx permanent; a server that does not offer STARTTLS is refused rather
//! than spoken to in plain text.

use std::sync::Arc;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use rustls_pki_types::ServerName;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::{SendError, Sent};

/// Longest reply line and most lines of one reply a server may send.
const MAX_LINE: u64 = 4096;
const MAX_LINES: usize = 100;

/// Where and how to submit.
pub(crate) struct SmtpClient {
    pub host: String,
    pub port: u16,
    pub helo: String,
    /// `None`: no TLS (a relay on the loopback interface only).
    pub tls: Option<(TlsConnector, ServerName<'static>)>,
    pub credentials: Option<(String, String)>,
}

/// One message: the envelope and the data (header and body, CRLF line ends).
pub(crate) struct Envelope<'a> {
    pub from: &'a str,
    pub to: &'a str,
    pub data: &'a str,
}

struct Reply {
    code: u16,
    lines: Vec<String>,
}

impl Reply {
    fn text(&self) -> String {
        self.lines.join(" ")
    }

    /// Whether an EHLO reply lists `keyword` (and, when given, `param` among its parameters).
    fn has_extension(&self, keyword: &str, param: Option<&str>) -> bool {
        self.lines.iter().skip(1).any(|l| {
            let mut words = l.split_whitespace();
            words
                .next()
                .is_some_and(|w| w.eq_ignore_ascii_case(keyword))
                && param.is_none_or(|p| words.any(|w| w.eq_ignore_ascii_case(p)))
        })
    }
}

struct Conn<S> {
    io: BufReader<S>,
}

fn io_error(e: std::io::Error) -> SendError {
    SendError::Connect(e.to_string())
}

impl<S: AsyncRead + AsyncWrite + Unpin> Conn<S> {
    fn new(stream: S) -> Self {
        Conn {
            io: BufReader::new(stream),
        }
    }

    async fn reply(&mut self) -> Result<Reply, SendError> {
        let mut lines = Vec::new();
        loop {
            let mut line = String::new();
            let n = (&mut self.io)
                .take(MAX_LINE)
                .read_line(&mut line)
                .await
                .map_err(io_error)?;
            if n == 0 {
                return Err(SendError::Protocol(
                    "connection closed by the server".into(),
                ));
            }
            if !line.ends_with('\n') || lines.len() >= MAX_LINES {
                return Err(SendError::Protocol("reply too long".into()));
            }
            let line = line.trim_end_matches(['\r', '\n']);
            let code = line
                .get(..3)
                .and_then(|c| c.parse::<u16>().ok())
                .filter(|c| (200..600).contains(c))
                .ok_or_else(|| SendError::Protocol(format!("unreadable reply {line:?}")))?;
            let more = line.as_bytes().get(3) == Some(&b'-');
            lines.push(line.get(4..).unwrap_or("").to_string());
            if !more {
                return Ok(Reply { code, lines });
            }
        }
    }

    async fn write(&mut self, data: &[u8]) -> Result<(), SendError> {
        let stream = self.io.get_mut();
        stream.write_all(data).await.map_err(io_error)?;
        stream.flush().await.map_err(io_error)
    }

    /// Sends `command` and reads the reply, which must have one of the codes `ok`.
    async fn command(&mut self, command: &str, ok: &[u16]) -> Result<Reply, SendError> {
        self.write(format!("{command}\r\n").as_bytes()).await?;
        expect(self.reply().await?, ok)
    }
}

fn expect(reply: Reply, ok: &[u16]) -> Result<Reply, SendError> {
    if ok.contains(&reply.code) {
        Ok(reply)
    } else {
        Err(SendError::Smtp {
            code: reply.code,
            message: reply.text(),
        })
    }
}

/// `data` dot-stuffed and terminated for DATA: lines starting with '.' get another, then
/// `CRLF . CRLF`.
pub(crate) fn dot_stuff(data: &str) -> String {
    let mut out = String::with_capacity(data.len() + 8);
    for line in data.split_inclusive("\r\n") {
        if line.starts_with('.') {
            out.push('.');
        }
        out.push_str(line);
    }
    if !out.ends_with("\r\n") {
        out.push_str("\r\n");
    }
    out.push_str(".\r\n");
    out
}

impl SmtpClient {
    /// Submits one message in its own connection.
    pub(crate) async fn send(&self, mail: &Envelope<'_>) -> Result<Sent, SendError> {
        let tcp = TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(|e| SendError::Connect(format!("{}:{}: {e}", self.host, self.port)))?;
        let mut conn = Conn::new(tcp);
        expect(conn.reply().await?, &[220])?;
        let ehlo = conn.command(&format!("EHLO {}", self.helo), &[250]).await?;
        let Some((connector, server_name)) = &self.tls else {
            return self.transaction(&mut conn, &ehlo, mail).await;
        };
        if !ehlo.has_extension("STARTTLS", None) {
            return Err(SendError::Tls("the server does not offer STARTTLS".into()));
        }
        conn.command("STARTTLS", &[220]).await?;
        if !conn.io.buffer().is_empty() {
            // Anything sent before the handshake could be an injected command.
            return Err(SendError::Protocol(
                "data received before the TLS handshake".into(),
            ));
        }
        let tls = connector
            .connect(server_name.clone(), conn.io.into_inner())
            .await
            .map_err(|e| SendError::Tls(e.to_string()))?;
        let mut conn = Conn::new(tls);
        let ehlo = conn.command(&format!("EHLO {}", self.helo), &[250]).await?;
        self.transaction(&mut conn, &ehlo, mail).await
    }

    async fn transaction<S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        conn: &mut Conn<S>,
        ehlo: &Reply,
        mail: &Envelope<'_>,
    ) -> Result<Sent, SendError> {
        if let Some((user, password)) = &self.credentials {
            if !ehlo.has_extension("AUTH", Some("PLAIN")) {
                return Err(SendError::Smtp {
                    code: 504,
                    message: "the server does not offer AUTH PLAIN".into(),
                });
            }
            let token = BASE64.encode(format!("\0{user}\0{password}"));
            conn.command(&format!("AUTH PLAIN {token}"), &[235]).await?;
        }
        conn.command(&format!("MAIL FROM:<{}>", mail.from), &[250])
            .await?;
        conn.command(&format!("RCPT TO:<{}>", mail.to), &[250, 251])
            .await?;
        conn.command("DATA", &[354]).await?;
        conn.write(dot_stuff(mail.data).as_bytes()).await?;
        let accepted = expect(conn.reply().await?, &[250])?;
        // The message is accepted; a failed QUIT changes nothing.
        let _ = conn.command("QUIT", &[221]).await;
        Ok(Sent {
            status: accepted.code,
        })
    }
}

/// A TLS connector trusting the public web roots plus the certificates of `extra_pem`.
pub(crate) fn connector(extra_pem: Option<&[u8]>) -> Result<TlsConnector, String> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::CertificateDer;
    let mut roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    if let Some(pem) = extra_pem {
        let mut added = 0;
        for cert in CertificateDer::pem_slice_iter(pem) {
            let cert = cert.map_err(|e| format!("ca_file: {e}"))?;
            roots
                .add(cert)
                .map_err(|e| format!("ca_file: certificate refused: {e}"))?;
            added += 1;
        }
        if added == 0 {
            return Err("ca_file holds no PEM certificate".into());
        }
    }
    // An explicit provider: the process may link another one, and then rustls will not choose.
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(TlsConnector::from(Arc::new(config)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_stuffing_escapes_leading_dots_and_terminates() {
        assert_eq!(dot_stuff("a\r\n.b\r\n..c"), "a\r\n..b\r\n...c\r\n.\r\n");
        assert_eq!(dot_stuff(".\r\n"), "..\r\n.\r\n");
    }

    #[tokio::test]
    async fn multi_line_replies_and_extensions_are_read() {
        let (client, mut server) = tokio::io::duplex(1024);
        server
            .write_all(b"250-mail.example\r\n250-STARTTLS\r\n250 AUTH LOGIN PLAIN\r\n")
            .await
            .unwrap();
        let mut conn = Conn::new(client);
        let reply = conn.reply().await.unwrap();
        assert_eq!(reply.code, 250);
        assert!(reply.has_extension("starttls", None));
        assert!(reply.has_extension("AUTH", Some("PLAIN")));
        assert!(!reply.has_extension("AUTH", Some("XOAUTH2")));
        server.write_all(b"hello\r\n").await.unwrap();
        assert!(matches!(conn.reply().await, Err(SendError::Protocol(_))));
    }

    #[test]
    fn a_ca_file_without_certificates_is_refused() {
        assert!(connector(Some(b"not a pem")).is_err());
        assert!(connector(None).is_ok());
    }
}
