"""Previewing a schedule's fire times before a job is made with it."""

from datetime import UTC, datetime

from aiohttp import web

from relay.auth.guards import require_user
from relay.errors import InvalidInput
from relay.http.bodies import read_object
from relay.http.job_fields import fire_times, schedule_field, zone_field
from relay.http.paging import preview_count
from relay.keys import CLOCK

routes = web.RouteTableDef()


@routes.post("/schedules/preview")
async def preview(request: web.Request) -> web.Response:
    require_user(request)
    body = await read_object(request)
    schedule, zone = _schedule_and_zone(body)
    count = preview_count(body.get("count", 5))
    after = _after(body.get("after")) or request.app[CLOCK].now()

    fires = fire_times(schedule, zone, after, count)
    return web.json_response(
        {"fire_times": [moment.astimezone(zone).isoformat() for moment in fires]}
    )


def _schedule_and_zone(body: dict):
    return schedule_field(body), zone_field(body, default="UTC")


def _after(value) -> datetime | None:
    if value is None:
        return None

    message = "after must be an ISO 8601 time with an offset"
    if not isinstance(value, str):
        raise InvalidInput(message, field="after")
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidInput(message, field="after") from None
    if moment.utcoffset() is None:
        raise InvalidInput(message, field="after")
    try:
        moment.astimezone(UTC)
    except OverflowError:
        raise InvalidInput("after is outside the calendar", field="after") from None
    return moment
