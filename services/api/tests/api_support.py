"""Helpers shared by the relay's tests: settings, personas, registration."""

import asyncio
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


class ScriptedAgent:
    """An agent played by the test, one protocol call at a time."""

    def __init__(self, client, agent_id: int, token: str) -> None:
        self.client = client
        self.id = agent_id
        self.headers = {"Authorization": f"Bearer {token}"}

    async def call(self, path: str, body: dict | None = None, status: int = 200):
        response = await self.client.post(path, json=body or {}, headers=self.headers)
        assert response.status == status, await response.text()
        return await response.json()

    async def heartbeat(self, running: list[int] | None = None) -> dict:
        return await self.call("/agent/heartbeat", {"running": running or []})

    async def claim(self, slots: int = 1, wait: int = 0) -> list[dict]:
        answer = await self.call("/agent/claim", {"slots": slots, "wait": wait})
        return answer["runs"]

    async def report(self, run: dict, what: str, status: int = 200, **body) -> dict:
        body = {"lease_token": run["lease_token"], **body}
        return await self.call(f"/agent/runs/{run['run_id']}/{what}", body, status)

    async def run_to_end(self, run: dict, exit_code: int = 0, output: str = "") -> dict:
        await self.report(run, "start")
        if output:
            await self.report(run, "output", seq=0, stream="stdout", data=output)
        return await self.report(run, "finish", outcome="exited", exit_code=exit_code)


async def enroll(client, person: Person, hostname: str, labels=()) -> ScriptedAgent:
    body = {"hostname": hostname, "ip": "127.0.0.1", "labels": list(labels)}
    response = await client.post("/agents", json=body, headers=person.headers)
    assert response.status in (200, 201), await response.text()
    agent = await response.json()
    return ScriptedAgent(client, agent["id"], agent["token"])


class TcpProxy:
    """A cuttable TCP hop on 127.0.0.1, standing in for a database restart."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self._server = None
        self._pipes: set = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)

    async def cut(self) -> None:
        """Drop every connection and refuse new ones until start() again."""
        self._server.close()
        await self._server.wait_closed()
        for writer in list(self._pipes):
            writer.close()
        self._pipes.clear()

    async def _accept(self, client_reader, client_writer) -> None:
        try:
            server_reader, server_writer = await asyncio.open_connection(
                "127.0.0.1", self.target_port
            )
        except OSError:
            client_writer.close()
            return
        self._pipes.update({client_writer, server_writer})
        await asyncio.gather(
            self._pump(client_reader, server_writer),
            self._pump(server_reader, client_writer),
        )

    async def _pump(self, reader, writer) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()
            self._pipes.discard(writer)
