"""Large payloads through the gRPC ingress: `*_ref` fields in requests, `output_ref` in results, `submit`
uploading and downloading by itself, a missing or altered object refused with the reference named."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
import orjson
import pytest

from consumer._grpc_codec import ERRORS_METADATA, ref_dict, ref_message
from consumer._pool import WorkerPool
from consumer._proto.workflow_runner.v1 import runner_pb2 as pb
from consumer._proto.workflow_runner.v1 import runner_pb2_grpc as pb_grpc
from consumer._submit import submit
from consumer.config import Settings
from consumer.payloads import PayloadRef, PayloadStore
from tests.integration.conftest import Runner

MB = 1024 * 1024
PASS_THROUGH = (
    "document: {dsl: '1.0.3', namespace: test, name: wf, version: '1.0.0'}\ndo:\n  - pause: {wait: {milliseconds: 1}}\n"
)

StartRunner = Callable[..., Awaitable[Runner]]


def _store(tmp_path: Path) -> PayloadStore:
    return PayloadStore.from_settings(Settings.from_env({"PAYLOAD_STORE_URL": str(tmp_path / "store")}).payloads)


async def _stream(runner: Runner, request: pb.ExecuteRequest) -> pb.Execution:
    stub = pb_grpc.WorkflowRunnerStub(runner.channel())  # type: ignore[no-untyped-call]
    result = None
    async for message in stub.ExecuteStream(request):
        if message.HasField("result"):
            result = message.result
    assert result is not None
    return result


def _status_mb(pid: int, field: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no {field} for {pid}")


@pytest.mark.slow
@pytest.mark.timeout(180)
async def test_submit_moves_a_hundred_megabytes_both_ways(start_runner: StartRunner, tmp_path: Path) -> None:
    """`submit` with the store uploads a 100 MB input and downloads the 100 MB output; frames stay under the
    4 MiB gRPC limit, and the worker process that ran it, under the default memory limit, held a few times the
    payload at most (docs/payloads.md)."""
    runner = await start_runner(PAYLOAD_STORE_URL=str(tmp_path / "store"))
    pool = runner.app.service.executor
    assert isinstance(pool, WorkerPool)
    baseline = {pid: _status_mb(pid, "VmRSS") for pid in pool.workers}
    blob = "g" * (100 * MB)
    request = pb.ExecuteRequest(
        execution_id="big-grpc", workflow_yaml=PASS_THROUGH, input_json=orjson.dumps({"blob": blob}).decode()
    )
    outcome = await submit(runner.target, request, store=_store(tmp_path))
    assert outcome.failure is None
    assert outcome.result is not None
    assert outcome.result["status"] == "completed"
    assert outcome.result["output"] == {"blob": blob}
    assert set(pool.workers) == set(baseline), "no worker was replaced (memory limit)"
    growth = max(_status_mb(pid, "VmHWM") - rss for pid, rss in baseline.items())
    assert growth < 5 * 100, f"a worker grew by {growth:.0f} MB for a 100 MB payload"


async def test_references_in_and_out(start_runner: StartRunner, tmp_path: Path) -> None:
    """A request with `workflow_yaml_ref` and `input_ref` runs; its 2 MB output comes back as `output_ref`."""
    runner = await start_runner(PAYLOAD_STORE_URL=str(tmp_path / "store"))
    store = _store(tmp_path)
    rows = [f"row-{i:07d}" for i in range(200_000)]
    request = pb.ExecuteRequest(
        execution_id="refs-grpc",
        workflow_yaml_ref=ref_message((await store.put(PASS_THROUGH.encode(), "application/yaml")).to_dict()),
        input_ref=ref_message((await store.put_json({"rows": rows})).to_dict()),
    )
    result = await _stream(runner, request)
    assert request.ByteSize() < 1024
    assert result.ByteSize() < 1024
    assert result.output_json == ""
    assert await store.get_json(PayloadRef.from_dict(ref_dict(result.output_ref))) == {"rows": rows}


async def _refusal(runner: Runner, request: pb.ExecuteRequest) -> tuple[str, list[dict[str, Any]]]:
    stub = pb_grpc.WorkflowRunnerStub(runner.channel())  # type: ignore[no-untyped-call]
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.Execute(request)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    errors = dict(caught.value.trailing_metadata() or ())[ERRORS_METADATA]
    return str(caught.value.details()), orjson.loads(errors)


async def test_missing_or_altered_reference_is_refused_by_name(start_runner: StartRunner, tmp_path: Path) -> None:
    """An `input_ref` whose object is gone or altered is INVALID_ARGUMENT naming the reference at `/input_ref`."""
    runner = await start_runner(PAYLOAD_STORE_URL=str(tmp_path / "store"))
    store = _store(tmp_path)
    gone, altered = await store.put_json({"n": 1}), await store.put_json({"n": 2})
    (tmp_path / "store" / gone.key).unlink()
    (tmp_path / "store" / altered.key).write_bytes(b"WRP1\x00{}")
    for name, ref, words in (("gone", gone, "missing"), ("altered", altered, "is 7 bytes")):
        request = pb.ExecuteRequest(execution_id=name, workflow_yaml=PASS_THROUGH, input_ref=ref_message(ref.to_dict()))
        details, errors = await _refusal(runner, request)
        assert ref.key in details
        assert words in details
        assert errors[0]["path"] == "/input_ref"


async def test_truncated_event_output_carries_a_reference(start_runner: StartRunner, tmp_path: Path) -> None:
    """An output above EVENT_MAX_OUTPUT_BYTES reaches the sink as a preview and a reference to the full output."""
    runner = await start_runner(PAYLOAD_STORE_URL=str(tmp_path / "store"), EVENT_MAX_OUTPUT_BYTES="2048")
    rows = [f"row-{i:05d}" for i in range(2000)]
    request = pb.ExecuteRequest(
        execution_id="event-ref", workflow_yaml=PASS_THROUGH, input_json=orjson.dumps({"rows": rows}).decode()
    )
    await _stream(runner, request)
    completed = [e for e in runner.sink.events if e.executionid == "event-ref" and ".workflow.completed" in e.type]
    assert len(completed) == 1
    truncated = completed[0].data["outputTruncated"]
    assert truncated["preview"].startswith('{"rows":["row-00000"')
    assert "output" not in completed[0].data
    assert await _store(tmp_path).get_json(PayloadRef.from_dict(truncated["ref"])) == {"rows": rows}


async def test_outputs_within_a_raised_event_limit_stay_whole(start_runner: StartRunner, tmp_path: Path) -> None:
    """With EVENT_MAX_OUTPUT_BYTES above the size at which a worker sends a value as a blob (1 MiB), a 2 MiB output
    that also crossed as a checkpoint's blob still reaches every event whole."""
    runner = await start_runner(
        PAYLOAD_STORE_URL=str(tmp_path / "store"), EVENT_MAX_OUTPUT_BYTES=str(4 * MB), PAYLOAD_OFFLOAD_BYTES=str(8 * MB)
    )
    two_tasks = PASS_THROUGH + "  - again: {wait: {milliseconds: 1}}\n"
    value = {"blob": "w" * (2 * MB)}
    request = pb.ExecuteRequest(execution_id="wide", workflow_yaml=two_tasks, input_json=orjson.dumps(value).decode())
    result = await _stream(runner, request)
    assert orjson.loads(result.output_json) == value
    events = [e for e in runner.sink.events if e.executionid == "wide" and e.type.endswith(".completed.v1")]
    assert len(events) == 3  # two tasks, the workflow
    assert all(event.data.get("output") == value for event in events)
