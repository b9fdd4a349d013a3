"""One handler module per task kind; `REGISTRY` maps the kind to it. Each is a `Handler`: `compile` and `run`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from . import call, do_, emit, for_, fork, listen, raise_, run, set_, switch, try_, wait

if TYPE_CHECKING:
    from .._run import Handler

# Typed, so mypy checks every module here against `Handler` (its `compile` and `run` signatures).
REGISTRY: Mapping[str, Handler] = {
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
