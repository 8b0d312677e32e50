//! The metadata mirror's checkpoint pages: one append-only file per
//! volume (`meta/pages`) instead of a file per page. A cold open copies
//! every page of the newest checkpoint (about 2,000 at 100,000 files,
//! 20,000 at a million); a file each cost an inode allocation, a rename
//! and a directory entry per page, about a third of the daemon's CPU in
//! a cold mount, and made every count of the mirror's bytes a directory
//! walk.
//!
//! Layout: records one after another, each `key length (u16 LE) | store
//! key | body length (u32 LE) | body` (the page exactly as the store
//! served or took it). Nothing here is trusted: a page is named by its
//! hash in a signed checkpoint root, and an offline open verifies it as it
//! verifies the store's copy.
//!
//! Invariants:
//! - A record is appended whole or, after a crash, leaves a torn tail: the
//!   scan stops at the first record that does not fit (or names no page)
//!   and the next append writes over it.
//! - A page is written once: one already in the file is not appended
//!   again (named by its hash, so the same bytes).
//! - Pages no longer kept stay in the file until they are more than half
//!   of it; the file is then rewritten with the kept ones only (written
//!   beside it, then renamed over it), so it stays within about twice the
//!   newest checkpoint's pages.

use std::collections::{HashMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// The pack file's name in the mirror directory (no `~`: never taken for
/// an object's file).
pub const PACK_FILE: &str = "pages";
/// The longest store key a record may carry.
const KEY_MAX: usize = 1024;
/// The largest page body a record may carry (the format's pages are far
/// smaller; a longer length is a torn or damaged record).
const BODY_MAX: u32 = 64 << 20;
/// Dead records below this many bytes never trigger a rewrite.
const REWRITE_SLACK: u64 = 1 << 20;

/// Where a page's body lies in the pack file.
#[derive(Debug, Clone, Copy)]
struct Place {
    at: u64,
    len: u32,
}

impl Place {
    /// The body of `key`'s record written at `start`, `len` bytes long.
    fn of_record(start: u64, key: &str, len: u32) -> Place {
        Place {
            at: start + HEADER + key.len() as u64,
            len,
        }
    }

    fn read(self, file: &File) -> io::Result<Vec<u8>> {
        let mut body = vec![0; self.len as usize];
        file.read_exact_at(&mut body, self.at)?;
        Ok(body)
    }
}

/// The bytes of a record besides its key and body: the two lengths.
const HEADER: u64 = 6;

/// The pack file of one mirror; its index is read on first use.
#[derive(Debug)]
pub struct PagePack {
    path: PathBuf,
    /// Store key to body place; `None` until the file was scanned.
    index: Option<HashMap<String, Place>>,
    /// The end of the last whole record.
    end: u64,
    /// Open for appending (positioned at `end`).
    file: Option<File>,
    /// Open for reading pages in place (`get`).
    reader: Option<File>,
}

impl PagePack {
    /// The pack file in the mirror directory `dir` (not read yet).
    pub fn new(dir: &Path) -> PagePack {
        PagePack {
            path: dir.join(PACK_FILE),
            index: None,
            end: 0,
            file: None,
            reader: None,
        }
    }

    /// The index, scanning the file the first time.
    fn index(&mut self) -> &mut HashMap<String, Place> {
        if self.index.is_none() {
            let (index, end) = scan(&self.path).unwrap_or_else(|e| {
                // Taken as empty: the pages are copied again as they pass.
                tracing::warn!(path = %self.path.display(), error = %e, "could not read the local mirror's checkpoint pages; copying them again");
                Default::default()
            });
            self.index = Some(index);
            self.end = end;
        }
        self.index.as_mut().expect("just set")
    }

    /// Whether the page `key` is in the file.
    pub fn contains(&mut self, key: &str) -> bool {
        self.index().contains_key(key)
    }

    /// Appends the page `key` unless it is there; returns the bytes added
    /// to the file.
    pub fn append(&mut self, key: &str, body: &[u8]) -> io::Result<u64> {
        if self.contains(key) || key.len() > KEY_MAX || body.len() > BODY_MAX as usize {
            return Ok(0);
        }
        if self.file.is_none() {
            if let Some(dir) = self.path.parent() {
                fs::create_dir_all(dir)?;
            }
            let mut f = OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&self.path)?;
            // A torn tail left by a crash is written over.
            f.set_len(self.end)?;
            f.seek(SeekFrom::Start(self.end))?;
            self.file = Some(f);
        }
        let record = encode(key, body);
        let file = self.file.as_mut().expect("just opened");
        if let Err(e) = file.write_all(&record) {
            // Where the file ends now is unknown: the next append starts
            // by cutting it back to the last whole record.
            self.file = None;
            return Err(e);
        }
        let place = Place::of_record(self.end, key, body.len() as u32);
        self.end += record.len() as u64;
        self.index().insert(key.to_string(), place);
        Ok(record.len() as u64)
    }

    /// Forgets the pages not in `keep`, rewriting the file once they are
    /// more than half of it; returns whether it was rewritten.
    pub fn retain(&mut self, keep: &HashSet<String>) -> io::Result<bool> {
        let kept: Vec<(String, Place)> = (self.index().iter())
            .filter(|(k, _)| keep.contains(*k))
            .map(|(k, p)| (k.clone(), *p))
            .collect();
        let live: u64 = kept.iter().map(|(k, p)| record_len(k, p.len)).sum();
        if self.end <= 2 * live + REWRITE_SLACK {
            return Ok(false);
        }
        let tmp = self.path.with_extension("tmp");
        let mut index = HashMap::with_capacity(kept.len());
        let mut end = 0;
        {
            let old = File::open(&self.path)?;
            let mut out = io::BufWriter::new(File::create(&tmp)?);
            for (key, place) in kept {
                let record = encode(&key, &place.read(&old)?);
                out.write_all(&record)?;
                index.insert(key.clone(), Place::of_record(end, &key, place.len));
                end += record.len() as u64;
            }
            out.into_inner().map_err(|e| e.into_error())?;
        }
        fs::rename(&tmp, &self.path)?;
        self.index = Some(index);
        self.end = end;
        self.file = None;
        self.reader = None;
        Ok(true)
    }

    /// The body of the page `key`, when the file holds it.
    pub fn get(&mut self, key: &str) -> io::Result<Option<Vec<u8>>> {
        let Some(place) = self.index().get(key).copied() else {
            return Ok(None);
        };
        if self.reader.is_none() {
            self.reader = Some(File::open(&self.path)?);
        }
        place
            .read(self.reader.as_ref().expect("just opened"))
            .map(Some)
    }

    /// The pages in the file whose keys start with `prefix`, as (store
    /// key, body length).
    pub fn sizes(&mut self, prefix: &str) -> Vec<(String, u64)> {
        (self.index().iter())
            .filter(|(k, _)| k.starts_with(prefix))
            .map(|(k, p)| (k.clone(), p.len as u64))
            .collect()
    }

    /// Every page in the file, as (store key, body).
    #[cfg(test)]
    pub fn pages(&mut self) -> io::Result<Vec<(String, Vec<u8>)>> {
        let mut out = Vec::new();
        for (key, _) in self.sizes("") {
            let body = self.get(&key)?.expect("indexed");
            out.push((key, body));
        }
        Ok(out)
    }
}

/// One record's bytes.
pub fn encode(key: &str, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(record_len(key, body.len() as u32) as usize);
    out.extend_from_slice(&(key.len() as u16).to_le_bytes());
    out.extend_from_slice(key.as_bytes());
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(body);
    out
}

fn record_len(key: &str, len: u32) -> u64 {
    HEADER + key.len() as u64 + len as u64
}

/// Reads the records' headers of the file at `path` (bodies skipped):
/// the index and the end of the last whole record. A missing file is
/// empty.
fn scan(path: &Path) -> io::Result<(HashMap<String, Place>, u64)> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Default::default()),
        Err(e) => return Err(e),
    };
    let size = file.metadata()?.len();
    // A small buffer: the headers are read, the bodies (most of the
    // file, 200 MB at a million files) are sought over.
    let mut r = BufReader::with_capacity(512, file);
    let mut index = HashMap::new();
    let mut end = 0u64;
    loop {
        let mut len2 = [0; 2];
        if r.read_exact(&mut len2).is_err() {
            break;
        }
        let key_len = u16::from_le_bytes(len2) as usize;
        if key_len == 0 || key_len > KEY_MAX {
            break;
        }
        let mut key = vec![0; key_len];
        let mut len4 = [0; 4];
        if r.read_exact(&mut key).is_err() || r.read_exact(&mut len4).is_err() {
            break;
        }
        let len = u32::from_le_bytes(len4);
        let Ok(key) = String::from_utf8(key) else {
            break;
        };
        let place = Place::of_record(end, &key, len);
        if len > BODY_MAX || place.at + len as u64 > size {
            break;
        }
        r.seek_relative(len as i64)?;
        end = place.at + len as u64;
        index.insert(key, place);
    }
    Ok((index, end))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keep(keys: &[&str]) -> HashSet<String> {
        keys.iter().map(|k| k.to_string()).collect()
    }

    /// Pages appended are read back after a reopen, once each.
    #[test]
    fn pages_survive_a_reopen_and_are_written_once() {
        let dir = tempfile::tempdir().unwrap();
        let mut p = PagePack::new(dir.path());
        assert!(p.append("v/a/p/1", b"one").unwrap() > 0);
        assert!(p.append("v/a/p/2", &[2; 5000]).unwrap() > 0);
        assert_eq!(p.append("v/a/p/1", b"one").unwrap(), 0);
        let size = fs::metadata(dir.path().join(PACK_FILE)).unwrap().len();
        let mut q = PagePack::new(dir.path());
        assert!(q.contains("v/a/p/2"));
        assert_eq!(q.append("v/a/p/2", &[2; 5000]).unwrap(), 0);
        let mut pages = q.pages().unwrap();
        pages.sort();
        assert_eq!(
            pages,
            vec![
                ("v/a/p/1".to_string(), b"one".to_vec()),
                ("v/a/p/2".to_string(), vec![2; 5000])
            ]
        );
        assert_eq!(
            fs::metadata(dir.path().join(PACK_FILE)).unwrap().len(),
            size
        );
    }

    /// A torn last record (a crash mid-append) is dropped, and the next
    /// append writes over it.
    #[test]
    fn a_torn_tail_is_written_over() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(PACK_FILE);
        let mut bytes = encode("v/a/p/1", b"whole");
        let whole = bytes.len() as u64;
        bytes.extend_from_slice(&encode("v/a/p/2", &[9; 100])[..40]);
        fs::write(&path, &bytes).unwrap();
        let mut p = PagePack::new(dir.path());
        assert!(p.contains("v/a/p/1"));
        assert!(!p.contains("v/a/p/2"));
        p.append("v/a/p/3", b"three").unwrap();
        assert_eq!(
            fs::metadata(&path).unwrap().len(),
            whole + encode("v/a/p/3", b"three").len() as u64
        );
        let mut pages = PagePack::new(dir.path()).pages().unwrap();
        pages.sort();
        assert_eq!(pages[0], ("v/a/p/1".to_string(), b"whole".to_vec()));
        assert_eq!(pages[1], ("v/a/p/3".to_string(), b"three".to_vec()));
    }

    /// A record claiming a length past the end of the file, or a key of
    /// no length, ends the scan without reading beyond it.
    #[test]
    fn a_damaged_length_ends_the_scan() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(PACK_FILE);
        let mut bytes = encode("v/a/p/1", b"ok");
        bytes.extend_from_slice(&7u16.to_le_bytes());
        bytes.extend_from_slice(b"v/a/p/2");
        bytes.extend_from_slice(&u32::MAX.to_le_bytes());
        bytes.extend_from_slice(b"short");
        fs::write(&path, &bytes).unwrap();
        let mut p = PagePack::new(dir.path());
        assert_eq!(
            p.pages().unwrap(),
            vec![("v/a/p/1".to_string(), b"ok".to_vec())]
        );
        fs::write(&path, [0u8; 64]).unwrap();
        assert!(PagePack::new(dir.path()).pages().unwrap().is_empty());
    }

    /// Pages no longer kept go once they are most of the file; until
    /// then the file is left alone.
    #[test]
    fn dropped_pages_go_when_they_are_most_of_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(PACK_FILE);
        let mut p = PagePack::new(dir.path());
        let big = vec![5; 600 << 10];
        p.append("v/a/p/old1", &big).unwrap();
        p.append("v/a/p/old2", &big).unwrap();
        p.append("v/a/p/new", &big).unwrap();
        let before = fs::metadata(&path).unwrap().len();
        // Two thirds dead, but under the slack: kept as it is.
        assert!(!p.retain(&keep(&["v/a/p/new", "v/a/p/old1"])).unwrap());
        assert!(!p.retain(&keep(&["v/a/p/new"])).unwrap());
        assert_eq!(fs::metadata(&path).unwrap().len(), before);
        let mut p = PagePack::new(dir.path());
        for i in 0..4 {
            p.append(&format!("v/a/p/more{i}"), &big).unwrap();
        }
        assert!(p.retain(&keep(&["v/a/p/new"])).unwrap());
        assert_eq!(
            fs::metadata(&path).unwrap().len(),
            encode("v/a/p/new", &big).len() as u64
        );
        assert_eq!(
            p.pages().unwrap(),
            vec![("v/a/p/new".to_string(), big.clone())]
        );
        // Appends after a rewrite land after the kept pages.
        p.append("v/a/p/next", b"n").unwrap();
        let mut pages = PagePack::new(dir.path()).pages().unwrap();
        pages.sort();
        assert_eq!(pages.len(), 2);
        assert_eq!(pages[1], ("v/a/p/next".to_string(), b"n".to_vec()));
    }
}
