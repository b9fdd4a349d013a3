"""OpenAPI documents (Swagger 2.0 and OpenAPI 3.0/3.1): find an operation and turn parameters into a request.

Parameters named in the operation (path-level ones included, local `$ref`s followed) go where the document says:
path (percent-encoded), query (arrays as Swagger's `collectionFormat` or OpenAPI's `style`/`explode` say,
repeated by default), header, cookie, Swagger `formData`, or the Swagger `body` parameter. A parameter the
operation does not name is not dropped silently: when the operation takes a body (`in: body` or `requestBody`)
and none was given by name (`parameters.<bodyName>`, or `parameters.body` for OpenAPI 3), the unnamed ones form
the body object. A required parameter that is missing is the configuration error (400), before any request.

The base URL: Swagger 2.0 `schemes` (the document's own scheme when listed, else the first) + `host` (default:
the document's host) + `basePath`; OpenAPI 3 the first `servers` entry of the operation, its path or the document
(variables at their defaults), resolved against the document's URL. `Accept` prefers JSON when offered.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urljoin, urlparse

import orjson

from ._document import DocumentError, Limits, parse_yaml
from ._errors import ConfigurationError
from ._http import scalar_text

_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
# OpenAPI documents are larger than workflows; they come from the document's author, not from request data.
_LIMITS = Limits(max_bytes=64 * 1024 * 1024, max_nodes=5_000_000, max_depth=256, max_aliases=10_000)
_SEPARATORS = {"csv": ",", "ssv": " ", "tsv": "\t", "pipes": "|"}


def parse_document(content: bytes, location: str) -> OpenApiDocument:
    """Parse JSON or YAML; ConfigurationError unless it is a Swagger 2.0 or OpenAPI 3.x document."""
    try:
        spec = orjson.loads(content)
    except orjson.JSONDecodeError:
        try:
            spec = parse_yaml(content, _LIMITS).definition
        except DocumentError as exc:
            raise ConfigurationError("Invalid OpenAPI document", detail=f"{location}: {exc}") from None
    if not isinstance(spec, dict) or not (str(spec.get("swagger", "")).startswith("2") or "openapi" in spec):
        raise ConfigurationError("Invalid OpenAPI document", detail=f"{location} is not Swagger 2.0 or OpenAPI 3")
    return OpenApiDocument(spec, location)


@dataclass(frozen=True, slots=True)
class HttpParts:
    """A request built from an operation: everything `executor._http.Request` needs but credentials."""

    method: str
    url: str
    query: list[tuple[str, str]] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)
    body: Any = None


class OpenApiDocument:
    """A parsed document and where it was loaded from."""

    def __init__(self, spec: dict[str, Any], location: str) -> None:
        self.spec = spec
        self.location = location
        self.swagger = "swagger" in spec

    def request(self, operation_id: str, values: Mapping[str, Any]) -> HttpParts:
        """The request for `operation_id` with `values` routed by the document."""
        path, method, path_item, operation = self._find(operation_id)
        builder = _Builder(self, path, method, values)
        for parameter in self._parameters(path_item, operation):
            builder.add(parameter)
        builder.finish_body(self._body_name(path_item, operation))
        builder.headers.setdefault("Accept", self._accept(operation))
        return builder.parts(self._base_url(path_item, operation))

    def _find(self, operation_id: str) -> tuple[str, str, dict[str, Any], dict[str, Any]]:
        for path, raw_item in (self.spec.get("paths") or {}).items():
            item = self.deref(raw_item)
            for method in _METHODS:
                operation = item.get(method)
                if isinstance(operation, dict) and operation.get("operationId") == operation_id:
                    return path, method, item, operation
        raise ConfigurationError("Unknown operationId", detail=f"{operation_id!r} is not in {self.location}")

    def deref(self, node: Any) -> Any:
        """Follow local `$ref`s (`#/…`); a remote one is a configuration error."""
        seen = 0
        while isinstance(node, dict) and isinstance(node.get("$ref"), str):
            ref = node["$ref"]
            if not ref.startswith("#/") or seen > 32:
                raise ConfigurationError("Unsupported OpenAPI reference", detail=f"{ref!r} in {self.location}")
            node = self.spec
            for raw_token in ref[2:].split("/"):
                token = raw_token.replace("~1", "/").replace("~0", "~")
                node = node.get(token) if isinstance(node, dict) else None
            seen += 1
        return node

    def _parameters(self, path_item: dict[str, Any], operation: dict[str, Any]) -> list[dict[str, Any]]:
        merged: dict[tuple[str, str], dict[str, Any]] = {}
        for raw in [*(path_item.get("parameters") or []), *(operation.get("parameters") or [])]:
            parameter = self.deref(raw)
            if isinstance(parameter, dict) and "name" in parameter:
                merged[(parameter["name"], parameter.get("in", ""))] = parameter
        return list(merged.values())

    def _body_name(self, path_item: dict[str, Any], operation: dict[str, Any]) -> str | None:
        if not self.swagger:
            return "body" if "requestBody" in operation else None
        return next((p["name"] for p in self._parameters(path_item, operation) if p.get("in") == "body"), None)

    def _accept(self, operation: dict[str, Any]) -> str:
        if self.swagger:
            offered = list(operation.get("produces") or self.spec.get("produces") or [])
        else:
            offered = [
                t for r in (operation.get("responses") or {}).values() for t in (self.deref(r) or {}).get("content", {})
            ]
        return "application/json" if not offered or "application/json" in offered else str(offered[0])

    def _base_url(self, path_item: dict[str, Any], operation: dict[str, Any]) -> str:
        if self.swagger:
            return self._swagger_base()
        servers = operation.get("servers") or path_item.get("servers") or self.spec.get("servers") or [{"url": "/"}]
        server = servers[0]
        url = str(server.get("url", "/"))
        for name, variable in (server.get("variables") or {}).items():
            url = url.replace("{" + name + "}", str(variable.get("default", "")))
        return urljoin(self.location, url).rstrip("/")

    def _swagger_base(self) -> str:
        where = urlparse(self.location)
        schemes = [str(s) for s in self.spec.get("schemes") or []] or [where.scheme]
        scheme = where.scheme if where.scheme in schemes else schemes[0]
        host = self.spec.get("host") or where.netloc
        if not host or scheme not in ("http", "https"):
            raise ConfigurationError("OpenAPI document names no server", detail=f"{self.location} has no host")
        return f"{scheme}://{host}{self.spec.get('basePath') or ''}".rstrip("/")


class _Builder:
    """Routes parameter values into the parts of a request."""

    def __init__(self, document: OpenApiDocument, path: str, method: str, values: Mapping[str, Any]) -> None:
        self.document = document
        self.path = path
        self.method = method
        self.values = values
        self.used: set[str] = set()
        self.query: list[tuple[str, str]] = []
        self.headers: dict[str, str] = {}
        self.cookies: list[str] = []
        self.form: dict[str, Any] = {}
        self.body: Any = None

    def add(self, parameter: dict[str, Any]) -> None:
        name, where = str(parameter["name"]), parameter.get("in")
        if name not in self.values or self.values[name] is None:
            if parameter.get("required") and where != "body":
                raise ConfigurationError("Missing parameter", detail=f"{where} parameter {name!r} is required")
            return
        value = self.values[name]
        self.used.add(name)
        if where == "path":
            self.path = self.path.replace("{" + name + "}", quote(_joined(value, ","), safe=""))
        elif where == "query":
            self.query.extend(_query(name, value, parameter, self.document.swagger))
        elif where == "header":
            self.headers[name] = _joined(value, ",")
        elif where == "cookie":
            self.cookies.append(f"{name}={_joined(value, ',')}")
        elif where == "formData":
            self.form[name] = value
        elif where == "body":
            self.body = value

    def finish_body(self, body_name: str | None) -> None:
        if self.form:
            self.body = self.form
            self.headers["Content-Type"] = "application/x-www-form-urlencoded"
            return
        if body_name is not None and body_name in self.values and body_name not in self.used:
            self.body = self.values[body_name]
            self.used.add(body_name)
        rest = {k: v for k, v in self.values.items() if k not in self.used}
        if self.body is None and body_name is not None and rest:
            self.body = rest

    def parts(self, base: str) -> HttpParts:
        if self.cookies:
            self.headers["Cookie"] = "; ".join(self.cookies)
        return HttpParts(self.method, base + self.path, self.query, self.headers, self.body)


def _joined(value: Any, separator: str) -> str:
    return separator.join(scalar_text(v) for v in value) if isinstance(value, list) else scalar_text(value)


def _query(name: str, value: Any, parameter: Mapping[str, Any], swagger: bool) -> list[tuple[str, str]]:
    if not isinstance(value, list):
        return [(name, scalar_text(value))]
    if swagger:
        fmt = parameter.get("collectionFormat", "csv")
        repeat, separator = fmt == "multi", _SEPARATORS.get(fmt, ",")
    else:
        style = parameter.get("style", "form")
        repeat = bool(parameter.get("explode", style == "form"))
        separator = {"spaceDelimited": " ", "pipeDelimited": "|"}.get(style, ",")
    if repeat:
        return [(name, scalar_text(v)) for v in value]
    return [(name, _joined(value, separator))]
