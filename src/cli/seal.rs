//! `app seal`: age-encrypted secrets in git, in place of kubeseal. Runs on a laptop, so it
//! loads no Settings; values never come from argv (a hidden prompt, stdin or a file).

mod args;
mod input;

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};

use anyhow::bail;

pub(super) use args::*;

use super::exit::{ExitCode, coded};
use crate::secrets::{
    self, ExpectedBy, Exposed, Identities, Passphrase, RecipientEntry, SealedError, SealedFile,
    identity, recipient, tmpfs, value,
};

pub(super) const EXAMPLES: &str = "\
Examples:
  app seal keygen -o cluster.key                       new identity; prints its age1... recipient
  app seal set deploy/overlays/prod/secrets.sealed.yaml JWT_SECRET --context discbaboons/prod \\
      -r age1cluster... -r age1recovery...             new file, value from a hidden prompt
  openssl rand -base64 32 | app seal set deploy/overlays/prod/secrets.sealed.yaml JWT_SECRET
  app seal list deploy/overlays/prod/secrets.sealed.yaml
  app seal verify deploy/overlays/prod/secrets.sealed.yaml -i ~/.config/discbaboons/recovery.key

The file is safe to commit; see docs/secrets.md. LOG_LEVEL sets the log level (default warn).";

/// Runs one `app seal` subcommand.
pub(super) fn run(args: Args) -> anyhow::Result<()> {
    match args.command {
        SealCommand::Keygen(a) => keygen(a),
        SealCommand::Set(a) => set(a),
        SealCommand::Rm(a) => rm(a),
        SealCommand::List(a) => list(&a.file),
        SealCommand::Verify(a) => verify(a),
        SealCommand::Rekey(a) => rekey(a),
        SealCommand::Get(a) => get(a),
        SealCommand::Open(a) => open(a),
    }
}

fn keygen(args: KeygenArgs) -> anyhow::Result<()> {
    let now = chrono::Utc::now();
    let new = identity::generate(&now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
    if let (Some(name), Some(ns)) = (&args.k8s_secret, &args.namespace) {
        if std::io::stdout().is_terminal() {
            bail!(coded(
                ExitCode::SealedRefused,
                "refusing to print a private key to a terminal: pipe it into \
                 `kubectl apply -f -`"
            ));
        }
        let data_key = args
            .secret_key
            .unwrap_or_else(|| format!("identity-{}", now.format("%Y%m%dT%H%M%SZ")));
        let manifest = identity::k8s_secret_manifest(name, ns, &data_key, &new)?;
        std::io::stdout().write_all(manifest.as_bytes())?;
        eprintln!(
            "recipient (public key) of the new identity: {}",
            new.recipient
        );
        return Ok(());
    }
    let path = args.output.expect("clap requires -o without --k8s-secret");
    create_private_parent(&path)?;
    identity::write_private(&path, &new.file_text)?;
    eprintln!(
        "wrote identity {} (mode 0600); its recipient:",
        path.display()
    );
    println!("{}", new.recipient);
    Ok(())
}

/// A key's directory that does not exist yet (`~/.config/discbaboons` on a new laptop) is
/// created private to its user, mode 0700, as `ssh-keygen` does with `~/.ssh`.
fn create_private_parent(path: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) else {
        return Ok(());
    };
    if !parent.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(parent)
            .map_err(|e| {
                anyhow::anyhow!("cannot create the directory {}: {e}", parent.display())
            })?;
        eprintln!("created directory {} (mode 0700)", parent.display());
    }
    Ok(())
}

fn set(args: SetArgs) -> anyhow::Result<()> {
    let mut file = if args.file.exists() {
        let file = SealedFile::read(&args.file)?;
        if let Some(context) = &args.context
            && *context != file.context
        {
            bail!(coded(
                ExitCode::Usage,
                format!(
                    "{} has context {}, not {context}; contexts never change (start a new file)",
                    args.file.display(),
                    file.context
                )
            ));
        }
        let given =
            !args.recipients.recipients.is_empty() || !args.recipients.recipient_files.is_empty();
        if given && file.recipients.is_empty() {
            // A file started by hand (version and context only) gets its recipients now.
            let mut file = file;
            file.recipients = recipient_entries(&args.recipients)?;
            file
        } else if given {
            bail!(coded(
                ExitCode::Usage,
                format!(
                    "{} already lists its recipients: change them with `app seal rekey` (it needs \
                     an identity that opens the file); a file nobody can open, such as the \
                     committed sample sealed to a discarded key, is not worth keeping: delete it \
                     and run this command again to start a new one",
                    args.file.display()
                )
            ));
        } else {
            file
        }
    } else {
        let context = args.context.as_deref().ok_or_else(|| {
            coded(
                ExitCode::Usage,
                format!(
                    "{} does not exist: a new file needs --context (e.g. discbaboons/prod) and \
                     recipients (-r / -R)",
                    args.file.display()
                ),
            )
        })?;
        SealedFile::new(context, recipient_entries(&args.recipients)?)?
    };
    let values = input::read_values(&args.keys, &args.from_file)?;
    secrets::set_values(&mut file, &values)?;
    file.write(&args.file)?;
    for (key, _) in &values {
        eprintln!(
            "sealed {key} into {} ({} recipients)",
            args.file.display(),
            file.recipients.len()
        );
    }
    Ok(())
}

fn rm(args: RmArgs) -> anyhow::Result<()> {
    let mut file = SealedFile::read(&args.file)?;
    for key in &args.keys {
        if file.values.remove(key).is_none() {
            return Err(SealedError::KeyMissing {
                file: args.file.clone(),
                key: key.clone(),
                present: file.key_list(),
            }
            .into());
        }
    }
    file.write(&args.file)?;
    eprintln!(
        "removed {} from {}",
        args.keys.join(", "),
        args.file.display()
    );
    Ok(())
}

fn list(path: &Path) -> anyhow::Result<()> {
    let file = SealedFile::read(path)?;
    let mut out = format!(
        "file: {}\ncontext: {}\nrecipients:\n",
        path.display(),
        file.context
    );
    for r in &file.recipients {
        let note = r
            .comment
            .as_deref()
            .map(|c| format!("  # {c}"))
            .unwrap_or_default();
        out.push_str(&format!("  {}{note}\n", r.key));
    }
    out.push_str("keys (headers unverified until `app seal verify`):\n");
    for (key, armored) in &file.values {
        let line = match value::inspect(armored) {
            Ok(view) => {
                let bound = match view.binding() {
                    Some(b) if b.context == file.context && b.key == *key => "bound".to_string(),
                    Some(b) => format!("BOUND TO {} {}", b.context, b.key),
                    None => "UNBOUND".to_string(),
                };
                format!(
                    "{} recipients ({}), {bound}",
                    view.recipients.len(),
                    view.recipients.join(", ")
                )
            }
            Err(e) => format!("MALFORMED: {e}"),
        };
        out.push_str(&format!("  {key}: {line}\n"));
    }
    print!("{out}");
    Ok(())
}

/// Refuses `file` unless it is of the context `--expect-context` names, when it names one.
fn expect_context(
    file: &SealedFile,
    path: &Path,
    expected: Option<&str>,
) -> Result<(), SealedError> {
    match expected {
        Some(expected) => secrets::check_context(file, path, expected, ExpectedBy::Flag),
        None => Ok(()),
    }
}

fn verify(args: VerifyArgs) -> anyhow::Result<()> {
    let file = SealedFile::read(&args.file)?;
    expect_context(&file, &args.file, args.expect_context.as_deref())?;
    let identities = load_identities(&args.identity.identities, Passphrase::Prompt, Exposed::Warn)?;
    let mut first_error = None;
    let results = secrets::open_all(&file, &args.file, &identities);
    let total = results.len();
    let mut failed = 0;
    for (key, result) in results {
        match result {
            Ok(_) => println!("{key}: ok"),
            Err(err) => {
                failed += 1;
                let code = ExitCode::from(&err);
                println!("{key}: FAILED (exit {code}): {}", chain(&err));
                first_error.get_or_insert(err);
            }
        }
    }
    match first_error {
        None => {
            eprintln!("{total} values of {} verified", args.file.display());
            Ok(())
        }
        Some(err) => Err(anyhow::Error::new(err)
            .context(format!("{failed} of {total} values failed verification"))),
    }
}

fn rekey(args: RekeyArgs) -> anyhow::Result<()> {
    let mut file = SealedFile::read(&args.file)?;
    let identities = load_identities(&args.identity.identities, Passphrase::Prompt, Exposed::Warn)?;
    let recipients = recipient_entries(&args.recipients)?;
    let count = recipients.len();
    secrets::rekey(&mut file, &args.file, &identities, recipients)?;
    file.write(&args.file)?;
    eprintln!(
        "re-encrypted {} values of {} to {count} recipients",
        file.values.len(),
        args.file.display()
    );
    Ok(())
}

fn get(args: GetArgs) -> anyhow::Result<()> {
    let file = SealedFile::read(&args.file)?;
    let identities = load_identities(&args.identity.identities, Passphrase::Prompt, Exposed::Warn)?;
    let value = secrets::open_one(&file, &args.file, &args.key, &identities)?;
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(value.expose().as_bytes())?;
    if stdout.is_terminal() {
        stdout.write_all(b"\n")?;
    }
    stdout.flush()?;
    Ok(())
}

fn open(args: OpenArgs) -> anyhow::Result<()> {
    let file = SealedFile::read(&args.file)?;
    expect_context(&file, &args.file, args.expect_context.as_deref())?;
    tmpfs::check_mode(args.mode)?;
    let identities = load_identities(
        &args.identity.identities,
        Passphrase::Prompt,
        Exposed::Refuse,
    )?;
    let keys: Vec<String> = if args.keys.is_empty() {
        file.values.keys().cloned().collect()
    } else {
        args.keys.clone()
    };
    let mut values = Vec::new();
    for key in keys {
        let value = secrets::open_one(&file, &args.file, &key, &identities)?;
        values.push((key, value));
    }
    tmpfs::write_into(&args.into, &values, args.mode)?;
    eprintln!("wrote {} values into {}", values.len(), args.into.display());
    Ok(())
}

/// The identities of `-i` (or a pod's mounted ones), their warnings logged. On a laptop
/// (`verify`, `rekey`, `get`, `backup verify`) a key others can read is a warning; what hands
/// out plaintext (`open`, `backup open`, `backup drill`) refuses it as the prod pods' loading
/// does.
pub(super) fn load_identities(
    paths: &[PathBuf],
    passphrase: Passphrase,
    exposed: Exposed,
) -> anyhow::Result<Identities> {
    let identities = Identities::load(paths, passphrase, exposed)?;
    for warning in &identities.warnings {
        tracing::warn!("{warning}");
    }
    Ok(identities)
}

/// The recipients given with -r and -R (at least one), duplicates dropped.
pub(super) fn recipient_entries(args: &RecipientArgs) -> anyhow::Result<Vec<RecipientEntry>> {
    let mut entries = Vec::new();
    for r in &args.recipients {
        entries.push(RecipientEntry::parse(r, None)?);
    }
    for path in &args.recipient_files {
        entries.extend(recipient::read_recipients_file(path)?);
    }
    if entries.is_empty() {
        bail!(coded(
            ExitCode::Usage,
            "no recipients: give -r age1... or -R FILE (usually two: the cluster's key and an \
             offline recovery key)"
        ));
    }
    entries.dedup_by(|a, b| a.key == b.key);
    Ok(entries)
}

/// The error and its causes on one line, as `{:#}` prints them.
fn chain(err: &SealedError) -> String {
    let mut text = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
