//! The binding of a sealed value to its file's context and its key name.
//!
//! A value is a standard age file whose header carries one extra stanza,
//! `-> discbaboons-bind <base64(context)> <base64(key)>` with an empty body. age authenticates
//! the whole header with a MAC keyed by the file key, so the binding cannot be edited without
//! the value failing to decrypt; and age implementations skip stanzas they do not know, so the
//! stock `age` CLI still opens the value (the break-glass path).
//!
//! Writing the stanza is a [`Recipient`] that wraps nothing; reading it is an [`Identity`]
//! that unwraps nothing but looks at every stanza of the header as age hands them over.

use std::cell::RefCell;
use std::collections::HashSet;

use age::{DecryptError, EncryptError, Identity, Recipient};
use age_core::format::{FileKey, Stanza};
use base64::Engine;
use base64::engine::general_purpose::STANDARD_NO_PAD;

/// The stanza tag. Unknown tags are ignored by every age implementation.
pub(crate) const BIND_TAG: &str = "discbaboons-bind";

/// The context and key name a value was sealed for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Binding {
    /// The file's context, e.g. `discbaboons/prod`.
    pub context: String,
    /// The key name, e.g. `DATABASE_PASSWORD`.
    pub key: String,
}

impl Binding {
    /// A binding of `key` in the file of `context`.
    pub(crate) fn new(context: &str, key: &str) -> Self {
        Binding {
            context: context.to_owned(),
            key: key.to_owned(),
        }
    }

    fn to_stanza(&self) -> Stanza {
        Stanza {
            tag: BIND_TAG.to_owned(),
            args: vec![
                STANDARD_NO_PAD.encode(&self.context),
                STANDARD_NO_PAD.encode(&self.key),
            ],
            body: Vec::new(),
        }
    }

    /// Reads a binding stanza; `None` for another tag, `Some(Err)` for a damaged binding.
    fn from_stanza(stanza: &Stanza) -> Option<Result<Self, String>> {
        if stanza.tag != BIND_TAG {
            return None;
        }
        let decode = |arg: &String| {
            STANDARD_NO_PAD
                .decode(arg)
                .ok()
                .and_then(|bytes| String::from_utf8(bytes).ok())
        };
        Some(match (&stanza.args[..], stanza.body.is_empty()) {
            ([context, key], true) => match (decode(context), decode(key)) {
                (Some(context), Some(key)) => Ok(Binding { context, key }),
                _ => Err("its binding stanza does not decode".into()),
            },
            _ => Err("its binding stanza has the wrong shape".into()),
        })
    }
}

/// Adds the binding stanza to a value's header when passed to `Encryptor::with_recipients`
/// next to the real recipients. It wraps no file key, so it grants nobody access.
pub(crate) struct BindingRecipient(pub Binding);

impl Recipient for BindingRecipient {
    fn wrap_file_key(
        &self,
        _file_key: &FileKey,
    ) -> Result<(Vec<Stanza>, HashSet<String>), EncryptError> {
        // No labels: X25519 and SSH recipients have none, and label sets must be equal.
        Ok((vec![self.0.to_stanza()], HashSet::new()))
    }
}

/// What a value's header says, read without any private key. Unauthenticated until the value
/// has been decrypted (the header MAC is checked then).
#[derive(Debug, Clone, Default)]
pub(crate) struct HeaderView {
    /// The tags of the recipient stanzas (`X25519`, `ssh-ed25519`, ...), without the binding
    /// and without age's random "grease" stanza.
    pub recipients: Vec<String>,
    /// Every binding stanza found, or why one did not decode.
    pub bindings: Vec<Result<Binding, String>>,
}

impl HeaderView {
    /// The one well-formed binding, if the header has exactly one.
    pub(crate) fn binding(&self) -> Option<&Binding> {
        match &self.bindings[..] {
            [Ok(binding)] => Some(binding),
            _ => None,
        }
    }
}

/// An identity that never decrypts, placed first so that it sees the header's stanzas.
#[derive(Default)]
pub(crate) struct HeaderProbe {
    seen: RefCell<Option<HeaderView>>,
}

impl HeaderProbe {
    /// What the header held; `None` if age never got as far as the stanzas.
    pub(crate) fn take(&self) -> Option<HeaderView> {
        self.seen.borrow_mut().take()
    }
}

impl Identity for HeaderProbe {
    fn unwrap_stanza(&self, _stanza: &Stanza) -> Option<Result<FileKey, DecryptError>> {
        None
    }

    fn unwrap_stanzas(&self, stanzas: &[Stanza]) -> Option<Result<FileKey, DecryptError>> {
        let mut view = HeaderView::default();
        for stanza in stanzas {
            match Binding::from_stanza(stanza) {
                Some(binding) => view.bindings.push(binding),
                None if is_recipient_tag(&stanza.tag) => view.recipients.push(stanza.tag.clone()),
                None => {}
            }
        }
        *self.seen.borrow_mut() = Some(view);
        None
    }
}

/// age marks its grease stanzas with a `-grease` suffix; everything else is a recipient.
fn is_recipient_tag(tag: &str) -> bool {
    !tag.ends_with("-grease")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stanza_round_trips_and_is_plain_vchar() {
        let binding = Binding::new("discbaboons/prod", "DATABASE_URL");
        let stanza = binding.to_stanza();
        assert!(
            stanza
                .args
                .iter()
                .all(|a| !a.is_empty() && a.bytes().all(|b| b.is_ascii_graphic()))
        );
        assert_eq!(Binding::from_stanza(&stanza), Some(Ok(binding)));
    }

    #[test]
    fn damaged_or_foreign_stanzas_are_told_apart() {
        let foreign = Stanza {
            tag: "X25519".into(),
            args: vec!["abc".into()],
            body: vec![1, 2, 3],
        };
        assert_eq!(Binding::from_stanza(&foreign), None);
        let damaged = Stanza {
            tag: BIND_TAG.into(),
            args: vec!["!!".into(), "QQ".into()],
            body: Vec::new(),
        };
        assert!(matches!(Binding::from_stanza(&damaged), Some(Err(_))));
    }
}
