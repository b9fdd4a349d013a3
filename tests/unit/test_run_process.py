"""`run.shell` and `run.script`: off by default; when enabled, arguments, stdin, environment, return, exit codes,
timeouts and detached processes behave as documented in `executor/tasks/_run_process.py`."""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from pathlib import Path

import pytest

from executor import EngineOptions
from tests.fixtures.runner import issues_of, run_with
from tests.helpers import eventually

SHELL = EngineOptions(allow_shell=True)
SCRIPT = EngineOptions(allow_script=True)


def shell(command: str, extra: str = "", task: str = "") -> str:
    """A one-task document running `command` (YAML flow value) with extra `shell` and task-level lines."""
    return f"do:\n  - s:\n      run:\n        shell:\n          command: {command}\n{extra}{task}"


def script(language: str, code: str, extra: str = "") -> str:
    """A one-task document running `code` (a YAML block literal) in `language`."""
    indented = "".join(f"            {line}\n" for line in code.splitlines())
    return f"do:\n  - s:\n      run:\n        script:\n          language: {language}\n          code: |\n{indented}{extra}"


@pytest.mark.parametrize("body", [shell("ls"), script("python", "print(1)")])
def test_shell_and_script_are_refused_unless_enabled(body: str) -> None:
    """By default a document running a process is refused at validation, naming the form."""
    issues = issues_of(body)
    assert [i.code for i in issues] == ["unsupported"]
    assert "not supported by this runtime" in issues[0].message
    assert "disabled" in issues[0].message


async def test_list_arguments_arrive_as_separate_words() -> None:
    """List-form arguments are appended shell-quoted: spaces and quotes survive, nothing is interpreted."""
    body = shell("printf '%s|'", "          arguments: ['a b', \"it's\", '$HOME', '${ .x }']\n")
    result, _ = await run_with(body, {"x": "from-input"}, options=SHELL)
    assert result.output == "a b|it's|$HOME|from-input|"


async def test_map_arguments_append_keys_and_values() -> None:
    """Map-form arguments (DSL before 1.0.3) append each key and its value."""
    result, _ = await run_with(shell("echo", "          arguments: {--name: Ada, --verbose: null}\n"), options=SHELL)
    assert result.output == "--name Ada --verbose"


async def test_environment_holds_only_path_and_declared_variables() -> None:
    """The runner's environment does not leak; declared variables (evaluated) do reach the process."""
    os.environ["WF_TEST_LEAK"] = "leaked"
    try:
        body = shell("env", "          environment: {GREETING: '${ .g }', N: 3}\n")
        result, _ = await run_with(body, {"g": "hi"}, options=SHELL)
    finally:
        del os.environ["WF_TEST_LEAK"]
    lines = set(result.output.splitlines())
    assert {"GREETING=hi", "N=3"} <= lines
    assert not any(line.startswith("WF_TEST_LEAK=") for line in lines)
    assert any(line.startswith("PATH=") for line in lines)


@pytest.mark.parametrize("name", ["A=B", ""])
async def test_environment_name_that_cannot_be_a_variable_is_a_configuration_error(name: str) -> None:
    """A declared variable named `A=B` (or nothing) faults the task with the configuration error naming it."""
    result, _ = await run_with(shell("env", f"          environment: {{'{name}': x}}\n"), options=SHELL)
    assert result.error is not None
    assert (result.error["title"], result.error["instance"]) == ("Invalid environment", "/do/0/s")
    assert result.error["detail"] == f"{name!r} cannot name a variable"
    assert result.error["type"].endswith("/configuration")


async def test_stdin_is_fed() -> None:
    """`stdin` (evaluated) is the process's standard input."""
    result, _ = await run_with(shell("cat", "          stdin: '${ .text }'\n"), {"text": "piped"}, options=SHELL)
    assert result.output == "piped"


@pytest.mark.parametrize(
    ("returns", "expected"),
    [
        ("stdout", "out"),
        ("stderr", "err"),
        ("code", 0),
        ("all", {"code": 0, "stdout": "out", "stderr": "err"}),
        ("none", None),
    ],
)
async def test_return_forms(returns: str, expected: object) -> None:
    """`return` picks stdout, stderr, the code, all three, or nothing."""
    body = shell("'echo out; echo err >&2'", task=f"        return: {returns}\n")
    result, _ = await run_with(body, options=SHELL)
    assert result.output == expected


async def test_non_zero_exit_faults_unless_the_code_is_asked_for() -> None:
    """Exit code 3 faults with the runtime error; with `return: code` the 3 is the output."""
    faulted, _ = await run_with(shell("'echo boom >&2; exit 3'"), options=SHELL)
    asked, _ = await run_with(shell("'exit 3'", task="        return: code\n"), options=SHELL)
    assert faulted.error["type"].endswith("/runtime")
    assert faulted.error["title"] == "Process exited with code 3"
    assert faulted.error["detail"] == "boom"
    assert asked.output == 3


async def test_task_timeout_kills_the_process_group(tmp_path: Path) -> None:
    """A task timeout faults with 408 and kills the command's children too."""
    pid_file = tmp_path / "child.pid"
    body = shell(f"'sleep 30 & echo $! > {pid_file}; wait'", task="      timeout: {after: {milliseconds: 500}}\n")
    started = time.monotonic()
    result, _ = await run_with(body, options=SHELL)
    assert result.error["status"] == 408
    assert time.monotonic() - started < 10
    assert not _alive(int(pid_file.read_text()))


async def test_timeout_kills_children_that_outlive_the_shell(tmp_path: Path) -> None:
    """A background child still holding the output when its shell has exited is killed at the task timeout."""
    pid_file = tmp_path / "child.pid"
    body = shell(f"'sleep 30 & echo $! > {pid_file}; echo hi'", task="      timeout: {after: {milliseconds: 500}}\n")
    result, _ = await run_with(body, options=SHELL)
    assert result.error["status"] == 408
    assert not _alive(int(pid_file.read_text()))


def _alive(pid: int) -> bool:
    """True while `pid` runs (a zombie waiting for its reaper counts as dead)."""
    for _ in range(50):
        try:
            state = Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0]
        except (FileNotFoundError, ProcessLookupError):
            return False
        if state == "Z":
            return False
        time.sleep(0.05)
    return True


async def test_runner_process_timeout_applies() -> None:
    """The configured process timeout bounds a process whose task has none."""
    result, _ = await run_with(shell("'sleep 30'"), options=EngineOptions(allow_shell=True, process_timeout=0.3))
    assert result.error["status"] == 408


async def test_not_awaited_process_completes_at_once_with_the_input() -> None:
    """`await: false` outputs the task's input without waiting; the executor's close stops the process."""
    started = time.monotonic()
    result, _ = await run_with(shell("'sleep 30'", task="        await: false\n"), {"keep": 1}, options=SHELL)
    assert result.output == {"keep": 1}
    assert time.monotonic() - started < 5


async def test_python_script_with_argv_stdin_and_environment() -> None:
    """A python script gets argv, stdin and declared variables."""
    code = "import os, sys\nprint(sys.argv[1:], sys.stdin.read(), os.environ['WHO'])"
    extra = "          arguments: [one, '${ .two }']\n          stdin: in\n          environment: {WHO: me}\n"
    result, _ = await run_with(script("python", code, extra), {"two": "2"}, options=SCRIPT)
    assert result.output == "['one', '2'] in me"


async def test_script_map_arguments_become_variables() -> None:
    """Map-form arguments are variables of the script (values as JSON)."""
    extra = "          arguments: {greetings: Hello, n: [1, 2]}\n"
    result, _ = await run_with(script("python", "print(greetings, sum(n))", extra), options=SCRIPT)
    assert result.output == "Hello 3"


@pytest.mark.skipif(shutil.which("node") is None, reason="no node on this machine")
async def test_js_script() -> None:
    """A js script runs under node with argv."""
    code = "console.log(process.argv.slice(2).join('+'))"
    result, _ = await run_with(script("js", code, "          arguments: [a, b]\n"), options=SCRIPT)
    assert result.output == "a+b"


async def test_script_source_from_a_local_resource(tmp_path: Path) -> None:
    """`source` reads the script from a resource (here a file under a resource root)."""
    (tmp_path / "hello.py").write_text("print('from file')")
    body = (
        "do:\n  - s:\n      run:\n        script:\n          language: python\n"
        f"          source: {{endpoint: '{(tmp_path / 'hello.py').as_uri()}'}}\n"
    )
    result, _ = await run_with(body, options=EngineOptions(allow_script=True, resource_roots=(str(tmp_path),)))
    assert result.output == "from file"


def test_unknown_script_language_and_container_are_refused() -> None:
    """Only python and js scripts run; containers never do."""
    ruby = issues_of(script("ruby", "puts 1"), SCRIPT)
    container = issues_of("do:\n  - c: {run: {container: {image: alpine}}}\n", SHELL)
    assert [i.code for i in ruby + container] == ["unsupported", "unsupported"]


async def test_cancelled_run_kills_the_process(tmp_path: Path) -> None:
    """Cancelling the caller's task kills the running process."""
    from executor import ExecuteCommand, Executor
    from tests.helpers import doc

    pid_file = tmp_path / "pid"
    executor = Executor(options=SHELL)
    command = ExecuteCommand(execution_id="c-1", workflow_yaml=doc(shell(f"'echo $$ > {pid_file}; exec sleep 30'")))
    running = asyncio.ensure_future(executor.run(command))
    await eventually(lambda: pid_file.exists() and pid_file.read_text().strip(), what="the process to start")
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running
    await executor.aclose()
    assert not _alive(int(pid_file.read_text()))
