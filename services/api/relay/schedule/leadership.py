"""Which relay's scheduler decides fires, when several share one database."""

import logging

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

log = logging.getLogger(__name__)

# Any fixed number works, so long as every relay uses the same one.
ADVISORY_LOCK_KEY = 0x52454C4159


class SoleLeader:
    """SQLite: one relay per file (the relay holds a file lock), so it leads."""

    async def hold(self) -> bool:
        return True

    async def release(self) -> None:
        return None


class AdvisoryLockLeader:
    """PostgreSQL: the relay holding a session advisory lock leads.

    The lock lives as long as the connection that took it, so a leader that
    dies or loses its connection frees it and another relay takes over at its
    next try. Even two leaders at once would not double a fire: the jobs'
    compare-and-set and the runs' unique fire key decide, not this lock.
    """

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._connection: AsyncConnection | None = None

    async def hold(self) -> bool:
        if self._connection is not None:
            return await self._still_held()

        try:
            connection = await self.engine.connect()
        except Exception as exc:
            log.warning("leadership not tried: %s", exc)
            return False
        return await self._try_lock(connection)

    async def _try_lock(self, connection: AsyncConnection) -> bool:
        try:
            taken = await connection.scalar(
                text("SELECT pg_try_advisory_lock(:key)"), {"key": ADVISORY_LOCK_KEY}
            )
            await connection.commit()
        except Exception as exc:
            log.warning("leadership not tried: %s", exc)
            await _close(connection)
            return False

        if not taken:
            await _close(connection)
            return False
        self._connection = connection
        log.info("scheduler leadership taken")
        return True

    async def _still_held(self) -> bool:
        try:
            await self._connection.execute(text("SELECT 1"))
            await self._connection.commit()
            return True
        except Exception as exc:
            log.warning("scheduler leadership lost: %s", exc)
            await _close(self._connection)
            self._connection = None
            return False

    async def release(self) -> None:
        if self._connection is None:
            return

        await _close(self._connection)
        self._connection = None


async def _close(connection: AsyncConnection) -> None:
    # Invalidate, not just close: a closed connection goes back to the pool
    # still holding the session lock.
    try:
        await connection.invalidate()
        await connection.close()
    except Exception as exc:
        log.debug("leadership connection not closed cleanly: %s", exc)
