"""The engine's guarantees from issue 11: one terminal event whatever fails, deadlines, derived secret forms."""

from __future__ import annotations

import asyncio
import base64
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest

from executor import ExecuteCommand, Executor, LifecycleEvent, Status
from tests.fixtures.http_mock import MockServer
from tests.fixtures.runner import run_with
from tests.helpers import Recorder, doc, run

TERMINAL = ("completed", "faulted", "cancelled")


def _terminal(recorder: Recorder) -> list[LifecycleEvent]:
    kinds = [event.type.split(".")[2:4] for event in recorder.events]
    return [
        event
        for event, (scope, kind) in zip(recorder.events, kinds, strict=True)
        if scope == "workflow" and kind in TERMINAL
    ]


async def test_a_task_producing_data_nested_too_deep_faults_with_the_expression_error() -> None:
    """`reduce range(300) as $i (0; [.])` faults its task with the expression error; the run ends once, faulted."""
    body = "do:\n  - deep: {set: {x: '${ reduce range(300) as $i (0; [.]) }'}}\n  - after: {set: {never: true}}\n"
    result, recorder = await run(body)
    assert result.status is Status.FAULTED
    assert result.error is not None
    assert (result.error["type"].rsplit("/", 1)[-1], result.error["instance"]) == ("expression", "/do/0/deep")
    assert "nested more than 128 levels deep" in result.error["detail"]
    assert recorder.kinds() == [
        "workflow.started",
        "task.started:/do/0/deep",
        "task.faulted:/do/0/deep",
        "workflow.faulted",
    ]


class _Failing(Recorder):
    """A listener that raises on the chosen event types (as a broken encoder or sink adapter would)."""

    def __init__(self, *kinds: str, times: int = 1_000) -> None:
        super().__init__()
        self.kinds_failing = kinds
        self.times = times

    async def publish(self, event: LifecycleEvent) -> None:
        if self.times and any(event.type.endswith(f".{kind}.v1") for kind in self.kinds_failing):
            self.times -= 1
            raise TypeError(f"cannot encode {event.type}")
        await super().publish(event)


@pytest.mark.parametrize(
    ("failing", "times", "detail"),
    [
        (("task.completed",), 1, "event io.serverlessworkflow.task.completed.v1 of /do/0/one not delivered"),
        (("workflow.completed",), 1, "event io.serverlessworkflow.workflow.completed.v1 of"),
        (("task.started", "workflow.faulted"), 2, "workflow.faulted.v1 of"),
    ],
    ids=["task-event", "completed-event", "faulted-event-too"],
)
async def test_a_listener_that_fails_still_gets_exactly_one_terminal_event(
    failing: tuple[str, ...], times: int, detail: str
) -> None:
    """Whatever event the listener chokes on, the run ends with exactly one `workflow.faulted` naming it."""
    listener = _Failing(*failing, times=times)
    command = ExecuteCommand(execution_id="l-1", workflow_yaml=doc("do:\n  - one: {set: {a: 1}}\n"))
    result = await Executor(listener=listener).run(command)
    assert result.status is Status.FAULTED
    assert result.error is not None
    assert result.error["title"] == "Lifecycle event not delivered"
    assert detail in result.error["detail"]
    [terminal] = _terminal(listener)
    assert terminal.type.endswith("workflow.faulted.v1")
    assert [event.sequence for event in listener.events] == list(range(1, len(listener.events) + 1))


async def test_a_passed_deadline_faults_before_the_first_task_naming_it() -> None:
    """A command whose deadline has passed runs no task: it faults with the timeout error naming the deadline."""
    deadline = datetime.now(UTC) - timedelta(seconds=1)
    recorder = Recorder()
    command = ExecuteCommand(execution_id="d-1", workflow_yaml=doc("do:\n  - one: {set: {a: 1}}\n"), deadline=deadline)
    result = await Executor(listener=recorder).run(command)
    assert result.status is Status.FAULTED
    assert result.error is not None
    assert (result.error["status"], result.error["detail"]) == (
        408,
        f"the caller's deadline {deadline.isoformat()} passed",
    )
    assert recorder.kinds() == ["workflow.started", "workflow.faulted"]


async def test_a_deadline_passing_between_tasks_stops_the_run_there() -> None:
    """Tasks that never suspend are still stopped by the deadline between two of them, naming the deadline."""
    deadline = datetime.now(UTC) + timedelta(milliseconds=300)
    body = """
        do:
          - spin: {set: {n: '${ [range(2000000)] | length }'}}
          - loop: {set: {n: '${ .n + 1 }'}, then: spin}
        """
    command = ExecuteCommand(execution_id="d-2", workflow_yaml=doc(body), deadline=deadline)
    result = await asyncio.wait_for(Executor().run(command), 20)
    assert result.status is Status.FAULTED
    assert result.error is not None
    assert result.error["detail"] == f"the caller's deadline {deadline.isoformat()} passed"


async def test_emit_puts_no_secret_on_the_event_bus() -> None:
    """An `emit` carrying `$secrets` publishes the event masked: a `listen` elsewhere never receives the value."""
    body = """
        use:
          secrets: [token]
        do:
          - tell:
              emit:
                event:
                  with: {source: 'https://x.io', type: x.leak, data: {t: '${ $secrets.token }', b: '${ $secrets.token | @base64 }'}}
        """
    executor = Executor()
    command = ExecuteCommand(execution_id="e-1", workflow_yaml=doc(body), secrets={"token": "tok-7a6b5c4d"})
    result = await executor.run(command)
    assert result.status is Status.COMPLETED, result.error
    [published] = executor.bus.published()
    assert published["data"] == {"t": "***", "b": "***"}


async def test_the_basic_token_the_runtime_derives_is_masked(mock: MockServer) -> None:
    """The Basic token built from a secret password — in `$authorization` and echoed back by the server — never
    reaches an event; the execution's own result keeps what the author asked for."""
    body = f"""
        use:
          secrets: [pw]
        do:
          - c:
              call: http
              with:
                method: get
                endpoint:
                  uri: {mock.url}/anything
                  authentication: {{basic: {{username: bob, password: '${{ $secrets.pw }}'}}}}
              output: {{as: '${{ {{echoed: .headers.Authorization, auth: $authorization}} }}'}}
        """
    result, recorder = await run_with(body, secrets={"pw": "pa55-w0rd-91"})
    token = base64.b64encode(b"bob:pa55-w0rd-91").decode()
    assert result.output == {"echoed": f"Basic {token}", "auth": {"scheme": "Basic", "parameter": token}}
    events = orjson.dumps([event.data for event in recorder.events]).decode()
    assert token not in events
    assert "Basic ***" in events


async def _events_of(body: str, secrets: dict[str, Any]) -> str:
    _, recorder = await run(body, secrets=secrets)
    return orjson.dumps([event.data for event in recorder.events]).decode()


async def test_base64_of_a_secret_is_masked_in_events() -> None:
    """`$secrets.x | @base64` in a task's output is masked like the value itself."""
    events = await _events_of(
        "use:\n  secrets: [x]\ndo:\n  - s: {set: {b: '${ $secrets.x | @base64 }'}}\n", {"x": "hunter2-xyz"}
    )
    assert base64.b64encode(b"hunter2-xyz").decode() not in events
    assert '"b":"***"' in events


class _CrashingExecutor(Executor):
    """An engine with a bug: it reports the start, then fails before it can report any end."""

    async def run(self, cmd: ExecuteCommand, **kwargs: Any) -> Any:
        listener = kwargs["listener"]
        await listener.publish(
            LifecycleEvent(
                execution_id=cmd.execution_id,
                attempt=cmd.attempt,
                sequence=1,
                type="io.serverlessworkflow.workflow.started.v1",
                time="2030-01-01T00:00:00Z",
                data={"name": cmd.execution_id},
            )
        )
        raise KeyError("engine bug")


async def test_the_service_sends_the_terminal_event_an_engine_crash_left_out() -> None:
    """When the engine itself crashes, the service still ends the execution with one `workflow.faulted` (sequence 2),
    confirmed by the sink, naming the failure."""
    from callbacks import Reporter
    from consumer._service import ExecutionService
    from tests.helpers import MemorySink

    sink = MemorySink()
    async with Reporter(sink, dead_letter_path="/dev/null") as reporter:
        service = ExecutionService(_CrashingExecutor(), reporter, flush_timeout=5)
        command = ExecuteCommand(execution_id="crash-1", workflow_yaml=doc("do:\n  - one: {set: {a: 1}}\n"))
        state = await service.run(command)
    assert state.result is not None
    assert state.result.status is Status.FAULTED
    assert state.result.error == {
        "type": "https://serverlessworkflow.io/spec/1.0.0/errors/runtime",
        "status": 500,
        "title": "Runtime failure",
        "detail": "the engine failed: KeyError",
    }
    assert state.progress_confirmed
    assert [(event.sequence, event.type.split(".")[3]) for event in sink.of("crash-1")] == [
        (1, "started"),
        (2, "faulted"),
    ]
