//! Password hashing on a small, fixed set of dedicated threads.
//!
//! Each argon2 computation allocates its whole memory matrix (19 MiB with
//! the default parameters). Run on arbitrary threads, glibc keeps such blocks
//! resident per thread arena after they are freed, so a slot's memory grew by
//! ~19 MiB per distinct user logging in (measured by the IMAP benchmark). On
//! `ARGON2_THREADS` long-lived threads the memory is reused: the slot's
//! argon2 memory is bounded by threads × one matrix, whatever the logins.

use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};

/// Threads that run argon2.
pub const ARGON2_THREADS: usize = 2;
/// Jobs waiting for an argon2 thread before callers block on the queue.
pub const ARGON2_QUEUE_MAX: usize = 1024;

type Job = Box<dyn FnOnce() + Send>;

fn queue() -> &'static Mutex<mpsc::SyncSender<Job>> {
    static QUEUE: OnceLock<Mutex<mpsc::SyncSender<Job>>> = OnceLock::new();
    QUEUE.get_or_init(|| {
        let (tx, rx) = mpsc::sync_channel::<Job>(ARGON2_QUEUE_MAX);
        let rx = std::sync::Arc::new(Mutex::new(rx));
        for i in 0..ARGON2_THREADS {
            let rx = rx.clone();
            std::thread::Builder::new()
                .name(format!("argon2-{i}"))
                .spawn(move || {
                    loop {
                        let job = {
                            let rx = rx.lock().unwrap_or_else(|e| e.into_inner());
                            rx.recv()
                        };
                        match job {
                            Ok(job) => job(),
                            Err(_) => return,
                        }
                    }
                })
                .expect("spawning an argon2 thread");
        }
        Mutex::new(tx)
    })
}

/// Run `f` on an argon2 thread and wait for its result.
pub(crate) fn run<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    let (done_tx, done_rx) = mpsc::sync_channel(1);
    let job: Job = Box::new(move || {
        let _ = done_tx.send(f());
    });
    let sender = queue().lock().unwrap_or_else(|e| e.into_inner()).clone();
    sender
        .send(job)
        .expect("argon2 threads live as long as the process");
    done_rx.recv().expect("an argon2 job always answers")
}
