//! Streaming envelopes over `Read`/`Write`: the library API the rest of the
//! crate uses (`encrypt_for`, `sign_then_encrypt`, `decrypt`,
//! `decrypt_then_verify`). Byte layout and crypto live in
//! `crate::format::envelope`.
//!
//! Invariants:
//! - Memory is constant: one plaintext chunk, one sealed chunk and a small
//!   look-ahead, whatever the input size.
//! - Decryption writes a chunk only after it authenticated. A signature is
//!   checked after the last chunk, so a caller that needs a verified sender
//!   before using any byte must write to a place it can discard (the CLI
//!   writes `-o FILE` through a temporary file and removes it on failure).
//!
//! ```
//! use cardfs::format::{card::Card, key::UserKey};
//! use cardfs::identity::envelope::{decrypt_then_verify, sign_then_encrypt};
//!
//! let alice = UserKey::generate("alice").unwrap();
//! let bob = UserKey::generate("bob").unwrap();
//! let alice_card = Card::create(&alice, "alice", 0).unwrap();
//! let bob_card = Card::create(&bob, "bob", 0).unwrap();
//!
//! let mut sealed = Vec::new();
//! sign_then_encrypt(&alice, &alice_card, &[bob_card], &b"hi bob"[..], &mut sealed).unwrap();
//! let mut plain = Vec::new();
//! decrypt_then_verify(&bob, &alice_card, &sealed[..], &mut plain).unwrap();
//! assert_eq!(plain, b"hi bob");
//! ```

use crate::format::card::Card;
use crate::format::envelope::{
    CHUNK_LEN, EnvelopeError, FIXED_HEADER_LEN, Header, Opener, SEALED_CHUNK_LEN,
    SIGNATURE_BLOCK_LEN, Sealer, SignatureClaim, header_len,
};
use crate::format::key::UserKey;
use std::io::{self, Read, Write};
use zeroize::Zeroizing;

/// Why streaming an envelope failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Envelope(#[from] EnvelopeError),
    #[error("reading the input: {0}")]
    Read(io::Error),
    #[error("writing the output: {0}")]
    Write(io::Error),
}

impl Error {
    /// The envelope-level reason, if the failure was not an I/O error.
    pub fn envelope(&self) -> Option<&EnvelopeError> {
        match self {
            Error::Envelope(e) => Some(e),
            _ => None,
        }
    }
}

/// Reads into `buf[*filled..]` until it is full or the input ends. The
/// buffers keep their length between chunks, so no memory is re-zeroed.
fn fill(reader: &mut impl Read, buf: &mut [u8], filled: &mut usize) -> Result<(), Error> {
    while *filled < buf.len() {
        match reader.read(&mut buf[*filled..]) {
            Ok(0) => return Ok(()),
            Ok(n) => *filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Error::Read(e)),
        }
    }
    Ok(())
}

fn seal_stream(
    mut sealer: Sealer,
    signer: Option<(&UserKey, &Card)>,
    mut reader: impl Read,
    mut writer: impl Write,
) -> Result<(), Error> {
    writer.write_all(sealer.header()).map_err(Error::Write)?;
    // One chunk plus one look-ahead byte that tells whether it is the last.
    let mut plain = Zeroizing::new(vec![0u8; CHUNK_LEN + 1]);
    let mut filled = 0;
    let mut sealed = Vec::with_capacity(SEALED_CHUNK_LEN);
    loop {
        fill(&mut reader, &mut plain, &mut filled)?;
        let last = filled <= CHUNK_LEN;
        let take = filled.min(CHUNK_LEN);
        sealer.seal_chunk(&plain[..take], last, &mut sealed);
        writer.write_all(&sealed).map_err(Error::Write)?;
        if last {
            break;
        }
        plain[0] = plain[CHUNK_LEN];
        filled = 1;
    }
    if let Some((key, card)) = signer {
        let block = sealer.sign(key, card)?;
        writer.write_all(&block).map_err(Error::Write)?;
    }
    writer.flush().map_err(Error::Write)
}

/// Encrypts `reader` to every card in `cards`, writing the envelope.
pub fn encrypt_for(cards: &[Card], reader: impl Read, writer: impl Write) -> Result<(), Error> {
    let keys: Vec<_> = cards.iter().map(Card::x25519_public).collect();
    seal_stream(Sealer::new(&keys, false)?, None, reader, writer)
}

/// Like [`encrypt_for`], and signs the header and ciphertext with
/// `signer`, whose card is `signer_card`, so recipients learn (and can
/// check) who sent it.
pub fn sign_then_encrypt(
    signer: &UserKey,
    signer_card: &Card,
    cards: &[Card],
    reader: impl Read,
    writer: impl Write,
) -> Result<(), Error> {
    if !signer_card.matches_key(signer) {
        return Err(EnvelopeError::SignerCardMismatch.into());
    }
    let keys: Vec<_> = cards.iter().map(Card::x25519_public).collect();
    seal_stream(
        Sealer::new(&keys, true)?,
        Some((signer, signer_card)),
        reader,
        writer,
    )
}

/// Reads and parses an envelope header.
pub fn read_header(reader: &mut impl Read) -> Result<Header, Error> {
    let mut bytes = vec![0u8; FIXED_HEADER_LEN];
    let mut filled = 0;
    fill(reader, &mut bytes, &mut filled)?;
    let len = header_len(&bytes[..filled])?;
    bytes.resize(len, 0);
    fill(reader, &mut bytes, &mut filled)?;
    Ok(Header::parse(&bytes[..filled])?)
}

/// Decrypts an envelope whose header was already read with [`read_header`].
pub fn decrypt_after_header(
    key: &UserKey,
    header: &Header,
    mut reader: impl Read,
    mut writer: impl Write,
) -> Result<Option<SignatureClaim>, Error> {
    let mut opener = Opener::new(header, key)?;
    let trailer = if opener.is_signed() {
        SIGNATURE_BLOCK_LEN
    } else {
        0
    };
    let window = SEALED_CHUNK_LEN + trailer + 1;
    // One sealed chunk, the signature block, and one byte: a full window
    // means the chunk at its start is not the last.
    let mut sealed = vec![0u8; window];
    let mut filled = 0;
    let mut plain = Zeroizing::new(Vec::with_capacity(CHUNK_LEN));
    loop {
        fill(&mut reader, &mut sealed, &mut filled)?;
        if filled == window {
            opener.open_chunk(&sealed[..SEALED_CHUNK_LEN], false, &mut plain)?;
            writer.write_all(&plain).map_err(Error::Write)?;
            sealed.copy_within(SEALED_CHUNK_LEN.., 0);
            filled = window - SEALED_CHUNK_LEN;
            continue;
        }
        let sealed = &sealed[..filled];
        if sealed.len() <= trailer {
            return Err(EnvelopeError::Truncated("the final chunk is missing").into());
        }
        let split = sealed.len() - trailer;
        opener.open_chunk(&sealed[..split], true, &mut plain)?;
        writer.write_all(&plain).map_err(Error::Write)?;
        let block = (trailer > 0).then(|| &sealed[split..]);
        let claim = opener.finish(block)?;
        writer.flush().map_err(Error::Write)?;
        return Ok(claim);
    }
}

/// Decrypts an envelope for `key`. A signed envelope's claim is returned
/// unverified; check it with [`SignatureClaim::verify`] or use
/// [`decrypt_then_verify`].
pub fn decrypt(
    key: &UserKey,
    mut reader: impl Read,
    writer: impl Write,
) -> Result<Option<SignatureClaim>, Error> {
    let header = read_header(&mut reader)?;
    decrypt_after_header(key, &header, reader, writer)
}

/// Decrypts an envelope for `key` and requires a valid signature by
/// `sender`'s card.
pub fn decrypt_then_verify(
    key: &UserKey,
    sender: &Card,
    mut reader: impl Read,
    writer: impl Write,
) -> Result<(), Error> {
    let header = read_header(&mut reader)?;
    if !header.is_signed() {
        return Err(EnvelopeError::SignatureMissing.into());
    }
    let claim = decrypt_after_header(key, &header, reader, writer)?
        .ok_or(EnvelopeError::SignatureMissing)?;
    claim.verify(sender)?;
    Ok(())
}
