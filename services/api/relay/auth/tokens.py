"""User tokens (JWT, HS256) and agent tokens (random, stored hashed)."""

import hashlib
import secrets
import time
from dataclasses import dataclass

import jwt

ALGORITHM = "HS256"
AGENT_TOKEN_PREFIX = "agt_"


class TokenError(Exception):
    """A token that does not prove who sent it; the message says why."""


@dataclass(frozen=True)
class UserIdentity:
    user_id: int
    username: str
    is_admin: bool = False


class UserTokens:
    def __init__(self, secret_key: str, ttl_seconds: int) -> None:
        self._key = secret_key
        self.ttl_seconds = ttl_seconds

    def issue(self, user_id: int, username: str, is_admin: bool = False) -> str:
        now = int(time.time())
        claims = {
            "sub": str(user_id),
            "name": username,
            "admin": is_admin,
            "iat": now,
            "exp": now + self.ttl_seconds,
        }
        return jwt.encode(claims, self._key, algorithm=ALGORITHM)

    def verify(self, token: str) -> UserIdentity:
        # Only HS256 is accepted: naming the algorithm here is what stops
        # alg=none and algorithm-confusion tokens.
        try:
            claims = jwt.decode(
                token,
                self._key,
                algorithms=[ALGORITHM],
                options={"require": ["sub", "iat", "exp"]},
            )
        except jwt.ExpiredSignatureError:
            raise TokenError("token has expired") from None
        except jwt.PyJWTError:
            raise TokenError("token is not valid") from None

        return _identity(claims)


def _identity(claims: dict) -> UserIdentity:
    subject, name = claims.get("sub"), claims.get("name")
    valid = isinstance(subject, str) and subject.isascii() and subject.isdigit()
    if not valid or len(subject) > 10 or int(subject) > 2**31 - 1:
        raise TokenError("token is not valid")
    if not isinstance(name, str):
        raise TokenError("token is not valid")

    return UserIdentity(int(subject), name, claims.get("admin") is True)


def new_agent_token() -> str:
    return AGENT_TOKEN_PREFIX + secrets.token_urlsafe(32)


def agent_token_hash(token: str) -> str:
    # A 256-bit random token needs no slow hash: SHA-256 cannot be reversed
    # and keeps the check on every agent call cheap.
    return hashlib.sha256(token.encode()).hexdigest()


def is_agent_token(token: str) -> bool:
    return token.startswith(AGENT_TOKEN_PREFIX)
