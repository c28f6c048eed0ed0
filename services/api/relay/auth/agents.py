"""Agent tokens checked on every agent call, with a short cache."""

import time

from aiohttp import web

from relay.auth.bearer import bearer_token
from relay.auth.tokens import agent_token_hash, is_agent_token
from relay.db.engine import Database
from relay.errors import Unauthorized
from relay.store.agents import find_agent_id_by_hash

# A replaced token keeps working on other relays for at most this long.
CACHE_SECONDS = 30.0
MAX_CACHED = 10_000


class AgentAuthenticator:
    def __init__(self, database: Database) -> None:
        self.database = database
        self._cache: dict[str, tuple[int, float]] = {}

    async def agent_id(self, request: web.Request) -> int:
        token = bearer_token(request)
        if not is_agent_token(token):
            raise Unauthorized("An agent token is required", code="unknown_agent")

        token_hash = agent_token_hash(token)
        cached = self._cache.get(token_hash)
        if cached is not None and cached[1] > time.monotonic():
            return cached[0]

        async with self.database.read() as connection:
            agent_id = await find_agent_id_by_hash(connection, token_hash)
        if agent_id is None:
            raise Unauthorized("This agent token is not known", code="unknown_agent")

        if len(self._cache) >= MAX_CACHED:
            self._drop_expired()
        self._cache[token_hash] = (agent_id, time.monotonic() + CACHE_SECONDS)
        return agent_id

    def _drop_expired(self) -> None:
        # Replaced tokens leave entries behind; keep the cache the fleet's size.
        now = time.monotonic()
        expired = [key for key, (_, until) in self._cache.items() if until <= now]
        for key in expired:
            del self._cache[key]

    def forget(self, agent_id: int) -> None:
        """Drop cached tokens of an agent whose token was just replaced."""
        stale = [
            key for key, (cached_id, _) in self._cache.items() if cached_id == agent_id
        ]
        for key in stale:
            del self._cache[key]
