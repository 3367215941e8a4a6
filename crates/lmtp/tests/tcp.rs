//! End-to-end tests: `serve_connection` on a real loopback TCP socket with
//! an in-memory backend, driven by the crate's `Client`, by raw pipelined
//! bytes, and by Python's `smtplib.LMTP`.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use slotmail_lmtp::{
    AcceptedRcpt, Backend, Client, ClientConfig, Config, Envelope, Error, RcptVerdict, Recipient,
    Reply, serve_connection,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// A stored message: sender, recipients (user, detail) and bytes.
#[derive(Clone, Debug)]
struct Stored {
    envelope: Envelope,
    rcpts: Vec<(String, Option<String>)>,
    message: Vec<u8>,
}

/// Users `alice`, `bob`, `carol`; `full` is over quota.
#[derive(Default)]
struct MemBackend {
    stored: Mutex<Vec<Stored>>,
}

/// Token: the resolved mailbox (user and optional folder from the detail).
#[derive(Debug)]
struct Mailbox {
    user: String,
    folder: Option<String>,
}

impl Backend for MemBackend {
    type Token = Mailbox;

    async fn check_recipient(&self, rcpt: &Recipient) -> RcptVerdict<Mailbox> {
        // Yield once so the future really is asynchronous.
        tokio::task::yield_now().await;
        match rcpt.user.to_ascii_lowercase().as_str() {
            u @ ("alice" | "bob" | "carol") => RcptVerdict::Accept(Mailbox {
                user: u.to_owned(),
                folder: rcpt.detail.clone(),
            }),
            "full" => RcptVerdict::Reject(Reply::over_quota("Mailbox full")),
            _ => RcptVerdict::Reject(Reply::unknown_user("No such user")),
        }
    }

    async fn deliver(
        &self,
        envelope: &Envelope,
        message: &[u8],
        rcpts: &[AcceptedRcpt<Mailbox>],
    ) -> Vec<Reply> {
        tokio::task::yield_now().await;
        self.stored.lock().unwrap().push(Stored {
            envelope: envelope.clone(),
            rcpts: rcpts
                .iter()
                .map(|r| (r.token.user.clone(), r.token.folder.clone()))
                .collect(),
            message: message.to_vec(),
        });
        rcpts
            .iter()
            .map(|r| Reply::ok(format!("Saved for {}", r.token.user)))
            .collect()
    }
}

fn config() -> Config {
    let mut c = Config::new("mx.test");
    c.limits.max_message_bytes = 4 * 1024 * 1024;
    c
}

/// Starts an accept loop; every connection is served on its own task.
async fn start_server(config: Config) -> (SocketAddr, Arc<MemBackend>, JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let backend = Arc::new(MemBackend::default());
    let server_backend = backend.clone();
    let config = Arc::new(config);
    let handle = tokio::spawn(async move {
        loop {
            let Ok((stream, peer)) = listener.accept().await else {
                return;
            };
            let backend = server_backend.clone();
            let config = config.clone();
            tokio::spawn(async move {
                if let Err(e) = serve_connection(stream, peer, &*backend, &config).await {
                    eprintln!("connection error: {e}");
                }
            });
        }
    });
    (addr, backend, handle)
}

fn body_of(stored: &Stored) -> &[u8] {
    let m = &stored.message;
    // The trace block ends with the date line of `Received:`.
    let end = m
        .windows(7)
        .position(|w| w == b"+0000\r\n")
        .expect("Received header")
        + 7;
    &m[end..]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_round_trip_over_tcp() {
    let (addr, backend, server) = start_server(config()).await;
    let mut client = Client::connect(addr, ClientConfig::new("client.test"))
        .await
        .unwrap();
    assert_eq!(client.greeting().text(), "mx.test LMTP slotmail ready");
    assert!(client.has_capability("pipelining"));
    assert!(client.has_capability("ENHANCEDSTATUSCODES"));
    assert_eq!(client.max_size(), Some(4 * 1024 * 1024));

    let message = b"Subject: test\r\n\r\n.leading dot\r\n.\r\nlast line without newline".to_vec();
    let report = client
        .deliver(
            "sender@example.org",
            &[
                "alice@example.org",
                "nobody@example.org",
                "bob+Lists@example.org",
                "full@example.org",
            ],
            &message,
        )
        .await
        .unwrap();
    assert_eq!(report.mail_reply.code, 250);
    assert_eq!(report.data_reply.code, 354);
    let finals: Vec<String> = report
        .recipients
        .iter()
        .map(|r| r.final_reply().to_string())
        .collect();
    assert_eq!(
        finals,
        [
            "250 2.0.0 Saved for alice",
            "550 5.1.1 No such user",
            "250 2.0.0 Saved for bob",
            "452 4.2.2 Mailbox full",
        ]
    );
    let delivered: Vec<bool> = report.recipients.iter().map(|r| r.delivered()).collect();
    assert_eq!(delivered, [true, false, true, false]);

    // A second transaction on the same connection, null sender, 8-bit body.
    let report = client
        .deliver("", &["carol@example.org"], "Grüße\n".as_bytes())
        .await
        .unwrap();
    assert!(report.recipients[0].delivered());
    assert_eq!(client.noop().await.unwrap().code, 250);
    assert_eq!(client.rset().await.unwrap().code, 250);
    let (quit, _) = client.quit().await.unwrap();
    assert_eq!(quit.to_string(), "221 2.0.0 mx.test closing connection");

    let stored = backend.stored.lock().unwrap().clone();
    assert_eq!(stored.len(), 2);
    assert_eq!(
        stored[0].rcpts,
        [("alice".into(), None), ("bob".into(), Some("Lists".into()))]
    );
    assert_eq!(body_of(&stored[0]), normalize(&message));
    assert_eq!(
        stored[0].envelope.declared_size,
        Some(normalize(&message).len() as u64)
    );
    let head = String::from_utf8_lossy(&stored[0].message[..200]).into_owned();
    assert!(head.starts_with("Return-Path: <sender@example.org>\r\nReceived: from client.test ([127.0.0.1])\r\n\tby mx.test (slotmail) with LMTP id "), "{head}");
    assert_eq!(body_of(&stored[1]), "Grüße\r\n".as_bytes());
    assert_eq!(stored[1].envelope.sender, None);
    assert_eq!(
        stored[1].envelope.body,
        Some(slotmail_lmtp::BodyType::EightBitMime)
    );
    server.abort();
}

fn normalize(b: &[u8]) -> Vec<u8> {
    slotmail_lmtp::normalize_line_endings(b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_message_and_many_recipients() {
    let (addr, backend, server) = start_server(config()).await;
    let mut client = Client::connect(addr, ClientConfig::new("client.test"))
        .await
        .unwrap();
    // 3 MiB with dot lines and bare LFs, crossing every buffer boundary.
    let mut message = Vec::new();
    let mut i = 0u32;
    while message.len() < 3 * 1024 * 1024 {
        message.extend_from_slice(format!(".{i} line of text\n..\r\n").as_bytes());
        i += 1;
    }
    // More recipients than one pipelining window.
    let rcpts: Vec<String> = (0..150)
        .map(|i| format!("{}+f{i}@example.org", ["alice", "bob", "x"][i % 3]))
        .collect();
    let rcpt_refs: Vec<&str> = rcpts.iter().map(String::as_str).collect();
    let report = client
        .deliver("s@example.org", &rcpt_refs, &message)
        .await
        .unwrap();
    assert_eq!(report.recipients.len(), 150);
    for (i, r) in report.recipients.iter().enumerate() {
        assert_eq!(r.delivered(), i % 3 != 2, "{i}: {r:?}");
    }
    let stored = backend.stored.lock().unwrap().clone();
    assert_eq!(stored[0].rcpts.len(), 100);
    assert_eq!(body_of(&stored[0]), normalize(&message));

    // Oversize: the client declares SIZE=, the server refuses at MAIL time.
    let big = vec![b'a'; 5 * 1024 * 1024];
    let report = client
        .deliver("s@example.org", &["alice@example.org"], &big)
        .await
        .unwrap();
    assert_eq!(
        report.mail_reply.to_string(),
        "552 5.3.4 Error: message size exceeds fixed limit of 4194304 bytes"
    );
    assert_eq!(report.recipients[0].rcpt_reply.code, 503);
    assert_eq!(report.data_reply.code, 503);
    assert!(!report.recipients[0].delivered());
    // The connection is still usable.
    assert_eq!(client.noop().await.unwrap().code, 250);
    server.abort();
}

/// Reads from `stream` until the peer closes it.
async fn read_to_end(stream: &mut TcpStream) -> String {
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut out))
        .await
        .expect("server closed the connection")
        .unwrap();
    String::from_utf8(out).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_pipelined_dialogue_in_one_write() {
    let (addr, backend, server) = start_server(config()).await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(
            b"LHLO raw.test\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<alice@example.org>\r\nRCPT TO:<zed@example.org>\r\nRCPT TO:<carol@example.org>\r\nDATA\r\nline\r\n..dot\r\n.\r\nMAIL FROM:<a@b.example> SIZE=99999999\r\nQUIT\r\n",
        )
        .await
        .unwrap();
    let reply = read_to_end(&mut stream).await;
    assert_eq!(
        reply,
        "220 mx.test LMTP slotmail ready\r\n\
         250-mx.test\r\n250-PIPELINING\r\n250-8BITMIME\r\n250-ENHANCEDSTATUSCODES\r\n250 SIZE 4194304\r\n\
         250 2.1.0 OK\r\n250 2.1.5 OK\r\n550 5.1.1 No such user\r\n250 2.1.5 OK\r\n\
         354 End data with <CR><LF>.<CR><LF>\r\n\
         250 2.0.0 Saved for alice\r\n250 2.0.0 Saved for carol\r\n\
         552 5.3.4 Error: message size exceeds fixed limit of 4194304 bytes\r\n\
         221 2.0.0 mx.test closing connection\r\n"
    );
    assert_eq!(
        body_of(&backend.stored.lock().unwrap()[0]),
        b"line\r\n.dot\r\n"
    );
    server.abort();
}

#[tokio::test]
async fn idle_and_data_timeouts() {
    let mut config = config();
    config.idle_timeout = Duration::from_millis(200);
    config.data_timeout = Duration::from_millis(400);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let backend = MemBackend::default();

    // Idle: the client says nothing after the greeting.
    let client = tokio::spawn(async move {
        let mut s = TcpStream::connect(addr).await.unwrap();
        read_to_end(&mut s).await
    });
    let (stream, peer) = listener.accept().await.unwrap();
    let result = serve_connection(stream, peer, &backend, &config).await;
    assert!(matches!(result, Err(Error::Timeout)), "{result:?}");
    assert_eq!(
        client.await.unwrap(),
        "220 mx.test LMTP slotmail ready\r\n421 4.4.2 mx.test Error: timeout exceeded\r\n"
    );

    // Data: the client keeps sending data lines faster than the idle
    // timeout, but never ends the message.
    let client = tokio::spawn(async move {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"LHLO c\r\nMAIL FROM:<>\r\nRCPT TO:<alice@x>\r\nDATA\r\n")
            .await
            .unwrap();
        // Write a line every 50 ms until the server's 421 arrives, so the
        // server never closes with unread input (which would reset the
        // connection and could discard the reply).
        let mut received = Vec::new();
        let mut buf = [0u8; 1024];
        let give_up = tokio::time::Instant::now() + Duration::from_secs(5);
        while tokio::time::Instant::now() < give_up {
            tokio::select! {
                r = s.read(&mut buf) => match r {
                    Ok(0) | Err(_) => break,
                    Ok(n) => received.extend_from_slice(&buf[..n]),
                },
                _ = tokio::time::sleep(Duration::from_millis(50)) => {
                    if !received.windows(4).any(|w| w == b"421 ") {
                        let _ = s.write_all(b"more data\r\n").await;
                    }
                }
            }
        }
        String::from_utf8(received).unwrap()
    });
    let (stream, peer) = listener.accept().await.unwrap();
    let started = tokio::time::Instant::now();
    let result = serve_connection(stream, peer, &backend, &config).await;
    assert!(matches!(result, Err(Error::Timeout)), "{result:?}");
    assert!(started.elapsed() < Duration::from_secs(2));
    let transcript = client.await.unwrap();
    assert!(
        transcript.ends_with(
            "354 End data with <CR><LF>.<CR><LF>\r\n421 4.4.2 mx.test Error: timeout exceeded\r\n"
        ),
        "{transcript}"
    );
    assert!(backend.stored.lock().unwrap().is_empty());
}

#[tokio::test]
async fn data_timeout_restarts_for_each_message() {
    let mut config = config();
    config.data_timeout = Duration::from_millis(300);
    config.limits.max_message_bytes = 10;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let backend = MemBackend::default();
    let client = tokio::spawn(async move {
        let mut s = TcpStream::connect(addr).await.unwrap();
        // An oversize message ends the first data phase without a delivery.
        // The pause makes the server wait for data, starting the data timer.
        s.write_all(b"LHLO c\r\nMAIL FROM:<>\r\nRCPT TO:<alice@x>\r\nDATA\r\n")
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        s.write_all(b"0123456789abcdef\r\n.\r\n").await.unwrap();
        tokio::time::sleep(Duration::from_millis(400)).await;
        s.write_all(b"MAIL FROM:<>\r\nRCPT TO:<alice@x>\r\nDATA\r\nsmall\r\n")
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        s.write_all(b".\r\nQUIT\r\n").await.unwrap();
        read_to_end(&mut s).await
    });
    let (stream, peer) = listener.accept().await.unwrap();
    serve_connection(stream, peer, &backend, &config)
        .await
        .unwrap();
    let transcript = client.await.unwrap();
    assert!(
        transcript.ends_with("552 5.3.4 Error: message size exceeds fixed limit of 10 bytes\r\n250 2.1.0 OK\r\n250 2.1.5 OK\r\n354 End data with <CR><LF>.<CR><LF>\r\n250 2.0.0 Saved for alice\r\n221 2.0.0 mx.test closing connection\r\n"),
        "{transcript}"
    );
    assert_eq!(body_of(&backend.stored.lock().unwrap()[0]), b"small\r\n");
}

#[tokio::test]
async fn disconnect_mid_transaction_is_reported() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let backend = MemBackend::default();
    let config = config();

    let client = tokio::spawn(async move {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"LHLO c\r\nMAIL FROM:<>\r\n").await.unwrap();
        s.shutdown().await.unwrap();
        read_to_end(&mut s).await
    });
    let (stream, peer) = listener.accept().await.unwrap();
    let result = serve_connection(stream, peer, &backend, &config).await;
    assert!(matches!(result, Err(Error::Disconnected)), "{result:?}");
    assert!(client.await.unwrap().ends_with("250 2.1.0 OK\r\n"));

    // Closing between transactions is fine.
    let client = tokio::spawn(async move {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"LHLO c\r\nNOOP\r\n").await.unwrap();
        s.shutdown().await.unwrap();
        read_to_end(&mut s).await
    });
    let (stream, peer) = listener.accept().await.unwrap();
    serve_connection(stream, peer, &backend, &config)
        .await
        .unwrap();
    assert!(client.await.unwrap().ends_with("250 2.0.0 OK\r\n"));
}

const PYTHON_CLIENT: &str = r#"
import smtplib, sys
port = int(sys.argv[1])
with smtplib.LMTP("127.0.0.1", port, local_hostname="py.test") as c:
    code, _ = c.ehlo()
    print("lhlo", code)
    print("features", " ".join(sorted(c.esmtp_features)))
    print("size", c.esmtp_features.get("size"))
    refused = c.sendmail("sender@example.org", ["alice@example.org"],
                         b"Subject: one\r\n\r\n.leading dot\r\nbody\r\n")
    print("refused", sorted(refused))
    # smtplib reads a single reply after DATA, so several recipients are
    # handled by hand: one extra reply per further accepted recipient.
    c.mail("sender@example.org", ["BODY=8BITMIME"])
    codes = [c.rcpt(r)[0] for r in ["bob@example.org", "nobody@example.org", "carol+Lists@example.org"]]
    print("rcpt", codes)
    code, msg = c.data("Subject: two\n\nGr\u00fc\u00dfe\n.\n..\nend".encode())
    replies = [(code, msg.decode())]
    for _ in range(sum(1 for x in codes if x == 250) - 1):
        code, msg = c.getreply()
        replies.append((code, msg.decode()))
    print("data", replies)
    print("noop", c.noop()[0])
    print("helo", c.helo("x")[0])
    print("ehlo", c.docmd("EHLO", "x"))
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_smtplib_lmtp_client() {
    if std::process::Command::new("python3")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("python3 not available; skipping");
        return;
    }
    let (addr, backend, server) = start_server(config()).await;
    let output = tokio::time::timeout(
        Duration::from_secs(30),
        tokio::process::Command::new("python3")
            .arg("-c")
            .arg(PYTHON_CLIENT)
            .arg(addr.port().to_string())
            .output(),
    )
    .await
    .expect("python client timed out")
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "stdout: {stdout}\nstderr: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        stdout,
        "lhlo 250\n\
         features 8bitmime enhancedstatuscodes pipelining size\n\
         size 4194304\n\
         refused []\n\
         rcpt [250, 550, 250]\n\
         data [(250, '2.0.0 Saved for bob'), (250, '2.0.0 Saved for carol')]\n\
         noop 250\n\
         helo 500\n\
         ehlo (500, b'5.5.1 Error: this is an LMTP server (RFC 2033), use LHLO')\n"
    );
    let stored = backend.stored.lock().unwrap().clone();
    assert_eq!(stored.len(), 2);
    assert!(
        String::from_utf8_lossy(&stored[0].message)
            .contains("Received: from py.test ([127.0.0.1])")
    );
    assert_eq!(
        body_of(&stored[0]),
        b"Subject: one\r\n\r\n.leading dot\r\nbody\r\n"
    );
    assert_eq!(
        stored[1].rcpts,
        [("bob".into(), None), ("carol".into(), Some("Lists".into()))]
    );
    assert_eq!(
        body_of(&stored[1]),
        "Subject: two\r\n\r\nGrüße\r\n.\r\n..\r\nend\r\n".as_bytes()
    );
    server.abort();
}
