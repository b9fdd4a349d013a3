"""`try`: run a task list; a caught error is retried by policy or handled by `catch.do`.

Order: the error must match `catch.errors.with` (standard types match in any known spelling), then `catch.when`
holds / `catch.exceptWhen` does not (with the error bound as `$<as>`). A matching error is retried while the retry
policy allows it; once retries are exhausted it is handled by `catch.do` when there is one and re-raised otherwise
(a workflow that asked for retries and got none to succeed should not silently complete). A caught error without
a retry policy is handled by `catch.do`, or swallowed — the task's output is then its input.
"""

from __future__ import annotations

import random
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .._durations import Duration
from .._errors import WorkflowError, canonical_type
from .._expr import compile_expression, truthy
from .._flow import Deadline
from .._listener import TASK_RETRIED

if TYPE_CHECKING:
    from .._expr import Evaluator, Vars
    from .._model import Compiler, Task, TaskList
    from .._run import Run


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    when: Evaluator | None
    except_when: Evaluator | None
    delay: Duration | None
    backoff: str
    max_attempts: int | None
    attempt_limit: Duration | None
    total_limit: Duration | None
    jitter: tuple[Duration, Duration] | None

    def delay_before(self, attempt: int, data: Any = None, variables: Vars | None = None) -> float:
        """Seconds to wait before retry number `attempt` (1-based); duration expressions see `data`."""
        base = 0.0 if self.delay is None else self.delay.seconds(data, variables)
        if self.backoff == "linear":
            base *= attempt
        elif self.backoff == "exponential":
            base *= 2 ** min(attempt - 1, 32)
        if self.jitter is not None:
            low, high = self.jitter[0].seconds(data, variables), self.jitter[1].seconds(data, variables)
            base += random.uniform(low, max(low, high))
        return base


@dataclass(frozen=True, slots=True)
class TrySpec:
    body: TaskList
    filter: Mapping[str, Any]
    as_: str
    when: Evaluator | None
    except_when: Evaluator | None
    retry: RetryPolicy | None
    handler: TaskList | None


def compile(compiler: Compiler, definition: Mapping[str, Any], pointer: str) -> TrySpec:
    """The body, the catch filter and conditions, the retry policy (inline or from `use.retries`)."""
    catch = definition.get("catch") or {}
    return TrySpec(
        body=compiler.task_list(definition["try"], f"{pointer}/try"),
        filter=dict((catch.get("errors") or {}).get("with") or {}),
        as_=catch.get("as", "error"),
        when=_expr(catch.get("when")),
        except_when=_expr(catch.get("exceptWhen")),
        retry=_retry(compiler, catch.get("retry")),
        handler=None if not catch.get("do") else compiler.task_list(catch["do"], f"{pointer}/catch/do"),
    )


def _expr(value: Any) -> Evaluator | None:
    return None if value is None else compile_expression(value)


def _duration(value: Any) -> Duration | None:
    return None if value is None else Duration(value)


def _retry(compiler: Compiler, policy: Any) -> RetryPolicy | None:
    if policy is None:
        return None
    if isinstance(policy, str):
        named = (compiler.use.get("retries") or {}).get(policy)
        if named is None:
            raise KeyError(f"no retry policy named {policy!r} in use.retries")
        policy = named
    limit = policy.get("limit") or {}
    attempt = limit.get("attempt") or {}
    jitter = policy.get("jitter")
    return RetryPolicy(
        when=_expr(policy.get("when")),
        except_when=_expr(policy.get("exceptWhen")),
        delay=_duration(policy.get("delay")),
        backoff=next(iter(policy.get("backoff") or {"constant": {}})),
        max_attempts=attempt.get("count"),
        attempt_limit=_duration(attempt.get("duration")),
        total_limit=_duration(limit.get("duration")),
        jitter=None if jitter is None else (Duration(jitter["from"]), Duration(jitter["to"])),
    )


async def run(rt: Run, task: Task, data: Any, variables: Vars) -> Any:
    """Run the body, retrying or handling caught errors."""
    spec: TrySpec = task.spec
    scope = rt.child_scope(variables)
    started = time.monotonic()
    retries = 0
    while True:
        try:
            return await _attempt(rt, spec, data, scope)
        except WorkflowError as exc:
            error = exc.to_dict()
            bound = rt.current(variables, **{spec.as_: error})
            if not _caught(spec, error, data, bound):
                raise
            delay = None if spec.retry is None else _retry_delay(spec.retry, retries + 1, started, data, bound)
            if delay is not None:
                retries += 1
                await _retried(rt, task, retries, error)
                await rt.sleep(delay)
                continue
            if spec.handler is not None:
                return await rt.run_list(spec.handler, data, {**scope, spec.as_: error})
            if spec.retry is not None:
                raise
            return data


async def _attempt(rt: Run, spec: TrySpec, data: Any, scope: Vars) -> Any:
    limit = None if spec.retry is None else spec.retry.attempt_limit
    if limit is None:
        return await rt.run_list(spec.body, data, scope)
    async with Deadline(limit.seconds(), "retry attempt"):
        return await rt.run_list(spec.body, data, scope)


async def _retried(rt: Run, task: Task, attempt: int, error: dict[str, Any]) -> None:
    await rt.emit(TASK_RETRIED, {"workflow": rt.name, "task": task.pointer, "attempt": attempt, "error": error})


def _caught(spec: TrySpec, error: dict[str, Any], data: Any, variables: Vars) -> bool:
    if not matches(spec.filter, error):
        return False
    if spec.when is not None and not truthy(spec.when(data, variables)):
        return False
    return spec.except_when is None or not truthy(spec.except_when(data, variables))


def _retry_delay(policy: RetryPolicy, attempt: int, started: float, data: Any, variables: Vars) -> float | None:
    """Seconds to wait before retry `attempt`, or None when the policy does not allow it.

    `limit.duration` bounds the time from the first attempt to the start of the last retry: a retry whose delay
    would start it later is not made.
    """
    if policy.max_attempts is not None and attempt > policy.max_attempts:
        return None
    if policy.when is not None and not truthy(policy.when(data, variables)):
        return None
    if policy.except_when is not None and truthy(policy.except_when(data, variables)):
        return None
    delay = policy.delay_before(attempt, data, variables)
    if policy.total_limit is not None and time.monotonic() - started + delay > policy.total_limit.seconds():
        return None
    return delay


def matches(filter_: Mapping[str, Any], error: Mapping[str, Any]) -> bool:
    """True when every property of the `errors.with` filter equals the error's (types compared canonically)."""
    for key, expected in filter_.items():
        actual = error.get("detail" if key == "details" else key)
        if key == "type":
            if canonical_type(str(expected)) != canonical_type(str(actual)):
                return False
        elif expected != actual:
            return False
    return True
