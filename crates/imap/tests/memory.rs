//! Memory per idle connection: many logged-in connections with INBOX
//! selected, all in IDLE, must cost at most 64 KiB each (the target is
//! 10,000 IDLE connections on one slot). Measured as growth of the process's
//! resident set, which also counts allocator slack and kernel-visible
//! buffers of this process; the client sockets live in this process too
//! but hold no user-space buffers.

mod common;

use common::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// Budget per idle connection, in bytes.
const IDLE_CONNECTION_BYTES_MAX: usize = 64 * 1024;
/// Connections opened for the measurement.
const CONNECTIONS: usize = 400;

fn resident_bytes() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: usize = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

fn read_until(s: &mut TcpStream, end: &[u8]) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !got.windows(end.len()).any(|w| w == end) {
        let n = s.read(&mut buf).expect("server answers");
        assert!(n > 0, "closed: {}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    }
    got
}

/// A connection logged in as alice, INBOX selected, in IDLE.
fn idle_connection(addr: std::net::SocketAddr) -> TcpStream {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    read_until(&mut s, b"\r\n");
    s.write_all(format!("a LOGIN alice {PASSWORD}\r\nb SELECT INBOX\r\nc IDLE\r\n").as_bytes())
        .unwrap();
    read_until(&mut s, b"+ idling\r\n");
    s
}

#[test]
fn idle_connections_cost_at_most_64_kib_each() {
    let f = Fixture::new();
    for i in 0..200 {
        f.deliver("alice", "INBOX", &message(&format!("m{i}"), "body"));
    }
    let mut config = Fixture::config();
    config.limits.connections_per_user_max = CONNECTIONS * 2;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let slot = f.slot.clone();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = rt.spawn(slotmail_imap::serve(
        listener,
        None,
        None,
        slot,
        config,
        async {
            let _ = stopped.await;
        },
    ));

    // Warm up: the password cache, blocking threads, allocator arenas.
    let warm: Vec<TcpStream> = (0..50).map(|_| idle_connection(addr)).collect();
    drop(warm);
    std::thread::sleep(Duration::from_millis(300));

    let before = resident_bytes();
    let conns: Vec<TcpStream> = (0..CONNECTIONS).map(|_| idle_connection(addr)).collect();
    std::thread::sleep(Duration::from_millis(300));
    let after = resident_bytes();
    let per = after.saturating_sub(before) / CONNECTIONS;
    eprintln!(
        "memory: {CONNECTIONS} idle connections (INBOX of 200 selected, IDLE) grew RSS by {} KiB: {} bytes each",
        (after - before.min(after)) / 1024,
        per
    );
    assert!(
        per <= IDLE_CONNECTION_BYTES_MAX,
        "{per} bytes per idle connection"
    );

    // They are all alive and woken by a change.
    f.deliver("alice", "INBOX", &message("wake", "up"));
    for mut c in conns.into_iter().take(20) {
        let got = read_until(&mut c, b"* 201 EXISTS\r\n");
        assert!(!got.is_empty());
    }
    let _ = stop.send(());
    rt.block_on(server).unwrap();
}
