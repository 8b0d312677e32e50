//! [`Listing`]: one open directory handle's snapshot of the directory's
//! entries in cookie order, which `readdir` pages through.
//!
//! The tree keeps no index of a directory's entries by cookie (it would
//! hold a second copy of every name of the drive); a listing takes one
//! when a handle starts reading (offset 0, or its first read at another
//! offset: a scan of the directory) and is dropped with the handle.
//!
//! Invariants (what `readdir` promises, as with a live index):
//! - A read after offset `o` returns the directory's current entries
//!   with cookie above `o - 2`, in cookie order: an entry of the snapshot
//!   is returned only while the directory still holds that name with that
//!   cookie (a removed or renamed entry is skipped), and entries added
//!   since (cookies at or above the directory's `next_cookie` when the
//!   snapshot was taken) follow the snapshot's.
//! - Offsets are cookies (plus 2, for "." and ".."), so a listing can be
//!   resumed at any offset it returned (seekdir/telldir).

use crate::drive::error::Result;
use crate::drive::tree::Tree;
use crate::format::meta::{Name, Node};

/// A directory's entries as of one moment, sorted by cookie.
#[derive(Debug, Clone)]
pub struct Listing {
    dir: u64,
    /// Every entry with cookie above `after` and below `upto` when taken
    /// (or when last extended), ascending by cookie.
    entries: Vec<(u64, Name)>,
    after: u64,
    /// The directory's `next_cookie` when the entries were read: any entry
    /// with a cookie at or above it was added since.
    upto: u64,
}

impl Listing {
    /// The entries of `dir` with cookie above `after` (a scan and sort of
    /// the directory).
    pub fn take(tree: &Tree, dir: u64, after: u64) -> Result<Listing> {
        let node = tree.dir(dir)?;
        let entries = by_cookie(node, after.saturating_add(1));
        Ok(Listing {
            dir,
            entries,
            after,
            upto: node.next_cookie,
        })
    }

    /// Whether this listing can answer a read of `dir` after `after`.
    pub fn covers(&self, dir: u64, after: u64) -> bool {
        self.dir == dir && after >= self.after
    }

    /// At most `limit` entries of the directory (as `tree` holds it now)
    /// with cookie above `after`, in cookie order: (cookie, name, node).
    pub fn next(
        &mut self,
        tree: &Tree,
        after: u64,
        limit: usize,
    ) -> Result<Vec<(u64, Vec<u8>, u64)>> {
        let node = tree.dir(self.dir)?;
        let mut out = Vec::new();
        let mut i = self.entries.partition_point(|(c, _)| *c <= after);
        loop {
            while i < self.entries.len() && out.len() < limit {
                let (cookie, name) = &self.entries[i];
                i += 1;
                match node.entries.get(name.as_bytes()) {
                    Some(l) if l.cookie == *cookie && *cookie > after => {
                        out.push((*cookie, name.to_vec(), l.node));
                    }
                    _ => {}
                }
            }
            if out.len() >= limit || node.next_cookie == self.upto {
                return Ok(out);
            }
            // The directory's newest entries changed since the snapshot:
            // entries added (cookies at or above `upto`), or, after a
            // rebase gave its pending entries other cookies, fewer. Read
            // them again from the lower of the two (a scan, once per batch
            // of changes a reader reaches the end after).
            let from = self
                .upto
                .min(node.next_cookie)
                .max(self.after.saturating_add(1));
            self.entries
                .truncate(self.entries.partition_point(|(c, _)| *c < from));
            let added = by_cookie(node, from);
            self.entries.extend(added);
            self.upto = node.next_cookie;
            let last = out.last().map_or(after, |(c, _, _)| *c);
            i = self.entries.partition_point(|(c, _)| *c <= last);
        }
    }
}

/// The entries of directory `node` with cookie at least `from`, sorted by
/// cookie (a scan of the directory).
fn by_cookie(node: &Node, from: u64) -> Vec<(u64, Name)> {
    let mut v: Vec<(u64, Name)> = node
        .entries
        .iter()
        .filter(|(_, l)| l.cookie >= from)
        .map(|(name, l)| (l.cookie, name.clone()))
        .collect();
    v.sort_unstable_by_key(|(c, _)| *c);
    v
}
