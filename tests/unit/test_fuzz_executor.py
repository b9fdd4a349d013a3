"""Property-based runs: whatever the input and secrets, a run ends with exactly one terminal event and no secret.

Documents that use their input and secrets in the ways that go wrong (deep data, huge numbers, errors quoting a
secret, emitted events, loops) run on Hypothesis-generated inputs and secrets, within a bounded budget.
"""

from __future__ import annotations

import json
import os
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from executor import ExecuteCommand, Executor
from tests.helpers import Recorder, doc

RUNS = settings(
    max_examples=int(os.environ.get("FUZZ_EXAMPLES", "60")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    derandomize=not os.environ.get("FUZZ_EXAMPLES"),
)
DOCUMENTS = [
    doc("use: {secrets: [s]}\ndo:\n  - echo: {set: {got: '${ . }', s: '${ $secrets.s }'}}\n"),
    doc(
        "do:\n  - wrap: {set: {x: '${ [., [.], {a: .}] }'}}\n  - deeper: {set: {y: '${ reduce range(140) as $i (.; [.]) }'}}\n"
    ),
    doc(
        "use: {secrets: [s]}\ndo:\n  - boom:\n      raise:\n        error:\n"
        "          type: https://x.io/boom\n          status: 400\n          detail: '${ \"bad \" + ($secrets.s | tostring) + (. | tostring) }'\n"
    ),
    doc(
        "use: {secrets: [s]}\ndo:\n  - each:\n      for: {each: item, in: '${ if type == \"array\" then . else [.] end }'}\n"
        "      do:\n        - tell:\n            emit:\n              event:\n                with: {source: 'https://x.io', type: fuzz, data: {s: '${ $secrets.s }', i: '${ $item }'}}\n"
    ),
    doc(
        "use: {secrets: [s]}\ndo:\n  - guarded:\n      try:\n        - risky: {set: {v: '${ .a.b.c + 1 }'}}\n"
        "      catch:\n        do:\n          - fallback: {set: {v: '${ $secrets.s | @base64 }'}}\n"
    ),
]
_scalars = (
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=12)
)
inputs = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=12,
)
secret_text = st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ", min_size=6, max_size=16)
secrets = secret_text | st.dictionaries(st.sampled_from(["user", "password", "pin"]), secret_text, min_size=1)


def _secret_texts(value: Any) -> list[str]:
    return [value] if isinstance(value, str) else list(value.values())


@RUNS
@given(document=st.sampled_from(DOCUMENTS), data=inputs, secret=secrets)
async def test_every_run_ends_once_and_shows_no_secret(document: str, data: Any, secret: Any) -> None:
    """Any input and secret: exactly one terminal event, last, in an unbroken sequence, and the secret nowhere in the
    events or on the event bus."""
    recorder = Recorder()
    executor = Executor(listener=recorder)
    command = ExecuteCommand(execution_id="fuzz", workflow_yaml=document, input=data, secrets={"s": secret})
    result = await executor.run(command)
    terminal = [e for e in recorder.events if e.type.split(".")[2] == "workflow" and e.type.split(".")[3] != "started"]
    assert len(terminal) == 1
    assert terminal[0] is recorder.events[-1]
    assert terminal[0].type.split(".")[3] == result.status.value
    assert [e.sequence for e in recorder.events] == list(range(1, len(recorder.events) + 1))
    # Python's encoder: jq hands out integers past 64 bits, which the events' encoder turns into floats.
    shown = json.dumps([e.data for e in recorder.events] + executor.bus.published() + [result.error])
    for text in _secret_texts(secret):
        assert text not in shown
