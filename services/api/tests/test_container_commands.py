"""The containers' commands, run as plain processes with the compose environment.

Each test runs the console scripts of this virtualenv exactly as docker-compose.yml
starts them, with the environment it gives them, on a temporary DATA_DIR and a
free port on 127.0.0.1. On PostgreSQL the database URL that deploy/postgres.env
would give is replaced by an empty database of the test server.
"""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
POSTGRES_ENV_FILE = ROOT / "deploy" / "postgres.env"
BIN = Path(sys.executable).parent

START_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0
LOG_RECORD = re.compile(
    r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (DEBUG|INFO|WARNING|ERROR|CRITICAL) "
)


def test_compose_runs_the_commands_the_images_declare():
    for name in ("migrator", "api"):
        service = compose_service(name)

        assert service["command"] == dockerfile_cmd(service["build"]["target"])


def test_the_migrator_brings_the_database_to_head(container_env):
    migrated = run_migrator(container_env("migrator"))

    assert migrated.returncode == 0, migrated.stderr


def test_the_api_serves_after_the_migrator_and_stops_on_sigterm(container_env):
    migrated = run_migrator(container_env("migrator"))
    assert migrated.returncode == 0, migrated.stderr

    env = container_env("api")
    api = start_api(env)
    try:
        base = f"http://127.0.0.1:{env['PORT']}"
        assert wait_for_status(api, f"{base}/healthz") == 200
        assert get_status(f"{base}/readyz") == 200

        api.send_signal(signal.SIGTERM)
        started = time.monotonic()
        assert api.wait(timeout=STOP_TIMEOUT) == 0
        assert time.monotonic() - started < STOP_TIMEOUT
    finally:
        stop(api)


def test_the_api_started_before_the_migrator_refuses_in_one_line(container_env):
    env = container_env("api")
    command = compose_service("api")["command"]

    refused = subprocess.run(
        command,
        env=env,
        cwd=env["DATA_DIR"],
        capture_output=True,
        text=True,
        timeout=START_TIMEOUT,
        executable=BIN / command[0],
    )

    assert refused.returncode != 0
    assert "Traceback" not in refused.stderr
    messages = [
        line for line in refused.stderr.splitlines() if not LOG_RECORD.match(line)
    ]
    assert len(messages) == 1, refused.stderr
    assert "relay-migrate" in messages[0]


# --- the environment compose gives -------------------------------------------------


@pytest.fixture
def container_env(request, database_kind, tmp_path):
    """A function: the environment of a compose service, made safe to run here."""
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    port = free_port()

    database_url = None
    if database_kind == "postgresql":
        database_url = request.getfixturevalue("empty_database_url")

    def env_of(name: str) -> dict[str, str]:
        interpolation = {}
        if database_kind == "postgresql":
            interpolation = read_env_file(POSTGRES_ENV_FILE)
        env = {
            key: interpolate(value, interpolation)
            for key, value in compose_service(name)["environment"].items()
        }
        if database_url is not None:
            assert env["DATABASE_URL"].startswith("postgresql://")
            env["DATABASE_URL"] = database_url
        return {
            "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
            "HOME": str(tmp_path),
            "LANG": "C.UTF-8",
            **env,
            # What the image sets, moved to this machine.
            "DATA_DIR": str(data_dir),
            "HOST": "127.0.0.1",
            "PORT": str(port),
        }

    return env_of


def compose_service(name: str) -> dict:
    """The service's build target, command and environment in docker-compose.yml."""
    text = COMPOSE_FILE.read_text()
    try:
        import yaml
    except ImportError:
        return _read_service_plainly(text, name)

    service = yaml.safe_load(text)["services"][name]
    environment = service.get("environment") or {}
    if isinstance(environment, list):
        environment = dict(item.split("=", 1) for item in environment)
    return {
        "build": service["build"],
        "command": service["command"],
        "environment": {key: str(value) for key, value in environment.items()},
    }


def _read_service_plainly(text: str, name: str) -> dict:
    """Read the block-style parts of one service without a YAML library.

    Enough for docker-compose.yml as it is written: `command` as a flow list,
    `build` and `environment` as block mappings of plain or quoted scalars.
    """
    lines = text.splitlines()
    start = lines.index(f"  {name}:") + 1
    body = []
    for line in lines[start:]:
        if line.strip() and _indent(line) <= 2:
            break
        body.append(line)

    service: dict = {"build": {}, "environment": {}}
    section = None
    for line in body:
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        key, _, value = stripped.partition(":")
        value = value.strip()
        if _indent(line) == 4:
            section = key
            if key == "command":
                service["command"] = json.loads(value)
        elif _indent(line) == 6 and section in ("build", "environment"):
            service[section][key] = _scalar(value)
    return service


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def _scalar(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        return value[1:-1]
    return value


INTERPOLATION = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?-)([^}]*))?\}")


def interpolate(value: str, env: dict[str, str]) -> str:
    """Compose's ${NAME}, ${NAME:-default}, ${NAME-default} and $$."""

    def substitute(match: re.Match) -> str:
        if match.group(0) == "$$":
            return "$"

        name, operator, default = match.groups()
        if operator == ":-":
            return env.get(name) or default
        if operator == "-":
            return env.get(name, default)
        return env.get(name, "")

    return INTERPOLATION.sub(substitute, value)


def read_env_file(path: Path) -> dict[str, str]:
    """KEY=value lines, later ones able to use earlier ones as ${KEY}."""
    env: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, _, value = line.partition("=")
        env[key.strip()] = interpolate(value.strip(), env)
    return env


def dockerfile_cmd(target: str) -> list[str]:
    """The exec-form CMD of the Dockerfile's stage named `target`."""
    stage = None
    cmd = None
    for line in DOCKERFILE.read_text().splitlines():
        found = re.match(r"FROM\s+\S+\s+AS\s+(\S+)", line, re.IGNORECASE)
        if found:
            stage = found.group(1)
        elif stage == target and line.startswith("CMD "):
            cmd = json.loads(line[len("CMD ") :])
    assert cmd is not None, f"no CMD in the {target} stage"
    return cmd


# --- processes ------------------------------------------------------------------


def run_migrator(env: dict[str, str]) -> subprocess.CompletedProcess:
    command = compose_service("migrator")["command"]
    return subprocess.run(
        command,
        env=env,
        cwd=env["DATA_DIR"],
        capture_output=True,
        text=True,
        timeout=120,
        executable=BIN / command[0],
    )


def start_api(env: dict[str, str]) -> subprocess.Popen:
    command = compose_service("api")["command"]
    return subprocess.Popen(
        command,
        env=env,
        cwd=env["DATA_DIR"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        executable=BIN / command[0],
    )


def wait_for_status(process: subprocess.Popen, url: str) -> int:
    """The first HTTP status the server answers `url` with."""
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"the api exited {process.returncode}: {process.stderr.read()}")
        try:
            return get_status(url)
        except OSError:
            time.sleep(0.05)
    pytest.fail(f"the api did not answer {url} within {START_TIMEOUT}s")


def get_status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.kill()
        process.wait(timeout=STOP_TIMEOUT)
    if process.stderr:
        process.stderr.close()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
