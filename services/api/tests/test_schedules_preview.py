"""Previewing a schedule's fire times, on the wall clock of its zone."""

import pytest
from api_support import enroll


async def preview(client, person, status=200, **body):
    response = await client.post(
        "/schedules/preview", json=body, headers=person.headers
    )
    assert response.status == status, await response.text()
    return await response.json()


async def fire_times(client, person, **body):
    return (await preview(client, person, **body))["fire_times"]


async def test_five_fire_times_after_now_in_utc_are_shown_by_default(client, user):
    assert await fire_times(client, user, schedule="0 10 * * *") == [
        "2026-01-05T10:00:00+00:00",
        "2026-01-06T10:00:00+00:00",
        "2026-01-07T10:00:00+00:00",
        "2026-01-08T10:00:00+00:00",
        "2026-01-09T10:00:00+00:00",
    ]


@pytest.mark.parametrize("count", [1, 2, 100])
async def test_as_many_fire_times_as_asked_for_are_shown(client, user, count):
    times = await fire_times(client, user, schedule="* * * * *", count=count)

    assert len(times) == count
    assert times[0] == "2026-01-05T10:00:00+00:00"


async def test_fire_times_are_strictly_after_the_given_moment(client, user):
    times = await fire_times(
        client, user, schedule="0 10 * * *", after="2026-01-05T10:00:00+00:00", count=2
    )

    assert times == ["2026-01-06T10:00:00+00:00", "2026-01-07T10:00:00+00:00"]


async def test_fire_times_are_shown_at_the_zones_offset_whatever_the_afters(
    client, user
):
    times = await fire_times(
        client,
        user,
        schedule="0 10 * * *",
        timezone="Europe/Berlin",
        after="2026-01-05T10:00:00+09:00",
        count=2,
    )

    # 10:00 in Tokyo's offset is 02:00 in Berlin, so Berlin's 10:00 is still ahead.
    assert times == ["2026-01-05T10:00:00+01:00", "2026-01-06T10:00:00+01:00"]


async def test_a_fixed_time_skipped_by_new_york_springing_forward_fires_at_the_jump(
    client, user
):
    times = await fire_times(
        client,
        user,
        schedule="30 2 * * *",
        timezone="America/New_York",
        after="2026-03-07T00:00:00-05:00",
        count=3,
    )

    assert times == [
        "2026-03-07T02:30:00-05:00",
        "2026-03-08T03:00:00-04:00",
        "2026-03-09T02:30:00-04:00",
    ]


async def test_an_hourly_job_has_no_fire_in_the_hour_new_york_skips(client, user):
    times = await fire_times(
        client,
        user,
        schedule="30 * * * *",
        timezone="America/New_York",
        after="2026-03-08T00:00:00-05:00",
        count=3,
    )

    assert times == [
        "2026-03-08T00:30:00-05:00",
        "2026-03-08T01:30:00-05:00",
        "2026-03-08T03:30:00-04:00",
    ]


async def test_a_fixed_time_repeated_by_new_york_falling_back_fires_once(client, user):
    times = await fire_times(
        client,
        user,
        schedule="30 1 * * *",
        timezone="America/New_York",
        after="2026-10-31T00:00:00-04:00",
        count=3,
    )

    assert times == [
        "2026-10-31T01:30:00-04:00",
        "2026-11-01T01:30:00-04:00",
        "2026-11-02T01:30:00-05:00",
    ]


async def test_an_hourly_job_fires_in_both_passes_of_new_yorks_repeated_hour(
    client, user
):
    times = await fire_times(
        client,
        user,
        schedule="30 * * * *",
        timezone="America/New_York",
        after="2026-11-01T00:00:00-04:00",
        count=4,
    )

    assert times == [
        "2026-11-01T00:30:00-04:00",
        "2026-11-01T01:30:00-04:00",
        "2026-11-01T01:30:00-05:00",
        "2026-11-01T02:30:00-05:00",
    ]


async def test_a_fixed_time_skipped_by_berlin_springing_forward_fires_at_the_jump(
    client, user
):
    times = await fire_times(
        client,
        user,
        schedule="30 2 * * *",
        timezone="Europe/Berlin",
        after="2026-03-28T00:00:00+01:00",
        count=3,
    )

    assert times == [
        "2026-03-28T02:30:00+01:00",
        "2026-03-29T03:00:00+02:00",
        "2026-03-30T02:30:00+02:00",
    ]


async def test_an_interval_job_has_no_fire_in_the_hour_berlin_skips(client, user):
    times = await fire_times(
        client,
        user,
        schedule="*/30 2 * * *",
        timezone="Europe/Berlin",
        after="2026-03-29T00:00:00+01:00",
        count=2,
    )

    assert times == ["2026-03-30T02:00:00+02:00", "2026-03-30T02:30:00+02:00"]


async def test_a_fixed_time_repeated_by_berlin_falling_back_fires_once(client, user):
    times = await fire_times(
        client,
        user,
        schedule="30 2 * * *",
        timezone="Europe/Berlin",
        after="2026-10-24T00:00:00+02:00",
        count=3,
    )

    assert times == [
        "2026-10-24T02:30:00+02:00",
        "2026-10-25T02:30:00+02:00",
        "2026-10-26T02:30:00+01:00",
    ]


async def test_an_interval_job_fires_in_both_passes_of_berlins_repeated_hour(
    client, user
):
    times = await fire_times(
        client,
        user,
        schedule="*/30 2 * * *",
        timezone="Europe/Berlin",
        after="2026-10-25T00:00:00+02:00",
        count=4,
    )

    assert times == [
        "2026-10-25T02:00:00+02:00",
        "2026-10-25T02:30:00+02:00",
        "2026-10-25T02:00:00+01:00",
        "2026-10-25T02:30:00+01:00",
    ]


async def test_a_null_time_zone_means_utc(client, user):
    times = await fire_times(
        client, user, schedule="0 10 * * *", timezone=None, count=1
    )

    assert times == ["2026-01-05T10:00:00+00:00"]


async def test_a_preview_that_runs_into_the_end_of_the_calendar_stops_there(
    client, user
):
    times = await fire_times(
        client, user, schedule="0 0 1 1 *", after="9997-06-01T00:00:00+00:00"
    )

    assert times == ["9998-01-01T00:00:00+00:00"]


@pytest.mark.parametrize(
    ("schedule", "reason"),
    [
        ("0 0 30 2 *", "day 30 never occurs in February"),
        ("*/90 * * * *", "step 90 is larger than the minute field (60 values)"),
        (
            "* * * *",
            "expected 5 fields (minute hour day-of-month month day-of-week), got 4",
        ),
        ("", "schedule is empty"),
    ],
)
async def test_a_schedule_that_cannot_run_is_refused_with_the_reason(
    client, user, schedule, reason
):
    body = await preview(client, user, status=400, schedule=schedule)

    assert body == {
        "error": "invalid_schedule",
        "message": f"schedule: {reason}",
        "field": "schedule",
    }


async def test_a_schedule_that_never_fires_in_its_zone_is_refused(client, user):
    body = await preview(
        client, user, status=400, schedule="*/5 2 * 3 0#2", timezone="America/New_York"
    )

    assert body == {
        "error": "invalid_schedule",
        "message": "schedule: no fire time within 100 years in America/New_York",
        "field": "schedule",
    }


async def test_a_missing_schedule_is_refused(client, user):
    body = await preview(client, user, status=400, timezone="UTC")

    assert body == {
        "error": "missing_field",
        "message": "schedule is required",
        "field": "schedule",
    }


async def test_a_schedule_that_is_not_a_string_is_refused(client, user):
    body = await preview(client, user, status=400, schedule=5)

    assert body == {
        "error": "invalid_field",
        "message": "schedule must be a string",
        "field": "schedule",
    }


@pytest.mark.parametrize(
    ("timezone", "reason"),
    [
        ("Mars/Olympus", "unknown time zone 'Mars/Olympus'"),
        ("", "time zone is empty"),
        (
            "../etc/passwd",
            "'../etc/passwd' looks like a file path; give an IANA name such as "
            "Europe/Berlin",
        ),
    ],
)
async def test_a_time_zone_that_is_not_an_iana_zone_is_refused(
    client, user, timezone, reason
):
    body = await preview(
        client, user, status=400, schedule="0 10 * * *", timezone=timezone
    )

    assert body == {
        "error": "invalid_timezone",
        "message": f"timezone: {reason}",
        "field": "timezone",
    }


async def test_a_time_zone_that_is_not_a_string_is_refused(client, user):
    body = await preview(client, user, status=400, schedule="0 10 * * *", timezone=1)

    assert body == {
        "error": "invalid_field",
        "message": "timezone must be a string",
        "field": "timezone",
    }


@pytest.mark.parametrize(
    "after", ["2026-03-08T00:00:00", "2026-03-08", "yesterday", "", 1767600000]
)
async def test_an_after_without_an_offset_is_refused(client, user, after):
    body = await preview(client, user, status=400, schedule="0 10 * * *", after=after)

    assert body == {
        "error": "invalid_field",
        "message": "after must be an ISO 8601 time with an offset",
        "field": "after",
    }


@pytest.mark.parametrize(
    "after", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:00-14:00"]
)
async def test_an_after_beyond_the_calendar_in_utc_is_refused(client, user, after):
    body = await preview(client, user, status=400, schedule="0 10 * * *", after=after)

    assert body == {
        "error": "invalid_field",
        "message": "after is outside the calendar",
        "field": "after",
    }


@pytest.mark.parametrize("count", [0, 101, -1, True, 2.0, None, "x", "²"])
async def test_a_bad_count_is_refused(client, user, count):
    body = await preview(client, user, status=400, schedule="0 10 * * *", count=count)

    assert body == {
        "error": "invalid_field",
        "message": "count must be a whole number from 1 to 100",
        "field": "count",
    }


async def test_a_body_that_is_not_json_is_refused(client, user):
    response = await client.post(
        "/schedules/preview", data="schedule=0 10 * * *", headers=user.headers
    )

    assert response.status == 400
    assert await response.json() == {
        "error": "invalid_body",
        "message": "Body is not valid JSON",
    }


async def test_a_preview_needs_a_token(client, user):
    response = await client.post("/schedules/preview", json={"schedule": "@daily"})

    assert response.status == 401
    assert (await response.json())["error"] == "unauthorized"


async def test_a_preview_needs_a_user_token_not_an_agents(client, user):
    agent = await enroll(client, user, "web-1")

    response = await client.post(
        "/schedules/preview", json={"schedule": "@daily"}, headers=agent.headers
    )

    assert response.status == 401
    assert await response.json() == {
        "error": "unauthorized",
        "message": "An agent token cannot act as a user",
    }
