"""The Temporal ingress's pure decoding step: activity inputs that JSON allows but a command cannot carry."""

from __future__ import annotations

from typing import Any

import pytest
from temporalio.converter import DataConverter
from temporalio.exceptions import ApplicationError

from consumer._decode import DecodeError
from consumer._temporal_codec import decode_request, refusal, to_payload
from consumer._temporal_workflow import INVALID_REQUEST

GOOD = {"execution_id": "e-1", "workflow_yaml": "document: {}\n"}


def _refusal(request: dict[str, Any]) -> ApplicationError:
    with pytest.raises(DecodeError) as caught:
        decode_request(request, max_payload_bytes=1_000_000)
    return refusal(caught.value)


@pytest.mark.parametrize(
    ("field", "value", "path"),
    [
        ("input", {"n": 2**70}, "/input"),
        ("input", {"s": "\ud800"}, "/input"),
        ("workflow_yaml", "document: {}\n# \ud800\n", "/workflow_yaml"),
        ("secrets", {"pw": "\udfff"}, "/secrets"),
        ("metadata", {"tenant": "\ud800"}, "/metadata"),
        ("secrets", [], "/secrets"),
        ("secrets", "", "/secrets"),
        ("metadata", [], "/metadata"),
        ("metadata", 0, "/metadata"),
    ],
)
def test_unrepresentable_or_misshapen_fields_are_a_located_non_retryable_refusal(
    field: str, value: Any, path: str
) -> None:
    """An input no command can carry (a 70-bit integer, a lone surrogate, secrets given as `[]`) fails at once as
    `InvalidRequest` naming the field, instead of a retryable crash that Temporal retries again and again."""
    error = _refusal({**GOOD, field: value})
    assert (error.type, error.non_retryable) == (INVALID_REQUEST, True)
    assert [issue["path"] for issue in error.details[0]] == [path]


def test_null_secrets_and_metadata_mean_none() -> None:
    """`null` (or leaving them out) still means no secrets and no metadata."""
    command = decode_request({**GOOD, "secrets": None, "metadata": None, "input": None}, max_payload_bytes=10_000)
    assert (command.secrets, command.metadata, command.input) == ({}, {}, {})


def test_activity_result_payload_is_the_default_converters_json() -> None:
    """What `to_payload` makes, Temporal's default converter reads back: a caller's workflow gets the same value
    (integers past 64 bits as the doubles they are)."""
    converter = DataConverter.default.payload_converter
    value = {"execution_id": "x", "output": {"big": 2**70, "text": "é", "list": [1, None, True]}}
    decoded = converter.from_payload(to_payload(value).payload)
    assert decoded == {"execution_id": "x", "output": {"big": 2.0**70, "text": "é", "list": [1, None, True]}}
