//! GUID: the BLAKE3-256 hash of a message's exact bytes, its identity
//! everywhere (index, file name, replication, check).

use std::fmt;
use std::str::FromStr;

/// A message's content hash.
#[derive(
    Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct Guid(pub [u8; 32]);

impl Guid {
    /// Hash message bytes.
    pub fn of(bytes: &[u8]) -> Guid {
        Guid(*blake3::hash(bytes).as_bytes())
    }

    /// Lowercase hex, 64 characters: the file name and the printed form.
    pub fn to_hex(&self) -> String {
        let mut s = String::with_capacity(64);
        for b in self.0 {
            s.push(char::from_digit(u32::from(b >> 4), 16).expect("nibble"));
            s.push(char::from_digit(u32::from(b & 15), 16).expect("nibble"));
        }
        s
    }

    /// Build from the 32 bytes stored in the index.
    pub fn from_slice(bytes: &[u8]) -> Option<Guid> {
        bytes.try_into().ok().map(Guid)
    }
}

impl fmt::Display for Guid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Guid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Guid({})", &self.to_hex()[..16])
    }
}

impl FromStr for Guid {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() != 64 {
            return Err(format!(
                "a GUID is 64 hex digits, got {} characters",
                s.len()
            ));
        }
        let mut out = [0u8; 32];
        for (i, chunk) in s.as_bytes().chunks(2).enumerate() {
            let hex = std::str::from_utf8(chunk).map_err(|_| "not hex".to_string())?;
            out[i] = u8::from_str_radix(hex, 16).map_err(|_| format!("not hex: {hex}"))?;
        }
        Ok(Guid(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip() {
        let g = Guid::of(b"hello");
        assert_eq!(g.to_hex().parse::<Guid>().unwrap(), g);
        assert!("zz".parse::<Guid>().is_err());
        // Known answer: BLAKE3("") from the BLAKE3 specification's test vectors.
        assert_eq!(
            Guid::of(b"").to_hex(),
            "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262"
        );
    }
}
