"""Large payloads as claim checks: the payload store, its references, encryption and Temporal's data converter.

    store = PayloadStore.from_settings(Settings.from_env(os.environ).payloads)
    ref = await store.put_json(value)           # PayloadRef: store, key, size, sha256, media_type
    value = await store.get_json(ref)           # verified; PayloadMissingError / PayloadCorruptError name the ref
    client = await Client.connect(address, data_converter=data_converter(store))

See docs/payloads.md. The Temporal names load temporalio on first use only (the CLI's other commands never need it).
"""

from typing import TYPE_CHECKING, Any

from ._claims import (
    OUTPUT_REF,
    REFERENCE_FIELDS,
    ClaimError,
    fetch_output,
    has_claims,
    offload_command,
    offload_output,
    resolve_claims,
)
from ._crypto import KeyRing
from ._ref import (
    JSON,
    OCTETS,
    YAML,
    InvalidReferenceError,
    PayloadCorruptError,
    PayloadError,
    PayloadMissingError,
    PayloadRef,
)
from ._store import CleanUp, PayloadStore

if TYPE_CHECKING:
    from ._temporal import EncryptionCodec, StoreDriver, data_converter

_TEMPORAL = ("EncryptionCodec", "StoreDriver", "data_converter")

__all__ = [
    "JSON",
    "OCTETS",
    "OUTPUT_REF",
    "REFERENCE_FIELDS",
    "YAML",
    "ClaimError",
    "CleanUp",
    "EncryptionCodec",
    "InvalidReferenceError",
    "KeyRing",
    "PayloadCorruptError",
    "PayloadError",
    "PayloadMissingError",
    "PayloadRef",
    "PayloadStore",
    "StoreDriver",
    "data_converter",
    "fetch_output",
    "has_claims",
    "offload_command",
    "offload_output",
    "resolve_claims",
]


def __getattr__(name: str) -> Any:
    if name in _TEMPORAL:
        from . import _temporal  # noqa: PLC0415 - temporalio loads when a Temporal name is first used

        return getattr(_temporal, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
