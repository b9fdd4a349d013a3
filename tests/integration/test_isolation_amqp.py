"""Isolation over the real RabbitMQ: a runaway expression of one tenant next to another tenant's 100 executions."""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import aio_pika.abc
import httpx
import pytest

from tests.integration.conftest import free_port
from tests.integration.conftest_amqp import (
    ReplyInbox,
    RunnerProcess,
    consumers,
    depth,
    document,
    eventually,
    publish,
    read_events,
    settings_env,
    take,
)

pytestmark = pytest.mark.timeout(120)

RUNAWAY = document("do:\n  - spin: {set: {x: '${ [range(300000000)] | length }'}}\n")
TRIVIAL = document("do:\n  - double: {set: {n: '${ .n * 2 }'}}\n")
LIMIT_SECONDS = 2
FAULTED = "io.serverlessworkflow.workflow.faulted.v1"
STARTED = "io.serverlessworkflow.workflow.started.v1"
COMPLETED = "io.serverlessworkflow.workflow.completed.v1"
TERMINAL = (COMPLETED, FAULTED, "io.serverlessworkflow.workflow.cancelled.v1")


@dataclass
class LivenessProbe:
    """Polls `/livez` from a thread of its own (so this test's event loop cannot delay it), recording each answer."""

    url: str
    answers: list[tuple[float, float, int | None]] = field(default_factory=list)  # (sent at, seconds, status)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> LivenessProbe:
        self._thread = threading.Thread(target=self._poll, name="livez-probe", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        assert self._thread is not None
        self._thread.join(5)

    def _poll(self) -> None:
        with httpx.Client(timeout=5.0) as client:
            while not self._stop.is_set():
                sent = time.monotonic()
                try:
                    status: int | None = client.get(self.url).status_code
                except httpx.HTTPError:
                    status = None
                self.answers.append((sent, time.monotonic() - sent, status))
                self._stop.wait(0.05)

    def between(self, start: float, end: float) -> list[tuple[float, float, int | None]]:
        """Answers to the polls sent in [start, end]."""
        return [answer for answer in self.answers if start <= answer[0] <= end]


def _runner_env(queue: str, tmp_path: Path, metrics_port: int) -> dict[str, str]:
    return settings_env(
        queue,
        CALLBACK_JSONL_PATH=str(tmp_path / "events.jsonl"),
        CALLBACK_DEAD_LETTER_PATH=str(tmp_path / "progress-dead.jsonl"),
        METRICS_HOST="127.0.0.1",
        METRICS_PORT=str(metrics_port),
        EXECUTOR_PROCESSES="2",
        EXPRESSION_TIME_LIMIT_SECONDS=str(LIMIT_SECONDS),
        LOG_LEVEL="INFO",
    )


def _of(events: list[dict[str, Any]], execution_id: str) -> list[dict[str, Any]]:
    return [event for event in events if event["executionid"] == execution_id]


def _at(event: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(event["time"])


def _terminal(events: list[dict[str, Any]]) -> list[str]:
    return [event["type"] for event in events if event["type"] in TERMINAL]


def _evaluating(events: list[dict[str, Any]], execution_id: str) -> bool:
    return any(e["type"].endswith("task.started.v1") for e in _of(events, execution_id))


async def test_runaway_expression_is_dead_lettered_while_another_tenant_runs_on(
    tmp_path: Path, queue_name: str, amqp: aio_pika.abc.AbstractChannel, runner_processes: list[RunnerProcess]
) -> None:
    """A runaway of tenant a ends faulted after the limit and is dead-lettered once with `limit-exceeded`; tenant b's
    100 messages all complete with their outputs meanwhile, and `/livez` answers within 1 s throughout."""
    metrics_port = free_port()
    runner = RunnerProcess(_runner_env(queue_name, tmp_path, metrics_port), tmp_path / "runner.log").start()
    runner_processes.append(runner)
    await eventually(lambda: _consuming(queue_name, runner), 30, "the runner consuming its queue")
    events = tmp_path / "events.jsonl"
    inbox = await ReplyInbox(amqp).open()
    with LivenessProbe(f"http://127.0.0.1:{metrics_port}/livez") as probe:
        runaway = {"execution_id": "runaway", "workflow_yaml": RUNAWAY, "metadata": {"tenant": "a"}}
        await publish(amqp, queue_name, runaway, reply_to=inbox.name, correlation_id="runaway")
        await eventually(lambda: _evaluating(read_events(events), "runaway"), 20, "the runaway to start evaluating")
        evaluating_since = time.monotonic()
        # Work that arrives in the first few tens of milliseconds of an evaluation may still be placed on its worker
        # (the pool cannot tell a runaway yet) and then waits for the limit to run again elsewhere: start after that.
        await asyncio.sleep(0.25)
        for n in range(100):
            body = {"execution_id": f"b-{n}", "workflow_yaml": TRIVIAL, "input": {"n": n}, "metadata": {"tenant": "b"}}
            await publish(amqp, queue_name, body, reply_to=inbox.name, correlation_id=f"b-{n}")
        await eventually(lambda: len(inbox.replies) == 101, 60, "a reply to all 101 messages")
        dead = await take(amqp, f"{queue_name}.dead", 1, within=10)
        faulted_seen = time.monotonic()
        await eventually(lambda: _of(read_events(events), "b-99") != [], 10, "the events of the last message")
        more_dead = await take(amqp, f"{queue_name}.dead", 1, within=1.0)  # a second dead letter would be a requeue
    seen = read_events(events)

    for n in range(100):
        assert inbox.replies[f"b-{n}"] == [
            {"execution_id": f"b-{n}", "status": "completed", "output": {"n": 2 * n}, "error": None}
        ]
        assert _terminal(_of(seen, f"b-{n}")) == [COMPLETED]

    [reply] = inbox.replies["runaway"]
    assert reply["status"] == "faulted"
    assert reply["error"]["title"] == "Expression time limit exceeded"
    assert reply["error"]["instance"] == "/do/0/spin"
    assert len(dead) == 1, "the runaway is dead-lettered"
    assert more_dead == []
    headers = dead[0].headers
    assert dead[0].correlation_id == "runaway"
    assert headers["x-rejection-code"] == "limit-exceeded"
    assert "Expression time limit exceeded" in str(headers["x-rejection-reason"])
    assert headers["x-delivery-count"] == 0, "the runaway was delivered once, never requeued"
    assert await depth(amqp, queue_name) == (0, 1)

    runaway_events = _of(seen, "runaway")
    assert [e["type"] for e in runaway_events if e["type"] == STARTED] == [STARTED]
    assert _terminal(runaway_events) == [FAULTED]
    [terminal] = [e for e in runaway_events if e["type"] == FAULTED]
    error = terminal["data"]["error"]
    assert error["title"] == "Expression time limit exceeded"
    assert error["instance"] == "/do/0/spin"
    assert f"EXPRESSION_TIME_LIMIT_SECONDS ({LIMIT_SECONDS}s)" in error["detail"]
    assert {e["attempt"] for e in runaway_events} == {1}
    # Next to it, not after it: tenant b's work went around the stuck worker (about 0.2 s of work against 2 s).
    finished = [_at(e) for e in seen if e["type"] == COMPLETED]
    assert len(finished) == 100
    assert max(finished) < _at(terminal), "tenant b's messages completed while the runaway was evaluating"

    # The runaway evaluated for its whole limit: the probe covered at least that window.
    during = probe.between(evaluating_since, faulted_seen)
    assert len(during) >= LIMIT_SECONDS * 5, f"too few /livez polls while the runaway ran: {len(during)}"
    assert all(status == 200 for _, _, status in probe.answers), probe.answers
    slowest = max(seconds for _, seconds, _ in probe.answers)
    assert slowest < 1.0, f"/livez took {slowest:.2f} s to answer"


async def _consuming(queue: str, runner: RunnerProcess) -> bool:
    if runner.process is not None and runner.process.poll() is not None:
        pytest.fail(f"runner exited with {runner.process.returncode}:\n{runner.log_text()}")
    return await consumers(queue) >= 1
