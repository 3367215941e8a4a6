//! The tokio shell on 127.0.0.1:0, driven by independent clients (Python's
//! imaplib, isync's mbsync) and by raw sockets for what those cannot do
//! (IDLE timing, QRESYNC, COMPRESS, literal refusal, limits, shutdown).

mod common;

use common::*;
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};
use slotmail_imap::{ImapConfig, serve};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;

// ----- a running server ------------------------------------------------------

struct Running {
    rt: tokio::runtime::Runtime,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    done: Option<tokio::task::JoinHandle<()>>,
    addr: SocketAddr,
    tls_addr: Option<SocketAddr>,
}

impl Running {
    fn start(f: &Fixture, config: ImapConfig, tls: Option<Arc<rustls::ServerConfig>>) -> Running {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let (listener, tls_listener) = rt.block_on(async {
            let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let t = TcpListener::bind("127.0.0.1:0").await.unwrap();
            (l, t)
        });
        let addr = listener.local_addr().unwrap();
        let tls_addr = tls.as_ref().map(|_| tls_listener.local_addr().unwrap());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let implicit = tls.clone().map(|c| (tls_listener, c));
        let done = rt.spawn(serve(
            listener,
            implicit,
            tls,
            f.slot.clone(),
            config,
            async {
                let _ = stopped.await;
            },
        ));
        Running {
            rt,
            stop: Some(stop),
            done: Some(done),
            addr,
            tls_addr,
        }
    }

    /// Trigger shutdown and wait for `serve` to return.
    fn shutdown(&mut self) -> Duration {
        let t = Instant::now();
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(done) = self.done.take() {
            self.rt
                .block_on(async { tokio::time::timeout(Duration::from_secs(20), done).await })
                .expect("serve returns after shutdown")
                .unwrap();
        }
        t.elapsed()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn tls_config() -> (Arc<rustls::ServerConfig>, String) {
    let generated =
        rcgen::generate_simple_self_signed(vec!["localhost".to_string(), "127.0.0.1".to_string()])
            .unwrap();
    let cert = generated.cert.der().clone();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(generated.signing_key.serialize_der().into());
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![cert], key)
    .unwrap();
    (Arc::new(config), generated.cert.pem())
}

fn python(script: &str, args: &[String]) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/scripts")
        .join(script);
    let out = Command::new("python3")
        .arg(&path)
        .args(args)
        .output()
        .expect("python3 runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("ALL OK"),
        "{script} failed\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
}

// ----- a raw line client --------------------------------------------------------

trait Stream: Read + Write + Send {}
impl<T: Read + Write + Send> Stream for T {}

/// Raw deflate over a stream (RFC 4978), flushed per write.
struct Deflated<S> {
    inner: S,
    z: Compress,
    d: Decompress,
    raw_in: Vec<u8>,
    /// The last inflate filled the caller's buffer: more may be pending.
    full: bool,
}

impl<S: Read> Read for Deflated<S> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        loop {
            if !self.raw_in.is_empty() || self.full {
                let (i0, o0) = (self.d.total_in(), self.d.total_out());
                self.d
                    .decompress(&self.raw_in, out, FlushDecompress::Sync)
                    .map_err(io::Error::other)?;
                let used = (self.d.total_in() - i0) as usize;
                self.raw_in.drain(..used);
                let produced = (self.d.total_out() - o0) as usize;
                self.full = produced == out.len();
                if produced > 0 {
                    return Ok(produced);
                }
            }
            let mut tmp = [0u8; 4096];
            let n = self.inner.read(&mut tmp)?;
            if n == 0 {
                return Ok(0);
            }
            self.raw_in.extend_from_slice(&tmp[..n]);
        }
    }
}

impl<S: Write> Write for Deflated<S> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let mut out = Vec::with_capacity(data.len() + 64);
        let mut used = 0;
        loop {
            if out.capacity() - out.len() < 64 {
                out.reserve(data.len() + 64);
            }
            let i0 = self.z.total_in();
            self.z
                .compress_vec(&data[used..], &mut out, FlushCompress::Sync)
                .map_err(io::Error::other)?;
            used += (self.z.total_in() - i0) as usize;
            if used == data.len() && out.len() < out.capacity() {
                break;
            }
        }
        self.inner.write_all(&out)?;
        Ok(data.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

struct Raw {
    s: Box<dyn Stream>,
    buf: Vec<u8>,
}

impl Raw {
    fn connect(addr: SocketAddr) -> Raw {
        let s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        s.set_nodelay(true).unwrap();
        Raw {
            s: Box::new(s),
            buf: Vec::new(),
        }
    }

    fn send(&mut self, bytes: &[u8]) {
        self.s.write_all(bytes).unwrap();
        self.s.flush().unwrap();
    }

    /// One line without CRLF; a literal announced at its end is read too and
    /// appended (with the rest of the line).
    fn line(&mut self) -> Vec<u8> {
        let mut line = Vec::new();
        loop {
            let chunk = self.raw_line();
            line.extend_from_slice(&chunk);
            let Some(n) = literal_size(&chunk) else {
                return line;
            };
            line.extend_from_slice(b"\r\n");
            let data = self.exact(n);
            line.extend_from_slice(&data);
        }
    }

    fn text(&mut self) -> String {
        String::from_utf8_lossy(&self.line()).into_owned()
    }

    fn raw_line(&mut self) -> Vec<u8> {
        loop {
            if let Some(i) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let line = self.buf[..i].to_vec();
                self.buf.drain(..i + 2);
                return line;
            }
            self.fill();
        }
    }

    fn exact(&mut self, n: usize) -> Vec<u8> {
        while self.buf.len() < n {
            self.fill();
        }
        self.buf.drain(..n).collect()
    }

    fn fill(&mut self) {
        let mut tmp = [0u8; 8192];
        let n = self.s.read(&mut tmp).expect("server answers in time");
        assert!(
            n > 0,
            "connection closed; have {:?}",
            String::from_utf8_lossy(&self.buf)
        );
        self.buf.extend_from_slice(&tmp[..n]);
    }

    /// Send `tag cmd` and return all response lines up to the tagged one.
    fn cmd(&mut self, tag: &str, cmd: &str) -> Vec<String> {
        self.send(format!("{tag} {cmd}\r\n").as_bytes());
        self.until(tag)
    }

    fn until(&mut self, tag: &str) -> Vec<String> {
        let mut lines = Vec::new();
        loop {
            let l = self.text();
            let done = l.starts_with(&format!("{tag} "));
            lines.push(l);
            if done {
                return lines;
            }
        }
    }

    fn ok(&mut self, tag: &str, cmd: &str) -> Vec<String> {
        let lines = self.cmd(tag, cmd);
        assert!(
            lines.last().unwrap().starts_with(&format!("{tag} OK")),
            "{cmd}: {lines:#?}"
        );
        lines
    }

    fn greeted(addr: SocketAddr) -> Raw {
        let mut r = Raw::connect(addr);
        let g = r.text();
        assert!(g.starts_with("* OK [CAPABILITY"), "{g}");
        r
    }

    fn login(addr: SocketAddr, user: &str) -> Raw {
        let mut r = Raw::greeted(addr);
        r.ok("L", &format!("LOGIN {user} {PASSWORD}"));
        r
    }

    fn append(&mut self, tag: &str, mailbox: &str, raw: &[u8]) -> Vec<String> {
        let mut cmd = format!("{tag} APPEND {mailbox} {{{}+}}\r\n", raw.len()).into_bytes();
        cmd.extend_from_slice(raw);
        cmd.extend_from_slice(b"\r\n");
        self.send(&cmd);
        self.until(tag)
    }

    fn compress(&mut self) {
        let inner = std::mem::replace(&mut self.s, Box::new(io::Cursor::new(Vec::new())));
        assert!(self.buf.is_empty());
        self.s = Box::new(Deflated {
            inner,
            z: Compress::new(Compression::fast(), false),
            d: Decompress::new(false),
            raw_in: Vec::new(),
            full: false,
        });
    }
}

fn literal_size(line: &[u8]) -> Option<usize> {
    let rest = line.strip_suffix(b"}")?;
    let open = rest.iter().rposition(|&b| b == b'{')?;
    std::str::from_utf8(&rest[open + 1..]).ok()?.parse().ok()
}

// ----- tests --------------------------------------------------------------------

#[test]
fn python_imaplib_full_flow() {
    let f = Fixture::new();
    let server = Running::start(&f, Fixture::config(), None);
    python("imaplib_flow.py", &[server.addr.port().to_string()]);
}

#[test]
fn python_imaplib_starttls_and_implicit_tls() {
    let f = Fixture::new();
    let (tls, ca_pem) = tls_config();
    let ca = f.dir.path().join("ca.pem");
    std::fs::write(&ca, ca_pem).unwrap();
    let config = ImapConfig {
        allow_plaintext_auth: false,
        ..Fixture::config()
    };
    let server = Running::start(&f, config, Some(tls));
    python(
        "imaplib_tls.py",
        &[
            server.addr.port().to_string(),
            server.tls_addr.unwrap().port().to_string(),
            ca.display().to_string(),
        ],
    );
}

#[test]
fn mbsync_two_way_sync() {
    let f = Fixture::new();
    let first = message("from-server-1", "one");
    let second = message("from-server-2", "two");
    f.deliver("alice", "INBOX", &first);
    f.deliver("alice", "INBOX", &second);
    let server = Running::start(&f, Fixture::config(), None);
    let root = f.dir.path().join("mbsync");
    let maildir = root.join("mail");
    std::fs::create_dir_all(&maildir).unwrap();
    let conf = root.join("mbsyncrc");
    std::fs::write(
        &conf,
        format!(
            "IMAPAccount slot\nHost 127.0.0.1\nPort {port}\nUser alice\nPass {PASSWORD}\nSSLType None\nAuthMechs LOGIN\n\n\
IMAPStore remote\nAccount slot\n\n\
MaildirStore local\nPath {dir}/\nInbox {dir}/INBOX\nSubFolders Verbatim\n\n\
Channel sync\nFar :remote:\nNear :local:\nPatterns INBOX Archive\nCreate Both\nExpunge Both\nSyncState *\nSync All\n",
            port = server.addr.port(),
            dir = maildir.display()
        ),
    )
    .unwrap();
    let mbsync = |what: &str| {
        let out = Command::new("mbsync")
            .arg("-c")
            .arg(&conf)
            .arg("-a")
            .output()
            .expect("mbsync runs");
        assert!(
            out.status.success(),
            "mbsync ({what}) failed\nstdout: {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let files = |dir: &Path| -> Vec<std::path::PathBuf> {
        let mut v = Vec::new();
        for sub in ["cur", "new"] {
            if let Ok(rd) = std::fs::read_dir(dir.join(sub)) {
                v.extend(rd.map(|e| e.unwrap().path()));
            }
        }
        v.sort();
        v
    };
    // 1. Pull: both messages arrive byte-identical.
    mbsync("pull");
    let inbox = maildir.join("INBOX");
    // mbsync keeps Maildir files with LF line ends and adds an X-TUID
    // header of its own.
    let lf = |b: &[u8]| {
        String::from_utf8_lossy(b)
            .replace("\r\n", "\n")
            .lines()
            .filter(|l| !l.starts_with("X-TUID: "))
            .map(|l| format!("{l}\n"))
            .collect::<String>()
            .into_bytes()
    };
    let read_lf = |p: &std::path::PathBuf| lf(&std::fs::read(p).unwrap());
    let pulled: Vec<Vec<u8>> = files(&inbox).iter().map(read_lf).collect();
    assert_eq!(pulled.len(), 2, "{pulled:?}");
    assert!(
        pulled.contains(&lf(&first)) && pulled.contains(&lf(&second)),
        "{pulled:?}"
    );
    // 2. Push: a new local message goes up; a local flag goes up.
    let local = message("from-client", "three");
    std::fs::write(inbox.join("new").join("1700000000.1_1.host"), &local).unwrap();
    let seen_file = files(&inbox)
        .into_iter()
        .find(|p| read_lf(p) == lf(&first))
        .unwrap();
    let name = seen_file
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let base = name.split(":2,").next().unwrap().to_string();
    std::fs::rename(&seen_file, inbox.join("cur").join(format!("{base}:2,S"))).unwrap();
    mbsync("push");
    let user = f.slot.user("alice").unwrap();
    let mbox = user.mailbox("INBOX").unwrap();
    let (_, metas) = user.snapshot(mbox.id).unwrap();
    assert_eq!(metas.len(), 3);
    assert!(
        metas[0].flags.has(slotmail_store::SEEN),
        "flag was not pushed"
    );
    let pushed = user.read_message(&metas[2].guid, metas[2].size).unwrap();
    assert!(
        String::from_utf8_lossy(&pushed).contains("Subject: from-client"),
        "{}",
        String::from_utf8_lossy(&pushed)
    );
    // 3. A server-side expunge removes the local copy.
    let seen = slotmail_store::Flags::from_names(["\\Deleted"]).unwrap();
    user.store_flags(
        mbox.id,
        &[metas[1].uid],
        slotmail_store::FlagOp::Add,
        &seen,
        None,
    )
    .unwrap();
    user.expunge(mbox.id, None).unwrap();
    mbsync("expunge");
    let left: Vec<Vec<u8>> = files(&inbox).iter().map(read_lf).collect();
    assert_eq!(left.len(), 2);
    assert!(!left.contains(&lf(&second)));
}

#[test]
fn idle_wakes_within_milliseconds() {
    let f = Fixture::new();
    let server = Running::start(&f, Fixture::config(), None);
    let addr = server.addr;
    const ROUNDS: usize = 10;
    let mut idler = Raw::login(addr, "alice");
    idler.ok("S", "SELECT INBOX");
    idler.send(b"I IDLE\r\n");
    assert_eq!(idler.text(), "+ idling");
    let (tx, rx) = std::sync::mpsc::channel::<(String, Instant)>();
    let reader = std::thread::spawn(move || {
        for _ in 0..4 * ROUNDS {
            let line = idler.text();
            tx.send((line, Instant::now())).unwrap();
        }
        idler.send(b"DONE\r\n");
        let done = idler.until("I");
        assert!(done.last().unwrap().starts_with("I OK"), "{done:?}");
    });
    let mut latencies = Vec::new();
    // Another IMAP session appends.
    let mut other = Raw::login(addr, "alice");
    for round in 0..ROUNDS {
        let started = Instant::now();
        let lines = other.append("A", "INBOX", &message(&format!("idle{round}"), "x"));
        assert!(lines.last().unwrap().starts_with("A OK"), "{lines:?}");
        let (line, at) = rx
            .recv_timeout(Duration::from_secs(5))
            .expect("EXISTS arrives");
        assert_eq!(line, format!("* {} EXISTS", round + 1));
        let (recent, _) = rx.recv_timeout(Duration::from_secs(5)).unwrap();
        assert!(recent.ends_with("RECENT"), "{recent}");
        latencies.push(at.saturating_duration_since(started));
    }
    let imap_max = *latencies.iter().max().unwrap();
    // A delivery straight into the store (the path LMTP takes).
    drop(other);
    let mut store_latencies = Vec::new();
    let user = f.slot.user("alice").unwrap();
    let inbox = user.mailbox("INBOX").unwrap();
    for round in 0..ROUNDS {
        let raw = message(&format!("lmtp{round}"), "y");
        user.append(inbox.id, &raw, &slotmail_store::Flags::empty(), None)
            .unwrap();
        let committed = Instant::now();
        let (line, at) = rx
            .recv_timeout(Duration::from_secs(5))
            .expect("EXISTS arrives");
        assert_eq!(line, format!("* {} EXISTS", ROUNDS + round + 1));
        let _ = rx.recv_timeout(Duration::from_secs(5)).unwrap();
        store_latencies.push(at.saturating_duration_since(committed));
    }
    reader.join().unwrap();
    let store_max = *store_latencies.iter().max().unwrap();
    eprintln!(
        "IDLE latency: IMAP APPEND by another session → EXISTS: max {imap_max:?} (all {latencies:?}); \
store commit (LMTP path) → EXISTS: max {store_max:?} (all {store_latencies:?})"
    );
    assert!(imap_max < Duration::from_secs(1), "{latencies:?}");
    assert!(store_max < Duration::from_secs(1), "{store_latencies:?}");
}

#[test]
fn a_deleted_users_connections_get_bye_unavailable_unprompted() {
    let f = Fixture::new();
    let server = Running::start(&f, Fixture::config(), None);
    let addr = server.addr;
    let mut waiting = Raw::login(addr, "alice");
    waiting.ok("S", "SELECT INBOX");
    let mut idler = Raw::login(addr, "alice");
    idler.ok("S", "SELECT INBOX");
    idler.send(b"I IDLE\r\n");
    assert_eq!(idler.text(), "+ idling");
    let mut bob = Raw::login(addr, "bob");
    let started = Instant::now();
    f.slot.delete_user("alice").unwrap();
    for c in [&mut waiting, &mut idler] {
        let line = c.text();
        assert!(
            line.starts_with("* BYE [UNAVAILABLE] Your mailbox is no longer served here"),
            "{line}"
        );
        // Then the server closes.
        let mut tmp = [0u8; 64];
        assert_eq!(c.s.read(&mut tmp).unwrap(), 0, "closed after the BYE");
        assert!(c.buf.is_empty());
    }
    assert!(started.elapsed() < Duration::from_secs(5));
    bob.ok("N", "NOOP");
}

#[test]
fn qresync_reselect_reports_exact_vanished_set() {
    let f = Fixture::new();
    for i in 0..10 {
        f.deliver("alice", "INBOX", &message(&format!("q{i}"), "x"));
    }
    let server = Running::start(&f, Fixture::config(), None);
    let mut a = Raw::login(server.addr, "alice");
    a.ok("E", "ENABLE QRESYNC");
    let sel = a.ok("S", "SELECT INBOX").join("\n");
    let grab = |key: &str| -> u64 {
        let at = sel.find(key).unwrap() + key.len();
        sel[at..].split(']').next().unwrap().parse().unwrap()
    };
    let (validity, modseq) = (grab("[UIDVALIDITY "), grab("[HIGHESTMODSEQ "));
    a.ok("L", "LOGOUT");

    let mut b = Raw::login(server.addr, "alice");
    b.ok("S", "SELECT INBOX");
    b.ok("D", "UID STORE 2,3,4,7,10 +FLAGS.SILENT (\\Deleted)");
    b.ok("X", "UID EXPUNGE 2:4");
    b.ok("F", "UID STORE 5 +FLAGS.SILENT (\\Flagged)");
    b.ok("Y", "EXPUNGE");

    let mut c = Raw::login(server.addr, "alice");
    c.ok("E", "ENABLE QRESYNC");
    let lines = c.ok(
        "Q",
        &format!("SELECT INBOX (QRESYNC ({validity} {modseq} 1:10))"),
    );
    let vanished: Vec<&String> = lines
        .iter()
        .filter(|l| l.starts_with("* VANISHED"))
        .collect();
    assert_eq!(vanished, ["* VANISHED (EARLIER) 2:4,7,10"], "{lines:#?}");
    let fetches: Vec<&String> = lines.iter().filter(|l| l.contains(" FETCH ")).collect();
    assert_eq!(fetches.len(), 1, "{lines:#?}");
    assert!(
        fetches[0].starts_with("* 2 FETCH (UID 5 FLAGS (\\Flagged) MODSEQ ("),
        "{fetches:?}"
    );
    assert!(lines.contains(&"* 5 EXISTS".to_string()), "{lines:#?}");
}

#[test]
fn compress_deflate_both_ways() {
    let f = Fixture::new();
    let server = Running::start(&f, Fixture::config(), None);
    let mut r = Raw::login(server.addr, "alice");
    let caps = r.ok("C", "CAPABILITY");
    assert!(caps[0].contains("COMPRESS=DEFLATE"));
    // Pipeline a command after COMPRESS: it is sent compressed... so do not;
    // the client waits for the OK before compressing (RFC 4978 §3).
    let lines = r.cmd("Z", "COMPRESS DEFLATE");
    assert_eq!(lines, ["Z OK DEFLATE active"]);
    r.compress();
    let caps = r.ok("C2", "CAPABILITY");
    assert!(!caps[0].contains("COMPRESS=DEFLATE"), "{caps:?}");
    r.ok("S", "SELECT INBOX");
    let mut body = message("compressed", &"lorem ipsum dolor sit amet ".repeat(2000));
    body.extend_from_slice(&(0u8..=255).filter(|b| *b != 0).collect::<Vec<u8>>());
    body.extend_from_slice(b"\r\n");
    let lines = r.append("A", "INBOX", &body);
    assert!(
        lines.last().unwrap().starts_with("A OK [APPENDUID"),
        "{lines:?}"
    );
    r.send(b"F UID FETCH 1 BODY.PEEK[]\r\n");
    let first = r.line();
    let prefix = format!("* 1 FETCH (UID 1 BODY[] {{{}}}\r\n", body.len()).into_bytes();
    assert!(
        first.starts_with(&prefix),
        "{:?}",
        String::from_utf8_lossy(&first[..80])
    );
    assert_eq!(&first[prefix.len()..prefix.len() + body.len()], &body[..]);
    assert_eq!(&first[prefix.len() + body.len()..], b")");
    let rest = r.until("F");
    assert!(rest.last().unwrap().starts_with("F OK"), "{rest:?}");
    r.ok("N", "NOOP");
    let bye = r.cmd("L", "LOGOUT");
    assert_eq!(bye, ["* BYE Logging out", "L OK LOGOUT completed"]);
}

#[test]
fn oversized_literals_are_refused_before_they_are_sent() {
    let f = Fixture::new();
    let mut config = Fixture::config();
    config.limits.literal_bytes_max = 1024 * 1024;
    let server = Running::start(&f, config, None);
    let mut r = Raw::greeted(server.addr);
    r.send(b"P LOGIN {100000}\r\n");
    let l = r.text();
    assert!(l.starts_with("P NO [TOOBIG]"), "{l}");
    r.ok("L", &format!("LOGIN alice {PASSWORD}"));
    let caps = r.ok("C", "CAPABILITY");
    assert!(caps[0].contains("APPENDLIMIT=1048576"), "{caps:?}");
    // The client announces 2 MB and waits: the refusal comes without "+".
    r.send(b"A APPEND INBOX {2000000}\r\n");
    let l = r.text();
    assert!(l.starts_with("A NO [TOOBIG]"), "{l}");
    // The connection is still in step.
    r.ok("N", "NOOP");
    // Just under the limit is fine.
    let big = vec![b'x'; 1024 * 1024 - 100];
    let mut msg = b"Subject: big\r\n\r\n".to_vec();
    msg.extend_from_slice(&big);
    r.send(format!("B APPEND INBOX {{{}}}\r\n", msg.len()).as_bytes());
    let l = r.text();
    assert!(l.starts_with("+ "), "{l}");
    r.send(&msg);
    r.send(b"\r\n");
    let lines = r.until("B");
    assert!(
        lines.last().unwrap().starts_with("B OK [APPENDUID"),
        "{lines:?}"
    );
}

#[test]
fn connection_limit_autologout_and_shutdown() {
    let f = Fixture::new();
    let mut config = Fixture::config();
    config.limits.connections_max = 2;
    config.timeouts.preauth = Duration::from_millis(300);
    let mut server = Running::start(&f, config, None);
    let mut logged = Raw::login(server.addr, "alice");
    logged.ok("S", "SELECT INBOX");
    let mut idle_one = Raw::greeted(server.addr);
    // The third connection is refused.
    let mut third = Raw::connect(server.addr);
    assert_eq!(third.text(), "* BYE Too many connections, try again later");
    // The unauthenticated one is logged out after the pre-login timeout.
    let t = Instant::now();
    assert_eq!(idle_one.text(), "* BYE Autologout; idle for too long");
    assert!(t.elapsed() < Duration::from_secs(5));
    // Shutdown says BYE to the logged-in connection and returns.
    logged.send(b"I IDLE\r\n");
    assert_eq!(logged.text(), "+ idling");
    let took = server.shutdown();
    assert_eq!(logged.text(), "* BYE Server shutting down");
    assert!(took < Duration::from_secs(5), "{took:?}");
}
