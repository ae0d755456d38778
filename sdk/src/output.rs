//! Writing generated files into an output directory that `meshkit generate` owns, without
//! ever losing a user's file.
//!
//! The directory keeps a manifest, [`MANIFEST`], listing the files meshkit wrote there. A
//! run replaces only files in that list (or files whose content is already exactly what it
//! would write), removes listed files it no longer generates (a removed service, the other
//! `--format`), and never touches anything else. It refuses to write over the spec being read.
//!
//! All or nothing: every file is first written to a temporary name, and only when all of them
//! are written are they renamed into place. A failure removes the temporary files and names
//! the path that failed.

use std::collections::BTreeSet;
use std::io;
use std::path::{Path, PathBuf};

use crate::generate::GeneratedFile;

/// The manifest's file name, inside the output directory.
pub const MANIFEST: &str = ".meshkit-generated";
const MANIFEST_HEADER: &str =
    "# Files `meshkit generate` wrote here. It replaces or removes only these.";

#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    /// The OS error is part of the message (not a `source`), so it is printed once.
    #[error("{path}: {error}")]
    Io { path: PathBuf, error: io::Error },
    #[error("{path}: this is the spec being read; refusing to overwrite it (write to another directory)")]
    WouldOverwriteInput { path: PathBuf },
    #[error(
        "{path}: exists and was not written by meshkit generate (it is not listed in {manifest}); \
         refusing to overwrite it: move it away or write to another directory"
    )]
    NotOurs { path: PathBuf, manifest: PathBuf },
}

/// What a run changed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Written {
    pub written: Vec<PathBuf>,
    /// Files of an earlier run that this run no longer generates.
    pub removed: Vec<PathBuf>,
}

/// Writes `files` into `dir` (created if needed), as described in the module docs. `inputs`
/// are files that must never be overwritten (the spec).
pub fn write_owned(
    dir: &Path,
    files: &[GeneratedFile],
    inputs: &[&Path],
) -> Result<Written, OutputError> {
    let io_at = |path: &Path| {
        let path = path.to_path_buf();
        move |error| OutputError::Io { path, error }
    };
    std::fs::create_dir_all(dir).map_err(io_at(dir))?;
    let manifest_path = dir.join(MANIFEST);
    let owned = read_manifest(&manifest_path)?;
    let inputs: Vec<PathBuf> = inputs
        .iter()
        .filter_map(|p| std::fs::canonicalize(p).ok())
        .collect();

    // Refuse before writing anything.
    for f in files {
        let target = dir.join(&f.file_name);
        if std::fs::canonicalize(&target).is_ok_and(|t| inputs.contains(&t)) {
            return Err(OutputError::WouldOverwriteInput { path: target });
        }
        match std::fs::symlink_metadata(&target) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_at(&target)(e)),
            Ok(m) if m.is_dir() => {
                return Err(io_at(&target)(io::Error::from(io::ErrorKind::IsADirectory)))
            }
            Ok(_) if owned.contains(&f.file_name) => {}
            Ok(_) if std::fs::read(&target).is_ok_and(|c| c == f.contents.as_bytes()) => {}
            Ok(_) => {
                return Err(OutputError::NotOurs {
                    path: target,
                    manifest: manifest_path,
                })
            }
        }
    }

    let mut temps: Vec<(PathBuf, PathBuf)> = Vec::new();
    let cleanup = |temps: &[(PathBuf, PathBuf)]| {
        for (tmp, _) in temps {
            let _ = std::fs::remove_file(tmp);
        }
    };
    for f in files {
        let target = dir.join(&f.file_name);
        let tmp = dir.join(format!(".{}.meshkit-tmp", f.file_name));
        if let Err(e) = std::fs::write(&tmp, &f.contents) {
            let _ = std::fs::remove_file(&tmp);
            cleanup(&temps);
            return Err(io_at(&target)(e));
        }
        temps.push((tmp, target));
    }
    let names: BTreeSet<String> = files.iter().map(|f| f.file_name.clone()).collect();
    // The manifest lists this run's files and, until they are removed, the stale ones: an
    // interrupted run never orphans a file meshkit wrote.
    let listed: BTreeSet<String> = names.union(&owned).cloned().collect();
    write_manifest(&manifest_path, &listed).inspect_err(|_| cleanup(&temps))?;
    let mut written = Vec::new();
    for (k, (tmp, target)) in temps.iter().enumerate() {
        if let Err(e) = std::fs::rename(tmp, target) {
            cleanup(&temps[k..]);
            return Err(io_at(target)(e));
        }
        written.push(target.clone());
    }
    let mut removed = Vec::new();
    for stale in owned.difference(&names) {
        let path = dir.join(stale);
        if std::fs::symlink_metadata(&path).is_ok_and(|m| m.is_file()) {
            std::fs::remove_file(&path).map_err(io_at(&path))?;
            removed.push(path);
        }
    }
    write_manifest(&manifest_path, &names)?;
    Ok(Written { written, removed })
}

/// The file names listed in the manifest; empty if there is none. Only plain file names count:
/// a hand-edited manifest cannot point outside the directory.
fn read_manifest(path: &Path) -> Result<BTreeSet<String>, OutputError> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .filter(|l| is_plain_file_name(l))
            .map(str::to_string)
            .collect()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(BTreeSet::new()),
        Err(error) => Err(OutputError::Io {
            path: path.to_path_buf(),
            error,
        }),
    }
}

fn write_manifest(path: &Path, names: &BTreeSet<String>) -> Result<(), OutputError> {
    let mut text = format!("{MANIFEST_HEADER}\n");
    for n in names {
        text.push_str(n);
        text.push('\n');
    }
    let tmp = path.with_file_name(format!("{MANIFEST}.meshkit-tmp"));
    std::fs::write(&tmp, text)
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|error| {
            let _ = std::fs::remove_file(&tmp);
            OutputError::Io {
                path: path.to_path_buf(),
                error,
            }
        })
}

fn is_plain_file_name(name: &str) -> bool {
    !name.contains(['/', '\\']) && name != "." && name != ".." && name != MANIFEST
}
