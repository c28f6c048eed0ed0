import asyncio
import time

import jwt
from api_support import PASSWORD, TEST_SECRET_KEY, make_settings, register

from relay.app import create_app

INVALID = {"error": "invalid_credentials", "message": "Invalid username or password"}


async def test_login_returns_the_seed_servers_body_with_a_token(client):
    await client.post("/users", json={"username": "alice", "password": PASSWORD})

    response = await client.post(
        "/login", json={"username": "alice", "password": PASSWORD}
    )

    assert response.status == 200
    body = await response.json()
    assert set(body) == {"message", "token"}
    assert body["message"] == "Login successful"


async def test_token_is_hs256_with_subject_issued_and_expiry(client):
    person = await register(client, "alice")

    claims = jwt.decode(person.token, TEST_SECRET_KEY, algorithms=["HS256"])
    header = jwt.get_unverified_header(person.token)

    assert header["alg"] == "HS256"
    assert claims["sub"] == str(person.id)
    assert claims["exp"] - claims["iat"] == 12 * 3600


async def test_login_is_case_insensitive_on_the_username(client):
    await client.post("/users", json={"username": "Alice", "password": PASSWORD})

    response = await client.post(
        "/login", json={"username": "ALICE", "password": PASSWORD}
    )

    assert response.status == 200


async def test_wrong_password_and_unknown_user_get_the_same_answer(client):
    await client.post("/users", json={"username": "alice", "password": PASSWORD})

    wrong = await client.post(
        "/login", json={"username": "alice", "password": "nope-nope"}
    )
    unknown = await client.post("/login", json={"username": "mallory", "password": "x"})

    assert (wrong.status, await wrong.json()) == (401, INVALID)
    assert (unknown.status, await unknown.json()) == (401, INVALID)


async def test_unknown_user_still_pays_for_a_bcrypt_check(client, monkeypatch):
    # Equal work, not equal wall time, is what a test can assert without timing.
    import relay.auth.passwords as passwords

    checks = []
    real_checkpw = passwords.bcrypt.checkpw
    monkeypatch.setattr(
        passwords.bcrypt,
        "checkpw",
        lambda *args: checks.append(1) or real_checkpw(*args),
    )

    await client.post("/login", json={"username": "mallory", "password": "whatever1"})

    assert checks == [1]


async def test_login_with_missing_fields_is_a_bad_request(client):
    response = await client.post("/login", json={"username": "alice"})

    assert response.status == 400
    assert await response.json() == {
        "error": "missing_field",
        "message": "password is required",
        "field": "password",
    }


async def test_token_lifetime_follows_the_setting(
    aiohttp_client, database_url, tmp_path
):
    settings = make_settings(database_url, tmp_path, TOKEN_TTL="90m")
    client = await aiohttp_client(create_app(settings))
    person = await register(client, "alice")

    claims = jwt.decode(person.token, TEST_SECRET_KEY, algorithms=["HS256"])

    assert claims["exp"] - claims["iat"] == 5400


async def test_other_requests_are_answered_while_logins_hash(
    aiohttp_client, database_url, tmp_path
):
    # Work factor 12 makes each check take a noticeable fraction of a second.
    settings = make_settings(database_url, tmp_path, BCRYPT_ROUNDS="12")
    client = await aiohttp_client(create_app(settings))
    await client.post("/users", json={"username": "alice", "password": PASSWORD})
    body = {"username": "alice", "password": PASSWORD}

    logins = [asyncio.create_task(client.post("/login", json=body)) for _ in range(6)]
    await asyncio.sleep(0.05)
    started = time.monotonic()
    health = await client.get("/healthz")
    health_seconds = time.monotonic() - started
    answers = await asyncio.gather(*logins)
    logins_seconds = time.monotonic() - started

    assert health.status == 200
    assert [answer.status for answer in answers] == [200] * 6
    # The loop was free: the health check came back long before the hashing ended.
    assert health_seconds < logins_seconds / 4
