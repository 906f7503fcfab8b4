//! One sealed value: plaintext in, an ASCII-armored standard age file out, and back, with the
//! binding checked. Plaintext only ever lives in zeroizing buffers.

use std::io::{Read, Write};
use std::iter;

use age::armor::{ArmoredReader, ArmoredWriter, Format};
use age::{DecryptError, Decryptor, Encryptor, Identity, Recipient};
use zeroize::Zeroizing;

use super::binding::{Binding, BindingRecipient, HeaderProbe, HeaderView};
use super::error::ValueError;
use super::identity::Identities;
use super::recipient::Recipients;
use crate::config::SecretString;

/// The first line of every sealed value.
pub(crate) const ARMOR_BEGIN: &str = "-----BEGIN AGE ENCRYPTED FILE-----";

/// Encrypts `plaintext` to every recipient, bound to `binding`, as ASCII armor ending in `\n`.
pub(crate) fn seal(
    recipients: &Recipients,
    binding: &Binding,
    plaintext: &[u8],
) -> Result<String, age::EncryptError> {
    let bind = BindingRecipient(binding.clone());
    let encryptor =
        Encryptor::with_recipients(recipients.iter().chain(iter::once(&bind as &dyn Recipient)))?;
    let mut out = Vec::new();
    // Writing into a Vec cannot fail.
    let armor = ArmoredWriter::wrap_output(&mut out, Format::AsciiArmor).expect("in memory");
    let mut writer = encryptor.wrap_output(armor).expect("in memory");
    writer.write_all(plaintext).expect("in memory");
    writer
        .finish()
        .and_then(|armor| armor.finish())
        .expect("in memory");
    let mut text = String::from_utf8(out).expect("armor is ASCII");
    if !text.ends_with('\n') {
        text.push('\n');
    }
    Ok(text)
}

/// Reads a value's header without decrypting: its recipient stanza types and its binding
/// (unauthenticated). `Err` when the value is not an age file.
pub(crate) fn inspect(armored: &str) -> Result<HeaderView, ValueError> {
    let decryptor = decryptor(armored)?;
    let probe = HeaderProbe::default();
    // The probe alone never decrypts; it only records the stanzas.
    let _ = decryptor.decrypt(iter::once(&probe as &dyn Identity));
    probe
        .take()
        .ok_or_else(|| ValueError::Malformed("its header has no stanzas".into()))
}

/// Decrypts a value with any of `identities` and checks that it is bound to `expected`.
pub(crate) fn open(
    armored: &str,
    identities: &Identities,
    expected: &Binding,
) -> Result<SecretString, ValueError> {
    let decryptor = decryptor(armored)?;
    let probe = HeaderProbe::default();
    let result = decryptor.decrypt(iter::once(&probe as &dyn Identity).chain(identities.iter()));
    let header = probe.take().unwrap_or_default();
    let mut reader = match result {
        Ok(reader) => reader,
        Err(DecryptError::NoMatchingKeys) => {
            return Err(ValueError::NoMatchingIdentity {
                count: identities.len(),
                sources: identities.describe(),
                hint: mismatch_hint(&header, expected),
            });
        }
        Err(DecryptError::KeyDecryptionFailed) => return Err(ValueError::IdentityLocked),
        Err(DecryptError::InvalidMac | DecryptError::DecryptionFailed) => {
            return Err(ValueError::Tampered);
        }
        Err(DecryptError::InvalidHeader) => return Err(ValueError::Tampered),
        Err(other) => return Err(ValueError::Malformed(describe(&other))),
    };
    let mut plaintext = Zeroizing::new(Vec::new());
    // The payload's STREAM tags fail here when a byte after the header was changed.
    reader
        .read_to_end(&mut plaintext)
        .map_err(|_| ValueError::Tampered)?;

    // The header MAC has been verified by now, so the binding is authentic.
    check_binding(&header, expected)?;
    let text = std::str::from_utf8(&plaintext).map_err(|_| ValueError::NotText)?;
    tracing::trace!(key = %expected.key, "value decrypted and binding checked");
    Ok(SecretString::from(text))
}

fn decryptor(
    armored: &str,
) -> Result<Decryptor<ArmoredReader<std::io::BufReader<&[u8]>>>, ValueError> {
    if !armored.starts_with(ARMOR_BEGIN) {
        return Err(ValueError::Malformed(format!(
            "it does not start with {ARMOR_BEGIN}"
        )));
    }
    Decryptor::new(ArmoredReader::new(armored.as_bytes()))
        .map_err(|e| ValueError::Malformed(describe(&e)))
}

/// age's own message for structural errors; they never quote the input.
fn describe(err: &DecryptError) -> String {
    match err {
        DecryptError::Io(io) => format!("bad armor or header: {}", io.kind()),
        DecryptError::UnknownFormat => "an unknown age format version".into(),
        other => other.to_string(),
    }
}

fn check_binding(header: &HeaderView, expected: &Binding) -> Result<(), ValueError> {
    let binding = match &header.bindings[..] {
        [] => return Err(ValueError::Unbound),
        [Ok(binding)] => binding,
        [Err(reason)] => return Err(ValueError::Malformed(reason.clone())),
        _ => {
            return Err(ValueError::Malformed(
                "its header holds more than one binding".into(),
            ));
        }
    };
    if binding.context != expected.context {
        return Err(ValueError::WrongContext {
            expected: expected.context.clone(),
            found: binding.context.clone(),
        });
    }
    if binding.key != expected.key {
        return Err(ValueError::WrongKey {
            expected: expected.key.clone(),
            found: binding.key.clone(),
        });
    }
    Ok(())
}

/// When no identity matches, the unauthenticated binding often explains why.
fn mismatch_hint(header: &HeaderView, expected: &Binding) -> String {
    match header.binding() {
        Some(b) if b.context != expected.context => format!(
            " (its header claims context {}: was it copied from another environment's file?)",
            b.context
        ),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keypair() -> (Recipients, Identities) {
        let identity = age::x25519::Identity::generate();
        let recipients = Recipients::parse_all(&[identity.to_public().to_string()]).unwrap();
        (recipients, Identities::from_x25519(identity))
    }

    #[test]
    fn round_trip_checks_the_binding() {
        let (recipients, identities) = keypair();
        let binding = Binding::new("discbaboons/prod", "JWT_SECRET");
        let armored = seal(&recipients, &binding, b"p@ss:/+=?&%").unwrap();
        assert!(armored.starts_with(ARMOR_BEGIN) && armored.ends_with("-----\n"));
        let value = open(&armored, &identities, &binding).unwrap();
        assert_eq!(value.expose(), "p@ss:/+=?&%");

        let other_key = Binding::new("discbaboons/prod", "DATABASE_PASSWORD");
        let err = open(&armored, &identities, &other_key).unwrap_err();
        assert!(matches!(err, ValueError::WrongKey { .. }), "{err}");
        let other_env = Binding::new("discbaboons/dev", "JWT_SECRET");
        let err = open(&armored, &identities, &other_env).unwrap_err();
        assert!(matches!(err, ValueError::WrongContext { .. }), "{err}");
    }

    #[test]
    fn header_is_readable_without_a_key() {
        let (recipients, _) = keypair();
        let binding = Binding::new("ctx", "K");
        let view = inspect(&seal(&recipients, &binding, b"x").unwrap()).unwrap();
        assert_eq!(view.recipients, vec!["X25519".to_string()]);
        assert_eq!(view.binding(), Some(&binding));
    }

    #[test]
    fn wrong_identity_and_garbage_are_told_apart() {
        let (recipients, _) = keypair();
        let (_, stranger) = keypair();
        let binding = Binding::new("ctx", "K");
        let armored = seal(&recipients, &binding, b"x").unwrap();
        let err = open(&armored, &stranger, &binding).unwrap_err();
        assert!(
            matches!(err, ValueError::NoMatchingIdentity { .. }),
            "{err}"
        );
        let err = open("hello", &stranger, &binding).unwrap_err();
        assert!(matches!(err, ValueError::Malformed(_)), "{err}");
    }
}
