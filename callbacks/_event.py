"""The CloudEvents 1.0 envelope every progress event travels in.

Attributes beyond the required four: `time`, `subject` (the execution id), `datacontenttype`, and the extensions
`executionid`, `sequence`, `attempt` and `metadata`.

Command metadata rides along as ONE extension attribute, `metadata`, whose value is the metadata map as a compact
JSON object string with sorted keys (`{"org":"acme","team_id":"7"}`), left out when the map is empty. CloudEvents
extension names must be lowercase ASCII letters and digits, and their values scalars: copying metadata keys such as
`tenant_id` or `orgId` as attributes of their own would need a renaming that can collide (`org_id`, `orgId`) and
cannot be reversed, whereas one JSON string is valid in every binding (JSON, protobuf `ce_string`, AMQP headers),
lossless, and cannot shadow a standard attribute.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

SPEC_VERSION = "1.0"
DEFAULT_SOURCE = "urn:workflow-runner"
METADATA_ATTRIBUTE = "metadata"
_TERMINAL_TYPES = frozenset(
    f"io.serverlessworkflow.workflow.{state}.v1" for state in ("completed", "faulted", "cancelled")
)


def event_id(execution_id: str, attempt: int, sequence: int) -> str:
    """A stable id: the same event resent carries the same id, so the receiver can deduplicate."""
    digest = hashlib.blake2b(f"{execution_id}\x00{attempt}\x00{sequence}".encode(), digest_size=12).hexdigest()
    return f"{execution_id}:{attempt}:{sequence}:{digest}"


def encode_metadata(metadata: Mapping[str, str]) -> str:
    """The `metadata` extension value: the map as compact JSON with sorted keys."""
    return orjson.dumps(dict(metadata), option=orjson.OPT_SORT_KEYS).decode()


@dataclass(frozen=True, slots=True, kw_only=True)
class CloudEvent:
    """A lifecycle event in its CloudEvents envelope.

    Attributes:
        id: Stable per (execution, attempt, sequence); see `event_id`.
        source: URI-reference of this runner.
        type: One of the spec's lifecycle types, e.g. `io.serverlessworkflow.task.started.v1`.
        time: RFC 3339 timestamp.
        subject: The execution id.
        executionid: The execution id (extension, for routing and deduplication).
        sequence: Monotonic per execution; events are delivered in this order.
        attempt: 1-based attempt of the execution.
        data: The spec's data for this type (a JSON value; `bytes` travel base64-encoded).
        metadata: Command metadata, carried as the `metadata` extension (see the module docstring).
        datacontenttype: Media type of `data`.
    """

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
        return self.type in _TERMINAL_TYPES

    def attributes(self) -> dict[str, str | int]:
        """Every context attribute except `data`, as CloudEvents names them."""
        out: dict[str, str | int] = {
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
        if self.metadata:
            out[METADATA_ATTRIBUTE] = encode_metadata(self.metadata)
        return out

    def to_dict(self) -> dict[str, Any]:
        """Structured-mode JSON representation (the JSON event format)."""
        out: dict[str, Any] = dict(self.attributes())
        if isinstance(self.data, bytes):
            out["data_base64"] = base64.b64encode(self.data).decode()
        elif self.data is not None:
            out["data"] = self.data
        return out

    def to_json(self) -> bytes:
        """Structured-mode JSON bytes."""
        return orjson.dumps(self.to_dict())
