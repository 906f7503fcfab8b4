//! The bodies that more than one resource answers with: a user with their profile (the
//! directory, registration and the account all answer with one) and the bearer token (login
//! and a password change both hand one out). Here so that the route modules need not import
//! each other, and so that each body is built one way.

use chrono::{DateTime, Utc};
use poem_openapi::Object;
use poem_openapi::payload::Json;

use crate::auth::Issued;

/// A user's profile (`user_profiles`).
#[derive(Debug, Clone, Object)]
pub struct Profile {
    /// Email address, lower-cased. Its owner always sees it (`/api/users/me`, registration,
    /// profile changes); the public directory leaves it out unless the server's
    /// `api.public_emails` is on.
    #[oai(skip_serializing_if_is_none)]
    pub email: Option<String>,
    /// Display name.
    #[oai(nullable)]
    pub name: Option<String>,
    /// Where the user is.
    #[oai(nullable)]
    pub location: Option<String>,
    /// Free text about the user.
    #[oai(nullable)]
    pub bio: Option<String>,
    /// The seed's baboon personality type, e.g. `Analytical`.
    #[oai(nullable)]
    pub personality_type: Option<String>,
    /// When the profile was created (UTC).
    #[oai(nullable)]
    pub created_at: Option<DateTime<Utc>>,
    /// When the profile last changed (UTC).
    #[oai(nullable)]
    pub updated_at: Option<DateTime<Utc>>,
}

/// A user with their profile, as the seed's Prisma `include` returned it.
#[derive(Debug, Clone, Object)]
pub struct User {
    /// Numeric id.
    pub id: i32,
    /// Username.
    pub username: String,
    /// When the account was created (UTC).
    #[oai(nullable)]
    pub created_at: Option<DateTime<Utc>>,
    /// The profile, or `null` for a user without one.
    #[oai(nullable)]
    pub user_profiles: Option<Profile>,
}

impl User {
    /// The user as the public directory shows them to anyone: without the email, unless
    /// `public_emails` (the seed's behaviour, `api.public_emails`).
    pub(crate) fn public(mut self, public_emails: bool) -> User {
        if !public_emails && let Some(profile) = &mut self.user_profiles {
            profile.email = None;
        }
        self
    }
}

/// One user, in the seed's envelope.
#[derive(Debug, Object)]
pub struct UserEnvelope {
    /// Always `true` (errors use the error shape).
    pub success: bool,
    /// The user.
    pub data: User,
}

impl UserEnvelope {
    /// The envelope around `user`, as a JSON payload.
    pub(crate) fn of(user: User) -> Json<UserEnvelope> {
        Json(UserEnvelope {
            success: true,
            data: user,
        })
    }
}

/// A bearer token for the account operations.
#[derive(Debug, Object)]
pub(crate) struct TokenBody {
    /// The JWT: send it as `Authorization: Bearer <token>`.
    pub token: String,
    /// Always `Bearer`.
    pub token_type: String,
    /// When the token stops being accepted (UTC).
    pub expires_at: DateTime<Utc>,
}

impl From<Issued> for TokenBody {
    fn from(issued: Issued) -> TokenBody {
        TokenBody {
            token: issued.token,
            token_type: "Bearer".into(),
            expires_at: issued.expires_at,
        }
    }
}
