"""Large payloads as claim checks: the payload store, its references, encryption and Temporal's data converter.

    store = PayloadStore.from_settings(Settings.from_env(os.environ).payloads)
    ref = await store.put_json(value)           # PayloadRef: store, key, size, sha256, media_type
    value = await store.get_json(ref)           # verified; PayloadMissingError / PayloadCorruptError name the ref
    client = await Client.connect(address, data_converter=data_converter(store))

See docs/payloads.md.
"""

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
from ._temporal import EncryptionCodec, StoreDriver, data_converter

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
