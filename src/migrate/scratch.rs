//! Building the migrations in a scratch schema, to see what they produce: the proof behind
//! `app migrate repair` and `app migrate adopt`.
//!
//! Why a scratch *schema* rolled back with a savepoint, not a scratch database: the
//! migrations name no schema (they follow `search_path`), a schema needs no `createdb`
//! privilege, and a rolled-back savepoint cleans up on every path, even when the process is
//! killed half-way (the server rolls the transaction back). The cost: statements PostgreSQL
//! refuses in a transaction cannot run there; `create/drop index concurrently` is built
//! without `concurrently` (the same index), the others change no schema object and are
//! skipped. Extensions installed in another schema are not visible to the scratch build.

use sqlx::{AssertSqlSafe, PgConnection};

use super::catalog::{self, Origins, Snapshot};
use super::script::Kind;
use super::source::Migrations;
use super::version::Version;
use super::{MigrateError, apply, history};

/// Prefix of the scratch schema the expected schema is built in.
pub(super) const SCRATCH_PREFIX: &str = "app_adopt_";

/// The scratch schema after one migration.
#[derive(Debug, Clone)]
pub(super) struct Step {
    /// The migration's version.
    pub version: Version,
    /// Its file name.
    pub script: String,
    /// The scratch schema's catalog once it ran.
    pub snapshot: Snapshot,
    /// Which migration created or dropped each object, up to this one.
    pub origins: Origins,
}

/// A fresh scratch schema name.
pub(super) fn name() -> String {
    format!("{SCRATCH_PREFIX}{:016x}", rand::random::<u64>())
}

/// Builds the versioned migrations up to `up_to` (all of them when `None`) in a new schema
/// `scratch`, returning the catalog after each. The caller runs this inside a savepoint and
/// rolls it back: the scratch schema and the `search_path` changes go with it.
pub(super) async fn build(
    conn: &mut PgConnection,
    scratch: &str,
    migrations: &Migrations,
    up_to: Option<&Version>,
) -> Result<Vec<Step>, MigrateError> {
    // language=PostgreSQL
    sqlx::raw_sql(AssertSqlSafe(format!(
        "create schema {}",
        history::quote_ident(scratch)
    )))
    .execute(&mut *conn)
    .await?;
    let mut steps: Vec<Step> = Vec::new();
    for m in migrations
        .all()
        .iter()
        .filter(|m| up_to.is_none_or(|u| m.version <= *u))
    {
        // Each migration's statements see only the scratch schema (and pg_catalog).
        // language=PostgreSQL
        sqlx::query("select set_config('search_path', quote_ident($1), true)")
            .bind(scratch)
            .execute(&mut *conn)
            .await?;
        for (stmt, kind) in m.statements.iter().zip(&m.kinds) {
            let Some(sql) = scratch_sql(&stmt.sql, *kind) else {
                tracing::debug!(script = %m.script, line = stmt.line, "not run in the scratch schema");
                continue;
            };
            if let Err(e) = sqlx::raw_sql(AssertSqlSafe(sql)).execute(&mut *conn).await {
                return Err(apply::failure(
                    m,
                    stmt,
                    e,
                    "while building the expected schema in a scratch schema for comparison \
                     (rolled back; the live schema and its history are unchanged)",
                ));
            }
        }
        let after = catalog::snapshot(conn, scratch).await?;
        let (before, mut origins) = steps
            .last()
            .map(|s| (s.snapshot.clone(), s.origins.clone()))
            .unwrap_or_default();
        origins.record(&before, &after, &m.script);
        steps.push(Step {
            version: m.version.clone(),
            script: m.script.clone(),
            snapshot: after,
            origins,
        });
    }
    Ok(steps)
}

/// The statement as the scratch build runs it, or `None` to skip it.
pub(super) fn scratch_sql(sql: &str, kind: Kind) -> Option<String> {
    match kind {
        Kind::Transactional | Kind::AddEnumValue => Some(sql.to_owned()),
        Kind::NonTransactional("create/drop index concurrently") => {
            // The same index without `concurrently`, which a transaction allows.
            let at = sql.to_ascii_lowercase().find("concurrently")?;
            Some(format!(
                "{}{}",
                &sql[..at],
                &sql[at + "concurrently".len()..]
            ))
        }
        // vacuum, reindex, alter system, databases, tablespaces, subscriptions, discard:
        // nothing in the schema to compare, and nothing that should run twice.
        Kind::NonTransactional(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn concurrently_is_dropped_for_the_scratch_build_only_where_it_is_safe() {
        let k = Kind::NonTransactional("create/drop index concurrently");
        assert_eq!(
            scratch_sql("create index CONCURRENTLY i on t (c)", k).as_deref(),
            Some("create index  i on t (c)")
        );
        assert_eq!(
            scratch_sql("vacuum t", Kind::NonTransactional("vacuum")),
            None
        );
    }
}
