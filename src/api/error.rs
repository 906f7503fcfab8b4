//! The one error type of the API and its one JSON shape, `{"error": "<code>", "message": "..."}`.
//!
//! Handlers return `Result<_, ApiError>`. The server's middleware also turns every other
//! failure (malformed JSON, a bad parameter, an unknown route, a panic, a timeout) into an
//! `ApiError`, so a client never sees poem's plain-text errors. A 5xx is logged there with
//! its whole cause chain; the client only gets a generic message.

use poem::http::StatusCode;
use poem::{IntoResponse, Response};
use poem_openapi::payload::Json;
use poem_openapi::registry::{MetaResponses, Registry};
use poem_openapi::{ApiResponse, Object};

use crate::domain::Invalid;

/// The body of every error response.
#[derive(Debug, Clone, Object, serde::Deserialize)]
pub struct ErrorBody {
    /// A stable, machine-readable code, e.g. `not_found`, `username_taken`, `invalid_json`.
    pub error: String,
    /// What went wrong, for a human.
    pub message: String,
}

/// Everything a request can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request cannot be understood: malformed JSON, a wrong type, a bad parameter.
    #[error("{message}")]
    BadRequest {
        /// `invalid_json`, `invalid_parameter`, `bad_request`.
        code: &'static str,
        /// Details for the client (about its own request, so safe to show).
        message: String,
    },
    /// A value breaks a rule (username charset, email, password length).
    #[error("{0}")]
    Validation(#[from] Invalid),
    /// No token, or a token that is malformed, tampered, expired or revoked.
    #[error("{0}")]
    Unauthorized(&'static str),
    /// Login failed; the same for an unknown user and a wrong password.
    #[error("invalid username or password")]
    InvalidCredentials,
    /// Authenticated, but the current password given to confirm a change is wrong.
    #[error("the current password is wrong")]
    WrongPassword,
    /// The thing asked for does not exist.
    #[error("{0}")]
    NotFound(String),
    /// A unique value is already taken; names the field.
    #[error("{field} is already taken")]
    Conflict {
        /// `username` or `email`.
        field: &'static str,
    },
    /// A status poem decided on (405, 413, 415, ...), with its message.
    #[error("{message}")]
    Http {
        /// The status.
        status: StatusCode,
        /// The code for the body.
        code: &'static str,
        /// The message.
        message: String,
    },
    /// The request took longer than `http.request_timeout`.
    #[error("the request took too long and was abandoned")]
    Timeout,
    /// The database is down or the pool is exhausted: retry later.
    #[error("the database is unavailable, retry later")]
    Unavailable(#[source] sqlx::Error),
    /// A bug or an unexpected failure; details only in the log.
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

impl ApiError {
    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            ApiError::Validation(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Unauthorized(_) | ApiError::InvalidCredentials => StatusCode::UNAUTHORIZED,
            ApiError::WrongPassword => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict { .. } => StatusCode::CONFLICT,
            ApiError::Http { status, .. } => *status,
            ApiError::Timeout | ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The `error` code of the body.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::BadRequest { code, .. } | ApiError::Http { code, .. } => code,
            ApiError::Validation(_) => "validation_failed",
            ApiError::Unauthorized(_) => "unauthorized",
            ApiError::InvalidCredentials => "invalid_credentials",
            ApiError::WrongPassword => "wrong_password",
            ApiError::NotFound(_) => "not_found",
            ApiError::Conflict { field: "username" } => "username_taken",
            ApiError::Conflict { field: "email" } => "email_taken",
            ApiError::Conflict { .. } => "conflict",
            ApiError::Timeout => "timeout",
            ApiError::Unavailable(_) => "service_unavailable",
            ApiError::Internal(_) => "internal_error",
        }
    }

    /// The body sent to the client.
    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            error: self.code().to_owned(),
            message: self.to_string(),
        }
    }

    /// An error response for a status with nothing more specific to say (unknown route, ...).
    pub fn from_status(status: StatusCode, message: impl Into<String>) -> ApiError {
        let code = match status {
            StatusCode::BAD_REQUEST => "bad_request",
            StatusCode::UNAUTHORIZED => "unauthorized",
            StatusCode::FORBIDDEN => "forbidden",
            StatusCode::NOT_FOUND => "not_found",
            StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
            StatusCode::NOT_ACCEPTABLE => "not_acceptable",
            StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
            StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
            StatusCode::UNPROCESSABLE_ENTITY => "validation_failed",
            StatusCode::SERVICE_UNAVAILABLE => "service_unavailable",
            s if s.is_server_error() => "internal_error",
            _ => "error",
        };
        let message = if status.is_server_error() {
            "internal error".to_owned()
        } else {
            message.into()
        };
        ApiError::Http {
            status,
            code,
            message,
        }
    }

    /// Maps an error poem or poem-openapi produced before (or instead of) a handler.
    pub fn from_poem(err: &poem::Error) -> ApiError {
        use poem_openapi::error::{
            AuthorizationError, ContentTypeError, ParseParamError, ParsePathError,
            ParseRequestPayloadError,
        };
        let status = err.status();
        if err.is::<ParseRequestPayloadError>() {
            ApiError::BadRequest {
                code: "invalid_json",
                message: err.to_string(),
            }
        } else if err.is::<ParseParamError>() || err.is::<ParsePathError>() {
            ApiError::BadRequest {
                code: "invalid_parameter",
                message: err.to_string(),
            }
        } else if err.is::<AuthorizationError>() {
            ApiError::Unauthorized("a bearer token is required")
        } else if err.is::<ContentTypeError>() {
            ApiError::from_status(StatusCode::UNSUPPORTED_MEDIA_TYPE, err.to_string())
        } else if status == StatusCode::NOT_FOUND {
            ApiError::NotFound("no such route".into())
        } else if status == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::from_status(status, "the request body is too large")
        } else {
            ApiError::from_status(status, err.to_string())
        }
    }

    /// Logs what the client is not told: the whole cause chain of a 5xx.
    pub fn log(&self, request_id: &str, route: &str) {
        match self {
            ApiError::Internal(err) => {
                tracing::error!(request_id, route, "internal error: {err:#}");
            }
            ApiError::Unavailable(err) => {
                tracing::warn!(request_id, route, "database unavailable: {err}");
            }
            ApiError::Timeout => tracing::warn!(request_id, route, "request timed out"),
            _ => {}
        }
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(err: sqlx::Error) -> Self {
        if crate::db::is_unavailable(&err) {
            ApiError::Unavailable(err)
        } else {
            ApiError::Internal(err.into())
        }
    }
}

impl From<anyhow::Error> for ApiError {
    fn from(err: anyhow::Error) -> Self {
        ApiError::Internal(err)
    }
}

impl poem::error::ResponseError for ApiError {
    fn status(&self) -> StatusCode {
        ApiError::status(self)
    }

    fn as_response(&self) -> Response {
        let mut resp = Json(self.body()).into_response();
        resp.set_status(ApiError::status(self));
        resp
    }
}

/// The statuses every operation may answer with, for the spec. Each carries [`ErrorBody`].
#[derive(ApiResponse)]
#[allow(dead_code)]
enum Documented {
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
    /// An unexpected error; details are in the server log (`internal_error`).
    #[oai(status = 500)]
    Internal(Json<ErrorBody>),
    /// The database is unavailable or the request timed out; retry (`service_unavailable`,
    /// `timeout`).
    #[oai(status = 503)]
    Unavailable(Json<ErrorBody>),
}

/// The error statuses each operation can answer with, for the spec (see
/// [`super::Documented`]). Every operation can also time out or fail unexpectedly.
pub(crate) fn statuses_of(operation_id: &str) -> Option<&'static [u16]> {
    Some(match operation_id {
        "list_users" => &[400, 500, 503],
        "get_user" => &[404, 500, 503],
        "get_me" | "delete_me" => &[401, 500, 503],
        "update_my_profile" => &[400, 401, 409, 413, 415, 422, 500, 503],
        "change_my_password" => &[400, 401, 403, 413, 415, 422, 500, 503],
        "register" => &[400, 409, 413, 415, 422, 500, 503],
        "login" => &[400, 401, 413, 415, 500, 503],
        _ => return None,
    })
}

impl ApiResponse for ApiError {
    fn meta() -> MetaResponses {
        Documented::meta()
    }

    fn register(registry: &mut Registry) {
        Documented::register(registry);
    }
}
