//! A fault-injecting TCP relay for replication streams: masters dial it (the
//! cluster file's `[sync_via]`), it dials the replica's sync listener and
//! copies bytes both ways — or drops, stalls, delays or cuts them, as told.
//! Threads, not tasks: a relay carries a handful of streams.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Bytes copied per read.
pub const CHUNK_BYTES: usize = 16 * 1024;
/// How long a pump waits in a read before it looks at the mode again.
pub const POLL: Duration = Duration::from_millis(100);
/// How long the relay waits to reach the replica.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Connections one relay carries at once; more are closed at accept.
pub const CONNECTIONS_MAX: usize = 64;

/// What the relay does with the streams through it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Copy bytes both ways.
    Pass,
    /// A partition: new connections are closed at once, open ones cut.
    Partition,
    /// Hold every byte (connections stay open, nothing moves).
    Stall,
    /// Copy each chunk after this delay.
    Delay(Duration),
    /// Cut each connection (both ways) after this many more bytes, in
    /// the middle of whatever frame they belong to.
    Cut(u64),
}

#[derive(Debug, Default)]
pub struct Stats {
    pub connections: AtomicU64,
    pub refused: AtomicU64,
    pub cut: AtomicU64,
    pub bytes: AtomicU64,
}

struct Conn {
    id: u64,
    a: TcpStream,
    b: TcpStream,
    bytes: Arc<AtomicU64>,
}

struct Shared {
    mode: Mutex<Mode>,
    conns: Mutex<Vec<Conn>>,
    stop: AtomicBool,
    next_id: AtomicU64,
    stats: Stats,
    target: SocketAddr,
}

/// One relay: `listen` → `target`. Stopped when dropped.
pub struct Relay {
    pub listen: SocketAddr,
    pub target: SocketAddr,
    shared: Arc<Shared>,
}

impl Relay {
    /// Listen on `ip` (a free port) and relay to `target`.
    pub fn start(ip: std::net::IpAddr, target: SocketAddr) -> std::io::Result<Relay> {
        let listener = TcpListener::bind(SocketAddr::new(ip, 0))?;
        let listen = listener.local_addr()?;
        let shared = Arc::new(Shared {
            mode: Mutex::new(Mode::Pass),
            conns: Mutex::new(Vec::new()),
            stop: AtomicBool::new(false),
            next_id: AtomicU64::new(0),
            stats: Stats::default(),
            target,
        });
        let s = shared.clone();
        std::thread::spawn(move || accept_loop(listener, s));
        Ok(Relay {
            listen,
            target,
            shared,
        })
    }

    pub fn mode(&self) -> Mode {
        *self.shared.mode.lock().unwrap()
    }

    /// Change the mode; a partition cuts the open connections, a cut starts
    /// counting bytes from now.
    pub fn set_mode(&self, mode: Mode) {
        *self.shared.mode.lock().unwrap() = mode;
        let mut conns = self.shared.conns.lock().unwrap();
        match mode {
            Mode::Partition => {
                for c in conns.drain(..) {
                    let _ = c.a.shutdown(Shutdown::Both);
                    let _ = c.b.shutdown(Shutdown::Both);
                    self.shared.stats.cut.fetch_add(1, Ordering::Relaxed);
                }
            }
            Mode::Cut(_) => {
                for c in conns.iter() {
                    c.bytes.store(0, Ordering::Relaxed);
                }
            }
            _ => {}
        }
    }

    pub fn stats(&self) -> &Stats {
        &self.shared.stats
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        // Wake the accept loop.
        let _ = TcpStream::connect_timeout(&self.listen, Duration::from_millis(200));
        for c in self.shared.conns.lock().unwrap().drain(..) {
            let _ = c.a.shutdown(Shutdown::Both);
            let _ = c.b.shutdown(Shutdown::Both);
        }
    }
}

fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    for incoming in listener.incoming() {
        if shared.stop.load(Ordering::Relaxed) {
            return;
        }
        let Ok(client) = incoming else { continue };
        let mode = *shared.mode.lock().unwrap();
        if mode == Mode::Partition || shared.conns.lock().unwrap().len() >= CONNECTIONS_MAX {
            shared.stats.refused.fetch_add(1, Ordering::Relaxed);
            let _ = client.shutdown(Shutdown::Both);
            continue;
        }
        let Ok(server) = TcpStream::connect_timeout(&shared.target, CONNECT_TIMEOUT) else {
            shared.stats.refused.fetch_add(1, Ordering::Relaxed);
            let _ = client.shutdown(Shutdown::Both);
            continue;
        };
        let _ = client.set_nodelay(true);
        let _ = server.set_nodelay(true);
        shared.stats.connections.fetch_add(1, Ordering::Relaxed);
        let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
        let bytes = Arc::new(AtomicU64::new(0));
        let clones = (|| {
            Some((
                client.try_clone().ok()?,
                server.try_clone().ok()?,
                client.try_clone().ok()?,
                server.try_clone().ok()?,
            ))
        })();
        let Some((c2, s2, c3, s3)) = clones else {
            continue;
        };
        shared.conns.lock().unwrap().push(Conn {
            id,
            a: c3,
            b: s3,
            bytes: bytes.clone(),
        });
        let (sh1, sh2, b1, b2) = (shared.clone(), shared.clone(), bytes.clone(), bytes);
        std::thread::spawn(move || pump(client, server, sh1, b1, id));
        std::thread::spawn(move || pump(s2, c2, sh2, b2, id));
    }
}

/// Copy `from` → `to` under the relay's mode until either side closes.
fn pump(
    mut from: TcpStream,
    mut to: TcpStream,
    shared: Arc<Shared>,
    bytes: Arc<AtomicU64>,
    id: u64,
) {
    let _ = from.set_read_timeout(Some(POLL));
    let mut buf = vec![0u8; CHUNK_BYTES];
    let end = |from: &TcpStream, to: &TcpStream| {
        let _ = from.shutdown(Shutdown::Both);
        let _ = to.shutdown(Shutdown::Both);
        shared.conns.lock().unwrap().retain(|c| c.id != id);
    };
    loop {
        if shared.stop.load(Ordering::Relaxed) {
            return end(&from, &to);
        }
        let mode = *shared.mode.lock().unwrap();
        match mode {
            Mode::Partition => return end(&from, &to),
            Mode::Stall => {
                std::thread::sleep(Duration::from_millis(20));
                continue;
            }
            _ => {}
        }
        let n = match from.read(&mut buf) {
            Ok(0) => return end(&from, &to),
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                continue;
            }
            Err(_) => return end(&from, &to),
        };
        // The mode may have changed while the read waited: a stall holds the
        // bytes read until it ends.
        let mut mode = *shared.mode.lock().unwrap();
        while mode == Mode::Stall && !shared.stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(20));
            mode = *shared.mode.lock().unwrap();
        }
        let mut len = n;
        let mut cut = false;
        match mode {
            Mode::Partition => return end(&from, &to),
            Mode::Delay(d) => std::thread::sleep(d),
            Mode::Cut(limit) => {
                let sent = bytes.load(Ordering::Relaxed);
                if sent + n as u64 >= limit {
                    len = limit.saturating_sub(sent) as usize;
                    cut = true;
                }
            }
            _ => {}
        }
        if to.write_all(&buf[..len]).is_err() {
            return end(&from, &to);
        }
        bytes.fetch_add(len as u64, Ordering::Relaxed);
        shared.stats.bytes.fetch_add(len as u64, Ordering::Relaxed);
        if cut {
            shared.stats.cut.fetch_add(1, Ordering::Relaxed);
            return end(&from, &to);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn echo_server() -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let a = l.local_addr().unwrap();
        std::thread::spawn(move || {
            for s in l.incoming() {
                let Ok(mut s) = s else { continue };
                std::thread::spawn(move || {
                    let mut buf = [0u8; 4096];
                    while let Ok(n) = s.read(&mut buf) {
                        if n == 0 || s.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                });
            }
        });
        a
    }

    fn roundtrip(addr: SocketAddr, data: &[u8]) -> std::io::Result<Vec<u8>> {
        let mut s = TcpStream::connect(addr)?;
        s.set_read_timeout(Some(Duration::from_secs(2)))?;
        s.write_all(data)?;
        let mut got = vec![0u8; data.len()];
        s.read_exact(&mut got)?;
        Ok(got)
    }

    #[test]
    fn the_relay_passes_partitions_and_cuts() {
        let relay = Relay::start("127.0.0.1".parse().unwrap(), echo_server()).unwrap();
        assert_eq!(roundtrip(relay.listen, b"hello").unwrap(), b"hello");
        relay.set_mode(Mode::Partition);
        assert!(roundtrip(relay.listen, b"hello").is_err());
        relay.set_mode(Mode::Delay(Duration::from_millis(50)));
        let t = std::time::Instant::now();
        assert_eq!(roundtrip(relay.listen, b"slow").unwrap(), b"slow");
        assert!(t.elapsed() >= Duration::from_millis(100));
        // A cut after 3 bytes: the echo of 10 bytes never completes.
        relay.set_mode(Mode::Cut(3));
        assert!(roundtrip(relay.listen, b"0123456789").is_err());
        assert!(relay.stats().cut.load(Ordering::Relaxed) >= 2);
        relay.set_mode(Mode::Pass);
        assert_eq!(roundtrip(relay.listen, b"again").unwrap(), b"again");
    }
}
