//! Drive metadata formats: the signed drive header, volume keyrings, the
//! signed and encrypted metadata log entries and snapshots, and the
//! operations and node records they carry. Layouts are in docs/FORMAT.md
//! ("Drive ..." sections).
//!
//! Invariants: pure, no I/O. Every signed object is verified before any of
//! its content is decrypted or used; decoders refuse unknown magics,
//! versions, flags, tags and trailing bytes.

use super::crypto::{
    Cipher, NONCE_LEN, SecretKey, WRAPPED_KEY_LEN, hkdf, random_array, unwrap_key, wrap_key,
};
use super::wire::{FormatError, Reader, Writer};
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use sha2::Digest;
use std::collections::BTreeMap;
use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::Zeroizing;

pub const HEADER_MAGIC: &[u8; 4] = b"CFSD";
pub const KEYRING_MAGIC: &[u8; 4] = b"CFSK";
pub const ENTRY_MAGIC: &[u8; 4] = b"CFSL";
pub const SNAPSHOT_MAGIC: &[u8; 4] = b"CFSS";
/// Keyring record version (2: name and key history; the version-1
/// layout was never released).
pub const KEYRING_VERSION: u16 = 2;
/// Log entry and snapshot version (2: block refs carry an epoch).
pub const SIGNED_VERSION: u16 = 2;
const SIG_LEN: usize = 64;

fn put_header(w: &mut Writer, magic: &[u8; 4], version: u16) {
    w.raw(magic).u16(version).u16(0);
}

fn split_sig(bytes: &[u8]) -> Result<(&[u8], Signature), FormatError> {
    if bytes.len() < SIG_LEN {
        return Err(FormatError::Truncated);
    }
    let (body, sig) = bytes.split_at(bytes.len() - SIG_LEN);
    let sig = Signature::from_slice(sig).map_err(|_| FormatError::Signature)?;
    Ok((body, sig))
}

/// SHA-256 of bytes (the hash chaining log entries).
pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    sha2::Sha256::digest(bytes).into()
}

/// A member's public keys as stored in headers and keyrings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberRecord {
    pub card_id: [u8; 32],
    pub x25519: [u8; 32],
    pub ed25519: [u8; 32],
    /// 1 reader, 2 writer, 3 owner.
    pub role: u8,
}

impl MemberRecord {
    fn write(&self, w: &mut Writer) {
        w.raw(&self.card_id)
            .raw(&self.x25519)
            .raw(&self.ed25519)
            .u8(self.role);
    }
    fn read(r: &mut Reader<'_>) -> Result<Self, FormatError> {
        let m = Self {
            card_id: r.array()?,
            x25519: r.array()?,
            ed25519: r.array()?,
            role: r.u8()?,
        };
        if !(1..=3).contains(&m.role) {
            return Err(FormatError::Invalid("role"));
        }
        Ok(m)
    }
    pub fn verifying_key(&self) -> Result<VerifyingKey, FormatError> {
        VerifyingKey::from_bytes(&self.ed25519).map_err(|_| FormatError::Invalid("ed25519 key"))
    }
}

/// The drive header (object `drive`), signed by the owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DriveHeader {
    pub drive_id: [u8; 16],
    pub root_volume: [u8; 16],
    pub owner: MemberRecord,
    /// The owner's card as published (opaque to the engine).
    pub owner_card: Vec<u8>,
}

impl DriveHeader {
    pub fn seal(&self, owner: &SigningKey) -> Vec<u8> {
        let mut w = Writer::new();
        put_header(&mut w, HEADER_MAGIC, 1);
        w.raw(&self.drive_id).raw(&self.root_volume);
        self.owner.write(&mut w);
        w.bytes(&self.owner_card);
        let sig = owner.sign(&w.0);
        w.raw(&sig.to_bytes());
        w.into_vec()
    }

    /// Parses and verifies the self-signature (the caller still decides
    /// whether it trusts the owner key it names).
    pub fn open(bytes: &[u8]) -> Result<Self, FormatError> {
        let (body, sig) = split_sig(bytes)?;
        let mut r = Reader::new(body);
        r.header(HEADER_MAGIC)?;
        let h = Self {
            drive_id: r.array()?,
            root_volume: r.array()?,
            owner: MemberRecord::read(&mut r)?,
            owner_card: r.bytes()?.to_vec(),
        };
        r.finish()?;
        h.owner
            .verifying_key()?
            .verify_strict(body, &sig)
            .map_err(|_| FormatError::Signature)?;
        Ok(h)
    }
}

/// The context a volume key is wrapped under.
pub fn volume_key_context(drive_id: &[u8; 16], volume: &[u8; 16], generation: u32) -> Vec<u8> {
    [
        b"cardfs/v1/volume-key".as_slice(),
        drive_id,
        volume,
        &generation.to_le_bytes(),
    ]
    .concat()
}

fn subkey(volume_key: &SecretKey, volume: &[u8; 16], label: &[u8]) -> Cipher {
    Cipher::new(&hkdf(volume, volume_key.expose(), &[b"cardfs/v1/", label]))
}

/// One generation of a volume's keyring: the volume key wrapped to each
/// member; the member list, display name and earlier generations' keys
/// encrypted under the volume key; signed by the volume owner.
///
/// A valid keyring has at least one member, exactly one owner (role 3,
/// `owner_card_id`), no card twice, and `history` holds the keys of
/// generations `0..generation` in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keyring {
    pub drive_id: [u8; 16],
    pub volume: [u8; 16],
    pub generation: u32,
    pub owner_card_id: [u8; 32],
    pub members: Vec<MemberRecord>,
    /// The volume's display name (secret: encrypted).
    pub name: Vec<u8>,
    /// `(generation, key)` of every earlier generation, ascending.
    pub history: Vec<(u32, SecretKey)>,
}

/// The parsed, signature-checked public part of a keyring.
struct KeyringBody<'a> {
    drive_id: [u8; 16],
    volume: [u8; 16],
    generation: u32,
    owner_card_id: [u8; 32],
    wrapped: Vec<[u8; WRAPPED_KEY_LEN]>,
    nonce: [u8; NONCE_LEN],
    aad: &'a [u8],
    ct: &'a [u8],
}

impl Keyring {
    /// Checks the invariants listed on [`Keyring`].
    fn validate(&self) -> Result<(), FormatError> {
        if self.members.is_empty() {
            return Err(FormatError::Invalid("empty keyring"));
        }
        let owners: Vec<_> = self.members.iter().filter(|m| m.role == 3).collect();
        if owners.len() != 1 || owners[0].card_id != self.owner_card_id {
            return Err(FormatError::Invalid("keyring owner"));
        }
        let mut cards: Vec<_> = self.members.iter().map(|m| m.card_id).collect();
        cards.sort_unstable();
        cards.dedup();
        if cards.len() != self.members.len() {
            return Err(FormatError::Invalid("keyring lists a card twice"));
        }
        let gens: Vec<u32> = self.history.iter().map(|(g, _)| *g).collect();
        if !gens.iter().copied().eq(0..self.generation) {
            return Err(FormatError::Invalid("keyring history"));
        }
        Ok(())
    }

    pub fn seal(&self, key: &SecretKey, owner: &SigningKey) -> Result<Vec<u8>, FormatError> {
        self.validate()?;
        self.seal_unchecked(key, owner)
    }

    /// Seals without checking the invariants (tests build invalid ones).
    fn seal_unchecked(&self, key: &SecretKey, owner: &SigningKey) -> Result<Vec<u8>, FormatError> {
        let ctx = volume_key_context(&self.drive_id, &self.volume, self.generation);
        let mut w = Writer::new();
        put_header(&mut w, KEYRING_MAGIC, KEYRING_VERSION);
        w.raw(&self.drive_id)
            .raw(&self.volume)
            .u32(self.generation)
            .raw(&self.owner_card_id);
        w.u32(self.members.len() as u32);
        for m in &self.members {
            let wrapped = wrap_key(&PublicKey::from(m.x25519), key, &ctx)
                .map_err(|_| FormatError::Invalid("member x25519 key"))?;
            w.raw(&wrapped);
        }
        let nonce = random_array::<NONCE_LEN>();
        w.raw(&nonce);
        let mut list = Writer::new();
        list.u32(self.members.len() as u32);
        for m in &self.members {
            m.write(&mut list);
        }
        list.bytes(&self.name).u32(self.history.len() as u32);
        for (g, k) in &self.history {
            list.u32(*g).raw(k.expose());
        }
        let mut ct = Zeroizing::new(list.into_vec());
        subkey(key, &self.volume, b"members").seal_in_place(&nonce, &w.0, &mut ct);
        w.bytes(&ct);
        let sig = owner.sign(&w.0);
        w.raw(&sig.to_bytes());
        Ok(w.into_vec())
    }

    /// Verifies the owner's signature and parses the public part.
    fn parse<'a>(bytes: &'a [u8], owner: &VerifyingKey) -> Result<KeyringBody<'a>, FormatError> {
        let (body, sig) = split_sig(bytes)?;
        owner
            .verify_strict(body, &sig)
            .map_err(|_| FormatError::Signature)?;
        let mut r = Reader::new(body);
        r.versioned_header(KEYRING_MAGIC, KEYRING_VERSION)?;
        let drive_id = r.array()?;
        let volume = r.array()?;
        let generation = r.u32()?;
        let owner_card_id = r.array()?;
        let n = r.count(WRAPPED_KEY_LEN)?;
        let wrapped = (0..n).map(|_| r.array()).collect::<Result<Vec<_>, _>>()?;
        let nonce = r.array()?;
        let aad = &body[..r.position()];
        let ct = r.bytes()?;
        r.finish()?;
        Ok(KeyringBody {
            drive_id,
            volume,
            generation,
            owner_card_id,
            wrapped,
            nonce,
            aad,
            ct,
        })
    }

    /// Verifies the owner's signature and returns the public identity of
    /// the keyring: (drive id, volume, generation).
    pub fn verify_public(
        bytes: &[u8],
        owner: &VerifyingKey,
    ) -> Result<([u8; 16], [u8; 16], u32), FormatError> {
        let b = Self::parse(bytes, owner)?;
        Ok((b.drive_id, b.volume, b.generation))
    }

    /// Decrypts and validates the secret part with the volume key.
    fn decrypt(b: &KeyringBody<'_>, key: &SecretKey) -> Result<Self, FormatError> {
        let plain = Zeroizing::new(
            subkey(key, &b.volume, b"members")
                .open(&b.nonce, b.aad, b.ct)
                .map_err(|_| FormatError::Decrypt)?,
        );
        let mut r = Reader::new(&plain);
        let count = r.count(97)?;
        let members = (0..count)
            .map(|_| MemberRecord::read(&mut r))
            .collect::<Result<Vec<_>, _>>()?;
        let name = r.bytes()?.to_vec();
        let history = (0..r.count(36)?)
            .map(|_| Ok((r.u32()?, SecretKey::from_bytes(r.array()?))))
            .collect::<Result<Vec<_>, FormatError>>()?;
        r.finish()?;
        if members.len() != b.wrapped.len() {
            return Err(FormatError::Invalid(
                "member count differs from wrapped keys",
            ));
        }
        let k = Self {
            drive_id: b.drive_id,
            volume: b.volume,
            generation: b.generation,
            owner_card_id: b.owner_card_id,
            members,
            name,
            history,
        };
        k.validate()?;
        Ok(k)
    }

    /// Verifies the owner's signature, unwraps the volume key with `me`,
    /// and decrypts the secret part. The wrapped key that opened must sit
    /// at the position of the member whose x25519 key is mine.
    pub fn open(
        bytes: &[u8],
        owner: &VerifyingKey,
        me: &StaticSecret,
    ) -> Result<(Self, SecretKey), FormatError> {
        let b = Self::parse(bytes, owner)?;
        let ctx = volume_key_context(&b.drive_id, &b.volume, b.generation);
        let (pos, key) = b
            .wrapped
            .iter()
            .enumerate()
            .find_map(|(i, w)| unwrap_key(me, w, &ctx).ok().map(|k| (i, k)))
            .ok_or(FormatError::Invalid("not a member"))?;
        let k = Self::decrypt(&b, &key)?;
        if k.members[pos].x25519 != *PublicKey::from(me).as_bytes() {
            return Err(FormatError::Invalid(
                "wrapped key at another member's place",
            ));
        }
        Ok((k, key))
    }

    /// Opens a generation I am not (or no longer) a member of with its key
    /// taken from a newer generation's history: verifies the owner's
    /// signature and decrypts the secret part.
    pub fn open_with_key(
        bytes: &[u8],
        owner: &VerifyingKey,
        key: &SecretKey,
    ) -> Result<Self, FormatError> {
        Self::decrypt(&Self::parse(bytes, owner)?, key)
    }
}

/// The public part of a signed log entry or snapshot, readable before
/// decryption so the signer can be looked up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedHead {
    pub volume: [u8; 16],
    /// Log entry: its sequence number. Snapshot: the last seq it covers.
    pub seq: u64,
    pub generation: u32,
    pub writer: [u8; 32],
    /// Log entry: hash of entry `seq - 1` (zeros for seq 0).
    /// Snapshot: hash of entry `seq`.
    pub chain: [u8; 32],
}

/// Seals `payload` as a log entry (`ENTRY_MAGIC`) or snapshot
/// (`SNAPSHOT_MAGIC`): public head, encrypted payload (AAD = everything
/// before the ciphertext), Ed25519 signature over everything before it.
pub fn seal_signed(
    magic: &[u8; 4],
    head: &SignedHead,
    volume_key: &SecretKey,
    signer: &SigningKey,
    payload: &[u8],
) -> Vec<u8> {
    let mut w = Writer::new();
    put_header(&mut w, magic, SIGNED_VERSION);
    w.raw(&head.volume)
        .u64(head.seq)
        .u32(head.generation)
        .raw(&head.writer)
        .raw(&head.chain);
    let nonce = random_array::<NONCE_LEN>();
    w.raw(&nonce);
    let mut ct = payload.to_vec();
    subkey(volume_key, &head.volume, magic).seal_in_place(&nonce, &w.0, &mut ct);
    w.bytes(&ct);
    let sig = signer.sign(&w.0);
    w.raw(&sig.to_bytes());
    w.into_vec()
}

/// Parses the public head of a signed object without verifying it.
pub fn peek_signed(magic: &[u8; 4], bytes: &[u8]) -> Result<SignedHead, FormatError> {
    let (body, _) = split_sig(bytes)?;
    let mut r = Reader::new(body);
    r.versioned_header(magic, SIGNED_VERSION)?;
    Ok(SignedHead {
        volume: r.array()?,
        seq: r.u64()?,
        generation: r.u32()?,
        writer: r.array()?,
        chain: r.array()?,
    })
}

/// Verifies the signature with `writer` and decrypts the payload.
pub fn open_signed(
    magic: &[u8; 4],
    bytes: &[u8],
    writer: &VerifyingKey,
    volume_key: &SecretKey,
) -> Result<(SignedHead, Vec<u8>), FormatError> {
    let head = peek_signed(magic, bytes)?;
    let (body, sig) = split_sig(bytes)?;
    writer
        .verify_strict(body, &sig)
        .map_err(|_| FormatError::Signature)?;
    let mut r = Reader::new(body);
    r.take(8 + 16 + 8 + 4 + 32 + 32)?;
    let nonce: [u8; NONCE_LEN] = r.array()?;
    let aad_end = r.position();
    let ct = r.bytes()?;
    r.finish()?;
    let plain = subkey(volume_key, &head.volume, magic)
        .open(&nonce, &body[..aad_end], ct)
        .map_err(|_| FormatError::Decrypt)?;
    Ok((head, plain))
}

/// Seconds and nanoseconds since the Unix epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Time {
    pub secs: i64,
    pub nanos: u32,
}

impl Time {
    fn write(&self, w: &mut Writer) {
        w.i64(self.secs).u32(self.nanos);
    }
    fn read(r: &mut Reader<'_>) -> Result<Self, FormatError> {
        let t = Self {
            secs: r.i64()?,
            nanos: r.u32()?,
        };
        if t.nanos >= 1_000_000_000 {
            return Err(FormatError::Invalid("nanoseconds"));
        }
        Ok(t)
    }
}

/// One stored block version of a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockRef {
    pub id: [u8; 16],
    /// Plaintext length (1..=BLOCK_SIZE); bytes past it up to the file
    /// size read as zeros.
    pub len: u32,
    /// The volume generation whose key the block key is derived with;
    /// 0 = the plain file key (see docs/FORMAT.md, "content block").
    pub epoch: u32,
}

impl BlockRef {
    fn write(&self, w: &mut Writer, index: u64) {
        w.u64(index).raw(&self.id).u32(self.len).u32(self.epoch);
    }
    /// Reads `(index, block)`.
    fn read(r: &mut Reader<'_>) -> Result<(u64, Self), FormatError> {
        Ok((
            r.u64()?,
            Self {
                id: r.array()?,
                len: r.u32()?,
                epoch: r.u32()?,
            },
        ))
    }
}
/// Encoded size of one block ref with its index.
const BLOCK_REF_LEN: usize = 8 + 16 + 4 + 4;

/// Node kinds.
pub const KIND_FILE: u8 = 1;
pub const KIND_DIR: u8 = 2;
pub const KIND_SYMLINK: u8 = 3;
/// A link to another volume (a shared folder): `target` holds the 16-byte
/// volume id; no blocks, no entries.
pub const KIND_VOLUME: u8 = 4;

/// A directory entry: child node and its stable readdir cookie.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DirLink {
    pub node: u64,
    pub cookie: u64,
}

/// Everything about one inode, as carried in snapshots and `Create` ops.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Node {
    pub id: u64,
    pub kind: u8,
    pub perm: u16,
    pub uid: u32,
    pub gid: u32,
    pub nlink: u32,
    pub atime: Time,
    pub mtime: Time,
    pub ctime: Time,
    pub crtime: Time,
    pub size: u64,
    /// Symlink target; volume link: the volume id.
    pub target: Vec<u8>,
    /// Content identity bound into every chunk, and the per-file key.
    pub file_id: [u8; 16],
    pub file_key: [u8; 32],
    /// Changes on every content change (conflict detection).
    pub version: u64,
    pub blocks: BTreeMap<u64, BlockRef>,
    pub xattrs: BTreeMap<Vec<u8>, Vec<u8>>,
    /// Directories: parent node (root: itself), entries, next cookie.
    pub parent: u64,
    pub entries: BTreeMap<Vec<u8>, DirLink>,
    pub next_cookie: u64,
}

impl Node {
    pub fn write(&self, w: &mut Writer) {
        w.u64(self.id)
            .u8(self.kind)
            .u16(self.perm)
            .u32(self.uid)
            .u32(self.gid)
            .u32(self.nlink);
        for t in [self.atime, self.mtime, self.ctime, self.crtime] {
            t.write(w);
        }
        w.u64(self.size)
            .bytes(&self.target)
            .raw(&self.file_id)
            .raw(&self.file_key)
            .u64(self.version);
        w.u32(self.blocks.len() as u32);
        for (i, b) in &self.blocks {
            b.write(w, *i);
        }
        w.u32(self.xattrs.len() as u32);
        for (k, v) in &self.xattrs {
            w.bytes(k).bytes(v);
        }
        w.u64(self.parent)
            .u64(self.next_cookie)
            .u32(self.entries.len() as u32);
        for (name, l) in &self.entries {
            w.bytes(name).u64(l.node).u64(l.cookie);
        }
    }

    pub fn read(r: &mut Reader<'_>) -> Result<Self, FormatError> {
        let mut n = Node {
            id: r.u64()?,
            kind: r.u8()?,
            perm: r.u16()?,
            uid: r.u32()?,
            gid: r.u32()?,
            nlink: r.u32()?,
            atime: Time::read(r)?,
            mtime: Time::read(r)?,
            ctime: Time::read(r)?,
            crtime: Time::read(r)?,
            size: r.u64()?,
            target: r.bytes()?.to_vec(),
            file_id: r.array()?,
            file_key: r.array()?,
            version: r.u64()?,
            ..Default::default()
        };
        if !(KIND_FILE..=KIND_VOLUME).contains(&n.kind) {
            return Err(FormatError::Invalid("node kind"));
        }
        for _ in 0..r.count(BLOCK_REF_LEN)? {
            let (i, b) = BlockRef::read(r)?;
            n.blocks.insert(i, b);
        }
        for _ in 0..r.count(8)? {
            let k = r.bytes()?.to_vec();
            n.xattrs.insert(k, r.bytes()?.to_vec());
        }
        n.parent = r.u64()?;
        n.next_cookie = r.u64()?;
        for _ in 0..r.count(20)? {
            let name = r.bytes()?.to_vec();
            n.entries.insert(
                name,
                DirLink {
                    node: r.u64()?,
                    cookie: r.u64()?,
                },
            );
        }
        if n.kind == KIND_VOLUME
            && (n.target.len() != 16 || !n.blocks.is_empty() || !n.entries.is_empty())
        {
            return Err(FormatError::Invalid("volume link"));
        }
        Ok(n)
    }

    /// The volume a `KIND_VOLUME` node links to.
    pub fn linked_volume(&self) -> Option<[u8; 16]> {
        if self.kind != KIND_VOLUME {
            return None;
        }
        self.target.as_slice().try_into().ok()
    }
}

/// Attribute changes carried by [`Op::SetAttr`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AttrChange {
    pub perm: Option<u16>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub atime: Option<Time>,
    pub mtime: Option<Time>,
    pub ctime: Option<Time>,
}

/// One metadata change. Applying a list of ops in log order to a snapshot
/// gives every client the same tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Adds `node` (fresh id) and links it as `parent/name`.
    Create {
        parent: u64,
        name: Vec<u8>,
        node: Box<Node>,
    },
    /// Adds another name for an existing non-directory node.
    Link {
        parent: u64,
        name: Vec<u8>,
        node: u64,
        ctime: Time,
    },
    /// Removes `parent/name`; a node with no names left is deleted.
    Unlink {
        parent: u64,
        name: Vec<u8>,
        node: u64,
        time: Time,
    },
    /// Moves `parent/name` to `newparent/newname` (replacing, or swapping
    /// with `exchange`).
    Rename {
        parent: u64,
        name: Vec<u8>,
        newparent: u64,
        newname: Vec<u8>,
        exchange: bool,
        time: Time,
    },
    SetAttr {
        node: u64,
        change: AttrChange,
    },
    /// Content change from version `base` to `version`: blocks at or past
    /// `drop_from` are removed, then `blocks` are set, then size is set.
    SetContent {
        node: u64,
        base: u64,
        version: u64,
        size: u64,
        drop_from: u64,
        blocks: Vec<(u64, BlockRef)>,
        mtime: Time,
    },
    SetXattr {
        node: u64,
        name: Vec<u8>,
        value: Option<Vec<u8>>,
        ctime: Time,
    },
    /// The volume switched to keyring `generation` (no tree change):
    /// entries from here on are sealed under it.
    Rotate {
        generation: u32,
    },
}

fn opt_u32(w: &mut Writer, v: Option<u32>) {
    match v {
        Some(x) => w.u8(1).u32(x),
        None => w.u8(0),
    };
}
fn read_opt_u32(r: &mut Reader<'_>) -> Result<Option<u32>, FormatError> {
    match r.u8()? {
        0 => Ok(None),
        1 => Ok(Some(r.u32()?)),
        _ => Err(FormatError::Invalid("option tag")),
    }
}
fn opt_time(w: &mut Writer, v: Option<Time>) {
    match v {
        Some(t) => {
            w.u8(1);
            t.write(w);
        }
        None => {
            w.u8(0);
        }
    }
}
fn read_opt_time(r: &mut Reader<'_>) -> Result<Option<Time>, FormatError> {
    match r.u8()? {
        0 => Ok(None),
        1 => Ok(Some(Time::read(r)?)),
        _ => Err(FormatError::Invalid("option tag")),
    }
}

impl Op {
    pub fn write(&self, w: &mut Writer) {
        match self {
            Op::Create { parent, name, node } => {
                w.u8(1).u64(*parent).bytes(name);
                node.write(w);
            }
            Op::Link {
                parent,
                name,
                node,
                ctime,
            } => {
                w.u8(2).u64(*parent).bytes(name).u64(*node);
                ctime.write(w);
            }
            Op::Unlink {
                parent,
                name,
                node,
                time,
            } => {
                w.u8(3).u64(*parent).bytes(name).u64(*node);
                time.write(w);
            }
            Op::Rename {
                parent,
                name,
                newparent,
                newname,
                exchange,
                time,
            } => {
                w.u8(4)
                    .u64(*parent)
                    .bytes(name)
                    .u64(*newparent)
                    .bytes(newname)
                    .u8(*exchange as u8);
                time.write(w);
            }
            Op::SetAttr { node, change } => {
                w.u8(5).u64(*node);
                opt_u32(w, change.perm.map(u32::from));
                opt_u32(w, change.uid);
                opt_u32(w, change.gid);
                opt_time(w, change.atime);
                opt_time(w, change.mtime);
                opt_time(w, change.ctime);
            }
            Op::SetContent {
                node,
                base,
                version,
                size,
                drop_from,
                blocks,
                mtime,
            } => {
                w.u8(6)
                    .u64(*node)
                    .u64(*base)
                    .u64(*version)
                    .u64(*size)
                    .u64(*drop_from);
                w.u32(blocks.len() as u32);
                for (i, b) in blocks {
                    b.write(w, *i);
                }
                mtime.write(w);
            }
            Op::SetXattr {
                node,
                name,
                value,
                ctime,
            } => {
                w.u8(7).u64(*node).bytes(name);
                match value {
                    Some(v) => w.u8(1).bytes(v),
                    None => w.u8(0),
                };
                ctime.write(w);
            }
            Op::Rotate { generation } => {
                w.u8(8).u32(*generation);
            }
        }
    }

    pub fn read(r: &mut Reader<'_>) -> Result<Self, FormatError> {
        Ok(match r.u8()? {
            1 => Op::Create {
                parent: r.u64()?,
                name: r.bytes()?.to_vec(),
                node: Box::new(Node::read(r)?),
            },
            2 => Op::Link {
                parent: r.u64()?,
                name: r.bytes()?.to_vec(),
                node: r.u64()?,
                ctime: Time::read(r)?,
            },
            3 => Op::Unlink {
                parent: r.u64()?,
                name: r.bytes()?.to_vec(),
                node: r.u64()?,
                time: Time::read(r)?,
            },
            4 => Op::Rename {
                parent: r.u64()?,
                name: r.bytes()?.to_vec(),
                newparent: r.u64()?,
                newname: r.bytes()?.to_vec(),
                exchange: match r.u8()? {
                    0 => false,
                    1 => true,
                    _ => return Err(FormatError::Invalid("bool")),
                },
                time: Time::read(r)?,
            },
            5 => Op::SetAttr {
                node: r.u64()?,
                change: AttrChange {
                    perm: read_opt_u32(r)?
                        .map(|p| u16::try_from(p).map_err(|_| FormatError::Invalid("perm")))
                        .transpose()?,
                    uid: read_opt_u32(r)?,
                    gid: read_opt_u32(r)?,
                    atime: read_opt_time(r)?,
                    mtime: read_opt_time(r)?,
                    ctime: read_opt_time(r)?,
                },
            },
            6 => {
                let node = r.u64()?;
                let base = r.u64()?;
                let version = r.u64()?;
                let size = r.u64()?;
                let drop_from = r.u64()?;
                let n = r.count(BLOCK_REF_LEN)?;
                let blocks = (0..n)
                    .map(|_| BlockRef::read(r))
                    .collect::<Result<Vec<_>, _>>()?;
                Op::SetContent {
                    node,
                    base,
                    version,
                    size,
                    drop_from,
                    blocks,
                    mtime: Time::read(r)?,
                }
            }
            7 => Op::SetXattr {
                node: r.u64()?,
                name: r.bytes()?.to_vec(),
                value: match r.u8()? {
                    0 => None,
                    1 => Some(r.bytes()?.to_vec()),
                    _ => return Err(FormatError::Invalid("option tag")),
                },
                ctime: Time::read(r)?,
            },
            8 => Op::Rotate {
                generation: r.u32()?,
            },
            _ => return Err(FormatError::Invalid("op tag")),
        })
    }
}

/// The decrypted payload of a log entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    /// Random id of the writing client instance (its cache directory).
    pub client: [u8; 16],
    /// The client's local counter of the last op in this batch, so a
    /// client replaying its journal after a crash skips ops already in.
    pub client_seq: u64,
    pub time: Time,
    pub ops: Vec<Op>,
}

impl Batch {
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.raw(&self.client).u64(self.client_seq);
        self.time.write(&mut w);
        w.u32(self.ops.len() as u32);
        for op in &self.ops {
            op.write(&mut w);
        }
        w.into_vec()
    }
    pub fn decode(bytes: &[u8]) -> Result<Self, FormatError> {
        let mut r = Reader::new(bytes);
        let client = r.array()?;
        let client_seq = r.u64()?;
        let time = Time::read(&mut r)?;
        // The smallest op (Rotate) is 5 bytes.
        let n = r.count(5)?;
        let ops = (0..n)
            .map(|_| Op::read(&mut r))
            .collect::<Result<Vec<_>, _>>()?;
        r.finish()?;
        Ok(Self {
            client,
            client_seq,
            time,
            ops,
        })
    }
}

/// The decrypted payload of a snapshot: every node, plus per-client
/// progress (see [`Batch::client_seq`]).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SnapshotBody {
    pub clients: BTreeMap<[u8; 16], u64>,
    pub nodes: Vec<Node>,
}

impl SnapshotBody {
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.u32(self.clients.len() as u32);
        for (c, s) in &self.clients {
            w.raw(c).u64(*s);
        }
        w.u32(self.nodes.len() as u32);
        for n in &self.nodes {
            n.write(&mut w);
        }
        w.into_vec()
    }
    pub fn decode(bytes: &[u8]) -> Result<Self, FormatError> {
        let mut r = Reader::new(bytes);
        let mut out = SnapshotBody::default();
        for _ in 0..r.count(24)? {
            let c = r.array()?;
            out.clients.insert(c, r.u64()?);
        }
        let n = r.count(100)?;
        out.nodes = (0..n)
            .map(|_| Node::read(&mut r))
            .collect::<Result<Vec<_>, _>>()?;
        r.finish()?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(sk: &SigningKey, x: &StaticSecret, role: u8) -> MemberRecord {
        MemberRecord {
            card_id: [role; 32],
            x25519: *PublicKey::from(x).as_bytes(),
            ed25519: *sk.verifying_key().as_bytes(),
            role,
        }
    }

    fn sample_ops() -> Vec<Op> {
        let mut node = Node {
            id: 7,
            kind: KIND_FILE,
            perm: 0o644,
            nlink: 1,
            size: 5,
            version: 3,
            ..Default::default()
        };
        node.blocks.insert(
            0,
            BlockRef {
                id: [1; 16],
                len: 5,
                epoch: 0,
            },
        );
        node.xattrs.insert(b"user.a".to_vec(), b"b".to_vec());
        node.entries
            .insert(b"x".to_vec(), DirLink { node: 9, cookie: 1 });
        let t = Time {
            secs: 1_700_000_000,
            nanos: 5,
        };
        vec![
            Op::Create {
                parent: 1,
                name: b"f".to_vec(),
                node: Box::new(node),
            },
            Op::Link {
                parent: 1,
                name: b"g".to_vec(),
                node: 7,
                ctime: t,
            },
            Op::Unlink {
                parent: 1,
                name: b"g".to_vec(),
                node: 7,
                time: t,
            },
            Op::Rename {
                parent: 1,
                name: b"f".to_vec(),
                newparent: 2,
                newname: b"h".to_vec(),
                exchange: true,
                time: t,
            },
            Op::SetAttr {
                node: 7,
                change: AttrChange {
                    perm: Some(0o600),
                    uid: None,
                    gid: Some(4),
                    atime: Some(t),
                    mtime: None,
                    ctime: Some(t),
                },
            },
            Op::SetContent {
                node: 7,
                base: 3,
                version: 4,
                size: 10,
                drop_from: 1,
                blocks: vec![(
                    0,
                    BlockRef {
                        id: [2; 16],
                        len: 10,
                        epoch: 3,
                    },
                )],
                mtime: t,
            },
            Op::SetXattr {
                node: 7,
                name: b"user.a".to_vec(),
                value: None,
                ctime: t,
            },
            Op::SetXattr {
                node: 7,
                name: b"user.b".to_vec(),
                value: Some(vec![1, 2]),
                ctime: t,
            },
            Op::Rotate { generation: 5 },
        ]
    }

    #[test]
    fn batch_round_trip_and_known_answer() {
        let b = Batch {
            client: [3; 16],
            client_seq: 42,
            time: Time { secs: 1, nanos: 2 },
            ops: sample_ops(),
        };
        let enc = b.encode();
        assert_eq!(Batch::decode(&enc).unwrap(), b);
        let hex: String = sha256(&enc).iter().map(|x| format!("{x:02x}")).collect();
        assert_eq!(
            hex,
            "e566c921f785e9b716754f69eebad3dcf2e619648493749f6b9fec187b65e7a5"
        );
        for cut in 0..enc.len() {
            assert!(Batch::decode(&enc[..cut]).is_err());
        }
        let mut long = enc.clone();
        long.push(0);
        assert_eq!(Batch::decode(&long), Err(FormatError::Trailing));
    }

    #[test]
    fn batch_of_one_rotation_round_trips() {
        let b = Batch {
            client: [0; 16],
            client_seq: 1,
            time: Time::default(),
            ops: vec![Op::Rotate { generation: 7 }],
        };
        assert_eq!(Batch::decode(&b.encode()).unwrap(), b);
    }

    #[test]
    fn snapshot_body_round_trip() {
        let mut s = SnapshotBody::default();
        s.clients.insert([1; 16], 9);
        if let Op::Create { node, .. } = &sample_ops()[0] {
            s.nodes.push((**node).clone());
        }
        assert_eq!(SnapshotBody::decode(&s.encode()).unwrap(), s);
    }

    #[test]
    fn header_signed_and_refuses_tamper() {
        let sk = SigningKey::from_bytes(&[1; 32]);
        let x = StaticSecret::from([2; 32]);
        let h = DriveHeader {
            drive_id: [3; 16],
            root_volume: [4; 16],
            owner: member(&sk, &x, 3),
            owner_card: b"card".to_vec(),
        };
        let bytes = h.seal(&sk);
        assert_eq!(DriveHeader::open(&bytes).unwrap(), h);
        for i in [0, 5, 10, bytes.len() - 1] {
            let mut bad = bytes.clone();
            bad[i] ^= 1;
            assert!(DriveHeader::open(&bad).is_err(), "flip at {i} accepted");
        }
        let mut v2 = bytes.clone();
        v2[4] = 2;
        assert!(DriveHeader::open(&v2).is_err());
    }

    fn sample_keyring(generation: u32) -> (Keyring, SigningKey, StaticSecret, StaticSecret) {
        let owner_sk = SigningKey::from_bytes(&[1; 32]);
        let owner_x = StaticSecret::from([2; 32]);
        let member_x = StaticSecret::from([6; 32]);
        let k = Keyring {
            drive_id: [3; 16],
            volume: [4; 16],
            generation,
            owner_card_id: [3; 32],
            members: vec![
                member(&owner_sk, &owner_x, 3),
                member(&SigningKey::from_bytes(&[7; 32]), &member_x, 1),
            ],
            name: b"projects".to_vec(),
            history: (0..generation)
                .map(|g| (g, SecretKey::from_bytes([g as u8 + 10; 32])))
                .collect(),
        };
        (k, owner_sk, owner_x, member_x)
    }

    #[test]
    fn keyring_wraps_to_members_only() {
        let (k, owner_sk, owner_x, member_x) = sample_keyring(2);
        let other_x = StaticSecret::from([5; 32]);
        let key = SecretKey::random();
        let bytes = k.seal(&key, &owner_sk).unwrap();
        for me in [&owner_x, &member_x] {
            let (got, got_key) = Keyring::open(&bytes, &owner_sk.verifying_key(), me).unwrap();
            assert_eq!(got, k);
            assert_eq!(got_key, key);
        }
        assert_eq!(
            Keyring::open(&bytes, &owner_sk.verifying_key(), &other_x),
            Err(FormatError::Invalid("not a member"))
        );
        assert_eq!(
            Keyring::open_with_key(&bytes, &owner_sk.verifying_key(), &key).unwrap(),
            k
        );
        assert_eq!(
            Keyring::open_with_key(&bytes, &owner_sk.verifying_key(), &SecretKey::random()),
            Err(FormatError::Decrypt)
        );
        let stranger = SigningKey::from_bytes(&[9; 32]);
        assert_eq!(
            Keyring::open(&bytes, &stranger.verifying_key(), &owner_x),
            Err(FormatError::Signature)
        );
        for i in [0, 4, 30, 100, bytes.len() - 70, bytes.len() - 1] {
            let mut bad = bytes.clone();
            bad[i] ^= 1;
            assert!(
                Keyring::open(&bad, &owner_sk.verifying_key(), &owner_x).is_err(),
                "flip at {i}"
            );
        }
        for cut in 0..bytes.len() {
            assert!(Keyring::open(&bytes[..cut], &owner_sk.verifying_key(), &owner_x).is_err());
        }
    }

    #[test]
    fn keyring_refuses_invalid_contents_even_when_signed() {
        let (k, owner_sk, owner_x, _) = sample_keyring(1);
        let key = SecretKey::random();
        let cases: Vec<(Keyring, &str)> = vec![
            (
                Keyring {
                    members: vec![],
                    ..k.clone()
                },
                "empty keyring",
            ),
            (
                Keyring {
                    history: vec![],
                    ..k.clone()
                },
                "keyring history",
            ),
            (
                Keyring {
                    owner_card_id: [1; 32],
                    ..k.clone()
                },
                "keyring owner",
            ),
            (
                Keyring {
                    members: vec![k.members[0].clone(), k.members[0].clone()],
                    ..k.clone()
                },
                "keyring owner",
            ),
        ];
        for (bad, why) in cases {
            assert_eq!(bad.seal(&key, &owner_sk), Err(FormatError::Invalid(why)));
            let bytes = bad.seal_unchecked(&key, &owner_sk).unwrap();
            let got = Keyring::open_with_key(&bytes, &owner_sk.verifying_key(), &key);
            assert_eq!(got, Err(FormatError::Invalid(why)));
        }
        // Two keys wrapped but a one-member list encrypted (a shortened
        // list, as if the owner's tool were subverted): refused.
        let bytes = k.seal(&key, &owner_sk).unwrap();
        let mut two_wrapped = k.clone();
        two_wrapped.members = vec![k.members[0].clone(), k.members[0].clone()];
        two_wrapped.members[1].card_id = [8; 32];
        two_wrapped.members[1].role = 1;
        let b = two_wrapped.seal_unchecked(&key, &owner_sk).unwrap();
        // Re-encrypt a one-member list under the two-key header: decrypt
        // finds the count mismatch.
        let parsed = Keyring::parse(&b, &owner_sk.verifying_key()).unwrap();
        let mut list = Writer::new();
        list.u32(1);
        k.members[0].write(&mut list);
        list.bytes(&k.name)
            .u32(1)
            .u32(0)
            .raw(k.history[0].1.expose());
        let ct = subkey(&key, &k.volume, b"members").seal(&parsed.nonce, parsed.aad, &list.0);
        let forged = KeyringBody { ct: &ct, ..parsed };
        assert_eq!(
            Keyring::decrypt(&forged, &key),
            Err(FormatError::Invalid(
                "member count differs from wrapped keys"
            ))
        );
        // A version-1 keyring is refused.
        let mut v1 = bytes.clone();
        v1[4] = 1;
        let (body, _) = v1.split_at(v1.len() - SIG_LEN);
        let sig = owner_sk.sign(body);
        v1.truncate(body.len());
        v1.extend_from_slice(&sig.to_bytes());
        assert_eq!(
            Keyring::open(&v1, &owner_sk.verifying_key(), &owner_x),
            Err(FormatError::Version(1))
        );
    }

    #[test]
    fn volume_link_node_round_trip_and_checks() {
        let n = Node {
            id: 9,
            kind: KIND_VOLUME,
            perm: 0o755,
            nlink: 2,
            target: vec![7; 16],
            ..Default::default()
        };
        let mut w = Writer::new();
        n.write(&mut w);
        let enc = w.into_vec();
        let back = Node::read(&mut Reader::new(&enc)).unwrap();
        assert_eq!(back, n);
        assert_eq!(back.linked_volume(), Some([7; 16]));
        let hex: String = sha256(&enc).iter().map(|x| format!("{x:02x}")).collect();
        assert_eq!(
            hex,
            "46f1c63dfbf1c7b9b64a4e7d0f783a470396f4e78d67a42e98b8c27653587834"
        );
        for bad in [
            Node {
                target: vec![7; 15],
                ..n.clone()
            },
            Node {
                entries: [(b"x".to_vec(), DirLink { node: 1, cookie: 1 })].into(),
                ..n.clone()
            },
        ] {
            let mut w = Writer::new();
            bad.write(&mut w);
            assert_eq!(
                Node::read(&mut Reader::new(&w.0)),
                Err(FormatError::Invalid("volume link"))
            );
        }
        let mut w = Writer::new();
        Node { kind: 5, ..n }.write(&mut w);
        assert_eq!(
            Node::read(&mut Reader::new(&w.0)),
            Err(FormatError::Invalid("node kind"))
        );
    }

    mod prop {
        use super::*;
        use proptest::prelude::*;

        fn block_refs() -> impl Strategy<Value = Vec<(u64, BlockRef)>> {
            proptest::collection::vec(
                (
                    any::<u64>(),
                    any::<[u8; 16]>(),
                    1u32..=1 << 20,
                    any::<u32>(),
                ),
                0..6,
            )
            .prop_map(|v| {
                v.into_iter()
                    .map(|(i, id, len, epoch)| (i, BlockRef { id, len, epoch }))
                    .collect()
            })
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(32))]

            #[test]
            fn keyring_round_trips(
                seeds in proptest::collection::vec(any::<[u8; 32]>(), 1..4),
                roles in proptest::collection::vec(1u8..=2, 3),
                name in proptest::collection::vec(any::<u8>(), 0..40),
                generation in 0u32..5,
            ) {
                let owner_sk = SigningKey::from_bytes(&seeds[0]);
                let xs: Vec<StaticSecret> = seeds.iter().map(|s| StaticSecret::from(*s)).collect();
                let mut members = vec![member(&owner_sk, &xs[0], 3)];
                for (i, x) in xs.iter().enumerate().skip(1) {
                    let mut m = member(&SigningKey::from_bytes(&seeds[i]), x, roles[i]);
                    m.card_id = [i as u8 + 100; 32];
                    members.push(m);
                }
                prop_assume!(members.iter().skip(1).all(|m| m.x25519 != members[0].x25519));
                let k = Keyring {
                    drive_id: [1; 16],
                    volume: [2; 16],
                    generation,
                    owner_card_id: members[0].card_id,
                    members,
                    name,
                    history: (0..generation).map(|g| (g, SecretKey::random())).collect(),
                };
                let key = SecretKey::random();
                let bytes = k.seal(&key, &owner_sk).unwrap();
                for x in &xs {
                    let (got, got_key) = Keyring::open(&bytes, &owner_sk.verifying_key(), x).unwrap();
                    prop_assert_eq!(&got, &k);
                    prop_assert_eq!(&got_key, &key);
                }
                prop_assert_eq!(
                    Keyring::open_with_key(&bytes, &owner_sk.verifying_key(), &key).unwrap(),
                    k
                );
            }

            #[test]
            fn nodes_and_content_ops_round_trip(
                blocks in block_refs(),
                generation in any::<u32>(),
                volume in any::<[u8; 16]>(),
            ) {
                let mut file = Node { id: 9, kind: KIND_FILE, ..Default::default() };
                file.blocks = blocks.iter().copied().collect();
                let link = Node { id: 10, kind: KIND_VOLUME, target: volume.to_vec(), ..Default::default() };
                let batch = Batch {
                    client: [1; 16],
                    client_seq: 2,
                    time: Time::default(),
                    ops: vec![
                        Op::Create { parent: 1, name: b"f".to_vec(), node: Box::new(file) },
                        Op::Create { parent: 1, name: b"v".to_vec(), node: Box::new(link) },
                        Op::SetContent {
                            node: 9, base: 1, version: 2, size: 3, drop_from: 0,
                            blocks, mtime: Time::default(),
                        },
                        Op::Rotate { generation },
                    ],
                };
                prop_assert_eq!(Batch::decode(&batch.encode()).unwrap(), batch);
            }
        }
    }

    #[test]
    fn signed_entry_round_trip_and_tamper() {
        let sk = SigningKey::from_bytes(&[1; 32]);
        let key = SecretKey::random();
        let head = SignedHead {
            volume: [4; 16],
            seq: 3,
            generation: 0,
            writer: [1; 32],
            chain: [8; 32],
        };
        let bytes = seal_signed(ENTRY_MAGIC, &head, &key, &sk, b"payload");
        let (h, p) = open_signed(ENTRY_MAGIC, &bytes, &sk.verifying_key(), &key).unwrap();
        assert_eq!((h, p.as_slice()), (head.clone(), b"payload".as_slice()));
        assert!(open_signed(SNAPSHOT_MAGIC, &bytes, &sk.verifying_key(), &key).is_err());
        assert!(
            open_signed(
                ENTRY_MAGIC,
                &bytes,
                &sk.verifying_key(),
                &SecretKey::random()
            )
            .is_err()
        );
        for i in [0, 9, 20, 60, bytes.len() - 70, bytes.len() - 1] {
            let mut bad = bytes.clone();
            bad[i] ^= 1;
            assert!(
                open_signed(ENTRY_MAGIC, &bad, &sk.verifying_key(), &key).is_err(),
                "flip at {i}"
            );
        }
        // A payload sealed as a snapshot does not open as a log entry.
        let snap = seal_signed(SNAPSHOT_MAGIC, &head, &key, &sk, b"payload");
        assert!(open_signed(ENTRY_MAGIC, &snap, &sk.verifying_key(), &key).is_err());
    }
}
