"""The CloudEvents envelope and its wire encodings (JSON and Protobuf)."""

from __future__ import annotations

import re
from typing import Any

import orjson
import pytest

from callbacks import DEFAULT_SOURCE, CloudEvent, SinkRefusedError, event_id, invalid_reason, proto_to_dict, to_proto
from callbacks._proto.io.cloudevents.v1 import cloudevents_pb2 as pb
from callbacks._wire import json_batch

_EXTENSION_NAME = re.compile(r"^[a-z0-9]+$")


def _event(**changes: Any) -> CloudEvent:
    fields: dict[str, Any] = {
        "id": event_id("ex-1", 1, 3),
        "source": DEFAULT_SOURCE,
        "type": "io.serverlessworkflow.task.completed.v1",
        "time": "2025-06-01T12:00:00.123Z",
        "subject": "ex-1",
        "executionid": "ex-1",
        "sequence": 3,
        "attempt": 1,
        "data": {"task": "/do/0/first", "output": {"n": 1}},
        "metadata": {"tenant_id": "t-1", "orgId": "acme"},
    }
    return CloudEvent(**(fields | changes))


def test_event_id_is_stable_per_execution_attempt_sequence() -> None:
    """A resent event carries the same id; another attempt or sequence gets another id."""
    assert event_id("ex", 1, 5) == event_id("ex", 1, 5)
    assert len({event_id("ex", 1, 5), event_id("ex", 2, 5), event_id("ex", 1, 6), event_id("ey", 1, 5)}) == 4


def test_attribute_names_are_valid_cloudevents_names() -> None:
    """Every attribute name is lowercase alphanumeric, whatever the metadata keys look like."""
    names = set(_event().to_dict()) - {"data"}
    assert all(_EXTENSION_NAME.match(name) for name in names), names


def test_metadata_travels_as_one_json_extension() -> None:
    """Metadata is one `metadata` attribute holding the map as sorted compact JSON, reversible as is."""
    out = _event().to_dict()
    assert out["metadata"] == '{"orgId":"acme","tenant_id":"t-1"}'
    assert orjson.loads(out["metadata"]) == {"tenant_id": "t-1", "orgId": "acme"}
    assert "metadata" not in _event(metadata={}).to_dict()


def test_structured_json_has_the_required_attributes() -> None:
    """The JSON form is a valid CloudEvent with the runner's extensions."""
    out = orjson.loads(_event().to_json())
    assert invalid_reason(out) is None
    assert (out["specversion"], out["executionid"], out["sequence"], out["attempt"]) == ("1.0", "ex-1", 3, 1)


def test_terminal_events() -> None:
    """Workflow completed, faulted and cancelled are terminal; task events and workflow.started are not."""
    prefix = "io.serverlessworkflow."
    for kind in ("workflow.completed.v1", "workflow.faulted.v1", "workflow.cancelled.v1"):
        assert _event(type=prefix + kind).terminal
    for kind in ("workflow.started.v1", "task.completed.v1", "task.faulted.v1"):
        assert not _event(type=prefix + kind).terminal


def test_protobuf_roundtrip_matches_json_format() -> None:
    """An event through the Protobuf format reads back as the same JSON-format event."""
    event = _event()
    assert proto_to_dict(to_proto(event)) == event.to_dict()


def test_protobuf_uses_typed_attributes() -> None:
    """time is a Timestamp, sequence and attempt integers, JSON data is text_data."""
    message = to_proto(_event())
    assert message.attributes["time"].WhichOneof("attr") == "ce_timestamp"
    assert message.attributes["sequence"].ce_integer == 3
    assert message.attributes["metadata"].WhichOneof("attr") == "ce_string"
    assert orjson.loads(message.text_data) == _event().data


@pytest.mark.parametrize(
    ("time", "instant"),
    [
        ("2025-06-01T14:00:00.5+02:00", (1748779200, 500_000_000)),
        ("1969-12-31T23:59:59.25Z", (-1, 250_000_000)),
        ("2025-06-01T12:00:00", (1748779200, 0)),  # no zone: UTC
    ],
)
def test_protobuf_timestamps_are_the_same_instant(time: str, instant: tuple[int, int]) -> None:
    """An event's time with an offset, before 1970 or without a zone is the same instant in the Protobuf format."""
    stamp = to_proto(_event(time=time)).attributes["time"].ce_timestamp
    assert (stamp.seconds, stamp.nanos) == instant


def test_protobuf_fills_a_message_in_place() -> None:
    """An event encoded into an enclosing message's field is the same as one encoded alone."""
    batch = pb.CloudEventBatch()
    to_proto(_event(), into=batch.events.add())
    assert batch.events[0] == to_proto(_event())


def test_bytes_data_travels_as_binary() -> None:
    """Bytes data is data_base64 in JSON and binary_data in Protobuf."""
    event = _event(data=b"\x00\x01", datacontenttype="application/octet-stream")
    assert event.to_dict()["data_base64"] == "AAE="
    assert to_proto(event).binary_data == b"\x00\x01"
    assert proto_to_dict(to_proto(event))["data_base64"] == "AAE="


def test_unencodable_events_are_refused_for_good() -> None:
    """A bad timestamp or data JSON cannot represent is a permanent refusal, not a retry loop."""
    with pytest.raises(SinkRefusedError):
        to_proto(_event(time="yesterday"))
    with pytest.raises(SinkRefusedError):
        json_batch([_event(data={"x": object()})])


def test_invalid_reason_names_the_problem() -> None:
    """Malformed JSON-format events are explained."""
    good = _event().to_dict()
    assert invalid_reason([]) == "event is not a JSON object"
    assert invalid_reason(good | {"specversion": "0.3"}) == "specversion must be 1.0"
    assert invalid_reason(good | {"source": ""}) == "source is required"
