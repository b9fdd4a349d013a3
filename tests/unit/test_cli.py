"""The command-line contract other tools rely on: stdout JSON shapes, `--events` lines, exit codes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.helpers import doc

CLI = str(Path(sys.executable).parent / "workflow-runner")


def cli(*args: str, stdin: str | None = None) -> tuple[int, Any, str]:
    proc = subprocess.run([CLI, *args], capture_output=True, text=True, input=stdin, timeout=60, check=False)
    out = orjson.loads(proc.stdout) if proc.stdout.strip().startswith("{") else proc.stdout
    return proc.returncode, out, proc.stderr


@pytest.fixture
def workflow(tmp_path: Path) -> Path:
    path = tmp_path / "wf.yaml"
    path.write_text(doc("do:\n  - greet: {set: {msg: '${ \"hi \" + .name }'}}\n"))
    return path


def test_run_json_completed(workflow: Path, tmp_path: Path) -> None:
    """`run --json` prints exactly one result object and exits 0; `--events` gets one JSON line per event."""
    events = tmp_path / "events.jsonl"
    code, out, _ = cli("run", str(workflow), "--input", '{"name": "Ada"}', "--json", "--events", str(events))
    assert code == 0
    assert set(out) == {"execution_id", "status", "output", "error"}
    assert (out["status"], out["output"], out["error"]) == ("completed", {"msg": "hi Ada"}, None)
    lines = [orjson.loads(line) for line in events.read_text().splitlines()]
    assert [e["type"].split(".", 2)[2] for e in lines] == [
        "workflow.started.v1",
        "task.started.v1",
        "task.completed.v1",
        "workflow.completed.v1",
    ]
    assert {e["subject"] for e in lines} == {out["execution_id"]}
    assert [e["sequence"] for e in lines] == [1, 2, 3, 4]
    assert len({e["id"] for e in lines}) == 4
    assert all(e["specversion"] == "1.0" for e in lines)


def test_run_input_from_file(workflow: Path, tmp_path: Path) -> None:
    """`--input @file` reads the input from a file."""
    (tmp_path / "in.json").write_text('{"name": "Bo"}')
    code, out, _ = cli("run", str(workflow), "--input", f"@{tmp_path / 'in.json'}", "--json")
    assert (code, out["output"]) == (0, {"msg": "hi Bo"})


def test_run_faulted_exits_1(tmp_path: Path) -> None:
    """A faulted workflow exits 1 and reports the spec error."""
    path = tmp_path / "f.yaml"
    path.write_text(doc("do:\n  - r: {raise: {error: {type: https://x.io/e, status: 409, title: Conflict}}}\n"))
    code, out, _ = cli("run", str(path), "--json")
    assert code == 1
    assert out["status"] == "faulted"
    assert out["error"] == {
        "type": "https://x.io/e",
        "status": 409,
        "title": "Conflict",
        "instance": "/do/0/r",
    }


def test_run_invalid_document_exits_2(tmp_path: Path) -> None:
    """An invalid document exits 2 with status `invalid` and located errors."""
    path = tmp_path / "bad.yaml"
    path.write_text(doc("do:\n  - s: {set: {a: 1}, bogus: 1}\n"))
    code, out, _ = cli("run", str(path), "--json")
    assert code == 2
    assert out["status"] == "invalid"
    assert out["errors"][0]["path"].startswith("/do/0/s")
    assert out["errors"][0]["line"] == 3


def test_run_secrets_stay_out_of_events(tmp_path: Path) -> None:
    """Secrets passed with `--secrets` never appear in the events file."""
    path = tmp_path / "s.yaml"
    path.write_text(doc("use:\n  secrets: [pw]\ndo:\n  - s: {set: {echo: '${ $secrets.pw }'}}\n"))
    events = tmp_path / "e.jsonl"
    code, _, _ = cli("run", str(path), "--secrets", '{"pw": "hunter2-xyz"}', "--json", "--events", str(events))
    assert code == 0
    assert "hunter2-xyz" not in events.read_text()


def test_usage_errors_exit_2(workflow: Path) -> None:
    """Bad flags, unreadable files and bad JSON input exit 2 with a message."""
    assert cli("run")[0] == 2
    assert cli("run", "/nonexistent.yaml", "--json")[0] == 2
    code, _, err = cli("run", str(workflow), "--input", "{not json")
    assert code == 2
    assert "--input" in err


def test_validate_json(workflow: Path, tmp_path: Path) -> None:
    """`validate --json` gives `{valid, errors}`; exit 0 for valid, 2 for invalid."""
    code, out, _ = cli("validate", str(workflow), "--json")
    assert (code, out) == (0, {"valid": True, "errors": []})
    bad = tmp_path / "bad.yaml"
    bad.write_text("document: {dsl: '1.0.3', namespace: t, name: w}\ndo: []\n")
    code, out, _ = cli("validate", str(bad), "--json")
    assert code == 2
    assert out["valid"] is False
    assert all({"path", "message"} <= set(e) for e in out["errors"])


def test_validate_reports_unsupported(tmp_path: Path) -> None:
    """`run.container` is reported as not supported by this runtime."""
    path = tmp_path / "c.yaml"
    path.write_text(doc("do:\n  - c: {run: {container: {image: alpine}}}\n"))
    code, out, _ = cli("validate", str(path), "--json")
    assert code == 2
    assert "not supported by this runtime" in out["errors"][0]["message"]


def test_validate_from_stdin(workflow: Path) -> None:
    """`-` reads the document from standard input."""
    code, out, _ = cli("validate", "-", "--json", stdin=workflow.read_text())
    assert (code, out["valid"]) == (0, True)


def test_numbers_past_64_bits_do_not_break_output_or_events(tmp_path: Path) -> None:
    """jq's `pow(2; 64)` flows through later expressions, the events file and the JSON result as a number."""
    path = tmp_path / "big.yaml"
    path.write_text(
        doc("do:\n  - a: {set: '${ {big: pow(2; 64)} }'}\n  - b: {set: '${ {big: .big, twice: (.big * 2)} }'}\n")
    )
    events = tmp_path / "events.jsonl"
    code, out, err = cli("run", str(path), "--json", "--events", str(events))
    assert code == 0, err
    assert out["output"] == {"big": 2.0**64, "twice": 2.0**65}
    assert orjson.loads(events.read_text().splitlines()[-1])["data"]["output"]["big"] == 2.0**64
