"""Extensions (`use.extensions`): before/after task lists, `when`, `exit` mocking, errors, events and `then`."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from executor import Executor
from tests.conformance.ctk import SHARED
from tests.fixtures.http_mock import MockServer
from tests.fixtures.runner import issues_of, run_with
from tests.helpers import run


def issues_of_document(text: str) -> list[object]:
    """Validation issues of a whole document."""
    return list(Executor().validate(text))


EXAMPLES = SHARED / "serverless-workflow" / "examples"


@pytest.fixture(autouse=True)
def _fresh_requests(mock: MockServer) -> None:
    mock.state["requests"].clear()


def _example(name: str) -> str:
    return Path(EXAMPLES / name).read_text()


def _paths(mock: MockServer) -> list[str]:
    return [f"{method} {path}" for method, path, _ in mock.state["requests"]]


async def test_spec_mock_example_answers_instead_of_the_service(mock: MockServer) -> None:
    """The spec's mock-service extension returns the injected response; the mocked service is never called."""
    # As written, the example's task calls https://fake.com, which its own `when` does not match, and in the
    # object form of `endpoint`, which the `when`'s first clause cannot read (see the next test). The task here
    # calls the mocked service (moved to the local server) with the string form of `endpoint`.
    text = _example("mock-service-extension.yaml").replace("https://mocked.service.com", f"{mock.url}/mocked")
    text = text.replace("endpoint:\n          uri: https://fake.com/sample", f"endpoint: {mock.url}/mocked/sample")
    assert f"endpoint: {mock.url}/mocked/sample" in text
    result, rec = await run_with(text, full=True)
    assert result.status.value == "completed", result.error
    assert result.output == {
        "statusCode": 200,
        "headers": {"Content-Type": "application/json"},
        "content": {"foo": {"bar": "baz"}},
    }
    assert mock.state["requests"] == []
    assert rec.kinds() == [
        "workflow.started",
        "task.started:/do/0/callHttp",
        "task.started:/use/extensions/0/mockService/before/0/mockResponse",
        "task.completed:/use/extensions/0/mockService/before/0/mockResponse",
        "task.completed:/do/0/callHttp",
        "workflow.completed",
    ]


async def test_spec_mock_example_lets_other_endpoints_through(mock: MockServer) -> None:
    """An endpoint the mock's `when` does not match is really called (with a `when` that reads both endpoint forms)."""
    text = _example("mock-service-extension.yaml")
    when = text.split("when: ", 1)[1].split("\n", 1)[0]
    text = text.replace(
        when,
        '($task.with.endpoint | if type == "object" then .uri else . end) | startswith("https://mocked.service.com")',
    )
    text = text.replace("endpoint:\n          uri: https://fake.com/sample", f"endpoint: {mock.url}/anything/real")
    assert f"endpoint: {mock.url}/anything/real" in text
    result, _ = await run_with(text, full=True)
    assert result.status.value == "completed", result.error
    assert result.output["path"] == "/anything/real"
    assert _paths(mock) == ["GET /anything/real"]


async def test_spec_mock_example_as_written_faults_at_its_when(mock: MockServer) -> None:
    """The example as written is valid, but its `when` applies `startswith` to an object: a located expression error."""
    text = _example("mock-service-extension.yaml").replace("https://fake.com/sample", f"{mock.url}/anything/real")
    assert issues_of_document(text) == []
    result, _ = await run_with(text, full=True)
    assert result.error is not None
    assert (result.error["status"], result.error["instance"]) == (400, "/use/extensions/0/mockService/when")
    assert "startswith() requires string inputs" in result.error["detail"]
    assert mock.state["requests"] == []


def _logging(mock: MockServer, extend: str = "all") -> str:
    return f"""
        use:
          extensions:
            - logging:
                extend: {extend}
                before:
                  - sendLog:
                      call: http
                      with:
                        method: post
                        endpoint: {mock.url}/anything/log
                        query: {{at: before, task: '${{ $task.reference }}'}}
                        body: {{message: '${{ "Executing task \\($task.reference)" }}'}}
                after:
                  - sendLog:
                      call: http
                      with:
                        method: post
                        endpoint: {mock.url}/anything/log
                        query: {{at: after, task: '${{ $task.reference }}'}}
                        body: {{message: '${{ "Executed task \\($task.reference)" }}'}}
        """


async def test_logging_extension_wraps_every_task_and_is_transparent(mock: MockServer) -> None:
    """`extend: all` logs before and after each task; the tasks' data flows as if the extension were not there."""
    body = (
        _logging(mock)
        + f"""
        do:
          - first:
              set: {{n: 1}}
          - second:
              call: http
              with:
                method: get
                endpoint: {mock.url}/anything/work
              output:
                as: '{{path: .path, n: $input.n}}'
        """
    )
    result, _ = await run_with(body)
    assert result.status.value == "completed", result.error
    assert result.output == {"path": "/anything/work", "n": 1}
    assert _paths(mock) == [
        "POST /anything/log?at=before&task=%2Fdo%2F0%2Ffirst",
        "POST /anything/log?at=after&task=%2Fdo%2F0%2Ffirst",
        "POST /anything/log?at=before&task=%2Fdo%2F1%2Fsecond",
        "GET /anything/work",
        "POST /anything/log?at=after&task=%2Fdo%2F1%2Fsecond",
    ]


async def test_extension_of_one_kind_leaves_other_kinds_alone(mock: MockServer) -> None:
    """`extend: call` does not touch a `set` task."""
    result, _ = await run_with(textwrap.dedent(_logging(mock, "call")) + "do:\n  - s: {set: {v: 1}}\n")
    assert result.output == {"v": 1}
    assert mock.state["requests"] == []


def _trace(name: str, extend: str = "all", when: str = "") -> str:
    """One `use.extensions` item recording `<name> before|after <task>` in `$context.trace`."""
    condition = f"      when: '{when}'\n" if when else ""
    note = "set: '${{ . }}', export: {{as: '${{ $context + {{trace: (($context.trace // []) + [\"{} \\($task.name)\"])}} }}'}}"
    return (
        f"  - {name}:\n      extend: {extend}\n{condition}"
        f"      before:\n        - note: {{{note.format(name + ' before')}}}\n"
        f"      after:\n        - note: {{{note.format(name + ' after')}}}\n"
    )


def _extensions(*items: str) -> str:
    return "use:\n  extensions:\n" + "".join(
        item.replace("\n  ", "\n    ").replace("  - ", "    - ", 1) for item in items
    )


async def test_several_extensions_run_in_declaration_order() -> None:
    """Two extensions on one task: befores then afters, each in declaration order, around the task."""
    body = (
        _extensions(_trace("one"), _trace("two"))
        + "\ndo:\n  - work:\n      set: {v: 1}\n      export: {as: '${ $context + {trace: ($context.trace + [\"work\"])} }'}\n"
        + "  - show: {set: '${ $context.trace }'}\n"
    )
    result, _ = await run(body)
    assert result.status.value == "completed", result.error
    assert result.output[:5] == ["one before work", "two before work", "one after work", "two after work", "work"]


async def test_an_extension_whose_when_is_false_does_not_run() -> None:
    """`when` false: no extension task runs, no extension event is published."""
    body = _extensions(_trace("only", when='$task.name == "other"')) + "\ndo:\n  - work: {set: {v: 1}}\n"
    result, rec = await run(body)
    assert result.output == {"v": 1}
    assert rec.kinds() == [
        "workflow.started",
        "task.started:/do/0/work",
        "task.completed:/do/0/work",
        "workflow.completed",
    ]


async def test_when_sees_the_task_definition_and_its_input() -> None:
    """`when` reads `$task.set` (the definition) and `.` (the transformed input); only matching tasks are extended."""
    body = (
        _extensions(
            _trace("pick", extend="set", when='($task.set | type) == "object" and $task.set.mark == true and .go')
        )
        + '\ndo:\n  - a: {set: {mark: true, go: true}}\n  - b: {set: {mark: true}, input: {from: "{go: false}"}}\n  - c: {set: {mark: false}}\n'
        + "  - d: {set: {x: 1}, input: {from: '{go: true}'}}\n  - show: {set: '${ $context.trace }'}\n"
    )
    result, _ = await run(body, {"go": True})
    assert result.output == ["pick before a", "pick after a"]


MOCK_SET = "  - mock:\n      extend: set\n      when: '$task.set.real == true'\n      before:\n        - fake: {set: {mocked: true}, then: exit}\n"


async def test_exit_in_before_skips_the_task_and_supplies_its_output() -> None:
    """A `before` task with `then: exit` replaces the task's output; later befores and the task itself do not run."""
    body = (
        _extensions(_trace("outer"), MOCK_SET, _trace("inner"))
        + "\ndo:\n  - work:\n      set: {real: true}\n      output: {as: '{out: ., ctx: $context.trace}'}\n"
    )
    result, rec = await run(body)
    assert result.status.value == "completed", result.error
    assert result.output["out"] == {"mocked": True}
    assert result.output["ctx"] == ["outer before work", "outer after work"]
    assert "task.started:/use/extensions/2/inner/before/0/note" not in rec.kinds()


async def test_exit_in_after_replaces_the_output() -> None:
    """An `after` task with `then: exit` makes its output the task's raw output; without `exit` it is dropped."""
    body = """
        use:
          extensions:
            - wrap:
                extend: set
                after:
                  - keep: {set: {dropped: true}}
            - redact:
                extend: set
                after:
                  - hide:
                      set: '${ {seen: $task.output.secret, input: .} | del(.input.secret) }'
                      then: exit
        do:
          - s: {set: {secret: 1, other: 2}}
        """
    result, _ = await run(body)
    assert result.output == {"seen": 1, "input": {"other": 2}}


async def test_extension_fault_faults_the_extended_task() -> None:
    """An error in a `before` task faults the task (instance inside the extension); the task body never runs."""
    body = """
        use:
          extensions:
            - guard:
                extend: set
                before:
                  - refuse:
                      raise:
                        error: {type: https://example.com/refused, status: 403, title: Refused}
        do:
          - work: {set: {v: 1}}
        """
    result, rec = await run(body)
    assert result.status.value == "faulted"
    assert result.error is not None
    assert (result.error["type"], result.error["instance"]) == (
        "https://example.com/refused",
        "/use/extensions/0/guard/before/0/refuse",
    )
    assert rec.kinds()[-3:] == [
        "task.faulted:/use/extensions/0/guard/before/0/refuse",
        "task.faulted:/do/0/work",
        "workflow.faulted",
    ]
    assert "task.completed:/do/0/work" not in rec.kinds()


async def test_extension_fault_is_caught_by_an_enclosing_try() -> None:
    """An extension's error can be caught like the extended task's own."""
    body = """
        use:
          extensions:
            - guard:
                extend: set
                when: '$task.name == "work"'
                before:
                  - refuse:
                      raise:
                        error: {type: https://example.com/refused, status: 403}
        do:
          - attempt:
              try:
                - work: {set: {v: 1}}
              catch:
                errors: {with: {status: 403}}
                as: err
                do:
                  - handled: {set: '${ {caught: $err.instance} }'}
        """
    result, _ = await run(body)
    assert result.output == {"caught": "/use/extensions/0/guard/before/0/refuse"}


async def test_when_that_fails_reports_the_extension() -> None:
    """A `when` that cannot be evaluated faults with an expression error pointing at it."""
    body = "use:\n  extensions:\n    - bad: {extend: all, when: '.a.b.c', before: [{x: {set: {a: 1}}}]}\ndo:\n  - s: {set: {v: 1}}\n"
    result, _ = await run(body, {"a": "text"})
    assert result.error is not None
    assert result.error["instance"] == "/use/extensions/0/bad/when"
    assert result.error["status"] == 400


async def test_extended_task_keeps_its_then_and_extension_end_ends_the_workflow() -> None:
    """The task's own `then` still applies after its extensions; `then: end` inside an extension ends the run."""
    body = """
        use:
          extensions:
            - stop:
                extend: set
                when: '$task.name == "last"'
                before:
                  - finish: {set: {ended: true}, then: end}
            - mock:
                extend: set
                when: '$task.name == "jump"'
                before:
                  - fake: {set: {mocked: true}, then: exit}
        do:
          - jump: {set: {real: true}, then: last}
          - skipped: {set: {skipped: true}}
          - last: {set: {never: true}}
        """
    result, rec = await run(body)
    assert result.status.value == "completed", result.error
    assert result.output == {"ended": True}
    assert "task.started:/do/1/skipped" not in rec.kinds()
    assert "task.completed:/do/2/last" in rec.kinds()


async def test_composite_extends_do_and_fork_but_not_set() -> None:
    """`extend: composite` applies to `do` and `fork` tasks only."""
    body = (
        _extensions(_trace("comp", extend="composite"))
        + "\ndo:\n  - group:\n      do:\n        - inner: {set: {v: 1}}\n"
        + "  - both:\n      fork:\n        branches:\n          - one: {set: {v: 1}}\n"
        + "  - show: {set: '${ $context.trace }'}\n"
    )
    result, _ = await run(body)
    assert result.output == ["comp before group", "comp after group", "comp before both", "comp after both"]


async def test_extension_tasks_are_not_extended() -> None:
    """An `extend: all` extension does not apply to its own tasks (no recursion)."""
    body = _extensions(_trace("all")) + "\ndo:\n  - one: {set: {v: 1}}\n  - show: {set: '${ $context.trace }'}\n"
    result, _ = await run(body)
    assert result.output == ["all before one", "all after one", "all before show"]


def test_extension_lists_and_when_are_checked_at_validation() -> None:
    """A broken `when` and a `then` to no task of the list are reported with their location."""
    body = """
        use:
          extensions:
            - bad:
                extend: all
                when: '.a |||'
                before:
                  - x: {set: {a: 1}, then: nowhere}
        do:
          - s: {set: {v: 1}}
        """
    found = {(issue.path, issue.code) for issue in issues_of(body)}
    assert ("/use/extensions/0/bad/when", "invalid") in found
    assert ("/use/extensions/0/bad/before/0/x/then", "invalid") in found


async def test_a_looping_extension_still_times_out_with_its_task() -> None:
    """A `before` list that jumps back forever is stopped by the extended task's timeout (408)."""
    body = """
        use:
          extensions:
            - spin:
                extend: wait
                before:
                  - again: {set: {n: 1}, then: again}
        do:
          - w:
              wait: {milliseconds: 1}
              timeout: {after: {milliseconds: 200}}
        """
    result, _ = await run(body)
    assert result.status.value == "faulted"
    assert result.error is not None
    assert (result.error["status"], result.error["instance"]) == (408, "/do/0/w")
