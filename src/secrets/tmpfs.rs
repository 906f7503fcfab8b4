//! `app seal open --into DIR`: plaintext files for containers that only read files
//! (PostgreSQL's `POSTGRES_PASSWORD_FILE`), written only to memory-backed filesystems so that
//! plaintext never reaches a disk.

use std::ffi::CString;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
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

/// Writes each value to `dir/KEY` with `mode`, replacing older files atomically. Refuses
/// unless `dir` is memory-backed.
pub(crate) fn write_into(
    dir: &Path,
    values: &[(String, SecretString)],
    mode: u32,
) -> Result<(), SealedError> {
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
            .mode(mode)
            .open(&tmp)
            .and_then(|mut f| f.write_all(value.expose().as_bytes()))
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
    fn dev_shm_is_memory_and_the_build_dir_is_not() {
        if Path::new("/dev/shm").is_dir() {
            assert!(is_memory_backed(Path::new("/dev/shm")).unwrap());
        }
        let here = is_memory_backed(Path::new(env!("CARGO_MANIFEST_DIR"))).unwrap();
        // The source tree is on a real disk on every machine we build on.
        assert!(!here);
    }
}
