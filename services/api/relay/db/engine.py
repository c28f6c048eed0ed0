"""The database engine, and the two ways of using it: reading and writing."""

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from sqlalchemy import event, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

log = logging.getLogger(__name__)

SQLITE_BUSY_TIMEOUT_MS = 5000


def create_engine(
    url: str, pool_size: int = 10, pool_timeout: float = 10.0
) -> AsyncEngine:
    """Make an engine; for SQLite, create the file's folder and set the pragmas."""
    if url.startswith("sqlite"):
        return _sqlite_engine(url)

    # pre_ping finds connections a database restart broke, before a request
    # does; the connect timeout keeps a vanished server from hanging requests.
    return create_async_engine(
        url,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_timeout=pool_timeout,
        pool_pre_ping=True,
        connect_args={"timeout": pool_timeout},
    )


def _sqlite_engine(url: str) -> AsyncEngine:
    database = make_url(url).database
    if database and database != ":memory:":
        Path(database).parent.mkdir(parents=True, exist_ok=True)

    # pysqlite opens no transaction for a read, so the rollback a pool does on
    # every return is a thread hop for nothing; writes end theirs explicitly.
    engine = create_async_engine(url, pool_reset_on_return=None)
    event.listen(engine.sync_engine, "connect", _set_sqlite_pragmas)
    return engine


def _set_sqlite_pragmas(dbapi_connection, _record) -> None:
    # WAL lets readers proceed while one writer writes; busy_timeout makes a
    # writer from another process wait instead of failing at once.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


class Database:
    """The engine plus the rule for writing to it.

    SQLite takes one writer at a time; with several connections of one process
    competing, writers time out on each other's locks. Writes from this process
    therefore queue on one asyncio lock when the database is SQLite. PostgreSQL
    needs no such lock.
    """

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.is_sqlite = engine.dialect.name == "sqlite"
        self.is_postgresql = engine.dialect.name == "postgresql"
        self._write_lock = asyncio.Lock() if self.is_sqlite else None

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        async with self.engine.connect() as connection:
            yield connection

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncConnection]:
        """One transaction, committed on leaving, rolled back on an error."""
        if self._write_lock is None:
            async with self.engine.begin() as connection:
                yield connection
            return

        async with self._write_lock, self.engine.begin() as connection:
            yield connection

    async def ping(self) -> None:
        async with self.engine.connect() as connection:
            await connection.execute(text("SELECT 1"))

    async def dispose(self) -> None:
        await self.engine.dispose()
