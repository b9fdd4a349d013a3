"""Structured logs: JSON lines (human text with `ENV=local`) on stderr, execution id on every line, secrets masked.

stdout is left to progress events (the default sink writes them there), so logs never mix with them. The
execution id comes from a context variable that the execution service sets inside each execution's task, so every
log line emitted while that execution runs (by any library) carries it. Redaction masks the configured credentials
and the secrets of every running command in the final message, whatever logged it, raw or in the spellings a log
line may carry them in (`executor.Mask`: percent-encoded in a URL, escaped in JSON, base64). Libraries that dump
raw frames at DEBUG are kept at INFO (`WIRE_LOGGERS`): what they would print is not decoded yet, so not maskable.
"""

from __future__ import annotations

import logging
import sys
import traceback
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, TextIO

import orjson

from executor import MASKS, Mask, masked_in_logs, secret_scalars

EXECUTION_ID: ContextVar[str | None] = ContextVar("execution_id", default=None)

# Kept at INFO or above even when LOG_LEVEL=DEBUG: at DEBUG they dump whole frames, headers and payloads (an AMQP
# body with its `secrets`, an HTTP/2 `authorization` header, a Temporal activation with the workflow's input, an
# activity's completion with its result, a heartbeat's checkpoint) before an execution's secrets are known, after
# they are forgotten, or in the supervisor while the secrets the run derived (a Basic token) are known only to its
# worker process, so no mask can cover them. Wire-level debugging is the broker's or a proxy's job.
WIRE_LOGGERS = (
    "aiormq",
    "aio_pika",
    "pamqp",
    "hpack",
    "h2",
    "httpcore",
    "grpc._cython",
    "temporalio.activity",
    "temporalio.bridge",
    "temporalio.worker",
)


@contextmanager
def secrets_masked(values: Iterable[Any]) -> Iterator[None]:
    """Mask `values` (secret values, or a whole secrets mapping) in every log line while the block runs."""
    mask = Mask(values if isinstance(values, Mapping) else list(values))
    if not mask:
        yield  # nothing to hide: registering it would only make every other run's start and end recompute more
        return
    with MASKS.active(mask):
        yield


def command_secrets(secrets: Any) -> list[str]:
    """The scalar values of a command's secrets (object secrets included), for `secrets_masked`."""
    return secret_scalars(secrets)


class ContextFilter(logging.Filter):
    """Adds `execution_id` to every record and masks secrets in its final message."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "execution_id", None) is None:
            record.execution_id = EXECUTION_ID.get()
        message = MASKS.text(record.getMessage())
        record.msg, record.args = message, None
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, execution_id, and the exception when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        execution_id = getattr(record, "execution_id", None)
        if execution_id is not None:
            entry["execution_id"] = execution_id
        if record.exc_info:
            entry["exception"] = MASKS.text("".join(traceback.format_exception(*record.exc_info)))
        return orjson.dumps(entry).decode()


class TextFormatter(logging.Formatter):
    """`12:00:00.123 INFO  consumer.app [exec-1] message` for people reading a terminal."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s.%(msecs)03d %(levelname)-5s %(name)s%(where)s %(message)s", "%H:%M:%S")

    def format(self, record: logging.LogRecord) -> str:
        execution_id = getattr(record, "execution_id", None)
        record.where = f" [{execution_id}]" if execution_id else ""
        text = super().format(record)
        return MASKS.text(text) if record.exc_info else text


def configure_logging(
    *,
    level: str = "INFO",
    fmt: str = "json",
    secrets: Iterable[str] = (),
    stream: TextIO | None = None,
) -> logging.Handler:
    """Route every logger to one stderr handler with the chosen format; returns the handler.

    Args:
        level: Root log level name.
        fmt: `json` or `text`.
        secrets: Configured credentials to mask for the life of the process.
        stream: Where to write (stderr by default).
    """
    masked_in_logs(secrets)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.addFilter(ContextFilter())
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    for name in WIRE_LOGGERS:
        logging.getLogger(name).setLevel(max(logging.INFO, root.getEffectiveLevel()))
    return handler
