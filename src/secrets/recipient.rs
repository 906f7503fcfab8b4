//! Recipients (public keys): X25519 `age1...` and SSH `ssh-ed25519`/`ssh-rsa`. Only public
//! keys are needed to add a value, as with kubeseal's certificate.

use std::path::Path;
use std::str::FromStr;

use super::error::SealedError;

/// A recipient as recorded in the sealed file: the key, and a note for the humans reading it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecipientEntry {
    /// `age1...` or `ssh-ed25519 AAAA...` (an SSH key's own comment is moved to `comment`).
    pub key: String,
    /// Whose key this is, e.g. `cluster` or `offline recovery key`.
    pub comment: Option<String>,
}

impl RecipientEntry {
    /// Parses one recipient line (`age1...`, or an SSH public key with its optional comment)
    /// and checks the key.
    pub(crate) fn parse(line: &str, comment: Option<String>) -> Result<Self, SealedError> {
        let line = line.trim();
        let mut parts = line.split_whitespace();
        let entry = match parts.next() {
            Some(kind) if kind.starts_with("ssh-") => {
                let blob = parts.next().unwrap_or_default();
                let own_comment = parts.collect::<Vec<_>>().join(" ");
                RecipientEntry {
                    key: format!("{kind} {blob}"),
                    comment: comment.or((!own_comment.is_empty()).then_some(own_comment)),
                }
            }
            Some(key) if parts.next().is_none() => RecipientEntry {
                key: key.to_owned(),
                comment,
            },
            _ => {
                return Err(SealedError::BadRecipient {
                    what: format!("`{line}`"),
                    reason: "expected one age1... key or one SSH public key".into(),
                });
            }
        };
        entry.to_recipient()?;
        Ok(entry)
    }

    fn to_recipient(&self) -> Result<Box<dyn age::Recipient + Send>, SealedError> {
        let bad = |reason: String| SealedError::BadRecipient {
            what: format!("`{}`", self.key),
            reason,
        };
        if self.key.starts_with("ssh-") {
            age::ssh::Recipient::from_str(&self.key)
                .map(|r| Box::new(r) as _)
                .map_err(|e| bad(format!("not a supported SSH public key ({e:?})")))
        } else if self.key.starts_with("age1") {
            age::x25519::Recipient::from_str(&self.key)
                .map(|r| Box::new(r) as _)
                .map_err(|e| bad(e.to_string()))
        } else if self.key.starts_with("AGE-SECRET-KEY-") {
            // Do not echo a private key back.
            Err(SealedError::BadRecipient {
                what: "(a private key)".into(),
                reason: "that is an identity, not a recipient: pass its public key (age1...), \
                         printed by `app seal keygen`"
                    .into(),
            })
        } else {
            Err(bad("expected age1... or ssh-ed25519/ssh-rsa".into()))
        }
    }
}

/// Reads a recipients file as `age -R` does: one recipient per line, `#` comments and blank
/// lines ignored. A comment line just above a recipient becomes its comment.
pub(crate) fn read_recipients_file(path: &Path) -> Result<Vec<RecipientEntry>, SealedError> {
    let text = std::fs::read_to_string(path).map_err(|e| SealedError::read(path, e))?;
    let mut entries = Vec::new();
    let mut comment = None;
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if let Some(note) = line.strip_prefix('#') {
            comment = Some(note.trim().to_owned()).filter(|c| !c.is_empty());
        } else if line.is_empty() {
            comment = None;
        } else {
            let entry = RecipientEntry::parse(line, comment.take()).map_err(|e| match e {
                SealedError::BadRecipient { reason, .. } => SealedError::BadRecipient {
                    what: format!("on line {} of {}", n + 1, path.display()),
                    reason,
                },
                other => other,
            })?;
            entries.push(entry);
        }
    }
    Ok(entries)
}

/// Recipients ready to encrypt to.
pub struct Recipients(Vec<Box<dyn age::Recipient + Send>>);

impl Recipients {
    /// Builds the recipients of the given entries; at least one is required.
    pub(crate) fn from_entries(entries: &[RecipientEntry]) -> Result<Self, SealedError> {
        if entries.is_empty() {
            return Err(SealedError::BadRecipient {
                what: "list".into(),
                reason: "no recipients: give -r age1... (or -R FILE); usually two, the \
                         cluster's key and an offline recovery key"
                    .into(),
            });
        }
        entries
            .iter()
            .map(RecipientEntry::to_recipient)
            .collect::<Result<_, _>>()
            .map(Recipients)
    }

    /// Parses bare recipient strings, for unit tests.
    #[cfg(test)]
    pub(crate) fn parse_all(lines: &[String]) -> Result<Self, SealedError> {
        let entries = lines
            .iter()
            .map(|l| RecipientEntry::parse(l, None))
            .collect::<Result<Vec<_>, _>>()?;
        Self::from_entries(&entries)
    }

    /// The recipients, as age's encryptor takes them.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &dyn age::Recipient> {
        self.0.iter().map(|r| r.as_ref() as &dyn age::Recipient)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ssh_comment_moves_to_the_comment() {
        // A well-known test vector: an ed25519 public key.
        let line = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHsKLqeplhpW+uObz5dvMgjz1OxfM/XXUB+VHtZ6isGN alice@rust";
        let entry = RecipientEntry::parse(line, None).unwrap();
        assert_eq!(
            entry.key,
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHsKLqeplhpW+uObz5dvMgjz1OxfM/XXUB+VHtZ6isGN"
        );
        assert_eq!(entry.comment.as_deref(), Some("alice@rust"));
    }

    #[test]
    fn private_keys_and_garbage_are_refused_without_echo() {
        let secret = age::x25519::Identity::generate();
        use age::secrecy::ExposeSecret;
        let text = secret.to_string().expose_secret().to_string();
        let err = RecipientEntry::parse(&text, None).unwrap_err().to_string();
        assert!(!err.contains(&text[15..]), "{err}");
        assert!(RecipientEntry::parse("age1nope", None).is_err());
    }

    #[test]
    fn recipients_file_comments_attach_to_the_next_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("recipients.txt");
        let a = age::x25519::Identity::generate().to_public().to_string();
        let b = age::x25519::Identity::generate().to_public().to_string();
        std::fs::write(&path, format!("# cluster\n{a}\n\n{b}\n")).unwrap();
        let entries = read_recipients_file(&path).unwrap();
        assert_eq!(entries[0].comment.as_deref(), Some("cluster"));
        assert_eq!(entries[1].comment, None);
    }
}
