"""A real S3-compatible server for the tests: moto's standalone server (`moto_server`) on 127.0.0.1."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

__all__ = ["CREDENTIALS", "S3Server", "s3_env", "s3_server"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


CREDENTIALS = {"AWS_ACCESS_KEY_ID": "test-key", "AWS_SECRET_ACCESS_KEY": "test-secret", "AWS_REGION": "us-east-1"}
"""moto accepts any credentials; the runner reads them from the standard variables."""


@dataclass(frozen=True)
class S3Server:
    """`endpoint` of a running server; `bucket()` makes a fresh bucket and returns its name."""

    endpoint: str

    def bucket(self) -> str:
        name = f"b-{uuid.uuid4().hex[:12]}"
        httpx.put(f"{self.endpoint}/{name}").raise_for_status()
        return name


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    """moto_server for the session, probed until it answers."""
    port = _free_port()
    command = [str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(endpoint, timeout=1)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError("moto_server did not start") from None
                time.sleep(0.1)
        yield S3Server(endpoint)
    finally:
        process.terminate()
        process.wait(10)


@pytest.fixture
def s3_env(s3_server: S3Server) -> dict[str, str]:
    """The variables of a payload store in a fresh bucket of the server."""
    bucket = s3_server.bucket()
    return {"PAYLOAD_STORE_URL": f"s3://{bucket}/runner", "PAYLOAD_S3_ENDPOINT": s3_server.endpoint, **CREDENTIALS}
