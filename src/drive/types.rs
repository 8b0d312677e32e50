//! Plain data types of the engine's public API (attributes, directory
//! entries, flags). No behaviour beyond small conversions.

use super::identity::Role;
use std::ffi::OsString;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

/// Inode number. 1 is the root directory; stable for the life of a drive
/// (it is the node's id in the metadata, the same on every client).
pub type Ino = u64;
/// Open-file or open-directory handle.
pub type Fh = u64;

/// The inode number of the root directory.
pub const ROOT_INO: Ino = 1;

/// Kind of an inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FileKind {
    File,
    Dir,
    Symlink,
    /// Special files: stored as nodes, their I/O is the kernel's.
    Fifo,
    Socket,
    CharDevice,
    BlockDevice,
}

/// A special file to create with `mknod`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Special {
    Fifo,
    Socket,
    /// A character device and its device number.
    CharDevice(u64),
    BlockDevice(u64),
}

impl Special {
    /// The special file a `mknod` mode (`S_IFMT` bits) and `rdev` ask for;
    /// `None` for a regular file or an unknown type.
    pub fn from_mode(mode: u32, rdev: u64) -> Option<Self> {
        match mode & libc::S_IFMT {
            libc::S_IFIFO => Some(Special::Fifo),
            libc::S_IFSOCK => Some(Special::Socket),
            libc::S_IFCHR => Some(Special::CharDevice(rdev)),
            libc::S_IFBLK => Some(Special::BlockDevice(rdev)),
            _ => None,
        }
    }
}

/// What `getattr` returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attr {
    pub ino: Ino,
    pub kind: FileKind,
    pub size: u64,
    /// Size in 512-byte units, counting only stored (non-hole) blocks.
    pub blocks: u64,
    /// `mode & 0o7777`.
    pub perm: u16,
    pub nlink: u32,
    pub uid: u32,
    pub gid: u32,
    pub atime: SystemTime,
    pub mtime: SystemTime,
    pub ctime: SystemTime,
    pub crtime: SystemTime,
    pub rdev: u32,
    pub blksize: u32,
}

/// A time to set: the current time or a given one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeSet {
    Now,
    At(SystemTime),
}

/// Attributes to change in `setattr`; `None` leaves one unchanged.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SetAttr {
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub size: Option<u64>,
    pub atime: Option<TimeSet>,
    pub mtime: Option<TimeSet>,
    pub ctime: Option<SystemTime>,
}

/// One entry of `readdir`; pass `next_offset` back to continue after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntry {
    pub ino: Ino,
    pub kind: FileKind,
    pub name: OsString,
    pub next_offset: u64,
}

/// What `statfs` returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatFs {
    pub blocks: u64,
    pub bfree: u64,
    pub bavail: u64,
    pub files: u64,
    pub ffree: u64,
    pub bsize: u32,
    pub namelen: u32,
    pub frsize: u32,
}

/// `renameat2` flags.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RenameFlags {
    pub noreplace: bool,
    pub exchange: bool,
}

/// `setxattr` flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XattrSet {
    Any,
    CreateOnly,
    ReplaceOnly,
}

/// Who makes a create/mkdir/symlink: the owner of the new inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caller {
    pub uid: u32,
    pub gid: u32,
}

/// How a drive is opened.
#[derive(Debug, Clone)]
pub struct DriveOptions {
    /// Local cache directory (ciphertext objects, sealed journal and state).
    pub cache_dir: PathBuf,
    /// Upper bound of the cache in bytes (clean objects are evicted LRU).
    pub cache_size: u64,
    /// Refuse every change with `EROFS`.
    pub read_only: bool,
    /// How often the background task pulls other clients' changes.
    pub refresh_interval: Duration,
    /// How many objects the uploader sends at once.
    pub upload_concurrency: usize,
    /// On a random read of a stored block, also fetch the whole block in
    /// the background (into the cache), so later reads of that block need
    /// no request: right for a remote store, where a request costs
    /// milliseconds whatever its size (s3fs and JuiceFS do the same). The
    /// mount turns it on for S3; off (the default) for a local-directory
    /// store, whose ranged reads cost microseconds.
    pub whole_blocks_on_random_reads: bool,
    /// How long the store may go without answering before it counts as
    /// unreachable: a commit with no answer for twice this marks the store
    /// stuck in `status`, and a writer held back by a full cache then gets
    /// ENOSPC after a third of it.
    pub store_timeout: Duration,
    /// The grace period of the collectors of this drive: a content object
    /// of this client's own older than half of it is sealed again under a
    /// new id rather than newly referenced by a commit (a collector may be
    /// deleting it). Default [`DEFAULT_GRACE`]; never more than the grace
    /// any collector of the drive uses.
    pub gc_grace: Duration,
    /// The clock of that rule (tests inject one that jumps ahead).
    pub clock: crate::drive::clock::Clock,
}

impl DriveOptions {
    /// Defaults for a cache directory: 1 GiB cache, read-write, refresh
    /// every 30 s, 8 uploads at once, no whole-block fetch behind random
    /// reads, a store timeout of 30 s.
    pub fn new(cache_dir: impl Into<PathBuf>) -> Self {
        Self {
            cache_dir: cache_dir.into(),
            cache_size: 1 << 30,
            read_only: false,
            refresh_interval: Duration::from_secs(30),
            upload_concurrency: 8,
            whole_blocks_on_random_reads: false,
            store_timeout: Duration::from_secs(30),
            gc_grace: DEFAULT_GRACE,
            clock: Default::default(),
        }
    }
}

/// What `status` reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DriveStatus {
    /// Metadata operations not yet committed to the store.
    pub pending_ops: u64,
    /// Content bytes not yet uploaded.
    pub pending_bytes: u64,
    /// Content bytes uploaded since the drive was opened (only grows).
    pub uploaded_bytes: u64,
    /// When this client last committed a log entry.
    pub last_commit: Option<SystemTime>,
    /// Whether the store answers: the last request succeeded, and no
    /// commit has waited a minute for an answer.
    pub store_reachable: bool,
    /// Opened from the local cache while the store was out of reach (this
    /// time), until the store answers again and its copy is verified.
    pub offline_since: Option<SystemTime>,
    /// Writes are refused with ENOSPC: the cache's disk (or its size
    /// bound) is full of data the store cannot take now.
    pub cache_full: bool,
    /// Files that lost writes not yet sealed when the daemon last stopped
    /// without unmounting (paths in the drive); reported by one `status`.
    pub lost_unsealed: Vec<String>,
    /// Pending changes refused since the drive was opened because the
    /// content they name was collected before they could be committed (a
    /// copy of a file another client changed or repacked meanwhile; the
    /// files stay as they were): how many, and when and why the last one
    /// was (docs/ARCHITECTURE.md, "Collection").
    pub refused_changes: u64,
    pub last_refused: Option<(SystemTime, String)>,
}

/// A member of a shared folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShareMember {
    pub card_id: [u8; 32],
    pub role: Role,
}

/// A shared folder as this mount sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShareInfo {
    /// The shared folder's inode in this mount.
    pub ino: Ino,
    /// Path from the mount root ("projects/x"; the listed name in a
    /// member's view).
    pub path: OsString,
    pub volume: [u8; 16],
    /// The keyring generation in force.
    pub generation: u32,
    /// The drive owner's card id.
    pub owner: [u8; 32],
    /// Every member, the owner included.
    pub members: Vec<ShareMember>,
    pub my_role: Role,
}

/// Default history retention: states of the last 7 days stay readable
/// (their content objects are not collected).
pub const DEFAULT_KEEP: Duration = Duration::from_secs(7 * 24 * 3600);
/// Default grace: unreferenced objects younger than an hour (by the
/// store's clock) are left alone (uploads of other clients in flight).
pub const DEFAULT_GRACE: Duration = Duration::from_secs(3600);
/// Default bound on the dead bytes a collection leaves in packs, as a
/// share of their live bytes in percent ([`GcOptions::pack_waste_percent`]).
/// 5: with padding and metadata, 10 left a drive of small files (git's
/// loose objects) at the amplification goal of 1.15 with no margin
/// (docs/BENCHMARKS.md, "Storage reclamation").
pub const DEFAULT_PACK_WASTE_PERCENT: u64 = 5;
/// Default bound on the bytes one collection moves for packs at or above
/// half live ([`GcOptions::max_repack_moved`]).
pub const DEFAULT_MAX_REPACK_MOVED: u64 = 256 << 20;

/// How a garbage collection runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GcOptions {
    /// Minimum store age of an unreferenced object before it goes.
    pub grace: Duration,
    /// History retention: every state since `now - keep` stays whole.
    pub keep: Duration,
    /// Count what would go, delete nothing.
    pub dry_run: bool,
    /// Packs are repacked (beyond those under half live, which always
    /// are) until the dead bytes left in them are at most this share of
    /// their live bytes, in percent (docs/ARCHITECTURE.md, "Collection").
    /// Lower keeps less dead data in the store and moves more bytes.
    pub pack_waste_percent: u64,
    /// Most sealed bytes one collection moves for packs at or above half
    /// live (those under half live are always repacked): a drive of
    /// mostly live packs reaches the waste bound over several runs, never
    /// in one rewrite.
    pub max_repack_moved: u64,
}

impl Default for GcOptions {
    fn default() -> Self {
        GcOptions {
            grace: DEFAULT_GRACE,
            keep: DEFAULT_KEEP,
            dry_run: false,
            pack_waste_percent: DEFAULT_PACK_WASTE_PERCENT,
            max_repack_moved: DEFAULT_MAX_REPACK_MOVED,
        }
    }
}

/// What a garbage collection found and did.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct GcReport {
    /// Content objects (and their bytes) in the store when listed.
    pub objects: u64,
    pub bytes: u64,
    /// Of those, needed by some state in the retention window or pending.
    pub live_objects: u64,
    pub live_bytes: u64,
    /// Unreferenced but younger than the grace period (left alone).
    pub young_objects: u64,
    pub young_bytes: u64,
    /// Deleted (or, in a dry run, that would be).
    pub reclaimed_objects: u64,
    pub reclaimed_bytes: u64,
    /// Metadata objects (log entries, checkpoint roots and pages before
    /// each volume's new log base, keyrings of generations no kept object
    /// is sealed under) deleted, or that would be.
    #[serde(default)]
    pub metadata_reclaimed_objects: u64,
    #[serde(default)]
    pub metadata_reclaimed_bytes: u64,
    /// Packs whose live block versions were sealed again into new packs
    /// (or, in a dry run, would be): every pack under half live, then the
    /// emptiest until the dead bytes left in packs are within
    /// `pack_waste_percent` of their live bytes; their bytes go at a later
    /// collection, once no state in the retention window names them.
    #[serde(default)]
    pub repacked_packs: u64,
    #[serde(default)]
    pub repacked_bytes: u64,
    /// How long the collection took, in milliseconds.
    pub millis: u64,
}
