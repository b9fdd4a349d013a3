"""What the AMQP ingress does with a delivery once decoding or the run is over, and the queue it declares."""

from __future__ import annotations

import pytest

from consumer import CapacityError, ConflictError, ExecutionState, IntakeClosedError
from consumer._amqp_decode import DecodeError
from consumer._amqp_settle import Rejection, Release, Retry, invalid_reply, require_confirmed, verdict
from consumer._amqp_topology import broker_version, queue_arguments
from consumer.config import AmqpSettings
from executor import DocumentError, ExecutionResult, Issue, Status


def _state(**fields: object) -> ExecutionState:
    result = ExecutionResult(execution_id="e", status=Status.COMPLETED, output=1)
    values: dict[str, object] = {"execution_id": "e", "source": "amqp", "attempt": 1, "started_at": 0.0}
    return ExecutionState(**(values | {"result": result} | fields))  # type: ignore[arg-type]


def test_bad_input_is_dead_lettered_with_a_code() -> None:
    """Malformed messages, invalid or unsupported documents and id conflicts are rejections, each with its code."""
    unsupported = DocumentError((Issue(path="/do/0/a", message="not supported", code="unsupported"),))
    cases = {
        "malformed": DecodeError([Issue(path="/secrets", message="must be an object")]),
        "invalid-document": DocumentError((Issue(path="/do", message="required", line=1, column=1),)),
        "unsupported-document": unsupported,
        "conflict": ConflictError("execution e exists with a different document or input"),
    }
    for code, exc in cases.items():
        outcome = verdict(exc)
        assert isinstance(outcome, Rejection), code
        assert outcome.code == code
    assert verdict(cases["invalid-document"]).args[0] == "workflow_yaml: /do (line 1, column 1): required"


def test_passing_trouble_is_requeued() -> None:
    """Capacity and bugs are retried after the delay; at shutdown the delivery is left for the broker to requeue."""
    assert isinstance(verdict(CapacityError("full")), Retry)
    assert isinstance(verdict(KeyError("x")), Retry)
    assert isinstance(verdict(IntakeClosedError("bye")), Release)


def test_only_a_confirmed_execution_is_acked() -> None:
    """Confirmed → ack; flush timeout → retry (release while stopping); interrupted → release; refused → reject."""
    require_confirmed(_state(progress_confirmed=True), accepting=False)
    with pytest.raises(Retry):
        require_confirmed(_state(report_error="terminal event not confirmed within 30s"), accepting=True)
    with pytest.raises(Release):
        require_confirmed(_state(report_error="terminal event not confirmed within 30s"), accepting=False)
    with pytest.raises(Release):
        require_confirmed(_state(interrupted=True, progress_confirmed=True), accepting=False)
    with pytest.raises(Rejection) as refused:
        require_confirmed(_state(report_error="refused by the sink", progress_refused=True), accepting=True)
    assert refused.value.code == "progress-refused"
    assert refused.value.reply == {"execution_id": "e", "status": "completed", "output": 1, "error": None}


def test_invalid_reply_has_the_cli_shape() -> None:
    """A refused message's reply reads like `run --json` on an invalid document."""
    reply = invalid_reply("e", Rejection("malformed", "bad", issues=[Issue(path="/x", message="bad")]))
    assert reply == {
        "execution_id": "e",
        "status": "invalid",
        "output": None,
        "error": None,
        "errors": [{"path": "/x", "message": "bad"}],
    }
    assert invalid_reply(None, Rejection("conflict", "taken"))["errors"] == [{"path": "", "message": "taken"}]


def test_queue_arguments_follow_the_broker_version() -> None:
    """Quorum with the delivery limit and DLX always; x-consumer-timeout only where the broker honours it."""
    settings = AmqpSettings(queue="q", delivery_limit=3, consumer_timeout=7200.0)
    old = queue_arguments(settings, (3, 10, 8))
    assert old == {"x-queue-type": "quorum", "x-delivery-limit": 3, "x-dead-letter-exchange": "q.dlx"}
    assert queue_arguments(settings, (3, 12, 0))["x-consumer-timeout"] == 7_200_000
    assert "x-consumer-timeout" not in queue_arguments(AmqpSettings(queue="q"), (4, 1))


def test_broker_version_is_read_from_server_properties() -> None:
    """`version` may come as bytes or text; anything unreadable is the empty version."""
    assert broker_version({"version": b"3.10.8"}) == (3, 10, 8)
    assert broker_version({"version": "4.1.0-rc.1"}) == (4, 1, 0)
    assert broker_version({}) == ()
