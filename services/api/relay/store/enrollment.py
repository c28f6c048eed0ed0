"""Enrollment tokens: let a machine register itself without a user's password."""

import secrets
from datetime import datetime, timedelta

from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from relay.auth.tokens import agent_token_hash
from relay.db.tables import enrollment_tokens

ENROLLMENT_TOKEN_PREFIX = "enr_"


def is_enrollment_token(token: str) -> bool:
    return token.startswith(ENROLLMENT_TOKEN_PREFIX)


async def create_enrollment_token(
    connection: AsyncConnection, user_id: int, now: datetime, ttl_seconds: int
) -> tuple[str, datetime]:
    token = ENROLLMENT_TOKEN_PREFIX + secrets.token_urlsafe(32)
    expires_at = now + timedelta(seconds=ttl_seconds)
    await connection.execute(
        insert(enrollment_tokens).values(
            token_hash=agent_token_hash(token),
            created_by=user_id,
            created_at=now,
            expires_at=expires_at,
        )
    )
    return token, expires_at


async def enrolling_user(
    connection: AsyncConnection, token: str, now: datetime
) -> int | None:
    """The user who made this token, while it is still valid."""
    statement = select(enrollment_tokens.c.created_by).where(
        enrollment_tokens.c.token_hash == agent_token_hash(token),
        enrollment_tokens.c.expires_at > now,
    )
    return await connection.scalar(statement)
