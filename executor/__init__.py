"""The DSL engine: document model and validation, runtime expressions, task handlers, and the executor."""

from ._bus import EventBus, TenantBus
from ._command import DEFAULT_TENANT, Checkpoint, ExecuteCommand, ExecutionResult, Source, Status
from ._document import Document, DocumentError, Issue, Limits, load_document, parse_yaml, validate_definition
from ._engine import Executor
from ._errors import (
    AuthenticationError,
    AuthorizationError,
    CommunicationError,
    ConfigurationError,
    ExpressionError,
    ValidationError,
    WorkflowError,
    WorkflowRuntimeError,
    WorkflowTimeoutError,
)
from ._errors import deprecated as _deprecated
from ._expr import json_safe
from ._listener import WORKFLOW_CANCELLED, WORKFLOW_FAULTED, LifecycleEvent, NullListener, ProgressListener
from ._options import DEFAULT_OUTBOUND_DENY, EngineOptions
from ._probe import CURRENT as EVALUATING_AT
from ._probe import Probe, Where
from ._probe import install as install_probe

__all__ = [
    "DEFAULT_OUTBOUND_DENY",
    "DEFAULT_TENANT",
    "EVALUATING_AT",
    "WORKFLOW_CANCELLED",
    "WORKFLOW_FAULTED",
    "AuthenticationError",
    "AuthorizationError",
    "Checkpoint",
    "CommunicationError",
    "ConfigurationError",
    "Document",
    "DocumentError",
    "EngineOptions",
    "EventBus",
    "ExecuteCommand",
    "ExecutionResult",
    "Executor",
    "ExpressionError",
    "Issue",
    "LifecycleEvent",
    "Limits",
    "NullListener",
    "Probe",
    "ProgressListener",
    "Source",
    "Status",
    "TenantBus",
    "ValidationError",
    "Where",
    "WorkflowError",
    "WorkflowRuntimeError",
    "WorkflowTimeoutError",
    "install_probe",
    "json_safe",
    "load_document",
    "parse_yaml",
    "validate_definition",
]


def __getattr__(name: str) -> type[WorkflowError]:
    """`RuntimeError_` / `TimeoutError_`: the old names of `WorkflowRuntimeError` / `WorkflowTimeoutError`."""
    return _deprecated(name, __name__)
