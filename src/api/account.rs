//! The signed-in user's own account: `/api/users/me`, its profile and its password.

use chrono::NaiveDateTime;
use poem::Request;
use poem::web::Data;
use poem_openapi::payload::Json;
use poem_openapi::types::MaybeUndefined;
use poem_openapi::{ApiResponse, Object, OpenApi};

use super::bodies::{TokenBody, User, UserEnvelope};
use super::input::{optional, patch};
use super::queries::{UserRow, user_columns};
use super::security::{BearerAuth, authenticate};
use super::{ApiError, ApiTags, State};
use crate::auth::{Verdict, now_millis};
use crate::domain::{Bio, Email, Invalid, Location, Name, Password, PersonalityType};

/// Operations on the caller's own account.
#[derive(Default)]
pub(crate) struct AccountApi;

/// Changes to the profile. A field left out stays as it is; `null` clears it (except
/// `email`, which every profile has).
#[derive(Object)]
pub(crate) struct ProfilePatch {
    /// New email address; unique across users. `null` is the same as leaving it out.
    #[oai(nullable, deserialize_with = "super::strict::optional")]
    pub email: Option<String>,
    /// Display name, up to 100 characters; `null` clears it.
    #[oai(nullable, deserialize_with = "super::strict::maybe")]
    pub name: MaybeUndefined<String>,
    /// Where the user is, up to 100 characters; `null` clears it.
    #[oai(nullable, deserialize_with = "super::strict::maybe")]
    pub location: MaybeUndefined<String>,
    /// Free text about the user, up to 2000 characters; `null` clears it.
    #[oai(nullable, deserialize_with = "super::strict::maybe")]
    pub bio: MaybeUndefined<String>,
    /// The seed's baboon personality type, up to 50 characters; `null` clears it.
    #[oai(nullable, deserialize_with = "super::strict::maybe")]
    pub personality_type: MaybeUndefined<String>,
}

/// A password change.
#[derive(Object)]
pub(crate) struct PasswordChange {
    /// The password in use now.
    #[oai(write_only, deserialize_with = "super::strict::string")]
    pub current_password: String,
    /// The new password, 8 to 128 characters.
    #[oai(write_only, deserialize_with = "super::strict::string")]
    pub new_password: String,
}

/// What deleting the account answers.
#[derive(ApiResponse)]
pub enum Deleted {
    /// The account and its profile are gone; its tokens no longer work.
    #[oai(status = 204)]
    NoContent,
}

#[OpenApi(tag = "ApiTags::Account")]
impl AccountApi {
    /// The signed-in user, with their profile.
    #[oai(path = "/api/users/me", method = "get", operation_id = "get_me")]
    async fn me(
        &self,
        state: Data<&State>,
        auth: BearerAuth,
    ) -> Result<Json<UserEnvelope>, ApiError> {
        let me = authenticate(&state, &auth).await?;
        let user = super::queries::by_id(&state.pool, me.id)
            .await?
            .ok_or(ApiError::Unauthorized("the account no longer exists"))?;
        Ok(UserEnvelope::of(user))
    }

    /// Changes some profile fields; returns the user with the updated profile.
    #[oai(
        path = "/api/users/me/profile",
        method = "patch",
        operation_id = "update_my_profile"
    )]
    async fn update_profile(
        &self,
        state: Data<&State>,
        auth: BearerAuth,
        body: Json<ProfilePatch>,
    ) -> Result<Json<UserEnvelope>, ApiError> {
        let body = body.0;
        let email = optional(body.email, Email::parse)?;
        let (set_name, name) = patch(body.name, |v| Name::parse(v).map(Name::into_inner))?;
        let (set_location, location) = patch(body.location, |v| {
            Location::parse(v).map(Location::into_inner)
        })?;
        let (set_bio, bio) = patch(body.bio, |v| Bio::parse(v).map(Bio::into_inner))?;
        let (set_personality, personality) = patch(body.personality_type, |v| {
            PersonalityType::parse(v).map(PersonalityType::into_inner)
        })?;
        let me = authenticate(&state, &auth).await?;

        // Update, or insert when the user has no profile yet (possible for pre-existing
        // data; it then needs an email). Not `insert .. on conflict`: PostgreSQL checks
        // `email not null` on the proposed row even when it ends up updating. The result is
        // read from `returning`: the outer query would still see the old row.
        // language=PostgreSQL
        let row: Option<UserRow> = sqlx::query_as(concat!(
            "with upd as ( \
               update user_profiles set \
                 email = coalesce($2, email), \
                 name = case when $3 then $4 else name end, \
                 location = case when $5 then $6 else location end, \
                 bio = case when $7 then $8 else bio end, \
                 personality_type = case when $9 then $10 else personality_type end, \
                 updated_at = $11 \
               where user_id = $1 \
               returning * \
             ), ins as ( \
               insert into user_profiles \
                   (user_id, email, name, location, bio, personality_type, created_at, updated_at) \
               select $1, $2, $4, $6, $8, $10, $11, $11 \
                where not exists (select 1 from upd) \
               returning * \
             ), p as ( \
               select * from upd union all select * from ins \
             ) \
             select ",
            user_columns!(),
            " from users u join p on p.user_id = u.id",
        ))
        .bind(me.id)
        .bind(email.as_ref().map(Email::as_str))
        .bind(set_name)
        .bind(&name)
        .bind(set_location)
        .bind(&location)
        .bind(set_bio)
        .bind(&bio)
        .bind(set_personality)
        .bind(&personality)
        .bind(now_millis().naive_utc())
        .fetch_optional(&state.pool)
        .await
        .map_err(|e| match &e {
            sqlx::Error::Database(db) if db.code().as_deref() == Some("23502") => {
                ApiError::Validation(Invalid::new("email", "is required to create a profile"))
            }
            _ => ApiError::conflict_or(e),
        })?;
        let user = row.ok_or(ApiError::Unauthorized("the account no longer exists"))?;
        Ok(UserEnvelope::of(User::from(user)))
    }

    /// Changes the password. Every token obtained with the old password stops working, even
    /// one from a login that finished after the change; the response carries a fresh one.
    #[oai(
        path = "/api/users/me/password",
        method = "post",
        operation_id = "change_my_password"
    )]
    async fn change_password(
        &self,
        state: Data<&State>,
        req: &Request,
        auth: BearerAuth,
        body: Json<PasswordChange>,
    ) -> Result<Json<TokenBody>, ApiError> {
        let PasswordChange {
            current_password,
            new_password,
        } = body.0;
        let new_password = Password::parse("new_password", &new_password)?;
        let me = authenticate(&state, &auth).await?;
        state
            .limits
            .check(state.limits.client_of(req), &me.username)?;
        // language=PostgreSQL
        let stored: Option<String> =
            sqlx::query_scalar("select password_hash from users where id = $1")
                .bind(me.id)
                .fetch_optional(&state.pool)
                .await?;
        if state
            .hasher
            .verify(current_password, stored.clone())
            .await?
            != Verdict::Match
        {
            return Err(ApiError::WrongPassword);
        }
        let hash = state.hasher.hash(new_password).await?;
        let now = now_millis();
        // Under the row lock: the password checked above must still be the current one (a
        // concurrent change wins, and this one is refused), and `last_password_change` moves
        // strictly forward even when the clock does not, so that every token obtained with
        // the old password names a change that is no longer current.
        let mut tx = state.pool.begin().await?;
        // language=PostgreSQL
        let locked: Option<String> =
            sqlx::query_scalar("select password_hash from users where id = $1 for update")
                .bind(me.id)
                .fetch_optional(&mut *tx)
                .await?;
        if locked != stored {
            return Err(ApiError::WrongPassword);
        }
        // language=PostgreSQL
        let changed: NaiveDateTime = sqlx::query_scalar(
            "update users set password_hash = $2, \
                 last_password_change = greatest($3, last_password_change + interval '1 microsecond') \
             where id = $1 returning last_password_change",
        )
        .bind(me.id)
        .bind(&hash)
        .bind(now.naive_utc())
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        tracing::info!(user_id = me.id, "password changed; older tokens revoked");
        Ok(Json(
            state.jwt.issue(me.id, Some(changed.and_utc()), now)?.into(),
        ))
    }

    /// Deletes the account; its profile goes with it.
    #[oai(path = "/api/users/me", method = "delete", operation_id = "delete_me")]
    async fn delete(&self, state: Data<&State>, auth: BearerAuth) -> Result<Deleted, ApiError> {
        let me = authenticate(&state, &auth).await?;
        // language=PostgreSQL
        sqlx::query("delete from users where id = $1")
            .bind(me.id)
            .execute(&state.pool)
            .await?;
        tracing::info!(user_id = me.id, username = %me.username, "account deleted");
        Ok(Deleted::NoContent)
    }
}
