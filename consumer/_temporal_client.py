"""Temporal client side: connecting with the configured TLS / API key, and `submit --temporal`.

`submit_via_temporal` starts `RunServerlessWorkflow` (workflow id = execution id) on the configured task queue and
follows it to the end, reporting progress from the activity's heartbeat details (the number of completed
top-level tasks), then maps the outcome to the shape of `run --json`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest
from temporalio.client import Client, WorkflowFailureError, WorkflowHandle
from temporalio.converter import DataConverter
from temporalio.exceptions import ApplicationError, CancelledError, FailureError, WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode, TLSConfig

from ._errors import StartupError
from ._temporal_workflow import INVALID_DOCUMENT, INVALID_REQUEST, WORKFLOW_CANCELLED, WORKFLOW_FAULTED, WORKFLOW_NAME
from .config import TemporalSettings

_BLAME = {
    RPCStatusCode.NOT_FOUND: "TEMPORAL_NAMESPACE",
    RPCStatusCode.UNAUTHENTICATED: "TEMPORAL_API_KEY",
    RPCStatusCode.PERMISSION_DENIED: "TEMPORAL_API_KEY",
}
PROGRESS_POLL = 0.5
"""Seconds between looks at the running activity while following a submission."""


def _read(path: Path | None) -> bytes | None:
    return None if path is None else path.read_bytes()


def tls_config(settings: TemporalSettings) -> TLSConfig | bool:
    """The `tls` argument of `Client.connect` for the settings (False: plaintext, True: system roots)."""
    if not settings.tls:
        return False
    if not (settings.tls_ca_path or settings.tls_cert_path or settings.tls_server_name):
        return True
    return TLSConfig(
        server_root_ca_cert=_read(settings.tls_ca_path),
        domain=settings.tls_server_name,
        client_cert=_read(settings.tls_cert_path),
        client_private_key=_read(settings.tls_key_path),
    )


async def connect(
    settings: TemporalSettings, *, check_namespace: bool = False, data_converter: DataConverter | None = None
) -> Client:
    """A client of the configured frontend and namespace.

    Args:
        settings: `TEMPORAL_*`.
        check_namespace: Also ask the frontend for the namespace, so wrong credentials or a missing namespace
            fail here with the variable named instead of later in a worker.
        data_converter: The payload store's converter (`consumer.payloads.data_converter`); the SDK's default
            when None, which cannot read payloads a runner offloaded.

    Raises:
        StartupError: The frontend is unreachable, or refuses the namespace (one line naming the variable).
    """
    try:
        tls = tls_config(settings)
    except OSError as exc:
        raise StartupError(f"TEMPORAL_TLS_*: cannot read a certificate file ({exc})") from None
    try:
        client = await Client.connect(
            settings.address,
            namespace=settings.namespace,
            api_key=settings.api_key,
            tls=tls,
            data_converter=data_converter or DataConverter.default,
        )
    except RuntimeError as exc:
        raise StartupError(f"TEMPORAL_SERVICE_ADDRESS: cannot reach Temporal at {settings.address} ({exc})") from None
    if check_namespace:
        await _describe_namespace(client, settings.namespace)
    return client


async def _describe_namespace(client: Client, namespace: str) -> None:
    try:
        await client.workflow_service.describe_namespace(DescribeNamespaceRequest(namespace=namespace))
    except RPCError as exc:
        variable = _BLAME.get(exc.status, "TEMPORAL_SERVICE_ADDRESS")
        raise StartupError(f"{variable}: Temporal refused namespace {namespace!r} ({exc.status.name})") from None


@dataclass(frozen=True, slots=True, kw_only=True)
class TemporalOutcome:
    """How a submission through Temporal ended.

    Attributes:
        result: `{execution_id, status, output, error}` when the document ran (completed, faulted or cancelled).
        errors: Located validation issues when the document (or the request) was refused.
        failure: Why it failed otherwise (one line).
    """

    result: dict[str, Any] | None = None
    errors: list[dict[str, Any]] = field(default_factory=list)
    failure: str | None = None


async def submit_via_temporal(
    settings: TemporalSettings,
    request: dict[str, Any],
    *,
    client: Client | None = None,
    data_converter: DataConverter | None = None,
    on_progress: Callable[[str], None] | None = None,
) -> TemporalOutcome:
    """Start `RunServerlessWorkflow` for `request` and wait for its end.

    Args:
        settings: Where Temporal is and which task queue the runners serve.
        request: The command object (`execution_id`, `workflow_yaml`, `input`, `secrets`, `metadata`, ...).
        client: A connected client (else one is connected from `settings` with `data_converter`).
        data_converter: The payload store's converter (`consumer.payloads.data_converter`), so large documents,
            inputs and results cross Temporal as references.
        on_progress: Called with one line each time the run's checkpoint advances or a new attempt starts.
    """
    client = client or await connect(settings, data_converter=data_converter)
    try:
        handle = await client.start_workflow(
            WORKFLOW_NAME, request, id=str(request["execution_id"]), task_queue=settings.task_queue
        )
    except (WorkflowAlreadyStartedError, RPCError) as exc:
        return TemporalOutcome(failure=f"cannot start {WORKFLOW_NAME}: {exc}")
    follower = asyncio.create_task(_follow(client, handle, on_progress)) if on_progress else None
    try:
        result = await handle.result()
    except WorkflowFailureError as exc:
        return outcome_of_failure(str(request["execution_id"]), exc)
    finally:
        if follower is not None:
            follower.cancel()
            await asyncio.wait([follower])
    return TemporalOutcome(result=result)


def outcome_of_failure(execution_id: str, exc: WorkflowFailureError) -> TemporalOutcome:
    """Map a failed `RunServerlessWorkflow` to the outcome `run --json` would show."""
    cause = _innermost(exc)
    if isinstance(cause, CancelledError):
        return TemporalOutcome(result=_result(execution_id, "cancelled", None))
    if not isinstance(cause, ApplicationError):
        return TemporalOutcome(failure=str(cause))
    details = list(cause.details)
    if cause.type in (INVALID_DOCUMENT, INVALID_REQUEST) and details:
        return TemporalOutcome(errors=list(details[0]))
    if cause.type in (WORKFLOW_FAULTED, WORKFLOW_CANCELLED):
        status = "faulted" if cause.type == WORKFLOW_FAULTED else "cancelled"
        return TemporalOutcome(result=_result(execution_id, status, details[0] if details else None))
    return TemporalOutcome(failure=f"{cause.type}: {cause.message}")


def _innermost(exc: BaseException) -> BaseException:
    """The root cause: `WorkflowFailureError` → `ActivityError` → the activity's own error."""
    while isinstance(exc, FailureError | WorkflowFailureError) and exc.cause is not None:
        exc = exc.cause
    return exc


def _result(execution_id: str, status: str, error: Any) -> dict[str, Any]:
    return {"execution_id": execution_id, "status": status, "output": None, "error": error}


async def _follow(client: Client, handle: WorkflowHandle[Any, Any], on_progress: Callable[[str], None]) -> None:
    """Report checkpoint progress seen in the pending activity's heartbeat details."""
    seen: tuple[int, int] | None = None
    converter = client.data_converter
    while True:
        with contextlib.suppress(RPCError):
            description = await handle.describe()
            for pending in description.raw_description.pending_activities:
                details = await converter.decode(pending.heartbeat_details.payloads)
                done = details[-1].get("next_task", 0) if details and isinstance(details[-1], dict) else 0
                if (pending.attempt, done) != seen:
                    seen = (pending.attempt, done)
                    on_progress(f"attempt {pending.attempt}: {done} top-level tasks done")
        await asyncio.sleep(PROGRESS_POLL)
