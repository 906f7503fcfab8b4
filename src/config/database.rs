//! Database settings and the connect options built from them.
//!
//! The connection is described either by a URL or by discrete fields; discrete fields that
//! are set override the URL's parts, so a URL without a password can sit in a ConfigMap while
//! the password comes from the sealed secrets. Options start from
//! `PgConnectOptions::new_without_pgpass()` and every field is set explicitly: nothing comes
//! from `.pgpass`, and the TLS mode is never sqlx's silent `prefer` unless asked for.

use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sqlx::postgres::{PgConnectOptions, PgSslMode};
use url::Url;

use super::{ConfigError, SecretString, redact};

/// How the connection uses TLS, with libpq's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum SslMode {
    /// Plaintext only (the default: the in-cluster PostgreSQL has no certificate).
    #[default]
    Disable,
    /// Plaintext, TLS if the server insists.
    Allow,
    /// TLS if the server offers it, else plaintext, silently. Avoid.
    Prefer,
    /// TLS, without checking the certificate.
    Require,
    /// TLS, the certificate signed by a trusted CA (`sslrootcert` or the web PKI roots).
    VerifyCa,
    /// TLS, the certificate signed by a trusted CA and naming the host.
    VerifyFull,
}

impl SslMode {
    fn to_sqlx(self) -> PgSslMode {
        match self {
            SslMode::Disable => PgSslMode::Disable,
            SslMode::Allow => PgSslMode::Allow,
            SslMode::Prefer => PgSslMode::Prefer,
            SslMode::Require => PgSslMode::Require,
            SslMode::VerifyCa => PgSslMode::VerifyCa,
            SslMode::VerifyFull => PgSslMode::VerifyFull,
        }
    }
}

impl FromStr for SslMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "disable" => SslMode::Disable,
            "allow" => SslMode::Allow,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            other => {
                return Err(format!(
                    "unknown sslmode `{other}`: use disable, allow, prefer, require, verify-ca or verify-full"
                ));
            }
        })
    }
}

/// The PostgreSQL connection (`[database]`, `APP_DATABASE__*`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseSettings {
    /// A `postgresql://` URL (`DATABASE_URL`); the fields below override its parts.
    #[serde(serialize_with = "redact")]
    pub url: Option<SecretString>,
    /// Host name or address (default `localhost`).
    pub host: Option<String>,
    /// Port (default 5432).
    pub port: Option<u16>,
    /// User (default `app_user`, as the seed).
    pub user: Option<String>,
    /// Password, used as is: no URL encoding.
    #[serde(serialize_with = "redact")]
    pub password: Option<SecretString>,
    /// Database name (default `discbaboons_db`, as the seed).
    pub name: Option<String>,
    /// TLS mode; a URL's `?sslmode=` applies unless this is set.
    pub sslmode: Option<SslMode>,
    /// CA certificate file for `verify-ca` / `verify-full` (default: the web PKI roots).
    pub sslrootcert: Option<PathBuf>,
    /// Most connections the server's pool opens.
    pub pool_max: u32,
    /// How long a request waits for a pooled connection before failing with 503.
    #[serde(with = "humantime_serde")]
    pub acquire_timeout: Duration,
    /// How long one connection attempt may take.
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Server-side `statement_timeout` for the API's queries (0 disables).
    #[serde(with = "humantime_serde")]
    pub statement_timeout: Duration,
}

impl Default for DatabaseSettings {
    fn default() -> Self {
        DatabaseSettings {
            url: None,
            host: None,
            port: None,
            user: None,
            password: None,
            name: None,
            sslmode: None,
            sslrootcert: None,
            pool_max: 10,
            acquire_timeout: Duration::from_secs(2),
            connect_timeout: Duration::from_secs(5),
            statement_timeout: Duration::from_secs(10),
        }
    }
}

/// The connection target after merging URL and fields: what logs and `/api/info` may show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Target {
    pub host: String,
    pub port: u16,
    pub user: String,
    /// Database name.
    pub name: String,
}

/// `user@host:port/name`: how logs and errors name the database (never the password).
impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}@{}:{}/{}", self.user, self.host, self.port, self.name)
    }
}

impl DatabaseSettings {
    /// Connect options with every field set from these settings (see the module docs).
    pub(crate) fn connect_options(&self) -> Result<PgConnectOptions, ConfigError> {
        let (target, sslmode, password) = self.resolved()?;
        let mut opts = PgConnectOptions::new_without_pgpass()
            .host(&target.host)
            .port(target.port)
            .username(&target.user)
            .database(&target.name)
            .ssl_mode(sslmode.to_sqlx())
            .application_name("app");
        if let Some(password) = &password {
            opts = opts.password(password);
        }
        if let Some(cert) = &self.sslrootcert {
            opts = opts.ssl_root_cert(cert);
        }
        Ok(opts)
    }

    /// libpq's environment for a PostgreSQL client tool run as a child (`pg_dump`): the same
    /// target, password and TLS mode as [`Self::connect_options`]. Goes into a child's
    /// environment only, never into argv (where `ps` would show the password).
    pub(crate) fn libpq_env(&self) -> Result<Vec<(String, String)>, ConfigError> {
        let (target, sslmode, password) = self.resolved()?;
        let sslmode = match sslmode {
            SslMode::Disable => "disable",
            SslMode::Allow => "allow",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        };
        let mut env = vec![
            ("PGHOST".to_owned(), target.host),
            ("PGPORT".to_owned(), target.port.to_string()),
            ("PGUSER".to_owned(), target.user),
            ("PGDATABASE".to_owned(), target.name),
            ("PGSSLMODE".to_owned(), sslmode.to_owned()),
            ("PGAPPNAME".to_owned(), "app-backup".to_owned()),
        ];
        if let Some(password) = password {
            env.push(("PGPASSWORD".to_owned(), password));
        }
        if let Some(cert) = &self.sslrootcert {
            env.push(("PGSSLROOTCERT".to_owned(), cert.display().to_string()));
        }
        Ok(env)
    }

    /// The target, TLS mode and password after merging the URL and the fields.
    fn resolved(&self) -> Result<(Target, SslMode, Option<String>), ConfigError> {
        let parsed = match &self.url {
            Some(url) => Some(parse_url(url.expose())?),
            None => None,
        };
        let target = self.target_from(parsed.as_ref());
        let sslmode = self
            .sslmode
            .or_else(|| parsed.as_ref().and_then(|p| p.sslmode))
            .unwrap_or_default();
        let password = self
            .password
            .as_ref()
            .map(|p| p.expose().to_owned())
            .or_else(|| parsed.as_ref().and_then(|p| p.password.clone()));
        Ok((target, sslmode, password))
    }

    /// Host, port, user and database name, for logs. Fails like [`Self::connect_options`].
    pub(crate) fn target(&self) -> Result<Target, ConfigError> {
        let parsed = match &self.url {
            Some(url) => Some(parse_url(url.expose())?),
            None => None,
        };
        Ok(self.target_from(parsed.as_ref()))
    }

    fn target_from(&self, parsed: Option<&ParsedUrl>) -> Target {
        Target {
            host: self
                .host
                .clone()
                .or_else(|| parsed.and_then(|p| p.host.clone()))
                .unwrap_or_else(|| "localhost".into()),
            port: self
                .port
                .or_else(|| parsed.and_then(|p| p.port))
                .unwrap_or(5432),
            user: self
                .user
                .clone()
                .or_else(|| parsed.and_then(|p| p.user.clone()))
                .unwrap_or_else(|| "app_user".into()),
            name: self
                .name
                .clone()
                .or_else(|| parsed.and_then(|p| p.name.clone()))
                .unwrap_or_else(|| "discbaboons_db".into()),
        }
    }
}

struct ParsedUrl {
    host: Option<String>,
    port: Option<u16>,
    user: Option<String>,
    password: Option<String>,
    name: Option<String>,
    sslmode: Option<SslMode>,
}

fn url_error(raw: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError::DatabaseUrl {
        reason: reason.into(),
        masked: mask_url(raw),
    }
}

fn parse_url(raw: &str) -> Result<ParsedUrl, ConfigError> {
    let url = Url::parse(raw).map_err(|e| url_error(raw, e.to_string()))?;
    if !matches!(url.scheme(), "postgres" | "postgresql") {
        return Err(url_error(
            raw,
            format!(
                "scheme `{}` is not postgres:// or postgresql://",
                url.scheme()
            ),
        ));
    }
    // An unencoded `/`, `?` or `#` in the password ends the authority early; the URL may
    // still parse, with the rest of the password and the real host pushed into the path.
    let tail = [
        url.path(),
        url.query().unwrap_or(""),
        url.fragment().unwrap_or(""),
    ];
    if tail.iter().any(|part| part.contains('@')) {
        return Err(url_error(
            raw,
            "an `@` appears after the host part, so the user information ended early",
        ));
    }
    let decode = |s: &str| -> Result<String, ConfigError> {
        percent_decode(s).ok_or_else(|| url_error(raw, "a percent-encoded part is not valid UTF-8"))
    };
    let mut sslmode = None;
    for (key, value) in url.query_pairs() {
        match &*key {
            "sslmode" => {
                sslmode = Some(value.parse::<SslMode>().map_err(|e| url_error(raw, e))?);
            }
            "application_name" | "connect_timeout" => {}
            other => {
                return Err(url_error(
                    raw,
                    format!("unsupported query parameter `{other}` (only sslmode is read)"),
                ));
            }
        }
    }
    let name = url.path().trim_start_matches('/');
    Ok(ParsedUrl {
        host: url
            .host_str()
            .filter(|h| !h.is_empty())
            .map(|h| h.trim_start_matches('[').trim_end_matches(']').to_owned()),
        port: url.port(),
        user: (!url.username().is_empty())
            .then(|| decode(url.username()))
            .transpose()?,
        password: url.password().map(decode).transpose()?,
        name: (!name.is_empty()).then(|| decode(name)).transpose()?,
        sslmode,
    })
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
        {
            out.push(h << 4 | l);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8(out).ok()
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

/// The URL with the password replaced by `****`, for messages. Works on strings that do not
/// parse as URLs: the user information is taken to end at the last `@`.
pub(crate) fn mask_url(raw: &str) -> String {
    let Some(scheme_end) = raw.find("://") else {
        return "<not a URL>".into();
    };
    let rest_start = scheme_end + 3;
    let rest = &raw[rest_start..];
    let Some(at) = rest.rfind('@') else {
        return raw.to_owned();
    };
    let userinfo = &rest[..at];
    let user = userinfo.split(':').next().unwrap_or_default();
    let masked = if userinfo.contains(':') {
        format!("{user}:****")
    } else {
        user.to_owned()
    };
    format!("{}{masked}{}", &raw[..rest_start], &rest[at..])
}

#[cfg(test)]
mod tests {
    use super::*;

    const NASTY: &str = "p@ss:w/rd+=?&%#x";

    fn with_url(url: &str) -> DatabaseSettings {
        DatabaseSettings {
            url: Some(SecretString::from(url)),
            ..DatabaseSettings::default()
        }
    }

    #[test]
    fn discrete_fields_need_no_encoding() {
        let settings = DatabaseSettings {
            password: Some(SecretString::from(NASTY)),
            host: Some("db".into()),
            ..DatabaseSettings::default()
        };
        let opts = settings.connect_options().unwrap();
        assert_eq!(opts.get_host(), "db");
        assert_eq!(opts.get_username(), "app_user");
        assert_eq!(opts.get_database(), Some("discbaboons_db"));
    }

    #[test]
    fn unencoded_password_in_url_is_explained_and_masked() {
        for url in [
            format!("postgresql://app_user:{NASTY}@db:5432/discbaboons_db"),
            "postgresql://app_user:12/34@db:5432/discbaboons_db".to_string(),
            "postgresql://app_user:ab?cd@db/discbaboons_db".to_string(),
        ] {
            let err = with_url(&url).connect_options().unwrap_err().to_string();
            assert!(err.contains("percent-encode"), "{err}");
            assert!(err.contains("app_user:****@"), "{err}");
            assert!(!err.contains("34@db") && !err.contains("ss:w/rd"), "{err}");
        }
    }

    #[test]
    fn encoded_password_in_url_works_and_fields_override() {
        let s = DatabaseSettings {
            name: Some("other".into()),
            ..with_url("postgresql://u:p%40ss@db.example:6543/x?sslmode=require")
        };
        let opts = s.connect_options().unwrap();
        assert_eq!(opts.get_host(), "db.example");
        assert_eq!(opts.get_port(), 6543);
        assert_eq!(opts.get_username(), "u");
        assert_eq!(opts.get_database(), Some("other"));
        assert!(matches!(opts.get_ssl_mode(), PgSslMode::Require));
    }

    #[test]
    fn mask_url_hides_only_the_password() {
        assert_eq!(
            mask_url("postgres://u:secret@h:1/d"),
            "postgres://u:****@h:1/d"
        );
        assert_eq!(mask_url("postgres://h/d"), "postgres://h/d");
        assert_eq!(mask_url("postgres://u:a@b@h/d"), "postgres://u:****@h/d");
    }
}
