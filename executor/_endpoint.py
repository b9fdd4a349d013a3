"""Endpoints and external resources: a URI (template or expression) with an optional authentication policy.

`load_resource` reads an external resource (an OpenAPI document, a proto file, a script source): over HTTP(S)
through the shared pool (redirects followed, the outbound policy applied, the endpoint's authentication sent), or
from a local file (`file://…` or a plain path) — only inside `EngineOptions.resource_roots`; with no roots
configured, local files are refused with the authorization error (403), because a document must not read the
runner's disk.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlparse

from ._auth import AuthPolicy, Credentials, compile_auth, resolve
from ._errors import AuthorizationError, ConfigurationError
from ._expr import Evaluator, Vars
from ._http import Request, check_status, exchange
from ._uri import compile_uri

if TYPE_CHECKING:
    from ._run import Run


@dataclass(frozen=True, slots=True)
class Endpoint:
    """A compiled endpoint."""

    uri: Evaluator
    auth: AuthPolicy | None

    async def credentials(self, rt: Run, data: Any, variables: Vars) -> Credentials | None:
        """The resolved authentication, or None."""
        return None if self.auth is None else await resolve(rt, self.auth, data, variables)


def compile_endpoint(use: Mapping[str, Any], value: Any) -> Endpoint:
    """Compile an endpoint written as a string or `{uri, authentication}` (a policy inline or by name)."""
    if isinstance(value, Mapping):
        return Endpoint(compile_uri(str(value["uri"])), compile_auth(use, value.get("authentication")))
    return Endpoint(compile_uri(str(value)), None)


@dataclass(frozen=True, slots=True)
class Resource:
    """A loaded resource: where it came from (final URL or file URI) and its bytes."""

    location: str
    content: bytes


async def load_resource(rt: Run, endpoint: Endpoint, data: Any, variables: Vars) -> Resource:
    """Read the resource at `endpoint`."""
    uri = endpoint.uri(data, variables)
    scheme = urlparse(uri).scheme.lower()
    if scheme in ("http", "https"):
        return await _fetch(rt, endpoint, uri, data, variables)
    if scheme in ("file", ""):
        return await _read_file(rt, uri)
    raise ConfigurationError("Unsupported resource URI", detail=f"{uri!r}: only http(s) and file resources are read")


async def _fetch(rt: Run, endpoint: Endpoint, uri: str, data: Any, variables: Vars) -> Resource:
    credentials = await endpoint.credentials(rt, data, variables)
    request = Request(
        method="GET",
        url=uri,
        headers=dict(credentials.headers) if credentials else {},
        auth=credentials.auth if credentials else None,
    )
    options = rt.executor.options
    reply = await exchange(rt.executor.io.http, request, redirect=True, limit=options.max_response_bytes)
    check_status(reply, redirect=False)
    return Resource(str(reply.request.url), reply.body)


async def _read_file(rt: Run, uri: str) -> Resource:
    return await asyncio.to_thread(_read_local, uri, rt.executor.options.resource_roots)


def _read_local(uri: str, resource_roots: tuple[str, ...]) -> Resource:
    # Resolving first means `..` and symlinks cannot lead outside the roots.
    path = Path(unquote(urlparse(uri).path) if uri.lower().startswith("file:") else uri).resolve()
    if not any(path.is_relative_to(Path(root).resolve()) for root in resource_roots):
        raise AuthorizationError(
            "Local resource denied", detail=f"{uri!r} is outside the directories this runner may read"
        )
    try:
        return Resource(path.as_uri(), path.read_bytes())
    except OSError as exc:
        raise ConfigurationError("Resource not readable", detail=f"{uri!r}: {exc.strerror or exc}") from None
