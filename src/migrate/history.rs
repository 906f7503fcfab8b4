//! Flyway's `flyway_schema_history` table: created with Flyway's own DDL, read tolerating
//! every row type Flyway writes, and appended to exactly as Flyway would.

use chrono::NaiveDateTime;
use sqlx::{AssertSqlSafe, PgConnection, Row};

use super::version::Version;

/// The table's name, as Flyway names it.
pub(super) const TABLE: &str = "flyway_schema_history";

/// Description and script of a baseline row, as Flyway writes them.
pub(crate) const BASELINE_DESCRIPTION: &str = "<< Flyway Baseline >>";

/// Quotes an identifier for PostgreSQL.
pub(super) fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `"schema"."flyway_schema_history"`: the qualified name, and the string whose Java
/// `hashCode` Flyway adds to its lock key.
pub(super) fn qualified(schema: &str) -> String {
    format!("{}.{}", quote_ident(schema), quote_ident(TABLE))
}

/// The `type` column: what a history row records. Stored as Flyway's text; the kinds we
/// never write (`JDBC`, `UNDO_SQL`, `SQL_BASELINE`, ...) are kept as read, so `info` shows
/// them and nothing is lost.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Kind {
    /// `SQL`: a versioned SQL migration, the only kind `app migrate` applies.
    Sql,
    /// `BASELINE`: the schema was taken as it stood up to this version.
    Baseline,
    /// `SCHEMA`: Flyway's marker that it created the schema; carries no version.
    Schema,
    /// `DELETE`: Flyway's `repair` took the version back out.
    Delete,
    /// Any other kind, as stored.
    Other(String),
}

impl Kind {
    /// The text in the `type` column.
    pub(crate) fn as_str(&self) -> &str {
        match self {
            Kind::Sql => "SQL",
            Kind::Baseline => "BASELINE",
            Kind::Schema => "SCHEMA",
            Kind::Delete => "DELETE",
            Kind::Other(other) => other,
        }
    }

    /// Whether the row records a baseline (`BASELINE`, `SQL_BASELINE`, `JDBC_BASELINE`).
    pub(crate) fn is_baseline(&self) -> bool {
        self.as_str().ends_with("BASELINE")
    }

    /// Whether the row takes its version back out (`DELETE`, `UNDO_SQL`, `UNDO_JDBC`, ...),
    /// as Flyway's `repair` and `undo` mean them to.
    pub(crate) fn is_removal(&self) -> bool {
        matches!(self, Kind::Delete) || self.as_str().starts_with("UNDO")
    }
}

impl From<String> for Kind {
    fn from(text: String) -> Self {
        match text.as_str() {
            "SQL" => Kind::Sql,
            "BASELINE" => Kind::Baseline,
            "SCHEMA" => Kind::Schema,
            "DELETE" => Kind::Delete,
            _ => Kind::Other(text),
        }
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One row of the history, as stored.
#[derive(Debug, Clone)]
pub(crate) struct HistoryRow {
    /// Flyway's ordering key.
    pub installed_rank: i32,
    /// Null for repeatable migrations and Flyway's `SCHEMA` marker.
    pub version: Option<String>,
    /// From the file name.
    pub description: String,
    /// What the row records.
    pub kind: Kind,
    /// The file name.
    pub script: String,
    /// Flyway's checksum; null for baselines.
    pub checksum: Option<i32>,
    /// When it was applied.
    pub installed_on: NaiveDateTime,
    /// False when the migration failed half-way (left by Flyway or a non-transactional run).
    pub success: bool,
}

impl HistoryRow {
    /// The version, parsed; `None` for rows without one or with one Flyway would not write.
    pub(crate) fn parsed_version(&self) -> Option<Version> {
        self.version.as_deref().and_then(|v| Version::parse(v).ok())
    }

    /// Whether this row records a baseline (`BASELINE`, `SQL_BASELINE`, `JDBC_BASELINE`).
    pub(crate) fn is_baseline(&self) -> bool {
        self.kind.is_baseline()
    }
}

/// The schema new tables land in (the first schema of the search path).
pub(super) async fn current_schema(conn: &mut PgConnection) -> Result<String, sqlx::Error> {
    // language=PostgreSQL
    let schema: Option<String> = sqlx::query_scalar("select current_schema()")
        .fetch_one(&mut *conn)
        .await?;
    // With no usable schema on the search path, `public` is where Flyway would look.
    Ok(schema.unwrap_or_else(|| "public".to_owned()))
}

/// Whether the history table exists in `schema`.
pub(super) async fn exists(conn: &mut PgConnection, schema: &str) -> Result<bool, sqlx::Error> {
    // language=PostgreSQL
    sqlx::query_scalar(
        "select exists (select 1 from pg_catalog.pg_tables where schemaname = $1 and tablename = $2)",
    )
    .bind(schema)
    .bind(TABLE)
    .fetch_one(&mut *conn)
    .await
}

/// Whether `schema` holds anything of its own: tables, views, sequences, functions, types.
/// Flyway refuses to migrate such a schema without a history table unless told to baseline.
pub(super) async fn schema_is_empty(
    conn: &mut PgConnection,
    schema: &str,
) -> Result<bool, sqlx::Error> {
    // language=PostgreSQL
    let sql = "
        select not exists (
            select 1 from pg_catalog.pg_class c
             where c.relnamespace = to_regnamespace($1)
               and c.relkind in ('r', 'p', 'v', 'm', 'S', 'f')
            union all
            select 1 from pg_catalog.pg_proc p where p.pronamespace = to_regnamespace($1)
            union all
            select 1 from pg_catalog.pg_type t
             where t.typnamespace = to_regnamespace($1)
               and (t.typtype in ('e', 'd', 'r', 'm')
                    or (t.typtype = 'c' and (select relkind from pg_catalog.pg_class
                                              where oid = t.typrelid) = 'c'))
        )";
    sqlx::query_scalar(sql)
        .bind(schema)
        .fetch_one(&mut *conn)
        .await
}

/// Creates the table with Flyway's DDL for PostgreSQL (same columns, primary key and index
/// names), unless it exists.
pub(super) async fn create(conn: &mut PgConnection, schema: &str) -> Result<(), sqlx::Error> {
    let table = qualified(schema);
    // language=PostgreSQL
    let ddl = format!(
        "create table if not exists {table} (
            installed_rank integer not null,
            version varchar(50),
            description varchar(200) not null,
            type varchar(20) not null,
            script varchar(1000) not null,
            checksum integer,
            installed_by varchar(100) not null,
            installed_on timestamp not null default now(),
            execution_time integer not null,
            success boolean not null,
            constraint flyway_schema_history_pk primary key (installed_rank)
        );
        create index if not exists flyway_schema_history_s_idx on {table} (success);"
    );
    sqlx::raw_sql(AssertSqlSafe(ddl))
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Every row, by `installed_rank`.
pub(super) async fn read(
    conn: &mut PgConnection,
    schema: &str,
) -> Result<Vec<HistoryRow>, sqlx::Error> {
    // language=PostgreSQL
    let sql = format!(
        "select installed_rank, version, description, type, script, checksum, installed_on,
                success
           from {} order by installed_rank",
        qualified(schema)
    );
    let rows = sqlx::query(AssertSqlSafe(sql))
        .fetch_all(&mut *conn)
        .await?;
    rows.into_iter()
        .map(|r| {
            Ok(HistoryRow {
                installed_rank: r.try_get("installed_rank")?,
                version: r.try_get("version")?,
                description: r.try_get("description")?,
                kind: Kind::from(r.try_get::<String, _>("type")?),
                script: r.try_get("script")?,
                checksum: r.try_get("checksum")?,
                installed_on: r.try_get("installed_on")?,
                success: r.try_get("success")?,
            })
        })
        .collect()
}

/// What a new row says; rank, user and time are filled in by the database.
#[derive(Debug, Clone)]
pub(super) struct NewRow<'a> {
    /// Version as written in the file name (`2.1`); empty for a repeatable migration,
    /// written as null as Flyway writes it.
    pub version: &'a str,
    pub description: &'a str,
    /// [`Kind::Sql`] or [`Kind::Baseline`].
    pub kind: Kind,
    /// File name, or `<< Flyway Baseline >>`.
    pub script: &'a str,
    /// Checksum; none for a baseline.
    pub checksum: Option<i32>,
    /// Milliseconds.
    pub execution_time: i32,
    /// Whether it completed.
    pub success: bool,
}

/// Appends a row with the next `installed_rank` (the caller holds the migration lock).
pub(super) async fn insert(
    conn: &mut PgConnection,
    schema: &str,
    row: &NewRow<'_>,
) -> Result<(), sqlx::Error> {
    let table = qualified(schema);
    // language=PostgreSQL
    let sql = format!(
        "insert into {table} (installed_rank, version, description, type, script, checksum,
                              installed_by, execution_time, success)
         select coalesce(max(installed_rank), 0) + 1, $1, $2, $3, $4, $5, session_user, $6, $7
           from {table}"
    );
    sqlx::query(AssertSqlSafe(sql))
        .bind(Some(row.version).filter(|v| !v.is_empty()))
        .bind(truncate(row.description, 200))
        .bind(row.kind.as_str())
        .bind(row.script)
        .bind(row.checksum)
        .bind(row.execution_time)
        .bind(row.success)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Flyway's description column holds 200 characters; Flyway abbreviates longer ones.
fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}
