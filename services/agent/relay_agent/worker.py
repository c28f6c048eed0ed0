"""The agent's loop: heartbeats, long-poll claims, and one task per run.

A run goes: claimed -> (allowlist) -> start report -> command with streamed output and
lease renewal -> result spooled -> output rest and finish report -> spool entry gone.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from relay_agent import policy
from relay_agent.client import (
    Assignment,
    Backoff,
    BadAssignment,
    Directives,
    Enrollment,
    HostnameTaken,
    RelayClient,
    RelayError,
    StaleLease,
    UnknownAgent,
    UnknownRun,
)
from relay_agent.config import (
    SECRET_ENV,
    AgentConfig,
    primary_ip,
    read_config_file,
    save_config,
)
from relay_agent.executor import (
    CANCELLED,
    DROPPED,
    INTERRUPTED,
    KILL_WAIT_SECONDS,
    SHUTDOWN,
    SHUTDOWN_ERROR,
    ExecResult,
    Execution,
)
from relay_agent.output import Chunk, OutputStreamer
from relay_agent.spool import Spool, SpoolRecord

log = logging.getLogger(__name__)

# Until the relay says otherwise (every heartbeat and claim answer does).
DEFAULT_HEARTBEAT_SECONDS = 10.0
MIN_HEARTBEAT_SECONDS = 0.05
MAX_HEARTBEAT_SECONDS = 300.0
# An empty claim answer that comes back faster than this is not a long poll (a relay
# ignoring `wait`, or wait=0): pause, rather than ask again in a tight loop.
MIN_CLAIM_SECONDS = 1.0


@dataclass
class RunState:
    assignment: Assignment
    execution: Execution | None = None
    # A stop asked for before the command was started.
    pending_stop: str | None = None
    # Why the run is no longer ours to report (stale lease, unknown run), if it is not.
    dropped: str | None = None
    command_done: asyncio.Event = field(default_factory=asyncio.Event)
    lease_task: asyncio.Task[None] | None = None


class Agent:
    def __init__(self, config: AgentConfig, client: RelayClient | None = None) -> None:
        self.config = config
        self.client = client or self._make_client(config)
        self.spool = Spool(Path(config.state_dir) / "spool")
        self._backoff = Backoff(config.retry_base, config.retry_max)
        self._heartbeat_seconds = DEFAULT_HEARTBEAT_SECONDS
        self._runs: dict[int, RunState] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._stopping = asyncio.Event()
        self._hurry = asyncio.Event()
        self._slots_changed = asyncio.Event()
        self._fatal: BaseException | None = None

    def _make_client(self, config: AgentConfig) -> RelayClient:
        enrollment = None
        if config.enroll_token:
            ip = config.ip or primary_ip()
            enrollment = Enrollment(
                config.enroll_token, config.hostname, ip, config.labels
            )
        return RelayClient(
            config.server,
            config.token,
            backoff=Backoff(config.retry_base, config.retry_max),
            enrollment=enrollment,
            on_enrolled=self._keep_new_token,
        )

    # --- lifecycle ----------------------------------------------------------------

    def request_stop(self) -> None:
        """SIGTERM/SIGINT: stop claiming and let runs end; a second one hurries them."""
        if not self._stopping.is_set():
            log.info("stop requested: no new runs; %d running", self._executing())
            self._stopping.set()
            return
        log.warning("second stop request: stopping running commands now")
        self._hurry.set()
        for state in list(self._runs.values()):
            self._stop_run(state, SHUTDOWN, now=True)

    async def run(self) -> int:
        """Serve until asked to stop; 0 when stopped, 1 when our token is refused."""
        log.info(
            "agent starting: server=%s hostname=%s concurrency=%d",
            self.config.server,
            self.config.hostname,
            self.config.concurrency,
        )
        heartbeat = asyncio.create_task(self._heartbeat_loop())
        try:
            await self._serve_until_stopped()
            await self._drain()
        finally:
            heartbeat.cancel()
            await self._cancel_all([heartbeat, *self._tasks])
            await self.client.close()
        log.info("agent stopped")
        return 1 if self._fatal is not None else 0

    async def _serve_until_stopped(self) -> None:
        serve = asyncio.create_task(self._serve())
        stop = asyncio.create_task(self._stopping.wait())
        await asyncio.wait({serve, stop}, return_when=asyncio.FIRST_COMPLETED)
        stop.cancel()

        # Stopping cancels a long-poll claim in flight: runs it might have brought
        # back are lost to us, and the relay retries them when their lease lapses.
        serve.cancel()
        (outcome,) = await asyncio.gather(serve, return_exceptions=True)
        if isinstance(outcome, BaseException) and not isinstance(
            outcome, asyncio.CancelledError
        ):
            self._fail(outcome)

    async def _serve(self) -> None:
        # Without a token yet, the first call enrolls (RELAY_ENROLL_TOKEN).
        await self._flush_spool()
        await self._claim_loop()

    def _fail(self, exc: BaseException) -> None:
        """The agent cannot go on (its token is refused): stop everything, exit 1."""
        if self._fatal is not None:
            return
        self._fatal = exc
        if isinstance(exc, HostnameTaken):
            log.error(
                "the relay refused to enroll this agent: hostname %s is registered "
                "already (409 hostname_taken) and an enrollment token registers new "
                "hostnames only: run `relay-agent enroll --username ...` on this "
                "machine, or give it another hostname",
                exc.hostname,
            )
        elif isinstance(exc, UnknownAgent):
            log.error(
                "the relay refused this agent's token (%s) and it cannot enroll again "
                "by itself: run `relay-agent enroll` or set RELAY_ENROLL_TOKEN",
                exc.code,
            )
        else:
            log.error("agent cannot go on: %s", exc, exc_info=exc)
        self._stopping.set()
        self._hurry.set()
        for state in list(self._runs.values()):
            self._stop_run(state, SHUTDOWN, now=True)

    async def _drain(self) -> None:
        """Give running commands the shutdown grace, stop the rest, report, return."""
        running = [s for s in self._runs.values() if not s.command_done.is_set()]
        if running and self._fatal is None:
            log.info(
                "waiting up to %.1fs for %d running commands",
                self.config.shutdown_grace,
                len(running),
            )
            await self._wait_commands(running, self.config.shutdown_grace, self._hurry)

        for state in running:
            if not state.command_done.is_set():
                log.info(
                    "stopping run=%s: shutdown grace is over", state.assignment.run_id
                )
                self._stop_run(state, SHUTDOWN, now=self._hurry.is_set())
        # Not cut short by a second signal: the groups must be gone before we exit.
        await self._wait_commands(
            running, self.config.kill_grace + KILL_WAIT_SECONDS + 1
        )

        # Reports get a bounded time; what is not acknowledged stays in the spool.
        if self._fatal is None and self._tasks:
            await asyncio.wait(set(self._tasks), timeout=self.config.report_grace)
        left = [task for task in self._tasks if not task.done()]
        if left:
            log.warning(
                "%d results not reported yet; they stay in the spool", len(left)
            )

    async def _wait_commands(
        self,
        states: list[RunState],
        seconds: float,
        interrupt: asyncio.Event | None = None,
    ) -> None:
        if not states:
            return
        waits = [asyncio.create_task(s.command_done.wait()) for s in states]
        everything = asyncio.gather(*waits)
        watched: set[asyncio.Future[Any]] = {everything}
        if interrupt is not None:
            watched.add(asyncio.create_task(interrupt.wait()))
        await asyncio.wait(
            watched, timeout=seconds, return_when=asyncio.FIRST_COMPLETED
        )
        await self._cancel_all([*watched, *waits])

    async def _cancel_all(self, tasks: list[Any]) -> None:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # --- heartbeat and claims -----------------------------------------------------

    async def _heartbeat_loop(self) -> None:
        while True:
            try:
                directives = await self.client.heartbeat(sorted(self._runs))
            except UnknownAgent as exc:
                self._fail(exc)
                return
            except RelayError as exc:
                log.warning("heartbeat refused: %s", exc)
            else:
                self._apply(directives)
            await asyncio.sleep(self._heartbeat_seconds)

    async def _claim_loop(self) -> None:
        refusals = 0
        while not self._stopping.is_set():
            self._slots_changed.clear()
            free = self.config.concurrency - self._executing()
            if free <= 0:
                await self._slots_changed.wait()
                continue

            asked = time.monotonic()
            try:
                answer = await self.client.claim(min(free, 100), self.config.claim_wait)
            except UnknownAgent:
                raise
            except RelayError as exc:
                log.warning("claim refused: %s", exc)
                await asyncio.sleep(self._backoff.delay(refusals))
                refusals += 1
                continue
            refusals = 0

            self._apply(answer.directives)
            for bad in answer.rejected:
                self._launch_rejected(bad)
            for assignment in answer.runs:
                self._launch(assignment)
            if not answer.runs and not answer.rejected:
                elapsed = time.monotonic() - asked
                await asyncio.sleep(max(0.0, MIN_CLAIM_SECONDS - elapsed))

    def _apply(self, directives: Directives) -> None:
        if directives.heartbeat_seconds is not None:
            self._heartbeat_seconds = min(
                max(directives.heartbeat_seconds, MIN_HEARTBEAT_SECONDS),
                MAX_HEARTBEAT_SECONDS,
            )
        for run_id in directives.cancel:
            state = self._runs.get(run_id)
            if state is not None and not state.command_done.is_set():
                log.info("cancel requested for run=%s", run_id)
                self._stop_run(state, CANCELLED)

    def _executing(self) -> int:
        return sum(1 for s in self._runs.values() if not s.command_done.is_set())

    def _stop_run(self, state: RunState, reason: str, now: bool = False) -> None:
        if state.execution is not None:
            state.execution.stop(reason, now=now)
        elif state.pending_stop is None or reason == DROPPED:
            state.pending_stop = reason

    # --- one run ------------------------------------------------------------------

    def _launch(self, assignment: Assignment) -> None:
        if assignment.run_id in self._runs:
            log.warning(
                "run=%s handed to us twice; ignoring the copy", assignment.run_id
            )
            return
        if self._executing() >= self.config.concurrency:
            log.warning(
                "run=%s given beyond our free slots; running it anyway",
                assignment.run_id,
            )
        state = RunState(assignment)
        self._runs[assignment.run_id] = state
        self._spawn(self._run_one(state))

    def _launch_rejected(self, bad: BadAssignment) -> None:
        # Without a lease token there is no way to report on it: the lease will lapse.
        log.error("unusable assignment from the relay: %s", bad)
        if bad.run_id is None or bad.lease_token is None:
            return
        record = SpoolRecord(
            bad.run_id, bad.lease_token, ExecResult("error", error=str(bad)).report()
        )
        self._spawn(self._report(record))

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(self._guard(coro))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _guard(self, coro: Any) -> None:
        # A run's failure must not take the agent down, except a refused token.
        try:
            await coro
        except UnknownAgent as exc:
            self._fail(exc)
        except Exception:
            log.exception("unexpected error in a run task")

    async def _run_one(self, state: RunState) -> None:
        a = state.assignment
        log.info(
            "claimed run=%s job=%s (%s) attempt=%s",
            a.run_id,
            a.job_id,
            a.job_name,
            a.attempt,
        )
        try:
            outcome = await self._execute(state)
            # The command (if any) is over: the slot is free while we report.
            self._command_over(state)
            if outcome is not None:
                result, chunks = outcome
                record = SpoolRecord(
                    a.run_id, a.lease_token, result.report(), chunks, a.job_name
                )
                await self._report(record)
        finally:
            self._command_over(state)
            if state.lease_task is not None:
                state.lease_task.cancel()
            self._runs.pop(a.run_id, None)

    def _command_over(self, state: RunState) -> None:
        state.command_done.set()
        self._slots_changed.set()

    async def _execute(self, state: RunState) -> tuple[ExecResult, list[Chunk]] | None:
        """Run the command; None when there is nothing to report."""
        a = state.assignment
        workdir = a.workdir or self.config.workdir

        why = policy.refusal(self.config.allow, a.command, workdir, a.env)
        if why is not None:
            log.warning("refused run=%s job=%s: %s", a.run_id, a.job_id, why)
            return ExecResult("refused", error=why), []

        # A run stopped before it began is finished without a start report.
        if not self._must_not_start(state) and not await self._report_start(state):
            return None
        if state.dropped is not None:
            return None
        if state.pending_stop == CANCELLED:
            log.info("run=%s cancelled before it started", a.run_id)
            return ExecResult(CANCELLED), []
        if self._must_not_start(state):
            # Given back at once, rather than left for its lease to lapse: the relay
            # records it lost and the job's retries hand it on.
            log.info("giving back run=%s: the agent is shutting down", a.run_id)
            return ExecResult(INTERRUPTED, error=SHUTDOWN_ERROR), []

        return await self._run_command(state, workdir)

    def _must_not_start(self, state: RunState) -> bool:
        return (
            state.dropped is not None
            or state.pending_stop is not None
            or self._stopping.is_set()
        )

    async def _report_start(self, state: RunState) -> bool:
        a = state.assignment
        try:
            await self.client.start(a.run_id, a.lease_token)
        except (StaleLease, UnknownRun) as exc:
            self._drop(state, exc)
            return False
        except UnknownAgent:
            raise
        except RelayError as exc:
            log.error(
                "run=%s: relay refused the start report (%s); not running it",
                a.run_id,
                exc,
            )
            return False
        return True

    async def _run_command(
        self, state: RunState, workdir: str
    ) -> tuple[ExecResult, list[Chunk]] | None:
        a = state.assignment
        streamer = OutputStreamer(
            lambda chunk: self._send_chunk(state, chunk),
            max_bytes=self.config.max_output_bytes,
        )
        state.execution = Execution(
            a.command,
            env=self._job_env(a),
            workdir=workdir,
            sink=streamer,
            timeout=a.timeout_seconds,
            kill_grace=self.config.kill_grace,
        )
        state.lease_task = asyncio.create_task(self._keep_lease(state))
        streamer.start()
        log.info("started run=%s job=%s (%s)", a.run_id, a.job_id, a.job_name)

        try:
            result = await state.execution.run()
            await streamer.close()
        finally:
            chunks = await streamer.detach()
            self._command_over(state)

        log.info(
            "finished run=%s job=%s outcome=%s exit_code=%s signal=%s duration=%.2fs%s",
            a.run_id,
            a.job_id,
            result.outcome,
            result.exit_code,
            result.signal,
            result.duration,
            f" error={result.error!r}" if result.error else "",
        )
        if streamer.dropped_bytes:
            log.info(
                "run=%s: %d bytes of output dropped", a.run_id, streamer.dropped_bytes
            )
        if state.dropped is not None:
            log.info("run=%s: result dropped (%s)", a.run_id, state.dropped)
            return None
        return result, chunks

    def _job_env(self, a: Assignment) -> dict[str, str]:
        # The job's variables on top of ours, minus the secrets we were given.
        env = {k: v for k, v in os.environ.items() if k not in SECRET_ENV}
        env.update(a.env)
        return env

    async def _keep_lease(self, state: RunState) -> None:
        a = state.assignment
        interval = max(a.lease_seconds / 3, 0.05)
        while True:
            await asyncio.sleep(interval)
            try:
                cancel = await self.client.renew_lease(a.run_id, a.lease_token)
            except (StaleLease, UnknownRun) as exc:
                self._drop(state, exc)
                return
            except UnknownAgent as exc:
                self._fail(exc)
                return
            except RelayError as exc:
                log.warning("run=%s: lease renewal refused: %s", a.run_id, exc)
                continue
            if cancel and not state.command_done.is_set():
                log.info("cancel requested for run=%s", a.run_id)
                self._stop_run(state, CANCELLED)

    def _drop(self, state: RunState, exc: StaleLease | UnknownRun) -> None:
        """The run is no longer ours: stop its command, and report nothing more."""
        if state.dropped is not None:
            return
        state.dropped = _drop_reason(exc)
        log.warning(
            "run=%s: %s: stopping it and dropping its result",
            state.assignment.run_id,
            state.dropped,
        )
        self._stop_run(state, DROPPED)

    async def _send_chunk(self, state: RunState, chunk: Chunk) -> None:
        a = state.assignment
        try:
            await self.client.send_output(
                a.run_id, a.lease_token, chunk.seq, chunk.stream, chunk.data
            )
        except (StaleLease, UnknownRun) as exc:
            self._drop(state, exc)
            raise
        except UnknownAgent as exc:
            self._fail(exc)
            raise
        except RelayError as exc:
            log.warning(
                "run=%s: output seq=%s refused (%s); skipping it",
                a.run_id,
                chunk.seq,
                exc,
            )

    # --- results ------------------------------------------------------------------

    async def _report(self, record: SpoolRecord) -> None:
        # On disk first: from here on neither the relay nor a crash can lose it.
        path = self.spool.save(record)
        await self._deliver(path, record)

    async def _flush_spool(self) -> None:
        pending = self.spool.pending()
        if pending:
            log.info("sending %d results left in the spool", len(pending))
        for path, record in pending:
            await self._deliver(path, record)

    async def _deliver(self, path: Path, record: SpoolRecord) -> None:
        try:
            for chunk in record.chunks:
                await self._resend_chunk(record, chunk)
            status = await self.client.finish(
                record.run_id, record.lease_token, record.finish
            )
        except (StaleLease, UnknownRun) as exc:
            log.warning(
                "run=%s: %s: its result is dropped", record.run_id, _drop_reason(exc)
            )
            self.spool.remove(path)
            return
        except UnknownAgent:
            raise
        except RelayError as exc:
            self.spool.reject(path, str(exc))
            return
        self.spool.remove(path)
        log.info(
            "reported run=%s outcome=%s status=%s",
            record.run_id,
            record.finish.get("outcome"),
            status,
        )

    async def _resend_chunk(self, record: SpoolRecord, chunk: Chunk) -> None:
        try:
            await self.client.send_output(
                record.run_id, record.lease_token, chunk.seq, chunk.stream, chunk.data
            )
        except (StaleLease, UnknownRun, UnknownAgent):
            raise
        except RelayError as exc:
            log.warning(
                "run=%s: output seq=%s refused (%s); skipping it",
                record.run_id,
                chunk.seq,
                exc,
            )

    def _keep_new_token(self, agent: dict[str, Any]) -> None:
        """After enrolling again, keep the new token in our config file if we can."""
        self.config.token = agent["token"]
        self.config.agent_id = agent["id"]
        path = self.config.path
        if path is None:
            return
        try:
            data = read_config_file(path)
            data.update(token=agent["token"], agent_id=agent["id"])
            save_config(path, data)
        except Exception as exc:
            log.warning("could not save the new agent token in %s: %s", path, exc)
            return
        log.info("new agent token saved in %s", path)


def _drop_reason(exc: StaleLease | UnknownRun) -> str:
    if isinstance(exc, UnknownRun):
        return "the relay does not know this run (404 unknown_run)"
    return "stale lease (409 stale_lease: the run is no longer ours)"
