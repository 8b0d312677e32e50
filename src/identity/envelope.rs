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

/// Reads until `buf` has `want` bytes or the input ends.
fn fill(reader: &mut impl Read, buf: &mut Vec<u8>, want: usize) -> Result<(), Error> {
    while buf.len() < want {
        let start = buf.len();
        buf.resize(want, 0);
        match reader.read(&mut buf[start..]) {
            Ok(0) => {
                buf.truncate(start);
                return Ok(());
            }
            Ok(n) => buf.truncate(start + n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => buf.truncate(start),
            Err(e) => {
                buf.truncate(start);
                return Err(Error::Read(e));
            }
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
    let mut plain = Zeroizing::new(Vec::with_capacity(CHUNK_LEN + 1));
    let mut sealed = Vec::with_capacity(SEALED_CHUNK_LEN);
    loop {
        fill(&mut reader, &mut plain, CHUNK_LEN + 1)?;
        let last = plain.len() <= CHUNK_LEN;
        let take = plain.len().min(CHUNK_LEN);
        sealer.seal_chunk(&plain[..take], last, &mut sealed);
        writer.write_all(&sealed).map_err(Error::Write)?;
        if last {
            break;
        }
        plain.copy_within(CHUNK_LEN.., 0);
        plain.truncate(1);
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
    let mut bytes = Vec::with_capacity(FIXED_HEADER_LEN);
    fill(reader, &mut bytes, FIXED_HEADER_LEN)?;
    let len = header_len(&bytes)?;
    fill(reader, &mut bytes, len)?;
    Ok(Header::parse(&bytes)?)
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
    let mut sealed = Vec::with_capacity(window);
    let mut plain = Zeroizing::new(Vec::with_capacity(CHUNK_LEN));
    loop {
        fill(&mut reader, &mut sealed, window)?;
        if sealed.len() == window {
            opener.open_chunk(&sealed[..SEALED_CHUNK_LEN], false, &mut plain)?;
            writer.write_all(&plain).map_err(Error::Write)?;
            sealed.copy_within(SEALED_CHUNK_LEN.., 0);
            sealed.truncate(window - SEALED_CHUNK_LEN);
            continue;
        }
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
