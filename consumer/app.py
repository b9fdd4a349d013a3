"""The process: builds the executor, reporter, execution service and selected ingresses, and owns their lifecycle.

Start order: reporter → executor worker processes (`WorkerPool`, unless `EXECUTOR_PROCESSES=0`) → operations HTTP
server → ingresses in `INGRESSES` order; stop is the reverse (the workers stop last, after the reporter). Shutdown
(SIGTERM / SIGINT, or `stop()`) is one sequence, under one deadline of `SHUTDOWN_GRACE_SECONDS` plus at most
about 4 s for what must happen after it (cancelled leftovers reporting, the last flush):

1. stop intake: the service refuses new executions, ingresses stop pulling work, readiness and gRPC health flip
   to NOT_SERVING (the gRPC server keeps answering, so probes see the flip instead of a refused connection);
2. drain: wait for in-flight executions until the deadline, then cancel the rest (their `cancelled` events say so,
   and their state is `interrupted` so an ingress that can hand work back does so);
3. stop the ingresses in reverse order, one at a time;
4. stop the reporter: deliver what is left within the remaining grace (at least `MIN_FLUSH_GRACE`), dead-letter
   the rest;
5. stop the executor: its worker processes (a `stop` frame, then SIGKILL after a wait) and shared I/O;
6. stop the operations server.

Ingresses are registered by name in `INGRESS_REGISTRY` as `module:Class`, imported only when selected, so an
ingress's dependencies (temporalio, aio-pika) load only in processes that use it.
"""

from __future__ import annotations

import asyncio
import enum
import importlib
import logging
import signal
import time
from typing import Protocol

from callbacks import Reporter, RetryPolicy, Sink, sink_from_config
from executor import Executor, Limits

from ._errors import IngressFailedError, StartupError
from ._gc import tune_gc
from ._http import OpsServer
from ._metrics import CONTENT_TYPE, Metrics
from ._pool import PoolSettings, WorkerPool
from ._service import ExecutionService
from .config import Settings
from .payloads import PayloadStore

logger = logging.getLogger("consumer.app")

MIN_FLUSH_GRACE = 2.0
"""Seconds the reporter always gets to flush at shutdown, even when the drain used the whole grace period."""

INGRESS_REGISTRY: dict[str, str] = {
    "grpc": "consumer.grpc:GrpcIngress",
    "temporal": "consumer.temporal:TemporalIngress",
    "amqp": "consumer.amqp:AmqpIngress",
}
"""Ingress name (as in `EXECUTION_MODE`) → `module:Class`; the class takes `(settings, service)`."""


class Ingress(Protocol):
    """One way work comes in; each is one class in its own module."""

    name: str

    async def start(self) -> None:
        """Connect or bind and begin taking work."""
        ...

    async def stop(self, grace: float) -> None:
        """Stop taking work, give work in progress up to `grace` seconds, release connections; idempotent.

        The app calls it after the drain, so little is left in progress by then. An ingress that pulls work
        (a Temporal worker, an AMQP consumer) should stop pulling as soon as shutdown begins, before the drain:
        register a callback with `ExecutionService.add_intake_listener` in `start()`.
        """
        ...


class _State(enum.Enum):
    NEW = "new"
    STARTING = "starting"
    RUNNING = "running"
    STOPPING = "stopping"
    STOPPED = "stopped"


def load_ingress(name: str, settings: Settings, service: ExecutionService) -> Ingress:
    """Instantiate the ingress registered under `name`.

    Raises:
        StartupError: `name` is a known mode with no implementation in this build, or its module fails to import.
    """
    target = INGRESS_REGISTRY.get(name)
    if target is None:
        raise StartupError(f"EXECUTION_MODE: the {name} ingress is not available in this build of workflow-runner")
    module_name, _, class_name = target.partition(":")
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except ImportError as exc:
        raise StartupError(f"EXECUTION_MODE: the {name} ingress cannot load ({exc})") from exc
    ingress: Ingress = cls(settings, service)
    return ingress


def build_executor(settings: Settings, metrics: Metrics) -> WorkerPool | Executor:
    """Worker processes under a watchdog (`EXECUTOR_PROCESSES` > 0, the default), or an in-process executor."""
    limits = Limits(max_bytes=settings.max_document_bytes)
    isolation = settings.isolation
    if isolation.processes == 0:
        return Executor(limits=limits, options=settings.engine)
    pool = PoolSettings(
        processes=isolation.processes,
        expression_time_limit=isolation.expression_time_limit,
        memory_limit_mb=isolation.memory_limit_mb,
        options=settings.engine,
        limits=limits,
        max_event_output_bytes=settings.event_max_output_bytes,
        log_level=settings.log_level,
        log_format=settings.log_format,
    )
    return WorkerPool(pool, metrics=metrics)


def build_sink(settings: Settings) -> Sink:
    """The progress sink the settings name (stdout when none)."""
    callbacks = settings.callbacks
    return sink_from_config(
        endpoint=callbacks.endpoint,
        use_tls=callbacks.use_tls,
        api_key=callbacks.api_key,
        http_url=callbacks.http_url,
        http_headers=callbacks.http_headers,
        amqp_url=settings.amqp.url,
        amqp_exchange=callbacks.amqp_exchange,
        jsonl_path=callbacks.jsonl_path,
    )


class App:
    """The whole process, from settings.

    Args:
        settings: Validated configuration.
        sink: Overrides the sink the settings name (tests).
    """

    def __init__(self, settings: Settings, *, sink: Sink | None = None) -> None:
        self.settings = settings
        self.metrics = Metrics()
        self.reporter = Reporter(
            sink or build_sink(settings),
            capacity=settings.callbacks.outbox_capacity,
            max_batch=settings.callbacks.max_batch,
            concurrency=settings.callbacks.concurrency,
            retry=RetryPolicy(max_delay=settings.callbacks.retry_max_delay),
            dead_letter_path=settings.callbacks.dead_letter_path,
        )
        self.metrics.track_delivery(lambda: self.reporter.stats)
        self.executor = build_executor(settings, self.metrics)
        self.service = ExecutionService(
            self.executor,
            self.reporter,
            max_concurrent=settings.max_concurrent_executions,
            max_queued=settings.isolation.max_queued,
            tenant_max_concurrent=settings.isolation.tenant_max_concurrent,
            flush_timeout=settings.callbacks.flush_timeout,
            event_source=settings.event_source,
            max_event_output_bytes=settings.event_max_output_bytes,
            metrics=self.metrics,
            payloads=PayloadStore.from_settings(settings.payloads),
        )
        self.ingresses: list[Ingress] = [load_ingress(name, settings, self.service) for name in settings.ingresses]
        self.ops: OpsServer | None = None
        if settings.metrics_port is not None:
            self.ops = OpsServer(
                settings.metrics_host,
                settings.metrics_port,
                metrics=lambda: (self.metrics.render(), CONTENT_TYPE),
                ready=lambda: self.ready,
            )
        self._state = _State.NEW
        self._stop_requested = asyncio.Event()
        self.failure: str | None = None
        self.service.add_failure_listener(self._fail)
        self._stopping: asyncio.Task[None] | None = None

    @property
    def ready(self) -> bool:
        """True while every ingress is started and new executions are accepted."""
        return self._state is _State.RUNNING and self.service.accepting

    def ingress(self, name: str) -> Ingress:
        """The running ingress called `name`."""
        return next(ingress for ingress in self.ingresses if ingress.name == name)

    async def start(self) -> None:
        """Start everything in order; on failure, stop what started (in reverse) and re-raise."""
        if self._state is not _State.NEW:
            raise StartupError("an App starts once")
        self._state = _State.STARTING
        for name, reason in self.settings.skipped:
            logger.warning("ingress %s not started: %s", name, reason)
        started: list[Ingress] = []
        try:
            await self.reporter.start()
            if isinstance(self.executor, WorkerPool):
                await self.executor.start()  # before any ingress: the first command needs a worker
            if self.ops is not None:
                await self.ops.start()
            for ingress in self.ingresses:
                await ingress.start()
                started.append(ingress)
        except BaseException:
            await self._unwind(started)
            raise
        self._state = _State.RUNNING
        logger.info("workflow-runner ready: %s", ", ".join(i.name for i in self.ingresses) or "no ingress")

    async def _unwind(self, started: list[Ingress]) -> None:
        for ingress in reversed(started):
            try:
                await ingress.stop(0)
            except Exception:
                # Start-up already failed with the error that matters; this one only goes to the log.
                logger.exception("ingress %s did not stop cleanly after the failed start", ingress.name)
        if self.ops is not None:
            await self.ops.stop()
        await self.reporter.stop(MIN_FLUSH_GRACE)
        await self.executor.aclose()
        self._state = _State.STOPPED

    async def stop(self, grace: float | None = None) -> None:
        """The shutdown sequence of the module docstring; safe to call more than once and concurrently."""
        if self._stopping is None:
            self._stopping = asyncio.create_task(self._shutdown(grace), name="workflow-runner-stop")
        await asyncio.shield(self._stopping)

    async def _shutdown(self, grace: float | None) -> None:
        self._state = _State.STOPPING
        deadline = time.monotonic() + (self.settings.shutdown_grace if grace is None else grace)
        logger.info("shutting down: intake closed, draining %d executions", self.service.running)
        self.service.close_intake()
        leftovers = await self.service.drain(deadline - time.monotonic())
        # One at a time, last started first: an ingress stops while everything it may still use
        # (the ingresses started before it, the reporter, the ops server) keeps running.
        for ingress in reversed(self.ingresses):
            try:
                await ingress.stop(max(deadline - time.monotonic(), 0.0))
            except Exception:
                logger.exception("ingress %s did not stop cleanly", ingress.name)
        undelivered = await self.reporter.stop(max(deadline - time.monotonic(), MIN_FLUSH_GRACE))
        await self.service.wait_closed(MIN_FLUSH_GRACE)
        # Last: the executions that used them are over (worker processes, HTTP pool, gRPC channels, subprocesses).
        await self.service.executor.aclose()
        if self.ops is not None:
            await self.ops.stop()
        self._state = _State.STOPPED
        logger.info(
            "stopped (%d cancelled at shutdown, %d events undelivered)", len(leftovers), sum(undelivered.values())
        )

    def request_stop(self, signum: int | None = None) -> None:
        """Ask `serve` to shut down (the signal handler); a second request is logged and ignored."""
        if self._stop_requested.is_set():
            logger.warning("shutdown already in progress")
            return
        name = signal.Signals(signum).name if signum is not None else "request"
        logger.info("%s received: shutting down", name)
        self._stop_requested.set()

    async def _start_unless_stopped(self) -> bool:
        """`start()`, abandoned (and unwound) when a stop is requested first: SIGTERM while an ingress is still
        connecting must not wait for its connect timeout. False when abandoned."""
        starting = asyncio.create_task(self.start(), name="workflow-runner-start")
        stop_requested = asyncio.create_task(self._stop_requested.wait())
        try:
            await asyncio.wait({starting, stop_requested}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop_requested.cancel()
            if not starting.done():
                starting.cancel()  # its own unwinding stops what had started
                await asyncio.wait([starting])
        if starting.cancelled():
            logger.info("start-up abandoned: stop requested")
            return False
        starting.result()  # a failed start raises here
        return True

    def _fail(self, reason: str) -> None:
        logger.error("ingress failed: %s; shutting down", reason)
        self.failure = self.failure or reason
        self._stop_requested.set()

    async def serve(self) -> None:
        """Start, run until SIGTERM / SIGINT (or `request_stop`), then shut down.

        Raises:
            IngressFailedError: An ingress broke while serving (after the orderly shutdown).
        """
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self.request_stop, signum)
        try:
            if await self._start_unless_stopped():
                tune_gc()
                await self._stop_requested.wait()
                await self.stop()
        finally:
            for signum in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(signum)
        if self.failure is not None:
            raise IngressFailedError(self.failure)
