"""Envelope encryption of stored payloads: AES-256-GCM per object under a key ring that keeps retired keys."""

from __future__ import annotations

import hashlib
import os
import struct
import zlib
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ._ref import PayloadCorruptError

MAGIC = b"WRP1"
"""First bytes of every object this runner writes: the frame below, version 1."""
_COMPRESSED = 1
_ENCRYPTED = 2
_NONCE = 12
_KEY_ID = 8
_WRAPPED = 32 + 16  # a 256-bit data key and its GCM tag
_AAD = b"workflow-runner payload v1"


def key_id(key: bytes) -> bytes:
    """A short public name of a key (a hash prefix), written beside each object so the right key decrypts it."""
    return hashlib.sha256(b"workflow-runner key id" + key).digest()[:_KEY_ID]


@dataclass(frozen=True, slots=True)
class KeyRing:
    """The keys of `PAYLOAD_ENCRYPTION_KEY`: the first encrypts, every one decrypts (rotation keeps old ones).

    Each object gets a fresh random data key; the data key is encrypted ("wrapped") by the ring's current key and
    stored beside the ciphertext, so retiring a key only means keeping it in the list while objects written under
    it are still alive.
    """

    keys: tuple[bytes, ...] = field(repr=False)

    def __post_init__(self) -> None:
        if not self.keys or any(len(key) not in (16, 24, 32) for key in self.keys):
            raise ValueError("every key must be 16, 24 or 32 bytes")

    def seal(self, plaintext: bytes) -> bytes:
        """`key id | wrap nonce | wrapped data key | data nonce | ciphertext+tag`."""
        master = self.keys[0]
        data_key = AESGCM.generate_key(bit_length=256)
        wrap_nonce, data_nonce = os.urandom(_NONCE), os.urandom(_NONCE)
        wrapped = AESGCM(master).encrypt(wrap_nonce, data_key, _AAD)
        body = AESGCM(data_key).encrypt(data_nonce, plaintext, _AAD)
        return b"".join((key_id(master), wrap_nonce, wrapped, data_nonce, body))

    def open(self, sealed: bytes | memoryview, where: str) -> bytes:
        """Decrypt what `seal` wrote, with whichever ring key wrote it.

        Raises:
            PayloadCorruptError: No key of the ring wrote it, or the bytes were altered.
        """
        view = memoryview(sealed)
        head = _KEY_ID + _NONCE + _WRAPPED + _NONCE
        if len(view) < head + 16:
            raise PayloadCorruptError(f"{where}: encrypted frame too short")
        wanted = bytes(view[:_KEY_ID])
        master = next((key for key in self.keys if key_id(key) == wanted), None)
        if master is None:
            raise PayloadCorruptError(f"{where}: written under key {wanted.hex()}, which PAYLOAD_ENCRYPTION_KEY lacks")
        at = _KEY_ID
        wrap_nonce, wrapped = bytes(view[at : at + _NONCE]), bytes(view[at + _NONCE : at + _NONCE + _WRAPPED])
        data_nonce = bytes(view[head - _NONCE : head])
        try:
            data_key = AESGCM(master).decrypt(wrap_nonce, wrapped, _AAD)
            return AESGCM(data_key).decrypt(data_nonce, view[head:], _AAD)
        except InvalidTag:
            raise PayloadCorruptError(f"{where}: authentication failed (altered, or another key)") from None


def frame(data: bytes, *, compress: bool, ring: KeyRing | None) -> tuple[bytes, bytes]:
    """The two parts to store for `data`: `MAGIC | flags` and the body, compressed then encrypted as configured
    (unchanged otherwise: a large payload is not copied to prepend five bytes)."""
    flags = 0
    if compress:
        data, flags = zlib.compress(data, 1), flags | _COMPRESSED
    if ring is not None:
        data, flags = ring.seal(data), flags | _ENCRYPTED
    return MAGIC + struct.pack("B", flags), data


def unframe(stored: bytes | memoryview, *, ring: KeyRing | None, where: str) -> bytes | memoryview:
    """The payload `frame` stored (a view of `stored` when it was neither compressed nor encrypted); objects
    written with encryption need the ring, the others read anyway.

    Raises:
        PayloadCorruptError: Not a frame of ours, encrypted without a key configured, or undecodable.
    """
    view = memoryview(stored)
    if bytes(view[:4]) != MAGIC or len(view) < 5:
        raise PayloadCorruptError(f"{where}: not a payload written by workflow-runner")
    flags, body = view[4], view[5:]
    data: bytes | memoryview = body
    if flags & _ENCRYPTED:
        if ring is None:
            raise PayloadCorruptError(f"{where}: encrypted, and PAYLOAD_ENCRYPTION_KEY is not set")
        data = ring.open(body, where)
    if flags & _COMPRESSED:
        try:
            data = zlib.decompress(data)
        except zlib.error:
            raise PayloadCorruptError(f"{where}: compressed data is damaged") from None
    return data
