import asyncio
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import bindparam, inspect, text

from relay.db.engine import create_engine
from relay.db.tables import metadata
from relay.db.types import UTCDateTime
from relay_migrator.revisions import head_revision, upgrade_to, upgrade_to_head

MIGRATE = str(Path(sys.executable).with_name("relay-migrate"))


async def _inspect(url: str, function):
    engine = create_engine(url)
    try:
        async with engine.connect() as connection:
            return await connection.run_sync(function)
    finally:
        await engine.dispose()


def _schema(connection) -> dict:
    inspector = inspect(connection)
    return {
        name: (
            [column["name"] for column in inspector.get_columns(name)],
            sorted(index["name"] for index in inspector.get_indexes(name)),
            sorted(
                str(unique["column_names"])
                for unique in inspector.get_unique_constraints(name)
            ),
        )
        for name in sorted(inspector.get_table_names())
    }


def _revision(connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


def _differences(connection) -> list:
    return compare_metadata(MigrationContext.configure(connection), metadata)


def test_an_empty_database_is_brought_to_head(empty_database_url):
    upgrade_to_head(empty_database_url)

    assert asyncio.run(_inspect(empty_database_url, _revision)) == head_revision()


def test_a_second_run_changes_nothing(empty_database_url):
    upgrade_to_head(empty_database_url)
    before = asyncio.run(_inspect(empty_database_url, _schema))

    upgrade_to_head(empty_database_url)

    assert asyncio.run(_inspect(empty_database_url, _schema)) == before


def test_the_migrated_schema_matches_the_tables_the_code_queries(empty_database_url):
    upgrade_to_head(empty_database_url)

    assert asyncio.run(_inspect(empty_database_url, _differences)) == []


def test_the_migrator_process_exits_zero_and_says_the_revision(tmp_path):
    result = subprocess.run(
        [MIGRATE],
        cwd=tmp_path,
        env={"DATA_DIR": str(tmp_path)},
        capture_output=True,
        text=True,
    )

    assert result.returncode == 0
    assert f"database at revision {head_revision()}" in result.stderr
    assert (tmp_path / "relay.db").exists()


def test_an_unreachable_database_fails_with_one_line(tmp_path):
    env = {"DATABASE_URL": "postgresql://relay@127.0.0.1:9/relay"}

    result = subprocess.run(
        [MIGRATE], cwd=tmp_path, env=env, capture_output=True, text=True
    )

    assert result.returncode == 1
    assert result.stderr.splitlines()[-1] == (
        "relay-migrate: cannot migrate the database: "
        "[Errno 111] Connect call failed ('127.0.0.1', 9)"
    )


def test_an_invalid_database_url_fails_with_one_line(tmp_path):
    env = {"DATABASE_URL": "mysql://x@y/z"}

    result = subprocess.run(
        [MIGRATE], cwd=tmp_path, env=env, capture_output=True, text=True
    )

    assert result.returncode == 1
    assert (
        result.stderr
        == "relay-migrate: DATABASE_URL must use sqlite or postgresql, not 'mysql'\n"
    )


# Bound through the column type, as the relay binds times: Python 3.12
# deprecates sqlite3's own datetime adapter.
AT = bindparam("at", type_=UTCDateTime)


async def _seed_first_revision(url: str) -> None:
    engine = create_engine(url)
    try:
        async with engine.begin() as connection:
            await connection.execute(
                text(
                    "INSERT INTO users (username, username_key, password_hash, "
                    "is_admin, created_at) VALUES ('Ada', 'ada', 'x', true, :at)"
                ).bindparams(AT),
                {"at": datetime(2026, 1, 1, tzinfo=UTC)},
            )
            await connection.execute(
                text(
                    "INSERT INTO agents (hostname, hostname_key, ip, labels, "
                    "created_at, updated_at) VALUES ('web-1', 'web-1', '10.0.0.1', "
                    "'[\"linux\"]', :at, :at)"
                ).bindparams(AT),
                {"at": datetime(2026, 1, 1, tzinfo=UTC)},
            )
    finally:
        await engine.dispose()


async def _read_seed(url: str):
    engine = create_engine(url)
    try:
        async with engine.connect() as connection:
            users = (await connection.execute(text("SELECT username FROM users"))).all()
            agents = (
                await connection.execute(text("SELECT hostname, ip FROM agents"))
            ).all()
            jobs = (
                await connection.execute(text("SELECT count(*) FROM jobs"))
            ).scalar()
            return users, agents, jobs
    finally:
        await engine.dispose()


def test_an_older_database_with_data_is_upgraded_keeping_it(empty_database_url):
    upgrade_to(empty_database_url, "0001")
    asyncio.run(_seed_first_revision(empty_database_url))

    upgrade_to_head(empty_database_url)

    users, agents, jobs = asyncio.run(_read_seed(empty_database_url))
    assert [tuple(row) for row in users] == [("Ada",)]
    assert [tuple(row) for row in agents] == [("web-1", "10.0.0.1")]
    assert jobs == 0
    assert asyncio.run(_inspect(empty_database_url, _revision)) == head_revision()
