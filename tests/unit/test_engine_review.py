"""Engine edge cases found in review: flow targets, busy loops, fork `end`, secrets, durations, retries, events."""

from __future__ import annotations

import asyncio

import orjson

from executor import ExecuteCommand, Executor, LifecycleEvent
from tests.helpers import FakeSleep, Recorder, doc, eventually, run

TIMEOUT = "https://serverlessworkflow.io/spec/1.0.0/errors/timeout"
CONFIGURATION = "https://serverlessworkflow.io/spec/1.0.0/errors/configuration"


def _issues(body: str) -> list[tuple[str, str]]:
    return [(i.path, i.message) for i in Executor().validate(doc(body))]


def test_switch_case_then_naming_no_task_is_invalid() -> None:
    """A switch case jumping to a task that does not exist is reported by validation, not a crash at run time."""
    body = """
        do:
          - sw:
              switch:
                - one: {when: '.x == 1', then: nowhere}
          - b: {set: {y: 1}}
        """
    issues = _issues(body)
    assert [path for path, _ in issues] == ["/do/0/sw/switch/0/one/then"]
    assert "nowhere" in issues[0][1]


def test_switch_with_two_default_cases_is_invalid() -> None:
    """Only one switch case may go without `when`; a second one is reported instead of silently ignored."""
    body = """
        do:
          - sw:
              switch:
                - a: {then: end}
                - b: {then: continue}
        """
    assert [path for path, _ in _issues(body)] == ["/do/0/sw/switch/1/b"]


def test_invalid_jq_is_reported_by_validation() -> None:
    """A jq syntax error in any expression is found by `validate`, with the task's location."""
    body = "do:\n  - s:\n      set: {a: '${ .a | }'}\n  - t:\n      set: {b: 1}\n      if: '.x ==='\n"
    paths = [path for path, _ in _issues(body)]
    assert paths == ["/do/0/s", "/do/1/t/if"]


def test_expression_with_scope_variables_still_validates() -> None:
    """Expressions using `$item`, `$error`, `$ENV` and the spec's arguments compile at validation."""
    body = """
        do:
          - loop:
              for: {in: '.xs', each: x}
              do:
                - s: {set: '${ [$x, $index, $context, $ENV.HOME, $workflow.id, $task.name] }'}
        """
    assert _issues(body) == []


async def test_then_loop_without_progress_honours_workflow_timeout() -> None:
    """A `then` loop whose tasks never suspend still ends with the workflow's timeout error."""
    body = "timeout: {after: {milliseconds: 100}}\ndo:\n  - s: {set: {x: 1}, then: s}\n"
    result, _ = await asyncio.wait_for(run(body), 10)
    assert result.error is not None
    assert result.error["type"] == TIMEOUT


async def test_long_for_loop_honours_its_task_timeout() -> None:
    """A long `for` over synchronous tasks stops at its timeout instead of running to the end."""
    body = (
        "do:\n  - loop:\n      timeout: {after: {milliseconds: 50}}\n"
        "      for: {in: '${ [range(1000000)] }'}\n      do:\n        - s: {set: {x: 1}}\n"
    )
    result, _ = await asyncio.wait_for(run(body), 20)
    assert result.error is not None
    assert (result.error["type"], result.error["instance"]) == (TIMEOUT, "/do/0/loop")


async def test_cancel_reaches_a_busy_then_loop() -> None:
    """`Executor.cancel` stops a `then` loop whose tasks never suspend; the run ends cancelled."""
    executor = Executor()
    command = ExecuteCommand(execution_id="busy", workflow_yaml=doc("do:\n  - s: {set: {x: 1}, then: s}\n"))
    running = asyncio.create_task(executor.run(command))
    await eventually(lambda: "busy" in executor.in_flight, what="the loop to run")
    assert executor.cancel("busy")
    result = await asyncio.wait_for(running, 10)
    assert result.status.value == "cancelled"


async def test_compete_branch_that_ends_the_workflow_wins() -> None:
    """In a competing fork, a branch saying `then: end` ends the workflow rather than counting as a failure."""
    body = """
        do:
          - f:
              fork:
                compete: true
                branches:
                  - quick:
                      do:
                        - e: {set: {ended: true}, then: end}
                  - slow:
                      do:
                        - w: {wait: PT30S}
          - after: {set: {after: true}}
        """
    result, _ = await asyncio.wait_for(run(body), 10)
    assert result.output == {"ended": True}


async def test_object_secret_values_are_masked() -> None:
    """Values inside an object secret (a password, a numeric pin) are masked in events and in the error."""
    body = """
        use:
          secrets: [creds]
        do:
          - s: {set: {p: '${ $secrets.creds.password }', pin: '${ $secrets.creds.pin }'}}
          - r:
              raise:
                error: {type: https://x.io/e, status: 400, detail: '${ "pw=\\(.p) pin=\\(.pin)" }'}
        """
    result, rec = await run(body, secrets={"creds": {"password": "hunter2-pw", "pin": 48151623}})
    assert result.error is not None
    assert result.error["detail"] == "pw=*** pin=***"
    text = orjson.dumps([e.data for e in rec.events]).decode()
    assert "hunter2-pw" not in text
    assert "48151623" not in text


async def test_secret_containing_another_is_masked_whole() -> None:
    """When one secret value contains another, no tail of the longer one leaks."""
    body = "use:\n  secrets: [a, b]\ndo:\n  - s: {set: {v: '${ $secrets.b }'}}\n"
    _, rec = await run(body, secrets={"a": "abc", "b": "abcdef-long"})
    assert rec.events[2].data["output"] == {"v": "***"}


async def test_retry_does_not_sleep_past_its_duration_limit() -> None:
    """A retry whose delay would overrun `limit.duration` is not attempted: the error surfaces at once."""
    body = """
        do:
          - t:
              try:
                - boom: {raise: {error: {type: https://x.io/e, status: 503}}}
              catch:
                retry:
                  delay: PT10S
                  limit: {duration: PT1S, attempt: {count: 5}}
        """
    sleep = FakeSleep()
    result, _ = await run(body, sleep=sleep)
    assert sleep.calls == []
    assert result.error is not None
    assert result.error["status"] == 503


async def test_bad_inline_duration_from_expression_is_a_configuration_error() -> None:
    """A `wait` whose expression gives a malformed inline duration faults with the configuration error (400)."""
    for bad in ({"seconds": "x"}, {"secs": 5}, {}):
        result, _ = await run("do:\n  - w: {wait: '${ .d }'}\n", {"d": bad})
        assert result.error is not None, bad
        assert (result.error["type"], result.error["status"], result.error["instance"]) == (
            CONFIGURATION,
            400,
            "/do/0/w",
        )


async def test_duration_expression_error_names_json_types() -> None:
    """A duration expression giving a number or null says so in JSON terms."""
    result, _ = await run("do:\n  - w: {wait: '${ .d }'}\n", {"d": None})
    assert result.error is not None
    assert "null" in result.error["detail"]


class _SlowFirst(Recorder):
    """A listener that applies back-pressure on its first task event, as a full outbox would."""

    async def publish(self, event: LifecycleEvent) -> None:
        if event.sequence == 2:
            await asyncio.sleep(0.05)
        await super().publish(event)


async def test_events_reach_the_listener_in_sequence_order_under_back_pressure() -> None:
    """Concurrent fork branches never make the listener see a later sequence number before an earlier one."""
    body = "do:\n  - f:\n      fork:\n        branches:\n          - a: {set: {a: 1}}\n          - b: {set: {b: 1}}\n"
    recorder = _SlowFirst()
    command = ExecuteCommand(execution_id="order", workflow_yaml=doc(body))
    await Executor(listener=recorder).run(command)
    sequences = [e.sequence for e in recorder.events]
    assert sequences == sorted(sequences)


async def test_emit_refuses_an_event_whose_type_is_not_text() -> None:
    """An `emit` whose `type` or `id` expression gives a number or an empty string faults instead of sending it."""
    body = "do:\n  - e:\n      emit:\n        event:\n          with: {type: '${ .t }', source: https://x.io, id: '${ .id }'}\n"
    for data in ({"t": 5}, {"t": "com.x", "id": 7}, {"t": ""}):
        result, _ = await run(body, data)
        assert result.error is not None, data
        assert (result.error["status"], result.error["title"], result.error["instance"]) == (
            400,
            "Invalid event",
            "/do/0/e",
        )
    result, _ = await run(body, {"t": "com.x"})
    assert result.status.value == "completed"


async def test_retry_delay_expression_sees_the_task_input_and_error() -> None:
    """A retry `delay` given as an expression is evaluated with the try's input and the caught error bound."""
    body = """
        do:
          - t:
              try:
                - boom: {raise: {error: {type: https://x.io/e, status: 503}}}
              catch:
                as: err
                retry:
                  delay: '${ {seconds: (.base + $err.status - 503)} }'
                  limit: {attempt: {count: 2}}
        """
    sleep = FakeSleep()
    await run(body, {"base": 3}, sleep=sleep)
    assert sleep.calls == [3.0, 3.0]


async def test_expressions_cannot_read_the_runner_environment() -> None:
    """`$ENV` and `env` in a document see an empty object, not the runner's variables (API keys live there)."""
    result, _ = await run("do:\n  - s: {set: {a: '${ $ENV.PATH }', b: '${ env.PATH }', c: '${ [$ENV, env] }'}}\n")
    assert result.output == {"a": None, "b": None, "c": [{}, {}]}


def test_expressions_cannot_import_modules_from_disk() -> None:
    """A jq `import` / `include` (which would read files near the runner) is refused by validation."""
    body = "do:\n  - s: {set: {a: '${ import \"conf\" as $c; $c }'}}\n  - t: {set: {b: '${ include \"x\"; 1 }'}}\n"
    assert [path for path, _ in _issues(body)] == ["/do/0/s", "/do/1/t"]


async def test_expression_ending_in_a_comment_evaluates() -> None:
    """A multi-line expression whose last line is a jq `# comment` still evaluates."""
    body = "do:\n  - s:\n      set:\n        v: |-\n          ${\n            .a + $context.n # the sum\n          }\n"
    result, _ = await run(body, {"a": 1})
    assert result.error is None
    assert result.output == {"v": 1}


async def test_enclosing_task_sees_context_exported_inside_it() -> None:
    """A `do` task's `output.as` and `export.as` see what its subtasks exported, not `$context` as it started."""
    body = """
        do:
          - outer:
              do:
                - inner: {set: {x: 1}, export: {as: '${ $context + {a: 1} }'}}
              output: {as: '${ {seen: $context} }'}
              export: {as: '${ $context + {b: 2} }'}
          - show: {set: '${ {ctx: $context, prev: .} }'}
        """
    result, _ = await run(body)
    assert result.output == {"ctx": {"a": 1, "b": 2}, "prev": {"seen": {"a": 1}}}


async def test_for_while_sees_context_exported_by_the_body() -> None:
    """A `for` loop's `while` reads the `$context` its body exported in the previous iteration."""
    body = """
        do:
          - loop:
              for: {in: '${ [range(10)] }'}
              while: '$context.stop != true'
              do:
                - mark: {set: {n: '${ $item }'}, export: {as: '${ {stop: ($item == 2)} }'}}
        """
    result, _ = await run(body)
    assert result.output == {"n": 2}


async def test_catch_when_sees_context_exported_in_the_try() -> None:
    """`catch.when` reads the `$context` exported by try tasks that ran before the error."""
    body = """
        do:
          - t:
              try:
                - mark: {set: {m: 1}, export: {as: '${ {handle: true} }'}}
                - boom: {raise: {error: {type: https://x.io/e, status: 500}}}
              catch:
                when: '$context.handle'
                do:
                  - h: {set: {handled: true}}
        """
    result, _ = await run(body)
    assert result.output == {"handled": True}


async def test_encoded_secret_forms_are_masked() -> None:
    """A secret that ends up percent-encoded in a URL or escaped in JSON text is masked too."""
    from tests.helpers import run

    body = (
        "use:\n  secrets: [k]\ndo:\n  - r:\n      raise:\n        error:\n          type: https://x.io/e\n"
        '          status: 500\n          detail: \'${ "https://api/?key=" + ($secrets.k | @uri) + " " + ($secrets.k | tojson) }\'\n'
    )
    secret = 's3c/r3t+k y="q"'
    result, rec = await run(body, secrets={"k": secret})
    texts = _strings([e.data for e in rec.events]) + _strings(result.error)
    for form in ("s3c%2Fr3t%2Bk%20y%3D%22q%22", 's3c/r3t+k y=\\"q\\"', secret):
        assert not any(form in text for text in texts), form
    assert any(text == 'https://api/?key=*** "***"' for text in texts)


def _strings(value: object) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for item in value.values() for s in _strings(item)]
    if isinstance(value, list):
        return [s for item in value for s in _strings(item)]
    return []


async def test_cancel_while_the_start_is_being_reported_still_ends_cancelled() -> None:
    """A cancel that lands while the listener holds the first event back ends the run `cancelled`, with its event."""
    import asyncio

    from executor import ExecuteCommand, Executor
    from tests.helpers import doc

    class Stuck:
        def __init__(self) -> None:
            self.events: list[LifecycleEvent] = []
            self.held = True

        async def publish(self, event: LifecycleEvent) -> None:
            if self.held:
                self.held = False
                await asyncio.Event().wait()  # back-pressure that never ends
            self.events.append(event)

    listener = Stuck()
    executor = Executor(listener=listener)
    running = asyncio.create_task(
        executor.run(ExecuteCommand(execution_id="s", workflow_yaml=doc("do:\n  - a: {set: {v: 1}}\n")))
    )
    await eventually(lambda: not listener.held, what="the listener to hold the first event")
    assert executor.cancel("s")
    result = await asyncio.wait_for(running, 5)
    assert result.status.value == "cancelled"
    assert [(e.type.split(".")[-2], e.sequence) for e in listener.events] == [("cancelled", 1)]
