"""relay: serve the relay until stopped."""

import fcntl
import logging
import sys
from datetime import UTC, datetime
from pathlib import Path

from aiohttp import web
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from relay.app import SchemaNotReady, create_app
from relay.keys import SETTINGS
from relay.schedule.clock import Clock, ScaledClock
from relay.settings import (
    Settings,
    SettingsError,
    first_line,
    load_env_file,
    load_settings,
)

log = logging.getLogger("relay")

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"


def main() -> None:
    load_env_file()
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)

    try:
        settings = load_settings()
    except SettingsError as exc:
        sys.exit(f"relay: {exc}")
    logging.getLogger().setLevel(settings.log_level)
    logging.getLogger("alembic").setLevel(logging.WARNING)

    lock = _hold_sqlite_lock(settings)
    try:
        _serve(settings)
        log.info("relay stopped")
    except SchemaNotReady as exc:
        sys.exit(f"relay: {exc}")
    except (SQLAlchemyError, OSError) as exc:
        sys.exit(f"relay: cannot start: {first_line(exc)}")
    finally:
        if lock is not None:
            lock.close()


def _serve(settings: Settings) -> None:
    app = create_app(settings, _clock(settings))
    app.on_startup.append(_announce)
    web.run_app(
        app,
        host=settings.host,
        port=settings.port,
        access_log=logging.getLogger("relay.access") if settings.access_log else None,
        print=None,
        shutdown_timeout=10,
    )


async def _announce(app: web.Application) -> None:
    # Runs after the database check, so it is never said of a relay that refuses.
    settings = app[SETTINGS]
    log.info("relay listening on %s:%s", settings.host, settings.port)


def _clock(settings: Settings) -> Clock:
    if settings.clock_rate == 1.0:
        return Clock()

    epoch = settings.clock_epoch or datetime.now(UTC)
    log.warning("clock runs %s times faster than real time", settings.clock_rate)
    return ScaledClock(epoch, settings.clock_rate)


def _hold_sqlite_lock(settings: Settings):
    """One relay per SQLite file: a second would fire every job twice."""
    if not settings.is_sqlite:
        return None

    database = make_url(settings.database_url).database
    if not database or database == ":memory:":
        return None

    path = Path(database + ".relay-lock")
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = path.open("w")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        sys.exit(
            f"relay: another relay is already serving {database}; SQLite allows one"
        )
    return lock


if __name__ == "__main__":
    main()
