"""Process configuration: every environment variable of every ingress and part, read and validated in one place.

`Settings.from_env(os.environ)` is called once at start-up; a bad value raises `ConfigError`, whose message is one
line naming the variable and why (`serve` prints it and exits 2). An empty value counts as unset, so a compose file
can blank a variable. Secrets (`*_API_KEY`, `AMQP_URL`) never appear in a `repr` or in an error message.

Process and engine

| Variable                  | Default              | Meaning                                                        |
|---------------------------|----------------------|----------------------------------------------------------------|
| EXECUTION_MODE            | grpc                 | ingresses: grpc, temporal, amqp, dual (grpc+temporal), all, or |
|                           |                      | a comma list; `all` leaves amqp out when AMQP_URL is unset     |
| ENV                       | production           | deployment name; `local` switches logs to human-readable text  |
| LOG_LEVEL                 | INFO                 | DEBUG, INFO, WARNING, ERROR, CRITICAL                          |
| LOG_FORMAT                | json (text if local) | json or text                                                   |
| MAX_CONCURRENT_EXECUTIONS | 100                  | executions running at once, all ingresses together             |
| MAX_DOCUMENT_BYTES        | 1048576              | largest workflow document accepted                             |
| ALLOW_SHELL               | false                | let `run.shell` tasks execute commands                         |
| ALLOW_SCRIPT              | false                | let `run.script` tasks execute code                            |
| ALLOW_MCP_STDIO           | false                | let `call: mcp` start a local MCP server (stdio transport)     |
| PROCESS_TIMEOUT_SECONDS   | (none)               | kill `run.shell` / `run.script` processes after this long      |
| OUTBOUND_ALLOW            | (any host)           | comma list of hosts, `*.domain` wildcards or CIDRs that calls  |
|                           |                      | may reach; empty allows every host not denied                  |
| OUTBOUND_DENY             | (metadata addresses) | comma list added to the built-in deny list (169.254.169.254)   |
| HTTP_TIMEOUT_SECONDS      | 30                   | timeout of one outbound HTTP request                           |
| HTTP_MAX_RESPONSE_BYTES   | 16777216             | largest response body a call reads                             |
| RESOURCE_ROOTS            | (none)               | comma list of directories local `file:` resources may be under |
| CATALOG_DIR               | (none)               | directory of subflow documents for `run.workflow`              |
| EVENT_SOURCE              | urn:workflow-runner  | CloudEvents `source` of lifecycle events                       |
| EVENT_MAX_OUTPUT_BYTES    | 262144               | larger outputs are truncated in events (`outputTruncated`),    |
|                           |                      | never in results                                               |
| METRICS_HOST              | 0.0.0.0              | interface of the metrics / health HTTP server                  |
| METRICS_PORT              | 8081                 | Prometheus `/metrics`, `/livez`, `/readyz`; 0 any, `off` none  |
| SHUTDOWN_GRACE_SECONDS    | 20                   | drain time on SIGTERM before leftovers are cancelled           |

Isolation and tenants

| Variable                      | Default     | Meaning                                                          |
|-------------------------------|-------------|------------------------------------------------------------------|
| EXECUTOR_PROCESSES            | (CPU count) | executor worker processes; 0 runs executions inside the          |
|                               |             | supervisor process (no isolation: tools and debugging)           |
| EXPRESSION_TIME_LIMIT_SECONDS | 5           | one expression or schema check running longer faults its         |
|                               |             | execution (its worker process is replaced)                       |
| EXECUTOR_MEMORY_LIMIT_MB      | 1024        | a worker above this RSS is replaced, faulting the execution then |
|                               |             | evaluating; above 75% it takes no new executions                 |
| MAX_QUEUED_EXECUTIONS         | 1000        | executions accepted beyond MAX_CONCURRENT_EXECUTIONS, waiting    |
|                               |             | for a slot in tenant-fair order; more are refused                |
| TENANT_MAX_CONCURRENT         | (90%)       | executions of one named tenant running at once; by default each  |
|                               |             | leaves a tenth of the slots (at least one) to the others; the    |
|                               |             | default tenant (a runner serving one) may use them all           |
| TENANT_METADATA_KEY           | tenant      | command metadata key naming the tenant (Temporal, AMQP, and      |
|                               |             | gRPC without GRPC_TENANT_KEYS)                                   |
| GRPC_TENANT_KEYS              | (none)      | `tenant=key,...`: gRPC API keys, each naming its tenant; calls   |
|                               |             | must then present one of them (or GRPC_API_KEY: default tenant)  |

gRPC ingress

| Variable               | Default | Meaning                                            |
|------------------------|---------|----------------------------------------------------|
| GRPC_HOST              | 0.0.0.0 | interface to bind                                  |
| GRPC_PORT              | 8080    | port; 0 picks a free one                           |
| GRPC_API_KEY           | (none)  | when set, calls need `authorization: Bearer <key>` |
| GRPC_MAX_MESSAGE_BYTES | 4194304 | largest request or response message                |

Temporal ingress

| Variable                           | Default               | Meaning                                         |
|------------------------------------|-----------------------|-------------------------------------------------|
| TEMPORAL_SERVICE_ADDRESS           | localhost:7233        | frontend `host:port`                            |
| TEMPORAL_NAMESPACE                 | default               | namespace                                       |
| TEMPORAL_TASK_QUEUE                | stigmer-workflows     | task queue of the `ExecuteWorkflow` activity    |
| TEMPORAL_MAX_CONCURRENCY           | 10                    | activities running at once                      |
| TEMPORAL_TLS                       | false (true with key) | TLS to the frontend                             |
| TEMPORAL_TLS_CA_PATH               | (system roots)        | PEM file of the server's root CA                |
| TEMPORAL_TLS_CERT_PATH             | (none)                | PEM client certificate for mTLS (with the key)  |
| TEMPORAL_TLS_KEY_PATH              | (none)                | PEM client key for mTLS (with the certificate)  |
| TEMPORAL_TLS_SERVER_NAME           | (from address)        | TLS server name override                        |
| TEMPORAL_API_KEY                   | (none)                | API key (hosted Temporal); implies TLS          |
| TEMPORAL_DEFAULT_TIMEOUT_SECONDS   | 3600                  | start-to-close when the document has no timeout |
| TEMPORAL_HEARTBEAT_TIMEOUT_SECONDS | 30                    | activity heartbeat timeout                      |
| TEMPORAL_MAX_PAYLOAD_BYTES         | 2097152               | largest payload inline in Temporal history;     |
|                                    |                       | larger ones cross as payload-store references   |

AMQP ingress

| Variable                      | Default                | Meaning                                        |
|-------------------------------|------------------------|------------------------------------------------|
| AMQP_URL                      | (none)                 | broker `amqp[s]://user:pass@host/vhost`        |
| AMQP_QUEUE                    | stigmer-workflows      | durable queue of execute messages              |
| AMQP_PREFETCH                 | 10                     | unacked deliveries at once (= concurrency)     |
| AMQP_DELIVERY_LIMIT           | 5                      | redeliveries allowed before dead-lettering     |
| AMQP_REQUEUE_DELAY_SECONDS    | 5                      | wait before requeueing after transient trouble |
| AMQP_CONSUMER_TIMEOUT_SECONDS | (broker's)             | per-queue consumer timeout (long executions)   |
| AMQP_MAX_MESSAGE_BYTES        | 4194304                | largest message body accepted                  |
| AMQP_EVENTS_EXCHANGE          | workflow-runner.events | topic exchange of the emit/listen event bus    |

Progress callbacks (one destination at most; stdout when none)

| Variable                         | Default                    | Meaning                                    |
|----------------------------------|----------------------------|--------------------------------------------|
| STIGMER_SERVICE_ENDPOINT         | (none)                     | control plane gRPC `host:port`             |
| STIGMER_SERVICE_USE_TLS          | false                      | TLS to the control plane                   |
| STIGMER_SERVICE_API_KEY          | (none)                     | bearer token for the control plane         |
| CALLBACK_HTTP_URL                | (none)                     | CloudEvents HTTP endpoint                  |
| CALLBACK_HTTP_API_KEY            | (none)                     | bearer token for CALLBACK_HTTP_URL         |
| CALLBACK_AMQP_EXCHANGE           | (none)                     | AMQP exchange for events (needs AMQP_URL)  |
| CALLBACK_JSONL_PATH              | (none)                     | JSON-lines file for events                 |
| CALLBACK_DEAD_LETTER_PATH        | progress-dead-letter.jsonl | events that could not be delivered         |
| CALLBACK_FLUSH_TIMEOUT_SECONDS   | 30                         | wait for the terminal event's confirmation |
| CALLBACK_OUTBOX_CAPACITY         | 10000                      | events held before producers wait          |
| CALLBACK_MAX_BATCH               | 256                        | events per delivery call                   |
| CALLBACK_CONCURRENCY             | 4                          | delivery calls in flight                   |
| CALLBACK_RETRY_MAX_DELAY_SECONDS | 30                         | longest wait between retries               |

Payload store (claim checks for large documents, inputs, outputs and checkpoints: docs/payloads.md)

| Variable                | Default         | Meaning                                                        |
|-------------------------|-----------------|----------------------------------------------------------------|
| PAYLOAD_STORE_URL       | payload-store   | local directory (path or file:// URL) or s3://bucket[/prefix]  |
| PAYLOAD_S3_ENDPOINT     | (AWS)           | S3-compatible endpoint URL (MinIO, R2, ...); http:// allowed   |
| AWS_ACCESS_KEY_ID       | (client chain)  | S3 credentials; unset, the S3 client's own chain applies (web  |
| AWS_SECRET_ACCESS_KEY   | (client chain)  | identity, instance role)                                       |
| AWS_SESSION_TOKEN       | (none)          | temporary credentials' token                                   |
| AWS_REGION              | (client chain)  | S3 region (`auto` for R2)                                      |
| PAYLOAD_OFFLOAD_BYTES   | 262144          | larger payloads travel as references to the store              |
| PAYLOAD_COMPRESSION     | none            | none or zlib (stored objects)                                  |
| PAYLOAD_RETENTION       | 7d              | age after which `workflow-runner gc` deletes an object         |
|                         |                 | (number with s, m, h or d)                                     |
| PAYLOAD_ENCRYPTION_KEY  | (none)          | comma list of base64 AES keys (16/24/32 bytes): the first      |
|                         |                 | encrypts stored and Temporal payloads, all of them decrypt     |
"""

from __future__ import annotations

import base64
import binascii
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit

from executor import DEFAULT_OUTBOUND_DENY, EngineOptions

from ._errors import ConsumerError
from ._events import DEFAULT_MAX_OUTPUT_BYTES, PREVIEW_BYTES
from ._tenants import DEFAULT_METADATA_KEY, Tenancy, parse_tenant_keys

DEFAULT_EXECUTION_MODE = "grpc"
DEFAULT_ENV = "production"
DEFAULT_LOG_LEVEL = "INFO"
DEFAULT_MAX_CONCURRENT_EXECUTIONS = 100
DEFAULT_MAX_DOCUMENT_BYTES = 1_048_576
DEFAULT_EVENT_SOURCE = "urn:workflow-runner"
DEFAULT_EVENT_MAX_OUTPUT_BYTES = DEFAULT_MAX_OUTPUT_BYTES
DEFAULT_METRICS_HOST = "0.0.0.0"  # a container's probes come from outside it
DEFAULT_METRICS_PORT = 8081
# Kubernetes sends SIGKILL 30 s after SIGTERM by default. After the drain come up to 2 s for cancelled leftovers
# to report and at least 2 s of callback flush (see consumer.app), so 20 s of drain stays inside the 30.
DEFAULT_SHUTDOWN_GRACE_SECONDS = 20.0

DEFAULT_EXECUTOR_PROCESSES = max(1, os.cpu_count() or 1)
DEFAULT_EXPRESSION_TIME_LIMIT_SECONDS = 5.0
DEFAULT_EXECUTOR_MEMORY_LIMIT_MB = 1024
DEFAULT_MAX_QUEUED_EXECUTIONS = 1000

DEFAULT_HTTP_TIMEOUT_SECONDS = 30.0
DEFAULT_HTTP_MAX_RESPONSE_BYTES = 16 * 1024 * 1024

DEFAULT_GRPC_HOST = "0.0.0.0"  # a container's clients come from outside it
DEFAULT_GRPC_PORT = 8080
DEFAULT_GRPC_MAX_MESSAGE_BYTES = 4 * 1024 * 1024

DEFAULT_TEMPORAL_SERVICE_ADDRESS = "localhost:7233"
DEFAULT_TEMPORAL_NAMESPACE = "default"
DEFAULT_TEMPORAL_TASK_QUEUE = "stigmer-workflows"
DEFAULT_TEMPORAL_MAX_CONCURRENCY = 10
DEFAULT_TEMPORAL_DEFAULT_TIMEOUT_SECONDS = 3600.0
DEFAULT_TEMPORAL_HEARTBEAT_TIMEOUT_SECONDS = 30.0
DEFAULT_TEMPORAL_MAX_PAYLOAD_BYTES = 2 * 1024 * 1024

DEFAULT_AMQP_QUEUE = "stigmer-workflows"
DEFAULT_AMQP_PREFETCH = 10
DEFAULT_AMQP_DELIVERY_LIMIT = 5
DEFAULT_AMQP_REQUEUE_DELAY_SECONDS = 5.0
DEFAULT_AMQP_MAX_MESSAGE_BYTES = 4 * 1024 * 1024
DEFAULT_AMQP_EVENTS_EXCHANGE = "workflow-runner.events"

DEFAULT_CALLBACK_DEAD_LETTER_PATH = "progress-dead-letter.jsonl"
DEFAULT_CALLBACK_FLUSH_TIMEOUT_SECONDS = 30.0
DEFAULT_CALLBACK_OUTBOX_CAPACITY = 10_000
DEFAULT_CALLBACK_MAX_BATCH = 256
DEFAULT_CALLBACK_CONCURRENCY = 4
DEFAULT_CALLBACK_RETRY_MAX_DELAY_SECONDS = 30.0

DEFAULT_PAYLOAD_STORE_URL = "payload-store"
DEFAULT_PAYLOAD_OFFLOAD_BYTES = 256 * 1024
DEFAULT_PAYLOAD_RETENTION = "7d"
_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}

INGRESSES = ("grpc", "temporal", "amqp")
"""Every ingress, in start order (they stop in the reverse order)."""

_MODE_ALIASES = {"dual": ("grpc", "temporal"), "all": INGRESSES}
_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})
_HOST_PORT = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):(\d{1,5})$")
_SINK_VARIABLES = ("STIGMER_SERVICE_ENDPOINT", "CALLBACK_HTTP_URL", "CALLBACK_AMQP_EXCHANGE", "CALLBACK_JSONL_PATH")


class ConfigError(ConsumerError, ValueError):
    """A configuration value that stops start-up; `str()` is one line naming the variable and why.

    Args:
        variable: The environment variable at fault.
        reason: Why, without the value when the variable holds a secret.
    """

    def __init__(self, variable: str, reason: str) -> None:
        super().__init__(f"{variable}: {reason}")
        self.variable = variable
        self.reason = reason


def variable(environ: Mapping[str, str], name: str) -> str | None:
    """One variable as the configuration reads it: surrounding whitespace trimmed, empty meaning unset.

    For the few places outside `Settings` that read the environment (`submit`), so they agree with `serve`.
    """
    value = environ.get(name)
    return value.strip() if value is not None and value.strip() else None


class _Env:
    """Typed, validated reads of one environment mapping; records which names were read."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self._environ = environ
        self.read: set[str] = set()

    def raw(self, name: str) -> str | None:
        self.read.add(name)
        return variable(self._environ, name)

    def text(self, name: str, default: str) -> str:
        value = self.raw(name)
        return default if value is None else value

    def secret(self, name: str) -> str | None:
        # Trimmed like every value: a key read from a mounted secret file usually ends in a newline, which no
        # bearer token or password contains (and which gRPC refuses in metadata).
        return self.raw(name)

    def integer(self, name: str, default: int, *, low: int, high: int | None = None) -> int:
        value = self.raw(name)
        if value is None:
            return default
        try:
            number = int(value)
        except ValueError:
            raise ConfigError(name, f"must be an integer, got {value!r}") from None
        if number < low or (high is not None and number > high):
            bound = f"between {low} and {high}" if high is not None else f"at least {low}"
            raise ConfigError(name, f"must be {bound}, got {number}")
        return number

    def seconds(self, name: str, default: float | None) -> float | None:
        value = self.raw(name)
        if value is None:
            return default
        try:
            number = float(value)
        except ValueError:
            raise ConfigError(name, f"must be a number of seconds, got {value!r}") from None
        if not number > 0 or number == float("inf"):
            raise ConfigError(name, f"must be a positive number of seconds, got {value!r}")
        return number

    def items(self, name: str) -> tuple[str, ...]:
        """A comma-separated list; empty entries ignored."""
        return tuple(item.strip() for item in (self.raw(name) or "").split(",") if item.strip())

    def flag(self, name: str, default: bool) -> bool:
        value = self.raw(name)
        if value is None:
            return default
        if value.lower() in _TRUE:
            return True
        if value.lower() in _FALSE:
            return False
        raise ConfigError(name, f"must be true or false (1/0, yes/no, on/off), got {value!r}")

    def choice(self, name: str, default: str, choices: tuple[str, ...]) -> str:
        value = self.text(name, default)
        if value.upper() in choices:
            return value.upper()
        if value.lower() in choices:
            return value.lower()
        raise ConfigError(name, f"must be one of {', '.join(choices)}, got {value!r}")

    def host_port(self, name: str, default: str | None) -> str | None:
        value = self.text(name, default) if default is not None else self.raw(name)
        if value is not None and not _valid_host_port(value):
            raise ConfigError(name, f"must be host:port with a port from 1 to 65535, got {value!r}")
        return value

    def url(self, name: str, schemes: tuple[str, ...]) -> str | None:
        value = self.raw(name)
        if value is not None and not _valid_url(value, schemes):
            wanted = " or ".join(scheme + "://" for scheme in schemes)
            shown = _without_password(value)
            raise ConfigError(name, f"must be a {wanted} URL with a host and a valid port, got {shown}")
        return value

    def file(self, name: str) -> Path | None:
        value = self.raw(name)
        if value is None:
            return None
        if not Path(value).is_file():
            raise ConfigError(name, f"no such file: {value}")
        return Path(value)


def _valid_url(value: str, schemes: tuple[str, ...]) -> bool:
    try:
        parts = urlsplit(value)
        port = parts.port  # raises for a port that is not a number from 0 to 65535
    except ValueError:
        return False
    return parts.scheme in schemes and bool(parts.hostname) and port != 0


def _without_password(url: str) -> str:
    """`url` quoted for an error message, its password (if any) replaced by `***`; works on malformed URLs too."""
    return repr(re.sub(r"(//[^/?#@]*?:)[^/?#]*@", r"\1***@", url))


def _valid_host_port(value: str) -> bool:
    match = _HOST_PORT.match(value)
    return match is not None and 1 <= int(match.group(2)) <= 65535


@dataclass(frozen=True, slots=True, kw_only=True)
class IsolationSettings:
    """Worker processes, their limits, and tenants (see `consumer._pool`, `_scheduler`, `_tenants`)."""

    processes: int = DEFAULT_EXECUTOR_PROCESSES
    expression_time_limit: float = DEFAULT_EXPRESSION_TIME_LIMIT_SECONDS
    memory_limit_mb: int = DEFAULT_EXECUTOR_MEMORY_LIMIT_MB
    max_queued: int = DEFAULT_MAX_QUEUED_EXECUTIONS
    tenant_max_concurrent: int | None = None
    tenancy: Tenancy = field(default_factory=Tenancy)

    @classmethod
    def _read(cls, env: _Env) -> IsolationSettings:
        key = env.text("TENANT_METADATA_KEY", DEFAULT_METADATA_KEY)
        try:
            keys = parse_tenant_keys(env.secret("GRPC_TENANT_KEYS") or "")
        except ValueError as exc:
            raise ConfigError("GRPC_TENANT_KEYS", str(exc)) from None
        tenant_cap = env.raw("TENANT_MAX_CONCURRENT")
        return cls(
            processes=env.integer("EXECUTOR_PROCESSES", DEFAULT_EXECUTOR_PROCESSES, low=0, high=256),
            expression_time_limit=_required(
                env.seconds("EXPRESSION_TIME_LIMIT_SECONDS", DEFAULT_EXPRESSION_TIME_LIMIT_SECONDS)
            ),
            memory_limit_mb=env.integer("EXECUTOR_MEMORY_LIMIT_MB", DEFAULT_EXECUTOR_MEMORY_LIMIT_MB, low=128),
            max_queued=env.integer("MAX_QUEUED_EXECUTIONS", DEFAULT_MAX_QUEUED_EXECUTIONS, low=0),
            tenant_max_concurrent=None if tenant_cap is None else env.integer("TENANT_MAX_CONCURRENT", 1, low=1),
            tenancy=Tenancy(metadata_key=key, keys=keys),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class GrpcSettings:
    """The gRPC ingress (`GRPC_*`)."""

    host: str = DEFAULT_GRPC_HOST
    port: int = DEFAULT_GRPC_PORT
    api_key: str | None = field(default=None, repr=False)
    max_message_bytes: int = DEFAULT_GRPC_MAX_MESSAGE_BYTES

    @classmethod
    def _read(cls, env: _Env) -> GrpcSettings:
        return cls(
            host=env.text("GRPC_HOST", DEFAULT_GRPC_HOST),
            port=env.integer("GRPC_PORT", DEFAULT_GRPC_PORT, low=0, high=65535),
            api_key=env.secret("GRPC_API_KEY"),
            max_message_bytes=env.integer("GRPC_MAX_MESSAGE_BYTES", DEFAULT_GRPC_MAX_MESSAGE_BYTES, low=1024),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class TemporalSettings:
    """The Temporal ingress (`TEMPORAL_*`).

    Attributes:
        tls: TLS to the frontend; on by default when an API key is set (hosted Temporal requires it).
        tls_ca_path / tls_cert_path / tls_key_path: PEM files; cert and key come together (mTLS).
        default_timeout: Activity start-to-close when the document has no `timeout`.
        max_payload_bytes: Documents, inputs and outputs above this fail non-retryably.
    """

    address: str = DEFAULT_TEMPORAL_SERVICE_ADDRESS
    namespace: str = DEFAULT_TEMPORAL_NAMESPACE
    task_queue: str = DEFAULT_TEMPORAL_TASK_QUEUE
    max_concurrency: int = DEFAULT_TEMPORAL_MAX_CONCURRENCY
    tls: bool = False
    tls_ca_path: Path | None = None
    tls_cert_path: Path | None = None
    tls_key_path: Path | None = None
    tls_server_name: str | None = None
    api_key: str | None = field(default=None, repr=False)
    default_timeout: float = DEFAULT_TEMPORAL_DEFAULT_TIMEOUT_SECONDS
    heartbeat_timeout: float = DEFAULT_TEMPORAL_HEARTBEAT_TIMEOUT_SECONDS
    max_payload_bytes: int = DEFAULT_TEMPORAL_MAX_PAYLOAD_BYTES

    @classmethod
    def _read(cls, env: _Env) -> TemporalSettings:
        api_key = env.secret("TEMPORAL_API_KEY")
        cert, key = env.file("TEMPORAL_TLS_CERT_PATH"), env.file("TEMPORAL_TLS_KEY_PATH")
        if (cert is None) != (key is None):
            missing = "TEMPORAL_TLS_KEY_PATH" if key is None else "TEMPORAL_TLS_CERT_PATH"
            raise ConfigError(missing, "required with the other half of the client certificate pair")
        return cls(
            address=env.host_port("TEMPORAL_SERVICE_ADDRESS", DEFAULT_TEMPORAL_SERVICE_ADDRESS) or "",
            namespace=env.text("TEMPORAL_NAMESPACE", DEFAULT_TEMPORAL_NAMESPACE),
            task_queue=env.text("TEMPORAL_TASK_QUEUE", DEFAULT_TEMPORAL_TASK_QUEUE),
            max_concurrency=env.integer("TEMPORAL_MAX_CONCURRENCY", DEFAULT_TEMPORAL_MAX_CONCURRENCY, low=1),
            tls=env.flag("TEMPORAL_TLS", api_key is not None or cert is not None),
            tls_ca_path=env.file("TEMPORAL_TLS_CA_PATH"),
            tls_cert_path=cert,
            tls_key_path=key,
            tls_server_name=env.raw("TEMPORAL_TLS_SERVER_NAME"),
            api_key=api_key,
            default_timeout=_required(
                env.seconds("TEMPORAL_DEFAULT_TIMEOUT_SECONDS", DEFAULT_TEMPORAL_DEFAULT_TIMEOUT_SECONDS)
            ),
            heartbeat_timeout=_required(
                env.seconds("TEMPORAL_HEARTBEAT_TIMEOUT_SECONDS", DEFAULT_TEMPORAL_HEARTBEAT_TIMEOUT_SECONDS)
            ),
            max_payload_bytes=env.integer("TEMPORAL_MAX_PAYLOAD_BYTES", DEFAULT_TEMPORAL_MAX_PAYLOAD_BYTES, low=1024),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class AmqpSettings:
    """The AMQP ingress and event bus (`AMQP_*`); `url` is None when no broker is configured.

    Attributes:
        consumer_timeout: Per-queue consumer timeout (None: the broker's default, 30 minutes on RabbitMQ).
    """

    url: str | None = field(default=None, repr=False)
    queue: str = DEFAULT_AMQP_QUEUE
    prefetch: int = DEFAULT_AMQP_PREFETCH
    delivery_limit: int = DEFAULT_AMQP_DELIVERY_LIMIT
    requeue_delay: float = DEFAULT_AMQP_REQUEUE_DELAY_SECONDS
    consumer_timeout: float | None = None
    max_message_bytes: int = DEFAULT_AMQP_MAX_MESSAGE_BYTES
    events_exchange: str = DEFAULT_AMQP_EVENTS_EXCHANGE

    @property
    def dead_letter_exchange(self) -> str:
        """`<queue>.dlx`."""
        return f"{self.queue}.dlx"

    @property
    def dead_letter_queue(self) -> str:
        """`<queue>.dead`."""
        return f"{self.queue}.dead"

    @classmethod
    def _read(cls, env: _Env) -> AmqpSettings:
        return cls(
            url=env.url("AMQP_URL", ("amqp", "amqps")),
            queue=env.text("AMQP_QUEUE", DEFAULT_AMQP_QUEUE),
            prefetch=env.integer("AMQP_PREFETCH", DEFAULT_AMQP_PREFETCH, low=1, high=65535),
            delivery_limit=env.integer("AMQP_DELIVERY_LIMIT", DEFAULT_AMQP_DELIVERY_LIMIT, low=1),
            requeue_delay=_required(env.seconds("AMQP_REQUEUE_DELAY_SECONDS", DEFAULT_AMQP_REQUEUE_DELAY_SECONDS)),
            consumer_timeout=env.seconds("AMQP_CONSUMER_TIMEOUT_SECONDS", None),
            max_message_bytes=env.integer("AMQP_MAX_MESSAGE_BYTES", DEFAULT_AMQP_MAX_MESSAGE_BYTES, low=1024),
            events_exchange=env.text("AMQP_EVENTS_EXCHANGE", DEFAULT_AMQP_EVENTS_EXCHANGE),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class CallbackSettings:
    """Progress delivery: the one sink destination and the reporter's limits.

    Attributes:
        endpoint / use_tls / api_key: gRPC control plane (`STIGMER_SERVICE_*`).
        http_url / http_api_key: CloudEvents over HTTP.
        amqp_exchange: AMQP exchange (the broker is `AmqpSettings.url`).
        jsonl_path: JSON-lines file. With no destination at all, events go to stdout.
    """

    endpoint: str | None = None
    use_tls: bool = False
    api_key: str | None = field(default=None, repr=False)
    http_url: str | None = None
    http_api_key: str | None = field(default=None, repr=False)
    amqp_exchange: str | None = None
    jsonl_path: Path | None = None
    dead_letter_path: Path = Path(DEFAULT_CALLBACK_DEAD_LETTER_PATH)
    flush_timeout: float = DEFAULT_CALLBACK_FLUSH_TIMEOUT_SECONDS
    outbox_capacity: int = DEFAULT_CALLBACK_OUTBOX_CAPACITY
    max_batch: int = DEFAULT_CALLBACK_MAX_BATCH
    concurrency: int = DEFAULT_CALLBACK_CONCURRENCY
    retry_max_delay: float = DEFAULT_CALLBACK_RETRY_MAX_DELAY_SECONDS

    @property
    def http_headers(self) -> dict[str, str]:
        """Headers for the HTTP sink (its bearer token, when set)."""
        return {"authorization": f"Bearer {self.http_api_key}"} if self.http_api_key else {}

    @classmethod
    def _read(cls, env: _Env) -> CallbackSettings:
        chosen = [name for name in _SINK_VARIABLES if env.raw(name) is not None]
        if len(chosen) > 1:
            raise ConfigError(chosen[1], f"only one progress destination may be set, {chosen[0]} is set too")
        jsonl = env.raw("CALLBACK_JSONL_PATH")
        return cls(
            endpoint=env.host_port("STIGMER_SERVICE_ENDPOINT", None),
            use_tls=env.flag("STIGMER_SERVICE_USE_TLS", False),
            api_key=env.secret("STIGMER_SERVICE_API_KEY"),
            http_url=env.url("CALLBACK_HTTP_URL", ("http", "https")),
            http_api_key=env.secret("CALLBACK_HTTP_API_KEY"),
            amqp_exchange=env.raw("CALLBACK_AMQP_EXCHANGE"),
            jsonl_path=None if jsonl is None else Path(jsonl),
            dead_letter_path=Path(env.text("CALLBACK_DEAD_LETTER_PATH", DEFAULT_CALLBACK_DEAD_LETTER_PATH)),
            flush_timeout=_required(
                env.seconds("CALLBACK_FLUSH_TIMEOUT_SECONDS", DEFAULT_CALLBACK_FLUSH_TIMEOUT_SECONDS)
            ),
            outbox_capacity=env.integer("CALLBACK_OUTBOX_CAPACITY", DEFAULT_CALLBACK_OUTBOX_CAPACITY, low=1),
            max_batch=env.integer("CALLBACK_MAX_BATCH", DEFAULT_CALLBACK_MAX_BATCH, low=1),
            concurrency=env.integer("CALLBACK_CONCURRENCY", DEFAULT_CALLBACK_CONCURRENCY, low=1),
            retry_max_delay=_required(
                env.seconds("CALLBACK_RETRY_MAX_DELAY_SECONDS", DEFAULT_CALLBACK_RETRY_MAX_DELAY_SECONDS)
            ),
        )


def _required(value: float | None) -> float:
    assert value is not None, "a variable with a default always has a value"
    return value


@dataclass(frozen=True, slots=True, kw_only=True)
class PayloadSettings:
    """The payload store (`PAYLOAD_*`): where large payloads go and how they are kept.

    Attributes:
        store_url: `s3://bucket[/prefix]`, a `file://` URL or a directory path.
        s3_endpoint: Endpoint override of an S3-compatible service.
        offload_bytes: Payloads larger than this travel as references.
        compression: `none` or `zlib`.
        retention: Seconds an object is kept after its last write (`workflow-runner gc`, the S3 lifecycle rule).
        encryption_keys: AES keys, the current one first; empty when encryption is off.
        s3_access_key_id / s3_secret_access_key / s3_session_token / s3_region: the standard `AWS_*` variables,
            handed to the S3 client when set (unset, the client's own chain applies: web identity, instance role).
    """

    store_url: str = DEFAULT_PAYLOAD_STORE_URL
    s3_endpoint: str | None = None
    s3_access_key_id: str | None = None
    s3_secret_access_key: str | None = field(default=None, repr=False)
    s3_session_token: str | None = field(default=None, repr=False)
    s3_region: str | None = None
    offload_bytes: int = DEFAULT_PAYLOAD_OFFLOAD_BYTES
    compression: str = "none"
    retention: float = 7 * 86400.0
    encryption_keys: tuple[bytes, ...] = field(default=(), repr=False)

    @classmethod
    def _read(cls, env: _Env) -> PayloadSettings:
        store_url = env.text("PAYLOAD_STORE_URL", DEFAULT_PAYLOAD_STORE_URL)
        if store_url.startswith("s3://") and not urlsplit(store_url).netloc:
            raise ConfigError("PAYLOAD_STORE_URL", f"an s3:// URL needs a bucket, got {store_url!r}")
        return cls(
            store_url=store_url,
            s3_endpoint=env.url("PAYLOAD_S3_ENDPOINT", ("http", "https")),
            s3_access_key_id=env.raw("AWS_ACCESS_KEY_ID"),
            s3_secret_access_key=env.secret("AWS_SECRET_ACCESS_KEY"),
            s3_session_token=env.secret("AWS_SESSION_TOKEN"),
            s3_region=env.raw("AWS_REGION"),
            offload_bytes=env.integer("PAYLOAD_OFFLOAD_BYTES", DEFAULT_PAYLOAD_OFFLOAD_BYTES, low=1024),
            compression=env.choice("PAYLOAD_COMPRESSION", "none", ("none", "zlib")),
            retention=_duration(env, "PAYLOAD_RETENTION", DEFAULT_PAYLOAD_RETENTION),
            encryption_keys=_aes_keys(env, "PAYLOAD_ENCRYPTION_KEY"),
        )


def _duration(env: _Env, name: str, default: str) -> float:
    value = env.text(name, default).strip().lower()
    number, unit = (value[:-1], value[-1]) if value[-1:] in _DURATION_UNITS else (value, "s")
    try:
        seconds = float(number) * _DURATION_UNITS[unit]
    except ValueError:
        raise ConfigError(name, f"must be a duration like 3600, 90m, 24h or 7d, got {value!r}") from None
    if not seconds > 0 or seconds == float("inf"):
        raise ConfigError(name, f"must be a positive duration, got {value!r}")
    return seconds


def _aes_keys(env: _Env, name: str) -> tuple[bytes, ...]:
    """Base64 keys of 16, 24 or 32 bytes; the message counts entries and never shows a key."""
    keys = []
    for index, item in enumerate(env.items(name), start=1):
        try:
            key = base64.b64decode(
                item + "=" * (-len(item) % 4), altchars=b"-_" if "-" in item or "_" in item else None
            )
        except (binascii.Error, ValueError):
            raise ConfigError(name, f"key {index} is not base64") from None
        if len(key) not in (16, 24, 32):
            raise ConfigError(name, f"key {index} is {len(key)} bytes once decoded; AES needs 16, 24 or 32")
        keys.append(key)
    return tuple(keys)


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    """Everything the process is configured with; build it with `from_env`.

    Attributes:
        ingresses: Selected ingresses in start order, a subset of `INGRESSES`.
        skipped: Ingresses `EXECUTION_MODE=all` named but that are not configured, with the reason (logged).
        metrics_port: None when `METRICS_PORT=off`.
    """

    ingresses: tuple[str, ...] = (DEFAULT_EXECUTION_MODE,)
    skipped: tuple[tuple[str, str], ...] = ()
    env: str = DEFAULT_ENV
    log_level: str = DEFAULT_LOG_LEVEL
    log_format: str = "json"
    max_concurrent_executions: int = DEFAULT_MAX_CONCURRENT_EXECUTIONS
    max_document_bytes: int = DEFAULT_MAX_DOCUMENT_BYTES
    engine: EngineOptions = field(default_factory=EngineOptions)
    event_source: str = DEFAULT_EVENT_SOURCE
    event_max_output_bytes: int = DEFAULT_EVENT_MAX_OUTPUT_BYTES
    metrics_host: str = DEFAULT_METRICS_HOST
    metrics_port: int | None = DEFAULT_METRICS_PORT
    shutdown_grace: float = DEFAULT_SHUTDOWN_GRACE_SECONDS
    isolation: IsolationSettings = field(default_factory=IsolationSettings)
    grpc: GrpcSettings = field(default_factory=GrpcSettings)
    temporal: TemporalSettings = field(default_factory=TemporalSettings)
    amqp: AmqpSettings = field(default_factory=AmqpSettings)
    callbacks: CallbackSettings = field(default_factory=CallbackSettings)
    payloads: PayloadSettings = field(default_factory=PayloadSettings)

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Settings:
        """Read and validate every variable (see the module docstring for the list).

        Args:
            environ: `os.environ`, or a plain dict in tests.

        Raises:
            ConfigError: The first bad value, naming its variable.
        """
        return cls._build(_Env(environ))

    @classmethod
    def _build(cls, env: _Env) -> Settings:
        # Every variable is read unconditionally, so `known_variables` sees them all.
        amqp = AmqpSettings._read(env)
        callbacks = CallbackSettings._read(env)
        if callbacks.amqp_exchange and not amqp.url:
            raise ConfigError("AMQP_URL", "required when CALLBACK_AMQP_EXCHANGE is set")
        ingresses, skipped = _modes(env.text("EXECUTION_MODE", DEFAULT_EXECUTION_MODE), amqp)
        deployment = env.text("ENV", DEFAULT_ENV)
        return cls(
            ingresses=ingresses,
            skipped=skipped,
            env=deployment,
            log_level=env.choice("LOG_LEVEL", DEFAULT_LOG_LEVEL, _LOG_LEVELS),
            log_format=env.choice("LOG_FORMAT", "text" if deployment == "local" else "json", ("json", "text")),
            max_concurrent_executions=env.integer(
                "MAX_CONCURRENT_EXECUTIONS", DEFAULT_MAX_CONCURRENT_EXECUTIONS, low=1
            ),
            max_document_bytes=env.integer("MAX_DOCUMENT_BYTES", DEFAULT_MAX_DOCUMENT_BYTES, low=64),
            engine=_engine_options(env),
            event_source=env.text("EVENT_SOURCE", DEFAULT_EVENT_SOURCE),
            event_max_output_bytes=env.integer(
                "EVENT_MAX_OUTPUT_BYTES", DEFAULT_EVENT_MAX_OUTPUT_BYTES, low=PREVIEW_BYTES
            ),
            metrics_host=env.text("METRICS_HOST", DEFAULT_METRICS_HOST),
            metrics_port=_metrics_port(env),
            shutdown_grace=_required(env.seconds("SHUTDOWN_GRACE_SECONDS", DEFAULT_SHUTDOWN_GRACE_SECONDS)),
            isolation=IsolationSettings._read(env),
            grpc=GrpcSettings._read(env),
            temporal=TemporalSettings._read(env),
            amqp=amqp,
            callbacks=callbacks,
            payloads=PayloadSettings._read(env),
        )

    @property
    def secrets(self) -> tuple[str, ...]:
        """Every configured credential, for log redaction (URL passwords as written and percent-decoded)."""
        values = (
            self.grpc.api_key,
            self.temporal.api_key,
            self.callbacks.api_key,
            self.callbacks.http_api_key,
            *_url_passwords(self.amqp.url),
            *_url_passwords(self.callbacks.http_url),
            *self.isolation.tenancy.keys,
            self.payloads.s3_secret_access_key,
            self.payloads.s3_session_token,
            *(base64.b64encode(key).decode() for key in self.payloads.encryption_keys),
        )
        return tuple(dict.fromkeys(value for value in values if value))


def engine_options_from_env(environ: Mapping[str, str]) -> EngineOptions:
    """The engine options `serve` would use (`ALLOW_SHELL`, `OUTBOUND_*`, …), for `run` and `validate`.

    Raises:
        ConfigError: The first bad value, naming its variable.
    """
    return _engine_options(_Env(environ))


def _engine_options(env: _Env) -> EngineOptions:
    """What task handlers may do: processes, outbound calls, local files, subflow catalog."""
    timeout = env.seconds("HTTP_TIMEOUT_SECONDS", DEFAULT_HTTP_TIMEOUT_SECONDS)
    return EngineOptions(
        allow_shell=env.flag("ALLOW_SHELL", False),
        allow_script=env.flag("ALLOW_SCRIPT", False),
        allow_mcp_stdio=env.flag("ALLOW_MCP_STDIO", False),
        outbound_allow=env.items("OUTBOUND_ALLOW"),
        # Added to the built-in deny list, never replacing it: the cloud metadata addresses stay out of reach.
        outbound_deny=DEFAULT_OUTBOUND_DENY + env.items("OUTBOUND_DENY"),
        http_timeout=_required(timeout),
        max_response_bytes=env.integer("HTTP_MAX_RESPONSE_BYTES", DEFAULT_HTTP_MAX_RESPONSE_BYTES, low=1024),
        resource_roots=env.items("RESOURCE_ROOTS"),
        catalog_dir=env.raw("CATALOG_DIR"),
        process_timeout=env.seconds("PROCESS_TIMEOUT_SECONDS", None),
    )


def _metrics_port(env: _Env) -> int | None:
    if (env.raw("METRICS_PORT") or "").lower() == "off":
        return None
    return env.integer("METRICS_PORT", DEFAULT_METRICS_PORT, low=0, high=65535)


def _modes(text: str, amqp: AmqpSettings) -> tuple[tuple[str, ...], tuple[tuple[str, str], ...]]:
    """`EXECUTION_MODE` → selected ingresses in start order, and those `all` named but cannot start."""
    tokens = [token.strip().lower() for token in text.split(",") if token.strip()]
    selected: set[str] = set()
    for token in tokens or [""]:
        if token not in INGRESSES and token not in _MODE_ALIASES:
            known = ", ".join((*INGRESSES, *_MODE_ALIASES))
            raise ConfigError("EXECUTION_MODE", f"unknown mode {token!r}; use one of {known} or a comma list")
        selected.update(_MODE_ALIASES.get(token, (token,)))
    skipped: tuple[tuple[str, str], ...] = ()
    if "amqp" in selected and amqp.url is None:
        if "amqp" in tokens:
            raise ConfigError("AMQP_URL", "required when EXECUTION_MODE includes amqp")
        selected.discard("amqp")
        skipped = (("amqp", "AMQP_URL is not set"),)
    return tuple(name for name in INGRESSES if name in selected), skipped


def _url_passwords(url: str | None) -> tuple[str, ...]:
    password = None if url is None else urlsplit(url).password
    return () if not password else (password, unquote(password))


def known_variables() -> frozenset[str]:
    """Every variable `Settings.from_env` reads (the compose test checks the stack against it)."""
    env = _Env({})
    Settings._build(env)
    return frozenset(env.read)
