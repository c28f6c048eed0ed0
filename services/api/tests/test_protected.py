import base64
import json
import time
import warnings

import jwt
import pytest
from api_support import TEST_SECRET_KEY, register


async def test_valid_token_is_greeted_by_name(client):
    person = await register(client, "testuser")

    response = await client.get("/protected", headers=person.headers)

    assert response.status == 200
    assert await response.json() == {"message": "Hello testuser, you are authorized."}


def _token(claims, key=TEST_SECRET_KEY, algorithm="HS256"):
    # PyJWT warns about a key shorter than HS512's digest; that is the point here.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return jwt.encode(claims, key, algorithm=algorithm)


def _claims(**changes):
    now = int(time.time())
    return {"sub": "1", "name": "alice", "iat": now, "exp": now + 60, **changes}


def _unsigned(claims):
    def part(value):
        return (
            base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()
        )

    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(claims)}."


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        ({}, "A bearer token is required"),
        ({"Authorization": "Bearer"}, "A bearer token is required"),
        ({"Authorization": "Basic YWxpY2U6eA=="}, "A bearer token is required"),
        ({"Authorization": "Bearer not.a.token"}, "The token is not valid"),
        ({"Authorization": "Bearer garbage"}, "The token is not valid"),
    ],
)
async def test_missing_or_malformed_tokens_are_refused(client, headers, message):
    response = await client.get("/protected", headers=headers)

    assert response.status == 401
    assert await response.json() == {"error": "unauthorized", "message": message}
    assert response.headers["WWW-Authenticate"] == "Bearer"


# Built when the test runs, not when it is collected: a token made at
# collection could expire before a long suite reaches it.
FORGED = {
    "expired": (
        lambda: _token(_claims(exp=int(time.time()) - 10)),
        "The token has expired",
    ),
    "wrong-key": (
        lambda: _token(_claims(), key="another-key-of-enough-length-0123456789"),
        "The token is not valid",
    ),
    "alg-none": (lambda: _unsigned(_claims()), "The token is not valid"),
    "hs512": (lambda: _token(_claims(), algorithm="HS512"), "The token is not valid"),
    "no-expiry": (
        lambda: _token({"sub": "1", "name": "alice"}),
        "The token is not valid",
    ),
    "bad-subject": (lambda: _token(_claims(sub="alice")), "The token is not valid"),
}


@pytest.mark.parametrize("case", sorted(FORGED))
async def test_expired_forged_and_unsigned_tokens_are_refused(client, case):
    make_token, message = FORGED[case]
    token = make_token()

    response = await client.get(
        "/protected", headers={"Authorization": f"Bearer {token}"}
    )

    assert response.status == 401
    assert await response.json() == {"error": "unauthorized", "message": message}
