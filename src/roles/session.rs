//! The role model on a live connection: `migrate` working as the owner role and granting the
//! runtime role, and `app db roles` applying its statements.

use sqlx::{AssertSqlSafe, Connection, PgConnection};

use super::{RoleName, RolesError, sql};

/// Makes the session work as `owner` (`set role`), so every object it creates belongs to the
/// owner role whichever login of the pair runs it. Flyway's `installed_by` still records the
/// login (`session_user`).
pub(crate) async fn assume_owner(
    conn: &mut PgConnection,
    owner: &RoleName,
) -> Result<(), RolesError> {
    // language=PostgreSQL
    let (login, exists, member): (String, bool, bool) = sqlx::query_as(
        "select session_user::text,
                exists (select from pg_catalog.pg_roles where rolname = $1),
                exists (select from pg_catalog.pg_roles where rolname = $1)
                  and pg_catalog.pg_has_role(session_user, $1, 'member')",
    )
    .bind(owner.as_str())
    .fetch_one(&mut *conn)
    .await?;
    if !member {
        let reason = if exists {
            format!("{login} is not a member of {owner}")
        } else {
            format!("there is no role {owner}")
        };
        return Err(RolesError::NotMember {
            login,
            role: owner.to_string(),
            reason,
        });
    }
    // language=PostgreSQL
    sqlx::raw_sql(AssertSqlSafe(format!("set role {}", owner.ident())))
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// (Re)grants the runtime role its privileges, in one transaction. Cheap, idempotent.
pub(crate) async fn grant_runtime(
    conn: &mut PgConnection,
    schema: &str,
    owner: Option<&RoleName>,
    runtime: &RoleName,
) -> Result<(), sqlx::Error> {
    let mut tx = conn.begin().await?;
    for statement in sql::runtime_grants(schema, owner, runtime) {
        sqlx::raw_sql(AssertSqlSafe(statement))
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await
}

/// Refuses an admin connection that can neither create roles nor is a superuser.
pub(crate) async fn check_admin(conn: &mut PgConnection) -> Result<(), RolesError> {
    // language=PostgreSQL
    let (user, allowed): (String, bool) = sqlx::query_as(
        "select current_user::text, rolsuper or rolcreaterole from pg_catalog.pg_roles \
         where rolname = current_user",
    )
    .fetch_one(&mut *conn)
    .await?;
    if allowed {
        return Ok(());
    }
    Err(RolesError::AdminPrivilege {
        user,
        detail: "neither SUPERUSER nor CREATEROLE".into(),
    })
}

/// Whether a role of that name exists.
pub(crate) async fn exists(conn: &mut PgConnection, name: &RoleName) -> Result<bool, sqlx::Error> {
    // language=PostgreSQL
    sqlx::query_scalar("select exists (select from pg_catalog.pg_roles where rolname = $1)")
        .bind(name.as_str())
        .fetch_one(&mut *conn)
        .await
}

/// Runs `statements` in one transaction: all of them or none. A permission error names the
/// admin login and the fix.
pub(crate) async fn apply(
    conn: &mut PgConnection,
    statements: &[String],
) -> Result<(), RolesError> {
    let mut tx = conn.begin().await?;
    for statement in statements {
        if let Err(err) = sqlx::raw_sql(AssertSqlSafe(statement.as_str()))
            .execute(&mut *tx)
            .await
        {
            if let sqlx::Error::Database(db) = &err
                && db.code().as_deref() == Some("42501")
            {
                let detail = db.message().to_owned();
                drop(tx);
                // language=PostgreSQL
                let user: String = sqlx::query_scalar("select current_user::text")
                    .fetch_one(&mut *conn)
                    .await?;
                return Err(RolesError::AdminPrivilege { user, detail });
            }
            return Err(err.into());
        }
    }
    tx.commit().await?;
    Ok(())
}

/// Ends the sessions of `name`; returns how many there were.
pub(crate) async fn terminate(
    conn: &mut PgConnection,
    name: &RoleName,
) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(AssertSqlSafe(sql::terminate(name)))
        .fetch_one(&mut *conn)
        .await
}
