"""`call: a2a`: one Agent-to-Agent request through the official `a2a-sdk` client, answered in the DSL's JSON shapes.

- The agent: its card from `agentCard` (an external resource, read as any other: a failure to read it is the
  communication error), else the well-known card (`/.well-known/agent-card.json`) of `server`'s origin. The SDK
  picks the card's JSON-RPC (or HTTP+JSON) interface and speaks the protocol version the card declares (1.0, or
  0.3 through its compatibility layer).
- Methods and `parameters` are the DSL's (A2A 0.3 names and JSON shapes): `message/send` and `message/stream` take
  `{message, configuration?, metadata?}`, the message's `messageId` defaulting to a fresh UUID and `role` to
  `user`; `tasks/get` `{id, historyLength?}`; `tasks/cancel` and `tasks/resubscribe` `{id}`;
  `tasks/pushNotificationConfig/set` `{taskId, pushNotificationConfig}`, `…/get` `{id, pushNotificationConfigId?}`,
  `…/list` `{id}`, `…/delete` `{id, pushNotificationConfigId}`; `tasks/list` (A2A 1.0 only) `{contextId?, status?,
  pageSize?, pageToken?, historyLength?}`; `agent/getAuthenticatedExtendedCard` none.
- Output: the JSON-RPC result in the 0.3 shape (a `Task` or `Message` with `kind`, camelCase fields). For
  `message/stream` and `tasks/resubscribe` it is the list of every streamed result in order (the task, its
  `status-update` and `artifact-update` events). `tasks/list` gives `{tasks, nextPageToken, pageSize, totalSize}`;
  `…/delete` gives null; `agent/getAuthenticatedExtendedCard` the card as A2A 1.0 JSON (`supportedInterfaces`, …).
- Every request goes through the outbound policy; connecting and sending are bounded by the configured
  `http_timeout`, each read by the longer of that and 300 s (an agent may work a while before it answers; bound a
  call with the task's `timeout`). The server endpoint's (or card resource's) authentication is sent on every
  request. The client is opened once per
  execution and agent, and closed when the execution ends.
- Errors: the spec makes A2A failures the runtime error: an A2A (JSON-RPC) error carries its code in the title and
  the protocol's HTTP status (`TaskNotFound` -32001 → 404, `TaskNotCancelable` -32002 → 400, …); an unreachable
  agent or a broken answer is the runtime error too (status 500). A card that is not an agent card and parameters
  the method cannot take are the configuration error, a read that times out the timeout error, a host the
  outbound policy denies the authorization error.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import httpx
import orjson
from a2a.client import A2AClientError, A2AClientTimeoutError, Client, ClientConfig, ClientFactory
from a2a.client.card_resolver import parse_agent_card
from a2a.compat.v0_3 import conversions as compat
from a2a.compat.v0_3 import types as v03
from a2a.types import a2a_pb2 as pb
from a2a.utils.constants import AGENT_CARD_WELL_KNOWN_PATH, TransportProtocol
from a2a.utils.errors import A2A_ERROR_MAPPING, JSON_RPC_ERROR_CODE_MAP, A2AError
from google.protobuf import json_format
from pydantic import ValidationError as PydanticValidationError

from .._auth import Credentials
from .._endpoint import Endpoint, compile_endpoint, load_resource
from .._errors import CommunicationError, ConfigurationError, WorkflowError, WorkflowRuntimeError, WorkflowTimeoutError
from .._expr import compile_template
from .._http import Request, exchange, new_client
from ._call_http import authorize

if TYPE_CHECKING:
    from .._expr import Evaluator, Vars
    from .._model import Compiler, Task
    from .._run import Run

_STREAMING = frozenset({"message/stream", "tasks/resubscribe"})
_READ_SECONDS = 300.0
# The interfaces this runner can call, in order of preference (gRPC would need the SDK's gRPC extra).
_BINDINGS = (TransportProtocol.JSONRPC, TransportProtocol.HTTP_JSON)


@dataclass(frozen=True, slots=True, kw_only=True)
class A2ACall:
    """A compiled `call: a2a`."""

    method: str
    agent_card: Endpoint | None
    server: Endpoint | None
    parameters: Evaluator | None

    async def run(self, rt: Run, task: Task, data: Any, variables: Vars) -> Any:
        """Resolve the agent, send the request, return the result in the DSL's shape."""
        params = _parameters(self.method, self.parameters, data, variables)
        endpoint = self.agent_card or self.server
        assert endpoint is not None  # the schema requires one of them
        credentials = await authorize(rt, endpoint.auth, data, variables)
        card = await _card(rt, self, data, variables, credentials)
        sent = dict(credentials.headers) if credentials else {}
        streaming = self.method in _STREAMING
        key = ("a2a", card.SerializeToString(deterministic=True), tuple(sorted(sent.items())), streaming)
        client: Client = await rt.executor.io.sessions(rt).get(key, _opener(rt, card, sent, streaming))
        try:
            return await _METHODS[self.method](client, params)
        except A2AClientTimeoutError:
            raise WorkflowTimeoutError("A2A request timed out", detail=f"{self.method}: no answer in time") from None
        except A2AClientError as exc:
            raise WorkflowRuntimeError("A2A request failed", detail=f"{self.method}: {exc.message}") from None
        except A2AError as exc:
            raise _rpc_error(self.method, exc) from None
        except json_format.ParseError as exc:
            raise WorkflowRuntimeError("Invalid A2A answer", detail=f"{self.method}: {exc}") from None


def compile(compiler: Compiler, arguments: Mapping[str, Any], pointer: str) -> A2ACall:
    """Compile `with` of a `call: a2a`."""
    card, server, parameters = arguments.get("agentCard"), arguments.get("server"), arguments.get("parameters")
    if card is None and server is None:
        raise ValueError("`call: a2a` needs `agentCard` or `server`")
    return A2ACall(
        method=str(arguments["method"]),
        agent_card=None if card is None else compile_endpoint(compiler.use, card["endpoint"]),
        server=None if server is None else compile_endpoint(compiler.use, server),
        parameters=None if parameters is None else compile_template(parameters),
    )


def _parameters(method: str, template: Evaluator | None, data: Any, variables: Vars) -> dict[str, Any]:
    value = None if template is None else template(data, variables)
    if value is None:
        value = {}
    if not isinstance(value, dict):
        raise ConfigurationError("Invalid A2A parameters", detail=f"expected an object, got {type(value).__name__}")
    if method in ("message/send", "message/stream") and isinstance(value.get("message"), dict):
        # The spec's defaults: a fresh message id, the user's role.
        message = {"messageId": str(uuid.uuid4()), "role": "user", "kind": "message"} | value["message"]
        value = {**value, "message": message}
    return value


async def _card(rt: Run, call: A2ACall, data: Any, variables: Vars, credentials: Credentials | None) -> pb.AgentCard:
    """The agent card: the `agentCard` resource, or the well-known card of the server's origin."""
    if call.agent_card is not None:
        resource = await load_resource(rt, call.agent_card, data, variables)
        return _parse_card(resource.content, resource.location)
    assert call.server is not None
    url = call.server.uri(data, variables)
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigurationError("Invalid A2A server", detail=f"{url!r} is not an http(s) URL")
    where = f"{parts.scheme}://{parts.netloc}{AGENT_CARD_WELL_KNOWN_PATH}"
    request = Request(method="GET", url=where, headers=dict(credentials.headers) if credentials else {})
    limit = rt.executor.options.max_response_bytes
    try:
        reply = await exchange(rt.executor.io.http, request, redirect=True, limit=limit)
    except CommunicationError as exc:
        raise WorkflowRuntimeError("A2A agent unreachable", detail=exc.detail or exc.title) from None
    if not 200 <= reply.status < 300:
        raise WorkflowRuntimeError("A2A agent card not found", detail=f"GET {where} answered {reply.status}")
    return _parse_card(reply.body, where)


def _parse_card(content: bytes, where: str) -> pb.AgentCard:
    try:
        document = orjson.loads(content)
        card = parse_agent_card(document)
    except (orjson.JSONDecodeError, json_format.ParseError, A2AError, ValueError) as exc:
        raise ConfigurationError("Invalid agent card", detail=f"{where}: {exc}") from None
    if not card.name or not card.supported_interfaces:
        raise ConfigurationError("Invalid agent card", detail=f"{where}: no agent name or no interface to call")
    return card


def _opener(rt: Run, card: pb.AgentCard, headers: dict[str, str], streaming: bool) -> Callable[..., Awaitable[Client]]:
    options, policy = rt.executor.options, rt.executor.io.policy

    async def opener(stack: AsyncExitStack) -> Client:
        # A client of its own (the SDK sets protocol headers on it), guarded by the outbound policy like the pool.
        http = new_client(options, policy)
        http.headers.update(headers)
        # A blocking `message/send` waits for the agent's work: reads get longer than one HTTP request's timeout.
        http.timeout = httpx.Timeout(options.http_timeout, read=max(options.http_timeout, _READ_SECONDS))
        await stack.enter_async_context(http)
        try:
            config = ClientConfig(httpx_client=http, streaming=streaming, supported_protocol_bindings=list(_BINDINGS))
            client = ClientFactory(config).create(card)
        except ValueError as exc:
            raise ConfigurationError("A2A agent cannot be called", detail=str(exc)) from None
        stack.push_async_callback(client.close)
        return client

    return opener


def _rpc_error(method: str, exc: A2AError) -> WorkflowError:
    code = JSON_RPC_ERROR_CODE_MAP.get(type(exc))
    mapping = A2A_ERROR_MAPPING.get(type(exc))
    title = f"A2A error {code}" if code is not None else "A2A error"
    reason = f" ({mapping.reason})" if mapping is not None else ""
    return WorkflowRuntimeError(
        title, detail=f"{method}{reason}: {exc.message}", status=mapping.http_code if mapping else None
    )


def _request(model: Any, method: str, params: dict[str, Any]) -> Any:
    try:
        return model.model_validate({"jsonrpc": "2.0", "id": 1, "method": method, "params": params})
    except PydanticValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(p) for p in error["loc"][1:]) or "(root)"
        raise ConfigurationError("Invalid A2A parameters", detail=f"{method}: {where}: {error['msg']}") from None


def _dump(model: Any) -> Any:
    return model.model_dump(mode="json", by_alias=True, exclude_none=True)


async def _collect(stream: AsyncIterator[pb.StreamResponse]) -> list[Any]:
    return [_dump(compat.to_compat_stream_response(event).result) async for event in stream]


async def _send(client: Client, params: dict[str, Any]) -> Any:
    request = compat.to_core_send_message_request(_request(v03.SendMessageRequest, "message/send", params))
    results = [event async for event in client.send_message(request)]
    last = results[-1]
    if last.HasField("message"):
        return _dump(compat.to_compat_message(last.message))
    return _dump(compat.to_compat_task(last.task))


async def _stream(client: Client, params: dict[str, Any]) -> Any:
    request = compat.to_core_send_message_request(_request(v03.SendMessageRequest, "message/send", params))
    return await _collect(client.send_message(request))


async def _get(client: Client, params: dict[str, Any]) -> Any:
    request = compat.to_core_get_task_request(_request(v03.GetTaskRequest, "tasks/get", params))
    return _dump(compat.to_compat_task(await client.get_task(request)))


async def _list(client: Client, params: dict[str, Any]) -> Any:
    request = pb.ListTasksRequest()
    try:
        json_format.ParseDict(params, request)
    except json_format.ParseError as exc:
        raise ConfigurationError("Invalid A2A parameters", detail=f"tasks/list: {exc}") from None
    response = await client.list_tasks(request)
    out = json_format.MessageToDict(response)
    out["tasks"] = [_dump(compat.to_compat_task(t)) for t in response.tasks]
    return out


async def _cancel(client: Client, params: dict[str, Any]) -> Any:
    request = compat.to_core_cancel_task_request(_request(v03.CancelTaskRequest, "tasks/cancel", params))
    return _dump(compat.to_compat_task(await client.cancel_task(request)))


async def _resubscribe(client: Client, params: dict[str, Any]) -> Any:
    request = compat.to_core_subscribe_to_task_request(
        _request(v03.TaskResubscriptionRequest, "tasks/resubscribe", params)
    )
    return await _collect(client.subscribe(request))


async def _push_set(client: Client, params: dict[str, Any]) -> Any:
    model = _request(v03.SetTaskPushNotificationConfigRequest, "tasks/pushNotificationConfig/set", params)
    config = await client.create_task_push_notification_config(
        compat.to_core_create_task_push_notification_config_request(model)
    )
    return _dump(compat.to_compat_task_push_notification_config(config))


async def _push_get(client: Client, params: dict[str, Any]) -> Any:
    model = _request(v03.GetTaskPushNotificationConfigRequest, "tasks/pushNotificationConfig/get", params)
    config = await client.get_task_push_notification_config(
        compat.to_core_get_task_push_notification_config_request(model)
    )
    return _dump(compat.to_compat_task_push_notification_config(config))


async def _push_list(client: Client, params: dict[str, Any]) -> Any:
    model = _request(v03.ListTaskPushNotificationConfigRequest, "tasks/pushNotificationConfig/list", params)
    response = await client.list_task_push_notification_configs(
        compat.to_core_list_task_push_notification_config_request(model)
    )
    return [_dump(compat.to_compat_task_push_notification_config(c)) for c in response.configs]


async def _push_delete(client: Client, params: dict[str, Any]) -> Any:
    model = _request(v03.DeleteTaskPushNotificationConfigRequest, "tasks/pushNotificationConfig/delete", params)
    await client.delete_task_push_notification_config(
        compat.to_core_delete_task_push_notification_config_request(model)
    )
    return None


async def _extended_card(client: Client, params: dict[str, Any]) -> Any:
    card = await client.get_extended_agent_card(pb.GetExtendedAgentCardRequest())
    # As the agent serves it (A2A 1.0 JSON): the 0.3 card form cannot hold 1.0 interfaces.
    return json_format.MessageToDict(card)


_METHODS: Mapping[str, Callable[[Client, dict[str, Any]], Awaitable[Any]]] = {
    "message/send": _send,
    "message/stream": _stream,
    "tasks/get": _get,
    "tasks/list": _list,
    "tasks/cancel": _cancel,
    "tasks/resubscribe": _resubscribe,
    "tasks/pushNotificationConfig/set": _push_set,
    "tasks/pushNotificationConfig/get": _push_get,
    "tasks/pushNotificationConfig/list": _push_list,
    "tasks/pushNotificationConfig/delete": _push_delete,
    "agent/getAuthenticatedExtendedCard": _extended_card,
}
