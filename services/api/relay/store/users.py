"""Rows of users."""

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import func, insert, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from relay.db.tables import users
from relay.errors import Conflict

FIRST_USER_LOCK = 0x52454C4155


@dataclass(frozen=True)
class User:
    id: int
    username: str
    is_admin: bool
    created_at: datetime

    def public(self) -> dict:
        return {
            "id": self.id,
            "username": self.username,
            "created_at": self.created_at.isoformat(),
        }


USER_COLUMNS = (users.c.id, users.c.username, users.c.is_admin, users.c.created_at)


async def create_user(
    connection: AsyncConnection, username: str, password_hash: str
) -> User:
    """Insert a user; the first one becomes the admin."""
    if connection.dialect.name == "postgresql":
        # Registrations queue here for the rest of their transaction, so two
        # first users cannot both count none before them. (SQLite writes are
        # one at a time already.)
        await connection.execute(
            text("SELECT pg_advisory_xact_lock(:key)"), {"key": FIRST_USER_LOCK}
        )
    is_first = await connection.scalar(select(func.count()).select_from(users)) == 0
    statement = (
        insert(users)
        .values(
            username=username,
            username_key=username.lower(),
            password_hash=password_hash,
            is_admin=is_first,
            created_at=datetime.now(UTC),
        )
        .returning(*USER_COLUMNS)
    )

    # The unique key decides a race between two registrations, not a lookup.
    try:
        row = (await connection.execute(statement)).one()
    except IntegrityError:
        raise Conflict("Username is already taken", code="username_taken") from None
    return User(*row)


async def find_login(
    connection: AsyncConnection, username: str
) -> tuple[User, str] | None:
    """The user with this name, in any case, and their password hash."""
    statement = select(*USER_COLUMNS, users.c.password_hash).where(
        users.c.username_key == username.lower()
    )
    row = (await connection.execute(statement)).one_or_none()
    if row is None:
        return None

    return User(*row[:4]), row[4]
