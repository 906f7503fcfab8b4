//! The migration lock: Flyway's own PostgreSQL advisory lock, so `app migrate` replicas and
//! Flyway exclude each other.
//!
//! Flyway's key is the 64-bit magic number "Flyway" (0x466C79776179) plus Java's
//! `String.hashCode()` of the history table's qualified name. We poll `pg_try_advisory_lock`
//! instead of blocking in `pg_advisory_lock`: the wait is bounded, each poll is a
//! transaction of its own that ends at once (a waiting migrator never holds a snapshot that
//! a concurrent `create index concurrently` would wait for: flyway #3497), and we can say who
//! holds the lock while we wait.

use std::time::{Duration, Instant};

use sqlx::PgConnection;

use super::MigrateError;

/// "Flyway" in ASCII, as a number: the base of Flyway's lock keys.
const FLYWAY_MAGIC: i64 = 0x466C_7977_6179;

/// Pause between two attempts to take the lock.
const POLL: Duration = Duration::from_millis(200);

/// How often the wait is logged.
const LOG_EVERY: Duration = Duration::from_secs(5);

/// Java's `String.hashCode()`: `s[0]*31^(n-1) + ... + s[n-1]` over UTF-16 code units,
/// wrapping in 32 bits.
pub(super) fn java_hash_code(s: &str) -> i32 {
    s.encode_utf16().fold(0i32, |h, unit| {
        h.wrapping_mul(31).wrapping_add(i32::from(unit))
    })
}

/// Flyway's advisory lock key for a history table named `qualified`
/// (`"public"."flyway_schema_history"`).
pub(crate) fn flyway_key(qualified: &str) -> i64 {
    FLYWAY_MAGIC + i64::from(java_hash_code(qualified))
}

/// A session-level advisory lock this connection holds. Release it with [`Lock::release`];
/// if the process dies first, PostgreSQL releases it with the connection.
#[derive(Debug)]
#[must_use = "the lock must be released"]
pub(super) struct Lock {
    key: i64,
}

impl Lock {
    /// Takes the lock, polling until `timeout` has passed (zero: a single attempt).
    pub(super) async fn acquire(
        conn: &mut PgConnection,
        key: i64,
        timeout: Duration,
    ) -> Result<Lock, MigrateError> {
        let started = Instant::now();
        let mut last_log: Option<Instant> = None;
        loop {
            // language=PostgreSQL
            let got: bool = sqlx::query_scalar("select pg_try_advisory_lock($1)")
                .bind(key)
                .fetch_one(&mut *conn)
                .await?;
            if got {
                if last_log.is_some() {
                    tracing::info!(
                        waited_ms = started.elapsed().as_millis() as u64,
                        "migration lock acquired"
                    );
                }
                return Ok(Lock { key });
            }
            let waited = started.elapsed();
            if waited >= timeout {
                let holder = holder(conn, key).await.unwrap_or_else(|e| {
                    tracing::debug!(error = %e, "could not look up the lock holder");
                    None
                });
                return Err(MigrateError::LockTimeout {
                    waited,
                    holder: holder.unwrap_or_else(|| "unknown (it may just have finished)".into()),
                });
            }
            if last_log.is_none_or(|t| t.elapsed() >= LOG_EVERY) {
                let holder = holder(conn, key).await.ok().flatten();
                tracing::info!(
                    holder = holder.as_deref().unwrap_or("unknown"),
                    waited_ms = waited.as_millis() as u64,
                    timeout_ms = timeout.as_millis() as u64,
                    "waiting for the migration lock held by another migrator"
                );
                last_log = Some(Instant::now());
            }
            tokio::time::sleep(POLL.min(timeout - waited)).await;
        }
    }

    /// Releases the lock.
    pub(super) async fn release(self, conn: &mut PgConnection) -> Result<(), sqlx::Error> {
        // language=PostgreSQL
        let released: bool = sqlx::query_scalar("select pg_advisory_unlock($1)")
            .bind(self.key)
            .fetch_one(&mut *conn)
            .await?;
        if !released {
            tracing::warn!(key = self.key, "the migration lock was not held at release");
        }
        Ok(())
    }
}

/// pid, application_name, user, client address, state, seconds since connecting.
type HolderRow = (
    i32,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<f64>,
);

/// Who holds the advisory lock `key` in this database: pid, application, user, client and
/// how long its current state has lasted, from `pg_locks` and `pg_stat_activity`.
pub(super) async fn holder(
    conn: &mut PgConnection,
    key: i64,
) -> Result<Option<String>, sqlx::Error> {
    // A bigint advisory key is stored as classid = high 32 bits, objid = low 32 bits.
    let bits = key as u64;
    let (classid, objid) = (i64::from((bits >> 32) as u32), i64::from(bits as u32));
    // language=PostgreSQL
    let row: Option<HolderRow> = sqlx::query_as(
        "select l.pid, a.application_name, a.usename::text, a.client_addr::text, a.state,
                    extract(epoch from now() - a.backend_start)::float8
               from pg_catalog.pg_locks l
               left join pg_catalog.pg_stat_activity a on a.pid = l.pid
              where l.locktype = 'advisory' and l.granted
                and l.database = (select oid from pg_catalog.pg_database
                                   where datname = current_database())
                and l.classid = $1::bigint::oid and l.objid = $2::bigint::oid
                and l.objsubid = 1
              limit 1",
    )
    .bind(classid)
    .bind(objid)
    .fetch_optional(&mut *conn)
    .await?;
    Ok(row.map(|(pid, app, user, client, state, age)| {
        let app = app
            .filter(|a| !a.is_empty())
            .unwrap_or_else(|| "no application_name".into());
        format!(
            "pid {pid} ({app}, user {}, client {}, {}, connected {}s ago)",
            user.as_deref().unwrap_or("?"),
            client.as_deref().unwrap_or("local"),
            state.as_deref().unwrap_or("?"),
            age.map_or_else(|| "?".into(), |a| format!("{a:.0}")),
        )
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn java_hash_code_matches_java() {
        assert_eq!(java_hash_code(""), 0);
        assert_eq!(java_hash_code("a"), 97);
        // "hello".hashCode() == 99162322 in Java.
        assert_eq!(java_hash_code("hello"), 99_162_322);
        // Wraps like Java's int: "polygenelubricants".hashCode() == Integer.MIN_VALUE.
        assert_eq!(java_hash_code("polygenelubricants"), i32::MIN);
    }

    #[test]
    fn the_public_key_is_flywayss() {
        assert_eq!(FLYWAY_MAGIC, 77_431_708_279_161);
        assert_eq!(
            flyway_key("\"public\".\"flyway_schema_history\""),
            77_433_833_903_597
        );
    }
}
