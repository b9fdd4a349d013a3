"""The gRPC ingress: the WorkflowRunner service on a grpc.aio server, with health, reflection and API-key auth.

Status codes are listed in `proto/workflow_runner/v1/runner.proto`. The health service answers without a key (so
orchestrators can probe it) and reports NOT_SERVING from the moment intake closes; reflection and the runner
service need `authorization: Bearer <GRPC_API_KEY>` when a key is configured. INVALID_ARGUMENT carries the
located issues in its message and, as JSON, in the `validation-errors-bin` trailing metadata.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hmac
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, NoReturn

import grpc
import grpc.aio
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from executor import DEFAULT_TENANT, DocumentError, ExecuteCommand, Issue

from ._errors import StartupError
from ._grpc_codec import (
    ERRORS_METADATA,
    DecodeError,
    Undecodable,
    decode_execute,
    decode_published,
    describe_issues,
    encode_event,
    encode_issues,
    encode_state,
    issues_json,
    output_of,
    parse_request,
    ref_dict,
    ref_message,
)
from ._proto.workflow_runner.v1 import runner_pb2 as pb
from ._proto.workflow_runner.v1 import runner_pb2_grpc as pb_grpc
from ._service import (
    CapacityError,
    ConflictError,
    ExecutionService,
    ExecutionState,
    IntakeClosedError,
    ServiceError,
    UnknownExecutionError,
)
from ._tenants import Tenancy
from .config import Settings
from .payloads import JSON, REFERENCE_FIELDS, ClaimError, PayloadError, PayloadStore, resolve_claims

logger = logging.getLogger("consumer.grpc")

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["WorkflowRunner"].full_name
_HEALTH_PREFIX = "/grpc.health.v1.Health/"
_CODES: dict[type[Exception], grpc.StatusCode] = {
    IntakeClosedError: grpc.StatusCode.UNAVAILABLE,
    CapacityError: grpc.StatusCode.RESOURCE_EXHAUSTED,
    ConflictError: grpc.StatusCode.ALREADY_EXISTS,
    UnknownExecutionError: grpc.StatusCode.NOT_FOUND,
    PayloadError: grpc.StatusCode.UNAVAILABLE,  # the payload store could not be reached: a retry may pass
}


async def _abort(context: grpc.aio.ServicerContext[Any, Any], exc: Exception) -> NoReturn:
    """End the call with the status that `exc` stands for."""
    if isinstance(exc, DocumentError | DecodeError):
        await context.abort(
            grpc.StatusCode.INVALID_ARGUMENT,
            f"invalid request: {describe_issues(exc.issues)}",
            trailing_metadata=((ERRORS_METADATA, issues_json(exc.issues)),),
        )
    code = _CODES.get(type(exc), grpc.StatusCode.INTERNAL)
    await context.abort(code, str(exc))


class _Servicer(pb_grpc.WorkflowRunnerServicer):
    """The WorkflowRunner RPCs, each a thin translation onto the execution service."""

    def __init__(self, service: ExecutionService, tenancy: Tenancy, store: PayloadStore) -> None:
        self._service = service
        self._tenancy = tenancy
        self._store = store

    def _tenant(self, context: Any, metadata: Mapping[str, str] | None = None) -> str:
        """The caller's tenant (consumer._tenants): its API key's when keys name tenants; else the command
        metadata's tenant key, or for calls without a command (PublishEvent) the same key in the call metadata."""
        if self._tenancy.keys:
            given = next((v for k, v in context.invocation_metadata() or () if k == "authorization"), "")
            return self._tenancy.for_key(str(given).removeprefix("Bearer ")) or DEFAULT_TENANT
        if metadata is None:
            metadata = {k: str(v) for k, v in context.invocation_metadata() or () if k == self._tenancy.metadata_key}
        return self._tenancy.from_metadata(metadata)

    def _scope(self, context: Any) -> str | None:
        """Whose executions a call may see: with tenant keys, the caller's tenant's only; without, every one
        (the caller is the runner's single operator)."""
        return self._tenant(context) if self._tenancy.keys else None

    async def _command(self, request: pb.ExecuteRequest, context: Any) -> ExecuteCommand:
        command = decode_execute(request, await self._resolved(request))
        return dataclasses.replace(command, tenant=self._tenant(context, command.metadata))

    async def _resolved(self, request: pb.ExecuteRequest) -> dict[str, Any]:
        """The document and input behind the request's `*_ref` fields, read here (in the supervisor, so worker
        processes never talk to the store); {} when it has none."""
        refs = {name: ref_dict(getattr(request, name)) for name in REFERENCE_FIELDS if request.HasField(name)}
        if not refs:
            return {}
        given = {"workflow_yaml": "", **({"input": ""} if request.input_json.strip() else {})}
        if not request.workflow_yaml:
            del given["workflow_yaml"]
        try:
            fields = await resolve_claims({**given, **refs}, self._store)
        except ClaimError as exc:
            raise DecodeError([Issue(path=exc.path, message=exc.message)], request.execution_id or None) from None
        return {name: fields[name] for name in ("workflow_yaml", "input") if name in fields and name not in given}

    async def _encoded(self, state: ExecutionState) -> pb.Execution:
        """The state as a message; an output above `PAYLOAD_OFFLOAD_BYTES` travels as `output_ref` (encoded once,
        never copied into the message)."""
        message = encode_state(state, output=False)
        output = output_of(state)
        if output is not None and self._store.offloads(len(output)):
            message.output_ref.CopyFrom(ref_message((await self._store.put(output, JSON)).to_dict()))
        elif output is not None:
            message.output_json = output.decode()
        return message

    async def Execute(self, request: pb.ExecuteRequest, context: Any) -> pb.ExecuteResponse:
        try:
            execution, duplicate = self._service.start(await self._command(request, context))
            return pb.ExecuteResponse(execution=await self._encoded(execution.state()), duplicate=duplicate)
        except (DecodeError, DocumentError, ServiceError, PayloadError) as exc:
            await _abort(context, exc)

    async def ExecuteStream(self, request: pb.ExecuteRequest, context: Any) -> AsyncIterator[pb.ExecuteStreamResponse]:
        try:
            execution, _ = self._service.start(await self._command(request, context))
        except (DecodeError, DocumentError, ServiceError, PayloadError) as exc:
            await _abort(context, exc)
        async for event in execution.events():
            yield encode_event(event)
        state = await execution.wait()
        try:
            yield pb.ExecuteStreamResponse(result=await self._encoded(state))
        except PayloadError as exc:
            await _abort(context, exc)

    async def Validate(self, request: pb.ValidateRequest, context: Any) -> pb.ValidateResponse:
        issues, warnings = self._service.check(request.workflow_yaml)
        return pb.ValidateResponse(valid=not issues, errors=encode_issues(issues), warnings=encode_issues(warnings))

    async def Cancel(self, request: pb.CancelRequest, context: Any) -> pb.CancelResponse:
        try:
            cancelled, state = await self._service.cancel(request.execution_id, tenant=self._scope(context))
        except ServiceError as exc:
            await _abort(context, exc)
        try:
            return pb.CancelResponse(cancelled=cancelled, execution=await self._encoded(state))
        except PayloadError as exc:
            await _abort(context, exc)

    async def GetExecution(self, request: pb.GetExecutionRequest, context: Any) -> pb.Execution:
        execution = self._service.get(request.execution_id, tenant=self._scope(context))
        if execution is None:
            await _abort(context, UnknownExecutionError(f"no execution {request.execution_id}"))
        try:
            return await self._encoded(execution.state())
        except PayloadError as exc:
            await _abort(context, exc)

    async def PublishEvent(self, request: pb.PublishEventRequest, context: Any) -> pb.PublishEventResponse:
        try:
            event = decode_published(request.event)
            tenant = self._tenant(context)
        except DecodeError as exc:
            await _abort(context, exc)
        await self._service.publish_event(event, tenant)
        return pb.PublishEventResponse()


if TYPE_CHECKING:  # grpc's handler type is generic only in its stubs
    Continuation = Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]]


def _add_lenient_servicer(servicer: _Servicer, server: grpc.aio.Server) -> None:
    """Register the WorkflowRunner methods with handlers whose bytes that are not the method's request message get
    INVALID_ARGUMENT in one line (grpc itself would answer UNKNOWN and log a traceback at ERROR for every such call).

    Wrapped once here rather than per call by an interceptor: a server without interceptors finds a call's handler
    without a coroutine per call (about 3 % of the supervisor's CPU per streamed execution).
    """
    handlers: dict[str, grpc.RpcMethodHandler[Any, Any]] = {}

    class _Collect:  # what the generated registration calls, keeping the handlers it names
        def add_generic_rpc_handlers(self, _: Any) -> None:
            pass

        def add_registered_method_handlers(self, _: str, named: dict[str, grpc.RpcMethodHandler[Any, Any]]) -> None:
            handlers.update(named)

    pb_grpc.add_WorkflowRunnerServicer_to_server(servicer, _Collect())  # type: ignore[no-untyped-call]
    assert handlers, "the generated code registers its handlers by name"
    lenient = {name: _lenient(handler) for name, handler in handlers.items()}
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE_NAME, lenient),))
    server.add_registered_method_handlers(SERVICE_NAME, lenient)


def _lenient(handler: grpc.RpcMethodHandler[Any, Any]) -> grpc.RpcMethodHandler[Any, Any]:
    """`handler` with a deserializer that never raises, refusing what it could not parse (unary requests only)."""
    if handler.request_deserializer is None:
        return handler
    parse = parse_request(handler.request_deserializer)
    serialize = handler.response_serializer
    # The stubs type behaviours as synchronous; on a grpc.aio server they are coroutines and async generators.
    streaming: Any = handler.unary_stream
    unary: Any = handler.unary_unary
    if streaming is not None:

        async def stream(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> AsyncIterator[Any]:
            if isinstance(request, Undecodable):
                await _abort(context, request.error())
            async for item in streaming(request, context):
                yield item

        return grpc.unary_stream_rpc_method_handler(stream, request_deserializer=parse, response_serializer=serialize)
    assert unary is not None, "WorkflowRunner has unary and server-streaming methods only"

    async def call(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        if isinstance(request, Undecodable):
            await _abort(context, request.error())
        return await unary(request, context)

    return grpc.unary_unary_rpc_method_handler(call, request_deserializer=parse, response_serializer=serialize)


class ApiKeyInterceptor(grpc.aio.ServerInterceptor):
    """Refuses calls without `authorization: Bearer <key>` (constant-time comparison); health is exempt.

    Args:
        key: The expected API key.
    """

    def __init__(self, *keys: str) -> None:
        self._expected = [f"Bearer {key}".encode() for key in keys]

    async def intercept_service(
        self, continuation: Continuation, handler_call_details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = await continuation(handler_call_details)
        if handler is None or handler_call_details.method.startswith(_HEALTH_PREFIX):
            return handler
        if self._authorized(handler_call_details.invocation_metadata):
            return handler
        return _refusal(handler)

    def _authorized(self, metadata: Any) -> bool:
        given = next((value for key, value in metadata or () if key == "authorization"), "")
        given = given.encode() if isinstance(given, str) else given
        # Every key compared, so the time taken says nothing about which one (or whether one) matched.
        return sum(hmac.compare_digest(given, expected) for expected in self._expected) > 0


def _refusal(handler: grpc.RpcMethodHandler[Any, Any]) -> grpc.RpcMethodHandler[Any, Any]:
    """A handler of the same shape as `handler` that answers UNAUTHENTICATED."""

    async def deny(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or wrong API key (authorization: Bearer …)")

    kind = (handler.request_streaming, handler.response_streaming)
    make = {
        (False, False): grpc.unary_unary_rpc_method_handler,
        (False, True): grpc.unary_stream_rpc_method_handler,
        (True, False): grpc.stream_unary_rpc_method_handler,
        (True, True): grpc.stream_stream_rpc_method_handler,
    }[kind]
    return make(deny, request_deserializer=handler.request_deserializer)


class BindError(StartupError):
    """The configured address cannot be bound (in use, or not an address of this host)."""


class GrpcIngress:
    """Serves the WorkflowRunner service; `start()` binds, `stop(grace)` closes.

    Args:
        settings: Process settings (`settings.grpc`).
        service: The execution service every RPC goes through.
    """

    name = "grpc"

    def __init__(self, settings: Settings, service: ExecutionService) -> None:
        self._settings = settings.grpc
        self._tenancy = settings.isolation.tenancy
        self._payloads = settings.payloads
        self._service = service
        self._server: grpc.aio.Server | None = None
        self._health = health.aio.HealthServicer()
        self._port = self._settings.port
        self._stopped = False
        self._flip: asyncio.Task[None] | None = None

    @property
    def port(self) -> int:
        """The bound port (useful with `GRPC_PORT=0`)."""
        return self._port

    async def start(self) -> None:
        """Bind, start serving, and report SERVING."""
        size = self._settings.max_message_bytes
        keys = [*([self._settings.api_key] if self._settings.api_key else []), *self._tenancy.keys]
        interceptors: list[grpc.aio.ServerInterceptor] = [ApiKeyInterceptor(*keys)] if keys else []
        server = grpc.aio.server(
            interceptors=interceptors,
            options=[
                ("grpc.max_receive_message_length", size),
                ("grpc.max_send_message_length", size),
                # Without this, a second runner on the same port would silently share it instead of failing.
                ("grpc.so_reuseport", 0),
            ],
        )
        servicer = _Servicer(self._service, self._tenancy, PayloadStore.from_settings(self._payloads))
        _add_lenient_servicer(servicer, server)
        health_pb2_grpc.add_HealthServicer_to_server(self._health, server)
        reflection.enable_server_reflection((SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), server)
        address = f"{self._settings.host}:{self._settings.port}"
        try:
            self._port = server.add_insecure_port(address)
        except RuntimeError as exc:
            await server.stop(None)
            raise BindError(f"GRPC_PORT: cannot listen on {address} ({exc})") from None
        await server.start()
        self._server = server
        await self._set_serving()
        self._service.add_intake_listener(self._on_intake_closed)
        logger.info("gRPC ingress on %s:%d", self._settings.host, self._port)

    async def stop(self, grace: float) -> None:
        """Report NOT_SERVING, let calls in progress finish within `grace`, close; idempotent."""
        if self._server is None or self._stopped:
            return
        self._stopped = True
        await self._health.enter_graceful_shutdown()
        await self._server.stop(grace)

    def _on_intake_closed(self) -> None:
        # The service calls listeners synchronously; the health servicer's setter is a coroutine.
        self._flip = asyncio.get_running_loop().create_task(self._health.enter_graceful_shutdown())

    async def _set_serving(self) -> None:
        for name in ("", SERVICE_NAME):
            await self._health.set(name, health_pb2.HealthCheckResponse.SERVING)
