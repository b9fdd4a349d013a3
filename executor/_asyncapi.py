"""AsyncAPI 2.6 and 3.0 documents: find the channel or operation a `call: asyncapi` names, and the server to use.

- 2.6: `channel` names a key of `channels`; a message publishes through its `publish` operation, a subscription
  consumes through its `subscribe` operation (a channel that declares operations must declare the one used). 3.0:
  `operation` names a key of `operations`, whose `action` must be `send` to publish and `receive` to consume; its
  `channel` (a `$ref`) gives the address. Local `$ref`s (`#/…`) are followed; others are refused.
- Server: the one named by `server.name`, else the first of the channel's servers (all servers when the channel
  names none) whose protocol is `protocol`, else the first. Its URL (2.6 `url`, 3.0 `host` + `pathname`) has its
  `{variables}` replaced by the call's `server.variables`, then the document's defaults.
- AMQP bindings (`bindings.amqp` of the channel): `is: queue` names a queue (`queue.name`, default the address);
  `is: routingKey` (the default) publishes to `exchange.name` with the address as routing key — with no exchange
  name the address is a queue on the default exchange.
- Correlation id: the message's `correlationId.location` (`$message.header#/…` or `$message.payload#/…`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit

from ._errors import ConfigurationError

SUPPORTED_PROTOCOLS = frozenset({"amqp", "amqps", "http", "https"})
_MAX_REF_DEPTH = 32


@dataclass(frozen=True, slots=True)
class Server:
    """The chosen server: its name, protocol, host, port and path (the AMQP virtual host, or an HTTP base path)."""

    name: str
    protocol: str
    host: str
    port: int | None
    path: str


@dataclass(frozen=True, slots=True)
class Target:
    """Where the call goes: the address, the server, the AMQP binding and the correlation id's location."""

    address: str
    server: Server
    amqp: Mapping[str, Any] = field(default_factory=dict)
    http: Mapping[str, Any] = field(default_factory=dict)
    correlation: str | None = None


def major_version(document: Any) -> int:
    """2 or 3; anything else is a configuration error."""
    version = str(document.get("asyncapi", "")) if isinstance(document, Mapping) else ""
    if version.startswith("2."):
        return 2
    if version.startswith("3."):
        return 3
    raise ConfigurationError("Not an AsyncAPI document", detail=f"`asyncapi` version {version or '(missing)'!r}")


def target(
    document: Mapping[str, Any],
    *,
    channel: str | None,
    operation: str | None,
    publish: bool,
    server_name: str | None,
    protocol: str | None,
    variables: Mapping[str, Any],
) -> Target:
    """Resolve the call's channel or operation and its server in `document`."""
    if major_version(document) == 2:
        if channel is None:
            raise ConfigurationError(
                "AsyncAPI 2.x needs `channel`", detail="the document uses channels, not operations"
            )
        address, node, messages, servers = _v2(document, channel, publish)
    else:
        if operation is None:
            raise ConfigurationError("AsyncAPI 3.x needs `operation`", detail="the document defines operations")
        address, node, messages, servers = _v3(document, operation, publish)
    bindings = resolve(document, node.get("bindings") or {})
    return Target(
        address=address,
        server=_server(document, servers, server_name, protocol, variables),
        amqp=resolve(document, bindings.get("amqp") or {}),
        http=resolve(document, bindings.get("http") or {}),
        correlation=_correlation(document, messages),
    )


def _v2(document: Mapping[str, Any], name: str, publish: bool) -> tuple[str, Mapping[str, Any], list[Any], list[str]]:
    channels = document.get("channels") or {}
    if name not in channels:
        raise ConfigurationError("AsyncAPI channel not found", detail=f"{name!r}; the document has {_names(channels)}")
    node = resolve(document, channels[name])
    kind = "publish" if publish else "subscribe"
    if ("publish" in node or "subscribe" in node) and kind not in node:
        raise ConfigurationError("AsyncAPI operation not found", detail=f"channel {name!r} has no `{kind}` operation")
    operation = resolve(document, node.get(kind) or {})
    message = resolve(document, operation.get("message") or {})
    messages = [resolve(document, m) for m in message.get("oneOf") or [message]]
    return name, node, messages, [str(s) for s in node.get("servers") or []]


def _v3(document: Mapping[str, Any], name: str, publish: bool) -> tuple[str, Mapping[str, Any], list[Any], list[str]]:
    operations = document.get("operations") or {}
    if name not in operations:
        raise ConfigurationError(
            "AsyncAPI operation not found", detail=f"{name!r}; the document has {_names(operations)}"
        )
    operation = resolve(document, operations[name])
    action = "send" if publish else "receive"
    if operation.get("action") != action:
        raise ConfigurationError(
            "AsyncAPI operation mismatch",
            detail=f"{name!r} is a `{operation.get('action')}` operation; a {'message' if publish else 'subscription'} "
            f"needs `{action}`",
        )
    reference = (operation.get("channel") or {}).get("$ref", "")
    node = resolve(document, operation.get("channel") or {})
    address = node.get("address") or str(reference).rsplit("/", 1)[-1]
    listed = operation.get("messages") or list((node.get("messages") or {}).values())
    servers = [str(s.get("$ref", "")).rsplit("/", 1)[-1] for s in node.get("servers") or []]
    return str(address), node, [resolve(document, m) for m in listed], servers


def _names(mapping: Mapping[str, Any]) -> str:
    return ", ".join(repr(k) for k in mapping) or "none"


def resolve(document: Mapping[str, Any], node: Any) -> Any:
    """Follow local `$ref`s (`#/a/b`) until a value that is not a reference."""
    for _ in range(_MAX_REF_DEPTH):
        if not (isinstance(node, Mapping) and "$ref" in node):
            return node
        node = _pointer(document, str(node["$ref"]))
    raise ConfigurationError("Invalid AsyncAPI reference", detail="references nest too deeply (a cycle?)")


def _pointer(document: Mapping[str, Any], ref: str) -> Any:
    if not ref.startswith("#"):
        raise ConfigurationError("Unsupported AsyncAPI reference", detail=f"{ref!r}: only local references are read")
    node: Any = document
    for token in ref[1:].lstrip("/").split("/") if ref not in ("#", "#/") else []:
        key = unquote(token).replace("~1", "/").replace("~0", "~")
        if isinstance(node, Mapping) and key in node:
            node = node[key]
        elif isinstance(node, list) and key.isdigit() and int(key) < len(node):
            node = node[int(key)]
        else:
            raise ConfigurationError("Invalid AsyncAPI reference", detail=f"{ref!r} points at nothing")
    return node


def _server(
    document: Mapping[str, Any],
    allowed: list[str],
    name: str | None,
    protocol: str | None,
    variables: Mapping[str, Any],
) -> Server:
    servers = document.get("servers") or {}
    candidates = [s for s in allowed if s in servers] if allowed else list(servers)
    if name is not None:
        if name not in servers:
            raise ConfigurationError(
                "AsyncAPI server not found", detail=f"{name!r}; the document has {_names(servers)}"
            )
        if allowed and name not in allowed:
            raise ConfigurationError("AsyncAPI server not allowed", detail=f"the channel is not on server {name!r}")
        chosen = name
    else:
        matching = [s for s in candidates if protocol is None or _protocol(servers[s]) == protocol]
        if not matching:
            wanted = f" with protocol {protocol!r}" if protocol else ""
            raise ConfigurationError("AsyncAPI server not found", detail=f"no server{wanted} for this channel")
        chosen = matching[0]
    return _locate(document, chosen, resolve(document, servers[chosen]), variables)


def _protocol(server: Mapping[str, Any]) -> str:
    return str(server.get("protocol", "")).lower()


def _locate(document: Mapping[str, Any], name: str, server: Mapping[str, Any], variables: Mapping[str, Any]) -> Server:
    protocol = _protocol(server)
    if protocol not in SUPPORTED_PROTOCOLS:
        raise ConfigurationError(
            "AsyncAPI protocol not supported by this runtime",
            detail=f"server {name!r} uses {protocol or '(none)'!r}; this runtime speaks amqp and http",
        )
    values = {k: (resolve(document, v) or {}).get("default") for k, v in (server.get("variables") or {}).items()}
    values |= dict(variables)
    if "url" in server:
        text = _fill(str(server["url"]), values)
        parts = urlsplit(text if "://" in text else f"{protocol}://{text}")
    else:
        text = _fill(f"{protocol}://{server.get('host', '')}{server.get('pathname', '')}", values)
        parts = urlsplit(text)
    if not parts.hostname:
        raise ConfigurationError("Invalid AsyncAPI server", detail=f"server {name!r} has no host")
    return Server(name, protocol, parts.hostname, parts.port, unquote(parts.path))


def _fill(text: str, values: Mapping[str, Any]) -> str:
    for key, value in values.items():
        if value is not None:
            text = text.replace("{" + str(key) + "}", str(value))
    if "{" in text:
        raise ConfigurationError("Invalid AsyncAPI server", detail=f"unset server variable in {text!r}")
    return text


def _correlation(document: Mapping[str, Any], messages: list[Any]) -> str | None:
    for message in messages:
        if isinstance(message, Mapping) and message.get("correlationId"):
            location = resolve(document, message["correlationId"]).get("location")
            return None if location is None else str(location)
    return None


def locate_value(location: str | None, headers: Mapping[str, Any], payload: Any) -> Any:
    """The value at a runtime expression like `$message.header#/id` (None when absent or unsupported)."""
    if not location or "#" not in location:
        return None
    source, _, pointer = location.partition("#")
    node: Any = (
        headers if source.strip() == "$message.header" else payload if source.strip() == "$message.payload" else None
    )
    for token in pointer.lstrip("/").split("/") if pointer.strip("/") else []:
        key = token.replace("~1", "/").replace("~0", "~")
        node = node.get(key) if isinstance(node, Mapping) else None
    return node
