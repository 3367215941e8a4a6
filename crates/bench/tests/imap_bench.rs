//! The IMAP load generator against the real slotmail IMAP server
//! (`slotmail_imap::serve`) on 127.0.0.1:0: every mode runs, the mix
//! completes without errors, IDLE connections wake up. Nothing here is
//! timed; speed is measured by `bench/imap-vs-dovecot.sh`.

use std::path::Path;
use std::sync::Arc;

use slotmail_bench::imap::{ImapBenchMode, ImapBenchOptions, run_imap_bench};
use slotmail_store::{Options, Slot};

const USERS: u32 = 3;

struct Running {
    port: u16,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    server: tokio::task::JoinHandle<()>,
}

async fn start(dir: &Path) -> Running {
    let slot = Arc::new(Slot::open(dir.join("slot"), Options::default()).unwrap());
    for k in 1..=USERS {
        slot.create_user(&format!("u{k}"), "pw", false).unwrap();
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let config = slotmail_imap::ImapConfig {
        hostname: "bench.example".into(),
        allow_plaintext_auth: true,
        ..Default::default()
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        slotmail_imap::serve(listener, None, None, slot, config, async {
            let _ = stopped.await;
        })
        .await;
    });
    Running {
        port,
        stop: Some(stop),
        server,
    }
}

/// A small mboxrd corpus: plain, multipart with an attachment, a quoted
/// `From ` line.
fn write_corpus(path: &Path) {
    let mut mbox = String::new();
    for i in 0..8 {
        mbox.push_str(&format!(
            "From sender@example.org Mon Jun  3 12:00:{i:02} 2024\n"
        ));
        mbox.push_str(&format!(
            "From: Sender {i} <sender@example.org>\nTo: a@example.org, b@example.org\n\
             Subject: message {i}\nMessage-ID: <{i}@example.org>\n"
        ));
        if i % 2 == 0 {
            mbox.push_str("\nHello.\n>From the quoted line.\n\n");
        } else {
            mbox.push_str(
                "MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=\"b\"\n\n\
                 --b\nContent-Type: text/plain\n\nText part.\n\
                 --b\nContent-Type: application/octet-stream\nContent-Transfer-Encoding: base64\n\n\
                 AAECAwQFBgcICQ==\n--b--\n\n",
            );
        }
    }
    std::fs::write(path, mbox).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_mode_runs_against_slotmail() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = start(dir.path()).await;
    let corpus = dir.path().join("corpus.mbox");
    write_corpus(&corpus);
    let base = ImapBenchOptions {
        users: USERS,
        clients: 3,
        corpus: Some(corpus),
        // The server runs in this process: its tree is ours.
        server_pids: vec![std::process::id()],
        ..ImapBenchOptions::new("127.0.0.1", server.port)
    };

    let r = run_imap_bench(ImapBenchOptions {
        mode: ImapBenchMode::Prefill,
        prefill: 5,
        ..base.clone()
    })
    .await
    .unwrap();
    let p = r.prefill.unwrap();
    assert_eq!((p.appended, p.already_there), (15, 0));
    assert!(r.greeting.contains("bench.example"), "{}", r.greeting);

    let r = run_imap_bench(ImapBenchOptions {
        mode: ImapBenchMode::Load,
        secs: 2.0,
        ..base.clone()
    })
    .await
    .unwrap();
    let table = r.to_table();
    assert!(table.contains("sessions/s"), "{table}");
    let l = r.load.unwrap();
    assert_eq!(l.errors, 0, "{:#?}", l.error_samples);
    for name in [
        "CONNECT", "LOGIN", "SELECT", "FETCH", "FETCH2", "EXPUNGE", "APPEND", "LOGOUT",
    ] {
        let c = l.commands.iter().find(|c| c.name == name).unwrap();
        assert!(c.count > 0, "no {name} completed: {:#?}", l.commands);
    }
    let login = l.commands.iter().find(|c| c.name == "LOGIN").unwrap();
    assert_eq!(l.sessions_per_s, login.per_s);
    let usage = l.server.unwrap();
    assert!(usage.cpu_s > 0.0 && usage.pss_peak_mib > 0.0, "{usage:?}");
    assert!(r.machine.nproc >= 1);

    let r = run_imap_bench(ImapBenchOptions {
        mode: ImapBenchMode::Idle,
        connections: 9,
        wake_users: 2,
        ..base
    })
    .await
    .unwrap();
    let table = r.to_table();
    let i = r.idle.unwrap();
    assert_eq!(
        (i.established, i.failed),
        (9, 0),
        "{:?}",
        i.setup_error_samples
    );
    let w = i.wake.unwrap();
    assert_eq!((w.users, w.connections, w.append_errors), (2, 6, 0));
    assert_eq!(w.woken, 6, "{table}");
    assert_eq!((i.alive_before_logout, i.logged_out), (9, 9));
    assert!(i.server_idle.is_some() && i.pss_per_connection_kib.is_some());
    assert!(table.contains("wake-up"), "{table}");

    let _ = server.stop.take().unwrap().send(());
    server.server.await.unwrap();
}
