"""The command line: `run`, `validate`, `serve`, `submit`, `sink` (the contract in ARCHITECTURE.md).

Exit codes: 0 completed / valid, 1 faulted or cancelled, 2 invalid document or usage.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import uuid
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import orjson

from executor import DocumentError, ExecuteCommand, Executor, Issue, Source, Status

from ._events import JsonLinesListener

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class UsageError(Exception):
    """A command-line mistake: reported on stderr, exit 2."""


def _read_text(path: str) -> str:
    try:
        return sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read {path}: {exc}") from None


def _json_arg(value: str | None, option: str, default: Any) -> Any:
    """A JSON value given inline or as `@file`."""
    if value is None:
        return default
    text = _read_text(value[1:]) if value.startswith("@") else value
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise UsageError(f"{option}: not valid JSON: {exc}") from None


def _issues(issues: list[Issue] | tuple[Issue, ...]) -> list[dict[str, Any]]:
    return [issue.to_dict() for issue in issues]


def _print_json(value: Any) -> None:
    sys.stdout.write(orjson.dumps(value).decode() + "\n")


def _print_issues(issues: list[Issue] | tuple[Issue, ...]) -> None:
    for issue in issues:
        where = f" (line {issue.line}, column {issue.column})" if issue.line is not None else ""
        sys.stderr.write(f"{issue.path or '/'}{where}: {issue.message}\n")


def cmd_validate(args: argparse.Namespace) -> int:
    """`validate FILE [--json]`."""
    issues = Executor().validate(_read_text(args.file))
    if args.json:
        _print_json({"valid": not issues, "errors": _issues(issues)})
    elif issues:
        _print_issues(issues)
    else:
        sys.stdout.write("valid\n")
    return EXIT_OK if not issues else EXIT_USAGE


def cmd_run(args: argparse.Namespace) -> int:
    """`run FILE [--input] [--secrets] [--json] [--events FILE]`."""
    command = ExecuteCommand(
        execution_id=args.execution_id or str(uuid.uuid4()),
        workflow_yaml=_read_text(args.file),
        input=_json_arg(args.input, "--input", {}),
        secrets=_json_arg(args.secrets, "--secrets", {}),
        source=Source.CLI,
    )
    with ExitStack() as stack:
        listener = None
        if args.events:
            listener = JsonLinesListener(stack.enter_context(open(args.events, "ab")))
        try:
            result = asyncio.run(Executor(listener=listener).run(command))
        except DocumentError as exc:
            return _report_invalid(args, command.execution_id, exc)
    if args.json:
        _print_json(result.to_dict())
    elif result.status is Status.COMPLETED:
        sys.stdout.write(orjson.dumps(result.output, option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        sys.stderr.write(f"{result.status.value}: {orjson.dumps(result.error).decode()}\n")
    return EXIT_OK if result.status is Status.COMPLETED else EXIT_FAILED


def _report_invalid(args: argparse.Namespace, execution_id: str, exc: DocumentError) -> int:
    if args.json:
        _print_json(
            {
                "execution_id": execution_id,
                "status": "invalid",
                "output": None,
                "error": None,
                "errors": _issues(exc.issues),
            }
        )
    else:
        _print_issues(exc.issues)
    return EXIT_USAGE


def build_parser() -> argparse.ArgumentParser:
    """The argument parser for every subcommand."""
    parser = argparse.ArgumentParser(prog="workflow-runner", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="execute one document in-process")
    run.add_argument("file", help="workflow document (YAML or JSON); - for stdin")
    run.add_argument("--input", help="workflow input: JSON or @file")
    run.add_argument("--secrets", help="secrets exposed as $secrets: JSON object or @file")
    run.add_argument("--json", action="store_true", help="print exactly one JSON result object")
    run.add_argument("--events", metavar="FILE", help="append every lifecycle event as a JSON line")
    run.add_argument("--execution-id", help="execution id (default: a new UUID)")
    run.set_defaults(handler=cmd_run)
    validate = sub.add_parser("validate", help="check a document without running it")
    validate.add_argument("file", help="workflow document; - for stdin")
    validate.add_argument("--json", action="store_true", help='print {"valid", "errors"}')
    validate.set_defaults(handler=cmd_validate)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `workflow-runner` console script."""
    args = build_parser().parse_args(argv)
    try:
        code: int = args.handler(args)
    except UsageError as exc:
        sys.stderr.write(f"workflow-runner: {exc}\n")
        return EXIT_USAGE
    return code


if __name__ == "__main__":
    sys.exit(main())
