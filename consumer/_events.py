"""The bridge from the engine's lifecycle events to CloudEvents envelopes (the only place both meet).

A task's or workflow's output can be arbitrarily large, but an event must fit the sink (a gRPC message, an HTTP
body): an output whose JSON exceeds `max_output_bytes` is replaced in the event by `outputTruncated`
(`{bytes, limit, preview}`, the preview being the first `PREVIEW_BYTES` of its JSON). The full output still reaches
the caller in the execution result; nothing is dropped silently. An output no encoder can carry (nested deeper than
`MAX_JSON_DEPTH`) is replaced by `outputUnencodable` naming where, so the event itself always encodes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import IO, Any

import orjson

from callbacks import CloudEvent, event_id
from executor import MAX_JSON_DEPTH, LifecycleEvent, json_safe, too_deep

DEFAULT_SOURCE = "urn:workflow-runner"
DEFAULT_MAX_OUTPUT_BYTES = 256 * 1024
PREVIEW_BYTES = 1024


def to_cloudevent(
    event: LifecycleEvent,
    *,
    metadata: Mapping[str, str] | None = None,
    source: str = DEFAULT_SOURCE,
    max_output_bytes: int = DEFAULT_MAX_OUTPUT_BYTES,
    data: dict[str, Any] | None = None,
) -> CloudEvent:
    """Wrap a lifecycle event: stable id from (execution, attempt, sequence), subject = execution id.

    `data` replaces the event's own when the caller bounded it already (`bound_output`).
    """
    return CloudEvent(
        id=event_id(event.execution_id, event.attempt, event.sequence),
        source=source,
        type=event.type,
        time=event.time,
        subject=event.execution_id,
        executionid=event.execution_id,
        sequence=event.sequence,
        attempt=event.attempt,
        data=bounded(event.data, max_output_bytes) if data is None else data,
        metadata=dict(metadata or {}),
    )


def bounded(data: dict[str, Any], max_output_bytes: int) -> dict[str, Any]:
    """`data` with an `output` over the limit replaced by `outputTruncated` (see the module docstring)."""
    return bound_output(data, max_output_bytes)[0]


def bound_output(data: dict[str, Any], max_output_bytes: int) -> tuple[dict[str, Any], bytes | None]:
    """`bounded`, and the output's JSON when it was replaced by its preview (None when it was not)."""
    if data.get("output") is None:
        return data, None
    try:
        encoded = orjson.dumps(data["output"])
    except orjson.JSONEncodeError:  # integers past 64 bits from jq: encoded as the doubles they are
        where = too_deep(data["output"])
        if where is not None:
            rest = {key: value for key, value in data.items() if key != "output"}
            return {**rest, "outputUnencodable": f"nested more than {MAX_JSON_DEPTH} levels deep at {where}"}, None
        data = {**data, "output": json_safe(data["output"])}
        encoded = orjson.dumps(data["output"])
    if len(encoded) <= max_output_bytes:
        return data, None
    return truncated(data, encoded, max_output_bytes), encoded


def truncated(data: dict[str, Any], encoded: bytes, max_output_bytes: int) -> dict[str, Any]:
    """`data` with its output, whose JSON is `encoded`, replaced by `outputTruncated`."""
    preview = encoded[:PREVIEW_BYTES].decode("utf-8", errors="ignore")
    rest = {key: value for key, value in data.items() if key != "output"}
    return {**rest, "outputTruncated": {"bytes": len(encoded), "limit": max_output_bytes, "preview": preview}}


class JsonLinesListener:
    """Appends every event as one CloudEvents JSON line to an open binary file (the CLI's `--events`)."""

    def __init__(self, out: IO[bytes], metadata: Mapping[str, str] | None = None) -> None:
        self._out = out
        self._metadata = dict(metadata or {})

    async def publish(self, event: LifecycleEvent) -> None:
        """Write and flush one line, so a reader following the file sees events as they happen."""
        self._out.write(to_cloudevent(event, metadata=self._metadata).to_json() + b"\n")
        self._out.flush()
