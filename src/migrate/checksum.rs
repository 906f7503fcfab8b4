//! Flyway's checksum of a SQL migration, so rows written by Flyway validate here and ours
//! validate in Flyway.
//!
//! Flyway reads the script line by line (which drops every CR and LF), strips a UTF-8 byte
//! order mark from the first line, feeds each line's UTF-8 bytes to CRC-32 and stores the
//! result as a Java `int`. Dropping one leading BOM and every CR and LF byte, then hashing
//! the rest in one go, gives the same number.

/// The UTF-8 encoding of U+FEFF.
const BOM: &[u8] = b"\xEF\xBB\xBF";

/// The script is not valid UTF-8 (Flyway would have read it as something else).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotUtf8 {
    /// Byte offset of the first invalid sequence.
    pub at: usize,
}

/// Flyway's checksum of a migration's bytes.
pub fn checksum(bytes: &[u8]) -> Result<i32, NotUtf8> {
    if let Err(e) = std::str::from_utf8(bytes) {
        return Err(NotUtf8 {
            at: e.valid_up_to(),
        });
    }
    let body = bytes.strip_prefix(BOM).unwrap_or(bytes);
    let mut crc = crc32fast::Hasher::new();
    for line in body.split(|&b| b == b'\n' || b == b'\r') {
        crc.update(line);
    }
    // Java stores the unsigned CRC in an `int`: same bits, read as signed.
    Ok(crc.finalize() as i32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_endings_and_one_bom_do_not_matter() {
        let unix = checksum(b"create table t (id int);\nselect 1;\n").unwrap();
        assert_eq!(
            checksum(b"create table t (id int);\r\nselect 1;\r\n").unwrap(),
            unix
        );
        assert_eq!(
            checksum(b"create table t (id int);select 1;").unwrap(),
            unix
        );
        assert_eq!(
            checksum(b"\xEF\xBB\xBFcreate table t (id int);\nselect 1;\n").unwrap(),
            unix
        );
        assert_ne!(
            checksum(b"\xEF\xBB\xBF\xEF\xBB\xBFcreate table t (id int);\nselect 1;\n").unwrap(),
            unix,
            "only one BOM is dropped"
        );
    }

    #[test]
    fn is_crc32_as_a_signed_int() {
        // CRC-32 of "123456789" is the standard check value 0xCBF43926.
        assert_eq!(checksum(b"123456789").unwrap(), 0xCBF4_3926_u32 as i32);
        assert!(checksum(b"123456789").unwrap() < 0);
        assert_eq!(checksum(b"").unwrap(), 0);
    }

    #[test]
    fn any_other_byte_changes_it() {
        assert_ne!(
            checksum(b"select 1;").unwrap(),
            checksum(b"select 2;").unwrap()
        );
        assert_ne!(
            checksum(b"select 1;").unwrap(),
            checksum(b"select  1;").unwrap()
        );
    }

    #[test]
    fn invalid_utf8_is_refused() {
        assert_eq!(checksum(b"select '\xff';"), Err(NotUtf8 { at: 8 }));
    }
}
