//! Where migrations come from: compiled into the binary (the default, so `app migrate` reads
//! no files at run time), or a directory given with `--location` for development and tests.

use std::path::Path;

use rust_embed::RustEmbed;

use super::MigrateError;
use super::callback::{Callbacks, Event};
use super::script::Migration;

/// The SQL files of `migrations/`, embedded at compile time.
#[derive(RustEmbed)]
#[folder = "migrations/"]
#[include = "*.sql"]
struct Embedded;

/// Migrations sorted by version, every version unique.
#[derive(Debug, Clone)]
pub struct Migrations {
    list: Vec<Migration>,
    /// `R__` migrations, by description (the order Flyway applies them in).
    repeatables: Vec<Migration>,
    /// SQL callbacks (`beforeMigrate.sql`, ...).
    callbacks: Callbacks,
}

impl Migrations {
    /// The migrations compiled into this binary.
    pub fn embedded() -> Result<Migrations, MigrateError> {
        let files = Embedded::iter()
            .map(|name| {
                let file = Embedded::get(&name).expect("an embedded file lists its own name");
                (name.into_owned(), file.data.into_owned())
            })
            .collect();
        Migrations::from_files(files)
    }

    /// The `.sql` files directly inside `dir`.
    pub fn from_dir(dir: &Path) -> Result<Migrations, MigrateError> {
        let io = |source: std::io::Error| MigrateError::Location {
            path: dir.to_owned(),
            source,
        };
        let mut files = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(io)? {
            let entry = entry.map_err(io)?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if !name.ends_with(".sql") || !entry.file_type().map_err(io)?.is_file() {
                continue;
            }
            files.push((name, std::fs::read(entry.path()).map_err(io)?));
        }
        Migrations::from_files(files)
    }

    /// Parses named files; names containing `/` (subdirectories) are refused, so the script
    /// column always holds a plain file name as Flyway writes it.
    pub fn from_files(files: Vec<(String, Vec<u8>)>) -> Result<Migrations, MigrateError> {
        let mut list = Vec::with_capacity(files.len());
        let mut repeatables: Vec<Migration> = Vec::new();
        let mut callbacks = Callbacks::default();
        for (name, bytes) in files {
            if name.contains('/') {
                return Err(MigrateError::InvalidScript {
                    script: name,
                    reason: "migrations must sit directly in the migrations directory".into(),
                });
            }
            let m = Migration::parse(&name, &bytes)?;
            if let Some(event) = Event::of_file(&name) {
                callbacks.push(event, m);
            } else if m.repeatable {
                repeatables.push(m);
            } else {
                list.push(m);
            }
        }
        repeatables.sort_by(|a, b| a.description.cmp(&b.description));
        for pair in repeatables.windows(2) {
            if pair[0].description == pair[1].description {
                return Err(MigrateError::InvalidScript {
                    script: pair[1].script.clone(),
                    reason: format!(
                        "its description is that of {} too; repeatable migrations are told \
                         apart by description",
                        pair[0].script
                    ),
                });
            }
        }
        list.sort_by(|a, b| a.version.cmp(&b.version));
        for pair in list.windows(2) {
            if pair[0].version == pair[1].version {
                return Err(MigrateError::DuplicateVersion {
                    version: pair[1].version.to_string(),
                    first: pair[0].script.clone(),
                    second: pair[1].script.clone(),
                });
            }
        }
        Ok(Migrations {
            list,
            repeatables,
            callbacks,
        })
    }

    /// All migrations, oldest first.
    pub(crate) fn all(&self) -> &[Migration] {
        &self.list
    }

    /// The repeatable (`R__`) migrations, in the order they are applied.
    pub(crate) fn repeatables(&self) -> &[Migration] {
        &self.repeatables
    }

    /// The SQL callbacks.
    pub(crate) fn callbacks(&self) -> &Callbacks {
        &self.callbacks
    }

    /// The newest migration, if there is any.
    pub(crate) fn latest(&self) -> Option<&Migration> {
        self.list.last()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_migrations_are_v2_to_v5() {
        let m = Migrations::embedded().unwrap();
        let names: Vec<&str> = m.all().iter().map(|m| m.script.as_str()).collect();
        assert_eq!(
            names,
            [
                "V2__create_users_table.sql",
                "V3__add_authentication_fields.sql",
                "V4__create_user_profiles_table.sql",
                "V5__cleanup_users_table.sql",
            ]
        );
        for m in m.all() {
            assert!(
                m.in_transaction(150_000).unwrap(),
                "{} should be transactional",
                m.script
            );
        }
    }

    #[test]
    fn files_sort_by_numeric_version_and_duplicates_are_refused() {
        let files = vec![
            ("V10__b.sql".to_string(), b"select 10;".to_vec()),
            ("V9__a.sql".to_string(), b"select 9;".to_vec()),
            ("V9_1__c.sql".to_string(), b"select 91;".to_vec()),
        ];
        let m = Migrations::from_files(files).unwrap();
        let v: Vec<&str> = m.all().iter().map(|m| m.version.as_str()).collect();
        assert_eq!(v, ["9", "9.1", "10"]);

        let dup = vec![
            ("V1__a.sql".to_string(), b"select 1;".to_vec()),
            ("V1.0__b.sql".to_string(), b"select 1;".to_vec()),
        ];
        let err = Migrations::from_files(dup).unwrap_err();
        assert!(err.to_string().contains("V1__a.sql"), "{err}");
    }
}
