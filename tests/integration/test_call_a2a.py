"""`call: a2a` against a real A2A agent built with `a2a-sdk`, served over JSON-RPC on 127.0.0.1."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from executor import EngineOptions
from tests.fixtures.http_mock import MockServer
from tests.fixtures.runner import run_cancelled, run_with
from tests.fixtures.servers import free_port, serving

ERRORS = "https://serverlessworkflow.io/spec/1.0.0/errors/"


@pytest.fixture(scope="module")
def agent() -> Iterator[str]:
    with serving("tests.fixtures.a2a_agent") as port:
        yield f"http://127.0.0.1:{port}"


@pytest.fixture(scope="module")
def legacy_agent() -> Iterator[str]:
    with serving("tests.fixtures.a2a_agent", "0.3") as port:
        yield f"http://127.0.0.1:{port}"


@pytest.fixture(scope="module")
def rest_agent() -> Iterator[str]:
    with serving("tests.fixtures.a2a_agent", "rest") as port:
        yield f"http://127.0.0.1:{port}"


def call(server: str, method: str, parameters: str, name: str = "c", extra: str = "") -> str:
    """One `call: a2a` task addressed by `server` (parameters as YAML flow text)."""
    return (
        f"  - {name}:\n      call: a2a\n{extra}      with:\n        method: {method}\n        server: '{server}'\n"
        f"        parameters: {parameters}\n"
    )


def say(text: str, configuration: str = "") -> str:
    """`message/send` parameters with one text part."""
    extra = f", configuration: {configuration}" if configuration else ""
    return f"{{message: {{parts: [{{kind: text, text: '{text}'}}]}}{extra}}}"


def start(agent: str, text: str) -> str:
    """A `message/send` task `start` not waiting for the agent's task; the task's id goes to `$context.id`."""
    export = "      export: {as: '${ {id: .id} }'}\n"
    return call(agent, "message/send", say(text, "{blocking: false}"), name="start", extra=export)


def card_call(card: str, text: str) -> str:
    """A one-task `do` sending `text` with `message/send` to the agent the card resource at `card` names."""
    return (
        "do:\n  - c:\n      call: a2a\n      with:\n        method: message/send\n"
        f"        agentCard: {{endpoint: '{card}'}}\n        parameters: {say(text)}\n"
    )


async def test_message_send_answers_with_a_message(agent: str) -> None:
    """`message/send` resolves the server's well-known card; an answer without a task is the agent's message."""
    result, _ = await run_with("do:\n" + call(agent, "message/send", say("hello Ada")))
    assert result.status.value == "completed", result.error
    assert result.output["kind"] == "message"
    assert result.output["role"] == "agent"
    assert result.output["parts"] == [{"kind": "text", "text": "hello Ada"}]


async def test_message_send_through_an_agent_card_resource_returns_the_completed_task(agent: str) -> None:
    """With `agentCard`, the card resource names the endpoint; a task runs to completion with its artifact."""
    body = card_call(f"{agent}/.well-known/agent-card.json", "work")
    result, _ = await run_with(body)
    assert result.status.value == "completed", result.error
    task = result.output
    assert task["kind"] == "task"
    assert task["status"]["state"] == "completed"
    assert task["artifacts"][0]["name"] == "result"
    assert task["artifacts"][0]["parts"] == [{"kind": "text", "text": "done"}]
    assert task["history"][0]["role"] == "user"
    assert task["history"][0]["messageId"]


async def test_message_stream_collects_every_update_in_order(agent: str) -> None:
    """`message/stream` outputs the task, then its status and artifact updates, ending completed."""
    result, _ = await run_with("do:\n" + call(agent, "message/stream", say("work")))
    assert result.status.value == "completed", result.error
    kinds = [item["kind"] for item in result.output]
    assert kinds[0] == "task"
    assert "artifact-update" in kinds
    states = [item["status"]["state"] for item in result.output if item["kind"] == "status-update"]
    assert states[0] == "working"
    assert states[-1] == "completed"
    assert result.output[-1]["final"] is True


async def test_non_blocking_send_then_polling_until_the_task_completes(agent: str) -> None:
    """A task sent with `blocking: false` is polled with `tasks/get` (a `switch` loop) until it completes."""
    body = (
        "do:\n"
        + call(agent, "message/send", say("slow 0.5", "{blocking: false}"), name="start")
        + "  - poll:\n      wait: {milliseconds: 100}\n"
        + call(agent, "tasks/get", "{id: '${ .id }'}", name="check")
        + "  - again:\n      switch:\n        - done: {when: '${ .status.state == \"completed\" }', then: end}\n"
        + "        - default: {then: poll}\n"
    )
    result, events = await run_with(body)
    assert result.status.value == "completed", result.error
    assert result.output["status"]["state"] == "completed"
    assert result.output["artifacts"][0]["parts"][0]["text"] == "done"
    first = next(e for e in events.events if e.data.get("task") == "/do/0/start" and "output" in e.data)
    assert first.data["output"]["status"]["state"] in ("submitted", "working")


async def test_cancel_a_running_task(agent: str) -> None:
    """`tasks/cancel` on a task that waits forever answers the task as canceled."""
    body = "do:\n" + call(agent, "message/send", say("wait", "{blocking: false}"), name="start")
    body += call(agent, "tasks/cancel", "{id: '${ .id }'}", name="stop")
    result, _ = await run_with(body)
    assert result.status.value == "completed", result.error
    assert result.output["kind"] == "task"
    assert result.output["status"]["state"] == "canceled"


async def test_resubscribe_and_list_tasks(agent: str) -> None:
    """`tasks/resubscribe` streams a running task's updates; `tasks/list` lists it."""
    body = "do:\n" + start(agent, "slow 0.3")
    body += call(agent, "tasks/resubscribe", "{id: '${ $context.id }'}", name="follow")
    body += call(
        agent,
        "tasks/list",
        "{pageSize: 50}",
        name="all",
        extra="      output: {as: '${ {listed: ([.tasks[].id] | index($context.id) != null)} }'}\n",
    )
    result, events = await run_with(body)
    assert result.status.value == "completed", result.error
    assert result.output == {"listed": True}
    followed = next(e for e in events.events if e.data.get("task") == "/do/1/follow" and "output" in e.data)
    states = [item["status"]["state"] for item in followed.data["output"] if item["kind"] == "status-update"]
    assert states[-1] == "completed"


async def test_unknown_task_is_the_runtime_error_with_the_a2a_code(agent: str) -> None:
    """A JSON-RPC error maps to the runtime error: the A2A code in the title, its HTTP status, the task pointer."""
    result, _ = await run_with("do:\n" + call(agent, "tasks/get", "{id: no-such-task}"))
    assert result.status.value == "faulted"
    assert result.error["type"] == ERRORS + "runtime"
    assert result.error["title"] == "A2A error -32001"
    assert result.error["status"] == 404
    assert "TASK_NOT_FOUND" in result.error["detail"]
    assert result.error["instance"] == "/do/0/c"


async def test_legacy_agent_speaking_a2a_0_3(legacy_agent: str) -> None:
    """A card declaring protocol 0.3 is spoken to in 0.3; the outputs keep the same shape."""
    result, _ = await run_with("do:\n" + call(legacy_agent, "message/send", say("work")))
    assert result.status.value == "completed", result.error
    assert result.output["kind"] == "task"
    assert result.output["status"]["state"] == "completed"


async def test_agent_offering_only_http_json(rest_agent: str) -> None:
    """A card whose only interface is HTTP+JSON is called over it, with the same outputs."""
    body = (
        "do:\n"
        + call(rest_agent, "message/send", say("work"))
        + call(rest_agent, "message/stream", say("work"), name="s")
    )
    result, events = await run_with(body)
    assert result.status.value == "completed", result.error
    sent = next(e for e in events.events if e.data.get("task") == "/do/0/c" and "output" in e.data)
    assert sent.data["output"]["status"]["state"] == "completed"
    assert result.output[-1]["status"]["state"] == "completed"


async def test_card_that_is_not_an_agent_card_is_a_configuration_error(mock: MockServer) -> None:
    """An `agentCard` resource that is JSON but no agent card fails clearly at the task."""
    body = card_call(f"{mock.url}/anything/card.json", "hi")
    result, _ = await run_with(body)
    assert result.error["type"] == ERRORS + "configuration"
    assert result.error["title"] == "Invalid agent card"
    assert result.error["instance"] == "/do/0/c"


async def test_card_file_that_is_not_json_is_a_configuration_error(tmp_path: Path) -> None:
    """A local card file that is not JSON names the file."""
    card = tmp_path / "card.json"
    card.write_text("not json", encoding="utf-8")
    body = card_call(card.as_uri(), "hi")
    result, _ = await run_with(body, options=EngineOptions(resource_roots=(str(tmp_path),)))
    assert result.error["type"] == ERRORS + "configuration"
    assert "card.json" in result.error["detail"]


async def test_unreachable_agent_is_a_runtime_error() -> None:
    """Nothing listening at the server: the runtime error at the task."""
    result, _ = await run_with("do:\n" + call(f"http://127.0.0.1:{free_port()}", "message/send", say("hi")))
    assert result.error["type"] == ERRORS + "runtime"
    assert result.error["title"] == "A2A agent unreachable"
    assert result.error["instance"] == "/do/0/c"


async def test_agent_answering_garbage_is_a_runtime_error(agent: str, mock: MockServer, tmp_path: Path) -> None:
    """A card whose endpoint answers JSON that is not JSON-RPC: the runtime error."""
    card = json.loads((await _card(agent)).decode())
    card["supportedInterfaces"][0]["url"] = f"{mock.url}/anything/rpc"
    path = tmp_path / "card.json"
    path.write_text(json.dumps(card), encoding="utf-8")
    body = card_call(path.as_uri(), "hi")
    result, _ = await run_with(body, options=EngineOptions(resource_roots=(str(tmp_path),)))
    assert result.status.value == "faulted"
    assert result.error["type"] == ERRORS + "runtime"
    assert result.error["title"] == "A2A request failed"
    assert result.error["instance"] == "/do/0/c"


async def _card(agent: str) -> bytes:
    import httpx

    async with httpx.AsyncClient() as client:
        return (await client.get(f"{agent}/.well-known/agent-card.json")).content


async def test_authentication_is_sent_and_the_secret_stays_out_of_events(agent: str) -> None:
    """The server endpoint's bearer policy reaches the agent; the secret is in no event."""
    body = (
        "use:\n  secrets: [agentToken]\ndo:\n  - c:\n      call: a2a\n      with:\n        method: message/send\n"
        f"        server:\n          uri: '{agent}'\n"
        "          authentication: {bearer: {token: '${ $secrets.agentToken }'}}\n"
        f"        parameters: {say('whoami')}\n"
    )
    result, events = await run_with(body, secrets={"agentToken": "agt-51c0de"})
    assert result.status.value == "completed", result.error
    assert result.output["parts"][0]["text"] == "Bearer agt-51c0de"
    assert not any("agt-51c0de" in orjson.dumps(e.data).decode() for e in events.events)


async def test_outbound_policy_applies_to_the_agent(agent: str) -> None:
    """A denied agent host is refused with the authorization error."""
    options = EngineOptions(outbound_deny=("127.0.0.1/32",))
    result, _ = await run_with("do:\n" + call(agent, "message/send", say("hi")), options=options)
    assert result.error["type"] == ERRORS + "authorization"


async def test_cancelling_the_execution_during_a_stream(agent: str) -> None:
    """Cancelling while a `message/stream` waits on the agent ends the execution cancelled, promptly."""
    result, recorder = await run_cancelled("do:\n" + call(agent, "message/stream", say("wait")), "/do/0/c")
    assert result.status.value == "cancelled"
    assert "task.cancelled:/do/0/c" in recorder.kinds()


async def test_task_timeout_bounds_a_blocking_send(agent: str) -> None:
    """A blocking `message/send` to a task that never ends is cut by the task's timeout."""
    extra = "      timeout: {after: {milliseconds: 400}}\n"
    result, _ = await run_with("do:\n" + call(agent, "message/send", say("wait"), extra=extra))
    assert result.error["type"] == ERRORS + "timeout"
    assert result.error["instance"] == "/do/0/c"


async def test_invalid_parameters_name_the_field(agent: str) -> None:
    """Parameters the method cannot take are a configuration error naming the field."""
    result, _ = await run_with("do:\n" + call(agent, "tasks/get", "{historyLength: 2}"))
    assert result.error["type"] == ERRORS + "configuration"
    assert "id" in result.error["detail"]


async def test_push_notification_configs_set_get_list_delete(agent: str) -> None:
    """The push notification config methods round-trip a config for a task."""
    config = "{id: hook-1, url: 'https://example.com/hook', token: t-1}"
    body = "do:\n" + start(agent, "wait")
    body += call(
        agent,
        "tasks/pushNotificationConfig/set",
        f"{{taskId: '${{ $context.id }}', pushNotificationConfig: {config}}}",
        name="set",
        extra="      export: {as: '${ $context + {set: .} }'}\n",
    )
    body += call(
        agent,
        "tasks/pushNotificationConfig/get",
        "{id: '${ $context.id }', pushNotificationConfigId: hook-1}",
        name="get",
        extra="      export: {as: '${ $context + {got: .} }'}\n",
    )
    body += call(
        agent,
        "tasks/pushNotificationConfig/list",
        "{id: '${ $context.id }'}",
        name="list",
        extra="      export: {as: '${ $context + {listed: .} }'}\n",
    )
    body += call(
        agent,
        "tasks/pushNotificationConfig/delete",
        "{id: '${ $context.id }', pushNotificationConfigId: hook-1}",
        name="del",
    )
    body += call(
        agent,
        "tasks/pushNotificationConfig/list",
        "{id: '${ $context.id }'}",
        name="after",
        extra="      output: {as: '${ $context + {after: .} }'}\n",
    )
    body += call(agent, "tasks/cancel", "{id: '${ .id }'}", name="stop").replace("'${ .id }'", "'${ $context.id }'")
    result, events = await run_with(body.replace("  - stop:\n", "  - stop:\n      input: {from: '${ $context }'}\n"))
    assert result.status.value == "completed", result.error
    outputs = {e.data["task"]: e.data["output"] for e in events.events if "output" in e.data and "task" in e.data}
    context = outputs["/do/5/after"]
    assert context["set"]["pushNotificationConfig"]["url"] == "https://example.com/hook"
    assert context["got"]["pushNotificationConfig"]["id"] == "hook-1"
    assert [c["pushNotificationConfig"]["id"] for c in context["listed"]] == ["hook-1"]
    assert context["after"] == []
    assert outputs["/do/4/del"] is None


async def test_authenticated_extended_card(agent: str) -> None:
    """`agent/getAuthenticatedExtendedCard` answers the agent's extended card."""
    body = (
        "do:\n  - c:\n      call: a2a\n      with:\n        method: agent/getAuthenticatedExtendedCard\n"
        f"        server: '{agent}'\n"
    )
    result, _ = await run_with(body)
    assert result.status.value == "completed", result.error
    assert result.output["name"] == "test-agent (extended)"
