//! Edge protection: failed-login throttling per client address and the
//! per-user session count. Both are plain data behind a mutex, with the
//! clock passed in, so they are tested without waiting.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The first delay before answering a failed login, doubled per failure
/// of the address within the window, at most [`LOGIN_DELAY_MAX`].
pub const LOGIN_DELAY_INITIAL: Duration = Duration::from_millis(200);
/// The longest delay before answering a failed login.
pub const LOGIN_DELAY_MAX: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    window_start: Instant,
}

/// Failed logins per client address within a window.
#[derive(Debug)]
pub struct LoginThrottle {
    failures_max: u32,
    window: Duration,
    addresses_max: usize,
    table: Mutex<HashMap<IpAddr, Failures>>,
}

impl LoginThrottle {
    /// At most `failures_max` failures per address within `window`;
    /// `addresses_max` addresses remembered at once.
    pub fn new(failures_max: u32, window: Duration, addresses_max: usize) -> LoginThrottle {
        assert!(failures_max > 0 && addresses_max > 0);
        LoginThrottle {
            failures_max,
            window,
            addresses_max,
            table: Mutex::new(HashMap::new()),
        }
    }

    /// Whether `ip` may try to log in now.
    pub fn allowed(&self, ip: IpAddr, now: Instant) -> bool {
        let table = self.table.lock().expect("throttle lock");
        match table.get(&ip) {
            Some(f) if now.duration_since(f.window_start) < self.window => {
                f.count < self.failures_max
            }
            _ => true,
        }
    }

    /// Record a failed login of `ip`; returns how long to wait before
    /// answering it.
    pub fn failed(&self, ip: IpAddr, now: Instant) -> Duration {
        let mut table = self.table.lock().expect("throttle lock");
        if !table.contains_key(&ip) && table.len() >= self.addresses_max {
            let window = self.window;
            table.retain(|_, f| now.duration_since(f.window_start) < window);
            if table.len() >= self.addresses_max {
                // Still full of live entries: forget the oldest window.
                if let Some(oldest) = table
                    .iter()
                    .min_by_key(|(_, f)| f.window_start)
                    .map(|(ip, _)| *ip)
                {
                    table.remove(&oldest);
                }
            }
        }
        let entry = table.entry(ip).or_insert(Failures {
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
        let doublings = entry.count.saturating_sub(1).min(16);
        LOGIN_DELAY_INITIAL
            .saturating_mul(1u32 << doublings)
            .min(LOGIN_DELAY_MAX)
    }

    /// Addresses remembered now.
    pub fn tracked(&self) -> usize {
        self.table.lock().expect("throttle lock").len()
    }
}

/// Logged-in sessions per user, with a ceiling.
#[derive(Debug)]
pub struct UserSessions {
    per_user_max: u32,
    counts: Arc<Mutex<HashMap<String, u32>>>,
}

/// One counted session; the count drops when this is dropped.
#[derive(Debug)]
pub struct UserLease {
    user: String,
    counts: Arc<Mutex<HashMap<String, u32>>>,
}

impl UserSessions {
    /// At most `per_user_max` sessions per user.
    pub fn new(per_user_max: u32) -> UserSessions {
        UserSessions {
            per_user_max,
            counts: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// Count a session of `user`, or `None` when the user has the maximum.
    pub fn acquire(&self, user: &str) -> Option<UserLease> {
        let mut counts = self.counts.lock().expect("user sessions lock");
        let n = counts.entry(user.to_string()).or_insert(0);
        if *n >= self.per_user_max {
            if *n == 0 {
                counts.remove(user);
            }
            return None;
        }
        *n += 1;
        Some(UserLease {
            user: user.to_string(),
            counts: self.counts.clone(),
        })
    }

    /// Sessions of `user` now.
    pub fn count(&self, user: &str) -> u32 {
        let counts = self.counts.lock().expect("user sessions lock");
        counts.get(user).copied().unwrap_or(0)
    }
}

impl UserLease {
    /// The user this session counts for.
    pub fn user(&self) -> &str {
        &self.user
    }
}

impl Drop for UserLease {
    fn drop(&mut self) {
        let mut counts = self.counts.lock().expect("user sessions lock");
        let n = counts
            .get_mut(&self.user)
            .expect("a lease's user is counted");
        assert!(*n > 0, "user session count underflow");
        *n -= 1;
        if *n == 0 {
            counts.remove(&self.user);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttle_blocks_after_max_failures_until_the_window_passes() {
        let t = LoginThrottle::new(3, Duration::from_secs(60), 100);
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let other: IpAddr = "192.0.2.2".parse().unwrap();
        let t0 = Instant::now();
        assert!(t.allowed(ip, t0));
        assert_eq!(t.failed(ip, t0), LOGIN_DELAY_INITIAL);
        assert_eq!(t.failed(ip, t0), LOGIN_DELAY_INITIAL * 2);
        assert!(t.allowed(ip, t0));
        t.failed(ip, t0);
        assert!(!t.allowed(ip, t0));
        assert!(t.allowed(other, t0));
        assert!(!t.allowed(ip, t0 + Duration::from_secs(59)));
        assert!(t.allowed(ip, t0 + Duration::from_secs(60)));
        // A new window starts counting from one.
        assert_eq!(
            t.failed(ip, t0 + Duration::from_secs(61)),
            LOGIN_DELAY_INITIAL
        );
        for _ in 0..40 {
            assert!(t.failed(other, t0) <= LOGIN_DELAY_MAX);
        }
    }

    #[test]
    fn throttle_memory_is_bounded() {
        let t = LoginThrottle::new(3, Duration::from_secs(60), 10);
        let t0 = Instant::now();
        for i in 0..100u8 {
            t.failed(
                IpAddr::from([10, 0, 0, i]),
                t0 + Duration::from_millis(i.into()),
            );
            assert!(t.tracked() <= 10);
        }
    }

    #[test]
    fn user_sessions_count_and_release() {
        let s = UserSessions::new(2);
        let a = s.acquire("alice").unwrap();
        let b = s.acquire("alice").unwrap();
        assert!(s.acquire("alice").is_none());
        let c = s.acquire("bob").unwrap();
        assert_eq!(s.count("alice"), 2);
        drop(a);
        let d = s.acquire("alice").unwrap();
        drop((b, c, d));
        assert_eq!(s.count("alice"), 0);
        assert!(s.counts.lock().unwrap().is_empty());
    }
}
