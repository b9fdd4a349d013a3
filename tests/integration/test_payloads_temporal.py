"""Large payloads through the Temporal ingress: 100 MB in and out, a checkpoint above Temporal's limit resumed
after a killed worker, encrypted history, S3 as the store; history holds references only."""

from __future__ import annotations

import asyncio
import base64
import signal
import uuid
from pathlib import Path
from typing import Any

import orjson
import pytest
from temporalio.client import Client, WorkflowHandle
from temporalio.converter import DataConverter

from consumer.config import Settings
from consumer.payloads import PayloadStore, data_converter
from tests.helpers import eventually
from tests.integration.temporal_fixtures import (
    CallCounter,
    caller_worker,
    events_of,
    kinds,
    request,
    runner,
    runner_env,
    spawn_worker,
)

MB = 1024 * 1024
PASS_THROUGH = "do:\n  - pause: {wait: {milliseconds: 1}}\n"
SLOW_BEATS = {"TEMPORAL_HEARTBEAT_TIMEOUT_SECONDS": "30"}
"""The default heartbeat timeout: encoding 100 MB holds the event loop for a second or more on a busy machine, longer
than the 2 s the fixtures use to make kill tests quick (docs/payloads.md)."""
KEY_A = base64.b64encode(b"a" * 32).decode()
KEY_B = base64.b64encode(b"b" * 32).decode()


def _id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


async def _client(address: str, env: dict[str, str]) -> Client:
    """A caller's client configured like the runner (`consumer.payloads.data_converter`)."""
    settings = Settings.from_env(env)
    converter = data_converter(
        PayloadStore.from_settings(settings.payloads), inline_limit=settings.temporal.max_payload_bytes
    )
    return await Client.connect(address, data_converter=converter)


async def _history_bytes(handle: WorkflowHandle[Any, Any]) -> bytes:
    return (await handle.fetch_history()).to_json().encode()


async def _stores_referenced(handle: WorkflowHandle[Any, Any]) -> list[str]:
    """The `store` of every payload-store reference in the workflow's history (input, activity input, results)."""
    found = []
    async for event in handle.fetch_history_events():
        for payloads in (
            event.workflow_execution_started_event_attributes.input,
            event.activity_task_scheduled_event_attributes.input,
            event.activity_task_completed_event_attributes.result,
            event.workflow_execution_completed_event_attributes.result,
        ):
            for payload in payloads.payloads:
                if payload.metadata.get("messageType", b"").endswith(b"ExternalStorageReference"):
                    found.append(orjson.loads(payload.data)["claimData"]["store"])
    return found


def _peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


def _reset_peak(pid: int) -> float:
    """Reset the process's peak RSS to its current RSS (proc(5): clear_refs) and return that, in MB."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")
    return _rss_mb(pid)


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


@pytest.mark.slow
@pytest.mark.timeout(240)
async def test_hundred_megabytes_in_and_out(temporal_address: str, task_queue: str, tmp_path: Path) -> None:
    """A 100 MB input comes back as a 100 MB output through RunServerlessWorkflow and through a caller's own
    workflow using the exported converter; history holds only references; the runner's memory stays a few times
    the payload either way (executions in the runner's own process, EXECUTOR_PROCESSES=0: one process to measure;
    each round trip measured from the RSS it starts at, as memory a first one freed stays with the process)."""
    env = runner_env(temporal_address, task_queue, tmp_path / "e.jsonl", EXECUTOR_PROCESSES=0, **SLOW_BEATS)
    client = await _client(temporal_address, env)
    blob = "x" * (100 * MB)
    worker = spawn_worker(env, tmp_path / "worker.log")
    try:
        await eventually(lambda: _rss_mb(worker.pid) > 60, within=30, what="the worker started")
        await asyncio.sleep(2)
        baseline = _reset_peak(worker.pid)
        async with caller_worker(client) as caller:
            # The caller's workflow runs in this process: the worker process runs only the activity.
            own = await client.execute_workflow(
                "TestCallerWorkflow",
                # The runner's heartbeat timeout (SLOW_BEATS): decoding 100 MB may hold its loop for seconds.
                args=[task_queue, request(_id("own"), PASS_THROUGH, input={"blob": blob}), 1, 0.2, 30],
                id=_id("own"),
                task_queue=caller,
            )
        activity_peak = _peak_rss_mb(worker.pid)
        before_packaged = _reset_peak(worker.pid)
        execution = _id("big")
        handle = await client.start_workflow(
            "RunServerlessWorkflow",
            request(execution, PASS_THROUGH, input={"blob": blob}),
            id=execution,
            task_queue=task_queue,
        )
        result = await handle.result()
        peak = _peak_rss_mb(worker.pid)
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(20)
    assert result["status"] == "completed"
    assert len(result["output"]["blob"]) == 100 * MB
    assert result["output"]["blob"] == blob
    assert own["status"] == "completed"
    assert len(own["output"]["blob"]) == 100 * MB
    history = await _history_bytes(handle)
    assert len(history) < 200_000, "history holds only references"
    assert len(await _stores_referenced(handle)) == 4
    # The activity's process (a caller's own workflow elsewhere): input, output and their encodings in flight.
    assert activity_peak - baseline < 5 * 100, f"activity peak {activity_peak:.0f} MB over {baseline:.0f} MB"
    # The packaged workflow runs in the same process and hands the request and result on as claims: no more.
    assert peak - before_packaged < 5 * 100, f"workflow and activity peak {peak:.0f} MB over {before_packaged:.0f} MB"
    assert kinds(events_of(tmp_path / "e.jsonl", execution))[-1] == "workflow.completed"


@pytest.mark.slow
@pytest.mark.timeout(240)
async def test_hundred_megabytes_through_worker_processes(
    temporal_address: str, task_queue: str, tmp_path: Path
) -> None:
    """With executions in worker processes a 100 MB input and output still round-trip (the worker's memory
    limit sized for the payload: docs/payloads.md)."""
    env = runner_env(temporal_address, task_queue, tmp_path / "e.jsonl", EXECUTOR_MEMORY_LIMIT_MB=4096, **SLOW_BEATS)
    client = await _client(temporal_address, env)
    blob = "z" * (100 * MB)
    async with runner(env):
        execution = _id("pool")
        handle = await client.start_workflow(
            "RunServerlessWorkflow",
            request(execution, PASS_THROUGH, input={"blob": blob}),
            id=execution,
            task_queue=task_queue,
        )
        result = await handle.result()
    assert result["status"] == "completed"
    assert result["output"]["blob"] == blob


@pytest.mark.slow
@pytest.mark.timeout(120)
async def test_checkpoint_above_the_temporal_limit_resumes(
    temporal_address: str, task_queue: str, tmp_path: Path
) -> None:
    """A 3 MB checkpoint (over Temporal's 2 MiB) is kept as a reference: a worker SIGKILLed after it resumes
    there on another worker, so the finished HTTP call is not made again and the data is intact."""
    events = tmp_path / "events.jsonl"
    env = runner_env(temporal_address, task_queue, events)
    client = await _client(temporal_address, env)
    async with CallCounter() as counter:
        body = f"""\
do:
  - one: {{call: http, with: {{method: get, endpoint: '{counter.base_url}/one'}}}}
  - big: {{set: {{blob: '${{ "y" * 3000000 }}'}}}}
  - pause: {{wait: {{seconds: 4}}}}
  - measure: {{set: {{length: '${{ .blob | length }}', head: '${{ .blob[0:3] }}'}}}}
"""
        execution = _id("bigcp")
        worker = spawn_worker(env, tmp_path / "worker-a.log")
        try:
            async with caller_worker(client) as caller:
                handle = await client.start_workflow(
                    "TestCallerWorkflow",
                    args=[task_queue, request(execution, body), 3],
                    id=execution,
                    task_queue=caller,
                )
                await eventually(lambda: _checkpoint_ref(handle, 2), within=30, what="the checkpoint after `big`")
                worker.send_signal(signal.SIGKILL)
                worker.wait(10)
                async with runner(env):
                    result = await asyncio.wait_for(handle.result(), 60)
        finally:
            if worker.poll() is None:
                worker.kill()
    assert result["status"] == "completed"
    assert result["output"] == {"length": 3_000_000, "head": "yyy"}
    assert counter.counts == {"/one": 1}
    second = [event for event in events_of(events, execution) if event["attempt"] == 2]
    assert kinds(second)[:2] == ["workflow.started", "task.started:/do/2/pause"]
    assert "too large" not in (tmp_path / "worker-a.log").read_text()


async def _checkpoint_ref(handle: WorkflowHandle[Any, Any], next_task: int) -> bool:
    """True once the server holds a heartbeat whose checkpoint (at `next_task` or later) is a store reference."""
    description = await handle.describe()
    for pending in description.raw_description.pending_activities:
        details = await DataConverter.default.decode(pending.heartbeat_details.payloads)
        last = details[-1] if details else None
        if isinstance(last, dict) and "checkpoint_ref" in last and last["next_task"] >= next_task:
            return True
    return False


@pytest.mark.slow
async def test_encrypted_history_and_store_with_rotation(
    temporal_address: str, task_queue: str, tmp_path: Path
) -> None:
    """With PAYLOAD_ENCRYPTION_KEY neither history nor the store holds the secret or the input in plain text;
    a runner whose new key comes first still reads what the old key wrote."""
    env = runner_env(temporal_address, task_queue, tmp_path / "e.jsonl", PAYLOAD_ENCRYPTION_KEY=f"{KEY_B},{KEY_A}")
    old_client = await _client(temporal_address, {**env, "PAYLOAD_ENCRYPTION_KEY": KEY_A})
    client = await _client(temporal_address, env)
    secret, marker = "tok-5e5e5e5e5e5e", "patient-record-7f7f7f"
    body = "use:\n  secrets: [token]\ndo:\n  - use: {set: {seen: '${ $secrets.token | length }', rows: '${ .rows }'}}\n"
    async with runner(env):
        handles = []
        for name, rows in (("small", [marker]), ("large", [marker] * 40_000)):
            payload = request(_id(name), body, input={"rows": rows}, secrets={"token": secret})
            # Written under the old key only: the runner reads it by the key id beside the ciphertext.
            handles.append(
                await old_client.start_workflow(
                    "RunServerlessWorkflow", payload, id=payload["execution_id"], task_queue=task_queue
                )
            )
        results = [await client.get_workflow_handle(h.id).result() for h in handles]
    assert [r["output"]["seen"] for r in results] == [len(secret), len(secret)]
    assert len(results[1]["output"]["rows"]) == 40_000
    for handle in handles:
        history = await _history_bytes(handle)
        assert secret.encode() not in history
        assert marker.encode() not in history
    stored = list((tmp_path / "payload-store").rglob("sha256/*"))
    assert stored, "the large input went to the store"
    for path in stored:
        content = path.read_bytes()
        assert marker.encode() not in content
        assert secret.encode() not in content


@pytest.mark.slow
@pytest.mark.timeout(120)
async def test_s3_store_round_trip(
    temporal_address: str, task_queue: str, tmp_path: Path, s3_env: dict[str, str]
) -> None:
    """With an S3 store (moto on 127.0.0.1) a 20 MB input and output cross Temporal as references."""
    env = runner_env(temporal_address, task_queue, tmp_path / "e.jsonl", **s3_env)
    client = await _client(temporal_address, env)
    rows = [f"row-{i:08d}" for i in range(1_500_000)]
    async with runner(env):
        execution = _id("s3")
        handle = await client.start_workflow(
            "RunServerlessWorkflow",
            request(execution, PASS_THROUGH, input={"rows": rows}),
            id=execution,
            task_queue=task_queue,
        )
        result = await handle.result()
    assert result["output"]["rows"] == rows
    history = await _history_bytes(handle)
    assert len(history) < 100_000
    assert await _stores_referenced(handle) == [s3_env["PAYLOAD_STORE_URL"]] * 4
