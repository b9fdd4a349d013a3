"""Prometheus metrics of the process: executions by source and outcome, task durations, in-flight, callback delivery.

Each `Metrics` has its own registry (not the library's global one), so several processes' worth of them can live
in one test session. Callback delivery counters are read from the reporter's own statistics at scrape time rather
than mirrored, so the two can never disagree.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from callbacks import DeliveryStats

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_TASK_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 60.0, 300.0, 1800.0)
_EXECUTION_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 60.0, 300.0, 1800.0, 3600.0, 14400.0)


class _DeliveryCollector(Collector):
    """Reads the reporter's counters when Prometheus scrapes."""

    def __init__(self, stats: Callable[[], DeliveryStats]) -> None:
        self._stats = stats

    def collect(self) -> Iterator[Metric]:
        stats = self._stats()
        for name, value, text in (
            ("delivered", stats.delivered, "Progress events confirmed by the sink."),
            ("retries", stats.retried, "Retries of a batch after a transient delivery failure."),
            ("dead_lettered", stats.dead_lettered, "Progress events refused for good and dead-lettered."),
            ("abandoned", stats.abandoned, "Progress events left undelivered at shutdown."),
        ):
            yield CounterMetricFamily(f"workflow_runner_callback_{name}", text, value=value)
        yield GaugeMetricFamily("workflow_runner_callback_pending", "Progress events not yet delivered.", stats.pending)


class _TenantCollector(Collector):
    """Reads the scheduler's per-tenant counts when Prometheus scrapes (only tenants with work appear)."""

    def __init__(self, counts: Callable[[], Mapping[str, tuple[int, int]]]) -> None:
        self._counts = counts

    def collect(self) -> Iterator[Metric]:
        running = GaugeMetricFamily(
            "workflow_runner_tenant_running", "Executions holding a run slot, by tenant.", labels=("tenant",)
        )
        queued = GaugeMetricFamily(
            "workflow_runner_tenant_queued",
            "Executions accepted and waiting for a run slot, by tenant.",
            labels=("tenant",),
        )
        for tenant, (held, waiting) in sorted(self._counts().items()):
            running.add_metric((tenant,), held)
            queued.add_metric((tenant,), waiting)
        yield running
        yield queued


class Metrics:
    """The process's metrics.

    Args:
        registry: Where to register (a fresh one by default).
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self._task_timers: dict[str, Any] = {}
        self.executions = Counter(
            "workflow_runner_executions",
            "Executions that ended, by ingress and outcome (completed, faulted, cancelled).",
            ("source", "outcome"),
            registry=self.registry,
        )
        self.rejected = Counter(
            "workflow_runner_rejected",
            "Execution requests refused, by ingress and reason (invalid, conflict, capacity, closed).",
            ("source", "reason"),
            registry=self.registry,
        )
        self.in_flight = Gauge(
            "workflow_runner_executions_in_flight", "Executions running now.", registry=self.registry
        )
        self.execution_seconds = Histogram(
            "workflow_runner_execution_duration_seconds",
            "Time from start to the end of an execution, by ingress.",
            ("source",),
            buckets=_EXECUTION_BUCKETS,
            registry=self.registry,
        )
        self.task_seconds = Histogram(
            "workflow_runner_task_duration_seconds",
            "Time from task.started to its completed/faulted/cancelled event, by outcome.",
            ("outcome",),
            buckets=_TASK_BUCKETS,
            registry=self.registry,
        )

        self.workers = Gauge("workflow_runner_workers", "Executor worker processes alive.", registry=self.registry)
        self.worker_restarts = Counter(
            "workflow_runner_worker_restarts",
            "Worker processes ended and replaced, by reason (expression_time_limit, timeout, memory_limit, "
            "loop_stalled, cancel_unanswered, crashed).",
            ("reason",),
            registry=self.registry,
        )
        self.limit_faults = Counter(
            "workflow_runner_limit_faults",
            "Executions faulted by the supervisor because a limit was exceeded, by the error's title.",
            ("limit",),
            registry=self.registry,
        )

    def task_timer(self, outcome: str) -> Any:
        """The task duration histogram of one outcome (`labels` is slow for a per-event path: cached)."""
        timer = self._task_timers.get(outcome)
        if timer is None:
            timer = self._task_timers[outcome] = self.task_seconds.labels(outcome)
        return timer

    def track_tenants(self, counts: Callable[[], Mapping[str, tuple[int, int]]]) -> None:
        """Expose per-tenant running and queued executions, read from `counts` at scrape time."""
        self.registry.register(_TenantCollector(counts))

    def track_delivery(self, stats: Callable[[], DeliveryStats]) -> None:
        """Export the reporter's delivery counters (call once per registry)."""
        self.registry.register(_DeliveryCollector(stats))

    def render(self) -> bytes:
        """The text exposition format, for `/metrics`."""
        return generate_latest(self.registry)
