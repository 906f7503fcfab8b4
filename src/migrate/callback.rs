//! Flyway's SQL callbacks: scripts in the migrations location named after an event
//! (`beforeMigrate.sql`, or `beforeMigrate__anything.sql`, several run in name order) that run
//! when Flyway runs them, with placeholders replaced, and never get a history row.
//!
//! - `beforeMigrate` once per `app migrate`, under the lock, before anything is applied;
//! - `beforeEachMigrate` / `afterEachMigrate` around each migration, inside its transaction
//!   (so a failure rolls the migration back too);
//! - `afterMigrate` once after a successful `app migrate`;
//! - `afterMigrateError` once after a failed one (its own failure is only logged).

use super::MigrateError;
use super::placeholder::{Builtins, Placeholders};
use super::script::Migration;

/// When a callback runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Event {
    /// Before anything is applied.
    BeforeMigrate,
    /// Before each migration, in its transaction.
    BeforeEachMigrate,
    /// After each migration, in its transaction.
    AfterEachMigrate,
    /// After a successful migrate.
    AfterMigrate,
    /// After a failed migrate.
    AfterMigrateError,
}

impl Event {
    const ALL: [(&'static str, Event); 5] = [
        ("beforeMigrate", Event::BeforeMigrate),
        ("beforeEachMigrate", Event::BeforeEachMigrate),
        ("afterEachMigrate", Event::AfterEachMigrate),
        ("afterMigrate", Event::AfterMigrate),
        ("afterMigrateError", Event::AfterMigrateError),
    ];

    /// The event a file name calls for: `afterMigrate.sql`, `afterMigrate__notify.sql`.
    pub(crate) fn of_file(name: &str) -> Option<Event> {
        let stem = name.strip_suffix(".sql")?;
        let event = stem.split_once("__").map_or(stem, |(event, _)| event);
        Event::ALL
            .iter()
            .find(|(word, _)| *word == event)
            .map(|(_, e)| *e)
    }
}

/// The callbacks of one location, each list in file-name order.
#[derive(Debug, Clone, Default)]
pub(crate) struct Callbacks {
    /// `beforeMigrate*.sql`.
    pub before_migrate: Vec<Migration>,
    /// `beforeEachMigrate*.sql`.
    pub before_each: Vec<Migration>,
    /// `afterEachMigrate*.sql`.
    pub after_each: Vec<Migration>,
    /// `afterMigrate*.sql`.
    pub after_migrate: Vec<Migration>,
    /// `afterMigrateError*.sql`.
    pub after_migrate_error: Vec<Migration>,
}

impl Callbacks {
    /// Adds a parsed callback script for `event`.
    pub(crate) fn push(&mut self, event: Event, script: Migration) {
        let list = match event {
            Event::BeforeMigrate => &mut self.before_migrate,
            Event::BeforeEachMigrate => &mut self.before_each,
            Event::AfterEachMigrate => &mut self.after_each,
            Event::AfterMigrate => &mut self.after_migrate,
            Event::AfterMigrateError => &mut self.after_migrate_error,
        };
        list.push(script);
        list.sort_by(|a, b| a.script.cmp(&b.script));
    }

    /// Whether there is no callback at all.
    pub(crate) fn is_empty(&self) -> bool {
        self.lists().iter().all(|l| l.is_empty())
    }

    fn lists(&self) -> [&Vec<Migration>; 5] {
        [
            &self.before_migrate,
            &self.before_each,
            &self.after_each,
            &self.after_migrate,
            &self.after_migrate_error,
        ]
    }

    /// Every callback with its placeholders replaced, ready to run.
    pub(crate) fn ready(
        &self,
        placeholders: &Placeholders,
        builtins: &Builtins,
    ) -> Result<Callbacks, MigrateError> {
        let each = |list: &Vec<Migration>| {
            list.iter()
                .map(|m| m.with_placeholders(placeholders, builtins))
                .collect::<Result<Vec<_>, _>>()
        };
        Ok(Callbacks {
            before_migrate: each(&self.before_migrate)?,
            before_each: each(&self.before_each)?,
            after_each: each(&self.after_each)?,
            after_migrate: each(&self.after_migrate)?,
            after_migrate_error: each(&self.after_migrate_error)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_name_flyways_events() {
        assert_eq!(
            Event::of_file("beforeMigrate.sql"),
            Some(Event::BeforeMigrate)
        );
        assert_eq!(
            Event::of_file("afterEachMigrate__audit.sql"),
            Some(Event::AfterEachMigrate)
        );
        assert_eq!(
            Event::of_file("afterMigrateError.sql"),
            Some(Event::AfterMigrateError)
        );
        assert_eq!(Event::of_file("beforeClean.sql"), None);
        assert_eq!(Event::of_file("V1__afterMigrate.sql"), None);
        assert_eq!(Event::of_file("afterMigrate.txt"), None);
    }
}
