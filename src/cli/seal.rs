//! `app seal`: age-encrypted secrets in git, in place of kubeseal. Runs on a laptop, so it
//! loads no Settings; values never come from argv (a hidden prompt, stdin or a file).

use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use zeroize::Zeroizing;

use crate::config::{LogFormat, SecretString};
use crate::exit::{ExitCode, HasExitCode, coded};
use crate::secrets::{
    self, Identities, Passphrase, RecipientEntry, SealedError, SealedFile, identity, recipient,
    tmpfs, value,
};

pub(super) const EXAMPLES: &str = "\
Examples:
  app seal keygen -o cluster.key                       new identity; prints its age1... recipient
  app seal set deploy/prod/secrets.yaml JWT_SECRET --context discbaboons/prod \\
      -r age1cluster... -r age1recovery...             new file, value from a hidden prompt
  openssl rand -base64 32 | app seal set deploy/prod/secrets.yaml JWT_SECRET
  app seal list deploy/prod/secrets.yaml
  app seal verify deploy/prod/secrets.yaml -i ~/.config/discbaboons/recovery.key

The file is safe to commit; see docs/secrets.md. LOG_LEVEL sets the log level (default warn).";

/// Options of `app seal`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The seal subcommand.
    #[command(subcommand)]
    pub command: SealCommand,
}

/// Every `app seal` subcommand.
#[derive(Debug, clap::Subcommand)]
pub enum SealCommand {
    /// Create an identity (private key) and print its recipient (public key).
    #[command(after_help = KEYGEN_EXAMPLES)]
    Keygen(KeygenArgs),
    /// Add or replace values; needs only the recipients (public keys).
    #[command(after_help = SET_EXAMPLES)]
    Set(SetArgs),
    /// Remove keys.
    #[command(after_help = "Examples:\n  app seal rm deploy/prod/secrets.yaml OLD_API_KEY")]
    Rm(RmArgs),
    /// Show the context, the recipients and the keys; no private key needed, no value shown.
    #[command(after_help = "Examples:\n  app seal list deploy/prod/secrets.yaml")]
    List(FileArg),
    /// Decrypt every value in memory and check its binding; prints no value.
    #[command(after_help = VERIFY_EXAMPLES)]
    Verify(VerifyArgs),
    /// Re-encrypt every value to a new set of recipients (key rotation).
    #[command(after_help = REKEY_EXAMPLES)]
    Rekey(RekeyArgs),
    /// Print one value (break-glass).
    #[command(after_help = GET_EXAMPLES)]
    Get(GetArgs),
    /// Write each value to DIR/KEY on tmpfs, for containers that read secrets from files.
    #[command(after_help = OPEN_EXAMPLES)]
    Open(OpenArgs),
}

const KEYGEN_EXAMPLES: &str = "\
Examples:
  app seal keygen -o ~/.config/discbaboons/recovery.key     offline recovery key (mode 0600)
  app seal keygen --k8s-secret app-age-identity --namespace discbaboons | kubectl apply -f -
  # rotation: add a second key to the same Secret, keeping the old one
  app seal keygen --k8s-secret app-age-identity --namespace discbaboons \\
    | kubectl patch secret app-age-identity -n discbaboons --type merge --patch-file /dev/stdin

The recipient is printed on stdout (with -o) or stderr (with --k8s-secret).";

const SET_EXAMPLES: &str = "\
Examples:
  app seal set secrets.yaml DATABASE_PASSWORD              hidden prompt (asked twice)
  printf %s \"$PW\" | app seal set secrets.yaml DATABASE_PASSWORD
  app seal set secrets.yaml --from-file JWT_SECRET=/dev/shm/jwt
  app seal set new.yaml JWT_SECRET --context discbaboons/dev -R recipients.txt

Stdin: one trailing newline is dropped. --from-file: the content as is.
Other keys' blocks stay byte-identical, so a git diff shows exactly which key changed.";

const VERIFY_EXAMPLES: &str = "\
Examples:
  app seal verify deploy/prod/secrets.yaml -i recovery.key
  app seal verify deploy/prod/secrets.yaml -i /etc/app/identity      every file in a directory

Exit codes: 20 malformed, 21 no identity, 22 no matching identity, 23 tampered,
24 bound to another key, 25 bound to another context.";

const REKEY_EXAMPLES: &str = "\
Examples:
  app seal rekey deploy/prod/secrets.yaml -i recovery.key -r age1newcluster... -r age1recovery...
  app seal rekey deploy/prod/secrets.yaml -i recovery.key -R deploy/prod/recipients.txt";

const GET_EXAMPLES: &str = "\
Examples:
  app seal get deploy/prod/secrets.yaml DATABASE_PASSWORD -i recovery.key
  age -d -i recovery.key <(yq .values.JWT_SECRET deploy/prod/secrets.yaml)   stock age works too";

const OPEN_EXAMPLES: &str = "\
Examples (an init container next to PostgreSQL, DIR an emptyDir with medium: Memory):
  app seal open /etc/app/sealed/secrets.yaml --into /run/pg-secrets -i /etc/app/identity \\
      POSTGRES_PASSWORD
  app seal open secrets.yaml --into /dev/shm/app -i recovery.key --mode 0440";

/// The sealed file argument.
#[derive(Debug, clap::Args)]
pub struct FileArg {
    /// The sealed secrets file.
    pub file: PathBuf,
}

/// Identity files or directories.
#[derive(Debug, clap::Args)]
pub struct IdentityArgs {
    /// Identity file (age or OpenSSH private key), or a directory of them. Repeatable.
    #[arg(short = 'i', long = "identity", value_name = "PATH", required = true)]
    pub identities: Vec<PathBuf>,
}

/// Recipients from the command line or files.
#[derive(Debug, clap::Args)]
pub struct RecipientArgs {
    /// A recipient: `age1...` or an SSH public key. Repeatable.
    #[arg(short = 'r', long = "recipient", value_name = "RECIPIENT")]
    pub recipients: Vec<String>,
    /// A file of recipients, one per line; a `# comment` line names the key below it.
    #[arg(short = 'R', long = "recipients-file", value_name = "PATH")]
    pub recipient_files: Vec<PathBuf>,
}

/// Options of `app seal keygen`.
#[derive(Debug, clap::Args)]
pub struct KeygenArgs {
    /// Write the identity to this new file (mode 0600).
    #[arg(
        short = 'o',
        long,
        required_unless_present = "k8s_secret",
        conflicts_with = "k8s_secret"
    )]
    pub output: Option<PathBuf>,
    /// Print a Kubernetes Secret of this name instead, for `kubectl apply -f -`.
    #[arg(long, requires = "namespace", value_name = "NAME")]
    pub k8s_secret: Option<String>,
    /// The Secret's namespace.
    #[arg(long, short = 'n', value_name = "NS")]
    pub namespace: Option<String>,
    /// The file name of the key in the Secret (default: identity-<UTC timestamp>).
    #[arg(long, requires = "k8s_secret", value_name = "NAME")]
    pub secret_key: Option<String>,
}

/// Options of `app seal set`.
#[derive(Debug, clap::Args)]
pub struct SetArgs {
    /// The sealed secrets file (created when absent, with --context and recipients).
    pub file: PathBuf,
    /// Keys whose values are read from a hidden prompt, or from stdin (one key only).
    pub keys: Vec<String>,
    /// `KEY=PATH`: the value of KEY is the content of PATH. Repeatable.
    #[arg(long, value_name = "KEY=PATH")]
    pub from_file: Vec<String>,
    /// The context of a new file, e.g. `discbaboons/prod`.
    #[arg(long)]
    pub context: Option<String>,
    /// Recipients of a new file.
    #[command(flatten)]
    pub recipients: RecipientArgs,
}

/// Options of `app seal rm`.
#[derive(Debug, clap::Args)]
pub struct RmArgs {
    /// The sealed secrets file.
    pub file: PathBuf,
    /// The keys to remove.
    #[arg(required = true)]
    pub keys: Vec<String>,
}

/// Options of `app seal verify`.
#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    /// The sealed secrets file.
    pub file: PathBuf,
    /// Who decrypts.
    #[command(flatten)]
    pub identity: IdentityArgs,
}

/// Options of `app seal rekey`.
#[derive(Debug, clap::Args)]
pub struct RekeyArgs {
    /// The sealed secrets file.
    pub file: PathBuf,
    /// An identity that can decrypt the values now.
    #[command(flatten)]
    pub identity: IdentityArgs,
    /// The new recipients (replacing the old ones).
    #[command(flatten)]
    pub recipients: RecipientArgs,
}

/// Options of `app seal get`.
#[derive(Debug, clap::Args)]
pub struct GetArgs {
    /// The sealed secrets file.
    pub file: PathBuf,
    /// The key to print.
    pub key: String,
    /// Who decrypts.
    #[command(flatten)]
    pub identity: IdentityArgs,
}

/// Options of `app seal open`.
#[derive(Debug, clap::Args)]
pub struct OpenArgs {
    /// The sealed secrets file.
    pub file: PathBuf,
    /// Only these keys (default: all).
    pub keys: Vec<String>,
    /// The directory to write into; must be on tmpfs.
    #[arg(long, value_name = "DIR")]
    pub into: PathBuf,
    /// File mode, in octal (0440 lets the pod's fsGroup read).
    #[arg(long, default_value = "0400", value_parser = parse_mode)]
    pub mode: u32,
    /// Who decrypts.
    #[command(flatten)]
    pub identity: IdentityArgs,
}

fn parse_mode(s: &str) -> Result<u32, String> {
    u32::from_str_radix(s.trim_start_matches("0o"), 8)
        .ok()
        .filter(|m| *m <= 0o777 && m & 0o400 != 0)
        .ok_or_else(|| "an octal mode the owner can read, such as 0400 or 0440".into())
}

/// Runs `app seal` with a stderr log of its own (`LOG_LEVEL`, default `warn`).
pub(super) fn main(args: Args) -> std::process::ExitCode {
    let level = std::env::var("LOG_LEVEL").unwrap_or_else(|_| "warn".into());
    let guard = match crate::telemetry::init(&level, LogFormat::Pretty, None) {
        Ok(guard) => guard,
        Err(err) => return super::fail(&err.into()),
    };
    let outcome = run(args);
    drop(guard);
    match outcome {
        Ok(()) => ExitCode::Ok.into(),
        Err(err) => super::fail(&err),
    }
}

/// Runs one `app seal` subcommand.
pub fn run(args: Args) -> anyhow::Result<()> {
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
    identity::write_private(&path, &new.file_text)?;
    eprintln!(
        "wrote identity {} (mode 0600); its recipient:",
        path.display()
    );
    println!("{}", new.recipient);
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
                    "{} already lists its recipients; change them with `app seal rekey`",
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
    let values = read_values(&args.keys, &args.from_file)?;
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

fn verify(args: VerifyArgs) -> anyhow::Result<()> {
    let file = SealedFile::read(&args.file)?;
    let identities = load_identities(&args.identity)?;
    let mut first_error = None;
    let results = secrets::open_all(&file, &args.file, &identities);
    let total = results.len();
    let mut failed = 0;
    for (key, result) in results {
        match result {
            Ok(_) => println!("{key}: ok"),
            Err(err) => {
                failed += 1;
                let code = err.exit_code();
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
    let identities = load_identities(&args.identity)?;
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
    let identities = load_identities(&args.identity)?;
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
    let identities = load_identities(&args.identity)?;
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

fn load_identities(args: &IdentityArgs) -> anyhow::Result<Identities> {
    let identities = Identities::load(&args.identities, Passphrase::Prompt)?;
    for warning in &identities.warnings {
        tracing::warn!("{warning}");
    }
    Ok(identities)
}

fn recipient_entries(args: &RecipientArgs) -> anyhow::Result<Vec<RecipientEntry>> {
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

/// Values for `set`: `--from-file` first, then the positional keys from a prompt or stdin.
fn read_values(
    keys: &[String],
    from_file: &[String],
) -> anyhow::Result<Vec<(String, SecretString)>> {
    let mut values = Vec::new();
    for spec in from_file {
        let (key, path) = spec.split_once('=').ok_or_else(|| {
            coded(
                ExitCode::Usage,
                format!("--from-file wants KEY=PATH, got `{spec}`"),
            )
        })?;
        let bytes = Zeroizing::new(
            std::fs::read(path)
                .with_context(|| format!("reading the value of {key} from {path}"))?,
        );
        values.push((key.to_owned(), text_value(key, bytes.to_vec())?));
    }
    let stdin = std::io::stdin();
    if !stdin.is_terminal() && keys.len() > 1 {
        bail!(coded(
            ExitCode::Usage,
            "stdin holds one value: give one KEY, and the others with --from-file KEY=PATH"
        ));
    }
    for key in keys {
        secrets::file::check_key_name(key)?;
        let value = if stdin.is_terminal() {
            prompt(key)?
        } else {
            let mut bytes = Zeroizing::new(Vec::new());
            stdin
                .lock()
                .read_to_end(&mut bytes)
                .context("reading the value from stdin")?;
            let mut bytes = bytes.to_vec();
            if bytes.ends_with(b"\n") {
                bytes.pop();
                if bytes.ends_with(b"\r") {
                    bytes.pop();
                }
            }
            text_value(key, bytes)?
        };
        values.push((key.clone(), value));
    }
    if values.is_empty() {
        bail!(coded(
            ExitCode::Usage,
            "nothing to set: name a KEY (value from a prompt or stdin) or --from-file KEY=PATH"
        ));
    }
    Ok(values)
}

fn prompt(key: &str) -> anyhow::Result<SecretString> {
    let first = Zeroizing::new(rpassword::prompt_password(format!("value of {key}: "))?);
    let again = Zeroizing::new(rpassword::prompt_password(format!("again, {key}: "))?);
    if *first != *again {
        bail!(coded(
            ExitCode::Usage,
            format!("the two values typed for {key} differ")
        ));
    }
    text_value(key, first.as_bytes().to_vec())
}

/// Values are UTF-8 text (settings are strings) and never empty (an empty one is a mistake).
fn text_value(key: &str, bytes: Vec<u8>) -> anyhow::Result<SecretString> {
    let bytes = Zeroizing::new(bytes);
    if bytes.is_empty() {
        bail!(coded(
            ExitCode::Usage,
            format!("the value of {key} is empty")
        ));
    }
    let text = std::str::from_utf8(&bytes).map_err(|_| {
        coded(
            ExitCode::Usage,
            format!("the value of {key} is not UTF-8 text"),
        )
    })?;
    Ok(SecretString::from(text))
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
