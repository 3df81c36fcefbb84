//! One writer per bundle at a time, by whatever path it is reached.

use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rustix::fs::FlockOperation;
use rustix::io::Errno;

use super::BundleDirError;
use super::at::Folder;

/// A bundle folder opened for writing and locked: an flock on the folder
/// itself, so that two gantry processes never write one bundle at once,
/// whether they name it by the same path, through a symbolic link or through
/// a bind mount (the lock belongs to the folder, not to a name). Other
/// programs are not affected.
///
/// Every read and write of the command goes through [`LockedBundle::folder`],
/// so a folder renamed or replaced meanwhile is never written through its
/// old path. Folders the command created (the bundle's and missing parents)
/// are removed again, if still empty, unless [`LockedBundle::keep`] is called:
/// a refused command leaves no trace.
pub struct LockedBundle {
    folder: Folder,
    created: Vec<PathBuf>,
    kept: bool,
}

impl LockedBundle {
    /// Opens `dir` (creating it and its parents if missing) and takes its
    /// lock, waiting up to `wait` for another gantry that holds it.
    pub fn acquire(dir: &Path, wait: Duration) -> Result<Self, BundleDirError> {
        let unwritable = |reason: String| BundleDirError::Unwritable {
            path: dir.into(),
            reason,
        };
        let absolute = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
        if absolute
            .components()
            .any(|part| part.as_os_str() == super::STAGING)
        {
            return Err(BundleDirError::Refused {
                path: dir.into(),
                reason: format!(
                    "is inside a {} folder, which gantry removes whole; write elsewhere",
                    super::STAGING
                ),
            });
        }
        let mut created = Vec::new();
        let deadline = Instant::now() + wait;
        // A folder removed while this process waited for its lock (another
        // gantry made it and then was refused) is opened again.
        for _ in 0..5 {
            let folder = match open_or_create(dir, &mut created) {
                Ok(folder) => folder,
                Err(e) => {
                    remove_created(&created);
                    return Err(e);
                }
            };
            if let Err(e) = lock(&folder, deadline, wait) {
                remove_created(&created);
                return Err(unwritable(e));
            }
            match folder.stat() {
                Ok(stat) if stat.st_nlink > 0 => {
                    return Ok(Self {
                        folder,
                        created,
                        kept: false,
                    });
                }
                Ok(_) => continue,
                Err(e) => {
                    remove_created(&created);
                    return Err(unwritable(format!("cannot read it: {e}")));
                }
            }
        }
        remove_created(&created);
        Err(unwritable(
            "it was removed and made again several times while gantry waited for it; try again"
                .into(),
        ))
    }

    pub fn folder(&self) -> &Folder {
        &self.folder
    }

    /// The command succeeded: the folders it created stay.
    pub fn keep(mut self) {
        self.kept = true;
    }
}

impl Drop for LockedBundle {
    fn drop(&mut self) {
        // Before the lock is released (the folder's descriptor closes after this).
        if !self.kept {
            remove_created(&self.created);
        }
    }
}

/// Removes the folders this command created, newest first, if they are
/// still empty (rmdir(2) refuses any other).
fn remove_created(created: &[PathBuf]) {
    for folder in created.iter().rev() {
        let _ = std::fs::remove_dir(folder);
    }
}

/// Opens `dir`, creating it and its missing parents (recorded in `created`).
fn open_or_create(dir: &Path, created: &mut Vec<PathBuf>) -> Result<Folder, BundleDirError> {
    let refused = |reason: String| BundleDirError::Refused {
        path: dir.into(),
        reason,
    };
    match Folder::open(dir) {
        Ok(folder) => return Ok(folder),
        Err(e)
            if e.raw_os_error() == Some(Errno::NOTDIR.raw_os_error())
                && std::fs::symlink_metadata(dir).is_ok() =>
        {
            return Err(refused("exists and is not a folder".into()));
        }
        Err(e)
            if e.kind() != io::ErrorKind::NotFound
                && e.raw_os_error() != Some(Errno::NOTDIR.raw_os_error()) =>
        {
            return Err(refused(format!("cannot open it: {e}")));
        }
        Err(_) => {}
    }
    let absolute = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
    let missing: Vec<&Path> = absolute
        .ancestors()
        .take_while(|folder| std::fs::symlink_metadata(folder).is_err())
        .collect();
    for folder in missing.into_iter().rev() {
        match std::fs::create_dir(folder) {
            Ok(()) => created.push(folder.to_path_buf()),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => {
                return Err(BundleDirError::Unwritable {
                    path: dir.into(),
                    reason: format!("cannot create {}: {e}", folder.display()),
                });
            }
        }
    }
    Folder::open(dir).map_err(|e| refused(format!("cannot open it: {e}")))
}

/// Takes the folder's flock, retrying until `deadline`.
fn lock(folder: &Folder, deadline: Instant, wait: Duration) -> Result<(), String> {
    loop {
        match rustix::fs::flock(folder.fd(), FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => return Ok(()),
            Err(Errno::WOULDBLOCK) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(Errno::WOULDBLOCK) => {
                return Err(format!(
                    "another gantry process is writing this bundle (waited {} s); try again when it is done",
                    wait.as_secs()
                ));
            }
            Err(e) => return Err(format!("cannot lock it: {e}")),
        }
    }
}

/// Removes the staging folders that earlier gantry versions left beside
/// `dir` when they were killed, `.<name>.gantry-tmp-<pid>`, whose process is
/// gone and which hold only what gantry staged: they hold keys and a join
/// token. Call it holding the bundle's lock. Returns the paths removed.
pub fn remove_old_staging(dir: &Path) -> Vec<PathBuf> {
    let absolute = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
    let (Some(parent), Some(name)) = (absolute.parent(), absolute.file_name()) else {
        return Vec::new();
    };
    let prefix = format!(".{}.gantry-tmp-", name.to_string_lossy());
    let Ok(entries) = std::fs::read_dir(parent) else {
        return Vec::new();
    };
    let mut removed = Vec::new();
    for entry in entries.flatten() {
        let file_name = entry.file_name().to_string_lossy().into_owned();
        // A process ID as gantry wrote it: digits only, above 0.
        let Some(pid) = file_name
            .strip_prefix(&prefix)
            .filter(|pid| pid.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|pid| pid.parse::<i32>().ok())
            .and_then(rustix::process::Pid::from_raw)
        else {
            continue;
        };
        let running = !matches!(rustix::process::test_kill_process(pid), Err(Errno::SRCH));
        let is_folder = entry.file_type().is_ok_and(|kind| kind.is_dir());
        if !running
            && is_folder
            && looks_like_old_staging(&entry.path())
            && std::fs::remove_dir_all(entry.path()).is_ok()
        {
            removed.push(entry.path());
        }
    }
    removed
}

/// Whether `path` holds only what an earlier gantry staged: names of a bundle
/// at its top (and `.previous`, its backups), no link.
fn looks_like_old_staging(path: &Path) -> bool {
    let Ok(entries) = std::fs::read_dir(path) else {
        return false;
    };
    entries.flatten().all(|entry| {
        let name = entry.file_name().to_string_lossy().into_owned();
        let plain = entry.file_type().is_ok_and(|kind| !kind.is_symlink());
        plain && (name == ".previous" || super::owner::is_bundle_name(&name))
    })
}
