"""Engine cost against raw jq: a 10,000-iteration `for` whose body is a `set` of jq expressions.

Prints the tasks per second through the executor (lifecycle events go to a listener that keeps them in memory),
the rate of evaluating the same expressions with the `jq` package directly on the same data, and the ratio.
Run: `.venv/bin/python bench/executor.py [--iterations N]`.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as `python bench/executor.py`, this file's directory is first on sys.path and the file, named like the package
# it measures, would shadow `executor`.
if sys.path and Path(sys.path[0] or ".").resolve() == Path(__file__).resolve().parent:
    sys.path.pop(0)

import argparse  # imports follow the sys.path fix above
import asyncio
import time
from typing import Any

import jq
import orjson

from executor import ExecuteCommand, Executor, LifecycleEvent

EXPRESSIONS = {
    "total": ".total + $item",
    "count": ".count + 1",
    "label": '"item-\\($index)"',
}
DOCUMENT = """
document: {dsl: '1.0.3', namespace: bench, name: for-set, version: '1.0.0'}
do:
  - loop:
      for: {in: '.items'}
      do:
        - accumulate:
            set:
%s
""".replace("%s", "\n".join(f"              {key}: ${{ {expr} }}" for key, expr in EXPRESSIONS.items()))


class _Collect:
    def __init__(self) -> None:
        self.events: list[LifecycleEvent] = []

    async def publish(self, event: LifecycleEvent) -> None:
        self.events.append(event)


def engine_rate(iterations: int) -> float:
    """Tasks (loop iterations) per second through the executor."""
    data = {"items": list(range(iterations)), "total": 0, "count": 0}
    command = ExecuteCommand(execution_id="bench", workflow_yaml=DOCUMENT, input=data)
    executor = Executor(listener=_Collect())
    executor.load(DOCUMENT)  # compile outside the measurement, as a long-running service would have
    started = time.perf_counter()
    result = asyncio.run(executor.run(command))
    elapsed = time.perf_counter() - started
    assert result.status.value == "completed", result.error
    assert result.output["count"] == iterations
    return iterations / elapsed


def raw_rate(iterations: int) -> float:
    """The same expression work with the jq package alone: each expression compiled once, evaluated per item."""
    programs = {key: jq.compile(f".[1] as {{$item, $index}} | .[0] | ({expr})") for key, expr in EXPRESSIONS.items()}
    data: dict[str, Any] = {"total": 0, "count": 0}
    started = time.perf_counter()
    for index, item in enumerate(range(iterations)):
        text = orjson.dumps([data, {"item": item, "index": index}]).decode()
        data = {key: p.input_text(text).first() for key, p in programs.items()}
    elapsed = time.perf_counter() - started
    return iterations / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=10_000)
    args = parser.parse_args()
    raw = raw_rate(args.iterations)
    engine = engine_rate(args.iterations)
    print(f"raw jq:   {raw:10.0f} iterations/s")
    print(f"executor: {engine:10.0f} tasks/s")
    print(f"ratio:    {raw / engine:10.2f}x (engine cost / raw expression cost; aim <= 3x)")


if __name__ == "__main__":
    main()
