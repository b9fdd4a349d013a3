"""Every task type, run in-process: what a user sees as output, error and events."""

from __future__ import annotations

import asyncio

import pytest

from tests.helpers import FakeSleep, run

COMM = "https://serverlessworkflow.io/spec/1.0.0/errors/communication"


async def test_set_replaces_input_with_object() -> None:
    """`set` output is exactly the set value: input keys do not survive."""
    result, _ = await run("do:\n  - s:\n      set: {a: '${ .x + 1 }', b: [1, '${ .x }'], c: plain}\n", {"x": 1, "y": 2})
    assert result.output == {"a": 2, "b": [1, 1], "c": "plain"}


async def test_set_expression_form() -> None:
    """`set` may be one expression string (DSL 1.0.1+): its result is the output, whatever its type."""
    result, _ = await run("do:\n  - s:\n      set: '${ .x * 2 }'\n", {"x": 21})
    assert result.output == 42


async def test_plain_string_in_set_is_not_evaluated() -> None:
    """Only `${ … }` strings are expressions in free-form values."""
    result, _ = await run("do:\n  - s:\n      set: {v: '.x'}\n", {"x": 1})
    assert result.output == {"v": ".x"}


async def test_do_runs_nested_list_in_order() -> None:
    """A nested `do` chains outputs and ends with its last task's output."""
    result, rec = await run(
        """
        do:
          - outer:
              do:
                - a: {set: {n: 1}}
                - b: {set: {n: '${ .n + 1 }'}}
        """
    )
    assert result.output == {"n": 2}
    assert rec.kinds()[1:4] == [
        "task.started:/do/0/outer",
        "task.started:/do/0/outer/do/0/a",
        "task.completed:/do/0/outer/do/0/a",
    ]


async def test_switch_default_case_and_pass_through() -> None:
    """No case matches: the default case (no `when`) decides; the switch passes its input on."""
    body = """
        do:
          - sw:
              switch:
                - red: {when: '.c == "red"', then: setRed}
                - other: {then: setOther}
          - setRed: {set: {got: red}, then: end}
          - setOther: {set: {got: '${ .c }'}}
        """
    result, _ = await run(body, {"c": "blue"})
    assert result.output == {"got": "blue"}


async def test_switch_without_match_continues() -> None:
    """No case matches and no default: the next task runs."""
    body = """
        do:
          - sw:
              switch:
                - red: {when: '.c == "red"', then: end}
          - next: {set: {ran: true}}
        """
    result, _ = await run(body, {"c": "blue"})
    assert result.output == {"ran": True}


async def test_for_chains_iterations_and_binds_variables() -> None:
    """Each iteration's input is the previous output; custom `each`/`at` names are bound."""
    body = """
        do:
          - loop:
              for: {each: v, in: '.xs', at: i}
              do:
                - add: {set: {sum: '${ (.sum // 0) + $v }', last: '${ $i }', xs: '${ .xs }'}}
        """
    result, _ = await run(body, {"xs": [1, 2, 3]})
    assert result.output == {"sum": 6, "last": 2, "xs": [1, 2, 3]}


async def test_for_while_stops_early() -> None:
    """`while` is checked before each iteration."""
    body = """
        do:
          - loop:
              for: {in: '.xs'}
              while: '.n < 2'
              do:
                - inc: {set: {n: '${ .n + 1 }', xs: '${ .xs }'}}
        """
    result, _ = await run(body, {"xs": [1, 1, 1, 1], "n": 0})
    assert result.output["n"] == 2


async def test_for_over_empty_collection_returns_input() -> None:
    """No items: the for task's output is its input."""
    result, _ = await run("do:\n  - l:\n      for: {in: '.xs'}\n      do:\n        - s: {set: {v: 1}}\n", {"xs": []})
    assert result.output == {"xs": []}


async def test_for_over_non_array_faults_with_expression_error() -> None:
    """`for.in` giving a scalar is an expression error at the for task."""
    result, _ = await run("do:\n  - l:\n      for: {in: '.n'}\n      do:\n        - s: {set: {v: 1}}\n", {"n": 3})
    assert result.error is not None
    assert result.error["status"] == 400
    assert result.error["instance"] == "/do/0/l"


async def test_fork_collects_outputs_in_declaration_order() -> None:
    """Branches all get the fork's input; outputs come back in declaration order."""
    body = """
        do:
          - f:
              fork:
                branches:
                  - slow: {wait: {milliseconds: 30}, output: {as: '"slow"'}}
                  - fast: {set: '${ .v }'}
        """
    result, _ = await run(body, {"v": "fast"})
    assert result.output == ["slow", "fast"]


async def test_fork_compete_takes_first_and_cancels_others() -> None:
    """With `compete`, the first branch to finish wins; the losers are cancelled and say so."""
    body = """
        do:
          - f:
              fork:
                compete: true
                branches:
                  - slow: {wait: {seconds: 30}}
                  - fast: {set: {winner: fast}}
        """
    result, rec = await asyncio.wait_for(run(body), timeout=10)
    assert result.output == {"winner": "fast"}
    assert "task.cancelled:/do/0/f/fork/branches/0/slow" in rec.kinds()


async def test_fork_branch_failure_faults_and_cancels_siblings() -> None:
    """A failing branch faults the fork with its own error; running siblings are cancelled."""
    body = """
        do:
          - f:
              fork:
                branches:
                  - slow: {wait: {seconds: 30}}
                  - bad: {raise: {error: {type: https://example.com/bad, status: 409}}}
        """
    result, rec = await asyncio.wait_for(run(body), timeout=10)
    assert result.error is not None
    assert (result.error["type"], result.error["status"]) == ("https://example.com/bad", 409)
    assert result.error["instance"] == "/do/0/f/fork/branches/1/bad"
    assert "task.cancelled:/do/0/f/fork/branches/0/slow" in rec.kinds()


async def test_raise_inline_with_expressions() -> None:
    """`raise` evaluates title/detail expressions and sets `instance` to the task pointer."""
    body = """
        do:
          - r:
              raise:
                error:
                  type: https://example.com/errors/bad-order
                  status: 422
                  title: Bad order
                  detail: '${ "order \\(.id) is invalid" }'
        """
    result, rec = await run(body, {"id": 7})
    assert result.status.value == "faulted"
    assert result.error == {
        "type": "https://example.com/errors/bad-order",
        "status": 422,
        "title": "Bad order",
        "detail": "order 7 is invalid",
        "instance": "/do/0/r",
    }
    assert rec.kinds()[-2:] == ["task.faulted:/do/0/r", "workflow.faulted"]


async def test_raise_reusable_error() -> None:
    """`raise.error` may name an entry of `use.errors`."""
    body = """
        use:
          errors:
            notFound: {type: https://serverlessworkflow.io/spec/1.0.0/errors/runtime, status: 404, title: Not found}
        do:
          - r: {raise: {error: notFound}}
        """
    result, _ = await run(body)
    assert result.error is not None
    assert (result.error["status"], result.error["title"]) == (404, "Not found")


async def test_wait_uses_duration_forms() -> None:
    """`wait` accepts an inline object, ISO 8601 and an expression; the input passes through."""
    sleep = FakeSleep()
    body = """
        do:
          - a: {wait: {seconds: 2, milliseconds: 500}}
          - b: {wait: PT1M}
          - c: {wait: '${ "PT\\(.s)S" }'}
        """
    result, _ = await run(body, {"s": 3}, sleep=sleep)
    assert sleep.calls == [2.5, 60.0, 3.0]
    assert result.output == {"s": 3}


async def test_emit_outputs_the_event_and_publishes_it() -> None:
    """`emit` returns the CloudEvent with runtime-filled `id`, `time` and `specversion`."""
    body = """
        do:
          - e:
              emit:
                event:
                  with: {source: 'https://example.com', type: com.example.greeted, data: {who: '${ .name }'}}
        """
    result, _ = await run(body, {"name": "Ada"})
    event = result.output
    assert event["specversion"] == "1.0"
    assert event["type"] == "com.example.greeted"
    assert event["data"] == {"who": "Ada"}
    assert len(event["id"]) == 36
    assert event["time"].endswith("Z")


async def test_custom_function_from_use_functions() -> None:
    """`call: <name>` runs the `use.functions` task with the call's `with` as its input."""
    body = """
        use:
          functions:
            double:
              set: {value: '${ .n * 2 }'}
        do:
          - c:
              call: double
              with: {n: '${ .x }'}
        """
    result, _ = await run(body, {"x": 4})
    assert result.output == {"value": 8}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            "do:\n  - c: {call: asyncapi, with: {document: {endpoint: 'http://x'}, operation: op, protocol: mqtt, message: {payload: {}}}}\n",
            "mqtt",
        ),
        ("do:\n  - r: {run: {container: {image: alpine}}}\n", "container"),
        ("do:\n  - r: {run: {shell: {command: ls}}}\n", "run.shell"),
    ],
)
def test_unimplemented_constructs_are_refused_as_unsupported(body: str, message: str) -> None:
    """A construct this runtime cannot run is refused before running, as unsupported (not invalid)."""
    from executor import Executor
    from tests.helpers import doc

    issues = Executor().validate(doc(body))
    assert [i.code for i in issues] == ["unsupported"]
    assert message in issues[0].message
    assert "not supported by this runtime" in issues[0].message
