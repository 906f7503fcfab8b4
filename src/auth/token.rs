//! HS256 JSON Web Tokens: `sub` (the user id), `iss`, `iat` and `exp`.
//!
//! The algorithm is pinned: a token whose header says anything else (`none`, `RS256` with
//! the secret as a "public key", ...) is rejected before its signature is looked at.
//!
//! A password change revokes every token obtained with the old password: each token carries
//! `pwc`, the user's `last_password_change` as login read it in the same row as the hash it
//! checked the password against, and a token is only accepted while that is still the
//! user's `last_password_change` (which every change moves forward). Comparing times of
//! issue instead would let a login that checked the old password just before a change get a
//! token issued just after it. Tokens from before `pwc` existed fall back to that comparison:
//! `iat` carries milliseconds (RFC 7519 allows a non-integer NumericDate) and is compared
//! with `last_password_change`; [`now_millis`] is the clock both are read from. `nbf` is
//! checked when a token has one.
//!
//! How strong a secret must be is decided here, in [`JwtKeys::from_settings`], and only
//! here: the server asks the keys ([`JwtKeys::is_short`], [`JwtKeys::is_ephemeral`]) what
//! to warn about.
//!
//! Rotation without logouts: besides the signing key (`jwt.secret`) a second key
//! (`jwt.previous_secret`) may be configured, accepted for verification only and, when
//! `jwt.previous_until` is set, only until then. Every token's header names the key that
//! signed it in `kid`: a fingerprint of the key ([`key_id`]), an HMAC of a fixed label under
//! the key, which says nothing about the key that the token's own signature does not already.
//! Verification picks the key by `kid`; a token without one (issued before `kid` existed)
//! is tried with both.

use std::time::Duration;

use chrono::{DateTime, DurationRound, TimeDelta, TimeZone, Utc};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rand::RngCore;
use serde::{Deserialize, Serialize};

use crate::config::{Environment, JwtSettings};

/// Fewest bytes an HS256 secret may have in prod: the hash's output size (RFC 7518 §3.2).
pub(crate) const MIN_SECRET_BYTES: usize = 32;

/// The current time at the precision tokens carry in `iat` and `last_password_change` is
/// stored at, so that the two compare exactly.
pub(crate) fn now_millis() -> DateTime<Utc> {
    let now = Utc::now();
    now.duration_trunc(TimeDelta::milliseconds(1))
        .unwrap_or(now)
}

/// Whether a configured secret is long enough for prod.
fn is_strong(secret: &str) -> bool {
    secret.len() >= MIN_SECRET_BYTES
}

/// Allowed clock difference between replicas when checking `exp` and `iat`, in seconds.
const LEEWAY_SECS: u64 = 5;

/// What a token says.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Claims {
    /// The user id, as a string (RFC 7519 says `sub` is a string).
    pub sub: String,
    /// Who issued the token (`jwt.issuer`).
    pub iss: String,
    /// Issued at: seconds since the epoch, with milliseconds.
    pub iat: f64,
    /// Expires at: seconds since the epoch.
    pub exp: u64,
    /// Not before: seconds since the epoch; checked when present (we never write one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
    /// The user's `last_password_change` the token was obtained under, in microseconds since
    /// the epoch (0 when there was none); absent in tokens issued before it was introduced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pwc: Option<i64>,
}

impl Claims {
    /// `iat` in milliseconds since the epoch.
    pub(crate) fn issued_at_millis(&self) -> i64 {
        (self.iat * 1000.0).round() as i64
    }

    /// Whether the token was obtained under this `last_password_change` (the user's current
    /// one): a password change since then revokes it.
    pub(crate) fn is_current(&self, last_password_change: Option<DateTime<Utc>>) -> bool {
        match self.pwc {
            Some(pwc) => pwc == password_change_stamp(last_password_change),
            None => last_password_change
                .is_none_or(|changed| self.issued_at_millis() >= changed.timestamp_millis()),
        }
    }

    /// The user id in `sub`.
    pub(crate) fn user_id(&self) -> Result<i32, TokenError> {
        self.sub.parse().map_err(|_| TokenError::Invalid)
    }
}

/// The `pwc` of a token obtained under this `last_password_change`.
pub(super) fn password_change_stamp(last_password_change: Option<DateTime<Utc>>) -> i64 {
    last_password_change.map_or(0, |t| t.timestamp_micros())
}

/// A freshly issued token.
#[derive(Debug, Clone)]
pub(crate) struct Issued {
    /// The compact JWS.
    pub token: String,
    /// When it stops being accepted.
    pub expires_at: DateTime<Utc>,
}

/// Why a token was not accepted. Deliberately coarse: the client learns "log in again".
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum TokenError {
    /// Past its `exp`.
    #[error("the token has expired")]
    Expired,
    /// Malformed, wrong signature, wrong algorithm, wrong issuer, missing claims, or an `iat`
    /// in the future.
    #[error("the token is invalid")]
    Invalid,
}

/// A JWT secret is missing or too short for prod.
#[derive(Debug, thiserror::Error)]
#[error(
    "{setting} is {found}: prod needs a random secret of at least {MIN_SECRET_BYTES} bytes. \
     Generate one (e.g. `openssl rand -base64 48`) and seal it as {sealed} (or set {env})"
)]
pub struct WeakSecret {
    setting: &'static str,
    sealed: &'static str,
    env: &'static str,
    found: String,
}

impl WeakSecret {
    fn signing(found: String) -> Self {
        WeakSecret {
            setting: "jwt.secret",
            sealed: "JWT_SECRET",
            env: "APP_JWT__SECRET",
            found,
        }
    }
}

/// The label whose HMAC under a key is that key's `kid`.
const KID_LABEL: &[u8] = b"discbaboons jwt key id v1";

/// Characters of the base64url HMAC kept as the `kid`: 96 bits, plenty to tell keys apart.
const KID_CHARS: usize = 16;

/// The `kid` of the key `secret`: the first 96 bits of HMAC-SHA256(secret, a fixed label),
/// base64url. Not the secret, nor a plain hash of it: without the key it cannot be computed,
/// and guessing a key from it is no easier than from any token's signature.
pub(crate) fn key_id(secret: &[u8]) -> String {
    let mac = jsonwebtoken::crypto::sign(
        KID_LABEL,
        &EncodingKey::from_secret(secret),
        Algorithm::HS256,
    )
    .expect("HMAC-SHA256 takes a key of any length");
    mac[..KID_CHARS].to_owned()
}

/// The key accepted besides the signing key, for verification only.
struct PreviousKey {
    kid: String,
    decoding: DecodingKey,
    /// Refused after this instant.
    until: Option<DateTime<Utc>>,
}

impl PreviousKey {
    fn accepted_at(&self, now: DateTime<Utc>) -> bool {
        self.until.is_none_or(|until| now <= until)
    }
}

/// Signing and verification keys with their validation rules.
pub(crate) struct JwtKeys {
    kid: String,
    encoding: EncodingKey,
    decoding: DecodingKey,
    previous: Option<PreviousKey>,
    validation: Validation,
    issuer: String,
    ttl: Duration,
    ephemeral: bool,
    short: bool,
}

impl JwtKeys {
    /// Keys from the configured secret. In prod the secret must exist and be at least
    /// [`MIN_SECRET_BYTES`] long; in dev a shorter one is accepted (see [`JwtKeys::is_short`])
    /// and a missing one is replaced by a random one for this process (see
    /// [`JwtKeys::is_ephemeral`]).
    ///
    /// `jwt.previous_secret`, when set, is accepted for verification (until
    /// `jwt.previous_until`, when set); in prod it must be as strong as the signing secret.
    pub(crate) fn from_settings(
        settings: &JwtSettings,
        env: Environment,
    ) -> Result<JwtKeys, WeakSecret> {
        let mut keys = JwtKeys::signing_from_settings(settings, env)?;
        let previous = settings
            .previous_secret
            .as_ref()
            .map(|s| s.expose())
            .filter(|s| !s.is_empty());
        if let Some(previous) = previous {
            if env == Environment::Prod && !is_strong(previous) {
                return Err(WeakSecret {
                    setting: "jwt.previous_secret",
                    sealed: "JWT_PREVIOUS_SECRET",
                    env: "APP_JWT__PREVIOUS_SECRET",
                    found: format!("only {} bytes", previous.len()),
                });
            }
            if let Some(until) = settings.previous_until.filter(|u| *u < Utc::now()) {
                tracing::warn!(
                    %until,
                    "jwt.previous_until has passed: jwt.previous_secret is refused (remove \
                     APP_JWT__PREVIOUS_UNTIL before the next rotation's first step)"
                );
            }
            keys.previous = Some(PreviousKey {
                kid: key_id(previous.as_bytes()),
                decoding: DecodingKey::from_secret(previous.as_bytes()),
                until: settings.previous_until,
            });
        }
        Ok(keys)
    }

    fn signing_from_settings(
        settings: &JwtSettings,
        env: Environment,
    ) -> Result<JwtKeys, WeakSecret> {
        match (&settings.secret, env) {
            (Some(secret), Environment::Prod) if !is_strong(secret.expose()) => Err(
                WeakSecret::signing(format!("only {} bytes", secret.expose().len())),
            ),
            (Some(secret), _) if !secret.expose().is_empty() => {
                let mut keys = JwtKeys::new(
                    secret.expose().as_bytes(),
                    &settings.issuer,
                    settings.ttl,
                    false,
                );
                keys.short = !is_strong(secret.expose());
                Ok(keys)
            }
            (_, Environment::Prod) => Err(WeakSecret::signing("not set".into())),
            (_, Environment::Dev) => {
                let mut secret = zeroize::Zeroizing::new([0u8; 64]);
                rand::rng().fill_bytes(&mut *secret);
                Ok(JwtKeys::new(&*secret, &settings.issuer, settings.ttl, true))
            }
        }
    }

    fn new(secret: &[u8], issuer: &str, ttl: Duration, ephemeral: bool) -> JwtKeys {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.algorithms = vec![Algorithm::HS256];
        validation.set_issuer(&[issuer]);
        validation.set_required_spec_claims(&["exp", "iss", "sub"]);
        validation.leeway = LEEWAY_SECS;
        validation.validate_exp = true;
        validation.validate_nbf = true;
        JwtKeys {
            kid: key_id(secret),
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            previous: None,
            validation,
            issuer: issuer.to_owned(),
            ttl,
            ephemeral,
            short: false,
        }
    }

    /// Whether the secret was generated for this process (dev without a configured secret):
    /// tokens will not survive a restart and other replicas will not accept them.
    pub(crate) fn is_ephemeral(&self) -> bool {
        self.ephemeral
    }

    /// Whether the configured secret is shorter than [`MIN_SECRET_BYTES`]: accepted in dev,
    /// refused in prod.
    pub(crate) fn is_short(&self) -> bool {
        self.short
    }

    /// Issues a token for `user_id`, issued at `now`, valid while the user's
    /// `last_password_change` stays `password_changed` (read with the hash the password was
    /// checked against).
    pub(crate) fn issue(
        &self,
        user_id: i32,
        password_changed: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> anyhow::Result<Issued> {
        let expires_at = now + self.ttl;
        let claims = Claims {
            sub: user_id.to_string(),
            iss: self.issuer.clone(),
            iat: now.timestamp_millis() as f64 / 1000.0,
            exp: expires_at.timestamp().max(0) as u64,
            nbf: None,
            pwc: Some(password_change_stamp(password_changed)),
        };
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(self.kid.clone());
        let token = jsonwebtoken::encode(&header, &claims, &self.encoding)?;
        let expires_at = Utc
            .timestamp_opt(claims.exp as i64, 0)
            .single()
            .unwrap_or(expires_at);
        Ok(Issued { token, expires_at })
    }

    /// The `kid` tokens are signed with.
    #[cfg(test)]
    pub(crate) fn key_id(&self) -> &str {
        &self.kid
    }

    /// The keys that may have signed a token whose header names `kid`, at `now`: the one it
    /// names, or both when it names none (a token from before `kid`). A previous key past
    /// its `jwt.previous_until`, or a `kid` of no key here, leaves none.
    fn candidates(&self, kid: Option<&str>, now: DateTime<Utc>) -> Vec<&DecodingKey> {
        let previous = self.previous.as_ref().filter(|p| p.accepted_at(now));
        match kid {
            Some(kid) if kid == self.kid => vec![&self.decoding],
            Some(kid) => previous
                .filter(|p| p.kid == kid)
                .map(|p| &p.decoding)
                .into_iter()
                .collect(),
            None => std::iter::once(&self.decoding)
                .chain(previous.map(|p| &p.decoding))
                .collect(),
        }
    }

    /// Checks signature (with the key the header's `kid` names), algorithm, issuer, expiry
    /// and that `iat` is not in the future.
    pub(crate) fn verify(&self, token: &str, now: DateTime<Utc>) -> Result<Claims, TokenError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Invalid)?;
        let mut outcome = Err(TokenError::Invalid);
        for key in self.candidates(header.kid.as_deref(), now) {
            // The signature is checked before the claims: `Expired` means this key signed it.
            match jsonwebtoken::decode::<Claims>(token, key, &self.validation) {
                Ok(data) => {
                    outcome = Ok(data.claims);
                    break;
                }
                Err(e) if matches!(e.kind(), ErrorKind::ExpiredSignature) => {
                    outcome = Err(TokenError::Expired);
                    break;
                }
                Err(_) => {}
            }
        }
        let claims = outcome?;
        let leeway_ms = (LEEWAY_SECS * 1000) as i64;
        if !claims.iat.is_finite() || claims.issued_at_millis() > now.timestamp_millis() + leeway_ms
        {
            return Err(TokenError::Invalid);
        }
        claims.user_id()?;
        Ok(claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SecretString;

    fn settings(secret: Option<&str>) -> JwtSettings {
        JwtSettings {
            secret: secret.map(SecretString::from),
            previous_secret: None,
            previous_until: None,
            ttl: Duration::from_secs(3600),
            issuer: "discbaboons".into(),
        }
    }

    const STRONG: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn prod_requires_a_strong_secret_and_dev_makes_one_up() {
        assert!(JwtKeys::from_settings(&settings(None), Environment::Prod).is_err());
        let err = JwtKeys::from_settings(&settings(Some("short")), Environment::Prod)
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("only 5 bytes") && !err.contains("short"),
            "{err}"
        );
        assert!(
            !JwtKeys::from_settings(&settings(Some(STRONG)), Environment::Prod)
                .unwrap()
                .is_ephemeral()
        );
        assert!(
            JwtKeys::from_settings(&settings(None), Environment::Dev)
                .unwrap()
                .is_ephemeral()
        );
        let short = JwtKeys::from_settings(&settings(Some("short")), Environment::Dev).unwrap();
        assert!(short.is_short() && !short.is_ephemeral());
        assert!(
            !JwtKeys::from_settings(&settings(Some(STRONG)), Environment::Dev)
                .unwrap()
                .is_short()
        );
    }

    #[test]
    fn round_trip_keeps_milliseconds_and_expiry_is_checked() {
        let keys = JwtKeys::from_settings(&settings(Some(STRONG)), Environment::Prod).unwrap();
        let now = Utc::now();
        let issued = keys.issue(42, None, now).unwrap();
        let claims = keys.verify(&issued.token, now).unwrap();
        assert_eq!(claims.user_id().unwrap(), 42);
        assert_eq!(claims.issued_at_millis(), now.timestamp_millis());
        // `exp` is checked against the clock: a token issued two hours ago has expired.
        let old = now - Duration::from_secs(7200);
        let stale = keys.issue(42, None, old).unwrap();
        assert_eq!(
            keys.verify(&stale.token, now).unwrap_err(),
            TokenError::Expired
        );
    }

    #[test]
    fn other_secret_issuer_or_future_iat_is_invalid() {
        let keys = JwtKeys::from_settings(&settings(Some(STRONG)), Environment::Prod).unwrap();
        let other =
            JwtKeys::from_settings(&settings(Some(&STRONG.repeat(2))), Environment::Prod).unwrap();
        let now = Utc::now();
        let foreign = other.issue(1, None, now).unwrap().token;
        assert_eq!(keys.verify(&foreign, now).unwrap_err(), TokenError::Invalid);
        let future = keys
            .issue(1, None, now + Duration::from_secs(60))
            .unwrap()
            .token;
        assert_eq!(keys.verify(&future, now).unwrap_err(), TokenError::Invalid);
        let mut s = settings(Some(STRONG));
        s.issuer = "someone-else".into();
        let wrong_iss = JwtKeys::from_settings(&s, Environment::Prod).unwrap();
        let token = wrong_iss.issue(1, None, now).unwrap().token;
        assert_eq!(keys.verify(&token, now).unwrap_err(), TokenError::Invalid);
    }

    #[test]
    fn a_token_is_current_only_under_the_password_change_it_was_issued_under() {
        let keys = JwtKeys::from_settings(&settings(Some(STRONG)), Environment::Prod).unwrap();
        let now = Utc::now();
        let before = now - Duration::from_secs(10);
        let claims = keys
            .verify(&keys.issue(1, Some(before), now).unwrap().token, now)
            .unwrap();
        assert!(claims.is_current(Some(before)));
        // A change after the token was issued, or one stamped a microsecond later, revokes it.
        assert!(!claims.is_current(Some(now + Duration::from_secs(1))));
        assert!(!claims.is_current(Some(before + Duration::from_micros(1))));
        assert!(!claims.is_current(None));
        let never = keys
            .verify(&keys.issue(1, None, now).unwrap().token, now)
            .unwrap();
        assert!(never.is_current(None) && !never.is_current(Some(now)));
        // A token without `pwc` (issued before it existed) is compared by `iat`.
        let legacy = Claims {
            pwc: None,
            ..claims
        };
        assert!(legacy.is_current(Some(before)));
        assert!(!legacy.is_current(Some(now + Duration::from_secs(1))));
    }

    #[test]
    fn tokens_name_their_key_and_the_previous_key_verifies_only_in_its_window() {
        let now = Utc::now();
        let a = JwtKeys::from_settings(&settings(Some(STRONG)), Environment::Prod).unwrap();
        let b_secret = STRONG.repeat(2);
        let token_a = a.issue(7, None, now).unwrap().token;
        let header = jsonwebtoken::decode_header(&token_a).unwrap();
        assert_eq!(header.kid.as_deref(), Some(a.key_id()));
        assert_eq!(a.key_id().len(), KID_CHARS);
        assert!(!STRONG.contains(a.key_id()) && !a.key_id().contains(&STRONG[..8]));

        // B signs, A is still accepted; B alone refuses A's tokens.
        let mut rotated = settings(Some(&b_secret));
        let b_alone = JwtKeys::from_settings(&rotated, Environment::Prod).unwrap();
        assert_ne!(b_alone.key_id(), a.key_id());
        assert_eq!(
            b_alone.verify(&token_a, now).unwrap_err(),
            TokenError::Invalid
        );
        rotated.previous_secret = Some(SecretString::from(STRONG));
        let b = JwtKeys::from_settings(&rotated, Environment::Prod).unwrap();
        assert_eq!(b.verify(&token_a, now).unwrap().user_id().unwrap(), 7);
        let token_b = b.issue(8, None, now).unwrap().token;
        assert_eq!(
            jsonwebtoken::decode_header(&token_b)
                .unwrap()
                .kid
                .as_deref(),
            Some(b.key_id())
        );
        // The first step of a rotation: A signs and B is accepted, so pods of both steps
        // accept each other's tokens.
        let mut incoming = settings(Some(STRONG));
        incoming.previous_secret = Some(SecretString::from(b_secret.as_str()));
        let a_then_b = JwtKeys::from_settings(&incoming, Environment::Prod).unwrap();
        assert!(a_then_b.verify(&token_b, now).is_ok());

        // The window: accepted up to `previous_until`, refused after it.
        rotated.previous_until = Some(now + Duration::from_secs(60));
        let windowed = JwtKeys::from_settings(&rotated, Environment::Prod).unwrap();
        assert!(windowed.verify(&token_a, now).is_ok());
        let later = now + Duration::from_secs(61);
        assert_eq!(
            windowed.verify(&token_a, later).unwrap_err(),
            TokenError::Invalid
        );
        assert!(windowed.verify(&token_b, now).is_ok());

        // A token without `kid` (issued before it existed) is tried with both keys; a `kid`
        // that names no key here is refused, even with a good signature.
        let sign = |header: Header| {
            let claims = Claims {
                sub: "9".into(),
                iss: "discbaboons".into(),
                iat: now.timestamp() as f64,
                exp: (now.timestamp() + 600) as u64,
                nbf: None,
                pwc: Some(0),
            };
            jsonwebtoken::encode(
                &header,
                &claims,
                &EncodingKey::from_secret(STRONG.as_bytes()),
            )
            .unwrap()
        };
        let legacy = sign(Header::new(Algorithm::HS256));
        assert!(b.verify(&legacy, now).is_ok());
        assert_eq!(
            windowed.verify(&legacy, later).unwrap_err(),
            TokenError::Invalid
        );
        let mut stranger = Header::new(Algorithm::HS256);
        stranger.kid = Some("not-a-key-of-ours".into());
        assert_eq!(
            b.verify(&sign(stranger), now).unwrap_err(),
            TokenError::Invalid
        );

        // In prod the previous key must be as strong as the signing key.
        rotated.previous_secret = Some(SecretString::from("short"));
        let err = JwtKeys::from_settings(&rotated, Environment::Prod)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("jwt.previous_secret") && err.contains("JWT_PREVIOUS_SECRET"));
    }

    #[test]
    fn a_token_not_yet_valid_is_invalid() {
        let keys = JwtKeys::from_settings(&settings(Some(STRONG)), Environment::Prod).unwrap();
        let now = Utc::now();
        let claims = |nbf: i64| Claims {
            sub: "1".into(),
            iss: "discbaboons".into(),
            iat: now.timestamp() as f64,
            exp: (now.timestamp() + 600) as u64,
            nbf: Some(nbf as u64),
            pwc: Some(0),
        };
        let sign = |c: &Claims| {
            jsonwebtoken::encode(&Header::new(Algorithm::HS256), c, &keys.encoding).unwrap()
        };
        let later = sign(&claims(now.timestamp() + 600));
        assert_eq!(keys.verify(&later, now).unwrap_err(), TokenError::Invalid);
        let earlier = sign(&claims(now.timestamp() - 1));
        assert!(keys.verify(&earlier, now).is_ok());
    }
}
