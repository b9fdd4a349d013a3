"""Progress events and their delivery: the CloudEvents envelope, the reporter (outbox), sinks, a reference sink.

Typical wiring (the process config decides the sink)::

    reporter = Reporter(sink_from_config(endpoint="control-plane:443", use_tls=True, api_key=key))
    await reporter.start()
    await reporter.submit(event)            # never waits for the network, only for room in the outbox
    await reporter.flush(execution_id, 30)  # the terminal event is confirmed: the ingress may acknowledge
    left = await reporter.stop(grace=10)    # undelivered events per execution, also dead-lettered
"""

from callbacks._deadletter import DEFAULT_DEAD_LETTER_PATH
from callbacks._errors import (
    CallbackError,
    DeadLetteredError,
    FlushTimeoutError,
    ReporterClosedError,
    SinkError,
    SinkRefusedError,
    SinkUnavailableError,
)
from callbacks._event import DEFAULT_SOURCE, SPEC_VERSION, CloudEvent, event_id
from callbacks._factory import sink_from_config
from callbacks._grpc_sink import GrpcSink
from callbacks._http_sink import HttpSink
from callbacks._refsink import ReferenceSink
from callbacks._refsink_cli import main as reference_sink_main
from callbacks._refsink_cli import serve_reference_sink
from callbacks._reporter import DeliveryStats, Reporter
from callbacks._retry import RetryPolicy, is_transient
from callbacks._sink import JsonLinesSink, Sink, StdoutSink
from callbacks._wire import invalid_reason, proto_to_dict, to_proto

__all__ = [
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
    "invalid_reason",
    "is_transient",
    "proto_to_dict",
    "reference_sink_main",
    "serve_reference_sink",
    "sink_from_config",
    "to_proto",
]


def __getattr__(name: str) -> object:
    # `AmqpSink` pulls in aio-pika (a fifth of the CLI's start-up): imported on first use only.
    if name == "AmqpSink":
        from callbacks._amqp_sink import AmqpSink  # noqa: PLC0415

        return AmqpSink
    raise AttributeError(f"module 'callbacks' has no attribute {name!r}")
