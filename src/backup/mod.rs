//! Encrypted database backups: a `pg_dump` custom-format stream encrypted with age to the
//! sealed file's recipients (the cluster key and the offline recovery key), written to a
//! backup directory (a PVC in the cluster) with a manifest beside it; listed, pruned by a
//! retention policy, verified and opened for `pg_restore` without plaintext on a disk.
//!
//! Every backup file is a standard binary age file: `age -d -i recovery.key FILE | pg_restore`
//! restores one with nothing of ours. A backup is *complete* when its file and its manifest
//! both exist and agree on the size; anything else a crash or a full volume left behind
//! (`*.partial`, a file without manifest) is listed as incomplete and never restored from.

mod create;
mod error;
mod manifest;
mod name;
mod read;
mod snapshot;
mod store;

pub(crate) use create::{DumpSource, check_dir, create, wait_for_status, write_snapshot_id};
pub use error::BackupError;
pub(crate) use manifest::Manifest;
pub(crate) use read::{open_to, verify};
pub(crate) use snapshot::{Snapshot, compare_counts};
pub(crate) use store::{Entry, EntryState, Policy, latest, list, prune_plan, remove};

/// The first bytes of every `pg_dump` custom-format archive.
pub(crate) const PGDMP_MAGIC: &[u8; 5] = b"PGDMP";
