"""gRPC without generated code: a proto compiled at run time into a descriptor pool, then a dynamic call.

The proto text is compiled once per distinct content (`grpc_tools.protoc` in a child process, so its error
messages can be reported) into a `FileDescriptorSet`; the well-known types (`google/protobuf/*.proto`) may be
imported, other imports may not (the proto resource is a single file). Arguments are converted with protobuf's
JSON mapping (field names as in the proto or in lowerCamelCase); results come back with the proto's field names
and every field present, zero values included. Unary and server-streaming methods are natural fits (the latter
outputs the list of messages); a client- or bidirectional-streaming method is sent the one `arguments` message.

Failures: a proto that does not compile, an unknown service or method, or arguments that do not fit the message
are configuration errors (400). A call that fails is the communication error whose `status` is the numeric gRPC
status code (e.g. 5 for NOT_FOUND, 14 for UNAVAILABLE) and whose title names it (`gRPC NOT_FOUND`).
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import importlib.util
import os
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool, json_format, message_factory
from google.protobuf.descriptor import MethodDescriptor

from ._errors import CommunicationError, ConfigurationError

_PROTOC_EXCERPT = 1000


@functools.cache
def _well_known_protos() -> Path:
    """grpc_tools ships `google/protobuf/*.proto`; found without importing it (it has no type information)."""
    spec = importlib.util.find_spec("grpc_tools")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigurationError("gRPC unavailable", detail="grpcio-tools is not installed on this runner")
    return Path(next(iter(spec.submodule_search_locations))) / "_proto"


async def compile_proto(source: bytes, cache: dict[str, Any]) -> descriptor_pool.DescriptorPool:
    """The descriptor pool for `source`, compiled on first sight of this content."""
    key = hashlib.sha256(source).hexdigest()
    if key not in cache:
        cache[key] = _pool(await _protoc(source))
    pool: descriptor_pool.DescriptorPool = cache[key]
    return pool


async def _protoc(source: bytes) -> bytes:
    with tempfile.TemporaryDirectory(prefix="wf-proto-") as workdir:
        await asyncio.to_thread(Path(workdir, "service.proto").write_bytes, source)
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            f"-I{workdir}",
            f"-I{_well_known_protos()}",
            "--include_imports",
            "--descriptor_set_out=/dev/stdout",
            "service.proto",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=dict(os.environ),
        )
        out, err = await proc.communicate()
    if proc.returncode != 0:
        message = err.decode("utf-8", errors="replace").strip()[:_PROTOC_EXCERPT]
        raise ConfigurationError("Invalid proto", detail=message or f"protoc exited with {proc.returncode}")
    return out


def _pool(descriptor_set: bytes) -> descriptor_pool.DescriptorPool:
    pool = descriptor_pool.DescriptorPool()
    for file in descriptor_pb2.FileDescriptorSet.FromString(descriptor_set).file:
        pool.Add(file)
    return pool


def find_method(pool: descriptor_pool.DescriptorPool, service: str, method: str) -> MethodDescriptor:
    """The method descriptor; ConfigurationError naming what is missing."""
    try:
        found: MethodDescriptor = pool.FindServiceByName(service).FindMethodByName(method)
    except KeyError as exc:
        raise ConfigurationError("Unknown gRPC method", detail=f"{service}/{method}: {exc.args[0]}") from None
    return found


@dataclass(frozen=True, slots=True, kw_only=True)
class GrpcInvocation:
    """One call: where, what, with which message and metadata."""

    channel: grpc.aio.Channel
    target: str
    method: MethodDescriptor
    arguments: Any
    metadata: Sequence[tuple[str, str]]
    timeout: float


async def invoke(call: GrpcInvocation) -> Any:
    """Make the call and return the response as JSON-like data (a list for a streamed response)."""
    method = call.method
    request_cls = message_factory.GetMessageClass(method.input_type)
    response_cls = message_factory.GetMessageClass(method.output_type)
    request = _message(request_cls, call.arguments)
    path = f"/{method.containing_service.full_name}/{method.name}"
    send, receive = request_cls.SerializeToString, response_cls.FromString
    metadata, timeout = tuple(call.metadata), call.timeout
    channel = call.channel
    reply: Any
    try:
        if method.server_streaming and method.client_streaming:
            both = channel.stream_stream(path, send, receive)(iter([request]), metadata=metadata, timeout=timeout)
            return [_data(message) async for message in both]
        if method.server_streaming:
            replies = channel.unary_stream(path, send, receive)(request, metadata=metadata, timeout=timeout)
            return [_data(message) async for message in replies]
        if method.client_streaming:
            reply = await channel.stream_unary(path, send, receive)(iter([request]), metadata=metadata, timeout=timeout)
        else:
            reply = await channel.unary_unary(path, send, receive)(request, metadata=metadata, timeout=timeout)
    except grpc.aio.AioRpcError as exc:
        raise _rpc_error(exc, path, call.target) from None
    return _data(reply)


def _message(cls: Any, arguments: Any) -> Any:
    try:
        return json_format.ParseDict(arguments or {}, cls())
    except (json_format.ParseError, TypeError, ValueError) as exc:
        raise ConfigurationError("Invalid gRPC arguments", detail=str(exc)) from None


def _data(message: Any) -> Any:
    return json_format.MessageToDict(
        message, always_print_fields_with_no_presence=True, preserving_proto_field_name=True
    )


def _rpc_error(exc: grpc.aio.AioRpcError, path: str, target: str) -> CommunicationError:
    code = exc.code()
    number, name = code.value[0], code.name
    return CommunicationError(f"gRPC {name}", status=int(number), detail=f"{path} on {target}: {exc.details()}")
