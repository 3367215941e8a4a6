//! The IMAP shell in one process: a real directory (SQLite in a temporary
//! directory), fake slots on loopback that greet, check a password and tag
//! every answer with their name, and the proxy's listener in between.
//! Covers the relay, the master-change BYE (also when the slot ends the
//! session first, with or without its own BYE), the per-user and overall
//! connection limits, edge throttling and a silent backend.

use slotmail_directory::{Directory, Machine, Slot, SqliteDirectory, SqliteOptions, StoreSpec};
use slotmail_imap_proto::sasl::base64_decode;
use slotmail_proxy::Limits;
use slotmail_proxy::imap::{ImapShared, serve};
use slotmail_proxy::limits::{LoginThrottle, UserSessions};
use slotmail_proxy::preauth::PreAuthConfig;
use slotmail_proxy::routes::Routes;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

const T: Duration = Duration::from_secs(5);

/// A fake slot named `name`: greets (unless `silent`), accepts the
/// password "pw", then answers every command with `* SLOT name` and OK;
/// `VANISH` closes the connection without a word, `GONE` answers OK and
/// `* BYE [UNAVAILABLE]` in one write and closes (as a slot does for a
/// user deleted there).
async fn fake_slot(ip: &str, name: &'static str, silent: bool) -> u16 {
    let listener = TcpListener::bind((ip, 0)).await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((s, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                if silent {
                    tokio::time::sleep(Duration::from_secs(30)).await;
                    return;
                }
                let mut s = BufReader::new(s);
                s.get_mut()
                    .write_all(b"* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN SASL-IR] fake\r\n")
                    .await
                    .unwrap();
                let mut line = String::new();
                if s.read_line(&mut line).await.unwrap_or(0) == 0 {
                    return;
                }
                let b64 = line.trim_end().rsplit(' ').next().unwrap();
                let sasl = base64_decode(b64.as_bytes()).unwrap();
                if !sasl.ends_with(b"\0pw") {
                    let _ = s
                        .get_mut()
                        .write_all(b"P1 NO [AUTHENTICATIONFAILED] Authentication failed\r\n")
                        .await;
                    return;
                }
                s.get_mut()
                    .write_all(b"P1 OK [CAPABILITY IMAP4rev1 IDLE] Logged in\r\n")
                    .await
                    .unwrap();
                loop {
                    line.clear();
                    if s.read_line(&mut line).await.unwrap_or(0) == 0 {
                        return;
                    }
                    let mut words = line.trim_end().split(' ');
                    let tag = words.next().unwrap().to_string();
                    let reply = match words.next() {
                        Some("VANISH") => return,
                        Some("GONE") => {
                            let bye = format!("{tag} OK done\r\n{GONE_BYE}");
                            let _ = s.get_mut().write_all(bye.as_bytes()).await;
                            return;
                        }
                        _ => format!("* SLOT {name}\r\n{tag} OK done\r\n"),
                    };
                    if s.get_mut().write_all(reply.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    port
}

/// What the fake slot says for `GONE`.
const GONE_BYE: &str = "* BYE [UNAVAILABLE] Your mailbox is no longer served here\r\n";

/// The proxy's BYE for a session whose master moved.
const MOVED_BYE: &str = "* BYE [UNAVAILABLE] Your mail store moved; please reconnect\r\n";

struct Setup {
    _dir: tempfile::TempDir,
    directory: Arc<SqliteDirectory>,
    addr: std::net::SocketAddr,
    cancel: CancellationToken,
}

/// A directory with store s1 (master a1 on 127.80.1.1, replica b1 on
/// 127.80.1.2; addresses no other test binds, so the ephemeral ports here
/// never take a port another test picked on 127.0.0.1) holding alice,
/// fake slots behind both, and a proxy with `limits`. `silent`: a1 never greets.
async fn setup(limits: Limits, silent: bool) -> Setup {
    setup_polling(limits, silent, Duration::from_millis(20)).await
}

/// [`setup`] with the proxy reading the directory every `poll`.
async fn setup_polling(limits: Limits, silent: bool, poll: Duration) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let directory = Arc::new(
        SqliteDirectory::open_with(
            dir.path().join("directory.db"),
            &SqliteOptions {
                create: true,
                ..SqliteOptions::default()
            },
        )
        .unwrap(),
    );
    let a_port = fake_slot("127.80.1.1", "a1", silent).await;
    let b_port = fake_slot("127.80.1.2", "b1", false).await;
    for (m, ip, slot, port) in [
        ("a", "127.80.1.1", "a1", a_port),
        ("b", "127.80.1.2", "b1", b_port),
    ] {
        directory
            .add_machine(&Machine {
                name: m.into(),
                address: ip.parse().unwrap(),
            })
            .unwrap();
        directory
            .add_slot(&Slot {
                id: slot.into(),
                machine: m.into(),
                data_dir: format!("/srv/{slot}"),
                imap_port: port,
                lmtp_port: port.wrapping_add(1).max(1),
                sync_port: port.wrapping_add(2).max(2),
                weight: 1,
            })
            .unwrap();
    }
    directory
        .create_store(
            &StoreSpec {
                id: "s1".into(),
                slots: vec!["a1".into(), "b1".into()],
                sync: false,
            },
            "test",
        )
        .unwrap();
    directory.assign_user("alice", "s1").unwrap();
    let routes = Arc::new(Routes::open(directory.clone()).await.unwrap());
    let cancel = CancellationToken::new();
    {
        let (routes, cancel) = (routes.clone(), cancel.clone());
        tokio::spawn(async move { routes.follow(poll, cancel).await });
    }
    let shared = Arc::new(ImapShared {
        preauth: PreAuthConfig {
            hostname: "proxy.test".into(),
            allow_plaintext_auth: true,
            starttls_available: false,
            login_failures_max: limits.login_failures_per_connection_max,
        },
        throttle: LoginThrottle::new(
            limits.login_failures_per_address_max,
            limits.login_failure_window(),
            limits.throttle_addresses_max,
        ),
        users: UserSessions::new(limits.connections_per_user_max),
        connections: Arc::new(Semaphore::new(limits.connections_max)),
        limits,
        routes,
        tls: None,
        shutdown: cancel.clone(),
    });
    let listener = TcpListener::bind("127.80.1.3:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(serve(listener, false, shared, TaskTracker::new()));
    Setup {
        _dir: dir,
        directory,
        addr,
        cancel,
    }
}

struct Client {
    s: BufReader<TcpStream>,
}

impl Client {
    async fn connect(addr: std::net::SocketAddr) -> (Client, String) {
        let s = TcpStream::connect(addr).await.unwrap();
        let mut c = Client {
            s: BufReader::new(s),
        };
        let greeting = c.line().await;
        (c, greeting)
    }

    async fn line(&mut self) -> String {
        let mut line = String::new();
        tokio::time::timeout(T, self.s.read_line(&mut line))
            .await
            .expect("an answer in time")
            .unwrap();
        line
    }

    /// Send `cmd` (tag `t`), return every line up to the tagged one.
    async fn cmd(&mut self, cmd: &str) -> String {
        self.s
            .get_mut()
            .write_all(format!("t {cmd}\r\n").as_bytes())
            .await
            .unwrap();
        let mut out = String::new();
        loop {
            let line = self.line().await;
            if line.is_empty() {
                return out;
            }
            out.push_str(&line);
            if line.starts_with("t ") {
                return out;
            }
        }
    }
}

fn limits() -> Limits {
    Limits {
        backend_connect_timeout_ms: 500,
        backend_login_timeout_ms: 500,
        ..Limits::default()
    }
}

#[tokio::test]
async fn relay_then_bye_on_master_change_and_the_next_login_lands_on_the_new_master() {
    let s = setup(limits(), false).await;
    let (mut c, greeting) = Client::connect(s.addr).await;
    assert!(greeting.starts_with("* OK [CAPABILITY "), "{greeting}");
    let login = c.cmd("LOGIN alice pw").await;
    assert_eq!(login, "t OK [CAPABILITY IMAP4rev1 IDLE] Logged in\r\n");
    assert_eq!(c.cmd("NOOP").await, "* SLOT a1\r\nt OK done\r\n");

    let epoch = s.directory.set_master("s1", "b1", 1, "test").unwrap();
    assert_eq!(epoch, 2);
    assert_eq!(
        c.line().await,
        "* BYE [UNAVAILABLE] Your mail store moved; please reconnect\r\n"
    );
    assert_eq!(c.line().await, "", "closed after the BYE");

    let (mut c, _) = Client::connect(s.addr).await;
    assert!(c.cmd("LOGIN alice pw").await.starts_with("t OK"));
    assert_eq!(c.cmd("NOOP").await, "* SLOT b1\r\nt OK done\r\n");
    s.cancel.cancel();
}

#[tokio::test]
async fn per_user_and_overall_connection_limits() {
    let s = setup(
        Limits {
            connections_max: 2,
            connections_per_user_max: 1,
            ..limits()
        },
        false,
    )
    .await;
    let (mut one, _) = Client::connect(s.addr).await;
    assert!(one.cmd("LOGIN alice pw").await.starts_with("t OK"));
    let (mut two, _) = Client::connect(s.addr).await;
    assert_eq!(
        two.cmd("LOGIN alice pw").await,
        "t NO [LIMIT] Too many connections for this user\r\n"
    );
    let (_, third) = Client::connect(s.addr).await;
    assert!(
        third.starts_with("* BYE [UNAVAILABLE] Too many connections"),
        "{third}"
    );
    drop(one);
    // The user's session ends with the connection: a login works again.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(two.cmd("LOGIN alice pw").await.starts_with("t OK"));
    s.cancel.cancel();
}

#[tokio::test]
async fn failed_logins_are_throttled_per_address_and_close_the_connection() {
    let s = setup(
        Limits {
            login_failures_per_address_max: 3,
            login_failures_per_connection_max: 2,
            ..limits()
        },
        false,
    )
    .await;
    let (mut c, _) = Client::connect(s.addr).await;
    let started = std::time::Instant::now();
    assert_eq!(
        c.cmd("LOGIN alice wrong").await,
        "t NO [AUTHENTICATIONFAILED] Authentication failed\r\n"
    );
    assert_eq!(
        c.cmd("LOGIN nobody pw").await,
        "t NO [AUTHENTICATIONFAILED] Authentication failed\r\n"
    );
    assert_eq!(c.line().await, "* BYE Too many failed logins\r\n");
    assert_eq!(c.line().await, "", "closed after the BYE");
    // Delays: 0.2 s, then 0.4 s.
    assert!(started.elapsed() >= Duration::from_millis(600));
    let (mut c, _) = Client::connect(s.addr).await;
    c.cmd("LOGIN alice wrong").await;
    let (mut c, _) = Client::connect(s.addr).await;
    assert_eq!(
        c.cmd("LOGIN alice pw").await,
        "t NO [UNAVAILABLE] Too many failed logins from your address; try again later\r\n"
    );
    s.cancel.cancel();
}

#[tokio::test]
async fn a_silent_backend_is_a_prompt_no_unavailable() {
    let s = setup(limits(), true).await;
    let (mut c, _) = Client::connect(s.addr).await;
    let started = std::time::Instant::now();
    let reply = c.cmd("LOGIN alice pw").await;
    assert_eq!(
        reply,
        "t NO [UNAVAILABLE] Mail store temporarily unavailable (timeout); try again shortly\r\n"
    );
    assert!(started.elapsed() < Duration::from_secs(2));
    // The connection goes on: CAPABILITY still works.
    assert!(
        c.cmd("CAPABILITY")
            .await
            .ends_with("t OK CAPABILITY completed\r\n")
    );
    s.cancel.cancel();
}

/// A proxy that never re-reads the directory by itself, so only the check
/// when a backend ends sees a change.
async fn setup_not_following() -> Setup {
    setup_polling(limits(), false, Duration::from_secs(3600)).await
}

/// Read until the connection closes; everything read.
async fn rest(c: &mut Client) -> String {
    let mut out = String::new();
    loop {
        let line = c.line().await;
        if line.is_empty() {
            return out;
        }
        out.push_str(&line);
    }
}

#[tokio::test]
async fn a_slot_closing_after_the_master_moved_still_gets_the_client_a_bye() {
    let s = setup_not_following().await;
    let (mut c, _) = Client::connect(s.addr).await;
    assert!(c.cmd("LOGIN alice pw").await.starts_with("t OK"));
    assert_eq!(c.cmd("NOOP").await, "* SLOT a1\r\nt OK done\r\n");
    s.directory.set_master("s1", "b1", 1, "test").unwrap();
    // The slot drops the session before the proxy looked at the directory.
    assert_eq!(c.cmd("VANISH").await, MOVED_BYE);
    assert_eq!(c.line().await, "", "closed after the BYE");
    s.cancel.cancel();
}

#[tokio::test]
async fn a_slots_own_bye_is_passed_once() {
    let s = setup_not_following().await;
    let (mut c, _) = Client::connect(s.addr).await;
    assert!(c.cmd("LOGIN alice pw").await.starts_with("t OK"));
    s.directory.set_master("s1", "b1", 1, "test").unwrap();
    c.s.get_mut().write_all(b"t GONE\r\n").await.unwrap();
    let rest = rest(&mut c).await;
    // The slot's BYE, or the proxy's in its place if it came in a read of
    // its own: one BYE either way.
    let bye = rest.strip_prefix("t OK done\r\n").expect(&rest);
    assert!(bye == GONE_BYE || bye == MOVED_BYE, "{rest}");
    s.cancel.cancel();
}

#[tokio::test]
async fn a_slot_closing_while_the_user_is_being_moved_gets_the_client_a_bye() {
    let s = setup_not_following().await;
    // A second store to move to (its slots are not contacted).
    for (slot, machine, port) in [("c1", "a", 1u16), ("d1", "b", 2)] {
        s.directory
            .add_slot(&Slot {
                id: slot.into(),
                machine: machine.into(),
                data_dir: format!("/srv/{slot}"),
                imap_port: port,
                lmtp_port: port + 10,
                sync_port: port + 20,
                weight: 1,
            })
            .unwrap();
    }
    s.directory
        .create_store(
            &StoreSpec {
                id: "s2".into(),
                slots: vec!["c1".into(), "d1".into()],
                sync: false,
            },
            "test",
        )
        .unwrap();
    let (mut c, _) = Client::connect(s.addr).await;
    assert!(c.cmd("LOGIN alice pw").await.starts_with("t OK"));
    s.directory.begin_move("alice", "s1", "s2").unwrap();
    assert_eq!(
        c.cmd("VANISH").await,
        "* BYE [UNAVAILABLE] Your mailbox is being moved to another server; please reconnect\r\n"
    );
    assert_eq!(c.line().await, "", "closed after the BYE");
    s.cancel.cancel();
}

#[tokio::test]
async fn a_slot_closing_for_no_reason_the_directory_knows_just_closes() {
    let s = setup_not_following().await;
    let (mut c, _) = Client::connect(s.addr).await;
    assert!(c.cmd("LOGIN alice pw").await.starts_with("t OK"));
    assert_eq!(c.cmd("VANISH").await, "", "closed, no BYE of the proxy's");
    // A slot's own BYE passes as it is.
    let (mut c, _) = Client::connect(s.addr).await;
    assert!(c.cmd("LOGIN alice pw").await.starts_with("t OK"));
    c.s.get_mut().write_all(b"t GONE\r\n").await.unwrap();
    assert_eq!(rest(&mut c).await, format!("t OK done\r\n{GONE_BYE}"));
    s.cancel.cancel();
}
