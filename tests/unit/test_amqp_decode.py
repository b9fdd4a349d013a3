"""Decoding AMQP execute messages: what becomes a command, and where each refusal points."""

from __future__ import annotations

import gzip
import zlib
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from consumer._amqp_decode import DecodeError, Properties, decode, encode
from executor import Source

DOC = "document: {dsl: '1.0.3', namespace: t, name: w, version: '1.0.0'}\ndo:\n  - a: {set: {x: 1}}\n"


def _body(**fields: Any) -> bytes:
    return orjson.dumps({"execution_id": "ex-1", "workflow_yaml": DOC, **fields})


def _refusal(body: bytes, properties: Properties | None = None, **kwargs: Any) -> DecodeError:
    with pytest.raises(DecodeError) as caught:
        decode(body, properties or Properties(), **kwargs)
    return caught.value


def test_full_message_becomes_a_command() -> None:
    """Every field of the body lands in the command, with source amqp and attempt 1."""
    body = _body(input={"n": 1}, secrets={"k": "v"}, metadata={"tenant": "acme"}, deadline="2030-01-01T00:00:00+00:00")
    command = decode(body, Properties())
    assert command.execution_id == "ex-1"
    assert command.workflow_yaml == DOC
    assert command.input == {"n": 1}
    assert dict(command.secrets) == {"k": "v"}
    assert dict(command.metadata) == {"tenant": "acme"}
    assert command.deadline == datetime(2030, 1, 1, tzinfo=UTC)
    assert command.source is Source.AMQP
    assert command.attempt == 1


def test_message_id_is_the_execution_id_when_the_body_has_none() -> None:
    """A body without execution_id takes the message_id property."""
    command = decode(orjson.dumps({"workflow_yaml": DOC}), Properties(message_id="from-props"))
    assert command.execution_id == "from-props"
    assert command.input == {}


def test_attempt_is_the_delivery_count_plus_one() -> None:
    """Quorum queues count deliveries; the third delivery is attempt 3."""
    assert decode(_body(), Properties(headers={"x-delivery-count": 2})).attempt == 3
    assert decode(_body(), Properties(redelivered=True)).attempt == 2


def test_gzip_and_deflate_bodies_are_inflated() -> None:
    """content_encoding gzip / deflate are read transparently."""
    assert decode(gzip.compress(_body()), Properties(content_encoding="gzip")).execution_id == "ex-1"
    assert decode(zlib.compress(_body()), Properties(content_encoding="deflate")).execution_id == "ex-1"


def test_encode_round_trips() -> None:
    """What `submit --amqp` publishes decodes to the same command."""
    body = encode(execution_id="rt", workflow_yaml=DOC, input=[1], secrets={"s": 1}, metadata={"m": "x"})
    command = decode(body, Properties())
    assert (command.execution_id, command.input, dict(command.secrets), dict(command.metadata)) == (
        "rt",
        [1],
        {"s": 1},
        {"m": "x"},
    )


POISON: list[tuple[str, bytes, Properties, str, str]] = [
    ("not JSON", b"{nope", Properties(), "", "not valid JSON"),
    ("not UTF-8", b'{"execution_id": "\xff"}', Properties(), "", "not valid JSON"),
    ("array", b"[1, 2]", Properties(), "", "must be a JSON object, got array"),
    ("string", b'"hello"', Properties(), "", "must be a JSON object, got string"),
    ("no id anywhere", orjson.dumps({"workflow_yaml": DOC}), Properties(), "/execution_id", "required"),
    ("id a number", _body(execution_id=7), Properties(), "/execution_id", "must be a string, got number"),
    ("id blank", _body(execution_id="  "), Properties(), "/execution_id", "non-empty"),
    ("id too long", _body(execution_id="x" * 300), Properties(), "/execution_id", "at most 256"),
    ("id with newline", _body(execution_id="a\nb"), Properties(), "/execution_id", "printable"),
    ("no document", orjson.dumps({"execution_id": "e"}), Properties(), "/workflow_yaml", "required"),
    ("document a number", _body(workflow_yaml=3), Properties(), "/workflow_yaml", "must be a string"),
    ("document empty", _body(workflow_yaml="  \n"), Properties(), "/workflow_yaml", "must not be empty"),
    ("secrets a list", _body(secrets=["a"]), Properties(), "/secrets", "must be an object, got array"),
    ("metadata a string", _body(metadata="x"), Properties(), "/metadata", "must be an object"),
    ("metadata value", _body(metadata={"a/b": 1}), Properties(), "/metadata/a~1b", "must be a string, got number"),
    ("deadline garbage", _body(deadline="soon"), Properties(), "/deadline", "RFC 3339"),
    ("deadline naive", _body(deadline="2030-01-01T00:00:00"), Properties(), "/deadline", "with a zone"),
    ("unknown field", _body(workflow="typo"), Properties(), "/workflow", "unknown field"),
    ("bad encoding", _body(), Properties(content_encoding="br"), "/properties/content_encoding", "gzip, deflate"),
    ("corrupt gzip", b"\x1f\x8b junk", Properties(content_encoding="gzip"), "/properties/content_encoding", "gzip"),
    ("xml", _body(), Properties(content_type="application/xml"), "/properties/content_type", "application/json"),
    ("count garbage", _body(), Properties(headers={"x-delivery-count": "2"}), "/headers/x-delivery-count", "integer"),
    ("count negative", _body(), Properties(headers={"x-delivery-count": -1}), "/headers/x-delivery-count", "integer"),
]


@pytest.mark.parametrize(("kind", "body", "properties", "path", "message"), POISON, ids=[p[0] for p in POISON])
def test_poison_is_located(kind: str, body: bytes, properties: Properties, path: str, message: str) -> None:
    """Each kind of bad message is refused with a JSON Pointer and a reason a producer can act on."""
    error = _refusal(body, properties)
    assert any(issue.path == path and message in issue.message for issue in error.issues), error.issues


def test_oversized_body_is_refused_before_parsing() -> None:
    """A body over the limit is refused by size, whatever it holds."""
    error = _refusal(b"x" * 2000, max_bytes=1024)
    assert "over the limit of 1024 bytes" in error.issues[0].message


def test_zip_bomb_is_refused_by_inflated_size() -> None:
    """A small gzip body that inflates past the limit is refused without inflating it all."""
    bomb = gzip.compress(b" " * 10_000_000)
    assert len(bomb) < 1024 * 64
    error = _refusal(bomb, Properties(content_encoding="gzip"), max_bytes=1024 * 64)
    assert "inflated message body is over the limit" in error.issues[0].message


def test_refusal_names_the_execution_it_could_read() -> None:
    """The execution id is known to the refusal whenever the message names one (body or message_id)."""
    assert _refusal(_body(secrets=1)).execution_id == "ex-1"
    assert _refusal(b"{nope", Properties(message_id="mid")).execution_id == "mid"
    assert _refusal(b"{nope").execution_id is None


def test_every_issue_is_reported_at_once() -> None:
    """Several problems in one message are all listed, not just the first."""
    error = _refusal(_body(secrets=1, metadata=2, extra=3))
    assert {issue.path for issue in error.issues} == {"/secrets", "/metadata", "/extra"}
    assert "/secrets: must be an object" in str(error)
