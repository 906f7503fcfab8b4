//! The sealed file parser on arbitrary bytes: never panics, and whatever it accepts is written
//! back by the emitter into a file that parses to the same thing, byte-stable.
#![no_main]

use std::path::Path;

use app::secrets::SealedFile;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let path = Path::new("fuzz.yaml");
    if let Ok(file) = SealedFile::parse(path, text) {
        let written = file.to_yaml();
        let again = SealedFile::parse(path, &written).expect("our own output parses");
        assert_eq!(again, file);
        assert_eq!(again.to_yaml(), written);
    }
});
