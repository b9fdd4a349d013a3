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
