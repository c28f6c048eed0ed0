"""The relay through a PostgreSQL restart: 503 meanwhile, then back by itself."""

import pytest
from api_support import TcpProxy, make_settings, register
from sqlalchemy.engine import make_url

from relay.app import create_app
from relay_migrator.revisions import upgrade_to_head_async

UNAVAILABLE = {
    "error": "database_unavailable",
    "message": "The database is unavailable",
}


@pytest.fixture
async def proxy(fresh_postgres_url):
    await upgrade_to_head_async(fresh_postgres_url)
    proxy = TcpProxy(make_url(fresh_postgres_url).port or 5432)
    await proxy.start()
    yield proxy
    await proxy.cut()


@pytest.fixture
async def client(aiohttp_client, proxy, fresh_postgres_url, tmp_path, clock):
    url = make_url(fresh_postgres_url).set(host="127.0.0.1", port=proxy.port)
    settings = make_settings(
        url.render_as_string(hide_password=False), tmp_path, DB_POOL_TIMEOUT="2"
    )
    return await aiohttp_client(create_app(settings, clock))


async def test_requests_get_503_while_the_database_is_away_and_recover(client, proxy):
    person = await register(client, "ada")
    assert (await client.get("/agents", headers=person.headers)).status == 200

    await proxy.cut()
    away = await client.get("/agents", headers=person.headers)
    not_ready = await client.get("/readyz")
    alive = await client.get("/healthz")
    await proxy.start()
    back = await client.get("/agents", headers=person.headers)

    assert (away.status, await away.json()) == (503, UNAVAILABLE)
    assert not_ready.status == 503
    assert alive.status == 200
    assert back.status == 200


async def test_writes_fail_cleanly_while_away_and_work_again(client, proxy):
    await proxy.cut()
    body = {"username": "ada", "password": "correct horse"}
    away = await client.post("/users", json=body)
    await proxy.start()
    back = await client.post("/users", json=body)

    assert (away.status, await away.json()) == (503, UNAVAILABLE)
    assert back.status == 201
