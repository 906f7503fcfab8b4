//! The environment layers.
//!
//! figment's own `Env` provider parses values as TOML-like literals: `"quoted"` loses its
//! quotes, `\n` becomes a newline, `[x]` becomes an array. A password must arrive exactly as
//! written, so every value here stays a raw string; numbers and booleans are converted when
//! the settings are extracted (`extract_lossy`).

use std::collections::BTreeMap;

use figment::value::{Dict, Map, Tag, Value};
use figment::{Error, Metadata, Profile, Provider};

use super::SecretString;

/// The sections of [`super::Settings`], read from the struct itself so that a section added
/// there is reachable from the environment without a second list to keep in step. An `APP_`
/// variable naming none of them is ignored with a warning (Kubernetes injects
/// `APP_SERVICE_HOST` and friends for a Service named `app`).
pub(super) fn sections() -> Vec<String> {
    match Value::serialize(super::Settings::default()) {
        Ok(Value::Dict(_, dict)) => dict.into_keys().collect(),
        _ => Vec::new(),
    }
}

/// Variables that are not settings although they carry the prefix.
const NOT_SETTINGS: &[&str] = &["APP_CONFIG"];

/// The universal names and where they land.
const UNIVERSAL: &[(&str, &str)] = &[
    ("DATABASE_URL", "database.url"),
    ("PORT", "http.port"),
    ("LOG_LEVEL", "log.level"),
];

/// The seed's variable names (a ConfigMap carried over from the Node.js deployment) and what
/// this app reads instead: each one set is a warning naming its replacement, never silence.
const SEED_NAMES: &[(&str, &str)] = &[
    ("NODE_ENV", "APP_ENV (dev or prod)"),
    ("ENABLE_METRICS", "APP_METRICS__ENABLED"),
    ("METRICS_PORT", "APP_METRICS__PORT"),
    (
        "REQUEST_TIMEOUT",
        "APP_HTTP__REQUEST_TIMEOUT (a duration such as 30s)",
    ),
];

/// The two environment layers, split from one snapshot of the environment.
pub(super) struct EnvLayers {
    /// `DATABASE_URL`, `PORT`, `LOG_LEVEL`.
    pub universal: RawLayer,
    /// `APP_*`.
    pub prefixed: RawLayer,
    /// `APP_*` variables that name no setting.
    pub ignored: Vec<String>,
    /// The seed's names that are set, each with the variable to use instead.
    pub seed_names: Vec<(String, &'static str)>,
}

impl EnvLayers {
    pub(super) fn from_vars(vars: &BTreeMap<String, String>) -> Self {
        let mut universal = RawLayer::new("environment variable");
        let mut prefixed = RawLayer::new("environment variable");
        let mut ignored = Vec::new();
        let sections = sections();
        let mut seed_names = Vec::new();
        for (name, value) in vars {
            if let Some((_, instead)) = SEED_NAMES.iter().find(|(n, _)| n == name) {
                seed_names.push((name.clone(), *instead));
            }
            if let Some((_, path)) = UNIVERSAL.iter().find(|(n, _)| n == name) {
                universal.insert(path, name, value);
            } else if let Some(rest) = name.strip_prefix("APP_") {
                if NOT_SETTINGS.contains(&name.as_str()) {
                    continue;
                }
                let path = rest.to_ascii_lowercase().replace("__", ".");
                let section = path.split('.').next().unwrap_or_default();
                if sections.iter().any(|s| s == section) {
                    prefixed.insert(&path, name, value);
                } else {
                    ignored.push(name.clone());
                }
            }
        }
        EnvLayers {
            universal,
            prefixed,
            ignored,
            seed_names,
        }
    }
}

/// The sealed secrets as the top layer.
pub(super) fn secret_layer(values: BTreeMap<String, SecretString>) -> RawLayer {
    let mut layer = RawLayer::new("sealed secret");
    for (path, value) in values {
        let key = path
            .rsplit_once('.')
            .map_or(path.as_str(), |(_, k)| k)
            .to_ascii_uppercase();
        layer.insert(&path, &key, value.expose());
    }
    layer
}

/// A provider of raw string values at dotted paths, remembering which variable set each one.
pub(super) struct RawLayer {
    kind: &'static str,
    dict: Dict,
    origins: Vec<(String, String)>,
}

impl RawLayer {
    fn new(kind: &'static str) -> Self {
        RawLayer {
            kind,
            dict: Dict::new(),
            origins: Vec::new(),
        }
    }

    fn insert(&mut self, path: &str, origin: &str, value: &str) {
        let mut parts: Vec<&str> = path.split('.').collect();
        let leaf = parts.pop().unwrap_or_default();
        let mut dict = &mut self.dict;
        for part in parts {
            let entry = dict
                .entry(part.to_owned())
                .or_insert_with(|| Value::from(Dict::new()));
            if !matches!(entry, Value::Dict(..)) {
                *entry = Value::from(Dict::new());
            }
            dict = match entry {
                Value::Dict(_, d) => d,
                _ => unreachable!("just made it a dict"),
            };
        }
        dict.insert(
            leaf.to_owned(),
            Value::String(Tag::Default, value.to_owned()),
        );
        self.origins.push((path.to_owned(), origin.to_owned()));
    }
}

impl Provider for RawLayer {
    fn metadata(&self) -> Metadata {
        let origins = self.origins.clone();
        Metadata::named(self.kind).interpolater(move |_: &Profile, keys: &[&str]| {
            let path = keys.join(".");
            origins
                .iter()
                .find(|(p, _)| *p == path)
                .map(|(_, origin)| origin.clone())
                .unwrap_or(path)
        })
    }

    fn data(&self) -> Result<Map<Profile, Dict>, Error> {
        Ok(Profile::Default.collect(self.dict.clone()))
    }
}
