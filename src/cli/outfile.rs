//! Writing a command's output to the path a user named (`export --output`), without
//! ever damaging what is not ours:
//!
//! - `-` is standard output;
//! - a symlink is followed, and its target is what gets written;
//! - a regular file (or a new one) is replaced atomically: the output goes to a
//!   temporary file beside it, which is synced and renamed over it only once complete.
//!   A replaced file keeps its mode (and, where allowed, its owner); a new file is
//!   owner-only (0600), like the database;
//! - a device or a FIFO is written through, never replaced;
//! - a directory or a socket is refused before any work is done.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};

/// Where output goes, decided before any work is done.
#[derive(Debug)]
pub enum Target {
    /// Standard output (`-`).
    Stdout,
    /// A regular file, replaced (or created) atomically once the output is complete.
    Replace {
        /// The file written (symlinks resolved).
        path: PathBuf,
        /// The replaced file's metadata; `None` for a new file.
        existing: Option<fs::Metadata>,
    },
    /// A device or FIFO, written in place.
    Through(PathBuf),
}

/// How many symlinks are followed before the path is refused as a loop.
const MAX_LINKS: usize = 40;

impl Target {
    /// What writing to `path` means (see the module documentation).
    ///
    /// # Errors
    /// A directory, a socket, a symlink loop, or a new file in a directory that does
    /// not exist.
    pub fn of(path: &Path) -> anyhow::Result<Target> {
        if path.as_os_str() == "-" {
            return Ok(Target::Stdout);
        }
        if path.as_os_str().is_empty() {
            return invalid("the output path is empty (use - for standard output)".into());
        }
        let path = resolve(path)?;
        match fs::metadata(&path) {
            Ok(meta) => {
                let kind = meta.file_type();
                if kind.is_dir() {
                    return invalid(format!(
                        "{} is a directory; name a file to write (or - for standard output)",
                        path.display()
                    ));
                }
                if kind.is_socket() {
                    return invalid(format!(
                        "{} is a socket; name a file to write",
                        path.display()
                    ));
                }
                if kind.is_file() {
                    Ok(Target::Replace {
                        path,
                        existing: Some(meta),
                    })
                } else {
                    Ok(Target::Through(path))
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let parent = parent_of(&path);
                if !parent.is_dir() {
                    return invalid(format!(
                        "cannot create {}: the directory {} does not exist",
                        path.display(),
                        parent.display()
                    ));
                }
                Ok(Target::Replace {
                    path,
                    existing: None,
                })
            }
            Err(e) => Err(e).with_context(|| format!("cannot use {}", path.display())),
        }
    }

    /// Opens the target for writing. For a file, nothing is replaced until
    /// [`Output::commit`].
    ///
    /// # Errors
    /// The file system's, naming the path.
    pub fn open(self) -> anyhow::Result<Output> {
        match self {
            Target::Stdout => Ok(Output::Stdout(io::stdout())),
            Target::Through(path) => {
                let file = OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .with_context(|| format!("cannot open {} for writing", path.display()))?;
                Ok(Output::Through(file))
            }
            Target::Replace { path, existing } => {
                let dir = parent_of(&path);
                let name = path.file_name().unwrap_or_default().to_string_lossy();
                // Created owner-only (0600) and exclusively: nothing else is followed
                // or overwritten on the way.
                let temp = tempfile::Builder::new()
                    .prefix(&format!(".{name}."))
                    .suffix(".partial")
                    .tempfile_in(&dir)
                    .with_context(|| format!("cannot create a file in {}", dir.display()))?;
                if let Some(meta) = &existing {
                    let file = temp.as_file();
                    file.set_permissions(fs::Permissions::from_mode(meta.mode() & 0o7777))
                        .with_context(|| {
                            format!("cannot set the mode of {}", temp.path().display())
                        })?;
                    // Keeps the owner when allowed (root replacing a user's file); a
                    // user cannot give a file away, and then it stays theirs.
                    let _ = std::os::unix::fs::fchown(file, Some(meta.uid()), Some(meta.gid()));
                }
                Ok(Output::Replace { temp, path })
            }
        }
    }
}

/// An open output.
pub enum Output {
    /// Standard output.
    Stdout(io::Stdout),
    /// A device or FIFO.
    Through(File),
    /// A temporary file that becomes `path` on commit.
    Replace {
        /// The temporary file beside `path`; removed if dropped uncommitted.
        temp: tempfile::NamedTempFile,
        /// The file it replaces.
        path: PathBuf,
    },
}

impl Output {
    /// The writer.
    pub fn writer(&mut self) -> &mut dyn Write {
        match self {
            Output::Stdout(out) => out,
            Output::Through(file) => file,
            Output::Replace { temp, .. } => temp.as_file_mut(),
        }
    }

    /// Makes the output durable and, for a file, puts it in place. Dropping an output
    /// without committing it leaves a replaced file as it was.
    ///
    /// # Errors
    /// The file system's, naming the path.
    pub fn commit(self) -> anyhow::Result<()> {
        match self {
            Output::Stdout(mut out) => Ok(out.flush()?),
            Output::Through(mut file) => Ok(file.flush()?),
            Output::Replace { temp, path } => {
                temp.as_file()
                    .sync_all()
                    .with_context(|| format!("cannot sync {}", temp.path().display()))?;
                temp.persist(&path)
                    .map_err(|e| e.error)
                    .with_context(|| format!("cannot replace {}", path.display()))?;
                // The rename itself survives a crash once the directory is synced.
                if let Ok(dir) = File::open(parent_of(&path)) {
                    let _ = dir.sync_all();
                }
                Ok(())
            }
        }
    }
}

/// A bad `--output` value: exit code 2.
fn invalid(message: String) -> anyhow::Result<Target> {
    Err(agentstore::Error::InvalidArgument(message).into())
}

/// `path` with its symlinks followed (a dangling one names the file to create).
fn resolve(path: &Path) -> anyhow::Result<PathBuf> {
    let mut path = path.to_path_buf();
    for _ in 0..MAX_LINKS {
        match fs::symlink_metadata(&path) {
            Ok(meta) if meta.file_type().is_symlink() => {
                let target = fs::read_link(&path)
                    .with_context(|| format!("cannot read the symlink {}", path.display()))?;
                path = parent_of(&path).join(target);
            }
            _ => return Ok(path),
        }
    }
    bail!(
        "{} is a loop of symlinks (more than {MAX_LINKS})",
        path.display()
    )
}

/// The directory holding `path` (`.` for a bare name).
fn parent_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}
