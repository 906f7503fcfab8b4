//! `/api/auth/register` and `/api/auth/login`.

use chrono::NaiveDateTime;
use std::net::IpAddr;

use poem::Request;
use poem::web::Data;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};

use super::bodies::{Profile, TokenBody, User, UserEnvelope};
use super::input::optional;
use super::{ApiError, ApiTags, State};
use crate::auth::{Verdict, now_millis};
use crate::domain::{Bio, Email, Location, Name, Password, PersonalityType, Username};

/// Registration and login.
#[derive(Default)]
pub(crate) struct AuthApi;

/// A new account and its profile.
#[derive(Object)]
pub(crate) struct RegisterRequest {
    /// 3 to 50 characters: ASCII letters, digits, `_`, `-`, `.`; starts with a letter or digit.
    #[oai(deserialize_with = "super::strict::string")]
    pub username: String,
    /// Email address; unique across users.
    #[oai(deserialize_with = "super::strict::string")]
    pub email: String,
    /// 8 to 128 characters.
    #[oai(write_only, deserialize_with = "super::strict::string")]
    pub password: String,
    /// Display name, up to 100 characters.
    #[oai(nullable, deserialize_with = "super::strict::optional")]
    pub name: Option<String>,
    /// Where the user is, up to 100 characters.
    #[oai(nullable, deserialize_with = "super::strict::optional")]
    pub location: Option<String>,
    /// Free text about the user, up to 2000 characters.
    #[oai(nullable, deserialize_with = "super::strict::optional")]
    pub bio: Option<String>,
    /// The seed's baboon personality type, up to 50 characters.
    #[oai(nullable, deserialize_with = "super::strict::optional")]
    pub personality_type: Option<String>,
}

/// Credentials.
#[derive(Object)]
pub(crate) struct LoginRequest {
    /// Username.
    #[oai(deserialize_with = "super::strict::string")]
    pub username: String,
    /// Password.
    #[oai(write_only, deserialize_with = "super::strict::string")]
    pub password: String,
}

/// What registration answers.
#[derive(ApiResponse)]
pub enum RegisterResponse {
    /// The account and its profile were created.
    #[oai(status = 201)]
    Created(Json<UserEnvelope>),
}

/// Longest password login will even hash: bounds the work an attacker can ask for.
const LOGIN_PASSWORD_MAX_BYTES: usize = 1024;

#[OpenApi(tag = "ApiTags::Auth")]
impl AuthApi {
    /// Creates an account and its profile in one transaction. A taken username or email is a
    /// 409 naming the field; a value breaking a rule is a 422 naming the field.
    #[oai(
        path = "/api/auth/register",
        method = "post",
        operation_id = "register"
    )]
    async fn register(
        &self,
        state: Data<&State>,
        req: &Request,
        body: Json<RegisterRequest>,
    ) -> Result<RegisterResponse, ApiError> {
        let body = body.0;
        state
            .limits
            .check(state.limits.client_of(req), &body.username)?;
        let username = Username::parse(&body.username)?;
        let email = Email::parse(&body.email)?;
        let password = Password::parse("password", &body.password)?;
        let name = optional(body.name, |v| Name::parse(v).map(Name::into_inner))?;
        let location = optional(body.location, |v| {
            Location::parse(v).map(Location::into_inner)
        })?;
        let bio = optional(body.bio, |v| Bio::parse(v).map(Bio::into_inner))?;
        let personality = optional(body.personality_type, |v| {
            PersonalityType::parse(v).map(PersonalityType::into_inner)
        })?;

        // Hash before taking a connection: the hash is the slow part.
        let hash = state.hasher.hash(password).await?;
        let now = now_millis().naive_utc();
        let mut tx = state.pool.begin().await?;
        // language=PostgreSQL
        let (id,): (i32,) = sqlx::query_as(
            "insert into users (username, password_hash, created_at, last_password_change) \
             values ($1, $2, $3, $3) returning id",
        )
        .bind(username.as_str())
        .bind(&hash)
        .bind(now)
        .fetch_one(&mut *tx)
        .await
        .map_err(ApiError::conflict_or)?;
        // language=PostgreSQL
        sqlx::query(
            "insert into user_profiles \
                 (user_id, email, name, location, bio, personality_type, created_at, updated_at) \
             values ($1, $2, $3, $4, $5, $6, $7, $7)",
        )
        .bind(id)
        .bind(email.as_str())
        .bind(&name)
        .bind(&location)
        .bind(&bio)
        .bind(&personality)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(ApiError::conflict_or)?;
        tx.commit().await?;
        tracing::info!(
            user_id = id,
            username = username.as_str(),
            "user registered"
        );

        let user = User {
            id,
            username: username.as_str().to_owned(),
            created_at: Some(now.and_utc()),
            user_profiles: Some(Profile {
                email: Some(email.as_str().to_owned()),
                name,
                location,
                bio,
                personality_type: personality,
                created_at: Some(now.and_utc()),
                updated_at: Some(now.and_utc()),
            }),
        };
        Ok(RegisterResponse::Created(UserEnvelope::of(user)))
    }

    /// Exchanges a username and password for a bearer token. An unknown user and a wrong
    /// password get the same 401, in about the same time.
    #[oai(path = "/api/auth/login", method = "post", operation_id = "login")]
    async fn login(
        &self,
        state: Data<&State>,
        req: &Request,
        body: Json<LoginRequest>,
    ) -> Result<Json<TokenBody>, ApiError> {
        let LoginRequest { username, password } = body.0;
        let client = state.limits.client_of(req);
        let mut log = LoginLog {
            limits: &state.limits,
            client,
            username: &username,
            outcome: "abandoned",
        };
        let result = match state.limits.check(client, &username) {
            Ok(()) => check_login(&state, &username, password).await,
            Err(limited) => Err(limited),
        };
        log.outcome = match &result {
            Ok(_) => "success",
            Err(err) => err.code(),
        };
        result
    }
}

/// The log event of one login attempt, written when the attempt ends however it ends: one
/// whose client hung up (or that timed out) while its hash ran is logged as `abandoned`.
/// Never the password. Refusals by the rate limits are logged up to a budget a second; the
/// next line logged says how many were left out (`unlogged_refusals`).
struct LoginLog<'a> {
    limits: &'a super::limits::Limits,
    client: Option<IpAddr>,
    username: &'a str,
    outcome: &'static str,
}

impl Drop for LoginLog<'_> {
    fn drop(&mut self) {
        // A username is at most 50 characters; anything longer is cut, so that a 64 KiB
        // body cannot make a 64 KiB log line.
        let end = self
            .username
            .char_indices()
            .nth(64)
            .map_or(self.username.len(), |(i, _)| i);
        let username = &self.username[..end];
        let client = self
            .client
            .map_or("unknown".to_owned(), |ip| ip.to_string());
        if self.outcome == "success" {
            tracing::info!(target: "app::auth", %client, username, outcome = self.outcome, "login");
        } else if self.outcome == "rate_limited" {
            if let Some(unlogged_refusals) = self.limits.log_refusal() {
                tracing::warn!(target: "app::auth", %client, username, outcome = self.outcome, unlogged_refusals, "login failed");
            }
        } else {
            tracing::warn!(target: "app::auth", %client, username, outcome = self.outcome, "login failed");
        }
    }
}

/// The login itself: the user's hash, the check, the token.
async fn check_login(
    state: &State,
    username: &str,
    password: String,
) -> Result<Json<TokenBody>, ApiError> {
    if password.len() > LOGIN_PASSWORD_MAX_BYTES {
        return Err(ApiError::InvalidCredentials);
    }
    // PostgreSQL text cannot hold NUL (it would refuse the parameter with a 500): no such
    // user exists, and the hash below still runs, so the answer takes the usual time.
    // The hash and `last_password_change` come from one row in one statement: the token
    // then names the password change under which this very hash was current, and a change
    // committed while the hash below runs revokes it.
    let row: Option<(i32, String, Option<NaiveDateTime>)> = if username.contains('\0') {
        None
    } else {
        // language=PostgreSQL
        sqlx::query_as(
            "select id, password_hash, last_password_change from users where username = $1",
        )
        .bind(username)
        .fetch_optional(&state.pool)
        .await?
    };
    let (id, stored, changed) = match row {
        Some((id, hash, changed)) => (Some(id), Some(hash), changed),
        None => (None, None, None),
    };
    let verdict = state.hasher.verify(password, stored).await?;
    let (Verdict::Match, Some(id)) = (verdict, id) else {
        return Err(ApiError::InvalidCredentials);
    };
    let changed = changed.map(|c| c.and_utc());
    Ok(Json(state.jwt.issue(id, changed, now_millis())?.into()))
}
