"""A fake relay implementing docs/agent-protocol.md, on 127.0.0.1, and test helpers.

It keeps its state across stop() and start(), so a test can take it away in the middle
of a run and bring it back on the same port.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import secrets
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from relay_agent.config import AgentConfig
from relay_agent.worker import Agent

OUTCOMES = {
    "exited",
    "signaled",
    "timed_out",
    "cancelled",
    "refused",
    "error",
    "interrupted",
}
MAX_CHUNK = 64 * 1024


@dataclass
class FakeRun:
    run_id: int
    command: str
    env: dict[str, str]
    timeout_seconds: float | None
    extra: dict[str, Any]
    lease_token: str | None = None
    agent_id: int | None = None
    stale: bool = False
    # The relay no longer knows the run (its job was deleted): 404 unknown_run.
    forgotten: bool = False
    starts: int = 0
    leases: int = 0
    outputs: dict[int, tuple[str, str]] = field(default_factory=dict)
    # The reports answered 409 stale_lease, and 404 unknown_run, by kind.
    stale_answers: list[str] = field(default_factory=list)
    unknown_answers: list[str] = field(default_factory=list)
    output_posts: int = 0
    finish_attempts: int = 0
    finishes: list[dict[str, Any]] = field(default_factory=list)
    status: str | None = None
    started_at: float | None = None
    finished_at: float | None = None

    def chunks(self) -> list[tuple[int, str, str]]:
        return [(seq, *self.outputs[seq]) for seq in sorted(self.outputs)]

    def text(self, stream: str | None = None) -> str:
        seqs = sorted(self.outputs)
        assert seqs == list(range(len(seqs))), f"seq numbers have gaps: {seqs}"
        return "".join(
            data
            for seq in seqs
            for s, data in [self.outputs[seq]]
            if stream in (None, s)
        )

    @property
    def finish(self) -> dict[str, Any]:
        assert len(self.finishes) == 1, f"expected one finish, got {self.finishes}"
        return self.finishes[0]


class FakeRelay:
    def __init__(self) -> None:
        self.heartbeat_seconds = 0.2
        self.lease_seconds = 0.6
        self.max_wait = 2.0
        self.users = {"alice": "s3cret"}
        self.enroll_tokens = {"enr_good"}
        self.user_tokens: set[str] = set()
        self.agents: dict[int, dict[str, Any]] = {}
        self.registrations: list[dict[str, Any]] = []
        self.runs: dict[int, FakeRun] = {}
        self.queue: list[int] = []
        self.cancel: set[int] = set()
        self.heartbeats: list[dict[str, Any]] = []
        self.claims: list[dict[str, Any]] = []
        # How many more calls of a kind ("finish", "output", ...) get a 503.
        self.unavailable: dict[str, int] = {}
        # Reports of a kind answered with this (status, code) for good.
        self.refuse: dict[str, tuple[int, str]] = {}
        # Called (and awaited) when a report of a kind arrives, before it is handled.
        self.on_report: dict[str, Callable[[FakeRun], Awaitable[None]]] = {}
        # Requests the protocol says are wrong: a test that sees one fails.
        self.errors: list[str] = []
        self.port = 0
        self._runner: web.AppRunner | None = None
        self._work = asyncio.Event()
        self._ids = iter(range(1, 10_000))

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/login", self._login)
        app.router.add_post("/agents", self._register)
        app.router.add_post("/agent/heartbeat", self._heartbeat)
        app.router.add_post("/agent/claim", self._claim)
        app.router.add_post("/agent/runs/{run_id}/{kind}", self._report)
        self._runner = web.AppRunner(app, shutdown_timeout=0.1, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port)
        await site.start()
        self.port = self._runner.addresses[0][1]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # --- test set-up ------------------------------------------------------------

    def add_agent(self, hostname: str = "test-host", token: str | None = None) -> str:
        token = token or f"agt_{secrets.token_hex(8)}"
        agent_id = next(self._ids)
        self.agents[agent_id] = {
            "id": agent_id,
            "hostname": hostname,
            "ip": "127.0.0.1",
            "labels": [],
            "token": token,
        }
        return token

    def add_run(
        self,
        command: str,
        env: dict[str, str] | None = None,
        timeout_seconds: float | None = None,
        **extra: Any,
    ) -> FakeRun:
        run_id = 40 + len(self.runs) + 1
        run = FakeRun(run_id, command, env or {}, timeout_seconds, extra)
        self.runs[run_id] = run
        self.queue.append(run_id)
        self._work.set()
        return run

    async def wait_until(
        self, predicate: Callable[[], Any], seconds: float = 10.0, what: str = ""
    ) -> None:
        deadline = time.monotonic() + seconds
        while not predicate():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what or predicate}")
            await asyncio.sleep(0.02)

    # --- handlers ---------------------------------------------------------------

    def _error(self, status: int, code: str, message: str = "") -> web.Response:
        return web.json_response({"error": code, "message": message}, status=status)

    def _bearer(self, request: web.Request) -> str:
        header = request.headers.get("Authorization", "")
        return header[len("Bearer ") :] if header.startswith("Bearer ") else ""

    def _agent(self, request: web.Request) -> dict[str, Any] | None:
        token = self._bearer(request)
        for agent in self.agents.values():
            if agent["token"] == token:
                return agent
        return None

    async def _login(self, request: web.Request) -> web.Response:
        body = await request.json()
        if self.users.get(body.get("username")) != body.get("password"):
            return self._error(401, "invalid_credentials", "bad username or password")
        token = f"jwt_{secrets.token_hex(8)}"
        self.user_tokens.add(token)
        return web.json_response({"message": "Login successful", "token": token})

    async def _register(self, request: web.Request) -> web.Response:
        auth = self._bearer(request)
        if auth not in self.user_tokens and auth not in self.enroll_tokens:
            return self._error(401, "unauthorized", "user or enrollment token needed")
        body = await request.json()
        hostname = body.get("hostname")
        if not isinstance(hostname, str) or not isinstance(body.get("labels"), list):
            self.errors.append(f"bad registration {body}")
            return self._error(400, "bad_request", "hostname and labels")

        known = [a for a in self.agents.values() if a["hostname"] == hostname]
        if known and auth in self.enroll_tokens:
            self.registrations.append({"auth": auth, **body, "refused": True})
            return self._error(
                409,
                "hostname_taken",
                f"Agent {hostname} is registered already; a user token can replace it",
            )
        agent = known[0] if known else {"id": next(self._ids)}
        token = f"agt_{secrets.token_hex(8)}"
        agent.update(hostname=hostname, ip=body.get("ip"), labels=body["labels"])
        agent["token"] = token
        self.agents[agent["id"]] = agent
        self.registrations.append({"auth": auth, **body, "new": not known})
        answer = {
            **agent,
            "status": "online",
            "last_seen_at": None,
            "created_at": "2026-12-03T23:00:00+00:00",
        }
        return web.json_response(answer, status=200 if known else 201)

    def _directives(self, agent: dict[str, Any]) -> dict[str, Any]:
        cancel = [
            run_id
            for run_id in sorted(self.cancel)
            if self.runs[run_id].agent_id == agent["id"]
            and self.runs[run_id].status is None
        ]
        return {"heartbeat_seconds": self.heartbeat_seconds, "cancel": cancel}

    async def _heartbeat(self, request: web.Request) -> web.Response:
        agent = self._agent(request)
        if agent is None:
            return self._error(401, "unknown_agent", "enroll again")
        body = await request.json()
        self.heartbeats.append({"agent": agent["id"], "running": body.get("running")})
        return web.json_response(self._directives(agent))

    async def _claim(self, request: web.Request) -> web.Response:
        agent = self._agent(request)
        if agent is None:
            return self._error(401, "unknown_agent", "enroll again")
        body = await request.json()
        slots, wait = body.get("slots", 1), body.get("wait", 25)
        numbers = isinstance(slots, int) and isinstance(wait, int | float)
        if (
            not numbers
            or isinstance(wait, bool)
            or not (1 <= slots <= 100 and 0 <= wait <= 120)
        ):
            self.errors.append(f"bad claim {body}")
            return self._error(400, "bad_request", "slots or wait out of range")
        self.claims.append({"agent": agent["id"], "slots": slots, "wait": wait})

        deadline = time.monotonic() + min(wait, self.max_wait)
        while not self.queue and time.monotonic() < deadline:
            self._work.clear()
            try:
                await asyncio.wait_for(self._work.wait(), deadline - time.monotonic())
            except TimeoutError:
                break

        runs = []
        while self.queue and len(runs) < slots:
            run = self.runs[self.queue.pop(0)]
            run.lease_token = f"lt_{secrets.token_hex(8)}"
            run.agent_id = agent["id"]
            runs.append(self._assignment(run))
        return web.json_response({"runs": runs, **self._directives(agent)})

    def _assignment(self, run: FakeRun) -> dict[str, Any]:
        return {
            "run_id": run.run_id,
            "job_id": run.run_id + 100,
            "job_name": f"job-{run.run_id}",
            "attempt": 1,
            "scheduled_for": "2026-12-03T23:00:00+00:00",
            "command": run.command,
            "env": run.env,
            "timeout_seconds": run.timeout_seconds,
            "lease_token": run.lease_token,
            "lease_seconds": self.lease_seconds,
            **run.extra,
        }

    async def _report(self, request: web.Request) -> web.Response:
        agent = self._agent(request)
        if agent is None:
            return self._error(401, "unknown_agent", "enroll again")
        run = self.runs.get(int(request.match_info["run_id"]))
        kind = request.match_info["kind"]
        if kind not in ("start", "lease", "output", "finish"):
            return self._error(404, "not_found")
        if run is not None and kind in self.on_report:
            await self.on_report[kind](run)
        elsewhere = run is not None and run.agent_id not in (None, agent["id"])
        if run is None or elsewhere or run.forgotten:
            if run is not None:
                run.unknown_answers.append(kind)
            return self._error(404, "unknown_run", "no such run for this agent")
        body = await request.json()
        if kind == "finish":
            run.finish_attempts += 1
        if kind == "output":
            run.output_posts += 1

        if self.unavailable.get(kind, 0) > 0:
            self.unavailable[kind] -= 1
            return self._error(503, "unavailable", "try again later")
        if kind in self.refuse:
            status, code = self.refuse[kind]
            return self._error(status, code, "refused for good")
        if run.stale or body.get("lease_token") != run.lease_token:
            run.stale_answers.append(kind)
            return self._error(409, "stale_lease", "lease is no longer current")
        return getattr(self, f"_{kind}")(run, body)

    def _start(self, run: FakeRun, body: dict[str, Any]) -> web.Response:
        run.starts += 1
        run.started_at = run.started_at or time.monotonic()
        return web.json_response({"status": "running", "lease_expires_at": "later"})

    def _lease(self, run: FakeRun, body: dict[str, Any]) -> web.Response:
        run.leases += 1
        return web.json_response(
            {
                "status": "running",
                "lease_expires_at": "later",
                "cancel": run.run_id in self.cancel,
            }
        )

    def _output(self, run: FakeRun, body: dict[str, Any]) -> web.Response:
        seq, stream, data = body.get("seq"), body.get("stream"), body.get("data")
        if (
            not isinstance(seq, int)
            or seq < 0
            or stream not in ("stdout", "stderr")
            or not isinstance(data, str)
            or len(data.encode("utf-8")) > MAX_CHUNK
        ):
            self.errors.append(f"bad output chunk seq={seq} stream={stream}")
            return self._error(400, "bad_request", "bad output chunk")
        if seq in run.outputs:
            if run.outputs[seq] != (stream, data):
                self.errors.append(f"seq {seq} sent twice with different data")
            return web.json_response({"stored": False})
        run.outputs[seq] = (stream, data)
        return web.json_response({"stored": True})

    def _finish(self, run: FakeRun, body: dict[str, Any]) -> web.Response:
        if run.status is not None:
            return web.json_response({"status": run.status})
        problem = _finish_problem(body)
        if problem:
            self.errors.append(problem)
            return self._error(400, "bad_request", problem)
        report = {k: v for k, v in body.items() if k != "lease_token"}
        run.finishes.append(report)
        run.finished_at = time.monotonic()
        run.status = _status(report)
        return web.json_response({"status": run.status})


def _finish_problem(body: dict[str, Any]) -> str | None:
    outcome = body.get("outcome")
    if outcome not in OUTCOMES:
        return f"unknown outcome {outcome!r}"
    if outcome == "exited" and not isinstance(body.get("exit_code"), int):
        return "exited without exit_code"
    if outcome == "signaled" and not isinstance(body.get("signal"), int):
        return "signaled without signal"
    if outcome in ("refused", "error") and not body.get("error"):
        return f"{outcome} without error"
    return None


def _status(report: dict[str, Any]) -> str:
    outcome = report["outcome"]
    if outcome == "exited":
        return "succeeded" if report["exit_code"] == 0 else "failed"
    if outcome in ("timed_out", "cancelled"):
        return outcome
    if outcome == "interrupted":
        return "lost"
    return "failed"


@dataclass
class RunningAgent:
    agent: Agent
    task: asyncio.Task[int]

    async def stop(self, seconds: float = 10.0) -> int:
        if not self.task.done():
            self.agent.request_stop()
        return await asyncio.wait_for(asyncio.shield(self.task), seconds)


def agent_command() -> list[str]:
    """The installed console script, next to this Python."""
    script = Path(sys.executable).parent / "relay-agent"
    assert script.exists(), f"{script} is missing: pip install -e services/agent"
    return [str(script)]


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RELAY_")}
    env.update(extra)
    return env


def config_file_data(config: AgentConfig) -> dict[str, Any]:
    """The agent settings as the JSON file `relay-agent run --config` reads."""
    data = dataclasses.asdict(config)
    renamed = {
        "kill_grace": "kill_grace_seconds",
        "shutdown_grace": "shutdown_grace_seconds",
        "report_grace": "report_grace_seconds",
        "claim_wait": "claim_wait_seconds",
        "retry_base": "retry_base_seconds",
        "retry_max": "retry_max_seconds",
    }
    for old, new in renamed.items():
        data[new] = data.pop(old)
    data.pop("path")
    data.pop("allow")
    return {k: v for k, v in data.items() if v is not None}


Starter = Callable[..., Awaitable[RunningAgent]]
