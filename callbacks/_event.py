"""The CloudEvents 1.0 envelope every progress event travels in."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

SPEC_VERSION = "1.0"
DEFAULT_SOURCE = "urn:workflow-runner"


def event_id(execution_id: str, attempt: int, sequence: int) -> str:
    """A stable id: the same event resent carries the same id, so the receiver can deduplicate."""
    digest = hashlib.blake2b(f"{execution_id}\x00{attempt}\x00{sequence}".encode(), digest_size=12).hexdigest()
    return f"{execution_id}:{attempt}:{sequence}:{digest}"


@dataclass(frozen=True, slots=True, kw_only=True)
class CloudEvent:
    """A lifecycle event in its CloudEvents envelope; `metadata` rides along as extension attributes."""

    id: str
    source: str
    type: str
    time: str
    subject: str
    executionid: str
    sequence: int
    attempt: int
    data: Any
    metadata: Mapping[str, str] = field(default_factory=dict)
    datacontenttype: str = "application/json"

    @property
    def terminal(self) -> bool:
        """True for workflow completed/faulted/cancelled: the event an ingress waits for."""
        return self.type.startswith("io.serverlessworkflow.workflow.") and self.type.rsplit(".", 2)[-2] in {
            "completed",
            "faulted",
            "cancelled",
        }

    def to_dict(self) -> dict[str, Any]:
        """Structured-mode JSON representation (metadata keys become extension attributes)."""
        out: dict[str, Any] = {
            "specversion": SPEC_VERSION,
            "id": self.id,
            "source": self.source,
            "type": self.type,
            "time": self.time,
            "subject": self.subject,
            "datacontenttype": self.datacontenttype,
            "executionid": self.executionid,
            "sequence": self.sequence,
            "attempt": self.attempt,
        }
        for key, value in self.metadata.items():
            out.setdefault(key, value)
        out["data"] = self.data
        return out

    def to_json(self) -> bytes:
        """Structured-mode JSON bytes."""
        return orjson.dumps(self.to_dict())
