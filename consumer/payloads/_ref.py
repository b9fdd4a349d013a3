"""A claim check: the reference that stands for a payload kept in the payload store."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .._errors import ConsumerError

JSON = "application/json"
YAML = "application/yaml"
OCTETS = "application/octet-stream"
TEMPORAL = "application/x-temporal-payload"
_HEX = re.compile(r"[0-9a-f]{64}")
_FIELDS = ("store", "key", "size", "sha256", "media_type")


class PayloadError(ConsumerError):
    """A payload cannot be stored or read back; the message names the reference (never the payload)."""


class PayloadMissingError(PayloadError, LookupError):
    """The object a reference names is not in the store (expired, cleaned up, or another store)."""


class PayloadCorruptError(PayloadError):
    """The object read back differs from its reference (size or sha256), or cannot be decrypted or decoded."""


class InvalidReferenceError(PayloadError, ValueError):
    """A value that should be a reference is not one (a field missing or of the wrong type)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class PayloadRef:
    """Where a payload is and how to check it.

    Attributes:
        store: The store's URL without credentials (`file:///srv/payloads`, `s3://bucket/prefix`).
        key: The object's key in the store: `sha256/<hex>` of the stored bytes (content-addressed).
        size: Bytes of the stored object.
        sha256: Hex SHA-256 of the stored object (after compression and encryption, so it reveals nothing).
        media_type: What the payload is once read back (`application/json`, `application/yaml`, ...).
    """

    store: str
    key: str
    size: int
    sha256: str
    media_type: str

    def __str__(self) -> str:
        return f"{self.store.rstrip('/')}/{self.key} ({self.size} bytes, {self.media_type})"

    def to_dict(self) -> dict[str, Any]:
        """The reference as the JSON object commands, results and events carry."""
        return {name: getattr(self, name) for name in _FIELDS}

    @classmethod
    def from_dict(cls, value: Any, *, where: str = "reference") -> PayloadRef:
        """Parse a reference object.

        Raises:
            InvalidReferenceError: A field is missing or malformed (`where` locates the value in the message).
        """
        if not isinstance(value, Mapping):
            raise InvalidReferenceError(f"{where}: must be an object with {', '.join(_FIELDS)}")
        problem = _problem(value)
        if problem:
            raise InvalidReferenceError(f"{where}: {problem}")
        return cls(**{name: value[name] for name in _FIELDS})


def _problem(value: Mapping[str, Any]) -> str | None:
    for name in ("store", "key", "media_type"):
        if not isinstance(value.get(name), str) or not value[name]:
            return f"{name} must be a non-empty string"
    size = value.get("size")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        return "size must be a non-negative integer"
    digest = value.get("sha256")
    if not isinstance(digest, str) or not _HEX.fullmatch(digest):
        return "sha256 must be 64 lowercase hex digits"
    if value["key"] != f"sha256/{digest}":
        return "key must be sha256/<sha256>"
    return None
