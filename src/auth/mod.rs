//! Accounts' cryptography: argon2id password hashes and HS256 JSON Web Tokens.
//!
//! Nothing here touches the database or HTTP; the API decides what a failed check means.

mod password;
mod token;

pub(crate) use password::{HashError, HashStats, PasswordHasher, Verdict};
pub(crate) use token::{Issued, JwtKeys, MIN_SECRET_BYTES, TokenError, WeakSecret, now_millis};
