"""The gRPC ingress on a real socket: what a client of the WorkflowRunner service sees."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import grpc
import grpc.aio
import orjson
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from callbacks import to_proto
from consumer._proto.workflow_runner.v1 import runner_pb2 as pb
from tests.helpers import doc, eventually
from tests.integration.conftest import http_get, stream, stub

MULTI = doc(
    """
    do:
      - greet: {set: {msg: '${ "hi " + .name }'}}
      - shout: {set: {msg: '${ .msg + "!" }'}}
      - pick:
          switch:
            - loud: {when: '${ .msg | endswith("!") }', then: done}
            - quiet: {then: exit}
      - never: {set: {msg: unreachable}}
      - done: {set: {msg: '${ .msg }', n: 3}}
    """
)
ONE_TASK = doc("do:\n  - one: {set: {ok: true}}\n")
LONG_WAIT = doc("do:\n  - nap: {wait: {hours: 1}}\n")
SHORT_WAIT = doc("do:\n  - nap: {wait: {milliseconds: 600}}\n")


def request(document: str, execution_id: str | None = None, data: Any = None, **fields: Any) -> pb.ExecuteRequest:
    return pb.ExecuteRequest(
        execution_id=execution_id or str(uuid.uuid4()),
        workflow_yaml=document,
        input_json=orjson.dumps(data if data is not None else {}).decode(),
        **fields,
    )


async def test_execute_stream_multi_task(start_runner: Any) -> None:
    """ExecuteStream sends every lifecycle event in order, then the result; the sink confirmed the same events."""
    runner = await start_runner()
    req = request(MULTI, "multi-1", {"name": "Ada"}, metadata={"tenant": "t1"})
    events, result = await stream(stub(runner), req)
    assert result.status == pb.EXECUTION_STATUS_COMPLETED
    assert orjson.loads(result.output_json) == {"msg": "hi Ada!", "n": 3}
    assert result.progress_confirmed
    kinds = [".".join(e.type.split(".")[2:4]) for e in events]
    assert kinds[0] == "workflow.started"
    assert kinds[-1] == "workflow.completed"
    assert kinds.count("task.completed") == 4  # greet, shout, pick, done; `never` skipped
    assert [e.attributes["sequence"].ce_integer for e in events] == list(range(1, len(events) + 1))
    assert [e.id for e in events] == [e.id for e in runner.sink.of("multi-1")]
    assert all(e.metadata == {"tenant": "t1"} for e in runner.sink.of("multi-1"))


async def test_execute_returns_at_once_and_get_execution_follows(start_runner: Any) -> None:
    """Execute answers RUNNING immediately; GetExecution reports the end only once the terminal event is confirmed."""
    runner = await start_runner()
    runner.sink.delay = 0.3
    client = stub(runner)
    response = await client.Execute(request(ONE_TASK, "quick"))
    assert (response.duplicate, response.execution.status) == (False, pb.EXECUTION_STATUS_RUNNING)
    get = pb.GetExecutionRequest(execution_id="quick")
    await eventually(lambda: runner.app.service.get("quick").ended, what="the run to end")
    assert (await client.GetExecution(get)).status == pb.EXECUTION_STATUS_RUNNING, "its end is not confirmed yet"

    async def reported() -> bool:
        return (await client.GetExecution(get)).status != pb.EXECUTION_STATUS_RUNNING

    await eventually(reported, what="GetExecution to report the end")
    state = await client.GetExecution(get)
    assert state.status == pb.EXECUTION_STATUS_COMPLETED
    assert state.progress_confirmed
    assert runner.sink.kinds("quick")[-1] == "workflow.completed"
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await client.GetExecution(pb.GetExecutionRequest(execution_id="nope"))
    assert info.value.code() == grpc.StatusCode.NOT_FOUND


async def test_validation_errors_with_paths(start_runner: Any) -> None:
    """An invalid document is INVALID_ARGUMENT naming each error's path and line, also as JSON in the trailers."""
    runner = await start_runner()
    client = stub(runner)
    bad = doc("do:\n  - s: {set: {a: 1}, bogus: 1}\n")
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await client.Execute(request(bad))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "/do/0/s" in (info.value.details() or "")
    assert "line 3" in (info.value.details() or "")
    trailers = dict(info.value.trailing_metadata() or ())
    errors = orjson.loads(trailers["validation-errors-bin"])
    assert errors[0]["path"].startswith("/do/0/s")
    assert errors[0]["line"] == 3
    validated = await client.Validate(pb.ValidateRequest(workflow_yaml=bad))
    assert not validated.valid
    assert validated.errors[0].path.startswith("/do/0/s")
    assert (await client.Validate(pb.ValidateRequest(workflow_yaml=ONE_TASK))).valid
    assert runner.sink.events == []


async def test_bad_request_fields_are_located(start_runner: Any) -> None:
    """A missing id, malformed input JSON or non-object secrets are INVALID_ARGUMENT pointing at the field."""
    runner = await start_runner()
    client = stub(runner)
    cases = [
        (pb.ExecuteRequest(workflow_yaml=ONE_TASK), "/execution_id"),
        (pb.ExecuteRequest(execution_id="x", workflow_yaml=ONE_TASK, input_json="{nope"), "/input_json"),
        (pb.ExecuteRequest(execution_id="x", workflow_yaml=ONE_TASK, secrets_json="[1]"), "/secrets_json"),
        (pb.ExecuteRequest(execution_id="x"), "/workflow_yaml"),
    ]
    for req, path in cases:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await client.ExecuteStream(req).read()
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert path in (info.value.details() or "")


async def test_out_of_range_deadline_is_invalid_argument(start_runner: Any) -> None:
    """A deadline no clock can hold (year 10000, nanos past a second) is INVALID_ARGUMENT at /deadline, not UNKNOWN."""
    runner = await start_runner()
    client = stub(runner)
    for seconds, nanos in ((253_402_300_800, 0), (0, 2_000_000_000), (-(2**62), 0)):
        req = request(ONE_TASK)
        req.deadline.seconds, req.deadline.nanos = seconds, nanos
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await client.Execute(req)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "/deadline" in (info.value.details() or "")
    assert runner.sink.events == []


async def test_empty_input_json_means_an_empty_object(start_runner: Any) -> None:
    """A 0-byte `input_json` (proto3's default) runs with input `{}`."""
    runner = await start_runner()
    req = pb.ExecuteRequest(execution_id="empty-input", workflow_yaml=doc("do:\n  - echo: {set: '${ . }'}\n"))
    _, result = await stream(stub(runner), req)
    assert (result.status, orjson.loads(result.output_json)) == (pb.EXECUTION_STATUS_COMPLETED, {})


async def test_get_execution_sees_a_late_confirmation(start_runner: Any) -> None:
    """After `Execute`, a sink outage longer than the flush timeout shows as not confirmed; once the sink takes the
    terminal event, `GetExecution` says `progress_confirmed`."""
    from callbacks import SinkUnavailableError

    runner = await start_runner(CALLBACK_FLUSH_TIMEOUT_SECONDS="0.3", CALLBACK_RETRY_MAX_DELAY_SECONDS="0.1")
    runner.sink.fail = SinkUnavailableError("down")
    client = stub(runner)
    await client.Execute(request(ONE_TASK, "late-grpc"))
    get = pb.GetExecutionRequest(execution_id="late-grpc")
    await eventually(lambda: runner.app.service.get("late-grpc").done)
    first = await client.GetExecution(get)
    assert (first.status, first.progress_confirmed) == (pb.EXECUTION_STATUS_COMPLETED, False)
    runner.sink.fail = None
    await eventually(lambda: runner.app.service.get("late-grpc").state().progress_confirmed)
    assert (await client.GetExecution(get)).progress_confirmed


async def test_api_key_refusal(start_runner: Any) -> None:
    """With GRPC_API_KEY set, calls without the right bearer token are UNAUTHENTICATED; health needs no key."""
    runner = await start_runner(GRPC_API_KEY="s3cret-key")
    client = stub(runner)
    for metadata in ((), (("authorization", "Bearer wrong"),), (("authorization", "s3cret-key"),)):
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await client.Validate(pb.ValidateRequest(workflow_yaml=ONE_TASK), metadata=metadata)
        assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await client.ExecuteStream(request(ONE_TASK)).read()
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
    ok = await client.Validate(
        pb.ValidateRequest(workflow_yaml=ONE_TASK), metadata=(("authorization", "Bearer s3cret-key"),)
    )
    assert ok.valid
    health = health_pb2_grpc.HealthStub(runner.channel())
    assert (await health.Check(health_pb2.HealthCheckRequest())).status == health_pb2.HealthCheckResponse.SERVING
    assert runner.sink.events == []


async def test_oversize_message_refused(start_runner: Any) -> None:
    """A request above GRPC_MAX_MESSAGE_BYTES is RESOURCE_EXHAUSTED and nothing runs."""
    runner = await start_runner(GRPC_MAX_MESSAGE_BYTES="65536")
    big = ONE_TASK + "# " + "x" * 70_000 + "\n"
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub(runner).Execute(request(big))
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert runner.sink.events == []


async def test_document_over_limit_is_invalid(start_runner: Any) -> None:
    """A document above MAX_DOCUMENT_BYTES (but within the message limit) is INVALID_ARGUMENT."""
    runner = await start_runner(MAX_DOCUMENT_BYTES="1024")
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub(runner).Execute(request(ONE_TASK + "# " + "x" * 2000 + "\n"))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_concurrency_cap(start_runner: Any) -> None:
    """With no queue (MAX_QUEUED_EXECUTIONS=0), past MAX_CONCURRENT_EXECUTIONS new executions are RESOURCE_EXHAUSTED."""
    runner = await start_runner(MAX_CONCURRENT_EXECUTIONS="2", MAX_QUEUED_EXECUTIONS="0")
    client = stub(runner)
    for name in ("a", "b"):
        await client.Execute(request(LONG_WAIT, name))
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await client.Execute(request(ONE_TASK, "c"))
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    await client.Cancel(pb.CancelRequest(execution_id="a"))
    _, result = await stream(client, request(ONE_TASK, "c"))
    assert result.status == pb.EXECUTION_STATUS_COMPLETED
    metrics = (await http_get(runner.ops_url + "/metrics")).text
    assert 'workflow_runner_rejected_total{reason="capacity",source="grpc"} 1.0' in metrics


async def test_duplicate_execution_id(start_runner: Any) -> None:
    """The same id and document again returns the existing execution (one run); another document is ALREADY_EXISTS."""
    runner = await start_runner()
    client = stub(runner)
    first = await client.Execute(request(SHORT_WAIT, "dup", {"k": 1}))
    again = await client.Execute(request(SHORT_WAIT, "dup", {"k": 1}))
    assert (first.duplicate, again.duplicate) == (False, True)
    assert again.execution.started_at == first.execution.started_at
    _, result = await stream(client, request(SHORT_WAIT, "dup", {"k": 1}))
    assert result.status == pb.EXECUTION_STATUS_COMPLETED
    for other in (request(ONE_TASK, "dup", {"k": 1}), request(SHORT_WAIT, "dup", {"k": 2})):
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await client.Execute(other)
        assert info.value.code() == grpc.StatusCode.ALREADY_EXISTS
    finished = await client.Execute(request(SHORT_WAIT, "dup", {"k": 1}))
    assert finished.duplicate
    assert finished.execution.status == pb.EXECUTION_STATUS_COMPLETED
    assert runner.sink.kinds("dup").count("workflow.started") == 1


async def test_cancel_running_wait(start_runner: Any) -> None:
    """Cancel ends a running `wait` at once: status CANCELLED, and the events say so."""
    runner = await start_runner()
    client = stub(runner)
    call = client.ExecuteStream(request(LONG_WAIT, "nap"))
    await eventually(lambda: "task.started" in runner.sink.kinds("nap"))
    cancelled = await asyncio.wait_for(client.Cancel(pb.CancelRequest(execution_id="nap")), 5)
    assert cancelled.cancelled
    assert cancelled.execution.status == pb.EXECUTION_STATUS_CANCELLED
    messages = [message async for message in call]
    assert messages[-1].result.status == pb.EXECUTION_STATUS_CANCELLED
    assert runner.sink.kinds("nap")[-2:] == ["task.cancelled", "workflow.cancelled"]
    again = await client.Cancel(pb.CancelRequest(execution_id="nap"))
    assert not again.cancelled
    assert again.execution.status == pb.EXECUTION_STATUS_CANCELLED
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await client.Cancel(pb.CancelRequest(execution_id="unknown"))
    assert info.value.code() == grpc.StatusCode.NOT_FOUND


async def test_faulted_execution_reports_spec_error(start_runner: Any) -> None:
    """A workflow that raises ends FAULTED with the spec error, including the task's JSON Pointer."""
    runner = await start_runner()
    failing = doc("do:\n  - r: {raise: {error: {type: https://x.io/e, status: 409, title: Conflict}}}\n")
    _, result = await stream(stub(runner), request(failing))
    assert result.status == pb.EXECUTION_STATUS_FAULTED
    assert (result.error.type, result.error.status, result.error.instance) == ("https://x.io/e", 409, "/do/0/r")


async def test_health_flips_during_drain(start_runner: Any) -> None:
    """While draining, health is NOT_SERVING, /readyz is 503 and new work is UNAVAILABLE; running work finishes."""
    runner = await start_runner()
    client = stub(runner)
    health = health_pb2_grpc.HealthStub(runner.channel())
    assert (await http_get(runner.ops_url + "/readyz")).status_code == 200
    await client.Execute(request(doc("do:\n  - nap: {wait: {seconds: 1}}\n"), "draining"))
    stopping = asyncio.create_task(runner.app.stop(grace=10))
    await eventually(lambda: not runner.app.service.accepting)
    check = await health.Check(health_pb2.HealthCheckRequest(service="workflow_runner.v1.WorkflowRunner"))
    assert check.status == health_pb2.HealthCheckResponse.NOT_SERVING
    ready = await http_get(runner.ops_url + "/readyz")
    assert ready.status_code == 503
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await client.Execute(request(ONE_TASK))
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    await asyncio.wait_for(stopping, 10)
    assert runner.sink.kinds("draining")[-1] == "workflow.completed"


async def test_shutdown_cancels_what_cannot_finish(start_runner: Any) -> None:
    """Executions still running when the grace period ends are cancelled and reported as cancelled."""
    runner = await start_runner()
    await stub(runner).Execute(request(LONG_WAIT, "forever"))
    await eventually(lambda: "task.started" in runner.sink.kinds("forever"))
    await asyncio.wait_for(runner.app.stop(grace=0.3), 10)
    assert runner.sink.kinds("forever")[-1] == "workflow.cancelled"
    state = runner.app.service.get("forever")
    assert state is not None
    assert state.state().interrupted


async def test_publish_event_reaches_event_bus(start_runner: Any) -> None:
    """PublishEvent puts a CloudEvent on the event bus that `listen` reads; an invalid one is INVALID_ARGUMENT."""
    from callbacks import CloudEvent

    runner = await start_runner()
    client = stub(runner)
    event = CloudEvent(
        id="e1",
        source="urn:test",
        type="com.example.ping",
        time="2025-01-01T00:00:00Z",
        subject="s",
        executionid="x",
        sequence=1,
        attempt=1,
        data={"ping": 1},
    )
    await client.PublishEvent(pb.PublishEventRequest(event=to_proto(event)))
    published = runner.app.executor.bus.published()
    assert published[-1]["type"] == "com.example.ping"
    assert published[-1]["data"] == {"ping": 1}
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await client.PublishEvent(pb.PublishEventRequest())
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_reflection_lists_the_service(start_runner: Any) -> None:
    """Server reflection lists the WorkflowRunner and health services (grpcurl works without the .proto)."""
    runner = await start_runner()
    reflect = reflection_pb2_grpc.ServerReflectionStub(runner.channel())
    call = reflect.ServerReflectionInfo()
    await call.write(reflection_pb2.ServerReflectionRequest(list_services=""))
    response = await call.read()
    await call.done_writing()
    names = {service.name for service in response.list_services_response.service}
    assert {"workflow_runner.v1.WorkflowRunner", "grpc.health.v1.Health"} <= names


async def test_metrics_and_liveness(start_runner: Any) -> None:
    """/metrics counts executions by source and outcome and callback deliveries; /livez answers."""
    runner = await start_runner()
    await stream(stub(runner), request(ONE_TASK))
    metrics = (await http_get(runner.ops_url + "/metrics")).text
    assert 'workflow_runner_executions_total{outcome="completed",source="grpc"} 1.0' in metrics
    assert "workflow_runner_callback_delivered_total 4.0" in metrics
    assert "workflow_runner_task_duration_seconds_count" in metrics
    assert "workflow_runner_executions_in_flight 0.0" in metrics
    assert (await http_get(runner.ops_url + "/livez")).status_code == 200


@pytest.mark.timeout(60)
async def test_200_concurrent_streams(start_runner: Any) -> None:
    """200 ExecuteStream calls at once all complete with their own events; the sink gets 200 terminal events."""
    runner = await start_runner(MAX_CONCURRENT_EXECUTIONS="256")
    client = stub(runner)
    ids = [f"c{n}" for n in range(200)]
    outcomes = await asyncio.wait_for(
        asyncio.gather(*(stream(client, request(SHORT_WAIT, i, {"n": i})) for i in ids)), 45
    )
    assert all(result.status == pb.EXECUTION_STATUS_COMPLETED for _, result in outcomes)
    assert all(len(events) == 4 for events, _ in outcomes)
    assert sorted(orjson.loads(r.output_json)["n"] for _, r in outcomes) == sorted(ids)
    assert len(runner.sink.terminal()) == 200


async def test_deadline_ends_the_execution(start_runner: Any) -> None:
    """A request deadline bounds the run: a long `wait` past it ends FAULTED with a timeout error."""
    from google.protobuf.timestamp_pb2 import Timestamp

    runner = await start_runner()
    deadline = Timestamp()
    deadline.GetCurrentTime()
    deadline.FromNanoseconds(deadline.ToNanoseconds() + 300_000_000)
    _, result = await asyncio.wait_for(stream(stub(runner), request(LONG_WAIT, deadline=deadline)), 10)
    assert result.status == pb.EXECUTION_STATUS_FAULTED
    assert result.error.type.endswith("/timeout")
