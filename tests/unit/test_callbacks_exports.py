"""The public surface of `callbacks` and the design's import direction."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import callbacks

PACKAGE = Path(callbacks.__file__).parent
EXPECTED = {
    "DEFAULT_DEAD_LETTER_PATH",
    "DEFAULT_SOURCE",
    "SPEC_VERSION",
    "AmqpSink",
    "CallbackError",
    "CloudEvent",
    "DeadLetteredError",
    "DeliveryStats",
    "FlushTimeoutError",
    "GrpcSink",
    "HttpSink",
    "JsonLinesSink",
    "ReferenceSink",
    "Reporter",
    "ReporterClosedError",
    "RetryPolicy",
    "Sink",
    "SinkError",
    "SinkRefusedError",
    "SinkUnavailableError",
    "StdoutSink",
    "event_id",
    "is_transient",
    "reference_sink_main",
    "invalid_reason",
    "proto_to_dict",
    "to_proto",
    "serve_reference_sink",
    "sink_from_config",
}


def test_exports_are_pinned() -> None:
    """`callbacks.__all__` is exactly the documented public API, and every name resolves."""
    assert set(callbacks.__all__) == EXPECTED
    for name in callbacks.__all__:
        assert getattr(callbacks, name) is not None


def test_public_names_live_in_private_modules() -> None:
    """Classes and functions are defined in `callbacks._…` modules and re-exported from the root."""
    for name in callbacks.__all__:
        value = getattr(callbacks, name)
        if inspect.isclass(value) or inspect.isfunction(value):
            assert value.__module__.startswith("callbacks._"), (name, value.__module__)


def _imported_roots(path: Path) -> set[str]:
    roots: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


def test_callbacks_imports_neither_executor_nor_consumer() -> None:
    """The delivery package stays independent of the engine and the ingresses."""
    for path in PACKAGE.rglob("*.py"):
        assert not _imported_roots(path) & {"executor", "consumer"}, path
