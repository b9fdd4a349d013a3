"""The `Sink` protocol every transport implements, and the two local sinks: stdout and a JSON-lines file.

A sink delivers one batch per `send` call, in the order given, and says how it failed through the exceptions
of `callbacks._errors`: `SinkUnavailableError` (retried) or `SinkRefusedError` (dead-lettered). A sink never
retries by itself: the reporter's one retry policy does.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol, TextIO, runtime_checkable

from callbacks._errors import SinkUnavailableError
from callbacks._event import CloudEvent
from callbacks._wire import json_event


@runtime_checkable
class Sink(Protocol):
    """Where progress events go."""

    async def send(self, batch: Sequence[CloudEvent]) -> None:
        """Delivers `batch` (in order) or raises a `SinkError`."""
        ...

    async def close(self) -> None:
        """Releases connections; the sink is not used afterwards."""
        ...


def _lines(batch: Sequence[CloudEvent]) -> bytes:
    return b"".join(json_event(event) + b"\n" for event in batch)


class StdoutSink:
    """Writes each event as one JSON line to stdout (the default when nothing else is configured).

    Args:
        stream: Where to write instead of the current `sys.stdout`.
    """

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream

    async def send(self, batch: Sequence[CloudEvent]) -> None:
        """Writes and flushes the batch."""
        stream = self._stream or sys.stdout
        stream.write(_lines(batch).decode())
        stream.flush()

    async def close(self) -> None:
        """Nothing to release: stdout belongs to the process."""


class JsonLinesSink:
    """Appends each event as one JSON line to a file.

    Args:
        path: The file; created with its directory when first needed.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    async def send(self, batch: Sequence[CloudEvent]) -> None:
        """Appends the batch (in a worker thread, so a slow disk does not stall the loop)."""
        data = _lines(batch)
        try:
            await asyncio.to_thread(self._append, data)
        except OSError as exc:
            # A full disk or a missing mount can be fixed while we wait; the events stay in the outbox.
            raise SinkUnavailableError(f"file not writable ({type(exc).__name__})") from exc

    def _append(self, data: bytes) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("ab") as file:
            file.write(data)

    async def close(self) -> None:
        """Nothing to release: the file is opened per batch."""
