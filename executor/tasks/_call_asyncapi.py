"""`call: asyncapi`: publish a message to, or consume messages from, a channel an AsyncAPI 2.6 / 3.0 document defines.

Which channel, server and AMQP binding: `executor._asyncapi`. The document is read at run time (HTTP or a local
file under the resource roots, like an OpenAPI document). Protocols: AMQP 0-9-1 (`amqp`, `amqps`) over aio-pika and
HTTP (`http`, `https`); a `protocol` other than `amqp` or `http` is refused at validation, a server of another
protocol in the document at run time, both naming the protocol.

- Publish (`message`): `payload` (JSON) and `headers` (AMQP headers or HTTP headers) are evaluated; a correlation
  id found at the message's `correlationId.location` becomes the AMQP `correlation_id`. AMQP publishes are
  mandatory and confirmed: a message no queue takes is an error. Over HTTP the message is POSTed (or sent with
  `bindings.http.method`) to the server URL plus the address. Output: `{payload, headers, correlationId?}` as sent.
- Subscribe (`subscription`): messages are read one at a time as `{payload, headers, correlationId?}` (payload
  parsed as JSON when it is JSON, else text). `filter` (`.` = the message) skips messages; `consume.amount` stops
  after that many, `while` is evaluated after each consumed message and `until` before each (`.` = the messages
  consumed so far), `for` ends the subscription after that long (not an error). `foreach` runs like `listen`'s.
  Output: the consumed (or `foreach`-shaped) messages in order. AMQP: a queue (`is: queue`, or an address on the
  default exchange) is consumed directly; with a named exchange a private queue is bound to it with the address
  as routing key, so only messages published after the subscription started arrive. A message is acknowledged
  once processed; one left unprocessed (a failure, a cancel) goes back to its queue. HTTP: the URL is polled with
  GET; a JSON array answer is several messages, 204 (or an empty body) none yet.
- Authentication: `basic` becomes the AMQP login; over HTTP every scheme is sent as for `call: http`. The broker
  host passes the outbound policy. The AMQP connection is opened once per execution and server, closed at its end.
"""

from __future__ import annotations

import asyncio
import base64
import uuid
from collections.abc import Mapping
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import aio_pika
import httpx
import orjson
import yaml
from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractIncomingMessage, AbstractQueue

from .._asyncapi import Target, locate_value, target
from .._auth import AuthPolicy, compile_auth
from .._durations import Duration, duration_or_none
from .._endpoint import Endpoint, compile_endpoint, load_resource
from .._errors import CommunicationError, ConfigurationError
from .._expr import compile_expression, compile_template, truthy
from .._model import Unsupported
from ._call_http import authorize
from .listen import Iterator, compile_iterator, iterate

if TYPE_CHECKING:
    from .._expr import Evaluator, Vars
    from .._model import Compiler, Task
    from .._run import Run

_PROTOCOLS = frozenset({"amqp", "http"})
_POLL_SECONDS = 0.2
_DETAIL = 300


@dataclass(frozen=True, slots=True)
class Subscription:
    """A compiled `subscription`."""

    filter: Evaluator | None
    amount: int | None
    while_: Evaluator | None
    until: Evaluator | None
    for_: Duration | None
    foreach: Iterator | None


@dataclass(frozen=True, slots=True, kw_only=True)
class AsyncApiCall:
    """A compiled `call: asyncapi`."""

    document: Endpoint
    channel: str | None
    operation: str | None
    server: str | None
    variables: Evaluator | None
    protocol: str | None
    payload: Evaluator | None
    headers: Evaluator | None
    subscription: Subscription | None
    auth: AuthPolicy | None

    async def run(self, rt: Run, task: Task, data: Any, variables: Vars) -> Any:
        """Read the document, pick the target, then publish or consume."""
        where = await self._target(rt, data, variables)
        io = _Http(self, where) if where.server.protocol.startswith("http") else _Amqp(self, where)
        if self.subscription is None:
            return await io.publish(rt, _outbound(self, where, data, variables), data, variables)
        return await _consume(rt, self.subscription, io, data, variables)

    async def _target(self, rt: Run, data: Any, variables: Vars) -> Target:
        resource = await load_resource(rt, self.document, data, variables)
        try:
            document = yaml.safe_load(resource.content)
        except yaml.YAMLError as exc:
            raise ConfigurationError("Invalid AsyncAPI document", detail=f"{resource.location}: {exc}") from None
        values = {} if self.variables is None else self.variables(data, variables)
        if not isinstance(values, dict):
            raise ConfigurationError("Invalid server variables", detail="expected an object")
        return target(
            document if isinstance(document, dict) else {},
            channel=self.channel,
            operation=self.operation,
            publish=self.subscription is None,
            server_name=self.server,
            protocol=self.protocol,
            variables=values,
        )


def compile(compiler: Compiler, arguments: Mapping[str, Any], pointer: str) -> AsyncApiCall:
    """Compile `with` of a `call: asyncapi`."""
    protocol = arguments.get("protocol")
    if protocol is not None and protocol not in _PROTOCOLS:
        raise Unsupported(f"AsyncAPI protocol {protocol!r} (amqp and http are)")
    server, message = arguments.get("server") or {}, arguments.get("message") or {}
    subscription = arguments.get("subscription")
    return AsyncApiCall(
        document=compile_endpoint(compiler.use, arguments["document"]["endpoint"]),
        channel=arguments.get("channel"),
        operation=arguments.get("operation"),
        server=server.get("name"),
        variables=_template(server.get("variables")),
        protocol=protocol,
        payload=_template(message.get("payload")),
        headers=_template(message.get("headers")),
        subscription=None if subscription is None else _subscription(compiler, subscription, pointer),
        auth=compile_auth(compiler.use, arguments.get("authentication")),
    )


def _template(value: Any) -> Evaluator | None:
    return None if value is None else compile_template(value)


def _expression(value: Any) -> Evaluator | None:
    return None if value is None else compile_expression(value)


def _subscription(compiler: Compiler, spec: Mapping[str, Any], pointer: str) -> Subscription:
    consume, foreach = spec["consume"], spec.get("foreach")
    amount = consume.get("amount")
    where = f"{pointer}/with/subscription/foreach"
    return Subscription(
        filter=_expression(spec.get("filter")),
        amount=None if amount is None else int(amount),
        while_=_expression(consume.get("while")),
        until=_expression(consume.get("until")),
        for_=None if consume.get("for") is None else duration_or_none(consume["for"]),
        foreach=None if foreach is None else compile_iterator(compiler, foreach, where),
    )


def _outbound(call: AsyncApiCall, where: Target, data: Any, variables: Vars) -> dict[str, Any]:
    payload = None if call.payload is None else call.payload(data, variables)
    headers = {} if call.headers is None else call.headers(data, variables)
    if not isinstance(headers, dict):
        raise ConfigurationError("Invalid message headers", detail=f"expected an object, got {type(headers).__name__}")
    message: dict[str, Any] = {"payload": payload, "headers": headers}
    correlation = locate_value(where.correlation, headers, payload)
    if correlation is not None:
        message["correlationId"] = str(correlation)
    return message


async def _consume(rt: Run, sub: Subscription, io: _Amqp | _Http, data: Any, variables: Vars) -> list[Any]:
    outputs: list[Any] = []
    seconds = None if sub.for_ is None else sub.for_.seconds(data, variables)
    try:
        async with asyncio.timeout(seconds), io.messages(rt, data, variables) as inbox:
            while not _enough(rt, sub, outputs, variables):
                incoming, message = await inbox.next()
                if sub.filter is not None and not truthy(sub.filter(message, rt.current(variables))):
                    await inbox.done(incoming)
                    continue
                outputs.append(await iterate(rt, sub.foreach, message, len(outputs), variables))
                await inbox.done(incoming)
                if sub.while_ is not None and not truthy(sub.while_(outputs, rt.current(variables))):
                    break
    except TimeoutError:
        if seconds is None:
            raise
        # `for` elapsed: the subscription ends with what it consumed.
    return outputs


def _enough(rt: Run, sub: Subscription, outputs: list[Any], variables: Vars) -> bool:
    if sub.amount is not None and len(outputs) >= sub.amount:
        return True
    return sub.until is not None and truthy(sub.until(outputs, rt.current(variables)))


def _decode(body: bytes, content_type: str | None) -> Any:
    """The payload: JSON when it parses (or says so), else text, else base64 of the bytes."""
    try:
        return orjson.loads(body) if body else None
    except orjson.JSONDecodeError:
        if content_type and "json" in content_type:
            raise CommunicationError("Invalid message", detail="a JSON message whose body is not JSON") from None
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        return base64.b64encode(body).decode("ascii")


def _plain(value: Any) -> Any:
    """AMQP header values as JSON values (bytes as text)."""
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("utf-8", errors="replace")
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


class _Amqp:
    """AMQP 0-9-1 through aio-pika: a connection per execution and server, a channel per call."""

    def __init__(self, call: AsyncApiCall, where: Target) -> None:
        self.call = call
        self.where = where
        binding = where.amqp
        self.exchange = dict(binding.get("exchange") or {})
        self.queue = dict(binding.get("queue") or {})
        # `is: queue` names a queue; with no exchange name the address is a queue on the default exchange.
        if binding.get("is") == "queue":
            self.direct_queue: str | None = str(self.queue.get("name") or where.address)
        else:
            self.direct_queue = None if self.exchange.get("name") else where.address

    async def _connection(self, rt: Run, data: Any, variables: Vars) -> AbstractConnection:
        server = self.where.server
        await rt.executor.io.policy.check(server.host)
        login = await _login(rt, self.call.auth, data, variables)
        port = server.port or (5671 if server.protocol == "amqps" else 5672)
        vhost = self.exchange.get("vhost") or self.queue.get("vhost") or server.path.lstrip("/") or "/"
        user = "" if login is None else f"{quote(login[0], safe='')}:{quote(login[1], safe='')}@"
        url = f"{server.protocol}://{user}{server.host}:{port}/{quote(vhost, safe='')}"
        timeout = rt.executor.options.http_timeout

        async def opener(stack: AsyncExitStack) -> AbstractConnection:
            try:
                connection = await aio_pika.connect(url, timeout=timeout)
            except (OSError, TimeoutError, aio_pika.exceptions.AMQPError) as exc:
                # The URL carries the password: the detail names the broker only.
                raise CommunicationError(
                    "AMQP broker unreachable", detail=f"{server.host}:{port}: {type(exc).__name__}"
                ) from None
            stack.push_async_callback(connection.close)
            return connection

        sessions = rt.executor.io.sessions(rt)
        connection: AbstractConnection = await sessions.get(("amqp", url), opener)
        if connection.is_closed:  # the broker closed it since the last call (a restart, say): open a new one
            await sessions.drop(("amqp", url))
            connection = await sessions.get(("amqp", url), opener)
        return connection

    async def _declare_queue(self, channel: AbstractChannel, name: str) -> AbstractQueue:
        return await channel.declare_queue(
            name,
            durable=bool(self.queue.get("durable", True)),
            exclusive=bool(self.queue.get("exclusive", False)),
            auto_delete=bool(self.queue.get("autoDelete", False)),
        )

    async def _declare_exchange(self, channel: AbstractChannel) -> aio_pika.abc.AbstractExchange:
        return await channel.declare_exchange(
            str(self.exchange["name"]),
            type=str(self.exchange.get("type") or "topic"),
            durable=bool(self.exchange.get("durable", True)),
            auto_delete=bool(self.exchange.get("autoDelete", False)),
        )

    async def publish(self, rt: Run, message: dict[str, Any], data: Any, variables: Vars) -> Any:
        """Publish one confirmed, mandatory message."""
        connection = await self._connection(rt, data, variables)
        body = orjson.dumps(message["payload"])
        outgoing = aio_pika.Message(
            body,
            headers=message["headers"],
            content_type="application/json",
            correlation_id=message.get("correlationId"),
            message_id=str(uuid.uuid4()),
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        )
        try:
            async with connection.channel(on_return_raises=True) as channel:
                if self.direct_queue is not None:
                    await self._declare_queue(channel, self.direct_queue)
                    await channel.default_exchange.publish(outgoing, routing_key=self.direct_queue, mandatory=True)
                else:
                    exchange = await self._declare_exchange(channel)
                    await exchange.publish(outgoing, routing_key=self.where.address, mandatory=True)
        except aio_pika.exceptions.DeliveryError:
            raise CommunicationError(
                "Message not delivered", detail=f"no queue takes messages for {self.where.address!r}"
            ) from None
        except aio_pika.exceptions.AMQPError as exc:
            raise CommunicationError("AMQP publish failed", detail=str(exc)[:_DETAIL]) from None
        return message

    def messages(self, rt: Run, data: Any, variables: Vars) -> _AmqpInbox:
        """The subscription's message source (an async context manager)."""
        return _AmqpInbox(self, rt, data, variables)


class _AmqpInbox:
    """One channel consuming one queue with a prefetch of one; unacknowledged messages return on close."""

    def __init__(self, amqp: _Amqp, rt: Run, data: Any, variables: Vars) -> None:
        self.amqp, self.rt, self.data, self.variables = amqp, rt, data, variables
        self._stack = AsyncExitStack()
        self._iterator: Any = None

    async def __aenter__(self) -> _AmqpInbox:
        amqp = self.amqp
        connection = await amqp._connection(self.rt, self.data, self.variables)
        try:
            channel: AbstractChannel = await connection.channel()
            self._stack.push_async_callback(channel.close)
            await channel.set_qos(prefetch_count=1)
            if amqp.direct_queue is not None:
                queue = await amqp._declare_queue(channel, amqp.direct_queue)
            else:
                exchange = await amqp._declare_exchange(channel)
                queue = await channel.declare_queue("", exclusive=True, auto_delete=True)
                await queue.bind(exchange, routing_key=amqp.where.address)
            self._iterator = await self._stack.enter_async_context(queue.iterator())
        except aio_pika.exceptions.AMQPError as exc:
            await self._stack.aclose()
            raise CommunicationError("AMQP subscription failed", detail=str(exc)[:_DETAIL]) from None
        except BaseException:
            await self._stack.aclose()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._stack.aclose()

    async def next(self) -> tuple[AbstractIncomingMessage, dict[str, Any]]:
        """The next message, raw and as the DSL's inbound message."""
        incoming: AbstractIncomingMessage = await self._iterator.__anext__()
        headers = _plain(dict(incoming.headers or {}))
        payload = _decode(incoming.body, incoming.content_type)
        message: dict[str, Any] = {"payload": payload, "headers": headers}
        correlation = incoming.correlation_id or locate_value(self.amqp.where.correlation, headers, payload)
        if correlation is not None:
            message["correlationId"] = str(correlation)
        return incoming, message

    async def done(self, incoming: Any) -> None:
        """Acknowledge a processed message."""
        await incoming.ack()


class _Http:
    """HTTP: POST to publish, GET polling to consume; through the shared pool and its outbound policy."""

    def __init__(self, call: AsyncApiCall, where: Target) -> None:
        self.call = call
        self.where = where
        server = where.server
        port = "" if server.port is None else f":{server.port}"
        self.url = f"{server.protocol}://{server.host}{port}{server.path.rstrip('/')}/{where.address.lstrip('/')}"

    async def _headers(self, rt: Run, data: Any, variables: Vars, extra: Mapping[str, Any]) -> dict[str, str]:
        credentials = await authorize(rt, self.call.auth, data, variables)
        out = {str(k): str(v) for k, v in extra.items() if v is not None}
        return out | (dict(credentials.headers) if credentials else {})

    async def publish(self, rt: Run, message: dict[str, Any], data: Any, variables: Vars) -> Any:
        """Send the payload as JSON."""
        headers = await self._headers(rt, data, variables, message["headers"])
        method = str(self.where.http.get("method") or "POST")
        await self._send(rt, method, headers, orjson.dumps(message["payload"]))
        return message

    async def _send(self, rt: Run, method: str, headers: dict[str, str], body: bytes | None) -> httpx.Response:
        if body is not None:
            headers = {"Content-Type": "application/json"} | headers
        try:
            response = await rt.executor.io.http.request(method, self.url, headers=headers, content=body)
        except httpx.HTTPError as exc:
            raise CommunicationError("AsyncAPI server unreachable", detail=f"{method} {self.url}: {exc}") from None
        if not response.is_success:
            raise CommunicationError(
                "AsyncAPI server refused", detail=f"{method} {self.url} answered {response.status_code}"
            )
        return response

    def messages(self, rt: Run, data: Any, variables: Vars) -> _HttpInbox:
        """The subscription's message source (an async context manager)."""
        return _HttpInbox(self, rt, data, variables)


class _HttpInbox:
    """Polls the URL with GET; each answer holds zero, one or several messages."""

    def __init__(self, http: _Http, rt: Run, data: Any, variables: Vars) -> None:
        self.http, self.rt, self.data, self.variables = http, rt, data, variables
        self._pending: list[dict[str, Any]] = []

    async def __aenter__(self) -> _HttpInbox:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    async def next(self) -> tuple[None, dict[str, Any]]:
        """The next message, polling until one arrives."""
        while not self._pending:
            headers = await self.http._headers(self.rt, self.data, self.variables, {})
            response = await self.http._send(self.rt, "GET", headers, None)
            if response.status_code == 204 or not response.content:
                await self.rt.sleep(_POLL_SECONDS)
                continue
            body = _decode(response.content, response.headers.get("content-type"))
            for payload in body if isinstance(body, list) else [body]:
                self._pending.append({"payload": payload, "headers": {}})
        return None, self._pending.pop(0)

    async def done(self, incoming: Any) -> None:
        """Nothing to acknowledge over HTTP."""


async def _login(rt: Run, policy: AuthPolicy | None, data: Any, variables: Vars) -> tuple[str, str] | None:
    """The AMQP user and password of a `basic` policy."""
    if policy is None:
        return None
    if policy.scheme != "basic":
        raise ConfigurationError("Unsupported AMQP authentication", detail=f"AMQP takes basic, not {policy.scheme}")
    credentials = await authorize(rt, policy, data, variables)
    assert credentials is not None
    user, _, password = base64.b64decode(str(credentials.descriptor["parameter"])).decode().partition(":")
    return user, password
