//! One migration script: its Flyway name parts, checksum, statements, and whether it must run
//! outside a transaction.
//!
//! PostgreSQL refuses some statements inside a transaction block. Flyway's PostgreSQL parser
//! recognises them by their leading keywords and then runs the whole script without a
//! transaction; a script mixing both kinds is refused. We recognise the same statements.

use super::MigrateError;
use super::checksum::checksum;
use super::placeholder::{self, Builtins, Placeholders};
use super::split::{Statement, split};
use super::version::Version;

/// The first PostgreSQL release (as `server_version_num`) that allows `alter type … add value`
/// inside a transaction.
pub(super) const ADD_VALUE_IN_TRANSACTION: u32 = 120_000;

/// Whether a statement may run inside a transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Ordinary SQL.
    Transactional,
    /// Refused inside a transaction block (`create index concurrently`, `vacuum`, ...).
    NonTransactional(&'static str),
    /// `alter type … add value`: non-transactional only before PostgreSQL 12.
    AddEnumValue,
}

impl Kind {
    /// Whether the statement can run inside a transaction on this server version.
    pub(crate) fn in_transaction(self, server_version_num: u32) -> bool {
        match self {
            Kind::Transactional => true,
            Kind::NonTransactional(_) => false,
            Kind::AddEnumValue => server_version_num >= ADD_VALUE_IN_TRANSACTION,
        }
    }

    /// A short name for messages.
    pub(crate) fn describe(self) -> &'static str {
        match self {
            Kind::Transactional => "transactional statement",
            Kind::NonTransactional(what) => what,
            Kind::AddEnumValue => "alter type ... add value",
        }
    }
}

/// Classifies a statement by its leading words, as Flyway's PostgreSQL parser does.
pub(super) fn classify(words: &[String]) -> Kind {
    let w: Vec<&str> = words.iter().map(String::as_str).collect();
    let has_pair = |a: &str, b: &str| w.windows(2).any(|p| p[0] == a && p[1] == b);
    match w.as_slice() {
        ["CREATE" | "DROP", "DATABASE", ..] => Kind::NonTransactional("create/drop database"),
        ["CREATE" | "DROP", "TABLESPACE", ..] => Kind::NonTransactional("create/drop tablespace"),
        ["CREATE" | "DROP", "SUBSCRIPTION", ..] => {
            Kind::NonTransactional("create/drop subscription")
        }
        ["ALTER", "SYSTEM", ..] => Kind::NonTransactional("alter system"),
        ["CREATE" | "DROP", "INDEX", "CONCURRENTLY", ..]
        | ["CREATE" | "DROP", "UNIQUE", "INDEX", "CONCURRENTLY", ..] => {
            Kind::NonTransactional("create/drop index concurrently")
        }
        ["REINDEX", rest @ ..] => {
            let target = rest.iter().find(|w| **w != "VERBOSE");
            if rest.contains(&"CONCURRENTLY") {
                Kind::NonTransactional("reindex concurrently")
            } else if matches!(target, Some(&"SCHEMA" | &"DATABASE" | &"SYSTEM")) {
                Kind::NonTransactional("reindex schema/database/system")
            } else {
                Kind::Transactional
            }
        }
        ["VACUUM", ..] => Kind::NonTransactional("vacuum"),
        ["DISCARD", "ALL", ..] => Kind::NonTransactional("discard all"),
        ["ALTER", "TYPE", ..] if has_pair("ADD", "VALUE") => Kind::AddEnumValue,
        _ => Kind::Transactional,
    }
}

/// A versioned SQL migration, parsed and checked.
#[derive(Debug, Clone)]
pub struct Migration {
    /// From the file name: `V2_1__x.sql` is 2.1.
    pub version: Version,
    /// From the file name, `_` read as spaces.
    pub description: String,
    /// The file name, as Flyway stores it in `script`.
    pub script: String,
    /// Flyway's checksum of the file's bytes.
    pub checksum: i32,
    /// The statements, in order.
    pub(crate) statements: Vec<Statement>,
    /// Each statement's kind, parallel to `statements`.
    pub(crate) kinds: Vec<Kind>,
    /// The text as read (BOM dropped), before any placeholder replacement.
    pub(crate) text: String,
    /// `R__name.sql`: no version (the `version` field is 0 and unused), re-applied whenever
    /// its checksum changes, after every versioned migration.
    pub(crate) repeatable: bool,
}

impl Migration {
    /// Parses a file named `V<version>__<description>.sql` with the given content.
    pub fn parse(script: &str, bytes: &[u8]) -> Result<Migration, MigrateError> {
        let invalid = |reason: String| MigrateError::InvalidScript {
            script: script.to_owned(),
            reason,
        };
        let repeatable = script.starts_with("R__");
        let (version, description) = if super::callback::Event::of_file(script).is_some() {
            // A callback: no version, no history row; named by its file.
            let stem = script.strip_suffix(".sql").unwrap_or(script);
            (Version::parse("0").map_err(invalid)?, stem.to_owned())
        } else if repeatable {
            let Some(description) = script
                .strip_prefix("R__")
                .and_then(|rest| rest.strip_suffix(".sql"))
                .filter(|d| !d.is_empty())
            else {
                return Err(invalid(
                    "a repeatable migration file name must look like R__<description>.sql".into(),
                ));
            };
            (
                Version::parse("0").map_err(invalid)?,
                description.replace('_', " "),
            )
        } else {
            parse_name(script).map_err(invalid)?
        };
        let checksum = checksum(bytes).map_err(|e| {
            invalid(format!(
                "not valid UTF-8 (first bad byte at offset {})",
                e.at
            ))
        })?;
        // Valid UTF-8, checked by `checksum`.
        let text = std::str::from_utf8(bytes).unwrap_or_default();
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let (statements, kinds) = statements_of(script, text)?;
        let migration = Migration {
            version,
            description,
            script: script.to_owned(),
            checksum,
            statements,
            kinds,
            text: text.to_owned(),
            repeatable,
        };
        // Checked against today's PostgreSQL here, against the real server before running.
        migration.in_transaction(u32::MAX)?;
        Ok(migration)
    }

    /// This migration with its `${placeholders}` replaced, ready to run; the checksum stays
    /// that of the file (Flyway's, for versioned migrations). An unknown placeholder is
    /// [`MigrateError::InvalidScript`] naming the line.
    pub(crate) fn with_placeholders(
        &self,
        placeholders: &Placeholders,
        builtins: &Builtins,
    ) -> Result<Migration, MigrateError> {
        let text = placeholder::replace(&self.text, &self.script, placeholders, builtins).map_err(
            |u| MigrateError::InvalidScript {
                script: self.script.clone(),
                reason: format!(
                    "line {}: no value for placeholder ${{{}}}: set migrate.placeholders.{} \
                     (APP_MIGRATE__PLACEHOLDERS__{}), or turn replacement off with \
                     migrate.placeholder_replacement = false",
                    u.line,
                    u.name,
                    u.name,
                    u.name.to_uppercase()
                ),
            },
        )?;
        let (statements, kinds) = statements_of(&self.script, &text)?;
        // Flyway folds the replaced text into a repeatable migration's checksum only, so a
        // changed value re-applies it.
        let checksum = if self.repeatable && placeholders.replacement {
            checksum(text.as_bytes()).unwrap_or(self.checksum)
        } else {
            self.checksum
        };
        let migration = Migration {
            statements,
            kinds,
            checksum,
            ..self.clone()
        };
        migration.in_transaction(u32::MAX)?;
        Ok(migration)
    }

    /// Whether the script runs in one transaction on this server; an error if it mixes
    /// statements that must run outside a transaction with ones that should run inside.
    pub(crate) fn in_transaction(&self, server_version_num: u32) -> Result<bool, MigrateError> {
        let inside = |k: &Kind| k.in_transaction(server_version_num);
        let first_in = self.kinds.iter().position(inside);
        let first_out = self.kinds.iter().position(|k| !inside(k));
        match (first_in, first_out) {
            (_, None) => Ok(true),
            (None, Some(_)) => Ok(false),
            (Some(a), Some(b)) => Err(MigrateError::MixedScript {
                script: self.script.clone(),
                transactional_line: self.statements[a].line,
                non_transactional_line: self.statements[b].line,
                non_transactional: self.kinds[b].describe(),
            }),
        }
    }
}

/// Splits and classifies a script's text; refuses what a migration cannot carry.
fn statements_of(script: &str, text: &str) -> Result<(Vec<Statement>, Vec<Kind>), MigrateError> {
    let invalid = |reason: String| MigrateError::InvalidScript {
        script: script.to_owned(),
        reason,
    };
    let statements =
        split(text).map_err(|e| invalid(format!("line {}: unterminated {}", e.line, e.what)))?;
    let kinds: Vec<Kind> = statements.iter().map(|s| classify(&s.words)).collect();
    for stmt in &statements {
        let w = &stmt.words;
        if w.first().is_some_and(|w| w == "COPY")
            && w.windows(2).any(|p| p[0] == "FROM" && p[1] == "STDIN")
        {
            return Err(invalid(format!(
                "line {}: `copy ... from stdin` needs psql's inline data, which a \
                 migration cannot carry; use `insert ... values` instead",
                stmt.line
            )));
        }
    }
    Ok((statements, kinds))
}

/// Splits `V2_1__add_thing.sql` into version 2.1 and description "add thing".
pub(super) fn parse_name(script: &str) -> Result<(Version, String), String> {
    let Some(stem) = script.strip_suffix(".sql") else {
        return Err("a migration file name must end in .sql".into());
    };
    let Some(rest) = stem.strip_prefix('V') else {
        return Err(
            "a migration file name must look like V<version>__<description>.sql \
                    (V2__create_users_table.sql)"
                .into(),
        );
    };
    let Some((version, description)) = rest.split_once("__") else {
        return Err("no `__` between the version and the description \
                    (V<version>__<description>.sql)"
            .into());
    };
    let version = Version::parse(version)?;
    Ok((version, description.replace('_', " ")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(sql: &str) -> Vec<String> {
        split(sql).unwrap().remove(0).words
    }

    fn kind(sql: &str) -> Kind {
        classify(&words(sql))
    }

    #[test]
    fn file_names_parse_as_flyway_does() {
        let (v, d) = parse_name("V2_1__add_the_thing.sql").unwrap();
        assert_eq!((v.as_str(), d.as_str()), ("2.1", "add the thing"));
        let (v, d) = parse_name("V5__cleanup_users_table.sql").unwrap();
        assert_eq!((v.as_str(), d.as_str()), ("5", "cleanup users table"));
        assert!(parse_name("V2_create.sql").is_err());
        assert!(parse_name("V2__x.txt").is_err());
        assert!(parse_name("R__views.sql").is_err());
        let r = Migration::parse(
            "R__user_views.sql",
            b"create or replace view v as select 1;",
        )
        .unwrap();
        assert!(r.repeatable && r.description == "user views");
        assert!(Migration::parse("R__.sql", b"select 1;").is_err());
        assert!(parse_name("U2__undo.sql").is_err());
        assert!(parse_name("Vx__bad.sql").is_err());
    }

    #[test]
    fn recognises_what_postgresql_refuses_in_a_transaction() {
        for sql in [
            "create index concurrently i on t (a)",
            "CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS i ON t (a)",
            "drop index concurrently if exists i",
            "vacuum analyze t",
            "alter system set work_mem = '8MB'",
            "create database other",
            "drop tablespace ts",
            "reindex table concurrently t",
            "reindex (verbose) index concurrently i",
            "reindex database db",
            "reindex verbose schema public",
            "discard all",
        ] {
            assert!(
                matches!(kind(sql), Kind::NonTransactional(_)),
                "{sql} should be non-transactional"
            );
        }
        for sql in [
            "create index i on t (a)",
            "create table concurrently (id int)",
            "refresh materialized view concurrently mv",
            "reindex table t",
            "select 'create index concurrently'",
            "alter table t add column vacuum int",
        ] {
            assert_eq!(kind(sql), Kind::Transactional, "{sql}");
        }
        assert_eq!(kind("alter type mood add value 'meh'"), Kind::AddEnumValue);
        assert!(Kind::AddEnumValue.in_transaction(150_000));
        assert!(!Kind::AddEnumValue.in_transaction(110_000));
    }

    #[test]
    fn a_script_is_wholly_transactional_or_not() {
        let tx = Migration::parse(
            "V1__a.sql",
            b"create table t (a int);\ninsert into t values (1);",
        )
        .unwrap();
        assert!(tx.in_transaction(150_000).unwrap());
        let non = Migration::parse(
            "V2__b.sql",
            b"create index concurrently a on t (a);\ndrop index concurrently b;",
        )
        .unwrap();
        assert!(!non.in_transaction(150_000).unwrap());
        let err = Migration::parse(
            "V3__mixed.sql",
            b"create table u (a int);\n\ncreate index concurrently c on u (a);",
        )
        .unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("V3__mixed.sql") && msg.contains("line 3") && msg.contains("line 1"),
            "{msg}"
        );
    }

    #[test]
    fn enum_values_mix_only_on_old_servers() {
        let m = Migration::parse(
            "V4__mood.sql",
            b"alter type mood add value 'meh';\nupdate t set m = 'ok';",
        )
        .unwrap();
        assert!(m.in_transaction(160_000).unwrap());
        assert!(m.in_transaction(110_000).is_err());
    }

    #[test]
    fn bad_files_are_refused_with_a_reason() {
        let err = Migration::parse("V1__x.sql", b"select '\xff';").unwrap_err();
        assert!(err.to_string().contains("UTF-8"), "{err}");
        let err = Migration::parse("V1__x.sql", b"select 1;\nselect 'x").unwrap_err();
        assert!(err.to_string().contains("line 2"), "{err}");
        let err = Migration::parse("V1__x.sql", b"copy t from stdin;").unwrap_err();
        assert!(err.to_string().contains("stdin"), "{err}");
    }

    #[test]
    fn a_bom_is_not_part_of_the_first_statement() {
        let m = Migration::parse("V1__bom.sql", b"\xEF\xBB\xBFselect 1;").unwrap();
        assert_eq!(m.statements[0].sql, "select 1");
    }
}
