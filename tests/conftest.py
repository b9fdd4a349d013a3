"""Fixtures every test package shares: `mock`, the local HTTP server standing in for the internet (one per module)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fixtures.http_mock import MockServer


@pytest.fixture(scope="module")
def mock() -> Iterator[MockServer]:
    """The local stand-in for petstore, httpbin and an OAuth2 authority (`tests.fixtures.http_mock`)."""
    server = MockServer()
    yield server
    server.close()
