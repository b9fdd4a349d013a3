"""Every property of the official schema is implemented, refused, or documented as having no run-time effect.

The table below names, for each property the schema defines (`<definition>:<path>`), the evidence: the module
that reads it (its name appears there as a string literal), a document using it that validation refuses as
`unsupported`, or why it is informational; a property of a `call` protocol is refused with its protocol or, once
the protocol runs, read by the protocol's modules. A property the schema gains, or an entry whose evidence is gone,
fails the test: nothing valid is silently ignored.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from executor import Executor, Limits, parse_yaml
from tests.conformance.ctk import SHARED
from tests.helpers import doc

SCHEMA = SHARED / "serverless-workflow" / "schema" / "workflow.yaml"
EXAMPLES = SHARED / "serverless-workflow" / "examples"
EXECUTOR = Path(__file__).resolve().parents[2] / "executor"


@dataclass(frozen=True)
class Reads:
    """The property is read by `module` (under executor/), as the literal `key` (default: its own name)."""

    module: str
    key: str | None = None


@dataclass(frozen=True)
class Refused:
    """A document using the property (an example file, or a body) is refused as unsupported at `path`."""

    document: str
    path: str


@dataclass(frozen=True)
class Informational:
    """The property documents the workflow and has no run-time effect in the spec (`why`)."""

    why: str


@dataclass(frozen=True)
class Protocol:
    """A property of one `call` protocol: refused with the protocol (`refused`), or, once the protocol runs, read
    by one of `modules` (as the literal `key`, default its own name) or informational there (`why`)."""

    refused: Refused
    modules: tuple[str, ...]
    key: str | None = None
    why: str | None = None


Evidence = Reads | Refused | Informational | Protocol

ASYNCAPI_DOC = Refused("call-asyncapi-publish.yaml", "/do/0/findPet")
MCP_DOC = Refused("call-mcp.yaml", "/do/0/publishMessageToSlack")
A2A_DOC = Refused(
    "do:\n  - ask:\n      call: a2a\n      with: {method: message/send, server: 'https://agent.example', "
    "parameters: {message: {role: user}}}\n",
    "/do/0/ask",
)
ASYNCAPI = Protocol(ASYNCAPI_DOC, ("tasks/_call_asyncapi.py", "_asyncapi.py"))
MCP = Protocol(MCP_DOC, ("tasks/_call_mcp.py",))
A2A = Protocol(A2A_DOC, ("tasks/_call_a2a.py",))
CONTAINER = Refused("run-container-cleanup-eventually.yaml", "/do/0/runContainer")
CATALOG = Refused(
    "use:\n  catalogs:\n    shared: {endpoint: 'https://catalog.example'}\ndo:\n  - c: {call: 'log:1.0.0@shared'}\n",
    "/do/0/c",
)
SCHEMA_RESOURCE = Refused(
    "do:\n  - s:\n      set: {a: 1}\n      input: {schema: {format: json, resource: {endpoint: 'https://s.example'}}}\n",
    "/do/0/s/input/schema",
)
OAUTH2_ONLY_TOKEN = Informational("the runner only obtains tokens; it never revokes or introspects them")
DOCUMENTATION = Informational("describes the document; readable as $workflow.definition, no run-time effect")

AUTH = "_auth.py"
HTTP = "tasks/_call_http.py"
OPENAPI = "tasks/_call_openapi.py"
GRPC = "tasks/_call_grpc.py"
PROCESS = "tasks/_run_process.py"
SUBFLOW = "tasks/_run_workflow.py"
MODEL = "_model.py"
RETRY = "tasks/try_.py"
EVENTS = "_events_match.py"
LISTEN = "tasks/listen.py"

HANDLED: Mapping[str, Evidence] = {
    **dict.fromkeys(
        [
            "asyncApiMessageConsumptionPolicy:amount",
            "asyncApiMessageConsumptionPolicy:for",
            "asyncApiMessageConsumptionPolicy:until",
            "asyncApiMessageConsumptionPolicy:while",
            "asyncApiOutboundMessage:headers",
            "asyncApiOutboundMessage:payload",
            "asyncApiServer:name",
            "asyncApiServer:variables",
            "asyncApiSubscription:consume",
            "asyncApiSubscription:filter",
            "asyncApiSubscription:foreach",
            "callTask:with.channel",
            "callTask:with.message",
            "callTask:with.operation",
            "callTask:with.protocol",
            "callTask:with.server",
            "callTask:with.subscription",
        ],
        ASYNCAPI,
    ),
    **dict.fromkeys(
        [
            "callTask:with.client",
            "callTask:with.client.name",
            "callTask:with.protocolVersion",
            "callTask:with.timeout",
            "callTask:with.transport",
            "callTask:with.transport.http",
            "callTask:with.transport.http.endpoint",
            "callTask:with.transport.http.headers",
            "callTask:with.transport.options",
            "callTask:with.transport.stdio",
            "callTask:with.transport.stdio.arguments",
            "callTask:with.transport.stdio.command",
            "callTask:with.transport.stdio.environment",
        ],
        MCP,
    ),
    "callTask:with.client.description": Protocol(
        MCP_DOC, ("tasks/_call_mcp.py",), why="describes the client to readers; MCP's handshake carries no description"
    ),
    "callTask:with.agentCard": A2A,
    **{f"authenticationPolicy:{key}": Reads(AUTH) for key in ("basic", "bearer", "digest", "oauth2", "oidc")},
    **{f"authenticationPolicy:{key}": Reads(AUTH) for key in ("basic.password", "basic.username")},
    **{f"authenticationPolicy:{key}": Reads(AUTH) for key in ("bearer.token", "digest.password", "digest.username")},
    "authenticationPolicy:oauth2.endpoints": Reads(AUTH),
    "authenticationPolicy:oauth2.endpoints.token": Reads(AUTH),
    "authenticationPolicy:oauth2.endpoints.introspection": OAUTH2_ONLY_TOKEN,
    "authenticationPolicy:oauth2.endpoints.revocation": OAUTH2_ONLY_TOKEN,
    **{
        f"oauth2AuthenticationProperties:{key}": Reads(AUTH)
        for key in (
            "actor",
            "audiences",
            "authority",
            "client",
            "client.assertion",
            "client.authentication",
            "client.id",
            "client.secret",
            "grant",
            "issuers",
            "password",
            "request",
            "request.encoding",
            "scopes",
            "subject",
            "username",
        )
    },
    "oauth2Token:token": Reads(AUTH),
    "oauth2Token:type": Reads(AUTH),
    "referenceableAuthenticationPolicy:use": Reads(AUTH),
    "secretBasedAuthenticationPolicy:use": Reads(AUTH),
    "callTask:call": Reads("tasks/call.py"),
    "callTask:with": Reads("tasks/call.py"),
    "callTask:with.arguments": Reads(GRPC),
    "callTask:with.authentication": Reads(OPENAPI),
    "callTask:with.body": Reads(HTTP),
    "callTask:with.document": Reads(OPENAPI),
    "callTask:with.endpoint": Reads(HTTP),
    "callTask:with.headers": Reads(HTTP),
    "callTask:with.method": Reads(HTTP),
    "callTask:with.operationId": Reads(OPENAPI),
    "callTask:with.output": Reads(HTTP),
    "callTask:with.parameters": Reads(OPENAPI),
    "callTask:with.proto": Reads(GRPC),
    "callTask:with.query": Reads(HTTP),
    "callTask:with.redirect": Reads(HTTP),
    "callTask:with.service": Reads(GRPC),
    "callTask:with.service.authentication": Reads(GRPC),
    "callTask:with.service.host": Reads(GRPC),
    "callTask:with.service.name": Reads(GRPC),
    "callTask:with.service.port": Reads(GRPC),
    "catalog:endpoint": CATALOG,
    "workflow:use.catalogs": CATALOG,
    "containerLifetime:after": CONTAINER,
    "containerLifetime:cleanup": CONTAINER,
    **{
        f"runTask:run.container{key}": CONTAINER
        for key in (
            "",
            ".arguments",
            ".command",
            ".environment",
            ".image",
            ".lifetime",
            ".name",
            ".ports",
            ".pullPolicy",
            ".stdin",
            ".volumes",
        )
    },
    "doTask:do": Reads("tasks/do_.py"),
    **{f"duration:{key}": Reads("_durations.py") for key in ("days", "hours", "milliseconds", "minutes", "seconds")},
    "emitTask:emit": Reads("tasks/emit.py"),
    "emitTask:emit.event": Reads("tasks/emit.py"),
    "emitTask:emit.event.with": Reads("tasks/emit.py"),
    "endpoint:authentication": Reads("_endpoint.py"),
    "endpoint:uri": Reads("_endpoint.py"),
    # An error object's fields, raised (`raise`, `use.errors`) and matched (`catch.errors.with`) by name.
    **{f"error:{key}": Reads("_errors.py") for key in ("detail", "instance", "status", "title", "type")},
    **{f"errorFilter:{key}": Reads("_errors.py") for key in ("instance", "status", "title", "type")},
    "errorFilter:details": Reads(RETRY),
    **{f"eventConsumptionStrategy:{key}": Reads(EVENTS) for key in ("all", "any", "one", "until")},
    "eventConsumptionStrategy:until.until": Reads(EVENTS),
    "eventFilter:correlate": Reads(EVENTS),
    "eventFilter:correlate.expect": Reads(EVENTS),
    "eventFilter:correlate.from": Reads(EVENTS),
    "eventFilter:with": Reads(EVENTS),
    # Emitted as given (string attributes checked there); matched by name in listen filters.
    **{
        f"eventProperties:{key}": Reads("tasks/emit.py")
        for key in ("datacontenttype", "dataschema", "id", "source", "subject", "time", "type")
    },
    "eventProperties:data": Reads(EVENTS),
    "export:as": Reads(MODEL),
    "export:schema": Reads(MODEL),
    "input:from": Reads(MODEL),
    "input:schema": Reads(MODEL),
    "output:as": Reads(MODEL),
    "output:schema": Reads(MODEL),
    **{f"extension:{key}": Reads(MODEL) for key in ("after", "before", "extend", "when")},
    "externalResource:endpoint": Reads(OPENAPI),
    "externalResource:name": Informational("names the resource for readers; the endpoint is what is fetched"),
    "forTask:do": Reads("tasks/for_.py"),
    "forTask:for": Reads("tasks/for_.py"),
    "forTask:for.at": Reads("tasks/for_.py"),
    "forTask:for.each": Reads("tasks/for_.py"),
    "forTask:for.in": Reads("tasks/for_.py"),
    "forTask:while": Reads("tasks/for_.py"),
    "forkTask:fork": Reads("tasks/fork.py"),
    "forkTask:fork.branches": Reads("tasks/fork.py"),
    "forkTask:fork.compete": Reads("tasks/fork.py"),
    "listenTask:foreach": Reads(LISTEN),
    "listenTask:listen": Reads(LISTEN),
    "listenTask:listen.read": Reads(LISTEN),
    "listenTask:listen.to": Reads(LISTEN),
    **{f"subscriptionIterator:{key}": Reads(LISTEN) for key in ("at", "do", "export", "item", "output")},
    "raiseTask:raise": Reads("tasks/raise_.py"),
    "raiseTask:raise.error": Reads("tasks/raise_.py"),
    **{
        f"retryPolicy:{key}": Reads(RETRY, key.rsplit(".", 1)[-1])
        for key in (
            "backoff",
            "backoff.constant",
            "backoff.exponential",
            "backoff.linear",
            "delay",
            "exceptWhen",
            "jitter",
            "jitter.from",
            "jitter.to",
            "limit",
            "limit.attempt",
            "limit.attempt.count",
            "limit.attempt.duration",
            "limit.duration",
            "when",
        )
    },
    "runTask:run": Reads("tasks/run.py"),
    "runTask:run.await": Reads(PROCESS),
    "runTask:run.return": Reads(PROCESS),
    **{
        f"runTask:run.{key}": Reads(PROCESS)
        for key in (
            "script",
            "script.arguments",
            "script.code",
            "script.environment",
            "script.language",
            "script.source",
            "script.stdin",
            "shell",
            "shell.arguments",
            "shell.command",
            "shell.environment",
            "shell.stdin",
        )
    },
    **{f"runTask:run.workflow{key}": Reads(SUBFLOW) for key in ("", ".input", ".name", ".namespace", ".version")},
    "schema:document": Reads(MODEL),
    "schema:format": Reads(MODEL),
    "schema:resource": SCHEMA_RESOURCE,
    "setTask:set": Reads("tasks/set_.py"),
    "switchTask:switch": Reads("tasks/switch.py"),
    "switchTask:switch.then": Reads("tasks/switch.py"),
    "switchTask:switch.when": Reads("tasks/switch.py"),
    **{f"taskBase:{key}": Reads(MODEL) for key in ("export", "if", "input", "output", "then", "timeout")},
    "taskBase:metadata": Informational("describes the task; readable as $task.definition, no run-time effect"),
    "timeout:after": Reads(MODEL),
    "tryTask:catch": Reads(RETRY),
    "tryTask:catch.as": Reads(RETRY),
    "tryTask:catch.do": Reads(RETRY),
    "tryTask:catch.errors": Reads(RETRY),
    "tryTask:catch.errors.with": Reads(RETRY),
    "tryTask:catch.exceptWhen": Reads(RETRY),
    "tryTask:catch.retry": Reads(RETRY),
    "tryTask:catch.when": Reads(RETRY),
    "tryTask:try": Reads(RETRY),
    "waitTask:wait": Reads("tasks/wait.py"),
    **{f"workflow:{key}": Reads(MODEL) for key in ("do", "document", "input", "output", "timeout", "use")},
    **{f"workflow:document.{key}": Reads(MODEL) for key in ("dsl", "name", "namespace", "version")},
    **{f"workflow:document.{key}": DOCUMENTATION for key in ("metadata", "summary", "tags", "title")},
    # A schedule is the caller's to honour: the runner starts at once and says so (a located warning).
    **{f"workflow:schedule{key}": Reads(MODEL, "schedule") for key in ("", ".after", ".cron", ".every", ".on")},
    "workflow:use.authentications": Reads(AUTH),
    "workflow:use.errors": Reads("tasks/raise_.py"),
    "workflow:use.extensions": Reads(MODEL),
    "workflow:use.functions": Reads(MODEL),
    "workflow:use.retries": Reads(RETRY),
    "workflow:use.secrets": Reads(MODEL),
    "workflow:use.timeouts": Reads(MODEL),
}

# Properties of the DSL reference that the 1.0.3 schema does not list (its top level is open).
BEYOND_SCHEMA: Mapping[str, Evidence] = {
    "workflow:evaluate": Reads(MODEL),
    "workflow:evaluate.language": Reads(MODEL),
    "workflow:evaluate.mode": Reads(MODEL),
}


def schema_properties() -> set[str]:
    """`<definition>:<dotted path>` of every property in the schema, following `$ref`s and alternatives."""
    limits = Limits(max_bytes=10_000_000, max_nodes=1_000_000, max_depth=256)
    schema: dict[str, Any] = parse_yaml(SCHEMA.read_text(), limits).definition
    found: set[str] = set()
    visited: set[str] = set()

    def walk(node: Any, owner: str, path: tuple[str, ...]) -> None:
        if not isinstance(node, dict):
            return
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            name = ref.rsplit("/", 1)[1]
            if name not in visited:
                visited.add(name)
                walk(schema["$defs"][name], name, ())
        for keyword in ("oneOf", "anyOf", "allOf"):
            for alternative in node.get(keyword, []):
                walk(alternative, owner, path)
        for keyword in ("items", "additionalProperties", "if", "then", "else", "not"):
            walk(node.get(keyword), owner, path)
        for name, sub in (node.get("properties") or {}).items():
            found.add(f"{owner}:{'.'.join((*path, name))}")
            walk(sub, owner, (*path, name))

    walk(schema, "workflow", ())
    return found


def _evidence() -> Iterator[tuple[str, Evidence]]:
    yield from HANDLED.items()
    yield from BEYOND_SCHEMA.items()


def test_every_schema_property_has_evidence() -> None:
    """The table covers exactly the schema's properties: a new one (or a stale entry) fails."""
    properties = schema_properties()
    assert len(properties) > 200  # the walk found the schema's definitions, not just the top level
    assert sorted(properties - set(HANDLED)) == [], "schema properties with no evidence"
    assert sorted(set(HANDLED) - properties) == [], "table entries the schema does not define"


@pytest.mark.parametrize(("prop", "evidence"), [(p, e) for p, e in _evidence() if isinstance(e, Reads)])
def test_implemented_properties_are_read(prop: str, evidence: Reads) -> None:
    """The module named as implementing a property reads it (its name is a string literal there)."""
    key = evidence.key or prop.rsplit(":", 1)[1].rsplit(".", 1)[-1]
    source = (EXECUTOR / evidence.module).read_text()
    assert f'"{key}"' in source, f"{prop}: {evidence.module} does not read {key!r}"


# A protocol's document is refused only while the protocol does not run: `test_protocol_properties_are_refused_or_read`.
REFUSALS = sorted({e for e in HANDLED.values() if isinstance(e, Refused)}, key=lambda e: e.document)


def _refused(evidence: Refused) -> list[Any]:
    """The validation issues of the evidence's document."""
    if evidence.document.endswith(".yaml"):
        return Executor().validate((EXAMPLES / evidence.document).read_text())
    return Executor().validate(doc(evidence.document))


@pytest.mark.parametrize("evidence", REFUSALS, ids=[e.document.split("\n")[0] for e in REFUSALS])
def test_refused_properties_are_refused_as_unsupported(evidence: Refused) -> None:
    """A document using a refused construct fails validation as `unsupported`, at the construct."""
    text = (EXAMPLES / evidence.document).read_text() if evidence.document.endswith(".yaml") else doc(evidence.document)
    issues = Executor().validate(text)
    assert [(i.path, i.code) for i in issues if i.path == evidence.path] == [(evidence.path, "unsupported")], issues
    assert all(issue.code == "unsupported" for issue in issues), issues
    assert all(issue.message.startswith("not supported by this runtime") for issue in issues)


@pytest.mark.parametrize(("prop", "evidence"), [(p, e) for p, e in HANDLED.items() if isinstance(e, Protocol)])
def test_protocol_properties_are_refused_or_read(prop: str, evidence: Protocol) -> None:
    """A property of a `call` protocol: refused with its protocol, or read by the protocol's modules once it runs."""
    if any(issue.code == "unsupported" and issue.path == evidence.refused.path for issue in _refused(evidence.refused)):
        return
    if evidence.why is not None:
        return
    key = evidence.key or prop.rsplit(":", 1)[1].rsplit(".", 1)[-1]
    sources = [(EXECUTOR / m).read_text() for m in evidence.modules if (EXECUTOR / m).is_file()]
    assert sources, f"{prop}: the protocol runs, but none of {evidence.modules} exists"
    assert any(f'"{key}"' in source for source in sources), f"{prop}: no module of the protocol reads {key!r}"


def test_informational_properties_say_why() -> None:
    """Each property with no run-time effect carries a reason."""
    reasons = [e.why for e in HANDLED.values() if isinstance(e, Informational)]
    assert reasons
    assert all(len(why) > 20 for why in reasons)
