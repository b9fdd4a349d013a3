"""The `Sink` protocol every transport implements, and the two local sinks: stdout and a JSON-lines file.

A sink delivers one batch per `send` call, in the order given, and says how it failed through the exceptions
of `callbacks._errors`: `SinkUnavailableError` (retried) or `SinkRefusedError` (dead-lettered). A sink never
retries by itself: the reporter's one retry policy does.
"""

from __future__ import annotations

import asyncio
import os
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

    The file is written by a worker thread, so a slow disk does not stall the loop; batches sent while a write is
    going on are appended together by the next one: one thread hand-off for all of them, not one each (a hand-off
    costs 150-200 us of CPU in wake-ups and GIL switches on a small virtual machine, and the reporter's concurrent
    senders made about one per execution). Each batch's lines stay together and in order; its `send` returns once
    its own lines are written, and a send cancelled before its write began writes nothing.

    Args:
        path: The file; created with its directory when first needed.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._queued: list[tuple[bytes, asyncio.Future[None]]] = []
        self._writer: asyncio.Task[None] | None = None

    async def send(self, batch: Sequence[CloudEvent]) -> None:
        """Appends the batch (with those sent meanwhile, in a worker thread)."""
        written = asyncio.get_running_loop().create_future()
        self._queued.append((_lines(batch), written))
        if self._writer is None:
            self._writer = asyncio.get_running_loop().create_task(self._write_queued())
        try:
            await written
        except asyncio.CancelledError:
            # Not taken by a write yet: it never will be (a write already going on cannot be called back).
            self._queued = [queued for queued in self._queued if queued[1] is not written]
            raise

    async def _write_queued(self) -> None:
        """Write what is queued, as one append, until nothing is; each batch's sender learns how its write went."""
        queued: list[tuple[bytes, asyncio.Future[None]]] = []
        try:
            while self._queued:
                queued, self._queued = self._queued, []
                failure: str | Exception | None = None
                try:
                    await asyncio.to_thread(self._append, b"".join(data for data, _ in queued))
                except OSError as exc:
                    # A full disk or a missing mount can be fixed while we wait; the events stay in the outbox.
                    failure = f"file not writable ({type(exc).__name__})"
                except Exception as exc:  # a bug: every sender of the group meets it, as it would writing alone
                    failure = exc
                _settle(queued, failure)
                queued = []
        finally:
            self._writer = None
            # Cancelled (the loop is closing): nobody may wait for a write that will not be reported.
            _settle(queued + self._queued, "file writer stopped")
            self._queued = []

    def _append(self, data: bytes) -> None:
        try:
            fd = os.open(self.path, _APPEND, 0o666)
        except FileNotFoundError:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, _APPEND, 0o666)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
        finally:
            os.close(fd)

    async def close(self) -> None:
        """Nothing to release: the file is opened per write."""


_APPEND = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_CLOEXEC", 0)


def _settle(queued: list[tuple[bytes, asyncio.Future[None]]], failure: str | Exception | None) -> None:
    """Tell each sender still waiting how its write went (`failure`: why it did not happen, a text for a transient
    `SinkUnavailableError`, or what the write raised)."""
    for _, written in queued:
        if written.done():
            continue  # its sender was cancelled
        if failure is None:
            written.set_result(None)
        else:
            written.set_exception(SinkUnavailableError(failure) if isinstance(failure, str) else failure)
