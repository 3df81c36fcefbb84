//! One writer per bundle at a time.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::BundleDirError;

/// The folder that holds `dir`, from its absolute path, so that `--out .`,
/// `--out $PWD` and `--out ../x` of one folder all name the same parent.
pub(super) fn parent_of(dir: &Path) -> PathBuf {
    let absolute = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
    match absolute.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("/"),
    }
}

/// An exclusive lock for writing a bundle: a flock on the folder that holds
/// it, so that two gantry processes never write one bundle at once (nor make
/// it: the folder may not exist yet). Released on drop. Other programs are
/// not affected.
pub struct BundleLock {
    _folder: fs::File,
}

impl BundleLock {
    /// Takes the lock for `dir`, waiting up to `wait` for another gantry
    /// that holds it.
    pub fn acquire(dir: &Path, wait: Duration) -> Result<Self, BundleDirError> {
        let parent = parent_of(dir);
        let unwritable = |reason: String| BundleDirError::Unwritable {
            path: dir.into(),
            reason,
        };
        fs::create_dir_all(&parent)
            .map_err(|e| unwritable(format!("cannot create {}: {e}", parent.display())))?;
        let folder = fs::File::open(&parent)
            .map_err(|e| unwritable(format!("cannot open {}: {e}", parent.display())))?;
        let deadline = Instant::now() + wait;
        loop {
            match folder.try_lock() {
                Ok(()) => return Ok(Self { _folder: folder }),
                Err(fs::TryLockError::WouldBlock) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(fs::TryLockError::WouldBlock) => {
                    return Err(unwritable(format!(
                        "another gantry process is writing a bundle in {} (waited {} s); try again when it is done",
                        parent.display(),
                        wait.as_secs()
                    )));
                }
                Err(fs::TryLockError::Error(e)) => {
                    return Err(unwritable(format!("cannot lock {}: {e}", parent.display())));
                }
            }
        }
    }
}
