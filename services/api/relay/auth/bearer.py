"""The bearer token of a request, whoever it claims to be."""

from aiohttp import web

from relay.errors import Unauthorized

BEARER = "bearer "


def bearer_token(request: web.Request) -> str:
    header = request.headers.get("Authorization", "")
    if header[: len(BEARER)].lower() != BEARER:
        raise Unauthorized("A bearer token is required")

    token = header[len(BEARER) :].strip()
    if not token:
        raise Unauthorized("A bearer token is required")
    # Every token Relay issues is ASCII; anything else cannot be one of them.
    if not token.isascii():
        raise Unauthorized("The token is not valid")
    return token
