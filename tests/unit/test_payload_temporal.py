"""The packaged workflow's converter without a server: large payloads stay claims and leave as the same references."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from temporalio.api.common.v1 import Payload
from temporalio.exceptions import ApplicationError

from callbacks import Reporter
from consumer import ExecutionService
from consumer._temporal_activity import Activities
from consumer._temporal_workflow import INVALID_REQUEST
from consumer.config import Settings
from consumer.payloads import PayloadMissingError, PayloadStore, data_converter
from consumer.payloads._temporal import CLAIM, ENCRYPTED, Claim, fetch, workflow_converter
from executor import Executor
from tests.helpers import MemorySink

KEY = base64.b64encode(b"k" * 32).decode()
BIG = {"execution_id": "e", "workflow_yaml": "do: []\n", "input": {"rows": list(range(2000))}}
DOCUMENT = "document: {dsl: '1.0.3', namespace: t, name: n, version: '1.0.0'}\ntimeout: {after: {seconds: 7}}\ndo: []\n"


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {"PAYLOAD_STORE_URL": str(tmp_path / "store"), "PAYLOAD_OFFLOAD_BYTES": "1024", **extra}


def _store(tmp_path: Path, **extra: str) -> PayloadStore:
    return PayloadStore.from_settings(Settings.from_env(_env(tmp_path, **extra)).payloads)


def _objects(tmp_path: Path) -> set[Path]:
    return {p for p in (tmp_path / "store").rglob("*") if p.is_file()}


def _is_reference(payload: Payload) -> bool:
    return payload.metadata.get("messageType", b"").endswith(b"ExternalStorageReference")


@pytest.mark.parametrize("encrypted", [False, True], ids=["plain", "encrypted"])
async def test_a_reference_passes_through_the_workflow_unread(tmp_path: Path, encrypted: bool) -> None:
    """What a client stored reaches the workflow as a `Claim` and leaves as the same reference: nothing is read,
    nothing new is stored, and the activity's side still decodes the value."""
    store = _store(tmp_path, **({"PAYLOAD_ENCRYPTION_KEY": KEY} if encrypted else {}))
    client = data_converter(store)
    [reference] = await client.encode([BIG])
    assert _is_reference(reference)
    stored = _objects(tmp_path)
    workflow = workflow_converter(store)
    [claim] = await workflow.decode([reference], [Any])
    assert isinstance(claim, Claim)
    assert claim.data["key"] in {str(p.relative_to(tmp_path / "store")) for p in stored}
    [again] = await workflow.encode([claim])
    # The same reference (only its informational `external_payloads` size is the claim's, not the content's).
    assert (again.metadata, again.data) == (reference.metadata, reference.data)
    assert _objects(tmp_path) == stored
    assert await client.decode([again], [Any]) == [BIG]


@pytest.mark.parametrize("encrypted", [False, True], ids=["plain", "encrypted"])
async def test_the_workflows_own_payloads_are_converted_as_everywhere(tmp_path: Path, encrypted: bool) -> None:
    """A small value the workflow makes is inline (sealed when encryption is on); a large one goes to the store;
    the activity's converter reads both."""
    store = _store(tmp_path, **({"PAYLOAD_ENCRYPTION_KEY": KEY} if encrypted else {}))
    workflow = workflow_converter(store)
    small, big = await workflow.encode([{"ok": True}, BIG])
    assert not _is_reference(small)
    assert (small.metadata["encoding"] == ENCRYPTED) is encrypted
    assert _is_reference(big)
    assert CLAIM not in small.SerializeToString() + big.SerializeToString()
    assert await data_converter(store).decode([small, big], [Any, Any]) == [{"ok": True}, BIG]


async def test_fetch_reads_a_claim_and_names_a_missing_object(tmp_path: Path) -> None:
    """`fetch` gives the value a claim stands for; a removed object fails with an error naming its key."""
    store = _store(tmp_path, PAYLOAD_ENCRYPTION_KEY=KEY)
    [reference] = await data_converter(store).encode([BIG])
    [claim] = await workflow_converter(store).decode([reference], [Any])
    assert await fetch(claim, store) == BIG
    (tmp_path / "store" / claim.data["key"]).unlink()
    with pytest.raises(PayloadMissingError, match=claim.data["key"]):
        await fetch(claim, store)


@pytest.fixture
async def activities(tmp_path: Path) -> AsyncIterator[tuple[Activities, PayloadStore]]:
    reporter = Reporter(MemorySink(), dead_letter_path="/dev/null")
    await reporter.start()
    service = ExecutionService(Executor(), reporter, flush_timeout=2)
    store = _store(tmp_path)
    yield Activities(Settings.from_env(_env(tmp_path)), service, store), store
    await service.drain(1)
    await reporter.stop(1)


async def test_plan_reads_a_large_request_from_its_claim(
    activities: tuple[Activities, PayloadStore], tmp_path: Path
) -> None:
    """The plan activity gets a large request as a claim and plans from the document it reads; a request whose
    object is gone fails non-retryably, naming the object."""
    plan, store = activities
    request = {"execution_id": "e", "workflow_yaml": DOCUMENT, "input": {"pad": "x" * 5000}, "max_attempts": 2}
    [reference] = await data_converter(store).encode([request])
    [claim] = await workflow_converter(store).decode([reference], [Any])
    options = await plan.plan(claim)
    assert options["max_attempts"] == 2
    assert options["start_to_close_seconds"] > 7
    (tmp_path / "store" / claim.data["key"]).unlink()
    with pytest.raises(ApplicationError) as failed:
        await plan.plan(claim)
    assert failed.value.type == INVALID_REQUEST
    assert failed.value.non_retryable
    assert claim.data["key"] in failed.value.message
