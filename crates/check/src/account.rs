//! The check's admin account: one account named [`CHECK_ACCOUNT`] with
//! the admin right (it may authorize as any user of its slot) on every
//! store's master, from where replication carries it to the replicas like
//! any account. Its password lives in the file `cluster.toml` names
//! (`check_password_file`, mode 0600), never on a command line.
//!
//! [`ensure`] is run by every check: it creates the password file (random,
//! 0600) if there is none, and the account on each master that lacks it;
//! when the file was just created, it also sets the new password on the
//! masters that had the account already.

use crate::collect::Credentials;
use slotmail_slot::admin::{AdminError, ErrorCode, Request, admin_request};
use std::io::{Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The account's name on every slot.
pub const CHECK_ACCOUNT: &str = "slotmail-check";
/// Largest password file read, in bytes.
pub const PASSWORD_FILE_BYTES_MAX: u64 = 1024;
/// Random bytes in a generated password (written as hex).
pub const PASSWORD_RANDOM_BYTES: usize = 32;

/// Why the account could not be prepared.
#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    #[error("{what} {}: {source}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: mode {mode:o}; the check's password file must be readable by its owner only (chmod 600)", path.display())]
    Mode { path: PathBuf, mode: u32 },
    #[error("{}: empty password file", path.display())]
    Empty { path: PathBuf },
    #[error("slot {slot}: {source}")]
    Admin {
        slot: String,
        #[source]
        source: AdminError,
    },
    #[error("hashing the check's password: {0}")]
    Hash(String),
}

/// The password in `path`, creating the file (random, 0600) if absent;
/// the flag says whether it was created now.
pub fn load_or_create_password(path: &Path) -> Result<(String, bool), AccountError> {
    let io = |what, source| AccountError::Io {
        what,
        path: path.to_path_buf(),
        source,
    };
    match std::fs::File::open(path) {
        Ok(file) => {
            let mode = file
                .metadata()
                .map_err(|e| io("reading", e))?
                .permissions()
                .mode()
                & 0o777;
            if mode & 0o077 != 0 {
                return Err(AccountError::Mode {
                    path: path.to_path_buf(),
                    mode,
                });
            }
            let mut text = String::new();
            file.take(PASSWORD_FILE_BYTES_MAX)
                .read_to_string(&mut text)
                .map_err(|e| io("reading", e))?;
            let password = text.lines().next().unwrap_or("").trim().to_string();
            if password.is_empty() {
                return Err(AccountError::Empty {
                    path: path.to_path_buf(),
                });
            }
            Ok((password, false))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let bytes: [u8; PASSWORD_RANDOM_BYTES] = rand::random();
            let password: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
                .map_err(|e| io("creating", e))?;
            f.write_all(format!("{password}\n").as_bytes())
                .and_then(|()| f.sync_all())
                .map_err(|e| io("writing", e))?;
            Ok((password, true))
        }
        Err(e) => Err(io("reading", e)),
    }
}

/// A master slot: its id and admin socket.
#[derive(Debug, Clone)]
pub struct MasterSocket {
    pub slot: String,
    pub socket: PathBuf,
}

/// Make sure every master in `masters` has the account with the password
/// of `password_file`. Returns the credentials and whether any account or
/// password was changed now (replicas may not have it yet).
pub fn ensure(
    password_file: &Path,
    masters: &[MasterSocket],
) -> Result<(Credentials, bool), AccountError> {
    let (password, created_file) = load_or_create_password(password_file)?;
    let mut hash: Option<String> = None;
    let mut hashed = |password: &str| -> Result<String, AccountError> {
        if hash.is_none() {
            hash = Some(
                slotmail_store::hash_password(password)
                    .map_err(|e| AccountError::Hash(e.to_string()))?,
            );
        }
        Ok(hash.clone().expect("set above"))
    };
    let mut changed = false;
    for m in masters {
        let admin = |source| AccountError::Admin {
            slot: m.slot.clone(),
            source,
        };
        match admin_request(
            &m.socket,
            &Request::UserInfo {
                name: CHECK_ACCOUNT.into(),
            },
        ) {
            Ok(_) if created_file => {
                admin_request(
                    &m.socket,
                    &Request::SetPasswordHash {
                        name: CHECK_ACCOUNT.into(),
                        password_hash: hashed(&password)?,
                    },
                )
                .map_err(admin)?;
                changed = true;
            }
            Ok(_) => {}
            Err(AdminError::Remote {
                code: ErrorCode::NoSuchUser,
                ..
            }) => {
                admin_request(
                    &m.socket,
                    &Request::CreateUser {
                        name: CHECK_ACCOUNT.into(),
                        password_hash: hashed(&password)?,
                        admin: true,
                    },
                )
                .map_err(admin)?;
                tracing::info!(slot = %m.slot, "created the check's admin account");
                changed = true;
            }
            Err(e) => return Err(admin(e)),
        }
    }
    Ok((
        Credentials {
            account: CHECK_ACCOUNT.into(),
            password,
        },
        changed,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_password_file_is_created_private_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("check.password");
        let (pw, created) = load_or_create_password(&path).unwrap();
        assert!(created);
        assert_eq!(pw.len(), 2 * PASSWORD_RANDOM_BYTES);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(load_or_create_password(&path).unwrap(), (pw, false));

        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = load_or_create_password(&path).unwrap_err();
        assert!(
            matches!(err, AccountError::Mode { mode: 0o644, .. }),
            "{err}"
        );

        std::fs::write(&path, "\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(matches!(
            load_or_create_password(&path),
            Err(AccountError::Empty { .. })
        ));
    }

    #[test]
    fn a_master_that_does_not_answer_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let masters = [MasterSocket {
            slot: "a1".into(),
            socket: dir.path().join("admin.sock"),
        }];
        let err = ensure(&dir.path().join("pw"), &masters).unwrap_err();
        assert!(err.to_string().starts_with("slot a1:"), "{err}");
    }
}
