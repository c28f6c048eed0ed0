"""The agent registry: listing agents and registering them."""

import ipaddress
import logging
import re

from aiohttp import web

from relay.auth.bearer import bearer_token
from relay.auth.guards import require_user
from relay.errors import Forbidden, InvalidInput, NotFound, Unauthorized
from relay.http.bodies import integer_field, read_object, string_field
from relay.http.paging import id_in_path
from relay.keys import AGENT_AUTH, CLOCK, DATABASE, SETTINGS
from relay.store.agents import (
    Replacer,
    get_agent,
    list_agents,
    register_agent,
    set_labels,
)
from relay.store.enrollment import (
    create_enrollment_token,
    enrolling_user,
    is_enrollment_token,
)

log = logging.getLogger(__name__)

HOSTNAME_LABEL = re.compile(r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
AGENT_LABEL = re.compile(r"[a-z0-9]([a-z0-9._=-]{0,61}[a-z0-9])?")
MAX_LABELS = 32
MAX_ENROLLMENT_TTL = 30 * 86400

routes = web.RouteTableDef()


@routes.get("/agents")
async def list_all(request: web.Request) -> web.Response:
    require_user(request)
    label = query_label(request)

    async with request.app[DATABASE].read() as connection:
        found = await list_agents(connection, label)

    return web.json_response([_public(request, agent) for agent in found])


@routes.get("/agents/{agent_id}")
async def show(request: web.Request) -> web.Response:
    require_user(request)

    async with request.app[DATABASE].read() as connection:
        agent = await get_agent(connection, _agent_id(request))
    if agent is None:
        raise NotFound("No such agent", code="agent_not_found")

    return web.json_response(_public(request, agent))


@routes.patch("/agents/{agent_id}")
async def relabel(request: web.Request) -> web.Response:
    identity = require_user(request)
    if not identity.is_admin:
        raise Forbidden("Only an admin can change an agent's labels")
    body = await read_object(request)
    if set(body) != {"labels"}:
        raise InvalidInput("Only labels can be changed", field="labels")
    if body["labels"] is None:
        raise InvalidInput("labels must be a list of strings", field="labels")
    labels = parse_labels(body["labels"])

    async with request.app[DATABASE].write() as connection:
        agent = await set_labels(connection, _agent_id(request), labels)
    if agent is None:
        raise NotFound("No such agent", code="agent_not_found")

    log.info("agent %s labels set by user %s", agent.id, identity.user_id)
    return web.json_response(_public(request, agent))


@routes.post("/enrollment-tokens")
async def enrollment_token(request: web.Request) -> web.Response:
    identity = require_user(request)
    body = await read_object(request)
    ttl = integer_field(body, "ttl_seconds", 86400, 60, MAX_ENROLLMENT_TTL)

    async with request.app[DATABASE].write() as connection:
        token, expires_at = await create_enrollment_token(
            connection, identity.user_id, request.app[CLOCK].now(), ttl
        )

    log.info("enrollment token made by user %s", identity.user_id)
    return web.json_response(
        {"token": token, "expires_at": expires_at.isoformat()}, status=201
    )


async def _registering_user(request: web.Request) -> Replacer:
    """A user, by their own token or by an enrollment token they made."""
    token = bearer_token(request)
    if not is_enrollment_token(token):
        identity = require_user(request)
        return Replacer(identity.user_id, identity.is_admin, by_enrollment=False)

    async with request.app[DATABASE].read() as connection:
        user_id = await enrolling_user(connection, token, request.app[CLOCK].now())
    if user_id is None:
        raise Unauthorized("The enrollment token is not valid or has expired")
    return Replacer(user_id, is_admin=False, by_enrollment=True)


def _agent_id(request: web.Request) -> int:
    return id_in_path(request, "agent_id", "agent", "agent_not_found")


def _public(request: web.Request, agent) -> dict:
    return agent.public(
        request.app[CLOCK].now(), request.app[SETTINGS].heartbeat_seconds
    )


@routes.post("/agents")
async def register(request: web.Request) -> web.Response:
    replacer = await _registering_user(request)
    body = await read_object(request)
    hostname = parse_hostname(string_field(body, "hostname"))
    ip = parse_ip(string_field(body, "ip"))
    labels = parse_labels(body.get("labels"))

    async with request.app[DATABASE].write() as connection:
        agent, token, created = await register_agent(
            connection, hostname, ip, labels, replacer.user_id, replacer
        )

    request.app[AGENT_AUTH].forget(agent.id)
    log.info("agent %s registered as %s (%s)", agent.id, agent.hostname, agent.ip)
    answer = {**_public(request, agent), "token": token}
    return web.json_response(answer, status=201 if created else 200)


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
    # A zone ("fe80::1%eth0") names an interface of the sender, meaningless to
    # anyone else, and ipaddress takes any text after the '%'.
    if "%" in ip:
        raise InvalidInput("ip must be an IPv4 or IPv6 address", field="ip")
    try:
        return str(ipaddress.ip_address(ip))
    except ValueError:
        raise InvalidInput("ip must be an IPv4 or IPv6 address", field="ip") from None


def query_label(request: web.Request) -> str | None:
    """The ?label= filter, checked like a label so odd text never reaches SQL."""
    label = request.query.get("label")
    if label is not None and not AGENT_LABEL.fullmatch(label):
        raise InvalidInput("label must be a label", field="label")
    return label


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
