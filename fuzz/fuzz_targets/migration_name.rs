//! A migration file: the first line of the input is the file name, the rest its content.
//! Never panics; an accepted name reads back through its parts.
#![no_main]

use app::migrate::{Migration, Version};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let split = data.iter().position(|&b| b == b'\n').unwrap_or(data.len());
    let Ok(name) = std::str::from_utf8(&data[..split]) else {
        return;
    };
    let content = data.get(split + 1..).unwrap_or_default();
    if let Ok(m) = Migration::parse(name, content) {
        assert_eq!(m.script, name);
        let version = Version::parse(m.version.as_str()).expect("a parsed version re-parses");
        assert_eq!(version, m.version);
        assert!(name.starts_with('V') && name.ends_with(".sql"));
    }
});
