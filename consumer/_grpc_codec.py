"""Pure translation between the WorkflowRunner protobuf messages and the service's types.

`decode_execute` is the gRPC ingress's decoding step: request in, `ExecuteCommand` out, or `DecodeError` with
issues located by JSON Pointer into the request (`/input_json`, `/metadata/tenant`, ...); `parse_request` turns the
bytes of a call into a message, or into `Undecodable` when they are not one, so the servicer can answer
INVALID_ARGUMENT instead of grpc's UNKNOWN. It does no I/O, so it can be tested and benchmarked alone.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import orjson
from google.protobuf.timestamp_pb2 import Timestamp

from callbacks import CloudEvent, invalid_reason, proto_to_dict, to_proto

# The CloudEvents Protobuf format is implemented there, once; this module is the only one here that reaches in.
from executor import ExecuteCommand, Issue, Source, Status, describe_issues

from ._decode import DecodeError, check_id, metadata_map, parse_json, secrets_object, within_limits
from ._proto.workflow_runner.v1 import runner_pb2 as pb
from ._service import ExecutionState

__all__ = ["DecodeError", "describe_issues"]  # grpc.py's refusals are described like every ingress's

_STATUS = {
    Status.COMPLETED: pb.EXECUTION_STATUS_COMPLETED,
    Status.FAULTED: pb.EXECUTION_STATUS_FAULTED,
    Status.CANCELLED: pb.EXECUTION_STATUS_CANCELLED,
}
STATUS_NAMES = {
    pb.EXECUTION_STATUS_RUNNING: "running",
    pb.EXECUTION_STATUS_COMPLETED: "completed",
    pb.EXECUTION_STATUS_FAULTED: "faulted",
    pb.EXECUTION_STATUS_CANCELLED: "cancelled",
}
ERRORS_METADATA = "validation-errors-bin"
"""Trailing metadata of INVALID_ARGUMENT: the located issues as a JSON array."""


class Undecodable:
    """Bytes that are not the message the method takes; the servicer refuses them with INVALID_ARGUMENT."""

    __slots__ = ("reason",)

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def error(self) -> DecodeError:
        """The refusal: one issue at the root."""
        return DecodeError([Issue(path="", message=f"not a valid {self.reason}")])


def parse_request(deserialize: Callable[[bytes], Any]) -> Callable[[bytes], Any]:
    """`deserialize` (a generated `Message.FromString`) returning `Undecodable` instead of raising."""
    message_class = getattr(deserialize, "__self__", None)
    name = message_class.DESCRIPTOR.name if message_class is not None else "request"

    def parse(data: bytes) -> Any:
        try:
            return deserialize(data)
        except Exception:  # protobuf's DecodeError, or a RecursionError on absurd nesting
            return Undecodable(f"{name} message (protobuf)")

    return parse


def decode_execute(request: pb.ExecuteRequest, resolved: Mapping[str, Any] | None = None) -> ExecuteCommand:
    """The command an `ExecuteRequest` asks for.

    Args:
        request: The request as received.
        resolved: `workflow_yaml` / `input` read from the payload store for the request's `*_ref` fields.

    Raises:
        DecodeError: Missing id or document, malformed JSON, secrets that are not an object, or a deadline out of
            the Timestamp range.
    """
    resolved = resolved or {}
    issues: list[Issue] = []
    execution_id = check_id(request.execution_id, issues)
    workflow_yaml = resolved.get("workflow_yaml", request.workflow_yaml)
    if not workflow_yaml.strip():
        issues.append(Issue(path="/workflow_yaml", message="required"))
    if "input" in resolved:
        data = resolved["input"]
        within_limits(data, "/input_ref", issues)
    else:
        data = parse_json(request.input_json, "/input_json", issues, {}) if request.input_json.strip() else {}
    secrets: Any = {}
    if request.secrets_json.strip():
        secrets = secrets_object(parse_json(request.secrets_json, "/secrets_json", issues, {}), issues, "/secrets_json")
    metadata = metadata_map(dict(request.metadata), issues)
    deadline = _deadline(request, issues)
    if issues:
        raise DecodeError(issues, execution_id)
    return ExecuteCommand(
        execution_id=request.execution_id,
        workflow_yaml=workflow_yaml,
        input=data,
        secrets=secrets,
        metadata=metadata,
        source=Source.GRPC,
        deadline=deadline,
    )


def _deadline(request: pb.ExecuteRequest, issues: list[Issue]) -> datetime | None:
    if not request.HasField("deadline"):
        return None
    try:
        return request.deadline.ToDatetime(tzinfo=UTC)
    except (ValueError, OverflowError) as exc:
        # Seconds outside years 1-9999 or nanos outside one second: protobuf says which.
        issues.append(Issue(path="/deadline", message=str(exc)))
        return None


def _timestamp(epoch: float | None) -> Timestamp | None:
    if epoch is None:
        return None
    stamp = Timestamp()
    stamp.FromNanoseconds(int(epoch * 1e9))
    return stamp


def _error(error: Mapping[str, Any] | None) -> pb.WorkflowError | None:
    if not error:
        return None
    status = error.get("status")
    return pb.WorkflowError(
        type=str(error.get("type", "")),
        status=status if isinstance(status, int) else 0,
        title=str(error.get("title", "")),
        detail=str(error.get("detail") or ""),
        instance=str(error.get("instance") or ""),
    )


def encode_state(state: ExecutionState, *, output: bool = True) -> pb.Execution:
    """An execution's state as the `Execution` message (`output` False: without `output_json`, for a caller that
    places the output itself, see `output_of`)."""
    message = pb.Execution(
        execution_id=state.execution_id,
        status=pb.EXECUTION_STATUS_RUNNING if state.result is None else _STATUS[state.result.status],
        source=state.source,
        attempt=state.attempt,
        started_at=_timestamp(state.started_at),
        ended_at=_timestamp(state.ended_at if state.result is not None else None),
        progress_confirmed=state.progress_confirmed,
    )
    if state.result is not None:
        if output and (encoded := output_of(state)) is not None:
            message.output_json = encoded.decode()
        error = _error(state.result.error)
        if error is not None:
            message.error.CopyFrom(error)
    return message


def output_of(state: ExecutionState) -> bytes | None:
    """The JSON of a completed execution's output; None for any other state."""
    if state.result is None or state.result.status is not Status.COMPLETED:
        return None
    return orjson.dumps(state.result.output)


def encode_event(event: CloudEvent) -> pb.ExecuteStreamResponse:
    """One lifecycle event as a stream message (the event filled in place: not built apart and copied in)."""
    response = pb.ExecuteStreamResponse()
    to_proto(event, into=response.event)
    return response


def encode_issues(issues: Sequence[Issue]) -> list[pb.ValidationIssue]:
    """Validation issues as messages (line and column 0 when unknown)."""
    return [
        pb.ValidationIssue(
            path=issue.path, message=issue.message, line=issue.line or 0, column=issue.column or 0, code=issue.code
        )
        for issue in issues
    ]


def issues_json(issues: Sequence[Issue]) -> bytes:
    """The issues as a JSON array (`validation-errors-bin` trailing metadata), in the CLI's `errors` shape."""
    return orjson.dumps([issue.to_dict() for issue in issues])


def event_dict(message: Any) -> dict[str, Any]:
    """A CloudEvent message as its structured-mode dict (what the event bus and `--events` files carry)."""
    return proto_to_dict(message)


def decode_published(message: Any) -> dict[str, Any]:
    """A `PublishEventRequest.event` as a structured-mode dict.

    Raises:
        DecodeError: Not a valid CloudEvent (missing id, source, type or spec version).
    """
    event = proto_to_dict(message)
    reason = invalid_reason(event)
    if reason is not None:
        raise DecodeError([Issue(path="/event", message=f"invalid CloudEvent: {reason}")])
    return event


def result_dict(message: pb.Execution) -> dict[str, Any]:
    """An `Execution` message in the CLI's result shape `{execution_id, status, output, error}`."""
    error = None
    if message.HasField("error"):
        error = {"type": message.error.type, "status": message.error.status, "title": message.error.title}
        error |= {k: v for k in ("detail", "instance") if (v := getattr(message.error, k))}
    output = orjson.loads(message.output_json) if message.output_json else None
    result = {
        "execution_id": message.execution_id,
        "status": STATUS_NAMES.get(message.status, "unknown"),
        "output": output,
        "error": error,
    }
    if message.HasField("output_ref"):
        del result["output"]
        result["output_ref"] = ref_dict(message.output_ref)
    return result


def ref_dict(message: pb.PayloadRef) -> dict[str, Any]:
    """A `PayloadRef` message as the reference object of `consumer.payloads`."""
    return {name: getattr(message, name) for name in ("store", "key", "size", "sha256", "media_type")}


def ref_message(ref: Mapping[str, Any]) -> pb.PayloadRef:
    """A reference object as the `PayloadRef` message."""
    return pb.PayloadRef(**{name: ref[name] for name in ("store", "key", "size", "sha256", "media_type")})
