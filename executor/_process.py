"""Local processes for `run.shell` and `run.script`: started in their own session, killed as a group.

Each process starts in a fresh temporary working directory (removed afterwards) with exactly the environment it
is given — the runner's own environment does not leak (`environment` builds it, here and for MCP stdio servers).
stdout and stderr are read concurrently, each kept up to a limit (the rest is read and discarded so the process
never blocks on a full pipe). When the awaiting task is
cancelled (a task or workflow timeout, a cancelled execution) or the runner's own process timeout passes, the
whole process group is killed, so children the command spawned die with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import tempfile
from collections.abc import Coroutine, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ._errors import ConfigurationError, WorkflowTimeoutError
from ._http import scalar_text

_CHUNK = 65536


@dataclass(frozen=True, slots=True)
class ProcessResult:
    """The spec's process result."""

    code: int
    stdout: str
    stderr: str

    def to_dict(self) -> dict[str, Any]:
        """`{code, stdout, stderr}`."""
        return {"code": self.code, "stdout": self.stdout, "stderr": self.stderr}


@dataclass(frozen=True, slots=True, kw_only=True)
class ProcessSpec:
    """What to start: argv, stdin text, environment, files written into the working directory first."""

    argv: Sequence[str]
    stdin: str | None = None
    env: Mapping[str, str]
    files: Mapping[str, bytes] | None = None


def environment(path: str, declared: Any) -> dict[str, str]:
    """A process's whole environment: `PATH` (the configured one) and the task's `declared` variables (an object).

    Raises:
        ConfigurationError: `declared` is not an object, or a key cannot name a variable.
    """
    if declared is None:
        return {"PATH": path}
    if not isinstance(declared, dict):
        raise ConfigurationError("Invalid environment", detail=f"expected an object, got {type(declared).__name__}")
    values = {str(k): scalar_text(v) for k, v in declared.items() if v is not None}
    bad = [k for k in values if not k or "=" in k]
    if bad:
        raise ConfigurationError("Invalid environment", detail=f"{bad[0]!r} cannot name a variable")
    return {"PATH": path} | values


async def run_process(spec: ProcessSpec, *, time_limit: float | None, limit: int) -> ProcessResult:
    """Run to completion (or kill on `time_limit` seconds / cancellation); return code, stdout and stderr."""
    with tempfile.TemporaryDirectory(prefix="wf-run-") as workdir:
        await asyncio.to_thread(_write_files, workdir, spec.files or {})
        proc = await _start(spec, workdir)
        try:
            return await _bounded(_communicate(proc, spec.stdin, limit), time_limit)
        except BaseException:
            # Kill the group even when its leader has exited: a background child (`cmd &`) may hold the pipes.
            _kill_group(proc)
            await proc.wait()
            raise


async def _bounded(work: Coroutine[Any, Any, ProcessResult], time_limit: float | None) -> ProcessResult:
    if time_limit is None:
        return await work
    try:
        return await asyncio.wait_for(work, time_limit)
    except TimeoutError:
        raise WorkflowTimeoutError("Timeout", detail=f"process exceeded {time_limit:g}s") from None


def _write_files(workdir: str, files: Mapping[str, bytes]) -> None:
    for name, content in files.items():
        Path(workdir, name).write_bytes(content)


async def _start(spec: ProcessSpec, workdir: str) -> asyncio.subprocess.Process:
    try:
        return await asyncio.create_subprocess_exec(
            *spec.argv,
            stdin=asyncio.subprocess.PIPE if spec.stdin is not None else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=dict(spec.env),
            cwd=workdir,
            start_new_session=True,
        )
    except OSError as exc:
        raise ConfigurationError("Process could not start", detail=f"{spec.argv[0]}: {exc.strerror or exc}") from None


async def _communicate(proc: asyncio.subprocess.Process, stdin: str | None, limit: int) -> ProcessResult:
    assert proc.stdout is not None
    assert proc.stderr is not None
    _, out, err = await asyncio.gather(_feed(proc, stdin), _drain(proc.stdout, limit), _drain(proc.stderr, limit))
    code = await proc.wait()
    return ProcessResult(code, _text(out), _text(err))


async def _feed(proc: asyncio.subprocess.Process, stdin: str | None) -> None:
    if stdin is None or proc.stdin is None:
        return
    # A process that exits without reading its input is not an error of ours.
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        proc.stdin.write(stdin.encode())
        await proc.stdin.drain()
    proc.stdin.close()


async def _drain(stream: asyncio.StreamReader, limit: int) -> bytes:
    kept = bytearray()
    while chunk := await stream.read(_CHUNK):
        if len(kept) < limit:
            kept += chunk[: limit - len(kept)]
    return bytes(kept)


def _text(data: bytes) -> str:
    """Decoded output without the final line break (`echo hi` gives `hi`)."""
    return data.decode("utf-8", errors="replace").removesuffix("\n").removesuffix("\r")


def _kill_group(proc: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
