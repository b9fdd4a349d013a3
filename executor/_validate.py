"""Structural validation of DSL 1.0.x workflow definitions, equivalent to the official JSON Schema.

The official schema (`schemas/1.0.3/workflow.yaml`) is mirrored as a table of schema nodes: `_validate_defs`
holds its shared definitions, `_validate_tasks` its task types; this module adds the top level. Documents written
for 1.0.0-1.0.2 validate too (see `_validate_tasks` for `arguments`; `set` may be an expression string since 1.0.1).
Beyond the schema, task names must be unique within a list (flow directives jump by name), and the `format`s the
schema names (`date-time`, `json-pointer`) are checked. This module never decides what a runtime supports.
"""

from __future__ import annotations

from typing import Any

from ._validate_base import STR, Arr, Issue, MapOf, Named, Obj, Str
from ._validate_defs import (
    AUTHENTICATION_POLICY,
    CATALOG,
    DOCUMENT,
    DURATION,
    ERROR,
    EVENT_CONSUMPTION_STRATEGY,
    INPUT,
    OUTPUT,
    RETRY_POLICY,
    TIMEOUT,
    TIMEOUT_OR_NAME,
)
from ._validate_tasks import TASK, TASK_LIST

_EXTENSION_TARGETS = ("call", "composite", "emit", "for", "listen", "raise", "run", "set", "switch", "try", "wait")
_EXTENSION = Obj(
    {"extend": Str(enum=(*_EXTENSION_TARGETS, "all")), "when": STR, "before": TASK_LIST, "after": TASK_LIST},
    required=["extend"],
)
_USE = Obj(
    {
        "authentications": MapOf(AUTHENTICATION_POLICY),
        "errors": MapOf(ERROR),
        "extensions": Named(_EXTENSION, what="extension"),
        "functions": MapOf(TASK),
        "retries": MapOf(RETRY_POLICY),
        "secrets": Arr(STR),
        "timeouts": MapOf(TIMEOUT),
        "catalogs": MapOf(CATALOG),
    }
)
_SCHEDULE = Obj({"every": DURATION, "cron": STR, "after": DURATION, "on": EVENT_CONSUMPTION_STRATEGY})
# `evaluate` is in the DSL reference since 1.0 but only in the schema after 1.0.3; the top level is open anyway.
_EVALUATE = Obj({"language": STR, "mode": Str(enum=("strict", "loose"))})
_WORKFLOW = Obj(
    {
        "document": DOCUMENT,
        "input": INPUT,
        "use": _USE,
        "do": TASK_LIST,
        "timeout": TIMEOUT_OR_NAME,
        "output": OUTPUT,
        "schedule": _SCHEDULE,
        "evaluate": _EVALUATE,
    },
    required=["document", "do"],
    closed=False,
)


def validate_definition(definition: Any) -> list[Issue]:
    """Check a workflow definition's structure against DSL 1.0.x.

    Args:
        definition: The document as plain JSON-like data (dicts, lists, str, int, float, bool, None).

    Returns:
        Every problem found, in document order; `[]` when the definition is valid.
    """
    issues: list[Issue] = []
    _WORKFLOW.check(definition, "", issues)
    return issues
