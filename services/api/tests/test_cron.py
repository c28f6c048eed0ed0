"""Cron schedules, time zones and cronie's DST rules.

Expected fire times are written out by hand. relay.schedule.cron has cronsim
2.9 parse the five fields and list the matching times of a zone-less wall
clock, where it is right (the model at the end of this file uses it the same
way). Used directly, with the reference time in the job's zone, cronsim gets
the following wrong (the tests marked "cronsim:" below fail with it), and
relay.schedule.cron corrects each:

* A fixed-time job asked for its next fire from inside the second pass of a
  repeated hour gets the first-pass occurrence, which is in the past (every
  zone with a fall-back: New York, Berlin, Sydney, Lord Howe, Cairo).
* Around Lord Howe's 30-minute shifts it drops fire times of interval jobs,
  and not only repeated ones: `30 * * * *` misses 02:30 right after the
  spring jump, `*/30 0 * * *` misses the next day's 00:00, `*/30 23 * * *`
  the same day's 23:00, and the second pass of the repeated half hour is lost.
* A schedule whose every wall time DST skips ends in a bare StopIteration
  after 50 years instead of an error.
* Its DST handling only applies when the reference time carries the job's
  zone; a UTC reference is computed on the UTC clock.

These four are corrected by never giving cronsim a zone: our code maps the
wall times it lists to real instants with cronie's rules, from any reference.

* It has no @-aliases. Corrected by expanding them before cronsim sees them.
* It accepts a sixth (seconds) field, steps larger than the field (`*/90` is
  minute 0) and `L/5` (read as `L`). Corrected by our checks, which run
  before cronsim and refuse them.
* Its errors name only the field ("Bad minute"; "Bad day-of-month" for 30
  February). Corrected by the same checks, which give the reason; whatever
  cronsim still refuses is reported with the text of the field.

It does follow cronie's day rule (a '*'-prefixed day field makes the two
day fields AND-ed) and agrees with these rules in New York, Berlin, Sydney
and Cairo for references outside a repeated hour. It has no nW form and
takes only a number before L (5L, not FRIL), and Relay accepts the same.
"""

import re
from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from cronsim import CronSim, CronSimError

from relay.schedule import cron
from relay.schedule.cron import (
    Schedule,
    ScheduleError,
    TimezoneError,
    next_fire,
    next_fires,
    parse_schedule,
    parse_timezone,
)

NEW_YORK = ZoneInfo("America/New_York")
BERLIN = ZoneInfo("Europe/Berlin")
SYDNEY = ZoneInfo("Australia/Sydney")
LORD_HOWE = ZoneInfo("Australia/Lord_Howe")
CAIRO = ZoneInfo("Africa/Cairo")


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def fires(expression: str, tz: ZoneInfo, after: datetime, count: int):
    return next_fires(parse_schedule(expression), tz, after, count)


# Parsing and the calendar


@pytest.mark.parametrize(
    ("alias", "fields", "expected"),
    [
        ("@yearly", "0 0 1 1 *", [utc(2026, 1, 1), utc(2027, 1, 1)]),
        ("@annually", "0 0 1 1 *", [utc(2026, 1, 1), utc(2027, 1, 1)]),
        ("@monthly", "0 0 1 * *", [utc(2025, 2, 1), utc(2025, 3, 1)]),
        ("@weekly", "0 0 * * 0", [utc(2025, 1, 19), utc(2025, 1, 26)]),
        ("@daily", "0 0 * * *", [utc(2025, 1, 16), utc(2025, 1, 17)]),
        ("@midnight", "0 0 * * *", [utc(2025, 1, 16), utc(2025, 1, 17)]),
        ("@hourly", "0 * * * *", [utc(2025, 1, 15, 11), utc(2025, 1, 15, 12)]),
    ],
)
def test_every_alias_fires_like_its_five_field_form(alias, fields, expected):
    schedule = parse_schedule(alias)

    assert schedule.fields == fields
    assert next_fires(schedule, UTC, utc(2025, 1, 15, 10, 30), 2) == expected


def test_aliases_are_case_insensitive():
    assert parse_schedule("@Daily").fields == "0 0 * * *"


def test_schedule_keeps_the_stripped_expression_and_normalized_fields():
    schedule = parse_schedule("  0  9 * jan,Jul mon-fri \t")

    assert isinstance(schedule, Schedule)
    assert schedule.expression == "0  9 * jan,Jul mon-fri"
    assert schedule.fields == "0 9 * JAN,JUL MON-FRI"
    assert schedule == parse_schedule("0  9 * jan,Jul mon-fri")


def test_month_and_weekday_names_are_case_insensitive():
    assert fires("0 9 * jan,Jul mon-fri", UTC, utc(2025, 1, 30, 12), 3) == [
        utc(2025, 1, 31, 9),
        utc(2025, 7, 1, 9),
        utc(2025, 7, 2, 9),
    ]


def test_lists_ranges_and_stepped_ranges():
    assert fires("5,10-12,40-50/5 * * * *", UTC, utc(2025, 1, 1), 8) == [
        utc(2025, 1, 1, 0, 5),
        utc(2025, 1, 1, 0, 10),
        utc(2025, 1, 1, 0, 11),
        utc(2025, 1, 1, 0, 12),
        utc(2025, 1, 1, 0, 40),
        utc(2025, 1, 1, 0, 45),
        utc(2025, 1, 1, 0, 50),
        utc(2025, 1, 1, 1, 5),
    ]


def test_stepped_hours():
    assert fires("0 9-17/4 * * *", UTC, utc(2025, 1, 1), 4) == [
        utc(2025, 1, 1, 9),
        utc(2025, 1, 1, 13),
        utc(2025, 1, 1, 17),
        utc(2025, 1, 2, 9),
    ]


def test_a_start_with_a_step_runs_to_the_end_of_the_field():
    assert fires("50/5 * * * *", UTC, utc(2025, 1, 1), 3) == [
        utc(2025, 1, 1, 0, 50),
        utc(2025, 1, 1, 0, 55),
        utc(2025, 1, 1, 1, 50),
    ]


def test_day_of_week_zero_and_seven_are_both_sunday():
    sundays = [utc(2025, 1, 5), utc(2025, 1, 12)]

    assert fires("0 0 * * 0", UTC, utc(2025, 1, 1), 2) == sundays
    assert fires("0 0 * * 7", UTC, utc(2025, 1, 1), 2) == sundays
    assert fires("0 0 * * 5-7", UTC, utc(2025, 1, 1), 4) == [
        utc(2025, 1, 3),
        utc(2025, 1, 4),
        utc(2025, 1, 5),
        utc(2025, 1, 10),
    ]


def test_restricted_day_of_month_and_day_of_week_match_either():
    assert fires("0 0 13 * FRI", UTC, utc(2025, 6, 1), 7) == [
        utc(2025, 6, 6),
        utc(2025, 6, 13),
        utc(2025, 6, 20),
        utc(2025, 6, 27),
        utc(2025, 7, 4),
        utc(2025, 7, 11),
        utc(2025, 7, 13),
    ]


def test_a_day_field_starting_with_star_makes_both_day_fields_required():
    # As in cronie: "*/2" is not "restricted", so the OR rule does not apply
    # and the job runs on odd-numbered days that are Mondays.
    assert fires("0 0 */2 * MON", UTC, utc(2025, 6, 1), 4) == [
        utc(2025, 6, 9),
        utc(2025, 6, 23),
        utc(2025, 7, 7),
        utc(2025, 7, 21),
    ]


def test_only_one_restricted_day_field_is_used_alone():
    assert fires("0 0 1 * *", UTC, utc(2025, 6, 1), 2) == [
        utc(2025, 7, 1),
        utc(2025, 8, 1),
    ]
    assert fires("0 0 * * MON", UTC, utc(2025, 6, 1), 2) == [
        utc(2025, 6, 2),
        utc(2025, 6, 9),
    ]


def test_last_day_of_the_month():
    assert fires("0 0 L * *", UTC, utc(2024, 1, 15), 4) == [
        utc(2024, 1, 31),
        utc(2024, 2, 29),
        utc(2024, 3, 31),
        utc(2024, 4, 30),
    ]


def test_last_weekday_of_the_month():
    assert fires("0 0 LW * *", UTC, utc(2025, 5, 1), 4) == [
        utc(2025, 5, 30),
        utc(2025, 6, 30),
        utc(2025, 7, 31),
        utc(2025, 8, 29),
    ]


def test_last_friday_of_the_month():
    assert fires("0 0 * * 5L", UTC, utc(2025, 1, 1), 3) == [
        utc(2025, 1, 31),
        utc(2025, 2, 28),
        utc(2025, 3, 28),
    ]


def test_nth_weekday_of_the_month():
    assert fires("0 0 * * MON#2", UTC, utc(2025, 1, 1), 3) == [
        utc(2025, 1, 13),
        utc(2025, 2, 10),
        utc(2025, 3, 10),
    ]


def test_a_fifth_monday_in_february_is_found_decades_ahead():
    assert fires("0 0 * 2 MON#5", UTC, utc(2025, 1, 1), 2) == [
        utc(2044, 2, 29),
        utc(2072, 2, 29),
    ]


def test_a_rare_day_is_found_across_decades_of_dst_changes():
    assert fires("0 0 * 2 MON#5", BERLIN, utc(2025, 1, 1), 2) == [
        utc(2044, 2, 28, 23),
        utc(2072, 2, 28, 23),
    ]
    assert fires("* 0 * 2 MON#5", BERLIN, utc(2025, 1, 1), 2) == [
        utc(2044, 2, 28, 23, 0),
        utc(2044, 2, 28, 23, 1),
    ]


def test_leap_day_fires_only_in_leap_years():
    assert fires("0 0 29 2 *", UTC, utc(2025, 1, 1), 2) == [
        utc(2028, 2, 29),
        utc(2032, 2, 29),
    ]
    # 2100 is not a leap year.
    assert fires("0 0 29 2 *", UTC, utc(2096, 3, 1), 1) == [utc(2104, 2, 29)]


def test_leap_day_in_a_zone_ahead_of_utc():
    assert fires("0 0 29 2 *", BERLIN, utc(2025, 1, 1), 1) == [
        utc(2028, 2, 28, 23),
    ]


def test_year_rollover():
    assert fires("59 23 31 12 *", UTC, utc(2024, 12, 31, 23, 59), 1) == [
        utc(2025, 12, 31, 23, 59),
    ]
    assert fires("*/20 * * * *", UTC, utc(2025, 12, 31, 23, 50), 2) == [
        utc(2026, 1, 1, 0, 0),
        utc(2026, 1, 1, 0, 20),
    ]
    assert fires("@yearly", BERLIN, utc(2025, 12, 31, 12), 1) == [
        utc(2025, 12, 31, 23),
    ]


def test_a_reference_exactly_on_a_fire_time_gives_the_next_one():
    schedule = parse_schedule("*/15 * * * *")

    assert next_fire(schedule, UTC, utc(2025, 1, 1, 10, 15)) == utc(2025, 1, 1, 10, 30)


def test_fractions_of_a_second_count_in_the_reference():
    schedule = parse_schedule("*/15 * * * *")
    just_before = datetime(2025, 1, 1, 10, 14, 59, 999999, tzinfo=UTC)
    just_after = datetime(2025, 1, 1, 10, 15, 0, 1, tzinfo=UTC)

    assert next_fire(schedule, UTC, just_before) == utc(2025, 1, 1, 10, 15)
    assert next_fire(schedule, UTC, just_after) == utc(2025, 1, 1, 10, 30)


def test_the_reference_may_carry_any_offset_and_results_are_utc():
    schedule = parse_schedule("0 12 * * *")
    india = datetime(
        2025, 1, 1, 15, 30, tzinfo=timezone(timedelta(hours=5, minutes=30))
    )

    fire = next_fire(schedule, BERLIN, india)

    assert fire == utc(2025, 1, 1, 11)
    assert fire.tzinfo is UTC
    assert next_fire(schedule, BERLIN, utc(2025, 1, 1, 10)) == fire


def test_next_fires_returns_consecutive_times_and_nothing_for_zero():
    schedule = parse_schedule("@hourly")

    assert next_fires(schedule, UTC, utc(2025, 1, 1), 0) == []
    assert next_fires(schedule, UTC, utc(2025, 1, 1), 3) == [
        utc(2025, 1, 1, 1),
        utc(2025, 1, 1, 2),
        utc(2025, 1, 1, 3),
    ]


def test_a_naive_reference_time_is_refused():
    with pytest.raises(ValueError, match="timezone-aware"):
        next_fire(parse_schedule("@daily"), UTC, datetime(2025, 1, 1))


@pytest.mark.parametrize(
    ("expression", "fixed"),
    [
        ("30 2 * * *", True),
        ("0,30 1-3 * * *", True),
        ("0-59 2 * * *", True),
        ("@daily", True),
        ("*/5 2 * * *", False),
        ("0 * * * *", False),
        ("0 */2 * * *", False),
        ("@hourly", False),
    ],
)
def test_a_job_is_fixed_time_unless_minute_or_hour_starts_with_star(expression, fixed):
    assert parse_schedule(expression).fixed_time is fixed


@pytest.mark.parametrize(
    ("expression", "reason"),
    [
        # cronsim: accepts the six fields, the oversized steps and L/5, and
        # refuses the rest, the aliases included, with "Bad <field>" or
        # "Wrong number of fields".
        ("", "schedule is empty"),
        ("   ", "schedule is empty"),
        (None, "must be a string, not NoneType"),
        (5, "must be a string, not int"),
        ("* * * *", "expected 5 fields"),
        ("0 0 * * * *", "got 6"),
        ("60 * * * *", "minute 60 is out of range 0-59"),
        ("0 24 * * *", "hour 24 is out of range 0-23"),
        ("0 0 0 * *", "day-of-month 0 is out of range 1-31"),
        ("0 0 32 * *", "day-of-month 32 is out of range 1-31"),
        ("0 0 * 13 *", "month 13 is out of range 1-12"),
        ("0 0 * * 8", "day-of-week 8 is out of range 0-7"),
        ("a * * * *", "minute value 'a' is not a number"),
        ("0 0 * * JAN", "day-of-week value 'JAN' is not a number or a name"),
        ("-5 * * * *", "minute value is missing"),
        ("5-1 * * * *", "minute range '5-1' runs backwards"),
        ("0 0 * * MON-SUN", "day-of-week range 'MON-SUN' runs backwards"),
        ("1,,2 * * * *", "empty list item"),
        ("*/0 * * * *", "step must be at least 1"),
        ("*/x * * * *", "step 'x' is not a number"),
        ("*/90 * * * *", "step 90 is larger than the minute field"),
        ("0 */25 * * *", "step 25 is larger than the hour field"),
        ("0 0 */32 * *", "step 32 is larger than the day-of-month field"),
        ("0 0 * */13 *", "step 13 is larger than the month field"),
        ("0 0 * * */8", "step 8 is larger than the day-of-week field"),
        ("0 0 30 2 *", "day 30 never occurs in February"),
        ("0 0 31 4 *", "day 31 never occurs in April"),
        ("0 0 30,31 2 *", "days 30 and 31 never occur in February"),
        ("0 0 31 2,4 */2", "day 31 never occurs in February or April"),
        ("0 0 */10 4 SUN#5", "no date matches both the day-of-month"),
        ("0 0 * * 1#6", "the number after '#' must be 1 to 5"),
        ("0 0 * * L", "needs a weekday before it"),
        ("0 0 15W * *", "only L and LW"),
        ("0 0 L/5 * *", "only L and LW"),
        ("0 0 * * FRIL", "the weekday before 'L' must be a number 0-7"),
        ("0 0 ? * MON", "'?' is not supported"),
        ("@reboot", "@reboot has no fire time"),
        ("@fortnightly", "unknown alias '@fortnightly'"),
    ],
)
def test_bad_schedules_are_refused_with_the_reason(expression, reason):
    with pytest.raises(ScheduleError, match=re.escape(reason)):
        parse_schedule(expression)


def test_an_error_of_cronsim_itself_names_the_field_and_its_text(monkeypatch):
    # Our checks run first and catch everything cronsim 2.9 refuses, so its
    # own refusal is forced here.
    def refuse(fields, start):
        raise CronSimError("Bad hour")

    monkeypatch.setattr(cron, "CronSim", refuse)

    with pytest.raises(ScheduleError, match=re.escape("hour field '7' is not valid")):
        parse_schedule("1 7 * * 3")


def test_schedule_and_timezone_errors_are_value_errors():
    assert issubclass(ScheduleError, ValueError)
    assert issubclass(TimezoneError, ValueError)


def test_a_schedule_that_dst_always_skips_reports_that_it_never_fires():
    # cronsim: raises StopIteration.
    # The fifth Sunday of March is the last one, and in Berlin 02:xx never
    # happens on it; an interval job does not catch up on skipped times.
    with pytest.raises(ScheduleError, match="no fire time within 100 years"):
        next_fire(parse_schedule("* 2 * 3 SUN#5"), BERLIN, utc(2025, 1, 1))

    # A fixed-time job does catch up, at the jump.
    assert fires("30 2 * 3 SUN#5", BERLIN, utc(2025, 1, 1), 1) == [
        utc(2025, 3, 30, 1),
    ]


# Time zone names


@pytest.mark.parametrize(
    "name", ["UTC", "Europe/Berlin", "America/Argentina/Buenos_Aires", "Etc/GMT+5"]
)
def test_iana_names_are_accepted(name):
    assert parse_timezone(name).key == name


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("", "time zone is empty"),
        ("  ", "time zone is empty"),
        (None, "must be a string"),
        ("/etc/localtime", "looks like a file path"),
        ("/usr/share/zoneinfo/UTC", "looks like a file path"),
        ("../etc/passwd", "looks like a file path"),
        ("./UTC", "looks like a file path"),
        ("Europe/../UTC", "looks like a file path"),
        ("localtime", "is not accepted"),
        ("posixrules", "is not accepted"),
        ("Factory", "is not accepted"),
        ("posix/Europe/Berlin", "is not accepted"),
        ("right/UTC", "is not accepted"),
        ("Mars/Olympus_Mons", "unknown time zone 'Mars/Olympus_Mons'"),
        ("europe/berlin", "did you mean Europe/Berlin"),
    ],
)
def test_bad_time_zones_are_refused_with_the_reason(name, reason):
    with pytest.raises(TimezoneError, match=re.escape(reason)):
        parse_timezone(name)


# DST: Europe/Berlin, 2025-03-30 02:00 CET -> 03:00 CEST (01:00 UTC) and
# 2025-10-26 03:00 CEST -> 02:00 CET (01:00 UTC).


def test_fixed_time_job_skipped_by_spring_forward_fires_at_the_jump():
    assert fires("30 2 * * *", BERLIN, utc(2025, 3, 29, 12), 3) == [
        utc(2025, 3, 30, 1, 0),
        utc(2025, 3, 31, 0, 30),
        utc(2025, 4, 1, 0, 30),
    ]


def test_several_skipped_wall_times_fire_once_at_the_jump():
    assert fires("0,30 2 * * *", BERLIN, utc(2025, 3, 29, 12), 3) == [
        utc(2025, 3, 30, 1, 0),
        utc(2025, 3, 31, 0, 0),
        utc(2025, 3, 31, 0, 30),
    ]
    # 02:00 is skipped and 03:00 is the instant of the jump: one run.
    assert fires("0 2,3 * * *", BERLIN, utc(2025, 3, 29, 12), 3) == [
        utc(2025, 3, 30, 1, 0),
        utc(2025, 3, 31, 0, 0),
        utc(2025, 3, 31, 1, 0),
    ]


def test_interval_job_does_not_fire_in_the_skipped_hour():
    assert fires("*/30 2 * * *", BERLIN, utc(2025, 3, 29, 12), 3) == [
        utc(2025, 3, 31, 0, 0),
        utc(2025, 3, 31, 0, 30),
        utc(2025, 4, 1, 0, 0),
    ]


def test_fixed_time_job_in_a_repeated_hour_fires_once_at_the_first_pass():
    assert fires("30 2 * * *", BERLIN, utc(2025, 10, 25, 12), 2) == [
        utc(2025, 10, 26, 0, 30),
        utc(2025, 10, 27, 1, 30),
    ]


def test_interval_job_fires_in_both_passes_of_a_repeated_hour():
    assert fires("*/30 2 * * *", BERLIN, utc(2025, 10, 25, 12), 5) == [
        utc(2025, 10, 26, 0, 0),
        utc(2025, 10, 26, 0, 30),
        utc(2025, 10, 26, 1, 0),
        utc(2025, 10, 26, 1, 30),
        utc(2025, 10, 27, 1, 0),
    ]


def test_hourly_job_fires_every_real_hour_across_both_changes():
    assert fires("@hourly", BERLIN, utc(2025, 3, 29, 23, 30), 3) == [
        utc(2025, 3, 30, 0),
        utc(2025, 3, 30, 1),
        utc(2025, 3, 30, 2),
    ]
    assert fires("@hourly", BERLIN, utc(2025, 10, 25, 23, 30), 3) == [
        utc(2025, 10, 26, 0),
        utc(2025, 10, 26, 1),
        utc(2025, 10, 26, 2),
    ]


# DST: America/New_York, 2025-03-09 02:00 EST -> 03:00 EDT (07:00 UTC) and
# 2025-11-02 02:00 EDT -> 01:00 EST (06:00 UTC).


def test_new_york_spring_forward():
    assert fires("30 2 * * *", NEW_YORK, utc(2025, 3, 8, 12), 2) == [
        utc(2025, 3, 9, 7, 0),
        utc(2025, 3, 10, 6, 30),
    ]
    assert fires("*/20 2 * * *", NEW_YORK, utc(2025, 3, 8, 12), 3) == [
        utc(2025, 3, 10, 6, 0),
        utc(2025, 3, 10, 6, 20),
        utc(2025, 3, 10, 6, 40),
    ]


def test_new_york_fall_back():
    assert fires("30 1 * * *", NEW_YORK, utc(2025, 11, 1, 12), 2) == [
        utc(2025, 11, 2, 5, 30),
        utc(2025, 11, 3, 6, 30),
    ]
    assert fires("*/30 1 * * *", NEW_YORK, utc(2025, 11, 1, 12), 5) == [
        utc(2025, 11, 2, 5, 0),
        utc(2025, 11, 2, 5, 30),
        utc(2025, 11, 2, 6, 0),
        utc(2025, 11, 2, 6, 30),
        utc(2025, 11, 3, 6, 0),
    ]


def test_fixed_time_job_from_the_second_pass_of_a_repeated_hour_is_not_in_the_past():
    # cronsim: answers 2025-11-02 05:30 UTC, before the reference.
    second_pass = datetime(2025, 11, 2, 1, 10, fold=1, tzinfo=NEW_YORK)
    assert second_pass.astimezone(UTC) == utc(2025, 11, 2, 6, 10)

    assert fires("30 1 * * *", NEW_YORK, second_pass, 1) == [utc(2025, 11, 3, 6, 30)]
    assert fires("30 1 * * *", NEW_YORK, utc(2025, 11, 2, 6, 10), 1) == [
        utc(2025, 11, 3, 6, 30),
    ]


def test_fixed_time_job_from_the_first_pass_skips_the_second_pass():
    first_pass = datetime(2025, 11, 2, 1, 10, fold=0, tzinfo=NEW_YORK)
    assert first_pass.astimezone(UTC) == utc(2025, 11, 2, 5, 10)

    assert fires("30 1 * * *", NEW_YORK, first_pass, 2) == [
        utc(2025, 11, 2, 5, 30),
        utc(2025, 11, 3, 6, 30),
    ]
    # After 01:45 EDT, the 01:30 EST still to come is a repeat: no run.
    late_first_pass = datetime(2025, 11, 2, 1, 45, fold=0, tzinfo=NEW_YORK)
    assert fires("30 1 * * *", NEW_YORK, late_first_pass, 1) == [
        utc(2025, 11, 3, 6, 30),
    ]


def test_interval_job_from_either_pass_of_a_repeated_hour():
    first_pass = datetime(2025, 11, 2, 1, 10, fold=0, tzinfo=NEW_YORK)
    second_pass = datetime(2025, 11, 2, 1, 10, fold=1, tzinfo=NEW_YORK)

    assert fires("*/30 1 * * *", NEW_YORK, first_pass, 3) == [
        utc(2025, 11, 2, 5, 30),
        utc(2025, 11, 2, 6, 0),
        utc(2025, 11, 2, 6, 30),
    ]
    assert fires("*/30 1 * * *", NEW_YORK, second_pass, 2) == [
        utc(2025, 11, 2, 6, 30),
        utc(2025, 11, 3, 6, 0),
    ]


def test_a_reference_exactly_on_a_fire_time_inside_a_repeated_hour():
    assert fires("30 1 * * *", NEW_YORK, utc(2025, 11, 2, 5, 30), 1) == [
        utc(2025, 11, 3, 6, 30),
    ]
    assert fires("*/30 1 * * *", NEW_YORK, utc(2025, 11, 2, 5, 30), 1) == [
        utc(2025, 11, 2, 6, 0),
    ]
    assert fires("*/30 1 * * *", NEW_YORK, utc(2025, 11, 2, 6, 0), 1) == [
        utc(2025, 11, 2, 6, 30),
    ]


# DST: Australia/Sydney (southern hemisphere), 2025-04-06 03:00 AEDT ->
# 02:00 AEST (16:00 UTC the day before) and 2025-10-05 02:00 AEST -> 03:00
# AEDT (16:00 UTC the day before).


def test_sydney_fall_back_in_april():
    assert fires("30 2 * * *", SYDNEY, utc(2025, 4, 5), 2) == [
        utc(2025, 4, 5, 15, 30),
        utc(2025, 4, 6, 16, 30),
    ]
    assert fires("*/30 2 * * *", SYDNEY, utc(2025, 4, 5), 5) == [
        utc(2025, 4, 5, 15, 0),
        utc(2025, 4, 5, 15, 30),
        utc(2025, 4, 5, 16, 0),
        utc(2025, 4, 5, 16, 30),
        utc(2025, 4, 6, 16, 0),
    ]


def test_sydney_spring_forward_in_october():
    assert fires("30 2 * * *", SYDNEY, utc(2025, 10, 4), 2) == [
        utc(2025, 10, 4, 16, 0),
        utc(2025, 10, 5, 15, 30),
    ]
    assert fires("*/30 2 * * *", SYDNEY, utc(2025, 10, 4), 2) == [
        utc(2025, 10, 5, 15, 0),
        utc(2025, 10, 5, 15, 30),
    ]


def test_sydney_fixed_time_job_from_the_second_pass():
    # cronsim: answers 2025-04-05 15:45 UTC, before the reference.
    second_pass = datetime(2025, 4, 6, 2, 30, fold=1, tzinfo=SYDNEY)

    assert fires("45 2 * * *", SYDNEY, second_pass, 1) == [utc(2025, 4, 6, 16, 45)]


# DST: Australia/Lord_Howe shifts by 30 minutes: 2025-04-06 02:00 +11 ->
# 01:30 +10:30 (15:00 UTC the day before) and 2025-10-05 02:00 +10:30 ->
# 02:30 +11 (15:30 UTC the day before).


def test_lord_howe_fixed_time_job_in_the_skipped_half_hour_fires_at_the_jump():
    assert fires("15 2 * * *", LORD_HOWE, utc(2025, 10, 4), 2) == [
        utc(2025, 10, 4, 15, 30),
        utc(2025, 10, 5, 15, 15),
    ]


def test_lord_howe_interval_job_skips_the_skipped_half_hour_only():
    assert fires("*/15 2 * * *", LORD_HOWE, utc(2025, 10, 4), 3) == [
        utc(2025, 10, 4, 15, 30),
        utc(2025, 10, 4, 15, 45),
        utc(2025, 10, 5, 15, 0),
    ]


def test_lord_howe_hourly_at_half_past_fires_right_after_the_jump():
    # cronsim: misses 02:30 +11 (15:30 UTC).
    assert fires("30 * * * *", LORD_HOWE, utc(2025, 10, 4, 14), 3) == [
        utc(2025, 10, 4, 15, 0),
        utc(2025, 10, 4, 15, 30),
        utc(2025, 10, 4, 16, 30),
    ]


def test_lord_howe_interval_jobs_keep_their_times_after_the_shift():
    # cronsim: misses 23:00 +11 on the day of the jump and 00:00 the next day.
    assert fires("*/30 23 * * *", LORD_HOWE, utc(2025, 10, 4, 13), 3) == [
        utc(2025, 10, 5, 12, 0),
        utc(2025, 10, 5, 12, 30),
        utc(2025, 10, 6, 12, 0),
    ]
    assert fires("*/30 0 * * *", LORD_HOWE, utc(2025, 10, 5), 3) == [
        utc(2025, 10, 5, 13, 0),
        utc(2025, 10, 5, 13, 30),
        utc(2025, 10, 6, 13, 0),
    ]


def test_lord_howe_fixed_time_job_in_the_repeated_half_hour_fires_once():
    assert fires("45 1 * * *", LORD_HOWE, utc(2025, 4, 5), 2) == [
        utc(2025, 4, 5, 14, 45),
        utc(2025, 4, 6, 15, 15),
    ]


def test_lord_howe_interval_job_fires_in_both_passes_of_the_repeated_half_hour():
    # cronsim: loses the second pass.
    assert fires("*/15 1 * * *", LORD_HOWE, utc(2025, 4, 5), 7) == [
        utc(2025, 4, 5, 14, 0),
        utc(2025, 4, 5, 14, 15),
        utc(2025, 4, 5, 14, 30),
        utc(2025, 4, 5, 14, 45),
        utc(2025, 4, 5, 15, 0),
        utc(2025, 4, 5, 15, 15),
        utc(2025, 4, 6, 14, 30),
    ]
    assert fires("*/30 2 * * *", LORD_HOWE, utc(2025, 4, 5, 12), 2) == [
        utc(2025, 4, 5, 15, 30),
        utc(2025, 4, 5, 16, 0),
    ]


def test_lord_howe_references_inside_the_repeated_half_hour():
    first_pass = datetime(2025, 4, 6, 1, 40, fold=0, tzinfo=LORD_HOWE)
    second_pass = datetime(2025, 4, 6, 1, 40, fold=1, tzinfo=LORD_HOWE)

    assert fires("45 1 * * *", LORD_HOWE, first_pass, 1) == [utc(2025, 4, 5, 14, 45)]
    # cronsim: answers 14:45 UTC, before the reference.
    assert fires("45 1 * * *", LORD_HOWE, second_pass, 1) == [utc(2025, 4, 6, 15, 15)]
    assert fires("*/15 1 * * *", LORD_HOWE, second_pass, 2) == [
        utc(2025, 4, 5, 15, 15),
        utc(2025, 4, 6, 14, 30),
    ]


# DST: Africa/Cairo changes at midnight. tzdata 2025: on Friday 2025-04-25 the
# day starts at 01:00 (00:00 EET -> 01:00 EEST, 22:00 UTC the day before), and
# on Thursday 2025-10-30 the clock goes from 24:00 EEST back to 23:00 EET
# (21:00 UTC), so it is Thursday's last hour that repeats, not midnight.


def test_cairo_midnight_job_on_a_day_that_starts_at_one_fires_at_the_jump():
    assert fires("0 0 * * *", CAIRO, utc(2025, 4, 24, 12), 2) == [
        utc(2025, 4, 24, 22),
        utc(2025, 4, 25, 21),
    ]


def test_cairo_interval_job_in_the_missing_first_hour_does_not_fire():
    assert fires("*/30 0 * * *", CAIRO, utc(2025, 4, 24, 12), 2) == [
        utc(2025, 4, 25, 21, 0),
        utc(2025, 4, 25, 21, 30),
    ]
    assert fires("*/30 * * * *", CAIRO, utc(2025, 4, 24, 21, 15), 3) == [
        utc(2025, 4, 24, 21, 30),
        utc(2025, 4, 24, 22, 0),
        utc(2025, 4, 24, 22, 30),
    ]


def test_cairo_repeats_the_last_hour_of_thursday_not_midnight():
    assert fires("30 23 * * *", CAIRO, utc(2025, 10, 30, 12), 2) == [
        utc(2025, 10, 30, 20, 30),
        utc(2025, 10, 31, 21, 30),
    ]
    assert fires("*/30 23 * * *", CAIRO, utc(2025, 10, 30, 12), 5) == [
        utc(2025, 10, 30, 20, 0),
        utc(2025, 10, 30, 20, 30),
        utc(2025, 10, 30, 21, 0),
        utc(2025, 10, 30, 21, 30),
        utc(2025, 10, 31, 21, 0),
    ]
    assert fires("@daily", CAIRO, utc(2025, 10, 30, 12), 2) == [
        utc(2025, 10, 30, 22),
        utc(2025, 10, 31, 22),
    ]


def test_cairo_fixed_time_job_from_the_second_pass_of_thursdays_last_hour():
    # cronsim: answers 2025-10-30 20:30 UTC, before the reference.
    second_pass = datetime(2025, 10, 30, 23, 10, fold=1, tzinfo=CAIRO)

    assert fires("30 23 * * *", CAIRO, second_pass, 1) == [utc(2025, 10, 31, 21, 30)]


# Against a minute-by-minute model of cronie's clock loop

# 2025 offset changes, found by scanning tzdata with zoneinfo.
TRANSITIONS = {
    NEW_YORK: [utc(2025, 3, 9, 7), utc(2025, 11, 2, 6)],
    BERLIN: [utc(2025, 3, 30, 1), utc(2025, 10, 26, 1)],
    SYDNEY: [utc(2025, 4, 5, 16), utc(2025, 10, 4, 16)],
    LORD_HOWE: [utc(2025, 4, 5, 15), utc(2025, 10, 4, 15, 30)],
    CAIRO: [utc(2025, 4, 24, 22), utc(2025, 10, 30, 21)],
}

MODEL_EXPRESSIONS = [
    "30 2 * * *",
    "15 1,2,3 * * *",
    "0 0 * * *",
    "30 23 * * *",
    "0-59/20 1,2 * * *",
    "*/15 * * * *",
    "*/30 2 * * *",
    "*/10 1 * * *",
    "*/30 0,23 * * *",
    "30 * * * *",
]

MINUTE = timedelta(minutes=1)


def cronie_model(expression: str, tz: ZoneInfo, start: datetime, end: datetime):
    """Fire times cronie would produce, walking real minutes from `start`.

    Interval jobs run whenever the wall clock shows a matching minute. Fixed
    jobs run for every wall minute the clock has not shown before, all at
    once when it jumps ahead, never again when it goes back. Matching wall
    minutes come from cronsim on a plain, zone-less clock.
    """
    minute_field, hour_field = expression.split()[:2]
    fixed = not minute_field.startswith("*") and not hour_field.startswith("*")

    def wall(instant: datetime) -> datetime:
        return instant.astimezone(tz).replace(tzinfo=None)

    margin = timedelta(hours=3)
    matching = set()
    for time in CronSim(expression, wall(start) - margin):
        if time > wall(end) + margin:
            break
        matching.add(time)

    fired = []
    latest = wall(start)
    instant = start
    while instant < end:
        instant += MINUTE
        shown = wall(instant)
        if fixed:
            missed = shown - latest
            candidates = (shown - k * MINUTE for k in range(missed // MINUTE))
            if any(c in matching for c in candidates):
                fired.append(instant)
        elif shown in matching:
            fired.append(instant)
        latest = max(latest, shown)
    return fired


@pytest.mark.parametrize("tz", list(TRANSITIONS), ids=str)
def test_fire_times_match_a_model_of_cronies_clock_around_every_change(tz):
    # cronsim: fails in every zone, for fixed-time jobs asked from the second
    # pass of the repeated hour, and at Lord Howe for interval jobs too.
    for jump in TRANSITIONS[tz]:
        # References within 4 hours of the change; the model runs a day
        # further so that the answer for each of them is known.
        start, end = jump - timedelta(hours=4), jump + timedelta(hours=28)

        for expression in MODEL_EXPRESSIONS:
            expected = cronie_model(expression, tz, start, end)
            schedule = parse_schedule(expression)

            for k in range(0, 8 * 60, 10):
                reference = start + k * MINUTE
                later = [t for t in expected if t > reference]
                if later:
                    got = next_fire(schedule, tz, reference.astimezone(tz))
                    assert got == later[0], (expression, reference)
