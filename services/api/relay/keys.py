"""Every piece of application state, declared in one place."""

from aiohttp import web

from relay.auth.passwords import PasswordHasher
from relay.auth.tokens import UserTokens
from relay.db.engine import Database
from relay.settings import Settings

SETTINGS = web.AppKey("settings", Settings)
DATABASE = web.AppKey("database", Database)
PASSWORDS = web.AppKey("passwords", PasswordHasher)
USER_TOKENS = web.AppKey("user_tokens", UserTokens)
