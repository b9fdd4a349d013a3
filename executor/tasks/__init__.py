"""One handler module per task kind; `REGISTRY` maps the kind to it. Each has `compile` and `run`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from . import call, do_, emit, for_, fork, listen, raise_, run, set_, switch, try_, wait

REGISTRY: Mapping[str, Any] = {
    "call": call,
    "do": do_,
    "emit": emit,
    "for": for_,
    "fork": fork,
    "listen": listen,
    "raise": raise_,
    "run": run,
    "set": set_,
    "switch": switch,
    "try": try_,
    "wait": wait,
}
