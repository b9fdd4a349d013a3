"""The official conformance kit, driven from its feature files: all 21 scenarios pass.

The scenarios that call petstore.swagger.io or httpbin.org run against the local mock (`tests/fixtures/http_mock.py`):
the test rewrites those base URLs in the scenario's document; the runtime itself knows nothing of them.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml

from executor import ExecuteCommand, Executor
from tests.fixtures.http_mock import MockServer
from tests.helpers import Recorder

from .ctk import Scenario, load_scenarios

SCENARIOS = load_scenarios()
OFFLINE = [s for s in SCENARIOS if not s.calls_internet]
ONLINE = [s for s in SCENARIOS if s.calls_internet]
INTERNET_HOSTS = ("https://petstore.swagger.io", "https://httpbin.org")


def top_level_order(recorder: Recorder) -> list[str]:
    """Names of top-level tasks in the order they started (a jump back would list a name twice)."""
    return [
        e.data["task"].split("/")[-1]
        for e in recorder.events
        if e.type.endswith("task.started.v1") and e.data["task"].count("/") == 3
    ]


def _lookup(value: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        assert isinstance(value, dict), f"output has no {dotted!r}: {value!r}"
        assert part in value, f"output has no {dotted!r}: {value!r}"
        value = value[part]
    return value


async def _run(scenario: Scenario, base_url: str | None = None) -> tuple[Any, Recorder]:
    recorder = Recorder()
    workflow_input: Any = {}
    for step in scenario.steps:
        if step.text.startswith("given the workflow input is"):
            workflow_input = yaml.safe_load(step.doc or "")
    definition = scenario.definition
    for host in INTERNET_HOSTS if base_url else ():
        definition = definition.replace(host, base_url or "")
    command = ExecuteCommand(execution_id=scenario.id, workflow_yaml=definition, input=workflow_input)
    executor = Executor(listener=recorder)
    try:
        result = await executor.run(command)
    finally:
        await executor.aclose()
    return result, recorder


def _then_steps(scenario: Scenario) -> list[Any]:
    executed = next(s for s in scenario.steps if s.text.startswith("the workflow is executed"))
    return scenario.steps[scenario.steps.index(executed) + 1 :]


def _check(step_text: str, doc: str | None, result: Any, recorder: Recorder) -> None:
    order = top_level_order(recorder)
    if step_text == "the workflow should complete":
        assert result.status.value == "completed", result.error
    elif step_text == "the workflow should complete with output:":
        assert result.status.value == "completed", result.error
        assert result.output == yaml.safe_load(doc or "")
    elif step_text == "the workflow should fault":
        assert result.status.value == "faulted"
    elif step_text == "the workflow should fault with error:":
        assert result.status.value == "faulted"
        assert result.error == yaml.safe_load(doc or "")
    elif m := re.fullmatch(r"the workflow output should have properties (.*)", step_text):
        for prop in re.findall(r"'([^']+)'", m.group(1)):
            _lookup(result.output, prop)
    elif m := re.fullmatch(r"the workflow output should have a '(.+)' property with value:", step_text):
        assert _lookup(result.output, m.group(1)) == yaml.safe_load(doc or "")
    elif m := re.fullmatch(r"the workflow output should have a '(.+)' property containing (\d+) items", step_text):
        assert len(_lookup(result.output, m.group(1))) == int(m.group(2))
    elif m := re.fullmatch(r"(\w+) should run first", step_text):
        assert order[0] == m.group(1), order
    elif m := re.fullmatch(r"(\w+) should run last", step_text):
        assert order[-1] == m.group(1), order
    elif m := re.fullmatch(r"(\w+) should run after (\w+)", step_text):
        assert order.index(m.group(1)) > order.index(m.group(2)), order
    else:
        raise AssertionError(f"unknown CTK step: {step_text!r}")


def test_kit_is_complete() -> None:
    """The kit has its 21 scenarios: 12 that run offline here, 9 that call internet hosts."""
    assert (len(SCENARIOS), len(OFFLINE), len(ONLINE)) == (21, 12, 9)


@pytest.mark.parametrize("scenario", OFFLINE, ids=[s.id for s in OFFLINE])
async def test_offline_scenario(scenario: Scenario) -> None:
    """The scenario's workflow runs and every `Then`/`And` of the kit holds."""
    result, recorder = await _run(scenario)
    then_steps = _then_steps(scenario)
    assert then_steps, "scenario has no assertions"
    for step in then_steps:
        _check(step.text, step.doc, result, recorder)


@pytest.mark.parametrize("scenario", ONLINE, ids=[s.id for s in ONLINE])
async def test_network_scenario(scenario: Scenario, mock: MockServer) -> None:
    """The scenario's calls reach the local petstore/httpbin mock and every `Then`/`And` of the kit holds."""
    result, recorder = await _run(scenario, mock.url)
    then_steps = _then_steps(scenario)
    assert then_steps, "scenario has no assertions"
    for step in then_steps:
        _check(step.text, step.doc, result, recorder)


def test_network_scenarios_name_only_the_mocked_hosts() -> None:
    """Every internet URL in the kit is one the mock serves, so no scenario can reach the internet."""
    for scenario in ONLINE:
        urls = re.findall(r"https?://[^/\s\"']+", scenario.definition)
        assert urls, scenario.id
        assert all(url in INTERNET_HOSTS or "serverlessworkflow.io" in url for url in urls), (scenario.id, urls)
