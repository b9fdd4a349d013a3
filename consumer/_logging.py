"""Structured logs: JSON lines (human text with `ENV=local`) on stderr, execution id on every line, secrets masked.

stdout is left to progress events (the default sink writes them there), so logs never mix with them. The
execution id comes from a context variable that the execution service sets inside each execution's task, so every
log line emitted while that execution runs (by any library) carries it. Redaction masks the configured credentials
and the secrets of every running command in the final message, whatever logged it, raw or in the spellings a log
line may carry them in (percent-encoded in a URL, escaped in JSON).
"""

from __future__ import annotations

import logging
import sys
import traceback
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, TextIO
from urllib.parse import quote, quote_plus

import orjson

EXECUTION_ID: ContextVar[str | None] = ContextVar("execution_id", default=None)
MASK = "***"
_MIN_SECRET = 4  # shorter values would mask ordinary words and numbers all over the logs


class _Secrets:
    """The values to mask: configured credentials plus, reference-counted, the secrets of running commands."""

    def __init__(self) -> None:
        self._values: Counter[str] = Counter()

    def add(self, values: Iterable[str]) -> list[str]:
        """Start masking `values` in every spelling they are logged in; returns what to pass to `remove`."""
        added = [variant for value in values if len(value) >= _MIN_SECRET for variant in _spellings(value)]
        self._values.update(added)
        return added

    def remove(self, values: Iterable[str]) -> None:
        self._values.subtract(values)
        self._values += Counter()  # drops the values whose count reached zero

    def mask(self, text: str) -> str:
        # Longest first, so a secret that contains another is masked whole.
        for value in sorted(self._values, key=len, reverse=True):
            if value in text:
                text = text.replace(value, MASK)
        return text


def _spellings(value: str) -> set[str]:
    """`value` as it may appear in a log line: raw, percent-encoded in a URL (httpx logs every request URL, query
    string included), and escaped inside JSON text."""
    return {
        value,
        quote(value, safe=""),
        quote(value),
        quote_plus(value, safe=""),
        orjson.dumps(value).decode()[1:-1],
    }


SECRETS = _Secrets()


@contextmanager
def secrets_masked(values: Iterable[Any]) -> Iterator[None]:
    """Mask `values` (stringified) in every log line while the block runs."""
    added = SECRETS.add(str(value) for value in values if isinstance(value, str | int | float) and str(value))
    try:
        yield
    finally:
        SECRETS.remove(added)


def _flatten(secrets: Any) -> Iterator[Any]:
    """Every scalar inside a secrets mapping (a secret may be an object, e.g. OAuth client credentials)."""
    if isinstance(secrets, dict):
        for value in secrets.values():
            yield from _flatten(value)
    elif isinstance(secrets, list):
        for value in secrets:
            yield from _flatten(value)
    else:
        yield secrets


def command_secrets(secrets: Any) -> list[Any]:
    """The scalar values of a command's secrets, for `secrets_masked`."""
    return list(_flatten(dict(secrets)))


class ContextFilter(logging.Filter):
    """Adds `execution_id` to every record and masks secrets in its final message."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "execution_id", None) is None:
            record.execution_id = EXECUTION_ID.get()
        message = SECRETS.mask(record.getMessage())
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
            entry["exception"] = SECRETS.mask("".join(traceback.format_exception(*record.exc_info)))
        return orjson.dumps(entry).decode()


class TextFormatter(logging.Formatter):
    """`12:00:00.123 INFO  consumer.app [exec-1] message` for people reading a terminal."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s.%(msecs)03d %(levelname)-5s %(name)s%(where)s %(message)s", "%H:%M:%S")

    def format(self, record: logging.LogRecord) -> str:
        execution_id = getattr(record, "execution_id", None)
        record.where = f" [{execution_id}]" if execution_id else ""
        text = super().format(record)
        return SECRETS.mask(text) if record.exc_info else text


def configure_logging(
    *, level: str = "INFO", fmt: str = "json", secrets: Iterable[str] = (), stream: TextIO | None = None
) -> logging.Handler:
    """Route every logger to one stderr handler with the chosen format; returns the handler.

    Args:
        level: Root log level name.
        fmt: `json` or `text`.
        secrets: Configured credentials to mask for the life of the process.
        stream: Where to write (stderr by default).
    """
    SECRETS.add(secrets)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.addFilter(ContextFilter())
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    return handler
