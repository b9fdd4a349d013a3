"""Engine options: what the process configuration hands the executor (capabilities, limits, I/O policy)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True, kw_only=True)
class EngineOptions:
    """Switches and limits for task handlers; defaults are safe for untrusted documents."""

    allow_shell: bool = False
    allow_script: bool = False
