"""The payload store against a local directory and a real S3-compatible server (moto) on 127.0.0.1."""

from __future__ import annotations

import base64
import os
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import obstore
import orjson
import pytest
from obstore.store import S3Store

from consumer.config import ConfigError, Settings
from consumer.payloads import (
    JSON,
    InvalidReferenceError,
    PayloadCorruptError,
    PayloadMissingError,
    PayloadRef,
    PayloadStore,
)
from tests.integration.conftest import CLI
from tests.integration.conftest_s3 import CREDENTIALS, S3Server

KEY_A = base64.b64encode(b"A" * 32).decode()
KEY_B = base64.b64encode(b"B" * 32).decode()


@pytest.fixture(params=["local", "s3"])
def store_env(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, str]:
    """The variables of an empty store of each kind."""
    if request.param == "local":
        return {"PAYLOAD_STORE_URL": str(tmp_path / "store")}
    return dict(request.getfixturevalue("s3_env"))


def _store(env: dict[str, str], **extra: str) -> PayloadStore:
    return PayloadStore.from_settings(Settings.from_env({**env, **extra}).payloads)


def _raw_s3(env: dict[str, str]) -> S3Store:
    """A plain S3 client of the store's bucket and prefix: what someone outside the runner sees."""
    return S3Store.from_url(
        env["PAYLOAD_STORE_URL"],
        endpoint=env["PAYLOAD_S3_ENDPOINT"],
        access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
        secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        region=CREDENTIALS["AWS_REGION"],
        client_options={"allow_http": True},
    )


async def _tamper(env: dict[str, str], ref: PayloadRef, data: bytes) -> None:
    """Overwrite the object behind `ref` from outside the runner (a file write, an S3 PUT)."""
    if ref.store.startswith("file://"):
        (Path(env["PAYLOAD_STORE_URL"]) / ref.key).write_bytes(data)
    else:
        await obstore.put_async(_raw_s3(env), ref.key, data)


async def test_round_trip_and_reference_fields(store_env: dict[str, str]) -> None:
    """A JSON value comes back equal; the reference is content-addressed and says its size, hash and type."""
    store = _store(store_env, PAYLOAD_COMPRESSION="zlib")
    value = {"records": [{"id": i, "name": f"n{i}"} for i in range(20_000)]}
    ref = await store.put_json(value)
    assert ref.key == f"sha256/{ref.sha256}"
    assert ref.media_type == JSON
    assert ref.size < len(orjson.dumps(value)) / 3  # compressed
    assert await store.get_json(PayloadRef.from_dict(ref.to_dict())) == value
    assert (await store.put_json(value)).key == ref.key  # same bytes, same object


async def test_large_object_round_trip(store_env: dict[str, str]) -> None:
    """A 30 MB payload is stored and read back byte for byte (S3: a multipart upload)."""
    store = _store(store_env)
    data = os.urandom(30 * 1024 * 1024)
    ref = await store.put(data, "application/octet-stream")
    assert await store.get(ref) == data


async def test_missing_object_names_the_reference(store_env: dict[str, str]) -> None:
    """A reference to an object that is not there fails with PayloadMissingError naming the key."""
    store = _store(store_env)
    ref = await store.put(b"x" * 100, JSON)
    gone = PayloadRef.from_dict({**ref.to_dict(), "sha256": "0" * 64, "key": "sha256/" + "0" * 64})
    with pytest.raises(PayloadMissingError, match=f"{gone.key}.*missing"):
        await store.get(gone)
    other = PayloadRef.from_dict({**ref.to_dict(), "store": "s3://someone-else"})
    with pytest.raises(PayloadMissingError, match=r"s3://someone-else.*not in this runner's store"):
        await store.get(other)


async def test_tampered_object_names_the_reference(store_env: dict[str, str]) -> None:
    """An object changed behind the runner's back fails the read with PayloadCorruptError naming the key."""
    store = _store(store_env)
    ref = await store.put_json({"amount": 10})
    await _tamper(store_env, ref, b"WRP1\x00" + orjson.dumps({"amount": 99}))
    with pytest.raises(PayloadCorruptError, match=f"{ref.key}.*does not match its sha256"):
        await store.get(ref)
    await _tamper(store_env, ref, b"short")
    with pytest.raises(PayloadCorruptError, match=f"{ref.key}.*is 5 bytes, the reference says {ref.size}"):
        await store.get(ref)


def test_malformed_reference_is_named() -> None:
    """A reference with a bad field is refused with the place and the field."""
    with pytest.raises(InvalidReferenceError, match=r"^input_ref: size must be a non-negative integer$"):
        PayloadRef.from_dict(
            {"store": "s", "key": "sha256/" + "a" * 64, "size": "9", "sha256": "a" * 64, "media_type": JSON},
            where="input_ref",
        )
    with pytest.raises(InvalidReferenceError, match=r"^reference: must be an object"):
        PayloadRef.from_dict("sha256/abc")


async def test_encryption_leaves_no_plaintext_and_keys_rotate(store_env: dict[str, str], tmp_path: Path) -> None:
    """Encrypted objects hold no plaintext; after rotation (new key first) old objects still read; a ring
    without the writing key fails naming the reference."""
    marker = b"card-4111-1111-1111-1111"
    old = _store(store_env, PAYLOAD_ENCRYPTION_KEY=KEY_A)
    ref = await old.put(marker * 1000, "text/plain")
    stored = (Path(store_env["PAYLOAD_STORE_URL"]) / ref.key).read_bytes() if ref.store.startswith("file") else None
    if stored is not None:
        assert marker not in stored
    rotated = _store(store_env, PAYLOAD_ENCRYPTION_KEY=f"{KEY_B},{KEY_A}")
    assert await rotated.get(ref) == marker * 1000
    fresh = await rotated.put(b"new", "text/plain")
    with pytest.raises(PayloadCorruptError, match=f"{fresh.key}.*which PAYLOAD_ENCRYPTION_KEY lacks"):
        await old.get(fresh)
    with pytest.raises(PayloadCorruptError, match=f"{ref.key}.*PAYLOAD_ENCRYPTION_KEY is not set"):
        await _store(store_env).get(ref)


async def test_encrypted_object_on_s3_holds_no_plaintext(s3_env: dict[str, str]) -> None:
    """Read straight from the S3 server, an encrypted object does not contain the payload."""
    marker = b"secret-token-0123456789"
    store = _store(s3_env, PAYLOAD_ENCRYPTION_KEY=KEY_A)
    ref = await store.put(marker * 10, "text/plain")
    raw = bytes(await (await obstore.get_async(_raw_s3(s3_env), ref.key)).bytes_async())
    assert len(raw) == ref.size
    assert marker not in raw


async def test_clean_up_deletes_only_old_objects(store_env: dict[str, str]) -> None:
    """`gc` deletes objects older than PAYLOAD_RETENTION and keeps younger ones."""
    store = _store(store_env, PAYLOAD_RETENTION="1h")
    kept = await store.put(b"young", "text/plain")
    done = await store.gc()
    assert (done.seen, done.deleted) == (1, 0)
    later = await store.gc(now=datetime.now(UTC) + timedelta(hours=2))
    assert (later.seen, later.deleted, later.freed) == (1, 1, kept.size)
    with pytest.raises(PayloadMissingError):
        await store.get(kept)


def test_gc_command_on_the_local_store(tmp_path: Path) -> None:
    """`workflow-runner gc` deletes a local object whose last write is older than the retention, and says so."""
    env = {"PAYLOAD_STORE_URL": str(tmp_path / "store"), "PAYLOAD_RETENTION": "2d"}
    old = (tmp_path / "store" / "sha256" / ("a" * 64), 3 * 86400)
    young = (tmp_path / "store" / "sha256" / ("b" * 64), 86400)
    for path, age in (old, young):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"WRP1\x00{}")
        stamp = datetime.now(UTC).timestamp() - age
        os.utime(path, (stamp, stamp))
    done = subprocess.run([CLI, "gc"], env={**os.environ, **env}, capture_output=True, timeout=30, check=False)
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    report = orjson.loads(done.stdout)
    assert (report["seen"], report["deleted"], report["freed_bytes"]) == (2, 1, 7)
    assert not old[0].exists()
    assert young[0].exists()


@pytest.mark.parametrize(
    ("env", "why"),
    [
        ({"PAYLOAD_ENCRYPTION_KEY": "not base64!"}, "PAYLOAD_ENCRYPTION_KEY: key 1 is not base64"),
        ({"PAYLOAD_ENCRYPTION_KEY": f"{KEY_A},{base64.b64encode(b'x' * 7).decode()}"}, "key 2 is 7 bytes"),
        ({"PAYLOAD_RETENTION": "soon"}, "PAYLOAD_RETENTION: must be a duration"),
        ({"PAYLOAD_STORE_URL": "s3://"}, "PAYLOAD_STORE_URL: an s3:// URL needs a bucket"),
        ({"PAYLOAD_COMPRESSION": "lz4"}, "PAYLOAD_COMPRESSION: must be one of none, zlib"),
    ],
)
def test_bad_payload_settings_name_the_variable(env: dict[str, str], why: str) -> None:
    """A bad PAYLOAD_* value stops start-up with the variable named and no key echoed."""
    with pytest.raises(ConfigError, match=why) as caught:
        Settings.from_env(env)
    assert KEY_A not in str(caught.value)


def test_server_fixture_is_real(s3_server: S3Server) -> None:
    """The S3 server answers on 127.0.0.1 and refuses a missing bucket like S3 does."""
    assert s3_server.endpoint.startswith("http://127.0.0.1:")
    assert httpx.get(f"{s3_server.endpoint}/no-such-bucket/key").status_code == 404
