"""Pure translation between the Temporal activity's JSON objects and the service's types.

`decode_request` is the Temporal ingress's decoding step: the activity input in, `ExecuteCommand` out, or a
non-retryable `ApplicationError` (`InvalidRequest` with issues located by JSON Pointer into the input, or
`PayloadTooLarge`). `encode_result` turns an execution's final state into the activity's result or the
`ApplicationError` it stands for. Checkpoints travel as heartbeat details in a versioned JSON object. Nothing here
does I/O, so each step can be tested and benchmarked alone.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import orjson
from temporalio.exceptions import ApplicationError

from executor import Checkpoint, ExecuteCommand, Issue, Source, Status

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

MAX_EXECUTION_ID = 256
CHECKPOINT_VERSION = 1
LIMIT_VARIABLE = "TEMPORAL_MAX_PAYLOAD_BYTES"
_PAYLOAD_FIELDS = ("workflow_yaml", "input", "secrets", "metadata")
_UNREPRESENTABLE = "not representable as UTF-8 JSON (an integer beyond 64 bits, or a lone UTF-16 surrogate)"


def failure(kind: str, message: str, *details: Any, retryable: bool = False) -> ApplicationError:
    """The `ApplicationError` of one of the error types in `consumer._temporal_workflow`."""
    return ApplicationError(message, *details, type=kind, non_retryable=not retryable)


def invalid_document(issues: Sequence[Issue]) -> ApplicationError:
    """`InvalidWorkflowDocument` carrying every issue as `{path, message, line?, column?}`."""
    first = issues[0]
    more = f" (and {len(issues) - 1} more)" if len(issues) > 1 else ""
    return failure(INVALID_DOCUMENT, f"{first.path or '/'}: {first.message}{more}", [i.to_dict() for i in issues])


def json_size(value: Any) -> int:
    """Bytes of `value` as compact JSON (what Temporal's default converter sends, give or take spacing)."""
    return len(orjson.dumps(value, default=str, option=orjson.OPT_NON_STR_KEYS))


def check_size(what: str, size: int, limit: int) -> None:
    """Raise `PayloadTooLarge` naming the limit when `size` is over it."""
    if size > limit:
        raise failure(PAYLOAD_TOO_LARGE, f"the {what} is {size} bytes, over {LIMIT_VARIABLE} ({limit} bytes)")


def _check_id(value: Any, issues: list[Issue]) -> None:
    if not isinstance(value, str) or not value.strip():
        issues.append(Issue(path="/execution_id", message="required, a non-empty string"))
    elif len(value) > MAX_EXECUTION_ID or not value.isprintable():
        issues.append(
            Issue(path="/execution_id", message=f"must be printable and at most {MAX_EXECUTION_ID} characters")
        )


def _check_fields(request: Mapping[str, Any], issues: list[Issue]) -> None:
    _check_id(request.get("execution_id"), issues)
    document = request.get("workflow_yaml")
    if not isinstance(document, str) or not document.strip():
        issues.append(Issue(path="/workflow_yaml", message="required, the document text"))
    _object(request, "secrets", "must be an object", issues)
    for key, value in _object(request, "metadata", "must be an object of strings", issues).items():
        if not isinstance(value, str):
            issues.append(Issue(path=f"/metadata/{_escape(key)}", message="must be a string"))
    for name in _PAYLOAD_FIELDS:
        if not _representable(request.get(name)):
            issues.append(Issue(path=f"/{name}", message=_UNREPRESENTABLE))


def _object(request: Mapping[str, Any], name: str, message: str, issues: list[Issue]) -> dict[str, Any]:
    """The object field `name` ({} when absent or null); anything else, `[]` and `""` included, is an issue."""
    value = request.get(name)
    if value is None or isinstance(value, dict):
        return value or {}
    issues.append(Issue(path=f"/{name}", message=message))
    return {}


def _representable(value: Any) -> bool:
    """Whether `value` survives as JSON text (events, fingerprints, sinks): Python's JSON decoder, which Temporal's
    converter uses, accepts integers of any size and lone surrogates; UTF-8 JSON has neither."""
    try:
        orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS)
    except orjson.JSONEncodeError:
        return False
    return True


def _escape(key: str) -> str:
    return key.replace("~", "~0").replace("/", "~1")


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
        ApplicationError: `InvalidRequest` (missing id or document, secrets or metadata of the wrong shape, a
            value JSON text cannot carry) or `PayloadTooLarge` (document or input); both non-retryable.
    """
    if not isinstance(request, dict):
        raise failure(INVALID_REQUEST, "the activity input must be a JSON object", [_root_issue()])
    issues: list[Issue] = []
    _check_fields(request, issues)
    if issues:
        raise failure(INVALID_REQUEST, f"invalid activity input: {issues[0].path}: {issues[0].message}", _dicts(issues))
    data = request.get("input")
    check_size("document", len(request["workflow_yaml"].encode()), max_payload_bytes)
    check_size("input", json_size(data), max_payload_bytes)
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


def _root_issue() -> dict[str, Any]:
    return Issue(path="", message="must be an object").to_dict()


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
    check_size("output", json_size(payload), max_payload_bytes)
    return payload


def _title(error: Mapping[str, Any]) -> str:
    detail = error.get("detail")
    return f"{error.get('title', 'error')}" + (f" ({detail})" if detail else "")
