"""`call`: the built-in protocols and custom functions from `use.functions`.

Built in: `http`, `openapi`, `grpc`, `asyncapi`, `a2a` and `mcp`. Each protocol compiles its `with` into a spec
object with an async `run`; this module only dispatches. A custom function is a task definition; calling it runs
that task with the call's `with` as input (or the call's own input when `with` is absent). Functions from catalogs
(`name:version@catalog`) are refused at validation as not supported by this runtime.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from .._expr import compile_template
from .._model import Unsupported
from ._call_a2a import compile as compile_a2a
from ._call_asyncapi import compile as compile_asyncapi
from ._call_grpc import compile as compile_grpc
from ._call_http import compile as compile_http
from ._call_mcp import compile as compile_mcp
from ._call_openapi import compile as compile_openapi

if TYPE_CHECKING:
    from .._expr import Evaluator, Vars
    from .._model import Compiler, Task
    from .._run import Run

PROTOCOLS: Mapping[str, Callable[[Compiler, Mapping[str, Any], str], CallSpec]] = {
    "http": compile_http,
    "openapi": compile_openapi,
    "grpc": compile_grpc,
    "asyncapi": compile_asyncapi,
    "a2a": compile_a2a,
    "mcp": compile_mcp,
}


class CallSpec(Protocol):
    """What a protocol's `compile` returns."""

    async def run(self, rt: Run, task: Task, data: Any, variables: Vars) -> Any: ...


def compile(compiler: Compiler, definition: Mapping[str, Any], pointer: str) -> CallSpec:
    """The protocol's spec, or the custom function to run."""
    name = definition["call"]
    if name in PROTOCOLS:
        spec: CallSpec = PROTOCOLS[name](compiler, definition.get("with") or {}, pointer)
        return spec
    if "@" in name:
        raise Unsupported(f"function {name!r} from a catalog (only use.functions are supported)")
    if name not in (compiler.use.get("functions") or {}):
        raise KeyError(f"function {name!r} is neither built in nor declared in use.functions")
    arguments = definition.get("with")
    return FunctionCall(name, None if arguments is None else compile_template(arguments))


async def run(rt: Run, task: Task, data: Any, variables: Vars) -> Any:
    """Run the compiled call."""
    spec: CallSpec = task.spec
    return await spec.run(rt, task, data, variables)


@dataclass(frozen=True, slots=True)
class FunctionCall:
    """A call of a `use.functions` entry."""

    name: str
    arguments: Evaluator | None

    async def run(self, rt: Run, task: Task, data: Any, variables: Vars) -> Any:
        """Run the function's task with the evaluated arguments as its input."""
        function = rt.workflow.functions[self.name]
        argument_data = data if self.arguments is None else self.arguments(data, variables)
        output, _ = await rt.run_task(function, argument_data, rt.child_scope(variables))
        return output
