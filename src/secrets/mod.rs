//! Sealed secrets with age, in place of Bitnami Sealed Secrets.
//!
//! A sealed file (one per environment, committed to git) maps key names to standard age files,
//! each bound to the file's context and its key name (see [`binding`]). `app seal` writes it on
//! a laptop with public keys only; in the pod, [`load_sealed`] decrypts it in memory with the
//! identities mounted from a Kubernetes Secret and hands the values to the settings. Nothing
//! here reads the environment: paths come from [`SealedSettings`] or the command line.

pub(crate) mod binding;
mod error;
pub(crate) mod file;
pub(crate) mod identity;
pub(crate) mod recipient;
pub mod tmpfs;
pub(crate) mod value;

use std::collections::BTreeMap;
use std::path::Path;

pub(crate) use binding::Binding;
pub(crate) use error::{SealedError, ValueError};
pub use file::SealedFile;
pub(crate) use identity::{Exposed, Identities, Passphrase};
pub use recipient::{RecipientEntry, Recipients};

use crate::config::{Environment, SealedSettings, SealedValues, SecretString};

/// What [`open_mounted`] found: the values, and warnings for the log.
#[derive(Debug, Default)]
pub(crate) struct Mounted {
    /// The decrypted values by key name.
    pub values: SealedValues,
    /// Things worth a warning (in dev, an identity file readable by group or others).
    pub warnings: Vec<String>,
}

/// Decrypts every value of the sealed file in `sealed.file` with every identity in
/// `sealed.identity_dir`. A missing file is fine in dev (nothing is loaded) and an error in
/// prod. Any value that fails fails the whole load: a half-configured pod must not start.
pub(crate) fn open_mounted(
    sealed: &SealedSettings,
    env: Environment,
) -> Result<Mounted, SealedError> {
    if !sealed.file.exists() {
        return match env {
            Environment::Dev => {
                tracing::debug!(file = %sealed.file.display(), "no sealed file (fine in dev)");
                Ok(Mounted::default())
            }
            Environment::Prod => Err(SealedError::FileMissing {
                file: sealed.file.clone(),
                hint: " (sealed.file / APP_SEALED__FILE): prod requires its secrets; mount \
                       the sealed file's ConfigMap there"
                    .into(),
            }),
        };
    }
    let file = SealedFile::read(&sealed.file)?;
    // The deployment says which context it expects; the file only claims one. Each value's
    // binding is then checked against it too (a value pasted in from another file).
    check_context(
        &file,
        &sealed.file,
        &sealed.context_for(env),
        ExpectedBy::Settings,
    )?;
    let exposed = match env {
        Environment::Dev => Exposed::Warn,
        Environment::Prod => Exposed::Refuse,
    };
    let identities = Identities::load(
        std::slice::from_ref(&sealed.identity_dir),
        Passphrase::Refuse,
        exposed,
    )?;
    let mut values = BTreeMap::new();
    for (key, result) in open_all(&file, &sealed.file, &identities) {
        values.insert(key, result?);
    }
    Ok(Mounted {
        values: SealedValues { values },
        warnings: identities.warnings,
    })
}

/// Where an expected context came from, for the message when a file is of another one.
#[derive(Debug, Clone, Copy)]
pub(crate) enum ExpectedBy {
    /// The setting `sealed.context` (the pods).
    Settings,
    /// `app seal open|verify --expect-context`.
    Flag,
}

/// Refuses `file` (read from `path`) unless its context is `expected`. Each value's binding is
/// then checked against the same context when it is opened.
pub(crate) fn check_context(
    file: &SealedFile,
    path: &Path,
    expected: &str,
    by: ExpectedBy,
) -> Result<(), SealedError> {
    if file.context == expected {
        return Ok(());
    }
    let (expected_by, fix) = match by {
        ExpectedBy::Settings => (
            "sealed.context / APP_SEALED__CONTEXT, by default discbaboons/<APP_ENV>",
            "APP_ENV or APP_SEALED__CONTEXT in its ConfigMap",
        ),
        ExpectedBy::Flag => ("--expect-context", "--expect-context"),
    };
    Err(SealedError::WrongContext {
        file: path.to_owned(),
        found: file.context.clone(),
        expected: expected.to_owned(),
        expected_by,
        fix,
    })
}

/// Decrypts each value of `file` (read from `path`) and checks its binding; one result per key,
/// in key order, so that `verify` can report every key.
pub(crate) fn open_all(
    file: &SealedFile,
    path: &Path,
    identities: &Identities,
) -> Vec<(String, Result<SecretString, SealedError>)> {
    file.values
        .keys()
        .map(|key| (key.clone(), open_one(file, path, key, identities)))
        .collect()
}

/// Decrypts the value of `key` and checks its binding.
pub(crate) fn open_one(
    file: &SealedFile,
    path: &Path,
    key: &str,
    identities: &Identities,
) -> Result<SecretString, SealedError> {
    let armored = file
        .values
        .get(key)
        .ok_or_else(|| SealedError::KeyMissing {
            file: path.to_owned(),
            key: key.to_owned(),
            present: file.key_list(),
        })?;
    let binding = Binding::new(&file.context, key);
    value::open(armored, identities, &binding).map_err(|error| SealedError::Value {
        file: path.to_owned(),
        key: key.to_owned(),
        error,
    })
}

/// Seals each value into `file` under its key, to the file's recipients. Other keys' blocks
/// are left exactly as they were.
pub(crate) fn set_values(
    file: &mut SealedFile,
    values: &[(String, SecretString)],
) -> Result<(), SealedError> {
    let recipients = Recipients::from_entries(&file.recipients)?;
    for (key, value) in values {
        file::check_key_name(key)?;
        let armored = value::seal(
            &recipients,
            &Binding::new(&file.context, key),
            value.expose().as_bytes(),
        )
        .map_err(|e| SealedError::BadRecipient {
            what: "set".into(),
            reason: e.to_string(),
        })?;
        file.values.insert(key.clone(), armored);
    }
    Ok(())
}

/// Re-encrypts every value to `recipients` (key rotation). Every value is decrypted and its
/// binding checked first, so a file is never half re-keyed.
pub(crate) fn rekey(
    file: &mut SealedFile,
    path: &Path,
    identities: &Identities,
    recipients: Vec<RecipientEntry>,
) -> Result<(), SealedError> {
    Recipients::from_entries(&recipients)?;
    let mut plain = Vec::new();
    for (key, result) in open_all(file, path, identities) {
        plain.push((key, result?));
    }
    file.recipients = recipients;
    set_values(file, &plain)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings_for(dir: &Path) -> SealedSettings {
        SealedSettings {
            file: dir.join("secrets.yaml"),
            identity_dir: dir.join("identity"),
            context: None,
        }
    }

    #[test]
    fn missing_file_is_fine_in_dev_and_fatal_in_prod() {
        let dir = tempfile::tempdir().unwrap();
        let dev = open_mounted(&settings_for(dir.path()), Environment::Dev);
        assert!(dev.unwrap().values.values.is_empty());
        let prod = open_mounted(&settings_for(dir.path()), Environment::Prod);
        let err = prod.unwrap_err();
        assert!(matches!(err, SealedError::FileMissing { .. }), "{err}");
    }

    #[test]
    fn the_deployment_not_the_file_decides_the_context() {
        let dir = tempfile::tempdir().unwrap();
        let mut sealed = settings_for(dir.path());
        std::fs::create_dir(&sealed.identity_dir).unwrap();
        let id = identity::generate("t");
        identity::write_private(&sealed.identity_dir.join("id"), &id.file_text).unwrap();
        let entry = RecipientEntry::parse(&id.recipient, None).unwrap();
        let mut file = SealedFile::new("discbaboons/dev", vec![entry]).unwrap();
        set_values(&mut file, &[("JWT_SECRET".into(), "j".into())]).unwrap();
        file.write(&sealed.file).unwrap();

        assert!(open_mounted(&sealed, Environment::Dev).is_ok());
        let err = open_mounted(&sealed, Environment::Prod).unwrap_err();
        match &err {
            SealedError::WrongContext {
                found, expected, ..
            } => assert_eq!(
                (&found[..], &expected[..]),
                ("discbaboons/dev", "discbaboons/prod")
            ),
            other => panic!("{other}"),
        }
        // An explicit setting wins over the environment's default.
        sealed.context = Some("discbaboons/dev".into());
        assert!(open_mounted(&sealed, Environment::Prod).is_ok());
        sealed.context = Some("elsewhere/dev".into());
        assert!(open_mounted(&sealed, Environment::Dev).is_err());
    }

    #[test]
    fn mounted_file_loads_and_rekey_moves_to_new_keys() {
        let dir = tempfile::tempdir().unwrap();
        let sealed = settings_for(dir.path());
        std::fs::create_dir(&sealed.identity_dir).unwrap();
        let old = identity::generate("t");
        let new = identity::generate("t");
        identity::write_private(&sealed.identity_dir.join("old"), &old.file_text).unwrap();

        let entry = |r: &str| RecipientEntry::parse(r, None).unwrap();
        let mut file = SealedFile::new("discbaboons/prod", vec![entry(&old.recipient)]).unwrap();
        set_values(&mut file, &[("JWT_SECRET".into(), "j".into())]).unwrap();
        file.write(&sealed.file).unwrap();
        let mounted = open_mounted(&sealed, Environment::Prod).unwrap();
        assert_eq!(mounted.values.values["JWT_SECRET"].expose(), "j");

        let ids = Identities::load(
            std::slice::from_ref(&sealed.identity_dir),
            Passphrase::Refuse,
            Exposed::Refuse,
        )
        .unwrap();
        rekey(&mut file, &sealed.file, &ids, vec![entry(&new.recipient)]).unwrap();
        file.write(&sealed.file).unwrap();
        let err = open_mounted(&sealed, Environment::Prod).unwrap_err();
        assert!(
            matches!(
                err,
                SealedError::Value {
                    error: ValueError::NoMatchingIdentity { .. },
                    ..
                }
            ),
            "{err}"
        );
    }
}
