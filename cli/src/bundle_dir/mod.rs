//! A bundle on disk: read the files gantry knows, write new ones without
//! ever leaving a half-written file behind, and never touch anything else.
//!
//! Every operation is relative to the bundle folder as opened ([`at::Folder`]):
//! a folder renamed or swapped meanwhile is never written through its old
//! path, and no link inside it is followed.
//!
//! Writing stages every changed file in `.gantry-staging/` inside the bundle
//! (same file system, mode 0700) and then renames: each changed file is
//! replaced by an atomic rename, so every file is always either its old or
//! its new version, and the bundle's record is renamed last. The old version
//! of every replaced or removed file is kept (a hard link) until all renames
//! are done: if one fails, every file done so far is put back, and the folder
//! is as it was. A command killed part-way leaves the staging folder, which
//! the next one (under the lock) reads and removes.
//!
//! Every bundle records whose it is and which files gantry wrote
//! ([`BundleRecord`]), so that no command takes over another tenant's folder
//! or a folder that is not a bundle, and only files gantry wrote are ever
//! removed. Writers take [`LockedBundle`] first.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use gantry_pki::{FileSet, PkiFile, catalog};

pub mod at;
mod keys;
mod lock;
mod owner;

use at::{AtError, Folder};
pub use keys::{JOIN_COMMAND, RENDERED_FOLDERS, guard_keys};
pub use lock::{LockedBundle, remove_old_staging};
pub use owner::{BundleRecord, FixedSpec, Owner, RECORD, STAGING, is_under};

/// Why a bundle folder could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum BundleDirError {
    #[error("--out {path:?}: {reason}")]
    Unwritable { path: PathBuf, reason: String },
    /// The folder is not gantry's to write (another tenant's, not a bundle,
    /// or holding a link or a special file where gantry's files belong).
    #[error("--out {path:?}: {reason}")]
    Refused { path: PathBuf, reason: String },
    #[error("{flag} {path:?}: {reason}")]
    Unreadable {
        flag: &'static str,
        path: PathBuf,
        reason: String,
    },
}

impl BundleDirError {
    /// A failed read in `folder`: a link or a special file is refused, the rest unreadable.
    fn read(flag: &'static str, folder: &Folder, error: AtError) -> Self {
        let path = folder.shown().to_path_buf();
        match error {
            AtError::Link { .. } | AtError::WrongType { .. } if flag == "--out" => {
                BundleDirError::Refused {
                    path,
                    reason: error.to_string(),
                }
            }
            error => BundleDirError::Unreadable {
                flag,
                path,
                reason: error.to_string(),
            },
        }
    }
}

/// Reads the catalog's files that exist under `dir` (none if `dir` does not
/// exist), for a command that only reads. `flag` names where `dir` came from.
pub fn read_bundle(flag: &'static str, dir: &Path) -> Result<FileSet, BundleDirError> {
    let folder = match Folder::open(dir) {
        Ok(folder) => folder,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(FileSet::new()),
        Err(e) => {
            return Err(BundleDirError::Unreadable {
                flag,
                path: dir.into(),
                reason: e.to_string(),
            });
        }
    };
    read_catalog(flag, &folder)
}

/// Reads the catalog's files that exist in `folder`.
pub fn read_catalog(flag: &'static str, folder: &Folder) -> Result<FileSet, BundleDirError> {
    let mut files = FileSet::new();
    for relative in catalog::all_paths() {
        if let Some(contents) = folder
            .read(&relative)
            .map_err(|e| BundleDirError::read(flag, folder, e))?
        {
            files.insert(relative, contents);
        }
    }
    Ok(files)
}

/// The regular files under each of `folders`, listed, not read: what is
/// not gantry's is never read (a user's large files cost nothing).
pub fn list_files(
    flag: &'static str,
    folder: &Folder,
    folders: &[&str],
) -> Result<BTreeSet<String>, BundleDirError> {
    let mut listed = BTreeSet::new();
    for name in folders {
        let files = folder
            .files_under(name)
            .map_err(|e| BundleDirError::read(flag, folder, e))?;
        listed.extend(files);
    }
    Ok(listed)
}

/// Reads each of `paths` that exists and is not in `files` yet into `files`.
pub fn read_files<'a>(
    flag: &'static str,
    folder: &Folder,
    files: &mut FileSet,
    paths: impl IntoIterator<Item = &'a str>,
) -> Result<(), BundleDirError> {
    for path in paths {
        if files.contains_key(path) {
            continue;
        }
        if let Some(contents) = folder
            .read(path)
            .map_err(|e| BundleDirError::read(flag, folder, e))?
        {
            files.insert(path.to_string(), contents);
        }
    }
    Ok(())
}

/// What a write changed.
#[derive(Debug, Default)]
pub struct Written {
    /// Files written (new or replaced).
    pub written: Vec<String>,
    /// Files removed: an earlier command wrote them, this one does not.
    pub removed: Vec<String>,
    /// Secret files whose mode was made 0600 again.
    pub narrowed: Vec<String>,
    /// Whether a staging folder a killed writer left was removed.
    pub cleaned_staging: bool,
}

/// The mode of a file gantry writes.
fn mode(secret: bool) -> u32 {
    if secret { 0o600 } else { 0o644 }
}

/// Writes `files` into `folder`: those that differ from `existing` are staged
/// and renamed into place ([`RECORD`] last); files of `existing` that gantry
/// wrote before (`written_before`, from the bundle's record) and that `files`
/// no longer holds are removed. Secret files get mode 0600, the others 0644;
/// an unchanged secret file whose mode was widened is narrowed again. The
/// caller holds the [`LockedBundle`].
pub fn write_files(
    folder: &Folder,
    files: &BTreeMap<String, PkiFile>,
    existing: &FileSet,
    written_before: &BTreeSet<String>,
) -> Result<Written, BundleDirError> {
    let unwritable = |reason: String| BundleDirError::Unwritable {
        path: folder.shown().into(),
        reason,
    };
    let mut changed: Vec<(&str, &PkiFile)> = files
        .iter()
        .filter(|(path, file)| existing.get(*path) != Some(&file.contents))
        .map(|(path, file)| (path.as_str(), file))
        .collect();
    // The record last: until it is in place, the previous one holds.
    changed.sort_by_key(|(path, _)| *path == RECORD);
    let stale: Vec<&str> = existing
        .keys()
        .filter(|path| !files.contains_key(*path) && written_before.contains(*path))
        .map(String::as_str)
        .collect();
    let narrowed = narrow_secret_modes(folder, files, &changed)
        .map_err(|e| unwritable(format!("cannot set a secret file's mode to 0600: {e}")))?;
    // What a killed writer left goes now, even when nothing else changes.
    let cleaned_staging = matches!(folder.kind_of(STAGING), Ok(Some(_)));
    folder
        .remove_tree(STAGING)
        .map_err(|e| unwritable(format!("cannot remove {STAGING}: {e}")))?;
    if changed.is_empty() && stale.is_empty() {
        return Ok(Written {
            narrowed,
            cleaned_staging,
            ..Written::default()
        });
    }
    // A failure before any rename leaves no staged file behind (keys among them).
    let staged = stage(folder, &changed)
        .map_err(|e| format!("cannot stage the new files: {e}"))
        .and_then(|()| {
            // Every staged file reaches the disk before any rename makes it visible.
            folder
                .sync_file_system()
                .map_err(|e| format!("cannot sync: {e}"))
        });
    if let Err(e) = staged {
        let _ = folder.remove_tree(STAGING);
        return Err(unwritable(e));
    }
    let mut journal = Journal::new(folder);
    if let Err(e) = journal.replace_all(&changed, &stale) {
        if journal.undo() {
            let _ = folder.remove_tree(STAGING);
            return Err(unwritable(format!(
                "{e}; every file is back as it was before this run"
            )));
        }
        // Keep the old versions: they may be the only copy left.
        let kept = keep_staging(folder);
        return Err(unwritable(format!(
            "{e}; some files could not be put back: their previous versions are in {kept}"
        )));
    }
    folder
        .remove_tree(STAGING)
        .map_err(|e| unwritable(format!("cannot remove {STAGING}: {e}")))?;
    // And the renames themselves reach the disk.
    folder
        .sync_file_system()
        .map_err(|e| unwritable(format!("cannot sync: {e}")))?;
    Ok(Written {
        written: changed.iter().map(|(path, _)| path.to_string()).collect(),
        removed: stale.iter().map(|path| path.to_string()).collect(),
        narrowed,
        cleaned_staging,
    })
}

/// Makes 0600 again the secret files that stay as they are but whose mode
/// someone widened (a key left at 0644). Returns their paths.
fn narrow_secret_modes(
    folder: &Folder,
    files: &BTreeMap<String, PkiFile>,
    changed: &[(&str, &PkiFile)],
) -> Result<Vec<String>, AtError> {
    let mut narrowed = Vec::new();
    for (path, file) in files.iter().filter(|(_, file)| file.secret) {
        if changed.iter().any(|(p, _)| p == path) {
            continue;
        }
        if let Some(current) = folder.mode_of(path)?
            && current & 0o077 != 0
        {
            folder.set_mode(path, mode(file.secret))?;
            narrowed.push(path.clone());
        }
    }
    Ok(narrowed)
}

/// Writes every changed file into a new staging folder inside the bundle.
fn stage(folder: &Folder, changed: &[(&str, &PkiFile)]) -> Result<(), AtError> {
    folder.remove_tree(STAGING)?;
    folder.create_folders(STAGING, 0o700, &mut Vec::new())?;
    let subfolders: BTreeSet<&str> = changed
        .iter()
        .filter_map(|(path, _)| path.rsplit_once('/').map(|(parent, _)| parent))
        .collect();
    for sub in subfolders {
        folder.create_folders(&format!("{STAGING}/{sub}"), 0o755, &mut Vec::new())?;
    }
    // Creating a file is mostly kernel time (inode, directory entry), which
    // two threads do side by side; a render writes about 80 files.
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get().min(2));
    std::thread::scope(|scope| {
        let stage_every = |first: usize| {
            changed
                .iter()
                .skip(first)
                .step_by(workers)
                .try_for_each(|(path, file)| {
                    folder.create_file(
                        &format!("{STAGING}/{path}"),
                        &file.contents,
                        mode(file.secret),
                    )
                })
        };
        let helpers: Vec<_> = (1..workers)
            .map(|first| scope.spawn(move || stage_every(first)))
            .collect();
        let mine = stage_every(0);
        helpers
            .into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|_| {
                    Err(AtError::Io {
                        path: STAGING.into(),
                        error: std::io::Error::other("a staging thread failed"),
                    })
                })
            })
            .try_fold((), |(), result| result)
            .and(mine)
    })
}

/// Renames the staging folder out of the way of the next command, which
/// would remove it, and returns where it is now.
fn keep_staging(folder: &Folder) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let kept = format!("{}{now}", owner::KEPT_PREFIX);
    match folder.rename(STAGING, folder, &kept) {
        Ok(()) => folder.shown().join(kept).display().to_string(),
        Err(_) => folder.shown().join(STAGING).display().to_string(),
    }
}

/// What a write replaced or removed so far, with the old versions kept
/// (hard links in the staging folder), so that a failure part-way can put
/// everything back.
struct Journal<'a> {
    folder: &'a Folder,
    done: Vec<Done>,
}

enum Done {
    /// A folder this run created.
    Created(String),
    /// A file this run wrote; `previous` holds its old version, if any.
    Wrote {
        target: String,
        previous: Option<String>,
    },
    /// A file this run removed; `previous` holds it.
    Removed { target: String, previous: String },
    /// A folder this run moved into place whole from the staging folder.
    Moved(String),
}

/// Where the old versions are kept while a write runs.
const PREVIOUS: &str = ".gantry-staging/.previous";

impl<'a> Journal<'a> {
    fn new(folder: &'a Folder) -> Self {
        Self {
            folder,
            done: Vec::new(),
        }
    }

    /// Renames every staged file of `changed` into place, then removes
    /// `stale`, recording each step.
    fn replace_all(&mut self, changed: &[(&str, &PkiFile)], stale: &[&str]) -> Result<(), String> {
        let mut created = Vec::new();
        self.folder
            .create_folders(PREVIOUS, 0o700, &mut created)
            .map_err(|e| format!("cannot keep the old files: {e}"))?;
        let moved = self.move_new_folders(changed)?;
        for (path, _) in changed {
            if moved
                .iter()
                .any(|folder| is_under(path, &[folder.as_str()]))
            {
                continue;
            }
            if let Some((parent, _)) = path.rsplit_once('/') {
                let mut created = Vec::new();
                let result = self.folder.create_folders(parent, 0o755, &mut created);
                self.done.extend(created.into_iter().map(Done::Created));
                result.map_err(|e| format!("cannot create {parent}: {e}"))?;
            }
            let previous = self
                .keep(path)
                .map_err(|e| format!("cannot replace {path}: {e}"))?;
            self.folder
                .rename(&format!("{STAGING}/{path}"), self.folder, path)
                .map_err(|e| format!("cannot replace {path}: {e}"))?;
            self.done.push(Done::Wrote {
                target: path.to_string(),
                previous,
            });
        }
        for path in stale {
            // Removed by someone else meanwhile: nothing to do.
            let Some(previous) = self
                .keep(path)
                .map_err(|e| format!("cannot remove stale {path}: {e}"))?
            else {
                continue;
            };
            self.folder
                .remove_file(path)
                .map_err(|e| format!("cannot remove stale {path}: {e}"))?;
            self.done.push(Done::Removed {
                target: path.to_string(),
                previous,
            });
        }
        Ok(())
    }

    /// Moves each top-level folder of `changed` that the bundle does not have
    /// yet into place whole, in one rename: its staged copy holds exactly the
    /// changed files under it. (A rename dirties the inode it moves, which
    /// the final `syncfs` writes back one by one on some disks: a new bundle
    /// costs four renames instead of eighty.) Returns the folders moved.
    fn move_new_folders(&mut self, changed: &[(&str, &PkiFile)]) -> Result<Vec<String>, String> {
        let tops: BTreeSet<&str> = changed
            .iter()
            .filter_map(|(path, _)| path.split_once('/').map(|(top, _)| top))
            .collect();
        let mut moved = Vec::new();
        for top in tops {
            let missing = self
                .folder
                .kind_of(top)
                .map_err(|e| format!("cannot read {top}: {e}"))?
                .is_none();
            if !missing {
                continue;
            }
            self.folder
                .rename(&format!("{STAGING}/{top}"), self.folder, top)
                .map_err(|e| format!("cannot create {top}: {e}"))?;
            self.done.push(Done::Moved(top.to_string()));
            moved.push(top.to_string());
        }
        Ok(moved)
    }

    /// A hard link to the current version of `relative`, if it exists.
    fn keep(&self, relative: &str) -> Result<Option<String>, AtError> {
        if self.folder.kind_of(relative)?.is_none() {
            return Ok(None);
        }
        let backup = format!("{PREVIOUS}/{}", self.done.len());
        self.folder.link(relative, self.folder, &backup)?;
        Ok(Some(backup))
    }

    /// Puts back everything done so far, newest first. Best effort: a step
    /// that fails does not stop the others. Whether every file is back.
    fn undo(&mut self) -> bool {
        let mut all_back = true;
        while let Some(step) = self.done.pop() {
            let put_back = match step {
                Done::Created(folder) => self.folder.remove_folder(&folder),
                Done::Wrote {
                    target,
                    previous: Some(previous),
                }
                | Done::Removed { target, previous } => {
                    self.folder.rename(&previous, self.folder, &target)
                }
                Done::Wrote {
                    target,
                    previous: None,
                } => self.folder.remove_file(&target),
                Done::Moved(folder) => {
                    self.folder
                        .rename(&folder, self.folder, &format!("{STAGING}/{folder}"))
                }
            };
            all_back &= put_back.is_ok();
        }
        all_back
    }
}
