//! The one error type of the API and its one JSON shape, `{"error": "<code>", "message": "..."}`.
//!
//! This is the only place that shape is produced. Handlers return `Result<_, ApiError>`; the
//! server's middleware hands every other failure to this module ([`ApiError::from_poem`] for
//! malformed JSON, a bad parameter, an unknown route or method, a missing token;
//! [`ApiError::body_too_large`] and [`ApiError::unreadable_body`] for the body limit;
//! [`ApiError::normalize`] for a plain-text error response; [`ApiError::Timeout`]) and
//! sends what [`ApiError::response`] makes of it, so a client never sees poem's plain-text
//! errors. A 5xx is logged with its whole cause chain ([`ApiError::log`]); the client only
//! gets a generic message.
//!
//! What the spec says about these errors (which statuses each operation documents) is in
//! [`super::spec`].

use poem::http::{HeaderValue, StatusCode, header};
use poem::{IntoResponse, PathPattern, Response};
use poem_openapi::Object;
use poem_openapi::payload::Json;

use crate::auth::HashError;
use crate::domain::Invalid;

/// The `Retry-After` of a 503 `overloaded`, in seconds: a hash takes tens of milliseconds,
/// so the queue has moved on by then.
pub(crate) const RETRY_AFTER_SECS: u64 = 1;

/// The body of every error response.
#[derive(Debug, Clone, Object, serde::Deserialize)]
pub struct ErrorBody {
    /// A stable, machine-readable code, e.g. `not_found`, `username_taken`, `invalid_json`.
    pub error: String,
    /// What went wrong, for a human.
    pub message: String,
}

impl ErrorBody {
    /// A body with this code and message, for a response that documents its own error
    /// statuses (`/ready`'s 503).
    pub fn new(code: &str, message: impl Into<String>) -> ErrorBody {
        ErrorBody {
            error: code.to_owned(),
            message: message.into(),
        }
    }
}

/// Everything a request can fail with.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ApiError {
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
    /// Too many attempts from this client or on this account: retry after `retry_after` s.
    #[error("too many attempts; retry in {retry_after} s")]
    RateLimited {
        /// Seconds until the next attempt is allowed.
        retry_after: u64,
    },
    /// Too many password hashes are waiting already: retry after [`RETRY_AFTER_SECS`].
    #[error("the server is busy checking other passwords; retry in a moment")]
    Overloaded,
    /// The database is down or the pool is exhausted: retry later.
    #[error("the database is unavailable, retry later")]
    Unavailable(#[source] sqlx::Error),
    /// A bug or an unexpected failure; details only in the log.
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

impl ApiError {
    /// The HTTP status.
    pub(crate) fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            ApiError::Validation(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Unauthorized(_) | ApiError::InvalidCredentials => StatusCode::UNAUTHORIZED,
            ApiError::WrongPassword => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict { .. } => StatusCode::CONFLICT,
            ApiError::Http { status, .. } => *status,
            ApiError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Timeout | ApiError::Unavailable(_) | ApiError::Overloaded => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The `error` code of the body.
    pub(crate) fn code(&self) -> &'static str {
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
            ApiError::Overloaded => "overloaded",
            ApiError::RateLimited { .. } => "rate_limited",
            ApiError::Unavailable(_) => "service_unavailable",
            ApiError::Internal(_) => "internal_error",
        }
    }

    /// The body sent to the client.
    pub(crate) fn body(&self) -> ErrorBody {
        ErrorBody::new(self.code(), self.to_string())
    }

    /// The response sent to the client: the status and the JSON body.
    pub(crate) fn response(&self) -> Response {
        let mut resp = Json(self.body()).into_response();
        resp.set_status(self.status());
        let retry_after = match self {
            ApiError::Overloaded => Some(RETRY_AFTER_SECS),
            ApiError::RateLimited { retry_after } => Some(*retry_after),
            _ => None,
        };
        if let Some(secs) = retry_after {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        resp
    }

    /// Maps a unique violation to 409 naming the field, by constraint name; any other
    /// database error as [`From<sqlx::Error>`] does.
    pub(crate) fn conflict_or(err: sqlx::Error) -> ApiError {
        if let sqlx::Error::Database(db) = &err
            && db.is_unique_violation()
        {
            match db.constraint() {
                Some("users_username_key") => return ApiError::Conflict { field: "username" },
                Some("user_profiles_email_key") => return ApiError::Conflict { field: "email" },
                _ => {}
            }
        }
        err.into()
    }

    /// An error response for a status with nothing more specific to say (unknown route, ...).
    pub(crate) fn from_status(status: StatusCode, message: impl Into<String>) -> ApiError {
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

    /// A request body larger than `http.body_limit` (`limit` bytes), found before it was
    /// read.
    pub(crate) fn body_too_large(limit: usize) -> ApiError {
        ApiError::from_status(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the request body is larger than the limit of {limit} bytes"),
        )
    }

    /// A request body that could not be read up to `limit` bytes.
    pub(crate) fn unreadable_body(err: poem::error::ReadBodyError, limit: usize) -> ApiError {
        match err {
            poem::error::ReadBodyError::PayloadTooLarge => ApiError::body_too_large(limit),
            other => ApiError::BadRequest {
                code: "bad_request",
                message: format!("the request body could not be read: {other}"),
            },
        }
    }

    /// The error a route answered with: a handler's own [`ApiError`] as it is, or one poem or
    /// poem-openapi produced before (or instead of) a handler, mapped.
    pub(crate) fn from_poem(err: poem::Error) -> ApiError {
        use poem_openapi::error::{
            AuthorizationError, ContentTypeError, ParseParamError, ParsePathError,
            ParseRequestPayloadError,
        };
        let err = match err.downcast::<ApiError>() {
            Ok(api) => return api,
            Err(err) => err,
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

    /// A response that is an error but not JSON already (poem's own plain-text ones, e.g. a
    /// 404 for an unknown route or a 405) gets the JSON shape, keeping the route it matched;
    /// any other response is returned as it is.
    pub(crate) fn normalize(resp: Response) -> Response {
        let status = resp.status();
        if !(status.is_client_error() || status.is_server_error()) {
            return resp;
        }
        let is_json = resp
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/json"));
        if is_json {
            return resp;
        }
        let mut fixed = ApiError::from_status(
            status,
            status.canonical_reason().unwrap_or("error").to_lowercase(),
        )
        .response();
        if let Some(pattern) = resp.data::<PathPattern>() {
            fixed.set_data(pattern.clone());
        }
        fixed
    }

    /// Logs what the client is not told: the whole cause chain of a 5xx.
    pub(crate) fn log(&self, request_id: &str, route: &str) {
        match self {
            ApiError::Internal(err) => {
                tracing::error!(request_id, route, "internal error: {err:#}");
            }
            ApiError::Unavailable(err) => {
                tracing::warn!(request_id, route, "database unavailable: {err}");
            }
            ApiError::Timeout => tracing::warn!(request_id, route, "request timed out"),
            ApiError::Overloaded => {
                tracing::warn!(request_id, route, "password hash queue full: answered 503");
            }
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

impl From<HashError> for ApiError {
    fn from(err: HashError) -> Self {
        match err {
            HashError::Busy => ApiError::Overloaded,
            HashError::Failed(err) => ApiError::Internal(err),
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
        self.response()
    }
}
