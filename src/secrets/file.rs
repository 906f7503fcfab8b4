//! The sealed file: YAML with a format version, a context, the recipients and one
//! ASCII-armored age file per key. Parsed with a YAML library (people resolve merge conflicts
//! by hand); written by a small emitter of ours so that the output is stable: keys sorted, LF
//! line endings, and a key's block changes only when that key's value does.

use std::collections::BTreeMap;
use std::fmt::{self, Write as _};
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde::de::{Deserializer, MapAccess, Visitor};

use super::error::SealedError;
use super::recipient::RecipientEntry;
use super::value::ARMOR_BEGIN;

/// The format version this binary reads and writes.
pub(crate) const FORMAT_VERSION: u32 = 1;

/// The largest sealed file read: what one Kubernetes ConfigMap or Secret can hold. A
/// bigger file cannot have been mounted, and reading one would only waste the pod's memory.
pub(crate) const MAX_FILE_BYTES: usize = 1024 * 1024;

/// The deepest nesting of YAML flow collections (`[` and `{`) accepted. `app seal` writes
/// one level; libyaml's scanner is quadratic in the depth (40 000 `[` take seconds, a
/// ConfigMap full of them would stall the pod's start for many minutes).
const MAX_FLOW_DEPTH: usize = 32;

/// A sealed secrets file, in memory. Values stay encrypted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedFile {
    /// What every value is bound to, e.g. `discbaboons/prod`.
    pub context: String,
    /// Who `app seal set` encrypts new values to.
    pub recipients: Vec<RecipientEntry>,
    /// Key name to ASCII-armored age file (ending in a newline).
    pub values: BTreeMap<String, String>,
}

#[derive(Deserialize)]
struct VersionOnly {
    version: Option<u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    #[allow(dead_code)]
    version: u32,
    context: String,
    #[serde(default)]
    recipients: Vec<RawRecipient>,
    #[serde(default, deserialize_with = "unique_keys")]
    values: BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRecipient {
    key: String,
    #[serde(default)]
    comment: Option<String>,
}

impl SealedFile {
    /// An empty file for `context`, encrypting to `recipients`.
    pub(crate) fn new(context: &str, recipients: Vec<RecipientEntry>) -> Result<Self, SealedError> {
        check_context(context)?;
        Ok(SealedFile {
            context: context.to_owned(),
            recipients,
            values: BTreeMap::new(),
        })
    }

    /// Reads and parses `path`.
    pub(crate) fn read(path: &Path) -> Result<Self, SealedError> {
        let bytes = std::fs::read(path).map_err(|e| SealedError::read(path, e))?;
        if bytes.len() > MAX_FILE_BYTES {
            return Err(SealedError::Malformed {
                file: path.to_owned(),
                reason: format!(
                    "it is {} bytes, more than the {MAX_FILE_BYTES} a Kubernetes ConfigMap or \
                     Secret can hold",
                    bytes.len()
                ),
            });
        }
        // Binary garbage is a malformed file, not an I/O error.
        let text = String::from_utf8(bytes).map_err(|e| SealedError::Malformed {
            file: path.to_owned(),
            reason: format!(
                "it is not UTF-8 text (invalid byte at offset {}): not the YAML `app seal` writes",
                e.utf8_error().valid_up_to()
            ),
        })?;
        Self::parse(path, &text)
    }

    /// Parses the text of `path` (the path is for messages).
    pub fn parse(path: &Path, text: &str) -> Result<Self, SealedError> {
        let malformed = |reason: String| SealedError::Malformed {
            file: path.to_owned(),
            reason,
        };
        if flow_depth(text) > MAX_FLOW_DEPTH {
            return Err(malformed(format!(
                "it nests `[` or `{{` more than {MAX_FLOW_DEPTH} deep: not the YAML `app seal` \
                 writes"
            )));
        }
        let version: VersionOnly = serde_yaml_ng::from_str(text)
            .map_err(|e| malformed(format!("not the YAML `app seal` writes: {e}")))?;
        match version.version {
            Some(FORMAT_VERSION) => {}
            Some(v) => {
                return Err(malformed(format!(
                    "format version {v} is not known to this app (it reads version \
                     {FORMAT_VERSION}); use a newer app"
                )));
            }
            None => return Err(malformed("it has no `version:`".into())),
        }
        let raw: Raw = serde_yaml_ng::from_str(text).map_err(|e| malformed(e.to_string()))?;
        check_context(&raw.context).map_err(|e| malformed(e.to_string()))?;
        let mut recipients = Vec::new();
        for r in raw.recipients {
            let entry = RecipientEntry::parse(&r.key, r.comment.map(one_line))
                .map_err(|e| malformed(e.to_string()))?;
            recipients.push(entry);
        }
        let mut values = raw.values;
        for (key, value) in &mut values {
            check_key_name(key).map_err(|e| malformed(e.to_string()))?;
            if !value.starts_with(ARMOR_BEGIN) {
                return Err(malformed(format!(
                    "the value of {key} is not an ASCII-armored age file"
                )));
            }
            // A block at the very end of a file without a final newline reads without one;
            // the value is the same armor (and the emitter writes it with one).
            if !value.ends_with('\n') {
                value.push('\n');
            }
        }
        Ok(SealedFile {
            context: raw.context,
            recipients,
            values,
        })
    }

    /// The file's text. Deterministic: the same content always gives the same bytes.
    pub fn to_yaml(&self) -> String {
        let mut out = String::from(
            "# Sealed secrets, written by `app seal` (see docs/secrets.md). Safe to commit:\n\
             # each value is a standard age file only the recipients below can open, bound to\n\
             # this context and its key name. Change it with `app seal set|rm|rekey`.\n",
        );
        let _ = writeln!(out, "version: {FORMAT_VERSION}");
        let _ = writeln!(out, "context: {}", quoted(&self.context));
        out.push_str(
            "# Who `app seal set` encrypts to (informational: each value's header is what\n\
             # counts; `app seal list` shows both).\n",
        );
        if self.recipients.is_empty() {
            out.push_str("recipients: []\n");
        } else {
            out.push_str("recipients:\n");
        }
        for r in &self.recipients {
            let _ = writeln!(out, "  - key: {}", quoted(&r.key));
            if let Some(comment) = &r.comment {
                let _ = writeln!(out, "    comment: {}", quoted(comment));
            }
        }
        if self.values.is_empty() {
            out.push_str("values: {}\n");
        } else {
            out.push_str("values:\n");
        }
        for (key, armored) in &self.values {
            let _ = writeln!(out, "  {}: |", yaml_key(key));
            for line in armored.lines() {
                let _ = writeln!(out, "    {line}");
            }
        }
        out
    }

    /// Writes the file atomically (a temporary file renamed over it). A file over
    /// [`MAX_FILE_BYTES`] is refused: no pod could mount or read it.
    pub(crate) fn write(&self, path: &Path) -> Result<(), SealedError> {
        let text = self.to_yaml();
        if text.len() > MAX_FILE_BYTES {
            return Err(SealedError::Refused(format!(
                "{} would be {} bytes, more than the {MAX_FILE_BYTES} a Kubernetes ConfigMap or \
                 Secret can hold; keep large values out of the sealed file",
                path.display(),
                text.len()
            )));
        }
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
        let tmp: PathBuf = path.with_file_name(format!(
            ".{}.tmp-{}",
            name.unwrap_or_else(|| "sealed".into()),
            std::process::id()
        ));
        std::fs::write(&tmp, text)
            .and_then(|()| std::fs::rename(&tmp, path))
            .map_err(|e| {
                let _ = std::fs::remove_file(&tmp);
                SealedError::write(path, e)
            })
    }

    /// The keys, comma-separated, for messages.
    pub(crate) fn key_list(&self) -> String {
        if self.values.is_empty() {
            return "none".into();
        }
        self.values.keys().cloned().collect::<Vec<_>>().join(", ")
    }
}

/// Key names become file names (`app seal open`) and settings: letters, digits, `_ . -`,
/// starting with a letter or `_`.
pub(crate) fn check_key_name(name: &str) -> Result<(), SealedError> {
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if first_ok && rest_ok && name.len() <= 253 {
        Ok(())
    } else {
        Err(SealedError::BadName {
            what: "key name",
            name: name.to_owned(),
            reason: "use letters, digits, `_`, `.` and `-`, starting with a letter or `_` \
                     (e.g. DATABASE_PASSWORD)"
                .into(),
        })
    }
}

/// A context names an application and environment, e.g. `discbaboons/prod`.
pub(crate) fn check_context(context: &str) -> Result<(), SealedError> {
    let ok = context
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric())
        && context
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-' | '/'))
        && context.len() <= 200;
    if ok {
        Ok(())
    } else {
        Err(SealedError::BadName {
            what: "context",
            name: context.to_owned(),
            reason: "use letters, digits, `_ . - /`, e.g. discbaboons/prod".into(),
        })
    }
}

/// A YAML double-quoted scalar. JSON's escaping is valid YAML, but JSON leaves characters
/// raw that YAML forbids unescaped (DEL, C1 controls, U+FFFE/U+FFFF) or reads as line breaks
/// (NEL, U+2028, U+2029) or a byte order mark: those get `\u` escapes, so that a recipient
/// comment with one of them still reads back.
fn quoted(s: &str) -> String {
    let json = serde_json::to_string(s).expect("strings serialize");
    let mut out = String::with_capacity(json.len());
    for c in json.chars() {
        match c {
            '\u{7f}'..='\u{9f}'
            | '\u{2028}'
            | '\u{2029}'
            | '\u{feff}'
            | '\u{fffe}'
            | '\u{ffff}' => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

/// Key names are plain scalars unless YAML would read them as something other than a string.
fn yaml_key(key: &str) -> String {
    let plain = key
        .chars()
        .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
        && !matches!(
            key,
            "TRUE" | "FALSE" | "NULL" | "Y" | "N" | "YES" | "NO" | "ON" | "OFF"
        );
    if plain { key.to_owned() } else { quoted(key) }
}

/// The deepest nesting of `[`/`{`, counting brackets anywhere (also in strings and
/// comments): an over-estimate, which only errs on the side of refusing.
fn flow_depth(text: &str) -> usize {
    let (mut depth, mut deepest) = (0usize, 0usize);
    for b in text.bytes() {
        match b {
            b'[' | b'{' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

fn one_line(s: String) -> String {
    s.lines().collect::<Vec<_>>().join(" ")
}

/// A map that rejects a key given twice, which a merge gone wrong produces and most YAML
/// readers would silently resolve by keeping the last.
fn unique_keys<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, String>, D::Error> {
    struct Unique;
    impl<'de> Visitor<'de> for Unique {
        type Value = BTreeMap<String, String>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a mapping of key names to armored age files")
        }
        fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(BTreeMap::new())
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut out = BTreeMap::new();
            while let Some((key, value)) = map.next_entry::<String, String>()? {
                if out.contains_key(&key) {
                    return Err(serde::de::Error::custom(format!(
                        "key {key} is listed twice under values"
                    )));
                }
                out.insert(key, value);
            }
            Ok(out)
        }
    }
    d.deserialize_any(Unique)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> SealedFile {
        let mut file = SealedFile::new(
            "discbaboons/prod",
            vec![RecipientEntry {
                key: age::x25519::Identity::generate().to_public().to_string(),
                comment: Some("cluster \"main\"".into()),
            }],
        )
        .unwrap();
        let armor = format!("{ARMOR_BEGIN}\nYWJj\n-----END AGE ENCRYPTED FILE-----\n");
        file.values.insert("JWT_SECRET".into(), armor.clone());
        file.values.insert("tls.key".into(), armor.clone());
        file.values.insert("NULL".into(), armor);
        file
    }

    #[test]
    fn emit_then_parse_is_identity_and_stable() {
        let file = sample();
        let text = file.to_yaml();
        let back = SealedFile::parse(Path::new("s.yaml"), &text).unwrap();
        assert_eq!(back, file);
        assert_eq!(back.to_yaml(), text);
        assert!(!text.contains('\r'));
    }

    #[test]
    fn duplicates_versions_and_junk_are_malformed() {
        let text = sample().to_yaml();
        let block_start = text.find("  JWT_SECRET: |").unwrap();
        let dup = format!("{text}{}", &text[block_start..]);
        let err = SealedFile::parse(Path::new("s.yaml"), &dup).unwrap_err();
        assert!(err.to_string().contains("JWT_SECRET"), "{err}");

        let v2 = text.replace("version: 1", "version: 2");
        let err = SealedFile::parse(Path::new("s.yaml"), &v2).unwrap_err();
        assert!(err.to_string().contains("version 2"), "{err}");

        for junk in ["[1, 2", "version: 1\ncontext: x\nextra: 1\n", "just text"] {
            let err = SealedFile::parse(Path::new("s.yaml"), junk).unwrap_err();
            assert!(matches!(err, SealedError::Malformed { .. }), "{err}");
        }
    }

    #[test]
    fn comments_with_characters_yaml_forbids_raw_read_back() {
        let mut file = sample();
        file.recipients[0].comment =
            Some("del\u{7f} nel\u{85} ls\u{2028} bom\u{feff} \u{ffff}".into());
        let text = file.to_yaml();
        assert_eq!(SealedFile::parse(Path::new("s.yaml"), &text).unwrap(), file);
    }

    #[test]
    fn a_last_block_without_a_final_newline_reads_as_written() {
        let file = sample();
        let text = file.to_yaml();
        let cut = SealedFile::parse(Path::new("s.yaml"), text.trim_end()).unwrap();
        assert_eq!(cut, file);
    }

    #[test]
    fn deep_nesting_is_refused_before_the_yaml_parser_sees_it() {
        let deep = format!("version: 1\ncontext: {}\n", "[".repeat(50_000));
        let started = std::time::Instant::now();
        let err = SealedFile::parse(Path::new("s.yaml"), &deep).unwrap_err();
        assert!(err.to_string().contains("32 deep"), "{err}");
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
        // The emitter's own `[]` and `{}` are fine.
        let empty = SealedFile::new("ctx", vec![]).unwrap();
        assert_eq!(
            SealedFile::parse(Path::new("s.yaml"), &empty.to_yaml()).unwrap(),
            empty
        );
    }

    #[test]
    fn binary_and_oversized_files_are_malformed() {
        let dir = tempfile::tempdir().unwrap();
        let binary = dir.path().join("binary.yaml");
        std::fs::write(&binary, b"version: 1\ncontext: \xff\xfe\n").unwrap();
        let err = SealedFile::read(&binary).unwrap_err();
        assert!(matches!(err, SealedError::Malformed { .. }), "{err}");
        assert!(err.to_string().contains("UTF-8"), "{err}");

        let mut big = sample();
        let armor = format!("{ARMOR_BEGIN}\n{}\n", "QUFB".repeat(MAX_FILE_BYTES / 4));
        big.values.insert("BIG".into(), armor);
        let err = big.write(&dir.path().join("big.yaml")).unwrap_err();
        assert!(matches!(err, SealedError::Refused(_)), "{err}");
        assert!(!dir.path().join("big.yaml").exists());

        let huge = dir.path().join("huge.yaml");
        std::fs::write(&huge, vec![b'#'; MAX_FILE_BYTES + 1]).unwrap();
        let err = SealedFile::read(&huge).unwrap_err();
        assert!(matches!(err, SealedError::Malformed { .. }), "{err}");
        assert!(err.to_string().contains("ConfigMap"), "{err}");
    }

    #[test]
    fn names_are_checked() {
        assert!(check_key_name("DATABASE_PASSWORD").is_ok());
        assert!(check_key_name("../etc").is_err());
        assert!(check_key_name(".hidden").is_err());
        assert!(check_context("discbaboons/prod").is_ok());
        assert!(check_context("prod env").is_err());
    }
}
