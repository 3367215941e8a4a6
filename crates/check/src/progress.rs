//! The two things that make the check fit for production and long runs: a
//! rate limit on the bytes it reads from the slots, and a progress bar on
//! standard error when that is a terminal.

use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How often the progress bar is redrawn.
pub const PROGRESS_REDRAW: Duration = Duration::from_millis(250);
/// Width of the bar, in characters.
pub const PROGRESS_BAR_CHARS: usize = 30;

/// Keeps the bytes read (both sides together) at or below a rate: each
/// caller reports what it read and sleeps until the total is within the
/// budget of the time elapsed.
#[derive(Debug)]
pub struct RateLimiter {
    bytes_per_second: Option<u64>,
    state: Mutex<(Instant, u64)>,
}

impl RateLimiter {
    /// `None`: no limit.
    pub fn new(bytes_per_second: Option<u64>) -> RateLimiter {
        RateLimiter {
            bytes_per_second: bytes_per_second.filter(|&r| r > 0),
            state: Mutex::new((Instant::now(), 0)),
        }
    }

    /// How long a caller that just read `bytes` must wait.
    fn account(&self, bytes: u64) -> Duration {
        let Some(rate) = self.bytes_per_second else {
            return Duration::ZERO;
        };
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        s.1 += bytes;
        let due = s.0 + Duration::from_secs_f64(s.1 as f64 / rate as f64);
        due.saturating_duration_since(Instant::now())
    }

    /// Report `bytes` read; sleeps while over the rate.
    pub async fn take(&self, bytes: u64) {
        let wait = self.account(bytes);
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }
}

#[derive(Debug, Default)]
struct Counters {
    users_total: AtomicU64,
    users_done: AtomicU64,
    messages: AtomicU64,
    bytes: AtomicU64,
}

/// Counters of a run, drawn as a bar on standard error by a thread while
/// the run lasts (when enabled).
#[derive(Debug, Clone)]
pub struct Progress {
    counters: Arc<Counters>,
    started: Instant,
}

impl Progress {
    pub fn new() -> Progress {
        Progress {
            counters: Arc::default(),
            started: Instant::now(),
        }
    }

    pub fn set_users(&self, total: u64) {
        self.counters.users_total.store(total, Ordering::Relaxed);
    }

    pub fn user_done(&self) {
        self.counters.users_done.fetch_add(1, Ordering::Relaxed);
    }

    /// Messages whose metadata was compared (one side).
    pub fn messages(&self, n: u64) {
        self.counters.messages.fetch_add(n, Ordering::Relaxed);
    }

    /// Message bytes read and hashed (one side).
    pub fn bytes(&self, n: u64) {
        self.counters.bytes.fetch_add(n, Ordering::Relaxed);
    }

    pub fn bytes_read(&self) -> u64 {
        self.counters.bytes.load(Ordering::Relaxed)
    }

    pub fn messages_read(&self) -> u64 {
        self.counters.messages.load(Ordering::Relaxed)
    }

    /// One line: bar, users, messages, bytes and rate.
    pub fn line(&self) -> String {
        let c = &self.counters;
        let (done, total) = (
            c.users_done.load(Ordering::Relaxed),
            c.users_total.load(Ordering::Relaxed),
        );
        let filled = if total == 0 {
            0
        } else {
            (done.min(total) as usize * PROGRESS_BAR_CHARS) / total as usize
        };
        let bytes = c.bytes.load(Ordering::Relaxed) as f64;
        let secs = self.started.elapsed().as_secs_f64().max(1e-3);
        format!(
            "[{}{}] {done}/{total} users, {} messages, {} read, {}/s",
            "#".repeat(filled),
            "-".repeat(PROGRESS_BAR_CHARS - filled),
            c.messages.load(Ordering::Relaxed),
            crate::run::bytes_text(bytes),
            crate::run::bytes_text(bytes / secs)
        )
    }

    /// Draw the bar on standard error until the returned guard is dropped.
    pub fn draw(&self) -> DrawGuard {
        let stop = Arc::new(AtomicBool::new(false));
        let me = self.clone();
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                let _ = write!(std::io::stderr(), "\r{}\x1b[K", me.line());
                std::thread::sleep(PROGRESS_REDRAW);
            }
            let _ = write!(std::io::stderr(), "\r\x1b[K");
        });
        DrawGuard {
            stop,
            thread: Some(thread),
        }
    }
}

impl Default for Progress {
    fn default() -> Self {
        Progress::new()
    }
}

/// Stops the progress bar and clears its line when dropped.
pub struct DrawGuard {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for DrawGuard {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limiter_paces_and_no_limit_never_waits() {
        let free = RateLimiter::new(None);
        assert_eq!(free.account(u64::MAX / 2), Duration::ZERO);
        let limited = RateLimiter::new(Some(1_000_000));
        // 2 MB at 1 MB/s: about 2 s from the start.
        let wait = limited.account(2_000_000);
        assert!(
            wait > Duration::from_millis(1_900) && wait <= Duration::from_secs(2),
            "{wait:?}"
        );
        let more = limited.account(1_000_000);
        assert!(more > wait, "{more:?} after {wait:?}");
    }

    #[test]
    fn the_progress_line_shows_the_counters() {
        let p = Progress::new();
        p.set_users(4);
        p.user_done();
        p.messages(10);
        p.bytes(2_000_000);
        let line = p.line();
        assert!(
            line.starts_with(&format!("[{}{}]", "#".repeat(7), "-".repeat(23))),
            "{line}"
        );
        assert!(
            line.contains("1/4 users, 10 messages, 2.0 MB read"),
            "{line}"
        );
    }
}
