"""Errors of the process as a whole (the service's own refusals live in `consumer._service`)."""

from __future__ import annotations


class StartupError(RuntimeError):
    """The process cannot start as configured: one line naming the cause; `serve` prints it and exits 2.

    Ingresses raise it from `start()` for problems the operator must fix (an address in use, a broker or Temporal
    frontend that refuses the credentials), so the message should name the variable involved.
    """


class IngressFailedError(RuntimeError):
    """An ingress stopped working after start-up (a Temporal worker's fatal error): `serve` drains, stops and
    exits 1, so the orchestrator restarts the process instead of leaving a runner that takes no work."""
