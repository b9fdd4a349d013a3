"""Our validator against the official DSL JSON Schema as an oracle: same verdict on every example and mutation."""

from __future__ import annotations

import copy
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from executor import Limits, parse_yaml, validate_definition
from tests.conformance.ctk import SHARED, load_scenarios

SPEC = SHARED / "serverless-workflow"
DELETE = object()


def _require(path: Path) -> Path:
    if not path.exists():
        pytest.fail(f"{path} is missing: the tests need the shared material in ../shared beside the repository")
    return path


@cache
def _oracle() -> jsonschema.Draft202012Validator:
    # Read with our YAML 1.2 loader: PyYAML's 1.1 rules would turn the schema's `on:` property into `True`.
    schema = parse_yaml(_require(SPEC / "schema" / "workflow.yaml").read_bytes(), Limits(max_nodes=10**6))
    jsonschema.Draft202012Validator.check_schema(schema.definition)
    return jsonschema.Draft202012Validator(schema.definition)


def _official_accepts(definition: Any) -> bool:
    return _oracle().is_valid(definition)


def _example_names() -> list[str]:
    folder = SPEC / "examples"
    return sorted(p.name for p in folder.glob("*.yaml")) if folder.is_dir() else ["<examples folder missing>"]


def test_shared_material_is_present() -> None:
    """The official schema, examples and conformance kit are found beside the repository."""
    for part in ("schema/workflow.yaml", "examples", "ctk"):
        _require(SPEC / part)
    assert len(_example_names()) >= 30


@pytest.mark.parametrize("name", _example_names())
def test_official_example_gets_the_official_verdict(name: str) -> None:
    """Each official example is accepted by our validator exactly when the official schema accepts it."""
    definition = parse_yaml(_require(SPEC / "examples" / name).read_bytes()).definition
    issues = validate_definition(definition)
    if _official_accepts(definition):
        assert issues == []
    else:
        assert issues, "the official schema rejects this example; ours must too"


@pytest.mark.parametrize("scenario", load_scenarios(), ids=lambda s: s.id)
def test_ctk_definition_gets_the_official_verdict(scenario: Any) -> None:
    """Each workflow of the conformance kit is accepted by our validator exactly when the official schema is."""
    definition = parse_yaml(scenario.definition).definition
    issues = validate_definition(definition)
    assert _official_accepts(definition) == (issues == []), issues


BASE = """
document: {dsl: '1.0.3', namespace: test, name: mutations, version: '1.0.0'}
input:
  from: ${ . }
use:
  authentications:
    petAuth: {bearer: {token: abc}}
  errors:
    notFound: {type: https://example.com/errors/not-found, status: 404}
  retries:
    default: {delay: {seconds: 1}, limit: {attempt: {count: 3}}}
  timeouts:
    short: {after: PT5S}
  secrets: [apiKey]
timeout: {after: {minutes: 5}}
schedule: {every: PT1H}
do:
  - greet:
      set: {message: hello}
      metadata: {owner: team}
  - fetch:
      call: http
      with:
        method: get
        endpoint: {uri: 'https://example.com/pets/{id}', authentication: {use: petAuth}}
        headers: {Accept: application/json}
      output: {as: .body}
      then: loop
  - loop:
      for: {each: pet, in: '${ .pets }'}
      do:
        - pause: {wait: PT1S}
  - parallel:
      fork:
        branches:
          - a: {set: {x: 1}}
          - b: {set: {y: 2}}
  - decide:
      switch:
        - big: {when: '${ .x > 1 }', then: end}
        - other: {then: continue}
  - guarded:
      try:
        - fail:
            raise:
              error: {type: https://example.com/errors/boom, status: 500}
      catch:
        errors: {with: {status: 500}}
        retry: default
        do:
          - recover: {set: {recovered: true}}
  - shout:
      run:
        shell: {command: echo, arguments: [hi]}
  - notify:
      emit:
        event:
          with: {source: https://example.com, type: com.example.done}
  - await:
      listen:
        to:
          one:
            with: {type: com.example.ready}
  - child:
      run:
        workflow: {namespace: test, name: child, version: '1.0.0'}
  - compute:
      run:
        script: {language: js, code: '1'}
      export: {as: '${ $context }'}
  - rpc:
      call: grpc
      with:
        proto: {endpoint: https://example.com/greet.proto}
        service: {name: Greeter, host: example.com, port: 50051}
        method: SayHello
"""

# (pointer, new value or DELETE): each makes BASE invalid under the official schema.
MUTATIONS: dict[str, tuple[str, Any]] = {
    "document-name-missing": ("/document/name", DELETE),
    "dsl-not-semver": ("/document/dsl", "1.0"),
    "dsl-with-v-prefix": ("/document/dsl", "v1.0.3"),
    "name-with-space": ("/document/name", "My Flow"),
    "namespace-too-long": ("/document/namespace", "n" * 64),
    "version-not-semver": ("/document/version", "latest"),
    "document-unknown-property": ("/document/author", "me"),
    "do-missing": ("/do", DELETE),
    "do-not-a-list": ("/do", {"greet": {"set": {"a": 1}}}),
    "task-item-two-keys": ("/do/0", {"greet": {"set": {"a": 1}}, "other": {"set": {"b": 2}}}),
    "task-item-a-string": ("/do/0", "greet"),
    "task-unknown-property": ("/do/0/greet/sett", {"a": 1}),
    "task-two-types": ("/do/0/greet/wait", "PT1S"),
    "task-no-type": ("/do/0/greet", {"then": "end"}),
    "set-integer": ("/do/0/greet/set", 42),
    "set-empty-object": ("/do/0/greet/set", {}),
    "metadata-not-object": ("/do/0/greet/metadata", "team"),
    "if-not-string": ("/do/0/greet/if", True),
    "http-without-method": ("/do/1/fetch/with/method", DELETE),
    "http-without-endpoint": ("/do/1/fetch/with/endpoint", DELETE),
    "http-without-with": ("/do/1/fetch/with", DELETE),
    "http-relative-endpoint": ("/do/1/fetch/with/endpoint", "pets/1"),
    "http-bad-output-format": ("/do/1/fetch/with/output", "json"),
    "http-header-not-string": ("/do/1/fetch/with/headers/X-Count", 1),
    "http-unknown-argument": ("/do/1/fetch/with/timeout", "PT1S"),
    "then-not-string": ("/do/1/fetch/then", 1),
    "output-as-boolean": ("/do/1/fetch/output/as", True),
    "endpoint-use-and-basic": ("/do/1/fetch/with/endpoint/authentication/basic", {"use": "other"}),
    "for-in-integer": ("/do/2/loop/for/in", 3),
    "for-without-do": ("/do/2/loop/do", DELETE),
    "for-without-in": ("/do/2/loop/for/in", DELETE),
    "wait-bad-iso-duration": ("/do/2/loop/do/0/pause/wait", "5 seconds"),
    "wait-unknown-unit": ("/do/2/loop/do/0/pause/wait", {"secs": 5}),
    "wait-empty-object": ("/do/2/loop/do/0/pause/wait", {}),
    "fork-without-branches": ("/do/3/parallel/fork/branches", DELETE),
    "fork-compete-string": ("/do/3/parallel/fork/compete", "yes"),
    "switch-case-without-then": ("/do/4/decide/switch/0/big/then", DELETE),
    "switch-empty": ("/do/4/decide/switch", []),
    "switch-when-not-string": ("/do/4/decide/switch/0/big/when", 1),
    "try-without-catch": ("/do/5/guarded/catch", DELETE),
    "raise-error-without-status": ("/do/5/guarded/try/0/fail/raise/error/status", DELETE),
    "raise-error-type-not-uri": ("/do/5/guarded/try/0/fail/raise/error/type", "boom"),
    "catch-unknown-property": ("/do/5/guarded/catch/then", "end"),
    "catch-retry-integer": ("/do/5/guarded/catch/retry", 3),
    "run-shell-and-script": ("/do/6/shout/run/script", {"language": "js", "code": "1"}),
    "run-shell-without-command": ("/do/6/shout/run/shell/command", DELETE),
    "run-shell-argument-not-string": ("/do/6/shout/run/shell/arguments", [1]),
    "run-bad-return": ("/do/6/shout/run/return", "everything"),
    "emit-without-event": ("/do/7/notify/emit/event", DELETE),
    "emit-event-without-type": ("/do/7/notify/emit/event/with/type", DELETE),
    "listen-without-to": ("/do/8/await/listen/to", DELETE),
    "listen-two-strategies": ("/do/8/await/listen/to/all", []),
    "event-filter-without-with": ("/do/8/await/listen/to/one/with", DELETE),
    "subflow-without-version": ("/do/9/child/run/workflow/version", DELETE),
    "script-without-language": ("/do/10/compute/run/script/language", DELETE),
    "script-code-and-source": ("/do/10/compute/run/script/source", {"endpoint": "https://example.com/s.js"}),
    "export-as-integer": ("/do/10/compute/export/as", 1),
    "grpc-port-out-of-range": ("/do/11/rpc/with/service/port", 70000),
    "grpc-without-service-host": ("/do/11/rpc/with/service/host", DELETE),
    "bearer-unknown-property": ("/use/authentications/petAuth/bearer/username", "me"),
    "use-error-without-type": ("/use/errors/notFound/type", DELETE),
    "retry-count-string": ("/use/retries/default/limit/attempt/count", "3"),
    "use-timeout-without-after": ("/use/timeouts/short/after", DELETE),
    "use-secret-not-string": ("/use/secrets/0", 1),
    "use-unknown-section": ("/use/variables", {}),
    "workflow-timeout-bad-duration": ("/timeout/after", "5m"),
    "input-from-integer": ("/input/from", 1),
    "schedule-unknown-property": ("/schedule/at", "noon"),
}


def _mutated(pointer: str, value: Any) -> dict[str, Any]:
    document = copy.deepcopy(parse_yaml(BASE).definition)
    *parents, last = [part.replace("~1", "/").replace("~0", "~") for part in pointer.split("/")[1:]]
    target: Any = document
    for part in parents:
        target = target[int(part)] if isinstance(target, list) else target[part]
    if value is DELETE:
        del target[int(last) if isinstance(target, list) else last]
    elif isinstance(target, list):
        target[int(last)] = value
    else:
        target[last] = value
    return document


def test_base_document_is_valid_for_both() -> None:
    """The document the mutations start from is valid under the official schema and ours."""
    definition = parse_yaml(BASE).definition
    assert _official_accepts(definition)
    assert validate_definition(definition) == []


def test_there_are_enough_mutations() -> None:
    """The invalid variants cover at least forty distinct mistakes."""
    assert len(MUTATIONS) >= 40


@pytest.mark.parametrize(("pointer", "value"), MUTATIONS.values(), ids=MUTATIONS.keys())
def test_mutation_is_rejected_by_both(pointer: str, value: Any) -> None:
    """A broken variant of a valid document is rejected by both, and ours points at the broken part."""
    definition = _mutated(pointer, value)
    assert not _official_accepts(definition), "the official schema must reject this variant"
    issues = validate_definition(definition)
    assert issues, "our validator must reject this variant"
    parent = pointer.rpartition("/")[0]
    assert issues[0].path.startswith(parent), (issues[0], parent)
