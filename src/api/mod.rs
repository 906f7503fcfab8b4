//! The HTTP API, described by poem-openapi: one module per resource, one error type.
//!
//! The API types are unit structs so that the spec can be produced without a database
//! ([`service`], `app openapi`); handlers get the shared [`AppState`] as request data.

pub mod account;
pub mod auth;
pub mod error;
pub mod health;
pub mod info;
pub mod security;
mod strict;
pub mod users;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use std::collections::HashMap;

use poem::endpoint::BoxEndpoint;
use poem::http::Method;
use poem_openapi::registry::{MetaApi, Registry};
use poem_openapi::{OpenApi, OpenApiService, Tags};
use sqlx::PgPool;

use crate::auth::{JwtKeys, PasswordHasher};
use crate::build_info;

pub use error::{ApiError, ErrorBody};

/// Swagger UI's groups.
#[derive(Tags)]
pub enum ApiTags {
    /// Liveness and readiness probes for Kubernetes and Docker.
    Health,
    /// What this instance is and how it is configured (never secret values).
    Info,
    /// Public user directory: users with their profiles.
    Users,
    /// Registration and login.
    Auth,
    /// The signed-in user's own account; needs a bearer token from `/api/auth/login`.
    Account,
}

/// Everything the handlers share, built once by the server.
pub struct AppState {
    /// The lazy pool: requests fail fast with 503 while PostgreSQL is down.
    pub pool: PgPool,
    /// Token signing and verification.
    pub jwt: JwtKeys,
    /// Password hashing, bounded in concurrency.
    pub hasher: PasswordHasher,
    /// What `/ready` reports.
    pub readiness: Readiness,
    /// The body of `/api/info`, computed once from the settings.
    pub info: info::InfoBody,
}

/// Shared handle to the state, as request data.
pub type State = Arc<AppState>;

/// The readiness flags behind `/ready`.
#[derive(Debug, Default)]
pub struct Readiness {
    shutting_down: AtomicBool,
    schema_current: AtomicBool,
}

impl Readiness {
    /// Marks the start of shutdown: `/ready` answers 503 from now on.
    pub fn begin_shutdown(&self) {
        self.shutting_down.store(true, Ordering::SeqCst);
    }

    /// Whether shutdown has begun.
    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::SeqCst)
    }

    /// Records that the schema was found current (it stays so: migrations only move forward).
    pub fn set_schema_current(&self) {
        self.schema_current.store(true, Ordering::Relaxed);
    }

    /// Whether the schema has been found current.
    pub fn schema_known_current(&self) -> bool {
        self.schema_current.load(Ordering::Relaxed)
    }
}

/// Every API of the spec.
pub type Apis = (
    health::HealthApi,
    info::InfoApi,
    users::UsersApi,
    account::AccountApi,
    auth::AuthApi,
);

/// The APIs with each operation's error responses narrowed to those it can give.
///
/// Every handler fails with the one [`ApiError`], whose metadata lists every error status;
/// this wrapper keeps, per operation, only the statuses in [`error::statuses_of`], so that
/// Swagger UI does not promise a 409 from a GET.
pub struct Documented<T>(pub T);

impl<T: OpenApi> OpenApi for Documented<T> {
    fn meta() -> Vec<MetaApi> {
        let mut apis = T::meta();
        for op in apis
            .iter_mut()
            .flat_map(|api| api.paths.iter_mut())
            .flat_map(|path| path.operations.iter_mut())
        {
            if let Some(allowed) = op.operation_id.and_then(error::statuses_of) {
                op.responses
                    .responses
                    .retain(|r| r.status.is_none_or(|s| s < 400 || allowed.contains(&s)));
            }
        }
        apis
    }

    fn register(registry: &mut Registry) {
        T::register(registry);
        document_rules(registry);
    }

    fn add_routes(self, route_table: &mut HashMap<String, HashMap<Method, BoxEndpoint<'static>>>) {
        self.0.add_routes(route_table);
    }
}

/// A rule the handlers check on a request field, written into its schema.
struct Rule {
    min_length: Option<usize>,
    max_length: usize,
    pattern: Option<&'static str>,
    format: Option<&'static str>,
}

/// No control characters (`char::is_control`) except tab, CR and LF.
const NO_CONTROL: &str = r"^[^\u0000-\u0008\u000B\u000C\u000E-\u001F\u007F-\u009F]*$";

/// Writes the rules that the handlers check (a 422 `validation_failed` naming the field) into
/// the request schemas, so that clients, generators and API fuzzers see them. Only the spec
/// changes: a value breaking a rule still gets that 422, not poem-openapi's generic 400 that
/// a `validator` attribute would give. The numbers come from the domain types, so they
/// cannot drift.
fn document_rules(registry: &mut Registry) {
    use crate::domain::{Bio, Email, Location, Name, Password, PersonalityType, Username};
    use poem_openapi::registry::MetaSchemaRef;

    let text = |max_length| Rule {
        min_length: None,
        max_length,
        pattern: Some(NO_CONTROL),
        format: None,
    };
    let username = || Rule {
        min_length: Some(Username::MIN),
        max_length: Username::MAX,
        pattern: Some("^[A-Za-z0-9][A-Za-z0-9_.-]*$"),
        format: None,
    };
    let email = || Rule {
        min_length: None,
        max_length: Email::MAX,
        pattern: None,
        format: Some("email"),
    };
    let password = || Rule {
        min_length: Some(Password::MIN),
        max_length: Password::MAX,
        pattern: None,
        format: None,
    };
    let rules = [
        ("RegisterRequest", "username", username()),
        ("RegisterRequest", "email", email()),
        ("RegisterRequest", "password", password()),
        ("RegisterRequest", "name", text(Name::MAX)),
        ("RegisterRequest", "location", text(Location::MAX)),
        ("RegisterRequest", "bio", text(Bio::MAX)),
        (
            "RegisterRequest",
            "personality_type",
            text(PersonalityType::MAX),
        ),
        ("ProfilePatch", "email", email()),
        ("ProfilePatch", "name", text(Name::MAX)),
        ("ProfilePatch", "location", text(Location::MAX)),
        ("ProfilePatch", "bio", text(Bio::MAX)),
        (
            "ProfilePatch",
            "personality_type",
            text(PersonalityType::MAX),
        ),
        ("PasswordChange", "new_password", password()),
    ];
    for (schema, field, rule) in rules {
        let property = registry
            .schemas
            .get_mut(schema)
            .and_then(|s| s.properties.iter_mut().find(|(name, _)| *name == field));
        let Some((_, MetaSchemaRef::Inline(property))) = property else {
            panic!("the spec has no {schema}.{field} to document its rule on");
        };
        property.min_length = rule.min_length;
        property.max_length = Some(rule.max_length);
        property.pattern = rule.pattern.map(str::to_owned);
        property.format = rule.format.or(property.format);
    }
}

/// The OpenAPI service: routes plus the spec they are described by.
pub fn service() -> OpenApiService<Documented<Apis>, ()> {
    OpenApiService::new(
        Documented((
            health::HealthApi,
            info::InfoApi,
            users::UsersApi,
            account::AccountApi,
            auth::AuthApi,
        )),
        "discbaboons API",
        build_info::VERSION,
    )
    .description(
        "The discbaboons API: users and their profiles, registration, login and account \
         management. Every error is JSON: `{\"error\": \"<code>\", \"message\": \"...\"}`.\n\n\
         To call the account operations here: register, log in, then press **Authorize** and \
         paste the `token` from the login response.",
    )
    .license("MIT")
}

/// The spec as pretty JSON, as committed in `openapi/openapi.json`.
pub fn spec_json() -> String {
    let mut spec = service().spec();
    spec.push('\n');
    spec
}

/// The spec as YAML, as committed in `openapi/openapi.yaml`.
pub fn spec_yaml() -> String {
    service().spec_yaml()
}
