"""Issue 11's failures through the AMQP ingress on the real broker: no secret in refusals or dead letters, one run."""

from __future__ import annotations

import gzip
from pathlib import Path

import aio_pika
import aio_pika.abc
import orjson
import pytest

from tests.integration.conftest_amqp import (
    ReplyInbox,
    depth,
    document,
    publish,
    running,
    settings_env,
    take,
)

pytestmark = pytest.mark.timeout(60)

HELLO = document("do:\n  - greet: {set: {message: '${ \"Hello, \" + .name }'}}\n")
SECRET = "Zq9-deadline-secret-Xv"


async def test_a_secret_put_in_a_field_is_not_echoed_and_the_dead_letter_keeps_no_secret(
    tmp_path: Path, queue_name: str, amqp: aio_pika.abc.AbstractChannel
) -> None:
    """A secret misplaced in `deadline` is refused without quoting it (reply, rejection header, faulted event), and
    the dead-lettered copy has every secret value replaced by `***`."""
    inbox = await ReplyInbox(amqp).open()
    body = {
        "execution_id": "leaky-1",
        "workflow_yaml": HELLO,
        "deadline": SECRET,
        "secrets": {"api": SECRET, "nested": {"pw": "nested-pw-771"}},
    }
    async with running(settings_env(queue_name), tmp_path) as runner:
        await publish(amqp, queue_name, body, reply_to=inbox.name, correlation_id="leaky-1")
        reply = await inbox.wait("leaky-1")
        [dead] = await take(amqp, f"{queue_name}.dead", 1)
        events = runner.sink.of("leaky-1")
    assert reply["status"] == "invalid"
    assert [error["path"] for error in reply["errors"]] == ["/deadline"]
    assert dead.headers["x-rejection-code"] == "malformed"
    assert dead.headers["x-secrets-stripped"] is True
    assert orjson.loads(dead.body)["secrets"] == {"api": "***", "nested": "***"}
    assert orjson.loads(dead.body)["deadline"] == SECRET  # the body as sent, only its `secrets` stripped
    assert len(events) == 1
    for artefact in (orjson.dumps(reply), str(dead.headers).encode(), orjson.dumps(events)):
        assert SECRET.encode() not in artefact
    assert b"nested-pw-771" not in dead.body


async def test_junk_after_gzip_data_is_refused(
    tmp_path: Path, queue_name: str, amqp: aio_pika.abc.AbstractChannel
) -> None:
    """Bytes after the end of a gzip body are refused (dead-lettered with the reason), not silently ignored."""
    inbox = await ReplyInbox(amqp).open()
    body = gzip.compress(orjson.dumps({"execution_id": "junk-1", "workflow_yaml": HELLO})) + b"JUNK"
    async with running(settings_env(queue_name), tmp_path):
        await publish(
            amqp,
            queue_name,
            body,
            content_encoding="gzip",
            reply_to=inbox.name,
            correlation_id="junk-1",
            message_id="junk-1",
        )
        reply = await inbox.wait("junk-1")
        [dead] = await take(amqp, f"{queue_name}.dead", 1)
    assert reply["errors"] == [
        {"path": "/properties/content_encoding", "message": "4 bytes follow the end of the gzip data"}
    ]
    assert dead.headers["x-rejection-code"] == "malformed"


async def test_an_unreadable_dead_letter_loses_its_body(
    tmp_path: Path, queue_name: str, amqp: aio_pika.abc.AbstractChannel
) -> None:
    """A body that is not JSON cannot be searched for secrets: its dead letter keeps the reason, not the bytes."""
    raw = b'{"execution_id": "x", "secrets": {"k": "' + SECRET.encode() + b'"'  # truncated JSON
    async with running(settings_env(queue_name), tmp_path):
        await publish(amqp, queue_name, raw, message_id="broken-1")
        [dead] = await take(amqp, f"{queue_name}.dead", 1)
    assert dead.body == b""
    assert "x-body-removed" in dead.headers
    assert "not valid JSON" in str(dead.headers["x-rejection-reason"])


async def test_output_nested_too_deep_runs_once_and_replies_faulted(
    tmp_path: Path, queue_name: str, amqp: aio_pika.abc.AbstractChannel
) -> None:
    """The 300-deep output faults the run once with the expression error: one start, one terminal event, a faulted
    reply, the message acked (not run six times and dead-lettered without a reason)."""
    deep = document("do:\n  - deep: {set: {x: '${ reduce range(300) as $i (0; [.]) }'}}\n")
    inbox = await ReplyInbox(amqp).open()
    async with running(settings_env(queue_name), tmp_path) as runner:
        await publish(
            amqp,
            queue_name,
            {"execution_id": "deep-1", "workflow_yaml": deep},
            reply_to=inbox.name,
            correlation_id="deep-1",
        )
        reply = await inbox.wait("deep-1")
        assert await depth(amqp, queue_name) == (0, 1)
        started, faulted = runner.sink.of("deep-1", "started"), runner.sink.of("deep-1", "faulted")
    assert reply["status"] == "faulted"
    assert reply["error"]["instance"] == "/do/0/deep"
    assert reply["error"]["type"].endswith("/expression")
    assert (len(started), len(faulted)) == (1, 1)
    assert not await take(amqp, f"{queue_name}.dead", 1, within=0.5)


async def test_a_passed_deadline_faults_naming_it(
    tmp_path: Path, queue_name: str, amqp: aio_pika.abc.AbstractChannel
) -> None:
    """A message whose `deadline` has passed ends faulted with the timeout error naming that deadline."""
    inbox = await ReplyInbox(amqp).open()
    body = {
        "execution_id": "late-1",
        "workflow_yaml": HELLO,
        "input": {"name": "x"},
        "deadline": "2020-01-01T00:00:00+00:00",
    }
    async with running(settings_env(queue_name), tmp_path):
        await publish(amqp, queue_name, body, reply_to=inbox.name, correlation_id="late-1")
        reply = await inbox.wait("late-1")
    assert reply["status"] == "faulted"
    assert (reply["error"]["status"], reply["error"]["detail"]) == (
        408,
        "the caller's deadline 2020-01-01T00:00:00+00:00 passed",
    )


async def test_deep_input_and_oversized_metadata_are_refused_with_their_paths(
    tmp_path: Path, queue_name: str, amqp: aio_pika.abc.AbstractChannel
) -> None:
    """An input nested 300 deep and 10,000 metadata entries are refused at decode (located, limit named), never run."""
    inbox = await ReplyInbox(amqp).open()
    deep = (
        b'{"execution_id": "deep-in", "workflow_yaml": '
        + orjson.dumps(HELLO)
        + b', "input": '
        + b"[" * 300
        + b"]" * 300
        + b"}"
    )
    crowded = {"execution_id": "crowded", "workflow_yaml": HELLO, "metadata": {f"k{n}": "v" for n in range(10_000)}}
    async with running(settings_env(queue_name), tmp_path) as runner:
        await publish(amqp, queue_name, deep, reply_to=inbox.name, correlation_id="deep-in")
        await publish(amqp, queue_name, crowded, reply_to=inbox.name, correlation_id="crowded")
        deep_reply, crowded_reply = await inbox.wait("deep-in"), await inbox.wait("crowded")
        assert len(await take(amqp, f"{queue_name}.dead", 2)) == 2
        started = runner.sink.of("deep-in", "started") + runner.sink.of("crowded", "started")
    assert deep_reply["errors"] == [
        {"path": "/input" + "/0" * 128, "message": "nested more than 128 levels deep (MAX_JSON_DEPTH)"}
    ]
    assert crowded_reply["errors"] == [
        {"path": "/metadata", "message": "10000 entries, over the limit of 64 (MAX_METADATA_ENTRIES)"}
    ]
    assert not started
