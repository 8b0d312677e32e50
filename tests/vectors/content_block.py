#!/usr/bin/env python3
"""Independent reference for the drive content block format (docs/FORMAT.md,
"Drive: content block"): seals the known-answer input of
src/format/content.rs `known_answer` with Python's `cryptography`
AES-GCM-SIV and prints its length and SHA-256, for the chunk size of format
v2 (4 KiB) and, for comparison, the 64 KiB chunks of its first draft."""
import hashlib
import struct

from cryptography.hazmat.primitives.ciphers.aead import AESGCMSIV

BLOCK_SIZE = 1 << 20


def padme(n):
    if n < 2:
        return n
    e = n.bit_length() - 1
    s = e.bit_length()
    mask = (1 << (e - s)) - 1
    return (n + mask) & ~mask


def padded_len(n):
    return min(padme(max(n, 256)), BLOCK_SIZE)


def seal_block(key, block_id, plain, chunk):
    padded = padded_len(len(plain))
    buf = plain + bytes(padded - len(plain))
    count = max(1, -(-padded // chunk))
    aead = AESGCMSIV(key)
    out = b""
    for k in range(count):
        nonce = struct.pack("<I", k) + bytes(8)
        aad = b"CFSB" + bytes([2, 0]) + block_id + struct.pack("<I", k) + bytes([k + 1 == count])
        out += aead.encrypt(nonce, buf[k * chunk:(k + 1) * chunk], aad)
    return out


for chunk in (4096, 65536):
    plain = bytes(i % 251 for i in range(chunk + 10))
    sealed = seal_block(bytes([1] * 32), bytes([3] * 16), plain, chunk)
    print(f"chunk {chunk}: plaintext {len(plain)}, padded {padded_len(len(plain))}, "
          f"object {len(sealed)}, sha256 {hashlib.sha256(sealed).hexdigest()}")
