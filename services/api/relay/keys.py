"""Every piece of application state, declared in one place."""

from aiohttp import web

from relay.auth.agents import AgentAuthenticator
from relay.auth.passwords import PasswordHasher
from relay.auth.tokens import UserTokens
from relay.db.engine import Database
from relay.metrics import Metrics
from relay.schedule.clock import Clock
from relay.schedule.dispatch import Dispatcher
from relay.schedule.scheduler import Scheduler
from relay.settings import Settings
from relay.store.heartbeats import SeenBuffer
from relay.store.output import OutputWriter

SETTINGS = web.AppKey("settings", Settings)
CLOCK = web.AppKey("clock", Clock)
METRICS = web.AppKey("metrics", Metrics)
DATABASE = web.AppKey("database", Database)
PASSWORDS = web.AppKey("passwords", PasswordHasher)
USER_TOKENS = web.AppKey("user_tokens", UserTokens)
AGENT_AUTH = web.AppKey("agent_auth", AgentAuthenticator)
SEEN = web.AppKey("seen", SeenBuffer)
OUTPUT = web.AppKey("output", OutputWriter)
DISPATCHER = web.AppKey("dispatcher", Dispatcher)
SCHEDULER = web.AppKey("scheduler", Scheduler)
