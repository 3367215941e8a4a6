//! The private Unix-socket listener of the management plane: the slot's
//! admin socket (`crate::admin`) and the machine supervisor's control
//! socket (`slotmail-ctl`) both bind and accept through it.
//!
//! Binding removes a leftover socket file, binds, and makes the socket mode
//! 0600. Accepting hands out only connections whose peer is the socket's
//! owner (the user the process runs as) or root; any other peer is logged
//! and dropped unanswered, and a failed `accept` (out of file descriptors)
//! is logged and retried after [`ACCEPT_RETRY_DELAY`].

use crate::admin::{AdminError, SOCKET_PATH_LEN_MAX_BYTES};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::net::{UnixListener, UnixStream};

/// Wait after a failed `accept` before the next one.
pub const ACCEPT_RETRY_DELAY: Duration = Duration::from_millis(100);

/// A bound socket of mode 0600 that accepts its owner and root only.
#[derive(Debug)]
pub struct PrivateListener {
    listener: UnixListener,
    path: PathBuf,
    owner: u32,
    /// What the socket is, for logs ("admin", "control").
    what: &'static str,
}

impl PrivateListener {
    /// Remove a leftover socket at `path`, bind and make the socket 0600.
    /// `what` names the socket in logs. Errors: the path does not fit a
    /// Unix socket address (`AdminError::PathTooLong`), or a file
    /// operation failed (`AdminError::Listen`).
    pub fn bind(path: &Path, what: &'static str) -> Result<PrivateListener, AdminError> {
        let len = path.as_os_str().len();
        if len > SOCKET_PATH_LEN_MAX_BYTES {
            return Err(AdminError::PathTooLong {
                path: path.to_path_buf(),
                len,
            });
        }
        let listen_err = |source| AdminError::Listen {
            path: path.to_path_buf(),
            source,
        };
        match std::fs::remove_file(path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(listen_err(e)),
        }
        let listener = UnixListener::bind(path).map_err(listen_err)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .map_err(listen_err)?;
        let owner = std::fs::metadata(path).map_err(listen_err)?.uid();
        Ok(PrivateListener {
            listener,
            path: path.to_path_buf(),
            owner,
            what,
        })
    }

    /// The socket's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The user id whose connections (besides root's) are accepted.
    pub fn owner(&self) -> u32 {
        self.owner
    }

    /// The next connection from the owner or root. Cancel-safe: a
    /// connection is either returned or was dropped as refused.
    pub async fn accept(&self) -> UnixStream {
        loop {
            let stream = match self.listener.accept().await {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::warn!(cause = %e, "{} accept failed", self.what);
                    tokio::time::sleep(ACCEPT_RETRY_DELAY).await;
                    continue;
                }
            };
            match stream.peer_cred() {
                Ok(cred) if cred.uid() == self.owner || cred.uid() == 0 => return stream,
                Ok(cred) => {
                    tracing::warn!(
                        uid = cred.uid(),
                        "{} connection from another user refused",
                        self.what
                    );
                }
                Err(e) => {
                    tracing::warn!(cause = %e, "{} connection without credentials refused", self.what);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn binds_private_replaces_leftovers_and_accepts_its_owner() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.sock");
        std::fs::write(&path, b"leftover").unwrap();
        let listener = PrivateListener::bind(&path, "test").unwrap();
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        assert_eq!(listener.owner(), meta.uid());
        assert_eq!(listener.path(), path);
        // This process is the owner: accepted.
        let client = UnixStream::connect(&path).await.unwrap();
        let server = tokio::time::timeout(Duration::from_secs(5), listener.accept())
            .await
            .expect("the owner's connection is accepted");
        assert_eq!(
            server.peer_cred().unwrap().pid(),
            client.peer_cred().unwrap().pid()
        );
        // Bound again (a restart): the old socket file is replaced.
        drop(listener);
        let again = PrivateListener::bind(&path, "test").unwrap();
        assert!(UnixStream::connect(&path).await.is_ok());
        drop(again);
    }

    #[test]
    fn long_paths_and_unusable_directories_are_refused() {
        let long = PathBuf::from(format!("/tmp/{}", "x".repeat(SOCKET_PATH_LEN_MAX_BYTES)));
        assert!(matches!(
            PrivateListener::bind(&long, "test"),
            Err(AdminError::PathTooLong { len, .. }) if len == long.as_os_str().len()
        ));
        let missing = Path::new("/nonexistent-dir-for-slotmail-test/t.sock");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let _guard = rt.enter();
        assert!(matches!(
            PrivateListener::bind(missing, "test"),
            Err(AdminError::Listen { .. })
        ));
    }
}
