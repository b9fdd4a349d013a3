"""`call: mcp` against a real MCP server built with the `mcp` SDK: streamable HTTP on 127.0.0.1, and stdio."""

from __future__ import annotations

import asyncio
import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from executor import EngineOptions
from tests.fixtures.http_mock import MockServer
from tests.fixtures.runner import issues_of, run_cancelled, run_with
from tests.fixtures.servers import ROOT, free_port, serving

ERRORS = "https://serverlessworkflow.io/spec/1.0.0/errors/"
STDIO = EngineOptions(allow_mcp_stdio=True)


@pytest.fixture(scope="module")
def mcp_url() -> Iterator[str]:
    with serving("tests.fixtures.mcp_server") as port:
        yield f"http://127.0.0.1:{port}/mcp"


def http_call(url: str, method: str, parameters: str = "", extra: str = "", name: str = "c") -> str:
    """One `call: mcp` task over HTTP (parameters and extra `with` lines as YAML flow text)."""
    params = f"\n        parameters: {parameters}" if parameters else ""
    return (
        f"  - {name}:\n      call: mcp\n      with:\n        method: {method}{params}\n"
        f"        transport: {{http: {{endpoint: '{url}'}}}}\n{extra}"
    )


def stdio_transport(environment: str = "{}") -> str:
    """The transport block starting the fixture server as a local process."""
    return (
        f"        transport:\n          stdio:\n            command: '{sys.executable}'\n"
        f"            arguments: ['-m', 'tests.fixtures.mcp_server', 'stdio']\n"
        f"            environment: {environment}\n"
    )


def stdio_call(method: str, parameters: str, environment: str = "{}", name: str = "c") -> str:
    return (
        f"  - {name}:\n      call: mcp\n      with:\n        method: {method}\n        parameters: {parameters}\n"
        + stdio_transport(environment)
    )


PYTHONPATH = f"{{PYTHONPATH: '{ROOT}'}}"


async def test_tool_call_over_http_outputs_the_json_rpc_result(mcp_url: str) -> None:
    """`tools/call` gives the tool result as the server sent it: content, structuredContent, isError."""
    body = "do:\n" + http_call(mcp_url, "tools/call", "{name: add, arguments: {a: '${ .a }', b: 3}}")
    result, _ = await run_with(body, {"a": 2})
    assert result.status.value == "completed", result.error
    assert result.output["structuredContent"] == {"result": 5}
    assert result.output["content"] == [{"type": "text", "text": "5"}]
    assert result.output["isError"] is False


async def test_every_listing_and_reading_method(mcp_url: str) -> None:
    """tools/list, prompts/list, prompts/get, resources/list, resources/read and resources/templates/list answer."""
    body = "do:\n" + "".join(
        [
            http_call(mcp_url, "tools/list", name="tools", extra="      export: {as: '${ $context + {tools: .} }'}\n"),
            http_call(
                mcp_url, "prompts/list", name="prompts", extra="      export: {as: '${ $context + {prompts: .} }'}\n"
            ),
            http_call(
                mcp_url,
                "prompts/get",
                "{name: greet, arguments: {name: Ada}}",
                name="prompt",
                extra="      export: {as: '${ $context + {prompt: .} }'}\n",
            ),
            http_call(mcp_url, "resources/list", name="res", extra="      export: {as: '${ $context + {res: .} }'}\n"),
            http_call(
                mcp_url,
                "resources/read",
                "{uri: 'memo://notes/groceries'}",
                name="read",
                extra="      export: {as: '${ $context + {read: .} }'}\n",
            ),
            http_call(
                mcp_url,
                "resources/templates/list",
                name="templates",
                extra="      output: {as: '${ $context + {templates: .} }'}\n",
            ),
        ]
    )
    result, _ = await run_with(body)
    assert result.status.value == "completed", result.error
    out = result.output
    assert {"add", "echo", "fail", "slow"} <= {tool["name"] for tool in out["tools"]["tools"]}
    assert [p["name"] for p in out["prompts"]["prompts"]] == ["greet"]
    assert out["prompt"]["messages"][0]["content"] == {"type": "text", "text": "Say hello to Ada."}
    assert [r["uri"] for r in out["res"]["resources"]] == ["memo://note"]
    assert out["read"]["contents"][0]["text"] == "note groceries"
    assert [t["uriTemplate"] for t in out["templates"]["resourceTemplates"]] == ["memo://notes/{name}"]


async def test_session_is_reused_within_an_execution_and_new_for_the_next(mcp_url: str) -> None:
    """Two calls of one execution share a session; the next execution opens its own."""
    count = "{name: session_id, arguments: {}}"
    body = "do:\n" + "".join(
        [
            http_call(
                mcp_url,
                "tools/call",
                count,
                name="first",
                extra="      export: {as: '${ {first: .structuredContent.result} }'}\n",
            ),
            http_call(
                mcp_url,
                "tools/call",
                count,
                name="second",
                extra="      output: {as: '${ {first: $context.first, second: .structuredContent.result} }'}\n",
            ),
        ]
    )
    one, _ = await run_with(body)
    two, _ = await run_with(body)
    assert one.output["first"]
    assert one.output["second"] == one.output["first"]
    assert two.output["second"] == two.output["first"]
    assert two.output["first"] != one.output["first"]


async def test_tool_error_faults_with_the_runtime_error_and_pointer(mcp_url: str) -> None:
    """A tool result with isError faults the task: runtime error, the tool's text in the detail, the task's pointer."""
    result, events = await run_with(
        "do:\n" + http_call(mcp_url, "tools/call", "{name: fail, arguments: {reason: out of cheese}}")
    )
    assert result.status.value == "faulted"
    assert result.error["type"] == ERRORS + "runtime"
    assert result.error["title"] == "MCP tool failed"
    assert "out of cheese" in result.error["detail"]
    assert result.error["instance"] == "/do/0/c"
    assert events.kinds()[-2] == "task.faulted:/do/0/c"


async def test_unknown_tool_is_a_json_rpc_error_naming_its_code(mcp_url: str) -> None:
    """A JSON-RPC error answer is the runtime error with the code in the title."""
    result, _ = await run_with("do:\n" + http_call(mcp_url, "prompts/get", "{name: nope}"))
    assert result.error["type"] == ERRORS + "runtime"
    assert re.fullmatch(r"MCP error -?\d+", result.error["title"])
    assert result.error["detail"].startswith("prompts/get: ")
    assert result.error["instance"] == "/do/0/c"


async def test_unreachable_server_is_a_runtime_error() -> None:
    """Nothing listening at the endpoint: the runtime error at the task."""
    url = f"http://127.0.0.1:{free_port()}/mcp"
    result, _ = await run_with("do:\n" + http_call(url, "tools/list"))
    assert result.error["type"] == ERRORS + "runtime"
    assert result.error["title"] == "MCP server unreachable"
    assert result.error["instance"] == "/do/0/c"


async def test_server_answering_garbage_is_a_runtime_error(mock: MockServer) -> None:
    """An HTTP server that is not an MCP server (it echoes JSON) fails the handshake with a clear error."""
    result, _ = await run_with("do:\n" + http_call(f"{mock.url}/anything/mcp", "tools/list"))
    assert result.status.value == "faulted"
    assert result.error["type"] == ERRORS + "runtime"
    assert result.error["instance"] == "/do/0/c"
    assert result.error["title"] == "MCP initialize failed"
    assert "/anything/mcp" in result.error["detail"]


async def test_invalid_parameters_are_a_configuration_error(mcp_url: str) -> None:
    """Parameters the method cannot take are refused before anything is sent, naming the field."""
    result, _ = await run_with("do:\n" + http_call(mcp_url, "resources/read", "{uri: 42}"))
    assert result.error["type"] == ERRORS + "configuration"
    assert "uri" in result.error["detail"]


async def test_call_timeout_gives_the_timeout_error(mcp_url: str) -> None:
    """`timeout` bounds the request: a slow tool ends with the timeout error (408), quickly."""
    extra = "        timeout: {milliseconds: 300}\n"
    body = "do:\n" + http_call(mcp_url, "tools/call", "{name: slow, arguments: {seconds: 10}}", extra=extra)
    started = asyncio.get_running_loop().time()
    result, _ = await run_with(body)
    assert result.error["type"] == ERRORS + "timeout"
    assert result.error["status"] == 408
    assert asyncio.get_running_loop().time() - started < 5


async def test_task_timeout_bounds_a_slow_call(mcp_url: str) -> None:
    """A task `timeout` cuts a slow tool call like any other task."""
    body = "do:\n" + http_call(
        mcp_url,
        "tools/call",
        "{name: slow, arguments: {seconds: 10}}",
        extra="      timeout: {after: {milliseconds: 300}}\n",
    )
    result, _ = await run_with(body)
    assert result.error["type"] == ERRORS + "timeout"
    assert result.error["instance"] == "/do/0/c"


async def test_bearer_secret_is_sent_and_never_reaches_events(mcp_url: str) -> None:
    """The endpoint's authentication goes on the requests; the secret shows in no event."""
    body = (
        "use:\n  secrets: [mcpToken]\ndo:\n  - c:\n      call: mcp\n      with:\n        method: tools/call\n"
        "        parameters: {name: whoami, arguments: {}}\n        transport:\n          http:\n"
        f"            endpoint:\n              uri: '{mcp_url}'\n"
        "              authentication: {bearer: {token: '${ $secrets.mcpToken }'}}\n"
    )
    result, events = await run_with(body, secrets={"mcpToken": "tok-8f2a61"})
    assert result.status.value == "completed", result.error
    assert result.output["structuredContent"]["result"] == "Bearer tok-8f2a61"
    assert not any("tok-8f2a61" in orjson.dumps(e.data).decode() for e in events.events)


async def test_outbound_policy_applies_to_the_endpoint(mcp_url: str) -> None:
    """A denied host is refused with the authorization error before connecting."""
    options = EngineOptions(outbound_deny=("127.0.0.1/32",))
    result, _ = await run_with("do:\n" + http_call(mcp_url, "tools/list"), options=options)
    assert result.error["type"] == ERRORS + "authorization"
    assert result.error["instance"] == "/do/0/c"


async def test_cancel_during_a_call_ends_cancelled(mcp_url: str) -> None:
    """Cancelling the execution while a tool runs ends it cancelled, promptly."""
    body = "do:\n" + http_call(mcp_url, "tools/call", "{name: slow, arguments: {seconds: 30}}")
    result, recorder = await run_cancelled(body, "/do/0/c", after=0.2)
    assert result.status.value == "cancelled"
    assert "task.cancelled:/do/0/c" in recorder.kinds()


def test_stdio_is_refused_unless_allowed() -> None:
    """Without ALLOW_MCP_STDIO a stdio transport is refused at validation, at the task."""
    issues = issues_of("do:\n" + stdio_call("tools/list", "{}"))
    assert [(i.code, i.path) for i in issues] == [("unsupported", "/do/0/c")]
    assert "ALLOW_MCP_STDIO" in issues[0].message


def test_transport_options_are_refused_not_ignored() -> None:
    """Transport-specific options, which this runtime has none of, are refused at validation, naming them."""
    body = "do:\n" + http_call("http://127.0.0.1:1/mcp", "tools/list").replace(
        "transport: {http: {endpoint: 'http://127.0.0.1:1/mcp'}}",
        "transport: {http: {endpoint: 'http://127.0.0.1:1/mcp'}, options: {keepAlive: 'true'}}",
    )
    issues = issues_of(body)
    assert [(i.code, i.path) for i in issues] == [("unsupported", "/do/0/c")]
    assert "keepAlive" in issues[0].message


def test_unknown_protocol_version_is_refused() -> None:
    """A protocol version the SDK cannot negotiate is refused at validation, naming it."""
    issues = issues_of(
        "do:\n" + http_call("http://127.0.0.1:1/mcp", "tools/list", extra="        protocolVersion: '1999-01-01'\n")
    )
    assert [i.code for i in issues] == ["unsupported"]
    assert "1999-01-01" in issues[0].message


async def test_stdio_server_gets_only_path_and_declared_environment() -> None:
    """The local server sees PATH and what the task declares (no HOME), in a temporary directory removed after."""
    environment = f"{{PYTHONPATH: '{ROOT}', GREETING: hi}}"
    body = "do:\n" + stdio_call("tools/call", "{name: env, arguments: {name: GREETING}}", environment)
    result, _ = await run_with(body, options=STDIO)
    assert result.status.value == "completed", result.error
    seen = result.output["structuredContent"]
    assert seen["value"] == "hi"
    assert seen["home"] is False
    assert not await asyncio.to_thread(Path(seen["cwd"]).exists)


async def test_stdio_session_is_shared_by_calls_and_its_process_ends_with_the_execution() -> None:
    """Two calls of an execution talk to one server process, which is gone once the execution ended."""
    ask = "{name: env, arguments: {name: PATH}}"
    body = "do:\n" + stdio_call("tools/call", ask, PYTHONPATH, name="a").replace(
        "      with:", "      export: {as: '${ {pid: .structuredContent.pid} }'}\n      with:", 1
    )
    body += stdio_call("tools/call", ask, PYTHONPATH, name="b").replace(
        "      with:",
        "      output: {as: '${ {first: $context.pid, second: .structuredContent.pid} }'}\n      with:",
        1,
    )
    result, _ = await run_with(body, options=STDIO)
    assert result.status.value == "completed", result.error
    pid = result.output["first"]
    assert result.output["second"] == pid
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


async def test_stdio_command_that_does_not_start_is_a_clear_error() -> None:
    """A server command that exits at once is the runtime error carrying what it wrote to stderr."""
    body = (
        "do:\n  - c:\n      call: mcp\n      with:\n        method: tools/list\n        transport:\n"
        f"          stdio: {{command: '{sys.executable}', arguments: ['-c', 'import sys; sys.exit(\"no server here\")']}}\n"
    )
    result, _ = await run_with(body, options=STDIO)
    assert result.error["type"] == ERRORS + "runtime"
    assert result.error["instance"] == "/do/0/c"
    assert "no server here" in result.error["detail"]


async def test_cancel_kills_the_stdio_server(tmp_path: Path) -> None:
    """Cancelling an execution whose stdio server is busy ends it cancelled and the server process is gone."""
    ask = stdio_call("tools/call", "{name: env, arguments: {name: PATH}}", PYTHONPATH, name="a").replace(
        "      with:", "      export: {as: '${ {pid: .structuredContent.pid} }'}\n      with:", 1
    )
    body = "do:\n" + ask + stdio_call("tools/call", "{name: slow, arguments: {seconds: 60}}", PYTHONPATH, name="b")
    result, recorder = await run_cancelled(body, "/do/1/b", options=STDIO, after=0.2, within=15)
    assert result.status.value == "cancelled"
    pid = next(
        e.data["output"]["structuredContent"]["pid"]
        for e in recorder.events
        if e.data.get("task") == "/do/0/a" and "output" in e.data
    )
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
