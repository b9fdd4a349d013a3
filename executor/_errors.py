"""The spec's error model: one root carrying RFC 7807 fields, one thin subclass per standard kind.

    WorkflowError                     any error a workflow can raise, catch or fault with
    ├── ConfigurationError    400     bad configuration or parameters
    ├── ValidationError       400     input/output/export schema failures
    ├── ExpressionError       400     a runtime expression that cannot be evaluated
    ├── AuthenticationError   401
    ├── AuthorizationError    403     also: a secret the workflow did not declare
    ├── WorkflowTimeoutError  408     a workflow or task timeout
    ├── CommunicationError    500     any call problem (carries the peer's status when it has one)
    └── WorkflowRuntimeError  500     everything else that goes wrong while running

A `raise` task with a custom type produces a plain `WorkflowError`. `RuntimeError_` and `TimeoutError_`, the old
names of the last two, still resolve (with a DeprecationWarning) for one more release.
"""

from __future__ import annotations

import warnings
from typing import Any, ClassVar

SPEC_ERROR_BASE = "https://serverlessworkflow.io/spec/1.0.0/errors/"

# Spellings of the standard types found in the spec text, the CTK and SDKs; a catch filter on any of them matches
# the same standard kind.
_STANDARD_BASES = (
    SPEC_ERROR_BASE,
    "https://serverlessworkflow.io/dsl/errors/types/",
    "https://open-workflow-specification.org/spec/1.0.0/errors/",
    "https://open-workflow-specification.org/dsl/errors/types/",
)
STANDARD_KINDS = frozenset(
    {
        "configuration",
        "validation",
        "expression",
        "authentication",
        "authorization",
        "timeout",
        "communication",
        "runtime",
    }
)


def canonical_type(type_uri: str) -> str:
    """Return the spec spelling of a standard error type; other types unchanged."""
    for base in _STANDARD_BASES:
        if type_uri.startswith(base):
            kind = type_uri[len(base) :]
            if kind in STANDARD_KINDS:
                return SPEC_ERROR_BASE + kind
    return type_uri


def spec_error(
    kind: str, title: str, *, status: int | None = None, detail: str | None = None, instance: str | None = None
) -> dict[str, Any]:
    """The spec's error object of a standard `kind` (`runtime`, `validation`, …): what events and results carry.

    For errors that are reported without being raised (a refused message, a cancelled run); the status defaults
    to the kind's.
    """
    error_cls = _BY_TYPE.get(SPEC_ERROR_BASE + kind, WorkflowError)
    return error_cls(title, detail=detail, status=status, type=SPEC_ERROR_BASE + kind, instance=instance).to_dict()


class WorkflowError(Exception):
    """An error in the spec's shape: `{type, status, title, detail?, instance?}`."""

    kind: ClassVar[str] = "runtime"
    default_status: ClassVar[int] = 500

    def __init__(
        self,
        title: str,
        *,
        detail: str | None = None,
        status: int | None = None,
        type: str | None = None,
        instance: str | None = None,
    ) -> None:
        super().__init__(title if detail is None else f"{title}: {detail}")
        self.type = type or SPEC_ERROR_BASE + self.kind
        self.status = self.default_status if status is None else status
        self.title = title
        self.detail = detail
        self.instance = instance

    def to_dict(self) -> dict[str, Any]:
        """The spec's error object, as events and results carry it."""
        out: dict[str, Any] = {"type": self.type, "status": self.status, "title": self.title}
        if self.detail is not None:
            out["detail"] = self.detail
        if self.instance is not None:
            out["instance"] = self.instance
        return out

    def at(self, instance: str) -> WorkflowError:
        """Set `instance` to the task pointer unless a deeper task already set it."""
        if self.instance is None:
            self.instance = instance
        return self

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> WorkflowError:
        """Build the error a `raise` task describes (type and status already evaluated)."""
        type_uri = str(data["type"])
        error_cls = _BY_TYPE.get(canonical_type(type_uri), WorkflowError)
        return error_cls(
            str(data.get("title") or type_uri.rsplit("/", 1)[-1]),
            detail=None if data.get("detail") is None else str(data["detail"]),
            status=int(data["status"]),
            type=type_uri,
            instance=data.get("instance"),
        )


class ConfigurationError(WorkflowError):
    kind = "configuration"
    default_status = 400


class ValidationError(WorkflowError):
    kind = "validation"
    default_status = 400


class ExpressionError(WorkflowError):
    kind = "expression"
    default_status = 400


class AuthenticationError(WorkflowError):
    kind = "authentication"
    default_status = 401


class AuthorizationError(WorkflowError):
    kind = "authorization"
    default_status = 403


class WorkflowTimeoutError(WorkflowError):
    kind = "timeout"
    default_status = 408


class CommunicationError(WorkflowError):
    kind = "communication"
    default_status = 500


class WorkflowRuntimeError(WorkflowError):
    kind = "runtime"
    default_status = 500


_BY_TYPE: dict[str, type[WorkflowError]] = {
    SPEC_ERROR_BASE + c.kind: c
    for c in (
        ConfigurationError,
        ValidationError,
        ExpressionError,
        AuthenticationError,
        AuthorizationError,
        WorkflowTimeoutError,
        CommunicationError,
        WorkflowRuntimeError,
    )
}


# Old name → its class; these aliases go in the release after the one that renamed them.
DEPRECATED_NAMES: dict[str, type[WorkflowError]] = {
    "RuntimeError_": WorkflowRuntimeError,
    "TimeoutError_": WorkflowTimeoutError,
}


def deprecated(name: str, module: str) -> type[WorkflowError]:
    """The class an old name stands for, with a DeprecationWarning naming the new one; AttributeError otherwise."""
    if name not in DEPRECATED_NAMES:
        raise AttributeError(f"module {module!r} has no attribute {name!r}")
    new = DEPRECATED_NAMES[name]
    warnings.warn(f"{module}.{name} is deprecated; use {new.__name__}", DeprecationWarning, stacklevel=3)
    return new


def __getattr__(name: str) -> type[WorkflowError]:
    return deprecated(name, __name__)
