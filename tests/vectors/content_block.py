#!/usr/bin/env python3
"""Independent reference for the drive content block format (docs/FORMAT.md,
"Drive: content block"): seals the known-answer input of
src/format/content.rs `known_answer` with Python's `cryptography`
AES-GCM-SIV and prints its length and SHA-256, for the chunk size of format
v2 (4 KiB) and, for comparison, the 64 KiB chunks of its first draft; then
the pack of src/format/content.rs `packed_known_answer`: two block versions
packed into one object, the second at an offset (AAD flag 1, offset bound)."""
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


def seal_block(key, block_id, plain, chunk, offset=None):
    padded = padded_len(len(plain))
    buf = plain + bytes(padded - len(plain))
    count = max(1, -(-padded // chunk))
    aead = AESGCMSIV(key)
    out = b""
    for k in range(count):
        nonce = struct.pack("<I", k) + bytes(8)
        place = bytes([2, 0]) + block_id if offset is None else \
            bytes([2, 1]) + block_id + struct.pack("<I", offset)
        aad = b"CFSB" + place + struct.pack("<I", k) + bytes([k + 1 == count])
        out += aead.encrypt(nonce, buf[k * chunk:(k + 1) * chunk], aad)
    return out


for chunk in (4096, 65536):
    plain = bytes(i % 251 for i in range(chunk + 10))
    sealed = seal_block(bytes([1] * 32), bytes([3] * 16), plain, chunk)
    print(f"chunk {chunk}: plaintext {len(plain)}, padded {padded_len(len(plain))}, "
          f"object {len(sealed)}, sha256 {hashlib.sha256(sealed).hexdigest()}")

pack_id = bytes([4] * 16)
first = seal_block(bytes([1] * 32), pack_id, b"first file", 4096, offset=0)
second_plain = bytes(i % 253 for i in range(5000))
second = seal_block(bytes([2] * 32), pack_id, second_plain, 4096, offset=len(first))
pack = first + second
print(f"pack: first {len(first)}, second at {len(first)}, object {len(pack)}, "
      f"sha256 {hashlib.sha256(pack).hexdigest()}")
