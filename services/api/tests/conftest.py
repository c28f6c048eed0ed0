"""The real app on a real database, and a small cast to call it with."""

import pytest
from api_support import Person, make_settings, register

from relay.app import create_app


@pytest.fixture
def settings(database_url, tmp_path):
    return make_settings(database_url, tmp_path)


@pytest.fixture
async def client(aiohttp_client, settings):
    return await aiohttp_client(create_app(settings))


@pytest.fixture
async def admin(client) -> Person:
    """The first user to register, who is therefore the admin."""
    return await register(client, "ada")


@pytest.fixture
async def user(client, admin) -> Person:
    return await register(client, "bob")
