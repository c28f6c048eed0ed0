"""Long-polling claims: waking an idle agent as soon as a run is due for it."""

import asyncio
import logging
import time

from relay.db.engine import Database
from relay.schedule.clock import Clock
from relay.store.leases import agents_with_due_runs

log = logging.getLogger(__name__)

# Runs made by another relay, or retries whose backoff has passed, wake their
# agent's waiting claim at the next look, at most this long after.
LOOK_SECONDS = 1.0


class Dispatcher:
    """Who waits for work, and who was lately found to have none.

    An agent found with nothing due is not asked about again for LOOK_SECONDS
    unless a run is made for it here: a busy fleet polling with short waits
    then costs one query a second per agent, not one per poll. Runs made by
    another relay reach it at the next look, as they would a waiting claim.
    """

    def __init__(self, database: Database, clock: Clock) -> None:
        self.database = database
        self.clock = clock
        self._waiting: dict[int, set[asyncio.Event]] = {}
        self._idle_since: dict[int, float] = {}
        self.closing = False

    def close(self) -> None:
        """Answer every waiting claim now: the relay is stopping.

        Left waiting, long polls would hold the shutdown for their whole wait,
        while their agents could reach no one to heartbeat or renew leases.
        """
        self.closing = True
        for waiters in self._waiting.values():
            for event in waiters:
                event.set()

    def wake(self, agent_ids) -> None:
        for agent_id in agent_ids:
            self._idle_since.pop(agent_id, None)
            for event in self._waiting.get(agent_id, ()):
                event.set()

    def mark_idle(self, agent_id: int) -> None:
        self._idle_since[agent_id] = time.monotonic()

    def known_idle(self, agent_id: int) -> bool:
        since = self._idle_since.get(agent_id)
        return since is not None and time.monotonic() - since < LOOK_SECONDS

    async def wait(self, agent_id: int, seconds: float) -> None:
        """Return after `seconds`, or sooner when a run may be due for the agent."""
        event = asyncio.Event()
        self._waiting.setdefault(agent_id, set()).add(event)
        try:
            await asyncio.wait_for(event.wait(), timeout=seconds)
        except TimeoutError:
            pass
        finally:
            waiters = self._waiting.get(agent_id)
            if waiters is not None:
                waiters.discard(event)
                if not waiters:
                    del self._waiting[agent_id]

    async def look_forever(self) -> None:
        while True:
            await asyncio.sleep(LOOK_SECONDS)
            try:
                await self.look()
            except Exception as exc:
                log.warning("due-run look failed: %s", exc)

    async def look(self) -> None:
        """One query for every waiting agent together, not one per agent."""
        if not self._waiting:
            return

        async with self.database.read() as connection:
            due = await agents_with_due_runs(
                connection, list(self._waiting), self.clock.now()
            )
        self.wake(due)
