"""Whose execution is it: the tenant comes from what the caller proved or the control plane set, never the document.

    ingress    tenant
    ────────   ───────────────────────────────────────────────────────────────────────────────────────────────
    gRPC       with GRPC_TENANT_KEYS: the tenant of the API key the call authenticated with (metadata ignored);
               without: the command metadata's TENANT_METADATA_KEY (a single operator's test runner), else default
    Temporal   the command metadata's TENANT_METADATA_KEY (set by the control plane's workflow), else default
    AMQP       the message metadata's TENANT_METADATA_KEY (set by the producer the broker authenticated), else default

`document.namespace` plays no part: the document's author is the one party the runner cannot trust.
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from executor import DEFAULT_TENANT, Issue, escape

from ._decode import DecodeError

TENANT_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
"""A tenant id: it names metrics labels and AMQP routing keys, so it stays short and plain."""
DEFAULT_METADATA_KEY = "tenant"
_NOT_A_TENANT = "not a tenant id (1-64 letters, digits, '_', '.', '-')"


@dataclass(frozen=True, slots=True, kw_only=True)
class Tenancy:
    """How this runner tells tenants apart.

    Attributes:
        metadata_key: Command metadata key that carries the tenant (Temporal, AMQP; gRPC without keys).
        keys: API key → tenant (gRPC). Secret: never in a repr.
    """

    metadata_key: str = DEFAULT_METADATA_KEY
    keys: Mapping[str, str] = field(default_factory=dict, repr=False)

    def from_metadata(self, metadata: Mapping[str, str], execution_id: str | None = None) -> str:
        """The tenant the control plane set in the command's metadata, or the default tenant.

        Raises:
            DecodeError: The metadata names no valid tenant id (located; the value is not quoted). It names
                `execution_id`, so an ingress can report the refusal for that execution.
        """
        value = metadata.get(self.metadata_key)
        if value is None or value == "":
            return DEFAULT_TENANT
        if not TENANT_PATTERN.match(value):
            issue = Issue(path=f"/metadata/{escape(self.metadata_key)}", message=_NOT_A_TENANT)
            raise DecodeError([issue], execution_id)
        return value

    def for_key(self, key: str) -> str | None:
        """The tenant of an API key (constant-time over every configured key), None when it is not one."""
        found = None
        for candidate, tenant in self.keys.items():
            if hmac.compare_digest(candidate.encode(), key.encode()):
                found = tenant
        return found


def parse_tenant_keys(text: str) -> dict[str, str]:
    """`tenant=key,tenant=key` → {key: tenant}; raises ValueError naming the bad entry by position."""
    keys: dict[str, str] = {}
    for position, entry in enumerate(item.strip() for item in text.split(",") if item.strip()):
        tenant, sep, key = entry.partition("=")
        if not sep or not key.strip() or not TENANT_PATTERN.match(tenant.strip()):
            raise ValueError(f"entry {position + 1} must be tenant=key with a valid tenant id")
        keys[key.strip()] = tenant.strip()
    return keys
