"""The real relay and the real agent, each its own process, talking over 127.0.0.1.

The relay is the `relay` program (api_support.RelayProcess) on SQLite in tmp_path,
with a fast rhythm: heartbeats every second, leases of six. Each agent is
`relay-agent run`, configured by environment variables alone, with its own state
and work directories. Every process is started in its own process group, and the
fixtures kill those groups (and any job process left, found by a marker in its
environment) at teardown.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from api_support import RelayProcess, console_script

PASSWORD = "s3cret-pass"
RELAY_ENV = {
    "HEARTBEAT_SECONDS": "1",
    "LEASE_SECONDS": "6",
    "OUTPUT_LIMIT_BYTES": "65536",
    # A relay stopped with SIGTERM waits for the long polls it holds (see the
    # restart test): keep them short so that a restart takes seconds, not 25.
    "CLAIM_WAIT_MAX": "2",
}
# Never fires on its own during a test: every run here is fired by hand.
NEVER = "0 0 1 1 *"
ACTIVE = ("pending", "claimed", "running")
# The variable every agent (and so every job process) carries, for the clean-up.
MARK = "RELAY_AGENT_TEST_MARK"


# --- processes ------------------------------------------------------------------


class Relay(RelayProcess):
    """RelayProcess in a process group of its own, so that teardown can kill it all."""

    def start(self, timeout: float = 15.0) -> Relay:
        with self.log_path.open("a") as log:
            self.process = subprocess.Popen(
                [console_script("relay")],
                cwd=self.cwd,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self._wait_until_ready(timeout)
        return self

    def kill(self) -> None:
        if self.process is not None:
            kill_group(self.process)


def spawn_agent(env: dict[str, str], log_path: Path) -> subprocess.Popen:
    # Popen returns once the program is started: nothing here waits for it.
    with log_path.open("wb") as log:
        return subprocess.Popen(
            [console_script("relay-agent"), "run"],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def kill_group(process: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(5)


@dataclass
class AgentProcess:
    hostname: str
    agent_id: int | None
    process: subprocess.Popen
    log_path: Path
    workdir: Path
    mark: str

    @property
    def pid(self) -> int:
        return self.process.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def job_processes(self) -> list[int]:
        """Live processes started by this agent's jobs (the agent itself aside)."""
        return [pid for pid in marked_processes(self.mark) if pid != self.pid]

    async def exit_code(self, seconds: float = 15.0) -> int:
        await until(lambda: self.process.poll() is not None, seconds, "agent exit")
        return self.process.returncode


def marked_processes(mark: str) -> list[int]:
    needle = f"{MARK}={mark}".encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            environ = Path(f"/proc/{entry}/environ").read_bytes()
        except OSError:  # gone, or not ours
            continue
        if needle in environ.split(b"\0"):
            found.append(int(entry))
    return found


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for process {pid}")


async def until(
    predicate: Callable[[], Any], seconds: float, what: str, every: float = 0.05
) -> Any:
    deadline = time.monotonic() + seconds
    while True:
        value = predicate()
        if isinstance(value, Awaitable):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {seconds}s waiting for {what}")
        await asyncio.sleep(every)


async def _equals(pending: Awaitable[Any], expected: Any) -> bool:
    return await pending == expected


def _seconds_between(start: str, end: str) -> float:
    return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()


# --- the relay's API over HTTP ----------------------------------------------------


class Api:
    def __init__(self, url: str) -> None:
        self.url = url
        self.session = aiohttp.ClientSession(url)
        self.headers: dict[str, str] = {}

    async def close(self) -> None:
        await self.session.close()

    async def reconnect(self) -> None:
        """New connections: the ones kept alive went with the relay that stopped."""
        await self.session.close()
        self.session = aiohttp.ClientSession(self.url)

    async def call(
        self, method: str, path: str, body: Any = None, status: int = 200
    ) -> Any:
        async with self.session.request(
            method, path, json=body, headers=self.headers
        ) as response:
            text = await response.text()
            assert response.status == status, f"{method} {path}: {text}"
            if response.content_type == "application/json":
                return await response.json()
            return text

    async def sign_up(self, username: str = "alice") -> None:
        body = {"username": username, "password": PASSWORD}
        await self.call("POST", "/users", body, status=201)
        login = await self.call("POST", "/login", body)
        self.headers = {"Authorization": f"Bearer {login['token']}"}

    async def job(self, command: str, target: dict, **fields: Any) -> dict:
        body = {
            "name": f"job-{uuid.uuid4().hex[:8]}",
            "schedule": NEVER,
            "command": command,
            "target": target,
            **fields,
        }
        return await self.call("POST", "/jobs", body, status=201)

    async def fire(self, job: dict) -> list[dict]:
        answer = await self.call("POST", f"/jobs/{job['id']}/run", status=201)
        return answer["runs"]

    async def run(self, run_id: int) -> dict:
        return await self.call("GET", f"/runs/{run_id}")

    async def output(self, run_id: int, stream: str | None = None) -> str:
        query = f"?stream={stream}" if stream else ""
        return await self.call("GET", f"/runs/{run_id}/output{query}")

    async def runs_of(self, job: dict) -> list[dict]:
        return (await self.call("GET", f"/jobs/{job['id']}/runs"))["items"]

    async def agent_named(self, hostname: str) -> dict | None:
        agents = await self.call("GET", "/agents")
        return next((a for a in agents if a["hostname"] == hostname), None)

    async def ended(self, run_id: int, seconds: float = 20.0) -> dict:
        async def final() -> dict | None:
            run = await self.run(run_id)
            return (
                run if run["status"] not in ("pending", "claimed", "running") else None
            )

        return await until(final, seconds, f"run {run_id} to end", every=0.1)

    async def running(self, run_id: int, seconds: float = 15.0) -> dict:
        async def started() -> dict | None:
            run = await self.run(run_id)
            return run if run["status"] == "running" else None

        return await until(started, seconds, f"run {run_id} to start", every=0.05)


# --- fixtures ----------------------------------------------------------------------


@pytest.fixture
def relay(tmp_path: Path):
    data = tmp_path / "relay"
    data.mkdir()
    process = Relay(data, RELAY_ENV)
    process.migrate()
    process.start()
    yield process
    try:
        process.stop(signal.SIGTERM, timeout=10)
    except subprocess.TimeoutExpired:
        pass
    finally:
        process.kill()


@pytest.fixture
async def api(relay: Relay):
    client = Api(relay.url)
    await client.sign_up()
    yield client
    await client.close()


Starter = Callable[..., Awaitable[AgentProcess]]


@pytest.fixture
async def start_agent(relay: Relay, api: Api, tmp_path: Path):
    """Register (or not) and start `relay-agent run`; all are stopped at the end."""
    started: list[AgentProcess] = []

    async def start(
        hostname: str,
        labels: tuple[str, ...] = (),
        *,
        enroll_token: str | None = None,
        online: bool = True,
        **settings: str,
    ) -> AgentProcess:
        home = tmp_path / hostname
        workdir = home / "work"
        workdir.mkdir(parents=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith("RELAY_")}
        mark = uuid.uuid4().hex
        env.update(
            RELAY_SERVER=relay.url,
            RELAY_AGENT_HOSTNAME=hostname,
            RELAY_AGENT_IP="127.0.0.1",
            RELAY_AGENT_LABELS=",".join(labels),
            RELAY_AGENT_STATE_DIR=str(home / "state"),
            RELAY_AGENT_WORKDIR=str(workdir),
            RELAY_AGENT_CONFIG=str(home / "no-such-file.json"),
            RELAY_AGENT_KILL_GRACE="1",
            RELAY_AGENT_SHUTDOWN_GRACE="0.5",
            **{MARK: mark},
        )
        agent_id = None
        if enroll_token is None:
            body = {"hostname": hostname, "ip": "127.0.0.1", "labels": list(labels)}
            agent = await api.call("POST", "/agents", body, status=201)
            agent_id = agent["id"]
            env["RELAY_AGENT_TOKEN"] = agent["token"]
        else:
            env["RELAY_ENROLL_TOKEN"] = enroll_token
        env.update(settings)

        log_path = home / "agent.log"
        process = spawn_agent(env, log_path)
        agent = AgentProcess(hostname, agent_id, process, log_path, workdir, mark)
        started.append(agent)
        if online:
            await wait_online(api, agent)
        return agent

    yield start
    for agent in started:
        if agent.process.poll() is None:
            agent.process.send_signal(signal.SIGTERM)
    for agent in started:
        with contextlib.suppress(subprocess.TimeoutExpired):
            agent.process.wait(10)
        kill_group(agent.process)
        for pid in agent.job_processes():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


async def wait_online(api: Api, agent: AgentProcess) -> None:
    """Until the relay lists the agent online: before that a fire would skip it."""

    async def online() -> bool:
        assert agent.process.poll() is None, f"agent exited:\n{agent.log()}"
        found = await api.agent_named(agent.hostname)
        if found is None or found["status"] != "online":
            return False
        agent.agent_id = found["id"]
        return True

    await until(online, 10, f"agent {agent.hostname} online", every=0.1)


# --- tests -------------------------------------------------------------------------


async def test_a_fired_job_streams_its_output_in_order_with_its_exit_code(
    api: Api, start_agent: Starter
):
    agent = await start_agent("solo", ("demo",))
    # Lines 1 to 200; after line 100 the command waits until the test has seen
    # that output through the API, so "streamed" cannot pass by luck of timing.
    command = (
        'for i in $(seq 1 200); do echo "line $i"; sleep 0.005; '
        'if [ "$i" = 100 ]; then while [ ! -e gate ]; do sleep 0.05; done; fi; '
        "done; echo 'the end' >&2; exit 3"
    )
    job = await api.job(command, {"labels": ["demo"]})
    [fired] = await api.fire(job)
    assert fired["agent_id"] == agent.agent_id

    half = "".join(f"line {i}\n" for i in range(1, 101))
    seen = await until(
        lambda: api.output(fired["id"]), 15, "output while the command runs"
    )
    assert half.startswith(seen)
    await until(
        lambda: _equals(api.output(fired["id"]), half), 15, "the first 100 lines"
    )
    during = await api.run(fired["id"])
    assert during["status"] == "running"
    assert during["output"] == half
    (agent.workdir / "gate").touch()

    run = await api.ended(fired["id"])

    assert run["status"] == "failed"
    assert run["exit_code"] == 3
    assert run["signal"] is None
    everything = "".join(f"line {i}\n" for i in range(1, 201))
    assert await api.output(fired["id"], "stdout") == everything
    assert await api.output(fired["id"], "stderr") == "the end\n"
    assert run["output"] == everything + "the end\n"
    assert run["output_bytes"] == len(everything) + len("the end\n")
    assert run["output_truncated"] is False


async def test_a_timeout_stops_a_process_tree_that_ignores_sigterm(
    api: Api, start_agent: Starter
):
    agent = await start_agent("stubborn", RELAY_AGENT_KILL_GRACE="1")
    command = 'echo $$; trap "" TERM; sleep 300 & sleep 300; wait'
    job = await api.job(command, {"agent": agent.agent_id}, timeout_seconds=2)
    [fired] = await api.fire(job)
    pgid = int(await until(lambda: api.output(fired["id"]), 10, "the shell's pid"))
    # The shell and its two sleeps.
    await until(lambda: len(agent.job_processes()) == 3, 5, "three processes")
    os.killpg(pgid, 0)  # alive

    run = await api.ended(fired["id"])

    assert run["status"] == "timed_out"
    assert run["exit_code"] is None
    with pytest.raises(ProcessLookupError):
        os.killpg(pgid, 0)
    assert agent.job_processes() == []
    # The timeout (2 s), then SIGTERM ignored for the grace (1 s), then SIGKILL.
    took = _seconds_between(run["started_at"], run["finished_at"])
    assert 3.0 <= took < 8.0, took


async def test_the_result_arrives_across_a_relay_restart(
    relay: Relay, api: Api, start_agent: Starter
):
    agent = await start_agent("steady")
    job = await api.job("echo before; sleep 3; echo after", {"agent": agent.agent_id})
    [fired] = await api.fire(job)
    await until(lambda: _equals(api.output(fired["id"]), "before\n"), 10, "output")

    stopped_at = time.monotonic()
    assert relay.stop(signal.SIGTERM, timeout=10) == 0
    assert time.monotonic() - stopped_at < 5
    # The command ends while the relay is away: its result waits in the spool.
    await until(
        lambda: f"finished run={fired['id']}" in agent.log(), 10, "the command's end"
    )
    relay.start()  # same data dir, same port
    await api.reconnect()

    run = await api.ended(fired["id"], seconds=30)

    assert run["status"] == "succeeded", run
    assert run["exit_code"] == 0
    assert run["attempt"] == 1
    assert run["output"] == "before\nafter\n"
    assert [r["id"] for r in await api.runs_of(job)] == [fired["id"]]
    assert agent.process.poll() is None
    spool = agent.workdir.parent / "state" / "spool"
    await until(lambda: not list(spool.glob("run-*.json")), 5, "an empty spool")


async def test_two_agents_share_labelled_work_and_a_broadcast_runs_on_each(
    api: Api, start_agent: Starter
):
    token = await api.call("POST", "/enrollment-tokens", {}, status=201)
    first = await start_agent("pool-1", ("pool", "linux"))
    # The second enrolls by itself at start, with an enrollment token.
    second = await start_agent("pool-2", ("pool",), enroll_token=token["token"])
    hosts = {first.agent_id: "pool-1", second.agent_id: "pool-2"}
    command = 'echo "$RELAY_AGENT_HOSTNAME"; sleep 0.3'

    shared = await api.job(command, {"labels": ["pool"]}, concurrency="allow")
    fired = [run for _ in range(6) for run in await api.fire(shared)]
    runs = [await api.ended(run["id"]) for run in fired]

    assert [run["status"] for run in runs] == ["succeeded"] * 6
    ran_on = [run["agent_id"] for run in runs]
    assert set(ran_on) == set(hosts), ran_on
    assert all(run["output"] == f"{hosts[run['agent_id']]}\n" for run in runs)

    broadcast = await api.job(command, {"labels": ["pool"], "all": True})
    fired = await api.fire(broadcast)
    assert len(fired) == 2
    runs = [await api.ended(run["id"]) for run in fired]

    assert [run["status"] for run in runs] == ["succeeded"] * 2
    assert sorted(run["agent_id"] for run in runs) == sorted(hosts)
    assert sorted(run["output"] for run in runs) == ["pool-1\n", "pool-2\n"]


async def test_megabytes_of_output_keep_memory_flat_and_are_cut(
    relay: Relay, api: Api, start_agent: Starter
):
    # No cap in the agent: all 30 MB go to the relay, which keeps head and tail.
    agent = await start_agent("chatty", RELAY_AGENT_MAX_OUTPUT_BYTES="0")
    total = 30_000_000
    job = await api.job(f"yes | head -c {total}", {"agent": agent.agent_id})
    processes = {"agent": agent.pid, "relay": relay.process.pid}
    before = {name: rss_kib(pid) for name, pid in processes.items()}
    peak = dict(before)

    [fired] = await api.fire(job)
    while (await api.run(fired["id"]))["status"] in ACTIVE:
        for name, pid in processes.items():
            peak[name] = max(peak[name], rss_kib(pid))
        await asyncio.sleep(0.05)
    run = await api.run(fired["id"])

    grown_mib = {name: (peak[name] - before[name]) / 1024 for name in processes}
    assert all(grown < 80 for grown in grown_mib.values()), (before, peak)
    assert run["status"] == "succeeded"
    assert run["output_bytes"] == total
    assert run["output_truncated"] is True
    half = 65536 // 2
    cut = total - 2 * half
    expected = "y\n" * (half // 2) + f"\n[... {cut} bytes of output cut ...]\n"
    expected += "y\n" * (half // 2)
    assert run["output"] == expected
    assert await api.output(fired["id"]) == expected


async def test_sigterm_to_the_agent_ends_the_run_lost_and_its_retry_is_queued(
    api: Api, start_agent: Starter
):
    agent = await start_agent("leaving", RELAY_AGENT_SHUTDOWN_GRACE="0.5")
    job = await api.job(
        "echo started; sleep 300",
        {"agent": agent.agent_id},
        retries=1,
        retry_backoff_seconds=600,
    )
    [fired] = await api.fire(job)
    await until(lambda: _equals(api.output(fired["id"]), "started\n"), 10, "output")

    agent.process.send_signal(signal.SIGTERM)

    assert await agent.exit_code() == 0
    run = await api.run(fired["id"])
    assert run["status"] == "lost"
    assert run["reason"] == "the agent is shutting down"
    assert agent.job_processes() == []
    retries = [r for r in await api.runs_of(job) if r["id"] != fired["id"]]
    assert [(r["attempt"], r["status"], r["trigger"]) for r in retries] == [
        (2, "pending", "retry")
    ]
    assert retries[0]["first_run_id"] == fired["id"]


async def test_deleting_the_job_during_a_run_stops_its_command(
    api: Api, start_agent: Starter
):
    agent = await start_agent("orphaned")
    job = await api.job("echo started; sleep 300", {"agent": agent.agent_id})
    [fired] = await api.fire(job)
    await until(lambda: _equals(api.output(fired["id"]), "started\n"), 10, "output")
    assert agent.job_processes() != []

    await api.call("DELETE", f"/jobs/{job['id']}", status=204)

    # The next lease renewal (every 2 s) gets 404 unknown_run: the run is dropped.
    await until(lambda: agent.job_processes() == [], 10, "the command stopped")
    assert "404 unknown_run" in agent.log()
    assert agent.process.poll() is None
    spool = agent.workdir.parent / "state" / "spool"
    assert list(spool.glob("run-*.json")) == []
    assert not (spool / "rejected").exists()


async def test_an_enrollment_token_cannot_take_over_a_known_hostname(
    api: Api, start_agent: Starter
):
    await api.call(
        "POST", "/agents", {"hostname": "taken", "ip": "127.0.0.1"}, status=201
    )
    token = await api.call("POST", "/enrollment-tokens", {}, status=201)

    agent = await start_agent("taken", enroll_token=token["token"], online=False)

    assert await agent.exit_code() == 1
    errors = [line for line in agent.log().splitlines() if " ERROR " in line]
    assert len(errors) == 1, agent.log()
    assert "hostname taken is registered already (409 hostname_taken)" in errors[0]
    assert token["token"] not in agent.log()
