"""The relay's aiohttp application: state, middlewares, routes, lifetimes."""

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from aiohttp import web

from relay.auth.agents import AgentAuthenticator
from relay.auth.passwords import PasswordHasher
from relay.auth.tokens import UserTokens
from relay.db.engine import Database, create_engine
from relay.db.schema import current_revision, expected_revision
from relay.errors import json_errors
from relay.http import agent_protocol, agents, health, jobs, runs, schedules, users
from relay.keys import (
    AGENT_AUTH,
    CLOCK,
    DATABASE,
    DISPATCHER,
    METRICS,
    OUTPUT,
    PASSWORDS,
    SCHEDULER,
    SEEN,
    SETTINGS,
    USER_TOKENS,
)
from relay.metrics import Metrics
from relay.schedule.clock import Clock
from relay.schedule.dispatch import Dispatcher
from relay.schedule.leadership import AdvisoryLockLeader, SoleLeader
from relay.schedule.scheduler import Scheduler
from relay.settings import Settings
from relay.store.heartbeats import SeenBuffer
from relay.store.output import OutputWriter
from relay.ui.pages import setup_ui

log = logging.getLogger(__name__)

ROUTE_MODULES = (health, users, agents, jobs, runs, schedules, agent_protocol)


class SchemaNotReady(Exception):
    """The database is not at the revision this relay needs."""


def create_app(settings: Settings, clock: Clock | None = None) -> web.Application:
    app = web.Application(middlewares=[json_errors], client_max_size=2 * 1024**2)
    app[SETTINGS] = settings
    app[CLOCK] = clock or Clock()
    app[METRICS] = Metrics()
    app[USER_TOKENS] = UserTokens(settings.secret_key, settings.token_ttl_seconds)

    # Order matters: each context may use what the ones before it made, and
    # they are torn down in reverse.
    app.cleanup_ctx.append(_database)
    app.cleanup_ctx.append(_password_hasher)
    app.cleanup_ctx.append(_scheduling)

    for module in ROUTE_MODULES:
        app.router.add_routes(module.routes)
    setup_ui(app)
    app.on_shutdown.append(_answer_waiting_claims)
    return app


async def _answer_waiting_claims(app: web.Application) -> None:
    app[DISPATCHER].close()


async def _database(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    engine = create_engine(
        settings.database_url, settings.db_pool_size, settings.db_pool_timeout_seconds
    )
    database = Database(engine)
    try:
        await _check_schema(database)
    except BaseException:
        await database.dispose()
        raise

    app[DATABASE] = database
    yield
    await database.dispose()


async def _check_schema(database: Database) -> None:
    # Serving a half-made schema would fail request by request; refuse at once.
    revision = await current_revision(database)
    head = expected_revision()
    if revision != head:
        raise SchemaNotReady(
            f"the database is at revision {revision or 'none'}, not {head}: "
            "run relay-migrate first"
        )


async def _password_hasher(app: web.Application) -> AsyncIterator[None]:
    hasher = PasswordHasher(app[SETTINGS].bcrypt_rounds)
    app[PASSWORDS] = hasher
    yield
    hasher.close()


async def _scheduling(app: web.Application) -> AsyncIterator[None]:
    database, clock, settings = app[DATABASE], app[CLOCK], app[SETTINGS]
    app[AGENT_AUTH] = AgentAuthenticator(database)
    app[SEEN] = SeenBuffer(database)
    app[OUTPUT] = OutputWriter(database, settings.output_limit_bytes)
    app[DISPATCHER] = Dispatcher(database, clock)
    leadership = (
        AdvisoryLockLeader(database.engine) if database.is_postgresql else SoleLeader()
    )
    app[SCHEDULER] = Scheduler(
        database,
        settings,
        clock,
        app[DISPATCHER],
        app[SEEN],
        leadership,
        app[METRICS],
    )

    tasks = [
        asyncio.create_task(app[SEEN].flush_forever(), name="heartbeats"),
        asyncio.create_task(app[DISPATCHER].look_forever(), name="dispatch"),
        asyncio.create_task(app[OUTPUT].write_forever(), name="output"),
    ]
    if settings.scheduler_enabled:
        tasks.append(
            asyncio.create_task(app[SCHEDULER].run_forever(), name="scheduler")
        )
    yield

    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task
    await leadership.release()
    await _last_flush(app[SEEN])


async def _last_flush(seen: SeenBuffer) -> None:
    try:
        await seen.flush()
    except Exception as exc:
        log.warning("last heartbeats not written: %s", exc)
