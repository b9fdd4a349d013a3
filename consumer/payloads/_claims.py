"""Claim checks in commands and results: `*_ref` fields resolved before a run, large outputs replaced by a ref."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from ._ref import JSON, YAML, InvalidReferenceError, PayloadCorruptError, PayloadError, PayloadMissingError, PayloadRef
from ._store import PayloadStore

REFERENCE_FIELDS = {"workflow_yaml_ref": ("workflow_yaml", YAML), "input_ref": ("input", JSON)}
"""A command's reference field → the inline field it stands for, and what the object must hold."""
OUTPUT_REF = "output_ref"


class ClaimError(PayloadError):
    """A reference in a command cannot be used: malformed, missing, altered or not what it should be; never
    passes by retrying. `path` locates it in the command (`/input_ref`)."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path
        self.message = message


def has_claims(fields: Mapping[str, Any]) -> bool:
    """Whether a command object carries any reference field."""
    return any(name in fields for name in REFERENCE_FIELDS)


async def resolve_claims(fields: Mapping[str, Any], store: PayloadStore) -> dict[str, Any]:
    """`fields` with each reference field replaced by the inline field it stands for, read back verified.

    Raises:
        ClaimError: A reference is malformed, beside its inline field, missing, altered or not decodable.
        PayloadError: The store could not be reached (can pass: the caller retries).
    """
    resolved = dict(fields)
    for ref_field, (field, media_type) in REFERENCE_FIELDS.items():
        if ref_field not in resolved:
            continue
        path = f"/{ref_field}"
        if field in resolved:
            raise ClaimError(path, f"give {field} or {ref_field}, not both")
        try:
            ref = PayloadRef.from_dict(resolved.pop(ref_field), where=path)
            resolved[field] = _decode(await store.get(ref), media_type, ref)
        except (InvalidReferenceError, PayloadMissingError, PayloadCorruptError) as exc:
            raise ClaimError(path, str(exc).removeprefix(f"{path}: ")) from None
    return resolved


def _decode(data: bytes | memoryview, media_type: str, ref: PayloadRef) -> Any:
    try:
        return bytes(data).decode() if media_type == YAML else orjson.loads(data)
    except (UnicodeDecodeError, orjson.JSONDecodeError):
        kind = "UTF-8 text" if media_type == YAML else "JSON"
        raise PayloadCorruptError(f"payload {ref} is not {kind}") from None


async def offload_output(result: Mapping[str, Any], store: PayloadStore) -> dict[str, Any]:
    """A result object whose `output` above `PAYLOAD_OFFLOAD_BYTES` is replaced by `output_ref`.

    Raises:
        PayloadError: The store refused the write (can pass: the caller retries).
    """
    output = result.get("output")
    if output is None:
        return dict(result)
    encoded = orjson.dumps(output, default=str, option=orjson.OPT_NON_STR_KEYS)
    if not store.offloads(len(encoded)):
        return dict(result)
    ref = await store.put(encoded, JSON)
    return {**{key: value for key, value in result.items() if key != "output"}, OUTPUT_REF: ref.to_dict()}


async def fetch_output(result: Mapping[str, Any], store: PayloadStore) -> dict[str, Any]:
    """A result object with `output_ref` read back into `output` (what `submit` prints).

    Raises:
        PayloadError: The reference cannot be read (named in the message).
    """
    if OUTPUT_REF not in result:
        return dict(result)
    ref = PayloadRef.from_dict(result[OUTPUT_REF], where=OUTPUT_REF)
    rest = {key: value for key, value in result.items() if key != OUTPUT_REF}
    return {**rest, "output": await store.get_json(ref)}


async def offload_command(fields: Mapping[str, Any], store: PayloadStore) -> dict[str, Any]:
    """A command object whose document or input above `PAYLOAD_OFFLOAD_BYTES` is replaced by its reference
    (what `submit` sends, so messages and frames stay small)."""
    offloaded = dict(fields)
    document = offloaded.get("workflow_yaml")
    if isinstance(document, str) and store.offloads(len(document.encode())):
        offloaded["workflow_yaml_ref"] = (await store.put(offloaded.pop("workflow_yaml").encode(), YAML)).to_dict()
    if "input" in offloaded:
        encoded = orjson.dumps(offloaded["input"], option=orjson.OPT_NON_STR_KEYS)
        if store.offloads(len(encoded)):
            del offloaded["input"]
            offloaded["input_ref"] = (await store.put(encoded, JSON)).to_dict()
    return offloaded
