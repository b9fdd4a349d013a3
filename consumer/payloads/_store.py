"""The payload store: content-addressed objects in a local directory or S3-compatible storage, read back verified."""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import obstore
import orjson
from obstore.exceptions import BaseError, NotFoundError
from obstore.store import LocalStore, ObjectStore, S3Store

from ..config import PayloadSettings
from ._crypto import KeyRing, frame, unframe
from ._ref import JSON, PayloadCorruptError, PayloadError, PayloadMissingError, PayloadRef

logger = logging.getLogger("consumer.payloads")

PREFIX = "sha256/"
"""Every object's key starts here (an S3 lifecycle rule filters on it)."""
_JSON_OPTIONS = orjson.OPT_NON_STR_KEYS
_JOIN_BELOW = 8 * 1024 * 1024
_HASH_IN_THREAD = 1024 * 1024


@dataclass(frozen=True, slots=True, kw_only=True)
class CleanUp:
    """What one `gc` pass did: objects looked at, objects deleted, bytes freed."""

    seen: int
    deleted: int
    freed: int


class PayloadStore:
    """Puts payloads as content-addressed objects and gets them back checked against their reference.

    Args:
        backend: Makes the obstore store (local directory or S3) on first use, so building a store costs nothing
            and makes no directory until a payload is actually offloaded.
        url: The store's name in references (no credentials).
        settings: Threshold, compression, encryption and retention (`PAYLOAD_*`).
    """

    def __init__(self, backend: Callable[[], ObjectStore], *, url: str, settings: PayloadSettings) -> None:
        self._make = backend
        self._made: ObjectStore | None = None
        self.url = url
        self.offload_bytes = settings.offload_bytes
        self.retention = settings.retention
        self._compress = settings.compression == "zlib"
        self.ring = KeyRing(settings.encryption_keys) if settings.encryption_keys else None

    @classmethod
    def from_settings(cls, settings: PayloadSettings) -> PayloadStore:
        """The store `PAYLOAD_STORE_URL` names: `s3://bucket[/prefix]`, else a local directory (made if missing)."""
        parts = urlsplit(settings.store_url)
        if parts.scheme == "s3":
            return cls(lambda: _s3(settings), url=f"s3://{parts.netloc}{parts.path.rstrip('/')}", settings=settings)
        path = Path(parts.path if parts.scheme == "file" else settings.store_url).expanduser().resolve()
        return cls(lambda: _local(path), url=path.as_uri(), settings=settings)

    @property
    def _backend(self) -> ObjectStore:
        if self._made is None:
            self._made = self._make()
        return self._made

    def offloads(self, size: int) -> bool:
        """Whether a payload of `size` bytes travels as a reference (above `PAYLOAD_OFFLOAD_BYTES`)."""
        return size > self.offload_bytes

    async def put(self, data: bytes, media_type: str, *, encrypt: bool = True) -> PayloadRef:
        """Store `data` and return its reference.

        Args:
            data: The payload.
            media_type: What it is, carried by the reference.
            encrypt: False only for bytes that are already ciphertext (the Temporal codec's output).

        Raises:
            PayloadError: The store refused the write (the message names the store and the key).
        """
        head, body = frame(data, compress=self._compress, ring=self.ring if encrypt else None)
        digest = await _sha256(head, body)
        size = len(head) + len(body)
        ref = PayloadRef(store=self.url, key=PREFIX + digest, size=size, sha256=digest, media_type=media_type)
        # Large objects go up in parts (S3: a multipart upload) instead of being joined into one more copy.
        upload: bytes | list[bytes] = head + body if size < _JOIN_BELOW else [head, body]
        try:
            # Rewriting an existing key is harmless (same bytes) and renews its age for the clean-up.
            await obstore.put_async(self._backend, ref.key, upload)
        except BaseError as exc:
            raise PayloadError(f"cannot store {ref}: {_reason(exc)}") from None
        return ref

    async def get(self, ref: PayloadRef) -> bytes | memoryview:
        """The payload `ref` stands for, after checking the object's size and SHA-256 (a view of the object as
        read when it was stored as is, so a large payload is not copied once more).

        Raises:
            PayloadMissingError: The object is gone, or the reference names another store.
            PayloadCorruptError: Size or hash differ, or it cannot be decrypted or decompressed.
        """
        if ref.store.rstrip("/") != self.url:
            raise PayloadMissingError(f"payload {ref}: not in this runner's store {self.url} (PAYLOAD_STORE_URL)")
        try:
            result = await obstore.get_async(self._backend, ref.key)
            stored = await result.bytes_async()
        except (NotFoundError, FileNotFoundError):  # obstore raises the built-in one for a missing object
            raise PayloadMissingError(f"payload {ref} is missing (expired or deleted)") from None
        except BaseError as exc:
            raise PayloadError(f"cannot read payload {ref}: {_reason(exc)}") from None
        view = memoryview(stored)
        if len(view) != ref.size:
            raise PayloadCorruptError(f"payload {ref} is {len(view)} bytes, the reference says {ref.size}")
        if await _sha256(view) != ref.sha256:
            raise PayloadCorruptError(f"payload {ref} does not match its sha256 {ref.sha256}")
        return unframe(view, ring=self.ring, where=f"payload {ref}")

    async def put_json(self, value: Any) -> PayloadRef:
        """Store a JSON value (as compact UTF-8 JSON)."""
        return await self.put(orjson.dumps(value, option=_JSON_OPTIONS), JSON)

    async def get_json(self, ref: PayloadRef) -> Any:
        """The JSON value `ref` stands for.

        Raises:
            PayloadError: As `get`, or the object is not JSON.
        """
        try:
            return orjson.loads(await self.get(ref))
        except orjson.JSONDecodeError:
            raise PayloadCorruptError(f"payload {ref} is not JSON") from None

    async def gc(self, *, now: datetime | None = None) -> CleanUp:
        """Delete objects older than `PAYLOAD_RETENTION` (age counts from the last write of the same bytes)."""
        cutoff = (now or datetime.now(UTC)) - timedelta(seconds=self.retention)
        seen = deleted = freed = 0
        try:
            async for batch in obstore.list(self._backend, prefix=PREFIX):
                for meta in batch:
                    seen += 1
                    if meta["last_modified"] < cutoff:
                        await obstore.delete_async(self._backend, meta["path"])
                        deleted, freed = deleted + 1, freed + meta["size"]
        except BaseError as exc:
            raise PayloadError(f"clean-up of {self.url} stopped: {_reason(exc)}") from None
        logger.info("payload store %s: %d of %d objects deleted, %d bytes freed", self.url, deleted, seen, freed)
        return CleanUp(seen=seen, deleted=deleted, freed=freed)


async def _sha256(*parts: bytes | memoryview) -> str:
    """Hex SHA-256 of the parts joined; a large payload is hashed in a thread (hashlib lets go of the GIL), so the
    event loop goes on heartbeating and serving other executions meanwhile."""

    def digest() -> str:
        hasher = hashlib.sha256()
        for part in parts:
            hasher.update(part)
        return hasher.hexdigest()

    if sum(len(part) for part in parts) < _HASH_IN_THREAD:
        return digest()
    return await asyncio.to_thread(digest)


def _local(path: Path) -> LocalStore:
    path.mkdir(parents=True, exist_ok=True)
    return LocalStore(prefix=path)


def _s3(settings: PayloadSettings) -> S3Store:
    """An S3 client; credentials and region come from the standard `AWS_*` variables (or the instance's role)."""
    endpoint = settings.s3_endpoint
    options = {"allow_http": True} if endpoint and endpoint.startswith("http://") else None
    given = {
        "endpoint": endpoint,
        "access_key_id": settings.s3_access_key_id,
        "secret_access_key": settings.s3_secret_access_key,
        "session_token": settings.s3_session_token,
        "region": settings.s3_region,
    }
    config = {name: value for name, value in given.items() if value}
    return S3Store.from_url(settings.store_url, client_options=options, config=config)  # type: ignore[arg-type]


def _reason(exc: BaseException) -> str:
    """The first line of a store error (object_store messages name the operation and the key, never credentials)."""
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0][:200]}" if lines else type(exc).__name__
