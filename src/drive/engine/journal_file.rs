//! The journal file of one engine's cache directory. Every op accepted
//! into `pending` is appended as it is queued (one sealed record, one
//! `write(2)`, no fsync), so what a call acknowledged survives a crash of
//! the process (SIGKILL, an OOM kill, a panic): the page cache outlives
//! it. `fsync` adds `sync_data` against a crash of the machine.
//!
//! Records (docs/FORMAT.md, "Drive: local cache directory"): an op with its
//! `client_seq` (>= 1), or a marker `client_seq = 0 || node u64`: that file
//! has unsealed writes. A marker not followed by a content op of the same
//! file tells the next open that the file lost an unsealed tail.
//!
//! Invariants:
//! - Ops are appended in `client_seq` order, each at most once (`upto`).
//! - A torn or failing record ends the journal. After a replay the file is
//!   rewritten (durably) to the records kept, so later appends never
//!   follow damaged bytes.
//! - An append that fails (a full disk) is logged and retried with the
//!   next one; the ops stay queued in memory meanwhile.
//! - The journal does not grow without bound under steady writing: once
//!   most of its bytes are ops already committed (`mostly_committed`), the
//!   engine rewrites it to the pending ops. Its size is published to the
//!   cache (`bytes`), whose bound it counts against.

use crate::drive::error::{DriveError, Result};
use crate::format::crypto::{Cipher, NONCE_LEN, random_array};
use crate::format::meta::Op;
use crate::format::wire::{FormatError, Reader, Writer};
use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// A journal smaller than this is never rewritten just to drop committed
/// records (an empty pending queue empties it anyway).
const COMPACT_MIN: u64 = 1 << 20;

/// One journal record.
#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    /// An op queued with this client seq.
    Op(u64, Op),
    /// The node has unsealed writes (journal only, never committed).
    Unsealed(u64),
}

/// The open journal of one engine (kept in its `Core`, so appends are
/// serialised by the core lock and follow the order of `pending`).
pub struct Journal {
    path: PathBuf,
    cipher: Cipher,
    aad: Vec<u8>,
    /// Open for appending; `None` until the first append after open.
    file: Option<File>,
    /// Bytes of whole records in the file (a failed append is cut back
    /// to this).
    len: u64,
    /// Highest client seq appended.
    upto: u64,
    /// Client seq and record length of every op in the file not known to
    /// be committed, in file order; `live` is the sum of the lengths.
    ops: VecDeque<(u64, u64)>,
    live: u64,
    /// `len`, published for the cache bound.
    bytes: Arc<AtomicU64>,
    /// The last append failed (logged once until one succeeds again).
    failing: bool,
}

impl std::fmt::Debug for Journal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Journal")
            .field("path", &self.path)
            .field("upto", &self.upto)
            .field("failing", &self.failing)
            .finish_non_exhaustive()
    }
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> DriveError + '_ {
    move |source| DriveError::Cache {
        path: path.display().to_string(),
        source,
    }
}

impl Journal {
    /// The journal `dir/journal`, sealed with `cipher` for client `client`,
    /// and every whole record it holds (a torn or damaged tail is ignored,
    /// with an error logged if it was not simply short). `bytes` follows
    /// the file's length.
    pub fn open(
        dir: &Path,
        cipher: Cipher,
        client: &[u8; 16],
        bytes: Arc<AtomicU64>,
    ) -> Result<(Journal, Vec<Record>)> {
        let path = dir.join("journal");
        let aad = journal_aad(client);
        let mut j = Journal {
            path,
            cipher,
            aad,
            file: None,
            len: 0,
            upto: 0,
            ops: VecDeque::new(),
            live: 0,
            bytes,
            failing: false,
        };
        let (records, len) = j.read()?;
        j.set_len(len);
        Ok((j, records))
    }

    fn set_len(&mut self, len: u64) {
        self.len = len;
        self.bytes.store(len, Ordering::Relaxed);
    }

    /// Ops up to client seq `upto` are committed: their records are dead
    /// weight in the file.
    pub fn committed(&mut self, upto: u64) {
        while let Some(&(seq, len)) = self.ops.front() {
            if seq > upto {
                break;
            }
            self.live -= len;
            self.ops.pop_front();
        }
    }

    /// Most of the file is ops already committed: time to `rewrite` it to
    /// the pending ones.
    pub fn mostly_committed(&self) -> bool {
        self.len >= COMPACT_MIN && self.len > 2 * self.live
    }

    /// The whole records and the length they span.
    fn read(&self) -> Result<(Vec<Record>, u64)> {
        let path = &self.path;
        let bytes = match fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), 0)),
            Err(e) => return Err(io_err(path)(e)),
        };
        let (out, len, stop) = parse_records(&self.cipher, &self.aad, &bytes);
        match stop {
            None | Some(JournalStop::Torn) => {}
            Some(JournalStop::Unverified) => {
                tracing::error!(path = %path.display(), "journal record failed verification; ignoring it and the rest");
            }
            Some(JournalStop::Unparsable) => {
                tracing::error!(path = %path.display(), "journal record does not parse; ignoring it and the rest");
            }
        }
        Ok((out, len as u64))
    }

    /// Replaces the journal by `ops` and markers of the files `unsealed`
    /// (after a replay or a rebase), durably: the old file may hold ops an
    /// `fsync` promised.
    pub fn rewrite(
        &mut self,
        ops: &VecDeque<(u64, Op)>,
        unsealed: impl IntoIterator<Item = u64>,
    ) -> Result<()> {
        self.file = None;
        let (mut buf, sizes) = self.encode_ops(ops.iter());
        buf.extend(self.encode(unsealed.into_iter().map(Rec::Unsealed)));
        self.ops.clear();
        self.live = 0;
        if buf.is_empty() {
            self.set_len(0);
            return match fs::remove_file(&self.path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io_err(&self.path)(e)),
                _ => Ok(()),
            };
        }
        let tmp = self.path.with_extension("tmp");
        {
            let mut f = File::create(&tmp).map_err(io_err(&tmp))?;
            f.write_all(&buf).map_err(io_err(&tmp))?;
            f.sync_all().map_err(io_err(&tmp))?;
        }
        fs::rename(&tmp, &self.path).map_err(io_err(&self.path))?;
        self.set_len(buf.len() as u64);
        self.live = sizes.iter().map(|(_, n)| n).sum();
        self.ops = sizes;
        if let Some(dir) = self.path.parent() {
            File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(io_err(dir))?;
        }
        self.upto = self.upto.max(ops.back().map(|(s, _)| *s).unwrap_or(0));
        Ok(())
    }

    /// Appends the ops of `pending` not yet in the journal (normally just
    /// the one queued last). A failure is logged (once until an append
    /// works again) and returned; the ops stay queued in memory and the
    /// next call appends them.
    pub fn catch_up(&mut self, pending: &VecDeque<(u64, Op)>) -> std::io::Result<()> {
        let new = pending
            .iter()
            .rev()
            .take_while(|(s, _)| *s > self.upto)
            .count();
        if new == 0 {
            return Ok(());
        }
        let start = pending.len() - new;
        let (buf, sizes) = self.encode_ops(pending.range(start..));
        self.write(&buf)?;
        self.live += sizes.iter().map(|(_, n)| n).sum::<u64>();
        self.ops.extend(sizes);
        self.upto = pending.back().map(|(s, _)| *s).unwrap_or(self.upto);
        Ok(())
    }

    /// Records that `node` has unsealed writes.
    pub fn mark_unsealed(&mut self, node: u64) {
        let buf = self.encode(std::iter::once(Rec::Unsealed(node)));
        // A failure is logged; the marker only serves a report.
        let _ = self.write(&buf);
    }

    /// Empties the journal (everything in it is committed), keeping the
    /// markers of files that still have unsealed writes.
    pub fn reset(&mut self, unsealed: impl Iterator<Item = u64>) -> Result<()> {
        match self.file.as_ref() {
            Some(f) => f.set_len(0).map_err(io_err(&self.path))?,
            None => match fs::remove_file(&self.path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(io_err(&self.path)(e));
                }
                _ => {}
            },
        }
        self.set_len(0);
        self.ops.clear();
        self.live = 0;
        let buf = self.encode(unsealed.map(Rec::Unsealed));
        if !buf.is_empty() {
            let _ = self.write(&buf);
        }
        Ok(())
    }

    /// A handle on the journal file to `sync_data` without holding the
    /// engine's lock (`None`: nothing was written since the last open).
    pub fn sync_handle(&self) -> Result<Option<File>> {
        match &self.file {
            Some(f) => f.try_clone().map(Some).map_err(io_err(&self.path)),
            None => Ok(None),
        }
    }

    /// The sealed records of `ops`, and each one's client seq and length.
    fn encode_ops<'a>(
        &self,
        ops: impl Iterator<Item = &'a (u64, Op)>,
    ) -> (Vec<u8>, VecDeque<(u64, u64)>) {
        let mut buf = Vec::new();
        let mut sizes = VecDeque::new();
        for (seq, op) in ops {
            let rec = seal_record(&self.cipher, &self.aad, Rec::Op(*seq, op).plain());
            sizes.push_back((*seq, rec.len() as u64));
            buf.extend_from_slice(&rec);
        }
        (buf, sizes)
    }

    fn encode<'a>(&self, recs: impl Iterator<Item = Rec<'a>>) -> Vec<u8> {
        let mut buf = Vec::new();
        for rec in recs {
            buf.extend_from_slice(&seal_record(&self.cipher, &self.aad, rec.plain()));
        }
        buf
    }

    /// Appends `buf` with one write; a failure is logged (once until a
    /// write works again) and the file cut back to its whole records.
    fn write(&mut self, buf: &[u8]) -> std::io::Result<()> {
        let r = (|| {
            if self.file.is_none() {
                let f = OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&self.path)?;
                // Appends follow the last whole record, never torn bytes.
                f.set_len(self.len)?;
                self.file = Some(f);
            }
            self.file.as_mut().expect("opened").write_all(buf)
        })();
        match r {
            Ok(()) => {
                self.set_len(self.len + buf.len() as u64);
                if self.failing {
                    tracing::info!(path = %self.path.display(), "journal writable again");
                }
                self.failing = false;
                Ok(())
            }
            Err(e) => {
                if !self.failing {
                    tracing::error!(path = %self.path.display(), error = %e, "cannot append to the journal; changes since stay in memory until committed or until an append succeeds");
                }
                self.failing = true;
                // A partial append leaves a torn record: cut it off so
                // the next append follows whole records.
                if let Some(f) = &self.file
                    && f.set_len(self.len).is_err()
                {
                    self.file = None;
                }
                Err(e)
            }
        }
    }
}

/// A record to encode.
enum Rec<'a> {
    Op(u64, &'a Op),
    Unsealed(u64),
}

impl Rec<'_> {
    /// The record's plaintext: `u64 client seq || op`, or `u64 0 || u64 node`.
    fn plain(&self) -> Vec<u8> {
        let mut w = Writer::new();
        match self {
            Rec::Op(seq, op) => {
                w.u64(*seq);
                op.write(&mut w);
            }
            Rec::Unsealed(node) => {
                w.u64(0).u64(*node);
            }
        }
        w.into_vec()
    }
}

/// The plaintext of `record` (what [`parse_journal_record`] reads).
pub(crate) fn encode_journal_record(record: &Record) -> Vec<u8> {
    match record {
        Record::Op(seq, op) => Rec::Op(*seq, op).plain(),
        Record::Unsealed(node) => Rec::Unsealed(*node).plain(),
    }
}

/// Why [`parse_journal`] stopped before the end of the bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum JournalStop {
    /// A record cut short (a torn append): expected after a crash.
    Torn,
    /// A record that fails authentication.
    Unverified,
    /// A record that authenticates but does not parse.
    Unparsable,
}

fn journal_aad(client: &[u8; 16]) -> Vec<u8> {
    [b"cardfs/v1/journal".as_slice(), client].concat()
}

/// One framed record: `u32 length || nonce || sealed plain`.
fn seal_record(cipher: &Cipher, aad: &[u8], plain: Vec<u8>) -> Vec<u8> {
    let nonce = random_array::<NONCE_LEN>();
    let mut ct = plain;
    cipher.seal_in_place(&nonce, aad, &mut ct);
    let mut out = Vec::with_capacity(4 + NONCE_LEN + ct.len());
    out.extend_from_slice(&((NONCE_LEN + ct.len()) as u32).to_le_bytes());
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&ct);
    out
}

/// A framed record of client `client`'s journal holding `plain`.
pub(crate) fn seal_journal_record(cipher: &Cipher, client: &[u8; 16], plain: Vec<u8>) -> Vec<u8> {
    seal_record(cipher, &journal_aad(client), plain)
}

/// Parses a record's plaintext: an op with its client seq (>= 1), or an
/// unsealed-writes marker (seq 0 and a node id); nothing after.
pub(crate) fn parse_journal_record(plain: &[u8]) -> std::result::Result<Record, FormatError> {
    let mut r = Reader::new(plain);
    let seq = r.u64()?;
    let rec = if seq == 0 {
        Record::Unsealed(r.u64()?)
    } else {
        Record::Op(seq, Op::read(&mut r)?)
    };
    r.finish()?;
    Ok(rec)
}

/// The whole records of client `client`'s journal bytes that verify and
/// parse, in order, and why it stopped before the end if it did.
pub(crate) fn parse_journal(
    cipher: &Cipher,
    client: &[u8; 16],
    bytes: &[u8],
) -> (Vec<Record>, Option<JournalStop>) {
    let (records, _, stop) = parse_records(cipher, &journal_aad(client), bytes);
    (records, stop)
}

/// [`parse_journal`] with the bytes the whole records span. A record's
/// length is checked against the bytes left before it is read.
fn parse_records(
    cipher: &Cipher,
    aad: &[u8],
    bytes: &[u8],
) -> (Vec<Record>, usize, Option<JournalStop>) {
    let mut out = Vec::new();
    let mut rest = bytes;
    let mut used = 0;
    while !rest.is_empty() {
        let Some((len, body)) = rest.split_first_chunk::<4>() else {
            return (out, used, Some(JournalStop::Torn));
        };
        let len = u32::from_le_bytes(*len) as usize;
        if len < NONCE_LEN || len > body.len() {
            return (out, used, Some(JournalStop::Torn));
        }
        let (rec, after) = body.split_at(len);
        let (nonce, ct) = rec.split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce.try_into().expect("NONCE_LEN bytes");
        let Ok(plain) = cipher.open(&nonce, aad, ct) else {
            return (out, used, Some(JournalStop::Unverified));
        };
        match parse_journal_record(&plain) {
            Ok(record) => out.push(record),
            Err(_) => return (out, used, Some(JournalStop::Unparsable)),
        }
        used += 4 + len;
        rest = after;
    }
    (out, used, None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::crypto::SecretKey;

    fn pending(range: std::ops::RangeInclusive<u64>) -> VecDeque<(u64, Op)> {
        let ops = crate::fuzzing::sample_ops();
        range
            .map(|seq| (seq, ops[seq as usize % ops.len()].clone()))
            .collect()
    }

    /// Under steady writing the queue never empties; once most of the
    /// file is committed ops, a rewrite keeps only the pending ones, and
    /// the published size follows the file.
    #[test]
    fn committed_records_are_dropped_by_a_rewrite() {
        let dir = tempfile::tempdir().unwrap();
        let bytes = Arc::new(AtomicU64::new(0));
        let cipher = Cipher::new(&SecretKey::random());
        let (mut j, recs) =
            Journal::open(dir.path(), cipher.clone(), &[7; 16], bytes.clone()).unwrap();
        assert!(recs.is_empty());
        let mut queue = VecDeque::new();
        let mut seq = 0;
        while j.len < 2 * COMPACT_MIN {
            seq += 1;
            queue.extend(pending(seq..=seq));
            j.catch_up(&queue).unwrap();
        }
        let file_len = || fs::metadata(dir.path().join("journal")).unwrap().len();
        assert_eq!(bytes.load(Ordering::Relaxed), file_len());
        assert!(!j.mostly_committed(), "nothing is committed yet");
        // All but the last ten ops are committed.
        let upto = seq - 10;
        queue.retain(|(s, _)| *s > upto);
        j.committed(upto);
        assert!(j.mostly_committed());
        let before = file_len();
        j.rewrite(&queue, [42]).unwrap();
        assert!(!j.mostly_committed());
        let after = file_len();
        assert!(after * 50 < before, "{before} -> {after} bytes");
        assert_eq!(bytes.load(Ordering::Relaxed), after);
        // Appends go on after the rewrite, and a reopen finds exactly the
        // pending ops and the marker.
        queue.extend(pending(seq + 1..=seq + 3));
        j.catch_up(&queue).unwrap();
        drop(j);
        let (_, recs) = Journal::open(dir.path(), cipher, &[7; 16], bytes).unwrap();
        let seqs: Vec<u64> = recs
            .iter()
            .filter_map(|r| match r {
                Record::Op(s, _) => Some(*s),
                Record::Unsealed(_) => None,
            })
            .collect();
        assert_eq!(seqs, queue.iter().map(|(s, _)| *s).collect::<Vec<_>>());
        assert!(recs.contains(&Record::Unsealed(42)));
    }
}
