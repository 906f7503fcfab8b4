//! Flyway's placeholders: `${name}` in a script is replaced before it runs, by a custom value
//! from settings (`[migrate.placeholders]`) or one of Flyway's built-ins (`${flyway:user}`,
//! ...). As in Flyway, the whole text is replaced (comments too), a `${name}` with no value
//! is an error, and a versioned migration's checksum is that of the text before replacement
//! (Flyway's `SqlMigrationResolver` folds placeholders into the checksum of repeatable
//! migrations only), so changing a value never breaks validation.

use std::collections::BTreeMap;

/// Placeholder values and whether to replace at all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placeholders {
    /// Flyway's placeholderReplacement: when false, `${…}` is left as it is.
    pub replacement: bool,
    /// Custom values by name (`${name}`).
    pub custom: BTreeMap<String, String>,
}

impl Default for Placeholders {
    /// Replacement on, as in Flyway, with no custom values.
    fn default() -> Self {
        Placeholders {
            replacement: true,
            custom: BTreeMap::new(),
        }
    }
}

/// The values of Flyway's built-ins, known once connected.
#[derive(Debug, Clone)]
pub(crate) struct Builtins {
    /// `${flyway:defaultSchema}`.
    pub default_schema: String,
    /// `${flyway:user}`.
    pub user: String,
    /// `${flyway:database}`.
    pub database: String,
    /// `${flyway:timestamp}`, fixed for the whole run.
    pub timestamp: String,
    /// `${flyway:table}`.
    pub table: String,
}

/// A `${name}` nothing provides a value for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Unknown {
    /// The placeholder's name.
    pub name: String,
    /// 1-based line in the script.
    pub line: usize,
}

/// Replaces every `${name}` in `text` (the script `filename`). A `${` that does not close
/// on the same line with a name (no spaces) is left alone, as are `$$` and `$tag$` quotes.
pub(crate) fn replace(
    text: &str,
    filename: &str,
    placeholders: &Placeholders,
    builtins: &Builtins,
) -> Result<String, Unknown> {
    if !placeholders.replacement {
        return Ok(text.to_owned());
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    let mut line = 1;
    while let Some(at) = rest.find("${") {
        let (before, from) = rest.split_at(at);
        line += before.matches('\n').count();
        out.push_str(before);
        let inner = &from[2..];
        let name = inner
            .find('}')
            .map(|end| &inner[..end])
            .filter(|n| !n.is_empty() && !n.contains(|c: char| c.is_whitespace()));
        let Some(name) = name else {
            out.push_str("${");
            rest = inner;
            continue;
        };
        let value = match name {
            "flyway:defaultSchema" => Some(builtins.default_schema.as_str()),
            "flyway:user" => Some(builtins.user.as_str()),
            "flyway:database" => Some(builtins.database.as_str()),
            "flyway:timestamp" => Some(builtins.timestamp.as_str()),
            "flyway:filename" => Some(filename),
            "flyway:table" => Some(builtins.table.as_str()),
            _ => placeholders.custom.get(name).map(String::as_str),
        };
        let Some(value) = value else {
            return Err(Unknown {
                name: name.to_owned(),
                line,
            });
        };
        out.push_str(value);
        rest = &inner[name.len() + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn builtins() -> Builtins {
        Builtins {
            default_schema: "public".into(),
            user: "app_user".into(),
            database: "discbaboons".into(),
            timestamp: "2026-12-02 01:00:00".into(),
            table: "flyway_schema_history".into(),
        }
    }

    #[test]
    fn builtins_and_custom_values_are_replaced_everywhere() {
        let mut p = Placeholders::default();
        p.custom.insert("owner".into(), "app_owner".into());
        let text = "-- by ${flyway:user} in ${flyway:database}\n\
                    alter table ${flyway:defaultSchema}.t owner to ${owner};\n\
                    select '${flyway:filename}', '${flyway:table}', '${flyway:timestamp}';";
        let out = replace(text, "V1__x.sql", &p, &builtins()).unwrap();
        assert_eq!(
            out,
            "-- by app_user in discbaboons\n\
             alter table public.t owner to app_owner;\n\
             select 'V1__x.sql', 'flyway_schema_history', '2026-12-02 01:00:00';"
        );
    }

    #[test]
    fn unknown_names_their_line_and_other_dollars_are_left_alone() {
        let p = Placeholders::default();
        let text = "select $$ ${ not one } $$;\nselect $a$x$a$, '${';\nselect ${nope};";
        let err = replace(text, "V1__x.sql", &p, &builtins()).unwrap_err();
        assert_eq!(
            err,
            Unknown {
                name: "nope".into(),
                line: 3
            }
        );
        let ok = "select $$ ${ not one } $$;\nselect $a$x$a$, '${';";
        assert_eq!(replace(ok, "V1__x.sql", &p, &builtins()).unwrap(), ok);
    }

    #[test]
    fn replacement_off_leaves_the_text_as_it_is() {
        let p = Placeholders {
            replacement: false,
            ..Placeholders::default()
        };
        let text = "select '${nope}';";
        assert_eq!(replace(text, "V1__x.sql", &p, &builtins()).unwrap(), text);
    }
}
