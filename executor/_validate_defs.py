"""The DSL's shared definitions (`$defs` of the official schema) that contain no task lists.

Names follow the schema's `$defs`; each is a schema node from `_validate_base`. Regular expressions are the
schema's, anchored with `\\Z` (Python's `$` also matches before a final newline, JSON Schema's does not).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from ._validate_base import (
    ANY,
    INT,
    OBJECT,
    STR,
    Arr,
    ByType,
    Issue,
    Issues,
    Lazy,
    MapOf,
    Node,
    Obj,
    Str,
    Variants,
)

_SEMVER = re.compile(
    r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?"
    r"(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?\Z",
    re.ASCII,
)
_LABEL = re.compile(r"^[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?\Z")
HOSTNAME = re.compile(r"^[a-zA-Z0-9](?:[a-zA-Z0-9-.]{0,61}[a-zA-Z0-9])?\Z")
_EXPRESSION = re.compile(r"^\s*\$\{.+\}\s*\Z")
_URI = re.compile(r"[A-Za-z][A-Za-z0-9+\-.]*://")
_ISO_DURATION = re.compile(
    r"^P(?!\Z)(\d+(?:\.\d+)?Y)?(\d+(?:\.\d+)?M)?(\d+(?:\.\d+)?W)?(\d+(?:\.\d+)?D)?"
    r"(T(?=\d)(\d+(?:\.\d+)?H)?(\d+(?:\.\d+)?M)?(\d+(?:\.\d+)?S)?)?\Z",
    re.ASCII,
)
# The schema says `format: date-time` / `format: json-pointer`; formats are checked here as their RFCs define them.
_DATE_TIME = re.compile(
    r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})\Z",
    re.ASCII,
)
_JSON_POINTER = re.compile(r"^(/([^~/]|~[01])*)*\Z")

SEMVER = Str(_SEMVER, hint="a semantic version such as `1.0.0`")
LABEL = Str(_LABEL, hint="1 to 63 letters, digits or hyphens, starting and ending with a letter or digit")
RUNTIME_EXPRESSION = Str(_EXPRESSION, hint="a runtime expression `${ … }`", expects="runtime expression string")
URI_TEMPLATE = Str(_URI, hint="an absolute URI such as `https://example.com/{id}`", expects="URI string")
URI_OR_EXPRESSION = Str(_URI, _EXPRESSION, hint="an absolute URI or a runtime expression `${ … }`")
FROM_OR_AS = ByType(STR, OBJECT)
STRING_MAP_OR_EXPRESSION = ByType(MapOf(STR), RUNTIME_EXPRESSION)

_DURATION_UNITS = ("days", "hours", "minutes", "seconds", "milliseconds")
DURATION = ByType(
    Obj(dict.fromkeys(_DURATION_UNITS, INT), min_props=1),
    Str(_ISO_DURATION, _EXPRESSION, hint="an ISO 8601 duration such as `PT5S` or a runtime expression `${ … }`"),
    expects="duration (an object such as `{seconds: 5}`, an ISO 8601 string such as `PT5S`, or an expression)",
)


def one_key(key: str, node: Node, **props: Node) -> Obj:
    """A closed object whose property `key` is required (one case of a `Variants`)."""
    return Obj({key: node, **props}, required=[key])


def _secret_or(inline: Obj, label: str) -> Variants:
    """An auth scheme's settings: inline, or `{use: secretName}`."""
    secret = one_key("use", Str(min_len=1))
    return Variants({"use": secret}, label=label, default=inline)


_CREDENTIALS = Obj({"username": STR, "password": STR}, required=["username", "password"])
_OAUTH2_TOKEN = Obj({"token": STR, "type": STR}, required=["token", "type"])
_GRANTS = ("authorization_code", "client_credentials", "password", "refresh_token")
_CLIENT_AUTH = ("client_secret_basic", "client_secret_post", "client_secret_jwt", "private_key_jwt", "none")
_OAUTH2_PROPS: dict[str, Node] = {
    "authority": URI_TEMPLATE,
    "grant": Str(enum=(*_GRANTS, "urn:ietf:params:oauth:grant-type:token-exchange")),
    "client": Obj({"id": STR, "secret": STR, "assertion": STR, "authentication": Str(enum=_CLIENT_AUTH)}),
    "request": Obj(
        {"encoding": Str(enum=("application/x-www-form-urlencoded", "application/json"))},
        closed=False,
    ),
    "issuers": Arr(STR),
    "scopes": Arr(STR),
    "audiences": Arr(STR),
    "username": STR,
    "password": STR,
    "subject": _OAUTH2_TOKEN,
    "actor": _OAUTH2_TOKEN,
}
_OAUTH2_ENDPOINTS = Obj(dict.fromkeys(("token", "revocation", "introspection"), STR), closed=False)
_SCHEMES: dict[str, Node] = {
    "basic": _secret_or(_CREDENTIALS, "basic authentication"),
    "bearer": _secret_or(Obj({"token": STR}, required=["token"]), "bearer authentication"),
    "digest": _secret_or(_CREDENTIALS, "digest authentication"),
    "oauth2": _secret_or(Obj({**_OAUTH2_PROPS, "endpoints": _OAUTH2_ENDPOINTS}), "oauth2 authentication"),
    "oidc": _secret_or(Obj(_OAUTH2_PROPS), "oidc authentication"),
}
# `use.authentications` entries are not closed in the schema (no `unevaluatedProperties`); inline ones are.
AUTHENTICATION_POLICY = Variants(
    {name: Obj({name: node}, required=[name], closed=False) for name, node in _SCHEMES.items()},
    label="authentication policy",
)
REFERENCEABLE_AUTHENTICATION = Variants(
    {"use": one_key("use", Str(min_len=1))} | {name: one_key(name, node) for name, node in _SCHEMES.items()},
    label="authentication",
)

ENDPOINT = ByType(
    URI_OR_EXPRESSION,
    Obj({"uri": URI_OR_EXPRESSION, "authentication": REFERENCEABLE_AUTHENTICATION}, required=["uri"]),
    expects="endpoint (a URI, a runtime expression or an object with `uri`)",
)
EXTERNAL_RESOURCE = Obj({"name": STR, "endpoint": ENDPOINT}, required=["endpoint"])
CATALOG = Obj({"endpoint": ENDPOINT}, required=["endpoint"])

SCHEMA = Variants(
    {"document": one_key("document", ANY, format=STR), "resource": one_key("resource", EXTERNAL_RESOURCE, format=STR)},
    label="schema",
)
INPUT = Obj({"schema": SCHEMA, "from": FROM_OR_AS})
OUTPUT = Obj({"schema": SCHEMA, "as": FROM_OR_AS})
EXPORT = OUTPUT
TIMEOUT = Obj({"after": DURATION}, required=["after"])
TIMEOUT_OR_NAME = ByType(TIMEOUT, Str(expects="name of a reusable timeout"))

ERROR = Obj(
    {
        "type": URI_OR_EXPRESSION,
        "status": INT,
        "instance": Str(_JSON_POINTER, _EXPRESSION, hint="a JSON Pointer such as `/do/0/task` or an expression"),
        "title": STR,
        "detail": STR,
    },
    required=["type", "status"],
)
# Open in the schema: post-1.0.3 documents spell `detail` where earlier ones spelled `details`.
ERROR_FILTER = Obj(
    {"type": STR, "status": INT, "instance": STR, "title": STR, "details": STR},
    closed=False,
    min_props=1,
)

_BACKOFFS = ("constant", "exponential", "linear")
RETRY_POLICY = Obj(
    {
        "when": STR,
        "exceptWhen": STR,
        "delay": DURATION,
        "backoff": Variants({name: one_key(name, OBJECT) for name in _BACKOFFS}, label="backoff"),
        "limit": Obj({"attempt": Obj({"count": INT, "duration": DURATION}), "duration": DURATION}),
        "jitter": Obj({"from": DURATION, "to": DURATION}, required=["from", "to"]),
    }
)
RETRY_OR_NAME = ByType(RETRY_POLICY, Str(expects="name of a reusable retry policy"))

EVENT_PROPERTIES: dict[str, Node] = {
    "id": STR,
    "source": URI_OR_EXPRESSION,
    "type": STR,
    "time": Str(_DATE_TIME, _EXPRESSION, hint="an RFC 3339 date-time or a runtime expression `${ … }`"),
    "subject": STR,
    "datacontenttype": STR,
    "dataschema": URI_OR_EXPRESSION,
    "data": ANY,
}
_CORRELATION = Obj({"from": STR, "expect": STR}, required=["from"], closed=False)
EVENT_FILTER = Obj(
    {"with": Obj(EVENT_PROPERTIES, closed=False, min_props=1), "correlate": MapOf(_CORRELATION)},
    required=["with"],
)


def _consumption_strategy(nested: bool) -> Variants:
    """`eventConsumptionStrategy`; the one inside `any.until` may not have an `until` of its own."""
    until: dict[str, Node] = {}
    if not nested:
        until["until"] = ByType(STR, Lazy(lambda: _consumption_strategy(nested=True)))
    return Variants(
        {
            "all": one_key("all", Arr(EVENT_FILTER)),
            "any": one_key("any", Arr(EVENT_FILTER), **until),
            "one": one_key("one", EVENT_FILTER),
        },
        label="event consumption strategy",
    )


EVENT_CONSUMPTION_STRATEGY = _consumption_strategy(nested=False)


def _lifetime_after(value: Mapping[str, Any], ptr: str, out: Issues) -> None:
    """`after` is required when `cleanup` is `eventually`, and forbidden otherwise (the schema's if/then/else)."""
    eventually = value.get("cleanup") == "eventually"
    if eventually and "after" not in value:
        out.append(Issue(path=ptr, message="missing required property `after` (needed when `cleanup` is `eventually`)"))
    elif not eventually and "after" in value and "cleanup" in value:
        out.append(Issue(path=f"{ptr}/after", message="`after` is only allowed when `cleanup` is `eventually`"))


CONTAINER_LIFETIME = Obj(
    {"cleanup": Str(enum=("always", "never", "eventually")), "after": DURATION},
    required=["cleanup"],
    rules=[_lifetime_after],
)

DOCUMENT = Obj(
    {
        "dsl": SEMVER,
        "namespace": LABEL,
        "name": LABEL,
        "version": SEMVER,
        "title": STR,
        "summary": STR,
        "tags": OBJECT,
        "metadata": OBJECT,
    },
    required=["dsl", "namespace", "name", "version"],
)
