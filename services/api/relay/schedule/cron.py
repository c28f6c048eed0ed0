"""Cron schedules evaluated in an IANA time zone, with cronie's DST rules.

A schedule is a five-field cron expression (minute hour day-of-month month
day-of-week) or one of the @-aliases. cronsim parses the fields and lists the
matching wall-clock times; it is only ever given zone-less datetimes, where
it is plain calendar arithmetic. This module adds what cronsim lacks or gets
wrong: the aliases, stricter validation with readable reasons, and the
mapping of wall times to real instants, returned in UTC:

* A fixed-time job (neither the minute nor the hour field starts with ``*``)
  fires once per matching wall time: at its first occurrence when the clock
  falls back, and at the moment of the jump when spring-forward skips it.
* An interval job (the minute or hour field starts with ``*``) fires at every
  instant whose wall time matches: in both passes of a repeated hour, and not
  at all in a skipped one.

Between two offset changes the wall clock is UTC shifted by a constant, so
the search runs stretch by stretch and only looks at the zone where its
offset changes.
"""

from __future__ import annotations

import calendar
import functools
import zoneinfo
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, tzinfo

from cronsim import CronSim, CronSimError

__all__ = [
    "Schedule",
    "ScheduleError",
    "TimezoneError",
    "next_fire",
    "next_fires",
    "parse_schedule",
    "parse_timezone",
]


class ScheduleError(ValueError):
    """The expression is not a schedule that can run; str() gives the reason."""


class TimezoneError(ValueError):
    """The name is not an accepted IANA time zone; str() gives the reason."""


@dataclass(frozen=True)
class Schedule:
    """A parsed cron schedule. Build it with parse_schedule().

    `fields` is the validated five-field text that cronsim is given.
    """

    expression: str
    fields: str
    fixed_time: bool


# Parsing
#
# cronsim turns the fields into sets of values and matches dates against
# them. The checks below run first because cronsim accepts some things cron
# should refuse (a sixth field, oversized steps, "L/5") and refuses the rest
# with no more than "Bad minute".


@dataclass(frozen=True)
class _Kind:
    name: str
    low: int
    high: int
    distinct: int
    names: tuple[str, ...] = ()
    first_name: int = 0

    def value_of(self, name: str) -> int | None:
        if name in self.names:
            return self.names.index(name) + self.first_name
        return None


_MINUTE = _Kind("minute", 0, 59, 60)
_HOUR = _Kind("hour", 0, 23, 24)
_DOM = _Kind("day-of-month", 1, 31, 31)
_MONTH = _Kind(
    "month",
    1,
    12,
    12,
    tuple(name.upper() for name in calendar.month_abbr[1:13]),
    first_name=1,
)
_DOW = _Kind("day-of-week", 0, 7, 7, ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"))
_KINDS = (_MINUTE, _HOUR, _DOM, _MONTH, _DOW)

_ALIASES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}

_MONTH_NAMES = tuple(calendar.month_name[1:13])

# cronsim needs a start time even just to parse; any date will do.
_PARSE_START = datetime(2001, 1, 1)


MAX_EXPRESSION = 256


def parse_schedule(expression: str) -> Schedule:
    """Parse a five-field cron expression or @-alias; raise ScheduleError."""
    if not isinstance(expression, str):
        raise ScheduleError(
            f"schedule must be a string, not {type(expression).__name__}"
        )

    text = expression.strip()
    if not text:
        raise ScheduleError("schedule is empty")
    # Checked before parsing: a long expression costs time to parse and a place
    # in the cache, and no real schedule needs more.
    if len(text) > MAX_EXPRESSION:
        raise ScheduleError(f"longer than {MAX_EXPRESSION} characters")
    if not text.isascii():
        raise ScheduleError("schedule must be plain ASCII")

    return _parse_text(text)


@functools.lru_cache(maxsize=4096)
def _parse_text(text: str) -> Schedule:
    parts = _expand_alias(text).split()
    if len(parts) != 5:
        raise ScheduleError(
            "expected 5 fields (minute hour day-of-month month day-of-week), "
            f"got {len(parts)}"
        )

    if any("?" in part for part in parts):
        raise ScheduleError("'?' is not supported; use '*'")

    for part, kind in zip(parts, _KINDS, strict=True):
        _check_field(part, kind)

    _check_can_fire(parts)

    # The checks let through only what cronsim parses, but cronsim has the
    # last word on the fields it will run.
    fields = " ".join(parts).upper()
    _cronsim(fields, parts)

    # cronie's definition: a job is fixed-time unless its minute or hour field
    # starts with '*'. Only fixed-time jobs get the DST catch-up/no-repeat rule.
    minute, hour = parts[0], parts[1]
    fixed = not minute.startswith("*") and not hour.startswith("*")
    return Schedule(text, fields, fixed)


def _expand_alias(text: str) -> str:
    if not text.startswith("@"):
        return text

    alias = text.lower()
    if alias == "@reboot":
        raise ScheduleError(
            "@reboot has no fire time: it means 'at start-up', "
            "which a scheduler cannot compute"
        )

    if alias not in _ALIASES:
        raise ScheduleError(
            f"unknown alias {text!r}; use one of " + ", ".join(_ALIASES)
        )

    return _ALIASES[alias]


def _cronsim(fields: str, parts: list[str]) -> CronSim:
    try:
        return CronSim(fields, _PARSE_START)
    except CronSimError as error:
        raise ScheduleError(_cronsim_reason(error, parts)) from None


def _cronsim_reason(error: CronSimError, parts: list[str]) -> str:
    # cronsim names only the field ("Bad day-of-week"); add what was written.
    name = str(error).removeprefix("Bad ")
    for part, kind in zip(parts, _KINDS, strict=True):
        if kind.name == name:
            return f"{kind.name} field {part!r} is not valid"

    return f"not a valid schedule: {error}"


# Checking each field


def _check_field(text: str, kind: _Kind) -> None:
    items = text.split(",")
    if "" in items:
        raise ScheduleError(f"{kind.name} field {text!r} has an empty list item")

    for item in items:
        if kind is _DOM:
            _check_dom_item(item)
        elif kind is _DOW:
            _check_dow_item(item)
        else:
            _check_item(item, kind)


def _check_dom_item(item: str) -> None:
    upper = item.upper()
    if upper in ("L", "LW"):
        return

    # cronsim has no nW form, and it reads "L/5" as plain L.
    if "L" in upper or "W" in upper:
        raise ScheduleError(
            f"day-of-month {item!r} is not supported; "
            "of the L/W forms only L and LW are"
        )

    _check_item(item, _DOM)


def _check_dow_item(item: str) -> None:
    if "#" in item:
        _check_nth_weekday(item)
    elif item.upper().endswith("L"):
        _check_last_weekday(item)
    else:
        _check_item(item, _DOW)


def _check_nth_weekday(item: str) -> None:
    day_text, _, nth_text = item.partition("#")
    _value(day_text, _DOW)

    if not _is_number(nth_text) or not 1 <= int(nth_text) <= 5:
        raise ScheduleError(
            f"day-of-week {item!r}: the number after '#' must be 1 to 5"
        )


def _check_last_weekday(item: str) -> None:
    if item.upper() == "L":
        raise ScheduleError(
            "day-of-week 'L' needs a weekday before it, e.g. 5L for the last Friday"
        )

    # cronsim takes only a number here, not a name such as FRI.
    day_text = item[:-1]
    if not _is_number(day_text):
        raise ScheduleError(
            f"day-of-week {item!r}: the weekday before 'L' must be a number 0-7, "
            "e.g. 5L for the last Friday"
        )

    _value(day_text, _DOW)


def _check_item(item: str, kind: _Kind) -> None:
    body = _check_step(item, kind)
    if body == "*":
        return

    if "-" not in body:
        _value(body, kind)
        return

    first, _, last = body.partition("-")
    if _value(first, kind) > _value(last, kind):
        raise ScheduleError(f"{kind.name} range {body!r} runs backwards")


def _check_step(item: str, kind: _Kind) -> str:
    """Check the step of `item`, if it has one, and return the part before it."""
    if "/" not in item:
        return item

    body, _, step_text = item.partition("/")
    if not _is_number(step_text):
        raise ScheduleError(f"{kind.name} step {step_text!r} is not a number")

    step = int(step_text)
    if step < 1:
        raise ScheduleError(f"{kind.name} step must be at least 1")

    # cronsim would accept it and fire only at the start of the field, which
    # is never what "*/90" was meant to say.
    if step > kind.distinct:
        raise ScheduleError(
            f"step {step} is larger than the {kind.name} field ({kind.distinct} values)"
        )

    return body


def _value(text: str, kind: _Kind) -> int:
    if not text:
        raise ScheduleError(f"{kind.name} value is missing")

    named = kind.value_of(text.upper())
    if named is not None:
        return named

    if not _is_number(text):
        what = "a number or a name" if kind.names else "a number"
        raise ScheduleError(f"{kind.name} value {text!r} is not {what}")

    value = int(text)
    if not kind.low <= value <= kind.high:
        raise ScheduleError(
            f"{kind.name} {value} is out of range {kind.low}-{kind.high}"
        )

    return value


def _is_number(text: str) -> bool:
    return text.isascii() and text.isdigit()


# Dates that never come


def _check_can_fire(parts: list[str]) -> None:
    _, _, dom, month_field, dow = parts

    # cronsim refuses some impossible dates itself, as "Bad day-of-month";
    # given every month it refuses none, which leaves the reason to us.
    days = _cronsim(f"0 0 {dom} * {dow}", parts)
    months = _cronsim(f"0 0 * {month_field} *", parts).months

    if any(_month_can_match(days, month) for month in months):
        return

    # cronsim keeps L and LW as negative markers, which never pass this test.
    dom_values = days.days
    longest = max(max(_possible_lengths(m)) for m in months)
    if min(dom_values) > longest:
        verb = "occurs" if len(dom_values) == 1 else "occur"
        raise ScheduleError(
            f"{_describe_days(dom_values)} never {verb} in {_describe_months(months)}"
        )

    raise ScheduleError(
        "no date matches both the day-of-month and the day-of-week field "
        f"in {_describe_months(months)}"
    )


def _month_can_match(days: CronSim, month: int) -> bool:
    for year, length in _month_shapes(month):
        if any(days.match_day(date(year, month, d)) for d in range(1, length + 1)):
            return True
    return False


@functools.cache
def _month_shapes(month: int) -> tuple[tuple[int, int], ...]:
    """A (year, length) for each shape the month can have: its length and
    the weekday of its 1st. Cron day rules depend on nothing else."""
    # 2001-2028 has no skipped leap year, so it runs through the full 28-year
    # calendar cycle and holds every shape, February's 29-day ones included.
    shapes: dict[tuple[int, int], int] = {}
    for year in range(2001, 2029):
        shapes.setdefault(calendar.monthrange(year, month), year)

    return tuple((year, length) for (_, length), year in shapes.items())


def _possible_lengths(month: int) -> tuple[int, ...]:
    if month == 2:
        return (28, 29)
    return (calendar.monthrange(2001, month)[1],)


def _describe_days(values: Iterable[int]) -> str:
    days = sorted(values)
    if len(days) == 1:
        return f"day {days[0]}"
    return "days " + _join((str(d) for d in days), "and")


def _describe_months(months: Iterable[int]) -> str:
    return _join((_MONTH_NAMES[m - 1] for m in sorted(months)), "or")


def _join(words: Iterable[str], conjunction: str) -> str:
    items = list(words)
    if len(items) == 1:
        return items[0]
    return ", ".join(items[:-1]) + f" {conjunction} " + items[-1]


# Time zones

# Names that resolve to a file but are not a zone a job should run in:
# "localtime" is the server's own zone, "posixrules" and "Factory" are
# tzdata internals.
_RESERVED_ZONES = frozenset({"localtime", "posixrules", "Factory"})
_RESERVED_PREFIXES = ("posix/", "right/")


def parse_timezone(name: str) -> zoneinfo.ZoneInfo:
    """Return the IANA zone called `name`; raise TimezoneError otherwise."""
    if not isinstance(name, str):
        raise TimezoneError(f"time zone must be a string, not {type(name).__name__}")

    key = name.strip()
    if not key:
        raise TimezoneError("time zone is empty")

    if key.startswith((".", "/")) or "\\" in key or ".." in key.split("/"):
        raise TimezoneError(
            f"{key!r} looks like a file path; give an IANA name such as Europe/Berlin"
        )

    if key in _RESERVED_ZONES or key.startswith(_RESERVED_PREFIXES):
        raise TimezoneError(
            f"{key!r} is not accepted; give an IANA name such as Europe/Berlin"
        )

    if key not in _known_zones():
        raise TimezoneError(f"unknown time zone {key!r}{_spelling_hint(key)}")

    return zoneinfo.ZoneInfo(key)


@functools.cache
def _known_zones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


@functools.cache
def _zones_by_folded_name() -> dict[str, str]:
    return {zone.casefold(): zone for zone in _known_zones()}


def _spelling_hint(key: str) -> str:
    match = _zones_by_folded_name().get(key.casefold())
    if match is None or match in _RESERVED_ZONES:
        return ""
    return f"; did you mean {match}?"


# Fire times
#
# Instants are handled as naive UTC datetimes and wall times as naive local
# datetimes; both are whole seconds. cronsim sees only the wall times: given
# an aware datetime it would apply DST rules of its own, which lose fire
# times around 30-minute shifts and answer with past times from the second
# pass of a repeated hour.

_HORIZON_YEARS = 100
_LAST_YEAR = 9998
_EPOCH = datetime(1970, 1, 1)
_SECOND = timedelta(seconds=1)
_MINUTE_STEP = timedelta(minutes=1)

# Offset changes are found by sampling the offset this often, then bisecting to
# the second. Since 1900 no tzdata zone has changed its offset twice within
# 6 hours, so no change can hide between two samples.
_PROBE_STEP = timedelta(hours=6)
# Spans up to this long are probed directly; longer ones use per-year tables.
_DIRECT_SPAN = timedelta(days=8)


def next_fire(schedule: Schedule, tz: tzinfo, after: datetime) -> datetime:
    """The first fire time strictly after `after`, as an aware UTC datetime.

    Raises ScheduleError if the schedule does not fire within a century in
    this zone (possible only when DST skips every matching wall time).
    """
    start = _instant(after)
    limit_year = min(start.year + _HORIZON_YEARS, _LAST_YEAR)

    walls = _WallTimes(schedule.fields, tz, limit_year)
    if schedule.fixed_time:
        fire = _next_fixed(walls, tz, start)
    else:
        fire = _next_interval(walls, tz, start)

    return fire.replace(tzinfo=UTC)


def next_fires(
    schedule: Schedule, tz: tzinfo, after: datetime, count: int
) -> list[datetime]:
    """`count` consecutive fire times after `after`, as aware UTC datetimes."""
    if count < 0:
        raise ValueError("count must not be negative")

    fires: list[datetime] = []
    for _ in range(count):
        after = next_fire(schedule, tz, after)
        fires.append(after)
    return fires


def _instant(after: datetime) -> datetime:
    if not isinstance(after, datetime):
        raise TypeError(f"after must be a datetime, not {type(after).__name__}")

    if after.utcoffset() is None:
        raise ValueError("after must be timezone-aware")

    # Fire times are whole seconds, so dropping the fraction keeps
    # "strictly after" exact.
    return after.astimezone(UTC).replace(tzinfo=None, microsecond=0)


def _next_interval(walls: _WallTimes, tz: tzinfo, start: datetime) -> datetime:
    offset = _offset(tz, start)
    low_wall = _minute_after(start + offset)
    stretch_start = start

    while True:
        wall = walls.first_from(low_wall)
        instant = wall - offset

        change = _first_change(tz, stretch_start, instant, offset)
        if change is None:
            return instant

        # A new stretch starts at the change. After a fall-back its wall times
        # repeat ones already passed, and they fire again; after a
        # spring-forward the skipped wall times are simply never seen.
        stretch_start, offset = change
        low_wall = _minute_from(stretch_start + offset)


def _next_fixed(walls: _WallTimes, tz: tzinfo, start: datetime) -> datetime:
    local = start.replace(tzinfo=UTC).astimezone(tz)
    offset = local.utcoffset()
    assert offset is not None

    # Wall times below `reached` have already been shown by the clock, so a
    # fixed-time job does not fire on them again. Inside the second pass of
    # a repeated hour that includes the rest of the first pass.
    reached = _minute_after(start + offset)
    if local.fold:
        reached = max(reached, _end_of_first_pass(tz, local, start))
    stretch_start = start

    while True:
        wall = walls.first_from(reached)
        instant = wall - offset

        change = _first_change(tz, stretch_start, instant, offset)
        if change is None:
            return instant

        jump, new_offset = change
        reached = max(reached, _minute_from(jump + offset))

        # Spring-forward skipped this wall time: cronie runs the job once,
        # at the moment the clock jumps.
        if wall < jump + new_offset:
            return jump

        stretch_start, offset = jump, new_offset


def _end_of_first_pass(tz: tzinfo, local: datetime, start: datetime) -> datetime:
    """The wall time at which the first pass of a repeated stretch ended."""
    first_offset = local.replace(fold=0).utcoffset()
    assert first_offset is not None

    first_instant = local.replace(tzinfo=None) - first_offset
    jump, _ = _bisect_change(tz, first_instant, start, first_offset)
    return _minute_from(jump + first_offset)


def _minute_after(wall: datetime) -> datetime:
    return wall.replace(second=0, microsecond=0) + _MINUTE_STEP


def _minute_from(wall: datetime) -> datetime:
    if wall.second or wall.microsecond:
        return _minute_after(wall)
    return wall


class _WallTimes:
    """The matching wall times of a schedule, for one next_fire call.

    The search asks again at every offset change, with a new lower bound. One
    cronsim search can scan years of dates (`0 0 * 2 MON#5`), so the last
    answer is kept and reused whenever it is also the answer for the new bound.
    """

    def __init__(self, fields: str, tz: tzinfo, limit_year: int) -> None:
        self._fields = fields
        self._tz = tz
        self._limit_year = limit_year

        # No wall time in [_low, _wall) matches, and _wall does.
        self._low = datetime.max
        self._wall = datetime.min

    def first_from(self, low: datetime) -> datetime:
        """The first matching wall time at or after `low` (a whole minute)."""
        if not self._low <= low <= self._wall:
            self._low, self._wall = low, self._search(low)
        return self._wall

    def _search(self, low: datetime) -> datetime:
        # cronsim yields times strictly after its start, and all of them are
        # whole minutes, so starting a second early lets `low` itself match.
        # It gives up with StopIteration after 50 years without a match.
        try:
            wall = next(CronSim(self._fields, low - _SECOND))
        except (StopIteration, OverflowError):
            wall = None

        if wall is None or wall.year > self._limit_year:
            raise ScheduleError(
                f"no fire time within {_HORIZON_YEARS} years in {self._tz}"
            )

        return wall


# Offset changes of a zone


def _offset(tz: tzinfo, instant: datetime) -> timedelta:
    offset = instant.replace(tzinfo=UTC).astimezone(tz).utcoffset()
    assert offset is not None
    return offset


def _first_change(
    tz: tzinfo, low: datetime, high: datetime, low_offset: timedelta
) -> tuple[datetime, timedelta] | None:
    """The first instant in (low, high] whose offset differs from low's."""
    if high <= low:
        return None

    if high - low <= _DIRECT_SPAN:
        return _probe_change(tz, low, high, low_offset)

    for year in range(low.year, high.year + 1):
        for jump, offset in _changes_in_year(tz, year):
            if jump > high:
                return None
            if jump > low:
                return jump, offset

    return None


def _probe_change(
    tz: tzinfo, low: datetime, high: datetime, low_offset: timedelta
) -> tuple[datetime, timedelta] | None:
    before = low
    while before < high:
        probe = min(before + _PROBE_STEP, high)
        if _offset(tz, probe) != low_offset:
            return _bisect_change(tz, before, probe, low_offset)
        before = probe

    return None


@functools.lru_cache(maxsize=2048)
def _changes_in_year(tz: tzinfo, year: int) -> tuple[tuple[datetime, timedelta], ...]:
    changes = []
    low, end = datetime(year, 1, 1), datetime(year + 1, 1, 1)
    offset = _offset(tz, low)

    while (change := _probe_change(tz, low, end, offset)) is not None:
        changes.append(change)
        low, offset = change

    return tuple(changes)


def _bisect_change(
    tz: tzinfo, before: datetime, after: datetime, before_offset: timedelta
) -> tuple[datetime, timedelta]:
    """The offset changes somewhere in (before, after]: find the second."""
    low = int((before - _EPOCH).total_seconds())
    high = int((after - _EPOCH).total_seconds())

    while high - low > 1:
        middle = (low + high) // 2
        if _offset(tz, _EPOCH + timedelta(seconds=middle)) == before_offset:
            low = middle
        else:
            high = middle

    jump = _EPOCH + timedelta(seconds=high)
    return jump, _offset(tz, jump)
