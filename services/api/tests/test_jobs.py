"""Jobs over HTTP: made, checked, listed, changed, paused, deleted, fired by hand."""

from datetime import UTC, datetime

import pytest
from api_support import enroll, register

JOB = {
    "name": "backup",
    "schedule": "0 10 * * *",
    "command": "echo hello",
    "target": {"labels": ["linux"]},
}
NOW = "2026-01-05T09:59:30+00:00"
TARGET_SHAPE = 'target must be {"agent": id} or {"labels": [...], "all"?: true}'
CATCHUP_SHAPE = (
    'catchup must be "skip", "once" or {"max_runs": N, "max_age_seconds": S}'
)
DESCRIPTION_RULE = "description must be a string of at most 1000 characters"
BACKOFF_RANGE = "retry_backoff_seconds must be between 0 and 86400"
ENV_SHAPE = "env must be an object of at most 100 names"
ZONE_HINT = "give an IANA name such as Europe/Berlin"
NAME_RULE = (
    "name must be 1 to 128 characters, without control characters or surrounding spaces"
)


async def create(client, person, status=201, **fields):
    response = await client.post(
        "/jobs", json={**JOB, **fields}, headers=person.headers
    )
    assert response.status == status, await response.text()
    return await response.json()


async def listed(client, person, query=""):
    response = await client.get(f"/jobs{query}", headers=person.headers)
    assert response.status == 200, await response.text()
    return await response.json()


async def names(client, person, query=""):
    return [job["name"] for job in (await listed(client, person, query))["items"]]


async def patch(client, person, job_id, body):
    return await client.patch(f"/jobs/{job_id}", json=body, headers=person.headers)


async def online_agent(client, person, scheduler, hostname="web-1", labels=("linux",)):
    agent = await enroll(client, person, hostname, labels)
    await agent.heartbeat()
    await scheduler.tick()  # heartbeats are written at each tick
    return agent


# Creating ----------------------------------------------------------------------


async def test_a_new_job_comes_back_whole_with_every_default_filled_in(client, user):
    response = await client.post("/jobs", json=JOB, headers=user.headers)

    assert response.status == 201
    assert await response.json() == {
        "id": 1,
        "owner_id": user.id,
        "name": "backup",
        "description": "",
        "schedule": "0 10 * * *",
        "timezone": "UTC",
        "command": "echo hello",
        "target": {"labels": ["linux"]},
        "timeout_seconds": 3600,
        "retries": 0,
        "retry_backoff_seconds": 60,
        "concurrency": "forbid",
        "catchup": "skip",
        "enabled": True,
        "env": {},
        "next_fire_at": "2026-01-05T10:00:00+00:00",
        "created_at": NOW,
        "updated_at": NOW,
    }


async def test_every_optional_field_is_kept_as_given(client, user):
    job = await create(
        client,
        user,
        description="Nightly copy of the database",
        timezone="Europe/Berlin",
        timeout_seconds=600,
        retries=3,
        retry_backoff_seconds=30,
        concurrency="replace",
        catchup={"max_runs": 5, "max_age_seconds": 3600},
        enabled=False,
        env={"TARGET_DIR": "/srv/backup", "_X1": ""},
    )

    assert {key: job[key] for key in job if key not in ("id", "created_at")} == {
        "owner_id": user.id,
        "name": "backup",
        "description": "Nightly copy of the database",
        "schedule": "0 10 * * *",
        "timezone": "Europe/Berlin",
        "command": "echo hello",
        "target": {"labels": ["linux"]},
        "timeout_seconds": 600,
        "retries": 3,
        "retry_backoff_seconds": 30,
        "concurrency": "replace",
        "catchup": {"max_runs": 5, "max_age_seconds": 3600},
        "enabled": False,
        "env": {"TARGET_DIR": "/srv/backup", "_X1": ""},
        "next_fire_at": "2026-01-06T09:00:00+00:00",
        "updated_at": NOW,
    }


async def test_the_job_is_stored_as_it_was_returned(client, user):
    job = await create(client, user, env={"A": "1"}, catchup="once")

    shown = await client.get(f"/jobs/{job['id']}", headers=user.headers)

    assert await shown.json() == job


async def test_target_labels_are_lower_cased_sorted_and_deduplicated(client, user):
    job = await create(client, user, target={"labels": ["Web", "linux", "web"]})

    assert job["target"] == {"labels": ["linux", "web"]}


async def test_a_fan_out_target_is_kept_with_its_all_flag(client, user):
    job = await create(client, user, target={"labels": ["linux"], "all": True})

    assert job["target"] == {"labels": ["linux"], "all": True}


async def test_a_target_agent_that_exists_is_accepted(client, user):
    agent = await enroll(client, user, "web-1")

    job = await create(client, user, target={"agent": agent.id})

    assert job["target"] == {"agent": agent.id}


async def test_null_optional_fields_take_their_defaults(client, user):
    job = await create(client, user, timezone=None, retries=None, env=None)

    assert (job["timezone"], job["retries"], job["env"]) == ("UTC", 0, {})


async def test_the_first_fire_is_strictly_after_now(client, user, clock):
    await clock.set(datetime(2026, 1, 5, 10, 0, 0, tzinfo=UTC))

    job = await create(client, user)

    assert job["next_fire_at"] == "2026-01-06T10:00:00+00:00"


async def test_the_first_fire_is_found_on_the_wall_clock_of_the_jobs_zone(client, user):
    job = await create(client, user, schedule="0 11 * * *", timezone="Asia/Tokyo")

    # 11:00 in Tokyo is 02:00 UTC: today's has passed, tomorrow's is next.
    assert job["next_fire_at"] == "2026-01-06T02:00:00+00:00"


async def test_a_schedule_is_stored_without_surrounding_spaces(client, user):
    job = await create(client, user, schedule="  */15 * * * *  ")

    assert job["schedule"] == "*/15 * * * *"
    assert job["next_fire_at"] == "2026-01-05T10:00:00+00:00"


@pytest.mark.parametrize("field", ["name", "schedule", "command", "target"])
async def test_each_required_field_must_be_given(client, user, field):
    body = {key: value for key, value in JOB.items() if key != field}

    response = await client.post("/jobs", json=body, headers=user.headers)

    assert response.status == 400
    assert await response.json() == {
        "error": "missing_field",
        "message": f"{field} is required",
        "field": field,
    }


async def test_a_required_field_given_as_null_is_missing(client, user):
    body = await create(client, user, status=400, command=None)

    assert body == {
        "error": "missing_field",
        "message": "command is required",
        "field": "command",
    }


async def test_an_unknown_field_is_refused_by_name(client, user):
    body = await create(client, user, status=400, colour="blue")

    assert body == {
        "error": "unknown_field",
        "message": "unknown field colour",
        "field": "colour",
    }


async def test_a_field_of_the_server_cannot_be_set(client, user):
    body = await create(client, user, status=400, next_fire_at=NOW)

    assert body["error"] == "unknown_field"
    assert body["field"] == "next_fire_at"


BAD_VALUES = [
    ("name", 5, "name must be a string"),
    ("name", "", "name must not be empty"),
    ("name", " backup", NAME_RULE),
    ("name", "backup ", NAME_RULE),
    ("name", "back\nup", NAME_RULE),
    ("name", "back\x00up", "name must not contain NUL"),
    ("name", "b" * 129, NAME_RULE),
    ("description", 5, DESCRIPTION_RULE),
    ("description", "d" * 1001, DESCRIPTION_RULE),
    ("description", "a\x00b", "description must not contain NUL"),
    ("command", ["echo"], "command must be a string"),
    ("command", "", "command must not be empty"),
    ("command", "echo\x00hi", "command must not contain NUL"),
    ("command", "x" * 65537, "command must be at most 65536 bytes, without NUL"),
    ("timeout_seconds", "60", "timeout_seconds must be a whole number"),
    ("timeout_seconds", 1.5, "timeout_seconds must be a whole number"),
    ("timeout_seconds", True, "timeout_seconds must be a whole number"),
    ("timeout_seconds", 0, "timeout_seconds must be between 1 and 604800"),
    ("timeout_seconds", 604801, "timeout_seconds must be between 1 and 604800"),
    ("retries", True, "retries must be a whole number"),
    ("retries", -1, "retries must be between 0 and 10"),
    ("retries", 11, "retries must be between 0 and 10"),
    ("retry_backoff_seconds", False, "retry_backoff_seconds must be a whole number"),
    ("retry_backoff_seconds", -1, BACKOFF_RANGE),
    ("retry_backoff_seconds", 86401, BACKOFF_RANGE),
    ("concurrency", "queue", "concurrency must be forbid, allow or replace"),
    ("concurrency", ["forbid"], "concurrency must be forbid, allow or replace"),
    ("enabled", "true", "enabled must be true or false"),
    ("enabled", 1, "enabled must be true or false"),
    ("env", ["A=1"], ENV_SHAPE),
    ("env", {f"V{n}": "" for n in range(101)}, ENV_SHAPE),
    ("env", {"1A": "x"}, "env name '1A' is not a valid variable name"),
    ("env", {"A-B": "x"}, "env name 'A-B' is not a valid variable name"),
    ("env", {"": "x"}, "env name '' is not a valid variable name"),
    ("env", {"A": 1}, "env A must be a string of at most 4096 characters"),
    ("env", {"A": None}, "env A must be a string of at most 4096 characters"),
    ("env", {"A": "a\x00b"}, "env A must be a string of at most 4096 characters"),
    ("env", {"A": "v" * 4097}, "env A must be a string of at most 4096 characters"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("field", "value", "message"),
    BAD_VALUES,
    ids=[f"{field}-{index}" for index, (field, _, _) in enumerate(BAD_VALUES)],
)
async def test_a_bad_value_is_refused_naming_its_field(
    client, user, field, value, message
):
    body = await create(client, user, status=400, **{field: value})

    assert body == {"error": "invalid_field", "message": message, "field": field}


BAD_TARGETS = [
    ("x", TARGET_SHAPE),
    ({}, TARGET_SHAPE),
    ({"agent": "x"}, "target agent must be an agent id"),
    ({"agent": 0}, "target agent must be an agent id"),
    ({"agent": True}, "target agent must be an agent id"),
    ({"labels": "x"}, "target labels must be a list of at most 32 strings"),
    (
        {"labels": ["Bad Label"]},
        "target each label must be lower-case letters, digits, '.', '_', '=' or '-'",
    ),
    ({"labels": [], "all": "yes"}, "target all must be true or false"),
    ({"agent": 1, "labels": []}, TARGET_SHAPE),
    ({"labels": None}, TARGET_SHAPE),
    ({"labels": ["linux"], "any": True}, TARGET_SHAPE),
]


@pytest.mark.parametrize(("target", "message"), BAD_TARGETS)
async def test_a_target_of_the_wrong_shape_is_refused(client, user, target, message):
    body = await create(client, user, status=400, target=target)

    assert body == {"error": "invalid_field", "message": message, "field": "target"}


async def test_a_target_agent_that_does_not_exist_is_refused(client, user):
    body = await create(client, user, status=400, target={"agent": 99})

    assert body == {
        "error": "invalid_field",
        "message": "target agent 99 does not exist",
        "field": "target",
    }


@pytest.mark.parametrize("agent_id", [2**31, 10**20])
async def test_a_target_agent_id_beyond_any_id_is_refused(client, user, agent_id):
    body = await create(client, user, status=400, target={"agent": agent_id})

    assert body == {
        "error": "invalid_field",
        "message": "target agent must be an agent id",
        "field": "target",
    }


@pytest.mark.parametrize("catchup", ["skip", "once"])
async def test_catchup_may_be_skip_or_once(client, user, catchup):
    job = await create(client, user, catchup=catchup)

    assert job["catchup"] == catchup


@pytest.mark.parametrize(
    "catchup",
    [
        {"max_runs": 1, "max_age_seconds": 1},
        {"max_runs": 100, "max_age_seconds": 604800},
    ],
)
async def test_catchup_may_replay_a_bounded_number_of_fires(client, user, catchup):
    job = await create(client, user, catchup=catchup)

    assert job["catchup"] == catchup


BAD_CATCHUPS = [
    ("all", CATCHUP_SHAPE),
    (5, CATCHUP_SHAPE),
    ({"max_runs": 5}, CATCHUP_SHAPE),
    ({"max_runs": 5, "max_age_seconds": 60, "extra": 1}, CATCHUP_SHAPE),
    (
        {"max_runs": 0, "max_age_seconds": 60},
        "catchup max_runs must be a whole number from 1 to 100",
    ),
    (
        {"max_runs": 101, "max_age_seconds": 60},
        "catchup max_runs must be a whole number from 1 to 100",
    ),
    (
        {"max_runs": True, "max_age_seconds": 60},
        "catchup max_runs must be a whole number from 1 to 100",
    ),
    (
        {"max_runs": 5, "max_age_seconds": 0},
        "catchup max_age_seconds must be a whole number from 1 to 604800",
    ),
    (
        {"max_runs": 5, "max_age_seconds": 604801},
        "catchup max_age_seconds must be a whole number from 1 to 604800",
    ),
    (
        {"max_runs": 5, "max_age_seconds": "60"},
        "catchup max_age_seconds must be a whole number from 1 to 604800",
    ),
]


@pytest.mark.parametrize(("catchup", "message"), BAD_CATCHUPS)
async def test_any_other_catchup_is_refused(client, user, catchup, message):
    body = await create(client, user, status=400, catchup=catchup)

    assert body == {"error": "invalid_field", "message": message, "field": "catchup"}


BAD_SCHEDULES = [
    ("0 0 30 2 *", "day 30 never occurs in February"),
    ("*/90 * * * *", "step 90 is larger than the minute field (60 values)"),
    (
        "@reboot",
        "@reboot has no fire time: it means 'at start-up', "
        "which a scheduler cannot compute",
    ),
    (
        "not cron",
        "expected 5 fields (minute hour day-of-month month day-of-week), got 2",
    ),
    (
        "* * * *",
        "expected 5 fields (minute hour day-of-month month day-of-week), got 4",
    ),
    ("   ", "schedule is empty"),
    ("", "schedule is empty"),
]


@pytest.mark.parametrize(("schedule", "reason"), BAD_SCHEDULES)
async def test_a_schedule_that_cannot_run_is_refused_with_the_reason(
    client, user, schedule, reason
):
    body = await create(client, user, status=400, schedule=schedule)

    assert body == {
        "error": "invalid_schedule",
        "message": f"schedule: {reason}",
        "field": "schedule",
    }


async def test_a_schedule_too_long_to_store_is_refused(client, user):
    schedule = ",".join(["0"] * 200) + " * * * *"

    body = await create(client, user, status=400, schedule=schedule)

    assert body == {
        "error": "invalid_schedule",
        "message": "schedule: longer than 256 characters",
        "field": "schedule",
    }


async def test_a_schedule_whose_every_time_dst_skips_in_its_zone_is_refused(
    client, user
):
    # 02:xx on the second Sunday of March never happens in New York.
    body = await create(
        client,
        user,
        status=400,
        schedule="*/5 2 * 3 0#2",
        timezone="America/New_York",
    )

    assert body == {
        "error": "invalid_schedule",
        "message": "schedule: no fire time within 100 years in America/New_York",
        "field": "schedule",
    }


BAD_ZONES = [
    ("Mars/Olympus", "unknown time zone 'Mars/Olympus'"),
    ("", "time zone is empty"),
    ("../etc/passwd", f"'../etc/passwd' looks like a file path; {ZONE_HINT}"),
    ("europe/berlin", "unknown time zone 'europe/berlin'; did you mean Europe/Berlin?"),
    ("localtime", f"'localtime' is not accepted; {ZONE_HINT}"),
]  # fmt: skip


@pytest.mark.parametrize(("timezone", "reason"), BAD_ZONES)
async def test_a_time_zone_that_is_not_an_iana_zone_is_refused(
    client, user, timezone, reason
):
    body = await create(client, user, status=400, timezone=timezone)

    assert body == {
        "error": "invalid_timezone",
        "message": f"timezone: {reason}",
        "field": "timezone",
    }


async def test_a_time_zone_is_stored_without_surrounding_spaces(client, user):
    job = await create(client, user, timezone=" Europe/Berlin ")

    assert job["timezone"] == "Europe/Berlin"


async def test_a_refused_job_is_not_stored(client, user):
    await create(client, user, status=400, schedule="@reboot")
    await create(client, user, status=400, target={"agent": 99})

    assert await listed(client, user) == {"items": [], "next_cursor": None}


async def test_a_body_that_is_not_a_json_object_is_refused(client, user):
    response = await client.post("/jobs", data="[1]", headers=user.headers)

    assert response.status == 400
    assert await response.json() == {
        "error": "invalid_body",
        "message": "Body must be a JSON object",
    }


async def test_a_second_job_of_the_same_name_is_refused(client, user):
    await create(client, user)

    body = await create(client, user, status=409, command="echo again")

    assert body == {
        "error": "job_name_taken",
        "message": "You already have a job named 'backup'",
    }
    assert await names(client, user) == ["backup"]


async def test_another_user_may_use_the_same_name(client, admin, user):
    await create(client, user)

    job = await create(client, admin)

    assert (job["name"], job["owner_id"]) == ("backup", admin.id)


async def test_making_a_job_needs_a_user_token(client, user):
    agent = await enroll(client, user, "web-1")

    anonymous = await client.post("/jobs", json=JOB)
    as_agent = await client.post("/jobs", json=JOB, headers=agent.headers)

    assert (anonymous.status, as_agent.status) == (401, 401)
    assert (await as_agent.json())["error"] == "unauthorized"


# Listing -----------------------------------------------------------------------


async def test_a_user_lists_only_their_own_jobs(client, admin, user):
    await create(client, admin, name="admins-job")
    await create(client, user, name="bobs-job")

    assert await names(client, user) == ["bobs-job"]


async def test_the_admin_lists_everyones_jobs(client, admin, user):
    await create(client, admin, name="admins-job")
    await create(client, user, name="bobs-job")

    assert await names(client, admin) == ["admins-job", "bobs-job"]


async def test_jobs_are_listed_in_pages_in_the_order_they_were_made(client, user):
    for name in ("a", "b", "c", "d", "e"):
        await create(client, user, name=name)

    first = await listed(client, user, "?limit=2")
    second = await listed(client, user, f"?limit=2&cursor={first['next_cursor']}")
    third = await listed(client, user, f"?limit=2&cursor={second['next_cursor']}")

    assert [job["name"] for job in first["items"]] == ["a", "b"]
    assert first["next_cursor"] == "2"
    assert [job["name"] for job in second["items"]] == ["c", "d"]
    assert second["next_cursor"] == "4"
    assert [job["name"] for job in third["items"]] == ["e"]
    assert third["next_cursor"] is None


async def test_a_page_that_ends_exactly_at_the_last_job_has_no_cursor(client, user):
    await create(client, user, name="a")
    await create(client, user, name="b")

    page = await listed(client, user, "?limit=2")

    assert page["next_cursor"] is None


async def test_the_cursor_pages_through_only_the_users_own_jobs(client, admin, user):
    await create(client, user, name="a")
    await create(client, admin, name="admins")
    await create(client, user, name="b")

    first = await listed(client, user, "?limit=1")
    second = await listed(client, user, f"?limit=1&cursor={first['next_cursor']}")

    assert [job["name"] for job in second["items"]] == ["b"]
    assert second["next_cursor"] is None


@pytest.mark.parametrize("limit", ["0", "201", "-1", "abc", "", "1.5", "²", "9" * 5000])
async def test_a_bad_page_size_is_refused(client, user, limit):
    response = await client.get("/jobs", params={"limit": limit}, headers=user.headers)

    assert response.status == 400
    assert await response.json() == {
        "error": "invalid_field",
        "message": "limit must be a whole number from 1 to 200",
        "field": "limit",
    }


@pytest.mark.parametrize("limit", ["1", "200"])
async def test_a_page_size_from_1_to_200_is_accepted(client, user, limit):
    await create(client, user)

    response = await client.get("/jobs", params={"limit": limit}, headers=user.headers)

    assert response.status == 200


@pytest.mark.parametrize("cursor", ["abc", "-1", "²", "2147483648", "1" * 13])
async def test_a_bad_cursor_is_refused(client, user, cursor):
    response = await client.get(
        "/jobs", params={"cursor": cursor}, headers=user.headers
    )

    assert response.status == 400
    assert await response.json() == {
        "error": "invalid_field",
        "message": "cursor must be a whole number from 0 to 2147483647",
        "field": "cursor",
    }


async def test_a_cursor_beyond_every_id_gives_an_empty_page(client, user):
    await create(client, user)

    page = await listed(client, user, "?cursor=2147483647")

    assert page == {"items": [], "next_cursor": None}


async def test_jobs_can_be_listed_by_whether_they_are_enabled(client, user):
    await create(client, user, name="on")
    await create(client, user, name="off", enabled=False)

    assert await names(client, user, "?enabled=true") == ["on"]
    assert await names(client, user, "?enabled=false") == ["off"]


async def test_an_enabled_filter_other_than_true_or_false_is_refused(client, user):
    response = await client.get("/jobs?enabled=yes", headers=user.headers)

    assert response.status == 400
    assert await response.json() == {
        "error": "invalid_field",
        "message": "enabled must be true or false",
        "field": "enabled",
    }


async def test_jobs_can_be_listed_by_the_agent_they_target(client, user):
    web = await enroll(client, user, "web-1")
    db = await enroll(client, user, "db-1")
    await create(client, user, name="on-web", target={"agent": web.id})
    await create(client, user, name="on-db", target={"agent": db.id})
    await create(client, user, name="by-label")

    assert await names(client, user, f"?agent={web.id}") == ["on-web"]


async def test_jobs_can_be_listed_by_a_label_of_their_target(client, user):
    await create(client, user, name="linux-web", target={"labels": ["linux", "web"]})
    await create(client, user, name="web", target={"labels": ["web"]})
    await create(client, user, name="webserver", target={"labels": ["webserver"]})
    await create(client, user, name="linux", target={"labels": ["linux"]})

    assert await names(client, user, "?label=web") == ["linux-web", "web"]


async def test_a_label_filter_matches_only_that_label_literally(client, user):
    await create(client, user, name="underscore", target={"labels": ["db_1"]})
    await create(client, user, name="dash", target={"labels": ["db-1"]})

    assert await names(client, user, "?label=db_1") == ["underscore"]
    refused = await client.get("/jobs?label=%25", headers=user.headers)
    assert refused.status == 400


# Showing, changing, deleting ---------------------------------------------------


async def test_a_user_sees_their_own_job(client, user):
    job = await create(client, user)

    response = await client.get(f"/jobs/{job['id']}", headers=user.headers)

    assert response.status == 200
    assert await response.json() == job


async def test_another_users_job_is_not_found(client, admin, user):
    job = await create(client, admin)

    response = await client.get(f"/jobs/{job['id']}", headers=user.headers)

    assert response.status == 404
    assert await response.json() == {
        "error": "job_not_found",
        "message": f"No job {job['id']}",
    }


async def test_the_admin_sees_any_users_job(client, admin, user):
    job = await create(client, user)

    response = await client.get(f"/jobs/{job['id']}", headers=admin.headers)

    assert response.status == 200
    assert (await response.json())["owner_id"] == user.id


@pytest.mark.parametrize("job_id", ["abc", "99", "²", "2147483648", "999999999999"])
async def test_a_job_id_that_names_no_job_is_not_found(client, user, job_id):
    response = await client.get(f"/jobs/{job_id}", headers=user.headers)

    assert response.status == 404
    assert await response.json() == {
        "error": "job_not_found",
        "message": f"No job {job_id}",
    }


async def test_a_change_returns_the_changed_job(client, user, clock):
    job = await create(client, user)
    await clock.advance(10)

    response = await patch(client, user, job["id"], {"command": "echo bye"})

    assert response.status == 200
    assert await response.json() == {
        **job,
        "command": "echo bye",
        "updated_at": "2026-01-05T09:59:40+00:00",
    }


async def test_a_change_is_stored(client, user):
    job = await create(client, user)
    await patch(client, user, job["id"], {"retries": 2, "env": {"A": "b"}})

    shown = await (await client.get(f"/jobs/{job['id']}", headers=user.headers)).json()

    assert (shown["retries"], shown["env"]) == (2, {"A": "b"})


async def test_a_change_of_target_is_listed_under_the_new_target(client, user):
    agent = await enroll(client, user, "web-1")
    job = await create(client, user)

    await patch(client, user, job["id"], {"target": {"agent": agent.id}})

    assert await names(client, user, f"?agent={agent.id}") == ["backup"]
    assert await names(client, user, "?label=linux") == []


async def test_a_change_of_an_unknown_field_is_refused(client, user):
    job = await create(client, user)

    response = await patch(client, user, job["id"], {"owner_id": 1})

    assert response.status == 400
    assert await response.json() == {
        "error": "unknown_field",
        "message": "unknown field owner_id",
        "field": "owner_id",
    }


async def test_an_empty_change_is_refused(client, user):
    job = await create(client, user)

    response = await patch(client, user, job["id"], {})

    assert response.status == 400
    assert await response.json() == {
        "error": "invalid_body",
        "message": "Nothing to change",
    }


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"retries": 11}, {"error": "invalid_field", "field": "retries"}),
        ({"name": None}, {"error": "invalid_field", "field": "name"}),
        ({"name": " x"}, {"error": "invalid_field", "field": "name"}),
        ({"target": {"labels": "x"}}, {"error": "invalid_field", "field": "target"}),
        ({"schedule": "@reboot"}, {"error": "invalid_schedule", "field": "schedule"}),
        ({"timezone": "Mars"}, {"error": "invalid_timezone", "field": "timezone"}),
        ({"concurrency": None}, {"error": "invalid_field", "field": "concurrency"}),
    ],
)  # fmt: skip
async def test_a_change_is_checked_like_a_new_job(client, user, change, error):
    job = await create(client, user)

    response = await patch(client, user, job["id"], change)

    assert response.status == 400
    body = await response.json()
    assert {key: body[key] for key in ("error", "field")} == error


async def test_a_refused_change_changes_nothing(client, user):
    job = await create(client, user)

    await patch(client, user, job["id"], {"command": "echo new", "retries": 99})

    shown = await (await client.get(f"/jobs/{job['id']}", headers=user.headers)).json()
    assert shown == job


async def test_a_change_to_a_target_agent_that_does_not_exist_is_refused(client, user):
    job = await create(client, user)

    response = await patch(client, user, job["id"], {"target": {"agent": 99}})

    assert response.status == 400
    assert await response.json() == {
        "error": "invalid_field",
        "message": "target agent 99 does not exist",
        "field": "target",
    }


async def test_a_change_of_schedule_that_dst_always_skips_is_refused(client, user):
    job = await create(client, user, timezone="America/New_York")

    response = await patch(client, user, job["id"], {"schedule": "*/5 2 * 3 0#2"})

    assert response.status == 400
    assert (await response.json())["error"] == "invalid_schedule"


async def test_renaming_a_job_to_a_name_the_owner_already_uses_is_refused(client, user):
    await create(client, user, name="first")
    second = await create(client, user, name="second")

    response = await patch(client, user, second["id"], {"name": "first"})

    assert response.status == 409
    assert await response.json() == {
        "error": "job_name_taken",
        "message": "You already have a job named 'first'",
    }
    assert await names(client, user) == ["first", "second"]


async def test_renaming_a_job_to_a_name_another_user_uses_is_allowed(
    client, admin, user
):
    await create(client, admin, name="first")
    mine = await create(client, user, name="mine")

    response = await patch(client, user, mine["id"], {"name": "first"})

    assert response.status == 200
    assert (await response.json())["name"] == "first"


async def test_another_users_job_cannot_be_changed(client, admin, user):
    job = await create(client, admin)

    response = await patch(client, user, job["id"], {"command": "rm -rf /"})

    assert response.status == 404
    assert (await response.json())["error"] == "job_not_found"
    shown = await (await client.get(f"/jobs/{job['id']}", headers=admin.headers)).json()
    assert shown["command"] == "echo hello"


async def test_the_admin_may_change_any_users_job(client, admin, user):
    job = await create(client, user)

    response = await patch(client, admin, job["id"], {"command": "echo admin"})

    assert response.status == 200
    assert (await response.json())["command"] == "echo admin"


async def test_a_change_of_command_keeps_the_next_fire_time(client, user, clock):
    job = await create(client, user)
    await clock.advance(60)

    changed = await (await patch(client, user, job["id"], {"command": "x"})).json()

    assert changed["next_fire_at"] == "2026-01-05T10:00:00+00:00"


async def test_a_change_of_schedule_plans_the_next_fire_from_now(client, user, clock):
    job = await create(client, user)
    await clock.advance(60)

    changed = await (
        await patch(client, user, job["id"], {"schedule": "0 10 * * *"})
    ).json()

    assert changed["next_fire_at"] == "2026-01-06T10:00:00+00:00"


async def test_a_change_of_time_zone_plans_the_next_fire_in_the_new_zone(client, user):
    job = await create(client, user)

    changed = await patch(client, user, job["id"], {"timezone": "America/New_York"})

    # 10:00 in New York in January is 15:00 UTC.
    assert (await changed.json())["next_fire_at"] == "2026-01-05T15:00:00+00:00"


async def test_pausing_a_job_keeps_its_next_fire_time(client, user):
    job = await create(client, user)

    paused = await (await patch(client, user, job["id"], {"enabled": False})).json()

    assert paused["enabled"] is False
    assert paused["next_fire_at"] == "2026-01-05T10:00:00+00:00"


async def test_a_paused_jobs_fire_is_recorded_as_skipped(
    client, user, clock, scheduler
):
    job = await create(client, user)
    await patch(client, user, job["id"], {"enabled": False})

    await clock.advance(30)
    await scheduler.tick()

    runs = await (
        await client.get(f"/jobs/{job['id']}/runs", headers=user.headers)
    ).json()
    assert [
        (run["scheduled_for"], run["status"], run["reason"]) for run in runs["items"]
    ] == [("2026-01-05T10:00:00+00:00", "skipped", "job paused at fire time")]


async def test_resuming_a_job_plans_its_next_fire_from_now(client, user, clock):
    job = await create(client, user, enabled=False)
    await clock.advance(3600)

    resumed = await (await patch(client, user, job["id"], {"enabled": True})).json()

    assert resumed["next_fire_at"] == "2026-01-06T10:00:00+00:00"


async def test_deleting_a_job_answers_204_with_no_body(client, user):
    job = await create(client, user)

    response = await client.delete(f"/jobs/{job['id']}", headers=user.headers)

    assert response.status == 204
    assert await response.read() == b""


async def test_a_deleted_job_is_not_found(client, user):
    job = await create(client, user)
    await client.delete(f"/jobs/{job['id']}", headers=user.headers)

    response = await client.get(f"/jobs/{job['id']}", headers=user.headers)

    assert response.status == 404
    assert await listed(client, user) == {"items": [], "next_cursor": None}


async def test_deleting_a_job_deletes_its_runs(client, user):
    job = await create(client, user)
    fired = await client.post(f"/jobs/{job['id']}/run", headers=user.headers)
    run_id = (await fired.json())["runs"][0]["id"]

    await client.delete(f"/jobs/{job['id']}", headers=user.headers)

    response = await client.get(f"/runs/{run_id}", headers=user.headers)
    assert response.status == 404
    assert await response.json() == {
        "error": "run_not_found",
        "message": f"No run {run_id}",
    }


async def test_a_deleted_name_may_be_used_again(client, user):
    job = await create(client, user)
    await client.delete(f"/jobs/{job['id']}", headers=user.headers)

    again = await create(client, user)

    assert again["name"] == "backup"


async def test_another_users_job_cannot_be_deleted(client, admin, user):
    job = await create(client, admin)

    response = await client.delete(f"/jobs/{job['id']}", headers=user.headers)

    assert response.status == 404
    assert await names(client, admin) == ["backup"]


async def test_the_admin_may_delete_any_users_job(client, admin, user):
    job = await create(client, user)

    response = await client.delete(f"/jobs/{job['id']}", headers=admin.headers)

    assert response.status == 204
    assert await names(client, user) == []


async def test_deleting_a_job_twice_finds_nothing_the_second_time(client, user):
    job = await create(client, user)
    await client.delete(f"/jobs/{job['id']}", headers=user.headers)

    response = await client.delete(f"/jobs/{job['id']}", headers=user.headers)

    assert response.status == 404


# Running now -------------------------------------------------------------------


async def test_running_a_job_now_with_no_agent_online_records_a_skipped_run(
    client, user
):
    job = await create(client, user)

    response = await client.post(f"/jobs/{job['id']}/run", headers=user.headers)

    assert response.status == 201
    assert await response.json() == {
        "runs": [
            {
                "id": 1,
                "job_id": job["id"],
                "scheduled_for": NOW,
                "trigger": "manual",
                "attempt": 1,
                "first_run_id": None,
                "agent_id": None,
                "status": "skipped",
                "reason": "no matching agent online",
                "cancel_requested": False,
                "created_at": NOW,
                "not_before": NOW,
                "claimed_at": None,
                "started_at": None,
                "finished_at": NOW,
                "exit_code": None,
                "signal": None,
                "output_bytes": 0,
                "output_truncated": False,
            }
        ]
    }


async def test_running_a_job_now_gives_the_run_to_a_matching_online_agent(
    client, user, scheduler
):
    agent = await online_agent(client, user, scheduler)
    job = await create(client, user)

    response = await client.post(f"/jobs/{job['id']}/run", headers=user.headers)

    (run,) = (await response.json())["runs"]
    assert (run["status"], run["agent_id"], run["reason"]) == (
        "pending",
        agent.id,
        None,
    )
    assert (run["trigger"], run["scheduled_for"]) == ("manual", NOW)
    assert run["finished_at"] is None


async def test_a_run_started_by_hand_is_claimed_by_its_agent(client, user, scheduler):
    agent = await online_agent(client, user, scheduler)
    job = await create(client, user)
    await client.post(f"/jobs/{job['id']}/run", headers=user.headers)

    claimed = await agent.claim()

    assert [(run["job_name"], run["command"]) for run in claimed] == [
        ("backup", "echo hello")
    ]


async def test_running_a_job_now_skips_it_when_only_other_labels_are_online(
    client, user, scheduler
):
    await online_agent(client, user, scheduler, labels=["windows"])
    job = await create(client, user)

    response = await client.post(f"/jobs/{job['id']}/run", headers=user.headers)

    (run,) = (await response.json())["runs"]
    assert (run["status"], run["reason"]) == ("skipped", "no matching agent online")


async def test_running_a_job_now_on_an_offline_agent_says_which_agent(client, user):
    agent = await enroll(client, user, "web-1")
    job = await create(client, user, target={"agent": agent.id})

    response = await client.post(f"/jobs/{job['id']}/run", headers=user.headers)

    (run,) = (await response.json())["runs"]
    assert (run["status"], run["reason"]) == ("skipped", f"agent {agent.id} offline")


async def test_running_a_fan_out_job_now_makes_one_run_per_matching_agent(
    client, user, scheduler
):
    first = await online_agent(client, user, scheduler, "web-1")
    second = await online_agent(client, user, scheduler, "web-2")
    job = await create(client, user, target={"labels": ["linux"], "all": True})

    response = await client.post(f"/jobs/{job['id']}/run", headers=user.headers)

    runs = (await response.json())["runs"]
    assert [(run["agent_id"], run["status"]) for run in runs] == [
        (first.id, "pending"),
        (second.id, "pending"),
    ]


async def test_running_another_users_job_is_not_found(client, admin, user):
    job = await create(client, admin)

    response = await client.post(f"/jobs/{job['id']}/run", headers=user.headers)

    assert response.status == 404
    assert (await response.json())["error"] == "job_not_found"


async def test_running_a_job_now_leaves_its_next_fire_time(client, user):
    job = await create(client, user)
    await client.post(f"/jobs/{job['id']}/run", headers=user.headers)

    shown = await (await client.get(f"/jobs/{job['id']}", headers=user.headers)).json()

    assert shown["next_fire_at"] == "2026-01-05T10:00:00+00:00"


# Upcoming fires ----------------------------------------------------------------


async def test_a_jobs_next_five_fire_times_are_shown_by_default(client, user):
    job = await create(client, user)

    response = await client.get(f"/jobs/{job['id']}/next", headers=user.headers)

    assert response.status == 200
    assert await response.json() == {
        "fire_times": [
            "2026-01-05T10:00:00+00:00",
            "2026-01-06T10:00:00+00:00",
            "2026-01-07T10:00:00+00:00",
            "2026-01-08T10:00:00+00:00",
            "2026-01-09T10:00:00+00:00",
        ]
    }


async def test_a_jobs_next_fire_times_are_shown_at_its_zones_offset_across_dst(
    client, user, clock
):
    await clock.set(datetime(2026, 3, 27, 12, 0, tzinfo=UTC))
    job = await create(client, user, schedule="30 2 * * *", timezone="Europe/Berlin")

    response = await client.get(f"/jobs/{job['id']}/next?count=3", headers=user.headers)

    # 02:30 does not exist on 29 March in Berlin: the job fires as the clock jumps.
    assert await response.json() == {
        "fire_times": [
            "2026-03-28T02:30:00+01:00",
            "2026-03-29T03:00:00+02:00",
            "2026-03-30T02:30:00+02:00",
        ]
    }


@pytest.mark.parametrize("count", ["1", "100"])
async def test_from_1_to_100_next_fire_times_may_be_asked_for(client, user, count):
    job = await create(client, user, schedule="* * * * *")

    response = await client.get(
        f"/jobs/{job['id']}/next", params={"count": count}, headers=user.headers
    )

    assert len((await response.json())["fire_times"]) == int(count)


@pytest.mark.parametrize("count", ["0", "101", "-1", "x", "", "2.0", "²", "9" * 5000])
async def test_a_bad_count_of_next_fire_times_is_refused(client, user, count):
    job = await create(client, user)

    response = await client.get(
        f"/jobs/{job['id']}/next", params={"count": count}, headers=user.headers
    )

    assert response.status == 400
    assert await response.json() == {
        "error": "invalid_field",
        "message": "count must be a whole number from 1 to 100",
        "field": "count",
    }


async def test_another_users_jobs_next_fire_times_are_not_found(client, admin, user):
    job = await create(client, admin)

    response = await client.get(f"/jobs/{job['id']}/next", headers=user.headers)

    assert response.status == 404
    assert (await response.json())["error"] == "job_not_found"


async def test_the_next_fire_times_of_a_paused_job_are_still_shown(client, user):
    job = await create(client, user, enabled=False)

    response = await client.get(f"/jobs/{job['id']}/next?count=1", headers=user.headers)

    assert await response.json() == {"fire_times": ["2026-01-05T10:00:00+00:00"]}


async def test_every_job_route_needs_a_user_token(client, user):
    agent = await enroll(client, user, "web-1")
    job = await create(client, user)
    calls = [
        ("GET", "/jobs"),
        ("GET", f"/jobs/{job['id']}"),
        ("PATCH", f"/jobs/{job['id']}"),
        ("DELETE", f"/jobs/{job['id']}"),
        ("POST", f"/jobs/{job['id']}/run"),
        ("GET", f"/jobs/{job['id']}/next"),
    ]

    statuses = [
        (await client.request(method, path, json={}, headers=agent.headers)).status
        for method, path in calls
    ]

    assert statuses == [401] * len(calls)
    assert await names(client, user) == ["backup"]


async def test_a_user_registered_later_sees_no_jobs(client, user):
    await create(client, user)
    carol = await register(client, "carol")

    assert await listed(client, carol) == {"items": [], "next_cursor": None}
