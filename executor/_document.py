"""Workflow documents in: safe YAML loading with limits, positions of every node, and structural validation.

`parse_yaml` reads YAML 1.2 (and so JSON) through libyaml's parser when available, but composes the node graph
here, counting as it goes, so a hostile document (a "billion laughs" of nested aliases, deep nesting) is refused
before anything is built from it. Scalars resolve with the YAML 1.2 core schema: `on`, `yes` and `no` stay
strings, timestamps stay strings, `<<` is an ordinary key (merge keys are YAML 1.1), and only JSON-compatible
values come out; mapping keys are the strings as written. `load_document` adds
`validate_definition` and reports every issue with the line and column it comes from.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import yaml
from yaml import events

from ._validate import validate_definition
from ._validate_base import Issue, escape, type_name

MAX_BYTES = 1_048_576
MAX_ALIASES = 100
MAX_DEPTH = 64
MAX_NODES = 100_000


@dataclass(frozen=True, slots=True, kw_only=True)
class Limits:
    """Bounds on what one document may cost to load.

    Attributes:
        max_bytes: Size of the document text in UTF-8 bytes.
        max_aliases: Number of alias (`*ref`) uses in one document.
        max_depth: Nesting depth of mappings and sequences, with aliases expanded.
        max_nodes: Total YAML nodes, with aliases expanded (what the loaded data will hold).
    """

    max_bytes: int = MAX_BYTES
    max_aliases: int = MAX_ALIASES
    max_depth: int = MAX_DEPTH
    max_nodes: int = MAX_NODES


class DocumentError(Exception):
    """A document that cannot be loaded or is not a valid workflow; `issues` says why (at least one)."""

    def __init__(self, issues: tuple[Issue, ...]) -> None:
        if not issues:
            raise ValueError("DocumentError needs at least one issue")
        self.issues = tuple(issues)
        first = issues[0]
        more = f" (and {len(issues) - 1} more)" if len(issues) > 1 else ""
        super().__init__(f"{first.path or '/'}: {first.message}{more}")

    @property
    def unsupported(self) -> bool:
        """True when every issue is about a construct the runtime does not support, not a broken document."""
        return all(issue.code == "unsupported" for issue in self.issues)


@dataclass(frozen=True, slots=True)
class Document:
    """A loaded document: its plain data and where each node is in the text.

    Attributes:
        definition: The top-level mapping as JSON-like data.
        positions: JSON Pointer → (line, column), both 1-based, for every node.
    """

    definition: dict[str, Any]
    positions: Mapping[str, tuple[int, int]] = field(default_factory=dict)

    def locate(self, issue: Issue) -> Issue:
        """The issue with line/column of its node, or of the nearest ancestor that exists in the text."""
        if issue.line is not None:
            return issue
        path = issue.path
        while path not in self.positions and path:
            path = path.rpartition("/")[0]
        position = self.positions.get(path)
        if position is None:
            return issue
        return dataclasses.replace(issue, line=position[0], column=position[1])


def parse_yaml(text: str | bytes, limits: Limits = Limits()) -> Document:
    """Safe-load a YAML (or JSON) document within `limits`.

    Args:
        text: The document, as text or UTF-8 bytes.
        limits: Bounds on size, aliases, depth and node count.

    Returns:
        The document's data and the position of each node.

    Raises:
        DocumentError: code "limit" for a limit exceeded, "syntax" for malformed YAML, "invalid" for a top level
            that is not a mapping, a duplicate key, a non-string key or a non-JSON tag.
    """
    source = _decode(text, limits)
    root = _compose(source, limits)
    builder = _Builder()
    definition = builder.build(root, "") if root is not None else None
    if builder.issues:
        raise DocumentError(tuple(builder.issues))
    if not isinstance(definition, dict):
        where = _mark(root)
        message = f"expected a mapping (object) at the top level, got {type_name(definition)}"
        raise DocumentError((Issue(path="", message=message, line=where[0], column=where[1]),))
    return Document(definition, MappingProxyType(builder.positions))


def load_document(text: str | bytes, limits: Limits = Limits()) -> Document:
    """Load a workflow document and check its structure.

    Args:
        text: The document, as text or UTF-8 bytes.
        limits: Bounds on size, aliases, depth and node count.

    Returns:
        The valid document.

    Raises:
        DocumentError: Every issue found, each with the line and column of its node.
    """
    document = parse_yaml(text, limits)
    issues = validate_definition(document.definition)
    if issues:
        raise DocumentError(tuple(document.locate(issue) for issue in issues))
    return document


def _limit(message: str, line: int | None = None, column: int | None = None) -> DocumentError:
    return DocumentError((Issue(path="", message=message, line=line, column=column, code="limit"),))


def _decode(text: str | bytes, limits: Limits) -> str:
    """The text, after checking its size in UTF-8 bytes (before any parsing)."""
    # A str longer than the limit in characters is over it in bytes too, without encoding it to find out.
    size = len(text) if isinstance(text, bytes) or len(text) > limits.max_bytes else len(text.encode())
    if size > limits.max_bytes:
        raise _limit(f"document is larger than {limits.max_bytes} bytes (limit max_bytes)")
    if isinstance(text, str):
        return text.removeprefix("\ufeff")
    try:
        return text.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        issue = Issue(path="", message=f"document is not UTF-8 text (byte {exc.start})", code="syntax")
        raise DocumentError((issue,)) from None


@dataclass(slots=True, eq=False)
class _Node:
    """A composed node; `size`/`height` (nodes and nesting with aliases expanded) are set once it is complete."""

    kind: str  # "scalar" | "seq" | "map" | "alias" (whose one item is the anchored node)
    tag: str | None
    line: int
    column: int
    value: str = ""
    plain: bool = False
    items: list[_Node] = field(default_factory=list)
    size: int = 0
    height: int = -1


def _mark(node: _Node | None) -> tuple[int | None, int | None]:
    return (node.line, node.column) if node is not None else (None, None)


def _new_parser(source: str) -> Any:
    # libyaml is ~10x faster; only its event parser is used, so the limits hold the same either way.
    if yaml.__with_libyaml__:
        return yaml.CBaseLoader(source)  # libyaml's parser; its constructor is never called
    return _PyParser(source)  # pragma: no cover - depends on how PyYAML was built


class _PyParser(yaml.reader.Reader, yaml.scanner.Scanner, yaml.parser.Parser):
    """PyYAML's pure-Python event parser, used when libyaml is missing."""

    def __init__(self, source: str) -> None:
        yaml.reader.Reader.__init__(self, source)
        yaml.scanner.Scanner.__init__(self)
        yaml.parser.Parser.__init__(self)


def _compose(source: str, limits: Limits) -> _Node | None:
    """The single document's node graph, or None for an empty stream; syntax errors become DocumentError."""
    parser = _new_parser(source)
    try:
        return _Composer(parser, limits).document()
    except yaml.MarkedYAMLError as exc:
        raise DocumentError((_syntax_issue(exc),)) from None
    except yaml.reader.ReaderError as exc:
        raise DocumentError((_reader_issue(exc, source),)) from None
    except yaml.YAMLError as exc:
        raise DocumentError((Issue(path="", message=str(exc), code="syntax"),)) from None
    finally:
        parser.dispose()


def _syntax_issue(exc: yaml.MarkedYAMLError) -> Issue:
    mark = exc.problem_mark or exc.context_mark
    parts = [part for part in (exc.context, exc.problem) if part]
    message = "YAML syntax error: " + ", ".join(parts) if parts else str(exc)
    line, column = (mark.line + 1, mark.column + 1) if mark is not None else (None, None)
    return Issue(path="", message=message, line=line, column=column, code="syntax")


def _reader_issue(exc: yaml.reader.ReaderError, source: str) -> Issue:
    """A character YAML forbids; libyaml counts its position in UTF-8 bytes, PyYAML in characters."""
    before = (
        source.encode()[: exc.position].decode(errors="ignore") if yaml.__with_libyaml__ else source[: exc.position]
    )
    line, column = before.count("\n") + 1, len(before) - before.rfind("\n")
    character = exc.character if isinstance(exc.character, int) else ord(exc.character)
    message = f"YAML syntax error: character #x{character:04x} is not allowed ({exc.reason})"
    return Issue(path="", message=message, line=line, column=column, code="syntax")


class _Composer:
    """Builds `_Node`s from parser events while counting aliases, expanded nodes and expanded depth.

    An alias adds the expanded size of its anchor to the running total, so nested aliases that would expand
    exponentially are refused after a handful of events, without building anything.
    """

    def __init__(self, parser: Any, limits: Limits) -> None:
        self._parser = parser
        self._limits = limits
        self._anchors: dict[str, _Node] = {}
        self._aliases = 0
        self._total = 0

    def document(self) -> _Node | None:
        """Compose the stream's only document (None when there is none)."""
        self._parser.get_event()  # stream start
        if self._parser.check_event(events.StreamEndEvent):
            return None
        self._parser.get_event()  # document start
        root = self._node(1)
        self._parser.get_event()  # document end
        if not self._parser.check_event(events.StreamEndEvent):
            extra = self._parser.get_event()
            raise yaml.composer.ComposerError(
                "expected a single document in the stream", None, "but found another document", extra.start_mark
            )
        return root

    def _node(self, depth: int) -> _Node:
        event = self._parser.get_event()
        if isinstance(event, events.AliasEvent):
            return self._alias(event, depth)
        node = self._start(event, depth)
        if event.anchor is not None:
            self._anchors[event.anchor] = node  # YAML 1.2: a later anchor of the same name wins
        if isinstance(event, events.ScalarEvent):
            node.size, node.height = 1, 0
        else:
            self._children(node, depth)
        return node

    def _start(self, event: Any, depth: int) -> _Node:
        line, column = event.start_mark.line + 1, event.start_mark.column + 1
        self._total += 1
        self._check_nodes(line, column)
        if isinstance(event, events.ScalarEvent):
            plain = event.tag is None and event.implicit[0]
            return _Node("scalar", event.tag, line, column, value=event.value, plain=plain)
        if depth > self._limits.max_depth:
            raise _limit(f"document nests deeper than {self._limits.max_depth} levels (limit max_depth)", line, column)
        kind = "seq" if isinstance(event, events.SequenceStartEvent) else "map"
        return _Node(kind, event.tag, line, column)

    def _children(self, node: _Node, depth: int) -> None:
        end = events.SequenceEndEvent if node.kind == "seq" else events.MappingEndEvent
        while not self._parser.check_event(end):
            node.items.append(self._node(depth + 1))
        self._parser.get_event()
        node.size = 1 + sum(child.size for child in node.items)
        node.height = 1 + max((child.height for child in node.items), default=0)

    def _alias(self, event: Any, depth: int) -> _Node:
        line, column = event.start_mark.line + 1, event.start_mark.column + 1
        self._aliases += 1
        if self._aliases > self._limits.max_aliases:
            raise _limit(f"document has more than {self._limits.max_aliases} aliases (limit max_aliases)", line, column)
        node = self._anchors.get(event.anchor)
        if node is None:
            raise yaml.composer.ComposerError(None, None, f"found undefined alias {event.anchor!r}", event.start_mark)
        if node.height < 0:
            raise yaml.composer.ComposerError(None, None, f"alias {event.anchor!r} refers to itself", event.start_mark)
        self._total += node.size
        self._check_nodes(line, column)
        if depth - 1 + node.height > self._limits.max_depth:
            raise _limit(f"document nests deeper than {self._limits.max_depth} levels (limit max_depth)", line, column)
        return _Node("alias", None, line, column, items=[node], size=node.size, height=node.height)

    def _check_nodes(self, line: int, column: int) -> None:
        if self._total > self._limits.max_nodes:
            raise _limit(f"document has more than {self._limits.max_nodes} nodes (limit max_nodes)", line, column)


_CORE = "tag:yaml.org,2002:"
_INT = re.compile(r"[-+]?[0-9]+\Z")
_FLOAT = re.compile(r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?\Z")
_SPECIAL_FLOATS = {".inf": math.inf, "+.inf": math.inf, "-.inf": -math.inf, ".nan": math.nan}


def _to_null(text: str) -> Any:
    if text in ("", "~", "null", "Null", "NULL"):
        return None
    raise ValueError(text)


def _to_bool(text: str) -> bool:
    if text in ("true", "True", "TRUE", "false", "False", "FALSE"):
        return text[0] in "tT"
    raise ValueError(text)


def _to_int(text: str) -> int:
    if _INT.match(text):
        return int(text)
    if text[:2] in ("0o", "0x"):
        return int(text[2:], 8 if text[1] == "o" else 16)
    raise ValueError(text)


def _to_float(text: str) -> float:
    if _FLOAT.match(text):
        return float(text)
    if text.lower() in _SPECIAL_FLOATS:
        return _SPECIAL_FLOATS[text.lower()]
    raise ValueError(text)


_CONVERTERS: dict[str, Callable[[str], Any]] = {
    _CORE + "null": _to_null,
    _CORE + "bool": _to_bool,
    _CORE + "int": _to_int,
    _CORE + "float": _to_float,
    _CORE + "str": str,
}


def _plain(text: str) -> Any:
    """A plain scalar by the YAML 1.2 core schema: null, bool, int, float, or else the string itself."""
    if text and text[0] not in "-+.0123456789~nNtTfF":
        return text
    for convert in (_to_null, _to_bool, _to_int, _to_float):
        try:
            return convert(text)
        except ValueError:
            continue
    return text


def _short(tag: str | None) -> str:
    """A tag as it is usually written: `!!int` rather than `tag:yaml.org,2002:int`."""
    return "!!" + tag.removeprefix(_CORE) if tag and tag.startswith(_CORE) else str(tag)


class _Builder:
    """Turns composed nodes into plain data, recording each node's position and collecting issues."""

    def __init__(self) -> None:
        self.positions: dict[str, tuple[int, int]] = {}
        self.issues: list[Issue] = []

    def build(self, node: _Node, ptr: str) -> Any:
        """The value of `node`, which sits at JSON Pointer `ptr`."""
        if node.kind == "alias":
            value = self.build(node.items[0], ptr)
            self.positions[ptr] = (node.line, node.column)  # the alias itself; its contents are at the anchor
            return value
        self.positions[ptr] = (node.line, node.column)
        if node.kind == "scalar":
            return self._scalar(node, ptr)
        if not self._tag_ok(node, "seq" if node.kind == "seq" else "map", ptr):
            return None
        if node.kind == "seq":
            return [self.build(child, f"{ptr}/{index}") for index, child in enumerate(node.items)]
        return self._mapping(node, ptr)

    def _mapping(self, node: _Node, ptr: str) -> dict[str, Any]:
        result: dict[str, Any] = {}
        for written_key, value_node in zip(node.items[::2], node.items[1::2], strict=True):
            key_node = written_key.items[0] if written_key.kind == "alias" else written_key
            if key_node.kind != "scalar":
                self._issue(ptr, "mapping keys must be strings, not collections", key_node)
                continue
            key = key_node.value  # the key as written: `200:` and `on:` are the strings "200" and "on"
            child = f"{ptr}/{escape(key)}"
            if key in result:
                self._issue(child, f"duplicate key `{key}` (keys must be unique in a mapping)", key_node)
                continue
            result[key] = self.build(value_node, child)
        return result

    def _scalar(self, node: _Node, ptr: str) -> Any:
        if node.plain:
            return _plain(node.value)
        if node.tag in (None, "!"):
            return node.value
        convert = _CONVERTERS.get(node.tag)
        if convert is None:
            self._issue(
                ptr, f"unsupported YAML tag `{_short(node.tag)}`: only JSON-compatible values are allowed", node
            )
            return None
        try:
            return convert(node.value)
        except ValueError:
            self._issue(ptr, f"{node.value!r} is not a valid `{_short(node.tag)}`", node)
            return None

    def _tag_ok(self, node: _Node, kind: str, ptr: str) -> bool:
        if node.tag in (None, "!", _CORE + kind):
            return True
        self._issue(ptr, f"unsupported YAML tag `{_short(node.tag)}`: only JSON-compatible values are allowed", node)
        return False

    def _issue(self, ptr: str, message: str, node: _Node) -> None:
        self.issues.append(Issue(path=ptr, message=message, line=node.line, column=node.column))


__all__ = ["Document", "DocumentError", "Issue", "Limits", "load_document", "parse_yaml", "validate_definition"]
