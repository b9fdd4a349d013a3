"""The scoreboard: one small shared-memory slot per worker process, written by the worker, read by the watchdog.

A slot says what the worker's event loop is doing right now, without asking it (a worker stuck in jq cannot
answer). Layout, little-endian, 320 bytes:

    offset  field       written                          meaning
    0       seq         before and after each evaluation odd while an evaluation runs (a seqlock: the reader
                                                           trusts the fields only if seq is odd and unchanged)
    8       token       before each evaluation           which execution evaluates (its supervisor's token)
    16      started     before each evaluation           `time.monotonic()` when it began (system-wide clock)
    24      deadline    before each evaluation           when the innermost timeout covering it expires (inf: none)
    32      heartbeat   every `BEAT` seconds             the worker's loop is turning (idle or not)
    40      evaluated   after each evaluation            how many evaluations finished (progress, metrics)
    48      length      when the task changes            bytes of the pointer that follow
    50      pointer     when the task changes            JSON Pointer of the evaluating task (truncated)

The memory is an anonymous `memfd` handed to the worker as an inherited descriptor: nothing to name, nothing
left behind when both processes are gone.
"""

from __future__ import annotations

import mmap
import os
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass

from executor import Where

SLOT_SIZE = 320
BEAT = 0.1
_HEAD = struct.Struct("<QQdd")  # seq, token, started, deadline
_FIELDS = struct.Struct("<Qdd")  # token, started, deadline: written while seq is still even
_SEQ = struct.Struct("<Q")
_F64 = struct.Struct("<d")
_LENGTH = struct.Struct("<H")
_HEARTBEAT_AT = 32
_EVALUATED_AT = 40
_LENGTH_AT = 48
_POINTER_AT = 50
MAX_POINTER = SLOT_SIZE - _POINTER_AT


def create_slot() -> tuple[int, mmap.mmap]:
    """A new zeroed slot: its file descriptor (to hand to the worker) and the supervisor's mapping."""
    fd = os.memfd_create("workflow-runner-slot", 0)
    os.ftruncate(fd, SLOT_SIZE)
    return fd, mmap.mmap(fd, SLOT_SIZE)


def map_slot(fd: int) -> mmap.mmap:
    """The worker's mapping of the slot it inherited."""
    return mmap.mmap(fd, SLOT_SIZE)


class SlotWriter:
    """The worker's side: an `executor` probe (told around every evaluation) plus the loop heartbeat."""

    __slots__ = ("_before", "_buffer", "_evaluated", "_pointer", "_seq")

    def __init__(self, buffer: mmap.mmap, before: Callable[[], None] | None = None) -> None:
        """`before` runs ahead of every evaluation (the worker ships queued frames: it may not get another turn)."""
        self._buffer = buffer
        self._before = before
        self._seq = 0
        self._evaluated = 0
        self._pointer = ""
        self.beat()

    def enter(self, where: Where, deadline: float) -> None:
        """An evaluation begins: fields first, then the odd sequence that makes them visible."""
        if self._before is not None:
            self._before()
        if where.pointer != self._pointer:
            self._pointer = where.pointer
            encoded = where.pointer.encode()[:MAX_POINTER]
            _LENGTH.pack_into(self._buffer, _LENGTH_AT, len(encoded))
            self._buffer[_POINTER_AT : _POINTER_AT + len(encoded)] = encoded
        _FIELDS.pack_into(self._buffer, 8, where.token, time.monotonic(), deadline)
        self._seq += 1
        _SEQ.pack_into(self._buffer, 0, self._seq)

    def leave(self) -> None:
        """The evaluation ended (even sequence: idle)."""
        self._seq += 1
        _SEQ.pack_into(self._buffer, 0, self._seq)
        self._evaluated += 1
        _SEQ.pack_into(self._buffer, _EVALUATED_AT, self._evaluated)

    def beat(self) -> None:
        """The loop is alive."""
        _F64.pack_into(self._buffer, _HEARTBEAT_AT, time.monotonic())


@dataclass(frozen=True, slots=True)
class Reading:
    """What a slot said at one instant.

    Attributes:
        busy: An evaluation was running; `token`, `pointer`, `started` and `deadline` describe it.
        heartbeat: When the worker's loop last turned (monotonic seconds).
        evaluated: Evaluations finished so far.
    """

    busy: bool
    token: int
    pointer: str
    started: float
    deadline: float
    heartbeat: float
    evaluated: int


def busy_for(buffer: mmap.mmap, now: float) -> float | None:
    """Seconds the running evaluation has run at monotonic `now`; None when none runs. What placement asks of
    every worker for every execution: the sequence alone when idle, `started` only when busy."""
    for _ in range(8):
        (seq,) = _SEQ.unpack_from(buffer, 0)
        if not seq % 2:
            return None
        seq, _token, started, _deadline = _HEAD.unpack_from(buffer, 0)
        (again,) = _SEQ.unpack_from(buffer, 0)
        if seq == again:
            return max(now - float(started), 0.0)
    return None  # churning fast: certainly not stuck


def read_slot(buffer: mmap.mmap) -> Reading:
    """A consistent reading (retried while the worker is between writes)."""
    for _ in range(8):
        seq, token, started, deadline = _HEAD.unpack_from(buffer, 0)
        (length,) = _LENGTH.unpack_from(buffer, _LENGTH_AT)
        pointer = bytes(buffer[_POINTER_AT : _POINTER_AT + min(length, MAX_POINTER)])
        (heartbeat,) = _F64.unpack_from(buffer, _HEARTBEAT_AT)
        (evaluated,) = _SEQ.unpack_from(buffer, _EVALUATED_AT)
        (again,) = _SEQ.unpack_from(buffer, 0)
        if seq == again:
            busy = seq % 2 == 1
            text = pointer.decode(errors="replace") if busy else ""
            return Reading(busy, token if busy else 0, text, started, deadline, heartbeat, evaluated)
    return Reading(False, 0, "", 0.0, 0.0, time.monotonic(), 0)  # churning fast: certainly not stuck
