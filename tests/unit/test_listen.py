"""`listen` on the in-process bus: strategies, filters, correlation, read modes, foreach, waiting status."""

from __future__ import annotations

from typing import Any

from tests.fixtures.runner import run_with


def emit(type_: str, data: str = "{}", extra: str = "") -> str:
    """A flow-style emit task body."""
    return f"{{emit: {{event: {{with: {{source: 'https://test.io', type: {type_}, data: {data}{extra}}}}}}}}}"


def listening(to: str, emits: list[str], *, listen_first: bool = True, task: str = "") -> str:
    """A fork whose first (or last) branch listens `to` while the others emit, after a short wait."""
    listener = f"      - l:\n          listen:\n            to: {to}\n{task}"
    emitters = "".join(
        f"      - e{i}:\n          do:\n            - w: {{wait: PT0.05S}}\n            - x: {e}\n"
        for i, e in enumerate(emits)
    )
    branches = listener + emitters if listen_first else emitters + listener
    return f"do:\n  - f:\n      fork:\n        branches:\n{_indent(branches, 4)}      output: {{as: '.[{0 if listen_first else -1}]'}}\n"


def _indent(text: str, spaces: int) -> str:
    return "".join(" " * spaces + line + "\n" for line in text.splitlines())


async def run_listen(body: str, data: Any = None) -> Any:
    result, _ = await run_with(body, data)
    assert result.status.value == "completed", result.error
    return result.output


async def test_one_receives_an_event_emitted_by_a_concurrent_branch() -> None:
    """`one` outputs the matching event's data; a non-matching event is ignored."""
    output = await run_listen(
        listening("{one: {with: {type: com.x.ready}}}", [emit("com.x.other", "{n: 0}"), emit("com.x.ready", "{n: 1}")])
    )
    assert output == [{"n": 1}]


async def test_event_emitted_before_the_listen_started_is_seen() -> None:
    """Whichever branch runs first, the listen task sees the run's events."""
    body = (
        "do:\n  - f:\n      fork:\n        branches:\n"
        f"          - e: {emit('com.x.early', '{n: 7}')}\n"
        "          - l: {listen: {to: {one: {with: {type: com.x.early}}}}}\n"
        "      output: {as: '.[1]'}\n"
    )
    assert await run_listen(body) == [{"n": 7}]


async def test_regex_and_data_expression_filters() -> None:
    """String attributes match as regular expressions; a `data` expression must hold on the event data."""
    to = "{one: {with: {type: 'com\\.x\\..*', source: 'https://.*', data: '${ .n > 1 }'}}}"
    output = await run_listen(listening(to, [emit("com.x.a", "{n: 1}"), emit("com.x.b", "{n: 2}")]))
    assert output == [{"n": 2}]


async def test_any_until_expression_collects_until_the_condition_holds() -> None:
    """`any` with an `until` expression keeps consuming; `.` is the output so far."""
    to = "{any: [{with: {type: com.x.tick}}], until: '${ length >= 2 }'}"
    emits = [emit("com.x.tick", "{n: 1}"), emit("com.x.tick", "{n: 2}"), emit("com.x.tick", "{n: 3}")]
    assert await run_listen(listening(to, emits)) == [{"n": 1}, {"n": 2}]


async def test_any_until_strategy_excludes_the_stopping_event() -> None:
    """Events consumed by a nested `until` strategy end the listen and are not in the output."""
    to = "{any: [], until: {one: {with: {type: com.x.stop}}}}"
    emits = [emit("com.x.a", "{n: 1}"), emit("com.x.stop", "{n: 2}")]
    assert await run_listen(listening(to, emits)) == [{"n": 1}]


async def test_all_waits_for_every_filter() -> None:
    """`all` needs one event per filter; the output is in arrival order."""
    to = "{all: [{with: {type: com.x.b}}, {with: {type: com.x.a}}]}"
    emits = [emit("com.x.a", "{n: 1}"), emit("com.x.b", "{n: 2}")]
    assert await run_listen(listening(to, emits)) == [{"n": 1}, {"n": 2}]


async def test_correlation_with_expectation_and_first_seen_value() -> None:
    """`expect` from the input selects the event; without it the first match fixes the value."""
    expected = "{one: {with: {type: com.x.order}, correlate: {order: {from: '.data.id', expect: '${ .id }'}}}}"
    emits = [emit("com.x.order", "{id: 1}"), emit("com.x.order", "{id: 2}")]
    assert await run_listen(listening(expected, emits), {"id": 2}) == [{"id": 2}]
    first_seen = "{all: [{with: {type: com.x.a}, correlate: {k: {from: '.data.k'}}}, {with: {type: com.x.b}, correlate: {k: {from: '.data.k'}}}]}"
    emits = [emit("com.x.a", "{k: 1}"), emit("com.x.b", "{k: 2}"), emit("com.x.b", "{k: 1}")]
    assert await run_listen(listening(first_seen, emits)) == [{"k": 1}, {"k": 1}]


async def test_read_envelope_and_raw() -> None:
    """`read: envelope` outputs the whole CloudEvent; `raw` the data as JSON text."""
    envelope = await run_listen(
        listening(
            "{one: {with: {type: com.x.e}}}\n            read: envelope", [emit("com.x.e", "{n: 1}", ", subject: s1")]
        )
    )
    raw = await run_listen(
        listening("{one: {with: {type: com.x.e}}}\n            read: raw", [emit("com.x.e", "{n: 1}")])
    )
    assert envelope[0]["type"] == "com.x.e"
    assert envelope[0]["subject"] == "s1"
    assert envelope[0]["specversion"] == "1.0"
    assert raw == ['{"n":1}']


async def test_foreach_runs_tasks_per_event_and_exports() -> None:
    """`foreach` runs its tasks on each event, shapes the item with `output.as`, updates `$context`."""
    task = (
        "          foreach:\n            item: ev\n            at: i\n"
        "            do:\n              - tag: {set: {n: '${ $ev.n * 10 }', i: '${ $i }'}}\n"
        "            output: {as: '.n + .i'}\n"
        "            export: {as: '${ {last: .} }'}\n"
    )
    to = "{any: [{with: {type: com.x.t}}], until: '${ length == 2 }'}"
    body = listening(to, [emit("com.x.t", "{n: 1}"), emit("com.x.t", "{n: 2}")], task=task)
    body += "  - after: {set: '${ {items: ., context: $context} }'}\n"
    output = await run_listen(body)
    assert output == {"items": [10, 21], "context": {"last": 21}}


async def test_a_later_listen_does_not_reconsume_an_event() -> None:
    """An event consumed by a completed listen is not delivered to the next listen of the run."""
    body = (
        f"do:\n  - e1: {emit('com.x.k', '{n: 1}')}\n  - e2: {emit('com.x.k', '{n: 2}')}\n"
        "  - l1: {listen: {to: {one: {with: {type: com.x.k}}}}}\n"
        "  - l2: {listen: {to: {one: {with: {type: com.x.k}}}}}\n"
    )
    assert await run_listen(body) == [{"n": 2}]


async def test_waiting_status_is_reported() -> None:
    """The run reports `waiting` while it listens and `running` afterwards."""
    result, recorder = await run_with(listening("{one: {with: {type: com.x.w}}}", [emit("com.x.w")]))
    statuses = [e.data["status"] for e in recorder.events if e.type.endswith("workflow.status-changed.v1")]
    assert result.status.value == "completed"
    assert statuses == ["waiting", "running"]


async def test_listen_is_bounded_by_a_task_timeout() -> None:
    """No matching event: the task timeout ends the listen with 408."""
    body = "do:\n  - l:\n      listen: {to: {one: {with: {type: com.x.never}}}}\n      timeout: {after: PT0.2S}\n"
    result, _ = await run_with(body)
    assert result.error["status"] == 408
