"""Temporal's side of the store: a storage driver for the SDK's external payload storage and an encryption codec."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from temporalio.api.common.v1 import Payload
from temporalio.converter import (
    DataConverter,
    ExternalStorage,
    PayloadCodec,
    StorageDriver,
    StorageDriverClaim,
    StorageDriverRetrieveContext,
    StorageDriverStoreContext,
)

from ._crypto import KeyRing, frame, unframe
from ._ref import TEMPORAL, PayloadRef
from ._store import PayloadStore

DRIVER_NAME = "workflow-runner-payloads"
ENCRYPTED = b"binary/workflow-runner-encrypted"
"""The `encoding` metadata of a payload the codec encrypted."""


class StoreDriver(StorageDriver):
    """Keeps Temporal payloads above the threshold in the payload store; history holds the reference."""

    def __init__(self, store: PayloadStore, *, already_encrypted: bool) -> None:
        self._store = store
        self._already_encrypted = already_encrypted

    def name(self) -> str:
        """The name history records beside each claim (stable: retrieval looks the driver up by it)."""
        return DRIVER_NAME

    async def store(self, context: StorageDriverStoreContext, payloads: Sequence[Payload]) -> list[StorageDriverClaim]:
        """Put each payload (serialized) and return its reference as the claim."""
        claims = []
        for payload in payloads:
            ref = await self._store.put(payload.SerializeToString(), TEMPORAL, encrypt=not self._already_encrypted)
            claims.append(StorageDriverClaim(claim_data={k: str(v) for k, v in ref.to_dict().items()}))
        return claims

    async def retrieve(
        self, context: StorageDriverRetrieveContext, claims: Sequence[StorageDriverClaim]
    ) -> list[Payload]:
        """Get each claimed payload back, verified (a `PayloadError` names the reference otherwise)."""
        payloads = []
        for claim in claims:
            data = dict(claim.claim_data)
            ref = PayloadRef.from_dict({**data, "size": int(data.get("size", "-1"))}, where="Temporal claim")
            payloads.append(_parse(await self._store.get(ref)))
        return payloads


class EncryptionCodec(PayloadCodec):
    """Encrypts every payload (the key ring's current key) so history holds no plain secrets; decrypts with any."""

    def __init__(self, ring: KeyRing) -> None:
        self._ring = ring

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        """Each payload, serialized and sealed into a new one."""
        return [Payload(metadata={"encoding": ENCRYPTED}, data=self._seal(p)) for p in payloads]

    def _seal(self, payload: Payload) -> bytes:
        head, body = frame(payload.SerializeToString(), compress=False, ring=self._ring)
        return head + body

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        """Each sealed payload opened; others (written before encryption was on) pass unchanged."""
        return [
            _parse(unframe(p.data, ring=self._ring, where="Temporal payload"))
            if p.metadata.get("encoding") == ENCRYPTED
            else p
            for p in payloads
        ]


def _parse(data: bytes | memoryview) -> Payload:
    # protobuf parses any buffer; its stubs only say bytes. A view spares copying a large payload once more.
    return Payload.FromString(data)  # type: ignore[arg-type]


def data_converter(
    store: PayloadStore, base: DataConverter | None = None, *, inline_limit: int | None = None
) -> DataConverter:
    """The data converter a worker or client needs to exchange payloads with this runner.

    Payloads above `PAYLOAD_OFFLOAD_BYTES` go to the store through the SDK's external storage (history keeps a
    reference); with `PAYLOAD_ENCRYPTION_KEY` set every payload is encrypted first, inline ones included.

    Args:
        store: The payload store (`PayloadStore.from_settings(Settings.from_env(os.environ).payloads)`).
        base: The converter to extend (its payload and failure converters are kept); the SDK's default if None.
        inline_limit: Temporal's own payload limit (`TEMPORAL_MAX_PAYLOAD_BYTES`): the threshold is the smaller of
            it (less room for the encoding) and `PAYLOAD_OFFLOAD_BYTES`.
    """
    codec = EncryptionCodec(store.ring) if store.ring is not None else None
    driver = StoreDriver(store, already_encrypted=codec is not None)
    threshold = store.offload_bytes if inline_limit is None else min(store.offload_bytes, inline_limit // 2)
    storage = ExternalStorage(drivers=[driver], payload_size_threshold=threshold)
    return dataclasses.replace(base or DataConverter.default, payload_codec=codec, external_storage=storage)
