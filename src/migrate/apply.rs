//! Runs one migration: in a single transaction together with its history row, or, for
//! scripts PostgreSQL refuses in a transaction, statement by statement in autocommit.

use std::time::Instant;

use sqlx::postgres::{PgDatabaseError, PgErrorPosition};
use sqlx::{AssertSqlSafe, Connection, PgConnection};

use super::MigrateError;
use super::callback::Callbacks;
use super::error::SqlFailure;
use super::history::{self, Kind, NewRow};
use super::script::Migration;
use super::split::Statement;

/// What the database was left with after a failure inside a transaction.
const ROLLED_BACK: &str = "the migration was rolled back completely and no history row was written";

/// What the database was left with after a non-transactional failure.
const HALF_DONE: &str = "the migration ran outside a transaction, so the statements before \
    the failing one took effect (and a failed `concurrently` statement leaves an INVALID \
    index); a failed row now blocks further migrations until you clean up and delete it";

/// What the database was left with after a callback (`beforeMigrate.sql`, ...) failed.
const CALLBACK_FAILED: &str = "a callback failed; it ran in a transaction of its own, which \
    was rolled back (unless its statements cannot run in one)";

/// Runs callback scripts (`beforeMigrate.sql`, ...) in name order, each in a transaction of
/// its own when its statements allow one. No history row is written.
pub(super) async fn run_callbacks(
    conn: &mut PgConnection,
    scripts: &[Migration],
) -> Result<(), MigrateError> {
    for cb in scripts {
        tracing::info!(callback = %cb.script, "executing SQL callback {}", cb.description);
        if cb.in_transaction(u32::MAX).unwrap_or(false) {
            let mut tx = conn.begin().await?;
            for stmt in &cb.statements {
                if let Err(e) = execute(&mut tx, stmt).await {
                    let _ = tx.rollback().await;
                    return Err(failure(cb, stmt, e, CALLBACK_FAILED));
                }
            }
            tx.commit().await?;
        } else {
            for stmt in &cb.statements {
                execute(conn, stmt)
                    .await
                    .map_err(|e| failure(cb, stmt, e, CALLBACK_FAILED))?;
            }
        }
    }
    Ok(())
}

/// The statements of `scripts` (callbacks), in order, with the script each belongs to.
fn statements_of(scripts: &[Migration]) -> impl Iterator<Item = (&Migration, &Statement)> {
    scripts
        .iter()
        .flat_map(|cb| cb.statements.iter().map(move |s| (cb, s)))
}

/// Applies `m` and records it; returns the execution time in milliseconds. The
/// `beforeEachMigrate` and `afterEachMigrate` callbacks of `each` run around it, inside its
/// transaction when it has one.
pub(super) async fn apply(
    conn: &mut PgConnection,
    schema: &str,
    m: &Migration,
    in_transaction: bool,
    each: &Callbacks,
) -> Result<i32, MigrateError> {
    let steps = || {
        statements_of(&each.before_each)
            .chain(m.statements.iter().map(|s| (m, s)))
            .chain(statements_of(&each.after_each))
    };
    let started = Instant::now();
    let row = |ms: i32, success: bool| NewRow {
        version: if m.repeatable { "" } else { m.version.as_str() },
        description: &m.description,
        kind: Kind::Sql,
        script: &m.script,
        checksum: Some(m.checksum),
        execution_time: ms,
        success,
    };
    if in_transaction {
        let mut tx = conn.begin().await?;
        for (script, stmt) in steps() {
            if let Err(e) = execute(&mut tx, stmt).await {
                // Roll back before reporting, so the lock is released on a clean session.
                let _ = tx.rollback().await;
                return Err(failure(script, stmt, e, ROLLED_BACK));
            }
        }
        let ms = elapsed_ms(started);
        history::insert(&mut tx, schema, &row(ms, true)).await?;
        tx.commit().await?;
        Ok(ms)
    } else {
        for (script, stmt) in steps() {
            if let Err(e) = execute(conn, stmt).await {
                let err = failure(script, stmt, e, HALF_DONE);
                if matches!(err, MigrateError::Failed(_)) {
                    history::insert(conn, schema, &row(elapsed_ms(started), false)).await?;
                }
                return Err(err);
            }
        }
        let ms = elapsed_ms(started);
        history::insert(conn, schema, &row(ms, true)).await?;
        Ok(ms)
    }
}

async fn execute(conn: &mut PgConnection, stmt: &Statement) -> Result<(), sqlx::Error> {
    sqlx::raw_sql(AssertSqlSafe(stmt.sql.as_str()))
        .execute(conn)
        .await
        .map(|_| ())
}

fn elapsed_ms(started: Instant) -> i32 {
    i32::try_from(started.elapsed().as_millis()).unwrap_or(i32::MAX)
}

/// Turns a statement's error into [`MigrateError::Failed`] naming file, line, message and
/// SQLSTATE; errors that are not PostgreSQL's (a lost connection) stay database errors.
pub(super) fn failure(
    m: &Migration,
    stmt: &Statement,
    err: sqlx::Error,
    outcome: &'static str,
) -> MigrateError {
    let sqlx::Error::Database(db) = &err else {
        return MigrateError::Database(err);
    };
    let Some(pg) = db.try_downcast_ref::<PgDatabaseError>() else {
        return MigrateError::Database(err);
    };
    let line = match pg.position() {
        Some(PgErrorPosition::Original(pos)) => stmt.line + lines_before(&stmt.sql, pos),
        _ => stmt.line,
    };
    MigrateError::Failed(Box::new(SqlFailure {
        script: m.script.clone(),
        line,
        message: pg.message().to_owned(),
        sqlstate: pg.code().to_owned(),
        detail: pg.detail().map(str::to_owned),
        hint: pg.hint().map(str::to_owned),
        outcome,
    }))
}

/// How many line breaks precede the 1-based character position `pos` of `sql`.
fn lines_before(sql: &str, pos: usize) -> usize {
    sql.chars()
        .take(pos.saturating_sub(1))
        .filter(|&c| c == '\n')
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_positions_become_lines() {
        let sql = "select 1,\n  2,\n  nope";
        let pos = sql.find("nope").unwrap() + 1;
        assert_eq!(lines_before(sql, pos), 2);
        assert_eq!(lines_before(sql, 1), 0);
        assert_eq!(
            lines_before("é\nx", 3),
            1,
            "positions count characters, not bytes"
        );
    }
}
