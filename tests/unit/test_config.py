"""Configuration from the environment: defaults, modes, and one clear line for every bad value."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from consumer import config
from consumer.config import ConfigError, Settings, known_variables


def test_defaults_need_nothing() -> None:
    """With an empty environment: gRPC only on 8080, events to stdout, the seed's Temporal defaults."""
    settings = Settings.from_env({})
    assert settings.ingresses == ("grpc",)
    assert (settings.grpc.port, settings.metrics_port, settings.log_format) == (8080, 8081, "json")
    assert (settings.temporal.address, settings.temporal.namespace) == ("localhost:7233", "default")
    assert (settings.temporal.task_queue, settings.temporal.max_concurrency) == ("stigmer-workflows", 10)
    assert settings.callbacks.endpoint is None
    assert settings.callbacks.jsonl_path is None
    assert settings.amqp.url is None


@pytest.mark.parametrize(
    ("mode", "ingresses"),
    [
        ("grpc", ("grpc",)),
        ("temporal", ("temporal",)),
        ("dual", ("grpc", "temporal")),
        ("all", ("grpc", "temporal", "amqp")),
        ("AMQP, grpc", ("grpc", "amqp")),
        ("temporal,dual", ("grpc", "temporal")),
    ],
)
def test_execution_modes(mode: str, ingresses: tuple[str, ...]) -> None:
    """EXECUTION_MODE names, aliases and comma lists select ingresses, always in start order."""
    settings = Settings.from_env({"EXECUTION_MODE": mode, "AMQP_URL": "amqp://guest:guest@localhost:5672/"})
    assert settings.ingresses == ingresses


def test_all_without_broker_skips_amqp() -> None:
    """`all` with no AMQP_URL runs the other ingresses and says why AMQP is off; naming `amqp` is an error."""
    settings = Settings.from_env({"EXECUTION_MODE": "all"})
    assert settings.ingresses == ("grpc", "temporal")
    assert settings.skipped == (("amqp", "AMQP_URL is not set"),)
    with pytest.raises(ConfigError, match=r"^AMQP_URL: required when EXECUTION_MODE includes amqp$"):
        Settings.from_env({"EXECUTION_MODE": "grpc,amqp"})


@pytest.mark.parametrize(
    ("env", "variable", "why"),
    [
        ({"EXECUTION_MODE": "kafka"}, "EXECUTION_MODE", "unknown mode 'kafka'"),
        ({"EXECUTION_MODE": " , "}, "EXECUTION_MODE", "unknown mode ''"),
        ({"GRPC_PORT": "80a"}, "GRPC_PORT", "must be an integer"),
        ({"GRPC_PORT": "70000"}, "GRPC_PORT", "between 0 and 65535"),
        ({"GRPC_MAX_MESSAGE_BYTES": "10"}, "GRPC_MAX_MESSAGE_BYTES", "at least 1024"),
        ({"MAX_CONCURRENT_EXECUTIONS": "0"}, "MAX_CONCURRENT_EXECUTIONS", "at least 1"),
        ({"LOG_LEVEL": "loud"}, "LOG_LEVEL", "one of DEBUG"),
        ({"LOG_FORMAT": "xml"}, "LOG_FORMAT", "one of json, text"),
        ({"SHUTDOWN_GRACE_SECONDS": "-3"}, "SHUTDOWN_GRACE_SECONDS", "positive number"),
        ({"SHUTDOWN_GRACE_SECONDS": "nan"}, "SHUTDOWN_GRACE_SECONDS", "positive number"),
        ({"METRICS_PORT": "on"}, "METRICS_PORT", "must be an integer"),
        ({"ALLOW_SHELL": "maybe"}, "ALLOW_SHELL", "true or false"),
        ({"STIGMER_SERVICE_ENDPOINT": "control-plane"}, "STIGMER_SERVICE_ENDPOINT", "host:port"),
        ({"STIGMER_SERVICE_USE_TLS": "2"}, "STIGMER_SERVICE_USE_TLS", "true or false"),
        ({"TEMPORAL_SERVICE_ADDRESS": "temporal:0"}, "TEMPORAL_SERVICE_ADDRESS", "host:port"),
        ({"TEMPORAL_MAX_CONCURRENCY": "none"}, "TEMPORAL_MAX_CONCURRENCY", "must be an integer"),
        ({"TEMPORAL_TLS_CA_PATH": "/no/such.pem"}, "TEMPORAL_TLS_CA_PATH", "no such file"),
        ({"AMQP_URL": "http://broker"}, "AMQP_URL", "amqp:// or amqps://"),
        ({"AMQP_PREFETCH": "0"}, "AMQP_PREFETCH", "between 1 and 65535"),
        ({"CALLBACK_HTTP_URL": "ftp://x"}, "CALLBACK_HTTP_URL", "http:// or https://"),
        ({"CALLBACK_AMQP_EXCHANGE": "events"}, "AMQP_URL", "required when CALLBACK_AMQP_EXCHANGE is set"),
        ({"CALLBACK_FLUSH_TIMEOUT_SECONDS": "0"}, "CALLBACK_FLUSH_TIMEOUT_SECONDS", "positive number"),
    ],
)
def test_bad_values_name_the_variable(env: dict[str, str], variable: str, why: str) -> None:
    """Each bad value raises one line that starts with the variable's name and says why."""
    with pytest.raises(ConfigError) as info:
        Settings.from_env(env)
    message = str(info.value)
    assert message.startswith(f"{variable}: ")
    assert why in message
    assert "\n" not in message
    assert info.value.variable == variable


def test_one_progress_destination_at_most() -> None:
    """Two sink destinations at once are refused rather than one silently ignored."""
    with pytest.raises(ConfigError, match="only one progress destination"):
        Settings.from_env({"STIGMER_SERVICE_ENDPOINT": "cp:443", "CALLBACK_HTTP_URL": "http://cp/events"})


def test_secrets_stay_out_of_repr_and_errors() -> None:
    """API keys and the broker password never show in a repr or an error message."""
    env = {
        "GRPC_API_KEY": "grpc-key-1",
        "TEMPORAL_API_KEY": "temporal-key-2",
        "STIGMER_SERVICE_API_KEY": "cp-key-3",
        "CALLBACK_HTTP_API_KEY": "http-key-4",
        "AMQP_URL": "amqp://user:broker-pass-5@rabbit:5672/",
    }
    settings = Settings.from_env(env)
    text = repr(settings)
    for secret in ("grpc-key-1", "temporal-key-2", "cp-key-3", "http-key-4", "broker-pass-5"):
        assert secret not in text
        assert secret in settings.secrets
    with pytest.raises(ConfigError) as info:
        Settings.from_env({"AMQP_URL": "http://user:broker-pass-5@rabbit"})
    assert "broker-pass-5" not in str(info.value)


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("AMQP_URL", "amqp://user:broker-pass-5@rabbit:99999/"),
        ("AMQP_URL", "amqp://user:broker-pass-5@rabbit:port/"),
        ("AMQP_URL", "amqp://user:broker-pass-5@[rabbit/"),
        ("CALLBACK_HTTP_URL", "https://user:sink-pass-6@cp:0x50/events"),
        ("CALLBACK_HTTP_URL", "ftp://user:sink-pass-6@cp/events"),
    ],
)
def test_malformed_urls_are_one_line_without_the_password(variable: str, value: str) -> None:
    """A URL with a bad port or host stops start-up with one line naming the variable (not a traceback from
    the broker client later), and the password in it is not repeated."""
    with pytest.raises(ConfigError) as info:
        Settings.from_env({variable: value})
    message = str(info.value)
    assert message.startswith(f"{variable}: ")
    assert "pass-" not in message
    assert "\n" not in message


def test_password_in_the_callback_url_is_masked_in_logs() -> None:
    """A CALLBACK_HTTP_URL with `user:password@` (httpx logs every request's URL) is among the masked secrets,
    in both its raw and its percent-decoded spelling."""
    settings = Settings.from_env({"CALLBACK_HTTP_URL": "https://bot:p%40ss-word-7@cp/events"})
    assert {"p%40ss-word-7", "p@ss-word-7"} <= set(settings.secrets)
    amqp = Settings.from_env({"AMQP_URL": "amqp://bot:br%2Fker-8@rabbit/"})
    assert {"br%2Fker-8", "br/ker-8"} <= set(amqp.secrets)


def test_whitespace_around_values_is_trimmed() -> None:
    """Values read from files or YAML often carry a newline or spaces; they mean the same trimmed."""
    settings = Settings.from_env(
        {
            "GRPC_PORT": " 9090\n",
            "GRPC_API_KEY": "k3y\n",
            "EXECUTION_MODE": " grpc , amqp ",
            "AMQP_URL": " amqp://u:p4ss-word@rabbit/\n",
            "AMQP_QUEUE": "  work  ",
            "METRICS_PORT": "off ",
        }
    )
    assert (settings.grpc.port, settings.grpc.api_key, settings.ingresses) == (9090, "k3y", ("grpc", "amqp"))
    assert (settings.amqp.url, settings.amqp.queue, settings.metrics_port) == (
        "amqp://u:p4ss-word@rabbit/",
        "work",
        None,
    )
    assert config.variable({"X": " v\n"}, "X") == "v"
    assert config.variable({"X": " \n"}, "X") is None


def test_temporal_tls(tmp_path: Path) -> None:
    """An API key turns TLS on unless TEMPORAL_TLS says otherwise; a client cert needs its key."""
    assert Settings.from_env({"TEMPORAL_API_KEY": "k"}).temporal.tls
    assert not Settings.from_env({"TEMPORAL_API_KEY": "k", "TEMPORAL_TLS": "false"}).temporal.tls
    cert = tmp_path / "cert.pem"
    cert.write_text("pem")
    with pytest.raises(ConfigError, match=r"^TEMPORAL_TLS_KEY_PATH: "):
        Settings.from_env({"TEMPORAL_TLS_CERT_PATH": str(cert)})
    both = Settings.from_env({"TEMPORAL_TLS_CERT_PATH": str(cert), "TEMPORAL_TLS_KEY_PATH": str(cert)})
    assert both.temporal.tls
    assert both.temporal.tls_key_path == cert


def test_local_env_and_empty_values() -> None:
    """ENV=local switches logs to text; an empty value counts as unset; METRICS_PORT=off disables metrics."""
    settings = Settings.from_env({"ENV": "local", "GRPC_PORT": "", "METRICS_PORT": "off", "LOG_LEVEL": "debug"})
    assert (settings.log_format, settings.grpc.port, settings.metrics_port, settings.log_level) == (
        "text",
        8080,
        None,
        "DEBUG",
    )


def test_every_variable_is_documented() -> None:
    """The module docstring's table lists exactly the variables `from_env` reads (docs/configuration.md copies it)."""
    doc = config.__doc__ or ""
    listed = {line.split("|")[1].strip() for line in doc.splitlines() if line.startswith("| ") and line[2:3].isupper()}
    listed.discard("Variable")
    listed.discard("")
    assert listed == known_variables()


def test_defaults_are_module_constants() -> None:
    """The seed's names and defaults are kept."""
    assert config.DEFAULT_GRPC_PORT == 8080
    assert config.DEFAULT_TEMPORAL_SERVICE_ADDRESS == "localhost:7233"
    assert config.DEFAULT_TEMPORAL_TASK_QUEUE == "stigmer-workflows"
    assert {"GRPC_PORT", "LOG_LEVEL", "ENV", "STIGMER_SERVICE_ENDPOINT", "TEMPORAL_NAMESPACE"} <= known_variables()


def test_engine_options_from_environment() -> None:
    """Process and outbound-call switches reach the engine; the metadata address stays denied."""
    engine = Settings.from_env(
        {
            "ALLOW_SHELL": "yes",
            "OUTBOUND_ALLOW": "api.example.com, 10.0.0.0/8",
            "OUTBOUND_DENY": "*.internal",
            "HTTP_TIMEOUT_SECONDS": "5",
            "RESOURCE_ROOTS": "/srv/a,/srv/b",
            "CATALOG_DIR": "/srv/catalog",
            "PROCESS_TIMEOUT_SECONDS": "60",
        }
    ).engine
    assert (engine.allow_shell, engine.allow_script) == (True, False)
    assert engine.outbound_allow == ("api.example.com", "10.0.0.0/8")
    assert "169.254.169.254/32" in engine.outbound_deny
    assert "*.internal" in engine.outbound_deny
    assert (engine.http_timeout, engine.process_timeout) == (5.0, 60.0)
    assert (engine.resource_roots, engine.catalog_dir) == (("/srv/a", "/srv/b"), "/srv/catalog")
    with pytest.raises(ConfigError, match=r"^HTTP_TIMEOUT_SECONDS: "):
        Settings.from_env({"HTTP_TIMEOUT_SECONDS": "soon"})


def test_documented_configuration_table_matches() -> None:
    """The configuration table in docs/configuration.md lists exactly the variables the service reads."""
    section = (Path(__file__).resolve().parents[2] / "docs" / "configuration.md").read_text(encoding="utf-8")

    listed = set(re.findall(r"^\| `([A-Z][A-Z0-9_]+)`", section, flags=re.MULTILINE))
    assert listed == set(known_variables())
