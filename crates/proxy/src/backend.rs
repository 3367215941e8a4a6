//! Logging in at a backend slot on the client's behalf.
//!
//! The proxy connects to the master slot's IMAP listener, reads its
//! greeting and sends the client's own credentials as one
//! `AUTHENTICATE PLAIN` with an initial response (SASL-IR), so the slot
//! verifies the password exactly as it would for a direct client. The
//! greeting is swallowed; the untagged responses and the tagged answer are
//! handed back for the client, under the client's tag.
//!
//! Every failure is classified ([`BackendError::kind`]): `refused`,
//! `timeout`, `auth`, `refusal` (the backend's own NO), `protocol` and `io`.
//! Every wait is bounded by the timeouts passed in, every line by
//! [`BACKEND_LINE_BYTES_MAX`].

use crate::preauth::Credentials;
use slotmail_imap_proto::sasl::base64_encode;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Longest backend response line read during login, in bytes.
pub const BACKEND_LINE_BYTES_MAX: usize = 64 * 1024;
/// Most bytes of untagged responses kept during login.
pub const BACKEND_UNTAGGED_BYTES_MAX: usize = 64 * 1024;
/// The tag the proxy uses for its login command.
pub const LOGIN_TAG: &str = "P1";

/// Why a backend login did not give a session.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// Nothing listens (connection refused, unreachable).
    #[error("backend {addr} refused the connection: {source}")]
    Refused {
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
    /// No answer in time.
    #[error("backend {addr} did not answer within {waited:?} ({stage})")]
    Timeout {
        addr: SocketAddr,
        stage: &'static str,
        waited: Duration,
    },
    /// Wrong credentials: the tagged NO [AUTHENTICATIONFAILED].
    #[error("backend {addr} refused the credentials")]
    Auth { addr: SocketAddr },
    /// Any other tagged NO; `rest` is the reply after the tag, with CRLF.
    #[error("backend {addr} refused the login: {}", String::from_utf8_lossy(rest).trim())]
    Refusal { addr: SocketAddr, rest: Vec<u8> },
    /// The backend said something a slot does not say.
    #[error("backend {addr}: {detail}")]
    Protocol { addr: SocketAddr, detail: String },
    /// The connection broke.
    #[error("backend {addr}: {source}")]
    Io {
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
}

impl BackendError {
    /// The failure's class, for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            BackendError::Refused { .. } => "refused",
            BackendError::Timeout { .. } => "timeout",
            BackendError::Auth { .. } => "auth",
            BackendError::Refusal { .. } => "refusal",
            BackendError::Protocol { .. } => "protocol",
            BackendError::Io { .. } => "io",
        }
    }
}

/// A logged-in backend connection.
#[derive(Debug)]
pub struct BackendSession {
    /// The connection, right after the tagged OK.
    pub stream: TcpStream,
    /// Untagged responses received with the login's answer.
    pub untagged: Vec<u8>,
    /// The tagged OK after the tag (` OK [CAPABILITY ...] Logged in\r\n`).
    pub tagged_rest: Vec<u8>,
    /// Bytes read after the tagged OK (normally none), for the client.
    pub leftover: Vec<u8>,
}

/// Connect to `addr` and log in with `creds`.
pub async fn login(
    addr: SocketAddr,
    creds: &Credentials,
    connect_timeout: Duration,
    login_timeout: Duration,
) -> Result<BackendSession, BackendError> {
    let stream = match tokio::time::timeout(connect_timeout, TcpStream::connect(addr)).await {
        Err(_) => {
            return Err(BackendError::Timeout {
                addr,
                stage: "connect",
                waited: connect_timeout,
            });
        }
        Ok(Err(source)) => return Err(BackendError::Refused { addr, source }),
        Ok(Ok(s)) => s,
    };
    let _ = stream.set_nodelay(true);
    match tokio::time::timeout(login_timeout, converse(stream, addr, creds)).await {
        Err(_) => Err(BackendError::Timeout {
            addr,
            stage: "login",
            waited: login_timeout,
        }),
        Ok(r) => r,
    }
}

async fn converse(
    mut stream: TcpStream,
    addr: SocketAddr,
    creds: &Credentials,
) -> Result<BackendSession, BackendError> {
    let io_err = |source| BackendError::Io { addr, source };
    let protocol = |detail: String| BackendError::Protocol { addr, detail };
    let mut reader = LineReader::default();
    let greeting = reader.line(&mut stream).await.map_err(io_err)?;
    let greeting = greeting.ok_or_else(|| protocol("greeting line too long".into()))?;
    if !greeting.starts_with(b"* OK") {
        return Err(protocol(format!(
            "unexpected greeting: {}",
            String::from_utf8_lossy(&greeting).trim()
        )));
    }
    if contains_ci(&greeting, b"LOGINDISABLED") {
        return Err(protocol(
            "the slot refuses logins without TLS; allow plaintext logins on the slots \
             (the proxy talks to them over the internal network)"
                .into(),
        ));
    }
    let command = format!(
        "{LOGIN_TAG} AUTHENTICATE PLAIN {}\r\n",
        base64_encode(&creds.sasl_plain())
    );
    stream.write_all(command.as_bytes()).await.map_err(io_err)?;
    let mut untagged = Vec::new();
    loop {
        let line = reader
            .line(&mut stream)
            .await
            .map_err(io_err)?
            .ok_or_else(|| protocol("response line too long".into()))?;
        if let Some(rest) = line.strip_prefix(LOGIN_TAG.as_bytes()) {
            let status = rest.get(1..3).unwrap_or(b"");
            if rest.starts_with(b" OK") {
                return Ok(BackendSession {
                    stream,
                    untagged,
                    tagged_rest: rest.to_vec(),
                    leftover: reader.into_rest(),
                });
            }
            if status.eq_ignore_ascii_case(b"NO") {
                if contains_ci(rest, b"[AUTHENTICATIONFAILED]") {
                    return Err(BackendError::Auth { addr });
                }
                return Err(BackendError::Refusal {
                    addr,
                    rest: rest.to_vec(),
                });
            }
            return Err(protocol(format!(
                "login answered {}",
                String::from_utf8_lossy(rest).trim()
            )));
        }
        if line.starts_with(b"+") {
            return Err(protocol(
                "the slot asked for more login data (no SASL-IR?)".into(),
            ));
        }
        if line.starts_with(b"* BYE") {
            return Err(protocol(format!(
                "closed during login: {}",
                String::from_utf8_lossy(&line).trim()
            )));
        }
        if untagged.len() + line.len() > BACKEND_UNTAGGED_BYTES_MAX {
            return Err(protocol("too many untagged responses during login".into()));
        }
        untagged.extend_from_slice(&line);
    }
}

/// Reads CRLF-terminated lines, bounded.
#[derive(Debug, Default)]
struct LineReader {
    buf: Vec<u8>,
}

impl LineReader {
    /// The next line with its CRLF; `Ok(None)` when it is too long.
    async fn line(&mut self, stream: &mut TcpStream) -> io::Result<Option<Vec<u8>>> {
        let mut scanned = 0;
        loop {
            if let Some(i) = self.buf[scanned..].iter().position(|&b| b == b'\n') {
                let end = scanned + i + 1;
                return Ok(Some(self.buf.drain(..end).collect()));
            }
            scanned = self.buf.len();
            if self.buf.len() >= BACKEND_LINE_BYTES_MAX {
                return Ok(None);
            }
            let mut chunk = [0u8; 4096];
            let room = (BACKEND_LINE_BYTES_MAX - self.buf.len()).min(chunk.len());
            let n = stream.read(&mut chunk[..room]).await?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "connection closed by the slot",
                ));
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    fn into_rest(self) -> Vec<u8> {
        self.buf
    }
}

/// Case-insensitive search for an ASCII `needle`.
pub fn contains_ci(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty()
        && haystack
            .windows(needle.len())
            .any(|w| w.eq_ignore_ascii_case(needle))
}

#[cfg(test)]
mod tests {
    use super::*;
    use slotmail_imap_proto::Tag;
    use tokio::io::AsyncBufReadExt;
    use tokio::net::TcpListener;

    fn creds(password: &str) -> Credentials {
        Credentials {
            tag: Tag::new("a1").unwrap(),
            username: "alice".into(),
            password: password.into(),
            authzid: None,
        }
    }

    /// A one-connection fake slot: greets with `greeting`, then answers the
    /// login with `answer` (or stays silent when `None`).
    async fn fake_slot(greeting: &'static str, answer: Option<&'static str>) -> SocketAddr {
        let listener = TcpListener::bind("127.80.1.4:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (s, _) = listener.accept().await.unwrap();
            let mut s = tokio::io::BufReader::new(s);
            s.get_mut().write_all(greeting.as_bytes()).await.unwrap();
            let mut line = String::new();
            s.read_line(&mut line).await.unwrap();
            assert!(line.starts_with("P1 AUTHENTICATE PLAIN "), "{line}");
            match answer {
                Some(a) => s.get_mut().write_all(a.as_bytes()).await.unwrap(),
                None => tokio::time::sleep(Duration::from_secs(10)).await,
            }
        });
        addr
    }

    const T: Duration = Duration::from_secs(5);

    #[tokio::test]
    async fn success_keeps_capabilities_and_leftover() {
        let addr = fake_slot(
            "* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN SASL-IR] hi\r\n",
            Some("* CAPABILITY IMAP4rev1 IDLE\r\nP1 OK [CAPABILITY IMAP4rev1 IDLE] Logged in\r\n* 3 EXISTS\r\n"),
        )
        .await;
        let s = login(addr, &creds("pw"), T, T).await.unwrap();
        assert_eq!(s.untagged, b"* CAPABILITY IMAP4rev1 IDLE\r\n");
        assert_eq!(
            s.tagged_rest,
            b" OK [CAPABILITY IMAP4rev1 IDLE] Logged in\r\n"
        );
        assert_eq!(s.leftover, b"* 3 EXISTS\r\n");
    }

    #[tokio::test]
    async fn failures_are_classified() {
        let addr = fake_slot(
            "* OK hi\r\n",
            Some("P1 NO [AUTHENTICATIONFAILED] Authentication failed\r\n"),
        )
        .await;
        let e = login(addr, &creds("bad"), T, T).await.unwrap_err();
        assert_eq!(e.kind(), "auth");

        let addr = fake_slot("* OK hi\r\n", Some("P1 NO [LIMIT] Too many\r\n")).await;
        match login(addr, &creds("pw"), T, T).await.unwrap_err() {
            BackendError::Refusal { rest, .. } => assert_eq!(rest, b" NO [LIMIT] Too many\r\n"),
            e => panic!("{e:?}"),
        }

        let addr = fake_slot("* OK hi\r\n", None).await;
        let started = std::time::Instant::now();
        let e = login(addr, &creds("pw"), T, Duration::from_millis(200))
            .await
            .unwrap_err();
        assert_eq!(e.kind(), "timeout");
        assert!(started.elapsed() < Duration::from_secs(2));

        // Nothing listens on a port just released.
        let closed = TcpListener::bind("127.80.1.4:0").await.unwrap();
        let addr = closed.local_addr().unwrap();
        drop(closed);
        let e = login(addr, &creds("pw"), T, T).await.unwrap_err();
        assert_eq!(e.kind(), "refused");
    }

    #[test]
    fn case_insensitive_search() {
        assert!(contains_ci(b"a compress deflate", b"COMPRESS"));
        assert!(!contains_ci(b"COMPRES", b"COMPRESS"));
    }
}
