//! Property tests of the parsers that read what people and other tools wrote: the sealed
//! file, migration file names and versions, and Flyway's checksum. Arbitrary input never
//! panics, and what we write reads back the same.
//!
//! A fixed seed makes every run explore the same cases (set `PROPTEST_RNG_SEED` to explore
//! others, `PROPTEST_CASES` for more); the counts are bounded so the run stays short. The
//! same parsers have `cargo fuzz` targets in `fuzz/` for longer, coverage-guided runs.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::LazyLock;

use app::migrate::{Migration, Version, checksum};
use app::secrets::{RecipientEntry, SealedFile};
use proptest::prelude::*;

use crate::support::{ARMOR_BEGIN, ARMOR_END};

/// The seed of every run unless `PROPTEST_RNG_SEED` says otherwise.
const SEED: u64 = 20_261_130;

fn config(cases: u32) -> ProptestConfig {
    let env = ProptestConfig::default();
    ProptestConfig {
        cases: if std::env::var_os("PROPTEST_CASES").is_some() {
            env.cases
        } else {
            cases
        },
        rng_seed: match env.rng_seed {
            proptest::test_runner::RngSeed::Random => proptest::test_runner::RngSeed::Fixed(SEED),
            fixed => fixed,
        },
        failure_persistence: None,
        ..env
    }
}

/// Flyway's checksum from its definition, independently of the code under test: drop one
/// leading BOM, then CRC-32 of the bytes of every line (CR and LF dropped), as a Java int.
fn reference_checksum(bytes: &[u8]) -> i32 {
    let body = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let mut crc = crc32fast::Hasher::new();
    for &b in body {
        if b != b'\r' && b != b'\n' {
            crc.update(&[b]);
        }
    }
    crc.finalize() as i32
}

proptest! {
    #![proptest_config(config(2000))]

    #[test]
    fn checksum_never_panics_and_matches_the_definition(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        match checksum(&bytes) {
            Ok(sum) => {
                prop_assert!(std::str::from_utf8(&bytes).is_ok());
                prop_assert_eq!(sum, reference_checksum(&bytes));
            }
            Err(e) => {
                let valid = std::str::from_utf8(&bytes).unwrap_err().valid_up_to();
                prop_assert_eq!(e.at, valid);
            }
        }
    }

    #[test]
    fn checksum_ignores_line_endings_and_one_bom(
        // Only one BOM is dropped: a text that itself starts with one keeps it.
        lines in prop::collection::vec("[^\r\n\u{feff}]{0,40}", 0..12),
        crlf in any::<bool>(),
        bom in any::<bool>(),
    ) {
        let lf = lines.join("\n");
        let mut other = lines.join(if crlf { "\r\n" } else { "\r" });
        if bom {
            other.insert(0, '\u{feff}');
        }
        prop_assert_eq!(checksum(lf.as_bytes()).unwrap(), checksum(other.as_bytes()).unwrap());
        // Text changes change it (CRC-32 detects every single-byte change).
        if !lf.is_empty() {
            let changed = format!("{lf}x");
            prop_assert_ne!(checksum(lf.as_bytes()).unwrap(), checksum(changed.as_bytes()).unwrap());
        }
    }

    #[test]
    fn version_parse_never_panics(raw in "\\PC{0,24}|[0-9._]{0,24}") {
        if let Ok(v) = Version::parse(&raw) {
            // Whatever parsed reads back as itself.
            let again = Version::parse(v.as_str()).unwrap();
            prop_assert_eq!(&again, &v);
            prop_assert_eq!(again.as_str(), v.as_str());
        }
    }

    #[test]
    fn versions_order_as_numbers(
        a in prop::collection::vec(0u64..1_000_000, 1..5),
        b in prop::collection::vec(0u64..1_000_000, 1..5),
        zeros in 0usize..3,
        pad in 0usize..3,
        underscores in any::<bool>(),
    ) {
        let text = |parts: &[u64]| {
            parts
                .iter()
                .map(|p| format!("{}{p}", "0".repeat(pad)))
                .collect::<Vec<_>>()
                .join(if underscores { "_" } else { "." })
        };
        let va = Version::parse(&text(&a)).unwrap();
        let vb = Version::parse(&text(&b)).unwrap();
        // Flyway's order: part by part as numbers, missing parts are 0.
        let len = a.len().max(b.len());
        let ext = |p: &[u64]| {
            let mut p = p.to_vec();
            p.resize(len, 0);
            p
        };
        prop_assert_eq!(va.cmp(&vb), ext(&a).cmp(&ext(&b)));
        // Trailing zero parts and leading zeros do not change the version.
        let padded = format!("{}{}", text(&a), ".0".repeat(zeros));
        prop_assert_eq!(Version::parse(&padded).unwrap(), va.clone());
        if underscores {
            prop_assert_eq!(va.as_str(), text(&a).replace('_', "."));
        }
    }

    #[test]
    fn migration_names_round_trip(
        parts in prop::collection::vec(0u32..100_000, 1..4),
        words in prop::collection::vec("[a-z0-9]{1,10}", 1..6),
    ) {
        let version = parts.iter().map(u32::to_string).collect::<Vec<_>>().join("_");
        let name = format!("V{version}__{}.sql", words.join("_"));
        let m = Migration::parse(&name, b"select 1;").unwrap();
        prop_assert_eq!(m.version.as_str(), version.replace('_', "."));
        prop_assert_eq!(m.description, words.join(" "));
        prop_assert_eq!(m.script, name);
        prop_assert_eq!(m.checksum, reference_checksum(b"select 1;"));
    }

    #[test]
    fn migration_parse_never_panics(
        name in "\\PC{0,30}|V[0-9._]{0,8}(__)?[a-z_]{0,8}(\\.sql)?",
        bytes in prop::collection::vec(any::<u8>(), 0..256),
    ) {
        let _ = Migration::parse(&name, &bytes);
        if let Ok(text) = std::str::from_utf8(&bytes) {
            let _ = Migration::parse("V1__x.sql", text.as_bytes());
        }
    }
}

/// A few real recipients: the file's parser checks that each is a valid age or SSH key.
static RECIPIENTS: LazyLock<Vec<String>> = LazyLock::new(|| {
    (0..3)
        .map(|_| age::x25519::Identity::generate().to_public().to_string())
        .collect()
});

fn armor() -> impl Strategy<Value = String> {
    prop::collection::vec("[A-Za-z0-9+/]{1,64}", 1..6)
        .prop_map(|lines| format!("{ARMOR_BEGIN}\n{}\n{ARMOR_END}\n", lines.join("\n")))
}

fn sealed_file() -> impl Strategy<Value = SealedFile> {
    let context = "[a-zA-Z0-9][a-zA-Z0-9_./-]{0,40}";
    let key = "[a-zA-Z_][a-zA-Z0-9_.-]{0,30}";
    let recipient = (0usize..3, prop::option::of("[^\n\r]{0,30}"));
    (
        context,
        prop::collection::vec(recipient, 0..3),
        prop::collection::btree_map(key, armor(), 0..5),
    )
        .prop_map(|(context, recipients, values)| SealedFile {
            context,
            recipients: recipients
                .into_iter()
                .map(|(i, comment)| RecipientEntry {
                    key: RECIPIENTS[i].clone(),
                    comment,
                })
                .collect(),
            values: values.into_iter().collect::<BTreeMap<_, _>>(),
        })
}

/// One edit of a text: delete, duplicate or insert a span, or truncate.
#[derive(Debug, Clone)]
enum Edit {
    Delete(usize, usize),
    Duplicate(usize, usize),
    Insert(usize, String),
    Truncate(usize),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (any::<usize>(), 0usize..64).prop_map(|(a, n)| Edit::Delete(a, n)),
        (any::<usize>(), 0usize..200).prop_map(|(a, n)| Edit::Duplicate(a, n)),
        (any::<usize>(), "\\PC{0,8}|[\\[\\]{}:&*!|>'\"#\n -]{0,8}")
            .prop_map(|(a, s)| Edit::Insert(a, s)),
        any::<usize>().prop_map(Edit::Truncate),
    ]
}

fn apply(text: &str, edit: &Edit) -> String {
    let chars: Vec<char> = text.chars().collect();
    let at = |i: usize| i % (chars.len() + 1);
    let s = |a: usize, b: usize| {
        let n = chars.len();
        chars[a.min(n)..b.min(n)].iter().collect::<String>()
    };
    match edit {
        Edit::Delete(a, n) => format!("{}{}", s(0, at(*a)), s(at(*a) + n, chars.len())),
        Edit::Duplicate(a, n) => {
            let a = at(*a);
            format!("{}{}{}", s(0, a + n), s(a, a + n), s(a + n, chars.len()))
        }
        Edit::Insert(a, ins) => format!("{}{ins}{}", s(0, at(*a)), s(at(*a), chars.len())),
        Edit::Truncate(a) => s(0, at(*a)),
    }
}

proptest! {
    #![proptest_config(config(500))]

    #[test]
    fn sealed_files_round_trip_byte_for_byte(file in sealed_file()) {
        let text = file.to_yaml();
        let back = SealedFile::parse(Path::new("s.yaml"), &text)
            .map_err(|e| TestCaseError::fail(format!("{e}\n{text}")))?;
        prop_assert_eq!(&back, &file);
        prop_assert_eq!(back.to_yaml(), text);
    }

    #[test]
    fn edited_sealed_files_never_panic(
        file in sealed_file(),
        edits in prop::collection::vec(edit(), 1..4),
    ) {
        let mut text = file.to_yaml();
        for e in &edits {
            text = apply(&text, e);
        }
        if let Ok(parsed) = SealedFile::parse(Path::new("s.yaml"), &text) {
            // Whatever is accepted is a file we can write and read back.
            let again = SealedFile::parse(Path::new("s.yaml"), &parsed.to_yaml()).unwrap();
            prop_assert_eq!(again, parsed);
        }
    }

    #[test]
    fn arbitrary_text_never_panics_the_sealed_file_parser(text in "\\PC{0,300}") {
        let _ = SealedFile::parse(Path::new("s.yaml"), &text);
        let _ = SealedFile::parse(Path::new("s.yaml"), &format!("version: 1\ncontext: c\n{text}"));
    }
}
