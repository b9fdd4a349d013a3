"""`call: grpc`: compile the proto resource, then call `service.method` with the evaluated `arguments`.

The proto comes from its endpoint (HTTP or a local file under the configured resource roots). The target is
`service.host:service.port`; without a port, 443 with TLS; port 443 always uses TLS, other ports plaintext. The
host passes the outbound policy like any HTTP call. `service.authentication` (basic, bearer, oauth2, oidc) is
sent as the `authorization` metadata and exposed as `$authorization`; digest cannot work over gRPC and is refused
at validation. Each call is bounded by the configured `http_timeout`. Protocol details: `executor._grpc_call`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .._auth import AuthPolicy, compile_auth
from .._endpoint import Endpoint, compile_endpoint, load_resource
from .._expr import compile_template
from .._grpc_call import GrpcInvocation, compile_proto, find_method, invoke
from .._model import Unsupported
from ._call_http import authorize

if TYPE_CHECKING:
    from .._expr import Evaluator, Vars
    from .._model import Compiler, Task
    from .._run import Run

_TLS_PORT = 443


@dataclass(frozen=True, slots=True)
class GrpcCall:
    """A compiled `call: grpc`."""

    proto: Endpoint
    service: str
    host: str
    port: int
    method: str
    arguments: Evaluator | None
    auth: AuthPolicy | None

    async def run(self, rt: Run, task: Task, data: Any, variables: Vars) -> Any:
        """Resolve the method from the proto and call it."""
        io = rt.executor.io
        resource = await load_resource(rt, self.proto, data, variables)
        method = find_method(await compile_proto(resource.content, io.protos), self.service, self.method)
        credentials = await authorize(rt, self.auth, data, variables)
        await io.policy.check(self.host)
        target = f"{self.host}:{self.port}"
        metadata = [(k.lower(), v) for k, v in (credentials.headers if credentials else {}).items()]
        call = GrpcInvocation(
            channel=io.channel(target, tls=self.port == _TLS_PORT),
            target=target,
            method=method,
            arguments=None if self.arguments is None else self.arguments(data, variables),
            metadata=metadata,
            timeout=rt.executor.options.http_timeout,
        )
        return await invoke(call)


def compile(compiler: Compiler, arguments: Mapping[str, Any], pointer: str) -> GrpcCall:
    """Compile `with` of a `call: grpc`."""
    service = arguments["service"]
    auth = compile_auth(compiler.use, service.get("authentication"))
    if auth is not None and auth.scheme == "digest":
        raise Unsupported("digest authentication over gRPC")
    call_arguments = arguments.get("arguments")
    return GrpcCall(
        proto=compile_endpoint(compiler.use, arguments["proto"]["endpoint"]),
        service=str(service["name"]),
        host=str(service["host"]),
        port=int(service.get("port") or _TLS_PORT),
        method=str(arguments["method"]),
        arguments=None if call_arguments is None else compile_template(call_arguments),
        auth=auth,
    )
