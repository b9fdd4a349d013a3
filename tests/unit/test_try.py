"""`try`/`catch`/`retry`: what is caught, how often it is retried, what the handler sees."""

from __future__ import annotations

import pytest

from tests.helpers import FakeSleep, run

RAISE_503 = "{raise: {error: {type: https://serverlessworkflow.io/spec/1.0.0/errors/communication, status: 503}}}"


def try_doc(catch: str, tasks: str = f"- r: {RAISE_503}", use: str = "") -> str:
    return f"{use}do:\n  - t:\n      try:\n        {tasks}\n      catch:\n{catch}"


@pytest.mark.parametrize(
    "type_uri",
    [
        "https://serverlessworkflow.io/spec/1.0.0/errors/communication",
        "https://serverlessworkflow.io/dsl/errors/types/communication",
        "https://open-workflow-specification.org/spec/1.0.0/errors/communication",
    ],
)
async def test_catch_matches_known_spellings_of_standard_types(type_uri: str) -> None:
    """Every known spelling of a standard error type catches that error."""
    catch = f"        errors: {{with: {{type: '{type_uri}', status: 503}}}}\n        do:\n          - h: {{set: {{r: handled}}}}\n"
    result, _ = await run(try_doc(catch))
    assert result.output == {"r": "handled"}


async def test_uncaught_error_propagates() -> None:
    """A filter that does not match lets the error fault the workflow."""
    catch = "        errors: {with: {status: 404}}\n        do:\n          - h: {set: {r: handled}}\n"
    result, _ = await run(try_doc(catch))
    assert result.status.value == "faulted"
    assert result.error is not None
    assert result.error["instance"] == "/do/0/t/try/0/r"


async def test_catch_binds_error_under_custom_name() -> None:
    """`catch.as` names the error variable seen by `catch.do`."""
    catch = "        as: oops\n        do:\n          - h: {set: {status: '${ $oops.status }', at: '${ $oops.instance }'}}\n"
    result, _ = await run(try_doc(catch))
    assert result.output == {"status": 503, "at": "/do/0/t/try/0/r"}


async def test_catch_when_and_except_when() -> None:
    """`when` must hold and `exceptWhen` must not for the error to be caught."""
    caught, _ = await run(try_doc("        when: '$error.status == 503'\n"))
    assert caught.status.value == "completed"
    not_caught, _ = await run(try_doc("        exceptWhen: '$error.status == 503'\n"))
    assert not_caught.status.value == "faulted"


async def test_caught_without_handler_outputs_input() -> None:
    """A caught error with no `catch.do` completes the try task with its input."""
    result, _ = await run(try_doc("        errors: {with: {status: 503}}\n"), {"keep": 1})
    assert result.output == {"keep": 1}


async def test_retry_inline_exponential_then_handler() -> None:
    """Retries follow the backoff and count limit, emit task.retried, then the handler runs."""
    sleep = FakeSleep()
    catch = (
        "        retry:\n          delay: {seconds: 1}\n          backoff: {exponential: {}}\n"
        "          limit: {attempt: {count: 3}}\n        do:\n          - h: {set: {r: gave-up}}\n"
    )
    result, rec = await run(try_doc(catch), sleep=sleep)
    assert sleep.calls == [1.0, 2.0, 4.0]
    assert result.output == {"r": "gave-up"}
    assert rec.kinds().count("task.retried:/do/0/t") == 3
    assert rec.kinds().count("task.started:/do/0/t/try/0/r") == 4


async def test_retry_exhausted_without_handler_faults() -> None:
    """When retries run out and there is no `catch.do`, the error faults the workflow."""
    catch = "        retry:\n          delay: {milliseconds: 1}\n          limit: {attempt: {count: 2}}\n"
    result, _ = await run(try_doc(catch), sleep=FakeSleep())
    assert result.status.value == "faulted"


@pytest.mark.parametrize(("backoff", "expected"), [("constant", [2.0, 2.0, 2.0]), ("linear", [2.0, 4.0, 6.0])])
async def test_retry_reusable_policy_backoffs(backoff: str, expected: list[float]) -> None:
    """`catch.retry` may name a `use.retries` policy; constant and linear backoff multiply the delay."""
    use = (
        f"use:\n  retries:\n    p:\n      delay: {{seconds: 2}}\n      backoff: {{{backoff}: {{}}}}\n"
        "      limit: {attempt: {count: 3}}\n"
    )
    sleep = FakeSleep()
    result, _ = await run(try_doc("        retry: p\n", use=use), sleep=sleep)
    assert sleep.calls == expected
    assert result.status.value == "faulted"


async def test_retry_jitter_stays_in_range() -> None:
    """Jitter adds between `from` and `to` to every delay."""
    catch = (
        "        retry:\n          delay: {seconds: 1}\n          jitter: {from: {milliseconds: 100}, to: {milliseconds: 200}}\n"
        "          limit: {attempt: {count: 5}}\n"
    )
    sleep = FakeSleep()
    await run(try_doc(catch), sleep=sleep)
    assert len(sleep.calls) == 5
    assert all(1.1 <= s <= 1.2 for s in sleep.calls)


async def test_retry_succeeds_when_error_clears() -> None:
    """A retried body that later succeeds completes the try with the body's output."""
    # Each attempt bumps a context counter; the body fails until the counter reaches 3.
    body = (
        "do:\n  - init: {set: {s: 0}, export: {as: '{n: 0}'}}\n  - t:\n      try:\n"
        "        - bump: {set: {s: 0}, export: {as: '{n: ($context.n + 1)}'}}\n"
        "        - check:\n            if: '$context.n < 3'\n            raise: {error: {type: https://example.com/x, status: 500}}\n"
        "        - done: {set: '${ $context.n }'}\n"
        "      catch:\n        retry:\n          delay: {milliseconds: 1}\n          limit: {attempt: {count: 5}}\n"
    )
    result, _ = await run(body, sleep=FakeSleep())
    assert result.output == 3


async def test_retry_when_condition_limits_retries() -> None:
    """A retry policy's `when` decides which caught errors are retried."""
    catch = "        retry:\n          when: '$error.status == 500'\n          limit: {attempt: {count: 3}}\n"
    sleep = FakeSleep()
    result, _ = await run(try_doc(catch), sleep=sleep)
    assert sleep.calls == []
    assert result.status.value == "faulted"
