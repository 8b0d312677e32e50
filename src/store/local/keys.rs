//! Safe, collision-free mapping between object keys and relative paths
//! under a local store's `objects/` directory.
//!
//! Invariants:
//! - Every key maps to exactly one path and every path produced here maps
//!   back to its key (`decode(encode(k)) == k`), so two keys never share a
//!   file.
//! - A key segment is percent-encoded: ASCII letters, digits, `_`, `-`, `.`
//!   and non-ASCII characters stay as they are; every other byte (including
//!   `%`, `+`, `~`) becomes `%XX`, and so does a `.` that starts a name. An encoded
//!   name therefore never is `.`/`..`, never is hidden, and never contains a
//!   raw `/`, `+` or `~`.
//! - Objects are files named by their encoded last segment; the segments
//!   before it are directories whose names end in `~`. So the object `a`
//!   (file `a`) and the object `a/b` (file `a~/b`) coexist.
//! - An encoded segment longer than [`PIECE`] bytes is split into pieces;
//!   every piece but the last is a directory whose name ends in `+`. This
//!   keeps every file name under the 255-byte limit of Linux filesystems.

use std::fmt::Write;
use std::path::PathBuf;

/// Longest piece of an encoded segment (bytes), below the 255-byte limit
/// of a file name with room for the suffix.
pub const PIECE: usize = 200;

/// Suffix of a directory that holds the rest of a key after a `/`.
const DIR: char = '~';
/// Suffix of a directory that holds the rest of one long segment.
const CONT: char = '+';

fn kept(b: u8) -> bool {
    b >= 0x80 || b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.'
}

/// Encodes one key segment into its units (a kept character or `%XX`).
fn encode_units(segment: &str) -> Vec<String> {
    let mut units = Vec::with_capacity(segment.len());
    for ch in segment.chars() {
        if !ch.is_ascii() || kept(ch as u8) {
            units.push(ch.to_string());
        } else {
            let mut unit = String::with_capacity(3);
            let _ = write!(unit, "%{:02X}", ch as u8);
            units.push(unit);
        }
    }
    units
}

/// Splits an encoded segment into pieces of at most [`PIECE`] bytes without
/// cutting a unit; a `.` that starts a piece is escaped, so no piece is
/// `.`, `..` or a hidden name.
fn pieces(segment: &str) -> Vec<String> {
    let mut out = vec![String::new()];
    for unit in encode_units(segment) {
        let last = out.last_mut().expect("never empty");
        let unit = if unit == "." && (last.is_empty() || last.len() + 3 > PIECE) {
            "%2E".to_string()
        } else {
            unit
        };
        if last.len() + unit.len() > PIECE {
            out.push(unit);
        } else {
            last.push_str(&unit);
        }
    }
    out
}

/// Relative path of the file that holds object `key` (a valid key).
pub fn object_path(key: &str) -> PathBuf {
    let segments: Vec<&str> = key.split('/').collect();
    let mut path = PathBuf::new();
    for (i, segment) in segments.iter().enumerate() {
        let pieces = pieces(segment);
        let last_segment = i + 1 == segments.len();
        for (j, piece) in pieces.iter().enumerate() {
            let last_piece = j + 1 == pieces.len();
            let name = match (last_piece, last_segment) {
                (false, _) => format!("{piece}{CONT}"),
                (true, false) => format!("{piece}{DIR}"),
                (true, true) => piece.clone(),
            };
            path.push(name);
        }
    }
    path
}

/// Relative directory holding every key that starts with `prefix` up to
/// and including its last `/` (empty for a prefix without `/`), and the
/// key text that directory stands for.
pub fn prefix_dir(prefix: &str) -> (PathBuf, String) {
    match prefix.rfind('/') {
        None => (PathBuf::new(), String::new()),
        Some(cut) => {
            let mut path = PathBuf::new();
            for segment in prefix[..cut].split('/') {
                let pieces = pieces(segment);
                for (j, piece) in pieces.iter().enumerate() {
                    let suffix = if j + 1 == pieces.len() { DIR } else { CONT };
                    path.push(format!("{piece}{suffix}"));
                }
            }
            (path, prefix[..=cut].to_string())
        }
    }
}

/// What a directory entry stands for.
#[derive(Debug, PartialEq, Eq)]
pub enum Entry {
    /// A directory: its decoded text continues the key; `true` when the
    /// text ends a segment (a `/` follows).
    Dir(String, bool),
    /// An object file: its decoded text ends the key.
    Object(String),
}

/// Decodes one file name in `objects/`; `None` for names this module never
/// produces (foreign files are ignored, never misread).
pub fn decode_name(name: &str, is_dir: bool) -> Option<Entry> {
    if is_dir {
        let (body, ends_segment) = if let Some(b) = name.strip_suffix(DIR) {
            (b, true)
        } else {
            (name.strip_suffix(CONT)?, false)
        };
        Some(Entry::Dir(decode_piece(body)?, ends_segment))
    } else {
        Some(Entry::Object(decode_piece(name)?))
    }
}

fn decode_piece(name: &str) -> Option<String> {
    if name.is_empty() {
        return None;
    }
    let bytes = name.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = name.get(i + 1..i + 3)?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' | b'~' | b'/' => return None,
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::validate_key;
    use proptest::prelude::*;

    /// Decodes a relative path made by [`object_path`] back to its key.
    fn decode_path(path: &std::path::Path) -> Option<String> {
        let parts: Vec<_> = path.iter().map(|p| p.to_str().unwrap()).collect();
        let mut key = String::new();
        for (i, part) in parts.iter().enumerate() {
            match decode_name(part, i + 1 < parts.len())? {
                Entry::Dir(text, ends) => {
                    key.push_str(&text);
                    if ends {
                        key.push('/');
                    }
                }
                Entry::Object(text) => key.push_str(&text),
            }
        }
        Some(key)
    }

    #[test]
    fn examples() {
        assert_eq!(object_path("a"), PathBuf::from("a"));
        assert_eq!(object_path("a/b"), PathBuf::from("a~/b"));
        assert_eq!(
            object_path(".hidden/x y"),
            PathBuf::from("%2Ehidden~/x%20y")
        );
        assert_eq!(object_path("ключ/é"), PathBuf::from("ключ~/é"));
        assert_eq!(object_path("100%+~"), PathBuf::from("100%25%2B%7E"));
        assert_eq!(prefix_dir("a/b/c"), (PathBuf::from("a~/b~"), "a/b/".into()));
        assert_eq!(prefix_dir("abc"), (PathBuf::new(), String::new()));
    }

    #[test]
    fn long_segments_fit_file_name_limits() {
        let key = format!("{}/{}", "é".repeat(127), "%".repeat(255));
        validate_key(&key).unwrap();
        let path = object_path(&key);
        for part in path.iter() {
            assert!(part.len() <= PIECE + 1, "{} bytes", part.len());
        }
        assert_eq!(decode_path(&path).as_deref(), Some(key.as_str()));
    }

    #[test]
    fn foreign_names_are_ignored() {
        assert_eq!(decode_name("%zz", false), None);
        assert_eq!(decode_name("a+b", false), None);
        assert_eq!(decode_name("plain", true), None);
        assert_eq!(decode_name("%FF", false), None, "not UTF-8");
    }

    proptest! {
        #[test]
        fn paths_round_trip(key in "[a-zA-Z0-9é .%+~_-]{1,40}(/[a-zA-Z0-9ключ .%+~_-]{1,120}){0,3}") {
            prop_assume!(validate_key(&key).is_ok());
            let path = object_path(&key);
            for part in path.iter() {
                let part = part.to_str().unwrap();
                prop_assert!(part != "." && part != ".." && !part.starts_with('.'));
                prop_assert!(part.len() <= PIECE + 1);
            }
            prop_assert_eq!(decode_path(&path), Some(key));
        }
    }
}
