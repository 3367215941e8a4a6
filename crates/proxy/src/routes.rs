//! Where each user is served: a cached snapshot of the directory, renewed
//! whenever the directory's revision changes.
//!
//! Logins and recipients are routed from the snapshot (no directory read
//! per login); a user missing from it is looked up in the directory itself,
//! so a user added a moment ago is found at once. Sessions subscribe to the
//! snapshot and close themselves when their slot stops being their store's
//! master.

use slotmail_directory::{Directory, DirectoryError, Route, Topology};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// The directory and the proxy's snapshot of it.
pub struct Routes {
    directory: Arc<dyn Directory>,
    sender: watch::Sender<Arc<Topology>>,
}

impl std::fmt::Debug for Routes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Routes")
            .field("revision", &self.sender.borrow().revision)
            .finish_non_exhaustive()
    }
}

/// Which backend a session or recipient went to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    /// The user.
    pub user: String,
    /// The user's store.
    pub store: String,
    /// The store's master slot when the route was taken.
    pub slot: String,
    /// The store's epoch then.
    pub epoch: u64,
    /// The master's IMAP address.
    pub imap: SocketAddr,
    /// The master's LMTP address.
    pub lmtp: SocketAddr,
}

impl Binding {
    /// The binding for a route.
    pub fn of(route: &Route) -> Binding {
        Binding {
            user: route.user.clone(),
            store: route.store.clone(),
            slot: route.master.id.clone(),
            epoch: route.epoch,
            imap: SocketAddr::new(route.address, route.master.imap_port),
            lmtp: SocketAddr::new(route.address, route.master.lmtp_port),
        }
    }

    /// Whether the user is still in the same store with the same master in
    /// `topology`.
    pub fn still_current(&self, topology: &Topology) -> bool {
        match topology.route(&self.user) {
            Some(r) => r.store == self.store && r.master.id == self.slot,
            // Not in the snapshot: a user just added that the snapshot has
            // not caught up with yet keeps its session; a deleted user's
            // backend ends the session itself.
            None => true,
        }
    }
}

impl Routes {
    /// Read the directory's first snapshot.
    pub async fn open(directory: Arc<dyn Directory>) -> Result<Routes, DirectoryError> {
        let d = directory.clone();
        let topology = blocking(move || d.snapshot()).await?;
        let (sender, _) = watch::channel(Arc::new(topology));
        Ok(Routes { directory, sender })
    }

    /// The current snapshot.
    pub fn snapshot(&self) -> Arc<Topology> {
        self.sender.borrow().clone()
    }

    /// Notified on every new snapshot.
    pub fn subscribe(&self) -> watch::Receiver<Arc<Topology>> {
        self.sender.subscribe()
    }

    /// Where `user` is served: from the snapshot, else from the directory.
    /// `Ok(None)` for an unknown user.
    pub async fn route(&self, user: &str) -> Result<Option<Binding>, DirectoryError> {
        if let Some(r) = self.sender.borrow().route(user) {
            return Ok(Some(Binding::of(&r)));
        }
        let d = self.directory.clone();
        let name = user.to_string();
        match blocking(move || d.route(&name)).await {
            Ok(r) => Ok(Some(Binding::of(&r))),
            Err(DirectoryError::UnknownUser(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Re-read the snapshot now if the directory's revision moved; returns
    /// whether it did.
    pub async fn refresh(&self) -> Result<bool, DirectoryError> {
        let d = self.directory.clone();
        let revision = blocking(move || d.revision()).await?;
        if revision == self.sender.borrow().revision {
            return Ok(false);
        }
        let d = self.directory.clone();
        let topology = blocking(move || d.snapshot()).await?;
        tracing::info!(revision = topology.revision, "directory changed");
        self.sender.send_replace(Arc::new(topology));
        Ok(true)
    }

    /// Check the directory every `poll` until `cancel`.
    pub async fn follow(&self, poll: Duration, cancel: CancellationToken) {
        let mut failing = false;
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(poll) => {}
            }
            match self.refresh().await {
                Ok(_) => {
                    if failing {
                        tracing::info!("directory readable again");
                    }
                    failing = false;
                }
                Err(e) => {
                    if !failing {
                        tracing::warn!(cause = %e, "reading the directory failed; routing from the last snapshot");
                    }
                    failing = true;
                }
            }
        }
    }
}

/// Run a directory call on a blocking thread.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, DirectoryError> + Send + 'static,
) -> Result<T, DirectoryError> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r,
        Err(e) => Err(DirectoryError::InvalidValue(format!(
            "directory task failed: {e}"
        ))),
    }
}
