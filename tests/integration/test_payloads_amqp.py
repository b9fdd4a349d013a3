"""Large payloads through the AMQP ingress against the real RabbitMQ: references in commands and replies, `submit`
uploading and downloading by itself, a missing or altered object refused with the reference named."""

from __future__ import annotations

from pathlib import Path

import aio_pika.abc
import orjson
import pytest

from consumer.config import Settings
from consumer.payloads import PayloadRef, PayloadStore
from tests.integration.conftest_amqp import (
    AMQP_URL,
    ReplyInbox,
    document,
    publish,
    running,
    settings_env,
    take,
)

MB = 1024 * 1024
PASS_THROUGH = document("do:\n  - pause: {wait: {milliseconds: 1}}\n")


def _env(queue: str, tmp_path: Path, **extra: str) -> dict[str, str]:
    return settings_env(queue, PAYLOAD_STORE_URL=str(tmp_path / "store"), **extra)


def _store(env: dict[str, str]) -> PayloadStore:
    return PayloadStore.from_settings(Settings.from_env(env).payloads)


@pytest.mark.slow
@pytest.mark.timeout(180)
async def test_submit_moves_a_hundred_megabytes_both_ways(tmp_path: Path, queue_name: str) -> None:
    """`submit_via_amqp` with the store uploads a 100 MB input and downloads the 100 MB output by itself."""
    from consumer.amqp import submit_via_amqp

    env = _env(queue_name, tmp_path)
    blob = "q" * (100 * MB)
    async with running(env, tmp_path) as runner:
        reply = await submit_via_amqp(
            AMQP_URL,
            PASS_THROUGH,
            queue=queue_name,
            execution_id="big-amqp",
            input={"blob": blob},
            timeout=150,
            store=_store(env),
        )
        completed = runner.sink.of("big-amqp", "completed")
    assert reply["status"] == "completed"
    assert reply["output"] == {"blob": blob}
    assert len(completed) == 1


async def test_references_in_and_out_keep_messages_small(
    tmp_path: Path, queue_name: str, amqp: aio_pika.abc.AbstractChannel
) -> None:
    """A message carrying `workflow_yaml_ref` and `input_ref` runs; its 2 MB output comes back as `output_ref`
    (the reply stays small) and reads back equal from the store."""
    env = _env(queue_name, tmp_path, AMQP_MAX_MESSAGE_BYTES="4096")
    store = _store(env)
    rows = [f"row-{i:07d}" for i in range(200_000)]
    body = {
        "execution_id": "refs-1",
        "workflow_yaml_ref": (await store.put(PASS_THROUGH.encode(), "application/yaml")).to_dict(),
        "input_ref": (await store.put_json({"rows": rows})).to_dict(),
    }
    inbox = await ReplyInbox(amqp).open()
    async with running(env, tmp_path):
        await publish(amqp, queue_name, body, reply_to=inbox.name, correlation_id="refs-1")
        reply = await inbox.wait("refs-1", within=30)
    assert len(orjson.dumps(body)) < 1024
    assert len(orjson.dumps(reply)) < 1024
    assert "output" not in reply
    assert reply["status"] == "completed"
    assert await store.get_json(PayloadRef.from_dict(reply["output_ref"])) == {"rows": rows}


async def test_missing_or_altered_reference_is_refused_by_name(
    tmp_path: Path, queue_name: str, amqp: aio_pika.abc.AbstractChannel
) -> None:
    """An `input_ref` whose object is gone, or was altered, dead-letters the message with the reference named;
    the producer's reply says where (`/input_ref`)."""
    env = _env(queue_name, tmp_path)
    store = _store(env)
    gone = await store.put_json({"n": 1})
    altered = await store.put_json({"n": 2})
    (tmp_path / "store" / gone.key).unlink()
    (tmp_path / "store" / altered.key).write_bytes(b"WRP1\x00" + orjson.dumps({"n": 3}))
    inbox = await ReplyInbox(amqp).open()
    async with running(env, tmp_path):
        for name, ref in (("gone", gone), ("altered", altered)):
            message = {"execution_id": name, "workflow_yaml": PASS_THROUGH, "input_ref": ref.to_dict()}
            await publish(amqp, queue_name, message, reply_to=inbox.name, correlation_id=name)
        dead = await take(amqp, f"{queue_name}.dead", 2)
        replies = {name: await inbox.wait(name) for name in ("gone", "altered")}
    reasons = {message.correlation_id: str(message.headers["x-rejection-reason"]) for message in dead}
    assert gone.key in reasons["gone"]
    assert "missing" in reasons["gone"]
    assert altered.key in reasons["altered"]
    assert "does not match its sha256" in reasons["altered"]
    for name in ("gone", "altered"):
        assert replies[name]["status"] == "invalid"
        assert replies[name]["errors"][0]["path"] == "/input_ref"


async def test_reference_beside_its_inline_field_is_refused(
    tmp_path: Path, queue_name: str, amqp: aio_pika.abc.AbstractChannel
) -> None:
    """A message with both `input` and `input_ref` is refused: which one was meant cannot be guessed."""
    env = _env(queue_name, tmp_path)
    ref = await _store(env).put_json({"n": 1})
    inbox = await ReplyInbox(amqp).open()
    async with running(env, tmp_path):
        message = {"execution_id": "both", "workflow_yaml": PASS_THROUGH, "input": {}, "input_ref": ref.to_dict()}
        await publish(amqp, queue_name, message, reply_to=inbox.name, correlation_id="both")
        reply = await inbox.wait("both")
    assert reply["status"] == "invalid"
    assert reply["errors"][0]["path"] == "/input_ref"
    assert reply["errors"][0]["message"] == "give input or input_ref, not both"
