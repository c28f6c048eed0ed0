"""The relay's aiohttp application: state, middlewares, routes, lifetimes."""

import logging
from collections.abc import AsyncIterator

from aiohttp import web

from relay.auth.passwords import PasswordHasher
from relay.auth.tokens import UserTokens
from relay.db.engine import Database, create_engine
from relay.db.schema import current_revision, expected_revision
from relay.errors import json_errors
from relay.http import agents, health, users
from relay.keys import DATABASE, PASSWORDS, SETTINGS, USER_TOKENS
from relay.settings import Settings

log = logging.getLogger(__name__)


class SchemaNotReady(Exception):
    """The database is not at the revision this relay needs."""


def create_app(settings: Settings) -> web.Application:
    app = web.Application(middlewares=[json_errors], client_max_size=2 * 1024**2)
    app[SETTINGS] = settings
    app[USER_TOKENS] = UserTokens(settings.secret_key, settings.token_ttl_seconds)

    app.cleanup_ctx.append(_database)
    app.cleanup_ctx.append(_password_hasher)

    for module in (health, users, agents):
        app.router.add_routes(module.routes)
    return app


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
