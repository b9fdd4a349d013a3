"""gRPC `Validate` on a real socket: a document's `schedule` comes back as a warning, not an error."""

from __future__ import annotations

from typing import Any

from consumer._proto.workflow_runner.v1 import runner_pb2 as pb
from tests.helpers import doc
from tests.integration.test_grpc_ingress import ONE_TASK, stub

SCHEDULED = doc("schedule: {every: {minutes: 10}}\ndo:\n  - one: {set: {ok: true}}\n")


async def test_validate_returns_the_schedule_warning(start_runner: Any) -> None:
    """A scheduled document is valid with one located `schedule` warning; an unscheduled one has none."""
    runner = await start_runner()
    client = stub(runner)
    scheduled = await client.Validate(pb.ValidateRequest(workflow_yaml=SCHEDULED))
    assert scheduled.valid
    assert list(scheduled.errors) == []
    assert [(w.path, w.code, w.line) for w in scheduled.warnings] == [("/schedule", "schedule", 2)]
    assert "caller's to honour" in scheduled.warnings[0].message
    plain = await client.Validate(pb.ValidateRequest(workflow_yaml=ONE_TASK))
    assert plain.valid
    assert list(plain.warnings) == []
