"""`evaluate` (strict and loose, jq only), `schedule` (started now, a warning), schema formats and DSL versions."""

from __future__ import annotations

import logging

import pytest

from executor import Executor
from tests.fixtures.runner import issues_of
from tests.helpers import doc, run

SET_BODY = """
do:
  - s:
      set:
        greeting: hello
        doubled: .n * 2
        literal: not valid jq !
        broken: .n.deeper
        wrapped: ${ .n + 1 }
"""


async def test_strict_mode_evaluates_only_wrapped_strings() -> None:
    """Default (strict) mode: only `${ }` strings of a `set` are expressions; the rest are kept as written."""
    for header in ("", "evaluate: {mode: strict}\n", "evaluate: {language: jq}\n"):
        result, _ = await run(header + SET_BODY, {"n": 2})
        assert result.output == {
            "greeting": "hello",
            "doubled": ".n * 2",
            "literal": "not valid jq !",
            "broken": ".n.deeper",
            "wrapped": 3,
        }, header


async def test_loose_mode_evaluates_every_string_and_keeps_failures_as_text() -> None:
    """Loose mode: every string is tried as jq; one that does not compile or fails to evaluate stays text."""
    result, _ = await run("evaluate: {mode: loose}\n" + SET_BODY, {"n": 2})
    assert result.output == {
        "greeting": "hello",
        "doubled": 4,
        "literal": "not valid jq !",
        "broken": ".n.deeper",
        "wrapped": 3,
    }


async def test_loose_mode_applies_to_expression_fields() -> None:
    """In loose mode an `output.as` that fails gives its own text instead of faulting; strict mode faults."""
    body = "do:\n  - s:\n      set: {v: 1}\n      output: {as: '.v.w'}\n"
    loose, _ = await run("evaluate: {mode: loose}\n" + body)
    assert (loose.status.value, loose.output) == ("completed", ".v.w")
    strict, _ = await run(body)
    assert strict.status.value == "faulted"
    assert strict.error is not None
    assert strict.error["status"] == 400


async def test_loose_mode_does_not_leak_into_the_next_document() -> None:
    """A loose document compiled first leaves the next (strict) document strict."""
    executor = Executor()
    assert executor.validate(doc("evaluate: {mode: loose}\ndo:\n  - s: {set: {v: '.a |||'}}\n")) == []
    issues = executor.validate(doc("do:\n  - s: {set: {v: '${ .a ||| }'}}\n"))
    assert [issue.path for issue in issues] == ["/do/0/s"]


def test_loose_mode_still_reports_broken_wrapped_expressions_as_text() -> None:
    """Loose mode accepts what strict refuses: a broken `${ }` is kept as its text, not a validation error."""
    assert issues_of("evaluate: {mode: loose}\ndo:\n  - s: {set: {v: '${ .a ||| }'}}\n") == []


def test_other_expression_languages_are_refused() -> None:
    """`evaluate.language` other than jq is refused at validation, located, as not supported by this runtime."""
    issues = issues_of("evaluate: {language: javascript}\ndo:\n  - s: {set: {v: 1}}\n")
    assert [(issue.path, issue.code, issue.line) for issue in issues] == [("/evaluate/language", "unsupported", 2)]
    assert issues[0].message.startswith("not supported by this runtime")
    assert "javascript" in issues[0].message


def test_unknown_mode_is_invalid() -> None:
    """`evaluate.mode` other than strict or loose is a validation error."""
    issues = issues_of("evaluate: {mode: lenient}\ndo:\n  - s: {set: {v: 1}}\n")
    assert [issue.path for issue in issues] == ["/evaluate/mode"]


# Each kind with the line its `schedule` value starts on (the header is line 1).
SCHEDULES = {
    "every": ("schedule: {every: {minutes: 5}}\n", 2),
    "cron": ("schedule: {cron: '0 0 * * *'}\n", 2),
    "after": ("schedule: {after: {seconds: 30}}\n", 2),
    "on": ("schedule:\n  on:\n    one:\n      with: {type: com.example.order.placed}\n", 3),
}


async def test_each_schedule_kind_runs_now_and_once_with_a_warning() -> None:
    """`every`, `cron`, `after` and `on`: the execution starts at once, completes, and `check` warns at /schedule."""
    for kind, (block, line) in SCHEDULES.items():
        text = doc(block + "do:\n  - s: {set: {ran: true}}\n")
        errors, warnings = Executor().check(text)
        assert errors == [], kind
        assert [(w.path, w.code, w.line) for w in warnings] == [("/schedule", "schedule", line)], kind
        assert f"`{kind}`" in warnings[0].message
        assert "caller's to honour" in warnings[0].message
        result, rec = await run(block + "do:\n  - s: {set: {ran: true}}\n")
        assert (result.status.value, result.output) == ("completed", {"ran": True}), kind
        assert rec.kinds().count("workflow.started") == 1


def test_no_schedule_no_warning() -> None:
    """A document without `schedule` has no warning."""
    assert Executor().check(doc("do:\n  - s: {set: {v: 1}}\n")) == ([], [])


def test_a_schema_format_other_than_json_is_refused() -> None:
    """`schema.format: avro` is refused as unsupported instead of being read as a JSON Schema."""
    body = "do:\n  - s:\n      set: {a: 1}\n      input: {schema: {format: avro, document: {type: record}}}\n"
    issues = issues_of(body)
    assert [(i.path, i.code) for i in issues] == [("/do/0/s/input/schema", "unsupported")]
    assert "'avro'" in issues[0].message
    for accepted in ("json", "JSON", "json:2020-12"):
        assert issues_of(body.replace("avro", accepted).replace("record", "object")) == [], accepted


def test_a_dsl_version_other_than_1_is_refused() -> None:
    """`document.dsl: 2.0.0` is refused as unsupported; 1.0.x documents are accepted."""
    text = "document: {dsl: '2.0.0', namespace: test, name: wf, version: '1.0.0'}\ndo:\n  - s: {set: {v: 1}}\n"
    issues = Executor().validate(text)
    assert [(i.path, i.code) for i in issues] == [("/document/dsl", "unsupported")]
    assert Executor().validate(text.replace("2.0.0", "1.0.0")) == []


async def test_a_scheduled_execution_logs_the_warning(caplog: pytest.LogCaptureFixture) -> None:
    """Each execution of a scheduled document logs, at INFO, that the schedule is the caller's to honour."""
    caplog.set_level(logging.INFO, logger="executor")
    result, _ = await run("schedule: {after: {minutes: 1}}\ndo:\n  - s: {set: {v: 1}}\n")
    assert result.status.value == "completed"
    logged = [r.getMessage() for r in caplog.records if r.name == "executor"]
    assert logged == [
        "execution test-1: /schedule: schedule (`after`) is the caller's to honour: this runner "
        "starts each execution it receives at once and runs it once"
    ]
