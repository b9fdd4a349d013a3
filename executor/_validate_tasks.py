"""The DSL's tasks: every task type of the official schema, the task base, and task lists.

`TASK` picks the task type by the key that names it (`set`, `call`, …) and `call` tasks by the value of `call`,
where the schema tries every `oneOf` branch; a document is accepted exactly when one branch would match.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ._validate_base import (
    ANY,
    BOOL,
    INT,
    OBJECT,
    STR,
    Arr,
    ByType,
    Int,
    Issues,
    Lazy,
    MapOf,
    Named,
    Node,
    Obj,
    Str,
    Variants,
    exactly_one,
)
from ._validate_defs import (
    CONTAINER_LIFETIME,
    DURATION,
    ENDPOINT,
    ERROR,
    ERROR_FILTER,
    EVENT_CONSUMPTION_STRATEGY,
    EVENT_PROPERTIES,
    EXPORT,
    EXTERNAL_RESOURCE,
    HOSTNAME,
    INPUT,
    OUTPUT,
    REFERENCEABLE_AUTHENTICATION,
    RETRY_OR_NAME,
    RUNTIME_EXPRESSION,
    STRING_MAP_OR_EXPRESSION,
    TIMEOUT_OR_NAME,
    one_key,
)

TASK_LIST = Named(Lazy(lambda: TASK), what="task", unique=True)

_TASK_BASE: dict[str, Node] = {
    "if": STR,
    "input": INPUT,
    "output": OUTPUT,
    "export": EXPORT,
    "timeout": TIMEOUT_OR_NAME,
    # Any string: `continue`, `exit`, `end` or the name of a task in the same list.
    "then": STR,
    "metadata": OBJECT,
}


def _task(required: tuple[str, ...], props: Mapping[str, Node]) -> Obj:
    """A task type: the task base plus its own properties, nothing else."""
    return Obj({**_TASK_BASE, **props}, required=required)


def _call(kind: str, arguments: Node) -> Obj:
    """A built-in `call: <kind>` task whose `with` holds `arguments`."""
    return _task(("call", "with"), {"call": Str(enum=(kind,)), "with": arguments})


_OUTPUT_FORMAT = Str(enum=("raw", "content", "response"))
_HTTP = Obj(
    {
        "method": STR,
        "endpoint": ENDPOINT,
        "headers": STRING_MAP_OR_EXPRESSION,
        "body": ANY,
        "query": STRING_MAP_OR_EXPRESSION,
        "output": _OUTPUT_FORMAT,
        "redirect": BOOL,
    },
    required=["method", "endpoint"],
)
_OPENAPI = Obj(
    {
        "document": EXTERNAL_RESOURCE,
        "operationId": STR,
        "parameters": OBJECT,
        "authentication": REFERENCEABLE_AUTHENTICATION,
        "output": _OUTPUT_FORMAT,
        "redirect": BOOL,
    },
    required=["document", "operationId"],
)
_GRPC_SERVICE = Obj(
    {
        "name": STR,
        "host": Str(HOSTNAME, hint="a host name"),
        "port": Int(0, 65535),
        "authentication": REFERENCEABLE_AUTHENTICATION,
    },
    required=["name", "host"],
)
_GRPC = Obj(
    {"proto": EXTERNAL_RESOURCE, "service": _GRPC_SERVICE, "method": STR, "arguments": OBJECT},
    required=["proto", "service", "method"],
)

_ITERATOR = Obj({"item": STR, "at": STR, "do": TASK_LIST, "output": OUTPUT, "export": EXPORT})
_CONSUME_FOR = {"for": DURATION}
_CONSUMPTION = Variants(
    {
        "amount": one_key("amount", INT, **_CONSUME_FOR),
        "while": one_key("while", RUNTIME_EXPRESSION, **_CONSUME_FOR),
        "until": one_key("until", RUNTIME_EXPRESSION, **_CONSUME_FOR),
    },
    label="message consumption policy",
)
_ASYNCAPI_PROTOCOLS = [
    "amqp",
    "amqp1",
    "anypointmq",
    "googlepubsub",
    "http",
    "ibmmq",
    "jms",
    "kafka",
    "mercure",
    "mqtt",
    "mqtt5",
    "nats",
    "pulsar",
    "redis",
    "sns",
    "solace",
    "sqs",
    "stomp",
    "ws",
]
_ASYNCAPI = Obj(
    {
        "document": EXTERNAL_RESOURCE,
        "channel": STR,
        "operation": STR,
        "server": Obj({"name": STR, "variables": OBJECT}, required=["name"]),
        "protocol": Str(enum=_ASYNCAPI_PROTOCOLS),
        "message": Obj({"payload": OBJECT, "headers": OBJECT}),
        "subscription": Obj(
            {"filter": RUNTIME_EXPRESSION, "consume": _CONSUMPTION, "foreach": _ITERATOR},
            required=["consume"],
        ),
        "authentication": REFERENCEABLE_AUTHENTICATION,
    },
    required=["document"],
    rules=[exactly_one("operation", "channel"), exactly_one("message", "subscription")],
)

_A2A_METHODS = [
    "message/send",
    "message/stream",
    "tasks/get",
    "tasks/list",
    "tasks/cancel",
    "tasks/resubscribe",
    "tasks/pushNotificationConfig/set",
    "tasks/pushNotificationConfig/get",
    "tasks/pushNotificationConfig/list",
    "tasks/pushNotificationConfig/delete",
    "agent/getAuthenticatedExtendedCard",
]
_A2A = Obj(
    {
        "agentCard": EXTERNAL_RESOURCE,
        "server": ENDPOINT,
        "method": Str(enum=_A2A_METHODS),
        "parameters": ByType(MapOf(min_props=1), STR),
    },
    required=["method"],
)

_MCP_METHODS = [
    "tools/list",
    "tools/call",
    "prompts/list",
    "prompts/get",
    "resources/list",
    "resources/read",
    "resources/templates/list",
]
_STRING_MAP = MapOf(STR)
# The schema leaves MCP's objects open (no `unevaluatedProperties`), and asks `client` for an undeclared `version`.
_MCP_TRANSPORT = Obj(
    {
        "http": Obj({"endpoint": ENDPOINT, "headers": _STRING_MAP}, required=["endpoint"], closed=False),
        "stdio": Obj(
            {"command": STR, "arguments": Arr(STR), "environment": _STRING_MAP},
            required=["command"],
            closed=False,
        ),
        "options": _STRING_MAP,
    },
    closed=False,
    rules=[exactly_one("http", "stdio")],
)
_MCP = Obj(
    {
        "protocolVersion": STR,
        "method": Str(enum=_MCP_METHODS),
        "parameters": ByType(OBJECT, STR),
        "timeout": DURATION,
        "transport": _MCP_TRANSPORT,
        "client": Obj({"name": STR, "description": STR}, required=["name", "version"], closed=False),
    },
    required=["method", "transport"],
    closed=False,
)

_CALLS: dict[str, Obj] = {
    "http": _call("http", _HTTP),
    "openapi": _call("openapi", _OPENAPI),
    "grpc": _call("grpc", _GRPC),
    "asyncapi": _call("asyncapi", _ASYNCAPI),
    "a2a": _call("a2a", _A2A),
    "mcp": _call("mcp", _MCP),
}
_CALL_FUNCTION = _task(("call",), {"call": STR, "with": OBJECT})


class _CallTask:
    """A `call` task: the value of `call` picks a built-in protocol, anything else names a function."""

    kind = expects = "object"

    def check(self, value: Any, ptr: str, out: Issues) -> None:
        """Check against the protocol's definition, or the custom-function one."""
        call = value.get("call")
        schema = _CALLS.get(call, _CALL_FUNCTION) if isinstance(call, str) else _CALL_FUNCTION
        schema.check(value, ptr, out)


# `arguments` became argv (a string array) in DSL 1.0.3; documents written for 1.0.0-1.0.2 use a map.
_ARGUMENTS = ByType(Arr(STR), OBJECT, expects="array of strings (or, before DSL 1.0.3, an object)")
_CONTAINER = Obj(
    {
        "image": STR,
        "name": STR,
        "command": STR,
        "ports": OBJECT,
        "volumes": OBJECT,
        "environment": OBJECT,
        "stdin": STR,
        "arguments": Arr(STR),
        "lifetime": CONTAINER_LIFETIME,
        "pullPolicy": Str(enum=("ifNotPresent", "always", "never")),
    },
    required=["image"],
)
_SCRIPT_PROPS: dict[str, Node] = {"language": STR, "stdin": STR, "arguments": _ARGUMENTS, "environment": OBJECT}
_SCRIPT = Variants(
    {
        "code": Obj(_SCRIPT_PROPS | {"code": STR}, required=["language", "code"]),
        "source": Obj(_SCRIPT_PROPS | {"source": EXTERNAL_RESOURCE}, required=["language", "source"]),
    },
    label="script",
)
_SHELL = Obj({"command": STR, "stdin": STR, "arguments": _ARGUMENTS, "environment": OBJECT}, required=["command"])
_SUBFLOW = Obj(
    {"namespace": STR, "name": STR, "version": STR, "input": OBJECT},
    required=["namespace", "name", "version"],
)
_RUN_COMMON: dict[str, Node] = {"await": BOOL, "return": Str(enum=("stdout", "stderr", "code", "all", "none"))}
_RUN = Variants(
    {
        name: one_key(name, node, **_RUN_COMMON)
        for name, node in (("container", _CONTAINER), ("script", _SCRIPT), ("shell", _SHELL), ("workflow", _SUBFLOW))
    },
    label="run",
)

_CATCH = Obj(
    {
        "errors": Obj({"with": ERROR_FILTER}, closed=False),
        "as": STR,
        "when": STR,
        "exceptWhen": STR,
        "retry": RETRY_OR_NAME,
        "do": TASK_LIST,
    }
)
_EMIT = Obj(
    {"event": Obj({"with": Obj(EVENT_PROPERTIES, required=["source", "type"], closed=False)}, closed=False)},
    required=["event"],
)
_FOR = Obj({"each": STR, "in": STR, "at": STR}, required=["in"])
_SWITCH_CASE = Obj({"when": STR, "then": STR}, required=["then"])
_SET = ByType(MapOf(min_props=1), STR, expects="object or runtime expression string")
_ERROR_OR_NAME = ByType(ERROR, Str(expects="name of a reusable error"))
_LISTEN = Obj({"to": EVENT_CONSUMPTION_STRATEGY, "read": Str(enum=("data", "envelope", "raw"))}, required=["to"])


def _for_owns_do(found: list[str]) -> list[str]:
    """A `for` task has a `do` too: it is a `for` task, not a `do` task."""
    return [key for key in found if key != "do"] if "for" in found else found


TASK: Node = Variants(
    {
        "call": _CallTask(),
        "do": _task(("do",), {"do": TASK_LIST}),
        "emit": _task(("emit",), {"emit": _EMIT}),
        "for": _task(("for", "do"), {"for": _FOR, "while": STR, "do": TASK_LIST}),
        "fork": _task(("fork",), {"fork": Obj({"branches": TASK_LIST, "compete": BOOL}, required=["branches"])}),
        "listen": _task(("listen",), {"listen": _LISTEN, "foreach": _ITERATOR}),
        "raise": _task(("raise",), {"raise": Obj({"error": _ERROR_OR_NAME}, required=["error"])}),
        "run": _task(("run",), {"run": _RUN}),
        "set": _task(("set",), {"set": _SET}),
        "switch": _task(("switch",), {"switch": Named(_SWITCH_CASE, what="switch case", min_items=1)}),
        "try": _task(("try", "catch"), {"try": TASK_LIST, "catch": _CATCH}),
        "wait": _task(("wait",), {"wait": DURATION}),
    },
    label="task",
    pick=_for_owns_do,
)
