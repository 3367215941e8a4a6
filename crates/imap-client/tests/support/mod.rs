//! A scripted fake IMAP server for the client tests: a tokio task on
//! 127.0.0.1:0 that plays a list of [`Step`]s against one connection,
//! expecting exact client bytes and sending canned responses (optionally
//! in pieces, to split literals across reads), with STARTTLS and COMPRESS
//! switches.

#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};
use slotmail_imap_client::{ClientOptions, escape_bytes};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// How long the server waits for expected client bytes.
const EXPECT_TIMEOUT: Duration = Duration::from_secs(10);

/// One action of the fake server.
pub enum Step {
    /// Write these bytes.
    Send(Vec<u8>),
    /// Write each piece separately, flushing and pausing in between, so
    /// the client receives them in separate reads.
    SendPieces(Vec<Vec<u8>>),
    /// Read exactly these bytes from the client.
    Expect(Vec<u8>),
    /// Wait.
    Sleep(Duration),
    /// Wait until the client closes its side (read returns 0).
    ExpectEof,
    /// Close the connection.
    Close,
    /// TLS handshake as the server.
    StartTls(Arc<rustls::ServerConfig>),
    /// TLS handshake as the server, which must fail (the client rejects
    /// the certificate).
    TlsMustFail(Arc<rustls::ServerConfig>),
    /// From here on, inflate client bytes and deflate server bytes.
    Compress,
}

/// `Send` of a text.
pub fn send(s: &str) -> Step {
    Step::Send(s.as_bytes().to_vec())
}

/// `Expect` of a text.
pub fn expect(s: &str) -> Step {
    Step::Expect(s.as_bytes().to_vec())
}

/// `SendPieces` of texts.
pub fn pieces(parts: &[&[u8]]) -> Step {
    Step::SendPieces(parts.iter().map(|p| p.to_vec()).collect())
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

struct Conn {
    io: Box<dyn Io>,
    inflate: Option<Decompress>,
    deflate: Option<Compress>,
    /// Client bytes received (inflated) but not yet expected.
    pending: Vec<u8>,
}

impl Conn {
    async fn write(&mut self, data: &[u8]) -> Result<(), String> {
        let bytes = match &mut self.deflate {
            Some(c) => {
                let mut out = Vec::new();
                let start = c.total_in();
                loop {
                    out.reserve(data.len() + 1024);
                    let done = (c.total_in() - start) as usize;
                    c.compress_vec(&data[done..], &mut out, FlushCompress::Sync)
                        .map_err(|e| e.to_string())?;
                    if (c.total_in() - start) as usize == data.len() && out.len() < out.capacity() {
                        break out;
                    }
                }
            }
            None => data.to_vec(),
        };
        self.io
            .write_all(&bytes)
            .await
            .map_err(|e| format!("write: {e}"))?;
        self.io.flush().await.map_err(|e| format!("flush: {e}"))
    }

    /// Reads once; false at end of stream.
    async fn read_more(&mut self) -> Result<bool, String> {
        let mut buf = vec![0u8; 64 * 1024];
        let n = self
            .io
            .read(&mut buf)
            .await
            .map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            return Ok(false);
        }
        match &mut self.inflate {
            Some(d) => {
                let mut out = vec![0u8; 1024 * 1024];
                let before = d.total_out();
                d.decompress(&buf[..n], &mut out, FlushDecompress::Sync)
                    .map_err(|e| format!("inflate: {e}"))?;
                let made = (d.total_out() - before) as usize;
                self.pending.extend_from_slice(&out[..made]);
            }
            None => self.pending.extend_from_slice(&buf[..n]),
        }
        Ok(true)
    }

    async fn expect(&mut self, want: &[u8]) -> Result<(), String> {
        let deadline = tokio::time::Instant::now() + EXPECT_TIMEOUT;
        while self.pending.len() < want.len() {
            let more = tokio::time::timeout_at(deadline, self.read_more())
                .await
                .map_err(|_| {
                    format!(
                        "timed out expecting {:?}, got {:?}",
                        escape_bytes(want),
                        escape_bytes(&self.pending)
                    )
                })??;
            if !more {
                return Err(format!(
                    "client closed while expecting {:?}, got {:?}",
                    escape_bytes(want),
                    escape_bytes(&self.pending)
                ));
            }
        }
        let got: Vec<u8> = self.pending.drain(..want.len()).collect();
        if got != want {
            return Err(format!(
                "expected {:?}\n     got {:?}",
                escape_bytes(want),
                escape_bytes(&got)
            ));
        }
        Ok(())
    }
}

/// A running fake server.
pub struct FakeServer {
    /// Where it listens.
    pub addr: std::net::SocketAddr,
    handle: JoinHandle<Result<(), String>>,
}

impl FakeServer {
    /// Listens and plays `script` against the first connection.
    pub async fn start(script: Vec<Step>) -> FakeServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let handle = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.map_err(|e| e.to_string())?;
            let mut conn = Conn {
                io: Box::new(tcp),
                inflate: None,
                deflate: None,
                pending: Vec::new(),
            };
            for (i, step) in script.into_iter().enumerate() {
                if let Err(e) = play(&mut conn, step).await {
                    // Shown with the client's failure too.
                    eprintln!("fake server, step {i}: {e}");
                    return Err(format!("step {i}: {e}"));
                }
            }
            Ok(())
        });
        FakeServer { addr, handle }
    }

    /// Waits for the script to end and fails the test if it did not play
    /// out exactly.
    pub async fn finish(self) {
        match tokio::time::timeout(Duration::from_secs(20), self.handle).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => panic!("fake server: {e}"),
            Ok(Err(e)) => panic!("fake server task: {e}"),
            Err(_) => panic!("fake server did not finish"),
        }
    }
}

async fn play(conn: &mut Conn, step: Step) -> Result<(), String> {
    match step {
        Step::Send(b) => conn.write(&b).await,
        Step::SendPieces(parts) => {
            for p in parts {
                conn.write(&p).await?;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Ok(())
        }
        Step::Expect(b) => conn.expect(&b).await,
        Step::Sleep(d) => {
            tokio::time::sleep(d).await;
            Ok(())
        }
        Step::ExpectEof => {
            let deadline = tokio::time::Instant::now() + EXPECT_TIMEOUT;
            loop {
                if !conn.pending.is_empty() {
                    return Err(format!(
                        "expected EOF, got {:?}",
                        escape_bytes(&conn.pending)
                    ));
                }
                match tokio::time::timeout_at(deadline, conn.read_more()).await {
                    Ok(Ok(false)) | Ok(Err(_)) => return Ok(()),
                    Ok(Ok(true)) => {}
                    Err(_) => return Err("timed out waiting for EOF".into()),
                }
            }
        }
        Step::Close => {
            let _ = conn.io.shutdown().await;
            conn.io = Box::new(tokio::io::duplex(1).0);
            Ok(())
        }
        Step::StartTls(config) => {
            if !conn.pending.is_empty() {
                return Err("client sent bytes before the TLS handshake".into());
            }
            let io = std::mem::replace(&mut conn.io, Box::new(tokio::io::duplex(1).0));
            let acceptor = tokio_rustls::TlsAcceptor::from(config);
            let tls = acceptor
                .accept(io)
                .await
                .map_err(|e| format!("TLS accept: {e}"))?;
            conn.io = Box::new(tls);
            Ok(())
        }
        Step::TlsMustFail(config) => {
            let io = std::mem::replace(&mut conn.io, Box::new(tokio::io::duplex(1).0));
            let acceptor = tokio_rustls::TlsAcceptor::from(config);
            match acceptor.accept(io).await {
                Ok(_) => Err("TLS handshake succeeded".into()),
                Err(_) => Ok(()),
            }
        }
        Step::Compress => {
            conn.inflate = Some(Decompress::new(false));
            conn.deflate = Some(Compress::new(Compression::fast(), false));
            let raw = std::mem::take(&mut conn.pending);
            if !raw.is_empty() {
                return Err("client sent bytes before compression started".into());
            }
            Ok(())
        }
    }
}

/// Short timeouts so failing tests fail fast.
pub fn quick_options() -> ClientOptions {
    ClientOptions {
        connect_timeout: Duration::from_secs(5),
        command_timeout: Duration::from_secs(10),
        io_timeout: Duration::from_secs(5),
        ..ClientOptions::default()
    }
}

/// The greeting most tests use.
pub const GREETING: &str = "* OK [CAPABILITY IMAP4rev1 LITERAL+ SASL-IR AUTH=PLAIN IDLE ENABLE CONDSTORE QRESYNC UIDPLUS MOVE ID NAMESPACE QUOTA SPECIAL-USE LIST-EXTENDED LIST-STATUS COMPRESS=DEFLATE] slotmail ready\r\n";

/// A self-signed certificate for `localhost`: the server config and a
/// client config trusting it.
pub fn tls_pair() -> (Arc<rustls::ServerConfig>, Arc<rustls::ClientConfig>) {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let generated = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let cert = generated.cert.der().clone();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(rustls::pki_types::PrivatePkcs8KeyDer::from(
        generated.signing_key.serialize_der(),
    ));
    let server = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.clone()], key)
        .unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert).unwrap();
    let client = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    (Arc::new(server), Arc::new(client))
}
