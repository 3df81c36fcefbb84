//! Every file operation on a bundle, relative to an opened folder (openat(2)
//! and its kin, through rustix):
//! - a folder renamed or replaced while gantry works is never reached through
//!   its old path: gantry keeps working on the folder it opened;
//! - no path component inside the folder is followed if it is a symbolic link;
//! - only regular files are read, each with a size bound, so a FIFO never
//!   blocks and `/dev/zero` never fills memory.

use std::ffi::OsString;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, Dir, FileType, Mode, OFlags, Stat};
use rustix::io::Errno;

/// The largest file gantry reads from a bundle or a flag. The largest file a
/// bundle holds, its chart archive, is tens of KiB; a TenantControlPlane is
/// at most what etcd stores for one object (1.5 MiB).
pub const MAX_FILE_BYTES: u64 = 4 << 20;

/// The deepest tree of folders gantry removes (its staging folder is three
/// levels deep): a deeper one is not its own, and removing it would recurse
/// without bound.
const MAX_TREE_DEPTH: usize = 16;

/// Why an operation on a path inside a folder failed. `path` is relative to
/// the folder. No variant holds a file's contents.
#[derive(Debug)]
pub enum AtError {
    /// A component of the path is a symbolic link.
    Link {
        path: String,
    },
    /// The entry is not what gantry reads or writes there: a FIFO, a
    /// device or a socket where a file belongs, or a file where a folder does.
    WrongType {
        path: String,
        found: &'static str,
    },
    TooLarge {
        path: String,
        size: u64,
        limit: u64,
    },
    Io {
        path: String,
        error: io::Error,
    },
}

impl AtError {
    fn io(path: &str, error: impl Into<io::Error>) -> Self {
        AtError::Io {
            path: path.to_string(),
            error: error.into(),
        }
    }

    pub fn path(&self) -> &str {
        match self {
            AtError::Link { path }
            | AtError::WrongType { path, .. }
            | AtError::TooLarge { path, .. }
            | AtError::Io { path, .. } => path,
        }
    }
}

impl std::fmt::Display for AtError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AtError::Link { path } => write!(
                f,
                "{path} is a symbolic link; gantry does not read or write through links \
                 (replace it with a folder or file)"
            ),
            AtError::WrongType { path, found } => write!(
                f,
                "{path} is {found}; gantry reads and writes only regular files and folders there \
                 (remove it)"
            ),
            AtError::TooLarge { path, size, limit } => write!(
                f,
                "{path} has {size} bytes, more than gantry reads from such a file ({limit})"
            ),
            AtError::Io { path, error } => write!(f, "{path}: {error}"),
        }
    }
}

/// What an entry of a folder is, in words for a message.
pub fn describe(kind: FileType) -> &'static str {
    match kind {
        FileType::RegularFile => "a regular file",
        FileType::Directory => "a folder",
        FileType::Symlink => "a symbolic link",
        FileType::Fifo => "a FIFO",
        FileType::Socket => "a socket",
        FileType::CharacterDevice => "a character device",
        FileType::BlockDevice => "a block device",
        FileType::Unknown => "of an unknown kind",
    }
}

/// Reads a file named by the user (a flag or an argument), following links
/// as any command does, up to `limit` bytes: a pipe (`<(cat tcp.yaml)`) is
/// read as the user asked, and `/dev/zero` ends at the bound.
pub fn read_user_file(path: &Path, limit: u64) -> Result<Vec<u8>, AtError> {
    let shown = path.display().to_string();
    let fd = rustix::fs::open(
        path,
        OFlags::RDONLY | OFlags::NOCTTY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| AtError::io(&shown, e))?;
    read_bounded(fd, &shown, limit, true)
}

/// Reads an opened regular file, up to the size bound.
fn read_opened(fd: OwnedFd, shown: &str, limit: u64) -> Result<Vec<u8>, AtError> {
    read_bounded(fd, shown, limit, false)
}

/// Reads an opened file up to `limit` bytes; a regular file only, unless
/// `any_kind` (then a folder fails at the read).
fn read_bounded(fd: OwnedFd, shown: &str, limit: u64, any_kind: bool) -> Result<Vec<u8>, AtError> {
    let stat = rustix::fs::fstat(&fd).map_err(|e| AtError::io(shown, e))?;
    let kind = FileType::from_raw_mode(stat.st_mode);
    if kind != FileType::RegularFile && !any_kind {
        return Err(AtError::WrongType {
            path: shown.into(),
            found: describe(kind),
        });
    }
    let size = stat.st_size as u64;
    if size > limit {
        return Err(AtError::TooLarge {
            path: shown.into(),
            size,
            limit,
        });
    }
    let mut contents = Vec::with_capacity(size as usize);
    // The bound holds even for a file that grows while it is read.
    File::from(fd)
        .take(limit + 1)
        .read_to_end(&mut contents)
        .map_err(|e| AtError::io(shown, e))?;
    if contents.len() as u64 > limit {
        return Err(AtError::TooLarge {
            path: shown.into(),
            size: contents.len() as u64,
            limit,
        });
    }
    Ok(contents)
}

/// An opened folder. `shown` is the path it was opened by, for messages only.
pub struct Folder {
    fd: OwnedFd,
    shown: PathBuf,
}

/// `relative` split into its folder (`""` for the top) and its last name.
fn split(relative: &str) -> (&str, &str) {
    relative.rsplit_once('/').unwrap_or(("", relative))
}

impl Folder {
    /// Opens `path`, which may itself be reached through links (a user's
    /// `--out` may be); nothing inside it is.
    pub fn open(path: &Path) -> io::Result<Folder> {
        let fd = rustix::fs::open(
            path,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        Ok(Folder {
            fd,
            shown: path.to_path_buf(),
        })
    }

    pub fn shown(&self) -> &Path {
        &self.shown
    }

    pub fn stat(&self) -> io::Result<Stat> {
        Ok(rustix::fs::fstat(&self.fd)?)
    }

    pub fn fd(&self) -> &OwnedFd {
        &self.fd
    }

    /// Opens the folder `relative` (`""` is this one), following no link.
    /// `None` if a component does not exist.
    pub fn folder(&self, relative: &str) -> Result<Option<Folder>, AtError> {
        let mut current = Folder {
            fd: self.fd.try_clone().map_err(|e| AtError::io(relative, e))?,
            shown: self.shown.clone(),
        };
        let mut walked = String::new();
        for name in relative.split('/').filter(|n| !n.is_empty()) {
            if !walked.is_empty() {
                walked.push('/');
            }
            walked.push_str(name);
            let opened = rustix::fs::openat(
                &current.fd,
                name,
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            );
            current = match opened {
                Ok(fd) => Folder {
                    shown: current.shown.join(name),
                    fd,
                },
                Err(Errno::NOENT) => return Ok(None),
                Err(Errno::LOOP | Errno::NOTDIR) => {
                    return Err(current.wrong_entry(name, &walked, FileType::Directory));
                }
                Err(e) => return Err(AtError::io(&walked, e)),
            };
        }
        Ok(Some(current))
    }

    /// The error for `name` (shown as `walked`), which is not a `wanted`.
    fn wrong_entry(&self, name: &str, walked: &str, wanted: FileType) -> AtError {
        match self.kind(name) {
            Ok(Some(FileType::Symlink)) => AtError::Link {
                path: walked.into(),
            },
            Ok(Some(kind)) if kind != wanted => AtError::WrongType {
                path: walked.into(),
                found: describe(kind),
            },
            Ok(_) => AtError::io(walked, Errno::LOOP),
            Err(e) => AtError::io(walked, e),
        }
    }

    /// What the entry `name` of this folder is, following no link.
    fn kind(&self, name: &str) -> io::Result<Option<FileType>> {
        match rustix::fs::statat(&self.fd, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(stat) => Ok(Some(FileType::from_raw_mode(stat.st_mode))),
            Err(Errno::NOENT) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// What `relative` is (following no link), `None` if it does not exist.
    pub fn kind_of(&self, relative: &str) -> Result<Option<FileType>, AtError> {
        let (folder, name) = split(relative);
        let Some(folder) = self.folder(folder)? else {
            return Ok(None);
        };
        folder.kind(name).map_err(|e| AtError::io(relative, e))
    }

    /// Reads the regular file `relative`; `None` if it does not exist.
    pub fn read(&self, relative: &str) -> Result<Option<Vec<u8>>, AtError> {
        let (folder, name) = split(relative);
        let Some(folder) = self.folder(folder)? else {
            return Ok(None);
        };
        let opened = rustix::fs::openat(
            &folder.fd,
            name,
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC,
            Mode::empty(),
        );
        match opened {
            Ok(fd) => read_opened(fd, relative, MAX_FILE_BYTES).map(Some),
            Err(Errno::NOENT) => Ok(None),
            Err(Errno::LOOP) => Err(folder.wrong_entry(name, relative, FileType::RegularFile)),
            Err(e) => Err(AtError::io(relative, e)),
        }
    }

    /// The names in this folder. Names that are not UTF-8 are returned as
    /// they are (gantry writes none, so they are never its files).
    pub fn names(&self) -> io::Result<Vec<(OsString, FileType)>> {
        let mut names = Vec::new();
        for entry in Dir::read_from(&self.fd)? {
            let entry = entry?;
            let name = entry.file_name().to_bytes();
            if name == b"." || name == b".." {
                continue;
            }
            names.push((OsString::from_vec(name.to_vec()), entry.file_type()));
        }
        Ok(names)
    }

    /// Every regular file under the folder `relative`, as paths relative to
    /// this folder. A link or a special file there is refused; a name that
    /// is not UTF-8 is skipped (gantry writes none, and never touches it).
    pub fn files_under(&self, relative: &str) -> Result<Vec<String>, AtError> {
        let Some(top) = self.folder(relative)? else {
            return Ok(Vec::new());
        };
        let mut files = Vec::new();
        let mut stack = vec![(relative.to_string(), top)];
        while let Some((path, folder)) = stack.pop() {
            for (name, kind) in folder.names().map_err(|e| AtError::io(&path, e))? {
                let Ok(name) = name.into_string() else {
                    continue;
                };
                let child = format!("{path}/{name}");
                // Some file systems do not say what an entry is.
                let kind = match kind {
                    FileType::Unknown => folder
                        .kind(&name)
                        .map_err(|e| AtError::io(&child, e))?
                        .unwrap_or(FileType::Unknown),
                    kind => kind,
                };
                match kind {
                    FileType::RegularFile => files.push(child),
                    FileType::Directory => {
                        if let Some(sub) = folder.folder(&name)? {
                            stack.push((child, sub));
                        }
                    }
                    FileType::Symlink => return Err(AtError::Link { path: child }),
                    other => {
                        return Err(AtError::WrongType {
                            path: child,
                            found: describe(other),
                        });
                    }
                }
            }
        }
        Ok(files)
    }

    /// Creates the folder `relative` and its missing parents (mode 0755, or
    /// `mode` for the last), pushing each one made onto `created`.
    pub fn create_folders(
        &self,
        relative: &str,
        mode: u32,
        created: &mut Vec<String>,
    ) -> Result<Folder, AtError> {
        let mut walked = String::new();
        let names: Vec<&str> = relative.split('/').filter(|n| !n.is_empty()).collect();
        for (index, name) in names.iter().enumerate() {
            let parent = self
                .folder(&walked)?
                .ok_or_else(|| AtError::io(&walked, Errno::NOENT))?;
            if !walked.is_empty() {
                walked.push('/');
            }
            walked.push_str(name);
            let mode = if index + 1 == names.len() {
                mode
            } else {
                0o755
            };
            match rustix::fs::mkdirat(&parent.fd, *name, Mode::from_raw_mode(mode)) {
                Ok(()) => {
                    created.push(walked.clone());
                    // mkdir honours the umask: make the mode exact.
                    let made = parent
                        .folder(name)?
                        .ok_or_else(|| AtError::io(&walked, Errno::NOENT))?;
                    rustix::fs::fchmod(&made.fd, Mode::from_raw_mode(mode))
                        .map_err(|e| AtError::io(&walked, e))?;
                }
                Err(Errno::EXIST) => {}
                Err(e) => return Err(AtError::io(&walked, e)),
            }
        }
        self.folder(relative)?
            .ok_or_else(|| AtError::io(relative, Errno::NOENT))
    }

    /// Writes a new file (it must not exist) with exactly `mode`.
    pub fn create_file(&self, relative: &str, contents: &[u8], mode: u32) -> Result<(), AtError> {
        let (folder, name) = split(relative);
        let folder = self
            .folder(folder)?
            .ok_or_else(|| AtError::io(relative, Errno::NOENT))?;
        let fd = rustix::fs::openat(
            &folder.fd,
            name,
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(mode),
        )
        .map_err(|e| AtError::io(relative, e))?;
        // The umask may have narrowed the mode: make it exact.
        rustix::fs::fchmod(&fd, Mode::from_raw_mode(mode)).map_err(|e| AtError::io(relative, e))?;
        File::from(fd)
            .write_all(contents)
            .map_err(|e| AtError::io(relative, e))
    }

    /// Sets the mode of the regular file `relative` (opened without
    /// following links).
    pub fn set_mode(&self, relative: &str, mode: u32) -> Result<(), AtError> {
        let (folder, name) = split(relative);
        let folder = self
            .folder(folder)?
            .ok_or_else(|| AtError::io(relative, Errno::NOENT))?;
        let fd = rustix::fs::openat(
            &folder.fd,
            name,
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| AtError::io(relative, e))?;
        rustix::fs::fchmod(&fd, Mode::from_raw_mode(mode)).map_err(|e| AtError::io(relative, e))
    }

    /// The mode bits of the regular file `relative`, if it exists.
    pub fn mode_of(&self, relative: &str) -> Result<Option<u32>, AtError> {
        let (folder, name) = split(relative);
        let Some(folder) = self.folder(folder)? else {
            return Ok(None);
        };
        match rustix::fs::statat(&folder.fd, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(stat) => Ok(Some(stat.st_mode & 0o7777)),
            Err(Errno::NOENT) => Ok(None),
            Err(e) => Err(AtError::io(relative, e)),
        }
    }

    /// Renames `from` (in this folder) to `to` in `target`, replacing it.
    pub fn rename(&self, from: &str, target: &Folder, to: &str) -> Result<(), AtError> {
        let (from_folder, from_name) = split(from);
        let (to_folder, to_name) = split(to);
        let missing = |path: &str| AtError::io(path, Errno::NOENT);
        let source = self.folder(from_folder)?.ok_or_else(|| missing(from))?;
        let destination = target.folder(to_folder)?.ok_or_else(|| missing(to))?;
        rustix::fs::renameat(&source.fd, from_name, &destination.fd, to_name)
            .map_err(|e| AtError::io(to, e))
    }

    /// A hard link `to` in `target` to the file `from` of this folder.
    pub fn link(&self, from: &str, target: &Folder, to: &str) -> Result<(), AtError> {
        let (from_folder, from_name) = split(from);
        let (to_folder, to_name) = split(to);
        let missing = |path: &str| AtError::io(path, Errno::NOENT);
        let source = self.folder(from_folder)?.ok_or_else(|| missing(from))?;
        let destination = target.folder(to_folder)?.ok_or_else(|| missing(to))?;
        rustix::fs::linkat(
            &source.fd,
            from_name,
            &destination.fd,
            to_name,
            AtFlags::empty(),
        )
        .map_err(|e| AtError::io(from, e))
    }

    /// Removes the file `relative`.
    pub fn remove_file(&self, relative: &str) -> Result<(), AtError> {
        let (folder, name) = split(relative);
        let folder = self
            .folder(folder)?
            .ok_or_else(|| AtError::io(relative, Errno::NOENT))?;
        rustix::fs::unlinkat(&folder.fd, name, AtFlags::empty())
            .map_err(|e| AtError::io(relative, e))
    }

    /// Removes the empty folder `relative`.
    pub fn remove_folder(&self, relative: &str) -> Result<(), AtError> {
        let (folder, name) = split(relative);
        let folder = self
            .folder(folder)?
            .ok_or_else(|| AtError::io(relative, Errno::NOENT))?;
        rustix::fs::unlinkat(&folder.fd, name, AtFlags::REMOVEDIR)
            .map_err(|e| AtError::io(relative, e))
    }

    /// Removes the folder `relative` and everything in it, following no
    /// link (a link inside is removed, not followed). Nothing if it does not exist.
    pub fn remove_tree(&self, relative: &str) -> Result<(), AtError> {
        self.remove_tree_within(relative, MAX_TREE_DEPTH)
    }

    /// [`Folder::remove_tree`], refusing a tree deeper than `depth` levels.
    fn remove_tree_within(&self, relative: &str, depth: usize) -> Result<(), AtError> {
        let Some(folder) = self.folder(relative)? else {
            return Ok(());
        };
        if depth == 0 {
            return Err(AtError::WrongType {
                path: relative.into(),
                found: "a tree of folders deeper than any gantry writes",
            });
        }
        for (name, kind) in folder.names().map_err(|e| AtError::io(relative, e))? {
            let shown = format!("{relative}/{}", name.to_string_lossy());
            let kind = match kind {
                FileType::Unknown => folder
                    .kind(&name.to_string_lossy())
                    .map_err(|e| AtError::io(&shown, e))?
                    .unwrap_or(FileType::Unknown),
                kind => kind,
            };
            if kind == FileType::Directory {
                let child = name
                    .to_str()
                    .ok_or_else(|| AtError::io(&shown, Errno::INVAL))?;
                folder.remove_tree_within(child, depth - 1)?;
            } else {
                rustix::fs::unlinkat(&folder.fd, name.as_os_str(), AtFlags::empty())
                    .map_err(|e| AtError::io(&shown, e))?;
            }
        }
        drop(folder);
        self.remove_folder(relative)
    }

    /// Flushes the whole file system holding this folder with one
    /// syncfs(2): one journal commit instead of an fsync per file (27 fsyncs
    /// cost ~6 ms of a 14 ms run; see docs/benchmarks.md). The trade-off:
    /// syncfs also flushes other processes' dirty data on that file system.
    pub fn sync_file_system(&self) -> io::Result<()> {
        Ok(rustix::fs::syncfs(&self.fd)?)
    }
}
