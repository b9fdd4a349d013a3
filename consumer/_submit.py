"""`workflow-runner submit`: send a document to a running runner over gRPC and follow its events to the result.

The result is printed in `run`'s shape and with its exit codes: 0 completed, 1 faulted or cancelled, 2 invalid
document, refused request (ALREADY_EXISTS, UNAUTHENTICATED, ...) or unreachable runner.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import grpc
import grpc.aio
import orjson

from ._grpc_codec import ERRORS_METADATA, event_dict, ref_message, result_dict
from ._proto.workflow_runner.v1 import runner_pb2 as pb
from ._proto.workflow_runner.v1 import runner_pb2_grpc as pb_grpc
from .payloads import JSON, YAML, PayloadStore, fetch_output

DEFAULT_ENDPOINT = "localhost:8080"


@dataclass(frozen=True, slots=True, kw_only=True)
class Outcome:
    """How a submission ended.

    Attributes:
        result: `{execution_id, status, output, error}` when the runner ran it.
        errors: Located validation issues when the runner refused the document.
        failure: Why the call failed otherwise (one line).
    """

    result: dict[str, Any] | None = None
    errors: list[dict[str, Any]] = field(default_factory=list)
    failure: str | None = None


def _metadata(api_key: str | None) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {api_key}"),) if api_key else ()


def _refusal(exc: grpc.aio.AioRpcError) -> Outcome:
    if exc.code() == grpc.StatusCode.INVALID_ARGUMENT:
        for key, value in exc.trailing_metadata() or ():
            if key == ERRORS_METADATA and isinstance(value, bytes):
                return Outcome(errors=orjson.loads(value))
    return Outcome(failure=f"{exc.code().name}: {exc.details()}")


async def submit(
    endpoint: str,
    request: pb.ExecuteRequest,
    *,
    api_key: str | None = None,
    on_event: Callable[[dict[str, Any]], None] | None = None,
    store: PayloadStore | None = None,
) -> Outcome:
    """Run `request` through `ExecuteStream` on the runner at `endpoint`.

    Args:
        endpoint: `host:port` of the runner's gRPC ingress.
        request: What to execute.
        api_key: Sent as `authorization: Bearer …` when given.
        on_event: Called with each lifecycle event (structured-mode CloudEvent dict) as it arrives.
        store: The runner's payload store: a document or input above `PAYLOAD_OFFLOAD_BYTES` is uploaded and sent
            as a reference, and an `output_ref` in the result is downloaded into `output`.

    Raises:
        PayloadError: An upload or download failed (the message names the reference).
    """
    if store is not None:
        request = await _offloaded(request, store)
    outcome = await _call(endpoint, request, api_key=api_key, on_event=on_event)
    if store is not None and outcome.result is not None:
        return Outcome(result=await fetch_output(outcome.result, store))
    return outcome


async def _offloaded(request: pb.ExecuteRequest, store: PayloadStore) -> pb.ExecuteRequest:
    """The request with a large document or input swapped for its reference (frames stay small)."""
    document, data = request.workflow_yaml.encode(), request.input_json.encode()
    offloaded = pb.ExecuteRequest()
    offloaded.CopyFrom(request)
    if store.offloads(len(document)):
        offloaded.workflow_yaml = ""
        offloaded.workflow_yaml_ref.CopyFrom(ref_message((await store.put(document, YAML)).to_dict()))
    if store.offloads(len(data)):
        offloaded.input_json = ""
        offloaded.input_ref.CopyFrom(ref_message((await store.put(data, JSON)).to_dict()))
    return offloaded


async def _call(
    endpoint: str,
    request: pb.ExecuteRequest,
    *,
    api_key: str | None,
    on_event: Callable[[dict[str, Any]], None] | None,
) -> Outcome:
    async with grpc.aio.insecure_channel(endpoint) as channel:
        stub = pb_grpc.WorkflowRunnerStub(channel)  # type: ignore[no-untyped-call]  # generated code has no stubs
        try:
            async for message in stub.ExecuteStream(request, metadata=_metadata(api_key)):
                if message.HasField("event") and on_event is not None:
                    on_event(event_dict(message.event))
                elif message.HasField("result"):
                    return Outcome(result=result_dict(message.result))
        except grpc.aio.AioRpcError as exc:
            return _refusal(exc)
    return Outcome(failure="the runner closed the stream without a result")


def progress_line(event: dict[str, Any]) -> None:
    """`task.started /do/0/greet` on stderr: what a person following a submission sees."""
    kind = ".".join(str(event.get("type", "")).split(".")[2:4])
    data = event.get("data")
    where = f" {data['task']}" if isinstance(data, dict) and "task" in data else ""
    sys.stderr.write(f"{kind}{where}\n")
