"""Isolation: latency of one tenant's trivial executions alone, next to a runaway, a memory hog, another's flood.

Runs an in-process `App` (gRPC ingress, `EXECUTOR_PROCESSES=2`, events to a JSON-lines file through the real reporter
pipeline, two tenants from `GRPC_TENANT_KEYS`) and drives it from this process. Tenant b sends one-task documents
one at a time (`ExecuteStream`, a closed loop) in four phases:

    alone           nothing else runs
    runaway         tenant a's expression that never ends, from its start until EXPRESSION_TIME_LIMIT_SECONDS
                    ends it and a second after (its worker is killed and replaced meanwhile)
    memory hog      tenant a's expression growing past EXECUTOR_MEMORY_LIMIT_MB, likewise until it ends and after
    flood           tenant a has thousands of 20 ms executions waiting for the MAX_CONCURRENT_EXECUTIONS slots:
                    once with the defaults (a named tenant leaves a slot to the others, so b finds one free),
                    once more in a second App with TENANT_MAX_CONCURRENT equal to the slots (no slot kept: b
                    waits for one of a's to end, first in the fair ring)

Prints p50 / p99 / max per phase, the ratios to alone, and the issue's goals (p99 next to a runaway ≤ 50 ms; the
other tenant's p99 under a flood at most twice alone's).

Run: `.venv/bin/python bench/isolation.py [--samples N] [--flood N]`.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as `python bench/isolation.py`, this directory is first on sys.path, and its `callbacks.py` / `executor.py`
# benchmarks would shadow the packages of the same names.
if sys.path and Path(sys.path[0] or ".").resolve() == Path(__file__).resolve().parent:
    sys.path.pop(0)

import argparse  # imports follow the sys.path fix above
import asyncio
import contextlib
import itertools
import statistics
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import grpc.aio

from consumer._proto.workflow_runner.v1 import runner_pb2 as pb
from consumer._proto.workflow_runner.v1 import runner_pb2_grpc as pb_grpc
from consumer.app import App
from consumer.config import Settings

HEADER = "document: {dsl: '1.0.3', namespace: bench, name: iso, version: '1.0.0'}\n"
TRIVIAL = HEADER + "do:\n  - one: {set: {ok: true}}\n"
# Constant memory, endless CPU: only the expression time limit ends it.
RUNAWAY = HEADER + "do:\n  - spin: {set: {x: '${ reduce range(1e15) as $i (0; . + 1) }'}}\n"
# About 100 MB a second of jq values: the memory limit ends it before the time limit.
MEMORY_HOG = HEADER + "do:\n  - grow: {set: {x: '${ [range(1e9)] | length }'}}\n"
FLOOD = HEADER + "do:\n  - nap: {wait: {milliseconds: 20}}\n  - done: {set: {ok: true}}\n"
KEYS = {"a": "bench-key-tenant-a", "b": "bench-key-tenant-b"}
TIME_LIMIT_SECONDS = 8
MEMORY_LIMIT_MB = 400
SLOTS = 4
SETTLE = 1.0
"""Seconds sampled after a neighbour ended: its worker's replacement is part of what neighbours live through."""
GOAL_RUNAWAY_P99_MS = 50.0
GOAL_FLOOD_RATIO = 2.0

_ids = itertools.count()


def _auth(tenant: str) -> tuple[tuple[str, str]]:
    return (("authorization", f"Bearer {KEYS[tenant]}"),)


@dataclass
class Phase:
    """One phase's latencies (seconds) and what it ran next to."""

    name: str
    latencies: list[float] = field(default_factory=list)
    note: str = ""

    def percentile(self, p: int) -> float:
        """The p-th percentile in milliseconds."""
        return statistics.quantiles(self.latencies, n=100, method="inclusive")[p - 1] * 1000

    @property
    def worst(self) -> float:
        return max(self.latencies) * 1000


async def _trivial(stub: pb_grpc.WorkflowRunnerStub) -> float:
    """Seconds from call to final result of one tenant-b execution."""
    request = pb.ExecuteRequest(execution_id=f"b-{next(_ids)}", workflow_yaml=TRIVIAL)
    began = time.perf_counter()
    last = None
    async for message in stub.ExecuteStream(request, metadata=_auth("b")):
        last = message
    elapsed = time.perf_counter() - began
    if last is None or last.result.status != pb.EXECUTION_STATUS_COMPLETED:
        raise SystemExit(f"a trivial execution did not complete: {last}")
    return elapsed


async def _sample(stub: pb_grpc.WorkflowRunnerStub, phase: Phase, count: int) -> None:
    for _ in range(count):
        phase.latencies.append(await _trivial(stub))


class Neighbour:
    """Tenant a's one bad execution, streamed in the background: when it started evaluating, how it ended."""

    def __init__(self, stub: pb_grpc.WorkflowRunnerStub, document: str) -> None:
        self.execution_id = f"a-{next(_ids)}"
        self.evaluating = asyncio.Event()
        self.ended_at: float | None = None
        self.began_at = 0.0
        self.title = ""
        request = pb.ExecuteRequest(execution_id=self.execution_id, workflow_yaml=document)
        self.task = asyncio.ensure_future(self._follow(stub, request))

    async def _follow(self, stub: pb_grpc.WorkflowRunnerStub, request: pb.ExecuteRequest) -> None:
        async for message in stub.ExecuteStream(request, metadata=_auth("a")):
            if message.HasField("event") and message.event.type.endswith("task.started.v1"):
                self.began_at = time.perf_counter()
                self.evaluating.set()
            elif message.HasField("result"):
                self.title = message.result.error.title or pb.ExecutionStatus.Name(message.result.status)
        self.ended_at = time.perf_counter()


async def _next_to(stub: pb_grpc.WorkflowRunnerStub, phase: Phase, document: str, samples: int) -> None:
    """Sample while `document` runs, until it ended `SETTLE` seconds ago (and at least `samples` times)."""
    neighbour = Neighbour(stub, document)
    await asyncio.wait_for(neighbour.evaluating.wait(), 30)
    deadline = time.perf_counter() + 60
    while (
        len(phase.latencies) < samples
        or neighbour.ended_at is None
        or time.perf_counter() < neighbour.ended_at + SETTLE
    ):
        if time.perf_counter() > deadline:
            await stub.Cancel(pb.CancelRequest(execution_id=neighbour.execution_id), metadata=_auth("a"))
            phase.note = "the neighbour did not end within 60 s and was cancelled"
            break
        phase.latencies.append(await _trivial(stub))
    await neighbour.task
    assert neighbour.ended_at is not None
    phase.note = phase.note or f'ended "{neighbour.title}" after {neighbour.ended_at - neighbour.began_at:.1f} s'


async def _flood(app: App, stub: pb_grpc.WorkflowRunnerStub, phase: Phase, count: int, samples: int) -> None:
    """Queue `count` executions of tenant a, then sample tenant b while they wait."""
    gate = asyncio.Semaphore(64)

    async def submit() -> None:
        async with gate:
            request = pb.ExecuteRequest(execution_id=f"a-{next(_ids)}", workflow_yaml=FLOOD)
            await stub.Execute(request, metadata=_auth("a"))

    await asyncio.gather(*(submit() for _ in range(count)))
    scheduler = app.service.scheduler
    before = scheduler.queued("a")
    await _sample(stub, phase, samples)
    phase.note = f"tenant a had {before} executions waiting for a slot at the start, {scheduler.queued('a')} at the end"


def _settings(workdir: Path, flood: int, tenant_cap: int | None = None) -> Settings:
    cap = {} if tenant_cap is None else {"TENANT_MAX_CONCURRENT": str(tenant_cap)}
    return Settings.from_env(
        cap
        | {
            "EXECUTION_MODE": "grpc",
            "GRPC_HOST": "127.0.0.1",
            "GRPC_PORT": "0",
            "METRICS_PORT": "off",
            "LOG_LEVEL": "WARNING",
            "GRPC_TENANT_KEYS": ",".join(f"{tenant}={key}" for tenant, key in KEYS.items()),
            "EXECUTOR_PROCESSES": "2",
            "EXPRESSION_TIME_LIMIT_SECONDS": str(TIME_LIMIT_SECONDS),
            "EXECUTOR_MEMORY_LIMIT_MB": str(MEMORY_LIMIT_MB),
            "MAX_CONCURRENT_EXECUTIONS": str(SLOTS),
            "MAX_QUEUED_EXECUTIONS": str(flood + 100),
            "CALLBACK_JSONL_PATH": str(workdir / "events.jsonl"),
            "CALLBACK_DEAD_LETTER_PATH": str(workdir / "dead.jsonl"),
        }
    )


async def _run(samples: int, flood: int, workdir: Path) -> list[Phase]:
    phases = [
        Phase("alone"),
        Phase("next to a runaway"),
        Phase("next to a memory hog"),
        Phase("under a flood"),
        Phase(f"under a flood, cap {SLOTS} (no reserve)"),
    ]
    async with _app(workdir / "one", flood) as (app, stub):
        await _sample(stub, Phase("warm-up"), 50)
        await _sample(stub, phases[0], samples)
        await _next_to(stub, phases[1], RUNAWAY, samples)
        await _next_to(stub, phases[2], MEMORY_HOG, samples)
        await _flood(app, stub, phases[3], flood, samples)
    async with _app(workdir / "two", flood, tenant_cap=SLOTS) as (app, stub):
        await _sample(stub, Phase("warm-up"), 50)
        await _flood(app, stub, phases[4], flood, samples)
    return phases


@contextlib.asynccontextmanager
async def _app(
    workdir: Path, flood: int, tenant_cap: int | None = None
) -> AsyncIterator[tuple[App, pb_grpc.WorkflowRunnerStub]]:
    """A started App and a stub on a channel to it; stopped (what is left cancelled) afterwards."""
    app = App(_settings(workdir, flood, tenant_cap))
    await app.start()
    port = app.ingress("grpc").port  # type: ignore[attr-defined]
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            yield app, pb_grpc.WorkflowRunnerStub(channel)
    finally:
        await app.stop(1.0)


def _report(phases: list[Phase]) -> None:
    alone = phases[0]
    print(f"tenant b's one-task executions, one at a time over gRPC; {SLOTS} slots, 2 worker processes")
    print(
        f"{'phase':24} {'samples':>7} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>9} {'p50 / alone':>12} {'p99 / alone':>12}"
    )
    for phase in phases:
        p50, p99 = phase.percentile(50), phase.percentile(99)
        print(
            f"{phase.name:24} {len(phase.latencies):7d} {p50:8.1f} {p99:8.1f} {phase.worst:9.1f}"
            f" {p50 / alone.percentile(50):11.2f}x {p99 / alone.percentile(99):11.2f}x"
        )
    for phase in phases[1:]:
        print(f"  {phase.name}: {phase.note}")
    runaway_p99 = phases[1].percentile(99)
    met = {True: "met", False: "MISSED"}
    print(
        f"goal p99 next to a runaway <= {GOAL_RUNAWAY_P99_MS:.0f} ms: {runaway_p99:.1f} ms "
        f"({met[runaway_p99 <= GOAL_RUNAWAY_P99_MS]})"
    )
    for phase in phases[3:]:
        ratio = phase.percentile(99) / alone.percentile(99)
        print(
            f"goal p99 {phase.name} <= {GOAL_FLOOD_RATIO:.0f}x alone: {ratio:.2f}x ({met[ratio <= GOAL_FLOOD_RATIO]})"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=200, help="tenant b executions per phase (at least)")
    parser.add_argument("--flood", type=int, default=3000, help="tenant a executions queued in the flood phase")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as workdir:
        for app in ("one", "two"):
            (Path(workdir) / app).mkdir()
        phases = asyncio.run(_run(args.samples, args.flood, Path(workdir)))
    _report(phases)


if __name__ == "__main__":
    main()
