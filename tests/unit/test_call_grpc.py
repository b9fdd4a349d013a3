"""`call: grpc` against a local Greeter service: proto from HTTP or file, unary and streaming, errors, metadata."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from executor import EngineOptions
from tests.fixtures.grpc_mock import PROTO, GreeterServer
from tests.fixtures.http_mock import MockServer
from tests.fixtures.runner import issues_of, run_with

FILES = EngineOptions(resource_roots=(str(PROTO.parent),))


@pytest.fixture(scope="module")
def greeter() -> Iterator[GreeterServer]:
    server = GreeterServer()
    yield server
    server.close()


def grpc_call(proto: str, port: int, method: str, arguments: str = "{}", auth: str = "") -> str:
    """A one-task document calling `greet.v1.Greeter/<method>` on 127.0.0.1:`port`."""
    authentication = f", authentication: {auth}" if auth else ""
    return f"""
        do:
          - c:
              call: grpc
              with:
                proto: {{endpoint: '{proto}'}}
                service: {{name: greet.v1.Greeter, host: 127.0.0.1, port: {port}{authentication}}}
                method: {method}
                arguments: {arguments}
        """


async def test_unary_call_with_proto_over_http(mock: MockServer, greeter: GreeterServer) -> None:
    """The proto is fetched and compiled; arguments are evaluated; zero-valued fields are present."""
    body = grpc_call(f"{mock.url}/protos/greeter.proto", greeter.port, "SayHello", "{name: '${ .who }'}")
    result, _ = await run_with(body, {"who": "Ada"})
    assert result.status.value == "completed", result.error
    assert result.output == {"message": "Hello, Ada!", "count": 0}


async def test_server_streaming_outputs_the_list(greeter: GreeterServer) -> None:
    """A server-streaming method outputs every message, in order."""
    body = grpc_call(PROTO.as_uri(), greeter.port, "Count", "{name: tick, times: 3}")
    result, _ = await run_with(body, options=FILES)
    assert [m["count"] for m in result.output] == [1, 2, 3]


async def test_grpc_status_becomes_the_communication_error(greeter: GreeterServer) -> None:
    """A failed call faults with the communication error carrying the numeric gRPC status."""
    result, _ = await run_with(grpc_call(PROTO.as_uri(), greeter.port, "Fail", "{name: x}"), options=FILES)
    assert result.error["type"].endswith("/communication")
    assert (result.error["status"], result.error["title"]) == (5, "gRPC NOT_FOUND")
    assert "no greeting for x" in result.error["detail"]


async def test_bearer_authentication_is_sent_as_metadata(greeter: GreeterServer) -> None:
    """`service.authentication` reaches the server as the `authorization` metadata."""
    body = grpc_call(PROTO.as_uri(), greeter.port, "Whoami", auth="{bearer: {token: t-9}}")
    result, _ = await run_with(body, options=FILES)
    assert result.output["message"] == "Bearer t-9"


async def test_unreachable_service_is_unavailable() -> None:
    """Nothing listening: the communication error with UNAVAILABLE (14)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    result, _ = await run_with(
        grpc_call(PROTO.as_uri(), port, "SayHello"),
        options=EngineOptions(resource_roots=FILES.resource_roots, http_timeout=5),
    )
    assert result.error["status"] == 14


async def test_bad_proto_and_unknown_method_are_configuration_errors(tmp_path: Path, greeter: GreeterServer) -> None:
    """A proto that does not compile, and a method the proto lacks, fault with the configuration error."""
    broken = tmp_path / "broken.proto"
    broken.write_text('syntax = "proto3";\nmessage {')
    options = EngineOptions(resource_roots=(str(tmp_path), str(PROTO.parent)))
    bad, _ = await run_with(grpc_call(broken.as_uri(), greeter.port, "SayHello"), options=options)
    unknown, _ = await run_with(grpc_call(PROTO.as_uri(), greeter.port, "Nope"), options=options)
    assert bad.error["type"].endswith("/configuration")
    assert bad.error["title"] == "Invalid proto"
    assert unknown.error["title"] == "Unknown gRPC method"


async def test_arguments_that_do_not_fit_the_message(greeter: GreeterServer) -> None:
    """An argument the request message lacks is the configuration error."""
    result, _ = await run_with(grpc_call(PROTO.as_uri(), greeter.port, "SayHello", "{nope: 1}"), options=FILES)
    assert result.error["title"] == "Invalid gRPC arguments"


async def test_denied_host_is_refused(greeter: GreeterServer) -> None:
    """The outbound policy applies to gRPC targets."""
    options = EngineOptions(resource_roots=FILES.resource_roots, outbound_deny=("127.0.0.1/32",))
    result, _ = await run_with(grpc_call(PROTO.as_uri(), greeter.port, "SayHello"), options=options)
    assert result.error["status"] == 403


def test_digest_over_grpc_is_refused_at_validation() -> None:
    """Digest authentication cannot work over gRPC."""
    issues = issues_of(grpc_call("http://x/p.proto", 1, "M", auth="{digest: {username: a, password: b}}"))
    assert [i.code for i in issues] == ["unsupported"]
