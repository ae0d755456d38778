//! Watching a spec file for edits, for `meshkit serve` and `meshkit up`.
//!
//! The file's bytes are compared every [`POLL`]: an edit is seen however the editor saves it
//! (in place, or as a new file renamed over the old one, which a watch on the old inode
//! misses), on any filesystem, bind mounts included. An edit is loaded and validated as
//! `meshkit validate` would; the caller serves it only if it is valid.

use std::path::{Path, PathBuf};
use std::time::Duration;

use meshkit_sdk::model::Mesh;
use meshkit_sdk::LoadError;

/// How often the file is read.
pub const POLL: Duration = Duration::from_millis(200);

pub struct SpecWatch {
    path: PathBuf,
    last: Option<Vec<u8>>,
}

impl SpecWatch {
    /// Watches `path`, taking what it holds now as seen.
    pub fn new(path: &Path) -> SpecWatch {
        SpecWatch {
            path: path.to_path_buf(),
            last: std::fs::read(path).ok(),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Waits for the file's content to change (a file that cannot be read, e.g. halfway
    /// through a save, is not a change), then loads it: the new mesh, or why it is refused.
    pub async fn next(&mut self) -> Result<Mesh, LoadError> {
        loop {
            tokio::time::sleep(POLL).await;
            let Ok(now) = std::fs::read(&self.path) else {
                continue;
            };
            if self.last.as_ref() != Some(&now) {
                self.last = Some(now);
                return meshkit_sdk::load_file(&self.path);
            }
        }
    }
}
