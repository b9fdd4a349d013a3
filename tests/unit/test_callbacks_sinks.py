"""Each sink's wire behaviour and failure mapping, and the choice of sink from configuration."""

from __future__ import annotations

import asyncio
import io
import socket
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import orjson
import pytest

from callbacks import (
    DEFAULT_SOURCE,
    AmqpSink,
    CloudEvent,
    GrpcSink,
    HttpSink,
    JsonLinesSink,
    ReferenceSink,
    SinkRefusedError,
    SinkUnavailableError,
    StdoutSink,
    event_id,
    sink_from_config,
)


def _events(execution: str, count: int, data: object = None) -> list[CloudEvent]:
    return [
        CloudEvent(
            id=event_id(execution, 1, seq),
            source=DEFAULT_SOURCE,
            type="io.serverlessworkflow.task.completed.v1",
            time="2025-06-01T12:00:00Z",
            subject=execution,
            executionid=execution,
            sequence=seq,
            attempt=1,
            data={"task": f"/do/{seq}"} if data is None else data,
        )
        for seq in range(1, count + 1)
    ]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
async def refsink() -> AsyncIterator[ReferenceSink]:
    """A reference sink on free ports that keeps events in memory only."""
    sink = ReferenceSink()
    await sink.start()
    yield sink
    await sink.close()


def test_factory_defaults_to_stdout() -> None:
    """With nothing configured, events go to stdout."""
    assert isinstance(sink_from_config(), StdoutSink)


async def test_factory_picks_the_configured_destination(tmp_path: Path) -> None:
    """Each configured destination yields its sink; the AMQP URL alone selects nothing."""
    assert isinstance(sink_from_config(endpoint="cp:443", use_tls=True, api_key="k"), GrpcSink)
    http = sink_from_config(http_url="http://cp/events", http_headers={"authorization": "Bearer k"})
    assert isinstance(http, HttpSink)
    await http.close()
    assert isinstance(sink_from_config(amqp_url="amqp://h", amqp_exchange="progress"), AmqpSink)
    assert isinstance(sink_from_config(amqp_url="amqp://h"), StdoutSink)
    assert isinstance(sink_from_config(jsonl_path=tmp_path / "e.jsonl"), JsonLinesSink)


def test_factory_rejects_ambiguous_configuration() -> None:
    """Two destinations, or an exchange without a broker, stop start-up with a clear message."""
    with pytest.raises(ValueError, match="endpoint, http_url"):
        sink_from_config(endpoint="cp:443", http_url="http://cp")
    with pytest.raises(ValueError, match="amqp_url"):
        sink_from_config(amqp_exchange="progress")


def test_sink_reprs_hide_credentials() -> None:
    """A sink printed in a log shows where it sends, never its key."""
    sink = GrpcSink("cp:443", api_key="sk-secret")
    assert "sk-secret" not in repr(sink)
    assert "guest" not in repr(AmqpSink("amqp://guest:guest@h/", "x"))


async def test_stdout_and_jsonl_sinks_write_json_lines(tmp_path: Path) -> None:
    """The local sinks write one structured event per line."""
    stream = io.StringIO()
    await StdoutSink(stream).send(_events("ex", 2))
    assert [orjson.loads(line)["sequence"] for line in stream.getvalue().splitlines()] == [1, 2]
    path = tmp_path / "deep" / "events.jsonl"
    sink = JsonLinesSink(path)
    await sink.send(_events("ex", 2))
    await sink.send(_events("ey", 1))
    assert [orjson.loads(line)["executionid"] for line in path.read_bytes().splitlines()] == ["ex", "ex", "ey"]


async def test_jsonl_sink_unwritable_is_transient(tmp_path: Path) -> None:
    """A file that cannot be written (yet) keeps events for a retry."""
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(SinkUnavailableError):
        await JsonLinesSink(blocker / "events.jsonl").send(_events("ex", 1))


class _HeldJsonLines(JsonLinesSink):
    """A JSON-lines sink whose first write waits until the test lets it go (later writes do not)."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.started = threading.Event()
        self.go = threading.Event()
        self.writes: list[bytes] = []

    def _append(self, data: bytes) -> None:
        self.writes.append(data)
        if len(self.writes) == 1:
            self.started.set()
            self.go.wait(10)
        super()._append(data)


async def test_jsonl_batches_sent_during_a_write_share_the_next_one(tmp_path: Path) -> None:
    """Batches sent while the file is being written are appended together next, each whole and in order."""
    sink = _HeldJsonLines(tmp_path / "events.jsonl")
    first = asyncio.create_task(sink.send(_events("ea", 1)))
    await asyncio.to_thread(sink.started.wait, 10)
    later = [asyncio.create_task(sink.send(_events(name, 2))) for name in ("eb", "ec")]
    await asyncio.sleep(0.05)
    assert not any(task.done() for task in [first, *later])  # nobody is told "written" before it is
    sink.go.set()
    await asyncio.gather(first, *later)
    assert len(sink.writes) == 2
    lines = [orjson.loads(line) for line in sink.path.read_bytes().splitlines()]
    assert [(line["executionid"], line["sequence"]) for line in lines] == [
        ("ea", 1),
        ("eb", 1),
        ("eb", 2),
        ("ec", 1),
        ("ec", 2),
    ]


async def test_jsonl_send_cancelled_before_its_write_writes_nothing(tmp_path: Path) -> None:
    """A batch whose sender gave up before its write began is not written (the reporter dead-letters it)."""
    sink = _HeldJsonLines(tmp_path / "events.jsonl")
    first = asyncio.create_task(sink.send(_events("ea", 1)))
    await asyncio.to_thread(sink.started.wait, 10)
    given_up = asyncio.create_task(sink.send(_events("eb", 1)))
    await asyncio.sleep(0.01)
    given_up.cancel()
    sink.go.set()
    await first
    with pytest.raises(asyncio.CancelledError):
        await given_up
    await sink.send(_events("ec", 1))
    assert [orjson.loads(line)["executionid"] for line in sink.path.read_bytes().splitlines()] == ["ea", "ec"]


def _mock_http(
    status: int, headers: dict[str, str] | None = None, *, batch: bool = True
) -> tuple[HttpSink, list[httpx.Request]]:
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(status, headers=headers)

    client = httpx.AsyncClient(transport=httpx.MockTransport(answer))
    return HttpSink("http://cp/events", headers={"authorization": "Bearer k"}, batch=batch, client=client), seen


async def test_http_sink_sends_structured_batches() -> None:
    """Several events are one cloudevents-batch POST; one event is a structured POST; headers ride along."""
    sink, seen = _mock_http(202)
    await sink.send(_events("ex", 3))
    await sink.send(_events("ex", 1))
    await sink.close()
    assert seen[0].headers["content-type"] == "application/cloudevents-batch+json"
    assert [e["sequence"] for e in orjson.loads(seen[0].content)] == [1, 2, 3]
    assert seen[1].headers["content-type"] == "application/cloudevents+json"
    assert orjson.loads(seen[1].content)["specversion"] == "1.0"
    assert seen[0].headers["authorization"] == "Bearer k"


async def test_http_sink_without_batching_posts_each_event() -> None:
    """batch=False sends one structured POST per event, in order."""
    sink, seen = _mock_http(200, batch=False)
    await sink.send(_events("ex", 3))
    await sink.close()
    assert [orjson.loads(r.content)["sequence"] for r in seen] == [1, 2, 3]


@pytest.mark.parametrize(
    ("status", "transient"), [(408, True), (429, True), (500, True), (503, True), (400, False), (401, False)]
)
async def test_http_status_mapping(status: int, transient: bool) -> None:
    """408, 429 and 5xx are retried (with Retry-After); other 4xx are refusals for good."""
    sink, _ = _mock_http(status, {"retry-after": "7"})
    expected = SinkUnavailableError if transient else SinkRefusedError
    with pytest.raises(expected) as caught:
        await sink.send(_events("ex", 1))
    await sink.close()
    assert caught.value.code == f"HTTP {status}"
    if transient:
        assert isinstance(caught.value, SinkUnavailableError)
        assert caught.value.retry_after == 7.0


async def test_http_sink_connection_refused_is_transient() -> None:
    """Nobody listening is retried, not refused."""
    sink = HttpSink(f"http://127.0.0.1:{_free_port()}/events")
    with pytest.raises(SinkUnavailableError):
        await sink.send(_events("ex", 1))
    await sink.close()


async def test_grpc_sink_splits_large_batches(refsink: ReferenceSink) -> None:
    """A batch over the message limit goes out as several calls, all delivered, in order."""
    sink = GrpcSink(refsink.grpc_target, max_message_bytes=2_000)
    await sink.send(_events("ex", 20, data={"pad": "x" * 200}))
    await sink.close()
    assert refsink.calls > 1
    assert [e["sequence"] for e in refsink.events] == list(range(1, 21))


async def test_grpc_sink_refuses_an_event_larger_than_the_limit(refsink: ReferenceSink) -> None:
    """An event that can never fit one call is refused for good."""
    sink = GrpcSink(refsink.grpc_target, max_message_bytes=500)
    with pytest.raises(SinkRefusedError):
        await sink.send(_events("ex", 1, data={"pad": "x" * 1000}))
    await sink.close()


async def test_grpc_sink_sends_the_api_key(refsink: ReferenceSink) -> None:
    """The key travels as bearer metadata; a wrong key is a refusal for good."""
    refsink.api_key = "sk-right"
    good, bad = GrpcSink(refsink.grpc_target, api_key="sk-right"), GrpcSink(refsink.grpc_target, api_key="sk-wrong")
    await good.send(_events("ex", 1))
    with pytest.raises(SinkRefusedError, match="UNAUTHENTICATED"):
        await bad.send(_events("ey", 1))
    await good.close()
    await bad.close()
    assert len(refsink.events) == 1


async def test_grpc_sink_reads_pushback(refsink: ReferenceSink) -> None:
    """UNAVAILABLE with a retry-after trailer is transient and carries the delay."""
    refsink.fail_first, refsink.retry_after = 1, 1.5
    sink = GrpcSink(refsink.grpc_target)
    with pytest.raises(SinkUnavailableError) as caught:
        await sink.send(_events("ex", 1))
    await sink.close()
    assert (caught.value.code, caught.value.retry_after) == ("UNAVAILABLE", 1.5)


async def test_grpc_sink_unreachable_is_transient() -> None:
    """Nobody listening on the endpoint is retried."""
    sink = GrpcSink(f"127.0.0.1:{_free_port()}", timeout=2)
    with pytest.raises(SinkUnavailableError):
        await sink.send(_events("ex", 1))
    await sink.close()


async def test_reference_sink_dedupes_and_reports_disorder(refsink: ReferenceSink) -> None:
    """The reference sink stores an id once and reports an event older than one already stored."""
    sink = HttpSink(refsink.http_url)
    first, second = _events("ex", 2)
    await sink.send([second])
    await sink.send([first, second])
    await sink.close()
    assert [e["sequence"] for e in refsink.events] == [2, 1]
    assert refsink.duplicates == 1
    assert refsink.out_of_order == ["execution ex: attempt 1 sequence 1 after sequence 2"]


async def test_reference_sink_http_answers(refsink: ReferenceSink) -> None:
    """Health, stored events, wrong media types and malformed bodies get the expected statuses."""
    async with httpx.AsyncClient(base_url=refsink.http_url.removesuffix("/events")) as client:
        assert (await client.get("/healthz")).status_code == 200
        wrong_type = await client.post("/events", content=b"{}", headers={"content-type": "text/plain"})
        assert wrong_type.status_code == 415
        garbage = await client.post("/events", content=b"{", headers={"content-type": "application/cloudevents+json"})
        assert garbage.status_code == 400
        not_batch = await client.post(
            "/events", content=b"{}", headers={"content-type": "application/cloudevents-batch+json"}
        )
        assert not_batch.status_code == 400
        assert (await client.get("/events")).json() == []
        assert (await client.put("/events")).status_code == 405
