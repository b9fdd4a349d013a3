"""The AMQP ingress's decoding step: a delivery's body and properties in, `ExecuteCommand` out, or `DecodeError`.

The message contract:

- body: a JSON object (UTF-8) with `execution_id`, `workflow_yaml` (required, non-empty), `input` (any JSON value,
  default `{}`), `secrets` (object, default `{}`), `metadata` (object of strings, default `{}`) and `deadline`
  (RFC 3339 with a time zone, optional); any other field is refused, so a misspelt field never goes unnoticed;
- `message_id` property: the execution id when the body has none;
- `content_type`: absent, `application/json`, `text/json` or any `…+json`;
- `content_encoding`: absent, `identity`, `gzip` or `deflate` (the size limit applies before and after inflating,
  and nothing may follow the compressed data);
- `x-delivery-count` header (set by quorum queues): the attempt is this count + 1.

Issues are located by JSON Pointer into the body (`/metadata/tenant`), except `/properties/<name>` and
`/headers/<name>`, which point at the AMQP properties. No I/O: it can be tested and benchmarked alone. Document
validation is not done here; the execution service does it when the command starts. A refusal never quotes a
field's value (it may be a secret): it names the field and what is wrong with it. The checks every ingress shares
(id, nesting depth, metadata bounds) are `consumer._decode`'s.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

import orjson

from executor import MASK, ExecuteCommand, Issue, Source, escape

from ._decode import DecodeError, check_id, json_type, metadata_map, secrets_object, usable_id, within_limits

__all__ = ["DEFAULT_MAX_BYTES", "DecodeError", "MessageProperties", "Properties", "decode", "encode", "without_secrets"]

DEFAULT_MAX_BYTES = 4 * 1024 * 1024
DELIVERY_COUNT = "x-delivery-count"
FIELDS = ("execution_id", "workflow_yaml", "input", "secrets", "metadata", "deadline")
_JSON_TYPES = frozenset({"", "application/json", "text/json"})
_WBITS = {"gzip": 31, "deflate": 15}  # zlib window bits selecting the gzip and zlib wrappers


class MessageProperties(Protocol):
    """What decoding reads of a delivery besides its body (an `aio_pika.IncomingMessage` fits)."""

    @property
    def message_id(self) -> str | None: ...

    @property
    def content_type(self) -> str | None: ...

    @property
    def content_encoding(self) -> str | None: ...

    @property
    def headers(self) -> Mapping[str, Any]: ...

    @property
    def redelivered(self) -> bool | None: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class Properties:
    """Plain message properties, for tests, benchmarks and producers that build messages."""

    message_id: str | None = None
    content_type: str | None = "application/json"
    content_encoding: str | None = None
    headers: Mapping[str, Any] = field(default_factory=dict)
    redelivered: bool | None = False


class _Refused(Exception):
    """One issue that stops decoding at once (the body cannot even be read)."""

    def __init__(self, path: str, message: str, code: str = "invalid") -> None:
        super().__init__(message)
        self.issue = Issue(path=path, message=message, code=code)


def read_fields(body: bytes, properties: MessageProperties, *, max_bytes: int = DEFAULT_MAX_BYTES) -> dict[str, Any]:
    """The body's JSON object, before its fields are checked (the ingress resolves `*_ref` fields in between).

    Raises:
        DecodeError: The body cannot be read (size, content type or encoding, not a JSON object).
    """
    try:
        return _body(body, properties, max_bytes)
    except _Refused as exc:
        raise DecodeError([exc.issue], usable_id(properties.message_id)) from None


def decode(
    body: bytes,
    properties: MessageProperties,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    fields: Mapping[str, Any] | None = None,
) -> ExecuteCommand:
    """The command a delivery asks for.

    Args:
        body: The message body as delivered.
        properties: The delivery's properties and headers.
        max_bytes: Largest body accepted, before and after inflating (`AMQP_MAX_MESSAGE_BYTES`).
        fields: The body as `read_fields` read it, its payload references resolved; read from `body` if None.

    Raises:
        DecodeError: Every problem found, with the execution id the message names when it names one.
    """
    fallback_id = usable_id(properties.message_id)
    try:
        attempt = _attempt(properties)
        fields = _body(body, properties, max_bytes) if fields is None else fields
    except _Refused as exc:
        raise DecodeError([exc.issue], fallback_id) from None
    issues: list[Issue] = []
    execution_id = _execution_id(fields, fallback_id, issues)
    workflow_yaml = _workflow_yaml(fields, issues)
    secrets = secrets_object(fields.get("secrets"), issues)
    metadata = metadata_map(fields.get("metadata"), issues)
    deadline = _deadline(fields, issues)
    data = fields.get("input", {})
    within_limits(data, "/input", issues)
    issues.extend(Issue(path=f"/{escape(key)}", message="unknown field") for key in fields if key not in FIELDS)
    if issues or execution_id is None:
        raise DecodeError(issues, execution_id or fallback_id)
    return ExecuteCommand(
        execution_id=execution_id,
        workflow_yaml=workflow_yaml,
        input=data,
        secrets=secrets,
        metadata=metadata,
        deadline=deadline,
        source=Source.AMQP,
        attempt=attempt,
    )


def _attempt(properties: MessageProperties) -> int:
    count = (properties.headers or {}).get(DELIVERY_COUNT)
    if count is None:
        # No broker count (not a quorum queue): a redelivery is at least the second attempt.
        return 2 if properties.redelivered else 1
    if isinstance(count, bool) or not isinstance(count, int) or count < 0:
        raise _Refused(f"/headers/{DELIVERY_COUNT}", f"must be a non-negative integer, got {json_type(count)}")
    return count + 1


def _body(body: bytes, properties: MessageProperties, max_bytes: int) -> dict[str, Any]:
    _check_size(len(body), max_bytes, "message body")
    media_type = (properties.content_type or "").split(";", 1)[0].strip().lower()
    if media_type not in _JSON_TYPES and not media_type.endswith("+json"):
        raise _Refused("/properties/content_type", f"must be application/json, got {_show(properties.content_type)}")
    text = _inflate(body, (properties.content_encoding or "").strip().lower(), max_bytes)
    try:
        data = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise _Refused("", f"not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise _Refused("", f"must be a JSON object, got {json_type(data)}")
    return data


def _check_size(size: int, max_bytes: int, what: str) -> None:
    if size > max_bytes:
        raise _Refused("", f"{what} is over the limit of {max_bytes} bytes (AMQP_MAX_MESSAGE_BYTES)", "too-large")


def _inflate(body: bytes, encoding: str, max_bytes: int) -> bytes:
    if encoding in ("", "identity"):
        return body
    wbits = _WBITS.get(encoding)
    if wbits is None:
        raise _Refused("/properties/content_encoding", f"must be gzip, deflate or identity, got {_show(encoding)}")
    inflater = zlib.decompressobj(wbits)
    try:
        # Bounded: a small "zip bomb" cannot make us allocate more than the limit.
        text = inflater.decompress(body, max_bytes + 1)
    except zlib.error as exc:
        raise _Refused("/properties/content_encoding", f"body is not valid {encoding} data ({exc})") from None
    _check_size(len(text), max_bytes, "inflated message body")
    if not inflater.eof:
        raise _Refused("/properties/content_encoding", f"body is truncated {encoding} data")
    if inflater.unused_data:
        # Junk after the stream may be a second member a producer meant to send, or a smuggled payload: refused.
        junk = len(inflater.unused_data)
        raise _Refused("/properties/content_encoding", f"{junk} bytes follow the end of the {encoding} data")
    return text


def _execution_id(fields: Mapping[str, Any], fallback: str | None, issues: list[Issue]) -> str | None:
    if "execution_id" not in fields:
        if fallback is None:
            issues.append(Issue(path="/execution_id", message="required (or set the message_id property)"))
        return fallback
    return check_id(fields["execution_id"], issues)


def _workflow_yaml(fields: Mapping[str, Any], issues: list[Issue]) -> str:
    value = fields.get("workflow_yaml")
    if value is None:
        issues.append(Issue(path="/workflow_yaml", message="required"))
    elif not isinstance(value, str):
        issues.append(Issue(path="/workflow_yaml", message=f"must be a string, got {json_type(value)}"))
    elif not value.strip():
        issues.append(Issue(path="/workflow_yaml", message="must not be empty"))
    else:
        return value
    return ""


def _deadline(fields: Mapping[str, Any], issues: list[Issue]) -> datetime | None:
    value = fields.get("deadline")
    if value is None:
        return None
    parsed = _parse_time(value) if isinstance(value, str) else None
    if parsed is None or parsed.tzinfo is None:
        # Not quoted: a misplaced secret must not come back in the reply, the dead letter's headers or an event.
        message = f"must be an RFC 3339 time with a zone, got a {json_type(value)} that is not one"
        issues.append(Issue(path="/deadline", message=message))
        return None
    return parsed


def _parse_time(text: str) -> datetime | None:
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None


def _show(value: Any, limit: int = 40) -> str:
    """A protocol property's value for a message (never a body field: those may hold secrets)."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def without_secrets(body: bytes, properties: MessageProperties, *, max_bytes: int = DEFAULT_MAX_BYTES) -> bytes | None:
    """The body with every value under `secrets` replaced by `***`, as plain JSON (what a dead letter keeps).

    None when the body cannot be read as a JSON object (not JSON, bad compression, over the limit): then nothing
    says where secrets may be in it, and the caller drops it.
    """
    try:
        fields = _body(body, properties, max_bytes)
    except _Refused:
        return None
    if "secrets" in fields:
        secrets = fields["secrets"]
        fields = {**fields, "secrets": dict.fromkeys(secrets, MASK) if isinstance(secrets, dict) else MASK}
    try:
        return orjson.dumps(fields)
    except orjson.JSONEncodeError:  # nested past what any encoder writes: unreadable to whoever reads it next
        return None


def encode(
    *,
    execution_id: str,
    workflow_yaml: str,
    input: Any = None,
    secrets: Mapping[str, Any] | None = None,
    metadata: Mapping[str, str] | None = None,
) -> bytes:
    """The body of an execute message (what `decode` reads back)."""
    return orjson.dumps(
        body_fields(
            execution_id=execution_id, workflow_yaml=workflow_yaml, input=input, secrets=secrets, metadata=metadata
        )
    )


def body_fields(
    *,
    execution_id: str,
    workflow_yaml: str,
    input: Any = None,
    secrets: Mapping[str, Any] | None = None,
    metadata: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The JSON object of an execute message, before encoding (a producer may swap fields for references)."""
    body: dict[str, Any] = {"execution_id": execution_id, "workflow_yaml": workflow_yaml}
    if input is not None:
        body["input"] = input
    if secrets:
        body["secrets"] = dict(secrets)
    if metadata:
        body["metadata"] = dict(metadata)
    return body
