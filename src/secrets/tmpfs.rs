//! `app seal open --into DIR`: plaintext files for containers that only read files
//! (PostgreSQL's `POSTGRES_PASSWORD_FILE`), written only to memory-backed filesystems so that
//! plaintext never reaches a disk.

use std::ffi::CString;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use super::error::SealedError;
use crate::config::SecretString;

/// `statfs` magic of tmpfs, which backs a Kubernetes `emptyDir` with `medium: Memory`.
const TMPFS_MAGIC: i64 = 0x0102_1994;
/// `statfs` magic of ramfs, also memory only.
const RAMFS_MAGIC: i64 = 0x8584_58f6;

/// Whether `path` lives on a memory-backed filesystem.
pub fn is_memory_backed(path: &Path) -> std::io::Result<bool> {
    let c_path = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
    // SAFETY: `statfs` writes into the zeroed struct we own and reads the NUL-terminated path.
    let mut stat: libc::statfs = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::statfs(c_path.as_ptr(), &mut stat) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    #[allow(clippy::unnecessary_cast)] // f_type's width differs between libcs.
    let magic = stat.f_type as i64;
    Ok(magic == TMPFS_MAGIC || magic == RAMFS_MAGIC)
}

/// Refuses a file mode that lets anyone but the owner and the group read, or anyone but the
/// owner change, the plaintext: 0400 and 0600 pass, and 0440 for a pod's fsGroup.
pub(crate) fn check_mode(mode: u32) -> Result<(), SealedError> {
    if mode & !0o740 != 0 {
        return Err(SealedError::Refused(format!(
            "mode {mode:04o} would let other users read or change the plaintext; use 0400 \
             (the default), 0600, or 0440 to let the pod's fsGroup read it"
        )));
    }
    Ok(())
}

/// Writes each value to `dir/KEY` with exactly `mode` (whatever the umask), replacing older
/// files atomically. Refuses unless `dir` is memory-backed and `mode` passes [`check_mode`].
pub(crate) fn write_into(
    dir: &Path,
    values: &[(String, SecretString)],
    mode: u32,
) -> Result<(), SealedError> {
    check_mode(mode)?;
    let on_memory = is_memory_backed(dir).map_err(|e| SealedError::read(dir, e))?;
    if !on_memory {
        return Err(SealedError::Refused(format!(
            "{} is not on tmpfs, so plaintext would reach a disk; mount an emptyDir with \
             `medium: Memory` there (or use /dev/shm on a laptop)",
            dir.display()
        )));
    }
    for (key, value) in values {
        let target = dir.join(key);
        let tmp = dir.join(format!(".{key}.tmp-{}", std::process::id()));
        let _ = std::fs::remove_file(&tmp);
        let written = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            // Owner only until the content is in and the mode is set.
            .mode(0o600)
            .open(&tmp)
            .and_then(|mut f| {
                f.write_all(value.expose().as_bytes())?;
                f.set_permissions(std::fs::Permissions::from_mode(mode))
            })
            .and_then(|()| std::fs::rename(&tmp, &target));
        if let Err(e) = written {
            let _ = std::fs::remove_file(&tmp);
            return Err(SealedError::write(target, e));
        }
        tracing::debug!(file = %target.display(), "value written");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_others_could_read_are_refused() {
        for ok in [0o400, 0o600, 0o440, 0o700] {
            assert!(check_mode(ok).is_ok(), "{ok:o}");
        }
        for bad in [0o444, 0o404, 0o644, 0o460, 0o401, 0o777] {
            let err = check_mode(bad).unwrap_err().to_string();
            assert!(err.contains(&format!("{bad:04o}")), "{err}");
        }
    }

    #[test]
    fn dev_shm_is_memory_and_the_build_dir_is_not() {
        if Path::new("/dev/shm").is_dir() {
            assert!(is_memory_backed(Path::new("/dev/shm")).unwrap());
        }
        let here = is_memory_backed(Path::new(env!("CARGO_MANIFEST_DIR"))).unwrap();
        // The source tree is on a real disk on every machine we build on.
        assert!(!here);
    }
}
