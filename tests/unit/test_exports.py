"""The package roots are the import surface, and imports follow the design's direction."""

from __future__ import annotations

import ast
import importlib
import inspect
import re
from pathlib import Path

import pytest

import callbacks
import consumer
import executor

ROOT = Path(__file__).resolve().parents[2]


def _imports(package: str) -> dict[str, set[str]]:
    """Top-level packages imported by each module of `package` (relative imports resolve to the package itself)."""
    found: dict[str, set[str]] = {}
    for path in (ROOT / package).rglob("*.py"):
        if "_proto" in path.parts:
            continue
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom):
                names.add(package if node.level else (node.module or "").split(".")[0])
        found[str(path.relative_to(ROOT))] = names
    return found


def test_executor_imports_neither_callbacks_nor_consumer() -> None:
    """The engine talks to the outside only through its listener protocol."""
    offenders = {m for m, names in _imports("executor").items() if names & {"callbacks", "consumer"}}
    assert not offenders


def _local_imports(path: Path) -> set[str]:
    """The modules of its own package a module imports (`from .._run import Run` → `_run`), typing-only too."""
    package = path.relative_to(ROOT).parts[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.level and node.module:
            found.add(node.module.split(".")[0])
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith(f"{package}."):
            found.add((node.module or "").split(".")[1])
        elif isinstance(node, ast.Import):
            found |= {alias.name.split(".")[1] for alias in node.names if alias.name.startswith(f"{package}.")}
    return found


def test_task_handlers_and_the_walk_do_not_import_the_executor() -> None:
    """Handlers depend on `Run` and `Run` on no handler: no module but the package root imports `_engine`."""
    modules = [p for p in (ROOT / "executor").rglob("*.py") if p != ROOT / "executor" / "__init__.py"]
    offenders = {str(p.relative_to(ROOT)) for p in modules if "_engine" in _local_imports(p)}
    assert not offenders
    assert "tasks" not in _local_imports(ROOT / "executor" / "_run.py")


def test_callbacks_imports_neither_executor_nor_consumer() -> None:
    """Event delivery knows nothing of the engine or the ingresses."""
    offenders = {m for m, names in _imports("callbacks").items() if names & {"executor", "consumer"}}
    assert not offenders


INGRESSES = ("grpc", "temporal", "amqp")


def _ingress_of(module: str) -> str | None:
    """The ingress a consumer module belongs to: `amqp` for `amqp.py` and every `_amqp_*.py`, None for shared ones."""
    return next((name for name in INGRESSES if module in (name, f"_{name}") or module.startswith(f"_{name}_")), None)


def test_no_ingress_imports_another() -> None:
    """gRPC, Temporal and AMQP ingress modules, their private helpers included, stay independent of each other."""
    modules = [p for p in (ROOT / "consumer").glob("*.py") if _ingress_of(p.stem)]
    assert {_ingress_of(p.stem) for p in modules} == set(INGRESSES)
    crossings = {
        f"consumer/{path.name} imports consumer/{imported}.py"
        for path in modules
        for imported in _local_imports(path)
        if _ingress_of(imported) not in (None, _ingress_of(path.stem))
    }
    assert not crossings


def test_public_names_are_exported() -> None:
    """Each package root lists its public names in `__all__`, and every listed name exists."""
    for package in (executor, callbacks, consumer):
        exported = getattr(package, "__all__", None)
        if package is consumer and exported is None:
            continue
        assert exported, f"{package.__name__} has no __all__"
        assert all(hasattr(package, name) for name in exported)
    assert {"Executor", "ExecuteCommand", "ExecutionResult", "WorkflowError", "ProgressListener"} <= set(
        executor.__all__
    )


def _consumer_exceptions() -> dict[str, type[BaseException]]:
    """Every public exception class defined in a consumer module, by `module.Name`."""
    found: dict[str, type[BaseException]] = {}
    for path in (ROOT / "consumer").rglob("*.py"):
        if "_proto" in path.parts or path.name == "__main__.py":
            continue
        name = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        module = importlib.import_module(name)
        for attr, value in vars(module).items():
            is_exception = inspect.isclass(value) and issubclass(value, BaseException)
            if is_exception and value.__module__ == name and not attr.startswith("_"):
                found[f"{name}.{attr}"] = value
    return found


def test_consumer_exceptions_share_one_root_drawn_in_its_docstring() -> None:
    """Every exception of the consumer is a `ConsumerError`, and the tree in `consumer._errors` names each one."""
    tree = importlib.import_module("consumer._errors").__doc__
    exceptions = _consumer_exceptions()
    assert len(exceptions) >= 15
    assert not {name for name, cls in exceptions.items() if not issubclass(cls, consumer.ConsumerError)}
    assert tree is not None
    drawn = {"ConsumerError", *re.findall(r"[├└]── (\w+)", tree)}
    assert not {name for name in exceptions if name.rsplit(".", 1)[1] not in drawn}


def test_old_error_names_still_work_with_a_deprecation_warning() -> None:
    """`RuntimeError_` / `TimeoutError_` are the renamed classes for one more release, and say so when used."""
    assert {"WorkflowRuntimeError", "WorkflowTimeoutError"} <= set(executor.__all__)
    assert not {"RuntimeError_", "TimeoutError_"} & set(executor.__all__)
    with pytest.warns(DeprecationWarning, match="use WorkflowRuntimeError"):
        from executor import RuntimeError_
    with pytest.warns(DeprecationWarning, match="executor.TimeoutError_ is deprecated; use WorkflowTimeoutError"):
        old_timeout = executor.TimeoutError_
    assert (RuntimeError_, old_timeout) == (executor.WorkflowRuntimeError, executor.WorkflowTimeoutError)
    assert old_timeout("Timeout").to_dict()["type"].endswith("/errors/timeout")
    with pytest.raises(AttributeError, match="no attribute 'RuntimeError'"):
        executor.RuntimeError  # noqa: B018 - the lookup is what is under test
