"""Runs as users see them: listed, filtered, shown with output, cancelled."""

import pytest
from api_support import enroll

JOB = {
    "name": "backup",
    "schedule": "0 10 * * *",
    "command": "echo hello",
    "target": {"labels": ["linux"]},
    "concurrency": "allow",
}
NOW = "2026-01-05T09:59:30+00:00"
STATUSES = (
    "pending, claimed, running, succeeded, failed, timed_out, cancelled, lost, skipped"
)


async def create_job(client, person, **fields):
    response = await client.post(
        "/jobs", json={**JOB, **fields}, headers=person.headers
    )
    assert response.status == 201, await response.text()
    return await response.json()


async def online_agent(client, person, scheduler, hostname="web-1", labels=("linux",)):
    agent = await enroll(client, person, hostname, labels)
    await agent.heartbeat()
    await scheduler.tick()  # heartbeats are written at each tick
    return agent


async def run_now(client, person, job, clock=None) -> dict:
    """One run of the job, made by hand; a second later, if given the clock."""
    if clock is not None:
        await clock.advance(1)  # one fire per job and moment
    response = await client.post(f"/jobs/{job['id']}/run", headers=person.headers)
    assert response.status == 201, await response.text()
    (run,) = (await response.json())["runs"]
    return run


async def get(client, person, path, status=200):
    response = await client.get(path, headers=person.headers)
    assert response.status == status, await response.text()
    return await response.json()


async def run_ids(client, person, path):
    return [run["id"] for run in (await get(client, person, path))["items"]]


async def cancel(client, person, run_id):
    return await client.post(f"/runs/{run_id}/cancel", headers=person.headers)


# Listing -----------------------------------------------------------------------


async def test_runs_are_listed_newest_first(client, user, clock):
    job = await create_job(client, user)
    made = [await run_now(client, user, job, clock) for _ in range(3)]

    assert await get(client, user, "/runs") == {
        "items": list(reversed(made)),
        "next_cursor": None,
    }


async def test_the_cursor_of_a_page_of_runs_gives_the_older_ones(client, user, clock):
    job = await create_job(client, user)
    for _ in range(5):
        await run_now(client, user, job, clock)

    first = await get(client, user, "/runs?limit=2")
    second = await get(client, user, f"/runs?limit=2&cursor={first['next_cursor']}")
    third = await get(client, user, f"/runs?limit=2&cursor={second['next_cursor']}")

    assert ([run["id"] for run in first["items"]], first["next_cursor"]) == (
        [5, 4],
        "4",
    )
    assert ([run["id"] for run in second["items"]], second["next_cursor"]) == (
        [3, 2],
        "2",
    )
    assert ([run["id"] for run in third["items"]], third["next_cursor"]) == ([1], None)


async def test_runs_can_be_listed_by_status(client, user, clock, scheduler):
    job = await create_job(client, user)
    skipped = await run_now(client, user, job, clock)
    await online_agent(client, user, scheduler)
    pending = await run_now(client, user, job, clock)

    assert await run_ids(client, user, "/runs?status=skipped") == [skipped["id"]]
    assert await run_ids(client, user, "/runs?status=pending") == [pending["id"]]
    assert await run_ids(client, user, "/runs?status=succeeded") == []


@pytest.mark.parametrize("status", ["done", "", "PENDING"])
async def test_a_status_filter_that_is_no_status_is_refused(client, user, status):
    response = await client.get(
        "/runs", params={"status": status}, headers=user.headers
    )

    assert response.status == 400
    assert await response.json() == {
        "error": "invalid_field",
        "message": f"status must be one of {STATUSES}",
        "field": "status",
    }


async def test_runs_can_be_listed_by_job(client, user, clock):
    first = await create_job(client, user, name="first")
    second = await create_job(client, user, name="second")
    mine = await run_now(client, user, first, clock)
    await run_now(client, user, second, clock)

    assert await run_ids(client, user, f"/runs?job={first['id']}") == [mine["id"]]


async def test_runs_can_be_listed_by_agent(client, user, clock, scheduler):
    web = await online_agent(client, user, scheduler, "web-1", ["web"])
    await online_agent(client, user, scheduler, "db-1", ["db"])
    on_web = await create_job(client, user, name="on-web", target={"labels": ["web"]})
    on_db = await create_job(client, user, name="on-db", target={"labels": ["db"]})
    run = await run_now(client, user, on_web, clock)
    await run_now(client, user, on_db, clock)

    assert await run_ids(client, user, f"/runs?agent={web.id}") == [run["id"]]


@pytest.mark.parametrize("name", ["job", "agent", "cursor"])
async def test_a_filter_id_that_is_not_an_id_is_refused(client, user, name):
    response = await client.get("/runs", params={name: "x"}, headers=user.headers)

    assert response.status == 400
    assert await response.json() == {
        "error": "invalid_field",
        "message": f"{name} must be a whole number from 0 to 2147483647",
        "field": name,
    }


@pytest.mark.parametrize("limit", ["0", "201", "x", "²"])
async def test_a_bad_page_size_of_runs_is_refused(client, user, limit):
    response = await client.get("/runs", params={"limit": limit}, headers=user.headers)

    assert response.status == 400
    assert (await response.json())["field"] == "limit"


async def test_a_user_lists_only_the_runs_of_their_own_jobs(client, admin, user, clock):
    admins = await create_job(client, admin)
    bobs = await create_job(client, user)
    await run_now(client, admin, admins, clock)
    mine = await run_now(client, user, bobs, clock)

    assert await run_ids(client, user, "/runs") == [mine["id"]]
    assert await run_ids(client, user, f"/runs?job={admins['id']}") == []


async def test_the_admin_lists_the_runs_of_everyones_jobs(client, admin, user, clock):
    admins = await create_job(client, admin)
    bobs = await create_job(client, user)
    first = await run_now(client, admin, admins, clock)
    second = await run_now(client, user, bobs, clock)

    assert await run_ids(client, admin, "/runs") == [second["id"], first["id"]]


async def test_a_jobs_runs_are_listed_under_it_newest_first(client, user, clock):
    job = await create_job(client, user)
    other = await create_job(client, user, name="other")
    first = await run_now(client, user, job, clock)
    await run_now(client, user, other, clock)
    second = await run_now(client, user, job, clock)

    assert await get(client, user, f"/jobs/{job['id']}/runs") == {
        "items": [second, first],
        "next_cursor": None,
    }


async def test_a_jobs_runs_come_in_pages(client, user, clock):
    job = await create_job(client, user)
    for _ in range(3):
        await run_now(client, user, job, clock)

    first = await get(client, user, f"/jobs/{job['id']}/runs?limit=2")
    rest = await get(
        client, user, f"/jobs/{job['id']}/runs?limit=2&cursor={first['next_cursor']}"
    )

    assert [run["id"] for run in first["items"]] == [3, 2]
    assert ([run["id"] for run in rest["items"]], rest["next_cursor"]) == ([1], None)


async def test_a_jobs_runs_can_be_listed_by_status(client, user, clock, scheduler):
    job = await create_job(client, user)
    await run_now(client, user, job, clock)
    await online_agent(client, user, scheduler)
    pending = await run_now(client, user, job, clock)

    path = f"/jobs/{job['id']}/runs?status=pending"
    assert await run_ids(client, user, path) == [pending["id"]]


async def test_the_runs_of_another_users_job_are_not_found(client, admin, user, clock):
    job = await create_job(client, admin)
    await run_now(client, admin, job, clock)

    body = await get(client, user, f"/jobs/{job['id']}/runs", status=404)

    assert body == {"error": "job_not_found", "message": f"No job {job['id']}"}


async def test_the_admin_lists_the_runs_of_any_users_job(client, admin, user, clock):
    job = await create_job(client, user)
    run = await run_now(client, user, job, clock)

    assert await run_ids(client, admin, f"/jobs/{job['id']}/runs") == [run["id"]]


@pytest.mark.parametrize("job_id", ["abc", "99", "²", "2147483648"])
async def test_the_runs_of_no_job_are_not_found(client, user, job_id):
    body = await get(client, user, f"/jobs/{job_id}/runs", status=404)

    assert body == {"error": "job_not_found", "message": f"No job {job_id}"}


# One run -------------------------------------------------------------------------


async def test_a_run_is_shown_with_its_fields_and_output(client, user, scheduler):
    agent = await online_agent(client, user, scheduler)
    job = await create_job(client, user)
    made = await run_now(client, user, job)

    shown = await get(client, user, f"/runs/{made['id']}")

    assert shown == {
        "id": made["id"],
        "job_id": job["id"],
        "scheduled_for": NOW,
        "trigger": "manual",
        "attempt": 1,
        "first_run_id": None,
        "agent_id": agent.id,
        "status": "pending",
        "reason": None,
        "cancel_requested": False,
        "created_at": NOW,
        "not_before": NOW,
        "claimed_at": None,
        "started_at": None,
        "finished_at": None,
        "exit_code": None,
        "signal": None,
        "output_bytes": 0,
        "output_truncated": False,
        "output": "",
    }


async def test_a_finished_run_shows_its_result_and_output(
    client, user, clock, scheduler
):
    agent = await online_agent(client, user, scheduler)
    job = await create_job(client, user)
    made = await run_now(client, user, job)
    (claimed,) = await agent.claim()
    await clock.advance(5)
    await agent.run_to_end(claimed, exit_code=3, output="disk full\n")

    shown = await get(client, user, f"/runs/{made['id']}")

    assert {
        key: shown[key]
        for key in ("status", "exit_code", "output", "output_bytes", "finished_at")
    } == {
        "status": "failed",
        "exit_code": 3,
        "output": "disk full\n",
        "output_bytes": 10,
        "finished_at": "2026-01-05T09:59:35+00:00",
    }


async def test_another_users_run_is_not_found(client, admin, user):
    job = await create_job(client, admin)
    run = await run_now(client, admin, job)

    body = await get(client, user, f"/runs/{run['id']}", status=404)

    assert body == {"error": "run_not_found", "message": f"No run {run['id']}"}


async def test_the_admin_sees_any_users_run(client, admin, user):
    job = await create_job(client, user)
    run = await run_now(client, user, job)

    shown = await get(client, admin, f"/runs/{run['id']}")

    assert shown["job_id"] == job["id"]


@pytest.mark.parametrize("run_id", ["abc", "99", "²", "2147483648", "999999999999"])
async def test_a_run_id_that_names_no_run_is_not_found(client, user, run_id):
    body = await get(client, user, f"/runs/{run_id}", status=404)

    assert body == {"error": "run_not_found", "message": f"No run {run_id}"}


async def _run_with_output(client, user, scheduler):
    agent = await online_agent(client, user, scheduler)
    job = await create_job(client, user)
    made = await run_now(client, user, job)
    (claimed,) = await agent.claim()
    await agent.report(claimed, "start")
    await agent.report(claimed, "output", seq=0, stream="stdout", data="out 1\n")
    await agent.report(claimed, "output", seq=1, stream="stderr", data="err 1\n")
    await agent.report(claimed, "output", seq=2, stream="stdout", data="out 2\n")
    return made


async def test_a_runs_output_is_plain_text_in_the_order_it_was_printed(
    client, user, scheduler
):
    run = await _run_with_output(client, user, scheduler)

    response = await client.get(f"/runs/{run['id']}/output", headers=user.headers)

    assert response.status == 200
    assert response.content_type == "text/plain"
    assert await response.text() == "out 1\nerr 1\nout 2\n"


@pytest.mark.parametrize(
    ("stream", "text"), [("stdout", "out 1\nout 2\n"), ("stderr", "err 1\n")]
)
async def test_one_stream_of_a_runs_output_can_be_read_alone(
    client, user, scheduler, stream, text
):
    run = await _run_with_output(client, user, scheduler)

    response = await client.get(
        f"/runs/{run['id']}/output", params={"stream": stream}, headers=user.headers
    )

    assert await response.text() == text


async def test_a_stream_other_than_stdout_or_stderr_is_refused(client, user):
    job = await create_job(client, user)
    run = await run_now(client, user, job)

    response = await client.get(
        f"/runs/{run['id']}/output?stream=both", headers=user.headers
    )

    assert response.status == 400
    assert await response.json() == {
        "error": "invalid_field",
        "message": "stream must be stdout or stderr",
        "field": "stream",
    }


async def test_a_run_with_no_output_has_empty_output(client, user):
    job = await create_job(client, user)
    run = await run_now(client, user, job)

    response = await client.get(f"/runs/{run['id']}/output", headers=user.headers)

    assert (response.status, await response.text()) == (200, "")


async def test_the_output_of_another_users_run_is_not_found(client, admin, user):
    job = await create_job(client, admin)
    run = await run_now(client, admin, job)

    body = await get(client, user, f"/runs/{run['id']}/output", status=404)

    assert body == {"error": "run_not_found", "message": f"No run {run['id']}"}


# Cancelling ----------------------------------------------------------------------


async def test_cancelling_a_pending_run_ends_it_at_once(client, user, clock, scheduler):
    await online_agent(client, user, scheduler)
    job = await create_job(client, user)
    run = await run_now(client, user, job)
    await clock.advance(5)

    response = await cancel(client, user, run["id"])

    assert response.status == 202
    assert await response.json() == {
        **run,
        "status": "cancelled",
        "reason": "cancel requested by bob",
        "finished_at": "2026-01-05T09:59:35+00:00",
    }


async def test_a_cancelled_pending_run_is_not_handed_to_its_agent(
    client, user, scheduler
):
    agent = await online_agent(client, user, scheduler)
    job = await create_job(client, user)
    run = await run_now(client, user, job)

    await cancel(client, user, run["id"])

    assert await agent.claim() == []


async def test_cancelling_a_claimed_run_asks_its_agent_to_stop(client, user, scheduler):
    agent = await online_agent(client, user, scheduler)
    job = await create_job(client, user)
    run = await run_now(client, user, job)
    await agent.claim()

    response = await cancel(client, user, run["id"])

    assert response.status == 202
    body = await response.json()
    assert (body["status"], body["cancel_requested"], body["reason"]) == (
        "claimed",
        True,
        "cancel requested by bob",
    )
    assert body["finished_at"] is None


async def test_cancelling_a_running_run_leaves_it_running_until_its_agent_stops(
    client, user, scheduler
):
    agent = await online_agent(client, user, scheduler)
    job = await create_job(client, user)
    run = await run_now(client, user, job)
    (claimed,) = await agent.claim()
    await agent.report(claimed, "start")

    response = await cancel(client, user, run["id"])

    assert response.status == 202
    body = await response.json()
    assert (body["status"], body["cancel_requested"]) == ("running", True)


async def test_the_agent_hears_of_a_cancel_at_its_next_heartbeat(
    client, user, scheduler
):
    agent = await online_agent(client, user, scheduler)
    job = await create_job(client, user)
    run = await run_now(client, user, job)
    (claimed,) = await agent.claim()
    await agent.report(claimed, "start")

    await cancel(client, user, run["id"])

    assert (await agent.heartbeat(running=[run["id"]]))["cancel"] == [run["id"]]


async def test_cancelling_a_run_that_ended_is_refused(client, user, scheduler):
    agent = await online_agent(client, user, scheduler)
    job = await create_job(client, user)
    run = await run_now(client, user, job)
    (claimed,) = await agent.claim()
    await agent.run_to_end(claimed)

    response = await cancel(client, user, run["id"])

    assert response.status == 409
    assert await response.json() == {
        "error": "run_ended",
        "message": f"Run {run['id']} already ended: succeeded",
    }


async def test_cancelling_a_skipped_run_is_refused(client, user):
    job = await create_job(client, user)
    run = await run_now(client, user, job)

    response = await cancel(client, user, run["id"])

    assert response.status == 409
    assert await response.json() == {
        "error": "run_ended",
        "message": f"Run {run['id']} already ended: skipped",
    }


async def test_cancelling_a_run_twice_is_refused_the_second_time(
    client, user, scheduler
):
    await online_agent(client, user, scheduler)
    job = await create_job(client, user)
    run = await run_now(client, user, job)
    await cancel(client, user, run["id"])

    response = await cancel(client, user, run["id"])

    assert response.status == 409
    assert (await response.json())["message"] == (
        f"Run {run['id']} already ended: cancelled"
    )


async def test_another_users_run_cannot_be_cancelled(client, admin, user, scheduler):
    await online_agent(client, admin, scheduler)
    job = await create_job(client, admin)
    run = await run_now(client, admin, job)

    response = await cancel(client, user, run["id"])

    assert response.status == 404
    assert await response.json() == {
        "error": "run_not_found",
        "message": f"No run {run['id']}",
    }
    assert (await get(client, admin, f"/runs/{run['id']}"))["status"] == "pending"


async def test_the_admin_may_cancel_any_users_run(client, admin, user, scheduler):
    await online_agent(client, user, scheduler)
    job = await create_job(client, user)
    run = await run_now(client, user, job)

    response = await cancel(client, admin, run["id"])

    assert response.status == 202
    body = await response.json()
    assert (body["status"], body["reason"]) == ("cancelled", "cancel requested by ada")


@pytest.mark.parametrize("run_id", ["abc", "99", "2147483648"])
async def test_cancelling_no_run_is_not_found(client, user, run_id):
    response = await cancel(client, user, run_id)

    assert response.status == 404
    assert (await response.json())["error"] == "run_not_found"


# Tokens --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/runs"),
        ("GET", "/jobs/{job}/runs"),
        ("GET", "/runs/{run}"),
        ("GET", "/runs/{run}/output"),
        ("POST", "/runs/{run}/cancel"),
    ],
)
async def test_every_run_route_needs_a_user_token(
    client, user, scheduler, method, path
):
    agent = await online_agent(client, user, scheduler)
    job = await create_job(client, user)
    run = await run_now(client, user, job)
    path = path.format(job=job["id"], run=run["id"])

    anonymous = await client.request(method, path)
    as_agent = await client.request(method, path, headers=agent.headers)

    assert (anonymous.status, as_agent.status) == (401, 401)
    assert await as_agent.json() == {
        "error": "unauthorized",
        "message": "An agent token cannot act as a user",
    }
    assert (await get(client, user, f"/runs/{run['id']}"))["status"] == "pending"
