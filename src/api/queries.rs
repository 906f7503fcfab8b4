//! The SQL more than one resource runs to read a user: which columns make a [`User`] with
//! their profile, and how such a row becomes one. Written once, so that the directory, the
//! account operations and whatever comes next read a user the same way, and none of them
//! selects `password_hash`.

use chrono::NaiveDateTime;

use super::bodies::{Profile, User};

/// The columns a [`UserRow`] reads, in its order, from `users u` and a profile `p`.
macro_rules! user_columns {
    () => {
        // language=PostgreSQL
        "u.id, u.username, u.created_at, p.user_id is not null as has_profile, \
         p.email, p.name, p.location, p.bio, p.personality_type, \
         p.created_at as profile_created_at, p.updated_at as profile_updated_at"
    };
}
pub(crate) use user_columns;

/// Selects [`user_columns!`] from every user, with their profile if they have one; an
/// argument adds to the join condition.
macro_rules! select_user {
    () => {
        $crate::api::queries::select_user!("")
    };
    ($join:literal) => {
        concat!(
            // language=PostgreSQL
            "select ",
            $crate::api::queries::user_columns!(),
            " from users u left join user_profiles p on p.user_id = u.id",
            $join
        )
    };
}
pub(crate) use select_user;

/// One row of [`user_columns!`].
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct UserRow {
    id: i32,
    username: String,
    created_at: Option<NaiveDateTime>,
    has_profile: bool,
    email: Option<String>,
    name: Option<String>,
    location: Option<String>,
    bio: Option<String>,
    personality_type: Option<String>,
    profile_created_at: Option<NaiveDateTime>,
    profile_updated_at: Option<NaiveDateTime>,
}

impl From<UserRow> for User {
    fn from(row: UserRow) -> User {
        let utc = |t: Option<NaiveDateTime>| t.map(|t| t.and_utc());
        let user_profiles = row.has_profile.then(|| Profile {
            email: Some(row.email.unwrap_or_default()),
            name: row.name,
            location: row.location,
            bio: row.bio,
            personality_type: row.personality_type,
            created_at: utc(row.profile_created_at),
            updated_at: utc(row.profile_updated_at),
        });
        User {
            id: row.id,
            username: row.username,
            created_at: utc(row.created_at),
            user_profiles,
        }
    }
}

/// Loads one user with their profile by id.
pub(crate) async fn by_id(
    executor: impl sqlx::PgExecutor<'_>,
    id: i32,
) -> Result<Option<User>, sqlx::Error> {
    // language=PostgreSQL
    let row: Option<UserRow> = sqlx::query_as(concat!(select_user!(), " where u.id = $1"))
        .bind(id)
        .fetch_optional(executor)
        .await?;
    Ok(row.map(User::from))
}
