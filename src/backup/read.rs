//! `verify` and `open`: the checksum against the manifest first (a read of the encrypted
//! file only), then a streaming decryption whose every chunk age authenticates. `verify`
//! drops the plaintext as it comes; `open` hands it to a pipe, never to a file on a disk.

use std::fs::File;
use std::io::{BufReader, Read, Write};
use std::path::Path;

use age::armor::ArmoredReader;
use sha2::{Digest, Sha256};

use super::PGDMP_MAGIC;
use super::error::BackupError;
use super::manifest::Manifest;
use crate::secrets::Identities;

/// What a successful read found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Opened {
    /// Bytes of the dump (plaintext).
    pub dump_bytes: u64,
    /// Whether the checksum was checked against a manifest.
    pub checksum_checked: bool,
}

/// Checks `path` against `manifest`, decrypts it with `identities` and checks that it is a
/// whole `pg_dump` archive, writing nothing anywhere.
pub(crate) fn verify(
    path: &Path,
    manifest: Option<&Manifest>,
    identities: &Identities,
) -> Result<Opened, BackupError> {
    open_to(path, manifest, identities, &mut std::io::sink())
}

/// As [`verify`], writing the dump to `out` as it is decrypted. When it fails half-way, what
/// was written is a prefix of the dump: a `pg_restore` reading it fails too (and the caller's
/// exit code says why).
pub(crate) fn open_to(
    path: &Path,
    manifest: Option<&Manifest>,
    identities: &Identities,
    out: &mut dyn Write,
) -> Result<Opened, BackupError> {
    let corrupt = |reason: String| BackupError::Corrupt {
        file: path.to_owned(),
        reason,
    };
    if let Some(manifest) = manifest {
        check_checksum(path, manifest)?;
    }
    let file = File::open(path).map_err(|e| BackupError::io("cannot read", path, e))?;
    let decryptor = age::Decryptor::new(ArmoredReader::new(BufReader::new(file))).map_err(|e| {
        corrupt(format!(
            "it is not an age file, or its header was altered ({e})"
        ))
    })?;
    let mut reader = match decryptor.decrypt(identities.iter()) {
        Ok(reader) => reader,
        Err(age::DecryptError::NoMatchingKeys) => {
            return Err(BackupError::NoMatchingIdentity {
                file: path.to_owned(),
                count: identities.len(),
                sources: identities.describe(),
            });
        }
        Err(e) => {
            return Err(corrupt(format!(
                "its header failed age's check ({e}): restore from another backup"
            )));
        }
    };
    let damaged = |e: std::io::Error, at: u64| {
        corrupt(format!(
            "age's integrity check failed after {at} bytes of the dump ({e}): the file was \
             altered or cut short; restore from another backup"
        ))
    };
    let mut head = [0u8; 5];
    reader.read_exact(&mut head).map_err(|e| damaged(e, 0))?;
    if &head != PGDMP_MAGIC {
        return Err(corrupt(
            "it decrypts, but to something that is not a pg_dump custom-format archive".into(),
        ));
    }
    let write_err =
        |e: std::io::Error| BackupError::io("cannot write the dump to", "the output", e);
    out.write_all(&head).map_err(write_err)?;
    let mut dump_bytes = head.len() as u64;
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(damaged(e, dump_bytes)),
        };
        out.write_all(&buf[..n]).map_err(write_err)?;
        dump_bytes += n as u64;
    }
    out.flush().map_err(write_err)?;
    if let Some(manifest) = manifest
        && manifest.dump_bytes != dump_bytes
    {
        return Err(corrupt(format!(
            "it decrypts to {dump_bytes} bytes, the manifest says {}",
            manifest.dump_bytes
        )));
    }
    Ok(Opened {
        dump_bytes,
        checksum_checked: manifest.is_some(),
    })
}

/// The encrypted file's size and SHA-256 against the manifest.
fn check_checksum(path: &Path, manifest: &Manifest) -> Result<(), BackupError> {
    let mut file = File::open(path).map_err(|e| BackupError::io("cannot read", path, e))?;
    let mut sha = Sha256::new();
    let mut bytes = 0u64;
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(BackupError::io("cannot read", path, e)),
        };
        sha.update(&buf[..n]);
        bytes += n as u64;
    }
    let actual = format!("{:x}", sha.finalize());
    if bytes != manifest.encrypted_bytes || actual != manifest.encrypted_sha256 {
        return Err(BackupError::Corrupt {
            file: path.to_owned(),
            reason: format!(
                "checksum mismatch: {bytes} bytes with SHA-256 {actual}, the manifest says {} \
                 bytes with {}; the file was altered or cut short, restore from another backup",
                manifest.encrypted_bytes, manifest.encrypted_sha256
            ),
        });
    }
    Ok(())
}
