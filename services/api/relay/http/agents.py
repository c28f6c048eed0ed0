"""The agent registry: listing agents and registering them."""

import ipaddress
import logging
import re
from datetime import UTC, datetime

from aiohttp import web

from relay.auth.guards import require_user
from relay.errors import InvalidInput
from relay.http.bodies import read_object, string_field
from relay.keys import DATABASE, SETTINGS
from relay.store.agents import list_agents, register_agent

log = logging.getLogger(__name__)

HOSTNAME_LABEL = re.compile(r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
AGENT_LABEL = re.compile(r"[a-z0-9]([a-z0-9._=-]{0,61}[a-z0-9])?")
MAX_LABELS = 32

routes = web.RouteTableDef()


@routes.get("/agents")
async def list_all(request: web.Request) -> web.Response:
    require_user(request)
    label = request.query.get("label")

    async with request.app[DATABASE].read() as connection:
        found = await list_agents(connection, label)

    now = datetime.now(UTC)
    heartbeat = request.app[SETTINGS].heartbeat_seconds
    return web.json_response([agent.public(now, heartbeat) for agent in found])


@routes.post("/agents")
async def register(request: web.Request) -> web.Response:
    identity = require_user(request)
    body = await read_object(request)
    hostname = parse_hostname(string_field(body, "hostname"))
    ip = parse_ip(string_field(body, "ip"))
    labels = parse_labels(body.get("labels"))

    async with request.app[DATABASE].write() as connection:
        agent, token, created = await register_agent(
            connection, hostname, ip, labels, identity.user_id
        )

    log.info("agent %s registered as %s (%s)", agent.id, agent.hostname, agent.ip)
    now = datetime.now(UTC)
    answer = agent.public(now, request.app[SETTINGS].heartbeat_seconds)
    return web.json_response({**answer, "token": token}, status=201 if created else 200)


def parse_hostname(hostname: str) -> str:
    """A hostname as RFC 1123 allows: dot-separated labels, 253 characters at most."""
    name = hostname[:-1] if hostname.endswith(".") else hostname
    labels = name.split(".")
    valid = len(name) <= 253 and all(HOSTNAME_LABEL.fullmatch(part) for part in labels)
    if not valid:
        raise InvalidInput(
            "hostname must be letters, digits and '-' in dot-separated labels",
            field="hostname",
        )
    return name


def parse_ip(ip: str) -> str:
    try:
        return str(ipaddress.ip_address(ip))
    except ValueError:
        raise InvalidInput("ip must be an IPv4 or IPv6 address", field="ip") from None


def parse_labels(value: object) -> list[str] | None:
    if value is None:
        return None

    if not isinstance(value, list) or len(value) > MAX_LABELS:
        raise InvalidInput(
            f"labels must be a list of at most {MAX_LABELS} strings", field="labels"
        )
    labels = []
    for label in value:
        if not isinstance(label, str) or not AGENT_LABEL.fullmatch(label.lower()):
            raise InvalidInput(
                "each label must be lower-case letters, digits, '.', '_', '=' or '-'",
                field="labels",
            )
        labels.append(label.lower())
    return sorted(set(labels))
