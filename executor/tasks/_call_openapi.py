"""`call: openapi`: load the document (cached per process), resolve `operationId`, send like `call: http`.

The document is read once per URL for the life of the executor (JSON or YAML, Swagger 2.0 or OpenAPI 3); its
endpoint's own authentication applies to that download. The call's `authentication` applies to the operation
and is exposed as `$authorization`. How parameters become a request: see `executor._openapi`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .._auth import AuthPolicy, compile_auth
from .._endpoint import Endpoint, compile_endpoint, load_resource
from .._errors import ConfigurationError
from .._expr import compile_template
from .._http import Request
from .._openapi import OpenApiDocument, parse_document
from ._call_http import authorize, headers, perform

if TYPE_CHECKING:
    from .._expr import Evaluator, Vars
    from .._model import Compiler, Task
    from .._run import Run


@dataclass(frozen=True, slots=True)
class OpenApiCall:
    """A compiled `call: openapi`."""

    document: Endpoint
    operation_id: str
    parameters: Evaluator | None
    auth: AuthPolicy | None
    output: str
    redirect: bool

    async def run(self, rt: Run, task: Task, data: Any, variables: Vars) -> Any:
        """Build the operation's request from the parameters and send it."""
        document = await _load(rt, self.document, data, variables)
        credentials = await authorize(rt, self.auth, data, variables)
        values = {} if self.parameters is None else self.parameters(data, variables)
        if not isinstance(values, dict):
            raise ConfigurationError("Invalid parameters", detail=f"expected an object, got {type(values).__name__}")
        parts = document.request(self.operation_id, values)
        request = Request(
            method=parts.method,
            url=parts.url,
            headers=headers(parts.headers, credentials),
            query=parts.query,
            body=parts.body,
            auth=credentials.auth if credentials else None,
        )
        return await perform(rt, request, credentials, mode=self.output, redirect=self.redirect)


def compile(compiler: Compiler, arguments: Mapping[str, Any], pointer: str) -> OpenApiCall:
    """Compile `with` of a `call: openapi`."""
    parameters = arguments.get("parameters")
    return OpenApiCall(
        document=compile_endpoint(compiler.use, arguments["document"]["endpoint"]),
        operation_id=str(arguments["operationId"]),
        parameters=None if parameters is None else compile_template(parameters),
        auth=compile_auth(compiler.use, arguments.get("authentication")),
        output=arguments.get("output", "content"),
        redirect=bool(arguments.get("redirect", False)),
    )


async def _load(rt: Run, endpoint: Endpoint, data: Any, variables: Vars) -> OpenApiDocument:
    cache = rt.executor.io.documents
    key = endpoint.uri(data, variables)
    if key not in cache:
        resource = await load_resource(rt, endpoint, data, variables)
        cache[key] = parse_document(resource.content, resource.location)
    document: OpenApiDocument = cache[key]
    return document
