"""The dead-letter file: events that could not be delivered, one JSON line each, with the reason.

Each line is `{"reason": ..., "time": ..., "event": <structured-mode CloudEvent>}`, so a line's `event` can be
replayed to any sink as is. The file is only appended to; writes happen in a worker thread so a slow disk does
not stall the event loop. Data that JSON cannot represent is written as its `str()`: a dead letter is for
people to read and replay, and dropping it because of its payload would defeat its purpose.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Sequence
from pathlib import Path

import orjson

from callbacks._event import CloudEvent

DEFAULT_DEAD_LETTER_PATH = Path("progress-dead-letter.jsonl")
logger = logging.getLogger("callbacks.delivery")


class DeadLetterFile:
    """Appends undeliverable events to a JSON-lines file.

    Args:
        path: The file; created with its directory when first needed.
    """

    def __init__(self, path: str | Path = DEFAULT_DEAD_LETTER_PATH) -> None:
        self.path = Path(path)

    async def append(self, events: Sequence[CloudEvent], reason: str) -> bool:
        """Writes `events` with `reason`; False (and an error log naming the ids) when the file cannot be written."""
        now = dt.datetime.now(dt.UTC).isoformat()
        lines = b"".join(
            orjson.dumps({"reason": reason, "time": now, "event": event.to_dict()}, default=str) + b"\n"
            for event in events
        )
        try:
            await asyncio.to_thread(self._write, lines)
        except OSError as exc:
            logger.error(
                "dead-letter file %s not writable (%s); %d events lost: %s",
                self.path,
                type(exc).__name__,
                len(events),
                ", ".join(event.id for event in events),
            )
            return False
        return True

    def _write(self, lines: bytes) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("ab") as file:
            file.write(lines)
