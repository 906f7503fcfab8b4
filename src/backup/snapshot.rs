//! One consistent view of the database for a backup: a read-only repeatable-read transaction
//! whose snapshot is exported for `pg_dump --snapshot`, so that the dump, the row counts and
//! the schema version in the manifest all describe the same instant. A migration running at
//! the time is either wholly in the snapshot (committed before it) or not at all.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use sqlx::{Connection, PgConnection, Row};

use crate::config::DatabaseSettings;

/// An open snapshot transaction and what was read in it.
pub(crate) struct Snapshot {
    conn: PgConnection,
    /// The exported snapshot's id, for `pg_dump --snapshot=ID`.
    pub id: String,
    /// When the snapshot was taken (the server's clock).
    pub time: DateTime<Utc>,
    /// The database's name.
    pub database: String,
    /// The newest applied migration version, `None` without history.
    pub schema_version: Option<String>,
    /// Rows per table, `schema.table`.
    pub tables: BTreeMap<String, i64>,
}

impl Snapshot {
    /// Opens the transaction, exports its snapshot, and reads the schema version and the row
    /// count of every table in it.
    pub(crate) async fn take(settings: &DatabaseSettings) -> anyhow::Result<Snapshot> {
        let mut conn = crate::db::connect(settings).await?;
        sqlx::query("begin isolation level repeatable read, read only")
            .execute(&mut conn)
            .await?;
        let row = sqlx::query(
            "select pg_export_snapshot() as id, now() as time, current_database() as db",
        )
        .fetch_one(&mut conn)
        .await?;
        let id: String = row.try_get("id")?;
        let time: DateTime<Utc> = row.try_get("time")?;
        let database: String = row.try_get("db")?;
        let status = crate::migrate::schema_status(&mut conn).await?;
        let tables = count_rows(&mut conn).await?;
        Ok(Snapshot {
            conn,
            id,
            time,
            database,
            schema_version: status.applied,
            tables,
        })
    }

    /// Ends the transaction (nothing was written) and closes the connection.
    pub(crate) async fn finish(mut self) {
        let _ = sqlx::query("rollback").execute(&mut self.conn).await;
        let _ = self.conn.close().await;
    }
}

/// The row count of every ordinary and partitioned table outside PostgreSQL's own schemas.
pub(crate) async fn count_rows(
    conn: &mut PgConnection,
) -> Result<BTreeMap<String, i64>, sqlx::Error> {
    let tables: Vec<(String, String)> = sqlx::query_as(
        "select n.nspname::text, c.relname::text from pg_class c \
         join pg_namespace n on n.oid = c.relnamespace \
         where c.relkind in ('r', 'p') \
           and n.nspname not in ('pg_catalog', 'information_schema') \
           and n.nspname not like 'pg\\_toast%' and n.nspname not like 'pg\\_temp\\_%' \
         order by 1, 2",
    )
    .fetch_all(&mut *conn)
    .await?;
    let mut counts = BTreeMap::new();
    for (schema, table) in tables {
        let sql = format!(
            "select count(*) from {}.{}",
            quote_ident(&schema),
            quote_ident(&table)
        );
        // Both names are quoted identifiers read from pg_class itself.
        let count: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .fetch_one(&mut *conn)
            .await?;
        counts.insert(format!("{schema}.{table}"), count);
    }
    Ok(counts)
}

fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// How a restored database differs from the manifest of its backup: one line per table whose
/// row count differs, is missing, or was not in the backup. Empty when they agree.
pub(crate) async fn compare_counts(
    conn: &mut PgConnection,
    expected: &BTreeMap<String, i64>,
) -> Result<Vec<String>, sqlx::Error> {
    let actual = count_rows(conn).await?;
    let mut problems = Vec::new();
    for (table, want) in expected {
        match actual.get(table) {
            Some(got) if got == want => {}
            Some(got) => problems.push(format!("{table} has {got} rows, the backup had {want}")),
            None => problems.push(format!("{table} is missing (the backup had {want} rows)")),
        }
    }
    for table in actual.keys().filter(|t| !expected.contains_key(*t)) {
        problems.push(format!("{table} was not in the backup"));
    }
    Ok(problems)
}
