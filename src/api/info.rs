//! `/api/info`: the seed's configuration check, without its leaks.

use poem::web::Data;
use poem_openapi::payload::Json;
use poem_openapi::{Object, OpenApi};

use super::{ApiTags, State};
use crate::build_info;
use crate::config::{ConfigError, Settings};

/// The info endpoint.
#[derive(Default)]
pub(crate) struct InfoApi;

/// Where the database is; never the user's password.
#[derive(Debug, Clone, Object)]
pub(crate) struct DatabaseInfo {
    /// Host name or address; shown in dev, or when `api.info_details` is on.
    #[oai(skip_serializing_if_is_none)]
    pub host: Option<String>,
    /// Database name.
    pub name: String,
}

/// How this instance is configured.
#[derive(Debug, Clone, Object)]
pub(crate) struct InfoBody {
    /// `dev` or `prod`.
    pub environment: String,
    /// The log filter in effect, e.g. `info` or `app=debug,sqlx=warn`.
    pub log_level: String,
    /// The version of the binary.
    pub version: String,
    /// The git commit the binary was built from; shown in dev, or when `api.info_details`
    /// is on.
    #[oai(skip_serializing_if_is_none)]
    pub commit: Option<String>,
    /// The database this instance talks to.
    pub database: DatabaseInfo,
    /// Names (never values) of the secrets decrypted from the sealed file.
    pub secrets_loaded: Vec<String>,
    /// Whether Prometheus metrics are served on the metrics port.
    pub metrics_enabled: bool,
}

impl InfoBody {
    /// Computes the body once, at start-up.
    pub(crate) fn from_settings(settings: &Settings) -> Result<InfoBody, ConfigError> {
        let target = settings.database.target()?;
        let details = settings.api.info_details_for(settings.env);
        Ok(InfoBody {
            environment: settings.env.as_str().to_owned(),
            log_level: settings.log.level.clone(),
            version: build_info::VERSION.to_owned(),
            commit: details.then(|| build_info::COMMIT.to_owned()),
            database: DatabaseInfo {
                host: details.then_some(target.host),
                name: target.name,
            },
            secrets_loaded: settings.loaded_secrets.clone(),
            metrics_enabled: settings.metrics.enabled,
        })
    }
}

#[OpenApi(tag = "ApiTags::Info")]
impl InfoApi {
    /// This instance: environment, log level, version, database name, the names of the
    /// sealed secrets it loaded, and whether metrics are on; the commit and the database host
    /// too in dev (or when `api.info_details` is on).
    #[oai(path = "/api/info", method = "get", operation_id = "info")]
    async fn info(&self, state: Data<&State>) -> Json<InfoBody> {
        Json(state.info.clone())
    }
}
