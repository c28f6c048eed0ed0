import asyncio

import pytest
from api_support import PASSWORD


async def test_registration_returns_the_user_without_its_hash(client):
    response = await client.post(
        "/users", json={"username": "alice", "password": PASSWORD}
    )

    assert response.status == 201
    body = await response.json()
    assert set(body) == {"id", "username", "created_at"}
    assert body["id"] == 1
    assert body["username"] == "alice"


async def test_duplicate_username_is_refused(client):
    await client.post("/users", json={"username": "alice", "password": PASSWORD})

    response = await client.post(
        "/users", json={"username": "alice", "password": PASSWORD}
    )

    assert response.status == 409
    assert await response.json() == {
        "error": "username_taken",
        "message": "Username is already taken",
    }


async def test_usernames_differing_only_in_case_are_one_user(client):
    await client.post("/users", json={"username": "Alice", "password": PASSWORD})

    response = await client.post(
        "/users", json={"username": "alice", "password": PASSWORD}
    )

    assert response.status == 409


async def test_racing_registrations_of_one_name_make_one_user(client):
    body = {"username": "racer", "password": PASSWORD}

    responses = await asyncio.gather(
        *(client.post("/users", json=body) for _ in range(5))
    )

    assert sorted(response.status for response in responses) == [
        201,
        409,
        409,
        409,
        409,
    ]


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        ({"password": PASSWORD}, "username", "username is required"),
        ({"username": "alice"}, "password", "password is required"),
        (
            {"username": "", "password": PASSWORD},
            "username",
            "username must not be empty",
        ),
        (
            {"username": "alice", "password": ""},
            "password",
            "password must not be empty",
        ),
        (
            {"username": 7, "password": PASSWORD},
            "username",
            "username must be a string",
        ),
        (
            {"username": "alice", "password": 12345678},
            "password",
            "password must be a string",
        ),
        ({"username": None, "password": PASSWORD}, "username", "username is required"),
    ],
)
async def test_missing_empty_or_wrong_typed_fields_are_named(
    client, body, field, message
):
    response = await client.post("/users", json=body)

    assert response.status == 400
    answer = await response.json()
    assert answer["field"] == field
    assert answer["message"] == message


USERNAME_RULE = "username must be 3 to 64 letters, digits, '.', '_' or '-'"


@pytest.mark.parametrize(
    "username",
    ["ab", "a" * 65, "has space", "tab\tname", "new\nline", "émile", "a/b"],
)
async def test_usernames_outside_the_allowed_set_are_refused(client, username):
    response = await client.post(
        "/users", json={"username": username, "password": PASSWORD}
    )

    assert response.status == 400
    assert await response.json() == {
        "error": "invalid_field",
        "message": USERNAME_RULE,
        "field": "username",
    }


@pytest.mark.parametrize(
    "username", ["abc", "a" * 64, "first.last", "under_score", "dash-1"]
)
async def test_usernames_inside_the_allowed_set_are_accepted(client, username):
    response = await client.post(
        "/users", json={"username": username, "password": PASSWORD}
    )

    assert response.status == 201


async def test_short_password_is_refused(client):
    response = await client.post(
        "/users", json={"username": "alice", "password": "seven77"}
    )

    assert response.status == 400
    assert (await response.json())[
        "message"
    ] == "password must be at least 8 characters"


async def test_password_over_72_bytes_is_refused_not_truncated(client):
    # 37 two-byte characters: 37 characters but 74 bytes.
    password = "é" * 37

    response = await client.post(
        "/users", json={"username": "alice", "password": password}
    )

    assert response.status == 400
    assert (await response.json())[
        "message"
    ] == "password must be at most 72 bytes in UTF-8"


async def test_password_of_exactly_72_bytes_is_accepted(client):
    response = await client.post(
        "/users", json={"username": "alice", "password": "x" * 72}
    )

    assert response.status == 201


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"[1, 2]", "Body must be a JSON object"),
        (b'"text"', "Body must be a JSON object"),
        (b"", "Body must be a JSON object"),
        (b"{not json", "Body is not valid JSON"),
        (b'{"username": "\xff\xfe", "password": "x"}', "Body is not valid UTF-8"),
    ],
)
async def test_bodies_that_are_not_a_json_object_are_refused(client, raw, message):
    response = await client.post(
        "/users", data=raw, headers={"Content-Type": "application/json"}
    )

    assert response.status == 400
    assert await response.json() == {"error": "invalid_body", "message": message}


async def test_lone_surrogate_in_a_field_is_refused(client):
    raw = b'{"username": "alice", "password": "abcdefgh\\ud800"}'

    response = await client.post("/users", data=raw)

    assert response.status == 400
    assert await response.json() == {
        "error": "invalid_body",
        "message": "Body holds text that is not valid Unicode",
    }


async def test_a_refused_registration_stores_nothing(client):
    await client.post("/users", json={"username": "alice", "password": "short"})

    response = await client.post(
        "/users", json={"username": "alice", "password": PASSWORD}
    )

    assert response.status == 201
    assert (await response.json())["id"] == 1


async def test_a_nul_in_a_name_is_refused_before_it_reaches_the_database(client):
    body = {"username": "nul\x00", "password": PASSWORD}

    response = await client.post("/users", json=body)

    assert response.status == 400
    assert await response.json() == {
        "error": "invalid_field",
        "message": "username must not contain NUL",
        "field": "username",
    }


async def test_a_lone_surrogate_spelled_in_capitals_is_refused_too(client):
    raw = b'{"username": "alice", "password": "abcdefgh\\uD800"}'

    response = await client.post("/users", data=raw)

    assert response.status == 400
    assert (await response.json())["error"] == "invalid_body"
