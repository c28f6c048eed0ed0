"""Helpers shared by the relay's tests: settings, personas, registration."""

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from relay.settings import load_settings

TEST_SECRET_KEY = "test-secret-key-0123456789abcdef-0123456789"
PASSWORD = "correct horse"


def make_settings(database_url: str, data_dir, **overrides: str):
    env = {
        "DATABASE_URL": database_url,
        "DATA_DIR": str(data_dir),
        "SECRET_KEY": TEST_SECRET_KEY,
        "BCRYPT_ROUNDS": "4",
        "SCHEDULER": "false",
        **overrides,
    }
    return load_settings(env)


@dataclass
class Person:
    id: int
    username: str
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


async def register(client, username: str, password: str = PASSWORD) -> Person:
    body = {"username": username, "password": password}
    created = await client.post("/users", json=body)
    assert created.status == 201, await created.text()
    user = await created.json()

    login = await client.post("/login", json=body)
    assert login.status == 200
    return Person(user["id"], username, (await login.json())["token"])


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def console_script(name: str) -> str:
    """A console script of this virtualenv, beside the running Python."""
    return str(Path(sys.executable).with_name(name))


class RelayProcess:
    """The real `relay` program on 127.0.0.1, as an operator would start it."""

    def __init__(self, data_dir: Path, env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "DATA_DIR": str(data_dir),
            "HOST": "127.0.0.1",
            "PORT": str(self.port),
            "SECRET_KEY": TEST_SECRET_KEY,
            "BCRYPT_ROUNDS": "4",
            **(env or {}),
        }
        self.cwd = data_dir
        self.log_path = data_dir / f"relay-{self.port}.log"
        self.process: subprocess.Popen | None = None

    def migrate(self) -> None:
        subprocess.run(
            [console_script("relay-migrate")],
            cwd=self.cwd,
            env=self.env,
            check=True,
            capture_output=True,
        )

    def start(self, timeout: float = 15.0) -> "RelayProcess":
        # A file, not a pipe: a pipe nobody reads would block a chatty relay.
        with self.log_path.open("a") as log:
            self.process = subprocess.Popen(
                [console_script("relay")],
                cwd=self.cwd,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self._wait_until_ready(timeout)
        return self

    def _wait_until_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"relay exited: {self.output()}")
            try:
                with urllib.request.urlopen(f"{self.url}/readyz", timeout=1):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("relay did not become ready")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int:
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else 0

        self.process.send_signal(sig)
        return self.process.wait(timeout)

    def output(self) -> str:
        return self.log_path.read_text() if self.log_path.exists() else ""
