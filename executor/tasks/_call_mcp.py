"""`call: mcp`: one Model Context Protocol request on a session the execution opens once and reuses.

- Methods: `tools/list`, `tools/call`, `prompts/list`, `prompts/get`, `resources/list`, `resources/read`,
  `resources/templates/list`, with `parameters` (an object, or an expression giving one) as the request's params.
  The output is the JSON-RPC result as the server sent it (camelCase, e.g. `{content, structuredContent,
  isError}` for `tools/call`). A tool result with `isError: true` faults the task with the runtime error, its text
  content in the detail.
- Session: opened on first use with the `initialize` handshake at `protocolVersion` (default 2025-06-18) as
  `client` (default `workflow-runner`), reused by every later call of the same execution with the same transport,
  closed when the execution ends.
- `transport.options` (transport-specific settings) are refused at validation: none is implemented.
- `transport.http`: the streamable HTTP transport. The endpoint passes the outbound policy; its authentication and
  `headers` go on every request. `transport.stdio`: a local server process, refused at validation unless the
  runner allows it (`ALLOW_MCP_STDIO`); like `run.shell` it runs in its own session (killed as a group), in a fresh
  temporary directory, with only `PATH` and the declared `environment` — never the runner's environment.
- Errors: the spec makes every MCP failure the runtime error: a JSON-RPC error answer (its code in the title), an
  unreachable server, one that does not speak MCP, a tool result with `isError`. Exceptions: `timeout` (per
  request) gives the timeout error, parameters the method cannot take the configuration error, a host the
  outbound policy denies the authorization error.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from collections.abc import Mapping
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TextIO
from urllib.parse import urlsplit

import httpx2
import mcp_types as types
from mcp import ClientSession, MCPError, StdioServerParameters, stdio_client
from mcp.client.stdio import DEFAULT_INHERITED_ENV_VARS
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS
from pydantic import ValidationError as PydanticValidationError

from .._durations import duration_or_none
from .._endpoint import Endpoint, compile_endpoint
from .._errors import ConfigurationError, WorkflowError, WorkflowRuntimeError, WorkflowTimeoutError
from .._expr import compile_template
from .._http import scalar_text
from .._model import Unsupported
from .._process import environment
from ._call_http import authorize, headers

if TYPE_CHECKING:
    from .._durations import Duration
    from .._expr import Evaluator, Vars
    from .._model import Compiler, Task
    from .._run import Run

DEFAULT_PROTOCOL_VERSION = "2025-06-18"
_ENV = "/usr/bin/env"
_STDERR_TAIL = 1000
_TEXT_DETAIL = 1000

# method → (request model, result model)
METHODS: Mapping[str, tuple[Any, Any]] = {
    "tools/list": (types.ListToolsRequest, types.ListToolsResult),
    "tools/call": (types.CallToolRequest, types.CallToolResult),
    "prompts/list": (types.ListPromptsRequest, types.ListPromptsResult),
    "prompts/get": (types.GetPromptRequest, types.GetPromptResult),
    "resources/list": (types.ListResourcesRequest, types.ListResourcesResult),
    "resources/read": (types.ReadResourceRequest, types.ReadResourceResult),
    "resources/templates/list": (types.ListResourceTemplatesRequest, types.ListResourceTemplatesResult),
}


@dataclass(frozen=True, slots=True)
class HttpTransport:
    """`transport.http`: the server's endpoint and extra headers."""

    endpoint: Endpoint
    headers: Evaluator | None


@dataclass(frozen=True, slots=True)
class StdioTransport:
    """`transport.stdio`: the server's command line and declared environment."""

    command: Evaluator
    arguments: Evaluator | None
    environment: Evaluator | None


@dataclass(frozen=True, slots=True)
class Handshake:
    """What the `initialize` request says about this client."""

    protocol_version: str
    client_name: str
    client_version: str


@dataclass(frozen=True, slots=True, kw_only=True)
class McpCall:
    """A compiled `call: mcp`."""

    method: str
    parameters: Evaluator | None
    timeout: Duration | None
    transport: HttpTransport | StdioTransport
    handshake: Handshake

    async def run(self, rt: Run, task: Task, data: Any, variables: Vars) -> Any:
        """Send the request on the execution's session for this transport; return the JSON-RPC result."""
        request_type, result_type = METHODS[self.method]
        request = _request(request_type, self.method, _parameters(self.parameters, data, variables))
        key, opener = await self._opener(rt, data, variables)
        sessions = rt.executor.io.sessions(rt)
        try:
            session: ClientSession = await sessions.get(key, opener)
        except (WorkflowError, asyncio.CancelledError):
            raise
        except Exception as exc:
            where = key[1] if isinstance(key[1], str) else key[1][0]
            raise WorkflowRuntimeError("MCP server unreachable", detail=f"{where}: {_describe(exc)}") from None
        seconds = None if self.timeout is None else self.timeout.seconds(data, variables)
        try:
            async with asyncio.timeout(seconds):
                result = await session.send_request(request, result_type)
        except TimeoutError:
            raise WorkflowTimeoutError(
                "MCP request timed out", detail=f"{self.method} took longer than {seconds:g}s"
            ) from None
        except MCPError as exc:
            if exc.code == types.CONNECTION_CLOSED:
                await sessions.drop(key)
                raise WorkflowRuntimeError("MCP connection closed", detail=f"{self.method}: {exc.message}") from None
            raise _rpc_error(self.method, exc) from None
        except PydanticValidationError as exc:
            raise WorkflowRuntimeError("Invalid MCP answer", detail=f"{self.method}: {_first_error(exc)}") from None
        output = result.model_dump(by_alias=True, mode="json", exclude_unset=True)
        if self.method == "tools/call" and output.get("isError"):
            raise WorkflowRuntimeError("MCP tool failed", detail=_tool_text(output) or None)
        return output

    async def _opener(self, rt: Run, data: Any, variables: Vars) -> tuple[Any, Any]:
        if isinstance(self.transport, HttpTransport):
            return await _http_opener(rt, self.transport, self.handshake, data, variables)
        return _stdio_opener(rt, self.transport, self.handshake, data, variables)


def compile(compiler: Compiler, arguments: Mapping[str, Any], pointer: str) -> McpCall:
    """Compile `with` of a `call: mcp`."""
    version = str(arguments.get("protocolVersion") or DEFAULT_PROTOCOL_VERSION)
    if version not in HANDSHAKE_PROTOCOL_VERSIONS:
        raise Unsupported(f"MCP protocol version {version!r} (supported: {', '.join(HANDSHAKE_PROTOCOL_VERSIONS)})")
    client = arguments.get("client") or {}
    transport = arguments["transport"]
    parameters = arguments.get("parameters")
    timeout = arguments.get("timeout")
    return McpCall(
        method=str(arguments["method"]),
        parameters=None if parameters is None else compile_template(parameters),
        timeout=None if timeout is None else duration_or_none(timeout),
        transport=_transport(compiler, transport),
        handshake=Handshake(version, str(client.get("name") or "workflow-runner"), str(client.get("version") or "")),
    )


def _transport(compiler: Compiler, transport: Mapping[str, Any]) -> HttpTransport | StdioTransport:
    if transport.get("options"):
        # Nothing here would honour them; refusing beats ignoring what the document asked for.
        raise Unsupported(f"MCP transport options {sorted(transport['options'])}")
    if "http" in transport:
        http = transport["http"]
        extra = http.get("headers")
        return HttpTransport(
            compile_endpoint(compiler.use, http["endpoint"]), None if extra is None else compile_template(extra)
        )
    if not compiler.options.allow_mcp_stdio:
        raise Unsupported("the MCP stdio transport is disabled in this runner's configuration (ALLOW_MCP_STDIO)")
    stdio = transport["stdio"]
    arguments, environment = stdio.get("arguments"), stdio.get("environment")
    return StdioTransport(
        command=compile_template(stdio["command"]),
        arguments=None if arguments is None else compile_template(arguments),
        environment=None if environment is None else compile_template(environment),
    )


def _parameters(template: Evaluator | None, data: Any, variables: Vars) -> dict[str, Any]:
    value = None if template is None else template(data, variables)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigurationError("Invalid MCP parameters", detail=f"expected an object, got {type(value).__name__}")
    return value


def _request(request_type: Any, method: str, params: dict[str, Any]) -> Any:
    body: dict[str, Any] = {"method": method}
    if params:
        body["params"] = params
    try:
        return request_type.model_validate(body)
    except PydanticValidationError as exc:
        raise ConfigurationError("Invalid MCP parameters", detail=f"{method}: {_first_error(exc)}") from None


def _first_error(exc: PydanticValidationError) -> str:
    error = exc.errors()[0]
    where = ".".join(str(p) for p in error["loc"]) or "(root)"
    return f"{where}: {error['msg']}"


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _rpc_error(method: str, exc: MCPError) -> WorkflowError:
    return WorkflowRuntimeError(f"MCP error {exc.code}", detail=f"{method}: {exc.message}")


def _tool_text(result: Mapping[str, Any]) -> str:
    texts = [str(c.get("text")) for c in result.get("content") or () if isinstance(c, dict) and c.get("type") == "text"]
    return "\n".join(texts)[:_TEXT_DETAIL]


async def _http_opener(
    rt: Run, transport: HttpTransport, handshake: Handshake, data: Any, variables: Vars
) -> tuple[Any, Any]:
    url = transport.endpoint.uri(data, variables)
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigurationError("Invalid MCP endpoint", detail=f"{url!r} is not an http(s) URL")
    await rt.executor.io.policy.check(parts.hostname)
    credentials = await authorize(rt, transport.endpoint.auth, data, variables)
    extra = None if transport.headers is None else transport.headers(data, variables)
    sent = headers(extra, credentials)
    timeout = rt.executor.options.http_timeout

    async def opener(stack: AsyncExitStack) -> ClientSession:
        # Reads stay open longer than one request's timeout: a tool may take its time (the task's timeout bounds it).
        client = create_mcp_http_client(headers=sent, timeout=httpx2.Timeout(timeout, read=max(timeout, 300.0)))
        await stack.enter_async_context(client)
        read, write = await stack.enter_async_context(streamable_http_client(url, http_client=client))
        return await _initialize(stack, (read, write), handshake, seconds=timeout, where=url)

    key = ("http", url, tuple(sorted(sent.items())), handshake)
    return key, opener


def _stdio_opener(
    rt: Run, transport: StdioTransport, handshake: Handshake, data: Any, variables: Vars
) -> tuple[Any, Any]:
    command = transport.command(data, variables)
    if not isinstance(command, str) or not command:
        raise ConfigurationError("Invalid MCP command", detail=f"expected text, got {command!r}")
    arguments = [] if transport.arguments is None else transport.arguments(data, variables)
    if not isinstance(arguments, list):
        raise ConfigurationError("Invalid MCP arguments", detail="expected a list of strings")
    declared = None if transport.environment is None else transport.environment(data, variables)
    env = environment(rt.executor.options.process_path, declared)
    argv = [command, *(scalar_text(a) for a in arguments)]
    timeout = rt.executor.options.http_timeout

    async def opener(stack: AsyncExitStack) -> ClientSession:
        workdir = tempfile.mkdtemp(prefix="wf-mcp-")
        stack.callback(shutil.rmtree, workdir, True)
        errlog = stack.enter_context(await asyncio.to_thread(_log_file, workdir))
        server = StdioServerParameters(command=_ENV, args=[*_unset(env), "--", *argv], env=env, cwd=workdir)
        try:
            read, write = await stack.enter_async_context(stdio_client(server, errlog=errlog))
            return await _initialize(stack, (read, write), handshake, seconds=timeout, where=command)
        except WorkflowRuntimeError as exc:
            errlog.seek(0)
            tail = errlog.read()[-_STDERR_TAIL:].strip()
            if tail:
                exc.detail = f"{exc.detail}; the server wrote: {tail}"
            raise

    key = ("stdio", tuple(argv), tuple(sorted(env.items())), handshake)
    return key, opener


def _unset(env: Mapping[str, str]) -> list[str]:
    """`env -u NAME` for what the SDK passes on from the runner's own environment (HOME, USER, …) unless declared.

    Values travel in the environment, never on the command line, where any local user could read them.
    """
    return [word for name in DEFAULT_INHERITED_ENV_VARS if name not in env for word in ("-u", name)]


def _log_file(workdir: str) -> TextIO:
    """Where the server's stderr goes (its tail explains a server that fails to start)."""
    return open(os.path.join(workdir, ".stderr"), "w+", encoding="utf-8")  # closed by the exit stack


async def _initialize(
    stack: AsyncExitStack, streams: tuple[Any, Any], handshake: Handshake, *, seconds: float, where: str
) -> ClientSession:
    """Open the session and run the `initialize` handshake at the document's protocol version."""
    read, write = streams
    session = await stack.enter_async_context(
        ClientSession(
            read, write, client_info=types.Implementation(name=handshake.client_name, version=handshake.client_version)
        )
    )
    request = types.InitializeRequest(
        params=types.InitializeRequestParams(
            protocol_version=handshake.protocol_version,
            capabilities=types.ClientCapabilities(),
            client_info=types.Implementation(name=handshake.client_name, version=handshake.client_version),
        )
    )
    try:
        async with asyncio.timeout(seconds):
            result = await session.send_request(request, types.InitializeResult)
    except TimeoutError:
        raise WorkflowRuntimeError(
            "MCP server did not answer", detail=f"{where}: no answer to initialize within {seconds:g}s"
        ) from None
    except MCPError as exc:
        first = (exc.message.splitlines() or [""])[0][:_TEXT_DETAIL]
        raise WorkflowRuntimeError("MCP initialize failed", detail=f"{where}: {exc.code} {first}") from None
    except PydanticValidationError as exc:
        raise WorkflowRuntimeError("Not an MCP server", detail=f"{where}: {_first_error(exc)}") from None
    if result.protocol_version not in HANDSHAKE_PROTOCOL_VERSIONS:
        raise WorkflowRuntimeError(
            "MCP protocol version not supported", detail=f"{where}: the server chose {result.protocol_version!r}"
        )
    session.adopt(result)
    await session.send_notification(types.InitializedNotification())
    return session
