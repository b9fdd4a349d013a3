"""The DSL engine: document model and validation, runtime expressions, task handlers, and the executor."""

from ._bus import EventBus, TenantBus
from ._command import DEFAULT_TENANT, Checkpoint, ExecuteCommand, ExecutionResult, Source, Status
from ._depth import MAX_JSON_DEPTH, too_deep
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
    spec_error,
)
from ._errors import deprecated as _deprecated
from ._expr import json_safe
from ._listener import WORKFLOW_CANCELLED, WORKFLOW_FAULTED, LifecycleEvent, NullListener, ProgressListener
from ._mask import MASK, MASKS, Mask, MaskRegistry, masked_in_logs, secret_scalars
from ._options import DEFAULT_OUTBOUND_DENY, EngineOptions
from ._probe import CURRENT as EVALUATING_AT
from ._probe import Probe, Where
from ._probe import install as install_probe
from ._validate_base import describe_issues, escape, issue_text

__all__ = [
    "DEFAULT_OUTBOUND_DENY",
    "DEFAULT_TENANT",
    "EVALUATING_AT",
    "MASK",
    "MASKS",
    "MAX_JSON_DEPTH",
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
    "Mask",
    "MaskRegistry",
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
    "describe_issues",
    "escape",
    "install_probe",
    "issue_text",
    "json_safe",
    "load_document",
    "masked_in_logs",
    "parse_yaml",
    "secret_scalars",
    "spec_error",
    "too_deep",
    "validate_definition",
]


def __getattr__(name: str) -> type[WorkflowError]:
    """`RuntimeError_` / `TimeoutError_`: the old names of `WorkflowRuntimeError` / `WorkflowTimeoutError`."""
    return _deprecated(name, __name__)
