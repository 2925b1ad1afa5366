//! RFC 8785 (JCS) conformance of `entry::canonical_json`, against the published examples only
//! (see tests/data/rfc8785/README.md for where each file comes from).
// Test helpers outside #[test] functions unwrap too (clippy.toml only covers the tests).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

use blackbox_core::entry::canonical_json;
use serde_json::Value;

fn data(name: &str) -> Vec<u8> {
    let path: PathBuf = [env!("CARGO_MANIFEST_DIR"), "tests", "data", "rfc8785", name]
        .iter()
        .collect();
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn canon_text(input: &[u8]) -> Vec<u8> {
    let v: Value = serde_json::from_slice(input).unwrap();
    canonical_json(&v).unwrap()
}

#[track_caller]
fn assert_bytes(got: &[u8], want: &[u8], what: &str) {
    assert!(
        got == want,
        "{what}:\n got  {}\n want {}",
        String::from_utf8_lossy(got),
        String::from_utf8_lossy(want)
    );
}

#[test]
fn rfc8785_section_3_2_sample() {
    let got = canon_text(&data("rfc8785_sec3.2.2_input.json"));
    assert_bytes(&got, &data("rfc8785_sec3.2.3_output.json"), "§3.2.3");
    // §3.2.4: the same result as UTF-8 bytes.
    let hex_text = String::from_utf8(data("rfc8785_sec3.2.4_utf8.hex")).unwrap();
    let want = hex::decode(hex_text.split_whitespace().collect::<String>()).unwrap();
    assert_bytes(&got, &want, "§3.2.4");
}

#[test]
fn rfc8785_section_3_2_3_sorting() {
    let got = canon_text(&data("rfc8785_sec3.2.3_sorting_input.json"));
    let text = String::from_utf8(got).unwrap();
    let order = String::from_utf8(data("rfc8785_sec3.2.3_sorting_order.txt")).unwrap();
    let positions: Vec<usize> = order
        .lines()
        .map(|value| {
            text.find(value)
                .unwrap_or_else(|| panic!("{value} not in {text}"))
        })
        .collect();
    assert_eq!(positions.len(), 7);
    assert!(
        positions.windows(2).all(|w| w[0] < w[1]),
        "wrong member order: {text}"
    );
    // UTF-16 order puts U+1F600 (a surrogate pair, 0xD83D…) before U+FB33, which a code-point
    // order would not.
    assert!(text.find("Emoji").unwrap() < text.find("Hebrew").unwrap());
}

#[test]
fn cyberphone_reference_test_data() {
    for name in ["structures", "french", "unicode", "values", "weird"] {
        let got = canon_text(&data(&format!("input_{name}.json")));
        assert_bytes(&got, &data(&format!("output_{name}.json")), name);
        // Canonical output is a fixed point.
        assert_bytes(&canon_text(&got), &got, name);
    }
}

#[test]
fn rfc8785_appendix_b_numbers() {
    let table = String::from_utf8(data("appendix_b_numbers.txt")).unwrap();
    let mut checked = 0;
    let mut refused = 0;
    for line in table
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let mut parts = line.split_whitespace();
        let bits = u64::from_str_radix(parts.next().unwrap(), 16).unwrap();
        let f = f64::from_bits(bits);
        match parts.next() {
            Some(want) => {
                let v = Value::Number(serde_json::Number::from_f64(f).unwrap());
                let got = canonical_json(&v).unwrap();
                assert_bytes(&got, want.as_bytes(), line);
                // Parsing the published text and serialising it again gives the same bytes.
                assert_bytes(&canon_text(want.as_bytes()), want.as_bytes(), line);
                checked += 1;
            }
            None => {
                // NaN and Infinity: not representable, so never serialised.
                assert!(!f.is_finite(), "{line}");
                assert!(serde_json::Number::from_f64(f).is_none(), "{line}");
                assert!(serde_json_canonicalizer::to_vec(&f).is_err(), "{line}");
                refused += 1;
            }
        }
    }
    assert_eq!((checked, refused), (24, 2));
}

#[test]
fn rfc8785_appendix_b_numbers_inside_documents() {
    // The §3.2.2 numbers, minus zero (Appendix B) and `56.0` (cyberphone `structures`), as
    // written in a document rather than built from bits.
    let got = canon_text(br#"[1E30, 4.50, 2e-3, 0.000000000000000000000000001, -0.0, 56.0]"#);
    assert_bytes(&got, b"[1e+30,4.5,0.002,1e-27,0,56]", "numbers");
}
