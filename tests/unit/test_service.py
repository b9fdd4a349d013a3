"""The execution service every ingress shares: dedupe, flush and confirmation, cancellation, drain, logs."""

from __future__ import annotations

import asyncio
import io
import logging
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest

from callbacks import Reporter, SinkRefusedError, SinkUnavailableError
from consumer import (
    CapacityError,
    ConflictError,
    ExecutionService,
    IntakeClosedError,
    StartupError,
    configure_logging,
)
from consumer import app as app_module
from consumer._logging import command_secrets, secrets_masked
from consumer.app import App, load_ingress
from consumer.config import Settings
from executor import DocumentError, ExecuteCommand, Executor, Source, Status
from tests.helpers import MemorySink, doc, eventually

ONE_TASK = doc("do:\n  - one: {set: {ok: true}}\n")
LONG_WAIT = doc("do:\n  - nap: {wait: {hours: 1}}\n")


def command(execution_id: str, document: str = ONE_TASK, **fields: Any) -> ExecuteCommand:
    return ExecuteCommand(execution_id=execution_id, workflow_yaml=document, source=Source.AMQP, **fields)


@pytest.fixture
def sink() -> MemorySink:
    return MemorySink()


@pytest.fixture
async def reporter(sink: MemorySink) -> AsyncIterator[Reporter]:
    async with Reporter(sink, dead_letter_path="/dev/null") as started:
        yield started


@pytest.fixture
async def service(reporter: Reporter) -> AsyncIterator[ExecutionService]:
    svc = ExecutionService(Executor(), reporter, max_concurrent=3, max_queued=0, flush_timeout=0.5)
    yield svc
    await svc.drain(1.0)


async def test_run_returns_after_the_terminal_event_is_confirmed(service: ExecutionService, sink: MemorySink) -> None:
    """`run` returns the final state only once the sink holds the terminal event."""
    state = await service.run(command("r1"))
    assert state.result.status is Status.COMPLETED
    assert state.progress_confirmed
    assert sink.kinds("r1")[-1] == "workflow.completed"


async def test_unconfirmed_terminal_event_is_reported(service: ExecutionService, sink: MemorySink) -> None:
    """When the sink keeps failing, the state says the terminal event is not confirmed, and why."""
    sink.fail = SinkUnavailableError("down")
    state = await asyncio.wait_for(service.run(command("r2")), 5)
    assert state.result.status is Status.COMPLETED
    assert not state.progress_confirmed
    assert "not confirmed" in state.report_error


async def test_terminal_event_refused_for_good_is_told_apart(service: ExecutionService, sink: MemorySink) -> None:
    """A sink that refuses the events for good leaves the state `progress_refused` (not a passing failure)."""
    sink.fail = SinkRefusedError("INVALID_ARGUMENT")
    state = await asyncio.wait_for(service.run(command("refused")), 5)
    assert (state.progress_confirmed, state.progress_refused) == (False, True)
    sink.fail = SinkUnavailableError("down")
    passing = await asyncio.wait_for(service.run(command("unavailable")), 5)
    assert (passing.progress_confirmed, passing.progress_refused) == (False, False)


async def test_later_attempt_of_an_unconfirmed_execution_runs_again(
    service: ExecutionService, sink: MemorySink
) -> None:
    """While a sink outage leaves the end unconfirmed, the next attempt (redelivery, retry) runs afresh, and is
    confirmed once the sink is back."""
    sink.fail = SinkUnavailableError("down")
    first = await asyncio.wait_for(service.run(command("again")), 5)
    assert not first.progress_confirmed
    assert (await service.run(command("again"))).attempt == 1, "the same attempt only reads the state"
    execution, joined = service.start(command("again", attempt=2))
    assert not joined
    sink.fail = None
    assert (await execution.wait()).attempt == 2
    await eventually(lambda: service.get("again").state().progress_confirmed)
    assert sink.kinds("again")[-1] == "workflow.completed"


async def test_large_output_is_truncated_in_events_not_in_the_result(
    service: ExecutionService, sink: MemorySink
) -> None:
    """An output over the event limit reaches the sink as `outputTruncated` with a preview; the result keeps it."""
    service.max_event_output_bytes = 2048
    big = doc("do:\n  - grow: {set: '${ [range(2000)] }'}\n")
    state = await service.run(command("big", big))
    assert state.result.output == list(range(2000))
    completed = [e for e in sink.events if e.executionid == "big" and e.type.endswith("workflow.completed.v1")]
    assert len(completed) == 1
    assert "output" not in completed[0].data
    truncated = completed[0].data["outputTruncated"]
    assert (truncated["limit"], truncated["bytes"]) == (2048, len(orjson.dumps(list(range(2000)))))
    assert truncated["preview"].startswith("[0,1,2,")


async def test_rejected_message_is_reported_as_faulted(
    service: ExecutionService, sink: MemorySink, reporter: Reporter
) -> None:
    """A message naming an execution that cannot run is reported: one `workflow.faulted` event with the reason."""
    error = {"type": "https://serverlessworkflow.io/spec/1.0.0/errors/validation", "status": 400, "title": "bad"}
    await service.report_rejected(execution_id="nope", source=Source.AMQP, attempt=3, error=error)
    await reporter.flush("nope", 5)
    assert sink.kinds("nope") == ["workflow.faulted"]


async def test_redelivery_joins_the_running_execution(service: ExecutionService, sink: MemorySink) -> None:
    """A second delivery of the same command (attempt 2) joins the running execution instead of running twice."""
    first = asyncio.create_task(service.run(command("r3", doc("do:\n  - nap: {wait: {milliseconds: 300}}\n"))))
    await eventually(lambda: "task.started" in sink.kinds("r3"), what="the first delivery to run")
    again = await service.run(command("r3", doc("do:\n  - nap: {wait: {milliseconds: 300}}\n"), attempt=2))
    assert (await first).result == again.result
    assert sink.kinds("r3").count("workflow.started") == 1


async def test_refusals(service: ExecutionService) -> None:
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


async def test_linked_run_is_cancelled_with_its_caller(service: ExecutionService, sink: MemorySink) -> None:
    """`run(linked=True)`: cancelling the caller (a Temporal activity) cancels the execution too."""
    caller = asyncio.create_task(service.run(command("r6", LONG_WAIT), linked=True))
    await eventually(lambda: "task.started" in sink.kinds("r6"))
    caller.cancel()
    with pytest.raises(asyncio.CancelledError):
        await caller
    state = await service.get("r6").wait()
    assert state.result.status is Status.CANCELLED
    assert sink.kinds("r6")[-1] == "workflow.cancelled"


async def test_unlinked_run_survives_its_caller(service: ExecutionService, sink: MemorySink) -> None:
    """Without `linked`, a caller that goes away (a stream client hanging up) leaves the execution running."""
    caller = asyncio.create_task(service.run(command("r7", doc("do:\n  - nap: {wait: {milliseconds: 200}}\n"))))
    await eventually(lambda: "task.started" in sink.kinds("r7"), what="the execution to run")
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


async def test_secret_in_a_query_string_is_masked_in_logs() -> None:
    """A secret with URL-special characters (a base64 API key) logged percent-encoded in a request URL, or
    JSON-escaped, is masked like the raw value."""
    out = io.StringIO()
    handler = configure_logging(level="INFO", fmt="json", secrets=["cfg/key+1=="], stream=out)
    leaky = logging.getLogger("tests.leaky")
    try:
        with secrets_masked(command_secrets({"key": 's3c/r3t+k y"=', "nested": {"pw": "caf\u00e9-\\pw"}})):
            leaky.warning("HTTP Request: GET http://h/x?key=s3c%2Fr3t%2Bk+y%22%3D and s3c%2Fr3t%2Bk%20y%22%3D")
            leaky.warning("body %s", orjson.dumps({"pw": "caf\u00e9-\\pw", "key": 's3c/r3t+k y"='}).decode())
        leaky.warning("config: cfg%2Fkey%2B1%3D%3D")
    finally:
        logging.getLogger().removeHandler(handler)
    text = out.getvalue()
    for leaked in ("s3c", "r3t", "caf", "cfg"):
        assert leaked not in text, text


async def test_unavailable_ingress_fails_startup(monkeypatch: pytest.MonkeyPatch) -> None:
    """Selecting an ingress this build lacks fails start-up with a message naming it."""
    monkeypatch.setattr(app_module, "INGRESS_REGISTRY", {"grpc": "consumer.grpc:GrpcIngress"})
    settings = Settings.from_env({"EXECUTION_MODE": "dual"})
    with pytest.raises(StartupError, match="temporal ingress is not available"):
        App(settings, sink=MemorySink())
    with pytest.raises(StartupError, match="nope"):
        load_ingress("nope", settings, None)  # type: ignore[arg-type]


async def test_drain_does_not_interrupt_a_run_that_already_completed(
    service: ExecutionService, sink: MemorySink
) -> None:
    """A run that ended but whose terminal event is still being confirmed at the drain deadline stays completed,
    not `interrupted`: AMQP acks it and Temporal returns it instead of running it a second time."""
    sink.delay = 0.5
    execution, _ = service.start(command("done-early"))
    await eventually(lambda: execution.ended)
    cancelled = await service.drain(0.05)
    state = await execution.wait()
    assert cancelled == []
    assert (state.result.status, state.interrupted, state.progress_confirmed) == (Status.COMPLETED, False, True)


async def test_drain_marks_only_the_runs_it_cancels_as_interrupted(service: ExecutionService, sink: MemorySink) -> None:
    """At the drain deadline a still-running execution is cancelled and marked interrupted (handed back)."""
    execution, _ = service.start(command("long-one", LONG_WAIT))
    await eventually(lambda: "task.started" in sink.kinds("long-one"))
    assert await service.drain(0.05) == ["long-one"]
    state = await execution.wait()
    assert (state.result.status, state.interrupted) == (Status.CANCELLED, True)


async def test_late_confirmation_reaches_the_state(service: ExecutionService, sink: MemorySink) -> None:
    """After the flush timed out, `GetExecution` says confirmed once the sink finally takes the terminal event."""
    sink.fail = SinkUnavailableError("down")
    state = await asyncio.wait_for(service.run(command("late")), 5)
    assert not state.progress_confirmed
    sink.fail = None
    await eventually(lambda: service.get("late").state().progress_confirmed)
    assert service.get("late").state().report_error is None
    assert sink.kinds("late")[-1] == "workflow.completed"


async def test_redelivery_after_a_late_confirmation_joins_instead_of_running_again(
    service: ExecutionService, sink: MemorySink
) -> None:
    """Once the terminal event is confirmed late, a redelivery (attempt 2) reads the result: no second run."""
    sink.fail = SinkUnavailableError("down")
    await asyncio.wait_for(service.run(command("late-2")), 5)
    sink.fail = None
    await eventually(lambda: service.get("late-2").state().progress_confirmed)
    again = await service.run(command("late-2", attempt=2))
    assert (again.attempt, again.progress_confirmed) == (1, True)
    assert sink.kinds("late-2").count("workflow.started") == 1


async def test_finished_execution_forgets_document_input_and_secrets(service: ExecutionService) -> None:
    """A remembered execution keeps its result and dedupe fingerprint, not the megabytes it ran with (or secrets)."""
    document = doc("use:\n  secrets: [pw]\ndo:\n  - s: {set: {a: 1}}\n")
    big = command("slim", document, input={"blob": "x" * 100_000}, secrets={"pw": "hunter2-xyz"})
    state = await service.run(big)
    remembered = service.get("slim")
    assert state.result.output == {"a": 1}
    assert (remembered.command.workflow_yaml, remembered.command.input, remembered.command.secrets) == ("", None, {})
    assert (await service.run(big)).result.output == {"a": 1}, "the same request still joins"
    with pytest.raises(ConflictError):
        service.start(command("slim", document, input={"blob": "y"}, secrets={"pw": "hunter2-xyz"}))


async def test_start_when_room_waits_for_a_slot_instead_of_refusing(service: ExecutionService) -> None:
    """A pulling ingress at the cap waits for a free slot (no attempt burnt); closing intake ends the wait."""
    short = doc("do:\n  - nap: {wait: {milliseconds: 200}}\n")
    for n in range(3):
        service.start(command(f"full{n}", short))
    execution, duplicate = await asyncio.wait_for(service.start_when_room(command("waiting")), 5)
    assert not duplicate
    assert (await execution.wait()).result.status is Status.COMPLETED
    # The first three ended and reported too (on a loaded machine that may come after "waiting" ended): the cap is
    # free for the blockers.
    for n in range(3):
        full = service.get(f"full{n}")
        assert full is not None
        await asyncio.wait_for(full.wait(), 5)
    for n in range(3):
        service.start(command(f"block{n}", LONG_WAIT))
    waiter = asyncio.create_task(service.start_when_room(command("refused")))
    await asyncio.sleep(0.05)
    service.close_intake()
    with pytest.raises(IntakeClosedError):
        await asyncio.wait_for(waiter, 5)


async def test_remembered_executions_are_bounded() -> None:
    """However many executions run, at most `retain` finished ones are remembered (oldest forgotten first)."""
    async with Reporter(MemorySink(), dead_letter_path="/dev/null") as reporter:
        service = ExecutionService(Executor(), reporter, retain=5)
        for n in range(20):
            await service.run(command(f"many-{n}"))
    assert service.get("many-0") is None
    assert [service.get(f"many-{n}") is not None for n in range(14, 20)] == [True] * 6
    assert sum(service.get(f"many-{n}") is not None for n in range(20)) <= 6


async def test_cancel_while_the_run_waits_to_report_still_ends_with_a_terminal_event() -> None:
    """A `Cancel` that lands while the run waits for room in a full outbox (a slow sink) still ends it
    `cancelled` with a `workflow.cancelled` event the sink confirms, not silently with no terminal event
    (which an AMQP ingress would requeue and run again)."""
    sink = MemorySink()
    sink.delay = 0.2
    async with Reporter(sink, capacity=1, dead_letter_path="/dev/null") as reporter:
        service = ExecutionService(Executor(), reporter, flush_timeout=5)
        service.start(command("ahead"))
        await asyncio.sleep(0.01)
        service.start(command("stuck"))
        await asyncio.sleep(0.01)
        cancelled, state = await asyncio.wait_for(service.cancel("stuck"), 10)
    assert cancelled
    assert (state.result.status, state.progress_confirmed) == (Status.CANCELLED, True)
    assert state.result.error["detail"] == "the execution was cancelled"
    assert sink.kinds("stuck")[-1] == "workflow.cancelled"
    sequences = [event.sequence for event in sink.of("stuck")]
    assert sequences == sorted(set(sequences))


async def test_a_cancel_in_the_same_turn_as_the_start_still_ends_the_run(service: ExecutionService) -> None:
    """Execute and Cancel handled in one turn of the loop: the execution ends cancelled instead of hanging."""
    service.start(command("instant", LONG_WAIT))
    cancelled, state = await asyncio.wait_for(service.cancel("instant"), 10)
    assert cancelled
    assert state.result is not None
    assert state.result.status is Status.CANCELLED


async def test_one_tenants_flood_fills_only_its_own_share(reporter: Any) -> None:
    """Past its share (running plus queued), a tenant is refused; another tenant is still accepted."""
    svc = ExecutionService(Executor(), reporter, max_concurrent=1, max_queued=2, flush_timeout=0.5)
    for n in range(3):
        svc.start(command(f"a-{n}", LONG_WAIT, tenant="a"))
    with pytest.raises(CapacityError, match="of this tenant"):
        svc.start(command("a-3", LONG_WAIT, tenant="a"))
    execution, _ = svc.start(command("b-0", LONG_WAIT, tenant="b"))
    assert execution.state().running
    await eventually(lambda: (svc.scheduler.queued("a"), svc.scheduler.queued("b")) == (2, 1))
    await svc.drain(0.5)
