"""The gRPC sink: `workflow_runner.v1.ProgressSink/Report` on the control plane, events in the Protobuf format.

Status codes are read as `proto/workflow_runner/v1/progress.proto` documents them: a refusal for good
(INVALID_ARGUMENT, PERMISSION_DENIED, ...) raises `SinkRefusedError`, ALREADY_EXISTS counts as delivered (the
receiver has the events), anything else raises `SinkUnavailableError` so the reporter retries. A batch bigger
than the receiver's message limit would be refused as RESOURCE_EXHAUSTED forever, so batches are split into calls
of at most `max_message_bytes`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import grpc
import grpc.aio

from callbacks._errors import SinkRefusedError, SinkUnavailableError
from callbacks._event import CloudEvent
from callbacks._proto.io.cloudevents.v1 import cloudevents_pb2 as ce_pb
from callbacks._proto.workflow_runner.v1 import progress_pb2 as pb
from callbacks._wire import to_proto

REPORT_METHOD = "/workflow_runner.v1.ProgressSink/Report"
DEFAULT_MAX_MESSAGE_BYTES = 4 * 1024 * 1024 - 64 * 1024  # gRPC's default receive limit, less headroom
_PERMANENT = frozenset(
    {
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.FAILED_PRECONDITION,
        grpc.StatusCode.OUT_OF_RANGE,
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.UNIMPLEMENTED,
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.UNAUTHENTICATED,
    }
)


class GrpcSink:
    """Reports batches to a `ProgressSink` gRPC service.

    Args:
        endpoint: gRPC target, `host:port`.
        use_tls: Use TLS with the system roots (or `root_certificates`).
        api_key: Sent as `authorization: Bearer <key>` metadata on every call.
        timeout: Deadline of one call, in seconds.
        root_certificates: PEM roots for TLS instead of the system ones.
        max_reconnect_backoff: Cap of the channel's own reconnect backoff, in seconds. gRPC's default (120 s)
            would leave a recovered control plane unused for minutes.
        max_message_bytes: Upper bound of one call's request size.
    """

    def __init__(
        self,
        endpoint: str,
        *,
        use_tls: bool = False,
        api_key: str | None = None,
        timeout: float = 10.0,
        root_certificates: bytes | None = None,
        max_reconnect_backoff: float = 5.0,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    ) -> None:
        self.endpoint = endpoint
        self._use_tls = use_tls
        self._roots = root_certificates
        self._metadata = (("authorization", f"Bearer {api_key}"),) if api_key else ()
        self._timeout = timeout
        self._backoff_ms = max(100, int(max_reconnect_backoff * 1000))
        self._max_bytes = max_message_bytes
        self._channel: grpc.aio.Channel | None = None

    def __repr__(self) -> str:
        return f"GrpcSink({self.endpoint!r}, use_tls={self._use_tls})"

    def _connect(self) -> grpc.aio.Channel:
        options = [
            ("grpc.max_reconnect_backoff_ms", self._backoff_ms),
            ("grpc.initial_reconnect_backoff_ms", min(1000, self._backoff_ms)),
            ("grpc.min_reconnect_backoff_ms", min(1000, self._backoff_ms)),
        ]
        if self._use_tls:
            credentials = grpc.ssl_channel_credentials(root_certificates=self._roots)
            return grpc.aio.secure_channel(self.endpoint, credentials, options=options)
        return grpc.aio.insecure_channel(self.endpoint, options=options)

    async def send(self, batch: Sequence[CloudEvent]) -> None:
        """Reports the batch in one call, or a few when it is larger than `max_message_bytes`."""
        if self._channel is None:
            self._channel = self._connect()
        report = self._channel.unary_unary(
            REPORT_METHOD,
            request_serializer=pb.ReportRequest.SerializeToString,
            response_deserializer=pb.ReportResponse.FromString,
        )
        for chunk in self._chunks([to_proto(event) for event in batch]):
            try:
                await report(pb.ReportRequest(events=chunk), metadata=self._metadata, timeout=self._timeout)
            except grpc.aio.AioRpcError as exc:
                _raise_mapped(exc)

    def _chunks(self, events: list[ce_pb.CloudEvent]) -> Iterator[list[ce_pb.CloudEvent]]:
        chunk: list[ce_pb.CloudEvent] = []
        size = 0
        for event in events:
            event_size = event.ByteSize() + 8  # field tag and length prefix of the repeated field
            if event_size > self._max_bytes:
                raise SinkRefusedError(f"event larger than {self._max_bytes} bytes")
            if chunk and size + event_size > self._max_bytes:
                yield chunk
                chunk, size = [], 0
            chunk.append(event)
            size += event_size
        if chunk:
            yield chunk

    async def close(self) -> None:
        """Closes the channel."""
        if self._channel is not None:
            channel, self._channel = self._channel, None
            await channel.close()


def _raise_mapped(exc: grpc.aio.AioRpcError) -> None:
    code = exc.code()
    if code == grpc.StatusCode.ALREADY_EXISTS:
        return
    if code in _PERMANENT:
        raise SinkRefusedError(code.name) from exc
    raise SinkUnavailableError(code.name, retry_after=_pushback(exc)) from exc


def _pushback(exc: grpc.aio.AioRpcError) -> float | None:
    """The server's requested delay: `retry-after` seconds or gRPC's `grpc-retry-pushback-ms`."""
    for key, value in exc.trailing_metadata() or ():
        try:
            if key == "retry-after":
                return float(value)
            if key == "grpc-retry-pushback-ms":
                return float(value) / 1000
        except (TypeError, ValueError):
            return None
    return None
