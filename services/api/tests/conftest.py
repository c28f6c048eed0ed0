"""The real app on a real database, and a small cast to call it with."""

from datetime import UTC, datetime

import pytest
from api_support import Person, make_settings, register

from relay.app import create_app
from relay.keys import SCHEDULER
from relay.schedule.clock import ManualClock

# A Monday morning in winter, half a minute before ten: far from any DST change.
START = datetime(2026, 1, 5, 9, 59, 30, tzinfo=UTC)


@pytest.fixture
def settings(database_url, tmp_path):
    return make_settings(database_url, tmp_path)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START)


@pytest.fixture
async def client(aiohttp_client, settings, clock):
    """The real app; its scheduler moves only when a test calls tick()."""
    return await aiohttp_client(create_app(settings, clock))


@pytest.fixture
def scheduler(client):
    return client.app[SCHEDULER]


@pytest.fixture
async def admin(client) -> Person:
    """The first user to register, who is therefore the admin."""
    return await register(client, "ada")


@pytest.fixture
async def user(client, admin) -> Person:
    return await register(client, "bob")
