"""`call: http`: one HTTP request built from `with` (method, endpoint, headers, query, body), one output.

The endpoint URI is an RFC 6570 template expanded from the task's transformed input (`{petId}`) or a `${ … }`
expression; headers, query and body are free-form values whose `${ … }` leaves are evaluated. The endpoint's
authentication is resolved first, so `$authorization` is available to the headers, query and body expressions
(and to `output.as` / `export.as`). Output forms, redirects and errors: see `executor._http`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .._auth import AuthPolicy, Credentials, resolve
from .._endpoint import Endpoint, compile_endpoint
from .._errors import CommunicationError, ConfigurationError
from .._expr import compile_template
from .._http import Request, check_status, exchange, output, pairs, scalar_text

if TYPE_CHECKING:
    from .._expr import Evaluator, Vars
    from .._model import Compiler, Task
    from .._run import Run


@dataclass(frozen=True, slots=True)
class HttpCall:
    """A compiled `call: http`."""

    method: Evaluator
    endpoint: Endpoint
    headers: Evaluator | None
    query: Evaluator | None
    body: Evaluator | None
    output: str
    redirect: bool

    async def run(self, rt: Run, task: Task, data: Any, variables: Vars) -> Any:
        """Send the request and return the output form asked for."""
        credentials = await authorize(rt, self.endpoint.auth, data, variables)
        method = self.method(data, variables)
        if not isinstance(method, str) or not method:
            raise ConfigurationError("Invalid HTTP method", detail=f"got {method!r}")
        request = Request(
            method=method,
            url=self.endpoint.uri(data, variables),
            headers=headers(_value(self.headers, data, variables), credentials),
            query=pairs(_value(self.query, data, variables), "query"),
            body=_value(self.body, data, variables),
            auth=credentials.auth if credentials else None,
        )
        return await perform(rt, request, credentials, mode=self.output, redirect=self.redirect)


def compile(compiler: Compiler, arguments: Mapping[str, Any], pointer: str) -> HttpCall:
    """Compile `with` of a `call: http`."""
    return HttpCall(
        method=compile_template(arguments["method"]),
        endpoint=compile_endpoint(compiler.use, arguments["endpoint"]),
        headers=_template(arguments.get("headers")),
        query=_template(arguments.get("query")),
        body=_template(arguments.get("body")),
        output=arguments.get("output", "content"),
        redirect=bool(arguments.get("redirect", False)),
    )


def _template(value: Any) -> Evaluator | None:
    return None if value is None else compile_template(value)


def _value(evaluator: Evaluator | None, data: Any, variables: Vars) -> Any:
    return None if evaluator is None else evaluator(data, variables)


async def authorize(rt: Run, policy: AuthPolicy | None, data: Any, variables: Vars) -> Credentials | None:
    """Resolve the call's authentication and expose it as `$authorization` for the task's later expressions."""
    if policy is None:
        return None
    credentials = await resolve(rt, policy, data, variables)
    # The engine hands each task its own mutable variables; this is how `$authorization` reaches `output.as`.
    assert isinstance(variables, dict)
    variables["authorization"] = dict(credentials.descriptor)
    return credentials


def headers(values: Any, credentials: Credentials | None) -> dict[str, str]:
    """The request headers: the document's, then the credentials' (which win)."""
    if values is not None and not isinstance(values, dict):
        raise ConfigurationError("Invalid headers", detail=f"expected an object, got {type(values).__name__}")
    out = {str(k): scalar_text(v) for k, v in (values or {}).items() if v is not None}
    if credentials is not None:
        out.update(credentials.headers)
    return out


async def perform(rt: Run, request: Request, credentials: Credentials | None, *, mode: str, redirect: bool) -> Any:
    """Exchange, check the status, and shape the output; a 401 drops a cached OAuth2 token."""
    io = rt.executor.io
    reply = await exchange(io.http, request, redirect=redirect, limit=rt.executor.options.max_response_bytes)
    try:
        check_status(reply, redirect=redirect)
    except CommunicationError:
        if reply.status == 401 and credentials is not None and credentials.token_key is not None:
            io.tokens.invalidate(credentials.token_key)
        raise
    return output(reply, mode)
