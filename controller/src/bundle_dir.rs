//! A PKI bundle on disk: read the files gantry knows, write new ones without
//! ever leaving a half-written file behind.
//!
//! Writing stages every changed file in a temporary folder beside the target
//! (same file system) and then renames: a new target folder appears whole in
//! one rename; in an existing folder each changed file is replaced by an
//! atomic rename, so every file is always either its old or its new version.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use std::collections::BTreeMap;

use gantry_pki::{FileSet, PkiBundle, PkiFile, catalog};

/// Why a bundle folder could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum BundleDirError {
    #[error("--out {path:?}: {reason}")]
    Unwritable { path: PathBuf, reason: String },
    #[error("{flag} {path:?}: {reason}")]
    Unreadable {
        flag: &'static str,
        path: PathBuf,
        reason: String,
    },
}

/// Reads the catalog's files that exist under `dir` (none if `dir` does not
/// exist). `flag` names where `dir` came from, for the error message.
pub fn read_bundle(flag: &'static str, dir: &Path) -> Result<FileSet, BundleDirError> {
    let mut files = FileSet::new();
    if !dir.exists() {
        return Ok(files);
    }
    if !dir.is_dir() {
        return Err(BundleDirError::Unreadable {
            flag,
            path: dir.into(),
            reason: "exists and is not a folder".into(),
        });
    }
    for relative in catalog::all_paths() {
        let path = dir.join(&relative);
        match fs::read(&path) {
            Ok(contents) => {
                files.insert(relative, contents);
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(BundleDirError::Unreadable {
                    flag,
                    path,
                    reason: e.to_string(),
                });
            }
        }
    }
    Ok(files)
}

/// Reads the catalog's files, the top-level `extra_files` and every file under
/// `dir/<folder>` for each of `folders`: everything a render may replace or prune.
pub fn read_tree(
    flag: &'static str,
    dir: &Path,
    extra_files: &[&str],
    folders: &[&str],
) -> Result<FileSet, BundleDirError> {
    let mut files = read_bundle(flag, dir)?;
    for name in extra_files {
        match fs::read(dir.join(name)) {
            Ok(contents) => {
                files.insert(name.to_string(), contents);
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(BundleDirError::Unreadable {
                    flag,
                    path: dir.join(name),
                    reason: e.to_string(),
                });
            }
        }
    }
    for folder in folders {
        let mut stack = vec![dir.join(folder)];
        while let Some(current) = stack.pop() {
            let entries = match fs::read_dir(&current) {
                Ok(entries) => entries,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => {
                    return Err(BundleDirError::Unreadable {
                        flag,
                        path: current,
                        reason: e.to_string(),
                    });
                }
            };
            for entry in entries {
                let path = entry
                    .map_err(|e| BundleDirError::Unreadable {
                        flag,
                        path: current.clone(),
                        reason: e.to_string(),
                    })?
                    .path();
                if path.is_dir() {
                    stack.push(path);
                    continue;
                }
                let contents = fs::read(&path).map_err(|e| BundleDirError::Unreadable {
                    flag,
                    path: path.clone(),
                    reason: e.to_string(),
                })?;
                let relative = path
                    .strip_prefix(dir)
                    .expect("under dir")
                    .to_string_lossy()
                    .into_owned();
                files.insert(relative, contents);
            }
        }
    }
    Ok(files)
}

/// Writes the files of `bundle` that differ from `existing` into `dir`.
/// Secret files get mode 0600, the others 0644. Returns the paths written.
pub fn write_bundle(
    dir: &Path,
    bundle: &PkiBundle,
    existing: &FileSet,
) -> Result<Vec<String>, BundleDirError> {
    let files: BTreeMap<String, PkiFile> = bundle
        .files()
        .map(|(path, file)| (path.to_string(), file.clone()))
        .collect();
    write_files(dir, &files, existing, &[])
}

/// Writes `files` into `dir`: those that differ from `existing` are staged
/// and renamed into place; files of `existing` under one of `prune` (folders
/// the caller owns, e.g. `service/`) that `files` no longer holds are removed.
/// Secret files get mode 0600, the others 0644. Returns the paths written.
pub fn write_files(
    dir: &Path,
    files: &BTreeMap<String, PkiFile>,
    existing: &FileSet,
    prune: &[&str],
) -> Result<Vec<String>, BundleDirError> {
    let changed: Vec<(&str, &PkiFile)> = files
        .iter()
        .filter(|(path, file)| existing.get(*path) != Some(&file.contents))
        .map(|(path, file)| (path.as_str(), file))
        .collect();
    let stale: Vec<&String> = existing
        .keys()
        .filter(|path| {
            !files.contains_key(*path)
                && prune
                    .iter()
                    .any(|folder| path.starts_with(&format!("{folder}/")))
        })
        .collect();
    if changed.is_empty() && stale.is_empty() {
        return Ok(Vec::new());
    }
    let unwritable = |reason: String| BundleDirError::Unwritable {
        path: dir.into(),
        reason,
    };
    if dir.exists() && !dir.is_dir() {
        return Err(unwritable("exists and is not a folder".into()));
    }
    let parent = match dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    fs::create_dir_all(&parent)
        .map_err(|e| unwritable(format!("cannot create {}: {e}", parent.display())))?;
    let staging = Staging::new(&parent, dir)
        .map_err(|e| unwritable(format!("cannot write beside it: {e}")))?;
    let folders: std::collections::BTreeSet<&Path> = changed
        .iter()
        .filter_map(|(path, _)| Path::new(path).parent())
        .collect();
    for folder in folders {
        create_dir(&staging.path.join(folder))
            .map_err(|e| unwritable(format!("cannot create {}: {e}", folder.display())))?;
    }
    // Creating a file is mostly kernel time (inode, directory entry), which
    // two threads do side by side; a render writes about 80 files.
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get().min(2));
    std::thread::scope(|scope| {
        let stage = |first: usize| {
            changed
                .iter()
                .skip(first)
                .step_by(workers)
                .try_for_each(|(path, file)| {
                    staging
                        .write(path, &file.contents, file.secret)
                        .map_err(|e| unwritable(format!("cannot write {path}: {e}")))
                })
        };
        let helpers: Vec<_> = (1..workers)
            .map(|first| scope.spawn(move || stage(first)))
            .collect();
        let mine = stage(0);
        helpers
            .into_iter()
            .map(|h| h.join().expect("staging writer panicked"))
            .try_fold((), |(), result| result)
            .and(mine)
    })?;
    // Every staged file reaches the disk before any rename makes it visible.
    sync_file_system(&staging.path).map_err(|e| unwritable(format!("cannot sync: {e}")))?;
    if dir.exists() {
        for (path, _) in &changed {
            let target = dir.join(path);
            if let Some(folder) = target.parent() {
                create_dir(folder)
                    .map_err(|e| unwritable(format!("cannot create {}: {e}", folder.display())))?;
            }
            fs::rename(staging.path.join(path), &target)
                .map_err(|e| unwritable(format!("cannot replace {path}: {e}")))?;
        }
        for path in &stale {
            fs::remove_file(dir.join(path))
                .map_err(|e| unwritable(format!("cannot remove stale {path}: {e}")))?;
        }
    } else {
        fs::rename(&staging.path, dir).map_err(|e| unwritable(e.to_string()))?;
    }
    // And the renames themselves reach the disk.
    sync_file_system(&parent).map_err(|e| unwritable(format!("cannot sync: {e}")))?;
    Ok(changed
        .into_iter()
        .map(|(path, _)| path.to_string())
        .collect())
}

/// A temporary folder that removes itself unless it was renamed away.
struct Staging {
    path: PathBuf,
    /// The process's umask, read once.
    umask: u32,
}

impl Staging {
    fn new(parent: &Path, target: &Path) -> io::Result<Self> {
        let name = target
            .file_name()
            .map_or("bundle".into(), |n| n.to_string_lossy().into_owned());
        let path = parent.join(format!(".{name}.gantry-tmp-{}", std::process::id()));
        if path.exists() {
            fs::remove_dir_all(&path)?;
        }
        create_dir(&path)?;
        // umask(2) can only be read by setting it: set and restore at once
        // (no other thread creates files while a bundle is staged).
        // SAFETY: umask has no memory effects.
        let umask = unsafe {
            let previous = libc::umask(0o022);
            libc::umask(previous);
            previous
        };
        Ok(Self { path, umask })
    }

    /// Writes one file; its folder must exist.
    fn write(&self, relative: &str, contents: &[u8], secret: bool) -> io::Result<()> {
        let path = self.path.join(relative);
        let mode = if secret { 0o600 } else { 0o644 };
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&path)?;
        file.write_all(contents)?;
        // Only if the umask narrowed the mode: make it exact (fchmod on the
        // open file: no second path lookup).
        if self.umask & mode != 0 {
            file.set_permissions(fs::Permissions::from_mode(mode))?;
        }
        Ok(())
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.path);
    }
}

/// Flushes the whole file system holding `path` with one syncfs(2): one journal
/// commit instead of an fsync per file (27 fsyncs cost ~6 ms of a 14 ms run;
/// see docs/benchmarks.md). The trade-off: syncfs also flushes other
/// processes' dirty data on that file system, so on a busy one it can wait longer.
fn sync_file_system(path: &Path) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let folder = fs::File::open(path)?;
    // SAFETY: syncfs only reads the descriptor, which `folder` keeps open.
    match unsafe { libc::syncfs(folder.as_raw_fd()) } {
        0 => Ok(()),
        _ => Err(io::Error::last_os_error()),
    }
}

/// Creates a folder (mode 0755) unless it exists; an existing one keeps its mode.
fn create_dir(path: &Path) -> io::Result<()> {
    if path.is_dir() {
        return Ok(());
    }
    fs::create_dir_all(path)?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o755))
}
