"""`workflow-runner sink`: the reference sink as a process, driven by the real gRPC and HTTP sinks."""

from __future__ import annotations

import asyncio
import logging
import re
import signal
import sys
from pathlib import Path

import orjson
import pytest

from callbacks import DEFAULT_SOURCE, CloudEvent, GrpcSink, HttpSink, event_id

pytestmark = pytest.mark.timeout(60)


def _event(execution: str, sequence: int) -> CloudEvent:
    return CloudEvent(
        id=event_id(execution, 1, sequence),
        source=DEFAULT_SOURCE,
        type="io.serverlessworkflow.task.completed.v1",
        time="2025-06-01T12:00:00Z",
        subject=execution,
        executionid=execution,
        sequence=sequence,
        attempt=1,
        data={"task": "/do/0"},
    )


async def test_reference_sink_process_receives_both_transports(tmp_path: Path) -> None:
    """Started on free ports, it announces them, stores gRPC and HTTP events once, and exits 0 on SIGTERM."""
    out = tmp_path / "events.jsonl"
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "import sys; from callbacks import reference_sink_main; sys.exit(reference_sink_main(sys.argv[1:]))",
        "--grpc-port=0",
        "--http-port=0",
        f"--out={out}",
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stderr is not None
    try:
        line = (await asyncio.wait_for(process.stderr.readline(), timeout=20)).decode()
        found = re.search(r"listening grpc=(\S+) http=(\S+)", line)
        assert found, line
        grpc_sink, http_sink = GrpcSink(found[1]), HttpSink(found[2])
        await grpc_sink.send([_event("cli", 1), _event("cli", 2)])
        await http_sink.send([_event("cli", 2), _event("cli", 3)])
        await grpc_sink.close()
        await http_sink.close()
    finally:
        process.send_signal(signal.SIGTERM)
        rest = (await asyncio.wait_for(process.stderr.read(), timeout=20)).decode()
        code = await process.wait()
    assert code == 0
    assert "3 events, 1 duplicates, 0 out of order" in rest
    assert [orjson.loads(row)["sequence"] for row in out.read_bytes().splitlines()] == [1, 2, 3]


@pytest.mark.timeout(10)
@pytest.mark.parametrize(
    ("args", "complaint"),
    [
        (["--http-port", "99999"], "--http-port"),
        (["--grpc-port", "99999"], "--grpc-port"),
        (["--grpc-port", "-2"], "--grpc-port"),
        (["--grpc-port", "-1", "--http-port", "-1"], "nothing to listen on"),
        (["--delay", "-1"], "--delay"),
        (["--delay", "nan"], "--delay"),
        (["--fail-first", "-3"], "--fail-first"),
    ],
)
def test_sink_bad_arguments_exit_2_with_one_line(
    args: list[str], complaint: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """`workflow-runner sink` with an impossible option says which and exits 2: no traceback, and never a silent
    bind to some other port or a sink that listens nowhere."""
    from callbacks import reference_sink_main

    try:
        # Any port, should a bad value ever get through: the test must not take 50051 / 8090 on this machine.
        code = reference_sink_main(["--grpc-port", "0", "--http-port", "0", *args])
    except SystemExit as exit_:
        code = exit_.code
    err = capsys.readouterr().err
    assert code == 2
    assert complaint in err
    assert "Traceback" not in err


async def test_stopping_with_open_connections_logs_no_error(caplog: pytest.LogCaptureFixture) -> None:
    """Taking the reference sink down while a sender keeps a connection open drops it quietly: no asyncio
    "Exception in callback" error in the sink's log at every stop."""
    from callbacks import ReferenceSink

    sink = ReferenceSink(grpc_port=None, http_port=0)
    await sink.start()
    reader, writer = await asyncio.open_connection("127.0.0.1", sink.http_port)
    writer.write(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
    await writer.drain()
    assert (await reader.readline()).startswith(b"HTTP/1.1 200")
    await sink.stop()
    await asyncio.wait_for(reader.read(), 5)
    assert reader.at_eof()
    writer.close()
    errors = [record for record in caplog.records if record.levelno >= logging.ERROR]
    assert errors == [], [record.getMessage() for record in errors]
