"""Timestamps as the engine writes them: ISO 8601 in UTC with microseconds and a `Z`, plus epoch seconds."""

from __future__ import annotations

import time
from functools import lru_cache


def now() -> tuple[str, float]:
    """The current time as ISO 8601 text and as epoch seconds (one clock reading for both)."""
    epoch = time.time()
    whole = int(epoch)
    return f"{_second(whole)}.{int((epoch - whole) * 1_000_000):06d}Z", epoch


def now_iso() -> str:
    """The current time as ISO 8601 text."""
    return now()[0]


@lru_cache(maxsize=4)
def _second(whole: int) -> str:
    # Formatting the date and time of day is the costly part; events within one second share it.
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole))
