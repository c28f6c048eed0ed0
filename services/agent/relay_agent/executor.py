"""Running one command: its own process group, streamed output, timeout and cancel.

The command runs as `/bin/sh -c COMMAND` in a new session, so its process group holds
the whole tree it starts. Stopping it means stopping that group: SIGTERM, a grace
period, then SIGKILL, and waiting until no process of the group is left.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import signal
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

log = logging.getLogger(__name__)

SHELL = "/bin/sh"
READ_SIZE = 16 * 1024
POLL_SECONDS = 0.05
# After SIGKILL a process only lingers in uninterruptible sleep; do not wait forever.
KILL_WAIT_SECONDS = 5.0
# Once the group is gone, a pipe still open belongs to a process that left the group.
PIPE_WAIT_SECONDS = 2.0

TIMED_OUT = "timed_out"
CANCELLED = "cancelled"
# Why a command is stopped: the agent shuts down (reported as INTERRUPTED, so the
# relay records the run lost and the job's retries apply), or the run is no longer
# ours (nothing is reported).
SHUTDOWN = "shutdown"
DROPPED = "dropped"
INTERRUPTED = "interrupted"
SHUTDOWN_ERROR = "the agent is shutting down"

_PR_SET_CHILD_SUBREAPER = 36
_subreaper_done = False


class OutputSink(Protocol):
    async def write(self, stream: str, data: bytes) -> None: ...

    def release(self) -> None: ...


@dataclass(frozen=True)
class ExecResult:
    outcome: str
    exit_code: int | None = None
    signal: int | None = None
    error: str | None = None
    duration: float = 0.0

    def report(self) -> dict[str, Any]:
        """The body of the finish report, lease token aside."""
        return {
            "outcome": self.outcome,
            "exit_code": self.exit_code,
            "signal": self.signal,
            "error": self.error,
        }


def become_subreaper() -> None:
    """Adopt the orphans of our jobs, so that we can reap them.

    Without it a job's grandchildren are handed to PID 1 when their parent dies, and
    where PID 1 does not reap (many containers) they stay as zombies that still count
    as members of the process group.
    """
    global _subreaper_done
    if _subreaper_done or not sys.platform.startswith("linux"):
        return
    _subreaper_done = True
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
            log.debug("prctl(PR_SET_CHILD_SUBREAPER) failed: %s", ctypes.get_errno())
    except (OSError, AttributeError) as exc:
        log.debug("cannot become a child subreaper: %s", exc)


class Execution:
    def __init__(
        self,
        command: str,
        *,
        env: Mapping[str, str],
        workdir: str,
        sink: OutputSink,
        timeout: float | None = None,
        kill_grace: float = 10.0,
    ) -> None:
        self._command = command
        self._env = dict(env)
        self._workdir = workdir
        self._sink = sink
        self._timeout = timeout
        self._kill_grace = kill_grace
        self._stop_reason: str | None = None
        self._stop_error: str | None = None
        self._stop_requested = asyncio.Event()
        self._kill_now = asyncio.Event()
        self._proc: asyncio.subprocess.Process | None = None
        self.pgid: int | None = None

    def stop(self, reason: str, error: str | None = None, now: bool = False) -> None:
        """Ask the command to stop; the first reason given is the one reported."""
        if self._stop_reason is None:
            self._stop_reason = reason
            self._stop_error = error
        elif reason == DROPPED:
            # A lost lease outranks everything: the result will not be reported.
            self._stop_reason = reason
        self._stop_requested.set()
        if now:
            self._kill_now.set()

    async def run(self) -> ExecResult:
        started = time.monotonic()
        try:
            proc = await self._spawn()
        except OSError as exc:
            error = f"could not start the command: {exc.strerror or exc}"
            return ExecResult("error", error=error, duration=time.monotonic() - started)

        self._proc = proc
        self.pgid = proc.pid
        readers = [
            asyncio.create_task(self._pump("stdout", proc.stdout)),
            asyncio.create_task(self._pump("stderr", proc.stderr)),
        ]
        try:
            reason = await self._wait(proc)
            self._sink.release()
            await self._drain(readers)
        finally:
            for task in readers:
                task.cancel()
            await self._kill_group_now()

        duration = time.monotonic() - started
        return self._result(reason, proc.returncode, duration)

    async def _spawn(self) -> asyncio.subprocess.Process:
        become_subreaper()
        return await asyncio.create_subprocess_exec(
            SHELL,
            "-c",
            self._command,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            cwd=self._workdir,
            env=self._env,
            start_new_session=True,
        )

    async def _wait(self, proc: asyncio.subprocess.Process) -> str | None:
        """Wait for the shell to end or to be stopped; returns why we stopped it."""
        exited = asyncio.create_task(proc.wait())
        stopped = asyncio.create_task(self._stop_requested.wait())
        try:
            await asyncio.wait(
                {exited, stopped},
                timeout=self._timeout,
                return_when=asyncio.FIRST_COMPLETED,
            )
        finally:
            stopped.cancel()

        if exited.done():
            # It ended on its own; what it left behind in its group goes too.
            await self._stop_group(quiet=False)
            return None

        if self._stop_reason is None:
            self._stop_reason = TIMED_OUT
        await self._stop_group(quiet=True)
        await exited
        return self._stop_reason

    async def _stop_group(self, quiet: bool) -> None:
        if self._group_gone():
            return
        if not quiet:
            log.info("process group %s outlived its shell; stopping it", self.pgid)

        self._signal_group(signal.SIGTERM)
        if await self._wait_group_gone(self._kill_grace, self._kill_now):
            return

        log.warning("process group %s still there after SIGTERM; SIGKILL", self.pgid)
        self._signal_group(signal.SIGKILL)
        if not await self._wait_group_gone(KILL_WAIT_SECONDS):
            log.error("process group %s survived SIGKILL", self.pgid)

    async def _kill_group_now(self) -> None:
        # Only reached with members left when run() itself was cancelled.
        if self.pgid is not None and not self._group_gone():
            self._signal_group(signal.SIGKILL)
            await self._wait_group_gone(KILL_WAIT_SECONDS)

    def _signal_group(self, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pgid, signum)  # type: ignore[arg-type]

    async def _wait_group_gone(
        self, seconds: float, interrupt: asyncio.Event | None = None
    ) -> bool:
        deadline = time.monotonic() + seconds
        while not self._group_gone():
            if time.monotonic() >= deadline or (interrupt and interrupt.is_set()):
                return False
            await asyncio.sleep(POLL_SECONDS)
        return True

    def _group_gone(self) -> bool:
        self._reap_members()
        try:
            os.killpg(self.pgid, 0)  # type: ignore[arg-type]
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        return False

    def _reap_members(self) -> None:
        """Reap zombies of the group that were handed to us as their subreaper.

        Only once the shell itself has been reaped by asyncio, so that we never take
        its exit status away from it.
        """
        if self._proc is None or self._proc.returncode is None:
            return
        while True:
            try:
                pid, _ = os.waitpid(-self.pgid, os.WNOHANG)  # type: ignore[operator]
            except ChildProcessError:
                return
            if pid == 0:
                return

    async def _pump(self, stream: str, reader: asyncio.StreamReader | None) -> None:
        if reader is None:
            return
        while True:
            data = await reader.read(READ_SIZE)
            if not data:
                return
            await self._sink.write(stream, data)

    async def _drain(self, readers: list[asyncio.Task[None]]) -> None:
        done, pending = await asyncio.wait(readers, timeout=PIPE_WAIT_SECONDS)
        if pending:
            log.warning(
                "output of process group %s still open after it ended "
                "(a process left the group); not reading it further",
                self.pgid,
            )
        for task in done:
            if task.exception() is not None:
                raise task.exception()  # type: ignore[misc]

    def _result(
        self, reason: str | None, code: int | None, duration: float
    ) -> ExecResult:
        if reason == SHUTDOWN:
            error = self._stop_error or SHUTDOWN_ERROR
            return ExecResult(INTERRUPTED, error=error, duration=duration)
        if reason is not None:
            return ExecResult(reason, error=self._stop_error, duration=duration)
        if code is not None and code < 0:
            return ExecResult("signaled", signal=-code, duration=duration)
        return ExecResult("exited", exit_code=code, duration=duration)
