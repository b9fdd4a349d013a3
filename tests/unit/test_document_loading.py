"""Loading YAML safely: limits, syntax errors with positions, YAML 1.2 values, and node positions."""

from __future__ import annotations

import time

import pytest

from executor import Document, DocumentError, Issue, Limits, parse_yaml


def _refusal(text: str | bytes, limits: Limits = Limits()) -> Issue:  # noqa: B008 - frozen, so shareable
    with pytest.raises(DocumentError) as caught:
        parse_yaml(text, limits)
    assert len(caught.value.issues) == 1
    return caught.value.issues[0]


def _laughs(width: int, levels: int) -> str:
    """A "billion laughs" document: each level is `width` aliases of the level before."""
    lines = ["l0: &l0 [" + ", ".join(['"lol"'] * width) + "]"]
    for level in range(1, levels + 1):
        lines.append(f"l{level}: &l{level} [" + ", ".join([f"*l{level - 1}"] * width) + "]")
    return "\n".join(lines) + "\n"


def test_billion_laughs_is_refused_quickly() -> None:
    """The classic nested-alias bomb (10^9 strings once expanded) is refused in well under a second."""
    started = time.perf_counter()
    issue = _refusal(_laughs(width=9, levels=9))
    assert time.perf_counter() - started < 2
    assert issue.code == "limit"
    # Its 72 aliases are under the alias limit; what gives it away is what they would expand to.
    assert issue.message == "document has more than 100000 nodes (limit max_nodes)"
    assert issue.line is not None


def test_billion_laughs_is_refused_by_the_alias_limit_even_with_no_node_limit() -> None:
    """With the node limit lifted, a wider alias bomb still stops at the 101st alias, fast."""
    started = time.perf_counter()
    issue = _refusal(_laughs(width=12, levels=10), Limits(max_nodes=10**15))
    assert time.perf_counter() - started < 2
    assert issue.code == "limit"
    assert issue.message == "document has more than 100 aliases (limit max_aliases)"


def test_deep_nesting_is_refused() -> None:
    """A document nested 100 levels deep is refused naming max_depth."""
    issue = _refusal("a: " + "[" * 100 + "]" * 100)
    assert issue.code == "limit"
    assert "limit max_depth" in issue.message
    # The top-level mapping is level 1, so the 64th bracket (at column 4 + 63) is level 65.
    assert (issue.line, issue.column) == (1, 4 + 63)


def test_deep_nesting_through_aliases_is_refused() -> None:
    """Nesting hidden behind an alias counts as it would once expanded."""
    text = "a: &deep " + "[" * 40 + "]" * 40 + "\nb: " + "[" * 30 + "*deep" + "]" * 30 + "\n"
    issue = _refusal(text)
    assert "limit max_depth" in issue.message
    assert issue.line == 2


def test_oversize_document_is_refused_before_parsing() -> None:
    """A document over 1 MiB is refused naming max_bytes, even when it is not valid YAML."""
    issue = _refusal("a: [" + "x" * 1_100_000)
    assert issue.code == "limit"
    assert issue.message == "document is larger than 1048576 bytes (limit max_bytes)"


def test_size_counts_utf8_bytes() -> None:
    """The size limit counts UTF-8 bytes, not characters."""
    text = "a: " + "é" * 60  # 63 characters, 123 bytes
    assert parse_yaml(text, Limits(max_bytes=123)).definition == {"a": "é" * 60}
    assert "limit max_bytes" in _refusal(text, Limits(max_bytes=122)).message


def test_custom_limits_are_honoured() -> None:
    """Each limit can be tightened, and the message names the one exceeded with its value."""
    assert _refusal("a: [[[1]]]", Limits(max_depth=3)).message.startswith("document nests deeper than 3 levels")
    assert "limit max_aliases" in _refusal("a: &x 1\nb: *x\nc: *x\n", Limits(max_aliases=1)).message
    assert "more than 5 nodes" in _refusal("a: [1, 2, 3]\nb: 4\n", Limits(max_nodes=5)).message
    assert parse_yaml("a: [[[1]]]", Limits(max_depth=4)).definition == {"a": [[[1]]]}


def test_syntax_error_has_line_and_column() -> None:
    """Malformed YAML gives one syntax issue at the line and column where the parser gave up."""
    issue = _refusal("document:\n  name: x\ndo: [1, 2\nnext: 3\n")
    assert issue.code == "syntax"
    assert issue.message.startswith("YAML syntax error: ")
    assert (issue.line, issue.column) == (4, 5)


def test_forbidden_character_has_line_and_column() -> None:
    """A control character is a syntax issue located where it is."""
    issue = _refusal("a: 1\nb: x\x07\n")
    assert issue.code == "syntax"
    assert (issue.line, issue.column) == (2, 5)


def test_duplicate_key_is_refused_at_the_second_occurrence() -> None:
    """A key repeated in one mapping is an error located at the repeat."""
    issue = _refusal("document:\n  name: a\n  name: b\n")
    assert issue.code == "invalid"
    assert issue.path == "/document/name"
    assert "duplicate key `name`" in issue.message
    assert (issue.line, issue.column) == (3, 3)


def test_positions_of_nested_nodes() -> None:
    """Every node gets a 1-based (line, column) under its JSON Pointer, with `~` and `/` escaped."""
    document = parse_yaml("do:\n  - greet:\n      set:\n        a/b~c: 1\n")
    assert document.positions["/do/0/greet/set"] == (4, 9)
    assert document.positions["/do/0/greet/set/a~1b~0c"] == (4, 16)
    assert document.positions["/do/0"] == (2, 5)
    assert document.positions[""] == (1, 1)


def test_alias_position_is_the_alias_and_its_contents_the_anchor() -> None:
    """An alias is located where it is written; what it expands to, where the anchor is."""
    document = parse_yaml("a: &x {k: 1}\nb: *x\n")
    assert document.definition == {"a": {"k": 1}, "b": {"k": 1}}
    assert document.positions["/b"] == (2, 4)
    assert document.positions["/b/k"] == (1, 11)


@pytest.mark.parametrize(
    ("text", "got"),
    [("- a\n- b\n", "array"), ("just text\n", "string"), ("", "null"), ("# only a comment\n", "null")],
)
def test_top_level_must_be_a_mapping(text: str, got: str) -> None:
    """A document whose top level is not a mapping is refused, saying what it is instead."""
    issue = _refusal(text)
    assert issue.path == ""
    assert issue.message == f"expected a mapping (object) at the top level, got {got}"


def test_several_documents_in_one_stream_are_refused() -> None:
    """A stream with two YAML documents is a syntax issue located at the second one."""
    issue = _refusal("a: 1\n---\nb: 2\n")
    assert issue.code == "syntax"
    assert issue.line == 2


def test_recursive_and_undefined_aliases_are_refused() -> None:
    """An alias to itself or to no anchor is a syntax issue, not a hang or a crash."""
    assert "refers to itself" in _refusal("a: &x [*x]\n").message
    assert "undefined alias" in _refusal("a: *nope\n").message


def test_yaml_12_core_schema_values() -> None:
    """Values follow YAML 1.2: `on`/`yes` and dates stay strings, numbers and null are JSON's."""
    text = "on: yes\nd: 2001-12-14\nn: ~\ni: 010\nh: 0x1F\no: 0o17\nf: 1.5e3\nb: false\nq: '3'\nu: 1_000\n"
    assert parse_yaml(text).definition == {
        "on": "yes",
        "d": "2001-12-14",
        "n": None,
        "i": 10,
        "h": 31,
        "o": 15,
        "f": 1500.0,
        "b": False,
        "q": "3",
        "u": "1_000",
    }


def test_numeric_keys_are_kept_as_written() -> None:
    """Mapping keys are strings as written, so `200:` is the key "200" like in JSON."""
    assert parse_yaml("200: ok\ntrue: yes\n").definition == {"200": "ok", "true": "yes"}


def test_explicit_core_tags_are_honoured() -> None:
    """`!!str`, `!!int` and friends convert as tagged; a bad value for the tag is an error at its node."""
    assert parse_yaml("a: !!str 12\nb: !!int '7'\nc: ! 5\n").definition == {"a": "12", "b": 7, "c": "5"}
    issue = _refusal("a: !!int seven\n")
    assert (issue.path, issue.message) == ("/a", "'seven' is not a valid `!!int`")


@pytest.mark.parametrize("text", ["a: !!python/object:os.system x\n", "a: !!binary aGk=\n", "a: !!set {x}\n"])
def test_non_json_tags_are_refused(text: str) -> None:
    """Tags that would build non-JSON (or arbitrary Python) objects are refused at their node."""
    issue = _refusal(text)
    assert issue.path == "/a"
    assert issue.message.startswith("unsupported YAML tag `!!")


def test_complex_keys_are_refused() -> None:
    """A sequence used as a mapping key is refused: JSON keys are strings."""
    issue = _refusal("? [a]\n: 1\n")
    assert issue.message == "mapping keys must be strings, not collections"


def test_json_and_bytes_are_accepted() -> None:
    """JSON text loads as YAML does; bytes are read as UTF-8, with or without a byte order mark."""
    assert parse_yaml('{"a": [1, 2.5, true, null]}').definition == {"a": [1, 2.5, True, None]}
    assert parse_yaml("a: é\n".encode()).definition == {"a": "é"}
    assert parse_yaml(b"\xef\xbb\xbfa: 1\n").definition == {"a": 1}


def test_invalid_utf8_is_refused() -> None:
    """Bytes that are not UTF-8 are a syntax issue naming the offset."""
    assert _refusal(b"a: \xff\n").message == "document is not UTF-8 text (byte 3)"


def test_locate_uses_the_nearest_known_ancestor() -> None:
    """An issue about a missing node is located at the closest node that exists."""
    document = parse_yaml("document:\n  dsl: '1.0.3'\n")
    issue = document.locate(Issue(path="/document/name/x", message="m"))
    assert (issue.line, issue.column) == (2, 3)
    assert document.locate(Issue(path="/zzz", message="m")).line == 1


def test_locate_keeps_a_known_position() -> None:
    """An issue that already has a position keeps it."""
    document = Document({"a": 1}, {"": (1, 1)})
    issue = Issue(path="", message="m", line=7, column=2)
    assert document.locate(issue) is issue


def test_issue_to_dict_leaves_out_unknown_positions() -> None:
    """The JSON form of an issue has line/column only when known."""
    assert Issue(path="/a", message="m").to_dict() == {"path": "/a", "message": "m"}
    located = Issue(path="", message="m", line=1, column=2)
    assert located.to_dict() == {"path": "", "message": "m", "line": 1, "column": 2}


def test_document_error_summarises_and_flags_unsupported() -> None:
    """The error's text names the first issue; `unsupported` is true only when every issue is."""
    invalid = Issue(path="/a", message="bad")
    unsupported = Issue(path="/b", message="no", code="unsupported")
    assert str(DocumentError((invalid, unsupported))) == "/a: bad (and 1 more)"
    assert not DocumentError((invalid, unsupported)).unsupported
    assert DocumentError((unsupported,)).unsupported
    with pytest.raises(ValueError, match="at least one issue"):
        DocumentError(())
