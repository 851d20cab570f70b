//! The CSV kind's resume point: which version of the file was last handed on, and a compact
//! set of its rows, so that the next version emits only the rows that are new.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Where a CSV feed stands after a run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CsvCursor {
    /// SHA-256 (hex) of the last version whose rows were all handed on.
    pub content_hash: Option<String>,
    /// The last response's ETag, set and read by the HTTP glue; carried through unchanged.
    pub etag: Option<String>,
    /// The last response's Last-Modified, set and read by the HTTP glue; carried through.
    pub last_modified: Option<String>,
    /// Fingerprints of every row of that version.
    #[serde(default)]
    pub fingerprints: Fingerprints,
}

/// A set of 64-bit row fingerprints, sorted, without duplicates.
///
/// Eight bytes a row: a million-row feed costs 8 MB in memory and about 11 MB serialized.
/// It serializes as one base64 string of the little-endian values, which keeps the cursor a
/// single compact JSON value (the store moves it to the object store when it outgrows a
/// table item).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Fingerprints(Vec<u64>);

impl Fingerprints {
    /// Builds the set from fingerprints in any order, with repeats.
    pub fn from_unsorted(mut values: Vec<u64>) -> Fingerprints {
        values.sort_unstable();
        values.dedup();
        Fingerprints(values)
    }

    /// Whether the set holds `fingerprint`.
    pub fn contains(&self, fingerprint: u64) -> bool {
        self.0.binary_search(&fingerprint).is_ok()
    }

    /// How many distinct rows the set holds.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the set is empty (a first run, or an empty file).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Serialize for Fingerprints {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        // Streamed to the serializer in blocks: a million rows would otherwise hold 8 MB of
        // bytes and 11 MB of text at once, on top of the set itself, while the state is
        // written.
        serializer.collect_str(&Base64Values(&self.0))
    }
}

/// The little-endian bytes of `u64`s as base64, written a block at a time.
struct Base64Values<'a>(&'a [u64]);

impl std::fmt::Display for Base64Values<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // 192 values are 1536 bytes, a multiple of 3: only the last block can need padding,
        // so the blocks' encodings join into the encoding of the whole.
        let mut bytes = Vec::with_capacity(192 * 8);
        for block in self.0.chunks(192) {
            bytes.clear();
            for v in block {
                bytes.extend_from_slice(&v.to_le_bytes());
            }
            f.write_str(&STANDARD.encode(&bytes))?;
        }
        Ok(())
    }
}

impl<'de> Deserialize<'de> for Fingerprints {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        let bytes = STANDARD.decode(&text).map_err(serde::de::Error::custom)?;
        if bytes.len() % 8 != 0 {
            return Err(serde::de::Error::custom(
                "row fingerprints are not a whole number of 8-byte values",
            ));
        }
        let values = bytes
            .chunks_exact(8)
            .map(|c| {
                let mut b = [0u8; 8];
                b.copy_from_slice(c);
                u64::from_le_bytes(b)
            })
            .collect();
        // Sorting again costs little and protects the binary search from a hand-edited cursor.
        Ok(Fingerprints::from_unsorted(values))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_survive_every_block_boundary_and_refuse_bad_text() {
        // 192 values fill one encoded block; sizes around it check the blocks join up.
        for n in [0usize, 1, 191, 192, 193, 384, 500] {
            let set = Fingerprints::from_unsorted(
                (0..n as u64).map(|v| v.wrapping_mul(0x9e37_79b9)).collect(),
            );
            let text = serde_json::to_string(&set).unwrap();
            let back: Fingerprints = serde_json::from_str(&text).unwrap();
            assert_eq!(back, set, "{n} values");
        }
        assert!(serde_json::from_str::<Fingerprints>("\"a$\"").is_err());
        assert!(
            serde_json::from_str::<Fingerprints>("\"Zm8=\"").is_err(),
            "2 bytes are not a u64"
        );
    }

    #[test]
    fn cursor_round_trip_is_compact() {
        let cursor = CsvCursor {
            content_hash: Some("ab".into()),
            etag: Some("\"x\"".into()),
            last_modified: None,
            fingerprints: Fingerprints::from_unsorted(vec![3, 1, 2, 3, u64::MAX]),
        };
        let text = serde_json::to_string(&cursor).unwrap();
        assert!(text.contains("\"fingerprints\":\"AQAAAAAAAAACAAAAAAAAAAMAAAAAAAAA//////////8=\""));
        let back: CsvCursor = serde_json::from_str(&text).unwrap();
        assert_eq!(back, cursor);
        assert_eq!(back.fingerprints.len(), 4);
        assert!(back.fingerprints.contains(u64::MAX) && !back.fingerprints.contains(4));
        // Across block boundaries the streamed text is the plain encoding of all bytes.
        let many: Vec<u64> = (0..1000u64)
            .map(|i| i.wrapping_mul(0x9e37_79b9_7f4a_7c15))
            .collect();
        let set = Fingerprints::from_unsorted(many);
        let bytes: Vec<u8> = set.0.iter().flat_map(|v| v.to_le_bytes()).collect();
        assert_eq!(
            serde_json::to_string(&set).unwrap(),
            format!("\"{}\"", STANDARD.encode(&bytes))
        );
        let empty: CsvCursor = serde_json::from_str("{}").unwrap();
        assert!(empty.fingerprints.is_empty());
    }
}
