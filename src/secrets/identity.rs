//! Identities (private keys): age identity files (`AGE-SECRET-KEY-1...`, as written by
//! `age-keygen` and `app seal keygen`) and OpenSSH private keys, read from files or from every
//! file of a directory (a mounted Kubernetes Secret). Key material is held in zeroizing
//! buffers and never appears in an error.

use std::fs;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use age::secrecy::ExposeSecret;
use zeroize::Zeroizing;

use super::error::SealedError;

/// Whether a passphrase-protected SSH key may ask for its passphrase on the terminal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Passphrase {
    /// In the pod: nobody can answer, so such a key is an error.
    Refuse,
    /// On a laptop: ask once, at load time.
    Prompt,
}

/// What to do with an identity file that other users can read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Exposed {
    /// Load it and warn (a laptop, dev).
    Warn,
    /// Refuse it (prod): whoever else can read it can read every value.
    Refuse,
}

/// The identities that may decrypt a value, and where they came from.
#[derive(Default)]
pub(crate) struct Identities {
    list: Vec<Box<dyn age::Identity>>,
    sources: Vec<PathBuf>,
    /// Things worth a warning, such as an identity file readable by group or others.
    pub warnings: Vec<String>,
}

impl Identities {
    /// Loads every path: a file is one identity file, a directory contributes each regular
    /// file in it (hidden names skipped: Kubernetes keeps `..data` there). A file other
    /// users can read is warned about or refused, as `exposed` says.
    pub(crate) fn load(
        paths: &[PathBuf],
        passphrase: Passphrase,
        exposed: Exposed,
    ) -> Result<Self, SealedError> {
        let mut ids = Identities::default();
        for path in paths {
            let meta = fs::metadata(path).map_err(|e| SealedError::NoIdentity {
                reason: format!("cannot read {}: {e}", path.display()),
            })?;
            if meta.is_dir() {
                ids.load_dir(path, passphrase, exposed)?;
            } else {
                ids.load_file(path, passphrase, exposed)?;
            }
        }
        if ids.list.is_empty() {
            let looked = paths
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ");
            return Err(SealedError::NoIdentity {
                reason: format!(
                    "no identity file in {looked}; mount the identity Secret there (created \
                     with `app seal keygen --k8s-secret`) or pass -i FILE"
                ),
            });
        }
        Ok(ids)
    }

    /// One in-memory X25519 identity, for unit tests.
    #[cfg(test)]
    pub(crate) fn from_x25519(identity: age::x25519::Identity) -> Self {
        Identities {
            list: vec![Box::new(identity)],
            sources: vec![PathBuf::from("(in memory)")],
            warnings: Vec::new(),
        }
    }

    fn load_dir(
        &mut self,
        dir: &Path,
        passphrase: Passphrase,
        exposed: Exposed,
    ) -> Result<(), SealedError> {
        let entries = fs::read_dir(dir).map_err(|e| SealedError::NoIdentity {
            reason: format!("cannot list identity directory {}: {e}", dir.display()),
        })?;
        let mut files: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
            .map(|e| e.path())
            // Follows symlinks, as Kubernetes' Secret volumes are made of them.
            .filter(|p| p.is_file())
            .collect();
        files.sort();
        for file in files {
            self.load_file(&file, passphrase, exposed)?;
        }
        Ok(())
    }

    fn load_file(
        &mut self,
        path: &Path,
        passphrase: Passphrase,
        exposed: Exposed,
    ) -> Result<(), SealedError> {
        let bad = |reason: String| SealedError::BadIdentity {
            file: path.to_owned(),
            reason,
        };
        let meta = fs::metadata(path).map_err(|e| bad(e.to_string()))?;
        let mode = meta.mode() & 0o777;
        // Group read is fine when the group is ours: Kubernetes adds g+r for the pod's fsGroup.
        if mode & 0o004 != 0 || (mode & 0o040 != 0 && !is_own_group(meta.gid())) {
            let fix = "chmod 600 it (or 0400), or set `defaultMode: 0400` on the Secret volume";
            match exposed {
                Exposed::Warn => self.warnings.push(format!(
                    "identity file {} is readable by other users (mode {mode:04o}): {fix}",
                    path.display()
                )),
                // Checked before the file is read: its content never enters this process.
                Exposed::Refuse => {
                    return Err(bad(format!(
                        "it is readable by other users (mode {mode:04o}), which prod refuses: \
                         {fix}"
                    )));
                }
            }
        }
        let text = Zeroizing::new(fs::read_to_string(path).map_err(|e| bad(e.to_string()))?);
        let before = self.list.len();
        if text.contains("-----BEGIN OPENSSH PRIVATE KEY-----")
            || text.contains("-----BEGIN RSA PRIVATE KEY-----")
        {
            let identity = ssh_identity(path, text.as_bytes(), passphrase).map_err(bad)?;
            self.list.push(identity);
        } else {
            // age reports the line number only, never the line.
            let file = age::IdentityFile::from_buffer(text.as_bytes())
                .map_err(|e| bad(format!("not an age identity file ({e})")))?;
            let identities = file
                .into_identities()
                .map_err(|e| bad(format!("unsupported identity ({e})")))?;
            for identity in identities {
                self.list.push(identity);
            }
        }
        if self.list.len() == before {
            return Err(bad("it holds no identity".into()));
        }
        tracing::debug!(file = %path.display(), "identity loaded");
        self.sources.push(path.to_owned());
        Ok(())
    }

    /// How many identities were loaded.
    pub(crate) fn len(&self) -> usize {
        self.list.len()
    }

    /// The identities, as age's decryptor takes them.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &dyn age::Identity> {
        self.list.iter().map(|i| i.as_ref())
    }

    /// The files the identities came from, for messages.
    pub(crate) fn describe(&self) -> String {
        self.sources
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Whether `gid` is this process's effective group or one of its supplementary groups.
fn is_own_group(gid: u32) -> bool {
    // SAFETY: getegid has no preconditions; getgroups writes at most `len` entries into `groups`.
    if unsafe { libc::getegid() } == gid {
        return true;
    }
    let mut groups = vec![0 as libc::gid_t; 256];
    let len = unsafe { libc::getgroups(groups.len() as libc::c_int, groups.as_mut_ptr()) };
    len > 0 && groups[..len as usize].contains(&gid)
}

fn ssh_identity(
    path: &Path,
    text: &[u8],
    passphrase: Passphrase,
) -> Result<Box<dyn age::Identity>, String> {
    let identity = age::ssh::Identity::from_buffer(text, Some(path.display().to_string()))
        .map_err(|e| format!("not a usable SSH private key ({e})"))?;
    match identity {
        age::ssh::Identity::Unencrypted(_) => Ok(Box::new(identity)),
        age::ssh::Identity::Encrypted(key) => {
            if passphrase == Passphrase::Refuse {
                return Err(
                    "a passphrase-protected SSH key cannot be used here (nobody can \
                            type the passphrase); use an age identity from `app seal keygen`"
                        .into(),
                );
            }
            let prompt = format!("Passphrase for SSH key {}: ", path.display());
            let typed = rpassword::prompt_password(prompt)
                .map_err(|e| format!("cannot read the passphrase ({e})"))?;
            let unlocked = key
                .decrypt(typed.into())
                .map_err(|_| "wrong passphrase".to_string())?;
            Ok(Box::new(age::ssh::Identity::from(unlocked)))
        }
        age::ssh::Identity::Unsupported(_) => {
            Err("unsupported SSH key type; use ed25519 or RSA of at least 2048 bits".into())
        }
    }
}

/// A new X25519 identity, in the `age-keygen` file format.
pub(crate) struct NewIdentity {
    /// The identity file's content: two comment lines and the secret key.
    pub file_text: Zeroizing<String>,
    /// Its recipient (public key), `age1...`.
    pub recipient: String,
}

/// Generates an identity. `created` is the timestamp written in the file's comment.
pub(crate) fn generate(created: &str) -> NewIdentity {
    let identity = age::x25519::Identity::generate();
    let recipient = identity.to_public().to_string();
    let file_text = Zeroizing::new(format!(
        "# created: {created}\n# public key: {recipient}\n{}\n",
        identity.to_string().expose_secret()
    ));
    NewIdentity {
        file_text,
        recipient,
    }
}

/// A Kubernetes Secret holding `identity` under `data_key`, for `kubectl apply -f -` (or, to
/// add a second key during a rotation, `kubectl patch --type merge --patch-file`).
pub(crate) fn k8s_secret_manifest(
    name: &str,
    namespace: &str,
    data_key: &str,
    identity: &NewIdentity,
) -> Result<Zeroizing<String>, SealedError> {
    for (what, value) in [("Secret name", name), ("namespace", namespace)] {
        let ok = !value.is_empty()
            && value.len() <= 253
            && value
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
            && !value.starts_with(['-', '.'])
            && !value.ends_with(['-', '.']);
        if !ok {
            return Err(SealedError::BadName {
                what,
                name: value.to_owned(),
                reason: "Kubernetes wants lowercase letters, digits, `-` and `.`".into(),
            });
        }
    }
    super::file::check_key_name(data_key)?;
    let mut out = Zeroizing::new(format!(
        "# The age identity of the pods: apply it, never commit it.\n\
         apiVersion: v1\n\
         kind: Secret\n\
         metadata:\n  \
           name: {name}\n  \
           namespace: {namespace}\n  \
           labels:\n    \
             app.kubernetes.io/component: age-identity\n    \
             app.kubernetes.io/managed-by: app-seal\n\
         type: Opaque\n\
         stringData:\n  \
           {data_key}: |\n"
    ));
    for line in identity.file_text.lines() {
        out.push_str("    ");
        out.push_str(line);
        out.push('\n');
    }
    Ok(out)
}

/// Writes `text` to a new file readable by its owner only; refuses to replace a file.
pub(crate) fn write_private(path: &Path, text: &str) -> Result<(), SealedError> {
    use std::io::Write;
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| SealedError::write(path, e))?;
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| SealedError::write(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_of_keys_loads_and_hidden_entries_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let a = generate("now");
        let b = generate("now");
        write_private(&dir.path().join("old.txt"), &a.file_text).unwrap();
        write_private(&dir.path().join("new.txt"), &b.file_text).unwrap();
        fs::create_dir(dir.path().join("..data")).unwrap();
        let ids = Identities::load(
            &[dir.path().to_owned()],
            Passphrase::Refuse,
            Exposed::Refuse,
        )
        .unwrap();
        assert_eq!(ids.len(), 2);
        assert!(ids.warnings.is_empty(), "{:?}", ids.warnings);
    }

    #[test]
    fn readable_keys_warn_and_empty_dirs_fail() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let err = Identities::load(&[dir.path().to_owned()], Passphrase::Refuse, Exposed::Warn)
            .err()
            .unwrap();
        assert!(matches!(err, SealedError::NoIdentity { .. }), "{err}");
        let key = dir.path().join("key.txt");
        write_private(&key, &generate("now").file_text).unwrap();
        fs::set_permissions(&key, fs::Permissions::from_mode(0o644)).unwrap();
        let ids = Identities::load(
            std::slice::from_ref(&key),
            Passphrase::Refuse,
            Exposed::Warn,
        )
        .unwrap();
        assert!(ids.warnings[0].contains("0644"), "{:?}", ids.warnings);
        let err = Identities::load(&[key], Passphrase::Refuse, Exposed::Refuse)
            .err()
            .unwrap();
        let msg = err.to_string();
        assert!(
            matches!(err, SealedError::BadIdentity { .. })
                && msg.contains("key.txt")
                && msg.contains("0644")
                && msg.contains("chmod 600"),
            "{msg}"
        );
    }

    #[test]
    fn garbage_is_reported_without_its_content() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("key.txt");
        write_private(&key, "AGE-SECRET-KEY-NOT-REALLY-s3cr3t\n").unwrap();
        let err = Identities::load(&[key], Passphrase::Refuse, Exposed::Refuse)
            .err()
            .unwrap();
        let msg = err.to_string();
        assert!(msg.contains("line 1") && !msg.contains("s3cr3t"), "{msg}");
    }
}
