"""`workflow-runner serve` and `submit` as real processes: start-up errors, SIGTERM drain, the submit contract."""

from __future__ import annotations

import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import grpc
import orjson
import pytest

from consumer._proto.workflow_runner.v1 import runner_pb2 as pb
from consumer._proto.workflow_runner.v1 import runner_pb2_grpc as pb_grpc
from tests.helpers import doc
from tests.integration.conftest import CLI, free_port

pytestmark = pytest.mark.timeout(90)

GREET = doc("do:\n  - greet: {set: {msg: '${ \"hi \" + .name }'}}\n  - nap: {wait: {milliseconds: 100}}\n")


def cli(*args: str, env: dict[str, str] | None = None, timeout: float = 30) -> tuple[int, Any, str]:
    proc = subprocess.run([CLI, *args], capture_output=True, text=True, env=env, timeout=timeout, check=False)
    out = orjson.loads(proc.stdout) if proc.stdout.strip().startswith("{") else proc.stdout
    return proc.returncode, out, proc.stderr


def events_of(path: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"GRPC_PORT": "http"}, "GRPC_PORT: must be an integer"),
        ({"EXECUTION_MODE": "kafka"}, "EXECUTION_MODE: unknown mode 'kafka'"),
        ({"EXECUTION_MODE": "amqp"}, "AMQP_URL: required"),
        ({"SHUTDOWN_GRACE_SECONDS": "soon"}, "SHUTDOWN_GRACE_SECONDS"),
    ],
)
def test_serve_refuses_bad_configuration(env: dict[str, str], message: str) -> None:
    """A bad variable stops `serve` at once with exit 2 and one line naming it."""
    code, _, err = cli("serve", env={"PATH": "/usr/bin:/bin", **env})
    assert code == 2
    assert message in err
    assert len(err.strip().splitlines()) == 1


def test_serve_with_the_metrics_port_in_use_names_it() -> None:
    """METRICS_PORT taken by another process stops `serve` with exit 2 and one line naming it, not a traceback."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {"PATH": "/usr/bin:/bin", "GRPC_HOST": "127.0.0.1", "GRPC_PORT": "0", "METRICS_HOST": "127.0.0.1"}
        code, _, err = cli("serve", env={**env, "METRICS_PORT": str(port)})
    assert code == 2
    assert f"METRICS_PORT: cannot listen on 127.0.0.1:{port}" in err
    assert len(err.strip().splitlines()) == 1


def test_sigterm_drains_in_flight_executions(spawn_runner: Any, tmp_path: Path) -> None:
    """SIGTERM with executions in flight: they finish, their events are delivered, the process exits 0."""
    events = tmp_path / "events.jsonl"
    runner = spawn_runner(CALLBACK_JSONL_PATH=str(events), SHUTDOWN_GRACE_SECONDS="20")
    nap = doc("do:\n  - nap: {wait: {seconds: 1}}\n  - done: {set: {ok: true}}\n")
    with grpc.insecure_channel(runner.target) as channel:
        stub = pb_grpc.WorkflowRunnerStub(channel)
        for n in range(5):
            stub.Execute(pb.ExecuteRequest(execution_id=f"drain-{n}", workflow_yaml=nap))
    runner.terminate(signal.SIGTERM)
    assert runner.wait(timeout=30) == 0
    terminal = {
        e["executionid"]: e["type"]
        for e in events_of(events)
        if e["type"].startswith("io.serverlessworkflow.workflow.") and not e["type"].endswith("started.v1")
    }
    assert terminal == {f"drain-{n}": "io.serverlessworkflow.workflow.completed.v1" for n in range(5)}
    assert "SIGTERM received" in runner.logs()


def test_sigterm_past_grace_reports_cancelled(spawn_runner: Any, tmp_path: Path) -> None:
    """What cannot finish within SHUTDOWN_GRACE_SECONDS is cancelled and reported as cancelled; exit is still 0."""
    events = tmp_path / "events.jsonl"
    runner = spawn_runner(CALLBACK_JSONL_PATH=str(events), SHUTDOWN_GRACE_SECONDS="1")
    with grpc.insecure_channel(runner.target) as channel:
        stub = pb_grpc.WorkflowRunnerStub(channel)
        stub.Execute(pb.ExecuteRequest(execution_id="long", workflow_yaml=doc("do:\n  - nap: {wait: {hours: 1}}\n")))
    time.sleep(0.3)
    began = time.monotonic()
    runner.terminate(signal.SIGTERM)
    assert runner.wait(timeout=30) == 0
    assert time.monotonic() - began < 15
    kinds = [e["type"].split(".", 2)[2] for e in events_of(events) if e["executionid"] == "long"]
    assert kinds[-2:] == ["task.cancelled.v1", "workflow.cancelled.v1"]


def test_submit_follows_events_and_prints_result(spawn_runner: Any, tmp_path: Path) -> None:
    """`submit --json` prints exactly `run`'s result object and exits 0; `--events` gets every event."""
    runner = spawn_runner(GRPC_API_KEY="k3y-for-tests")
    path, events = tmp_path / "wf.yaml", tmp_path / "events.jsonl"
    path.write_text(GREET)
    env = {"PATH": "/usr/bin:/bin", "GRPC_API_KEY": "k3y-for-tests"}
    args = ("submit", str(path), "--endpoint", runner.target, "--input", '{"name": "Ada"}')
    code, out, _ = cli(*args, "--json", "--events", str(events), env=env)
    assert code == 0
    assert set(out) == {"execution_id", "status", "output", "error"}
    assert (out["status"], out["output"], out["error"]) == ("completed", {"msg": "hi Ada"}, None)
    assert [e["sequence"] for e in events_of(events)] == [1, 2, 3, 4, 5, 6]
    code, out, err = cli(*args, env=env)
    assert code == 0
    assert out == {"msg": "hi Ada"}  # pretty-printed output, parsed by `cli`
    assert "task.started /do/0/greet" in err
    code, _, err = cli(*args, "--api-key", "wrong", env=env)
    assert code == 2
    assert "UNAUTHENTICATED" in err


def test_submit_reads_variables_as_serve_does(spawn_runner: Any, tmp_path: Path) -> None:
    """A GRPC_API_KEY with a trailing newline (as read from a mounted secret file) works for `submit` as for
    `serve`, instead of failing with INTERNAL: Invalid metadata."""
    runner = spawn_runner(GRPC_API_KEY="k3y-for-tests\n")
    path = tmp_path / "wf.yaml"
    path.write_text(GREET)
    env = {"PATH": "/usr/bin:/bin", "GRPC_API_KEY": "k3y-for-tests\n"}
    code, out, err = cli(
        "submit", str(path), "--endpoint", runner.target, "--input", '{"name": "Ada"}', "--json", env=env
    )
    assert code == 0, err
    assert out["status"] == "completed"


def test_submit_exit_codes(spawn_runner: Any, tmp_path: Path) -> None:
    """`submit` exits like `run`: 1 faulted, 2 invalid document (with located errors) or unreachable runner."""
    runner = spawn_runner()
    faulted, invalid = tmp_path / "f.yaml", tmp_path / "bad.yaml"
    faulted.write_text(doc("do:\n  - r: {raise: {error: {type: https://x.io/e, status: 409, title: Conflict}}}\n"))
    invalid.write_text(doc("do:\n  - s: {set: {a: 1}, bogus: 1}\n"))
    code, out, _ = cli("submit", str(faulted), "--endpoint", runner.target, "--json")
    assert code == 1
    assert out["status"] == "faulted"
    assert out["error"]["instance"] == "/do/0/r"
    code, out, _ = cli("submit", str(invalid), "--endpoint", runner.target, "--json")
    assert code == 2
    assert out["status"] == "invalid"
    assert out["errors"][0]["path"].startswith("/do/0/s")
    assert out["errors"][0]["line"] == 3
    code, _, err = cli("submit", str(faulted), "--endpoint", f"127.0.0.1:{free_port()}", "--json")
    assert code == 2
    assert "UNAVAILABLE" in err
