"""Pure translation between the Temporal activity's JSON objects and the service's types.

`decode_request` is the Temporal ingress's decoding step: the activity input in, `ExecuteCommand` out, or the
`DecodeError` every ingress raises (issues located by JSON Pointer into the input); the activity turns that into a
non-retryable `ApplicationError` at its boundary (`refusal`: `InvalidRequest`, or `PayloadTooLarge` when only a
size limit was exceeded). `encode_result` turns an execution's final state into the activity's result or the
`ApplicationError` it stands for. Checkpoints travel as heartbeat details in a versioned JSON object. Nothing here
does I/O, so each step can be tested and benchmarked alone.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from typing import Any

import orjson
from temporalio.api.common.v1 import Payload
from temporalio.common import RawValue
from temporalio.exceptions import ApplicationError

from executor import Checkpoint, ExecuteCommand, Issue, Source, Status, describe_issues, json_safe

from ._decode import DecodeError, check_id, metadata_map, secrets_object, usable_id, within_limits
from ._service import ExecutionState
from ._temporal_workflow import (
    INVALID_DOCUMENT,
    INVALID_REQUEST,
    PAYLOAD_TOO_LARGE,
    PROGRESS_NOT_CONFIRMED,
    RUNNER_SHUTTING_DOWN,
    WORKFLOW_CANCELLED,
    WORKFLOW_FAULTED,
)
from .payloads._temporal import JSON_PLAIN

CHECKPOINT_VERSION = 1
LIMIT_VARIABLE = "TEMPORAL_MAX_PAYLOAD_BYTES"


def failure(kind: str, message: str, *details: Any, retryable: bool = False) -> ApplicationError:
    """The `ApplicationError` of one of the error types in `consumer._temporal_workflow`."""
    return ApplicationError(message, *details, type=kind, non_retryable=not retryable)


def invalid_document(issues: Sequence[Issue]) -> ApplicationError:
    """`InvalidWorkflowDocument` carrying every issue as `{path, message, line?, column?}`."""
    return failure(INVALID_DOCUMENT, describe_issues(issues, limit=1), _dicts(issues))


def refusal(error: DecodeError) -> ApplicationError:
    """The activity's answer to an input that cannot become a command (both kinds are non-retryable)."""
    if error.too_large:
        return failure(PAYLOAD_TOO_LARGE, error.issues[0].message)
    return failure(INVALID_REQUEST, f"invalid activity input: {describe_issues(error.issues)}", _dicts(error.issues))


def to_payload(value: Any) -> RawValue:
    """`value` as the JSON payload Temporal's default converter would make (encoded with orjson: one copy less)."""
    try:
        data = orjson.dumps(value)
    except orjson.JSONEncodeError:  # integers past 64 bits: as the doubles they are, like everywhere else
        data = orjson.dumps(json_safe(value), default=str)
    return RawValue(Payload(metadata={"encoding": JSON_PLAIN}, data=data))


UNBOUNDED = sys.maxsize
"""A `max_payload_bytes` that bounds nothing: sizes are then not measured (measuring encodes the whole value)."""


def json_size(value: Any) -> int:
    """Bytes of `value` as compact JSON (what Temporal's default converter sends, give or take spacing)."""
    return len(orjson.dumps(value, default=str, option=orjson.OPT_NON_STR_KEYS))


def _size_issue(what: str, size: int, limit: int, path: str) -> Issue | None:
    """The `too-large` issue naming the limit when `size` is over it."""
    if size <= limit:
        return None
    return Issue(
        path=path, message=f"the {what} is {size} bytes, over {LIMIT_VARIABLE} ({limit} bytes)", code="too-large"
    )


def check_size(what: str, size: int, limit: int, path: str = "") -> None:
    """Raise a `too-large` `DecodeError` naming the limit when `size` is over it (what the activity received)."""
    issue = _size_issue(what, size, limit, path)
    if issue is not None:
        raise DecodeError([issue])


def _check_fields(request: Mapping[str, Any], issues: list[Issue]) -> None:
    check_id(request.get("execution_id"), issues)
    document = request.get("workflow_yaml")
    if not isinstance(document, str) or not document.strip():
        issues.append(Issue(path="/workflow_yaml", message="required, the document text"))
    elif not within_limits(document, "/workflow_yaml", issues):
        return
    secrets_object(_object_or_none(request, "secrets", issues), issues)
    metadata = _object_or_none(request, "metadata", issues)
    if metadata_map(metadata, issues):
        within_limits(metadata, "/metadata", issues)
    within_limits(request.get("input"), "/input", issues)


def _object_or_none(request: Mapping[str, Any], name: str, issues: list[Issue]) -> Any:
    """The object field `name`, or None (absent or null); anything else, `[]` and `""` included, is an issue."""
    value = request.get(name)
    if value is None or isinstance(value, dict):
        return value
    issues.append(Issue(path=f"/{name}", message="must be an object"))
    return None


def decode_request(
    request: Any, *, max_payload_bytes: int, attempt: int = 1, resume_from: Checkpoint | None = None
) -> ExecuteCommand:
    """The command an activity input asks for.

    Args:
        request: The activity's one argument, as decoded from JSON.
        max_payload_bytes: `TEMPORAL_MAX_PAYLOAD_BYTES`.
        attempt: The activity attempt (1-based).
        resume_from: The last checkpoint heartbeated by an earlier attempt.

    Raises:
        DecodeError: Missing id or document, secrets or metadata of the wrong shape or over their bounds, a value
            nested too deep or that JSON text cannot carry; or (`too_large`) a document or input over the limit.
    """
    if not isinstance(request, dict):
        raise DecodeError([Issue(path="", message="the activity input must be a JSON object")])
    issues: list[Issue] = []
    _check_fields(request, issues)
    if issues:
        raise DecodeError(issues, usable_id(request.get("execution_id")))
    data = request.get("input")
    if max_payload_bytes < UNBOUNDED:
        check_size("document", len(request["workflow_yaml"].encode()), max_payload_bytes, "/workflow_yaml")
        check_size("input", json_size(data), max_payload_bytes, "/input")
    return ExecuteCommand(
        execution_id=request["execution_id"],
        workflow_yaml=request["workflow_yaml"],
        input={} if data is None else data,
        secrets=request.get("secrets") or {},
        metadata=request.get("metadata") or {},
        source=Source.TEMPORAL,
        attempt=attempt,
        resume_from=resume_from,
    )


def _dicts(issues: Sequence[Issue]) -> list[dict[str, Any]]:
    return [issue.to_dict() for issue in issues]


def checkpoint_details(checkpoint: Checkpoint) -> dict[str, Any]:
    """A checkpoint as the heartbeat detail that carries it."""
    return {
        "version": CHECKPOINT_VERSION,
        "next_task": checkpoint.next_task,
        "output": checkpoint.output,
        "context": checkpoint.context,
    }


def checkpoint_from(details: Sequence[Any]) -> Checkpoint | None:
    """The checkpoint in an attempt's heartbeat details; None when there is none (or it is not ours)."""
    if not details or not isinstance(details[-1], dict):
        return None
    last = details[-1]
    next_task = last.get("next_task")
    if last.get("version") != CHECKPOINT_VERSION or not isinstance(next_task, int) or next_task < 0:
        return None
    return Checkpoint(next_task=next_task, output=last.get("output"), context=last.get("context"))


def encode_result(state: ExecutionState, *, max_payload_bytes: int) -> dict[str, Any]:
    """The activity's result for a finished execution.

    Raises:
        ApplicationError: Retryable `RunnerShuttingDown` or `ProgressNotConfirmed`; non-retryable
            `WorkflowFaulted`, `WorkflowCancelled` or `PayloadTooLarge` (see `consumer._temporal_workflow`).
    """
    result = state.result
    if state.interrupted or result is None:
        raise failure(RUNNER_SHUTTING_DOWN, "the runner stopped before the execution finished", retryable=True)
    if not state.progress_confirmed:
        # The control plane has not seen how the run ended: another attempt reports it again.
        raise failure(PROGRESS_NOT_CONFIRMED, f"terminal event not confirmed: {state.report_error}", retryable=True)
    error = dict(result.error or {})
    if result.status is Status.FAULTED:
        raise failure(WORKFLOW_FAULTED, f"the workflow faulted: {_title(error)}", error)
    if result.status is Status.CANCELLED:
        raise failure(WORKFLOW_CANCELLED, "the execution was cancelled", error)
    payload = result.to_dict()
    if max_payload_bytes >= UNBOUNDED:
        return payload
    too_large = _size_issue("output", json_size(payload), max_payload_bytes, "/output")
    if too_large is not None:
        raise failure(PAYLOAD_TOO_LARGE, too_large.message)
    return payload


def _title(error: Mapping[str, Any]) -> str:
    detail = error.get("detail")
    return f"{error.get('title', 'error')}" + (f" ({detail})" if detail else "")
