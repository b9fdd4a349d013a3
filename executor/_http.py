"""Outbound HTTP: the pooled client, one request/response exchange, the spec's output forms and errors.

Every request goes through one `httpx.AsyncClient` per executor (connection pooling), whose request hook applies
the outbound policy to each hop, redirects included. httpx exceptions become the spec's errors here and nowhere
else:

- a status outside 200-299 (200-399 with `redirect: true`) → communication error carrying that status, a title
  `HTTP <status> <reason>` and a detail with the method, URL and the start of the body;
- connection refused / unreachable → communication 503; timeout → communication 504; other protocol failures →
  communication 502; a malformed or non-HTTP URL → configuration 400; a body over the configured limit → 502.

Choices where the spec is silent: `redirect: true` also *follows* redirects (httpx drops credentials when a hop
changes origin); `redirect: false` neither follows nor accepts 3xx. A request body that is a string is sent as
text, any other value as JSON (or as a form when the document sets `Content-Type:
application/x-www-form-urlencoded`). A response body is decoded as JSON when its content type is JSON, as text when
it is textual (or untyped and valid UTF-8), and base64-encoded otherwise. In the `response` output form, header
names keep the server's spelling and the request's `Authorization` value is masked to its scheme (`Basic ***`).
The runner's proxy environment variables and `.netrc` are not used.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson

from ._errors import CommunicationError, ConfigurationError, WorkflowError
from ._options import EngineOptions
from ._outbound import OutboundPolicy

USER_AGENT = "workflow-runner/0.1.0"
_EXCERPT = 512
_TEXT_TYPES = frozenset(
    {
        "application/xml",
        "application/javascript",
        "application/x-www-form-urlencoded",
        "application/yaml",
        "application/x-yaml",
        "application/graphql",
    }
)
_MASKED_HEADERS = frozenset({"authorization", "proxy-authorization"})


def new_client(options: EngineOptions, policy: OutboundPolicy) -> httpx.AsyncClient:
    """The shared client: pooled, bounded by `http_timeout`, every hop checked against the outbound policy."""

    async def guard(request: httpx.Request) -> None:
        await policy.check(request.url.host)

    return httpx.AsyncClient(
        timeout=options.http_timeout,
        event_hooks={"request": [guard]},
        headers={"User-Agent": USER_AGENT},
        follow_redirects=False,
        trust_env=False,
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class Request:
    """One fully evaluated request."""

    method: str
    url: str
    headers: Mapping[str, str] = field(default_factory=dict)
    query: Sequence[tuple[str, str]] = ()
    body: Any = None
    auth: httpx.Auth | None = None


@dataclass(frozen=True, slots=True)
class Reply:
    """A response read in full (within the size limit)."""

    status: int
    reason: str
    headers: httpx.Headers
    body: bytes
    request: httpx.Request


async def exchange(client: httpx.AsyncClient, request: Request, *, redirect: bool, limit: int) -> Reply:
    """Send `request` and read the whole reply; transport failures become the spec's errors (status unchecked)."""
    try:
        built = client.build_request(request.method.upper(), _url(request), **_body(request))
    except (httpx.InvalidURL, httpx.UnsupportedProtocol) as exc:
        raise ConfigurationError("Invalid URL", detail=f"{request.url!r}: {exc}") from None
    try:
        response = await client.send(built, auth=request.auth or httpx.USE_CLIENT_DEFAULT, follow_redirects=redirect)
        try:
            body = await _read(response, limit)
        finally:
            await response.aclose()
    except httpx.HTTPError as exc:
        raise transport_error(exc, request.method, request.url) from None
    return Reply(response.status_code, response.reason_phrase, response.headers, body, response.request)


def _url(request: Request) -> httpx.URL:
    """The URL with `query` added to (not replacing) a query the URI already has."""
    url = httpx.URL(request.url)
    if not request.query:
        return url
    return url.copy_with(params=httpx.QueryParams([*url.params.multi_items(), *request.query]))


async def _read(response: httpx.Response, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        size += len(chunk)
        if size > limit:
            raise CommunicationError(
                "Response too large", status=502, detail=f"{response.request.url} sent more than {limit} bytes"
            )
        chunks.append(chunk)
    return b"".join(chunks)


def _body(request: Request) -> dict[str, Any]:
    headers = dict(request.headers)
    body = request.body
    if body is None:
        return {"headers": headers}
    content_type = _header(headers, "content-type")
    if isinstance(body, str):
        content = body.encode()
        default = "text/plain; charset=utf-8"
    elif isinstance(body, dict) and content_type.startswith("application/x-www-form-urlencoded"):
        return {"headers": headers, "data": {k: scalar_text(v) for k, v in body.items() if v is not None}}
    else:
        content = orjson.dumps(body)
        default = "application/json"
    if not content_type:
        headers["Content-Type"] = default
    return {"headers": headers, "content": content}


def _header(headers: Mapping[str, str], name: str) -> str:
    return next((v for k, v in headers.items() if k.lower() == name), "").lower()


def transport_error(exc: httpx.HTTPError, method: str, url: str) -> WorkflowError:
    """The spec's error for an exchange that produced no usable response."""
    where = f"{method.upper()} {url}: {type(exc).__name__}: {exc}".rstrip(": ")
    if isinstance(exc, httpx.TimeoutException):
        return CommunicationError("HTTP request timed out", status=504, detail=where)
    if isinstance(exc, httpx.UnsupportedProtocol):
        return ConfigurationError("Invalid URL", detail=where)
    if isinstance(exc, httpx.ConnectError):
        return CommunicationError("Service unreachable", status=503, detail=where)
    return CommunicationError("HTTP exchange failed", status=502, detail=where)


def check_status(reply: Reply, *, redirect: bool) -> None:
    """Raise the communication error for a status the call does not accept."""
    ceiling = 400 if redirect else 300
    if 200 <= reply.status < ceiling:
        return
    raise CommunicationError(
        f"HTTP {reply.status} {reply.reason}".strip(),
        status=reply.status,
        detail=f"{reply.request.method} {reply.request.url}: {excerpt(reply.body)}",
    )


def excerpt(body: bytes) -> str:
    """The start of a body, as text, for error details."""
    text = body[: _EXCERPT * 4].decode("utf-8", errors="replace")
    return text if len(text) <= _EXCERPT else text[:_EXCERPT] + "…"


def output(reply: Reply, mode: str) -> Any:
    """The call's output: `content` (decoded body), `raw` (base64 body) or `response` (the spec's object)."""
    if mode == "raw":
        return base64.b64encode(reply.body).decode("ascii") if reply.body else None
    content = decode(reply.headers, reply.body)
    if mode != "response":
        return content
    request = reply.request
    return {
        "request": {
            "method": request.method.lower(),
            "uri": str(request.url),
            "headers": header_map(request.headers, mask=True),
        },
        "statusCode": reply.status,
        "headers": header_map(reply.headers),
        "content": content,
    }


def decode(headers: httpx.Headers, body: bytes) -> Any:
    """JSON for JSON content types, text for textual ones, base64 for the rest; None without a body."""
    if not body:
        return None
    raw_type = headers.get("content-type", "")
    media = raw_type.split(";", 1)[0].strip().lower()
    if media == "application/json" or media.endswith("+json"):
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError:
            pass
    charset = _charset(raw_type)
    if media.startswith("text/") or media in _TEXT_TYPES or media.endswith("+xml") or charset or not media:
        try:
            return body.decode(charset or "utf-8", errors="strict" if not media else "replace")
        except (UnicodeDecodeError, LookupError):
            pass
    return base64.b64encode(body).decode("ascii")


def _charset(content_type: str) -> str | None:
    for part in content_type.split(";")[1:]:
        key, _, value = part.strip().partition("=")
        if key.lower() == "charset" and value:
            return value.strip('"')
    return None


def header_map(headers: httpx.Headers, *, mask: bool = False) -> dict[str, str]:
    """Headers as one string per name (repeats joined by `, `), names as first spelled on the wire."""
    out: dict[str, str] = {}
    spelling: dict[str, str] = {}
    for raw_name, raw_value in headers.raw:
        name, value = raw_name.decode("latin-1"), raw_value.decode("latin-1")
        if mask and name.lower() in _MASKED_HEADERS:
            value = value.split(" ", 1)[0] + " ***"
        key = spelling.setdefault(name.lower(), name)
        out[key] = f"{out[key]}, {value}" if key in out else value
    return out


def scalar_text(value: Any) -> str:
    """A query, header or form value as text: booleans as `true`/`false`, structures as JSON."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, int | float):
        return str(value)
    return orjson.dumps(value).decode()


def pairs(values: Any, what: str) -> list[tuple[str, str]]:
    """Name/value pairs from a mapping (null values dropped, lists repeated); ConfigurationError otherwise."""
    if values is None:
        return []
    if not isinstance(values, dict):
        raise ConfigurationError(f"Invalid {what}", detail=f"expected an object, got {type(values).__name__}")
    out: list[tuple[str, str]] = []
    for name, value in values.items():
        for item in value if isinstance(value, list) else [value]:
            if item is not None:
                out.append((str(name), scalar_text(item)))
    return out
