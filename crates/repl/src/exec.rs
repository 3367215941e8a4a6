//! Where blocking store calls run.
//!
//! The store is synchronous (SQLite, fsync); in the service its calls run on
//! tokio's blocking pool ([`Exec::Blocking`]). The deterministic simulation
//! runs them inline on its single thread ([`Exec::Inline`]), so that the
//! order of events depends on its seed and its simulated clock only.

/// How store calls are run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Exec {
    /// On tokio's blocking thread pool (`spawn_blocking`).
    #[default]
    Blocking,
    /// Inline, blocking the calling task (simulation and tests only).
    Inline,
}

impl Exec {
    /// Run `f` as configured and return its result. A panic in `f` is
    /// propagated to the caller.
    pub async fn run<T, F>(self, f: F) -> T
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        match self {
            Exec::Inline => f(),
            Exec::Blocking => match tokio::task::spawn_blocking(f).await {
                Ok(v) => v,
                Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
                // The runtime is shutting down: nothing can continue.
                Err(e) => panic!("blocking store call cancelled: {e}"),
            },
        }
    }
}
