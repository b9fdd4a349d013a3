"""The AMQP ingress in-process against the real RabbitMQ: replies, prefetch, poison, requeue, reconnect, topology."""

from __future__ import annotations

import gzip
from pathlib import Path

import aio_pika
import aio_pika.abc
import orjson
import pytest

from tests.helpers import eventually
from tests.integration.conftest_amqp import (
    AMQP_URL,
    MaxGauge,
    ReplyInbox,
    close_connections,
    connection_pids,
    depth,
    document,
    publish,
    running,
    settings_env,
    take,
    waiting,
)

pytestmark = pytest.mark.timeout(60)

HELLO = document("do:\n  - greet: {set: {message: '${ \"Hello, \" + .name }'}}\n")


async def test_happy_path_replies_the_result(
    tmp_path: Path, queue_name: str, amqp: aio_pika.abc.AbstractChannel
) -> None:
    """`submit_via_amqp` gets the result back; the events say attempt 1; the message is acked."""
    from consumer.amqp import submit_via_amqp

    async with running(settings_env(queue_name), tmp_path) as runner:
        reply = await submit_via_amqp(
            AMQP_URL, HELLO, queue=queue_name, execution_id="happy-1", input={"name": "Ada"}, timeout=15
        )
        completed = runner.sink.of("happy-1", "completed")
        assert await depth(amqp, queue_name) == (0, 1)
    assert reply == {
        "execution_id": "happy-1",
        "status": "completed",
        "output": {"message": "Hello, Ada"},
        "error": None,
    }
    assert [event["attempt"] for event in completed] == [1]
    assert await take(amqp, f"{queue_name}.dead", 1, within=0.2) == []


async def test_200_messages_with_prefetch_10(
    tmp_path: Path, queue_name: str, amqp: aio_pika.abc.AbstractChannel
) -> None:
    """200 executions all complete, never more than 10 at once (the prefetch)."""
    inbox = await ReplyInbox(amqp).open()
    async with running(settings_env(queue_name, AMQP_PREFETCH="10"), tmp_path) as runner:
        gauge = MaxGauge()
        runner.service.metrics.in_flight = gauge
        for n in range(200):
            body = {"execution_id": f"bulk-{n}", "workflow_yaml": waiting(0.05)}
            await publish(amqp, queue_name, body, reply_to=inbox.name, correlation_id=f"c{n}")
        await eventually(lambda: len(inbox.replies) == 200, 60, "200 replies")
        await eventually(lambda: runner.ingress.in_flight == 0, 5, "every delivery settled")
    assert all(replies[0]["status"] == "completed" for replies in inbox.replies.values())
    assert gauge.peak == 10
    assert len(runner.sink.of("bulk-199", "completed")) == 1
    assert await depth(amqp, queue_name) == (0, 0)


async def test_poison_messages_are_dead_lettered_with_their_reason(
    tmp_path: Path, queue_name: str, amqp: aio_pika.abc.AbstractChannel
) -> None:
    """Bad messages land in `<queue>.dead` with their reason, reported when they name an execution; good ones run."""
    good = {"execution_id": "good", "workflow_yaml": HELLO, "input": {"name": "B"}}
    big = orjson.dumps({"execution_id": "big", "workflow_yaml": HELLO + "#" * 5000})
    poison: dict[str, tuple[bytes | dict[str, object] | list[object], dict[str, object], str, str]] = {
        "p-json": (b"{not json", {}, "malformed", "not valid JSON"),
        "p-array": ([1, 2], {}, "malformed", "must be a JSON object"),
        "p-noid": ({"workflow_yaml": HELLO}, {"message_id": " "}, "malformed", "/execution_id: required"),
        "p-idtype": ({"execution_id": 5, "workflow_yaml": HELLO}, {}, "malformed", "/execution_id: must be a string"),
        "p-nodoc": ({"execution_id": "p-nodoc"}, {}, "malformed", "/workflow_yaml: required"),
        "p-doctype": ({"execution_id": "p-doctype", "workflow_yaml": [1]}, {}, "malformed", "/workflow_yaml: must be"),
        "p-empty": ({"execution_id": "p-empty", "workflow_yaml": " "}, {}, "malformed", "must not be empty"),
        "p-yaml": ({"execution_id": "p-yaml", "workflow_yaml": "do: ["}, {}, "invalid-document", "YAML"),
        "p-invalid": (
            {"execution_id": "p-invalid", "workflow_yaml": document("do:\n  - a: {nonsense: 1}\n")},
            {},
            "invalid-document",
            "workflow_yaml: /do/0/a",
        ),
        "p-unsupported": (
            {
                "execution_id": "p-unsupported",
                "workflow_yaml": document("do:\n  - a: {run: {container: {image: x}}}\n"),
            },
            {},
            "unsupported-document",
            "not supported",
        ),
        "p-big": (big, {}, "malformed", "over the limit of 4096 bytes"),
        "p-encoding": (
            orjson.dumps(good | {"execution_id": "p-encoding"}),
            {"content_encoding": "br"},
            "malformed",
            "gzip",
        ),
        "p-gzip": (b"\x1f\x8bnot gzip", {"content_encoding": "gzip"}, "malformed", "not valid gzip"),
        "p-ctype": (b"<xml/>", {"content_type": "application/xml"}, "malformed", "/properties/content_type"),
        "p-secrets": (
            {"execution_id": "p-secrets", "workflow_yaml": HELLO, "secrets": [1]},
            {},
            "malformed",
            "/secrets",
        ),
        "p-meta": (
            {"execution_id": "p-meta", "workflow_yaml": HELLO, "metadata": {"k": 1}},
            {},
            "malformed",
            "/metadata/k",
        ),
        "p-unknown": ({"execution_id": "p-unknown", "workflow_yaml": HELLO, "inputs": {}}, {}, "malformed", "/inputs"),
        "p-deadline": (
            {"execution_id": "p-deadline", "workflow_yaml": HELLO, "deadline": "tomorrow"},
            {},
            "malformed",
            "/deadline",
        ),
        "p-conflict": (
            {"execution_id": "good", "workflow_yaml": HELLO, "input": {"name": "other"}},
            {},
            "conflict",
            "different document or input",
        ),
    }
    env = settings_env(queue_name, AMQP_MAX_MESSAGE_BYTES="4096")
    inbox = await ReplyInbox(amqp).open()
    async with running(env, tmp_path) as runner:
        await publish(amqp, queue_name, good, reply_to=inbox.name, correlation_id="good")
        await inbox.wait("good")
        for tag, (body, extra, _, _) in poison.items():
            properties = {"message_id": tag, "reply_to": inbox.name, "correlation_id": tag, **extra}
            await publish(amqp, queue_name, body, **properties)
        zipped = gzip.compress(orjson.dumps({"execution_id": "zipped", "workflow_yaml": HELLO, "input": {"name": "Z"}}))
        await publish(amqp, queue_name, zipped, content_encoding="gzip", reply_to=inbox.name, correlation_id="zipped")
        dead = await take(amqp, f"{queue_name}.dead", len(poison))
        zipped_reply = await inbox.wait("zipped")
        await eventually(lambda: len(inbox.replies) == len(poison) + 2, 10, "a reply to every message")
        assert runner.ingress.in_flight == 0
    assert zipped_reply["output"] == {"message": "Hello, Z"}
    by_tag = {message.correlation_id: message for message in dead}
    assert set(by_tag) == set(poison)
    for tag, (_, _, code, reason) in poison.items():
        headers = by_tag[tag].headers
        assert headers["x-rejection-code"] == code, tag
        assert reason in str(headers["x-rejection-reason"]), (tag, headers["x-rejection-reason"])
        assert headers["x-rejected-from"] == queue_name
        assert inbox.replies[tag][0]["status"] == "invalid"
        assert inbox.replies[tag][0]["errors"], tag
    assert await depth(amqp, queue_name) == (0, 0)
    for named in ("p-nodoc", "p-yaml", "p-invalid", "p-unsupported", "p-meta"):
        reported = runner.sink.of(named, "faulted")
        assert len(reported) == 1, named
        assert poison[named][3] in reported[0]["data"]["error"]["detail"], named
    assert not runner.sink.of("good", "faulted"), "a conflicting message does not contradict the real execution"


async def test_unconfirmed_progress_is_requeued_then_stopped_by_the_delivery_limit(
    tmp_path: Path, queue_name: str, amqp: aio_pika.abc.AbstractChannel
) -> None:
    """With the sink down, the delivery is requeued after the delay, redelivered, and dead-lettered at the limit."""
    env = settings_env(queue_name, AMQP_DELIVERY_LIMIT="2", CALLBACK_FLUSH_TIMEOUT_SECONDS="0.3")
    async with running(env, tmp_path) as runner:
        runner.sink.failing = True
        await publish(amqp, queue_name, {"execution_id": "flaky", "workflow_yaml": HELLO, "input": {"name": "F"}})
        dead = await take(amqp, f"{queue_name}.dead", 1, within=20)
    assert len(dead) == 1
    assert dead[0].headers["x-first-death-reason"] == "delivery_limit"
    assert await depth(amqp, queue_name) == (0, 0)


async def test_at_capacity_a_delivery_waits_instead_of_burning_its_delivery_limit(
    tmp_path: Path, queue_name: str, amqp: aio_pika.abc.AbstractChannel
) -> None:
    """While other ingresses fill the execution cap for longer than the delivery limit times the requeue delay, a valid
    message waits for room and runs as attempt 1 instead of ending in the dead-letter queue."""
    from executor import ExecuteCommand, Source

    inbox = await ReplyInbox(amqp).open()
    env = settings_env(queue_name, AMQP_DELIVERY_LIMIT="1", AMQP_REQUEUE_DELAY_SECONDS="0.1")
    async with running(env, tmp_path, max_concurrent=1) as runner:
        blocker = ExecuteCommand(execution_id="blocker", workflow_yaml=waiting(1.0), source=Source.GRPC)
        runner.service.start(blocker)
        await publish(
            amqp,
            queue_name,
            {"execution_id": "later", "workflow_yaml": HELLO, "input": {"name": "L"}},
            reply_to=inbox.name,
            correlation_id="later",
        )
        reply = await inbox.wait("later")
        started = runner.sink.of("later", "started")
    assert reply["status"] == "completed"
    assert [event["attempt"] for event in started] == [1]
    assert await take(amqp, f"{queue_name}.dead", 1, within=0.2) == []


async def test_consumer_recovers_when_the_broker_closes_the_connection(
    tmp_path: Path, queue_name: str, amqp: aio_pika.abc.AbstractChannel
) -> None:
    """Mid-run, the broker drops the connection: the run finishes once, its redelivery is acked, and work goes on."""
    inbox = await ReplyInbox(amqp).open()
    async with running(settings_env(queue_name), tmp_path) as runner:
        pids = await connection_pids(runner.ingress.connection_name)
        await publish(
            amqp,
            queue_name,
            {"execution_id": "survivor", "workflow_yaml": waiting(3)},
            reply_to=inbox.name,
            correlation_id="survivor",
        )
        await eventually(lambda: runner.service.running == 1, 10, "the execution to start")
        await close_connections(pids)
        first = await inbox.wait("survivor", within=20)
        await publish(
            amqp,
            queue_name,
            {"execution_id": "after", "workflow_yaml": HELLO, "input": {"name": "A"}},
            reply_to=inbox.name,
            correlation_id="after",
        )
        after = await inbox.wait("after", within=20)
        await eventually(lambda: runner.ingress.in_flight == 0, 10, "every delivery settled")
        ready, consumers = await depth(amqp, queue_name)
    assert first["status"] == "completed"
    assert after["output"] == {"message": "Hello, A"}
    assert len(runner.sink.of("survivor", "started")) == 1, "the redelivery joined the running execution"
    assert (ready, consumers) == (0, 1)


async def test_existing_classic_queue_stops_start_up(
    tmp_path: Path, queue_name: str, amqp: aio_pika.abc.AbstractChannel
) -> None:
    """A classic queue under AMQP_QUEUE is not silently reused: start-up fails naming the variable and the fix."""
    from consumer import StartupError

    await amqp.declare_queue(queue_name, durable=True)
    with pytest.raises(StartupError) as caught:
        async with running(settings_env(queue_name), tmp_path):
            pass
    message = str(caught.value)
    assert message.startswith("AMQP_QUEUE:")
    assert "inequivalent arg" in message
    assert "quorum" in message


async def test_unreachable_broker_stops_start_up_without_the_password(tmp_path: Path, queue_name: str) -> None:
    """A broker that does not answer fails start-up in one line that names AMQP_URL but not the credentials."""
    from consumer import StartupError

    env = settings_env(queue_name, AMQP_URL="amqp://guest:s3cret-pw@127.0.0.1:1/")
    with pytest.raises(StartupError) as caught:
        async with running(env, tmp_path):
            pass
    assert str(caught.value).startswith("AMQP_URL: cannot connect to the broker at 127.0.0.1:1")
    assert "s3cret" not in str(caught.value)


async def test_stop_is_idempotent_and_leaves_unfinished_work_queued(
    tmp_path: Path, queue_name: str, amqp: aio_pika.abc.AbstractChannel
) -> None:
    """stop(grace) with a long execution in flight leaves its message in the queue; a second stop does nothing."""
    async with running(settings_env(queue_name), tmp_path) as runner:
        await publish(amqp, queue_name, {"execution_id": "long", "workflow_yaml": waiting(30)})
        await eventually(lambda: runner.service.running == 1, 10, "the execution to start")
        await runner.ingress.stop(0.2)
        await runner.ingress.stop(0.2)
        await eventually(lambda: _ready(amqp, queue_name), 10, "the message back in the queue")


async def _ready(channel: aio_pika.abc.AbstractChannel, queue: str) -> bool:
    ready, _ = await depth(channel, queue)
    return ready == 1


async def test_events_exchange_of_another_type_stops_start_up(
    tmp_path: Path, queue_name: str, amqp: aio_pika.abc.AbstractChannel
) -> None:
    """An AMQP_EVENTS_EXCHANGE that exists as another exchange type fails start-up naming the variable."""
    from consumer import StartupError

    await amqp.declare_exchange(f"{queue_name}.events", aio_pika.ExchangeType.FANOUT, durable=True)
    with pytest.raises(StartupError) as caught:
        async with running(settings_env(queue_name), tmp_path):
            pass
    assert str(caught.value).startswith("AMQP_EVENTS_EXCHANGE:")
