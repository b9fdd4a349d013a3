"""Structural validation of workflow definitions: what an author sees for each kind of mistake, and where."""

from __future__ import annotations

import textwrap
import time

import pytest

from executor import DocumentError, Issue, load_document, parse_yaml, validate_definition

# One line, so a body's line N is the document's line N + 1.
HEADER = "document: {dsl: '1.0.3', namespace: test, name: wf, version: '1.0.0'}\n"


def _issues(body: str, header: str = HEADER) -> list[Issue]:
    """Every located issue of `header + body` (body dedented), or [] when it loads."""
    try:
        load_document(header + textwrap.dedent(body))
    except DocumentError as error:
        return list(error.issues)
    return []


def _one(body: str, header: str = HEADER) -> Issue:
    issues = _issues(body, header)
    assert len(issues) == 1, issues
    return issues[0]


def test_valid_document_loads() -> None:
    """A small valid workflow loads and keeps its data."""
    document = load_document(HEADER + "do:\n  - greet:\n      set: {message: hi}\n")
    assert document.definition["do"] == [{"greet": {"set": {"message": "hi"}}}]


def test_set_with_wrong_type() -> None:
    """`set: 42` names the task's `set`, the accepted shapes and what was found, at its line."""
    issue = _one("do:\n  - greet:\n      set: 42\n")
    assert issue.path == "/do/0/greet/set"
    assert issue.message == "expected object or runtime expression string, got integer"
    assert (issue.line, issue.column) == (4, 12)
    assert issue.code == "invalid"


def test_missing_document_name_points_at_document() -> None:
    """A missing `document.name` is reported on `document`, located at its first line."""
    issue = _one("do: []\n", header="document:\n  dsl: '1.0.3'\n  namespace: test\n  version: '1.0.0'\n")
    assert (issue.path, issue.message) == ("/document", "missing required property `name`")
    assert (issue.line, issue.column) == (2, 3)


def test_missing_do_points_at_the_root() -> None:
    """A workflow without `do` is reported at the root."""
    assert _one("").to_dict() == {"path": "", "message": "missing required property `do`", "line": 1, "column": 1}


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("dsl", "'1.0'", "expected a semantic version such as `1.0.0`, got '1.0'"),
        ("name", "My Flow", "expected 1 to 63 letters, digits or hyphens, starting and ending with a letter or digit"),
        ("version", "latest", "expected a semantic version such as `1.0.0`, got 'latest'"),
    ],
)
def test_document_fields_follow_the_schema_patterns(field: str, value: str, expected: str) -> None:
    """`dsl` and `version` must be semantic versions, `name` an RFC 1123 label."""
    values = {"dsl": "'1.0.3'", "namespace": "test", "name": "wf", "version": "'1.0.0'"} | {field: value}
    header = "document:\n" + "".join(f"  {k}: {v}\n" for k, v in values.items())
    issue = _one("do: []\n", header=header)
    assert issue.path == f"/document/{field}"
    assert issue.message.startswith(expected)


@pytest.mark.parametrize("dsl", ["1.0.0", "1.0.1", "1.0.2", "1.0.3", "1.0.0-alpha5", "1.0.0-alpha1"])
def test_every_1_0_x_dsl_version_is_accepted(dsl: str) -> None:
    """Documents written for any 1.0.x release, pre-releases included, are accepted."""
    assert _issues("do: []\n", header=f"document: {{dsl: '{dsl}', namespace: t, name: wf, version: '1.0.0'}}\n") == []


def test_unknown_task_property_suggests_the_close_name() -> None:
    """A misspelt task property is reported at itself, with the intended name suggested."""
    issue = _one("do:\n  - greet:\n      set: {a: 1}\n      metdata: {}\n")
    assert issue.path == "/do/0/greet/metdata"
    assert issue.message == "unknown property `metdata`; did you mean `metadata`?"
    assert issue.line == 5


def test_task_item_with_two_keys_hints_at_indentation() -> None:
    """A task whose body is not indented under its name gets a hint saying so."""
    issue = _one("do:\n  - greet:\n    set: {a: 1}\n")
    assert issue.path == "/do/0"
    assert "2 keys (`greet` and `set`)" in issue.message
    assert "indented under its name" in issue.message
    assert issue.line == 3


def test_duplicate_task_names_in_one_list() -> None:
    """Two tasks with the same name in one list are refused at the second."""
    issue = _one("do:\n  - a: {set: {x: 1}}\n  - a: {set: {x: 2}}\n")
    assert (issue.path, issue.message) == ("/do/1/a", "duplicate task name `a` in this list")
    assert issue.line == 4


def test_same_task_name_in_different_lists_is_fine() -> None:
    """Task names only need to be unique within their own list."""
    assert _issues("do:\n  - a:\n      do:\n        - a: {set: {x: 1}}\n") == []


def test_task_with_two_types() -> None:
    """A task that is both a `set` and a `wait` names both."""
    issue = _one("do:\n  - t: {set: {x: 1}, wait: PT1S}\n")
    assert issue.path == "/do/0/t"
    assert issue.message.startswith("task must define only one of `call`, `do`")
    assert issue.message.endswith("found `set` and `wait`")


def test_task_without_type() -> None:
    """A task with only common properties says which task types exist."""
    issue = _one("do:\n  - t: {then: end}\n")
    assert issue.message.startswith("task must define one of `call`, `do`, `emit`")


def test_for_in_must_be_a_string() -> None:
    """`for.in` is a runtime expression string."""
    issue = _one("do:\n  - loop:\n      for: {in: 3}\n      do: []\n")
    assert (issue.path, issue.message) == ("/do/0/loop/for/in", "expected string, got integer")


def test_for_without_do() -> None:
    """A `for` task needs its `do` list."""
    issue = _one("do:\n  - loop:\n      for: {in: '${ .items }'}\n")
    assert (issue.path, issue.message) == ("/do/0/loop", "missing required property `do`")


def test_wait_with_a_bad_iso_duration() -> None:
    """A duration string that is not ISO 8601 says what is expected."""
    issue = _one("do:\n  - pause:\n      wait: 5 seconds\n")
    assert issue.path == "/do/0/pause/wait"
    assert "ISO 8601 duration such as `PT5S`" in issue.message
    assert (issue.line, issue.column) == (4, 13)


@pytest.mark.parametrize(
    "duration", ["PT5S", "P1DT2H", "PT0.5S", "${ .delay }", "{seconds: 5}", "{days: 1, minutes: 2}"]
)
def test_every_duration_form_is_accepted(duration: str) -> None:
    """Durations may be ISO 8601, inline objects or runtime expressions."""
    assert _issues(f"do:\n  - pause:\n      wait: {duration}\n") == []


def test_inline_duration_with_unknown_unit() -> None:
    """An inline duration with an unknown unit names it."""
    issue = _one("do:\n  - pause:\n      wait: {secs: 5}\n")
    assert (issue.path, issue.message) == ("/do/0/pause/wait/secs", "unknown property `secs`; did you mean `seconds`?")


def test_raise_error_without_status() -> None:
    """An inline error needs a status."""
    issue = _one("do:\n  - fail:\n      raise:\n        error: {type: https://example.com/e}\n")
    assert (issue.path, issue.message) == ("/do/0/fail/raise/error", "missing required property `status`")


def test_switch_case_without_then() -> None:
    """Every switch case says where to go."""
    issue = _one("do:\n  - pick:\n      switch:\n        - big: {when: '${ . > 1 }'}\n")
    assert (issue.path, issue.message) == ("/do/0/pick/switch/0/big", "missing required property `then`")


def test_fork_without_branches() -> None:
    """A fork needs branches."""
    issue = _one("do:\n  - both:\n      fork: {compete: true}\n")
    assert (issue.path, issue.message) == ("/do/0/both/fork", "missing required property `branches`")


def test_try_without_catch() -> None:
    """A try task needs a catch."""
    issue = _one("do:\n  - guard:\n      try:\n        - a: {set: {x: 1}}\n")
    assert (issue.path, issue.message) == ("/do/0/guard", "missing required property `catch`")


def test_call_http_without_method() -> None:
    """An HTTP call needs its method."""
    issue = _one("do:\n  - get:\n      call: http\n      with: {endpoint: https://example.com}\n")
    assert (issue.path, issue.message) == ("/do/0/get/with", "missing required property `method`")
    assert (issue.line, issue.column) == (5, 13)


def test_call_http_with_relative_endpoint() -> None:
    """An endpoint must be an absolute URI (or an expression, or an object with `uri`)."""
    issue = _one("do:\n  - get:\n      call: http\n      with: {method: get, endpoint: /pets}\n")
    assert issue.path == "/do/0/get/with/endpoint"
    assert issue.message == "expected an absolute URI or a runtime expression `${ … }`, got '/pets'"


def test_custom_function_call_accepts_any_arguments() -> None:
    """A call to a function by name takes any `with` object."""
    assert _issues("do:\n  - f:\n      call: myFunction\n      with: {anything: [1, 2]}\n") == []


def test_then_must_be_a_string() -> None:
    """A flow directive is a string."""
    issue = _one("do:\n  - a:\n      set: {x: 1}\n      then: 1\n")
    assert (issue.path, issue.message) == ("/do/0/a/then", "expected string, got integer")


def test_run_with_two_process_kinds() -> None:
    """`run` runs one thing: a container, a script, a shell command or a workflow."""
    issue = _one(
        "do:\n  - r:\n      run:\n        shell: {command: ls}\n        workflow: {namespace: a, name: b, version: '1'}\n"
    )
    assert issue.path == "/do/0/r/run"
    assert issue.message.endswith("found `shell` and `workflow`")


def test_run_container_is_structurally_valid() -> None:
    """A container run is a valid document here; whether it can run is decided elsewhere."""
    assert _issues("do:\n  - r:\n      run:\n        container: {image: alpine, arguments: [ls]}\n") == []


def test_pre_1_0_3_shell_arguments_map_is_accepted() -> None:
    """Shell and script `arguments` may be a map, as DSL 1.0.0-1.0.2 wrote them, or a list of strings."""
    assert _issues("do:\n  - r:\n      run:\n        shell: {command: echo, arguments: {a: b}}\n") == []
    assert _issues("do:\n  - r:\n      run:\n        shell: {command: echo, arguments: [a, b]}\n") == []


def test_set_may_be_an_expression_string() -> None:
    """Since DSL 1.0.1, `set` may be a runtime expression string."""
    assert _issues("do:\n  - s:\n      set: '${ . }'\n") == []


def test_container_lifetime_after_depends_on_cleanup() -> None:
    """`after` is required for `cleanup: eventually` and refused for the other policies."""
    run = "do:\n  - r:\n      run:\n        container:\n          image: alpine\n          lifetime: {}\n"
    missing = _one(run.replace("{}", "{cleanup: eventually}"))
    assert missing.path == "/do/0/r/run/container/lifetime"
    assert "missing required property `after`" in missing.message
    extra = _one(run.replace("{}", "{cleanup: always, after: PT1M}"))
    assert extra.path == "/do/0/r/run/container/lifetime/after"


def test_endpoint_authentication_is_one_policy() -> None:
    """An endpoint's authentication is one named policy or one inline scheme, not both."""
    body = "do:\n  - g:\n      call: http\n      with:\n        method: get\n        endpoint:\n"
    body += "          uri: https://example.com\n          authentication: {use: a, basic: {use: b}}\n"
    issue = _one(body)
    assert issue.path == "/do/0/g/with/endpoint/authentication"
    assert issue.message.endswith("found `use` and `basic`")


def test_asyncapi_needs_exactly_one_of_operation_and_channel() -> None:
    """An AsyncAPI call names an operation or a channel, not both."""
    body = "do:\n  - p:\n      call: asyncapi\n      with:\n        document: {endpoint: https://e.com/a.json}\n"
    body += "        operation: op\n        channel: ch\n        message: {payload: {}}\n"
    issue = _one(body)
    assert (issue.path, issue.message) == ("/do/0/p/with", "expected only one of `operation` or `channel`")


def test_error_instance_and_event_time_accept_expressions() -> None:
    """Error `instance` and event `time` may be literal (JSON Pointer, RFC 3339) or runtime expressions."""
    body = """\
    do:
      - fail:
          raise:
            error: {type: https://e.com/e, status: 400, instance: '${ $task.reference }'}
      - tell:
          emit:
            event:
              with: {source: https://e.com, type: t, time: '${ now }'}
      - tell2:
          emit:
            event:
              with: {source: https://e.com, type: t, time: '2024-01-01T00:00:00Z'}
    """
    assert _issues(body) == []
    assert _one(body.replace("'${ now }'", "yesterday")).path == "/do/1/tell/emit/event/with/time"


def test_use_section_entries_are_checked() -> None:
    """Reusable errors, retries, timeouts and functions are validated where they are declared."""
    header = HEADER + "use:\n  timeouts:\n    short: {after: 5m}\n  functions:\n    f: {set: 1}\n"
    issues = _issues("do: []\n", header=header)
    assert [i.path for i in issues] == ["/use/timeouts/short/after", "/use/functions/f/set"]
    assert [i.line for i in issues] == [4, 6]


def test_every_issue_is_reported_in_document_order() -> None:
    """All mistakes are reported at once, each located, in the order they appear."""
    issues = _issues("do:\n  - a: {set: 1}\n  - b: {wait: soon}\n  - c: {for: {in: 1}, do: []}\n")
    assert [i.path for i in issues] == ["/do/0/a/set", "/do/1/b/wait", "/do/2/c/for/in"]
    assert [i.line for i in issues] == [3, 4, 5]
    assert all(i.code == "invalid" for i in issues)


def test_invalid_document_is_not_unsupported() -> None:
    """A structurally invalid document is reported as invalid, never as unsupported."""
    with pytest.raises(DocumentError) as caught:
        load_document(HEADER + "do: {}\n")
    assert not caught.value.unsupported
    assert caught.value.issues[0].message.startswith("expected array of `name: task` mappings, got object")


@pytest.mark.parametrize("definition", [[], "text", None, 3])
def test_non_object_definition(definition: object) -> None:
    """Validating something that is not an object reports it at the root."""
    issues = validate_definition(definition)
    assert [i.path for i in issues] == [""]
    assert issues[0].message.startswith("expected object, got")


def test_validation_is_fast() -> None:
    """Validating a 50-task document takes well under 5 ms."""
    tasks = "".join(
        f"  - t{i}:\n      call: http\n      with: {{method: get, endpoint: {{uri: 'https://e.com/{i}'}}}}\n"
        f"      output: {{as: '${{ .body }}'}}\n      then: t{i + 1}\n"
        for i in range(50)
    )
    definition = parse_yaml(HEADER + "do:\n" + tasks).definition
    assert validate_definition(definition) == []
    best = min(_timed(definition) for _ in range(5))
    assert best < 0.005


def _timed(definition: object) -> float:
    started = time.perf_counter()
    validate_definition(definition)
    return time.perf_counter() - started
