"""Rows of agents: registration, lookup by token, and the listing."""

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from relay.auth.tokens import agent_token_hash, new_agent_token
from relay.db.tables import agents
from relay.errors import Conflict

# An agent unseen for this many heartbeat intervals is offline.
MISSED_HEARTBEATS_OFFLINE = 3


@dataclass(frozen=True)
class Agent:
    id: int
    hostname: str
    ip: str
    labels: list[str]
    created_at: datetime
    last_seen_at: datetime | None

    def is_online(self, now: datetime, heartbeat_seconds: int) -> bool:
        if self.last_seen_at is None:
            return False

        limit = timedelta(seconds=heartbeat_seconds * MISSED_HEARTBEATS_OFFLINE)
        return now - self.last_seen_at <= limit

    def public(self, now: datetime, heartbeat_seconds: int) -> dict:
        online = self.is_online(now, heartbeat_seconds)
        return {
            "id": self.id,
            "hostname": self.hostname,
            "ip": self.ip,
            "labels": self.labels,
            "status": "online" if online else "offline",
            "last_seen_at": _iso(self.last_seen_at),
            "created_at": self.created_at.isoformat(),
        }


AGENT_COLUMNS = (
    agents.c.id,
    agents.c.hostname,
    agents.c.ip,
    agents.c.labels,
    agents.c.created_at,
    agents.c.last_seen_at,
)


@dataclass(frozen=True)
class Replacer:
    """Who asks to register a hostname, for deciding whether they may replace it."""

    user_id: int
    is_admin: bool
    by_enrollment: bool


async def register_agent(
    connection: AsyncConnection,
    hostname: str,
    ip: str,
    labels: list[str] | None,
    user_id: int | None,
    replacer: Replacer,
) -> tuple[Agent, str, bool]:
    """Add an agent, or update the one with this hostname; issue a new token.

    Returns the agent, its token (shown once) and whether it was created. A
    known hostname is updated only for its owner or an admin; anyone else
    would get the token of a machine that runs someone else's jobs.
    """
    token = new_agent_token()
    now = datetime.now(UTC)
    changes = {"ip": ip, "token_hash": agent_token_hash(token), "updated_at": now}
    if labels is not None:
        changes["labels"] = labels

    if await _check_replace(connection, hostname, replacer):
        return await _update_by_hostname(connection, hostname, changes), token, False

    # Two first registrations of one hostname can race: the unique key lets
    # one insert win; the other then finds the winner's row and is judged
    # against it like any re-registration.
    try:
        async with connection.begin_nested():
            created = await connection.execute(
                insert(agents)
                .values(
                    hostname=hostname,
                    hostname_key=hostname.lower(),
                    created_by=user_id,
                    created_at=now,
                    **{**changes, "labels": labels or []},
                )
                .returning(*AGENT_COLUMNS)
            )
            return Agent(*created.one()), token, True
    except IntegrityError:
        if not await _check_replace(connection, hostname, replacer):
            raise Conflict(
                f"Agent {hostname} was registered meanwhile; try again",
                code="hostname_taken",
            ) from None
        return await _update_by_hostname(connection, hostname, changes), token, False


async def _check_replace(connection, hostname: str, replacer: Replacer) -> bool:
    """Whether the hostname is known; refuse if this caller may not replace it.

    The row stays locked to the end of the transaction, so no one changes
    who owns it between this check and the update.
    """
    statement = (
        select(agents.c.created_by)
        .where(agents.c.hostname_key == hostname.lower())
        .with_for_update()
    )
    row = (await connection.execute(statement)).one_or_none()
    if row is None:
        return False

    owner = row.created_by
    allowed = not replacer.by_enrollment and (
        replacer.is_admin or owner == replacer.user_id
    )
    if not allowed:
        raise Conflict(
            f"Agent {hostname} is registered already, and not by you",
            code="hostname_taken",
        )
    return True


async def _update_by_hostname(
    connection: AsyncConnection, hostname: str, changes: dict
) -> Agent:
    updated = await connection.execute(
        update(agents)
        .where(agents.c.hostname_key == hostname.lower())
        .values(hostname=hostname, **changes)
        .returning(*AGENT_COLUMNS)
    )
    return Agent(*updated.one())


async def list_agents(
    connection: AsyncConnection, label: str | None = None
) -> list[Agent]:
    rows = await connection.execute(select(*AGENT_COLUMNS).order_by(agents.c.id))
    found = [Agent(*row) for row in rows]
    if label is None:
        return found

    return [agent for agent in found if label in agent.labels]


async def get_agent(connection: AsyncConnection, agent_id: int) -> Agent | None:
    statement = select(*AGENT_COLUMNS).where(agents.c.id == agent_id)
    row = (await connection.execute(statement)).one_or_none()
    return None if row is None else Agent(*row)


async def find_agent_id_by_hash(
    connection: AsyncConnection, token_hash: str
) -> int | None:
    statement = select(agents.c.id).where(agents.c.token_hash == token_hash)
    return await connection.scalar(statement)


async def record_seen(connection: AsyncConnection, seen: dict[int, datetime]) -> None:
    """Write many agents' last-seen times in one statement."""
    if not seen:
        return

    statement = (
        update(agents)
        .where(agents.c.id == bindparam("agent_id"))
        .values(last_seen_at=bindparam("seen_at"))
    )
    rows = [{"agent_id": agent_id, "seen_at": at} for agent_id, at in seen.items()]
    await connection.execute(statement, rows)


async def online_agents(
    connection: AsyncConnection, seen_since: datetime
) -> list[tuple[int, list[str]]]:
    statement = select(agents.c.id, agents.c.labels).where(
        agents.c.last_seen_at >= seen_since
    )
    return [(row.id, row.labels) for row in await connection.execute(statement)]


async def set_labels(
    connection: AsyncConnection, agent_id: int, labels: list[str]
) -> Agent | None:
    statement = (
        update(agents)
        .where(agents.c.id == agent_id)
        .values(labels=labels, updated_at=datetime.now(UTC))
        .returning(*AGENT_COLUMNS)
    )
    row = (await connection.execute(statement)).one_or_none()
    return None if row is None else Agent(*row)


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()
