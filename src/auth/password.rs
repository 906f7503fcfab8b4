//! argon2id with OWASP's current parameters (m = 19456 KiB, t = 2, p = 1).
//!
//! Hashing is deliberately slow and memory-hungry, so it runs on the blocking pool and a
//! semaphore caps how many run at once: a burst of logins queues instead of allocating
//! 19 MiB per request until the pod is OOM-killed.

use std::sync::Arc;

use argon2::password_hash::{PasswordHash, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use rand::RngCore;
use tokio::sync::Semaphore;

use crate::domain::Password;

/// OWASP Password Storage Cheat Sheet, argon2id, first recommended configuration.
fn argon2() -> Argon2<'static> {
    let params = Params::new(19_456, 2, 1, None).expect("OWASP argon2 parameters are valid");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// A hash of a random password nobody knows (thrown away after hashing), verified against
/// when the user does not exist or has no usable hash, so that "no such user" costs the same
/// time as "wrong password". A constant rather than computed at start-up: hashing costs tens
/// of milliseconds and 19 MiB before the first request could be served. Its parameters must
/// be those of [`argon2`] (a test checks).
const DUMMY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$JrMeNIToGcuyrRiz1yF1ww$KO0EBzUzJuNhDZ5+lvrh6czpcWbKuMSQQ7QnOvNvL0k";

fn hash_blocking(password: &str) -> Result<String, argon2::password_hash::Error> {
    let mut salt = [0u8; 16];
    rand::rng().fill_bytes(&mut salt);
    let salt = SaltString::encode_b64(&salt)?;
    use argon2::password_hash::PasswordHasher as _;
    Ok(argon2()
        .hash_password(password.as_bytes(), &salt)?
        .to_string())
}

/// The outcome of a password check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// The password matches the stored hash.
    Match,
    /// It does not, or there was no usable hash: the caller cannot tell which, on purpose.
    Mismatch,
}

/// Hashes and verifies passwords off the async runtime, a bounded number at a time.
#[derive(Clone)]
pub(crate) struct PasswordHasher {
    permits: Arc<Semaphore>,
}

impl PasswordHasher {
    /// A hasher running at most `concurrency` hashes at once.
    pub(crate) fn new(concurrency: usize) -> Self {
        PasswordHasher {
            permits: Arc::new(Semaphore::new(concurrency.max(1))),
        }
    }

    /// A PHC-format argon2id hash of `password` with a fresh random salt.
    pub(crate) async fn hash(&self, password: Password) -> anyhow::Result<String> {
        let _permit = self.permits.acquire().await?;
        let hash = tokio::task::spawn_blocking(move || hash_blocking(password.expose()))
            .await?
            .map_err(|e| anyhow::anyhow!("argon2 hashing failed: {e}"))?;
        Ok(hash)
    }

    /// Checks `password` against `stored`. A missing or unusable stored hash (the seed's
    /// sample users have `!locked`) is checked against the dummy hash and is a mismatch.
    pub(crate) async fn verify(
        &self,
        password: String,
        stored: Option<String>,
    ) -> anyhow::Result<Verdict> {
        let _permit = self.permits.acquire().await?;
        let password = zeroize::Zeroizing::new(password);
        let verdict = tokio::task::spawn_blocking(move || {
            let usable = stored.as_deref().and_then(|s| PasswordHash::new(s).ok());
            match usable {
                Some(hash) => match argon2().verify_password(password.as_bytes(), &hash) {
                    Ok(()) => Verdict::Match,
                    Err(_) => Verdict::Mismatch,
                },
                None => {
                    let dummy = PasswordHash::new(DUMMY_HASH).expect("the dummy hash parses");
                    let _ = argon2().verify_password(password.as_bytes(), &dummy);
                    Verdict::Mismatch
                }
            }
        })
        .await?;
        Ok(verdict)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dummy_hash_has_the_parameters_real_hashes_get() {
        let params = argon2().params().clone();
        let prefix = format!(
            "$argon2id$v=19$m={},t={},p={}$",
            params.m_cost(),
            params.t_cost(),
            params.p_cost()
        );
        assert!(DUMMY_HASH.starts_with(&prefix), "{DUMMY_HASH} vs {prefix}");
        assert!(PasswordHash::new(DUMMY_HASH).is_ok());
    }

    #[tokio::test]
    async fn hashes_with_owasp_parameters_and_verifies() {
        let hasher = PasswordHasher::new(2);
        let pw = || Password::parse("password", "correct horse battery").unwrap();
        let hash = hasher.hash(pw()).await.unwrap();
        assert!(
            hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{hash}"
        );
        assert_eq!(
            hasher
                .verify("correct horse battery".into(), Some(hash.clone()))
                .await
                .unwrap(),
            Verdict::Match
        );
        assert_eq!(
            hasher
                .verify("wrong horse battery".into(), Some(hash))
                .await
                .unwrap(),
            Verdict::Mismatch
        );
        assert_eq!(
            hasher
                .verify("anything".into(), Some("!locked".into()))
                .await
                .unwrap(),
            Verdict::Mismatch
        );
        assert_eq!(
            hasher.verify("anything".into(), None).await.unwrap(),
            Verdict::Mismatch
        );
    }
}
