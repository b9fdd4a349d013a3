"""The process wiring every ingress shares, with its real ops server and gRPC port: signals, drain, start-up."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from consumer import IngressFailedError, StartupError
from consumer import app as app_module
from consumer.app import App
from executor import ExecuteCommand, Source
from tests.helpers import MemorySink, doc, eventually
from tests.integration.conftest import runner_settings


def command(execution_id: str, document: str) -> ExecuteCommand:
    return ExecuteCommand(execution_id=execution_id, workflow_yaml=document, source=Source.AMQP)


async def serving_a_nap(
    tmp_path: Path, execution_id: str, milliseconds: int
) -> tuple[App, MemorySink, asyncio.Task[None]]:
    """An App serving (ready) and running one execution that waits `milliseconds`; its sink and `serve` task."""
    sink = MemorySink()
    app = App(runner_settings(tmp_path), sink=sink)
    serving = asyncio.create_task(app.serve())
    await eventually(lambda: app.ready)
    app.service.start(command(execution_id, doc(f"do:\n  - nap: {{wait: {{milliseconds: {milliseconds}}}}}\n")))
    return app, sink, serving


async def test_signal_handler_drains_and_stops(tmp_path: Any) -> None:
    """Calling the SIGTERM handler stops `serve`: running work finishes and is reported, then serve returns."""
    app, sink, serving = await serving_a_nap(tmp_path, "s1", 300)
    app.request_stop(15)
    await asyncio.wait_for(serving, 10)
    assert sink.kinds("s1")[-1] == "workflow.completed"
    assert sink.closed


async def test_an_ingress_failure_stops_serve_with_an_error(tmp_path: Any) -> None:
    """An ingress that breaks while serving drains the process and makes `serve` fail (exit 1), naming why."""
    app, sink, serving = await serving_a_nap(tmp_path, "f1", 200)
    app.service.report_failure("worker lost")
    with pytest.raises(IngressFailedError, match="worker lost"):
        await asyncio.wait_for(serving, 10)
    assert sink.kinds("f1")[-1] == "workflow.completed"


async def test_second_sigterm_during_the_drain_changes_nothing(tmp_path: Any, caplog: pytest.LogCaptureFixture) -> None:
    """A second SIGTERM while draining is noted and ignored: the running work still finishes and is reported."""
    app, sink, serving = await serving_a_nap(tmp_path, "twice", 300)
    app.request_stop(15)
    await eventually(lambda: not app.service.accepting)
    app.request_stop(15)
    await asyncio.wait_for(serving, 10)
    assert sink.kinds("twice")[-1] == "workflow.completed"
    assert "shutdown already in progress" in caplog.text


class HangingIngress:
    """An ingress whose `start` never returns, like a connect to a frontend that accepts but never answers."""

    name = "hanging"
    entered = asyncio.Event()

    def __init__(self, settings: Any, service: Any) -> None:
        self.stopped = False

    async def start(self) -> None:
        HangingIngress.entered.set()
        await asyncio.Event().wait()

    async def stop(self, grace: float) -> None:
        self.stopped = True


async def test_sigterm_during_start_up_stops_at_once(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """SIGTERM while an ingress is still connecting ends `serve` at once (no wait for a connect timeout), and
    what had started (the reporter, the ops server) is stopped."""
    monkeypatch.setattr(app_module, "INGRESS_REGISTRY", {"grpc": f"{__name__}:HangingIngress"})
    HangingIngress.entered = asyncio.Event()
    sink = MemorySink()
    app = App(runner_settings(tmp_path), sink=sink)
    serving = asyncio.create_task(app.serve())
    await asyncio.wait_for(HangingIngress.entered.wait(), 5)
    app.request_stop(15)
    await asyncio.wait_for(serving, 3)
    assert sink.closed
    assert not app.ready


async def test_failed_start_unwinds(tmp_path: Any) -> None:
    """When an ingress cannot bind, start fails and everything already started is stopped again."""
    first = App(runner_settings(tmp_path), sink=MemorySink())
    await first.start()
    port = first.ingress("grpc").port  # type: ignore[attr-defined]
    sink = MemorySink()
    second = App(runner_settings(tmp_path, GRPC_PORT=str(port)), sink=sink)
    with pytest.raises(StartupError, match="GRPC_PORT: cannot listen"):
        await second.start()
    assert sink.closed
    assert not second.ready
    await first.stop(1)
