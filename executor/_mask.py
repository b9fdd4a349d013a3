"""Secret masking, one behaviour for events, errors, the event bus and logs: each spelling of a secret → `***`.

A `Mask` holds the texts to hide: every string and number inside the secrets (object secrets included; booleans
and null are not secrets, they are words every log line uses), each in the spellings it travels in — raw,
percent-encoded (URLs), escaped in JSON text, and base64 (standard and URL-safe, with and without padding) — plus
the forms the runtime derives itself while running (an HTTP Basic token, a bearer token it fetched), which the
engine adds with `Mask.add` as it makes them. `scrub` masks a JSON-like value: a string or number equal to a secret
is masked whatever its length; inside a longer string only secrets of `MIN_SECRET` characters or more are masked
(shorter ones would mask ordinary words everywhere). `MASKS` is the process's registry the log handler reads:
configured credentials for the life of the process and the masks of running executions while they run.

What masking cannot catch (an author's own transformations, a secret split across values, …) is listed in
docs/security.md.
"""

from __future__ import annotations

import base64
import threading
import urllib.parse
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import orjson

MASK = "***"
MIN_SECRET = 4
"""Shortest secret masked inside a longer text; a shorter one is masked only where a whole value equals it."""


def secret_scalars(secrets: Any) -> list[str]:
    """Every string and number inside `secrets` (a mapping, list or scalar) as text; booleans and null skipped."""
    found: list[str] = []
    pending = [secrets]
    while pending:
        value = pending.pop()
        if isinstance(value, Mapping):
            pending.extend(value.values())
        elif isinstance(value, list | tuple):
            pending.extend(value)
        elif isinstance(value, str | int | float) and not isinstance(value, bool) and str(value):
            found.append(str(value))
    return found


def spellings(secret: str) -> set[str]:
    """`secret` as written, percent-encoded (path and query styles), JSON-escaped, and base64-encoded."""
    raw = secret.encode()
    forms = {
        secret,
        urllib.parse.quote(secret, safe=""),
        urllib.parse.quote(secret),
        urllib.parse.quote_plus(secret, safe=""),
        orjson.dumps(secret).decode()[1:-1],
    }
    for encoded in (base64.b64encode(raw).decode(), base64.urlsafe_b64encode(raw).decode()):
        forms.update((encoded, encoded.rstrip("=")))
    return forms


def _longest_first(texts: Iterable[str]) -> tuple[str, ...]:
    """The order `_masked` replaces in: a secret holding another is masked whole."""
    return tuple(sorted(texts, key=len, reverse=True))


def _masked(text: str, exact: frozenset[str], texts: tuple[str, ...]) -> str:
    """`text` as `***` when it is one of `exact`, else with each of `texts` (longest first) inside it as `***`."""
    if text in exact:
        return MASK
    for secret in texts:
        if secret in text:
            text = text.replace(secret, MASK)
    return text


class Mask:
    """The texts one execution (or the process's configuration) must never show; see the module docstring.

    Args:
        secrets: The secret values (a mapping such as a command's `secrets`, or a list of values).
    """

    __slots__ = ("_exact", "_listeners", "_lock", "_texts")

    def __init__(self, secrets: Any = ()) -> None:
        self._exact: frozenset[str] = frozenset()
        self._texts: tuple[str, ...] = ()
        self._listeners: list[MaskRegistry] = []
        self._lock = threading.Lock()
        self.add(*secret_scalars(secrets))

    def __bool__(self) -> bool:
        return bool(self._exact)

    @property
    def texts(self) -> tuple[str, ...]:
        """The texts masked inside longer strings, longest first (a secret holding another is masked whole)."""
        return self._texts

    def add(self, *secrets: str) -> None:
        """Mask `secrets` too, from now on (a token the runtime derived from a secret, for instance)."""
        short = {secret for secret in secrets if 0 < len(secret) < MIN_SECRET}
        long = {form for secret in secrets if len(secret) >= MIN_SECRET for form in spellings(secret)}
        if not (short | long) - self._exact:
            return
        with self._lock:
            self._exact = self._exact | short | long
            texts = set(self._texts) | {text for text in long if len(text) >= MIN_SECRET}
            self._texts = _longest_first(texts)
            listeners = list(self._listeners)
        for registry in listeners:
            registry.changed()

    def text(self, text: str) -> str:
        """`text` with every secret in it replaced by `***`."""
        return _masked(text, self._exact, self._texts)

    def scrub(self, value: Any) -> Any:
        """A JSON-like value with every secret masked (strings anywhere inside, numbers equal to a secret)."""
        if not self._exact:
            return value
        return self._scrub(value)

    def _scrub(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, int | float) and not isinstance(value, bool):
            return MASK if str(value) in self._exact else value
        if isinstance(value, dict):
            return {self.text(k) if isinstance(k, str) else k: self._scrub(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self._scrub(v) for v in value]
        return value

    def _watch(self, registry: MaskRegistry) -> None:
        with self._lock:
            self._listeners.append(registry)

    def _unwatch(self, registry: MaskRegistry) -> None:
        with self._lock:
            self._listeners.remove(registry)


class MaskRegistry:
    """The masks active in this process; `text` applies all of them at once (what the log handler calls)."""

    def __init__(self) -> None:
        self._masks: Counter[Mask] = Counter()
        self._lock = threading.Lock()
        self._texts: tuple[str, ...] = ()
        self._exact: frozenset[str] = frozenset()

    @contextmanager
    def active(self, mask: Mask) -> Iterator[Mask]:
        """Apply `mask` (and what is added to it later) to every `text` call while the block runs."""
        self.include(mask)
        try:
            yield mask
        finally:
            self.exclude(mask)

    def include(self, mask: Mask) -> None:
        """Apply `mask` until `exclude` (counted: included twice, excluded twice)."""
        with self._lock:
            self._masks[mask] += 1
            first = self._masks[mask] == 1
        if first:
            mask._watch(self)
        if mask:  # an empty mask changes nothing until it grows (and then `add` calls `changed`)
            self.changed()

    def exclude(self, mask: Mask) -> None:
        """Stop applying `mask` (once per `include`)."""
        with self._lock:
            self._masks[mask] -= 1
            last = self._masks[mask] <= 0
            if last:
                del self._masks[mask]
        if last:
            mask._unwatch(self)
        if mask:
            self.changed()

    def changed(self) -> None:
        """Recompute the union of the active masks (called when a mask is added, removed or grows)."""
        with self._lock:
            exact = frozenset().union(*(mask._exact for mask in self._masks))
            texts = {text for mask in self._masks for text in mask.texts}
            self._exact, self._texts = exact, _longest_first(texts)

    def text(self, text: str) -> str:
        """`text` with every active secret masked."""
        return _masked(text, self._exact, self._texts)


MASKS = MaskRegistry()
"""The process's registry: what every log line is masked with."""


def masked_in_logs(values: Iterable[Any]) -> Mask:
    """A mask of `values` applied to every log line for the life of the process (configured credentials)."""
    mask = Mask(list(values))
    MASKS.include(mask)
    return mask
