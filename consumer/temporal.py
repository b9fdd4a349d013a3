"""The Temporal ingress: workers serving the `ExecuteWorkflow` activity and the ready `RunServerlessWorkflow`.

One task queue, `TEMPORAL_TASK_QUEUE`, serves every document (two workers poll it, see `start`): a control plane
either starts `RunServerlessWorkflow` by name or calls `ExecuteWorkflow` from its own workflow (input: the command
object; output: the result object; error types, retryability and checkpoint resumption:
`consumer._temporal_workflow` and `consumer._temporal_activity`). `TEMPORAL_MAX_CONCURRENCY` bounds the activities
running at once in this process;
the execution service's own cap (`MAX_CONCURRENT_EXECUTIONS`, shared by every ingress) still applies, and an
activity waits for room under it instead of failing.

Lifecycle: `start()` connects (TLS and API key as configured) and starts polling. When the service closes intake
(shutdown), the worker stops polling at once and waits for its running activities: the service's drain ends them,
and a run interrupted by the drain fails its activity with the retryable `RunnerShuttingDown`, so another worker
resumes it from the last checkpoint. `stop(grace)` waits for the worker to finish within `grace`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import timedelta

from temporalio.client import Client
from temporalio.converter import DataConverter
from temporalio.worker import Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from ._service import ExecutionService
from ._temporal_activity import Activities
from ._temporal_client import connect
from ._temporal_workflow import RunServerlessWorkflow
from .config import Settings
from .payloads import PayloadStore, data_converter
from .payloads._temporal import workflow_converter

logger = logging.getLogger("consumer.temporal")

HEARTBEAT_THROTTLE = timedelta(seconds=5)
"""Longest delay before a heartbeat reaches the server (the SDK's default is 30-60 s): bounds how stale the
checkpoint a retry resumes from can be, and how late a cancellation arrives."""

REPORT_GRACE = 2.0
"""Seconds `stop` always allows, even after the drain used the whole grace period: activities the drain ended
still have to report their outcome (a retryable failure lets another worker resume them at once)."""

# The sandbox re-imports a workflow's module and its package; `consumer/__init__` pulls in the whole runner (grpc,
# httpx, ...), which the sandbox cannot import. The workflow module has no state and imports only temporalio, so
# the package is passed through instead of re-imported.
_SANDBOX = SandboxedWorkflowRunner(restrictions=SandboxRestrictions.default.with_passthrough_modules("consumer"))


class TemporalIngress:
    """Runs the Temporal worker; `start()` connects and polls, `stop(grace)` drains and disconnects.

    Args:
        settings: Process settings (`settings.temporal`, the shutdown grace, the callbacks' flush timeout).
        service: The execution service every activity goes through.
    """

    name = "temporal"

    def __init__(self, settings: Settings, service: ExecutionService) -> None:
        self._settings = settings
        self._service = service
        self._store = PayloadStore.from_settings(settings.payloads)
        self._activities = Activities(settings, service, self._store)
        self._workers: list[Worker] = []
        self._running: asyncio.Task[None] | None = None
        self._shutdown: asyncio.Task[None] | None = None

    @property
    def data_converter(self) -> DataConverter:
        """The converter of the activities' client (payload store references, encryption when configured)."""
        return data_converter(self._store, inline_limit=self._settings.temporal.max_payload_bytes)

    @property
    def task_queue(self) -> str:
        """The task queue this worker polls."""
        return self._settings.temporal.task_queue

    async def start(self) -> None:
        """Connect to the frontend and start the workers.

        Two workers poll the task queue: one runs the activities; the other runs `RunServerlessWorkflow` and its
        local plan activity with `workflow_converter`, which hands large payloads on as claims instead of
        downloading and uploading each of them again around the activity (`consumer.payloads._temporal`).

        Raises:
            StartupError: The frontend is unreachable or refuses the namespace (the message names the variable).
        """
        temporal = self._settings.temporal
        # Payloads above PAYLOAD_OFFLOAD_BYTES cross Temporal as references to the payload store (history stays small).
        client = await connect(temporal, check_namespace=True, data_converter=self.data_converter)
        config = client.config()
        config["data_converter"] = workflow_converter(self._store, inline_limit=temporal.max_payload_bytes)
        # The service's drain ends running activities first; this only bounds a worker stopped on its own.
        grace = timedelta(seconds=self._settings.shutdown_grace)
        self._workers = [
            Worker(
                client,
                task_queue=temporal.task_queue,
                activities=[self._activities.execute],
                max_concurrent_activities=temporal.max_concurrency,
                max_heartbeat_throttle_interval=HEARTBEAT_THROTTLE,
                default_heartbeat_throttle_interval=HEARTBEAT_THROTTLE,
                graceful_shutdown_timeout=grace,
                on_fatal_error=self._on_fatal_error,
            ),
            Worker(
                Client(**config),
                task_queue=temporal.task_queue,
                workflows=[RunServerlessWorkflow],
                activities=[self._activities.plan],
                no_remote_activities=True,  # the plan is a local activity
                workflow_runner=_SANDBOX,
                graceful_shutdown_timeout=grace,
                on_fatal_error=self._on_fatal_error,
            ),
        ]
        self._running = asyncio.create_task(self._run(), name="temporal-workers")
        self._service.add_intake_listener(self._on_intake_closed)
        logger.info(
            "Temporal ingress on %s, namespace %s, task queue %s (%d activities at once)",
            temporal.address,
            temporal.namespace,
            temporal.task_queue,
            temporal.max_concurrency,
        )

    async def _run(self) -> None:
        """Run the workers until each has stopped; one failing stops the other (its error is re-raised)."""
        runs = [asyncio.create_task(worker.run()) for worker in self._workers]
        try:
            await asyncio.gather(*runs)
        finally:
            for run in runs:
                run.cancel()
            await asyncio.wait(runs)

    async def stop(self, grace: float) -> None:
        """Stop polling, let running activities finish within `grace` (at least `REPORT_GRACE`), stop; idempotent."""
        if not self._workers or self._running is None:
            return
        shutdown = self._begin_shutdown()
        _, pending = await asyncio.wait({shutdown, self._running}, timeout=max(grace, REPORT_GRACE))
        if pending:
            logger.warning("Temporal worker still busy after %.1f s; abandoning it", grace)
            self._running.cancel()
            await asyncio.wait([self._running], timeout=1.0)
        elif self._running.done() and not self._running.cancelled() and self._running.exception() is not None:
            logger.error("Temporal worker failed", exc_info=self._running.exception())

    def _begin_shutdown(self) -> asyncio.Task[None]:
        if self._shutdown is None:
            self._shutdown = asyncio.create_task(self._shutdown_workers(), name="temporal-workers-shutdown")
        return self._shutdown

    async def _shutdown_workers(self) -> None:
        await asyncio.gather(*(worker.shutdown() for worker in self._workers))

    def _on_intake_closed(self) -> None:
        # The service calls listeners synchronously; stopping the pollers is a coroutine.
        with contextlib.suppress(RuntimeError):  # no running loop: stop() begins the shutdown instead
            self._begin_shutdown()

    async def _on_fatal_error(self, exc: BaseException) -> None:
        logger.error("Temporal worker stopped on a fatal error: %s", exc)
        self._service.report_failure(f"Temporal worker: {type(exc).__name__}: {exc}")
