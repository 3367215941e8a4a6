//! Serde helpers that keep decoding bounded in memory.
//!
//! This module owns how list fields and byte strings are (de)serialized. A
//! postcard list states its length up front; a peer can state a huge one, or
//! send millions of one-byte elements that each take 24 bytes or more once
//! decoded. [`vec`] keeps at most `MAX + 1` elements and drops the rest as it
//! reads them, so a 16 MiB frame never turns into hundreds of MiB of
//! `String`s; [`crate::Frame::validate`] then sees the `MAX + 1`st element and
//! refuses the frame with a typed error. (Failing inside serde would only
//! give postcard's opaque `SerdeDeCustom`.) The wire format is postcard's
//! ordinary sequence encoding either way.
//!
//! [`bytes`] writes `Vec<u8>` with `serialize_bytes` (same wire bytes as a
//! sequence of `u8`, a varint length then the bytes) and reads it in one copy
//! instead of element by element.

use serde::de::{Deserialize, Deserializer, SeqAccess, Visitor};
use std::fmt;
use std::marker::PhantomData;

/// Deserialize a list, keeping at most `MAX + 1` elements (see the module
/// documentation).
pub(crate) fn vec<'de, D, T, const MAX: usize>(deserializer: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    struct BoundedVisitor<T, const MAX: usize>(PhantomData<T>);

    impl<'de, T: Deserialize<'de>, const MAX: usize> Visitor<'de> for BoundedVisitor<T, MAX> {
        type Value = Vec<T>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "a list of at most {MAX} elements")
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<T>, A::Error> {
            // postcard's hint is the stated length, or None when fewer bytes
            // remain than elements are stated; never trust it beyond MAX + 1.
            let keep = MAX.saturating_add(1);
            let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(keep).min(1024));
            while let Some(element) = seq.next_element::<T>()? {
                if out.len() < keep {
                    out.push(element);
                }
            }
            Ok(out)
        }
    }

    deserializer.deserialize_seq(BoundedVisitor::<T, MAX>(PhantomData))
}

/// `Vec<u8>` as a byte string: `#[serde(with = "crate::bounded::bytes")]`.
pub(crate) mod bytes {
    use serde::de::{Deserializer, Error, SeqAccess, Visitor};
    use serde::ser::Serializer;
    use std::fmt;

    pub(crate) fn serialize<S: Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(bytes)
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Vec<u8>, D::Error> {
        struct BytesVisitor;

        impl<'de> Visitor<'de> for BytesVisitor {
            type Value = Vec<u8>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a byte string")
            }

            fn visit_bytes<E: Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
                Ok(v.to_vec())
            }

            fn visit_byte_buf<E: Error>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
                Ok(v)
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<u8>, A::Error> {
                let mut out = Vec::new();
                while let Some(b) = seq.next_element::<u8>()? {
                    out.push(b);
                }
                Ok(out)
            }
        }

        deserializer.deserialize_bytes(BytesVisitor)
    }
}

#[cfg(test)]
mod tests {
    use serde::{Deserialize, Serialize};

    #[derive(Debug, Serialize, Deserialize)]
    struct Three {
        #[serde(deserialize_with = "super::vec::<_, _, 3>")]
        items: Vec<u32>,
        after: u8,
    }

    #[test]
    fn keeps_at_most_max_plus_one_and_reads_the_rest() {
        let bytes = postcard::to_allocvec(&Three {
            items: (0..10).collect(),
            after: 7,
        })
        .unwrap();
        let decoded: Three = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(decoded.items, [0, 1, 2, 3]);
        assert_eq!(decoded.after, 7, "the dropped elements were consumed");

        let bytes = postcard::to_allocvec(&Three {
            items: vec![1, 2],
            after: 1,
        })
        .unwrap();
        let decoded: Three = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(decoded.items, [1, 2]);
    }

    #[test]
    fn a_stated_length_beyond_the_input_fails_without_allocating() {
        // A list stating u32::MAX elements, then nothing.
        let bytes = [0xff, 0xff, 0xff, 0xff, 0x0f];
        assert!(postcard::from_bytes::<Three>(&bytes).is_err());
    }
}
