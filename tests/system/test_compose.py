"""The container setup: Dockerfile, docker-compose.yml and its TLS override
docker-compose.tls.yml agree with the ``computethis`` CLI and with Dask's config.

There is no Docker engine in the test environment, so nothing is built or started;
``docker-compose config`` validates the file when docker-compose is installed.
"""

from __future__ import annotations

import copy
import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path, PurePosixPath
from typing import Any

import dask
import pytest
import yaml
from distributed import Security
from distributed.comm.addressing import address_from_user_args

from gateway.cli import build_parser

REPO = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO / "docker-compose.yml"
TLS_OVERRIDE_FILE = REPO / "docker-compose.tls.yml"
DOCKERFILE = REPO / "Dockerfile"
SERVICES = {"scheduler", "worker", "gateway"}
IMAGE = "computethis:latest"
DASK_ROLES = {"scheduler": "scheduler", "worker": "worker", "gateway": "client"}
CERTS_MOUNT = "./certs:/certs:ro"


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    """docker-compose.yml as parsed by PyYAML (anchors and merge keys resolved)."""
    return yaml.safe_load(COMPOSE_FILE.read_text())


@pytest.fixture(scope="module")
def tls_override() -> dict[str, Any]:
    """docker-compose.tls.yml as parsed by PyYAML."""
    return yaml.safe_load(TLS_OVERRIDE_FILE.read_text())


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {name: str(value) for name, value in env.items()}


def dask_security(env: dict[str, str]) -> Security:
    """The Security a process started with ``env`` gets from Dask's config."""
    config = dask.config.update(copy.deepcopy(dask.config.config), dask.config.collect_env(env))
    with dask.config.set(config):
        return Security()


def command_args(service: dict[str, Any]) -> list[str]:
    """A service's ``command`` as the argument list the ENTRYPOINT receives."""
    command = service["command"]
    return shlex.split(command) if isinstance(command, str) else [str(arg) for arg in command]


def volume_targets(service: dict[str, Any], compose: dict[str, Any]) -> dict[str, str]:
    """Container path -> named volume, for the service's named-volume mounts."""
    targets = {}
    for mount in service.get("volumes", []):
        if isinstance(mount, str):
            source, target = mount.split(":")[:2]
        else:
            source, target = mount["source"], mount["target"]
        if source in (compose.get("volumes") or {}):
            targets[target] = source
    return targets


def healthcheck_script(service: dict[str, Any]) -> str:
    """The python one-liner a healthcheck runs (``CMD python -c '...'``)."""
    test = service["healthcheck"]["test"]
    assert isinstance(test, list) and test[0] == "CMD", test
    assert test[1:3] == ["python", "-c"], test
    return test[3]


def test_three_services_share_one_image_built_from_the_repo(compose):
    services = compose["services"]
    assert set(services) == SERVICES
    for name, service in services.items():
        assert service["image"] == IMAGE, name
        build = service["build"]
        context = build if isinstance(build, str) else build.get("context", ".")
        assert context == ".", name
        assert "container_name" not in service, name


def test_every_command_is_a_real_computethis_subcommand(compose):
    parser = build_parser()
    for name, service in compose["services"].items():
        args = parser.parse_args(command_args(service))
        assert args.command == name


def test_scheduler_listens_on_all_interfaces_on_8786(compose):
    args = build_parser().parse_args(command_args(compose["services"]["scheduler"]))
    assert (args.host, args.port) == ("0.0.0.0", 8786)


def test_worker_connects_to_the_scheduler_service_and_can_scale(compose):
    worker = compose["services"]["worker"]
    args = build_parser().parse_args(command_args(worker))
    assert args.scheduler_address == "tcp://scheduler:8786"
    assert args.nworkers == 1
    assert args.name is None  # a fixed name would clash between scaled replicas
    assert "ports" not in worker  # published ports would clash too
    assert worker["depends_on"]["scheduler"]["condition"] == "service_healthy"


def test_gateway_saves_on_the_volume_and_publishes_5000(compose):
    gateway = compose["services"]["gateway"]
    args = build_parser().parse_args(command_args(gateway))
    assert args.scheduler == "tcp://scheduler:8786"
    assert (args.host, args.port) == ("0.0.0.0", 5000)
    assert args.token is None  # taken from $COMPUTETHIS_TOKEN, not baked into the file

    mounts = volume_targets(gateway, compose)
    assert mounts, "the gateway's save dir must be on a named volume"
    save_dir = PurePosixPath(args.save_dir)
    assert any(save_dir == PurePosixPath(t) or PurePosixPath(t) in save_dir.parents for t in mounts)

    published = [str(port) for port in gateway["ports"]]
    assert "5000:5000" in published
    assert gateway["depends_on"]["scheduler"]["condition"] == "service_healthy"


def test_gateway_token_is_required_from_the_environment(compose):
    environment = compose["services"]["gateway"]["environment"]
    if isinstance(environment, list):
        environment = dict(item.split("=", 1) for item in environment)
    assert environment["COMPUTETHIS_TOKEN"].startswith("${COMPUTETHIS_TOKEN:?")
    for name, service in compose["services"].items():
        assert "--token" not in command_args(service), name


def test_healthchecks_are_python_one_liners_that_compile(compose):
    expected = {
        "scheduler": "('127.0.0.1', 8786)",
        "worker": "('scheduler', 8786)",
        "gateway": "http://127.0.0.1:5000/api/v1/health",
    }
    for name, service in compose["services"].items():
        script = healthcheck_script(service)
        compile(script, f"<{name} healthcheck>", "exec")
        assert expected[name] in script, name


def test_healthcheck_of_the_gateway_passes_only_on_200(stack):
    """Run the gateway's one-liner against a real gateway: healthy means exit 0."""
    script = healthcheck_script(yaml.safe_load(COMPOSE_FILE.read_text())["services"]["gateway"])
    local = script.replace("http://127.0.0.1:5000", stack.url)
    assert subprocess.run([sys.executable, "-c", local], timeout=30).returncode == 0
    unreachable = script.replace("http://127.0.0.1:5000", f"{stack.url}/nowhere")
    assert subprocess.run([sys.executable, "-c", unreachable], timeout=30).returncode != 0


def test_dockerfile_runs_computethis_as_a_non_root_user():
    instructions = [
        line.strip()
        for line in DOCKERFILE.read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    assert instructions[0].split()[:2] == ["FROM", "python:3.11-slim"]
    entrypoints = [line for line in instructions if line.startswith("ENTRYPOINT")]
    assert len(entrypoints) == 1
    assert json.loads(entrypoints[0].removeprefix("ENTRYPOINT")) == ["computethis"]
    cmd = [line for line in instructions if line.startswith("CMD")][-1]
    build_parser().parse_args(json.loads(cmd.removeprefix("CMD")))
    users = [line.split()[1] for line in instructions if line.startswith("USER")]
    assert users and users[-1] not in {"root", "0"}
    assert any("pip install --no-cache-dir ." in line for line in instructions)


def test_dockerignore_keeps_the_build_context_small():
    ignored = (REPO / ".dockerignore").read_text().split()
    for pattern in (".venv/", ".git/", "save/*"):
        assert pattern in ignored


def test_tls_override_changes_only_the_three_services(tls_override):
    assert set(tls_override["services"]) == SERVICES
    for name, service in tls_override["services"].items():
        # It reuses the base file's image, ports, volumes and dependencies.
        assert set(service) <= {"command", "environment", "volumes", "healthcheck"}, name


def test_tls_override_commands_are_the_base_commands_over_tls(compose, tls_override):
    parser = build_parser()
    https = ["--certfile", "/certs/gateway.pem", "--keyfile", "/certs/gateway-key.pem"]
    for name, base in compose["services"].items():
        override = tls_override["services"][name]
        args = command_args(override) if "command" in override else command_args(base)
        expected = [arg.replace("tcp://", "tls://") for arg in command_args(base)]
        assert args == expected + (https if name == "gateway" else []), name
        assert parser.parse_args(args).command == name
    worker = parser.parse_args(command_args(tls_override["services"]["worker"]))
    assert worker.scheduler_address == "tls://scheduler:8786"
    gateway = parser.parse_args(command_args(tls_override["services"]["gateway"]))
    assert gateway.scheduler == "tls://scheduler:8786"


def test_tls_override_turns_on_dask_tls_with_each_services_own_certificate(tls_override):
    for name, service in tls_override["services"].items():
        assert service["volumes"] == [CERTS_MOUNT], name
        env = environment(service)
        assert all(var.startswith("DASK_DISTRIBUTED__COMM__") for var in env), name
        security = dask_security(env)
        assert security.require_encryption is True, name
        assert security.tls_ca_file == "/certs/ca.pem", name
        role = DASK_ROLES[name]
        for other in ("scheduler", "worker", "client"):
            cert = getattr(security, f"tls_{other}_cert")
            key = getattr(security, f"tls_{other}_key")
            if other == role:
                assert (cert, key) == (f"/certs/{role}.pem", f"/certs/{role}-key.pem"), name
            else:
                assert (cert, key) == (None, None), name  # only the keys the service needs
    # With encryption required, the unchanged scheduler command listens on tls://.
    security = dask_security(environment(tls_override["services"]["scheduler"]))
    assert address_from_user_args("0.0.0.0", 8786, security=security) == "tls://0.0.0.0:8786"


def test_tls_override_healthchecks_do_a_tls_handshake(tls_override):
    """Run against a real TLS scheduler in tests/system/test_dask_tls.py."""
    for name, target in (("scheduler", "('127.0.0.1', 8786)"), ("worker", "('scheduler', 8786)")):
        script = healthcheck_script(tls_override["services"][name])
        compile(script, f"<{name} TLS healthcheck>", "exec")
        assert target in script and "wrap_socket" in script, name
        assert f"'/certs/{name}.pem', '/certs/{name}-key.pem'" in script, name
    gateway = healthcheck_script(tls_override["services"]["gateway"])
    compile(gateway, "<gateway HTTPS healthcheck>", "exec")
    assert "https://127.0.0.1:5000/api/v1/health" in gateway and "/certs/ca.pem" in gateway


def test_certificates_stay_out_of_the_image_and_git():
    assert "certs/" in (REPO / ".dockerignore").read_text().split()
    assert "certs/" in (REPO / ".gitignore").read_text().split()


def docker_compose_config(*files: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    if shutil.which("docker-compose") is None:
        pytest.skip(
            "docker-compose is not on PATH (`make install-test` installs it with apt-get when root)"
        )
    args = ["docker-compose"]
    for file in files:
        args += ["-f", str(file)]
    return subprocess.run(
        [*args, "config"], cwd=REPO, env=env, capture_output=True, text=True, timeout=60
    )


def test_docker_compose_config_accepts_the_file():
    if shutil.which("docker-compose") is None:
        pytest.skip(
            "docker-compose is not on PATH (`make install-test` installs it with apt-get when root)"
        )
    env = {**os.environ, "COMPUTETHIS_TOKEN": "test-token"}
    result = subprocess.run(
        ["docker-compose", "-f", str(COMPOSE_FILE), "config", "--quiet"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr

    env.pop("COMPUTETHIS_TOKEN")
    missing = subprocess.run(
        ["docker-compose", "-f", str(COMPOSE_FILE), "config", "--quiet"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert missing.returncode != 0
    assert "COMPUTETHIS_TOKEN" in missing.stderr


def test_docker_compose_config_merges_the_tls_override():
    env = {**os.environ, "COMPUTETHIS_TOKEN": "test-token"}
    result = docker_compose_config(COMPOSE_FILE, TLS_OVERRIDE_FILE, env=env)
    assert result.returncode == 0, result.stderr
    services = yaml.safe_load(result.stdout)["services"]
    parser = build_parser()
    for name, service in services.items():
        args = parser.parse_args(command_args(service))
        assert args.command == name
        if name != "scheduler":
            assert "tls://scheduler:8786" in command_args(service), name
        assert environment(service)["DASK_DISTRIBUTED__COMM__REQUIRE_ENCRYPTION"] == "True"
        targets = [str(mount).split(":")[1] for mount in service["volumes"]]
        assert "/certs" in targets, name
    gateway = services["gateway"]
    assert environment(gateway)["COMPUTETHIS_TOKEN"] == "test-token"  # merged, not replaced
    assert sorted(str(mount).split(":")[1] for mount in gateway["volumes"]) == ["/certs", "/data"]
    assert "wrap_socket" in healthcheck_script(services["scheduler"])
    assert services["scheduler"]["healthcheck"]["interval"] == "10s"  # kept from the base file
