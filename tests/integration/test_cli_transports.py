"""`workflow-runner submit` over AMQP and Temporal, and `serve --dev-temporal`, as a user runs them."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from tests.helpers import eventually
from tests.integration.conftest_amqp import RunnerProcess, consumers, settings_env

pytestmark = pytest.mark.timeout(120)

CLI = str(Path(sys.executable).parent / "workflow-runner")
HELLO = "document: {dsl: '1.0.3', namespace: t, name: hello, version: '1.0.0'}\ndo:\n  - greet: {set: {msg: '${ \"hi \" + .name }'}}\n"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def _cli(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        CLI, *args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, **(env or {})}
    )
    out, err = await asyncio.wait_for(process.communicate(), 90)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


@pytest.fixture
def hello(tmp_path: Path) -> Path:
    path = tmp_path / "hello.yaml"
    path.write_text(HELLO)
    return path


async def test_submit_amqp_gets_the_result(hello: Path, tmp_path: Path, queue_name: str) -> None:
    """`submit --amqp` publishes to a running runner's queue and prints its result like `run --json`; it reads
    AMQP_URL and AMQP_QUEUE as `serve` does."""
    runner = RunnerProcess(settings_env(queue_name, CALLBACK_JSONL_PATH=str(tmp_path / "ev.jsonl")), tmp_path / "log")
    runner.start()
    try:
        await eventually(lambda: consumers(queue_name), 30, "the runner consuming")
        code, out, err = await _cli(
            "submit", str(hello), "--amqp", "--amqp-url", "amqp://guest:guest@127.0.0.1:5672/",
            "--queue", queue_name, "--input", '{"name": "Ada"}', "--json", "--timeout", "60",
        )  # fmt: skip
        assert code == 0, err
        result = orjson.loads(out)
        assert (result["status"], result["output"]) == ("completed", {"msg": "hi Ada"})
        code, out, _ = await _cli("submit", str(hello), "--amqp", "--queue", queue_name, "--json", env={"AMQP_URL": ""})
        assert code == 2
        # Padded values (a secret file's newline, a YAML-quoted space) mean what `serve` makes of them.
        padded = {"AMQP_URL": " amqp://guest:guest@127.0.0.1:5672/\n", "AMQP_QUEUE": f" {queue_name} "}
        code, out, err = await _cli("submit", str(hello), "--amqp", "--json", "--timeout", "60", env=padded)
        assert code == 0, err
    finally:
        runner.kill()


async def test_serve_dev_temporal_and_submit_temporal(hello: Path, tmp_path: Path) -> None:
    """`serve --dev-temporal` brings its own Temporal; `submit --temporal` runs a document through it."""
    port = _free_port()
    env = {
        "EXECUTION_MODE": "temporal",
        "TEMPORAL_TASK_QUEUE": f"cli-{port}",
        "TEMPORAL_SERVICE_ADDRESS": f"127.0.0.1:{port}",
        "METRICS_PORT": "off",
        "CALLBACK_JSONL_PATH": str(tmp_path / "events.jsonl"),
    }
    log = tmp_path / "serve.log"
    with log.open("wb") as sink:
        serve = await asyncio.create_subprocess_exec(
            CLI, "serve", "--dev-temporal", "--dev-temporal-port", str(port),
            env={**os.environ, **env}, stdout=sink, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        code, out, err = 1, "", ""
        for _ in range(60):  # the dev server and the worker take a few seconds to come up
            code, out, err = await _cli(
                "submit", str(hello), "--temporal", "--input", '{"name": "Bo"}', "--json", env=env
            )
            if code == 0 or serve.returncode is not None:
                break
            await asyncio.sleep(1)
        assert code == 0, (err, log.read_text()[-3000:])
        result = orjson.loads(out)
        assert (result["status"], result["output"]) == ("completed", {"msg": "hi Bo"})
        events = [orjson.loads(line) for line in (tmp_path / "events.jsonl").read_bytes().splitlines()]
        assert events[-1]["type"] == "io.serverlessworkflow.workflow.completed.v1"
    finally:
        serve.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(serve.wait(), 60) == 0
