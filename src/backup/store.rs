//! The backup directory: what is in it (complete or not) and what a retention policy keeps.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use chrono::Datelike;

use super::error::BackupError;
use super::manifest::Manifest;
use super::name::{BackupName, MANIFEST, PARTIAL};

/// Incomplete files younger than this are left alone by `prune`: a backup may be running.
pub(crate) const STALE_AFTER: Duration = Duration::from_secs(6 * 3600);

/// Whether a backup can be restored from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum EntryState {
    /// The file and its manifest exist and agree.
    Complete,
    /// `*.partial`: being written, or left by a killed run.
    Partial,
    /// The file has no manifest (the run died between the two renames).
    NoManifest,
    /// The manifest does not describe the file.
    Mismatch(String),
    /// A manifest whose backup file is gone.
    Orphan,
}

impl EntryState {
    /// One word (or a few) for `list`.
    pub(crate) fn describe(&self) -> String {
        match self {
            EntryState::Complete => "complete".into(),
            EntryState::Partial => "INCOMPLETE (partial)".into(),
            EntryState::NoManifest => "INCOMPLETE (no manifest)".into(),
            EntryState::Mismatch(why) => format!("INCOMPLETE ({why})"),
            EntryState::Orphan => "INCOMPLETE (manifest without backup)".into(),
        }
    }
}

/// One backup (or leftover) in the directory.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    /// The file's name (the backup, the partial file, or the orphan manifest).
    pub file_name: String,
    /// Its path.
    pub path: PathBuf,
    /// Time and schema version from the name.
    pub name: BackupName,
    /// Whether it can be restored from.
    pub state: EntryState,
    /// Size on disk.
    pub size: u64,
    /// Last modification (for leftovers: how old they are).
    pub modified: SystemTime,
    /// The manifest, when complete.
    pub manifest: Option<Manifest>,
}

/// Every backup and leftover in `dir`, oldest first.
pub(crate) fn list(dir: &Path) -> Result<Vec<Entry>, BackupError> {
    let read = std::fs::read_dir(dir).map_err(|e| BackupError::NotFound {
        reason: format!(
            "cannot list the backup directory {} ({e}); pass --dir or BACKUP_DIR",
            dir.display()
        ),
    })?;
    let mut names = BTreeSet::new();
    for entry in read {
        let entry = entry.map_err(|e| BackupError::io("cannot list", dir, e))?;
        if let Some(name) = entry.file_name().to_str() {
            names.insert(name.to_owned());
        }
    }
    let mut entries = Vec::new();
    for file_name in &names {
        let path = dir.join(file_name);
        let (base, kind) = if let Some(base) = file_name.strip_suffix(PARTIAL) {
            let base = base.strip_suffix(MANIFEST).unwrap_or(base);
            if names.contains(base) {
                // A manifest being written beside its backup: the backup's entry covers it.
                continue;
            }
            (base, EntryState::Partial)
        } else if let Some(base) = file_name.strip_suffix(MANIFEST) {
            if names.contains(base) {
                continue;
            }
            (base, EntryState::Orphan)
        } else {
            (file_name.as_str(), EntryState::Complete)
        };
        let Some(name) = BackupName::parse(base) else {
            continue;
        };
        let meta =
            std::fs::metadata(&path).map_err(|e| BackupError::io("cannot stat", &path, e))?;
        let mut entry = Entry {
            file_name: file_name.clone(),
            path: path.clone(),
            name,
            state: kind,
            size: meta.len(),
            modified: meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
            manifest: None,
        };
        if entry.state == EntryState::Complete {
            let manifest_path = dir.join(format!("{file_name}{MANIFEST}"));
            if !manifest_path.exists() {
                entry.state = EntryState::NoManifest;
            } else {
                match Manifest::read(&manifest_path) {
                    Ok(m) if m.file != *file_name => {
                        entry.state =
                            EntryState::Mismatch(format!("the manifest is of {}", m.file));
                    }
                    Ok(m) if m.encrypted_bytes != entry.size => {
                        entry.state = EntryState::Mismatch(format!(
                            "{} bytes, the manifest says {}",
                            entry.size, m.encrypted_bytes
                        ));
                    }
                    Ok(m) => entry.manifest = Some(m),
                    Err(e) => entry.state = EntryState::Mismatch(e.to_string()),
                }
            }
        }
        entries.push(entry);
    }
    entries.sort_by(|a, b| (a.name.time, &a.file_name).cmp(&(b.name.time, &b.file_name)));
    Ok(entries)
}

/// How many backups `prune` keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Policy {
    /// The newest backup of each of the last N days that have one.
    pub keep_daily: u32,
    /// The newest backup of each of the last M ISO weeks that have one.
    pub keep_weekly: u32,
}

/// What `prune` removes from `entries` (as [`list`] returns them), with the reason, under
/// `policy`. The newest complete backup is always kept, whatever the policy; incomplete
/// leftovers go once they are older than [`STALE_AFTER`] at `now`.
pub(crate) fn prune_plan(
    entries: &[Entry],
    policy: Policy,
    now: SystemTime,
) -> Vec<(&Entry, String)> {
    let mut complete: Vec<&Entry> = entries
        .iter()
        .filter(|e| e.state == EntryState::Complete)
        .collect();
    complete.sort_by(|a, b| (b.name.time, &b.file_name).cmp(&(a.name.time, &a.file_name)));
    let mut keep = BTreeSet::new();
    if let Some(newest) = complete.first() {
        keep.insert(newest.file_name.clone());
    }
    let mut days = BTreeSet::new();
    let mut weeks = BTreeSet::new();
    for entry in &complete {
        let day = entry.name.time.date_naive();
        if days.len() < policy.keep_daily as usize && days.insert(day) {
            keep.insert(entry.file_name.clone());
        }
        let week = day.iso_week();
        let week = (week.year(), week.week());
        if weeks.len() < policy.keep_weekly as usize && weeks.insert(week) {
            keep.insert(entry.file_name.clone());
        }
    }
    let mut remove = Vec::new();
    for entry in entries {
        if entry.state == EntryState::Complete {
            if !keep.contains(&entry.file_name) {
                remove.push((
                    entry,
                    format!(
                        "outside the policy ({} daily, {} weekly)",
                        policy.keep_daily, policy.keep_weekly
                    ),
                ));
            }
        } else {
            let age = now.duration_since(entry.modified).unwrap_or_default();
            if age > STALE_AFTER {
                remove.push((
                    entry,
                    format!("{}, {}h old", entry.state.describe(), age.as_secs() / 3600),
                ));
            }
        }
    }
    remove
}

/// Removes an entry: the file, and its manifest if any.
pub(crate) fn remove(entry: &Entry) -> Result<(), BackupError> {
    std::fs::remove_file(&entry.path)
        .map_err(|e| BackupError::io("cannot remove", &entry.path, e))?;
    if entry.state != EntryState::Orphan && entry.state != EntryState::Partial {
        let manifest = PathBuf::from(format!("{}{MANIFEST}", entry.path.display()));
        match std::fs::remove_file(&manifest) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(BackupError::io("cannot remove", &manifest, e)),
        }
    }
    Ok(())
}

/// The newest complete backup in `dir`.
pub(crate) fn latest(dir: &Path) -> Result<Entry, BackupError> {
    let entries = list(dir)?;
    entries
        .into_iter()
        .rev()
        .find(|e| e.state == EntryState::Complete)
        .ok_or_else(|| BackupError::NotFound {
            reason: format!(
                "{} holds no complete backup (`app backup list --dir {}` shows what is there)",
                dir.display(),
                dir.display()
            ),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{DateTime, Utc};

    fn entry(time: &str) -> Entry {
        let time: DateTime<Utc> = DateTime::parse_from_rfc3339(time).unwrap().to_utc();
        let name = BackupName::new(time, Some("3"));
        Entry {
            file_name: name.file_name(),
            path: PathBuf::from(name.file_name()),
            name,
            state: EntryState::Complete,
            size: 1,
            modified: SystemTime::UNIX_EPOCH,
            manifest: None,
        }
    }

    fn kept(entries: &[Entry], policy: Policy) -> Vec<String> {
        let removed: Vec<String> = prune_plan(entries, policy, SystemTime::now())
            .into_iter()
            .map(|(e, _)| e.file_name.clone())
            .collect();
        entries
            .iter()
            .filter(|e| !removed.contains(&e.file_name))
            .map(|e| e.name.time.format("%m-%d %H").to_string())
            .collect()
    }

    #[test]
    fn daily_and_weekly_keep_the_newest_of_each() {
        // Two a day for 20 days, 2026-11-01 (a Sunday) to 2026-11-20.
        let mut entries = Vec::new();
        for day in 1..=20 {
            for hour in [3, 15] {
                entries.push(entry(&format!("2026-11-{day:02}T{hour:02}:00:00Z")));
            }
        }
        let keep = kept(
            &entries,
            Policy {
                keep_daily: 3,
                keep_weekly: 2,
            },
        );
        // Days 18, 19, 20 (newest of each); weeks: 16-20 (newest: 20th) and 9-15 (15th).
        assert_eq!(keep, ["11-15 15", "11-18 15", "11-19 15", "11-20 15"]);
        let keep = kept(
            &entries,
            Policy {
                keep_daily: 0,
                keep_weekly: 0,
            },
        );
        assert_eq!(keep, ["11-20 15"], "the newest one always stays");
    }

    #[test]
    fn incomplete_files_never_count_and_go_when_stale() {
        let mut entries = vec![entry("2026-11-01T03:00:00Z"), entry("2026-11-02T03:00:00Z")];
        entries[1].state = EntryState::Partial;
        let plan = prune_plan(
            &entries,
            Policy {
                keep_daily: 0,
                keep_weekly: 0,
            },
            SystemTime::now(),
        );
        let names: Vec<_> = plan.iter().map(|(e, _)| e.name.time.day()).collect();
        // The partial (stale: modified at the epoch) goes; the only complete one stays.
        assert_eq!(names, [2]);
    }
}
