"""Tenant isolation through the real gRPC ingress and real worker processes: runaways, memory, kills, tenants."""

from __future__ import annotations

import asyncio
import os
import signal
import time
import uuid
from typing import Any

import grpc
import grpc.aio
import orjson
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from callbacks import CloudEvent
from callbacks._wire import to_proto
from consumer._proto.workflow_runner.v1 import runner_pb2 as pb
from consumer._proto.workflow_runner.v1 import runner_pb2_grpc as pb_grpc
from tests.helpers import doc, eventually
from tests.integration.conftest import Runner, http_get
from tests.integration.temporal_fixtures import CallCounter

pytestmark = pytest.mark.timeout(120)

KEYS = "a=key-of-a,b=key-of-b"
RUNAWAY = doc("do:\n  - spin: {set: {n: '${ [range(300000000)] | length }'}}\n")
HUNGRY = doc("do:\n  - hog: {set: {n: '${ [range(60000000)] | length }'}}\n")
TRIVIAL = doc("do:\n  - add: {set: {sum: '${ .x + 1 }'}}\n")
ISOLATED = {"EXECUTOR_PROCESSES": "2", "EXPRESSION_TIME_LIMIT_SECONDS": "2", "GRPC_TENANT_KEYS": KEYS}


def ping(event_id: str, sender: str) -> pb.PublishEventRequest:
    """A `com.example.ping` CloudEvent for PublishEvent, its data naming who sent it."""
    event = CloudEvent(
        id=event_id,
        source="urn:test",
        type="com.example.ping",
        time="2026-01-01T00:00:00Z",
        subject="s",
        executionid="x",
        sequence=1,
        attempt=1,
        data={"from": sender},
    )
    return pb.PublishEventRequest(event=to_proto(event))


def as_tenant(tenant: str) -> tuple[tuple[str, str]]:
    return (("authorization", f"Bearer key-of-{tenant}"),)


def request(document: str, execution_id: str | None = None, data: Any = None) -> pb.ExecuteRequest:
    return pb.ExecuteRequest(
        execution_id=execution_id or str(uuid.uuid4()),
        workflow_yaml=document,
        input_json=orjson.dumps({} if data is None else data).decode(),
    )


async def finished(client: pb_grpc.WorkflowRunnerStub, execution_id: str, tenant: str, within: float) -> pb.Execution:
    """Poll GetExecution until the execution is done (confirmed), failing after `within` seconds."""
    deadline = time.monotonic() + within
    while True:
        state = await client.GetExecution(pb.GetExecutionRequest(execution_id=execution_id), metadata=as_tenant(tenant))
        if state.status != pb.EXECUTION_STATUS_RUNNING and state.progress_confirmed:
            return state
        if time.monotonic() > deadline:
            pytest.fail(f"{execution_id} not done within {within}s: {state}")
        await asyncio.sleep(0.05)


async def probe_health(runner: Runner, stop: asyncio.Event) -> list[float]:
    """Ask /livez and gRPC health over and over until `stop`; returns the slowest answer of each round."""
    health = health_pb2_grpc.HealthStub(runner.channel())
    slowest: list[float] = []
    while not stop.is_set():
        began = time.monotonic()
        live = await http_get(f"{runner.ops_url}/livez")
        serving = await health.Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
        assert live.status_code == 200
        assert serving.status == health_pb2.HealthCheckResponse.SERVING
        slowest.append(time.monotonic() - began)
        await asyncio.sleep(0.05)
    return slowest


def events(runner: Runner, execution_id: str) -> list[Any]:
    return runner.sink.of(execution_id)


async def test_runaway_expression_faults_alone_while_another_tenant_runs(start_runner: Any) -> None:
    """A runaway jq expression of tenant a faults naming its task and the limit; 100 executions of tenant b all
    complete meanwhile, and health answers throughout."""
    runner = await start_runner(**{**ISOLATED, "EXPRESSION_TIME_LIMIT_SECONDS": "6"})
    client = pb_grpc.WorkflowRunnerStub(runner.channel())
    await client.Execute(request(RUNAWAY, "runaway"), metadata=as_tenant("a"))
    stop = asyncio.Event()
    probing = asyncio.create_task(probe_health(runner, stop))
    await asyncio.sleep(0.2)  # the runaway is evaluating
    ids = [f"b-{n}" for n in range(100)]
    for n, execution_id in enumerate(ids):
        await client.Execute(request(TRIVIAL, execution_id, {"x": n}), metadata=as_tenant("b"))
    states = [await finished(client, execution_id, "b", 30) for execution_id in ids]
    runaway = await finished(client, "runaway", "a", 30)
    stop.set()
    slowest = await probing
    assert [orjson.loads(s.output_json) for s in states] == [{"sum": n + 1} for n in range(100)]
    last_innocent = max(s.ended_at.ToDatetime() for s in states)
    assert last_innocent < runaway.ended_at.ToDatetime(), "tenant b waited for the runaway to end"
    assert runaway.status == pb.EXECUTION_STATUS_FAULTED
    assert runaway.error.title == "Expression time limit exceeded"
    assert runaway.error.instance == "/do/0/spin"
    assert "EXPRESSION_TIME_LIMIT_SECONDS (6s)" in runaway.error.detail
    assert max(slowest) < 1.0
    kinds = [e.type.split(".")[-2] for e in events(runner, "runaway")]
    assert kinds == ["started", "started", "faulted", "faulted"]  # workflow, task, task, workflow
    assert sum(e.terminal for e in events(runner, "runaway")) == 1


async def test_memory_hungry_expression_faults_alone(start_runner: Any) -> None:
    """An expression that drives its worker past EXECUTOR_MEMORY_LIMIT_MB faults with the memory error; a
    neighbour on the same runner completes."""
    runner = await start_runner(
        **{**ISOLATED, "EXPRESSION_TIME_LIMIT_SECONDS": "30", "EXECUTOR_MEMORY_LIMIT_MB": "300"}
    )
    client = pb_grpc.WorkflowRunnerStub(runner.channel())
    await client.Execute(request(HUNGRY, "hog"), metadata=as_tenant("a"))
    await client.Execute(request(TRIVIAL, "neighbour", {"x": 41}), metadata=as_tenant("b"))
    hog = await finished(client, "hog", "a", 60)
    neighbour = await finished(client, "neighbour", "b", 10)
    assert hog.status == pb.EXECUTION_STATUS_FAULTED
    assert hog.error.title == "Memory limit exceeded"
    assert hog.error.instance == "/do/0/hog"
    assert "EXECUTOR_MEMORY_LIMIT_MB (300 MB" in hog.error.detail
    assert orjson.loads(neighbour.output_json) == {"sum": 42}


async def test_innocent_of_a_killed_worker_resumes_from_its_checkpoint(start_runner: Any) -> None:
    """With one worker, a runaway gets it killed: the innocent execution that shared it runs again on the new
    worker after its last completed task (a finished call is not repeated), ending with one terminal event."""
    runner = await start_runner(**{**ISOLATED, "EXECUTOR_PROCESSES": "1"})
    client = pb_grpc.WorkflowRunnerStub(runner.channel())
    async with CallCounter() as counter:
        innocent = doc(
            f"""
            do:
              - call: {{call: http, with: {{method: get, endpoint: '{counter.base_url}/once'}}}}
              - nap: {{wait: {{milliseconds: 1500}}}}
              - last: {{set: {{count: '${{ .count }}', done: true}}}}
            """
        )
        await client.Execute(request(innocent, "innocent"), metadata=as_tenant("b"))
        await eventually(lambda: counter.counts.get("/once") == 1)
        await client.Execute(request(RUNAWAY, "runaway"), metadata=as_tenant("a"))
        state = await finished(client, "innocent", "b", 30)
        assert counter.counts == {"/once": 1}, "the completed call ran again"
    assert state.status == pb.EXECUTION_STATUS_COMPLETED
    assert orjson.loads(state.output_json) == {"count": 1, "done": True}
    received = events(runner, "innocent")
    assert [e.sequence for e in received] == list(range(1, len(received) + 1))
    assert len({e.id for e in received}) == len(received)
    kinds = [".".join(e.type.split(".")[2:4]) for e in received]
    assert kinds.count("workflow.started") == 1
    assert sum(e.terminal for e in received) == 1
    assert kinds[-1] == "workflow.completed"
    assert (await finished(client, "runaway", "a", 10)).status == pb.EXECUTION_STATUS_FAULTED


async def test_cancel_reaches_an_execution_stuck_in_an_expression(start_runner: Any) -> None:
    """Cancel of an execution stuck in a long evaluation ends it cancelled within about a second (its worker is
    replaced), far before the expression limit."""
    runner = await start_runner(**{**ISOLATED, "EXPRESSION_TIME_LIMIT_SECONDS": "60"})
    client = pb_grpc.WorkflowRunnerStub(runner.channel())
    await client.Execute(request(RUNAWAY, "stuck"), metadata=as_tenant("a"))
    await asyncio.sleep(0.5)
    began = time.monotonic()
    reply = await client.Cancel(pb.CancelRequest(execution_id="stuck"), metadata=as_tenant("a"))
    assert time.monotonic() - began < 3.0
    assert reply.cancelled
    assert reply.execution.status == pb.EXECUTION_STATUS_CANCELLED
    kinds = [".".join(e.type.split(".")[2:4]) for e in events(runner, "stuck")]
    assert kinds[-1] == "workflow.cancelled"
    assert sum(e.terminal for e in events(runner, "stuck")) == 1


async def test_a_timeout_shorter_than_an_expression_ends_it_when_it_expires(start_runner: Any) -> None:
    """A 200 ms task timeout around a multi-second expression ends the execution with the timeout error soon after
    200 ms, not when the expression finishes and not at the expression limit."""
    runner = await start_runner(**{**ISOLATED, "EXPRESSION_TIME_LIMIT_SECONDS": "60"})
    client = pb_grpc.WorkflowRunnerStub(runner.channel())
    slow = doc(
        "do:\n  - slow:\n      timeout: {after: {milliseconds: 200}}\n      set: {n: '${ [range(300000000)] | length }'}\n"
    )
    began = time.monotonic()
    await client.Execute(request(slow, "slow"), metadata=as_tenant("a"))
    state = await finished(client, "slow", "a", 20)
    assert time.monotonic() - began < 3.0
    assert state.status == pb.EXECUTION_STATUS_FAULTED
    assert (state.error.status, state.error.instance) == (408, "/do/0/slow")


async def test_cross_tenant_ids_are_invisible(start_runner: Any) -> None:
    """Tenant b cannot read, cancel or join tenant a's execution by guessing its id."""
    runner = await start_runner(**ISOLATED)
    client = pb_grpc.WorkflowRunnerStub(runner.channel())
    await client.Execute(request(doc("do:\n  - nap: {wait: {seconds: 2}}\n"), "secret-run"), metadata=as_tenant("a"))
    for call, message in (
        (client.GetExecution, pb.GetExecutionRequest(execution_id="secret-run")),
        (client.Cancel, pb.CancelRequest(execution_id="secret-run")),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await call(message, metadata=as_tenant("b"))
        assert refused.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.aio.AioRpcError) as taken:
        await client.Execute(
            request(doc("do:\n  - nap: {wait: {seconds: 2}}\n"), "secret-run"), metadata=as_tenant("b")
        )
    assert taken.value.code() == grpc.StatusCode.ALREADY_EXISTS
    assert (await finished(client, "secret-run", "a", 10)).status == pb.EXECUTION_STATUS_COMPLETED


LISTEN = doc(
    """
    do:
      - hear:
          timeout: {after: {seconds: 3}}
          listen: {to: {one: {with: {type: com.example.ping}}}}
    """
)
EMIT = doc(
    "do:\n  - say: {emit: {event: {with: {type: com.example.ping, source: 'https://example.com/a', data: {from: a}}}}}\n"
)


async def test_one_tenants_emit_never_reaches_another_tenants_listen(start_runner: Any) -> None:
    """Tenant a's emit satisfies tenant a's listen only; tenant b's listen times out, then hears b's own event."""
    runner = await start_runner(**ISOLATED)
    client = pb_grpc.WorkflowRunnerStub(runner.channel())
    await client.Execute(request(LISTEN, "a-listens"), metadata=as_tenant("a"))
    await client.Execute(request(LISTEN, "b-listens"), metadata=as_tenant("b"))
    await asyncio.sleep(0.3)
    await client.Execute(request(EMIT, "a-emits"), metadata=as_tenant("a"))
    heard = await finished(client, "a-listens", "a", 10)
    assert heard.status == pb.EXECUTION_STATUS_COMPLETED
    assert orjson.loads(heard.output_json) == [{"from": "a"}]
    deaf = await finished(client, "b-listens", "b", 10)
    assert deaf.status == pb.EXECUTION_STATUS_FAULTED
    assert deaf.error.status == 408
    await client.Execute(request(LISTEN, "b-listens-again"), metadata=as_tenant("b"))
    await asyncio.sleep(0.3)
    await client.PublishEvent(ping("p-1", "b"), metadata=as_tenant("b"))
    again = await finished(client, "b-listens-again", "b", 10)
    assert orjson.loads(again.output_json) == [{"from": "b"}]


async def test_a_flood_of_one_tenant_does_not_starve_another(start_runner: Any) -> None:
    """With 300 executions of tenant a waiting for 4 slots, tenant b's one execution finishes about as fast as it
    would alone, long before a's flood drains."""
    runner = await start_runner(**{**ISOLATED, "MAX_CONCURRENT_EXECUTIONS": "4"})
    client = pb_grpc.WorkflowRunnerStub(runner.channel())
    nap = doc("do:\n  - nap: {wait: {milliseconds: 100}}\n")
    for n in range(300):
        await client.Execute(request(nap, f"flood-{n}"), metadata=as_tenant("a"))
    began = time.monotonic()
    await client.Execute(request(TRIVIAL, "b-alone", {"x": 1}), metadata=as_tenant("b"))
    state = await finished(client, "b-alone", "b", 20)
    waited = time.monotonic() - began
    waiting = runner.app.service.scheduler.queued("a")
    assert orjson.loads(state.output_json) == {"sum": 2}
    assert waited < 1.5, f"tenant b waited {waited:.2f}s behind the flood"
    assert waiting > 100, "the flood had drained: the test proved nothing"


async def test_kill_9_of_a_worker_loses_nothing(start_runner: Any) -> None:
    """SIGKILL of a worker process (not the supervisor) mid-run: every execution still completes with its output
    and exactly one terminal event."""
    runner = await start_runner(**ISOLATED)
    client = pb_grpc.WorkflowRunnerStub(runner.channel())
    work = doc("do:\n  - nap: {wait: {seconds: 1}}\n  - add: {set: {sum: '${ .x + 1 }'}}\n")
    for n in range(20):
        await client.Execute(request(work, f"k-{n}", {"x": n}), metadata=as_tenant("b"))
    await asyncio.sleep(0.4)
    victim = runner.app.executor.workers[0]  # type: ignore[union-attr]
    os.kill(victim, signal.SIGKILL)
    states = [await finished(client, f"k-{n}", "b", 30) for n in range(20)]
    assert [orjson.loads(s.output_json) for s in states] == [{"sum": n + 1} for n in range(20)]
    for n in range(20):
        received = events(runner, f"k-{n}")
        assert sum(e.terminal for e in received) == 1
        assert [e.sequence for e in received] == list(range(1, len(received) + 1))
        assert [e.type for e in received].count("io.serverlessworkflow.workflow.started.v1") == 1
    await eventually(lambda: victim not in runner.app.executor.workers and len(runner.app.executor.workers) == 2)  # type: ignore[union-attr]


async def test_when_every_worker_is_stuck_a_spare_takes_new_work(start_runner: Any) -> None:
    """With its only worker stuck in a long evaluation, new executions run on a spare worker within seconds instead
    of queueing behind the runaway; the spare is retired once the pool is healthy again."""
    runner = await start_runner(**{**ISOLATED, "EXECUTOR_PROCESSES": "1", "EXPRESSION_TIME_LIMIT_SECONDS": "20"})
    client = pb_grpc.WorkflowRunnerStub(runner.channel())
    await client.Execute(request(RUNAWAY, "hog-the-worker"), metadata=as_tenant("a"))
    await asyncio.sleep(0.5)
    began = time.monotonic()
    await client.Execute(request(TRIVIAL, "on-a-spare", {"x": 2}), metadata=as_tenant("b"))
    state = await finished(client, "on-a-spare", "b", 15)
    assert orjson.loads(state.output_json) == {"sum": 3}
    assert time.monotonic() - began < 5.0
    assert len(runner.app.executor.workers) == 2  # type: ignore[union-attr]
    await client.Cancel(pb.CancelRequest(execution_id="hog-the-worker"), metadata=as_tenant("a"))
    await eventually(lambda: len(runner.app.executor.workers) == 1, within=15)  # type: ignore[union-attr]


async def test_without_tenant_keys_the_operator_sees_every_tenant(start_runner: Any) -> None:
    """With no GRPC_TENANT_KEYS, an execution started for tenant acme (metadata) can be read and cancelled by the
    caller, and PublishEvent reaches acme's listen when the call names the tenant."""
    runner = await start_runner(EXECUTOR_PROCESSES="2")
    client = pb_grpc.WorkflowRunnerStub(runner.channel())
    waiting = pb.ExecuteRequest(execution_id="acme-listen", workflow_yaml=LISTEN, metadata={"tenant": "acme"})
    await client.Execute(waiting)
    await asyncio.sleep(0.3)
    await client.PublishEvent(ping("p-2", "ops"), metadata=(("tenant", "acme"),))
    state = await eventually_state(client, "acme-listen")
    assert orjson.loads(state.output_json) == [{"from": "ops"}]
    await client.Execute(
        pb.ExecuteRequest(
            execution_id="acme-nap",
            workflow_yaml=doc("do:\n  - nap: {wait: {hours: 1}}\n"),
            metadata={"tenant": "acme"},
        )
    )
    reply = await client.Cancel(pb.CancelRequest(execution_id="acme-nap"))
    assert reply.execution.status == pb.EXECUTION_STATUS_CANCELLED


async def eventually_state(client: pb_grpc.WorkflowRunnerStub, execution_id: str) -> pb.Execution:
    deadline = time.monotonic() + 10
    while True:
        state = await client.GetExecution(pb.GetExecutionRequest(execution_id=execution_id))
        if state.status != pb.EXECUTION_STATUS_RUNNING:
            return state
        assert time.monotonic() < deadline, f"{execution_id} still running"
        await asyncio.sleep(0.05)


async def test_a_tenant_id_that_is_not_one_is_invalid_argument(start_runner: Any) -> None:
    """Without tenant keys, metadata naming an unusable tenant is INVALID_ARGUMENT with its location, not run."""
    runner = await start_runner(EXECUTOR_PROCESSES="1")
    client = pb_grpc.WorkflowRunnerStub(runner.channel())
    bad = pb.ExecuteRequest(execution_id="bad-tenant", workflow_yaml=TRIVIAL, metadata={"tenant": "../other tenant"})
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await client.Execute(bad)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "/metadata/tenant" in (refused.value.details() or "")
    assert runner.app.service.get("bad-tenant") is None
