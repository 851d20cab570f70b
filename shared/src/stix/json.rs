//! The exact size of an object's compact JSON, without writing it.
//!
//! The fetcher cuts a page into parts by serialized size, and the bundler serializes every
//! object anyway when it writes a bundle; measuring by serializing made every object be
//! formatted twice. Walking the value and counting gives the same number (what
//! `serde_json::to_vec` would produce, byte for byte) for a fraction of the work and no
//! allocation.

use std::fmt::Write;

use serde_json::Value;

use super::StixObject;

/// Bytes of `serde_json::to_vec(object)`.
pub fn object_len(object: &StixObject) -> usize {
    // Braces, a colon per member, commas between members.
    let framing = 2 + object.len() + object.len().saturating_sub(1);
    framing
        + object
            .iter()
            .map(|(k, v)| string_len(k) + value_len(v))
            .sum::<usize>()
}

/// Bytes of `serde_json::to_vec(value)`.
pub fn value_len(value: &Value) -> usize {
    match value {
        Value::Null | Value::Bool(true) => 4,
        Value::Bool(false) => 5,
        Value::Number(n) => {
            // Rare in STIX objects (confidence, scores); serde_json's Display of a number
            // is the text it serializes.
            let mut counter = Counter(0);
            let _ = write!(counter, "{n}");
            counter.0
        }
        Value::String(s) => string_len(s),
        Value::Array(items) => {
            2 + items.len().saturating_sub(1) + items.iter().map(value_len).sum::<usize>()
        }
        Value::Object(map) => object_len(map),
    }
}

/// Bytes of a JSON string literal as serde_json escapes it: quotes, backslash and control
/// characters only, the short forms where JSON has them.
fn string_len(s: &str) -> usize {
    // Summed without branches or an early exit, which the compiler turns into wide
    // operations; a byte-by-byte `match` cost as much as serializing the string.
    // Blocks of 32 bytes add up in one byte each (at most 5 × 32 = 160), so the compiler
    // works on 16 or 32 bytes at a time instead of widening every byte to a word.
    let extra: usize = s
        .as_bytes()
        .chunks(32)
        .map(|block| usize::from(block.iter().fold(0u8, |sum, &b| sum + escape_extra(b))))
        .sum();
    2 + s.len() + extra
}

/// Bytes an escape adds to `b`: one for the two-character forms (`\"`, `\\`, `\n`, …),
/// five for `\u00XX`, none for a byte written as is.
fn escape_extra(b: u8) -> u8 {
    let short = (b == b'"')
        | (b == b'\\')
        | (b == b'\n')
        | (b == b'\r')
        | (b == b'\t')
        | (b == 0x08)
        | (b == 0x0c);
    let control = b < 0x20;
    u8::from(short) + 5 * u8::from(control & !short)
}

struct Counter(usize);

impl Write for Counter {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0 += s.len();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn matches_serde_json_byte_for_byte() {
        let samples = [
            json!({}),
            json!({"a": []}),
            json!({"type": "indicator", "n": 0, "neg": -17, "big": u64::MAX, "f": 0.1,
                   "g": 1e21, "h": -2.5e-8, "t": true, "x": false, "z": null}),
            json!({"s": "quote \" back \\ nl \n cr \r tab \t bs \u{8} ff \u{c} ctl \u{1} \u{1f} del \u{7f}"}),
            json!({"long": "0123456789abcdef0123456789abcdef\"0123456789", "l2": "0123456789abcdef0123456789abcdef0123456789\u{2}"}),
            json!({"u": "é ü 漢字 😀 / <script>", "nested": {"list": [1, "two", {"three": [null]}]}}),
            json!({"object_marking_refs": ["marking-definition--613f2e26-407d-48c7-9eca-b8e91df99dc9"],
                   "external_references": [{"source_name": "cve", "external_id": "CVE-2024-1"}]}),
        ];
        for v in samples {
            let map = v.as_object().expect("object");
            let expected = serde_json::to_vec(map).expect("serializes").len();
            assert_eq!(object_len(map), expected, "{v}");
            assert_eq!(value_len(&v), expected, "{v}");
        }
    }
}
