"""Property-based fuzzing of every ingress decoder and the document loader: a command or a clear refusal, always.

Each generated input must give either a command that the rest of the service can carry (fingerprint, events) or the
decoder's own refusal with located issues; never another exception. The budget is bounded (`settings` below) so
that `make test` stays quick; raise `FUZZ_EXAMPLES` locally for a longer hunt.
"""

from __future__ import annotations

import gzip
import json
import os
import zlib
from collections.abc import Callable
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from consumer._amqp_decode import Properties, decode, without_secrets
from consumer._decode import MAX_METADATA_ENTRIES, DecodeError
from consumer._events import to_cloudevent
from consumer._grpc_codec import Undecodable, decode_execute, parse_request
from consumer._proto.workflow_runner.v1 import runner_pb2 as pb
from consumer._service import fingerprint
from consumer._temporal_codec import decode_request
from executor import WORKFLOW_FAULTED, ExecuteCommand, Executor, LifecycleEvent

FUZZ = settings(
    max_examples=int(os.environ.get("FUZZ_EXAMPLES", "150")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    derandomize=not os.environ.get("FUZZ_EXAMPLES"),  # the suite is reproducible; a local hunt explores anew
)
DOC = "document: {dsl: '1.0.3', namespace: t, name: w, version: '1.0.0'}\ndo:\n  - a: {set: {x: 1}}\n"

_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20)
json_values = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)


def _nested(depth: int) -> Any:
    value: Any = 0
    for _ in range(depth):
        value = [value]
    return value


deep_values = st.integers(min_value=100, max_value=400).map(_nested)
field_values = json_values | deep_values | st.just({"k": "\ud800"}) | st.just(2**70)


def _carried(command: ExecuteCommand) -> None:
    """What the service does with every command it accepts: fingerprint it, put its metadata on an event."""
    fingerprint(command)
    event = LifecycleEvent(
        execution_id=command.execution_id,
        attempt=command.attempt,
        sequence=1,
        type=WORKFLOW_FAULTED,
        time="2030-01-01T00:00:00Z",
        data={"output": command.input},
    )
    to_cloudevent(event, metadata=command.metadata).to_json()


def _outcome(decoding: Callable[[], ExecuteCommand]) -> ExecuteCommand | DecodeError:
    """The command, carried as the service carries it, or the decoder's refusal (checked to be located)."""
    try:
        command = decoding()
    except DecodeError as error:
        _refusal_is_located(error)
        return error
    _carried(command)
    return command


def _refusal_is_located(error: DecodeError) -> None:
    assert error.issues, "a refusal says why"
    assert all(isinstance(issue.path, str) and issue.message for issue in error.issues)
    assert "\n" not in str(error)


@FUZZ
@given(body=st.binary(max_size=300), encoding=st.sampled_from([None, "gzip", "deflate", "identity", "br"]))
def test_amqp_any_bytes_give_a_command_or_a_refusal(body: bytes, encoding: str | None) -> None:
    """Arbitrary bytes as an AMQP body, under any content encoding, never escape the decoder."""
    _outcome(lambda: decode(body, Properties(content_encoding=encoding)))


@FUZZ
@given(
    fields=st.dictionaries(
        st.sampled_from(["execution_id", "workflow_yaml", "input", "secrets", "metadata", "deadline", "extra"]),
        field_values,
    ),
    compress=st.sampled_from([None, "gzip", "deflate"]),
    junk=st.binary(max_size=4),
    headers=st.dictionaries(st.just("x-delivery-count"), json_values, max_size=1),
)
def test_amqp_any_json_body_gives_a_command_or_a_refusal(
    fields: dict[str, Any], compress: str | None, junk: bytes, headers: dict[str, Any]
) -> None:
    """Any JSON object (deep, huge integers, lone surrogates, any field types) decodes or is refused, and its dead
    letter never keeps a secret."""
    body = json.dumps({"workflow_yaml": DOC, **fields}).encode()  # Python's encoder writes what orjson refuses
    if compress == "gzip":
        body = gzip.compress(body) + junk
    elif compress == "deflate":
        body = zlib.compress(body) + junk
    properties = Properties(content_encoding=compress, headers=headers, message_id="m-1")
    outcome = _outcome(lambda: decode(body, properties))
    if junk and compress:
        assert isinstance(outcome, DecodeError)
    stripped = without_secrets(body, properties)
    if stripped is not None and isinstance(fields.get("secrets"), dict):
        assert all(value == "***" for value in orjson.loads(stripped)["secrets"].values())


@FUZZ
@given(data=st.binary(max_size=200))
def test_grpc_any_bytes_give_a_message_or_undecodable(data: bytes) -> None:
    """Arbitrary bytes as an ExecuteRequest parse to a message or to `Undecodable`, never an exception."""
    parsed = parse_request(pb.ExecuteRequest.FromString)(data)
    if isinstance(parsed, Undecodable):
        _refusal_is_located(parsed.error())
        return
    _outcome(lambda: decode_execute(parsed))


@FUZZ
@given(
    execution_id=st.text(max_size=300),
    input_json=st.text(max_size=40) | field_values.map(json.dumps),
    secrets_json=st.text(max_size=40) | field_values.map(json.dumps),
    metadata=st.dictionaries(st.text(max_size=8), st.text(max_size=8), max_size=MAX_METADATA_ENTRIES + 8),
)
def test_grpc_any_request_gives_a_command_or_a_refusal(
    execution_id: str, input_json: str, secrets_json: str, metadata: dict[str, str]
) -> None:
    """Any ExecuteRequest field values decode or are refused with located issues."""
    request = pb.ExecuteRequest(
        execution_id=execution_id,
        workflow_yaml=DOC,
        input_json=input_json,
        secrets_json=secrets_json,
        metadata=metadata,
    )
    _outcome(lambda: decode_execute(request))


@FUZZ
@given(
    request=field_values
    | st.fixed_dictionaries(
        {"execution_id": field_values, "workflow_yaml": st.just(DOC) | field_values},
        optional={"input": field_values, "secrets": field_values, "metadata": field_values},
    )
)
def test_temporal_any_activity_input_gives_a_command_or_a_refusal(request: Any) -> None:
    """Any JSON value as the activity's input decodes or is refused (never a retryable crash)."""
    _outcome(lambda: decode_request(request, max_payload_bytes=100_000))


_yaml_texts = st.text(alphabet=st.sampled_from(list("abc:-[]{}&*!|>'\"#\n  1.0%@`\t?,$")), max_size=200)
_task_kinds = st.sampled_from(["set", "do", "for", "switch", "try", "raise", "wait", "emit", "listen", "call", "fork"])
_tasks = st.lists(
    st.dictionaries(st.text(max_size=6), st.dictionaries(_task_kinds, json_values, max_size=2), max_size=2)
)
_documents = st.builds(
    lambda tasks, extra: json.dumps(
        {"document": {"dsl": "1.0.3", "namespace": "t", "name": "w", "version": "1.0.0"}, "do": tasks, **extra}
    ),
    _tasks,
    st.dictionaries(st.sampled_from(["input", "output", "use", "timeout", "schedule", "evaluate"]), json_values),
)
_LOADER = Executor()


@FUZZ
@given(text=_yaml_texts | _documents)
def test_document_loader_gives_a_document_or_located_issues(text: str) -> None:
    """Any text as a workflow document compiles or is refused with issues (`validate`, what every ingress runs)."""
    issues = _LOADER.validate(text)
    assert all(issue.message for issue in issues)
