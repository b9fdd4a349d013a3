"""Data flow and flow directives: `if`, input/output/export with `from`/`as`/`schema`, `then`, `$` arguments."""

from __future__ import annotations

from tests.helpers import run

VALIDATION = "https://serverlessworkflow.io/spec/1.0.0/errors/validation"
EXPRESSION = "https://serverlessworkflow.io/spec/1.0.0/errors/expression"


async def test_if_false_skips_task_and_passes_input() -> None:
    """A task whose `if` is false is skipped: no events, its raw input flows on."""
    result, rec = await run("do:\n  - s:\n      if: '.go'\n      set: {r: changed}\n", {"go": False})
    assert result.output == {"go": False}
    assert not any("/do/0/s" in k for k in rec.kinds())


async def test_input_from_and_output_as() -> None:
    """`input.from` shapes what the task sees; `output.as` shapes what it passes on."""
    body = (
        "do:\n  - s:\n      input: {from: .user}\n      set: {name: '${ .name }', raw: 1}\n      output: {as: .name}\n"
    )
    result, _ = await run(body, {"user": {"name": "Ada"}})
    assert result.output == "Ada"


async def test_object_form_of_from_and_as() -> None:
    """`from`/`as` may be objects whose `${}` leaves are evaluated."""
    body = "do:\n  - s:\n      input: {from: {v: '${ .a }'}}\n      set: '${ .v }'\n      output: {as: {wrapped: '${ . }'}}\n"
    result, _ = await run(body, {"a": 5})
    assert result.output == {"wrapped": 5}


async def test_export_replaces_context_and_is_visible_later() -> None:
    """`export.as` replaces `$context`; later tasks read it."""
    body = """
        do:
          - a: {set: {v: 1}, export: {as: '{first: .v}'}}
          - b: {set: {v: 2}, export: {as: '$context + {second: .v}'}}
          - c: {set: '${ $context }'}
        """
    result, _ = await run(body)
    assert result.output == {"first": 1, "second": 2}


async def test_output_as_sees_input_and_export_sees_output() -> None:
    """`$input` is available to `output.as`; `$output` to `export.as` (the spec's availability table)."""
    body = "do:\n  - s:\n      set: {b: 2}\n      output: {as: '{a: $input.a, b: .b}'}\n      export: {as: '$output'}\n  - t: {set: '${ $context }'}\n"
    result, _ = await run(body, {"a": 1})
    assert result.output == {"a": 1, "b": 2}


async def test_output_is_not_available_in_input_from() -> None:
    """`$output` in `input.from` is an expression error (not available there)."""
    result, _ = await run("do:\n  - s:\n      input: {from: '$output'}\n      set: {v: 1}\n")
    assert result.error is not None
    assert (result.error["type"], result.error["status"], result.error["instance"]) == (
        EXPRESSION,
        400,
        "/do/0/s",
    )


async def test_workflow_input_and_output_transformations() -> None:
    """Workflow `input.from` shapes the first task's input; `output.as` the workflow's output."""
    body = "input: {from: .payload}\noutput: {as: '{result: ., ctx: $context}'}\ndo:\n  - s: {set: '${ .n + 1 }', export: {as: '{seen: true}'}}\n"
    result, _ = await run(body, {"payload": {"n": 1}})
    assert result.output == {"result": 2, "ctx": {"seen": True}}


async def test_workflow_input_schema_rejects_bad_input() -> None:
    """Input that fails the workflow's input schema faults with the validation error before any task runs."""
    body = "input:\n  schema:\n    document: {type: object, required: [id]}\ndo:\n  - s: {set: {v: 1}}\n"
    result, rec = await run(body, {"name": "x"})
    assert result.error is not None
    assert (result.error["type"], result.error["status"]) == (VALIDATION, 400)
    assert "id" in result.error["detail"]
    assert not any(k.startswith("task.") for k in rec.kinds())


async def test_task_schemas_are_checked() -> None:
    """Task input and output schemas fault with the validation error at the task."""
    bad_in = "do:\n  - s:\n      input: {schema: {document: {type: string}}}\n      set: {v: 1}\n"
    result, _ = await run(bad_in, {"a": 1})
    assert result.error is not None
    assert (result.error["type"], result.error["instance"]) == (VALIDATION, "/do/0/s")
    bad_out = "do:\n  - s:\n      set: {v: 1}\n      output: {schema: {document: {type: string}}}\n"
    result, _ = await run(bad_out)
    assert result.error is not None
    assert result.error["type"] == VALIDATION


async def test_export_schema_checks_context() -> None:
    """An exported context that fails `export.schema` faults."""
    body = "do:\n  - s:\n      set: {v: 1}\n      export: {as: '{n: .}', schema: {document: {type: object, required: [m]}}}\n"
    result, _ = await run(body)
    assert result.error is not None
    assert result.error["type"] == VALIDATION


async def test_then_jumps_to_named_task_and_loops() -> None:
    """`then: <name>` jumps within the list, backwards too (a loop)."""
    body = """
        do:
          - inc: {set: {n: '${ (.n // 0) + 1 }'}}
          - again:
              switch:
                - more: {when: '.n < 3', then: inc}
          - done: {set: '${ .n }'}
        """
    result, _ = await run(body)
    assert result.output == 3


async def test_then_exit_leaves_only_current_scope() -> None:
    """`exit` ends the nested list; the outer list continues."""
    body = """
        do:
          - inner:
              do:
                - a: {set: {a: 1}, then: exit}
                - b: {set: {b: 1}}
          - after: {set: '${ . + {after: 1} }'}
        """
    result, _ = await run(body)
    assert result.output == {"a": 1, "after": 1}


async def test_then_end_finishes_workflow_from_depth() -> None:
    """`end` inside a nested list completes the whole workflow at once."""
    body = """
        do:
          - inner:
              do:
                - a: {set: {a: 1}, then: end}
                - b: {set: {b: 1}}
          - after: {set: {after: 1}}
        """
    result, rec = await run(body)
    assert result.output == {"a": 1}
    assert not any("after" in k for k in rec.kinds())
    assert rec.kinds()[-1] == "workflow.completed"


async def test_dangling_then_is_refused_with_its_path() -> None:
    """A `then` naming no task of its list is refused at validation with the pointer of the `then`."""
    from executor import Executor
    from tests.helpers import doc

    issues = Executor().validate(doc("do:\n  - a: {set: {v: 1}, then: nowhere}\n"))
    assert [(i.path, i.code) for i in issues] == [("/do/0/a/then", "invalid")]
    assert (issues[0].line, issues[0].column) == (3, 28)


async def test_runtime_arguments() -> None:
    """`$workflow`, `$task`, `$runtime` carry the spec's descriptors."""
    body = "do:\n  - probe:\n      set:\n        wf: '${ $workflow.id }'\n        raw: '${ $workflow.input }'\n        task: '${ $task.name + \" \" + $task.reference }'\n        rt: '${ $runtime.name }'\n        at: '${ $task.startedAt.epoch.seconds > 0 }'\n"
    result, _ = await run(body, {"x": 1})
    assert result.output == {
        "wf": "test-1",
        "raw": {"x": 1},
        "task": "probe /do/0/probe",
        "rt": "workflow-runner",
        "at": True,
    }


async def test_expression_error_names_task_and_expression() -> None:
    """A failing expression faults with status 400, the task pointer, and the expression text."""
    result, _ = await run("do:\n  - s:\n      set: '${ .a + 1 }'\n", {"a": "text"})
    assert result.error is not None
    assert (result.error["type"], result.error["status"], result.error["instance"]) == (
        EXPRESSION,
        400,
        "/do/0/s",
    )
    assert ".a + 1" in result.error["detail"]


async def test_declared_secrets_are_exposed() -> None:
    """`use.secrets` names what `$secrets` holds, taken from the command's secrets."""
    body = "use:\n  secrets: [apiKey]\ndo:\n  - s: {set: {len: '${ $secrets.apiKey | length }', other: '${ $secrets.other }'}}\n"
    result, _ = await run(body, secrets={"apiKey": "s3cr3t-value", "other": "not-declared"})
    assert result.output == {"len": 12, "other": None}


async def test_missing_declared_secret_faults_with_authorization_error() -> None:
    """A declared secret the command did not provide faults with the spec's authorization error (403)."""
    result, _ = await run("use:\n  secrets: [apiKey]\ndo:\n  - s: {set: {v: 1}}\n")
    assert result.error is not None
    assert result.error["status"] == 403
    assert "apiKey" in result.error["detail"]


async def test_secrets_never_reach_events_or_errors() -> None:
    """A secret value echoed into data or an error is masked in every event and in the error."""
    body = "use:\n  secrets: [token]\ndo:\n  - s: {set: {t: '${ $secrets.token }'}}\n  - r: {raise: {error: {type: https://x.io/e, status: 500, detail: '${ \"bad \" + $secrets.token }'}}}\n"
    result, rec = await run(body, secrets={"token": "tok-9f8e7d"})
    blob = repr([e.data for e in rec.events]) + repr(result.error)
    assert "tok-9f8e7d" not in blob
    assert "***" in blob
