//! The cluster secret: 32 bytes, written in its file as 64 hex digits.
//!
//! The secret keys the handshake's proofs (docs/replication.md,
//! "Handshake"); it never goes on the wire or into a log.

use crate::error::SetupError;
use std::path::Path;

/// Largest secret file read, in bytes (64 digits, a line end, some spaces).
const SECRET_FILE_BYTES_MAX: u64 = 1024;

/// Parse 64 hex digits (surrounding whitespace allowed).
pub fn parse_secret(text: &str) -> Result<[u8; 32], String> {
    let hex = text.trim();
    if hex.len() != 64 {
        return Err(format!(
            "expected 64 hex digits, found {} characters",
            hex.len()
        ));
    }
    let mut out = [0u8; 32];
    for (i, pair) in hex.as_bytes().chunks(2).enumerate() {
        let digits = std::str::from_utf8(pair).map_err(|_| "not hex".to_string())?;
        out[i] = u8::from_str_radix(digits, 16).map_err(|_| "not hex".to_string())?;
    }
    Ok(out)
}

/// Read a secret file.
pub fn read_secret_file(path: &Path) -> Result<[u8; 32], SetupError> {
    let bad = |what: String| SetupError::Secret {
        path: path.to_path_buf(),
        what,
    };
    let file = std::fs::File::open(path).map_err(|e| bad(e.to_string()))?;
    let mut text = String::new();
    std::io::Read::read_to_string(
        &mut std::io::Read::take(file, SECRET_FILE_BYTES_MAX),
        &mut text,
    )
    .map_err(|e| bad(e.to_string()))?;
    parse_secret(&text).map_err(bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_64_hex_digits_only() {
        let s = parse_secret(&format!("{}\n", "0f".repeat(32))).unwrap();
        assert_eq!(s, [0x0f; 32]);
        assert!(parse_secret(&"0f".repeat(31)).is_err());
        assert!(parse_secret(&"zz".repeat(32)).is_err());
        assert!(parse_secret(&"é".repeat(32)).is_err());
    }
}
