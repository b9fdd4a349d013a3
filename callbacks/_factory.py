"""Choosing the sink from configuration values (the process config module reads the environment and calls this)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from callbacks._grpc_sink import GrpcSink
from callbacks._http_sink import HttpSink
from callbacks._sink import JsonLinesSink, Sink, StdoutSink


def sink_from_config(
    *,
    endpoint: str | None = None,
    use_tls: bool = False,
    api_key: str | None = None,
    http_url: str | None = None,
    http_headers: Mapping[str, str] | None = None,
    amqp_url: str | None = None,
    amqp_exchange: str | None = None,
    jsonl_path: str | Path | None = None,
) -> Sink:
    """The one sink the configuration names; stdout when it names none.

    At most one destination may be configured: sending to one while silently ignoring another that was also
    set would surprise whoever set it. `amqp_url` alone does not select the AMQP sink (the AMQP ingress uses it
    too); `amqp_exchange` does.

    Args:
        endpoint: gRPC control plane `host:port` (`STIGMER_SERVICE_ENDPOINT`).
        use_tls: TLS for the gRPC endpoint (`STIGMER_SERVICE_USE_TLS`).
        api_key: Bearer token for the gRPC endpoint (`STIGMER_SERVICE_API_KEY`).
        http_url: CloudEvents HTTP endpoint (`CALLBACK_HTTP_URL`).
        http_headers: Extra headers for the HTTP endpoint, e.g. its authorization header.
        amqp_url: Broker URL (`AMQP_URL`), needed with `amqp_exchange`.
        amqp_exchange: Exchange to publish events to (`CALLBACK_AMQP_EXCHANGE`).
        jsonl_path: JSON-lines file to append events to.

    Raises:
        ValueError: More than one destination, or an exchange without a broker URL.
    """
    chosen = [
        name
        for name, value in (
            ("endpoint", endpoint),
            ("http_url", http_url),
            ("amqp_exchange", amqp_exchange),
            ("jsonl_path", jsonl_path),
        )
        if value
    ]
    if len(chosen) > 1:
        raise ValueError(f"progress sink: more than one destination configured ({', '.join(chosen)})")
    if endpoint:
        return GrpcSink(endpoint, use_tls=use_tls, api_key=api_key)
    if http_url:
        return HttpSink(http_url, headers=http_headers)
    if amqp_exchange:
        if not amqp_url:
            raise ValueError("progress sink: amqp_exchange is set but amqp_url is not")
        from callbacks._amqp_sink import AmqpSink  # noqa: PLC0415 - aio-pika loads only where AMQP is configured

        return AmqpSink(amqp_url, amqp_exchange)
    if jsonl_path:
        return JsonLinesSink(jsonl_path)
    return StdoutSink()
