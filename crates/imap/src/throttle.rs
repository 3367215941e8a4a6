//! Failed logins across connections, per (client address, user name).
//!
//! The per-connection delay and close (`failed_logins_max`) alone let a
//! client that reconnects guess without end. This table remembers failures
//! per address and user name within a window; once a pair reaches its
//! ceiling, further attempts for it are refused without checking the
//! password until the window passes, so a correct guess is never told
//! apart. The key includes the user name on purpose: behind the proxy every
//! client shares the proxy's address, and a per-address ceiling there would
//! lock every user out during an attack on one; the proxy throttles per
//! client address at the edge (`slotmail_proxy::limits`).
//!
//! Plain data behind a mutex with the clock passed in, so it is tested
//! without waiting; the table holds at most `keys_max` entries.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Longest user name kept in a key, in bytes (longer names are cut; a
/// user name of the store is far shorter).
pub const THROTTLE_NAME_BYTES_MAX: usize = 128;

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    window_start: Instant,
}

type Key = (Option<IpAddr>, Vec<u8>);

/// Failed logins per (client address, user name) within a window.
#[derive(Debug)]
pub struct LoginThrottle {
    failures_max: u32,
    window: Duration,
    keys_max: usize,
    table: Mutex<HashMap<Key, Failures>>,
}

fn key(ip: Option<IpAddr>, user: &[u8]) -> Key {
    (ip, user[..user.len().min(THROTTLE_NAME_BYTES_MAX)].to_vec())
}

impl LoginThrottle {
    /// At most `failures_max` failures per key within `window`; at most
    /// `keys_max` keys remembered at once.
    pub fn new(failures_max: u32, window: Duration, keys_max: usize) -> LoginThrottle {
        assert!(failures_max > 0 && keys_max > 0, "throttle limits");
        LoginThrottle {
            failures_max,
            window,
            keys_max,
            table: Mutex::new(HashMap::new()),
        }
    }

    /// Whether a login of `user` from `ip` is refused now.
    pub fn blocked(&self, ip: Option<IpAddr>, user: &[u8], now: Instant) -> bool {
        let table = self.table.lock().unwrap_or_else(|e| e.into_inner());
        match table.get(&key(ip, user)) {
            Some(f) => {
                now.duration_since(f.window_start) < self.window && f.count >= self.failures_max
            }
            None => false,
        }
    }

    /// Record a failed login of `user` from `ip`.
    pub fn failed(&self, ip: Option<IpAddr>, user: &[u8], now: Instant) {
        let mut table = self.table.lock().unwrap_or_else(|e| e.into_inner());
        let k = key(ip, user);
        if !table.contains_key(&k) && table.len() >= self.keys_max {
            let window = self.window;
            table.retain(|_, f| now.duration_since(f.window_start) < window);
            if table.len() >= self.keys_max
                && let Some(oldest) = table
                    .iter()
                    .min_by_key(|(_, f)| f.window_start)
                    .map(|(k, _)| k.clone())
            {
                table.remove(&oldest);
            }
        }
        let entry = table.entry(k).or_insert(Failures {
            count: 0,
            window_start: now,
        });
        if now.duration_since(entry.window_start) >= self.window {
            *entry = Failures {
                count: 0,
                window_start: now,
            };
        }
        entry.count = entry.count.saturating_add(1);
    }

    /// A successful login of `user` from `ip` forgets its failures.
    pub fn succeeded(&self, ip: Option<IpAddr>, user: &[u8]) {
        let mut table = self.table.lock().unwrap_or_else(|e| e.into_inner());
        table.remove(&key(ip, user));
    }

    /// Keys remembered now.
    pub fn tracked(&self) -> usize {
        self.table.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: Option<IpAddr> = Some(IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 1)));
    const B: Option<IpAddr> = Some(IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 2)));

    #[test]
    fn blocks_a_pair_after_max_failures_until_the_window_passes() {
        let t = LoginThrottle::new(3, Duration::from_secs(60), 100);
        let now = Instant::now();
        for _ in 0..3 {
            assert!(!t.blocked(A, b"bob", now));
            t.failed(A, b"bob", now);
        }
        assert!(t.blocked(A, b"bob", now));
        // Other users from the same address, and bob from elsewhere, go on.
        assert!(!t.blocked(A, b"alice", now));
        assert!(!t.blocked(B, b"bob", now));
        assert!(!t.blocked(A, b"bob", now + Duration::from_secs(61)));
        t.failed(A, b"bob", now + Duration::from_secs(61));
        assert!(!t.blocked(A, b"bob", now + Duration::from_secs(61)));
    }

    #[test]
    fn success_forgets_and_memory_is_bounded() {
        let t = LoginThrottle::new(2, Duration::from_secs(60), 10);
        let now = Instant::now();
        t.failed(A, b"bob", now);
        t.succeeded(A, b"bob");
        t.failed(A, b"bob", now);
        assert!(!t.blocked(A, b"bob", now));
        for i in 0..1000u32 {
            t.failed(A, format!("u{i}").as_bytes(), now);
        }
        assert!(t.tracked() <= 10);
        let long = vec![b'x'; 10_000];
        t.failed(A, &long, now);
        t.failed(A, &long[..THROTTLE_NAME_BYTES_MAX], now);
        assert!(t.blocked(A, &long, now), "long names share their cut key");
    }
}
