//! The data directory belongs to one host and to its owner only: `run` creates it
//! owner-only (0700), takes an exclusive lock on it for the life of the process, so a
//! second host on the same `data_dir` is refused instead of running every connector
//! twice, and the databases in it are created owner-only (0600), since the desired
//! state holds the secrets of connectors made through the API.

use std::fs::{File, OpenOptions, Permissions};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The lock file's name inside `data_dir`.
const LOCK_FILE: &str = "wasm-connect.lock";

/// Why the data directory cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum DataDirError {
    /// Another process holds the lock.
    #[error(
        "another wasm-connect host is running on the data directory {0} (it holds {LOCK_FILE}); stop it, or give this \
         host its own data_dir"
    )]
    InUse(PathBuf),
    /// The directory or the lock file cannot be created, opened or locked.
    #[error("cannot use the data directory {path} (data_dir): {source}")]
    Io {
        /// The path concerned.
        path: PathBuf,
        /// What the system said.
        source: std::io::Error,
    },
}

/// The exclusive hold on a data directory, released when dropped (or when the process
/// ends, however it ends).
#[derive(Debug)]
pub struct DataDirLock {
    _file: File,
}

impl DataDirLock {
    /// Creates `data_dir` owner-only if it is missing, makes it owner-only if it is
    /// not, and locks it; refuses when another process holds it.
    pub fn acquire(data_dir: &Path) -> Result<Self, DataDirError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| DataDirError::Io { path, source }
        };
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(data_dir).map_err(io(data_dir))?;
        let mode = std::fs::metadata(data_dir).map_err(io(data_dir))?.permissions().mode() & 0o777;
        if mode != 0o700 {
            std::fs::set_permissions(data_dir, Permissions::from_mode(0o700)).map_err(io(data_dir))?;
            tracing::info!(data_dir = %data_dir.display(), was = format!("{mode:o}"), "Made the data directory owner-only (700).");
        }
        let path = data_dir.join(LOCK_FILE);
        let file = OpenOptions::new().create(true).truncate(false).write(true).mode(0o600).open(&path).map_err(io(&path))?;
        match file.try_lock() {
            Ok(()) => Ok(Self { _file: file }),
            Err(std::fs::TryLockError::WouldBlock) => Err(DataDirError::InUse(data_dir.to_path_buf())),
            Err(std::fs::TryLockError::Error(source)) => Err(DataDirError::Io { path, source }),
        }
    }
}

/// Creates `path` empty and owner-only (0600) if it is missing, and makes it
/// owner-only if it is not: called before SQLite opens a database, whose journal
/// files then take the same permissions.
pub fn owner_only_file(path: &Path) -> std::io::Result<()> {
    OpenOptions::new().create(true).truncate(false).write(true).mode(0o600).open(path)?;
    std::fs::set_permissions(path, Permissions::from_mode(0o600))
}

/// The file under `data_dir` that names this host to Kafka's consumer groups.
const HOST_ID_FILE: &str = "host-id";

/// This host's identity: 32 hex digits made at the first start and kept in
/// `data_dir/host-id`, so that it survives restarts and differs between hosts (each
/// has its own `data_dir`). Sink tasks join their groups as static members named
/// after it, so a restarted host gets its partitions back at once.
pub fn host_identity(data_dir: &Path) -> std::io::Result<String> {
    use std::io::{Read, Write};
    let path = data_dir.join(HOST_ID_FILE);
    // At most a few bytes are read, and never through a link placed there.
    let no_follow = OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW).open(&path);
    if let Ok(file) = no_follow {
        let mut text = String::new();
        if file.take(64).read_to_string(&mut text).is_ok() {
            let text = text.trim();
            if text.len() == 32 && text.chars().all(|c| c.is_ascii_hexdigit()) {
                return Ok(text.to_owned());
            }
        }
    }
    let mut bytes = [0u8; 16];
    File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    let identity: String = bytes.iter().map(|byte| format!("{byte:02x}")).collect();
    // Written whole under another name, then renamed over: a crash leaves the old
    // file or the new one, never half of one.
    let written = data_dir.join(format!("{HOST_ID_FILE}.new"));
    let _ = std::fs::remove_file(&written);
    let mut file = OpenOptions::new().write(true).create_new(true).mode(0o600).open(&written)?;
    file.write_all(format!("{identity}\n").as_bytes())?;
    file.sync_all()?;
    std::fs::rename(&written, &path)?;
    Ok(identity)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::{DataDirError, DataDirLock, host_identity, owner_only_file};

    #[test]
    fn the_host_identity_is_made_once_and_kept() {
        let root = tempfile::tempdir().unwrap();
        let first = host_identity(root.path()).unwrap();
        assert_eq!(first.len(), 32);
        assert_eq!(host_identity(root.path()).unwrap(), first);
        let other = tempfile::tempdir().unwrap();
        assert_ne!(host_identity(other.path()).unwrap(), first);
        // A damaged file is replaced.
        std::fs::write(root.path().join("host-id"), "../../x").unwrap();
        let replaced = host_identity(root.path()).unwrap();
        assert!(replaced.len() == 32 && replaced != first);
        // A link put in its place is neither read through nor written through.
        let elsewhere = other.path().join("target");
        std::fs::write(&elsewhere, format!("{first}\n")).unwrap();
        std::fs::remove_file(root.path().join("host-id")).unwrap();
        std::os::unix::fs::symlink(&elsewhere, root.path().join("host-id")).unwrap();
        let fresh = host_identity(root.path()).unwrap();
        assert_ne!(fresh, first);
        assert_eq!(std::fs::read_to_string(&elsewhere).unwrap(), format!("{first}\n"));
        assert!(!std::fs::symlink_metadata(root.path().join("host-id")).unwrap().file_type().is_symlink());
    }

    #[test]
    fn one_holder_at_a_time_and_owner_only() {
        let root = tempfile::tempdir().unwrap();
        let data_dir = root.path().join("nested/data");
        let first = DataDirLock::acquire(&data_dir).unwrap();
        assert_eq!(std::fs::metadata(&data_dir).unwrap().permissions().mode() & 0o777, 0o700);
        let refused = DataDirLock::acquire(&data_dir).unwrap_err();
        assert!(matches!(refused, DataDirError::InUse(_)), "{refused}");
        assert!(refused.to_string().contains("another wasm-connect host is running"), "{refused}");
        drop(first);
        let _again = DataDirLock::acquire(&data_dir).unwrap();

        let open = root.path().join("open");
        std::fs::create_dir(&open).unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o755)).unwrap();
        let _lock = DataDirLock::acquire(&open).unwrap();
        assert_eq!(std::fs::metadata(&open).unwrap().permissions().mode() & 0o777, 0o700);

        let database = open.join("state.sqlite3");
        std::fs::write(&database, b"").unwrap();
        std::fs::set_permissions(&database, std::fs::Permissions::from_mode(0o644)).unwrap();
        owner_only_file(&database).unwrap();
        assert_eq!(std::fs::metadata(&database).unwrap().permissions().mode() & 0o777, 0o600);
    }
}
