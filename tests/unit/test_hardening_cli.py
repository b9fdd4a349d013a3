"""Issue 11's failures through `workflow-runner run`: no traceback, a clear refusal or one faulted result."""

from __future__ import annotations

from pathlib import Path

import orjson

from tests.helpers import doc
from tests.unit.test_cli import cli


def test_output_nested_too_deep_is_a_faulted_result_not_a_traceback(tmp_path: Path) -> None:
    """`run` on a task producing data 300 deep prints the faulted result (expression error) and exits 1; the events
    file ends with the one terminal event."""
    path, events = tmp_path / "deep.yaml", tmp_path / "events.jsonl"
    path.write_text(doc("do:\n  - deep: {set: {x: '${ reduce range(300) as $i (0; [.]) }'}}\n"))
    code, out, err = cli("run", str(path), "--json", "--events", str(events))
    assert code == 1
    assert "Traceback" not in err
    assert (out["status"], out["error"]["instance"]) == ("faulted", "/do/0/deep")
    assert out["error"]["type"].endswith("/expression")
    types = [orjson.loads(line)["type"] for line in events.read_text().splitlines()]
    assert [t for t in types if ".workflow." in t][-1] == "io.serverlessworkflow.workflow.faulted.v1"
    assert sum(1 for t in types if t.endswith(("workflow.completed.v1", "workflow.faulted.v1"))) == 1


def test_input_nested_too_deep_is_a_usage_error_with_its_path(tmp_path: Path) -> None:
    """`--input` nested 300 deep is refused (exit 2) naming where it passes MAX_JSON_DEPTH, like every ingress."""
    path = tmp_path / "wf.yaml"
    path.write_text(doc("do:\n  - one: {set: {ok: true}}\n"))
    code, _, err = cli("run", str(path), "--input", "[" * 300 + "]" * 300)
    assert code == 2
    assert err.strip() == f"workflow-runner: --input{'/0' * 128}: nested more than 128 levels deep (MAX_JSON_DEPTH)"


def test_secrets_that_are_not_an_object_are_a_usage_error(tmp_path: Path) -> None:
    """`--secrets` must be a JSON object, as on every ingress; its value is not repeated in the message."""
    path = tmp_path / "wf.yaml"
    path.write_text(doc("do:\n  - one: {set: {ok: true}}\n"))
    code, _, err = cli("run", str(path), "--secrets", '["s3cret-value"]')
    assert code == 2
    assert err.strip() == "workflow-runner: --secrets: must be an object, got array"
