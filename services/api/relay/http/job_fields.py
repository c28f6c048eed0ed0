"""A job as a user writes it: every field checked, with the reason when not."""

import re
from datetime import datetime, tzinfo
from typing import Any
from zoneinfo import ZoneInfo

from relay.errors import InvalidInput
from relay.http.agents import parse_labels
from relay.http.bodies import has_control_characters, integer_field, string_field
from relay.http.paging import MAX_ID
from relay.schedule.cron import (
    Schedule,
    ScheduleError,
    TimezoneError,
    next_fire,
    parse_schedule,
    parse_timezone,
)

ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
MAX_COMMAND_BYTES = 64 * 1024
MAX_ENV_ENTRIES = 100
MAX_ENV_VALUE = 4096
MAX_DESCRIPTION = 1000
MAX_TIMEOUT = 7 * 86400
MAX_RETRIES = 10
MAX_BACKOFF = 86400
MAX_CATCHUP_RUNS = 100
MAX_CATCHUP_AGE = 7 * 86400
CONCURRENCY = ("forbid", "allow", "replace")

DEFAULTS = {
    "description": "",
    "timezone": "UTC",
    "timeout_seconds": 3600,
    "retries": 0,
    "retry_backoff_seconds": 60,
    "concurrency": "forbid",
    "catchup": "skip",
    "enabled": True,
    "env": {},
}


def parse_new_job(body: dict[str, Any]) -> dict[str, Any]:
    """Every field of a new job, defaults filled in."""
    _refuse_unknown(body)
    values = {**DEFAULTS, **{k: v for k, v in body.items() if v is not None}}
    for required in ("name", "schedule", "command", "target"):
        if required not in body or body[required] is None:
            raise InvalidInput(
                f"{required} is required", code="missing_field", field=required
            )
    return {name: PARSERS[name](values) for name in PARSERS}


def parse_job_changes(body: dict[str, Any]) -> dict[str, Any]:
    """The fields a PATCH changes, each checked as for a new job."""
    _refuse_unknown(body)
    if not body:
        raise InvalidInput("Nothing to change", code="invalid_body")
    for name, value in body.items():
        if value is None:
            raise InvalidInput(f"{name} must not be null", field=name)
    return {name: PARSERS[name](body) for name in body}


def _refuse_unknown(body: dict[str, Any]) -> None:
    unknown = sorted(set(body) - set(PARSERS))
    if unknown:
        raise InvalidInput(
            f"unknown field {unknown[0]}", code="unknown_field", field=unknown[0]
        )


def _name(body) -> str:
    name = string_field(body, "name")
    if len(name) > 128 or has_control_characters(name) or name != name.strip():
        raise InvalidInput(
            "name must be 1 to 128 characters, without control characters "
            "or surrounding spaces",
            field="name",
        )
    return name


def _description(body) -> str:
    value = body.get("description", "")
    if not isinstance(value, str) or len(value) > MAX_DESCRIPTION:
        raise InvalidInput(
            f"description must be a string of at most {MAX_DESCRIPTION} characters",
            field="description",
        )
    if "\x00" in value:
        raise InvalidInput("description must not contain NUL", field="description")
    return value


def _invalid_schedule(reason: object) -> InvalidInput:
    return InvalidInput(
        f"schedule: {reason}", code="invalid_schedule", field="schedule"
    )


def checked_schedule(expression: str) -> Schedule:
    try:
        return parse_schedule(expression)
    except ScheduleError as exc:
        raise _invalid_schedule(exc) from None


def fire_times(
    schedule: Schedule, zone: tzinfo, after: datetime, count: int
) -> list[datetime]:
    """Up to `count` fire times after `after`, fewer where the calendar ends.

    A schedule that parses can still never fire in a zone (DST skips every
    wall time it names); with not even one fire time that is the user's error.
    """
    fires: list[datetime] = []
    for _ in range(count):
        try:
            after = next_fire(schedule, zone, after)
        except ScheduleError as exc:
            if not fires:
                raise _invalid_schedule(exc) from None
            break
        except (OverflowError, ValueError):
            # Past the year 9999 datetime ends, as OverflowError or ValueError.
            if not fires:
                raise _invalid_schedule("no fire time before the year 10000") from None
            break
        fires.append(after)
    return fires


def checked_zone(name: str) -> ZoneInfo:
    try:
        return parse_timezone(name)
    except TimezoneError as exc:
        raise InvalidInput(
            f"timezone: {exc}", code="invalid_timezone", field="timezone"
        ) from None


def schedule_field(body) -> Schedule:
    """The body's schedule; an empty one is a bad expression, like "   "."""
    value = body.get("schedule")
    if value is None:
        raise InvalidInput(
            "schedule is required", code="missing_field", field="schedule"
        )
    if not isinstance(value, str):
        raise InvalidInput("schedule must be a string", field="schedule")
    return checked_schedule(value)


def zone_field(body, default: str | None = None) -> ZoneInfo:
    """The body's time zone as a zone, `default` when there is none."""
    name = body.get("timezone", default)
    if name is None:
        name = default
    if not isinstance(name, str):
        raise InvalidInput("timezone must be a string", field="timezone")
    return checked_zone(name)


def _schedule(body) -> str:
    return schedule_field(body).expression


def _timezone(body) -> str:
    # The zone's own key: " UTC " is accepted as UTC and kept as "UTC".
    return zone_field(body).key


def _command(body) -> str:
    command = string_field(body, "command")
    if "\x00" in command or len(command.encode()) > MAX_COMMAND_BYTES:
        raise InvalidInput(
            f"command must be at most {MAX_COMMAND_BYTES} bytes, without NUL",
            field="command",
        )
    return command


def _target(body) -> dict:
    target = body.get("target")
    if not isinstance(target, dict):
        raise InvalidInput(TARGET_SHAPE, field="target")

    if set(target) == {"agent"}:
        agent = target["agent"]
        if (
            isinstance(agent, bool)
            or not isinstance(agent, int)
            or not 1 <= agent <= MAX_ID
        ):
            raise InvalidInput("target agent must be an agent id", field="target")
        return {"agent": agent}

    if "labels" not in target or not set(target) <= {"labels", "all"}:
        raise InvalidInput(TARGET_SHAPE, field="target")
    labels = _target_labels(target["labels"])
    fan_out = target.get("all", False)
    if not isinstance(fan_out, bool):
        raise InvalidInput("target all must be true or false", field="target")
    return {"labels": labels, "all": True} if fan_out else {"labels": labels}


TARGET_SHAPE = 'target must be {"agent": id} or {"labels": [...], "all"?: true}'


def _target_labels(value) -> list[str]:
    try:
        labels = parse_labels(value)
    except InvalidInput as exc:
        raise InvalidInput(f"target {exc.message}", field="target") from None
    if labels is None:
        raise InvalidInput(TARGET_SHAPE, field="target")
    return labels


def _timeout(body) -> int:
    return integer_field(
        body, "timeout_seconds", DEFAULTS["timeout_seconds"], 1, MAX_TIMEOUT
    )


def _retries(body) -> int:
    return integer_field(body, "retries", 0, 0, MAX_RETRIES)


def _backoff(body) -> int:
    return integer_field(body, "retry_backoff_seconds", 60, 0, MAX_BACKOFF)


def _concurrency(body) -> str:
    value = body.get("concurrency")
    if value not in CONCURRENCY:
        raise InvalidInput(
            "concurrency must be forbid, allow or replace", field="concurrency"
        )
    return value


def _catchup(body) -> str | dict:
    value = body.get("catchup")
    if value in ("skip", "once"):
        return value

    shape = 'catchup must be "skip", "once" or {"max_runs": N, "max_age_seconds": S}'
    if not isinstance(value, dict) or set(value) != {"max_runs", "max_age_seconds"}:
        raise InvalidInput(shape, field="catchup")
    max_runs = _bounded(value["max_runs"], 1, MAX_CATCHUP_RUNS, "catchup max_runs")
    max_age = _bounded(
        value["max_age_seconds"], 1, MAX_CATCHUP_AGE, "catchup max_age_seconds"
    )
    return {"max_runs": max_runs, "max_age_seconds": max_age}


def _bounded(value, low: int, high: int, name: str) -> int:
    if (
        isinstance(value, bool)
        or not isinstance(value, int)
        or not low <= value <= high
    ):
        raise InvalidInput(
            f"{name} must be a whole number from {low} to {high}", field="catchup"
        )
    return value


def _enabled(body) -> bool:
    value = body.get("enabled")
    if not isinstance(value, bool):
        raise InvalidInput("enabled must be true or false", field="enabled")
    return value


def _env(body) -> dict[str, str]:
    env = body.get("env")
    if not isinstance(env, dict) or len(env) > MAX_ENV_ENTRIES:
        raise InvalidInput(
            f"env must be an object of at most {MAX_ENV_ENTRIES} names", field="env"
        )
    for name, value in env.items():
        if not ENV_NAME.fullmatch(name):
            raise InvalidInput(
                f"env name {name!r} is not a valid variable name", field="env"
            )
        if not isinstance(value, str) or len(value) > MAX_ENV_VALUE or "\x00" in value:
            raise InvalidInput(
                f"env {name} must be a string of at most {MAX_ENV_VALUE} characters",
                field="env",
            )
    return dict(env)


PARSERS = {
    "name": _name,
    "description": _description,
    "schedule": _schedule,
    "timezone": _timezone,
    "command": _command,
    "target": _target,
    "timeout_seconds": _timeout,
    "retries": _retries,
    "retry_backoff_seconds": _backoff,
    "concurrency": _concurrency,
    "catchup": _catchup,
    "enabled": _enabled,
    "env": _env,
}
