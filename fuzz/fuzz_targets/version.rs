//! Flyway versions: never panic, re-parse to themselves, and order consistently (a total
//! order: antisymmetric and agreeing with equality).
#![no_main]

use std::cmp::Ordering;

use app::migrate::Version;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (a, b) = text.split_once('|').unwrap_or((text, "1"));
    let (Ok(va), Ok(vb)) = (Version::parse(a), Version::parse(b)) else {
        return;
    };
    assert_eq!(Version::parse(va.as_str()).unwrap(), va);
    assert_eq!(va.cmp(&vb), vb.cmp(&va).reverse());
    assert_eq!(va.cmp(&vb) == Ordering::Equal, va == vb);
    assert_eq!(Version::parse(&format!("{a}.0")).unwrap(), va);
});
