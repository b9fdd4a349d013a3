"""A secret hunt at LOG_LEVEL=DEBUG through every ingress: no secret outside the execution's own result.

One `serve` process with the gRPC, AMQP and Temporal ingresses logs at DEBUG; the same document, given distinctive
secrets per ingress, runs through each (and through `workflow-runner run`). It uses its secret every way the
runtime itself handles one: as a Basic-auth password (the server echoes the header), in task data, base64-encoded,
in an error, and in an emitted event. A poison message with secrets goes to the dead-letter queue. Then every
artefact is searched for every spelling of every secret: the runner's log, the sink's event file, the callback
dead-letter file, the gRPC stream's events file, the replies (less their `output`), the AMQP events exchange, the
dead-letter queue, and the output of the CLI commands.
"""

from __future__ import annotations

import asyncio
import base64
import os
import subprocess
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aio_pika
import aio_pika.abc
import orjson
import pytest

from consumer._temporal_client import submit_via_temporal
from consumer.config import Settings
from tests.fixtures.http_mock import MockServer
from tests.helpers import doc
from tests.integration.conftest import CLI, Spawned
from tests.integration.conftest_amqp import AMQP_URL, publish, take

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

INGRESSES = ("grpc", "amqp", "temporal", "cli")


def _document(url: str) -> str:
    return doc(
        f"""
        use:
          secrets: [api]
        do:
          - login:
              call: http
              with:
                method: get
                endpoint:
                  uri: {url}/anything
                  authentication: {{basic: {{username: bob, password: '${{ $secrets.api.password }}'}}}}
              output: {{as: '${{ {{echo: .headers.Authorization, auth: $authorization}} }}'}}
          - show:
              set:
                echo: '${{ .echo }}'
                raw: '${{ $secrets.api.password }}'
                b64: '${{ $secrets.api.password | @base64 }}'
                token: '${{ $secrets.api.token }}'
          - tell:
              emit:
                event:
                  with: {{source: 'https://hunt.io', type: hunt.leak, data: {{t: '${{ $secrets.api.token }}'}}}}
          - result:
              set:
                mine: '${{ $secrets.api.password }}'
        """
    )


def _secrets(ingress: str) -> dict[str, Any]:
    return {"api": {"password": f"{ingress}-Pw-7h1s-1s-s3cr3t", "token": f"{ingress}-T0ken-9f8e7d6c"}}


def _spellings(ingress: str) -> list[str]:
    found = []
    for value in _secrets(ingress)["api"].values():
        found += [value, quote(value, safe=""), base64.b64encode(value.encode()).decode()]
    found.append(base64.b64encode(f"bob:{_secrets(ingress)['api']['password']}".encode()).decode())
    return found


def _cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CLI, *args], check=False, env={**os.environ, **env}, capture_output=True, text=True, timeout=60
    )


def _without_output(result: dict[str, Any]) -> str:
    """A result with its `output` (the execution's own result, exempt) taken out."""
    assert result["status"] == "completed", result
    assert result["output"]["mine"].endswith("-Pw-7h1s-1s-s3cr3t")  # the author asked for it in the result
    return orjson.dumps({**result, "output": None}).decode()


@pytest.fixture
def temporal(temporal_address: str, task_queue: str) -> dict[str, str]:
    """The Temporal variables of a runner on this test's own task queue."""
    return {"TEMPORAL_SERVICE_ADDRESS": temporal_address, "TEMPORAL_TASK_QUEUE": task_queue}


async def test_no_secret_leaves_an_execution_except_in_its_result(  # noqa: PLR0917 - one fixture per artefact source
    spawn_runner: Callable[..., Spawned],
    tmp_path: Path,
    mock: MockServer,
    amqp: aio_pika.abc.AbstractChannel,
    queue_name: str,
    temporal: dict[str, str],
) -> None:
    """Distinctive secrets sent through gRPC, AMQP, Temporal and the CLI at DEBUG are found nowhere but in each
    execution's own result."""
    sink, dead_file = tmp_path / "sink.jsonl", tmp_path / "dead-letter.jsonl"
    exchange = f"{queue_name}.events"
    runner = spawn_runner(
        EXECUTION_MODE="grpc,amqp,temporal",
        LOG_LEVEL="DEBUG",
        AMQP_URL=AMQP_URL,
        AMQP_QUEUE=queue_name,
        AMQP_EVENTS_EXCHANGE=exchange,
        **temporal,
        CALLBACK_JSONL_PATH=str(sink),
        CALLBACK_DEAD_LETTER_PATH=str(dead_file),
    )
    bus = await amqp.declare_queue(exclusive=True)
    await bus.bind(await amqp.get_exchange(exchange), "#")
    document = tmp_path / "hunt.yaml"
    document.write_text(_document(mock.url))
    env = {"AMQP_URL": AMQP_URL, "AMQP_QUEUE": queue_name}
    transports = {"grpc": ["--endpoint", runner.target], "amqp": ["--amqp", "--timeout", "30"]}
    artefacts: list[str] = []

    def submit(ingress: str) -> None:
        events = tmp_path / f"{ingress}-events.jsonl"
        secrets = orjson.dumps(_secrets(ingress)).decode()
        command = ["run"] if ingress == "cli" else ["submit", *transports[ingress]]
        done = _cli([*command, str(document), "--secrets", secrets, "--json", "--events", str(events)], env)
        assert done.returncode == 0, done.stderr
        text = events.read_text() if events.exists() else ""
        artefacts.extend([_without_output(orjson.loads(done.stdout)), done.stderr, text])

    async def via_temporal() -> None:
        # In-process: `submit --temporal` makes the same call (its exit is covered by test_cli_transports).
        settings = Settings.from_env(temporal).temporal
        request = {"execution_id": f"hunt-{uuid.uuid4().hex[:6]}", "workflow_yaml": document.read_text()}
        outcome = await submit_via_temporal(settings, {**request, "secrets": _secrets("temporal")})
        assert outcome.result is not None, outcome
        artefacts.append(_without_output(outcome.result))

    cli_ingresses = [ingress for ingress in INGRESSES if ingress != "temporal"]
    await asyncio.gather(via_temporal(), *(asyncio.to_thread(submit, ingress) for ingress in cli_ingresses))
    poison = {
        "execution_id": f"poison-{uuid.uuid4().hex[:6]}",
        "workflow_yaml": "not: [a workflow",
        "secrets": _secrets("dlq"),
    }
    await publish(amqp, queue_name, poison)
    [dead] = await take(amqp, f"{queue_name}.dead", 1)
    emitted = await take(amqp, bus.name, 3)
    runner.terminate()
    runner.wait(30)

    assert len(emitted) == 3, "the emit of each run in the runner reached the events exchange"
    artefacts += [runner.logs(), sink.read_text(), dead_file.read_text() if dead_file.exists() else ""]
    artefacts += [dead.body.decode(errors="replace"), str(dead.headers)]
    artefacts += [message.body.decode(errors="replace") for message in emitted]
    assert "DEBUG" in runner.logs(), "the runner did log at DEBUG"
    haystack = "\n".join(artefacts)
    leaks = {form for ingress in (*INGRESSES, "dlq") for form in _spellings(ingress) if form in haystack}
    where = [
        text[max(0, text.find(leak) - 300) : text.find(leak) + 100]
        for leak in leaks
        for text in artefacts
        if leak in text
    ]
    assert not leaks, where
