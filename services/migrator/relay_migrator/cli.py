"""relay-migrate: bring the database to head, then exit."""

import logging
import sys

from sqlalchemy.exc import SQLAlchemyError

from relay.settings import (
    SettingsError,
    first_line,
    load_database_url,
    load_env_file,
)
from relay_migrator.revisions import head_revision, upgrade_to_head

log = logging.getLogger("relay_migrator")


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s %(message)s")
    load_env_file()

    try:
        database_url = load_database_url()
    except SettingsError as exc:
        sys.exit(f"relay-migrate: {exc}")

    try:
        upgrade_to_head(database_url)
    except (SQLAlchemyError, OSError) as exc:
        sys.exit(f"relay-migrate: cannot migrate the database: {first_line(exc)}")

    log.info("database at revision %s", head_revision())


if __name__ == "__main__":
    main()
