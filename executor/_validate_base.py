"""Building blocks of the structural validator: `Issue` and small schema nodes that walk JSON-like data.

Each node checks one value and appends an `Issue` per problem to a list, never raising. The nodes mirror the JSON
Schema keywords the DSL schema uses, but pick `oneOf` branches by a discriminator (the value's JSON type, or which
key is present) instead of trying every branch: the result is the same for the DSL's schema, it is linear in the
size of the document, and the message can name what is wrong inside the branch the author meant.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True, slots=True, kw_only=True)
class Issue:
    """One problem found in a document.

    Attributes:
        path: JSON Pointer (RFC 6901) of the offending node, "" for the root.
        message: What is wrong, in words a workflow author understands.
        line: 1-based line of the node in the YAML text, when known.
        column: 1-based column of the node in the YAML text, when known.
        code: "invalid", "unsupported", "limit" or "syntax" for errors; "schedule" for the warning that a
            document's `schedule` is the caller's to honour.
    """

    path: str
    message: str
    line: int | None = None
    column: int | None = None
    code: str = "invalid"

    def to_dict(self) -> dict[str, Any]:
        """The issue as JSON: `path` and `message`, plus `line`/`column` only when they are known."""
        data: dict[str, Any] = {"path": self.path, "message": self.message}
        if self.line is not None:
            data["line"] = self.line
        if self.column is not None:
            data["column"] = self.column
        return data


Issues = list[Issue]


def issue_text(issue: Issue) -> str:
    """One issue as people read it: `path (line l, column c): message` (`/` for the root)."""
    where = f" (line {issue.line}, column {issue.column})" if issue.line is not None else ""
    return f"{issue.path or '/'}{where}: {issue.message}"


def describe_issues(issues: Sequence[Issue], limit: int = 20) -> str:
    """Issues as one line, `; `-separated, at most `limit` of them (then how many more)."""
    text = "; ".join(issue_text(issue) for issue in issues[:limit])
    return text + (f"; and {len(issues) - limit} more" if len(issues) > limit else "")


class Node(Protocol):
    """A schema node: `kind` is the JSON type it accepts ("any" for all), `expects` says it in words."""

    @property
    def kind(self) -> str: ...

    @property
    def expects(self) -> str: ...

    def check(self, value: Any, ptr: str, out: Issues) -> None: ...


def escape(key: str) -> str:
    """One JSON Pointer reference token for `key` (RFC 6901: `~` → `~0`, `/` → `~1`)."""
    key = key if isinstance(key, str) else str(key)  # data from Python callers may have non-string keys
    if "~" in key or "/" in key:
        return key.replace("~", "~0").replace("/", "~1")
    return key


def type_name(value: Any) -> str:
    """The JSON type of a Python value, as messages name it."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object" if isinstance(value, dict) else type(value).__name__


def is_integer(value: Any) -> bool:
    """True for JSON integers; like JSON Schema, a float with no fractional part counts and a boolean does not."""
    if isinstance(value, bool):
        return False
    return isinstance(value, int) or (isinstance(value, float) and value.is_integer())


def wrong_type(expected: str, value: Any, ptr: str, out: Issues) -> None:
    """Report that the value at `ptr` is not of the `expected` type."""
    out.append(Issue(path=ptr, message=f"expected {expected}, got {type_name(value)}"))


def quote(names: Sequence[str], conjunction: str = "or") -> str:
    """`a`, `b` or `c` — for messages listing property names."""
    quoted = [f"`{n}`" for n in names]
    return quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + f" {conjunction} " + quoted[-1]


class AnyValue:
    """Any JSON value (a schema of `{}` or no `type`)."""

    kind = "any"
    expects = "any value"

    def check(self, value: Any, ptr: str, out: Issues) -> None:
        """Accept everything."""


ANY = AnyValue()


class Str:
    """A string, optionally limited to an enum, kept out of a set of names, or matching one of some patterns."""

    __slots__ = ("_enum", "_forbid", "_hint", "_min_len", "_patterns", "expects")
    kind = "string"

    def __init__(
        self,
        *patterns: re.Pattern[str],
        hint: str = "",
        enum: Sequence[str] = (),
        forbid: Sequence[str] = (),
        min_len: int = 0,
        expects: str = "string",
    ) -> None:
        self._patterns = patterns
        self._hint = hint
        self._enum = frozenset(enum)
        self._forbid = frozenset(forbid)
        self._min_len = min_len
        self.expects = expects

    def check(self, value: Any, ptr: str, out: Issues) -> None:
        """Report a non-string, or a string outside the enum / forbidden / not matching."""
        if not isinstance(value, str):
            wrong_type(self.expects, value, ptr, out)
        elif self._enum and value not in self._enum:
            out.append(Issue(path=ptr, message=f"expected one of {quote(sorted(self._enum))}, got {value!r}"))
        elif value in self._forbid:
            out.append(Issue(path=ptr, message=f"{value!r} is not allowed here ({self._hint})"))
        elif len(value) < self._min_len:
            out.append(Issue(path=ptr, message=f"expected a string of at least {self._min_len} character(s)"))
        elif self._patterns and not any(p.match(value) for p in self._patterns):
            out.append(Issue(path=ptr, message=f"expected {self._hint}, got {value!r}"))


STR = Str()


class Int:
    """An integer, optionally within bounds."""

    __slots__ = ("_maximum", "_minimum")
    kind = expects = "integer"

    def __init__(self, minimum: int | None = None, maximum: int | None = None) -> None:
        self._minimum = minimum
        self._maximum = maximum

    def check(self, value: Any, ptr: str, out: Issues) -> None:
        """Report a non-integer or an integer out of bounds."""
        if not is_integer(value):
            wrong_type("integer", value, ptr, out)
        elif (self._minimum is not None and value < self._minimum) or (
            self._maximum is not None and value > self._maximum
        ):
            out.append(Issue(path=ptr, message=f"expected an integer from {self._minimum} to {self._maximum}"))


INT = Int()


class Bool:
    """A boolean."""

    kind = expects = "boolean"

    def check(self, value: Any, ptr: str, out: Issues) -> None:
        """Report a non-boolean."""
        if not isinstance(value, bool):
            wrong_type("boolean", value, ptr, out)


BOOL = Bool()


class Arr:
    """An array whose items all match `items`."""

    __slots__ = ("_items", "_min_items")
    kind = expects = "array"

    def __init__(self, items: Node = ANY, *, min_items: int = 0) -> None:
        self._items = items
        self._min_items = min_items

    def check(self, value: Any, ptr: str, out: Issues) -> None:
        """Report a non-array, a too-short array, and each bad item."""
        if not isinstance(value, list):
            wrong_type("array", value, ptr, out)
            return
        if len(value) < self._min_items:
            out.append(Issue(path=ptr, message=f"expected at least {self._min_items} item(s), got {len(value)}"))
        for index, item in enumerate(value):
            self._items.check(item, f"{ptr}/{index}", out)


class MapOf:
    """An object with arbitrary keys whose values all match `values` (`additionalProperties: <schema>`)."""

    __slots__ = ("_min_props", "_values")
    kind = expects = "object"

    def __init__(self, values: Node = ANY, *, min_props: int = 0) -> None:
        self._values = values
        self._min_props = min_props

    def check(self, value: Any, ptr: str, out: Issues) -> None:
        """Report a non-object, a too-small object, and each bad value."""
        if not isinstance(value, dict):
            wrong_type("object", value, ptr, out)
            return
        if len(value) < self._min_props:
            out.append(Issue(path=ptr, message="expected a non-empty object"))
        if self._values is not ANY:
            for key, item in value.items():
                self._values.check(item, f"{ptr}/{escape(key)}", out)


OBJECT = MapOf()

Rule = Callable[[dict[str, Any], str, Issues], None]


class Obj:
    """An object with known properties; `closed` forbids others (`unevaluatedProperties: false`)."""

    __slots__ = ("_closed", "_min_props", "_props", "_required", "_rules")
    kind = expects = "object"

    def __init__(
        self,
        props: Mapping[str, Node],
        *,
        required: Sequence[str] = (),
        closed: bool = True,
        min_props: int = 0,
        rules: Sequence[Rule] = (),
    ) -> None:
        self._props = dict(props)
        self._required = tuple(required)
        self._closed = closed
        self._min_props = min_props
        self._rules = tuple(rules)

    @property
    def props(self) -> dict[str, Node]:
        """The known properties, for building related objects."""
        return self._props

    def check(self, value: Any, ptr: str, out: Issues) -> None:
        """Report a non-object, each bad or unknown property, then each missing one and each broken rule."""
        if not isinstance(value, dict):
            wrong_type("object", value, ptr, out)
            return
        for key, item in value.items():
            node = self._props.get(key)
            if node is not None:
                node.check(item, f"{ptr}/{escape(key)}", out)
            elif self._closed:
                out.append(Issue(path=f"{ptr}/{escape(key)}", message=self._unknown(key)))
        for name in self._required:
            if name not in value:
                out.append(Issue(path=ptr, message=f"missing required property `{name}`"))
        if len(value) < self._min_props:
            out.append(Issue(path=ptr, message="expected a non-empty object"))
        for rule in self._rules:
            rule(value, ptr, out)

    def _unknown(self, key: str) -> str:
        close = difflib.get_close_matches(str(key), self._props, n=1)
        if close:
            return f"unknown property `{key}`; did you mean `{close[0]}`?"
        return f"unknown property `{key}`; expected {quote(list(self._props))}"


class ByType:
    """`oneOf` alternatives of different JSON types: the value's type picks the alternative."""

    __slots__ = ("_alternatives", "expects")
    kind = "any"

    def __init__(self, *alternatives: Node, expects: str = "") -> None:
        self._alternatives = alternatives
        self.expects = expects or " or ".join(a.expects for a in alternatives)

    def check(self, value: Any, ptr: str, out: Issues) -> None:
        """Check with the alternative for the value's type, or report that no alternative has that type."""
        kind = type_name(value)
        for alternative in self._alternatives:
            if alternative.kind == kind or (alternative.kind == "integer" and is_integer(value)):
                alternative.check(value, ptr, out)
                return
        wrong_type(self.expects, value, ptr, out)


class Variants:
    """`oneOf` object alternatives told apart by which discriminating key is present.

    `default` is used when no discriminating key is present; `pick` narrows the keys found (a `for` task also has
    `do`, which alone would make it a `do` task).
    """

    __slots__ = ("_cases", "_default", "_label", "_pick")
    kind = expects = "object"

    def __init__(
        self,
        cases: Mapping[str, Node],
        *,
        label: str,
        default: Node | None = None,
        pick: Callable[[list[str]], list[str]] | None = None,
    ) -> None:
        self._cases = dict(cases)
        self._label = label
        self._default = default
        self._pick = pick

    def check(self, value: Any, ptr: str, out: Issues) -> None:
        """Check against the one case whose key is present; report none or several."""
        if not isinstance(value, dict):
            wrong_type("object", value, ptr, out)
            return
        found = [key for key in self._cases if key in value]
        if self._pick is not None:
            found = self._pick(found)
        if len(found) == 1:
            self._cases[found[0]].check(value, ptr, out)
        elif found:
            choices = quote(list(self._cases))
            out.append(
                Issue(path=ptr, message=f"{self._label} must define only one of {choices}; found {quote(found, 'and')}")
            )
        elif self._default is not None:
            self._default.check(value, ptr, out)
        else:
            out.append(Issue(path=ptr, message=f"{self._label} must define one of {quote(list(self._cases))}"))


class Lazy:
    """A node built on first use, for recursive definitions (a task contains task lists)."""

    __slots__ = ("_build", "_node")
    kind = expects = "object"

    def __init__(self, build: Callable[[], Node]) -> None:
        self._build = build
        self._node: Node | None = None

    def check(self, value: Any, ptr: str, out: Issues) -> None:
        """Build the node once, then delegate."""
        if self._node is None:
            self._node = self._build()
        self._node.check(value, ptr, out)


def exactly_one(*names: str) -> Rule:
    """A rule: exactly one of `names` is present (a `oneOf` of `required` lists)."""

    def rule(value: dict[str, Any], ptr: str, out: Issues) -> None:
        found = [n for n in names if n in value]
        if len(found) != 1:
            what = "only one" if found else "one"
            out.append(Issue(path=ptr, message=f"expected {what} of {quote(list(names))}"))

    return rule


class Named:
    """An array of single-key mappings `name: value` (task lists, switch cases, extensions)."""

    __slots__ = ("_min_items", "_unique", "_values", "_what")
    kind = "array"

    def __init__(self, values: Node, *, what: str, unique: bool = False, min_items: int = 0) -> None:
        self._values = values
        self._what = what
        self._unique = unique
        self._min_items = min_items

    @property
    def expects(self) -> str:
        """The shape in words."""
        return f"array of `name: {self._what}` mappings"

    def check(self, value: Any, ptr: str, out: Issues) -> None:
        """Report a non-array, each malformed item, each repeated name (when unique) and each bad value."""
        if not isinstance(value, list):
            wrong_type(self.expects, value, ptr, out)
            return
        if len(value) < self._min_items:
            out.append(Issue(path=ptr, message=f"expected at least {self._min_items} {self._what}(s), got none"))
        seen: set[str] = set()
        for index, item in enumerate(value):
            if not isinstance(item, dict) or len(item) != 1:
                out.append(Issue(path=f"{ptr}/{index}", message=self._malformed(item)))
                continue
            ((name, body),) = item.items()
            item_ptr = f"{ptr}/{index}/{escape(name)}"
            if self._unique and name in seen:
                out.append(Issue(path=item_ptr, message=f"duplicate {self._what} name `{name}` in this list"))
            seen.add(name)
            self._values.check(body, item_ptr, out)

    def _malformed(self, item: Any) -> str:
        shape = f"a single-key mapping `name: {self._what}`"
        if not isinstance(item, dict):
            return f"expected {shape}, got {type_name(item)}"
        if not item:
            return f"expected {shape}, got an empty object"
        # The usual cause is a body indented at the level of its name; the hint points there.
        return (
            f"expected {shape}, got an object with {len(item)} keys ({quote(list(item), 'and')});"
            f" is the {self._what}'s body indented under its name?"
        )
