"""The execution service and process wiring every ingress shares: dedupe, flush, cancellation, logs, signals."""

from __future__ import annotations

import asyncio
import io
import logging
from typing import Any

import orjson
import pytest

from callbacks import Reporter, SinkUnavailableError
from consumer import StartupError
from consumer import app as app_module
from consumer._logging import configure_logging
from consumer._service import CapacityError, ConflictError, ExecutionService, IntakeClosedError
from consumer.app import App, load_ingress
from consumer.config import Settings
from executor import DocumentError, ExecuteCommand, Executor, Source, Status
from tests.helpers import doc
from tests.integration.conftest import BASE_ENV, MemorySink, eventually

ONE_TASK = doc("do:\n  - one: {set: {ok: true}}\n")
LONG_WAIT = doc("do:\n  - nap: {wait: {hours: 1}}\n")


def command(execution_id: str, document: str = ONE_TASK, **fields: Any) -> ExecuteCommand:
    return ExecuteCommand(execution_id=execution_id, workflow_yaml=document, source=Source.AMQP, **fields)


@pytest.fixture
async def service() -> Any:
    sink = MemorySink()
    reporter = Reporter(sink, dead_letter_path="/dev/null")
    await reporter.start()
    svc = ExecutionService(Executor(), reporter, max_concurrent=3, flush_timeout=0.5)
    svc.sink = sink  # type: ignore[attr-defined]
    yield svc
    await svc.drain(1.0)
    await reporter.stop(1.0)


async def test_run_returns_after_the_terminal_event_is_confirmed(service: Any) -> None:
    """`run` returns the final state only once the sink holds the terminal event."""
    state = await service.run(command("r1"))
    assert state.result.status is Status.COMPLETED
    assert state.progress_confirmed
    assert service.sink.kinds("r1")[-1] == "workflow.completed"


async def test_unconfirmed_terminal_event_is_reported(service: Any) -> None:
    """When the sink keeps failing, the state says the terminal event is not confirmed, and why."""
    service.sink.fail = SinkUnavailableError("down")
    state = await asyncio.wait_for(service.run(command("r2")), 5)
    assert state.result.status is Status.COMPLETED
    assert not state.progress_confirmed
    assert "not confirmed" in state.report_error


async def test_later_attempt_of_an_unconfirmed_execution_runs_again(service: Any) -> None:
    """After a sink outage left the end unconfirmed, the next attempt (redelivery, retry) runs and is confirmed."""
    service.sink.fail = SinkUnavailableError("down")
    first = await asyncio.wait_for(service.run(command("again")), 5)
    assert not first.progress_confirmed
    service.sink.fail = None
    assert (await service.run(command("again"))).attempt == 1, "the same attempt only reads the state"
    second = await asyncio.wait_for(service.run(command("again", attempt=2)), 5)
    assert (second.attempt, second.progress_confirmed) == (2, True)
    assert service.sink.kinds("again")[-1] == "workflow.completed"


async def test_large_output_is_truncated_in_events_not_in_the_result(service: Any) -> None:
    """An output over the event limit reaches the sink as `outputTruncated` with a preview; the result keeps it."""
    service.max_event_output_bytes = 2048
    big = doc("do:\n  - grow: {set: '${ [range(2000)] }'}\n")
    state = await service.run(command("big", big))
    assert state.result.output == list(range(2000))
    completed = [e for e in service.sink.events if e.executionid == "big" and e.type.endswith("workflow.completed.v1")]
    assert len(completed) == 1
    assert "output" not in completed[0].data
    truncated = completed[0].data["outputTruncated"]
    assert (truncated["limit"], truncated["bytes"]) == (2048, len(orjson.dumps(list(range(2000)))))
    assert truncated["preview"].startswith("[0,1,2,")


async def test_rejected_message_is_reported_as_faulted(service: Any) -> None:
    """A message naming an execution that cannot run is reported: one `workflow.faulted` event with the reason."""
    error = {"type": "https://serverlessworkflow.io/spec/1.0.0/errors/validation", "status": 400, "title": "bad"}
    await service.report_rejected(execution_id="nope", source=Source.AMQP, attempt=3, error=error)
    await service._reporter.flush("nope", 5)
    assert service.sink.kinds("nope") == ["workflow.faulted"]


async def test_redelivery_joins_the_running_execution(service: Any) -> None:
    """A second delivery of the same command (attempt 2) joins the running execution instead of running twice."""
    first = asyncio.create_task(service.run(command("r3", doc("do:\n  - nap: {wait: {milliseconds: 300}}\n"))))
    await asyncio.sleep(0.05)
    again = await service.run(command("r3", doc("do:\n  - nap: {wait: {milliseconds: 300}}\n"), attempt=2))
    assert (await first).result == again.result
    assert service.sink.kinds("r3").count("workflow.started") == 1


async def test_refusals(service: Any) -> None:
    """Conflicting ids, invalid documents, a full service and closed intake are refused with distinct errors."""
    await service.run(command("r4"))
    with pytest.raises(ConflictError):
        service.start(command("r4", LONG_WAIT))
    with pytest.raises(DocumentError):
        service.start(command("r5", "document: {}\n"))
    for n in range(3):
        service.start(command(f"w{n}", LONG_WAIT))
    with pytest.raises(CapacityError):
        service.start(command("w3", LONG_WAIT))
    service.close_intake()
    with pytest.raises(IntakeClosedError):
        service.start(command("w4"))


async def test_linked_run_is_cancelled_with_its_caller(service: Any) -> None:
    """`run(linked=True)`: cancelling the caller (a Temporal activity) cancels the execution too."""
    caller = asyncio.create_task(service.run(command("r6", LONG_WAIT), linked=True))
    await eventually(lambda: "task.started" in service.sink.kinds("r6"))
    caller.cancel()
    with pytest.raises(asyncio.CancelledError):
        await caller
    state = await service.get("r6").wait()
    assert state.result.status is Status.CANCELLED
    assert service.sink.kinds("r6")[-1] == "workflow.cancelled"


async def test_unlinked_run_survives_its_caller(service: Any) -> None:
    """Without `linked`, a caller that goes away (a stream client hanging up) leaves the execution running."""
    caller = asyncio.create_task(service.run(command("r7", doc("do:\n  - nap: {wait: {milliseconds: 200}}\n"))))
    await asyncio.sleep(0.05)
    caller.cancel()
    state = await service.get("r7").wait()
    assert state.result.status is Status.COMPLETED


class LeakySink(MemorySink):
    """A sink that logs what it must never log: the secret value, while delivering."""

    async def send(self, batch: Any) -> None:
        logging.getLogger("tests.leaky").warning("delivering with hunter2-xyz and config-key-123")
        await super().send(batch)


async def test_logs_carry_execution_id_and_mask_secrets() -> None:
    """Every log line of an execution names it; secret values never appear, even when something logs them."""
    out = io.StringIO()
    handler = configure_logging(level="INFO", fmt="json", secrets=["config-key-123"], stream=out)
    try:
        async with Reporter(LeakySink(), dead_letter_path="/dev/null") as reporter:
            service = ExecutionService(Executor(), reporter)
            document = doc("use:\n  secrets: [pw]\ndo:\n  - s: {set: {a: 1}}\n")
            state = await service.run(command("r8", document, secrets={"pw": "hunter2-xyz"}))
    finally:
        logging.getLogger().removeHandler(handler)
    assert state.progress_confirmed
    lines = [orjson.loads(line) for line in out.getvalue().splitlines()]
    service_lines = [line for line in lines if line["logger"] == "consumer.service"]
    assert len(service_lines) == 2
    assert all(line["execution_id"] == "r8" for line in service_lines)
    assert any(line["logger"] == "tests.leaky" for line in lines)
    assert "hunter2-xyz" not in out.getvalue()
    assert "config-key-123" not in out.getvalue()


async def test_signal_handler_drains_and_stops(tmp_path: Any) -> None:
    """Calling the SIGTERM handler stops `serve`: running work finishes and is reported, then serve returns."""
    sink = MemorySink()
    app = App(Settings.from_env({**BASE_ENV, "CALLBACK_DEAD_LETTER_PATH": str(tmp_path / "d.jsonl")}), sink=sink)
    serving = asyncio.create_task(app.serve())
    await eventually(lambda: app.ready)
    app.service.start(command("s1", doc("do:\n  - nap: {wait: {milliseconds: 300}}\n")))
    app.request_stop(15)
    await asyncio.wait_for(serving, 10)
    assert sink.kinds("s1")[-1] == "workflow.completed"
    assert sink.closed


async def test_unavailable_ingress_fails_startup(monkeypatch: pytest.MonkeyPatch) -> None:
    """Selecting an ingress this build lacks fails start-up with a message naming it."""
    monkeypatch.setattr(app_module, "INGRESS_REGISTRY", {"grpc": "consumer.grpc:GrpcIngress"})
    settings = Settings.from_env({"EXECUTION_MODE": "dual"})
    with pytest.raises(StartupError, match="temporal ingress is not available"):
        App(settings, sink=MemorySink())
    with pytest.raises(StartupError, match="nope"):
        load_ingress("nope", settings, None)  # type: ignore[arg-type]


async def test_failed_start_unwinds(tmp_path: Any) -> None:
    """When an ingress cannot bind, start fails and everything already started is stopped again."""
    first = App(
        Settings.from_env({**BASE_ENV, "CALLBACK_DEAD_LETTER_PATH": str(tmp_path / "d.jsonl")}), sink=MemorySink()
    )
    await first.start()
    port = first.ingress("grpc").port  # type: ignore[attr-defined]
    sink = MemorySink()
    env = {**BASE_ENV, "GRPC_PORT": str(port), "CALLBACK_DEAD_LETTER_PATH": str(tmp_path / "d.jsonl")}
    second = App(Settings.from_env(env), sink=sink)
    with pytest.raises(StartupError, match="GRPC_PORT: cannot listen"):
        await second.start()
    assert sink.closed
    assert not second.ready
    await first.stop(1)
