//! Entry points for the fuzz targets in `fuzz/` (cargo-fuzz), kept in the
//! library so the main build compiles them and `tests/identity/fuzz_smoke.rs`
//! runs them on mutated vectors and seeds without a nightly toolchain.
//!
//! Targets: the identity formats (card, key file, envelope) and every
//! parser of the drive formats ([`DRIVE_TARGETS`]: drive header, keyring
//! and its member list, signed box, log batch, checkpoint root and page, log base,
//! node and op records, content block, local journal and state), seeded by
//! [`drive_seeds`] (`cargo run --example fuzz_seeds`, run by `scripts/fuzz`).
//!
//! Each function must never panic on any input; where a parser accepts its
//! input, the functions also check the properties that must then hold
//! (canonical re-encoding, failure without output).
#![doc(hidden)]

use crate::drive::{
    JournalRecord, JournalStop, LocalState, encode_journal_record, open_state, parse_journal,
    parse_journal_record, seal_journal_record, seal_state,
};
use crate::format::card::Card;
use crate::format::content::{
    self, BLOCK_SIZE, Place, block_cipher, chunk_count, chunk_span, open_chunks, seal_block,
    sealed_len,
};
use crate::format::crypto::{Cipher, SecretKey};
use crate::format::key::UserKey;
use crate::format::keyfile::KeyFile;
use crate::format::meta::keyring::{read_secret_part, write_secret_part};
use crate::format::meta::{
    AttrChange, Batch, BlockRef, CheckpointRoot, DirLink, DriveHeader, ENTRY_MAGIC, KIND_DIR,
    KIND_FILE, KIND_SYMLINK, KIND_VOLUME, Keyring, LogBase, MemberRecord, Node, Op, PagePlace,
    SNAPSHOT_MAGIC, SignedHead, Time, decode_page_body, encode_page_body, open_page, open_signed,
    peek_signed, seal_page, seal_signed,
};
use crate::format::wire::{Reader, Writer};
use crate::identity::armor::dearmor;
use crate::identity::envelope::decrypt;
use ed25519_dalek::{Signer, SigningKey};
use std::io::Read;
use x25519_dalek::{PublicKey, StaticSecret};

/// Card parser: binary and text forms. An accepted card re-encodes to the
/// same bytes (the encoding is canonical).
pub fn card(data: &[u8]) {
    if let Ok(card) = Card::from_bytes(data) {
        assert_eq!(card.to_bytes(), data, "accepted card is not canonical");
        let again = Card::from_text(&card.to_text()).expect("text round trip");
        assert_eq!(again, card);
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = Card::from_text(text);
    }
}

/// Key-file parser. An accepted file re-encodes to the same bytes. (Not
/// unlocked: Argon2 would make each run take milliseconds to seconds.)
pub fn key_file(data: &[u8]) {
    if let Ok(file) = KeyFile::parse(data) {
        assert_eq!(file.to_bytes(), data);
    }
}

/// The fixed key the envelope target decrypts with (the vectors' "bob").
pub fn envelope_key() -> UserKey {
    UserKey::from_secret_bytes("bob", &[0x21; 32], &[0x22; 32]).expect("valid name")
}

/// Envelope parser and decryptor, binary and armored, reading through a
/// reader that returns the input in small pieces. On failure, no more than
/// the chunks that authenticated may have been written.
pub fn envelope(data: &[u8]) {
    static KEY: std::sync::OnceLock<UserKey> = std::sync::OnceLock::new();
    let key = KEY.get_or_init(envelope_key);
    let mut out = Vec::new();
    let _ = decrypt(key, data, &mut out);
    if let Ok(mut reader) = dearmor(data) {
        let mut unarmored = Vec::new();
        if reader.read_to_end(&mut unarmored).is_ok() {
            let _ = decrypt(key, &unarmored[..], &mut Vec::new());
        }
    }
}

// ---------------------------------------------------------------------------
// Drive formats. Signed objects are fuzzed twice: as given (the real path,
// which stops at the signature), and re-signed with a fixed key so the
// parser behind the signature check is reached too. Encrypted parts only
// open when untouched, so the plaintext parsers (keyring list, batch,
// checkpoint root, page body, node, op, journal record, state) have targets
// of their own (the page target tries its input both sealed and plain).

/// The fixed Ed25519 key that owns and writes the drive objects of the
/// targets (drive owner, keyring owner, log writer).
fn signer() -> SigningKey {
    SigningKey::from_bytes(&[0x31; 32])
}

/// The owner's X25519 key (a keyring member).
fn owner_x() -> StaticSecret {
    StaticSecret::from([0x32; 32])
}

/// A second keyring member, the one the keyring target opens as.
fn member_x() -> StaticSecret {
    StaticSecret::from([0x33; 32])
}

/// The fixed volume key of the signed-box and keyring targets.
fn volume_key() -> SecretKey {
    SecretKey::from_bytes([0x34; 32])
}

/// The fixed key sealing the local journal and state.
fn cache_cipher() -> Cipher {
    Cipher::new(&SecretKey::from_bytes([0x35; 32]))
}

/// The client id of the journal target.
const CLIENT: [u8; 16] = [0x36; 16];

/// `body` followed by the fixed signer's signature over it: the shape of
/// every signed drive object.
fn signed(body: &[u8]) -> Vec<u8> {
    [body, &signer().sign(body).to_bytes()].concat()
}

/// `bytes` without its trailing 64-byte signature.
fn unsigned(bytes: &[u8]) -> &[u8] {
    &bytes[..bytes.len().saturating_sub(64)]
}

/// Drive header (object `drive`). Re-signed with the fixed key, an input
/// naming that key as owner is accepted when it parses, and an accepted
/// header re-seals to the same bytes (the encoding and Ed25519 are
/// deterministic).
pub fn drive_header(data: &[u8]) {
    let _ = DriveHeader::open(data);
    let bytes = signed(data);
    if let Ok(h) = DriveHeader::open(&bytes) {
        assert_eq!(h.seal(&signer()), bytes, "accepted header is not canonical");
    }
}

/// Log base (object `v/VOLUME/b/SEQ`). Re-signed with the fixed key, an
/// accepted base lists exactly the hashes of `first..=seq` and re-seals
/// to the same bytes.
pub fn log_base(data: &[u8]) {
    let owner = signer().verifying_key();
    let _ = LogBase::open(data, &owner);
    let bytes = signed(data);
    if let Ok(b) = LogBase::open(&bytes, &owner) {
        assert_eq!(b.hashes.len() as u64, b.seq - b.first + 1);
        assert_eq!(
            b.seal(&signer()),
            bytes,
            "accepted log base is not canonical"
        );
    }
}

/// Keyring (object `v/VOLUME/keyring/GEN`), opened as a member and with
/// the fixed volume key. An accepted keyring is valid (re-seals) and
/// re-opens to the same value, for the member and with its key.
pub fn keyring(data: &[u8]) {
    let owner = signer().verifying_key();
    let me = member_x();
    let _ = Keyring::open(data, &owner, &me);
    let bytes = signed(data);
    let _ = Keyring::verify_public(&bytes, &owner);
    let opened = Keyring::open(&bytes, &owner, &me).ok().or_else(|| {
        Keyring::open_with_key(&bytes, &owner, &volume_key())
            .ok()
            .map(|k| (k, volume_key()))
    });
    if let Some((k, key)) = opened {
        let my_x = *PublicKey::from(&me).as_bytes();
        let resealed = k
            .seal(&key, &signer())
            .expect("an accepted keyring is valid");
        assert_eq!(resealed.len(), bytes.len(), "re-sealed keyring size");
        assert_eq!(
            Keyring::open_with_key(&resealed, &owner, &key).as_ref(),
            Ok(&k)
        );
        if k.members.iter().any(|m| m.x25519 == my_x) {
            let (again, again_key) = Keyring::open(&resealed, &owner, &me).expect("member opens");
            assert_eq!((again, again_key), (k, key));
        }
    }
}

/// The decrypted member list of a keyring (members, name, key history).
/// The encoding is canonical: an accepted list re-encodes to its bytes.
pub fn keyring_list(data: &[u8]) {
    if let Ok((members, name, history)) = read_secret_part(data) {
        assert_eq!(
            write_secret_part(&members, &name, &history).as_slice(),
            data,
            "accepted keyring list is not canonical"
        );
    }
}

/// The signed box of log entries and snapshots. Re-signed with the fixed
/// key; an accepted box's head is what `peek_signed` reads, and sealing
/// its head and payload again gives a box of the same size that opens to
/// the same head and payload (the nonce is random, so not the same bytes).
pub fn signed_box(data: &[u8]) {
    let writer = signer().verifying_key();
    let key = volume_key();
    let bytes = signed(data);
    for magic in [ENTRY_MAGIC, SNAPSHOT_MAGIC] {
        let _ = peek_signed(magic, data);
        let _ = open_signed(magic, data, &writer, &key);
        if let Ok((head, payload)) = open_signed(magic, &bytes, &writer, &key) {
            assert_eq!(peek_signed(magic, &bytes).as_ref(), Ok(&head));
            let again = seal_signed(magic, &head, &key, &signer(), &payload);
            assert_eq!(again.len(), bytes.len(), "re-sealed box size");
            assert_eq!(
                open_signed(magic, &again, &writer, &key),
                Ok((head, payload))
            );
        }
    }
}

/// Checks a decode/encode pair that is canonical up to map order: node
/// blocks, xattrs and entries and snapshot clients are maps, so an input
/// listing a key twice or out of order decodes, and re-encodes sorted and
/// without the duplicate. The re-encoding is never longer, decodes to the
/// same value, and is a fixed point.
fn check_round_trip<T: PartialEq + std::fmt::Debug>(
    data: &[u8],
    value: &T,
    encode: impl Fn(&T) -> Vec<u8>,
    decode: impl Fn(&[u8]) -> Result<T, crate::format::wire::FormatError>,
) {
    let enc = encode(value);
    assert!(enc.len() <= data.len(), "re-encoding grew");
    let back = decode(&enc).expect("re-encoding decodes");
    assert_eq!(&back, value, "re-encoding decodes to another value");
    assert_eq!(encode(&back), enc, "re-encoding is not a fixed point");
}

/// The decrypted payload of a log entry.
pub fn log_batch(data: &[u8]) {
    if let Ok(b) = Batch::decode(data) {
        check_round_trip(data, &b, Batch::encode, Batch::decode);
    }
}

/// The decrypted payload of a checkpoint root. An accepted root
/// re-encodes to the same bytes (clients ascend, none twice).
pub fn checkpoint_root(data: &[u8]) {
    if let Ok(r) = CheckpointRoot::decode(data) {
        assert_eq!(r.pages.len(), 1 << r.bucket_bits);
        assert_eq!(r.encode(), data, "accepted root is not canonical");
    }
}

/// Where the page target's pages belong.
fn page_place() -> PagePlace {
    PagePlace {
        volume: [0x22; 16],
        generation: 2,
        bucket: 1,
        bucket_bits: 2,
    }
}

/// A checkpoint page, sealed (opened with the fixed volume key) and as a
/// plain body. Accepted nodes lie in the page's bucket in ascending order;
/// a body re-encodes to a body of the same nodes, and sealed again opens
/// to them.
pub fn page(data: &[u8]) {
    let place = page_place();
    let key = volume_key();
    let _ = open_page(&place, &key, data);
    if let Ok(nodes) = decode_page_body(&place, data) {
        assert!(nodes.iter().all(|n| place.holds(n.id)));
        assert!(nodes.windows(2).all(|w| w[0].id < w[1].id));
        let decode = |b: &[u8]| decode_page_body(&place, b);
        check_round_trip(data, &nodes, |n| encode_page_body(n.iter()), decode);
        let sealed = seal_page(&place, &key, &encode_page_body(nodes.iter()));
        assert_eq!(open_page(&place, &key, &sealed), Ok(nodes));
    }
}

fn whole<T>(
    read: fn(&mut Reader<'_>) -> Result<T, crate::format::wire::FormatError>,
) -> impl Fn(&[u8]) -> Result<T, crate::format::wire::FormatError> {
    move |data| {
        let mut r = Reader::new(data);
        let v = read(&mut r)?;
        r.finish()?;
        Ok(v)
    }
}

fn encode_with<T>(write: fn(&T, &mut Writer)) -> impl Fn(&T) -> Vec<u8> {
    move |v| {
        let mut w = Writer::new();
        write(v, &mut w);
        w.into_vec()
    }
}

/// One node record (as in checkpoint pages and `Create` ops), the whole
/// input.
pub fn node(data: &[u8]) {
    let read = whole(Node::read);
    if let Ok(n) = read(data) {
        check_round_trip(data, &n, encode_with(Node::write), &read);
        let len = encode_with(Node::write)(&n).len();
        assert_eq!(
            n.encoded_len(),
            len,
            "encoded_len differs from the encoding"
        );
    }
}

/// One op record (as in batches and journal records), the whole input.
pub fn op(data: &[u8]) {
    let read = whole(Op::read);
    if let Ok(o) = read(data) {
        check_round_trip(data, &o, encode_with(Op::write), &read);
    }
}

/// The fixed identity (block id) and key of the content-block target's block.
const BLOCK_VERSION: [u8; 16] = [0x38; 16];
const BLOCK_KEY: [u8; 32] = [0x39; 32];

fn block_id() -> &'static [u8; 16] {
    &BLOCK_VERSION
}

fn fixed_block_cipher() -> Cipher {
    block_cipher(&BLOCK_KEY)
}

/// A content-block target input: the block length the metadata claims
/// (u32; its top bit set: the block version is packed at offset
/// [`FUZZ_PACK_OFFSET`] of its object), the chunk range read (two u16),
/// then the object bytes from the first chunk of that range.
pub fn content_block_input(len: u32, chunks: std::ops::Range<u16>, sealed: &[u8]) -> Vec<u8> {
    let mut w = Writer::new();
    w.u32(len).u16(chunks.start).u16(chunks.end).raw(sealed);
    w.into_vec()
}

/// Where the content-block target's packed block version lies in its pack.
pub const FUZZ_PACK_OFFSET: u32 = 4096;

/// Content block (sealed chunks) opened with a fixed key, for a length,
/// place (whole object or packed) and chunk range taken from the input. Whatever the claimed length, nothing
/// larger than the input is allocated; an accepted whole block re-seals to
/// the same bytes (the chunk nonces are deterministic); `chunk_span` stays
/// inside the block for any range.
pub fn content_block(data: &[u8]) {
    let Some((head, sealed)) = data.split_first_chunk::<8>() else {
        return;
    };
    let len = u32::from_le_bytes(head[..4].try_into().expect("4 bytes"));
    let place = Place {
        id: *block_id(),
        packed: (len >> 31 == 1).then_some(FUZZ_PACK_OFFSET),
    };
    let len = (len & !(1 << 31)) as usize;
    let first = u16::from_le_bytes([head[4], head[5]]) as u32;
    let end = u16::from_le_bytes([head[6], head[7]]) as u32;
    let cipher = fixed_block_cipher();
    if let Ok(plain) = open_chunks(&cipher, &place, len, first..end, sealed) {
        assert!(len <= BLOCK_SIZE);
        assert!(plain.len() < sealed.len() || sealed.is_empty());
        if first == 0 && end == chunk_count(len) {
            assert_eq!(plain.len(), len);
            assert_eq!(sealed.len(), sealed_len(len));
            assert_eq!(seal_block(&cipher, &place, &plain), sealed);
            // The same bytes at the other place do not open.
            let moved = Place {
                packed: match place.packed {
                    Some(_) => None,
                    None => Some(FUZZ_PACK_OFFSET),
                },
                ..place
            };
            assert!(open_chunks(&cipher, &moved, len, first..end, sealed).is_err());
        }
    }
    let len = len.min(BLOCK_SIZE);
    let range = first as usize * 997..end as usize * 4099;
    let (chunks, obj) = chunk_span(range, len);
    assert!(chunks.start <= chunks.end && chunks.end <= chunk_count(len));
    assert!(obj.start <= obj.end && obj.end <= sealed_len(len) as u64);
    if !chunks.is_empty() {
        assert_eq!(
            obj.start,
            chunks.start as u64 * content::SEALED_CHUNK as u64
        );
    }
}

/// The local journal file, read with a fixed key: as given, and with the
/// input sealed as one record. A sealed record is returned exactly when
/// its plaintext parses; a record that fails stops the read there and the
/// records before it are kept.
pub fn journal(data: &[u8]) {
    let cipher = cache_cipher();
    let (records, _) = parse_journal(&cipher, &CLIENT, data);
    // A record needs 4 + 12 + 16 bytes of framing and 9 of plaintext.
    assert!(records.len() <= data.len() / 41);
    let framed = seal_journal_record(&cipher, &CLIENT, data.to_vec());
    let (records, stop) = parse_journal(&cipher, &CLIENT, &framed);
    match parse_journal_record(data) {
        Ok(record) => {
            assert_eq!(stop, None);
            assert_eq!(records, vec![record.clone()]);
            check_round_trip(data, &record, encode_journal_record, parse_journal_record);
        }
        Err(_) => {
            assert_eq!(stop, Some(JournalStop::Unparsable));
            assert!(records.is_empty());
        }
    }
    // The same record followed by the input as a torn or foreign tail.
    let mut two = framed;
    two.extend_from_slice(data);
    let (more, _) = parse_journal(&cipher, &CLIENT, &two);
    assert!(more.starts_with(&records));
}

/// The local state file, read with a fixed key, and its plaintext. An
/// accepted plaintext of the current length is canonical; any accepted one
/// seals and opens back to the same state.
pub fn local_state(data: &[u8]) {
    let cipher = cache_cipher();
    let _ = open_state(&cipher, data);
    if let Ok(s) = LocalState::decode(data) {
        let enc = s.encode();
        if data.len() == enc.len() {
            assert_eq!(enc, data, "accepted state is not canonical");
        }
        assert_eq!(LocalState::decode(&enc).as_ref(), Ok(&s));
        assert_eq!(open_state(&cipher, &seal_state(&cipher, &s)), Some(s));
    }
}

/// A fuzz-target body: any input, never panics.
pub type Target = fn(&[u8]);

/// The drive-format targets, by name: what `fuzz/fuzz_targets` runs and
/// the smoke test mutates.
pub const DRIVE_TARGETS: &[(&str, Target)] = &[
    ("drive_header", drive_header),
    ("keyring", keyring),
    ("keyring_list", keyring_list),
    ("signed_box", signed_box),
    ("log_batch", log_batch),
    ("checkpoint_root", checkpoint_root),
    ("page", page),
    ("log_base", log_base),
    ("node", node),
    ("op", op),
    ("content_block", content_block),
    ("journal", journal),
    ("local_state", local_state),
];

fn sample_time(n: u32) -> Time {
    Time {
        secs: 1_700_000_000 + n as i64,
        nanos: n * 1000,
    }
}

fn sample_member(sk: &SigningKey, x: &StaticSecret, role: u8) -> MemberRecord {
    MemberRecord {
        card_id: [role + 0x40; 32],
        x25519: *PublicKey::from(x).as_bytes(),
        ed25519: *sk.verifying_key().as_bytes(),
        role,
    }
}

/// Sample nodes of every kind, with blocks, xattrs and entries.
fn sample_nodes() -> Vec<Node> {
    let mut file = Node {
        id: 7,
        kind: KIND_FILE,
        perm: 0o644,
        nlink: 1,
        size: BLOCK_SIZE as u64 + 5,
        version: 3,
        mtime: sample_time(1),
        ..Default::default()
    };
    for (i, len) in [(0u64, BLOCK_SIZE as u32), (1, 5)] {
        file.blocks.insert(
            i,
            BlockRef {
                id: [i as u8 + 1; 16],
                len,
                epoch: i as u32,
                packed: None,
                key: [i as u8 + 0x20; 32].into(),
            },
        );
    }
    file.xattrs.insert(b"user.a".to_vec(), b"b".to_vec());
    let mut dir = Node {
        id: 1,
        kind: KIND_DIR,
        perm: 0o755,
        nlink: 2,
        parent: 1,
        next_cookie: 3,
        ..Default::default()
    };
    dir.entries
        .insert(b"f".into(), DirLink { node: 7, cookie: 1 });
    dir.entries
        .insert(b"l".into(), DirLink { node: 8, cookie: 2 });
    let link = Node {
        id: 8,
        kind: KIND_SYMLINK,
        perm: 0o777,
        nlink: 1,
        target: b"f".to_vec().into(),
        ..Default::default()
    };
    let volume = Node {
        id: 9,
        kind: KIND_VOLUME,
        perm: 0o755,
        nlink: 2,
        target: vec![0x11; 16].into(),
        ..Default::default()
    };
    vec![dir, file, link, volume]
}

/// One op of every kind, around file node 7 (also the ops of the batch
/// known-answer test in `format::meta::ops`).
pub fn sample_ops() -> Vec<Op> {
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
            packed: None,
            key: [0x21; 32].into(),
        },
    );
    node.xattrs.insert(b"user.a".to_vec(), b"b".to_vec());
    node.entries
        .insert(b"x".into(), DirLink { node: 9, cookie: 1 });
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
                    packed: None,
                    key: [0x22; 32].into(),
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

fn encode_op(op: &Op) -> Vec<u8> {
    let mut w = Writer::new();
    op.write(&mut w);
    w.into_vec()
}

/// Seed inputs for the drive-format targets, made by the encoders with the
/// targets' fixed keys (so they are accepted, and mutations of them reach
/// deep into each parser): `(target, input)` pairs.
pub fn drive_seeds() -> Vec<(&'static str, Vec<u8>)> {
    let sk = signer();
    let mut out: Vec<(&'static str, Vec<u8>)> = Vec::new();

    let header = DriveHeader {
        drive_id: [0x21; 16],
        root_volume: [0x22; 16],
        owner: sample_member(&sk, &owner_x(), 3),
        owner_card: b"cardfs-card:seed".to_vec(),
    }
    .seal(&sk);
    out.push(("drive_header", unsigned(&header).to_vec()));
    out.push(("drive_header", header));

    for (first, seq) in [(0u64, 0u64), (65, 129)] {
        let base = LogBase {
            drive_id: [0x21; 16],
            volume: [0x22; 16],
            first,
            seq,
            root: [0x23; 32],
            prev: if first == 0 { [0; 32] } else { [0x24; 32] },
            hashes: (first..=seq)
                .map(|s| crate::format::meta::sha256(&s.to_le_bytes()))
                .collect(),
        }
        .seal(&sk);
        out.push(("log_base", unsigned(&base).to_vec()));
        out.push(("log_base", base));
    }

    let members = vec![
        sample_member(&sk, &owner_x(), 3),
        sample_member(&SigningKey::from_bytes(&[0x3a; 32]), &member_x(), 1),
    ];
    let history: Vec<(u32, SecretKey)> = (0..2)
        .map(|g| (g, SecretKey::from_bytes([g as u8 + 0x50; 32])))
        .collect();
    let ring = Keyring {
        drive_id: [0x21; 16],
        volume: [0x22; 16],
        generation: 2,
        owner_card_id: members[0].card_id,
        members: members.clone(),
        name: b"projects".to_vec(),
        history: history.clone(),
    }
    .seal(&volume_key(), &sk)
    .expect("valid keyring");
    out.push(("keyring", unsigned(&ring).to_vec()));
    out.push(("keyring", ring));
    out.push((
        "keyring_list",
        write_secret_part(&members, b"projects", &history).to_vec(),
    ));

    let mut ops = sample_ops();
    ops.extend(sample_nodes().into_iter().map(|n| Op::Create {
        parent: 1,
        name: vec![b'a' + n.id as u8],
        node: Box::new(n),
    }));
    let batch = Batch {
        client: CLIENT,
        client_seq: 42,
        time: sample_time(3),
        ops: ops.clone(),
    }
    .encode();
    let mut snapshot = CheckpointRoot {
        bucket_bits: 2,
        pages: vec![[0x41; 32], [0x42; 32], [0; 32], [0x43; 32]],
        ..Default::default()
    };
    snapshot.clients.insert(CLIENT, 42);
    snapshot.clients.insert([0x12; 16], 7);
    let snapshot = snapshot.encode();
    let head = SignedHead {
        volume: [0x22; 16],
        seq: 5,
        generation: 2,
        writer: [0x23; 32],
        chain: [0x24; 32],
    };
    for (magic, payload) in [(ENTRY_MAGIC, &batch), (SNAPSHOT_MAGIC, &snapshot)] {
        let sealed = seal_signed(magic, &head, &volume_key(), &sk, payload);
        out.push(("signed_box", unsigned(&sealed).to_vec()));
    }
    out.push(("log_batch", batch));
    out.push(("checkpoint_root", snapshot));
    // The sample nodes, renumbered into the page target's bucket.
    let place = page_place();
    let nodes: Vec<Node> = (sample_nodes().into_iter().enumerate())
        .map(|(i, n)| Node {
            id: place.bucket as u64 + (4 << i),
            ..n
        })
        .collect();
    let body = encode_page_body(nodes.iter());
    out.push(("page", seal_page(&place, &volume_key(), &body)));
    out.push(("page", body));
    for n in sample_nodes() {
        let mut w = Writer::new();
        n.write(&mut w);
        out.push(("node", w.into_vec()));
    }
    // A file whose small block version is packed with others.
    let mut packed = sample_nodes()[1].clone();
    if let Some(b) = packed.blocks.get_mut(&1) {
        b.packed = Some(8192);
    }
    let mut w = Writer::new();
    packed.write(&mut w);
    out.push(("node", w.into_vec()));
    for op in &ops {
        out.push(("op", encode_op(op)));
    }

    let cipher = fixed_block_cipher();
    for len in [1usize, 100, content::CHUNK_SIZE + 10] {
        let plain: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        let sealed = seal_block(&cipher, &Place::whole(*block_id()), &plain);
        let n = chunk_count(len) as u16;
        out.push((
            "content_block",
            content_block_input(len as u32, 0..n, &sealed),
        ));
        // The same block version packed at FUZZ_PACK_OFFSET.
        let at = Place {
            id: *block_id(),
            packed: Some(FUZZ_PACK_OFFSET),
        };
        let sealed = seal_block(&cipher, &at, &plain);
        out.push((
            "content_block",
            content_block_input(len as u32 | 1 << 31, 0..n, &sealed),
        ));
    }

    let cache = cache_cipher();
    let mut file = Vec::new();
    for (i, op) in ops.iter().enumerate() {
        let plain = encode_journal_record(&JournalRecord::Op(i as u64 + 1, op.clone()));
        file.extend_from_slice(&seal_journal_record(&cache, &CLIENT, plain.clone()));
        if i % 4 == 0 {
            out.push(("journal", plain));
        }
    }
    // An unsealed-writes marker (seq 0 and a node id).
    let marker = encode_journal_record(&JournalRecord::Unsealed(7));
    file.extend_from_slice(&seal_journal_record(&cache, &CLIENT, marker.clone()));
    out.push(("journal", marker));
    out.push(("journal", file));

    // Any 84 bytes are a state (hashes, counters, generation): its fields
    // are the engine's own.
    let state =
        LocalState::decode(&(0x20..0x20 + 84).collect::<Vec<u8>>()).expect("84 bytes are a state");
    let plain = state.encode();
    out.push(("local_state", plain[..plain.len() - 4].to_vec()));
    out.push(("local_state", plain));
    out.push(("local_state", seal_state(&cache, &state)));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether the parser behind `target` accepts `data` (the seeds must
    /// be accepted, or mutating them reaches little).
    fn accepted(target: &str, data: &[u8]) -> bool {
        let owner = signer().verifying_key();
        let key = volume_key();
        let cipher = cache_cipher();
        match target {
            "drive_header" => [data.to_vec(), signed(data)]
                .iter()
                .any(|b| DriveHeader::open(b).is_ok()),
            "keyring" => [data.to_vec(), signed(data)]
                .iter()
                .any(|b| Keyring::open(b, &owner, &member_x()).is_ok()),
            "keyring_list" => read_secret_part(data).is_ok(),
            "log_base" => [data.to_vec(), signed(data)]
                .iter()
                .any(|b| LogBase::open(b, &owner).is_ok()),
            "signed_box" => [ENTRY_MAGIC, SNAPSHOT_MAGIC]
                .iter()
                .any(|m| open_signed(m, &signed(data), &owner, &key).is_ok()),
            "log_batch" => Batch::decode(data).is_ok(),
            "checkpoint_root" => CheckpointRoot::decode(data).is_ok(),
            "page" => {
                open_page(&page_place(), &key, data).is_ok()
                    || decode_page_body(&page_place(), data).is_ok()
            }
            "node" => whole(Node::read)(data).is_ok(),
            "op" => whole(Op::read)(data).is_ok(),
            "content_block" => {
                let len = u32::from_le_bytes(data[..4].try_into().unwrap());
                let place = Place {
                    id: *block_id(),
                    packed: (len >> 31 == 1).then_some(FUZZ_PACK_OFFSET),
                };
                let len = (len & !(1 << 31)) as usize;
                open_chunks(
                    &fixed_block_cipher(),
                    &place,
                    len,
                    0..chunk_count(len),
                    &data[8..],
                )
                .is_ok()
            }
            "journal" => {
                parse_journal_record(data).is_ok() || {
                    let (records, stop) = parse_journal(&cipher, &CLIENT, data);
                    stop.is_none() && records.len() > 1
                }
            }
            "local_state" => {
                LocalState::decode(data).is_ok() || open_state(&cipher, data).is_some()
            }
            other => panic!("no acceptance check for target {other}"),
        }
    }

    #[test]
    fn every_seed_is_accepted_by_its_parser() {
        for (target, data) in drive_seeds() {
            assert!(accepted(target, &data), "a {target} seed is refused");
        }
    }
}
