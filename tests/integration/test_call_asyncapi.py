"""`call: asyncapi` with AsyncAPI 2.6 and 3.0 documents against the local RabbitMQ (and HTTP against the mock)."""

from __future__ import annotations

import asyncio
import textwrap
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aio_pika
import orjson
import pytest
import yaml

from executor import EngineOptions
from tests.fixtures.http_mock import MockServer
from tests.fixtures.runner import run_cancelled, run_with
from tests.fixtures.servers import free_port

ERRORS = "https://serverlessworkflow.io/spec/1.0.0/errors/"


@dataclass
class Bus:
    """Unique names for one test, the documents' directory and the options that let the runner read it."""

    name: str
    root: Path
    options: EngineOptions

    def write(self, file: str, document: dict[str, object]) -> str:
        path = self.root / file
        path.write_text(yaml.safe_dump(document), encoding="utf-8")
        return path.as_uri()


@pytest.fixture
async def bus(rabbitmq: str, tmp_path: Path) -> AsyncIterator[Bus]:
    name = f"asyncapi-test-{uuid.uuid4().hex[:10]}"
    yield Bus(name, tmp_path, EngineOptions(resource_roots=(str(tmp_path),)))
    connection = await aio_pika.connect(rabbitmq)
    async with connection:
        for queue in (name, f"{name}.q"):
            channel = await connection.channel()
            await channel.queue_delete(queue)
        channel = await connection.channel()
        await channel.exchange_delete(f"{name}.x")


def v2(bus: Bus, *, binding: dict[str, object] | None = None, port: int = 5672, protocol: str = "amqp") -> str:
    """An AsyncAPI 2.6 document: one channel (publish and subscribe), messages correlated by `orderId`."""
    order = {"$ref": "#/components/messages/order"}
    channel: dict[str, object] = {"publish": {"message": order}, "subscribe": {"message": order}}
    channel["bindings"] = {"amqp": binding or {"is": "queue", "queue": {"name": f"{bus.name}.q", "durable": False}}}
    return bus.write(
        "v2.yaml",
        {
            "asyncapi": "2.6.0",
            "info": {"title": "orders", "version": "1.0.0"},
            "servers": {
                "broker": {
                    "url": "127.0.0.1:{port}",
                    "protocol": protocol,
                    "variables": {"port": {"default": str(port)}},
                }
            },
            "channels": {bus.name: channel},
            "components": {
                "messages": {"order": {"correlationId": {"location": "$message.header#/orderId"}, "payload": {}}}
            },
        },
    )


def v3(bus: Bus, *, exchange: bool = True, host: str = "127.0.0.1:5672") -> str:
    """An AsyncAPI 3.0 document: `place` sends and `watch` receives on one channel (a topic exchange, or a queue)."""
    amqp: dict[str, object] = (
        {"is": "routingKey", "exchange": {"name": f"{bus.name}.x", "type": "topic", "durable": False}}
        if exchange
        else {"is": "routingKey"}
    )
    return bus.write(
        "v3.yaml",
        {
            "asyncapi": "3.0.0",
            "info": {"title": "orders", "version": "1.0.0"},
            "servers": {
                "web": {"host": "127.0.0.1:1", "protocol": "http"},
                "broker": {"host": host, "protocol": "amqp"},
            },
            "channels": {
                "orders": {
                    "address": bus.name,
                    "servers": [{"$ref": "#/servers/broker"}],
                    "messages": {"order": {"correlationId": {"location": "$message.payload#/id"}, "payload": {}}},
                    "bindings": {"amqp": amqp},
                }
            },
            "operations": {
                "place": {"action": "send", "channel": {"$ref": "#/channels/orders"}},
                "watch": {"action": "receive", "channel": {"$ref": "#/channels/orders"}},
            },
        },
    )


def publish(document: str, target: str, payload: str, headers: str = "{}", name: str = "pub") -> str:
    """A task publishing one message (`target` is `channel: …` or `operation: …`)."""
    return (
        f"  - {name}:\n      call: asyncapi\n      with:\n        document: {{endpoint: '{document}'}}\n"
        f"        {target}\n        message: {{payload: {payload}, headers: {headers}}}\n"
    )


def subscribe(document: str, target: str, consume: str, extra: str = "", name: str = "sub") -> str:
    """A task consuming messages with the given `consume` policy (and extra `subscription` lines)."""
    return (
        f"  - {name}:\n      call: asyncapi\n      with:\n        document: {{endpoint: '{document}'}}\n"
        f"        {target}\n        subscription:\n          consume: {consume}\n{extra}"
    )


def publish_many(document: str, target: str, count: int) -> str:
    """A `for` task publishing `{n: 1..count}` with header `orderId: o<n>`."""
    inner = publish(document, target, "{n: '${ $item }'}", "{orderId: '${ \"o\\($item)\" }'}", name="one")
    inner = "\n".join("        " + line if line else line for line in inner.splitlines())
    return f"  - many:\n      for: {{in: '${{ [range(1; {count + 1})] }}'}}\n      do:\n{inner}\n"


async def test_v2_publish_then_consume_an_amount(bus: Bus) -> None:
    """2.6: messages published on a channel are consumed in order with payload, headers and correlation id."""
    document = v2(bus)
    body = "do:\n" + publish_many(document, f"channel: {bus.name}", 3)
    body += subscribe(document, f"channel: {bus.name}", "{amount: 3}")
    result, _ = await run_with(body, options=bus.options)
    assert result.status.value == "completed", result.error
    assert [m["payload"] for m in result.output] == [{"n": 1}, {"n": 2}, {"n": 3}]
    assert [m["correlationId"] for m in result.output] == ["o1", "o2", "o3"]
    assert result.output[0]["headers"] == {"orderId": "o1"}


async def test_publish_outputs_the_message_sent(bus: Bus) -> None:
    """A publish task's output is the message as sent, its correlation id read from the document's location."""
    document = v2(bus)
    body = "do:\n" + publish(document, f"channel: {bus.name}", "{id: 7}", "{orderId: abc}")
    result, _ = await run_with(body, options=bus.options)
    assert result.status.value == "completed", result.error
    assert result.output == {"payload": {"id": 7}, "headers": {"orderId": "abc"}, "correlationId": "abc"}


async def test_v3_subscription_on_an_exchange_sees_messages_published_after_it_started(bus: Bus) -> None:
    """3.0: a `receive` operation on a topic exchange gets what a concurrent `send` publishes, filtered."""
    document = v3(bus)
    subscriber = subscribe(document, "operation: watch", "{amount: 2}", "          filter: '${ .payload.id != 2 }'\n")
    publisher = "  - pause: {wait: {milliseconds: 300}}\n" + publish_many(document, "operation: place", 3).replace(
        "{n: '${ $item }'}", "{id: '${ $item }'}"
    )
    body = (
        "do:\n  - both:\n      fork:\n        branches:\n"
        f"          - listen:\n              do:\n{textwrap.indent(subscriber, ' ' * 14)}"
        f"          - talk:\n              do:\n{textwrap.indent(publisher, ' ' * 14)}"
        "      output: {as: '${ .[0] }'}\n"
    )
    result, _ = await run_with(body, options=bus.options)
    assert result.status.value == "completed", result.error
    assert [m["payload"]["id"] for m in result.output] == [1, 3]
    assert [m["correlationId"] for m in result.output] == ["1", "3"]


async def test_v3_address_on_the_default_exchange_is_a_queue(bus: Bus) -> None:
    """3.0 without an exchange name: the address is a queue, so messages wait for a later subscription."""
    document = v3(bus, exchange=False)
    body = (
        "do:\n"
        + publish(document, "operation: place", "{id: 1}")
        + publish(document, "operation: place", "{id: 2}", name="pub2")
    )
    body += subscribe(document, "operation: watch", "{amount: 2}")
    result, _ = await run_with(body, options=bus.options)
    assert result.status.value == "completed", result.error
    assert [m["payload"] for m in result.output] == [{"id": 1}, {"id": 2}]


async def test_consume_for_a_duration_ends_normally_with_what_came(bus: Bus) -> None:
    """`for` alone ends the subscription after that long, without error, with the messages it got (none here)."""
    document = v2(bus)
    body = "do:\n" + subscribe(document, f"channel: {bus.name}", "{while: '${ true }', for: {milliseconds: 400}}")
    started = asyncio.get_running_loop().time()
    result, _ = await run_with(body, options=bus.options)
    assert result.status.value == "completed", result.error
    assert result.output == []
    assert 0.3 < asyncio.get_running_loop().time() - started < 5


async def test_consume_while_checks_after_each_message(bus: Bus) -> None:
    """`while` is evaluated after each consumed message with `.` the messages so far."""
    document = v2(bus)
    body = "do:\n" + publish_many(document, f"channel: {bus.name}", 5)
    body += subscribe(document, f"channel: {bus.name}", "{while: '${ length < 3 }'}")
    result, _ = await run_with(body, options=bus.options)
    assert [m["payload"]["n"] for m in result.output] == [1, 2, 3]


async def test_consume_until_leaves_the_rest_on_the_queue(bus: Bus) -> None:
    """`until` stops before the next message; messages not consumed stay queued for the next subscription."""
    document = v2(bus)
    body = "do:\n" + publish_many(document, f"channel: {bus.name}", 5)
    body += subscribe(document, f"channel: {bus.name}", "{until: '${ length == 2 }'}", name="first")
    body += subscribe(document, f"channel: {bus.name}", "{amount: 3}", name="rest").replace(
        "  - rest:\n", "  - rest:\n      output: {as: '${ {rest: [.[].payload.n]} }'}\n", 1
    )
    result, events = await run_with(body, options=bus.options)
    assert result.status.value == "completed", result.error
    first = next(e for e in events.events if e.data.get("task") == "/do/1/first" and "output" in e.data)
    assert [m["payload"]["n"] for m in first.data["output"]] == [1, 2]
    assert result.output == {"rest": [3, 4, 5]}


async def test_foreach_processes_each_message_like_listen(bus: Bus) -> None:
    """`foreach` runs its tasks per message with `$msg` and `$i`, shapes outputs and exports into the context."""
    document = v2(bus)
    foreach = (
        "          foreach:\n            item: msg\n            at: i\n"
        "            do:\n              - tag: {set: {n: '${ $msg.payload.n }', at: '${ $i }'}}\n"
        "            output: {as: '${ .n * 10 }'}\n"
        "            export: {as: '${ $context + {last: .} }'}\n"
    )
    body = "do:\n" + publish_many(document, f"channel: {bus.name}", 2)
    body += subscribe(document, f"channel: {bus.name}", "{amount: 2}", foreach).replace(
        "  - sub:\n", "  - sub:\n      output: {as: '${ {items: ., last: $context.last} }'}\n", 1
    )
    result, _ = await run_with(body, options=bus.options)
    assert result.status.value == "completed", result.error
    assert result.output == {"items": [10, 20], "last": 20}


async def test_channel_that_does_not_exist_is_a_configuration_error(bus: Bus) -> None:
    """A channel the document lacks fails at the task, naming it and the channels there are."""
    document = v2(bus)
    result, _ = await run_with("do:\n" + publish(document, "channel: nowhere", "{a: 1}"), options=bus.options)
    assert result.error["type"] == ERRORS + "configuration"
    assert result.error["title"] == "AsyncAPI channel not found"
    assert "'nowhere'" in result.error["detail"]
    assert bus.name in result.error["detail"]
    assert result.error["instance"] == "/do/0/pub"


async def test_operation_of_the_wrong_action_is_refused(bus: Bus) -> None:
    """Publishing through a `receive` operation is a configuration error saying so."""
    document = v3(bus)
    result, _ = await run_with("do:\n" + publish(document, "operation: watch", "{a: 1}"), options=bus.options)
    assert result.error["type"] == ERRORS + "configuration"
    assert "`receive`" in result.error["detail"]


async def test_channel_on_a_2_6_document_named_as_operation_is_refused(bus: Bus) -> None:
    """An `operation` against a 2.6 document is a clear configuration error."""
    document = v2(bus)
    result, _ = await run_with("do:\n" + publish(document, "operation: x", "{a: 1}"), options=bus.options)
    assert result.error["type"] == ERRORS + "configuration"
    assert result.error["title"] == "AsyncAPI 2.x needs `channel`"


async def test_server_of_an_unsupported_protocol_is_refused_naming_it(bus: Bus) -> None:
    """A document whose server speaks kafka: refused at run time as not supported by this runtime, naming it."""
    document = v2(bus, protocol="kafka")
    result, _ = await run_with("do:\n" + publish(document, f"channel: {bus.name}", "{a: 1}"), options=bus.options)
    assert result.error["type"] == ERRORS + "configuration"
    assert "not supported by this runtime" in result.error["title"]
    assert "'kafka'" in result.error["detail"]


async def test_unreachable_broker_is_a_communication_error(bus: Bus) -> None:
    """No broker at the server's address: the communication error at the task."""
    document = v2(bus, port=free_port())
    result, _ = await run_with("do:\n" + publish(document, f"channel: {bus.name}", "{a: 1}"), options=bus.options)
    assert result.error["type"] == ERRORS + "communication"
    assert result.error["title"] == "AMQP broker unreachable"
    assert result.error["instance"] == "/do/0/pub"


async def test_message_no_queue_takes_is_an_error(bus: Bus) -> None:
    """Publishing to an exchange nothing is bound to fails rather than dropping the message silently."""
    document = v3(bus)
    result, _ = await run_with("do:\n" + publish(document, "operation: place", "{a: 1}"), options=bus.options)
    assert result.error["type"] == ERRORS + "communication"
    assert result.error["title"] == "Message not delivered"


async def test_wrong_broker_password_from_a_secret_never_shows(bus: Bus) -> None:
    """Basic authentication is the AMQP login; a refused login is a communication error without the password."""
    document = v2(bus)
    body = "use:\n  secrets: [broker]\ndo:\n" + publish(document, f"channel: {bus.name}", "{a: 1}")
    body += "        authentication: {basic: {username: guest, password: '${ $secrets.broker }'}}\n"
    result, events = await run_with(body, options=bus.options, secrets={"broker": "wr0ng-pa55"})
    assert result.error["type"] == ERRORS + "communication"
    assert not any("wr0ng-pa55" in orjson.dumps(e.data).decode() for e in events.events)
    ok, _ = await run_with(body, options=bus.options, secrets={"broker": "guest"})
    assert ok.status.value == "completed", ok.error


async def test_task_timeout_ends_an_endless_subscription(bus: Bus) -> None:
    """A subscription consuming forever is cut by its task timeout (the timeout error)."""
    document = v2(bus)
    body = "do:\n" + subscribe(document, f"channel: {bus.name}", "{while: '${ true }'}").replace(
        "  - sub:\n", "  - sub:\n      timeout: {after: {milliseconds: 400}}\n", 1
    )
    result, _ = await run_with(body, options=bus.options)
    assert result.error["type"] == ERRORS + "timeout"
    assert result.error["instance"] == "/do/0/sub"


async def test_cancel_during_a_subscription(bus: Bus) -> None:
    """Cancelling the execution while it waits for messages ends it cancelled, promptly."""
    document = v2(bus)
    body = "do:\n" + subscribe(document, f"channel: {bus.name}", "{amount: 1}")
    result, _ = await run_cancelled(body, "/do/0/sub", options=bus.options)
    assert result.status.value == "cancelled"


async def test_http_server_publish_and_poll(mock: MockServer, tmp_path: Path) -> None:
    """An `http` server: a message is POSTed as JSON to the address; a subscription polls it with GET."""
    bus = Bus("http", tmp_path, EngineOptions(resource_roots=(str(tmp_path),)))
    document = bus.write(
        "http.yaml",
        {
            "asyncapi": "3.0.0",
            "info": {"title": "web", "version": "1.0.0"},
            "servers": {"web": {"host": mock.host, "protocol": "http", "pathname": "/anything"}},
            "channels": {"inbox": {"address": "inbox"}},
            "operations": {
                "post": {"action": "send", "channel": {"$ref": "#/channels/inbox"}},
                "poll": {"action": "receive", "channel": {"$ref": "#/channels/inbox"}},
            },
        },
    )
    body = "do:\n" + publish(document, "operation: post", "{hello: world}", "{X-Trace: t1}").replace(
        "  - pub:\n", "  - pub:\n      export: {as: '${ {sent: .} }'}\n", 1
    )
    body += subscribe(document, "operation: poll", "{amount: 2}", name="poll")
    result, _ = await run_with(body, options=bus.options)
    assert result.status.value == "completed", result.error
    assert [m["payload"]["method"] for m in result.output] == ["GET", "GET"]
    assert result.output[0]["payload"]["path"] == "/anything/inbox"
    posts = [h for method, path, h in mock.state["requests"] if (method, path) == ("POST", "/anything/inbox")]
    assert posts[-1]["X-Trace"] == "t1"
    assert posts[-1]["Content-Type"] == "application/json"
