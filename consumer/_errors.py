"""Exceptions of the consumer: one root, `ConsumerError`, for the process, its ingresses and the execution service.

    ConsumerError
    ├── ConfigError              config        a variable stops start-up; names it (also a ValueError)
    ├── StartupError             here          cannot start as configured: `serve` exits 2 (also a RuntimeError)
    │   └── BindError            grpc          the gRPC address is in use or not this host's
    ├── IngressFailedError       here          an ingress stopped working after start-up: `serve` exits 1
    ├── ServiceError             _service      the service refuses a request; each ingress maps it to its terms
    │   ├── IntakeClosedError                  shutting down: no new executions
    │   ├── CapacityError                      the maximum of concurrent executions is running
    │   │   └── RunEndingError                 a later attempt waits: an earlier attempt's run is being cancelled
    │   ├── ConflictError                      the execution id is taken by a different request
    │   └── UnknownExecutionError              no execution with that id (also a LookupError)
    ├── DecodeError              _decode       a request any ingress cannot turn into a command (a ValueError)
    ├── TopologyError            _amqp_topology  the broker refused the queue set-up (also a RuntimeError)
    ├── Rejection                _amqp_settle  settlement: dead-letter the delivery, with a code and a reason
    ├── Retry                    _amqp_settle  settlement: requeue the delivery after the delay
    ├── Release                  _amqp_settle  settlement: leave the delivery for the broker (shutting down)
    ├── SubmitError              _amqp_submit  `submit --amqp` could not hand the message over (also a RuntimeError)
    ├── PayloadError             payloads      the payload store cannot store or read a payload (names the reference)
    │   ├── PayloadMissingError                the object is gone, or in another store (also a LookupError)
    │   ├── PayloadCorruptError                size or sha256 differ, or it cannot be decrypted or decoded
    │   ├── InvalidReferenceError              a reference object is malformed (also a ValueError)
    │   └── ClaimError                         a command's `*_ref` cannot be used; `path` locates it
    └── UsageError               cli           a command-line mistake: stderr, exit 2

Each class lives beside the code that raises it (the module named above, under `consumer`); the built-in base each
had before the root existed is kept, so `except ValueError` around configuration still works. Errors of the engine
(`executor.WorkflowError`, `executor.DocumentError`) and of delivery (`callbacks.CallbackError`) have roots of
their own. Messages are one line for operators and never carry payloads or secrets.
"""

from __future__ import annotations


class ConsumerError(Exception):
    """Root of every exception the consumer package raises on purpose."""


class StartupError(ConsumerError, RuntimeError):
    """The process cannot start as configured: one line naming the cause; `serve` prints it and exits 2.

    Ingresses raise it from `start()` for problems the operator must fix (an address in use, a broker or Temporal
    frontend that refuses the credentials), so the message should name the variable involved.
    """


class IngressFailedError(ConsumerError, RuntimeError):
    """An ingress stopped working after start-up (a Temporal worker's fatal error): `serve` drains, stops and
    exits 1, so the orchestrator restarts the process instead of leaving a runner that takes no work."""
