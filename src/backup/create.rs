//! `app backup create`: the dump stream, encrypted with age as it arrives, into
//! `<name>.partial`; synced, renamed, and only then its manifest written. Plaintext exists
//! only in this process's buffers. Anything that goes wrong (the dumper fails, the stream is
//! not a dump, the volume fills up) removes the partial file; a process killed outright
//! leaves only a `.partial`, which `list` shows as incomplete and `prune` removes later.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use super::error::{BackupError, is_no_space};
use super::manifest::{self, Manifest};
use super::name::{BackupName, MANIFEST, PARTIAL};
use super::{PGDMP_MAGIC, Snapshot};
use crate::secrets::Recipients;

/// Where the dump comes from.
pub(crate) enum DumpSource {
    /// `pg_dump` run by us as a child process, on the exported snapshot.
    PgDump {
        /// The `pg_dump` program.
        program: PathBuf,
        /// Its connection environment (`PGHOST`, `PGPASSWORD`, ...).
        env: Vec<(String, String)>,
    },
    /// A stream another process writes (stdin or a FIFO shared with a `pg_dump` container),
    /// whose exit status that process writes to `status_file` when it is done.
    Stream {
        /// `-` for stdin, else a path (a FIFO).
        input: PathBuf,
        /// Where the dumper writes its exit status (`0` for success).
        status_file: PathBuf,
        /// How long to wait for the status after the stream ended.
        status_timeout: Duration,
        /// Whether the dumper was handed the snapshot's id (`--snapshot-file`).
        snapshot_shared: bool,
    },
}

/// A `pg_dump` we run, and the thread collecting its stderr.
type Dumper = (Child, std::thread::JoinHandle<String>);

/// What [`create`] wrote.
#[derive(Debug)]
pub(crate) struct Created {
    /// The backup file.
    pub path: PathBuf,
    /// Its manifest, as written beside it.
    pub manifest: Manifest,
}

/// Removes a file when dropped, unless disarmed: the partial backup of a failed run.
struct RemoveOnDrop(Option<PathBuf>);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        if let Some(path) = self.0.take() {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// A writer that hashes and counts what goes through it.
struct Hashing<W> {
    inner: W,
    sha: Sha256,
    bytes: u64,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.sha.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Takes one backup of `snapshot` from `source` into `dir`, encrypted to `recipients`
/// (`recipient_keys` are their public keys, for the manifest).
pub(crate) fn create(
    dir: &Path,
    recipients: &Recipients,
    recipient_keys: Vec<String>,
    snapshot: &Snapshot,
    source: DumpSource,
) -> Result<Created, BackupError> {
    check_dir(dir)?;
    let name = BackupName::new(snapshot.time, snapshot.schema_version.as_deref());
    let file_name = name.file_name();
    let path = dir.join(&file_name);
    let partial = dir.join(format!("{file_name}{PARTIAL}"));
    if path.exists() {
        return Err(BackupError::Refused(format!(
            "{} exists already (two backups in the same second?); run it again",
            path.display()
        )));
    }
    let same_snapshot;
    let (mut reader, mut child): (Box<dyn Read>, Option<Dumper>) = match &source {
        DumpSource::PgDump { program, env } => {
            same_snapshot = true;
            let mut cmd = Command::new(program);
            cmd.args(["--format=custom", "--no-password", "--snapshot"])
                .arg(&snapshot.id)
                .env_clear()
                // Only libpq's variables of our settings, and a PATH to find `pg_dump` on.
                .env(
                    "PATH",
                    std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into()),
                )
                .envs(env.iter().map(|(k, v)| (k, v)))
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            let mut spawned = cmd.spawn().map_err(|e| BackupError::DumpFailed {
                reason: format!(
                    "cannot run {} ({e}); install PostgreSQL's client tools or give --pg-dump PATH",
                    program.display()
                ),
            })?;
            let stdout = spawned.stdout.take().expect("piped");
            let mut stderr = spawned.stderr.take().expect("piped");
            let errors = std::thread::spawn(move || {
                let mut text = String::new();
                let _ = stderr.read_to_string(&mut text);
                text
            });
            (Box::new(stdout), Some((spawned, errors)))
        }
        DumpSource::Stream {
            input,
            snapshot_shared,
            ..
        } => {
            same_snapshot = *snapshot_shared;
            if input.as_os_str() == "-" {
                (Box::new(std::io::stdin().lock()), None)
            } else {
                let f = File::open(input).map_err(|e| BackupError::io("cannot read", input, e))?;
                (Box::new(f), None)
            }
        }
    };

    // Only now the partial file: whatever fails from here on drops the reader, which ends the
    // dumper (a closed pipe) instead of leaving it blocked on a FIFO nobody reads.
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&partial)
        .map_err(|e| write_error(dir, &partial, e, 0))?;
    let mut guard = RemoveOnDrop(Some(partial.clone()));
    let written = encrypt(&mut *reader, file, recipients, dir, &partial);
    drop(reader);
    // The dumper's verdict comes first: a dump cut short is reported as such, whatever the
    // stream looked like.
    let verdict = match (&source, child.take()) {
        (DumpSource::PgDump { program, .. }, Some((mut spawned, errors))) => {
            let status = spawned
                .wait()
                .map_err(|e| BackupError::io("cannot wait for", program, e))?;
            let text = errors.join().unwrap_or_default();
            if status.success() {
                Ok(())
            } else {
                Err(BackupError::DumpFailed {
                    reason: format!("pg_dump {status}: {}", last_lines(&text)),
                })
            }
        }
        (
            DumpSource::Stream {
                status_file,
                status_timeout,
                ..
            },
            _,
        ) => wait_for_status(status_file, *status_timeout),
        _ => Ok(()),
    };
    // Our own side failing (a full volume) explains a dumper killed by the closed pipe; else
    // the dumper's verdict explains a stream that ended early.
    let (encrypted_bytes, sha, dump_bytes, head) = match (verdict, written) {
        (_, Err(e @ (BackupError::NoSpace { .. } | BackupError::Io { .. }))) => return Err(e),
        (Err(e), _) | (Ok(()), Err(e)) => return Err(e),
        (Ok(()), Ok(w)) => w,
    };
    if head.as_slice() != PGDMP_MAGIC.as_slice() {
        return Err(BackupError::DumpFailed {
            reason: format!(
                "the stream ({dump_bytes} bytes) is not a pg_dump custom-format archive: run \
                 pg_dump with --format=custom"
            ),
        });
    }
    std::fs::rename(&partial, &path).map_err(|e| write_error(dir, &path, e, encrypted_bytes))?;
    guard.0 = Some(path.clone());

    let manifest = Manifest {
        format: manifest::FORMAT,
        file: file_name.clone(),
        created_at: snapshot
            .time
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        database: snapshot.database.clone(),
        schema_version: snapshot.schema_version.clone(),
        same_snapshot,
        tables: snapshot.tables.clone(),
        encrypted_sha256: sha,
        encrypted_bytes,
        dump_bytes,
        recipients: recipient_keys,
        app_version: crate::build_info::VERSION.to_owned(),
    };
    let manifest_path = dir.join(format!("{file_name}{MANIFEST}"));
    let manifest_partial = dir.join(format!("{file_name}{MANIFEST}{PARTIAL}"));
    let manifest_guard = RemoveOnDrop(Some(manifest_partial.clone()));
    manifest
        .write_new(&manifest_partial)
        .and_then(|()| std::fs::rename(&manifest_partial, &manifest_path))
        .map_err(|e| write_error(dir, &manifest_path, e, encrypted_bytes))?;
    drop(manifest_guard);
    // The renames are durable once the directory is synced.
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| BackupError::io("cannot sync", dir, e))?;
    guard.0 = None;
    Ok(Created { path, manifest })
}

/// Fails unless `dir` is a directory: checked before the snapshot is exported, so that no
/// dumper starts for a backup that cannot be written.
pub(crate) fn check_dir(dir: &Path) -> Result<(), BackupError> {
    let meta = std::fs::metadata(dir).map_err(|e| BackupError::NotFound {
        reason: format!(
            "the backup directory {} cannot be used ({e}): create it, or mount the backups \
             volume there",
            dir.display()
        ),
    })?;
    if !meta.is_dir() {
        return Err(BackupError::Refused(format!(
            "{} is not a directory",
            dir.display()
        )));
    }
    Ok(())
}

/// Encrypts `reader` into `file`: the encrypted size, its SHA-256, the dump's size and its
/// first five bytes.
fn encrypt(
    reader: &mut dyn Read,
    file: File,
    recipients: &Recipients,
    dir: &Path,
    partial: &Path,
) -> Result<(u64, String, u64, Vec<u8>), BackupError> {
    let encryptor = age::Encryptor::with_recipients(recipients.iter())
        .map_err(|e| BackupError::Refused(format!("cannot encrypt to the recipients: {e}")))?;
    let hashing = Hashing {
        inner: file,
        sha: Sha256::new(),
        bytes: 0,
    };
    let mut writer = encryptor
        .wrap_output(hashing)
        .map_err(|e| write_error(dir, partial, e, 0))?;
    let mut buf = vec![0u8; 256 * 1024];
    let mut head = Vec::with_capacity(PGDMP_MAGIC.len());
    let mut dump_bytes = 0u64;
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                return Err(BackupError::DumpFailed {
                    reason: format!("reading the dump failed after {dump_bytes} bytes: {e}"),
                });
            }
        };
        if head.len() < PGDMP_MAGIC.len() {
            let take = (PGDMP_MAGIC.len() - head.len()).min(n);
            head.extend_from_slice(&buf[..take]);
        }
        dump_bytes += n as u64;
        writer
            .write_all(&buf[..n])
            .map_err(|e| write_error(dir, partial, e, dump_bytes))?;
    }
    let mut hashing = writer
        .finish()
        .map_err(|e| write_error(dir, partial, e, dump_bytes))?;
    hashing
        .inner
        .flush()
        .and_then(|()| hashing.inner.sync_all())
        .map_err(|e| write_error(dir, partial, e, hashing.bytes))?;
    let sha = format!("{:x}", hashing.sha.finalize());
    Ok((hashing.bytes, sha, dump_bytes, head))
}

fn write_error(dir: &Path, path: &Path, err: std::io::Error, written: u64) -> BackupError {
    if is_no_space(&err) {
        BackupError::NoSpace {
            dir: dir.to_owned(),
            written,
        }
    } else {
        BackupError::io("cannot write", path, err)
    }
}

/// Waits for the dumper's exit status in `path`: `0` is success.
pub(crate) fn wait_for_status(path: &Path, timeout: Duration) -> Result<(), BackupError> {
    let deadline = Instant::now() + timeout;
    loop {
        match std::fs::read_to_string(path) {
            Ok(text) if text.ends_with('\n') => {
                let status = text.trim();
                return if status == "0" {
                    Ok(())
                } else {
                    Err(BackupError::DumpFailed {
                        reason: format!(
                            "the dumper exited with status {status} (its log says why; written \
                             to {})",
                            path.display()
                        ),
                    })
                };
            }
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(BackupError::io("cannot read", path, e)),
        }
        if Instant::now() > deadline {
            return Err(BackupError::DumpFailed {
                reason: format!(
                    "the stream ended but the dumper wrote no exit status to {} within {}s: \
                     it was killed, or does not write `echo $? > {}` after pg_dump",
                    path.display(),
                    timeout.as_secs(),
                    path.display()
                ),
            });
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The last few lines of a child's stderr, for an error message.
fn last_lines(text: &str) -> String {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let tail = &lines[lines.len().saturating_sub(5)..];
    if tail.is_empty() {
        "no message".to_owned()
    } else {
        tail.join(" / ")
    }
}

/// Writes the snapshot's id to `path` atomically, so that a dumper polling for it never reads
/// half of it.
pub(crate) fn write_snapshot_id(path: &Path, id: &str) -> Result<(), BackupError> {
    let tmp = PathBuf::from(format!("{}.tmp", path.display()));
    std::fs::write(&tmp, format!("{id}\n"))
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|e| BackupError::io("cannot write", path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Full;
    impl Write for Full {
        fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
            Err(std::io::Error::from_raw_os_error(libc::ENOSPC))
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_full_volume_is_its_own_error() {
        let mut w = Full;
        let err = w.write_all(b"x").unwrap_err();
        let e = write_error(Path::new("/backups"), Path::new("/backups/x"), err, 7);
        assert!(matches!(e, BackupError::NoSpace { written: 7, .. }), "{e}");
        assert!(e.to_string().contains("app backup prune"), "{e}");
    }

    #[test]
    fn the_status_file_decides() {
        let dir = tempfile::tempdir().unwrap();
        let status = dir.path().join("status");
        std::fs::write(&status, "0\n").unwrap();
        wait_for_status(&status, Duration::from_secs(1)).unwrap();
        std::fs::write(&status, "1\n").unwrap();
        let err = wait_for_status(&status, Duration::from_secs(1)).unwrap_err();
        assert!(err.to_string().contains("status 1"), "{err}");
        let err =
            wait_for_status(&dir.path().join("none"), Duration::from_millis(200)).unwrap_err();
        assert!(err.to_string().contains("no exit status"), "{err}");
    }
}
