"""Whether the database's schema is the one this code was written for."""

from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from relay.db.engine import Database


def expected_revision() -> str:
    # The migrator owns the revisions; the relay only reads which one is head.
    from relay_migrator import head_revision

    return head_revision()


async def current_revision(database: Database) -> str | None:
    """The revision the database is at, or None when it was never migrated."""
    async with database.read() as connection:
        try:
            result = await connection.execute(
                text("SELECT version_num FROM alembic_version")
            )
        except DBAPIError as exc:
            if _is_missing_table(exc):
                return None
            raise
        return result.scalar_one_or_none()


def _is_missing_table(exc: DBAPIError) -> bool:
    message = str(exc.orig).lower()
    return "no such table" in message or "does not exist" in message
