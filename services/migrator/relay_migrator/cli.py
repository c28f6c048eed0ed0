"""relay-migrate: bring the database to head, then exit."""

import logging
import sys

from sqlalchemy.exc import SQLAlchemyError

from relay.settings import SettingsError, load_database_url
from relay_migrator.revisions import head_revision, upgrade_to_head

log = logging.getLogger("relay_migrator")


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s %(message)s")
    _load_dotenv()

    try:
        database_url = load_database_url()
    except SettingsError as exc:
        sys.exit(f"relay-migrate: {exc}")

    try:
        upgrade_to_head(database_url)
    except (SQLAlchemyError, OSError) as exc:
        sys.exit(f"relay-migrate: cannot migrate the database: {_reason(exc)}")

    log.info("database at revision %s", head_revision())


def _reason(exc: BaseException) -> str:
    original = getattr(exc, "orig", None) or exc
    return str(original).strip().splitlines()[0] or type(original).__name__


def _load_dotenv() -> None:
    from dotenv import load_dotenv

    load_dotenv(".env", override=False)


if __name__ == "__main__":
    main()
