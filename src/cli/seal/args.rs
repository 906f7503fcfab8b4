//! The command line of `app seal`: one clap `Args` per subcommand, each with its examples.

use std::path::PathBuf;

/// Options of `app seal`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The seal subcommand.
    #[command(subcommand)]
    pub command: SealCommand,
}

/// Every `app seal` subcommand.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum SealCommand {
    /// Create an identity (private key) and print its recipient (public key).
    #[command(after_help = KEYGEN_EXAMPLES)]
    Keygen(KeygenArgs),
    /// Add or replace values; needs only the recipients (public keys).
    #[command(after_help = SET_EXAMPLES)]
    Set(SetArgs),
    /// Remove keys.
    #[command(
        after_help = "Examples:\n  app seal rm deploy/overlays/prod/secrets.sealed.yaml OLD_API_KEY"
    )]
    Rm(RmArgs),
    /// Show the context, the recipients and the keys; no private key needed, no value shown.
    #[command(after_help = "Examples:\n  app seal list deploy/overlays/prod/secrets.sealed.yaml")]
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
  app seal verify deploy/overlays/prod/secrets.sealed.yaml -i recovery.key
  app seal verify deploy/overlays/prod/secrets.sealed.yaml -i /etc/app/identity      every file in a directory
  app seal verify deploy/overlays/prod/secrets.sealed.yaml -i recovery.key --expect-context discbaboons/prod

Exit codes: 20 malformed, 21 no identity, 22 no matching identity, 23 tampered,
24 bound to another key, 25 bound to another context.";

const REKEY_EXAMPLES: &str = "\
Examples:
  app seal rekey deploy/overlays/prod/secrets.sealed.yaml -i recovery.key -r age1newcluster... -r age1recovery...
  app seal rekey deploy/overlays/prod/secrets.sealed.yaml -i recovery.key -R recipients.txt";

const GET_EXAMPLES: &str = "\
Examples:
  app seal get deploy/overlays/prod/secrets.sealed.yaml DATABASE_PASSWORD -i recovery.key
  age -d -i recovery.key <(yq -r .values.JWT_SECRET deploy/overlays/prod/secrets.sealed.yaml)   stock age works too";

const OPEN_EXAMPLES: &str = "\
Examples (an init container next to PostgreSQL, DIR an emptyDir with medium: Memory):
  app seal open /etc/app/sealed/secrets.yaml --into /run/pg-secrets -i /etc/app/identity \\
      POSTGRES_PASSWORD
  app seal open secrets.yaml --into /dev/shm/app -i recovery.key --mode 0440
  app seal open /etc/app/sealed/secrets.yaml --into /run/pg-secrets -i /etc/app/identity \
      --expect-context discbaboons/prod POSTGRES_PASSWORD      another environment's file: 25";

/// The sealed file argument.
#[derive(Debug, clap::Args)]
pub(crate) struct FileArg {
    /// The sealed secrets file.
    pub file: PathBuf,
}

/// Identity files or directories.
#[derive(Debug, clap::Args)]
pub(crate) struct IdentityArgs {
    /// Identity file (age or OpenSSH private key), or a directory of them. Repeatable.
    #[arg(short = 'i', long = "identity", value_name = "PATH", required = true)]
    pub identities: Vec<PathBuf>,
}

/// Recipients from the command line or files.
#[derive(Debug, clap::Args)]
pub(crate) struct RecipientArgs {
    /// A recipient: `age1...` or an SSH public key. Repeatable.
    #[arg(short = 'r', long = "recipient", value_name = "RECIPIENT")]
    pub recipients: Vec<String>,
    /// A file of recipients, one per line; a `# comment` line names the key below it.
    #[arg(short = 'R', long = "recipients-file", value_name = "PATH")]
    pub recipient_files: Vec<PathBuf>,
}

/// Options of `app seal keygen`.
#[derive(Debug, clap::Args)]
pub(crate) struct KeygenArgs {
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
pub(crate) struct SetArgs {
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
pub(crate) struct RmArgs {
    /// The sealed secrets file.
    pub file: PathBuf,
    /// The keys to remove.
    #[arg(required = true)]
    pub keys: Vec<String>,
}

/// Options of `app seal verify`.
#[derive(Debug, clap::Args)]
pub(crate) struct VerifyArgs {
    /// The sealed secrets file.
    pub file: PathBuf,
    /// Refuse the file (exit 25) unless it is sealed for this context, e.g. discbaboons/prod.
    #[arg(long, value_name = "CONTEXT")]
    pub expect_context: Option<String>,
    /// Who decrypts.
    #[command(flatten)]
    pub identity: IdentityArgs,
}

/// Options of `app seal rekey`.
#[derive(Debug, clap::Args)]
pub(crate) struct RekeyArgs {
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
pub(crate) struct GetArgs {
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
pub(crate) struct OpenArgs {
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
    /// Refuse the file (exit 25) unless it is sealed for this context, as `sealed.context`
    /// does in the app's pods, e.g. discbaboons/prod. The postgres pod's `open-secrets` sets
    /// it from the app's ConfigMap, the same value the app's pods check.
    #[arg(long, value_name = "CONTEXT", env = "APP_SEALED__CONTEXT")]
    pub expect_context: Option<String>,
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
