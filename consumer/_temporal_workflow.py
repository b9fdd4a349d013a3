"""The ready Temporal workflow `RunServerlessWorkflow`, and the names every Temporal caller relies on.

A control plane in any language starts `RunServerlessWorkflow` by name on the runner's task queue with one JSON
object (`execution_id`, `workflow_yaml`, `input`, `secrets`, `metadata`, and optionally `timeout_seconds` and
`max_attempts`); the result is the `ExecuteWorkflow` activity's result object.

The workflow first asks a local activity (`PlanServerlessWorkflow`, run by the same worker) for the activity's
options: the start-to-close timeout comes from the caller's `timeout_seconds`, else the document's own `timeout`
(plus room for the terminal event's confirmation), else `TEMPORAL_DEFAULT_TIMEOUT_SECONDS`; the heartbeat timeout
from `TEMPORAL_HEARTBEAT_TIMEOUT_SECONDS`. The plan is recorded in the history as the local activity's result, so
the workflow stays deterministic without parsing YAML or reading the worker's settings itself; an invalid document
fails there already, before any activity is scheduled.

The worker passes the `consumer` package through Temporal's workflow sandbox instead of re-importing it (see
`consumer.temporal`), so nothing guards this module but itself: it keeps no state, does nothing nondeterministic,
and imports only the standard library and `temporalio`.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import Priority, RawValue, RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

WORKFLOW_NAME = "RunServerlessWorkflow"
ACTIVITY_NAME = "ExecuteWorkflow"
PLAN_ACTIVITY_NAME = "PlanServerlessWorkflow"

INVALID_DOCUMENT = "InvalidWorkflowDocument"
"""Non-retryable: the document cannot run here; details: `[issues]`, each `{path, message, line?, column?}`."""
WORKFLOW_FAULTED = "WorkflowFaulted"
"""Non-retryable: the workflow ran and faulted; details: `[error]`, the spec's error object."""
WORKFLOW_CANCELLED = "WorkflowCancelled"
"""Non-retryable: the run was cancelled by something other than Temporal (a gRPC `Cancel` in dual mode)."""
PAYLOAD_TOO_LARGE = "PayloadTooLarge"
"""Non-retryable, and no longer raised for size by this runner: payloads above `PAYLOAD_OFFLOAD_BYTES` cross Temporal
through the payload store (docs/payloads.md). Kept for callers that match on it."""
INVALID_REQUEST = "InvalidRequest"
"""Non-retryable: the activity input is not a valid command; details: `[issues]` located in the input."""
EXECUTION_CONFLICT = "ExecutionConflict"
"""Non-retryable: the execution id is running here with a different document or input."""
PROGRESS_NOT_CONFIRMED = "ProgressNotConfirmed"
"""Retryable: the progress sink did not confirm the terminal event in time."""
RUNNER_SHUTTING_DOWN = "RunnerShuttingDown"
"""Retryable: the runner stopped before the execution finished; the next attempt resumes from the checkpoint."""
CHECKPOINT_UNAVAILABLE = "CheckpointUnavailable"
"""Retryable: the checkpoint an earlier attempt left in the payload store cannot be read (the message names it)."""

NON_RETRYABLE = (
    INVALID_DOCUMENT,
    WORKFLOW_FAULTED,
    WORKFLOW_CANCELLED,
    PAYLOAD_TOO_LARGE,
    INVALID_REQUEST,
    EXECUTION_CONFLICT,
)
DEFAULT_MAX_ATTEMPTS = 5

_PLAN_TIMEOUT = timedelta(seconds=30)
_PLAN_RETRY = RetryPolicy(maximum_attempts=3, non_retryable_error_types=list(NON_RETRYABLE))


def _fairness(plan: dict[str, Any]) -> Priority:
    """The activity's priority: its tenant as the fairness key (plans made before tenants existed have none;
    histories recorded before the key existed replay without it)."""
    tenant = plan.get("tenant")
    if isinstance(tenant, str) and workflow.patched("tenant-fairness-key"):
        return Priority(fairness_key=tenant)
    return Priority.default


@workflow.defn(name=WORKFLOW_NAME)
class RunServerlessWorkflow:
    """Runs one Serverless Workflow document through the `ExecuteWorkflow` activity on this task queue."""

    @workflow.run
    async def run(self, request: RawValue) -> RawValue:
        """Plan the activity's options, then run it (see the module docstring).

        Args:
            request: The command object the activity takes, kept encoded: the workflow only hands it on, so a
                large input is never decoded here (it still crosses the payload store on its way to the activity).

        Returns:
            The activity's result object `{execution_id, status, output, error}`.

        Raises:
            ApplicationError: The activity's error (same type, message and details), its failure as the cause.
        """
        try:
            plan = await workflow.execute_local_activity(
                PLAN_ACTIVITY_NAME, request, start_to_close_timeout=_PLAN_TIMEOUT, retry_policy=_PLAN_RETRY
            )
            return await self._execute(request, plan)
        except ActivityError as exc:
            if not isinstance(exc.cause, ApplicationError):
                raise
            # The workflow fails with the activity's own error type on top (callers match on it) and keeps the
            # activity failure as its cause (attempts, retry state).
            cause = exc.cause
            raise ApplicationError(cause.message, *cause.details, type=cause.type, non_retryable=True) from exc

    @staticmethod
    async def _execute(request: RawValue, plan: dict[str, Any]) -> RawValue:
        result: RawValue = await workflow.execute_activity(
            ACTIVITY_NAME,
            request,
            result_type=RawValue,
            start_to_close_timeout=timedelta(seconds=plan["start_to_close_seconds"]),
            heartbeat_timeout=timedelta(seconds=plan["heartbeat_seconds"]),
            retry_policy=RetryPolicy(
                initial_interval=timedelta(seconds=1),
                maximum_interval=timedelta(seconds=60),
                maximum_attempts=plan["max_attempts"],
                non_retryable_error_types=list(NON_RETRYABLE),
            ),
            # The workflow is reported cancelled only once the run's `cancelled` events are confirmed.
            cancellation_type=workflow.ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
            priority=_fairness(plan),
        )
        return result
