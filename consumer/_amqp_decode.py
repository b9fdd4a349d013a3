"""The AMQP ingress's decoding step: a delivery's body and properties in, `ExecuteCommand` out, or `DecodeError`.

The message contract:

- body: a JSON object (UTF-8) with `execution_id`, `workflow_yaml` (required, non-empty), `input` (any JSON value,
  default `{}`), `secrets` (object, default `{}`), `metadata` (object of strings, default `{}`) and `deadline`
  (RFC 3339 with a time zone, optional); any other field is refused, so a misspelt field never goes unnoticed;
- `message_id` property: the execution id when the body has none;
- `content_type`: absent, `application/json`, `text/json` or any `…+json`;
- `content_encoding`: absent, `identity`, `gzip` or `deflate` (the size limit applies before and after inflating);
- `x-delivery-count` header (set by quorum queues): the attempt is this count + 1.

Issues are located by JSON Pointer into the body (`/metadata/tenant`), except `/properties/<name>` and
`/headers/<name>`, which point at the AMQP properties. No I/O: it can be tested and benchmarked alone. Document
validation is not done here; the execution service does it when the command starts.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

import orjson

from executor import ExecuteCommand, Issue, Source

from ._errors import ConsumerError

DEFAULT_MAX_BYTES = 4 * 1024 * 1024
MAX_EXECUTION_ID = 256
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


class DecodeError(ConsumerError, ValueError):
    """A message that cannot become a command.

    Attributes:
        issues: Where and why, each located by JSON Pointer (see the module docstring).
        execution_id: The execution the message names (body or `message_id`), None when it names none.
    """

    def __init__(self, issues: Sequence[Issue], execution_id: str | None = None) -> None:
        super().__init__("; ".join(f"{issue.path or '/'}: {issue.message}" for issue in issues))
        self.issues = tuple(issues)
        self.execution_id = execution_id


class _Refused(Exception):
    """One issue that stops decoding at once (the body cannot even be read)."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(message)
        self.issue = Issue(path=path, message=message)


def decode(body: bytes, properties: MessageProperties, *, max_bytes: int = DEFAULT_MAX_BYTES) -> ExecuteCommand:
    """The command a delivery asks for.

    Args:
        body: The message body as delivered.
        properties: The delivery's properties and headers.
        max_bytes: Largest body accepted, before and after inflating (`AMQP_MAX_MESSAGE_BYTES`).

    Raises:
        DecodeError: Every problem found, with the execution id the message names when it names one.
    """
    fallback_id = _usable_id(properties.message_id)
    try:
        attempt = _attempt(properties)
        fields = _body(body, properties, max_bytes)
    except _Refused as exc:
        raise DecodeError([exc.issue], fallback_id) from None
    issues: list[Issue] = []
    execution_id = _execution_id(fields, fallback_id, issues)
    workflow_yaml = _workflow_yaml(fields, issues)
    secrets, metadata = _secrets(fields, issues), _metadata(fields, issues)
    deadline = _deadline(fields, issues)
    issues.extend(Issue(path=f"/{_escape(key)}", message="unknown field") for key in fields if key not in FIELDS)
    if issues or execution_id is None:
        raise DecodeError(issues, execution_id or fallback_id)
    return ExecuteCommand(
        execution_id=execution_id,
        workflow_yaml=workflow_yaml,
        input=fields.get("input", {}),
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
        raise _Refused(f"/headers/{DELIVERY_COUNT}", f"must be a non-negative integer, got {_show(count)}")
    return count + 1


def _body(body: bytes, properties: MessageProperties, max_bytes: int) -> dict[str, Any]:
    _check_size(len(body), max_bytes, "message body")
    media_type = (properties.content_type or "").split(";", 1)[0].strip().lower()
    if media_type not in _JSON_TYPES and not media_type.endswith("+json"):
        raise _Refused("/properties/content_type", f"must be application/json, got {properties.content_type!r}")
    text = _inflate(body, (properties.content_encoding or "").strip().lower(), max_bytes)
    try:
        data = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise _Refused("", f"not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise _Refused("", f"must be a JSON object, got {_json_type(data)}")
    return data


def _check_size(size: int, max_bytes: int, what: str) -> None:
    if size > max_bytes:
        raise _Refused("", f"{what} is over the limit of {max_bytes} bytes (AMQP_MAX_MESSAGE_BYTES)")


def _inflate(body: bytes, encoding: str, max_bytes: int) -> bytes:
    if encoding in ("", "identity"):
        return body
    wbits = _WBITS.get(encoding)
    if wbits is None:
        raise _Refused("/properties/content_encoding", f"must be gzip, deflate or identity, got {encoding!r}")
    inflater = zlib.decompressobj(wbits)
    try:
        # Bounded: a small "zip bomb" cannot make us allocate more than the limit.
        text = inflater.decompress(body, max_bytes + 1)
    except zlib.error as exc:
        raise _Refused("/properties/content_encoding", f"body is not valid {encoding} data ({exc})") from None
    _check_size(len(text), max_bytes, "inflated message body")
    if not inflater.eof:
        raise _Refused("/properties/content_encoding", f"body is truncated {encoding} data")
    return text


def _usable_id(value: Any) -> str | None:
    if isinstance(value, str) and value.strip() and len(value) <= MAX_EXECUTION_ID and value.isprintable():
        return value
    return None


def _execution_id(fields: Mapping[str, Any], fallback: str | None, issues: list[Issue]) -> str | None:
    if "execution_id" not in fields:
        if fallback is None:
            issues.append(Issue(path="/execution_id", message="required (or set the message_id property)"))
        return fallback
    value = fields["execution_id"]
    if not isinstance(value, str):
        issues.append(Issue(path="/execution_id", message=f"must be a string, got {_json_type(value)}"))
        return None
    if _usable_id(value) is None:
        message = f"must be non-empty, printable and at most {MAX_EXECUTION_ID} characters"
        issues.append(Issue(path="/execution_id", message=message))
        return None
    return value


def _workflow_yaml(fields: Mapping[str, Any], issues: list[Issue]) -> str:
    value = fields.get("workflow_yaml")
    if value is None:
        issues.append(Issue(path="/workflow_yaml", message="required"))
    elif not isinstance(value, str):
        issues.append(Issue(path="/workflow_yaml", message=f"must be a string, got {_json_type(value)}"))
    elif not value.strip():
        issues.append(Issue(path="/workflow_yaml", message="must not be empty"))
    else:
        return value
    return ""


def _secrets(fields: Mapping[str, Any], issues: list[Issue]) -> dict[str, Any]:
    return _object(fields, "secrets", issues) or {}


def _metadata(fields: Mapping[str, Any], issues: list[Issue]) -> dict[str, str]:
    metadata = _object(fields, "metadata", issues) or {}
    for key, value in metadata.items():
        if not isinstance(value, str):
            issues.append(Issue(path=f"/metadata/{_escape(key)}", message=f"must be a string, got {_json_type(value)}"))
    return metadata


def _object(fields: Mapping[str, Any], name: str, issues: list[Issue]) -> dict[str, Any] | None:
    value = fields.get(name)
    if value is None or isinstance(value, dict):
        return value
    issues.append(Issue(path=f"/{name}", message=f"must be an object, got {_json_type(value)}"))
    return None


def _deadline(fields: Mapping[str, Any], issues: list[Issue]) -> datetime | None:
    value = fields.get("deadline")
    if value is None:
        return None
    parsed = _parse_time(value) if isinstance(value, str) else None
    if parsed is None or parsed.tzinfo is None:
        issues.append(Issue(path="/deadline", message=f"must be an RFC 3339 time with a zone, got {_show(value)}"))
        return None
    return parsed


def _parse_time(text: str) -> datetime | None:
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None


def _escape(key: str) -> str:
    """One JSON Pointer reference token (RFC 6901)."""
    return key.replace("~", "~0").replace("/", "~1")


_TYPE_NAMES: tuple[tuple[type | tuple[type, ...], str], ...] = (
    (bool, "boolean"),
    ((int, float), "number"),
    (str, "string"),
    (list, "array"),
    (dict, "object"),
)


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    return next((name for kind, name in _TYPE_NAMES if isinstance(value, kind)), type(value).__name__)


def _show(value: Any, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def encode(
    *,
    execution_id: str,
    workflow_yaml: str,
    input: Any = None,
    secrets: Mapping[str, Any] | None = None,
    metadata: Mapping[str, str] | None = None,
) -> bytes:
    """The body of an execute message (what `decode` reads back)."""
    body: dict[str, Any] = {"execution_id": execution_id, "workflow_yaml": workflow_yaml}
    if input is not None:
        body["input"] = input
    if secrets:
        body["secrets"] = dict(secrets)
    if metadata:
        body["metadata"] = dict(metadata)
    return orjson.dumps(body)
