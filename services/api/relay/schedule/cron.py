"""Cron schedules evaluated in an IANA time zone, with cronie's DST rules.

A schedule is a five-field cron expression (minute hour day-of-month month
day-of-week) or one of the @-aliases. Fire times are found on the wall clock
of the job's zone and then mapped to real instants, returned in UTC:

* A fixed-time job (neither the minute nor the hour field starts with ``*``)
  fires once per matching wall time: at its first occurrence when the clock
  falls back, and at the moment of the jump when spring-forward skips it.
* An interval job (the minute or hour field starts with ``*``) fires at every
  instant whose wall time matches: in both passes of a repeated hour, and not
  at all in a skipped one.

Between two offset changes the wall clock is UTC shifted by a constant, so
the search runs stretch by stretch as plain calendar arithmetic and only looks
at the zone where its offset changes.
"""

from __future__ import annotations

import calendar
import functools
import zoneinfo
from bisect import bisect_left
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo

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


# Parsing


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
    (
        "JAN",
        "FEB",
        "MAR",
        "APR",
        "MAY",
        "JUN",
        "JUL",
        "AUG",
        "SEP",
        "OCT",
        "NOV",
        "DEC",
    ),
    first_name=1,
)
_DOW = _Kind("day-of-week", 0, 7, 7, ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"))

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


@dataclass(frozen=True)
class _Days:
    """The day-of-month and day-of-week fields, before they are combined."""

    dom: frozenset[int]
    dom_last: bool
    dom_last_weekday: bool
    dow: frozenset[int]
    dow_last: frozenset[int]
    dow_nth: frozenset[tuple[int, int]]
    either: bool

    def matches(self, day: int, first_weekday: int, length: int) -> bool:
        weekday = (first_weekday + day - 1) % 7
        by_dom = (
            day in self.dom
            or (self.dom_last and day == length)
            or (self.dom_last_weekday and day == _last_weekday(first_weekday, length))
        )
        by_dow = (
            weekday in self.dow
            or (weekday in self.dow_last and day + 7 > length)
            or (weekday, (day - 1) // 7 + 1) in self.dow_nth
        )
        if self.either:
            return by_dom or by_dow
        return by_dom and by_dow


@dataclass(frozen=True)
class _Spec:
    """Everything the search needs: sorted times and the matching days of
    every possible month shape, indexed by (length - 28) * 7 + first weekday."""

    minutes: tuple[int, ...]
    hours: tuple[int, ...]
    months: frozenset[int]
    month_days: tuple[tuple[int, ...], ...]


@dataclass(frozen=True)
class Schedule:
    """A parsed cron schedule. Build it with parse_schedule()."""

    expression: str
    fields: str
    fixed_time: bool
    _spec: _Spec = field(repr=False, compare=False)


def parse_schedule(expression: str) -> Schedule:
    """Parse a five-field cron expression or @-alias; raise ScheduleError."""
    if not isinstance(expression, str):
        raise ScheduleError(
            f"schedule must be a string, not {type(expression).__name__}"
        )

    text = expression.strip()
    if not text:
        raise ScheduleError("schedule is empty")

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

    minute, hour, dom, month, dow = parts
    spec = _build_spec(minute, hour, dom, month, dow)

    # cronie's definition: a job is fixed-time unless its minute or hour field
    # starts with '*'. Only fixed-time jobs get the DST catch-up/no-repeat rule.
    fixed = not minute.startswith("*") and not hour.startswith("*")
    return Schedule(text, " ".join(parts).upper(), fixed, spec)


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


def _build_spec(minute: str, hour: str, dom: str, month: str, dow: str) -> _Spec:
    months = frozenset(_parse_field(month, _MONTH))
    days = _parse_days(dom, dow)

    table = tuple(
        tuple(d for d in range(1, length + 1) if days.matches(d, first, length))
        for length in (28, 29, 30, 31)
        for first in range(7)
    )
    _check_can_fire(months, days, table)

    return _Spec(
        minutes=tuple(sorted(_parse_field(minute, _MINUTE))),
        hours=tuple(sorted(_parse_field(hour, _HOUR))),
        months=months,
        month_days=table,
    )


def _parse_days(dom: str, dow: str) -> _Days:
    dom_values: set[int] = set()
    dom_last = dom_last_weekday = False
    for item in _items(dom, _DOM):
        upper = item.upper()
        if upper == "L":
            dom_last = True
        elif upper == "LW":
            dom_last_weekday = True
        elif "L" in upper or "W" in upper:
            raise ScheduleError(
                f"day-of-month {item!r} is not supported; "
                "of the L/W forms only L and LW are"
            )
        else:
            dom_values.update(_parse_item(item, _DOM))

    dow_values: set[int] = set()
    dow_last: set[int] = set()
    dow_nth: set[tuple[int, int]] = set()
    for item in _items(dow, _DOW):
        if "#" in item:
            dow_nth.add(_parse_nth_weekday(item))
        elif item.upper().endswith("L"):
            dow_last.add(_parse_last_weekday(item))
        else:
            dow_values.update(v % 7 for v in _parse_item(item, _DOW))

    # The classic cron quirk: if either field starts with '*' both must match,
    # otherwise a day matching either one is enough.
    either = not dom.startswith("*") and not dow.startswith("*")
    return _Days(
        frozenset(dom_values),
        dom_last,
        dom_last_weekday,
        frozenset(dow_values),
        frozenset(dow_last),
        frozenset(dow_nth),
        either,
    )


def _parse_nth_weekday(item: str) -> tuple[int, int]:
    day_text, _, nth_text = item.partition("#")
    weekday = _value(day_text, _DOW) % 7
    if not _is_number(nth_text) or not 1 <= int(nth_text) <= 5:
        raise ScheduleError(
            f"day-of-week {item!r}: the number after '#' must be 1 to 5"
        )

    return weekday, int(nth_text)


def _parse_last_weekday(item: str) -> int:
    if item.upper() == "L":
        raise ScheduleError(
            "day-of-week 'L' needs a weekday before it, e.g. 5L for the last Friday"
        )

    return _value(item[:-1], _DOW) % 7


def _parse_field(text: str, kind: _Kind) -> set[int]:
    values: set[int] = set()
    for item in _items(text, kind):
        values.update(_parse_item(item, kind))
    return values


def _items(text: str, kind: _Kind) -> list[str]:
    items = text.split(",")
    if "" in items:
        raise ScheduleError(f"{kind.name} field {text!r} has an empty list item")
    return items


def _parse_item(item: str, kind: _Kind) -> range:
    body, step = _split_step(item, kind)

    if body == "*":
        start, end = kind.low, kind.high
    elif "-" in body:
        first, _, last = body.partition("-")
        start, end = _value(first, kind), _value(last, kind)
        if start > end:
            raise ScheduleError(f"{kind.name} range {body!r} runs backwards")
    else:
        start = _value(body, kind)
        # "5/15" means "from 5 to the end of the field, every 15".
        end = kind.high if step else start

    return range(start, end + 1, step or 1)


def _split_step(item: str, kind: _Kind) -> tuple[str, int | None]:
    if "/" not in item:
        return item, None

    body, _, step_text = item.partition("/")
    if not _is_number(step_text):
        raise ScheduleError(f"{kind.name} step {step_text!r} is not a number")

    step = int(step_text)
    if step < 1:
        raise ScheduleError(f"{kind.name} step must be at least 1")

    if step > kind.distinct:
        raise ScheduleError(
            f"step {step} is larger than the {kind.name} field ({kind.distinct} values)"
        )

    return body, step


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


def _check_can_fire(
    months: frozenset[int], days: _Days, table: tuple[tuple[int, ...], ...]
) -> None:
    # Every (month length, weekday of the 1st) pair occurs in the Gregorian
    # calendar, February's 29-day shape included, so checking the shapes of the
    # chosen months decides whether any date ever matches.
    for month in months:
        for length in _possible_lengths(month):
            if any(table[(length - 28) * 7 + first] for first in range(7)):
                return

    plain_dom = days.dom and not (days.dom_last or days.dom_last_weekday)
    longest = max(max(_possible_lengths(m)) for m in months)
    if plain_dom and min(days.dom) > longest:
        verb = "occurs" if len(days.dom) == 1 else "occur"
        raise ScheduleError(
            f"{_describe_days(days.dom)} never {verb} in {_describe_months(months)}"
        )

    raise ScheduleError(
        "no date matches both the day-of-month and the day-of-week field "
        f"in {_describe_months(months)}"
    )


def _possible_lengths(month: int) -> tuple[int, ...]:
    if month == 2:
        return (28, 29)
    return (calendar.monthrange(2001, month)[1],)


def _describe_days(values: frozenset[int]) -> str:
    if len(values) == 1:
        return f"day {next(iter(values))}"
    return "days " + _join((str(v) for v in sorted(values)), "and")


def _describe_months(months: frozenset[int]) -> str:
    return _join((_MONTH_NAMES[m - 1] for m in sorted(months)), "or")


def _join(words: Iterable[str], conjunction: str) -> str:
    items = list(words)
    if len(items) == 1:
        return items[0]
    return ", ".join(items[:-1]) + f" {conjunction} " + items[-1]


def _last_weekday(first_weekday: int, length: int) -> int:
    last = (first_weekday + length - 1) % 7
    if last == 0:
        return length - 2
    if last == 6:
        return length - 1
    return length


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
# datetimes; both are whole seconds.

_HORIZON_YEARS = 100
_LAST_YEAR = 9998
_EPOCH = datetime(1970, 1, 1)
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

    if schedule.fixed_time:
        fire = _next_fixed(schedule._spec, tz, start, limit_year)
    else:
        fire = _next_interval(schedule._spec, tz, start, limit_year)

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


def _next_interval(
    spec: _Spec, tz: tzinfo, start: datetime, limit_year: int
) -> datetime:
    offset = _offset(tz, start)
    low_wall = _minute_after(start + offset)
    stretch_start = start

    while True:
        wall = _next_wall(spec, low_wall, limit_year, tz)
        instant = wall - offset

        change = _first_change(tz, stretch_start, instant, offset)
        if change is None:
            return instant

        # A new stretch starts at the change. After a fall-back its wall times
        # repeat ones already passed, and they fire again; after a
        # spring-forward the skipped wall times are simply never seen.
        stretch_start, offset = change
        low_wall = _minute_from(stretch_start + offset)


def _next_fixed(spec: _Spec, tz: tzinfo, start: datetime, limit_year: int) -> datetime:
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
        wall = _next_wall(spec, reached, limit_year, tz)
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


# The wall-clock search


def _next_wall(spec: _Spec, low: datetime, limit_year: int, tz: tzinfo) -> datetime:
    """The first matching wall time at or after `low` (a whole minute)."""
    year, month, day = low.year, low.month, low.day
    hour, minute = low.hour, low.minute

    while year <= limit_year:
        if month in spec.months:
            found = _first_in_month(spec, year, month, day, hour, minute)
            if found is not None:
                return found

        month, day, hour, minute = month + 1, 1, 0, 0
        if month > 12:
            year, month = year + 1, 1

    raise ScheduleError(f"no fire time within {_HORIZON_YEARS} years in {tz}")


def _first_in_month(
    spec: _Spec, year: int, month: int, day: int, hour: int, minute: int
) -> datetime | None:
    weekday, length = calendar.monthrange(year, month)
    # calendar counts weekdays from Monday; cron from Sunday.
    days = spec.month_days[(length - 28) * 7 + (weekday + 1) % 7]

    for candidate in days[bisect_left(days, day) :]:
        if candidate != day:
            return datetime(year, month, candidate, spec.hours[0], spec.minutes[0])

        time = _first_time(spec, hour, minute)
        if time is not None:
            return datetime(year, month, candidate, *time)

    return None


def _first_time(spec: _Spec, hour: int, minute: int) -> tuple[int, int] | None:
    hours, minutes = spec.hours, spec.minutes

    i = bisect_left(hours, hour)
    if i < len(hours) and hours[i] == hour:
        j = bisect_left(minutes, minute)
        if j < len(minutes):
            return hour, minutes[j]
        i += 1

    if i == len(hours):
        return None
    return hours[i], minutes[0]


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
