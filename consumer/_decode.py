"""What every ingress's decoding step shares: one `DecodeError`, the id check, JSON within limits, bounded metadata.

Each ingress (gRPC, AMQP, Temporal, the CLI) turns its own wire format into an `ExecuteCommand`; the checks that
do not depend on the wire live here, so a request refused on one ingress is refused with the same words on the
others. Issues are located by JSON Pointer into the request (`/input/a/0`, `/metadata/tenant`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from executor import MAX_JSON_DEPTH, Issue, describe_issues, escape, too_deep

from ._errors import ConsumerError

MAX_EXECUTION_ID = 256
MAX_METADATA_ENTRIES = 64
"""Entries of a command's `metadata` (copied into every lifecycle event, so it must stay small)."""
MAX_METADATA_BYTES = 16 * 1024
"""UTF-8 bytes of a command's `metadata`, keys and values together."""
_UNREPRESENTABLE = "not representable as UTF-8 JSON (an integer beyond 64 bits, or a lone UTF-16 surrogate)"


class DecodeError(ConsumerError, ValueError):
    """A request that cannot become a command.

    Attributes:
        issues: Where and why, each located by JSON Pointer.
        execution_id: The execution the request names, None when it names none (or not usably).
    """

    def __init__(self, issues: Sequence[Issue], execution_id: str | None = None) -> None:
        super().__init__(describe_issues(issues))
        self.issues = tuple(issues)
        self.execution_id = execution_id

    @property
    def too_large(self) -> bool:
        """True when every issue is a size limit (the Temporal ingress answers `PayloadTooLarge`)."""
        return all(issue.code == "too-large" for issue in self.issues)


def usable_id(value: Any) -> str | None:
    """`value` when it can name an execution (a non-empty printable string of at most 256 characters)."""
    if isinstance(value, str) and value.strip() and len(value) <= MAX_EXECUTION_ID and value.isprintable():
        return value
    return None


def check_id(value: Any, issues: list[Issue], path: str = "/execution_id") -> str | None:
    """The execution id, or None with an issue saying why it cannot be one (never quoting it)."""
    if value is None or value == "":
        issues.append(Issue(path=path, message="required"))
    elif not isinstance(value, str):
        issues.append(Issue(path=path, message=f"must be a string, got {json_type(value)}"))
    elif usable_id(value) is None:
        message = f"must be non-empty, printable and at most {MAX_EXECUTION_ID} characters"
        issues.append(Issue(path=path, message=message))
    else:
        return value
    return None


def parse_json(text: str | bytes, path: str, issues: list[Issue], default: Any = None) -> Any:
    """JSON text as a value within `MAX_JSON_DEPTH`; `default` with an issue when it is not."""
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        # orjson's message names the position, never the text.
        issues.append(Issue(path=path, message=f"not valid JSON: {exc}"))
        return default
    return value if within_limits(value, path, issues) else default


def within_limits(value: Any, path: str, issues: list[Issue]) -> bool:
    """Whether a decoded value can travel on (nesting within `MAX_JSON_DEPTH`, encodable as UTF-8 JSON)."""
    where = too_deep(value)
    if where is not None:
        at = path + (where if where != "/" else "")
        issues.append(Issue(path=at, message=f"nested more than {MAX_JSON_DEPTH} levels deep (MAX_JSON_DEPTH)"))
        return False
    try:
        orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS)
    except orjson.JSONEncodeError:
        issues.append(Issue(path=path, message=_UNREPRESENTABLE))
        return False
    return True


def secrets_object(value: Any, issues: list[Issue], path: str = "/secrets") -> dict[str, Any]:
    """The secrets mapping ({} when absent or null); anything else is an issue (naming its type, not its value)."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        issues.append(Issue(path=path, message=f"must be an object, got {json_type(value)}"))
        return {}
    return value if within_limits(value, path, issues) else {}


def metadata_map(value: Any, issues: list[Issue], path: str = "/metadata") -> dict[str, str]:
    """The metadata map: an object of strings within `MAX_METADATA_ENTRIES` and `MAX_METADATA_BYTES`."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        issues.append(Issue(path=path, message=f"must be an object of strings, got {json_type(value)}"))
        return {}
    if len(value) > MAX_METADATA_ENTRIES:
        message = f"{len(value)} entries, over the limit of {MAX_METADATA_ENTRIES} (MAX_METADATA_ENTRIES)"
        issues.append(Issue(path=path, message=message, code="limit"))
        return {}
    size = 0
    for key, item in value.items():
        if not isinstance(item, str):
            issues.append(Issue(path=f"{path}/{escape(key)}", message=f"must be a string, got {json_type(item)}"))
            continue
        size += len(str(key).encode(errors="replace")) + len(item.encode(errors="replace"))
    if size > MAX_METADATA_BYTES:
        message = f"{size} bytes, over the limit of {MAX_METADATA_BYTES} (MAX_METADATA_BYTES)"
        issues.append(Issue(path=path, message=message, code="limit"))
    return dict(value)


_TYPE_NAMES: tuple[tuple[type | tuple[type, ...], str], ...] = (
    (bool, "boolean"),
    ((int, float), "number"),
    (str, "string"),
    (list, "array"),
    (dict, "object"),
)


def json_type(value: Any) -> str:
    """A value's JSON type name for messages (never the value: it may be a secret)."""
    if value is None:
        return "null"
    return next((name for kind, name in _TYPE_NAMES if isinstance(value, kind)), type(value).__name__)
