"""The pieces of isolation that need no process: fair slots, the scoreboard, tenants, the scoped bus, deadlines."""

from __future__ import annotations

import asyncio
import socket
import time

import orjson
import pytest

from consumer._decode import DecodeError
from consumer._metrics import Metrics
from consumer._pool import placement
from consumer._scheduler import FairScheduler
from consumer._scoreboard import SlotWriter, busy_for, create_slot, read_slot
from consumer._tenants import Tenancy, parse_tenant_keys
from consumer._worker_wire import LARGE, FrameWriter, read_frame
from executor import EventBus, Where, WorkflowError
from executor._flow import Deadline
from executor._probe import DEADLINE
from tests.fixtures.runner import run_with


async def test_waiting_tenants_take_turns_whatever_their_backlog() -> None:
    """One slot, tenant a with 50 waiting and tenant b (nothing running) with 1: b gets the next slot, not the 51st."""
    slots = FairScheduler(capacity=1, tenant_capacity=1, metrics=Metrics())
    await slots.acquire("a")
    order: list[str] = []

    async def run(tenant: str) -> None:
        await slots.acquire(tenant)
        order.append(tenant)
        await asyncio.sleep(0)
        slots.release(tenant)

    flood = [asyncio.create_task(run("a")) for _ in range(50)]
    await asyncio.sleep(0)
    single = asyncio.create_task(run("b"))
    await asyncio.sleep(0)
    assert slots.queued("a") == 50
    slots.release("a")
    await asyncio.gather(*flood, single)
    assert order[0] == "b"
    assert order[1:] == ["a"] * 50


async def test_a_tenant_at_its_cap_waits_while_others_use_free_slots() -> None:
    """With a per-tenant cap of 1, a second execution of tenant a waits although slots are free; b does not."""
    slots = FairScheduler(capacity=4, tenant_capacity=1, metrics=Metrics())
    await slots.acquire("a")
    second = asyncio.create_task(slots.acquire("a"))
    await asyncio.wait_for(slots.acquire("b"), 1)
    await asyncio.sleep(0)
    assert not second.done()
    slots.release("a")
    await asyncio.wait_for(second, 1)
    assert slots.running == 2


async def test_a_cancelled_waiter_gives_its_turn_away() -> None:
    """A waiter cancelled before its turn leaves no slot taken and no tenant stuck in the ring."""
    slots = FairScheduler(capacity=1, tenant_capacity=1, metrics=Metrics())
    await slots.acquire("a")
    waiter = asyncio.create_task(slots.acquire("b"))
    await asyncio.sleep(0)
    waiter.cancel()
    await asyncio.gather(waiter, return_exceptions=True)
    slots.release("a")
    await asyncio.wait_for(slots.acquire("c"), 1)
    assert slots.running == 1
    assert (slots.queued("b"), slots.queued("c")) == (0, 0)
    slots.release("c")
    await asyncio.wait_for(slots.acquire("b"), 1)  # b, once cancelled, is not stuck behind its old turn


def test_scoreboard_shows_the_evaluation_in_progress() -> None:
    """The watchdog's reading names the execution token, the task pointer and when it began; idle after."""
    _, mapping = create_slot()
    writer = SlotWriter(mapping)
    began = time.monotonic()
    writer.enter(Where(7, "/do/3/spin"), began + 5)
    reading = read_slot(mapping)
    assert (reading.busy, reading.token, reading.pointer) == (True, 7, "/do/3/spin")
    assert began <= reading.started <= time.monotonic()
    assert reading.deadline == pytest.approx(began + 5)
    writer.leave()
    after = read_slot(mapping)
    assert (after.busy, after.evaluated) == (False, 1)


def test_new_work_goes_to_idle_workers_then_to_the_shortest_evaluation() -> None:
    """Placement: an idle worker first (the one holding fewer jobs); among workers evaluating right now, the one
    whose evaluation began last, so a hog in its first milliseconds (not yet flagged) is passed over."""
    hog, busy, idle = (create_slot()[1] for _ in range(3))
    jobs = {hog: 0, busy: 0, idle: 2}
    SlotWriter(hog).enter(Where(1, "/do/0/hog"), time.monotonic() + 60)
    time.sleep(0.02)
    short = SlotWriter(busy)
    short.enter(Where(2, "/do/0/quick"), time.monotonic() + 60)
    now = time.monotonic()
    assert busy_for(idle, now) is None
    assert 0 <= busy_for(busy, now) < busy_for(hog, now)
    assert min([hog, busy, idle], key=lambda slot: placement(slot, jobs[slot], now)) is idle
    assert min([hog, busy], key=lambda slot: placement(slot, jobs[slot], now)) is busy
    short.leave()
    assert min([hog, busy], key=lambda slot: placement(slot, jobs[slot], time.monotonic())) is busy


def test_tenant_keys_and_metadata() -> None:
    """Keys map to tenants; metadata names a tenant only with a plain id, and an absent one is the default."""
    tenancy = Tenancy(keys=parse_tenant_keys("acme=k1, globex=k2"))
    assert (tenancy.for_key("k2"), tenancy.for_key("nope")) == ("globex", None)
    assert tenancy.from_metadata({}) == "default"
    assert tenancy.from_metadata({"tenant": "acme"}) == "acme"
    with pytest.raises(DecodeError) as bad:
        tenancy.from_metadata({"tenant": "a b/../c"}, "run-1")
    assert [issue.path for issue in bad.value.issues] == ["/metadata/tenant"]
    assert bad.value.execution_id == "run-1"
    assert "a b/../c" not in str(bad.value)
    with pytest.raises(ValueError, match="entry 2"):
        parse_tenant_keys("acme=k1,broken")


async def test_the_bus_keeps_tenants_apart() -> None:
    """An event published for one tenant reaches that tenant's subscribers and every bridge, never another tenant."""
    bus = EventBus()
    _, mine = bus.subscribe_since(0, "a")
    _, theirs = bus.subscribe_since(0, "b")
    bridge = bus.subscribe_all()
    await bus.scope("a").publish({"id": "1", "type": "t"})
    assert mine.get_nowait()["id"] == "1"
    assert theirs.empty()
    assert bridge.get_nowait() == ("a", {"id": "1", "type": "t"})
    assert bus.published("b") == []


async def _overrun(seconds: float, step: float) -> None:
    async with Deadline(seconds, "task /do/0/x"):
        assert DEADLINE.get() < time.monotonic() + 1
        time.sleep(step)  # noqa: ASYNC251 - the point: a step that never yields to the loop


async def test_a_deadline_passed_during_a_synchronous_step_still_times_out() -> None:
    """A block whose last step overran its timeout without yielding ends with the timeout error, not completed."""
    with pytest.raises(WorkflowError, match=r"exceeded 0\.05s") as raised:
        await _overrun(0.05, 0.1)
    assert raised.value.to_dict()["status"] == 408


async def test_a_short_task_timeout_around_a_slow_expression_faults_in_process() -> None:
    """In-process (no watchdog), a 50 ms timeout around a slower expression ends with the timeout error."""
    body = (
        "do:\n  - slow:\n      timeout: {after: {milliseconds: 50}}\n      set: {n: '${ [range(3000000)] | length }'}\n"
    )
    result, _ = await run_with(body)
    assert result.status.value == "faulted"
    assert result.error is not None
    assert (result.error["status"], result.error["instance"]) == (408, "/do/0/slow")


async def test_worker_frames_keep_their_order_and_blobs_across_a_large_write() -> None:
    """Small frames, a batch whose blob is far above LARGE (written in slices) and frames queued while it is being
    written arrive in order; one blob sent with two frames crosses once and is the same object on arrival."""
    left, right = socket.socketpair()
    _, writer = await asyncio.open_unix_connection(sock=left)
    reader, peer = await asyncio.open_unix_connection(sock=right, limit=1 << 16)
    frames = FrameWriter(writer)
    blob = orjson.dumps("x" * (3 * LARGE))
    frames.send({"op": "event", "n": 1})
    frames.flush()
    frames.send({"op": "event", "n": 2}, blob)
    frames.send({"op": "event", "n": 3}, blob)
    frames.flush()  # a large write starts in a task of its own
    frames.send({"op": "result", "n": 4})  # queued meanwhile: must not land inside the large write
    received = [await read_frame(reader) for _ in range(3)]
    assert received[0] == {"op": "event", "n": 1}
    batch = received[1]
    assert batch is not None
    assert [frame["n"] for frame in batch["frames"]] == [2, 3]
    assert batch["frames"][0]["blob"] == blob
    assert batch["frames"][0]["blob"] is batch["frames"][1]["blob"]
    assert received[2] == {"op": "result", "n": 4}
    writer.close()
    assert await read_frame(reader) is None
    peer.close()
