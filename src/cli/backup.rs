//! `app backup`: encrypted `pg_dump` backups. `create` and `drill` talk to the database and so
//! load the settings (and the sealed secrets); `list`, `prune`, `verify` and `open` work on
//! the files alone, on a laptop as well as in a pod.

use std::io::IsTerminal;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context;

use super::exit::{ExitCode, coded};
use super::seal::load_identities;
use crate::backup::{self, BackupError, DumpSource, Entry, EntryState, Manifest, Policy, Snapshot};
use crate::config::Settings;
use crate::migrate::{IgnorePatterns, Migrations, Placeholders};
use crate::secrets::{Exposed, Passphrase, RecipientEntry, Recipients, SealedFile};

pub(super) const EXAMPLES: &str = "\
Examples:
  app backup create --dir /backups                     run pg_dump, encrypt to the sealed file's recipients
  app backup create --dir /backups --input /run/backup/dump --status-file /run/backup/status \\
      --snapshot-file /run/backup/snapshot              the CronJob: pg_dump in another container
  app backup list --dir /backups
  app backup prune --dir /backups --keep-daily 7 --keep-weekly 4 --dry-run
  app backup verify --dir /backups -i recovery.key     the newest complete backup
  app backup open /backups/backup-20261202T030000Z-v3.pgdump.age -i recovery.key \\
      | pg_restore --no-owner -d discbaboons_restore
  age -d -i recovery.key backup-....pgdump.age | pg_restore -d ...     stock tools work too

Files are standard age; plaintext never reaches a disk. See docs/backups.md.";

/// Options of `app backup`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The backup subcommand.
    #[command(subcommand)]
    pub command: BackupCommand,
}

impl Args {
    /// Whether the subcommand talks to the database (and so needs the settings).
    pub(super) fn needs_settings(&self) -> bool {
        matches!(
            self.command,
            BackupCommand::Create(_) | BackupCommand::Drill(_)
        )
    }
}

/// Every `app backup` subcommand.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum BackupCommand {
    /// Take a backup: a pg_dump stream encrypted with age, with a manifest beside it.
    Create(CreateArgs),
    /// Show every backup with its age, size, schema version, and whether it is complete.
    List(DirArg),
    /// Remove backups outside the retention policy (never the newest complete one).
    Prune(PruneArgs),
    /// Decrypt a backup in memory and check its checksum and that it is a whole pg_dump
    /// archive; writes no plaintext.
    Verify(ReadArgs),
    /// Decrypt a backup to stdout (a pipe into pg_restore) or a FIFO; never to a file on disk.
    Open(OpenArgs),
    /// Restore drill: stream the newest backup into a FIFO that pg_restore reads into a
    /// scratch database, then validate its migrations and compare its row counts.
    Drill(DrillArgs),
}

/// The backup directory.
#[derive(Debug, clap::Args)]
pub(crate) struct DirArg {
    /// The backup directory (the backups volume).
    #[arg(long, env = "BACKUP_DIR", value_name = "DIR")]
    pub dir: PathBuf,
}

/// The retention policy.
#[derive(Debug, clap::Args, Clone, Copy)]
pub(crate) struct PolicyArgs {
    /// Keep the newest backup of each of the last N days that have one.
    #[arg(long, env = "BACKUP_KEEP_DAILY", default_value_t = 7, value_name = "N")]
    pub keep_daily: u32,
    /// Keep the newest backup of each of the last M ISO weeks that have one.
    #[arg(
        long,
        env = "BACKUP_KEEP_WEEKLY",
        default_value_t = 4,
        value_name = "M"
    )]
    pub keep_weekly: u32,
}

/// Options of `app backup create`.
#[derive(Debug, clap::Args)]
pub(crate) struct CreateArgs {
    /// Where the backup goes.
    #[command(flatten)]
    pub dir: DirArg,
    /// Run this pg_dump (default, when no --input is given).
    #[arg(
        long,
        value_name = "PROGRAM",
        default_value = "pg_dump",
        conflicts_with = "input"
    )]
    pub pg_dump: PathBuf,
    /// Read the dump from here instead (`-`: stdin; or a FIFO a pg_dump container writes).
    #[arg(long, value_name = "PATH", requires = "status_file")]
    pub input: Option<PathBuf>,
    /// With --input: where the dumper writes its exit status (`echo $? > FILE`) when done.
    #[arg(long, value_name = "FILE", requires = "input")]
    pub status_file: Option<PathBuf>,
    /// With --input: write the exported snapshot's id here, for `pg_dump --snapshot=$(cat FILE)`,
    /// so that the dump and the manifest's row counts are one consistent view.
    #[arg(long, value_name = "FILE", requires = "input")]
    pub snapshot_file: Option<PathBuf>,
    /// How long to wait for the status file after the stream ended.
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = humantime::parse_duration)]
    pub status_timeout: Duration,
    /// Recipients instead of the sealed file's (`-r age1...`, `-R FILE`).
    #[command(flatten)]
    pub recipients: super::seal::RecipientArgs,
    /// Prune by the policy after a successful backup.
    #[arg(long)]
    pub prune: bool,
    /// The policy for --prune.
    #[command(flatten)]
    pub policy: PolicyArgs,
}

/// Options of `app backup prune`.
#[derive(Debug, clap::Args)]
pub(crate) struct PruneArgs {
    /// The backup directory.
    #[command(flatten)]
    pub dir: DirArg,
    /// The policy.
    #[command(flatten)]
    pub policy: PolicyArgs,
    /// Print what would be removed, remove nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// Which backup to read, and who decrypts.
#[derive(Debug, clap::Args)]
pub(crate) struct ReadArgs {
    /// The backup file (default: the newest complete backup in --dir).
    pub file: Option<PathBuf>,
    /// The backup directory, for the newest backup.
    #[arg(
        long,
        env = "BACKUP_DIR",
        value_name = "DIR",
        required_unless_present = "file"
    )]
    pub dir: Option<PathBuf>,
    /// Identity file (age or OpenSSH private key), or a directory of them. Repeatable.
    #[arg(short = 'i', long = "identity", value_name = "PATH", required = true)]
    pub identities: Vec<PathBuf>,
}

/// Options of `app backup open`.
#[derive(Debug, clap::Args)]
pub(crate) struct OpenArgs {
    /// Which backup and who decrypts.
    #[command(flatten)]
    pub read: ReadArgs,
    /// Write to this FIFO instead of stdout.
    #[arg(long, value_name = "FIFO")]
    pub output: Option<PathBuf>,
}

/// Options of `app backup drill`.
#[derive(Debug, clap::Args)]
pub(crate) struct DrillArgs {
    /// The backup directory.
    #[command(flatten)]
    pub dir: DirArg,
    /// Identity files or directories (default: sealed.identity_dir).
    #[arg(short = 'i', long = "identity", value_name = "PATH")]
    pub identities: Vec<PathBuf>,
    /// The FIFO pg_restore reads the dump from.
    #[arg(long, value_name = "FIFO")]
    pub fifo: PathBuf,
    /// Where the restoring container writes pg_restore's exit status (`echo $? > FILE`).
    #[arg(long, value_name = "FILE")]
    pub restore_status: PathBuf,
    /// The scratch database restored into (on the configured server).
    #[arg(long, value_name = "NAME")]
    pub database: String,
    /// How long to wait for pg_restore to open the FIFO and, later, for its status.
    #[arg(long, value_name = "DURATION", default_value = "10m", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
}

/// Runs a subcommand that needs no settings.
pub(super) fn run_standalone(args: Args) -> anyhow::Result<()> {
    match args.command {
        BackupCommand::List(a) => list(&a.dir),
        BackupCommand::Prune(a) => prune(&a.dir.dir, a.policy, a.dry_run),
        BackupCommand::Verify(a) => verify(a),
        BackupCommand::Open(a) => open(a),
        BackupCommand::Create(_) | BackupCommand::Drill(_) => {
            unreachable!("dispatched with settings")
        }
    }
}

/// Runs a subcommand that talks to the database.
pub(super) async fn run_configured(args: Args, settings: &Settings) -> anyhow::Result<()> {
    match args.command {
        BackupCommand::Create(a) => create(a, settings).await,
        BackupCommand::Drill(a) => drill(a, settings).await,
        other => run_standalone(Args { command: other }),
    }
}

async fn create(args: CreateArgs, settings: &Settings) -> anyhow::Result<()> {
    let entries = recipients(&args.recipients, settings)?;
    let keys: Vec<String> = entries.iter().map(|e| e.key.clone()).collect();
    let recipients = Recipients::from_entries(&entries)?;
    backup::check_dir(&args.dir.dir)?;
    let snapshot = Snapshot::take(&settings.database).await?;
    if let Some(path) = &args.snapshot_file {
        backup::write_snapshot_id(path, &snapshot.id)?;
    }
    let source = match (&args.input, &args.status_file) {
        (Some(input), Some(status_file)) => DumpSource::Stream {
            input: input.clone(),
            status_file: status_file.clone(),
            status_timeout: args.status_timeout,
            snapshot_shared: args.snapshot_file.is_some(),
        },
        _ => DumpSource::PgDump {
            program: args.pg_dump.clone(),
            env: settings.database.libpq_env()?,
        },
    };
    let dir = args.dir.dir.clone();
    let (created, snapshot) = tokio::task::spawn_blocking(move || {
        let created = backup::create(&dir, &recipients, keys, &snapshot, source);
        (created, snapshot)
    })
    .await
    .context("the backup task")?;
    snapshot.finish().await;
    let created = created?;
    let rows: i64 = created.manifest.tables.values().sum();
    tracing::info!(
        file = %created.path.display(),
        encrypted_bytes = created.manifest.encrypted_bytes,
        dump_bytes = created.manifest.dump_bytes,
        tables = created.manifest.tables.len(),
        rows,
        schema_version = created.manifest.schema_version.as_deref().unwrap_or("none"),
        "backup written"
    );
    println!("{}", created.path.display());
    if args.prune {
        prune(&args.dir.dir, args.policy, false)?;
    }
    Ok(())
}

/// The recipients of a new backup: the flags, else the sealed file's (the cluster key and the
/// offline recovery key).
fn recipients(
    args: &super::seal::RecipientArgs,
    settings: &Settings,
) -> anyhow::Result<Vec<RecipientEntry>> {
    if !args.recipients.is_empty() || !args.recipient_files.is_empty() {
        return super::seal::recipient_entries(args);
    }
    let file = &settings.sealed.file;
    if !file.exists() {
        return Err(coded(
            ExitCode::Usage,
            format!(
                "no recipients: the sealed file {} (sealed.file / APP_SEALED__FILE) does not \
                 exist; mount it, or give -r age1... / -R FILE",
                file.display()
            ),
        ));
    }
    let mut entries = SealedFile::read(file)?.recipients;
    if entries.is_empty() {
        return Err(coded(
            ExitCode::Usage,
            format!(
                "no recipients: the sealed file {} lists none; give -r age1... / -R FILE",
                file.display()
            ),
        ));
    }
    entries.dedup_by(|a, b| a.key == b.key);
    Ok(entries)
}

fn list(dir: &Path) -> anyhow::Result<()> {
    let entries = backup::list(dir)?;
    let now = SystemTime::now();
    let mut out = format!(
        "{:<44} {:>9} {:>10} {:>8}  STATE\n",
        "NAME", "AGE", "SIZE", "SCHEMA"
    );
    for e in &entries {
        let age = now
            .duration_since(SystemTime::from(e.name.time))
            .unwrap_or_default();
        out.push_str(&format!(
            "{:<44} {:>9} {:>10} {:>8}  {}\n",
            e.file_name,
            human_age(age),
            human_size(e.size),
            format!("v{}", e.name.version),
            e.state.describe()
        ));
    }
    let complete = entries
        .iter()
        .filter(|e| e.state == EntryState::Complete)
        .count();
    out.push_str(&format!(
        "{complete} complete, {} incomplete in {}\n",
        entries.len() - complete,
        dir.display()
    ));
    print!("{out}");
    Ok(())
}

fn prune(dir: &Path, policy: PolicyArgs, dry_run: bool) -> anyhow::Result<()> {
    let entries = backup::list(dir)?;
    let policy = Policy {
        keep_daily: policy.keep_daily,
        keep_weekly: policy.keep_weekly,
    };
    let plan = backup::prune_plan(&entries, policy, SystemTime::now());
    for (entry, reason) in &plan {
        if dry_run {
            println!("would remove {} ({reason})", entry.file_name);
        } else {
            backup::remove(entry)?;
            println!("removed {} ({reason})", entry.file_name);
        }
    }
    let kept = entries
        .iter()
        .filter(|e| e.state == EntryState::Complete)
        .filter(|e| !plan.iter().any(|(p, _)| p.file_name == e.file_name))
        .count();
    eprintln!(
        "{} {} file(s), kept {kept} complete backup(s) ({} daily, {} weekly)",
        if dry_run { "would remove" } else { "removed" },
        plan.len(),
        policy.keep_daily,
        policy.keep_weekly
    );
    Ok(())
}

/// The backup to read and its manifest (if it has one).
fn pick(args: &ReadArgs) -> anyhow::Result<(PathBuf, Option<Manifest>)> {
    match &args.file {
        Some(file) => {
            if !file.exists() {
                return Err(BackupError::NotFound {
                    reason: format!("{} does not exist", file.display()),
                }
                .into());
            }
            let manifest_path = PathBuf::from(format!("{}.json", file.display()));
            let manifest = if manifest_path.exists() {
                Some(Manifest::read(&manifest_path)?)
            } else {
                eprintln!(
                    "warning: {} has no manifest: its checksum cannot be checked (age still \
                     checks every chunk)",
                    file.display()
                );
                None
            };
            Ok((file.clone(), manifest))
        }
        None => {
            let dir = args.dir.as_ref().expect("clap requires --dir without FILE");
            let entry: Entry = backup::latest(dir)?;
            Ok((entry.path, entry.manifest))
        }
    }
}

fn verify(args: ReadArgs) -> anyhow::Result<()> {
    let (path, manifest) = pick(&args)?;
    let identities = load_identities(&args.identities, Passphrase::Prompt, Exposed::Warn)?;
    let opened = backup::verify(&path, manifest.as_ref(), &identities)?;
    println!(
        "{}: ok ({} dump bytes{})",
        path.display(),
        opened.dump_bytes,
        if opened.checksum_checked {
            ", checksum matches the manifest"
        } else {
            ", no manifest"
        }
    );
    Ok(())
}

fn open(args: OpenArgs) -> anyhow::Result<()> {
    let (path, manifest) = pick(&args.read)?;
    let identities = load_identities(&args.read.identities, Passphrase::Prompt, Exposed::Refuse)?;
    let opened = match &args.output {
        Some(fifo) => {
            let mut out = open_fifo(fifo, Duration::from_secs(600))?;
            backup::open_to(&path, manifest.as_ref(), &identities, &mut out)?
        }
        None => {
            check_stdout()?;
            let mut out = std::io::stdout().lock();
            backup::open_to(&path, manifest.as_ref(), &identities, &mut out)?
        }
    };
    eprintln!(
        "{}: {} dump bytes written",
        path.display(),
        opened.dump_bytes
    );
    Ok(())
}

/// Refuses a stdout where plaintext would be seen or stored: a terminal, or a file on a disk.
fn check_stdout() -> anyhow::Result<()> {
    let refuse = |why: &str| {
        Err(BackupError::Refused(format!(
            "{why}: pipe it into pg_restore (`app backup open FILE -i KEY | pg_restore -d DB`)"
        ))
        .into())
    };
    if std::io::stdout().is_terminal() {
        return refuse("not writing a database dump to a terminal");
    }
    let stdout = Path::new("/proc/self/fd/1");
    if let Ok(meta) = std::fs::metadata(stdout)
        && meta.file_type().is_file()
        && !crate::secrets::tmpfs::is_memory_backed(stdout).unwrap_or(false)
    {
        return refuse("stdout is a file on a disk, where the plaintext dump would stay");
    }
    Ok(())
}

/// Opens a FIFO for writing, waiting at most `timeout` for its reader to open it.
fn open_fifo(path: &Path, timeout: Duration) -> anyhow::Result<std::fs::File> {
    let meta = std::fs::metadata(path).map_err(|e| BackupError::io("cannot open", path, e))?;
    if !meta.file_type().is_fifo() {
        return Err(BackupError::Refused(format!(
            "{} is not a FIFO (create it with mkfifo): the plaintext dump goes only into a pipe",
            path.display()
        ))
        .into());
    }
    let deadline = Instant::now() + timeout;
    loop {
        match std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(path)
        {
            Ok(file) => {
                use std::os::fd::AsRawFd;
                let fd = file.as_raw_fd();
                // SAFETY: fcntl on a descriptor we own; back to blocking writes.
                unsafe {
                    let flags = libc::fcntl(fd, libc::F_GETFL);
                    libc::fcntl(fd, libc::F_SETFL, flags & !libc::O_NONBLOCK);
                }
                return Ok(file);
            }
            Err(e) if e.raw_os_error() == Some(libc::ENXIO) && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(e) if e.raw_os_error() == Some(libc::ENXIO) => {
                return Err(BackupError::Refused(format!(
                    "nobody opened {} for reading within {}s: is pg_restore running?",
                    path.display(),
                    timeout.as_secs()
                ))
                .into());
            }
            Err(e) => return Err(BackupError::io("cannot open", path, e).into()),
        }
    }
}

async fn drill(args: DrillArgs, settings: &Settings) -> anyhow::Result<()> {
    let entry = match backup::latest(&args.dir.dir) {
        Ok(entry) => entry,
        Err(err) => {
            // pg_restore waits on the FIFO: an empty stream ends it (and its Job) at once.
            let _ = open_fifo(&args.fifo, Duration::from_secs(30));
            return Err(err.into());
        }
    };
    let manifest = entry
        .manifest
        .clone()
        .expect("a complete entry has its manifest");
    let identity_paths = if args.identities.is_empty() {
        vec![settings.sealed.identity_dir.clone()]
    } else {
        args.identities.clone()
    };
    tracing::info!(file = %entry.path.display(), "restore drill: streaming the newest backup");
    let (path, fifo, timeout, status, for_task) = (
        entry.path.clone(),
        args.fifo.clone(),
        args.timeout,
        args.restore_status.clone(),
        manifest.clone(),
    );
    let streamed = tokio::task::spawn_blocking(move || -> anyhow::Result<u64> {
        // The FIFO first: from here on, any failure closes it, which ends pg_restore.
        let mut out = open_fifo(&fifo, timeout)?;
        // Loaded here: age's identities stay on the thread that uses them.
        let identities = load_identities(&identity_paths, Passphrase::Refuse, Exposed::Refuse)?;
        let opened = backup::open_to(&path, Some(&for_task), &identities, &mut out)?;
        drop(out);
        backup::wait_for_status(&status, timeout).map_err(|e| BackupError::DrillFailed {
            file: path.clone(),
            problems: vec![format!("pg_restore did not succeed: {e}")],
        })?;
        Ok(opened.dump_bytes)
    })
    .await
    .context("the restore task")??;

    let mut scratch = settings.database.clone();
    scratch.name = Some(args.database.clone());
    let mut conn = crate::db::connect(&scratch).await?;
    let mut problems = Vec::new();
    let migrations = Migrations::embedded()?;
    let ignore = IgnorePatterns::parse(&settings.migrate.ignore_migration_patterns)?;
    let placeholders = Placeholders {
        replacement: settings.migrate.placeholder_replacement,
        custom: settings.migrate.placeholders.clone(),
    };
    if let Err(e) = crate::migrate::validate(&mut conn, &migrations, &ignore, &placeholders).await {
        problems.push(format!(
            "`app migrate validate` fails on the restored database: {e}"
        ));
    }
    match crate::migrate::schema_status(&mut conn).await {
        Ok(status) if status.applied != manifest.schema_version => problems.push(format!(
            "the restored schema is at {}, the backup's manifest says {}",
            status.applied.as_deref().unwrap_or("none"),
            manifest.schema_version.as_deref().unwrap_or("none")
        )),
        Ok(_) => {}
        Err(e) => problems.push(format!("cannot read the restored schema's history: {e}")),
    }
    problems.extend(backup::compare_counts(&mut conn, &manifest.tables).await?);
    let _ = sqlx::Connection::close(conn).await;
    if !problems.is_empty() {
        return Err(BackupError::DrillFailed {
            file: entry.path,
            problems,
        }
        .into());
    }
    let rows: i64 = manifest.tables.values().sum();
    tracing::info!(
        file = %entry.path.display(),
        dump_bytes = streamed,
        tables = manifest.tables.len(),
        rows,
        "restore drill passed: migrations validate, row counts match the manifest"
    );
    println!(
        "restore drill passed: {} ({} tables, {rows} rows)",
        entry.file_name,
        manifest.tables.len()
    );
    Ok(())
}

fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

fn human_age(age: Duration) -> String {
    let secs = age.as_secs();
    match secs {
        0..3600 => format!("{}m", secs / 60),
        3600..86400 => format!("{}h{:02}m", secs / 3600, secs % 3600 / 60),
        _ => format!("{}d{:02}h", secs / 86400, secs % 86400 / 3600),
    }
}
