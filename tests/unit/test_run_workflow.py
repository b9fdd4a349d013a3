"""`run.workflow`: subflows from a catalog directory or sent-along documents; input, output, events, errors."""

from __future__ import annotations

from pathlib import Path

from executor import EngineOptions, ExecuteCommand, Executor
from tests.fixtures.runner import run_with
from tests.helpers import Recorder, doc, eventually


def child(name: str, version: str, body: str, namespace: str = "lib") -> str:
    """A complete subflow document."""
    return f"document: {{dsl: '1.0.3', namespace: {namespace}, name: {name}, version: '{version}'}}\n{body}"


DOUBLE = child("double", "1.0.0", "do:\n  - twice: {set: {n: '${ .n * 2 }'}}\n")


def parent(name: str = "double", version: str = "'1.0.0'", extra: str = "") -> str:
    """A document running `lib/<name>:<version>`."""
    return (
        "do:\n  - sub:\n      run:\n        workflow:\n          namespace: lib\n"
        f"          name: {name}\n          version: {version}\n{extra}"
    )


async def test_subflow_from_a_catalog_directory(tmp_path: Path) -> None:
    """The subflow is found on disk, receives `workflow.input`, and its output comes back."""
    (tmp_path / "nested").mkdir()
    (tmp_path / "nested" / "double.yaml").write_text(DOUBLE)
    body = parent(extra="          input: {n: '${ .x + 1 }'}\n")
    result, _ = await run_with(body, {"x": 20}, options=EngineOptions(catalog_dir=str(tmp_path)))
    assert result.output == {"n": 42}


async def test_subflow_task_events_join_the_parent_stream() -> None:
    """The subflow's task events appear in the parent's events; its workflow-level events do not."""
    result, recorder = await run_with(parent(), {"n": 1}, options=EngineOptions(subflow_documents=(DOUBLE,)))
    assert result.output == {"n": 2}
    kinds = recorder.kinds()
    assert kinds.count("workflow.started") == 1
    assert kinds.count("workflow.completed") == 1
    nested = [e for e in recorder.events if e.data.get("task") == "/do/0/twice"]
    assert [e.type.split(".")[-2] for e in nested] == ["started", "completed"]
    assert nested[0].data["workflow"].startswith("double-")
    assert [e.sequence for e in recorder.events] == list(range(1, len(recorder.events) + 1))


async def test_latest_picks_the_highest_version() -> None:
    """`version: latest` runs the highest semantic version available."""
    documents = tuple(
        child("pick", v, f"do:\n  - s: {{set: {{v: '{v}'}}}}\n") for v in ("1.2.0", "1.10.0", "1.9.9", "2.0.0-rc1")
    )
    result, _ = await run_with(parent("pick", "latest"), options=EngineOptions(subflow_documents=documents))
    assert result.output == {"v": "1.10.0"}


async def test_missing_subflow_is_a_configuration_error() -> None:
    """A subflow not in the catalog faults with the configuration error."""
    result, _ = await run_with(parent("absent"))
    assert result.error["type"].endswith("/configuration")
    assert "lib/absent:1.0.0" in result.error["detail"]


async def test_faulted_subflow_faults_the_run_task() -> None:
    """The subflow's error surfaces with its type and status, located at the `run` task, caught by `try`."""
    failing = child(
        "fail", "1.0.0", "do:\n  - boom: {raise: {error: {type: 'https://x.io/boom', status: 418, title: Boom}}}\n"
    )
    options = EngineOptions(subflow_documents=(failing,))
    faulted, _ = await run_with(parent("fail"), options=options)
    assert faulted.error["type"] == "https://x.io/boom"
    assert faulted.error["status"] == 418
    assert faulted.error["instance"] == "/do/0/sub"
    assert "lib/fail:1.0.0 at /do/0/boom" in faulted.error["detail"]
    caught_body = (
        "do:\n  - t:\n      try:\n        - sub: {run: {workflow: {namespace: lib, name: fail, version: '1.0.0'}}}\n"
        "      catch:\n        errors: {with: {status: 418}}\n        do:\n          - h: {set: {caught: true}}\n"
    )
    caught, _ = await run_with(caught_body, options=options)
    assert caught.output == {"caught": True}


async def test_invalid_subflow_document_is_a_configuration_error() -> None:
    """A catalog document that does not validate faults the run task with the configuration error."""
    broken = child("broken", "1.0.0", "do:\n  - x: {nope: 1}\n")
    result, _ = await run_with(parent("broken"), options=EngineOptions(subflow_documents=(broken,)))
    assert result.error["title"] == "Invalid subflow"


async def test_recursion_is_bounded() -> None:
    """A workflow that starts itself stops at the configured depth with the runtime error."""
    loop = child("loop", "1.0.0", "do:\n  - again: {run: {workflow: {namespace: lib, name: loop, version: '1.0.0'}}}\n")
    options = EngineOptions(subflow_documents=(loop,), max_subflow_depth=3)
    result, _ = await run_with(parent("loop"), options=options)
    assert result.error["type"].endswith("/runtime")
    assert "too deep" in result.error["title"]


async def test_not_awaited_subflow_runs_as_its_own_execution() -> None:
    """`await: false` completes at once with the input; the subflow's events go to the executor's listener."""
    recorder = Recorder()
    executor = Executor(listener=recorder, options=EngineOptions(subflow_documents=(DOUBLE,)))
    command = ExecuteCommand(
        execution_id="p-1", workflow_yaml=doc(parent(extra="        await: false\n")), input={"n": 5}
    )
    try:
        result = await executor.run(command)
        await eventually(
            lambda: any(e.execution_id != "p-1" and e.terminal for e in recorder.events),
            what="the detached subflow to end",
        )
    finally:
        await executor.aclose()
    assert result.output == {"n": 5}
    child_end = next(e for e in recorder.events if e.execution_id != "p-1" and e.terminal)
    assert child_end.execution_id.startswith("p-1:/do/0/sub:")
    assert child_end.data["output"] == {"n": 10}


async def test_a_subflow_emits_on_its_callers_tenant_bus() -> None:
    """A subflow's emit reaches its caller's tenant only: a subflow does not fall back to the default tenant."""
    shout = child(
        "shout",
        "1.0.0",
        "do:\n  - say: {emit: {event: {with: {type: com.example.said, source: 'https://example.com/s'}}}}\n",
    )
    executor = Executor(options=EngineOptions(subflow_documents=(shout,)))
    command = ExecuteCommand(execution_id="tenant-sub", workflow_yaml=doc(parent("shout")), tenant="acme")
    try:
        result = await executor.run(command, listener=Recorder())
    finally:
        await executor.aclose()
    assert result.status.value == "completed", result.error
    assert [event["type"] for event in executor.bus.published("acme")] == ["com.example.said"]
    assert executor.bus.published() == []
