"""Engine options: what the process configuration hands the executor (capabilities, limits, I/O policy).

Every field has a default that is safe for untrusted documents: no shell, no scripts, no local files, the cloud
metadata address unreachable. The process configuration maps environment variables onto these fields.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

# The instance-metadata endpoints of the big clouds (IPv4 link-local and AWS's IPv6 one): reaching them from a
# workflow would hand the runner's cloud credentials to whoever wrote the document.
DEFAULT_OUTBOUND_DENY: tuple[str, ...] = ("169.254.169.254/32", "fd00:ec2::254/128")


@dataclass(frozen=True, slots=True, kw_only=True)
class EngineOptions:
    """Switches and limits for task handlers; defaults are safe for untrusted documents.

    Attributes:
        allow_shell: Run `run.shell` tasks. Off: documents using them are refused at validation.
        allow_script: Run `run.script` tasks (python; js when a node executable exists). Off: refused at validation.
        allow_mcp_stdio: Let `call: mcp` start its server as a local process (the stdio transport), under the same
            environment and process-group rules as `run.shell`. Off: documents using it are refused at validation.
        outbound_allow: Hosts a call may reach: exact names, `*.example.com` wildcards, IP addresses or CIDRs.
            Empty means every host not denied.
        outbound_deny: Hosts or CIDRs no call may reach (HTTP, OpenAPI, gRPC, OAuth2 token and document fetches,
            every redirect hop); wins over `outbound_allow`. Names are resolved, so a name pointing at a denied
            address is denied too.
        http_timeout: Seconds for each outbound HTTP request (connect, each read, write) and each gRPC call.
        max_response_bytes: Largest HTTP response body read; a larger one is a communication error.
        resource_roots: Directories from which `file://` (or plain path) resources — OpenAPI documents, proto files,
            script sources — may be read. Empty: local files are refused.
        catalog_dir: Directory of workflow documents (`*.yaml`, `*.yml`, `*.json`, searched recursively) that
            `run.workflow` may start, looked up by `document.namespace/name/version`.
        subflow_documents: Workflow documents (YAML text) sent along with the work, also available to
            `run.workflow`; they win over `catalog_dir` for the same namespace/name/version.
        max_subflow_depth: How deeply `run.workflow` may nest before the run faults (guards against recursion).
        process_timeout: Seconds after which a shell or script process is killed (with its process group) when the
            task has no shorter `timeout`; None for no limit of the runner's own.
        process_path: `PATH` given to shell and script processes; nothing else of the runner's environment leaks.
        python_executable: Interpreter for `language: python` scripts.
        node_executable: Interpreter for `language: js` scripts; None looks for `node` on the runner's PATH.
        max_process_output_bytes: Largest stdout (and stderr) kept from a process; the rest is discarded.
    """

    allow_shell: bool = False
    allow_script: bool = False
    allow_mcp_stdio: bool = False
    outbound_allow: tuple[str, ...] = ()
    outbound_deny: tuple[str, ...] = DEFAULT_OUTBOUND_DENY
    http_timeout: float = 30.0
    max_response_bytes: int = 16 * 1024 * 1024
    resource_roots: tuple[str, ...] = ()
    catalog_dir: str | None = None
    subflow_documents: tuple[str, ...] = ()
    max_subflow_depth: int = 8
    process_timeout: float | None = None
    process_path: str = "/usr/local/bin:/usr/bin:/bin"
    python_executable: str = sys.executable
    node_executable: str | None = None
    max_process_output_bytes: int = 4 * 1024 * 1024
