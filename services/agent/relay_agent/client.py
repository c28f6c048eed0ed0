"""The one place that talks HTTP to the relay: a typed method per call of the protocol.

Every call retries while the relay is away (connection errors, timeouts, 5xx, 429)
with capped exponential backoff and full jitter, so callers see either an answer or a
RelayError that retrying will not fix. An agent call answered 401 enrolls again with
the enrollment token when there is one, then is tried again with the new token.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp

log = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})
REQUEST_TIMEOUT = 30.0
# How much longer than `wait` a long-poll claim may take before we call it lost.
CLAIM_MARGIN = 15.0
MAX_ANSWER_BYTES = 4 * 1024 * 1024


class RelayError(Exception):
    """The relay answered with an error that retrying will not fix."""

    def __init__(self, status: int, code: str, message: str = "") -> None:
        super().__init__(f"HTTP {status} {code}: {message}" if message else code)
        self.status = status
        self.code = code
        self.message = message


class StaleLease(RelayError):
    """409 stale_lease: the run is no longer ours to report."""


class UnknownRun(RelayError):
    """404 unknown_run: the relay does not know the run for us (its job was deleted)."""


class UnknownAgent(RelayError):
    """401: the relay does not know our token (and enrolling again was not possible)."""


class HostnameTaken(UnknownAgent):
    """409 hostname_taken while enrolling with an enrollment token: fatal, like 401.

    An enrollment token registers new hostnames only; taking over a known agent
    needs a user's token (`relay-agent enroll --username ...`).
    """

    def __init__(self, hostname: str, message: str = "") -> None:
        super().__init__(409, "hostname_taken", message)
        self.hostname = hostname


class RelayUnavailable(RelayError):
    """The relay stayed away for all the attempts the caller allowed."""

    def __str__(self) -> str:
        return f"relay unreachable: {self.message}"


@dataclass(frozen=True)
class Backoff:
    base: float = 0.5
    cap: float = 30.0

    def delay(self, attempt: int) -> float:
        # Full jitter: agents that lost the relay together do not come back together.
        return random.uniform(0, min(self.cap, self.base * 2**attempt))


@dataclass(frozen=True)
class Enrollment:
    """What re-registering needs: the enrollment token and what we say about us."""

    token: str
    hostname: str
    ip: str
    labels: list[str]


class BadAssignment(ValueError):
    """An assignment we cannot run; run_id and lease_token are kept when present."""

    def __init__(self, reason: str, run_id: int | None, lease_token: str | None):
        super().__init__(reason)
        self.run_id = run_id
        self.lease_token = lease_token


@dataclass(frozen=True)
class Assignment:
    run_id: int
    lease_token: str
    command: str
    job_id: int | None = None
    job_name: str = ""
    attempt: int = 1
    env: dict[str, str] = field(default_factory=dict)
    timeout_seconds: float | None = None
    lease_seconds: float = 60.0
    # Not in the protocol yet; honoured (and checked by the allowlist) when sent.
    workdir: str | None = None

    @classmethod
    def from_json(cls, data: Any) -> Assignment:
        if not isinstance(data, dict):
            raise BadAssignment("assignment is not an object", None, None)
        run_id = data.get("run_id")
        lease = data.get("lease_token")
        if not _is_int(run_id) or not isinstance(lease, str) or not lease:
            raise BadAssignment("assignment without run_id or lease_token", None, None)

        def bad(reason: str) -> BadAssignment:
            return BadAssignment(f"malformed assignment: {reason}", run_id, lease)

        command = data.get("command")
        if not isinstance(command, str) or not command:
            raise bad("command must be a non-empty string")
        env = data.get("env") or {}
        if not isinstance(env, dict) or not all(
            _env_pair(k, v) for k, v in env.items()
        ):
            raise bad("env must map names to strings")
        timeout = data.get("timeout_seconds")
        if timeout is not None and (not _is_number(timeout) or timeout < 0):
            raise bad("timeout_seconds must be a number >= 0")
        lease_seconds = data.get("lease_seconds", 60)
        if not _is_number(lease_seconds) or lease_seconds <= 0:
            raise bad("lease_seconds must be a number > 0")
        workdir = data.get("workdir")
        if workdir is not None and (not isinstance(workdir, str) or not workdir):
            raise bad("workdir must be a path")

        return cls(
            run_id=run_id,
            lease_token=lease,
            command=command,
            job_id=data.get("job_id") if _is_int(data.get("job_id")) else None,
            job_name=str(data.get("job_name") or ""),
            attempt=data.get("attempt") if _is_int(data.get("attempt")) else 1,
            env=dict(env),
            timeout_seconds=float(timeout) if timeout else None,
            lease_seconds=float(lease_seconds),
            workdir=workdir,
        )


@dataclass(frozen=True)
class Directives:
    """What heartbeat and claim answers tell us besides runs."""

    heartbeat_seconds: float | None
    cancel: list[int]


@dataclass(frozen=True)
class ClaimAnswer:
    runs: list[Assignment]
    rejected: list[BadAssignment]
    directives: Directives


class RelayClient:
    def __init__(
        self,
        server: str,
        token: str | None = None,
        *,
        backoff: Backoff | None = None,
        enrollment: Enrollment | None = None,
        on_enrolled: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        self._server = server.rstrip("/")
        self._token = token
        self._backoff = backoff or Backoff()
        self._enrollment = enrollment
        self._on_enrolled = on_enrolled
        self._session: aiohttp.ClientSession | None = None
        self._enroll_lock = asyncio.Lock()
        self._enroll_refused: HostnameTaken | None = None
        self._lost_since: float | None = None
        # Set when the relay answers again, so waiting retries go at once.
        self._restored = asyncio.Event()

    async def __aenter__(self) -> RelayClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    # --- user calls -------------------------------------------------------------

    async def login(
        self, username: str, password: str, attempts: int | None = 5
    ) -> str:
        body = {"username": username, "password": password}
        answer = await self._call("/login", body, None, attempts=attempts)
        token = answer.get("token")
        if not isinstance(token, str) or not token:
            raise RelayError(200, "bad_answer", "login answer has no token")
        return token

    async def register(
        self,
        auth_token: str,
        hostname: str,
        ip: str,
        labels: list[str],
        attempts: int | None = 5,
    ) -> dict[str, Any]:
        """POST /agents with a user or enrollment token; the answer has our token."""
        body = {"hostname": hostname, "ip": ip, "labels": labels}
        answer = await self._call("/agents", body, auth_token, attempts=attempts)
        if not isinstance(answer.get("token"), str) or not _is_int(answer.get("id")):
            raise RelayError(200, "bad_answer", "registration answer lacks id or token")
        return answer

    async def enroll(self) -> dict[str, Any]:
        """Register with the configured enrollment token and use the new agent token."""
        if self._enrollment is None:
            raise UnknownAgent(401, "unknown_agent", "no enrollment token configured")
        if self._enroll_refused is not None:
            # The relay's answer will not change: do not ask it again and again.
            refused = self._enroll_refused
            raise HostnameTaken(refused.hostname, refused.message)
        e = self._enrollment
        try:
            agent = await self.register(e.token, e.hostname, e.ip, e.labels, None)
        except RelayError as exc:
            if exc.status == 401:
                raise UnknownAgent(401, exc.code, "enrollment token refused") from None
            if exc.status == 409 and exc.code == "hostname_taken":
                self._enroll_refused = HostnameTaken(e.hostname, exc.message)
                raise self._enroll_refused from None
            raise
        self._token = agent["token"]
        log.info("enrolled as agent id=%s hostname=%s", agent["id"], e.hostname)
        if self._on_enrolled is not None:
            self._on_enrolled(agent)
        return agent

    # --- agent calls ------------------------------------------------------------

    async def heartbeat(self, running: list[int]) -> Directives:
        answer = await self._agent_call("/agent/heartbeat", {"running": running})
        return _directives(answer)

    async def claim(self, slots: int, wait: float) -> ClaimAnswer:
        # `wait` is a number of seconds; a whole one goes as an integer (25, not 25.0).
        seconds = int(wait) if float(wait).is_integer() else float(wait)
        body = {"slots": int(slots), "wait": seconds}
        answer = await self._agent_call("/agent/claim", body, limit=wait + CLAIM_MARGIN)
        runs, rejected = [], []
        for item in answer.get("runs") or []:
            try:
                runs.append(Assignment.from_json(item))
            except BadAssignment as exc:
                rejected.append(exc)
        return ClaimAnswer(runs, rejected, _directives(answer))

    async def start(self, run_id: int, lease_token: str) -> None:
        body = {"lease_token": lease_token}
        await self._agent_call(f"/agent/runs/{run_id}/start", body)

    async def renew_lease(self, run_id: int, lease_token: str) -> bool:
        """Renew the lease; True when the relay asks us to cancel the run."""
        body = {"lease_token": lease_token}
        answer = await self._agent_call(f"/agent/runs/{run_id}/lease", body)
        return answer.get("cancel") is True

    async def send_output(
        self, run_id: int, lease_token: str, seq: int, stream: str, data: str
    ) -> bool:
        body = {"lease_token": lease_token, "seq": seq, "stream": stream, "data": data}
        answer = await self._agent_call(f"/agent/runs/{run_id}/output", body)
        return answer.get("stored") is not False

    async def finish(
        self, run_id: int, lease_token: str, report: Mapping[str, Any]
    ) -> str | None:
        """Report the end of a run; returns the status the relay gave it."""
        body = {"lease_token": lease_token, **report}
        answer = await self._agent_call(f"/agent/runs/{run_id}/finish", body)
        status = answer.get("status")
        return status if isinstance(status, str) else None

    # --- plumbing ---------------------------------------------------------------

    async def _agent_call(
        self, path: str, body: Mapping[str, Any], limit: float = REQUEST_TIMEOUT
    ) -> dict[str, Any]:
        # At most two enrollments for one call: a token refused right after it was
        # issued means something else is wrong, and looping would hide it.
        for _ in range(3):
            token = self._token
            if token is None:
                # A container may start with only an enrollment token.
                await self._enroll_once(None, "no agent token yet")
                continue
            try:
                return await self._call(path, body, token, limit=limit)
            except RelayError as exc:
                if exc.status != 401:
                    raise
                if self._enrollment is None:
                    raise UnknownAgent(401, exc.code, exc.message) from None
                await self._enroll_once(token, f"relay does not know us ({exc.code})")
        raise UnknownAgent(401, "unknown_agent", "token refused right after enrolling")

    async def _enroll_once(self, refused: str | None, why: str) -> None:
        """Enroll, unless another task did while we waited: then use its token."""
        async with self._enroll_lock:
            if self._token != refused:
                return
            if self._enroll_refused is None:
                log.warning("%s; enrolling with the enrollment token", why)
            await self.enroll()

    async def _call(
        self,
        path: str,
        body: Mapping[str, Any],
        bearer: str | None,
        *,
        limit: float = REQUEST_TIMEOUT,
        attempts: int | None = None,
    ) -> dict[str, Any]:
        attempt = 0
        while True:
            try:
                status, answer = await self._post(path, body, bearer, limit)
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                failure = _describe(exc)
            else:
                if 200 <= status < 300 and answer is not None:
                    self._connected()
                    return answer
                if status not in RETRY_STATUSES and not 200 <= status < 300:
                    self._connected()
                    raise _error(status, answer)
                failure = f"HTTP {status} from {path}"

            self._lost(failure)
            attempt += 1
            if attempts is not None and attempt >= attempts:
                raise RelayUnavailable(0, "unavailable", failure)
            await self._pause(self._backoff.delay(attempt - 1))

    async def _post(
        self, path: str, body: Mapping[str, Any], bearer: str | None, limit: float
    ) -> tuple[int, dict[str, Any] | None]:
        headers = {"Authorization": f"Bearer {bearer}"} if bearer else {}
        session = self._get_session()
        async with session.post(
            self._server + path,
            json=dict(body),
            headers=headers,
            timeout=aiohttp.ClientTimeout(total=limit),
        ) as response:
            raw = bytearray()
            async for piece in response.content.iter_chunked(64 * 1024):
                raw += piece
                if len(raw) > MAX_ANSWER_BYTES:
                    return response.status, None  # not an answer we would use
            return response.status, _json_object(bytes(raw))

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession()
        return self._session

    async def _pause(self, seconds: float) -> None:
        """Back off, but stop waiting as soon as another call got through.

        After a long outage every loop (heartbeat, claim, reports) sits in a backoff
        of up to retry_max; without this the relay would see us again only bit by
        bit, and could call us offline meanwhile.
        """
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._restored.wait(), seconds)

    def _lost(self, failure: str) -> None:
        if self._lost_since is None:
            self._lost_since = time.monotonic()
            self._restored = asyncio.Event()
            log.warning("connection to relay lost: %s", failure)

    def _connected(self) -> None:
        if self._lost_since is not None:
            away = time.monotonic() - self._lost_since
            self._lost_since = None
            self._restored.set()
            log.info("connection to relay restored after %.1fs", away)


def _json_object(raw: bytes) -> dict[str, Any] | None:
    try:
        value = json.loads(raw)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _error(status: int, answer: dict[str, Any] | None) -> RelayError:
    answer = answer or {}
    code = str(answer.get("error") or f"http_{status}")
    message = str(answer.get("message") or "")
    if status == 409 and code == "stale_lease":
        return StaleLease(status, code, message)
    if status == 404 and code == "unknown_run":
        return UnknownRun(status, code, message)
    return RelayError(status, code, message)


def _directives(answer: Mapping[str, Any]) -> Directives:
    seconds = answer.get("heartbeat_seconds")
    cancel = answer.get("cancel") or []
    return Directives(
        heartbeat_seconds=float(seconds)
        if _is_number(seconds) and seconds > 0
        else None,
        cancel=[run_id for run_id in cancel if _is_int(run_id)]
        if isinstance(cancel, list)
        else [],
    )


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "request timed out"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _env_pair(name: Any, value: Any) -> bool:
    return (
        isinstance(name, str)
        and isinstance(value, str)
        and name != ""
        and "=" not in name
        and "\0" not in name
        and "\0" not in value
    )
