"""Databases for every test suite in the tree.

Each test that asks for `database_url` runs once on SQLite and once on
PostgreSQL. PostgreSQL comes from RELAY_TEST_POSTGRES_URL (a server the tests
may create databases on), else from a throwaway server when pg_ctl is found;
without either those runs skip, except under CI=true, where they fail.
"""

import asyncio
import os
import shutil
import uuid
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from relay.db.engine import create_engine
from relay.db.tables import metadata
from relay_migrator.revisions import upgrade_to_head

DATABASES = os.environ.get("RELAY_TEST_DATABASES", "sqlite,postgresql").split(",")


def sqlite_url(path: Path) -> str:
    return f"sqlite+aiosqlite:///{path}"


def _run(coroutine):
    return asyncio.run(coroutine)


async def _execute_autocommit(url: str, statement: str) -> None:
    engine = create_engine(url)
    try:
        async with engine.connect() as connection:
            connection = await connection.execution_options(
                isolation_level="AUTOCOMMIT"
            )
            await connection.execute(text(statement))
    finally:
        await engine.dispose()


@pytest.fixture(scope="session")
def postgres_server_url(request) -> str:
    """A URL of a PostgreSQL server on which tests may create databases."""
    url = os.environ.get("RELAY_TEST_POSTGRES_URL")
    if url:
        return str(make_url(url).set(drivername="postgresql+asyncpg"))

    # initdb refuses to run as root, so root needs a server given by URL.
    if (shutil.which("pg_ctl") or _debian_pg_ctl()) and os.geteuid() != 0:
        return request.getfixturevalue("throwaway_postgres_url")

    if os.geteuid() == 0:
        reason = (
            "no PostgreSQL: set RELAY_TEST_POSTGRES_URL (a throwaway server "
            "cannot be made as root: initdb refuses to run as root)"
        )
    else:
        reason = "no PostgreSQL: set RELAY_TEST_POSTGRES_URL, or install pg_ctl"
    if os.environ.get("CI") == "true":
        pytest.fail(reason)
    pytest.skip(reason)


def _debian_pg_ctl() -> str | None:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))
    return str(found[-1]) if found else None


@pytest.fixture(scope="session")
def throwaway_postgres_url(tmp_path_factory) -> str:
    pytest.importorskip("pytest_postgresql")
    from pytest_postgresql.executor import PostgreSQLExecutor

    pg_ctl = shutil.which("pg_ctl") or _debian_pg_ctl()
    executor = PostgreSQLExecutor(
        executable=pg_ctl,
        host="127.0.0.1",
        port=_free_port(),
        datadir=str(tmp_path_factory.mktemp("pgdata")),
        unixsocketdir=str(tmp_path_factory.mktemp("pgsock")),
        logfile=str(tmp_path_factory.mktemp("pglog") / "postgres.log"),
        startparams="-w",
        dbname="postgres",
        user="postgres",
        password="",
    )
    executor.start()
    yield f"postgresql+asyncpg://postgres@127.0.0.1:{executor.port}/postgres"
    executor.stop()


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def new_postgres_database(server_url: str) -> str:
    """Create an empty database on the server; return its URL."""
    name = f"relay_test_{uuid.uuid4().hex[:12]}"
    _run(_execute_autocommit(server_url, f'CREATE DATABASE "{name}"'))
    return str(make_url(server_url).set(database=name))


def drop_postgres_database(server_url: str, database_url: str) -> None:
    name = make_url(database_url).database
    _run(
        _execute_autocommit(
            server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'
        )
    )


@pytest.fixture(scope="session")
def migrated_postgres_url(postgres_server_url) -> str:
    url = new_postgres_database(postgres_server_url)
    upgrade_to_head(url)
    yield url
    drop_postgres_database(postgres_server_url, url)


@pytest.fixture(scope="session")
def migrated_sqlite_template(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("template") / "relay.db"
    upgrade_to_head(sqlite_url(path))
    return path


@pytest.fixture(params=DATABASES)
def database_kind(request) -> str:
    return request.param


@pytest.fixture
def database_url(request, database_kind, tmp_path) -> str:
    """A migrated database holding no rows, of each kind in turn."""
    if database_kind == "sqlite":
        template = request.getfixturevalue("migrated_sqlite_template")
        path = tmp_path / "relay.db"
        shutil.copyfile(template, path)
        return sqlite_url(path)

    url = request.getfixturevalue("migrated_postgres_url")
    _run(_empty_tables(url))
    return url


@pytest.fixture
def empty_database_url(request, database_kind, tmp_path) -> str:
    """A database with no schema at all, of each kind in turn."""
    if database_kind == "sqlite":
        yield sqlite_url(tmp_path / "empty.db")
        return

    server = request.getfixturevalue("postgres_server_url")
    url = new_postgres_database(server)
    yield url
    drop_postgres_database(server, url)


async def _empty_tables(url: str) -> None:
    names = ", ".join(f'"{table.name}"' for table in metadata.sorted_tables)
    engine = create_engine(url)
    try:
        async with engine.begin() as connection:
            await connection.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
    finally:
        await engine.dispose()


@pytest.fixture
def fresh_postgres_url(postgres_server_url) -> str:
    """An empty PostgreSQL database of its own, dropped afterwards."""
    url = new_postgres_database(postgres_server_url)
    yield url
    drop_postgres_database(postgres_server_url, url)
