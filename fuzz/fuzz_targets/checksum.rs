//! Flyway's checksum against its definition: one leading BOM dropped, CR and LF dropped,
//! CRC-32 of the rest as a Java int; invalid UTF-8 refused at the right offset.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match app::migrate::checksum(data) {
        Ok(sum) => {
            let body = data.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(data);
            let kept: Vec<u8> = body
                .iter()
                .copied()
                .filter(|b| *b != b'\r' && *b != b'\n')
                .collect();
            assert_eq!(sum, crc32fast::hash(&kept) as i32);
        }
        Err(e) => assert_eq!(e.at, std::str::from_utf8(data).unwrap_err().valid_up_to()),
    }
});
