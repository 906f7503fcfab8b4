//! The spec as poem-openapi derives it from the route modules, and what this crate adds to it.
//!
//! The derive gets the paths, bodies and doc comments right, but two things only the crate
//! knows: which error statuses each operation can really answer with (every handler fails
//! with the one [`ApiError`], whose metadata lists them all), and the rules the handlers
//! check on request fields (lengths, patterns, formats from the domain types). [`Documented`]
//! writes both in after the derive, so that Swagger UI, generated clients and API fuzzers
//! see them. [`Apis`] is the one list of the API types: the server routes it and reads its
//! path templates from it, and `app openapi` prints what [`service`] describes.

use std::collections::HashMap;

use poem::endpoint::BoxEndpoint;
use poem::http::Method;
use poem_openapi::payload::Json;
use poem_openapi::registry::{MetaApi, MetaResponses, Registry};
use poem_openapi::{ApiResponse, LicenseObject, OpenApi, OpenApiService};

use super::{ApiError, ErrorBody, account, auth, health, info, users};
use crate::build_info;

/// Every API of the spec, in the order the spec lists their paths.
pub(crate) type Apis = (
    health::HealthApi,
    info::InfoApi,
    users::UsersApi,
    account::AccountApi,
    auth::AuthApi,
);

/// The APIs with each operation's error responses narrowed to those it can give.
///
/// Every handler fails with the one [`ApiError`], whose metadata lists every error status;
/// this wrapper keeps, per operation, only the statuses in [`statuses_of`], so that
/// Swagger UI does not promise a 409 from a GET.
pub(crate) struct Documented<T>(pub T);

impl<T: OpenApi> OpenApi for Documented<T> {
    fn meta() -> Vec<MetaApi> {
        let mut apis = T::meta();
        for op in apis
            .iter_mut()
            .flat_map(|api| api.paths.iter_mut())
            .flat_map(|path| path.operations.iter_mut())
        {
            if let Some(allowed) = op.operation_id.and_then(statuses_of) {
                op.responses
                    .responses
                    .retain(|r| r.status.is_none_or(|s| s < 400 || allowed.contains(&s)));
            }
            if op.operation_id.is_some_and(|id| HASHING.contains(&id)) {
                document_overload(&mut op.responses);
            }
            // A public operation says so: one empty requirement is OpenAPI's "no security",
            // where no `security` at all leaves a reader (and linters) guessing.
            if op.security.is_empty() {
                op.security.push(HashMap::new());
            }
        }
        apis
    }

    fn register(registry: &mut Registry) {
        T::register(registry);
        document_rules(registry);
        document_nullable_refs(registry);
    }

    fn add_routes(self, route_table: &mut HashMap<String, HashMap<Method, BoxEndpoint<'static>>>) {
        self.0.add_routes(route_table);
    }
}

/// An optional object field is `allOf: [$ref, {nullable}]` with `nullable` beside it, and
/// OpenAPI 3.0 ignores `nullable` without a `type`: give it `type: object` and drop the
/// inner `{nullable}`, so that the field reads "this object, or null" to every tool.
fn document_nullable_refs(registry: &mut Registry) {
    use poem_openapi::registry::MetaSchemaRef;

    for schema in registry.schemas.values_mut() {
        for (_, property) in &mut schema.properties {
            let MetaSchemaRef::Inline(inline) = property else {
                continue;
            };
            if !inline.nullable || !inline.ty.is_empty() || inline.all_of.is_empty() {
                continue;
            }
            inline.ty = "object";
            inline.all_of.retain(|part| {
                !matches!(part, MetaSchemaRef::Inline(s) if s.nullable && s.ty.is_empty()
                    && s.all_of.is_empty() && s.properties.is_empty())
            });
        }
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

/// The statuses every operation may answer with, for the spec. Each carries [`ErrorBody`].
/// Never built: it only lends its metadata to [`ApiError`].
#[derive(ApiResponse)]
#[allow(dead_code)]
enum ErrorStatuses {
    /// Malformed request: invalid JSON, a wrong type, a bad parameter (`invalid_json`,
    /// `invalid_parameter`).
    #[oai(status = 400)]
    BadRequest(Json<ErrorBody>),
    /// Missing, invalid, expired or revoked token; or wrong login (`unauthorized`,
    /// `invalid_credentials`).
    #[oai(status = 401)]
    Unauthorized(Json<ErrorBody>),
    /// The current password given to confirm a change is wrong (`wrong_password`).
    #[oai(status = 403)]
    Forbidden(Json<ErrorBody>),
    /// The user does not exist (`not_found`).
    #[oai(status = 404)]
    NotFound(Json<ErrorBody>),
    /// The username or email is taken (`username_taken`, `email_taken`).
    #[oai(status = 409)]
    Conflict(Json<ErrorBody>),
    /// The body is larger than `http.body_limit` (`payload_too_large`).
    #[oai(status = 413)]
    PayloadTooLarge(Json<ErrorBody>),
    /// The body is not sent as `Content-Type: application/json` (`unsupported_media_type`).
    #[oai(status = 415)]
    UnsupportedMediaType(Json<ErrorBody>),
    /// A value breaks a rule; the message names the field (`validation_failed`).
    #[oai(status = 422)]
    Validation(Json<ErrorBody>),
    /// Too many attempts from this client address or on this account; retry after
    /// `Retry-After` seconds (`rate_limited`).
    #[oai(status = 429)]
    TooManyRequests(Json<ErrorBody>),
    /// An unexpected error; details are in the server log (`internal_error`).
    #[oai(status = 500)]
    Internal(Json<ErrorBody>),
    /// The database is unavailable or the request timed out; retry (`service_unavailable`,
    /// `timeout`).
    #[oai(status = 503)]
    Unavailable(Json<ErrorBody>),
}

/// The operations that hash a password, and so can be refused when the hash queue is full.
const HASHING: &[&str] = &["register", "login", "change_my_password"];

/// A hashing operation can be refused before it hashes: a 429 when its client or account is
/// over its rate limit, a 503 when the hash queue is full; both say when to retry.
fn document_overload(responses: &mut MetaResponses) {
    use poem_openapi::registry::MetaHeader;
    use poem_openapi::types::Type;

    let retry_after = |description: &str, required| MetaHeader {
        name: "Retry-After".into(),
        description: Some(description.into()),
        required,
        deprecated: false,
        schema: u64::schema_ref(),
    };
    for response in &mut responses.responses {
        match response.status {
            Some(429) => response.headers.push(retry_after(
                "Seconds until the next attempt is allowed.",
                true,
            )),
            Some(503) => {
                response.description = "The database is unavailable, the request timed out, or \
                    too many password checks are waiting (`service_unavailable`, `timeout`, \
                    `overloaded`); retry, after `Retry-After` seconds when it is given.";
                response.headers.push(retry_after(
                    "Seconds to wait before retrying; sent with `overloaded`, when the queue of \
                     password hashes (`auth.hash_queue`) is full.",
                    false,
                ));
            }
            _ => {}
        }
    }
}

/// The error statuses each operation can answer with, for the spec (see [`Documented`]).
/// Every operation can also time out or fail unexpectedly.
fn statuses_of(operation_id: &str) -> Option<&'static [u16]> {
    Some(match operation_id {
        "list_users" => &[400, 500, 503],
        "get_user" => &[404, 500, 503],
        "get_me" | "delete_me" => &[401, 500, 503],
        "update_my_profile" => &[400, 401, 409, 413, 415, 422, 500, 503],
        "change_my_password" => &[400, 401, 403, 413, 415, 422, 429, 500, 503],
        "register" => &[400, 409, 413, 415, 422, 429, 500, 503],
        "login" => &[400, 401, 413, 415, 429, 500, 503],
        _ => return None,
    })
}

/// Every handler fails with [`ApiError`], so its metadata is every error status; each
/// operation's list is then narrowed by [`Documented`].
impl ApiResponse for ApiError {
    fn meta() -> MetaResponses {
        ErrorStatuses::meta()
    }

    fn register(registry: &mut Registry) {
        ErrorStatuses::register(registry);
    }
}

/// The OpenAPI service: routes plus the spec they are described by.
pub(crate) fn service() -> OpenApiService<Documented<Apis>, ()> {
    OpenApiService::new(
        Documented(Apis::default()),
        "discbaboons API",
        build_info::VERSION,
    )
    .description(
        "The discbaboons API: users and their profiles, registration, login and account \
         management. Every error is JSON: `{\"error\": \"<code>\", \"message\": \"...\"}`.\n\n\
         To call the account operations here: register, log in, then press **Authorize** and \
         paste the `token` from the login response.",
    )
    .license(LicenseObject::new("MIT").url("https://opensource.org/license/mit"))
    // Relative: the spec describes the server that serves it, wherever it is reached.
    .server("/")
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
