//! One typed [`Settings`], loaded once at start-up and passed by reference.
//!
//! Layers, lowest first: built-in defaults, an optional TOML file (`--config` / `APP_CONFIG`),
//! the universal variables `DATABASE_URL`, `PORT`, `LOG_LEVEL`, the `APP_`-prefixed
//! environment (`__` nests: `APP_DATABASE__HOST`), and last the values decrypted from the
//! sealed secrets file. Only this module looks at the environment, and only through the map
//! handed to [`load`]: library code gets `&Settings`.

mod database;
mod env;
mod error;
mod secret;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use figment::Figment;
use figment::providers::{Format, Serialized, Toml};
use ipnet::IpNet;
use serde::{Deserialize, Serialize};

pub(crate) use database::DatabaseSettings;
pub use database::SslMode;
pub(crate) use error::ConfigError;
pub use secret::{SecretString, redact};

/// The type of `log.format`, owned by the logging it configures.
pub use crate::telemetry::LogFormat;

/// Which deployment this is; chooses defaults such as the log format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Environment {
    /// A laptop or the Kind cluster: readable logs, a missing sealed file is fine.
    #[default]
    Dev,
    /// Production: JSON logs, sealed secrets and a strong JWT secret required.
    Prod,
}

impl Environment {
    /// `dev` or `prod`.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Environment::Dev => "dev",
            Environment::Prod => "prod",
        }
    }
}

/// Everything `app` can be configured with. See the README's configuration table.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// `dev` or `prod` (`APP_ENV`).
    pub env: Environment,
    /// The HTTP API listener.
    pub http: HttpSettings,
    /// Logging.
    pub log: LogSettings,
    /// The PostgreSQL connection.
    pub database: DatabaseSettings,
    /// JSON Web Tokens for the API.
    pub jwt: JwtSettings,
    /// Password hashing.
    #[serde(default)]
    pub auth: AuthSettings,
    /// What the API shows to whom.
    #[serde(default)]
    pub api: ApiSettings,
    /// Rate limits on login, register and password change.
    #[serde(default)]
    pub rate: RateSettings,
    /// The Prometheus metrics listener.
    pub metrics: MetricsSettings,
    /// Where the sealed secrets file and the age identities are mounted.
    pub sealed: SealedSettings,
    /// Schema migrations.
    pub migrate: MigrateSettings,
    /// Names (never values) of the sealed secrets that were loaded, for `/api/info`.
    #[serde(skip)]
    pub loaded_secrets: Vec<String>,
}

/// The HTTP API listener.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSettings {
    /// Address to listen on.
    pub host: IpAddr,
    /// Port to listen on (`PORT`, default 3000 as the seed).
    pub port: u16,
    /// Largest request body accepted, in bytes; larger gets 413.
    pub body_limit: usize,
    /// A request taking longer than this is answered 503.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// After SIGTERM: how long the listener keeps serving while readiness reports 503, so
    /// Kubernetes removes the pod from its endpoints before connections are refused.
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
    /// After the grace period: how long in-flight requests get to finish.
    #[serde(with = "humantime_serde")]
    pub shutdown_timeout: Duration,
    /// Base URL of a running server, for `app healthcheck` (default: this listener on loopback).
    pub healthcheck_url: Option<String>,
    /// A client has this long, from connecting (or from its first byte after an idle
    /// keep-alive pause), to send a whole request head; then its connection is closed.
    #[serde(with = "humantime_serde")]
    pub header_timeout: Duration,
    /// An idle keep-alive connection is closed after this long. Longer than the ingress's
    /// upstream keep-alive (ingress-nginx: 60 s), so the proxy always closes first.
    #[serde(with = "humantime_serde")]
    pub keep_alive_timeout: Duration,
    /// A response whose client reads nothing of it for this long is abandoned and its
    /// connection closed (slow readers).
    #[serde(with = "humantime_serde")]
    pub write_timeout: Duration,
    /// Open API connections at most. Beyond it a new connection is answered 503 (`/health`
    /// still 200) and closed; keep it below the file-descriptor limit.
    pub max_connections: usize,
    /// Also speak HTTP/2 without TLS (h2c, prior knowledge) on the API port. Off: HTTP/1.1
    /// only.
    pub h2c: bool,
    /// With `h2c`: concurrent streams allowed on one HTTP/2 connection.
    pub h2c_max_streams: u32,
}

/// Logging.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSettings {
    /// A tracing filter: `info`, or per target, `app=debug,sqlx=warn` (`LOG_LEVEL`).
    pub level: String,
    /// `pretty` or `json`; by default pretty in dev and json in prod.
    pub format: Option<LogFormat>,
    /// Also write daily-rotated log files into this directory.
    pub dir: Option<PathBuf>,
    /// Log one line per HTTP request.
    pub requests: bool,
    /// Also log successful probe requests (`/health`, `/ready`). Off by default: Kubernetes
    /// asks every few seconds, and those lines would drown the rest. Failed probes are
    /// always logged.
    pub probes: bool,
}

impl LogSettings {
    /// The configured format, or the environment's default.
    pub(crate) fn format_for(&self, env: Environment) -> LogFormat {
        self.format.unwrap_or(match env {
            Environment::Dev => LogFormat::Pretty,
            Environment::Prod => LogFormat::Json,
        })
    }
}

/// JSON Web Tokens for the API.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtSettings {
    /// HS256 signing secret (`JWT_SECRET` in the sealed file). Required in prod.
    #[serde(serialize_with = "redact")]
    pub secret: Option<SecretString>,
    /// A second HS256 key, accepted for verification only (`JWT_PREVIOUS_SECRET` in the
    /// sealed file): during a rotation, the key coming in and then the key going out, so
    /// that no token is refused while pods of both configurations serve.
    #[serde(default, serialize_with = "redact")]
    pub previous_secret: Option<SecretString>,
    /// When the previous key stops being accepted (RFC 3339, e.g. `2026-12-02T05:00:00Z`);
    /// none: for as long as it is configured.
    #[serde(default, deserialize_with = "rfc3339")]
    pub previous_until: Option<chrono::DateTime<chrono::Utc>>,
    /// Lifetime of an issued token.
    #[serde(with = "humantime_serde")]
    pub ttl: Duration,
    /// The `iss` claim written and required.
    pub issuer: String,
}

/// Password hashing: argon2id costs 19 MiB and tens of milliseconds per hash, so how many run
/// at once and how many may wait bound the memory and latency of logins, whatever clients do.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthSettings {
    /// Hashes running at once; `0` means one per CPU.
    pub hash_concurrency: usize,
    /// Hashes waiting for a turn; beyond this a request is answered 503 with `Retry-After`
    /// at once instead of queueing.
    pub hash_queue: usize,
}

impl Default for AuthSettings {
    fn default() -> Self {
        AuthSettings {
            hash_concurrency: 0,
            hash_queue: 64,
        }
    }
}

/// Rate limits on the operations that check a password: login, register, password change.
/// Each replica counts on its own.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateSettings {
    /// Attempts per minute from one client address (bursts up to this many); 0 is no limit.
    pub per_client_per_minute: u32,
    /// Attempts per minute on one account, from anywhere; 0 is no limit.
    pub per_account_per_minute: u32,
    /// Peers whose `X-Forwarded-For` names the client (the ingress): addresses or CIDR
    /// ranges, a list or one comma-separated string; from anyone else the header is ignored
    /// and the socket's address counts.
    #[serde(deserialize_with = "addresses_or_ranges")]
    pub trusted_proxies: Vec<IpNet>,
}

impl Default for RateSettings {
    fn default() -> Self {
        RateSettings {
            per_client_per_minute: 60,
            per_account_per_minute: 10,
            trusted_proxies: Vec::new(),
        }
    }
}

/// What the API shows to whom.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiSettings {
    /// Show every user's email in the public directory (`/api/users`,
    /// `/api/users/{username}`), as the seed did. Off by default: the owner sees theirs on
    /// `/api/users/me`.
    pub public_emails: bool,
    /// Show the database host and the commit on `/api/info`; by default in dev only.
    pub info_details: Option<bool>,
    /// A page of `/api/users` with more than this many users is a large page.
    pub large_page: u32,
    /// Large pages built and sent at once; more wait their turn (within
    /// `http.request_timeout`), so the memory and pool connections a burst of them takes
    /// stay bounded.
    pub large_page_concurrency: usize,
}

impl Default for ApiSettings {
    fn default() -> Self {
        ApiSettings {
            public_emails: false,
            info_details: None,
            large_page: 100,
            large_page_concurrency: 4,
        }
    }
}

impl ApiSettings {
    /// Whether `/api/info` shows the database host and the commit in this environment.
    pub fn info_details_for(&self, env: Environment) -> bool {
        self.info_details.unwrap_or(env == Environment::Dev)
    }
}

/// The Prometheus metrics listener.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsSettings {
    /// Serve `/metrics` on its own port.
    pub enabled: bool,
    /// Address to listen on.
    pub host: IpAddr,
    /// Port to listen on.
    pub port: u16,
}

/// Where the sealed secrets file and the age identities are mounted.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SealedSettings {
    /// The sealed secrets file (a ConfigMap in the pod). Optional in dev, required in prod.
    pub file: PathBuf,
    /// Every file in this directory is an age identity (a Secret volume in the pod).
    pub identity_dir: PathBuf,
    /// The context every sealed value must be bound to, e.g. `discbaboons/prod`: the
    /// deployment says where it is, the file does not. By default `discbaboons/` and `env`.
    #[serde(default)]
    pub context: Option<String>,
}

/// The application part of the default sealed context (`discbaboons/dev`, `discbaboons/prod`),
/// the contexts `docs/secrets.md` has `app seal set --context` write.
pub(crate) const CONTEXT_APP: &str = "discbaboons";

impl SealedSettings {
    /// The context values must be bound to: `sealed.context`, else `discbaboons/<env>`.
    pub(crate) fn context_for(&self, env: Environment) -> String {
        self.context
            .clone()
            .unwrap_or_else(|| format!("{CONTEXT_APP}/{}", env.as_str()))
    }
}

/// Schema migrations.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MigrateSettings {
    /// How long `migrate` waits for another migrator's lock before giving up.
    #[serde(with = "humantime_serde")]
    pub lock_timeout: Duration,
    /// Baseline a non-empty schema that has no history table, as Flyway's option of that name.
    pub baseline_on_migrate: bool,
    /// The version a baseline records.
    pub baseline_version: String,
    /// Apply a pending migration older than the newest applied one instead of refusing it
    /// (Flyway's outOfOrder).
    #[serde(default)]
    pub out_of_order: bool,
    /// Flyway's ignoreMigrationPatterns (`*:future`, `versioned:missing`, `1:missing`): a
    /// list, or one comma-separated string as Flyway's environment variable takes it.
    #[serde(
        default = "default_ignore_patterns",
        deserialize_with = "list_or_commas"
    )]
    pub ignore_migration_patterns: Vec<String>,
    /// Replace `${name}` in scripts (Flyway's placeholderReplacement).
    #[serde(default = "default_true")]
    pub placeholder_replacement: bool,
    /// Custom placeholder values, `${name}` -> value (Flyway's placeholders).
    #[serde(default)]
    pub placeholders: BTreeMap<String, String>,
    /// The login `migrate` connects as (`MIGRATE_DATABASE_USER` in the sealed file), so that
    /// the API's login needs no DDL; none: `database.user`.
    #[serde(default)]
    pub user: Option<String>,
    /// The password of `migrate.user` (`MIGRATE_DATABASE_PASSWORD` in the sealed file).
    #[serde(default, serialize_with = "redact")]
    pub password: Option<SecretString>,
    /// The NOLOGIN role `migrate` works as (`set role`), so that every object it creates is
    /// owned by that role whichever login of the pair ran it; none: the login itself.
    #[serde(default)]
    pub owner_role: Option<String>,
    /// The role `serve`'s logins belong to; `migrate` (re)grants it the API's privileges on
    /// every table and sequence, and the default privileges for tables to come.
    #[serde(default)]
    pub runtime_role: Option<String>,
}

impl Settings {
    /// The connection `migrate` uses: `database.*`, with `migrate.user` and
    /// `migrate.password` in place of the API's login when they are set.
    pub(crate) fn migrate_database(&self) -> DatabaseSettings {
        let mut database = self.database.clone();
        if let Some(user) = &self.migrate.user {
            database.user = Some(user.clone());
            database.password = self.migrate.password.clone();
        }
        database
    }
}

/// An optional RFC 3339 time, with an error that says what is expected.
fn rfc3339<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<chrono::DateTime<chrono::Utc>>, D::Error> {
    let Some(text) = Option::<String>::deserialize(d)? else {
        return Ok(None);
    };
    chrono::DateTime::parse_from_rfc3339(text.trim())
        .map(|t| Some(t.with_timezone(&chrono::Utc)))
        .map_err(|e| {
            serde::de::Error::custom(format!(
                "not an RFC 3339 time ({e}); write it like 2026-12-02T06:00:00Z"
            ))
        })
}

fn default_true() -> bool {
    true
}

fn default_ignore_patterns() -> Vec<String> {
    vec![crate::migrate::IgnorePatterns::DEFAULT.to_owned()]
}

/// Addresses (`10.0.0.7`, a range of one) and CIDR ranges (`10.244.0.0/16`), as
/// [`list_or_commas`] reads them.
fn addresses_or_ranges<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<IpNet>, D::Error> {
    list_or_commas(d)?
        .iter()
        .enumerate()
        .map(|(i, entry)| {
            entry
                .parse::<IpNet>()
                .or_else(|_| entry.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| {
                    // The message names the entry by its place: error messages never quote
                    // a value (src/config/error.rs).
                    serde::de::Error::custom(format!(
                        "entry {} is neither an address nor a CIDR range; write each like \
                         10.0.0.7 or 10.244.0.0/16, commas between them",
                        i + 1
                    ))
                })
        })
        .collect()
}

/// A list of strings, or one string split on commas (what an environment variable holds).
fn list_or_commas<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        List(Vec<String>),
        One(String),
    }
    Ok(match Raw::deserialize(d)? {
        Raw::List(list) => list,
        Raw::One(s) => s
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(str::to_owned)
            .collect(),
    })
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            env: Environment::Dev,
            http: HttpSettings {
                host: IpAddr::from([0, 0, 0, 0]),
                port: 3000,
                body_limit: 64 * 1024,
                request_timeout: Duration::from_secs(10),
                shutdown_grace: Duration::from_secs(5),
                shutdown_timeout: Duration::from_secs(20),
                healthcheck_url: None,
                header_timeout: Duration::from_secs(10),
                keep_alive_timeout: Duration::from_secs(75),
                write_timeout: Duration::from_secs(10),
                max_connections: 1024,
                h2c: false,
                h2c_max_streams: 100,
            },
            log: LogSettings {
                level: "info".into(),
                format: None,
                dir: None,
                requests: true,
                probes: false,
            },
            database: DatabaseSettings::default(),
            jwt: JwtSettings {
                secret: None,
                previous_secret: None,
                previous_until: None,
                ttl: Duration::from_secs(3600),
                issuer: "discbaboons".into(),
            },
            auth: AuthSettings::default(),
            api: ApiSettings::default(),
            rate: RateSettings::default(),
            metrics: MetricsSettings {
                enabled: true,
                host: IpAddr::from([0, 0, 0, 0]),
                port: 9090,
            },
            sealed: SealedSettings {
                file: "/etc/app/sealed/secrets.yaml".into(),
                identity_dir: "/etc/app/identity".into(),
                context: None,
            },
            migrate: MigrateSettings {
                lock_timeout: Duration::from_secs(120),
                baseline_on_migrate: false,
                baseline_version: "1".into(),
                out_of_order: false,
                ignore_migration_patterns: default_ignore_patterns(),
                placeholder_replacement: true,
                placeholders: BTreeMap::new(),
                user: None,
                password: None,
                owner_role: None,
                runtime_role: None,
            },
            loaded_secrets: Vec::new(),
        }
    }
}

/// Secret values decrypted from the sealed file, by key name (`DATABASE_PASSWORD`, ...).
#[derive(Debug, Default)]
pub(crate) struct SealedValues {
    /// Key name to value.
    pub values: BTreeMap<String, SecretString>,
}

/// Where a sealed key name lands in [`Settings`].
pub(crate) const SEALED_KEYS: &[(&str, &str)] = &[
    ("DATABASE_PASSWORD", "database.password"),
    ("DATABASE_URL", "database.url"),
    ("DATABASE_USER", "database.user"),
    ("JWT_PREVIOUS_SECRET", "jwt.previous_secret"),
    ("JWT_SECRET", "jwt.secret"),
    ("MIGRATE_DATABASE_PASSWORD", "migrate.password"),
    ("MIGRATE_DATABASE_USER", "migrate.user"),
];

/// Sealed keys meant for other containers of the pod (`app seal open` hands them over), so
/// finding them in the file is expected and not worth a warning.
pub(crate) const SEALED_FOR_OTHERS: &[&str] = &["POSTGRES_PASSWORD"];

/// Decrypts the sealed file named by the preliminary settings. Supplied by the caller so
/// that configuration does not depend on the secrets module.
pub(crate) type SealedLoader<'a> = &'a dyn Fn(&Settings) -> anyhow::Result<SealedValues>;

/// What [`load`] reads: the inputs, gathered by `main`.
pub(crate) struct Sources<'a> {
    /// The TOML file from `--config` or `APP_CONFIG`.
    pub file: Option<PathBuf>,
    /// A snapshot of the process environment.
    pub env: BTreeMap<String, String>,
    /// Decrypts the sealed secrets; `None` skips that layer.
    pub sealed: Option<SealedLoader<'a>>,
}

/// What loading produced, besides the settings: notes for the log once telemetry is up.
#[derive(Debug, Default)]
pub(crate) struct Loaded {
    pub settings: Settings,
    /// Things worth a warning (ignored variables, unknown sealed keys).
    pub warnings: Vec<String>,
}

/// Loads the settings from every layer, checks them, and fills environment-dependent defaults.
pub(crate) fn load(sources: &Sources<'_>) -> anyhow::Result<Loaded> {
    let mut warnings = Vec::new();
    let mut figment = Figment::from(Serialized::defaults(Settings::default()));
    if let Some(path) = &sources.file {
        if !path.is_file() {
            return Err(ConfigError::FileMissing(path.clone()).into());
        }
        figment = figment.merge(Toml::file_exact(path));
    }
    let env = env::EnvLayers::from_vars(&sources.env);
    warnings.extend(env.ignored.iter().map(|name| {
        format!("ignoring environment variable {name}: it names no setting (see `app config`)")
    }));
    warnings.extend(env.seed_names.iter().map(|(name, instead)| {
        format!(
            "ignoring environment variable {name}: it is the seed's name; this app reads {instead}"
        )
    }));
    figment = figment.merge(env.universal).merge(env.prefixed);
    let mut settings: Settings = extract(&figment)?;

    if let Some(loader) = sources.sealed {
        let sealed = loader(&settings)?;
        let mut layer = BTreeMap::new();
        for (key, value) in &sealed.values {
            match SEALED_KEYS.iter().find(|(name, _)| name == key) {
                Some((_, path)) => {
                    layer.insert(path.to_string(), value.clone());
                    settings.loaded_secrets.push(key.clone());
                }
                None if SEALED_FOR_OTHERS.contains(&key.as_str()) => {}
                None => warnings.push(format!(
                    "sealed key {key} maps to no setting and is ignored (known: {})",
                    SEALED_KEYS
                        .iter()
                        .map(|(k, _)| *k)
                        .collect::<Vec<_>>()
                        .join(", ")
                )),
            }
        }
        if !layer.is_empty() {
            let loaded = std::mem::take(&mut settings.loaded_secrets);
            figment = figment.merge(env::secret_layer(layer));
            settings = extract(&figment)?;
            settings.loaded_secrets = loaded;
        }
    }

    // `app config` shows the context in effect, whichever way it was chosen.
    settings.sealed.context = Some(settings.sealed.context_for(settings.env));
    settings.validate()?;
    Ok(Loaded { settings, warnings })
}

fn extract(figment: &Figment) -> Result<Settings, ConfigError> {
    figment
        .extract_lossy::<Settings>()
        .map_err(|e| ConfigError::from_figment(e, figment))
}

impl Settings {
    /// Checks what types alone cannot: the database options build, the log filter parses.
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        self.database.connect_options()?;
        if self.migrate.user.is_some() != self.migrate.password.is_some() {
            return Err(ConfigError::Invalid {
                key: "migrate.user".into(),
                reason: "migrate.user and migrate.password go together (the sealed \
                         MIGRATE_DATABASE_USER and MIGRATE_DATABASE_PASSWORD): set both, or \
                         neither to migrate as database.user"
                    .into(),
            });
        }
        crate::telemetry::parse_filter(&self.log.level)?;
        let at_least_one = [
            ("database.pool_max", self.database.pool_max as u64),
            ("http.max_connections", self.http.max_connections as u64),
            ("http.h2c_max_streams", u64::from(self.http.h2c_max_streams)),
            (
                "api.large_page_concurrency",
                self.api.large_page_concurrency as u64,
            ),
        ];
        for (key, value) in at_least_one {
            if value == 0 {
                return Err(ConfigError::Invalid {
                    key: key.into(),
                    reason: "must be at least 1".into(),
                });
            }
        }
        for (key, value) in [
            ("http.header_timeout", self.http.header_timeout),
            ("http.keep_alive_timeout", self.http.keep_alive_timeout),
            ("http.write_timeout", self.http.write_timeout),
        ] {
            if value.is_zero() {
                return Err(ConfigError::Invalid {
                    key: key.into(),
                    reason: "must be longer than 0s (a zero timeout would close every connection)"
                        .into(),
                });
            }
        }
        Ok(())
    }

    /// The effective configuration as TOML, every secret replaced by `<redacted>`.
    pub(crate) fn to_redacted_toml(&self) -> String {
        toml::to_string_pretty(self).expect("settings always serialize to TOML")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn load_env(pairs: &[(&str, &str)]) -> anyhow::Result<Settings> {
        load(&Sources {
            file: None,
            env: env(pairs),
            sealed: None,
        })
        .map(|l| l.settings)
    }

    #[test]
    fn defaults_match_the_seed() {
        let s = load_env(&[]).unwrap();
        assert_eq!(s.http.port, 3000);
        assert_eq!(s.metrics.port, 9090);
        assert_eq!(s.env, Environment::Dev);
        assert_eq!(s.log.format_for(s.env), LogFormat::Pretty);
    }

    #[test]
    fn universal_names_are_honoured_and_app_names_win() {
        let s = load_env(&[("PORT", "8080"), ("LOG_LEVEL", "debug")]).unwrap();
        assert_eq!(s.http.port, 8080);
        assert_eq!(s.log.level, "debug");
        let s = load_env(&[("PORT", "8080"), ("APP_HTTP__PORT", "9000")]).unwrap();
        assert_eq!(s.http.port, 9000);
    }

    #[test]
    fn prod_defaults_to_json_logs() {
        let s = load_env(&[("APP_ENV", "prod")]).unwrap();
        assert_eq!(s.log.format_for(s.env), LogFormat::Json);
    }

    #[test]
    fn env_secrets_are_taken_verbatim() {
        for pw in [
            "12345",
            "true",
            "[abc]",
            "{x=1}",
            "\"quoted\"",
            "a\\nb",
            "p@ss:/+=?&%#",
        ] {
            let s = load_env(&[("APP_DATABASE__PASSWORD", pw)]).unwrap();
            assert_eq!(
                s.database.password.as_ref().unwrap().expose(),
                pw,
                "password {pw:?} changed on the way in"
            );
        }
    }

    #[test]
    fn type_errors_name_the_key_but_not_the_value() {
        let err = load_env(&[("APP_HTTP__PORT", "not-a-port-s3cr3t")]).unwrap_err();
        let msg = format!("{err:#}");
        assert!(msg.contains("http.port"), "{msg}");
        assert!(msg.contains("APP_HTTP__PORT"), "{msg}");
        assert!(!msg.contains("s3cr3t"), "{msg}");
    }

    #[test]
    fn every_section_is_reachable_from_the_environment() {
        // The CI that proved this was needed: APP_RATE__* was ignored as "names no setting",
        // so the limits it meant to switch off stayed on.
        let s = load_env(&[
            ("APP_RATE__PER_CLIENT_PER_MINUTE", "0"),
            ("APP_RATE__PER_ACCOUNT_PER_MINUTE", "0"),
            ("APP_AUTH__HASH_QUEUE", "7"),
            ("APP_API__PUBLIC_EMAILS", "true"),
            ("APP_MIGRATE__OUT_OF_ORDER", "true"),
        ])
        .unwrap();
        assert_eq!(s.rate.per_client_per_minute, 0);
        assert_eq!(s.rate.per_account_per_minute, 0);
        assert_eq!(s.auth.hash_queue, 7);
        assert!(s.api.public_emails);
        assert!(s.migrate.out_of_order);
        let sections = super::env::sections();
        for section in [
            "env", "http", "log", "database", "jwt", "auth", "api", "rate",
        ] {
            assert!(
                sections.iter().any(|s| s == section),
                "{section} in {sections:?}"
            );
        }
    }

    #[test]
    fn trusted_proxies_are_addresses_or_ranges_from_a_comma_list() {
        // What the base ConfigMap sets: one environment variable, commas between entries.
        let s = load_env(&[(
            "APP_RATE__TRUSTED_PROXIES",
            "10.0.0.0/8, 192.168.0.0/16,10.1.2.3,fc00::/7",
        )])
        .unwrap();
        let shown: Vec<String> = s
            .rate
            .trusted_proxies
            .iter()
            .map(|n| n.to_string())
            .collect();
        assert_eq!(
            shown,
            ["10.0.0.0/8", "192.168.0.0/16", "10.1.2.3/32", "fc00::/7"]
        );
        // And `app config` prints what it read in a form it reads back.
        let toml = s.to_redacted_toml();
        assert!(toml.contains("\"10.0.0.0/8\""), "{toml}");
        let err =
            load_env(&[("APP_RATE__TRUSTED_PROXIES", "10.0.0.0/8,ingress-nginx")]).unwrap_err();
        let msg = format!("{err:#}");
        assert!(
            msg.contains("rate.trusted_proxies")
                && msg.contains("entry 2")
                && !msg.contains("ingress-nginx")
                && msg.contains("CIDR"),
            "{msg}"
        );
    }

    #[test]
    fn http_limits_have_sane_defaults_and_zero_is_refused_with_the_key() {
        let s = load_env(&[]).unwrap();
        assert!(!s.http.h2c, "h2c is off unless enabled");
        assert!(s.http.header_timeout < s.http.keep_alive_timeout);
        assert!(s.http.max_connections > 0 && s.api.large_page_concurrency > 0);
        for (var, key) in [
            ("APP_HTTP__HEADER_TIMEOUT", "http.header_timeout"),
            ("APP_HTTP__WRITE_TIMEOUT", "http.write_timeout"),
            ("APP_HTTP__MAX_CONNECTIONS", "http.max_connections"),
            (
                "APP_API__LARGE_PAGE_CONCURRENCY",
                "api.large_page_concurrency",
            ),
        ] {
            let value = if var.ends_with("TIMEOUT") { "0s" } else { "0" };
            let err = load_env(&[(var, value)]).unwrap_err();
            assert!(format!("{err:#}").contains(key), "{var}: {err:#}");
        }
        let s = load_env(&[
            ("APP_HTTP__H2C", "true"),
            ("APP_HTTP__H2C_MAX_STREAMS", "8"),
        ])
        .unwrap();
        assert!(s.http.h2c);
        assert_eq!(s.http.h2c_max_streams, 8);
    }

    #[test]
    fn unknown_nested_env_key_is_an_error_and_stray_prefix_is_ignored() {
        let err = load_env(&[("APP_DATABASE__HOSTT", "x")]).unwrap_err();
        assert!(format!("{err:#}").contains("database.hostt"), "{err:#}");
        let loaded = load(&Sources {
            file: None,
            env: env(&[("APP_SERVICE_HOST", "10.0.0.1")]),
            sealed: None,
        })
        .unwrap();
        assert!(loaded.warnings[0].contains("APP_SERVICE_HOST"));
    }

    #[test]
    fn the_seeds_variable_names_are_warnings_naming_ours() {
        let loaded = load(&Sources {
            file: None,
            env: env(&[("NODE_ENV", "production"), ("METRICS_PORT", "9100")]),
            sealed: None,
        })
        .unwrap();
        assert_eq!(
            loaded.settings.env,
            Environment::Dev,
            "NODE_ENV is not read"
        );
        assert_eq!(
            loaded.settings.metrics.port, 9090,
            "METRICS_PORT is not read"
        );
        let all = loaded.warnings.join("\n");
        assert!(all.contains("NODE_ENV") && all.contains("APP_ENV"), "{all}");
        assert!(
            all.contains("METRICS_PORT") && all.contains("APP_METRICS__PORT"),
            "{all}"
        );
        assert!(
            !all.contains("production") && !all.contains("9100"),
            "values stay out: {all}"
        );
    }

    #[test]
    fn sealed_values_override_everything_and_are_named() {
        let loader = |_: &Settings| -> anyhow::Result<SealedValues> {
            let mut values = BTreeMap::new();
            values.insert("JWT_SECRET".to_string(), SecretString::from("sealed-jwt"));
            values.insert("SURPRISE".to_string(), SecretString::from("x"));
            values.insert("POSTGRES_PASSWORD".to_string(), SecretString::from("pg"));
            Ok(SealedValues { values })
        };
        let loaded = load(&Sources {
            file: None,
            env: env(&[("APP_JWT__SECRET", "from-env")]),
            sealed: Some(&loader),
        })
        .unwrap();
        let s = loaded.settings;
        assert_eq!(s.jwt.secret.unwrap().expose(), "sealed-jwt");
        assert_eq!(s.loaded_secrets, vec!["JWT_SECRET".to_string()]);
        assert!(loaded.warnings.iter().any(|w| w.contains("SURPRISE")));
        assert!(
            !loaded
                .warnings
                .iter()
                .any(|w| w.contains("POSTGRES_PASSWORD"))
        );
    }

    #[test]
    fn the_previous_jwt_key_comes_sealed_and_its_window_from_the_environment() {
        let loader = |_: &Settings| -> anyhow::Result<SealedValues> {
            let mut values = BTreeMap::new();
            values.insert(
                "JWT_PREVIOUS_SECRET".to_string(),
                SecretString::from("old-jwt"),
            );
            Ok(SealedValues { values })
        };
        let loaded = load(&Sources {
            file: None,
            env: env(&[("APP_JWT__PREVIOUS_UNTIL", "2026-12-02T06:00:00+01:00")]),
            sealed: Some(&loader),
        })
        .unwrap();
        let jwt = &loaded.settings.jwt;
        assert_eq!(jwt.previous_secret.as_ref().unwrap().expose(), "old-jwt");
        assert_eq!(
            jwt.previous_until.unwrap().to_rfc3339(),
            "2026-12-02T05:00:00+00:00"
        );
        assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
        let err = load_env(&[("APP_JWT__PREVIOUS_UNTIL", "tomorrow")]).unwrap_err();
        let msg = format!("{err:#}");
        assert!(
            msg.contains("jwt.previous_until") && msg.contains("RFC 3339"),
            "{msg}"
        );
    }

    #[test]
    fn migrate_logs_in_as_its_own_login_when_both_halves_are_set() {
        let s = load_env(&[
            ("APP_DATABASE__USER", "api_a"),
            ("APP_DATABASE__PASSWORD", "api-pw"),
            ("APP_MIGRATE__USER", "mig_a"),
            ("APP_MIGRATE__PASSWORD", "mig-hunter5"),
            ("APP_MIGRATE__OWNER_ROLE", "owner"),
        ])
        .unwrap();
        let db = s.migrate_database();
        assert_eq!(db.user.as_deref(), Some("mig_a"));
        assert_eq!(db.password.unwrap().expose(), "mig-hunter5");
        assert_eq!(s.database.user.as_deref(), Some("api_a"));
        assert_eq!(s.migrate.owner_role.as_deref(), Some("owner"));
        assert!(!s.to_redacted_toml().contains("hunter5"));
        let unset = load_env(&[("APP_DATABASE__USER", "api_a")]).unwrap();
        assert_eq!(unset.migrate_database().user.as_deref(), Some("api_a"));
        let err = load_env(&[("APP_MIGRATE__USER", "mig_a")]).unwrap_err();
        assert!(format!("{err:#}").contains("migrate.password"), "{err:#}");
    }

    #[test]
    fn redacted_dump_hides_secrets() {
        let s = load_env(&[
            ("APP_DATABASE__PASSWORD", "hunter2"),
            ("APP_JWT__SECRET", "jwt-hunter3"),
            ("DATABASE_URL", "postgresql://u:hunter4@db/x"),
        ])
        .unwrap();
        let dump = s.to_redacted_toml();
        for secret in ["hunter2", "hunter3", "hunter4"] {
            assert!(!dump.contains(secret), "{dump}");
            assert!(!format!("{s:?}").contains(secret));
        }
        assert!(dump.contains("<redacted>"));
    }
}
