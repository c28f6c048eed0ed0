"""Agents' last-seen times, gathered in memory and written in batches.

A heartbeat only moves a timestamp forward; writing each one as it comes would
make the busiest call the most expensive. Times are kept here and written once
a second in one statement; an agent's status lags by at most that second.
"""

import asyncio
import contextlib
import logging
from datetime import datetime

from relay.db.engine import Database
from relay.store.agents import record_seen

log = logging.getLogger(__name__)

FLUSH_SECONDS = 1.0


class SeenBuffer:
    def __init__(self, database: Database) -> None:
        self.database = database
        self._seen: dict[int, datetime] = {}
        self._written: set[int] = set()
        self._newcomer = asyncio.Event()

    def mark(self, agent_id: int, now: datetime) -> None:
        self._seen[agent_id] = now
        # An agent this relay has not written yet may be coming online: write
        # it at once, so a fire a moment later finds it online.
        if agent_id not in self._written:
            self._newcomer.set()

    async def flush(self) -> None:
        if not self._seen:
            return

        batch, self._seen = self._seen, {}
        try:
            async with self.database.write() as connection:
                await record_seen(connection, batch)
        except Exception:
            # Keep the times for the next flush; newer marks win.
            self._seen = {**batch, **self._seen}
            raise
        self._written.update(batch)

    async def flush_forever(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._newcomer.wait(), FLUSH_SECONDS)
            self._newcomer.clear()
            try:
                await self.flush()
            except Exception as exc:
                log.warning("agent heartbeats not written: %s", exc)
