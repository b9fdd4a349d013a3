"""A reader for the official conformance kit's Gherkin files: scenarios as data, steps as (text, doc string)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

SHARED = Path(__file__).resolve().parents[2].parent / "shared"
CTK_DIR = SHARED / "serverless-workflow" / "ctk"
_STEP = re.compile(r"^\s*(Given|When|Then|And|But)\s+(.*)$")


@dataclass
class Step:
    text: str
    doc: str | None = None


@dataclass
class Scenario:
    feature: str
    name: str
    steps: list[Step] = field(default_factory=list)

    @property
    def id(self) -> str:
        return f"{self.feature}::{self.name}"

    @property
    def definition(self) -> str:
        return next(s.doc for s in self.steps if s.text.startswith("a workflow with definition") and s.doc)

    @property
    def calls_internet(self) -> bool:
        return "https://" in self.definition and "call:" in self.definition


def ctk_dir() -> Path:
    """The kit's folder; a missing `../shared` is an error of the checkout, never a reason to skip."""
    if not CTK_DIR.is_dir():
        raise FileNotFoundError(f"conformance kit not found at {CTK_DIR}: the tests need ../shared beside the repo")
    return CTK_DIR


def load_scenarios() -> list[Scenario]:
    """Every scenario of every feature file, in file order."""
    return [s for path in sorted(ctk_dir().glob("*.feature")) for s in _parse(path)]


def _parse(path: Path) -> list[Scenario]:
    scenarios: list[Scenario] = []
    lines = path.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        line = lines[i].strip()
        if line.startswith("Scenario:"):
            scenarios.append(Scenario(path.stem, line.removeprefix("Scenario:").strip()))
        elif (match := _STEP.match(lines[i])) and scenarios:
            scenarios[-1].steps.append(Step(match.group(2).strip()))
        elif line.startswith('"""') and scenarios:
            doc, i = _doc_string(lines, i)
            scenarios[-1].steps[-1].doc = doc
        i += 1
    return scenarios


def _doc_string(lines: list[str], start: int) -> tuple[str, int]:
    indent = len(lines[start]) - len(lines[start].lstrip())
    body: list[str] = []
    i = start + 1
    while lines[i].strip() != '"""':
        body.append(lines[i][indent:] if lines[i][:indent].strip() == "" else lines[i].lstrip())
        i += 1
    return "\n".join(body) + "\n", i
