"""`run.shell` and `run.script`: a local process, its result shaped by `return`, a non-zero exit handled.

- `shell.command` runs under `/bin/sh -c`. `arguments` in the list form (DSL 1.0.3) are appended to the command,
  each shell-quoted, so they arrive as separate words whatever they contain; in the map form of earlier 1.0.x
  each entry appends its key and then, unless null, its value (`{--name: Ada}` → `--name Ada`).
- `script` runs `python` (the configured interpreter, isolated mode `-I`) or `js` (node) on the code or on the
  `source` resource. List-form `arguments` are the script's argv (`sys.argv[1:]`, `process.argv.slice(2)`);
  map-form ones are defined as variables of those names before the code runs (their values as JSON).
- `command`, `code`, argument values, `environment` values and `stdin` may be `${ … }` expressions (only whole
  values, like every free-form value; `${` inside a longer string is left to the shell).
- The environment holds only `PATH` (from the configuration) and what the task declares (`executor._process`); a
  declared name that cannot be a variable (empty, or holding `=`) is the configuration error.
- `return`: `stdout` (default) and `stderr` without the final line break, `code`, `all` → `{code, stdout,
  stderr}`, `none` → null. A non-zero exit code faults the task with the runtime error (500) carrying the exit code
  in the title and the end of stderr in the detail — unless `return` is `code` or `all`, where the code is the
  answer asked for.
- `await: false` starts the process and completes at once with the task's input; the process runs on, bounded by
  the configured process timeout, and is killed when the executor closes.
"""

from __future__ import annotations

import shlex
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from .._endpoint import Endpoint, compile_endpoint, load_resource
from .._errors import ConfigurationError, WorkflowRuntimeError
from .._expr import compile_template
from .._http import scalar_text
from .._model import Unsupported
from .._process import ProcessResult, ProcessSpec, environment, run_process

if TYPE_CHECKING:
    from .._expr import Evaluator, Vars
    from .._model import Compiler, Task
    from .._run import Run

_DETAIL = 1000
_SCRIPT_FILES = {"python": "script.py", "js": "script.js"}


@dataclass(frozen=True, slots=True, kw_only=True)
class ProcessTask:
    """A compiled `run.shell` or `run.script`."""

    language: str  # "shell", "python" or "js"
    interpreter: str
    code: Evaluator | None
    source: Endpoint | None
    arguments: Evaluator | None
    environment: Evaluator | None
    stdin: Evaluator | None
    await_: bool
    returns: str

    async def run(self, rt: Run, task: Task, data: Any, variables: Vars) -> Any:
        """Start the process; await it (or not) and shape its result."""
        spec = await self._spec(rt, data, variables)
        options = rt.executor.options
        work = run_process(spec, time_limit=options.process_timeout, limit=options.max_process_output_bytes)
        if not self.await_:
            rt.executor.io.detach(work, f"process of {task.pointer}")
            return data
        return shape(await work, self.returns)

    async def _spec(self, rt: Run, data: Any, variables: Vars) -> ProcessSpec:
        code = await self._code(rt, data, variables)
        arguments = None if self.arguments is None else self.arguments(data, variables)
        declared = None if self.environment is None else self.environment(data, variables)
        env = environment(rt.executor.options.process_path, declared)
        stdin = None if self.stdin is None else scalar_text(self.stdin(data, variables))
        if self.language == "shell":
            return ProcessSpec(argv=["/bin/sh", "-c", code + _shell_words(arguments)], stdin=stdin, env=env)
        name = _SCRIPT_FILES[self.language]
        argv = [self.interpreter, *(["-I"] if self.language == "python" else []), name]
        if isinstance(arguments, dict):
            code = _prelude(self.language, arguments) + code
        elif arguments:
            argv += [scalar_text(a) for a in arguments]
        return ProcessSpec(argv=argv, stdin=stdin, env=env, files={name: code.encode()})

    async def _code(self, rt: Run, data: Any, variables: Vars) -> str:
        if self.source is not None:
            resource = await load_resource(rt, self.source, data, variables)
            return resource.content.decode("utf-8", errors="replace")
        assert self.code is not None
        code = self.code(data, variables)
        if not isinstance(code, str):
            raise ConfigurationError("Invalid code", detail=f"expected text, got {type(code).__name__}")
        return code


def compile(compiler: Compiler, run_: Mapping[str, Any]) -> ProcessTask:
    """Compile `run.shell` or `run.script`, refusing forms this runner is not configured to run."""
    if "shell" in run_:
        if not compiler.options.allow_shell:
            raise Unsupported("`run.shell` is disabled in this runner's configuration")
        shell = run_["shell"]
        return _task(run_, shell, language="shell", interpreter="/bin/sh", code=compile_template(shell["command"]))
    if not compiler.options.allow_script:
        raise Unsupported("`run.script` is disabled in this runner's configuration")
    script = run_["script"]
    language = str(script["language"]).lower()
    code = compile_template(script["code"]) if "code" in script else None
    source = compile_endpoint(compiler.use, script["source"]["endpoint"]) if "source" in script else None
    return _task(
        run_, script, language=language, interpreter=_interpreter(compiler, language), code=code, source=source
    )


def _task(
    run_: Mapping[str, Any],
    process: Mapping[str, Any],
    *,
    language: str,
    interpreter: str,
    code: Evaluator | None,
    source: Endpoint | None = None,
) -> ProcessTask:
    return ProcessTask(
        language=language,
        interpreter=interpreter,
        code=code,
        source=source,
        arguments=_template(process.get("arguments")),
        environment=_template(process.get("environment")),
        stdin=_template(process.get("stdin")),
        await_=bool(run_.get("await", True)),
        returns=run_.get("return", "stdout"),
    )


def _template(value: Any) -> Evaluator | None:
    return None if value is None else compile_template(value)


def _interpreter(compiler: Compiler, language: str) -> str:
    options = compiler.options
    if language == "python":
        return options.python_executable
    if language == "js":
        node = options.node_executable or shutil.which("node")
        if node is None:
            raise Unsupported("`run.script` in js: no node executable on this runner")
        return node
    raise Unsupported(f"`run.script` in {language!r} (python and js are)")


def _shell_words(arguments: Any) -> str:
    if isinstance(arguments, dict):
        words = [w for k, v in arguments.items() for w in ([k] if v is None else [k, v])]
    else:
        words = list(arguments or [])
    return "".join(" " + shlex.quote(scalar_text(w)) for w in words)


def _prelude(language: str, arguments: Mapping[str, Any]) -> str:
    lines = []
    for name, value in arguments.items():
        if not str(name).isidentifier():
            raise ConfigurationError("Invalid script argument", detail=f"{name!r} cannot name a variable")
        literal = orjson.dumps(value).decode()
        lines.append(
            f"{name} = __import__('json').loads({literal!r})" if language == "python" else f"const {name} = {literal};"
        )
    return "\n".join(lines) + "\n"


def shape(result: ProcessResult, returns: str) -> Any:
    """The task output `return` asks for; a non-zero exit faults unless the code itself was asked for."""
    if result.code != 0 and returns not in ("code", "all"):
        tail = (result.stderr or result.stdout)[-_DETAIL:]
        raise WorkflowRuntimeError(f"Process exited with code {result.code}", detail=tail or None)
    if returns == "all":
        return result.to_dict()
    if returns == "code":
        return result.code
    if returns == "none":
        return None
    return result.stderr if returns == "stderr" else result.stdout
