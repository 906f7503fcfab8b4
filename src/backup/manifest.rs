//! The manifest beside each backup: what the restore drill compares a restored database with,
//! and what `verify` checks the file against. It holds no data, only counts and checksums.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::error::BackupError;

/// The manifest format this binary writes and reads.
pub(crate) const FORMAT: u32 = 1;

/// `<backup>.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Manifest {
    /// The manifest format.
    pub format: u32,
    /// The backup file's name.
    pub file: String,
    /// When the snapshot was taken, RFC 3339 UTC.
    pub created_at: String,
    /// The database dumped.
    pub database: String,
    /// The newest applied migration version in the snapshot (`None`: no history).
    pub schema_version: Option<String>,
    /// Whether the counts and the dump come from one exported snapshot (always, unless the
    /// dump was read from stdin with no `--snapshot-file`).
    pub same_snapshot: bool,
    /// Rows of each table, `schema.table`, counted in the snapshot.
    pub tables: BTreeMap<String, i64>,
    /// SHA-256 of the encrypted file, lowercase hex.
    pub encrypted_sha256: String,
    /// Size of the encrypted file.
    pub encrypted_bytes: u64,
    /// Size of the dump (the plaintext), for `verify`.
    pub dump_bytes: u64,
    /// The recipients it was encrypted to (public keys).
    pub recipients: Vec<String>,
    /// The `app` version that wrote it.
    pub app_version: String,
}

impl Manifest {
    /// Reads and parses a manifest.
    pub(crate) fn read(path: &Path) -> Result<Self, BackupError> {
        let bytes = std::fs::read(path).map_err(|e| BackupError::io("cannot read", path, e))?;
        let manifest: Manifest =
            serde_json::from_slice(&bytes).map_err(|e| BackupError::Corrupt {
                file: path.to_owned(),
                reason: format!("the manifest is not the JSON `app backup` writes ({e})"),
            })?;
        if manifest.format != FORMAT {
            return Err(BackupError::Corrupt {
                file: path.to_owned(),
                reason: format!(
                    "manifest format {} is unknown to this app (it reads {FORMAT}); use a newer app",
                    manifest.format
                ),
            });
        }
        Ok(manifest)
    }

    /// Writes the manifest to `path` (a new file), synced to the disk.
    pub(crate) fn write_new(&self, path: &Path) -> Result<(), std::io::Error> {
        let mut text = serde_json::to_vec_pretty(self).expect("a manifest serializes");
        text.push(b'\n');
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)?;
        file.write_all(&text)?;
        file.sync_all()
    }
}
