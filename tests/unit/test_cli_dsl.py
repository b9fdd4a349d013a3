"""`run` / `validate` honour ALLOW_SHELL / ALLOW_SCRIPT and their flags; `validate` warns about a `schedule`."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.helpers import doc
from tests.unit.test_cli import CLI

SHELL = doc("do:\n  - s:\n      run:\n        shell: {command: 'echo shell-ran'}\n")
SCRIPT = doc("do:\n  - s:\n      run:\n        script: {language: python, code: 'print(\"script-ran\")'}\n")


def cli(*args: str, **env: str) -> tuple[int, Any, str]:
    environ = {k: v for k, v in os.environ.items() if k not in ("ALLOW_SHELL", "ALLOW_SCRIPT")} | env
    proc = subprocess.run([CLI, *args], capture_output=True, text=True, timeout=60, check=False, env=environ)
    out = orjson.loads(proc.stdout) if proc.stdout.strip().startswith("{") else proc.stdout
    return proc.returncode, out, proc.stderr


@pytest.fixture
def shell(tmp_path: Path) -> Path:
    (tmp_path / "shell.yaml").write_text(SHELL)
    return tmp_path / "shell.yaml"


@pytest.fixture
def script(tmp_path: Path) -> Path:
    (tmp_path / "script.yaml").write_text(SCRIPT)
    return tmp_path / "script.yaml"


def test_run_refuses_shell_by_default(shell: Path) -> None:
    """Without ALLOW_SHELL or --allow-shell a shell task is refused as disabled (exit 2)."""
    code, out, _ = cli("run", str(shell), "--json")
    assert (code, out["status"]) == (2, "invalid")
    assert "`run.shell` is disabled" in out["errors"][0]["message"]


@pytest.mark.parametrize(("args", "env"), [(("--allow-shell",), {}), ((), {"ALLOW_SHELL": "true"})])
def test_run_executes_shell_when_allowed(shell: Path, args: tuple[str, ...], env: dict[str, str]) -> None:
    """`--allow-shell` or ALLOW_SHELL=true lets `run` execute a shell task, as `serve` would."""
    code, out, _ = cli("run", str(shell), "--json", *args, **env)
    assert (code, out["status"], out["output"]) == (0, "completed", "shell-ran")


@pytest.mark.parametrize(("args", "env"), [(("--allow-script",), {}), ((), {"ALLOW_SCRIPT": "1"})])
def test_run_executes_script_when_allowed(script: Path, args: tuple[str, ...], env: dict[str, str]) -> None:
    """`--allow-script` or ALLOW_SCRIPT lets `run` execute a python script task; shell stays refused."""
    code, out, _ = cli("run", str(script), "--json", *args, **env)
    assert (code, out["status"], out["output"]) == (0, "completed", "script-ran")
    code, out, _ = cli("run", str(script), "--json")
    assert (code, out["status"]) == (2, "invalid")


def test_validate_agrees_with_run(shell: Path) -> None:
    """`validate` refuses a shell task unless allowed the same way."""
    assert cli("validate", str(shell))[0] == 2
    assert cli("validate", str(shell), "--allow-shell")[0] == 0
    assert cli("validate", str(shell), ALLOW_SHELL="true")[0] == 0


def test_bad_allow_value_is_a_usage_error(shell: Path) -> None:
    """ALLOW_SHELL=maybe is refused naming the variable, exit 2."""
    code, _, err = cli("run", str(shell), ALLOW_SHELL="maybe")
    assert code == 2
    assert "ALLOW_SHELL" in err


def test_validate_warns_about_a_schedule(tmp_path: Path) -> None:
    """A scheduled document is valid; `--json` adds `warnings`, the text form prints the warning on stderr."""
    path = tmp_path / "cron.yaml"
    path.write_text(doc("schedule: {cron: '*/5 * * * *'}\ndo:\n  - s: {set: {v: 1}}\n"))
    code, out, _ = cli("validate", str(path), "--json")
    assert code == 0
    assert (out["valid"], out["errors"]) == (True, [])
    assert [(w["path"], w["line"]) for w in out["warnings"]] == [("/schedule", 2)]
    assert "caller's to honour" in out["warnings"][0]["message"]
    code, out, err = cli("validate", str(path))
    assert (code, out) == (0, "valid\n")
    assert err.startswith("warning: /schedule (line 2, column 11): schedule (`cron`) is the caller's to honour")


def test_run_starts_a_scheduled_document_now_and_says_so(tmp_path: Path) -> None:
    """`run` executes a scheduled document once, at once, and prints the schedule warning on stderr."""
    path = tmp_path / "every.yaml"
    path.write_text(doc("schedule: {every: {hours: 1}}\ndo:\n  - s: {set: {v: 1}}\n"))
    code, out, err = cli("run", str(path))
    assert (code, out) == (0, {"v": 1})
    assert "warning: /schedule" in err
    code, out, err = cli("run", str(path), "--json")
    assert (code, out["status"], err) == (0, "completed", "")


def test_validate_json_keeps_its_keys_for_an_unscheduled_document(tmp_path: Path) -> None:
    """`validate --json` of a document without warnings is exactly `{"valid", "errors"}`, as before."""
    path = tmp_path / "plain.yaml"
    path.write_text(doc("do:\n  - s: {set: {v: 1}}\n"))
    assert cli("validate", str(path), "--json")[1] == {"valid": True, "errors": []}
