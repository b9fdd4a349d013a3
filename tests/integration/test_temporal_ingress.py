"""The Temporal ingress against a real dev server: the ready workflow and a caller's own workflow, resumption after
a killed worker, after a graceful stop and after a heartbeat timeout on the same worker, cancellation, error mapping,
the concurrency bound (large payloads: test_payloads_temporal.py)."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from temporalio.api.enums.v1 import PendingActivityState
from temporalio.client import Client, WorkflowFailureError, WorkflowHandle
from temporalio.converter import DataConverter
from temporalio.exceptions import ActivityError, ApplicationError, CancelledError, RetryState

from consumer import StartupError
from consumer._temporal_client import connect, submit_via_temporal
from consumer._temporal_codec import checkpoint_from
from consumer._temporal_dev import dev_temporal
from consumer.config import Settings
from tests.helpers import eventually
from tests.integration.conftest import free_port
from tests.integration.temporal_fixtures import (
    CallCounter,
    caller_worker,
    events_of,
    kinds,
    request,
    runner,
    runner_app,
    runner_env,
    spawn_worker,
)

pytestmark = [pytest.mark.timeout(60)]

STEPS = """\
do:
  - first: {set: {a: 1}}
  - second: {set: {b: '${ .a + 1 }'}}
"""


def _id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


async def _start(client: Client, queue: str, payload: dict[str, Any]) -> WorkflowHandle[Any, Any]:
    return await client.start_workflow("RunServerlessWorkflow", payload, id=payload["execution_id"], task_queue=queue)


async def _checkpointed(handle: WorkflowHandle[Any, Any], next_task: int) -> bool:
    """True once the server holds a heartbeat of the workflow's activity that resumes at `next_task` or later."""
    description = await handle.describe()
    for pending in description.raw_description.pending_activities:
        details = await DataConverter.default.decode(pending.heartbeat_details.payloads)
        checkpoint = checkpoint_from(details)
        if checkpoint is not None and checkpoint.next_task >= next_task:
            return True
    return False


async def _failure(handle: WorkflowHandle[Any, Any]) -> BaseException | None:
    """What the workflow failed with."""
    with pytest.raises(WorkflowFailureError) as caught:
        await handle.result()
    return caught.value.cause


async def _app_error(handle: WorkflowHandle[Any, Any]) -> ApplicationError:
    """The ApplicationError RunServerlessWorkflow failed with."""
    error = await _failure(handle)
    assert isinstance(error, ApplicationError), error
    return error


async def _attempts(handle: WorkflowHandle[Any, Any]) -> list[int]:
    """The attempt of every ExecuteWorkflow start in the history (retries show up only as the last one)."""
    return [
        event.activity_task_started_event_attributes.attempt
        async for event in handle.fetch_history_events()
        if event.HasField("activity_task_started_event_attributes")
    ]


async def test_ready_workflow_and_caller_workflow_agree(temporal_address: str, task_queue: str, tmp_path: Path) -> None:
    """RunServerlessWorkflow and a caller's own workflow calling ExecuteWorkflow by name give the same result."""
    events = tmp_path / "events.jsonl"
    client = await Client.connect(temporal_address)
    async with runner(runner_env(temporal_address, task_queue, events)), caller_worker(client) as caller_queue:
        ready = await (await _start(client, task_queue, request("ready-1", STEPS))).result()
        own = await client.execute_workflow(
            "TestCallerWorkflow", args=[task_queue, request("own-1", STEPS), 1], id=_id("own"), task_queue=caller_queue
        )
    assert ready == {"execution_id": "ready-1", "status": "completed", "output": {"b": 2}, "error": None}
    assert own == {**ready, "execution_id": "own-1"}
    for execution in ("ready-1", "own-1"):
        assert kinds(events_of(events, execution)) == [
            "workflow.started",
            "task.started:/do/0/first",
            "task.completed:/do/0/first",
            "task.started:/do/1/second",
            "task.completed:/do/1/second",
            "workflow.completed",
        ]
        assert {event["attempt"] for event in events_of(events, execution)} == {1}


@pytest.mark.slow
async def test_killed_worker_resumes_from_checkpoint(temporal_address: str, task_queue: str, tmp_path: Path) -> None:
    """A worker SIGKILLed mid-run: a second worker finishes the run, and completed HTTP calls are not made again."""
    events = tmp_path / "events.jsonl"
    env = runner_env(temporal_address, task_queue, events)
    client = await Client.connect(temporal_address)
    async with CallCounter() as counter:
        body = f"""\
do:
  - one: {{call: http, with: {{method: get, endpoint: '{counter.base_url}/one'}}}}
  - two: {{call: http, with: {{method: get, endpoint: '{counter.base_url}/two'}}}}
  - pause: {{wait: {{seconds: 4}}}}
  - three: {{call: http, with: {{method: get, endpoint: '{counter.base_url}/three'}}}}
"""
        execution = _id("killed")
        worker = spawn_worker(env, tmp_path / "worker-a.log")
        try:
            # The caller's workflow runs in this process, so only the activity's worker dies.
            async with caller_worker(client) as caller:
                handle = await client.start_workflow(
                    "TestCallerWorkflow",
                    args=[task_queue, request(execution, body), 3],
                    id=execution,
                    task_queue=caller,
                )
                await eventually(lambda: counter.counts.get("/two") == 1, within=20)
                # Heartbeats are throttled: wait until the checkpoint after `two` has reached the server.
                await eventually(lambda: _checkpointed(handle, 2), within=20, what="the checkpoint after `two`")
                worker.send_signal(signal.SIGKILL)
                worker.wait(10)
                async with runner(env):
                    result = await asyncio.wait_for(handle.result(), 40)
        finally:
            if worker.poll() is None:
                worker.kill()
    assert result["status"] == "completed"
    assert result["output"] == {"path": "/three", "count": 1}
    assert counter.counts == {"/one": 1, "/two": 1, "/three": 1}
    second = [event for event in events_of(events, execution) if event["attempt"] == 2]
    assert kinds(second) == [
        "workflow.started",
        "task.started:/do/2/pause",
        "task.completed:/do/2/pause",
        "task.started:/do/3/three",
        "task.completed:/do/3/three",
        "workflow.completed",
    ]


async def test_graceful_stop_hands_the_run_to_another_worker(
    temporal_address: str, task_queue: str, tmp_path: Path
) -> None:
    """A runner stopped mid-run fails the attempt as retryable; another runner resumes after the last task done."""
    events = tmp_path / "events.jsonl"
    env = runner_env(temporal_address, task_queue, events)
    client = await Client.connect(temporal_address)
    body = "do:\n  - first: {set: {a: 1}}\n  - pause: {wait: {seconds: 3}}\n  - last: {set: {done: '${ .a }'}}\n"
    execution = _id("handoff")
    async with runner(env) as first:
        handle = await _start(client, task_queue, request(execution, body))
        await eventually(lambda: "task.started:/do/1/pause" in kinds(events_of(events, execution)), within=20)
        await eventually(lambda: _checkpointed(handle, 1), within=20, what="the checkpoint after `first`")
        await first.stop(0.2)
    assert kinds([e for e in events_of(events, execution) if e["attempt"] == 1])[-1] == "workflow.cancelled"
    async with runner(env):
        result = await asyncio.wait_for(handle.result(), 30)
    assert result["output"] == {"done": 1}  # `.a` came from the checkpoint
    assert kinds([e for e in events_of(events, execution) if e["attempt"] == 2])[:2] == [
        "workflow.started",
        "task.started:/do/1/pause",
    ]


class HeldSink:
    """A CloudEvents HTTP receiver on 127.0.0.1 that keeps every event and holds its answer to attempt 1's
    `workflow.cancelled` until `release` is set: that attempt's run stays "being cancelled" meanwhile."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.release = asyncio.Event()
        self._server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}/events"

    @contextlib.asynccontextmanager
    async def serving(self) -> AsyncIterator[HeldSink]:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        try:
            yield self
        finally:
            self.release.set()
            self._server.close()
            await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").lower()
        length = int(head.split("content-length:", 1)[1].split("\r\n", 1)[0])
        body = orjson.loads(await reader.readexactly(length))
        batch = body if isinstance(body, list) else [body]
        if any(event["type"].endswith(".workflow.cancelled.v1") and event["attempt"] == 1 for event in batch):
            await self.release.wait()
        self.events.extend(batch)
        writer.write(b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
        await writer.drain()
        writer.close()

    def of(self, attempt: int) -> list[str]:
        return kinds([event for event in self.events if event["attempt"] == attempt])


async def _started(handle: WorkflowHandle[Any, Any], attempt: int) -> bool:
    """True once the server has handed that attempt of the workflow's activity to a worker."""
    description = await handle.describe()
    return any(
        pending.state == PendingActivityState.PENDING_ACTIVITY_STATE_STARTED and pending.attempt == attempt
        for pending in description.raw_description.pending_activities
    )


@pytest.mark.slow
@pytest.mark.timeout(150)
async def test_retry_on_the_same_worker_waits_for_the_timed_out_attempts_run_then_resumes(
    temporal_address: str, task_queue: str, tmp_path: Path
) -> None:
    """Attempt 1 misses its heartbeats (its event loop is busy), times out and is cancelled; attempt 2 lands on the
    same worker while attempt 1's run is still being cancelled: it waits for that run, then resumes after the
    last checkpointed task and completes (the HTTP call before the checkpoint is not made again)."""
    async with CallCounter() as counter, HeldSink().serving() as sink:
        env = runner_env(
            temporal_address,
            task_queue,
            tmp_path / "unused.jsonl",
            CALLBACK_JSONL_PATH=None,
            CALLBACK_HTTP_URL=sink.url,
        )
        body = f"""\
do:
  - one: {{call: http, with: {{method: get, endpoint: '{counter.base_url}/one'}}}}
  - pause: {{wait: {{seconds: 12}}}}
  - last: {{set: {{done: '${{ .count }}'}}}}
"""
        execution = _id("stalled")
        client = await Client.connect(temporal_address)
        async with runner(env) as app, caller_worker(client) as caller:
            handle = await client.start_workflow(
                "TestCallerWorkflow",
                # 2 s heartbeat timeout; attempt 2 comes 10 s after attempt 1 timed out, well after its cancel.
                args=[task_queue, request(execution, body), 3, 10.0],
                id=execution,
                task_queue=caller,
            )
            await eventually(lambda: _checkpointed(handle, 1), within=30, what="the checkpoint after `one`")
            # The loop is busy, as when it encodes a 100 MB payload: no heartbeat for 5 s, so the server times
            # attempt 1 out; its next heartbeat learns that, and the worker cancels attempt 1.
            time.sleep(5)  # noqa: ASYNC251 - blocking the event loop is the point
            run = app.service.get(execution)
            assert run is not None
            await eventually(lambda: run.cancel_requested, within=20, what="attempt 1's cancel to reach its run")
            await eventually(lambda: _started(handle, 2), within=40, what="attempt 2 on the worker")
            await asyncio.sleep(1)  # attempt 2 is in the activity now: before the fix it joins here
            assert not run.done, "attempt 1's run is still being cancelled when attempt 2 arrives"
            sink.release.set()
            result = await asyncio.wait_for(handle.result(), 60)
    assert (result["status"], result["output"]) == ("completed", {"done": 1})
    assert counter.counts == {"/one": 1}
    assert sink.of(1)[-1] == "workflow.cancelled"
    assert sink.of(2) == [
        "workflow.started",
        "task.started:/do/1/pause",
        "task.completed:/do/1/pause",
        "task.started:/do/2/last",
        "task.completed:/do/2/last",
        "workflow.completed",
    ]


async def test_cancellation_mid_wait(temporal_address: str, task_queue: str, tmp_path: Path) -> None:
    """Cancelling the workflow during a `wait` cancels the run: its events say so, Temporal records it cancelled."""
    events = tmp_path / "events.jsonl"
    execution = _id("cancel")
    async with runner(runner_env(temporal_address, task_queue, events)):
        client = await Client.connect(temporal_address)
        handle = await _start(client, task_queue, request(execution, "do:\n  - nap: {wait: {seconds: 30}}\n"))
        await eventually(lambda: "task.started:/do/0/nap" in kinds(events_of(events, execution)), within=20)
        began = time.monotonic()
        await handle.cancel()
        error = await _failure(handle)
        assert time.monotonic() - began < 10
    assert isinstance(error, CancelledError)
    assert kinds(events_of(events, execution))[-1] == "workflow.cancelled"
    history = [event async for event in handle.fetch_history_events()]
    assert any(event.HasField("activity_task_canceled_event_attributes") for event in history)


async def test_faulted_and_invalid_documents_map_to_their_error_types(
    temporal_address: str, task_queue: str, tmp_path: Path
) -> None:
    """A faulted run is a non-retryable WorkflowFaulted with the spec error; a bad document InvalidWorkflowDocument."""
    faulted = (
        "do:\n  - boom:\n      raise:\n        error:\n"
        "          type: https://serverlessworkflow.io/spec/1.0.0/errors/validation\n"
        "          status: 400\n          title: Bad thing\n"
    )
    invalid = "do:\n  - odd: {frobnicate: 1}\n"
    client = await Client.connect(temporal_address)
    async with runner(runner_env(temporal_address, task_queue, tmp_path / "e.jsonl")), caller_worker(client) as caller:
        faulted_run = await _start(client, task_queue, request(_id("faulted"), faulted))
        error = await _app_error(faulted_run)
        assert (error.type, error.non_retryable) == ("WorkflowFaulted", True)
        assert isinstance(error.cause, ActivityError)  # the activity's failure stays visible as the cause
        assert error.details[0]["title"] == "Bad thing"
        assert error.details[0]["status"] == 400
        assert error.details[0]["instance"] == "/do/0/boom"
        assert await _attempts(faulted_run) == [1]

        invalid_run = await _start(client, task_queue, request(_id("invalid"), invalid))
        error = await _app_error(invalid_run)
        assert (error.type, error.non_retryable) == ("InvalidWorkflowDocument", True)
        assert error.details[0][0]["path"].startswith("/do/0")
        assert await _attempts(invalid_run) == []  # refused by the plan, before any activity

        own = await client.start_workflow(
            "TestCallerWorkflow",
            args=[task_queue, request(_id("own-invalid"), invalid), 3],
            id=_id("own"),
            task_queue=caller,
        )
        activity_error = await _failure(own)
        assert isinstance(activity_error, ActivityError)
        assert isinstance(activity_error.cause, ApplicationError)
        assert activity_error.cause.type == "InvalidWorkflowDocument"
        assert activity_error.retry_state is RetryState.NON_RETRYABLE_FAILURE

        error = await _app_error(await _start(client, task_queue, {"execution_id": _id("bad"), "workflow_yaml": 42}))
        assert (error.type, error.details[0][0]["path"]) == ("InvalidRequest", "/workflow_yaml")


async def test_unconfirmed_progress_is_retryable(temporal_address: str, task_queue: str, tmp_path: Path) -> None:
    """A progress sink that never confirms the terminal event fails the attempt with a retryable error."""
    env = runner_env(
        temporal_address,
        task_queue,
        tmp_path / "e.jsonl",
        CALLBACK_JSONL_PATH=None,
        CALLBACK_HTTP_URL="http://127.0.0.1:9/events",  # the discard port: nothing listens
        CALLBACK_FLUSH_TIMEOUT_SECONDS=0.5,
    )
    client = await Client.connect(temporal_address)
    async with runner(env), caller_worker(client) as caller:
        handle = await client.start_workflow(
            "TestCallerWorkflow",
            args=[task_queue, request(_id("unconfirmed"), STEPS), 1],
            id=_id("own"),
            task_queue=caller,
        )
        error = await _failure(handle)
    assert isinstance(error, ActivityError)
    assert isinstance(error.cause, ApplicationError)
    assert (error.cause.type, error.cause.non_retryable) == ("ProgressNotConfirmed", False)
    assert error.retry_state is RetryState.MAXIMUM_ATTEMPTS_REACHED


@pytest.mark.slow
async def test_hundred_executions_respect_the_concurrency_bound(
    temporal_address: str, task_queue: str, tmp_path: Path
) -> None:
    """100 workflows started at once all complete, never more than TEMPORAL_MAX_CONCURRENCY running together."""
    events = tmp_path / "events.jsonl"
    env = runner_env(temporal_address, task_queue, events, TEMPORAL_MAX_CONCURRENCY=5)
    client = await Client.connect(temporal_address)
    body = "do:\n  - nap: {wait: {milliseconds: 200}}\n"
    async with runner(env) as app:
        peak = 0

        async def sample() -> None:
            nonlocal peak
            while True:
                peak = max(peak, app.service.running)
                await asyncio.sleep(0.005)

        sampler = asyncio.create_task(sample())
        handles = await asyncio.gather(*(_start(client, task_queue, request(_id("many"), body)) for _ in range(100)))
        results = await asyncio.wait_for(asyncio.gather(*(handle.result() for handle in handles)), 45)
        sampler.cancel()
    assert [result["status"] for result in results] == ["completed"] * 100
    assert peak == 5
    terminal = [e for h in handles for e in events_of(events, h.id) if e["type"].endswith("workflow.completed.v1")]
    assert len(terminal) == 100


async def test_submit_via_temporal_reports_like_run(temporal_address: str, task_queue: str, tmp_path: Path) -> None:
    """`submit --temporal` gets the result object, faulted runs as results, invalid documents as located errors."""
    env = runner_env(temporal_address, task_queue, tmp_path / "e.jsonl")
    settings = Settings.from_env(env).temporal
    progress: list[str] = []
    async with runner(env):
        body = "do:\n  - first: {set: {a: 1}}\n  - nap: {wait: {milliseconds: 500}}\n"
        done = await submit_via_temporal(settings, request(_id("submit"), body), on_progress=progress.append)
        boom = "do:\n  - boom: {raise: {error: {type: https://example.com/boom, status: 418, title: Teapot}}}\n"
        faulted = await submit_via_temporal(settings, request(_id("submit"), boom))
        invalid = await submit_via_temporal(settings, request(_id("submit"), "do: 7\n"))
    assert done.result is not None
    assert (done.result["status"], done.result["output"]) == ("completed", {"a": 1})
    assert "attempt 1: 1 top-level tasks done" in progress
    assert faulted.result is not None
    assert faulted.result["status"] == "faulted"
    assert faulted.result["error"]["title"] == "Teapot"
    assert invalid.errors
    assert invalid.errors[0]["path"].startswith("/do")


async def test_dev_temporal_serves_a_document(tmp_path: Path) -> None:
    """`serve --dev-temporal`: an embedded dev server, the runner aimed at it, a submission runs; stopped after."""
    env = {"EXECUTION_MODE": "grpc", "METRICS_PORT": "off", "GRPC_HOST": "127.0.0.1", "GRPC_PORT": "0"}
    env |= {"CALLBACK_JSONL_PATH": str(tmp_path / "e.jsonl"), "TEMPORAL_TASK_QUEUE": _id("dev")}
    async with dev_temporal(Settings.from_env(env), port=free_port()) as settings:
        assert settings.ingresses == ("grpc", "temporal")
        async with runner_app(settings):
            outcome = await submit_via_temporal(settings.temporal, request(_id("dev"), STEPS))
    assert outcome.result is not None
    assert outcome.result["output"] == {"b": 2}
    with pytest.raises(StartupError, match=r"^TEMPORAL_SERVICE_ADDRESS: cannot reach Temporal"):
        await connect(settings.temporal)


@pytest.mark.parametrize("variable", ["TEMPORAL_SERVICE_ADDRESS", "TEMPORAL_NAMESPACE"])
async def test_start_refusal_names_the_variable(
    temporal_address: str, task_queue: str, tmp_path: Path, variable: str
) -> None:
    """An unreachable frontend or an unknown namespace stops start-up with one line naming the variable."""
    wrong = {"TEMPORAL_SERVICE_ADDRESS": f"127.0.0.1:{free_port()}", "TEMPORAL_NAMESPACE": "no-such-namespace"}
    env = runner_env(temporal_address, task_queue, tmp_path / "e.jsonl", **{variable: wrong[variable]})
    with pytest.raises(StartupError, match=f"^{variable}: "):
        async with runner(env):
            pass
