"""Claim checks without a broker or server: references in commands and results, checkpoints, frames and keys."""

from __future__ import annotations

import base64
from pathlib import Path

import orjson
import pytest
from temporalio.exceptions import ApplicationError

from consumer._temporal_activity import _resume_point
from consumer.config import Settings
from consumer.payloads import (
    ClaimError,
    KeyRing,
    PayloadCorruptError,
    PayloadStore,
    fetch_output,
    offload_command,
    offload_output,
    resolve_claims,
)
from consumer.payloads._crypto import frame, unframe

KEY = base64.b64encode(b"k" * 32).decode()


@pytest.fixture
def store(tmp_path: Path) -> PayloadStore:
    env = {"PAYLOAD_STORE_URL": str(tmp_path / "store"), "PAYLOAD_OFFLOAD_BYTES": "1024"}
    return PayloadStore.from_settings(Settings.from_env(env).payloads)


async def test_command_offloaded_and_resolved_back(store: PayloadStore) -> None:
    """A large document and input become references and resolve back to the same values; small fields stay."""
    command = {"execution_id": "e", "workflow_yaml": "do: []\n" + "#" * 2000, "input": {"rows": list(range(1000))}}
    sent = await offload_command(command, store)
    assert set(sent) == {"execution_id", "workflow_yaml_ref", "input_ref"}
    assert await resolve_claims(sent, store) == command
    small = {"execution_id": "e", "workflow_yaml": "do: []", "input": {}}
    assert await offload_command(small, store) == small


async def test_output_offloaded_above_the_threshold(store: PayloadStore) -> None:
    """A result's large output becomes `output_ref` (no `output`); a small one stays; fetching restores it."""
    big = {"execution_id": "e", "status": "completed", "output": {"rows": list(range(1000))}, "error": None}
    sent = await offload_output(big, store)
    assert "output" not in sent
    assert sent["output_ref"]["media_type"] == "application/json"
    assert await fetch_output(sent, store) == big
    small = {**big, "output": {"ok": True}}
    assert await offload_output(small, store) == small


@pytest.mark.parametrize(
    ("fields", "path", "words"),
    [
        ({"input": {}, "input_ref": {}}, "/input_ref", "give input or input_ref, not both"),
        ({"input_ref": {"store": "x"}}, "/input_ref", "key must be a non-empty string"),
        ({"workflow_yaml_ref": "sha256/abc"}, "/workflow_yaml_ref", "must be an object"),
    ],
)
async def test_bad_claims_are_located(store: PayloadStore, fields: dict[str, object], path: str, words: str) -> None:
    """A reference that cannot be used is a ClaimError at its field, saying why."""
    with pytest.raises(ClaimError) as caught:
        await resolve_claims(fields, store)
    assert caught.value.path == path
    assert words in caught.value.message


async def test_reference_to_non_json_is_refused(store: PayloadStore) -> None:
    """An `input_ref` to bytes that are not JSON is refused naming the reference."""
    ref = await store.put(b"\xff not json", "application/json")
    with pytest.raises(ClaimError, match=f"{ref.key}.*is not JSON"):
        await resolve_claims({"input_ref": ref.to_dict()}, store)


async def test_checkpoint_by_reference_resumes_or_names_the_reference(store: PayloadStore) -> None:
    """A heartbeated `checkpoint_ref` resumes at its task; a missing one is a retryable CheckpointUnavailable
    naming the reference."""
    details = {"version": 1, "next_task": 3, "output": {"big": "x" * 5000}, "context": {}}
    ref = await store.put(orjson.dumps(details), "application/json")
    resumed = await _resume_point([{"version": 1, "next_task": 3, "checkpoint_ref": ref.to_dict()}], store)
    assert resumed is not None
    assert (resumed.next_task, resumed.output) == (3, {"big": "x" * 5000})
    gone = {**ref.to_dict(), "sha256": "0" * 64, "key": "sha256/" + "0" * 64}
    with pytest.raises(ApplicationError) as caught:
        await _resume_point([{"version": 1, "next_task": 3, "checkpoint_ref": gone}], store)
    assert (caught.value.type, caught.value.non_retryable) == ("CheckpointUnavailable", False)
    assert gone["key"] in caught.value.message


def test_altered_ciphertext_fails_authentication() -> None:
    """One flipped bit in an encrypted frame fails the read instead of returning altered data."""
    ring = KeyRing((b"k" * 32,))
    head, body = frame(b"pay me 10", compress=True, ring=ring)
    stored = bytearray(head + body)
    assert unframe(bytes(stored), ring=ring, where="x") == b"pay me 10"
    stored[-1] ^= 1
    with pytest.raises(PayloadCorruptError, match="authentication failed"):
        unframe(bytes(stored), ring=ring, where="x")


def test_keys_and_s3_secrets_are_redacted_and_hidden() -> None:
    """Encryption keys and the S3 secret are in the redaction list and not in the settings' repr."""
    settings = Settings.from_env({"PAYLOAD_ENCRYPTION_KEY": KEY, "AWS_SECRET_ACCESS_KEY": "s3-secret-value"})
    assert KEY in settings.secrets
    assert "s3-secret-value" in settings.secrets
    assert KEY not in repr(settings)
    assert "s3-secret-value" not in repr(settings)
