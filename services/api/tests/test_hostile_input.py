"""Requests a careless or hostile client sends: a clear refusal, nothing changed."""

import asyncio
import gzip

import jwt
import pytest
from api_support import PASSWORD, TEST_SECRET_KEY, enroll, register

JOB = {
    "name": "guarded",
    "schedule": "0 10 * * *",
    "command": "true",
    "target": {"labels": ["linux"]},
}


async def _json_post(client, path, raw: bytes, headers=None):
    headers = {"Content-Type": "application/json", **(headers or {})}
    return await client.post(path, data=raw, headers=headers)


@pytest.mark.parametrize(
    "raw",
    [
        b"[" * 100_000 + b"]" * 100_000,
        b'{"username": "zz1", "password": "s3cret-pass", "x": ' + b"1" * 5000 + b"}",
    ],
    ids=["deep-nesting", "huge-integer"],
)
async def test_bodies_no_parser_should_chew_on_are_refused(client, raw):
    response = await _json_post(client, "/users", raw)

    assert response.status == 400
    assert await response.json() == {
        "error": "invalid_body",
        "message": "Body is not valid JSON",
    }


async def test_a_body_that_cannot_be_decompressed_is_refused(client):
    response = await _json_post(client, "/login", b"xx", {"Content-Encoding": "gzip"})

    assert response.status == 400
    assert (await response.json())["error"] == "invalid_body"


async def test_a_compressed_body_is_read(client):
    body = b'{"username": "alice", "password": "correct horse"}'
    raw = gzip.compress(body)

    response = await _json_post(client, "/users", raw, {"Content-Encoding": "gzip"})

    assert response.status == 201


async def test_a_login_with_a_password_over_72_bytes_is_just_wrong(client):
    await register(client, "alice")

    response = await client.post(
        "/login", json={"username": "alice", "password": "p" * 100}
    )

    assert response.status == 401


@pytest.mark.parametrize("token", ["\u00e9\u00e9", "agt_\u00e9", "enr_\u00e9"])
async def test_a_token_that_is_not_ascii_is_not_valid(client, token):
    headers = {"Authorization": f"Bearer {token}".encode().decode("latin-1")}

    response = await client.get("/protected", headers=headers)

    assert response.status == 401


async def test_a_token_naming_an_impossible_user_id_is_not_valid(client):
    claims = {"sub": str(10**30), "name": "x", "iat": 1, "exp": 2**40}
    token = jwt.encode(claims, TEST_SECRET_KEY, algorithm="HS256")

    response = await client.get("/jobs", headers={"Authorization": f"Bearer {token}"})

    assert response.status == 401


async def test_racing_first_registrations_make_one_admin(client):
    bodies = [{"username": f"user{n}", "password": PASSWORD} for n in range(10)]

    await asyncio.gather(*(client.post("/users", json=body) for body in bodies))

    admins = []
    for body in bodies:
        token = (await (await client.post("/login", json=body)).json())["token"]
        admins.append(jwt.decode(token, TEST_SECRET_KEY, algorithms=["HS256"])["admin"])
    assert admins.count(True) == 1


async def test_a_user_cannot_take_over_another_users_agent(client, admin, user):
    mallory = await register(client, "mallory")
    await enroll(client, user, "bobs-db", ["db"])

    response = await client.post(
        "/agents",
        json={"hostname": "bobs-db", "ip": "10.6.6.6", "labels": ["mallory"]},
        headers=mallory.headers,
    )

    assert response.status == 409
    assert await response.json() == {
        "error": "hostname_taken",
        "message": "Agent bobs-db is registered already, and not by you",
    }


async def test_the_owner_and_the_admin_may_re_register_an_agent(client, admin, user):
    await enroll(client, user, "bobs-db", ["db"])

    by_owner = await enroll(client, user, "bobs-db", ["db"])
    by_admin = await enroll(client, admin, "bobs-db", ["db"])

    assert by_owner.id == by_admin.id


async def test_racing_enrollments_of_one_hostname_make_one_agent(client, user):
    answer = await client.post("/enrollment-tokens", json={}, headers=user.headers)
    token = (await answer.json())["token"]
    headers = {"Authorization": f"Bearer {token}"}
    body = {"hostname": "raced", "ip": "10.0.0.1"}

    responses = await asyncio.gather(
        *(client.post("/agents", json=body, headers=headers) for _ in range(8))
    )

    assert sorted(r.status for r in responses) == [201] + [409] * 7


async def test_racing_fires_by_hand_keep_forbid(client, user, clock, scheduler):
    agent = await enroll(client, user, "web-1", ["linux"])
    await agent.heartbeat()
    await scheduler.tick()
    job = await (await client.post("/jobs", json=JOB, headers=user.headers)).json()

    await asyncio.gather(
        *(client.post(f"/jobs/{job['id']}/run", headers=user.headers) for _ in range(8))
    )

    page = await client.get(f"/jobs/{job['id']}/runs", headers=user.headers)
    statuses = [run["status"] for run in (await page.json())["items"]]
    assert statuses.count("pending") == 1


@pytest.fixture
async def claimed(client, user, scheduler):
    agent = await enroll(client, user, "web-1", ["linux"])
    await agent.heartbeat()
    await scheduler.tick()
    job = await (await client.post("/jobs", json=JOB, headers=user.headers)).json()
    await client.post(f"/jobs/{job['id']}/run", headers=user.headers)
    [run] = await agent.claim()
    return agent, run, job


async def test_a_lease_token_that_is_not_ascii_is_stale(claimed):
    agent, run, _ = claimed

    answer = await agent.report(
        {**run, "lease_token": "lt_\u00e9"}, "start", status=409
    )

    assert answer["error"] == "stale_lease"


async def test_output_after_the_run_ended_is_not_stored(client, user, claimed):
    agent, run, _ = claimed
    await agent.run_to_end(run, output="done\n")

    late = await agent.report(run, "output", seq=5, stream="stdout", data="late\n")

    assert late == {"stored": False}
    shown = await (
        await client.get(f"/runs/{run['run_id']}", headers=user.headers)
    ).json()
    assert (shown["output"], shown["output_bytes"]) == ("done\n", 5)


@pytest.mark.parametrize("running", [[2**31], [2**63], [10**40]])
async def test_heartbeat_run_ids_out_of_range_are_refused(claimed, running):
    agent, _, _ = claimed

    answer = await agent.call("/agent/heartbeat", {"running": running}, status=400)

    assert answer["field"] == "running"


async def test_a_signal_outcome_needs_its_signal(claimed):
    agent, run, _ = claimed

    answer = await agent.report(run, "finish", status=400, outcome="signaled")

    assert answer["field"] == "signal"


@pytest.mark.parametrize("label", ["%00", "%25", "Bad%20Label"])
async def test_label_filters_must_be_labels(client, user, label):
    jobs = await client.get(f"/jobs?label={label}", headers=user.headers)
    agents = await client.get(f"/agents?label={label}", headers=user.headers)

    assert (jobs.status, agents.status) == (400, 400)


@pytest.mark.parametrize("ip", ["fe80::1%eth0", "fe80::1%\n<script>", "fe80::1%"])
async def test_ipv6_zones_are_refused(client, user, ip):
    body = {"hostname": "web-1", "ip": ip}

    response = await client.post("/agents", json=body, headers=user.headers)

    assert response.status == 400
    assert (await response.json())["field"] == "ip"


async def test_a_preview_reaching_the_end_of_the_calendar_stops_there(client, user):
    body = {
        "schedule": "59 23 31 12 *",
        "timezone": "America/New_York",
        "after": "9997-06-30T00:00:00+00:00",
        "count": 5,
    }

    response = await client.post("/schedules/preview", json=body, headers=user.headers)

    assert response.status == 200
    assert (await response.json())["fire_times"] == ["9997-12-31T23:59:00-05:00"]


async def test_a_very_long_schedule_is_refused_without_parsing(client, user):
    body = {"schedule": "0," * 100_000 + "0 * * * *"}

    response = await client.post("/schedules/preview", json=body, headers=user.headers)

    assert response.status == 400
    assert await response.json() == {
        "error": "invalid_schedule",
        "message": "schedule: longer than 256 characters",
        "field": "schedule",
    }


async def test_null_in_a_change_is_refused_not_a_reset(client, user):
    job = await (
        await client.post("/jobs", json={**JOB, "retries": 5}, headers=user.headers)
    ).json()

    response = await client.patch(
        f"/jobs/{job['id']}", json={"retries": None}, headers=user.headers
    )

    assert response.status == 400
    shown = await (await client.get(f"/jobs/{job['id']}", headers=user.headers)).json()
    assert shown["retries"] == 5


async def test_ids_of_deleted_jobs_and_runs_are_never_reused(client, user, claimed):
    _, run, job = claimed
    await client.delete(f"/jobs/{job['id']}", headers=user.headers)

    again = await (await client.post("/jobs", json=JOB, headers=user.headers)).json()
    fired = await client.post(f"/jobs/{again['id']}/run", headers=user.headers)

    assert again["id"] > job["id"]
    assert (await fired.json())["runs"][0]["id"] > run["run_id"]


async def test_racing_deletes_of_one_job_succeed_once(client, user):
    job = await (await client.post("/jobs", json=JOB, headers=user.headers)).json()

    responses = await asyncio.gather(
        *(client.delete(f"/jobs/{job['id']}", headers=user.headers) for _ in range(6))
    )

    assert sorted(r.status for r in responses) == [204] + [404] * 5


async def test_an_agents_labels_cannot_be_set_to_null(client, admin):
    agent = await enroll(client, admin, "web-1", ["linux"])

    response = await client.patch(
        f"/agents/{agent.id}", json={"labels": None}, headers=admin.headers
    )

    assert response.status == 400
