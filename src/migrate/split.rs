//! Splits a SQL script into statements, the way PostgreSQL's lexer sees them: a `;` ends a
//! statement only outside quotes ('…', E'…', "…"), dollar quotes ($$…$$, $tag$…$tag$),
//! comments (-- and nested /* */) and `begin atomic … end` function bodies.
//!
//! Each statement keeps the line it starts on (for error messages) and its leading keywords
//! (to find the statements PostgreSQL refuses inside a transaction, see [`super::script`]).

/// One statement of a script.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Statement {
    /// The text, from its first token up to (not including) the terminating `;`.
    pub sql: String,
    /// 1-based line of the script on which the statement starts.
    pub line: usize,
    /// The words outside quotes and comments, upper-cased, in order (at most [`MAX_WORDS`]).
    pub words: Vec<String>,
}

/// How many leading words are kept per statement: enough for every pattern we look for.
pub(super) const MAX_WORDS: usize = 64;

/// A script the splitter cannot make sense of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SplitError {
    /// 1-based line where the unterminated construct starts.
    pub line: usize,
    /// What is unterminated.
    pub what: &'static str,
}

fn is_ident_start(c: u8) -> bool {
    c.is_ascii_alphabetic() || c == b'_' || c >= 0x80
}

fn is_ident_char(c: u8) -> bool {
    is_ident_start(c) || c.is_ascii_digit() || c == b'$'
}

/// Accumulates the statement being scanned.
struct Current {
    start: Option<usize>,
    line: usize,
    words: Vec<String>,
    /// Nesting inside `begin atomic` bodies: `;` does not end the statement while > 0.
    atomic_depth: usize,
}

impl Current {
    fn new() -> Current {
        Current {
            start: None,
            line: 0,
            words: Vec::new(),
            atomic_depth: 0,
        }
    }

    fn begin_at(&mut self, pos: usize, line: usize) {
        if self.start.is_none() {
            self.start = Some(pos);
            self.line = line;
        }
    }

    fn is_routine(&self) -> bool {
        let w: Vec<&str> = self.words.iter().take(4).map(String::as_str).collect();
        matches!(
            w.as_slice(),
            ["CREATE", "FUNCTION", ..]
                | ["CREATE", "PROCEDURE", ..]
                | ["CREATE", "OR", "REPLACE", "FUNCTION"]
                | ["CREATE", "OR", "REPLACE", "PROCEDURE"]
        )
    }

    fn word(&mut self, word: String) {
        if self.atomic_depth > 0 {
            match word.as_str() {
                "CASE" => self.atomic_depth += 1,
                "END" => self.atomic_depth -= 1,
                _ => {}
            }
        } else if word == "ATOMIC"
            && self.words.last().is_some_and(|w| w == "BEGIN")
            && self.is_routine()
        {
            self.atomic_depth = 1;
        }
        if self.words.len() < MAX_WORDS {
            self.words.push(word);
        }
    }
}

/// Splits `sql` into its statements. Empty statements (a lone `;`) are dropped.
pub(crate) fn split(sql: &str) -> Result<Vec<Statement>, SplitError> {
    let bytes = sql.as_bytes();
    let mut out = Vec::new();
    let mut cur = Current::new();
    let mut line = 1;
    let mut i = 0;

    let finish = |cur: &mut Current, end: usize, out: &mut Vec<Statement>| {
        if let Some(start) = cur.start {
            out.push(Statement {
                sql: sql[start..end].trim_end().to_owned(),
                line: cur.line,
                words: std::mem::take(&mut cur.words),
            });
        }
        *cur = Current::new();
    };

    while i < bytes.len() {
        let c = bytes[i];
        let next = bytes.get(i + 1).copied();
        match c {
            b'\n' => {
                line += 1;
                i += 1;
            }
            _ if c.is_ascii_whitespace() => i += 1,
            b'-' if next == Some(b'-') => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if next == Some(b'*') => {
                let started = line;
                let mut depth = 0usize;
                loop {
                    match (bytes.get(i), bytes.get(i + 1)) {
                        (Some(b'/'), Some(b'*')) => {
                            depth += 1;
                            i += 2;
                        }
                        (Some(b'*'), Some(b'/')) => {
                            depth -= 1;
                            i += 2;
                            if depth == 0 {
                                break;
                            }
                        }
                        (Some(b), _) => {
                            if *b == b'\n' {
                                line += 1;
                            }
                            i += 1;
                        }
                        (None, _) => {
                            return Err(SplitError {
                                line: started,
                                what: "block comment (/* without */)",
                            });
                        }
                    }
                }
            }
            b';' => {
                if cur.atomic_depth > 0 {
                    i += 1;
                } else {
                    finish(&mut cur, i, &mut out);
                    i += 1;
                }
            }
            b'\'' => {
                cur.begin_at(i, line);
                i = skip_quoted(bytes, i, &mut line, b'\'', false)?;
            }
            b'"' => {
                cur.begin_at(i, line);
                i = skip_quoted(bytes, i, &mut line, b'"', false)?;
            }
            b'$' => {
                cur.begin_at(i, line);
                match dollar_tag(bytes, i) {
                    Some(tag_len) => i = skip_dollar(bytes, i, tag_len, &mut line)?,
                    None => i += 1,
                }
            }
            _ if is_ident_start(c) => {
                cur.begin_at(i, line);
                // E'...' (and e'...') is a string with backslash escapes.
                if (c == b'E' || c == b'e') && next == Some(b'\'') {
                    i = skip_quoted(bytes, i + 1, &mut line, b'\'', true)?;
                    continue;
                }
                let start = i;
                while i < bytes.len() && is_ident_char(bytes[i]) {
                    i += 1;
                }
                cur.word(sql[start..i].to_ascii_uppercase());
            }
            _ if c.is_ascii_digit() => {
                cur.begin_at(i, line);
                // A number, possibly followed by identifier characters (1e5, 0x1F): not a word.
                while i < bytes.len() && (is_ident_char(bytes[i]) || bytes[i] == b'.') {
                    i += 1;
                }
            }
            _ => {
                cur.begin_at(i, line);
                i += 1;
            }
        }
    }
    if cur.atomic_depth > 0 {
        return Err(SplitError {
            line: cur.line,
            what: "`begin atomic` body (no matching `end`)",
        });
    }
    finish(&mut cur, bytes.len(), &mut out);
    Ok(out)
}

/// Skips a quoted string or identifier starting at `open`; returns the index after it.
/// A doubled quote is an escaped quote; with `backslash`, `\x` escapes too (E'...').
fn skip_quoted(
    bytes: &[u8],
    open: usize,
    line: &mut usize,
    quote: u8,
    backslash: bool,
) -> Result<usize, SplitError> {
    let started = *line;
    let mut i = open + 1;
    while i < bytes.len() {
        match bytes[i] {
            b'\n' => *line += 1,
            b'\\' if backslash => {
                if bytes.get(i + 1) == Some(&b'\n') {
                    *line += 1;
                }
                i += 1;
            }
            b if b == quote => {
                if bytes.get(i + 1) == Some(&quote) {
                    i += 1;
                } else {
                    return Ok(i + 1);
                }
            }
            _ => {}
        }
        i += 1;
    }
    Err(SplitError {
        line: started,
        what: if quote == b'"' {
            "quoted identifier (\" without its closing \")"
        } else {
            "string literal (' without its closing ')"
        },
    })
}

/// If a dollar-quote tag (`$$` or `$tag$`) starts at `i`, its length. A `$` that continues
/// an identifier (`a$b`) or starts a parameter (`$1`) is not one.
fn dollar_tag(bytes: &[u8], i: usize) -> Option<usize> {
    if i > 0 && is_ident_char(bytes[i - 1]) {
        return None;
    }
    let mut j = i + 1;
    if j < bytes.len() && is_ident_start(bytes[j]) {
        while j < bytes.len() && is_ident_char(bytes[j]) && bytes[j] != b'$' {
            j += 1;
        }
    }
    (bytes.get(j) == Some(&b'$')).then_some(j + 1 - i)
}

/// Skips a dollar-quoted string whose tag of `tag_len` bytes starts at `open`.
fn skip_dollar(
    bytes: &[u8],
    open: usize,
    tag_len: usize,
    line: &mut usize,
) -> Result<usize, SplitError> {
    let tag = &bytes[open..open + tag_len];
    let started = *line;
    let mut i = open + tag_len;
    while i < bytes.len() {
        if bytes[i..].starts_with(tag) {
            return Ok(i + tag_len);
        }
        if bytes[i] == b'\n' {
            *line += 1;
        }
        i += 1;
    }
    Err(SplitError {
        line: started,
        what: "dollar-quoted string ($$ or $tag$ without its closing tag)",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(sql: &str) -> Vec<String> {
        split(sql).unwrap().into_iter().map(|s| s.sql).collect()
    }

    #[test]
    fn splits_on_semicolons_and_drops_empty_statements() {
        assert_eq!(texts("select 1; select 2;;\n;"), ["select 1", "select 2"]);
        assert_eq!(texts("select 1"), ["select 1"], "the last `;` is optional");
        assert!(texts("  -- only a comment\n/* and another */\n").is_empty());
    }

    #[test]
    fn remembers_the_starting_line_after_comments() {
        let stmts =
            split("-- header\n\n/* a\n b */ create table t (id int);\n\n  select 1;").unwrap();
        assert_eq!(stmts[0].line, 4);
        assert_eq!(stmts[0].sql, "create table t (id int)");
        assert_eq!(stmts[1].line, 6);
    }

    #[test]
    fn quotes_hide_semicolons_and_comment_markers() {
        let sql = "insert into t values ('a;b', 'it''s -- not a comment');\n\
                   select \"odd;name\" from \"t\"\"x\";\n\
                   select E'\\';still a string';";
        assert_eq!(
            texts(sql),
            [
                "insert into t values ('a;b', 'it''s -- not a comment')",
                "select \"odd;name\" from \"t\"\"x\"",
                "select E'\\';still a string'",
            ]
        );
    }

    #[test]
    fn standard_strings_do_not_treat_backslash_as_escape() {
        assert_eq!(
            texts(r"select 'a\'; select 2;"),
            [r"select 'a\'", "select 2"]
        );
    }

    #[test]
    fn dollar_quotes_hide_everything_until_the_same_tag() {
        let sql = "create function f() returns int language plpgsql as $fn$\n\
                   begin\n  perform 'x;'; -- ;\n  return $$1$$::int;\nend;\n$fn$;\n\
                   select $1, a$b from t;";
        let stmts = split(sql).unwrap();
        assert_eq!(stmts.len(), 2, "{stmts:#?}");
        assert!(stmts[0].sql.ends_with("$fn$"));
        assert_eq!(stmts[1].line, 7);
        assert_eq!(stmts[1].sql, "select $1, a$b from t");
    }

    #[test]
    fn comments_hide_semicolons_and_nest() {
        let sql = "select 1 /* outer /* inner; */ still; */ + 1; -- trailing; comment\nselect 2;";
        assert_eq!(
            texts(sql),
            ["select 1 /* outer /* inner; */ still; */ + 1", "select 2"]
        );
    }

    #[test]
    fn begin_atomic_bodies_are_one_statement() {
        let sql = "create or replace function f(a int) returns int language sql\n\
                   begin atomic\n  select case when a > 0 then 1 else 0 end;\n  select 2;\nend;\n\
                   select 3;";
        let stmts = split(sql).unwrap();
        assert_eq!(stmts.len(), 2, "{stmts:#?}");
        assert!(stmts[0].sql.ends_with("end"));
        assert_eq!(stmts[1].sql, "select 3");
        // An ordinary transaction block is not an atomic body.
        assert_eq!(texts("begin; select 1; commit;").len(), 3);
    }

    #[test]
    fn words_skip_strings_comments_and_numbers() {
        let stmts =
            split("create /* x */ unique index\n concurrently \"Idx\" on t ('a b', 1e5);").unwrap();
        assert_eq!(
            stmts[0].words,
            ["CREATE", "UNIQUE", "INDEX", "CONCURRENTLY", "ON", "T"]
        );
    }

    #[test]
    fn unterminated_constructs_name_their_line() {
        let err = split("select 1;\nselect 'oops;\n").unwrap_err();
        assert_eq!(err.line, 2);
        assert!(err.what.contains("string"));
        assert_eq!(split("select $x$ never closed").unwrap_err().line, 1);
        assert_eq!(split("\n/* /* */").unwrap_err().line, 2);
        assert_eq!(split("select \"x").unwrap_err().line, 1);
    }

    proptest::proptest! {
        /// Statements built from tokens that may hide `;`, quotes and comment markers split
        /// back into exactly themselves, each starting on the right line.
        #[test]
        fn joined_statements_split_back(
            stmts in proptest::collection::vec(
                proptest::collection::vec(
                    proptest::prop_oneof![
                        "[a-z_][a-z0-9_]{0,6}",
                        "[0-9]{1,4}",
                        "'([a-z ;\"$-]|'')*'",
                        r"E'([a-z ;-]|''|\\\\|\\')*'",
                        "\"([a-z ;'-]|\"\")*\"",
                        "\\$\\$[a-z ;'\"\n-]*\\$\\$",
                        "\\$fn\\$[a-z ;'\"\n-]*\\$fn\\$",
                        "/\\*[a-z ;'\"\n]*\\*/",
                        "[(),.=+*<>]",
                    ],
                    1..8,
                ),
                1..6,
            )
        ) {
            // Each statement starts with a keyword: a leading comment is not part of it.
            let texts: Vec<String> =
                stmts.iter().map(|t| format!("select {}", t.join(" "))).collect();
            let script = texts.join(";\n-- a comment; with a semicolon\n");
            let got = split(&script).unwrap();
            let mut line = 1;
            proptest::prop_assert_eq!(got.len(), texts.len());
            for (stmt, text) in got.iter().zip(&texts) {
                proptest::prop_assert_eq!(&stmt.sql, text);
                proptest::prop_assert_eq!(stmt.line, line);
                line += text.matches('\n').count() + 2;
            }
        }
    }

    #[test]
    fn line_counting_survives_multiline_literals() {
        let stmts = split("select 'a\nb\nc';\nselect $$\n\n$$;\nselect 1;").unwrap();
        assert_eq!(stmts.iter().map(|s| s.line).collect::<Vec<_>>(), [1, 4, 7]);
    }
}
