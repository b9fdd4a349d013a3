"""The compose stack and Dockerfile: parseable, pinned, and configured only through variables the runner knows."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from consumer.config import Settings, known_variables

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "compose" / "compose.yaml"
DOCKERFILE = ROOT / "Dockerfile"
OWN_IMAGE = "workflow-runner:dev"


def stack() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(data, dict)
    return data


def runner_services() -> dict[str, dict[str, Any]]:
    """Services that run this project's image (built here), whose environment the runner reads."""
    return {name: svc for name, svc in stack()["services"].items() if "build" in svc or svc.get("image") == OWN_IMAGE}


def test_stack_has_its_services_with_healthchecks() -> None:
    """Temporal, RabbitMQ, the runner and the sink are there; each has a healthcheck or is probed by its image."""
    services = stack()["services"]
    assert {"temporal", "rabbitmq", "runner", "sink"} <= set(services)
    for name in ("temporal", "rabbitmq", "sink"):
        assert "healthcheck" in services[name], name
    assert "HEALTHCHECK" in DOCKERFILE.read_text()
    assert services["runner"]["environment"]["EXECUTION_MODE"] == "all"
    assert services["sink"]["command"][0] == "sink"
    assert all(dep["condition"] == "service_healthy" for dep in services["runner"]["depends_on"].values())


def test_runner_environment_is_known_and_valid() -> None:
    """Every variable the stack gives the runner is one the configuration reads, and together they validate."""
    for name, service in runner_services().items():
        environment = {key: str(value) for key, value in (service.get("environment") or {}).items()}
        unknown = set(environment) - known_variables()
        assert not unknown, f"{name} sets variables the runner does not read: {sorted(unknown)}"
        settings = Settings.from_env(environment)
        if name == "runner":
            assert settings.ingresses == ("grpc", "temporal", "amqp")


def test_no_image_floats() -> None:
    """Every third-party image is pinned to a version: no `latest`, no missing tag."""
    for name, service in stack()["services"].items():
        image = service.get("image")
        if image is None or image == OWN_IMAGE:
            continue
        assert re.fullmatch(r"[\w./-]+:[\w.-]*\d[\w.-]*", image), f"{name}: {image} is not pinned"
        assert not image.endswith(":latest"), name
    bases = re.findall(r"^ARG PYTHON_IMAGE=(\S+)$", DOCKERFILE.read_text(), re.MULTILINE)
    assert bases
    assert re.fullmatch(r"python:\d+\.\d+\.\d+-slim[\w-]*", bases[0])


def test_dockerfile_runs_as_non_root_with_exec_entrypoint() -> None:
    """The image drops root and runs the console script as PID 1, so SIGTERM reaches the runner."""
    text = DOCKERFILE.read_text()
    users = re.findall(r"^USER (\S+)$", text, re.MULTILINE)
    assert users
    assert users[-1] not in ("root", "0")
    assert 'ENTRYPOINT ["workflow-runner"]' in text
    assert 'CMD ["serve"]' in text
