"""Ingresses and process wiring: configuration, the execution service every ingress uses, the gRPC ingress, the app.

    settings = Settings.from_env(os.environ)      # ConfigError names the bad variable
    await App(settings).serve()                    # until SIGTERM / SIGINT, then drains

An ingress is one class with `start()` and `stop(grace)`, built from `(settings, service)` and registered by name
in `INGRESS_REGISTRY`; it runs commands through `ExecutionService.start` / `run`.
"""

from ._errors import ConsumerError, IngressFailedError, StartupError
from ._events import JsonLinesListener, to_cloudevent
from ._logging import configure_logging
from ._metrics import Metrics
from ._service import (
    CapacityError,
    ConflictError,
    Execution,
    ExecutionService,
    ExecutionState,
    IntakeClosedError,
    ServiceError,
    UnknownExecutionError,
)
from .app import INGRESS_REGISTRY, App, Ingress, build_sink, load_ingress
from .config import (
    INGRESSES,
    AmqpSettings,
    CallbackSettings,
    ConfigError,
    GrpcSettings,
    Settings,
    TemporalSettings,
    known_variables,
)
from .grpc import GrpcIngress

__all__ = [
    "INGRESSES",
    "INGRESS_REGISTRY",
    "AmqpSettings",
    "App",
    "CallbackSettings",
    "CapacityError",
    "ConfigError",
    "ConflictError",
    "ConsumerError",
    "Execution",
    "ExecutionService",
    "ExecutionState",
    "GrpcIngress",
    "GrpcSettings",
    "Ingress",
    "IngressFailedError",
    "IntakeClosedError",
    "JsonLinesListener",
    "Metrics",
    "ServiceError",
    "Settings",
    "StartupError",
    "TemporalSettings",
    "UnknownExecutionError",
    "build_sink",
    "configure_logging",
    "known_variables",
    "load_ingress",
    "to_cloudevent",
]
