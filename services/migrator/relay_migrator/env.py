"""The alembic environment: runs revisions on an async engine."""

import asyncio

from alembic import context
from sqlalchemy.engine import Connection

from relay.db.engine import create_engine

config = context.config


def run_revisions(connection: Connection) -> None:
    # Batch mode makes ALTER TABLE work on SQLite by copying the table.
    context.configure(
        connection=connection,
        render_as_batch=connection.dialect.name == "sqlite",
        transaction_per_migration=True,
    )
    with context.begin_transaction():
        context.run_migrations()


async def run_online() -> None:
    engine = create_engine(config.attributes["database_url"])
    try:
        async with engine.connect() as connection:
            await connection.run_sync(run_revisions)
            await connection.commit()
    finally:
        await engine.dispose()


if context.is_offline_mode():
    raise SystemExit("offline SQL generation is not supported")

asyncio.run(run_online())
