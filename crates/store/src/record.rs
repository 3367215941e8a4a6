//! Record checksums: a canonical byte encoding of an index row and its CRC-32.
//!
//! Every row the store writes carries `crc` over its other columns, computed
//! just before the write and verified on every read (docs/storage.md,
//! "Record checksums"). The encoding is fixed: integers as 8-byte
//! little-endian, text and blobs as a 4-byte little-endian length plus bytes,
//! NULL as the single byte 0xff.

/// Builds the canonical encoding of one row and returns its checksum.
#[derive(Default)]
pub(crate) struct RecordCrc {
    hasher: crc32fast::Hasher,
}

impl RecordCrc {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    pub(crate) fn int(mut self, value: i64) -> Self {
        self.hasher.update(&value.to_le_bytes());
        self
    }

    pub(crate) fn bytes(mut self, value: &[u8]) -> Self {
        let len = u32::try_from(value.len()).expect("record field below 4 GiB");
        self.hasher.update(&len.to_le_bytes());
        self.hasher.update(value);
        self
    }

    pub(crate) fn text(self, value: &str) -> Self {
        self.bytes(value.as_bytes())
    }

    pub(crate) fn opt_text(mut self, value: Option<&str>) -> Self {
        match value {
            Some(v) => self.text(v),
            None => {
                self.hasher.update(&[0xff]);
                self
            }
        }
    }

    pub(crate) fn opt_int(mut self, value: Option<i64>) -> Self {
        match value {
            Some(v) => self.int(v),
            None => {
                self.hasher.update(&[0xff]);
                self
            }
        }
    }

    /// The checksum as SQLite stores it (a non-negative i64).
    pub(crate) fn finish(self) -> i64 {
        i64::from(self.hasher.finalize())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_boundaries_matter() {
        // "ab" + "c" must differ from "a" + "bc": lengths are part of the encoding.
        let a = RecordCrc::new().text("ab").text("c").finish();
        let b = RecordCrc::new().text("a").text("bc").finish();
        assert_ne!(a, b);
    }

    #[test]
    fn null_differs_from_empty() {
        let a = RecordCrc::new().opt_text(None).finish();
        let b = RecordCrc::new().opt_text(Some("")).finish();
        assert_ne!(a, b);
    }

    #[test]
    fn known_answer() {
        // Pins the encoding: changing it is a format change (docs/storage.md).
        let crc = RecordCrc::new().int(1).text("INBOX").finish();
        let mut bytes = 1i64.to_le_bytes().to_vec();
        bytes.extend_from_slice(&5u32.to_le_bytes());
        bytes.extend_from_slice(b"INBOX");
        assert_eq!(crc, i64::from(crc32fast::hash(&bytes)));
    }
}
