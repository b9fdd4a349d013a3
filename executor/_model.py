"""The compiled workflow: an immutable task tree where every node knows its JSON Pointer.

`compile_workflow` turns a validated definition into `Workflow` once; every expression, duration and schema in it
is compiled here, so running a task only evaluates. Each task kind's own parts (`Task.spec`) are compiled by the
handler registered for the kind in `executor.tasks`; a construct this runtime cannot run is reported here, as an
`unsupported` issue, before anything runs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import jsonschema

from ._document import DocumentError, Issue
from ._durations import Duration, duration_or_none
from ._errors import ValidationError, WorkflowError
from ._expr import Evaluator, compile_expression, expression_mode
from ._options import EngineOptions
from ._probe import evaluating
from ._validate_base import escape

# `for` carries a `do` too, so it is looked for before `do`.
TASK_KINDS = ("for", "call", "do", "emit", "fork", "listen", "raise", "run", "set", "switch", "try", "wait")
FLOW_DIRECTIVES = frozenset({"continue", "exit", "end"})
# An extension's `extend` → the task kinds it applies to (None: every kind). `composite` is the DSL's name for the
# kinds that run nested task lists in order or concurrently.
EXTENSION_TARGETS: Mapping[str, frozenset[str] | None] = {
    "all": None,
    "composite": frozenset({"do", "fork"}),
    **{
        kind: frozenset({kind})
        for kind in ("call", "emit", "for", "listen", "raise", "run", "set", "switch", "try", "wait")
    },
}
EXPRESSION_LANGUAGES = frozenset({"jq"})


class Unsupported(Exception):
    """Raised while compiling a construct this runtime cannot run."""


class Schema:
    """A compiled JSON Schema from a `schema: {format, document}` block; raises the spec's validation error."""

    __slots__ = ("_validator", "_where")

    def __init__(self, block: Mapping[str, Any], where: str) -> None:
        if "document" not in block:
            raise Unsupported("schemas given by an external `resource` are not supported by this runtime yet")
        if str(block.get("format", "json")).lower().partition(":")[0] != "json":
            raise Unsupported(f"schema format {block['format']!r} (only json, as JSON Schema; `json:<version>` too)")
        validator_cls = jsonschema.validators.validator_for(block["document"], default=jsonschema.Draft202012Validator)
        self._validator = validator_cls(block["document"])
        self._where = where

    def check(self, value: Any) -> None:
        """Raise ValidationError naming the first violation when `value` does not match."""
        with evaluating():  # a schema check is as uninterruptible as an expression: the watchdog must see it
            error = jsonschema.exceptions.best_match(self._validator.iter_errors(value))
        if error is not None:
            location = "/" + "/".join(str(p) for p in error.absolute_path)
            raise ValidationError(
                f"Invalid {self._where}",
                detail=f"at {location if location != '/' else '(root)'}: {error.message}",
            )


@dataclass(frozen=True, slots=True, kw_only=True)
class Task:
    """One task node: the common `taskBase` parts compiled, the kind's own parts in `spec`."""

    name: str
    pointer: str
    kind: str
    definition: Mapping[str, Any]
    if_: Evaluator | None = None
    input_from: Evaluator | None = None
    input_schema: Schema | None = None
    output_as: Evaluator | None = None
    output_schema: Schema | None = None
    export_as: Evaluator | None = None
    export_schema: Schema | None = None
    timeout: Duration | None = None
    then: str | None = None
    spec: Any = None


@dataclass(frozen=True, slots=True)
class TaskList:
    """A task list (a flow scope): tasks in order and their positions by name, for `then` jumps."""

    tasks: tuple[Task, ...]
    index: Mapping[str, int]


@dataclass(frozen=True, slots=True, kw_only=True)
class Extension:
    """One `use.extensions` entry: which tasks it extends, when, and the task lists run around them."""

    name: str
    pointer: str
    kinds: frozenset[str] | None
    when: Evaluator | None = None
    before: TaskList | None = None
    after: TaskList | None = None

    def extends(self, kind: str) -> bool:
        """True when the extension applies to tasks of `kind` (before its `when` is looked at)."""
        return self.kinds is None or kind in self.kinds


@dataclass(frozen=True, slots=True, kw_only=True)
class Workflow:
    """A compiled workflow document."""

    definition: Mapping[str, Any]
    namespace: str
    name: str
    version: str
    do: TaskList
    input_from: Evaluator | None = None
    input_schema: Schema | None = None
    output_as: Evaluator | None = None
    output_schema: Schema | None = None
    timeout: Duration | None = None
    secrets: tuple[str, ...] = ()
    functions: Mapping[str, Task] = field(default_factory=dict)
    extensions: tuple[Extension, ...] = ()
    warnings: tuple[Issue, ...] = ()


class TaskCompiler(Protocol):
    """The compiling half of a task kind's module (`executor._run.Handler` adds running).

    A module may also define `jumps(spec)` for flow directives written inside the task (the cases of a `switch`).
    """

    def compile(self, compiler: Compiler, definition: Mapping[str, Any], pointer: str) -> Any:
        """Compile the kind's own parts of a task once; the result is the task's `spec`."""
        ...


class Compiler:
    """Compiles one definition, collecting every issue instead of stopping at the first."""

    def __init__(
        self, definition: Mapping[str, Any], registry: Mapping[str, TaskCompiler], options: EngineOptions | None = None
    ) -> None:
        self.definition = definition
        self.options = options or EngineOptions()
        self.use: Mapping[str, Any] = definition.get("use") or {}
        self.registry = registry
        self.issues: list[Issue] = []

    def issue(self, pointer: str, message: str, code: str = "invalid") -> None:
        """Record a problem found while compiling."""
        self.issues.append(Issue(path=pointer, message=message, code=code))

    def guard(self, pointer: str, build: Callable[[], Any]) -> Any:
        """Run one compile step; turn its failure into an issue at `pointer`."""
        try:
            return build()
        except Unsupported as exc:
            self.issue(pointer, f"not supported by this runtime: {exc}", code="unsupported")
        except (ValueError, TypeError, KeyError, jsonschema.SchemaError) as exc:
            self.issue(pointer, str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
        except WorkflowError as exc:
            self.issue(pointer, str(exc))
        except Exception as exc:  # a compile step's own bug still reports where, instead of crashing validation
            self.issue(pointer, f"cannot compile: {type(exc).__name__}: {exc}")
        return None

    def task_list(self, items: list[Mapping[str, Any]], pointer: str) -> TaskList:
        """Compile a task list (`[{name: task}, …]`) found at `pointer`."""
        tasks = tuple(
            self.task(name, body, f"{pointer}/{i}/{escape(name)}")
            for i, item in enumerate(items)
            for name, body in item.items()
        )
        index = {task.name: i for i, task in enumerate(tasks)}
        for task in tasks:
            for where, target in self.jumps(task):
                if target not in FLOW_DIRECTIVES and target not in index:
                    self.issue(where, f"`then` names no task of this list: {target!r}")
        return TaskList(tasks, index)

    def jumps(self, task: Task) -> list[tuple[str, str]]:
        """Each flow directive the task can follow, with where it is written: its `then` and its kind's own.

        A handler module may define `jumps(spec)` for directives inside the task (the cases of a `switch`).
        """
        found = [] if task.then is None else [(f"{task.pointer}/then", task.then)]
        kind_jumps = getattr(self.registry.get(task.kind), "jumps", None)
        if kind_jumps is not None and task.spec is not None:
            found.extend(kind_jumps(task.spec))
        return found

    def task(self, name: str, body: Mapping[str, Any], pointer: str) -> Task:
        """Compile one task: its common parts, then its kind's parts through the registry."""
        kind = next((k for k in TASK_KINDS if k in body), "")
        handler = self.registry.get(kind)
        spec = None
        if handler is None:
            self.issue(pointer, f"unknown task kind (keys: {sorted(body)})")
        else:
            spec = self.guard(pointer, lambda: handler.compile(self, body, pointer))
        return Task(name=name, pointer=pointer, kind=kind, definition=body, spec=spec, **self.common(body, pointer))

    def common(self, body: Mapping[str, Any], pointer: str) -> dict[str, Any]:
        """Compile the `taskBase` parts every task kind shares."""
        return {
            "if_": self.expression(body.get("if"), f"{pointer}/if"),
            "input_from": self.expression(_get(body, "input", "from"), f"{pointer}/input/from"),
            "input_schema": self.schema(_get(body, "input", "schema"), f"{pointer}/input/schema", "task input"),
            "output_as": self.expression(_get(body, "output", "as"), f"{pointer}/output/as"),
            "output_schema": self.schema(_get(body, "output", "schema"), f"{pointer}/output/schema", "task output"),
            "export_as": self.expression(_get(body, "export", "as"), f"{pointer}/export/as"),
            "export_schema": self.schema(_get(body, "export", "schema"), f"{pointer}/export/schema", "context"),
            "timeout": self.timeout(body.get("timeout"), f"{pointer}/timeout"),
            "then": body.get("then"),
        }

    def expression(self, value: Any, pointer: str) -> Evaluator | None:
        """Compile an expression-typed field (absent → None)."""
        return None if value is None else self.guard(pointer, lambda: compile_expression(value))

    def schema(self, block: Any, pointer: str, where: str) -> Schema | None:
        """Compile a schema block (absent → None)."""
        return None if block is None else self.guard(pointer, lambda: Schema(block, where))

    def timeout(self, value: Any, pointer: str) -> Duration | None:
        """Compile a `timeout`: inline `{after}` or the name of a `use.timeouts` entry."""
        if value is None:
            return None
        if isinstance(value, str):
            named = (self.use.get("timeouts") or {}).get(value)
            if named is None:
                self.issue(pointer, f"no timeout named {value!r} in use.timeouts")
                return None
            value = named
        duration: Duration | None = self.guard(pointer, lambda: duration_or_none(value["after"]))
        return duration


def _get(body: Mapping[str, Any], section: str, key: str) -> Any:
    part = body.get(section)
    return part.get(key) if isinstance(part, Mapping) else None


def compile_workflow(
    definition: Mapping[str, Any], registry: Mapping[str, TaskCompiler], options: EngineOptions | None = None
) -> Workflow:
    """Compile a validated definition; raises DocumentError listing every unsupported or dangling construct.

    `options` says what this runtime is configured to run (a disabled `run.shell` is refused here). Every
    expression is compiled in the document's `evaluate.mode`.
    """
    c = Compiler(definition, registry, options)
    _check_runtime(c, definition)
    with expression_mode((definition.get("evaluate") or {}).get("mode", "strict")):
        workflow = _compile(c, definition)
    if c.issues:
        raise DocumentError(tuple(c.issues))
    return workflow


def _check_runtime(c: Compiler, definition: Mapping[str, Any]) -> None:
    """Refuse a document written for a DSL other than 1.x, or with expressions in a language other than jq."""
    dsl = str(definition["document"]["dsl"])
    if not dsl.startswith("1."):
        c.issue(
            "/document/dsl",
            f"not supported by this runtime: DSL {dsl} (this runtime runs 1.x documents)",
            "unsupported",
        )
    language = (definition.get("evaluate") or {}).get("language", "jq")
    if language not in EXPRESSION_LANGUAGES:
        message = f"not supported by this runtime: runtime expressions in {language!r} (only jq)"
        c.issue("/evaluate/language", message, code="unsupported")


def _compile(c: Compiler, definition: Mapping[str, Any]) -> Workflow:
    doc = definition["document"]
    functions = {
        name: c.task(name, body, f"/use/functions/{escape(name)}")
        for name, body in (c.use.get("functions") or {}).items()
    }
    return Workflow(
        definition=definition,
        namespace=str(doc["namespace"]),
        name=str(doc["name"]),
        version=str(doc["version"]),
        do=c.task_list(definition["do"], "/do"),
        input_from=c.expression(_get(definition, "input", "from"), "/input/from"),
        input_schema=c.schema(_get(definition, "input", "schema"), "/input/schema", "workflow input"),
        output_as=c.expression(_get(definition, "output", "as"), "/output/as"),
        output_schema=c.schema(_get(definition, "output", "schema"), "/output/schema", "workflow output"),
        timeout=c.timeout(definition.get("timeout"), "/timeout"),
        secrets=tuple(c.use.get("secrets") or ()),
        functions=functions,
        extensions=_extensions(c, c.use.get("extensions") or []),
        warnings=schedule_warnings(definition),
    )


def _extensions(c: Compiler, items: list[Mapping[str, Any]]) -> tuple[Extension, ...]:
    """Compile `use.extensions` (a list of `{name: extension}`), in declaration order."""
    compiled = []
    for i, item in enumerate(items):
        for name, body in item.items():
            pointer = f"/use/extensions/{i}/{escape(name)}"
            before, after = body.get("before"), body.get("after")
            compiled.append(
                Extension(
                    name=name,
                    pointer=pointer,
                    kinds=EXTENSION_TARGETS[body["extend"]],
                    when=c.expression(body.get("when"), f"{pointer}/when"),
                    before=None if not before else c.task_list(before, f"{pointer}/before"),
                    after=None if not after else c.task_list(after, f"{pointer}/after"),
                )
            )
    return tuple(compiled)


def schedule_warnings(definition: Mapping[str, Any]) -> tuple[Issue, ...]:
    """What the runner does not do for the caller: a `schedule` is the caller's to honour (see docs/dsl-extensions.md).

    The runner receives one document per execution and starts it at once; repeating it (`every`, `cron`,
    `after`) or starting it on events (`on`) is the job of whoever sends the document.
    """
    schedule = definition.get("schedule")
    if not isinstance(schedule, Mapping) or not schedule:
        return ()
    kinds = ", ".join(f"`{key}`" for key in schedule)
    return (
        Issue(
            path="/schedule",
            message=(
                f"schedule ({kinds}) is the caller's to honour: this runner starts each execution it receives "
                "at once and runs it once"
            ),
            code="schedule",
        ),
    )
