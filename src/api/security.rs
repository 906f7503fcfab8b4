//! Bearer JWT authentication for the account operations.
//!
//! The scheme only extracts the token (a missing one is a 401 from poem-openapi, which the
//! server turns into the JSON error shape). [`authenticate`] then checks the token and that
//! it was obtained under the user's current `last_password_change`: changing the password
//! revokes every token obtained with the old one, however logins and the change interleave
//! (see `crate::auth::Claims::is_current`). Decisions beyond "who is this" (403) belong in the handlers.

use chrono::{NaiveDateTime, Utc};
use poem_openapi::SecurityScheme;
use poem_openapi::auth::Bearer;

use super::{ApiError, AppState};
use crate::auth::TokenError;

/// A JWT from `POST /api/auth/login`, sent as `Authorization: Bearer <token>`.
#[derive(SecurityScheme)]
#[oai(ty = "bearer", bearer_format = "JWT")]
pub(crate) struct BearerAuth(pub Bearer);

/// The user a valid token belongs to.
#[derive(Debug, Clone)]
pub(crate) struct AuthUser {
    /// `users.id`.
    pub id: i32,
    /// `users.username`.
    pub username: String,
}

/// Checks the token and that it is not revoked; returns its user.
pub(crate) async fn authenticate(
    state: &AppState,
    auth: &BearerAuth,
) -> Result<AuthUser, ApiError> {
    let claims = state
        .jwt
        .verify(&auth.0.token, Utc::now())
        .map_err(|e| match e {
            TokenError::Expired => ApiError::Unauthorized("the token has expired; log in again"),
            TokenError::Invalid => ApiError::Unauthorized("the token is invalid"),
        })?;
    let id = claims
        .user_id()
        .map_err(|_| ApiError::Unauthorized("the token is invalid"))?;
    // language=PostgreSQL
    let row: Option<(String, Option<NaiveDateTime>)> =
        sqlx::query_as("select username, last_password_change from users where id = $1")
            .bind(id)
            .fetch_optional(&state.pool)
            .await?;
    let Some((username, changed)) = row else {
        return Err(ApiError::Unauthorized("the account no longer exists"));
    };
    if !claims.is_current(changed.map(|c| c.and_utc())) {
        return Err(ApiError::Unauthorized(
            "the token was issued before the last password change; log in again",
        ));
    }
    Ok(AuthUser { id, username })
}
