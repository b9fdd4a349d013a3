"""Issue 11's failures through the real gRPC ingress: bounded requests, clear refusals, one terminal event."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import grpc.aio
import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from consumer._proto.workflow_runner.v1 import runner_pb2 as pb
from tests.helpers import doc
from tests.integration.conftest import Runner, stream, stub

ONE_SET = doc("do:\n  - one: {set: {ok: true}}\n")
TOO_DEEP = doc("do:\n  - deep: {set: {x: '${ reduce range(300) as $i (0; [.]) }'}}\n  - after: {set: {never: true}}\n")

StartRunner = Callable[..., Awaitable[Runner]]


def _nested(depth: int) -> Any:
    value: Any = 0
    for _ in range(depth):
        value = [value]
    return value


def _request(document: str = ONE_SET, **fields: Any) -> pb.ExecuteRequest:
    return pb.ExecuteRequest(
        execution_id=fields.pop("execution_id", str(uuid.uuid4())), workflow_yaml=document, **fields
    )


async def _refusal(runner: Runner, request: pb.ExecuteRequest) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub(runner).Execute(request)
    return caught.value


async def test_garbage_bytes_are_invalid_argument_in_one_line(
    start_runner: StartRunner, caplog: pytest.LogCaptureFixture
) -> None:
    """Bytes that are no ExecuteRequest get INVALID_ARGUMENT with a one-line reason, and no traceback is logged."""
    runner = await start_runner()
    raw = runner.channel().unary_unary(
        "/workflow_runner.v1.WorkflowRunner/Execute",
        request_serializer=lambda data: data,
        response_deserializer=lambda data: data,
    )
    with caplog.at_level(logging.DEBUG), pytest.raises(grpc.aio.AioRpcError) as caught:
        await raw(b"\xff\xff\xff\xff garbage")
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.details() == "invalid request: /: not a valid ExecuteRequest message (protobuf)"
    assert not [record for record in caplog.records if record.levelno >= logging.ERROR]


async def test_metadata_beyond_its_bounds_is_refused(start_runner: StartRunner) -> None:
    """10,000 metadata entries, or one value of 1 MB, are refused naming the limit instead of riding on every event."""
    runner = await start_runner(GRPC_MAX_MESSAGE_BYTES=str(4 * 1024 * 1024))
    many = await _refusal(runner, _request(metadata={f"k{n}": "v" for n in range(10_000)}))
    big = await _refusal(runner, _request(metadata={"blob": "x" * 1_000_000}))
    assert many.code() == big.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "/metadata: 10000 entries, over the limit of 64 (MAX_METADATA_ENTRIES)" in (many.details() or "")
    assert "MAX_METADATA_BYTES" in (big.details() or "")
    assert not runner.sink.events


async def test_input_nested_too_deep_is_refused_with_its_path(start_runner: StartRunner) -> None:
    """An input nested 300 deep is INVALID_ARGUMENT at the path where it passes MAX_JSON_DEPTH (not UNKNOWN)."""
    runner = await start_runner()
    error = await _refusal(runner, _request(input_json="[" * 300 + "]" * 300))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert f"/input_json{'/0' * 128}: nested more than 128 levels deep (MAX_JSON_DEPTH)" in (error.details() or "")


async def test_output_nested_too_deep_ends_once_faulted_with_the_expression_error(start_runner: StartRunner) -> None:
    """A task whose output nests 300 deep faults with the expression error at its pointer; the stream and the sink
    each see exactly one terminal event, and the next task never runs."""
    runner = await start_runner()
    events, result = await stream(stub(runner), _request(TOO_DEEP, execution_id="deep-1"))
    assert result.status == pb.EXECUTION_STATUS_FAULTED
    assert (result.error.type.rsplit("/", 1)[-1], result.error.instance) == ("expression", "/do/0/deep")
    assert "nested more than 128 levels deep" in result.error.detail
    types = [event.type.split(".")[2:4] for event in events]
    assert types[-1] == ["workflow", "faulted"]
    assert sum(1 for scope, _ in types if scope == "workflow") == 2  # started, faulted
    assert len([event for event in runner.sink.of("deep-1") if event.terminal]) == 1
    assert not any("/do/1/after" in str(event.data) for event in runner.sink.of("deep-1"))


async def test_a_passed_deadline_faults_naming_it(start_runner: StartRunner) -> None:
    """A one-`set` document with a deadline in the past ends faulted with the timeout error naming the deadline."""
    runner = await start_runner()
    moment = datetime.now(UTC) - timedelta(seconds=5)
    stamp = Timestamp()
    stamp.FromDatetime(moment)
    _, result = await stream(stub(runner), _request(deadline=stamp))
    assert result.status == pb.EXECUTION_STATUS_FAULTED
    assert (result.error.status, result.error.detail) == (408, f"the caller's deadline {moment.isoformat()} passed")
