"""The committed WorkflowRunner code is what `make proto` generates from proto/ today."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from consumer._proto import generate

# Tool versions stamped into generated code; a different grpcio-tools is not a stale .proto.
_VERSIONS = re.compile(
    r"^(# Protobuf Python Version:.*|.*ValidateProtobufRuntimeVersion\(.*|GRPC_GENERATED_VERSION = .*)$"
)


def _normalized(path: Path) -> list[str]:
    text = path.read_text()
    text = re.sub(r"_runtime_version\.ValidateProtobufRuntimeVersion\([^)]*\)", "<runtime check>", text)
    return [_VERSIONS.sub("<version>", line) for line in text.splitlines()]


def test_generated_code_is_fresh(tmp_path: Path) -> None:
    """Regenerating into a temporary directory gives the committed files (run `make proto` when this fails)."""
    fresh = generate.generate(tmp_path)
    committed_root = generate.OUT_DIR
    assert fresh, "protoc generated nothing"
    for path in fresh:
        relative = path.relative_to(tmp_path)
        committed = committed_root / relative
        assert committed.exists(), f"{relative} is not committed: run `make proto`"
        assert _normalized(path) == _normalized(committed), f"{relative} is stale: run `make proto`"
    committed_files = {p.relative_to(committed_root) for p in generate.generated_files(committed_root)}
    assert committed_files == {p.relative_to(tmp_path) for p in fresh}, "committed code for a proto that is gone"
    shutil.rmtree(tmp_path / "workflow_runner")
