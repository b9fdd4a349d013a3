"""The subflow catalog: workflow documents `run.workflow` can start, found by namespace, name and version.

Two sources, both given by configuration (`EngineOptions`): a directory searched recursively for `*.yaml`, `*.yml`
and `*.json` documents (`catalog_dir`), and documents sent along with the work (`subflow_documents`), which win
for the same namespace/name/version. Only each document's `document` header is read to index it; the document is
validated and compiled when a subflow first runs. The directory is indexed on first use and indexed again when a
lookup misses, so documents added later are found without a restart. `version: latest` (the spec's default)
picks the highest released semantic version (a pre-release only when there is no release). Files that are not
workflow documents are skipped.
"""

from __future__ import annotations

import asyncio
import logging
import re
from pathlib import Path

from ._document import DocumentError, parse_yaml
from ._errors import ConfigurationError

logger = logging.getLogger("executor.catalog")

_SUFFIXES = frozenset({".yaml", ".yml", ".json"})
_NUMBER = re.compile(r"\d+")

Key = tuple[str, str]


class Catalog:
    """Workflow documents by (namespace, name), then version."""

    def __init__(self, directory: str | None, documents: tuple[str, ...] = ()) -> None:
        self._directory = Path(directory) if directory else None
        self._sent = _index(documents)
        self._scanned: dict[Key, dict[str, str]] | None = None

    async def find(self, namespace: str, name: str, version: str = "latest") -> str:
        """The document text; ConfigurationError when no document matches."""
        found = self._lookup(namespace, name, version)
        if found is None and self._directory is not None:
            self._scanned = await asyncio.to_thread(self._scan)
            found = self._lookup(namespace, name, version)
        if found is None:
            raise ConfigurationError(
                "Subflow not found", detail=f"no workflow {namespace}/{name}:{version} in the catalog"
            )
        return found

    def _lookup(self, namespace: str, name: str, version: str) -> str | None:
        versions = {**(self._scanned or {}).get((namespace, name), {}), **self._sent.get((namespace, name), {})}
        if not versions:
            return None
        if version == "latest":
            return versions[max(versions, key=_latest_key)]
        return versions.get(version)

    def _scan(self) -> dict[Key, dict[str, str]]:
        assert self._directory is not None
        texts = []
        for path in sorted(self._directory.rglob("*")):
            if path.suffix.lower() in _SUFFIXES and path.is_file():
                try:
                    texts.append(path.read_text(encoding="utf-8"))
                except (OSError, UnicodeDecodeError) as exc:
                    logger.warning("catalog: cannot read %s: %s", path, exc)
        return _index(tuple(texts))


def _index(texts: tuple[str, ...]) -> dict[Key, dict[str, str]]:
    index: dict[Key, dict[str, str]] = {}
    for text in texts:
        header = _header(text)
        if header is not None:
            namespace, name, version = header
            index.setdefault((namespace, name), {})[version] = text
    return index


def _header(text: str) -> tuple[str, str, str] | None:
    try:
        document = parse_yaml(text).definition.get("document")
    except DocumentError:
        return None
    if not isinstance(document, dict) or not all(isinstance(document.get(k), str) for k in ("name", "namespace")):
        return None
    return document["namespace"], document["name"], str(document.get("version", ""))


def _latest_key(version: str) -> tuple[bool, tuple[tuple[int, ...], int, str]]:
    # A release beats any pre-release for `latest`, as package managers do.
    return "-" not in version, version_key(version)


def version_key(version: str) -> tuple[tuple[int, ...], int, str]:
    """Sort key for semantic versions: numbers compared as numbers; a pre-release sorts before its release."""
    core, _, pre = version.partition("-")
    return tuple(int(n) for n in _NUMBER.findall(core)), 0 if pre else 1, pre
