"""Temporal's side of the store: a storage driver for the SDK's external payload storage and an encryption codec.

`data_converter(store)` is what every client and worker exchanging payloads with this runner uses: above the
threshold a payload goes to the store and history keeps its reference (a claim). The runner's own packaged workflow
uses `workflow_converter(store)` instead: it only hands its request on to its activities and their result back,
so it takes the claims as they are (`Claim`, a few hundred bytes) and gives the same claims back, and the process
that runs both the workflow and the activity downloads and uploads each large payload once, in the activity, not
three more times around the workflow. Only `fetch` (the plan activity reading a large request) resolves one.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import orjson
from temporalio.api.common.v1 import Payload
from temporalio.converter import (
    CompositePayloadConverter,
    DataConverter,
    DefaultPayloadConverter,
    EncodingPayloadConverter,
    ExternalStorage,
    PayloadCodec,
    StorageDriver,
    StorageDriverClaim,
    StorageDriverRetrieveContext,
    StorageDriverSelectContext,
    StorageDriverStoreContext,
)

from ._crypto import KeyRing, frame, unframe
from ._ref import TEMPORAL, PayloadRef
from ._store import PayloadStore

DRIVER_NAME = "workflow-runner-payloads"
ENCRYPTED = b"binary/workflow-runner-encrypted"
"""The `encoding` metadata of a payload the codec encrypted."""
CLAIM = b"binary/workflow-runner-claim"
"""The `encoding` metadata of a claim inside the packaged workflow's worker (never in history: it leaves as the
reference it came in as)."""
JSON_PLAIN = b"json/plain"
"""The encoding Temporal's default converter gives a JSON value (what callers send and expect)."""


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
        """Each payload, serialized and sealed into a new one; a `Claim` passes, to become its reference again (the
        content it names was sealed when it was stored)."""
        return [
            p if p.metadata.get("encoding") == CLAIM else Payload(metadata={"encoding": ENCRYPTED}, data=self._seal(p))
            for p in payloads
        ]

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


def _codec_and_driver(store: PayloadStore) -> tuple[EncryptionCodec | None, StoreDriver]:
    """The encryption codec (with `PAYLOAD_ENCRYPTION_KEY`) and the store driver, which then stores payloads as
    the codec sealed them."""
    codec = EncryptionCodec(store.ring) if store.ring is not None else None
    return codec, StoreDriver(store, already_encrypted=codec is not None)


def _threshold(store: PayloadStore, inline_limit: int | None) -> int:
    return store.offload_bytes if inline_limit is None else min(store.offload_bytes, inline_limit // 2)


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
    codec, driver = _codec_and_driver(store)
    storage = ExternalStorage(drivers=[driver], payload_size_threshold=_threshold(store, inline_limit))
    return dataclasses.replace(base or DataConverter.default, payload_codec=codec, external_storage=storage)


@dataclasses.dataclass(frozen=True)
class Claim:
    """A payload in the store as the packaged workflow holds it: the claim data of its reference, not its bytes."""

    data: Mapping[str, str]


class _ClaimConverter(EncodingPayloadConverter):
    """`Claim` values to `CLAIM` payloads and back, whatever type the workflow code expects there."""

    @property
    def encoding(self) -> str:
        return CLAIM.decode()

    def to_payload(self, value: Any) -> Payload | None:
        if not isinstance(value, Claim):
            return None
        return Payload(metadata={"encoding": CLAIM}, data=orjson.dumps(dict(value.data)))

    def from_payload(self, payload: Payload, type_hint: type | None = None) -> Any:
        return Claim(orjson.loads(payload.data))


class _ClaimsFirst(CompositePayloadConverter):
    """The default payload converter, with `Claim` values understood."""

    def __init__(self) -> None:
        super().__init__(_ClaimConverter(), *DefaultPayloadConverter.default_encoding_payload_converters)


class _HandOn(StorageDriver):
    """The packaged workflow's driver: a claim in is a `CLAIM` payload, a `CLAIM` payload out is the same claim (no
    bytes move); anything else above the threshold (a large failure detail) is stored for real."""

    def __init__(self, real: StoreDriver) -> None:
        self._real = real

    def name(self) -> str:
        """The real driver's name: the references this driver reads and writes are the real driver's."""
        return DRIVER_NAME

    async def store(self, context: StorageDriverStoreContext, payloads: Sequence[Payload]) -> list[StorageDriverClaim]:
        """The claim a `CLAIM` payload carries; other payloads put in the store."""
        claims = []
        for payload in payloads:
            if payload.metadata.get("encoding") == CLAIM:
                claims.append(StorageDriverClaim(claim_data=orjson.loads(payload.data)))
            else:
                claims.extend(await self._real.store(context, [payload]))
        return claims

    async def retrieve(
        self, context: StorageDriverRetrieveContext, claims: Sequence[StorageDriverClaim]
    ) -> list[Payload]:
        """Each claim as a `CLAIM` payload (nothing is read)."""
        return [Payload(metadata={"encoding": CLAIM}, data=orjson.dumps(dict(c.claim_data))) for c in claims]


def workflow_converter(store: PayloadStore, *, inline_limit: int | None = None) -> DataConverter:
    """The converter of the worker that runs `RunServerlessWorkflow`: large payloads stay claims (module docstring).

    Same threshold and encryption as `data_converter`; `CLAIM` payloads always leave as references.
    """
    codec, real = _codec_and_driver(store)
    driver = _HandOn(real)
    threshold = _threshold(store, inline_limit)

    def select(_: StorageDriverSelectContext, payload: Payload) -> StorageDriver | None:
        return driver if payload.metadata.get("encoding") == CLAIM or payload.ByteSize() >= threshold else None

    storage = ExternalStorage(drivers=[driver], driver_selector=select, payload_size_threshold=0)
    return dataclasses.replace(
        DataConverter.default, payload_converter_class=_ClaimsFirst, payload_codec=codec, external_storage=storage
    )


async def fetch(claim: Claim, store: PayloadStore) -> Any:
    """The value a claim stands for, read and verified from the store (and decrypted).

    Raises:
        PayloadError: The object is missing or is not what its reference says (the message names the reference).
    """
    codec, driver = _codec_and_driver(store)
    [payload] = await driver.retrieve(StorageDriverRetrieveContext(), [StorageDriverClaim(claim_data=dict(claim.data))])
    if codec is not None:
        [payload] = await codec.decode([payload])
    if payload.metadata.get("encoding") == JSON_PLAIN:
        return orjson.loads(payload.data)  # what the SDK's converter does, without a stdlib json pass over it
    return DataConverter.default.payload_converter.from_payload(payload)
