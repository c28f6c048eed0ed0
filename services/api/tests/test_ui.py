"""The web UI: pages for people, behind a login form and a session cookie."""

import pytest
from api_support import PASSWORD, enroll, register

JOB = {
    "name": "nightly-backup",
    "schedule": "30 2 * * *",
    "timezone": "Europe/Berlin",
    "command": "echo '<b>done</b>'",
    "target": {"labels": ["linux"]},
}


async def _log_in(client, username: str) -> None:
    form = {"username": username, "password": PASSWORD}
    response = await client.post("/ui/login", data=form, allow_redirects=False)
    assert response.status == 303


@pytest.fixture
async def job(client, user):
    response = await client.post("/jobs", json=JOB, headers=user.headers)
    return await response.json()


async def test_pages_send_a_stranger_to_the_login_form(client):
    response = await client.get("/ui/", allow_redirects=False)

    assert response.status == 303
    assert response.headers["Location"] == "/ui/login"


async def test_a_wrong_password_shows_the_form_again_with_the_reason(client, user):
    form = {"username": "bob", "password": "not the one"}

    response = await client.post("/ui/login", data=form)

    assert response.status == 401
    assert "Invalid username or password" in await response.text()


async def test_logging_in_sets_a_strict_http_only_session_cookie(client, user):
    form = {"username": "bob", "password": PASSWORD}

    response = await client.post("/ui/login", data=form, allow_redirects=False)

    cookie = response.cookies["relay_session"]
    assert response.headers["Location"] == "/ui/"
    assert (cookie["httponly"], cookie["samesite"]) == (True, "Strict")


async def test_the_jobs_page_lists_the_users_jobs_in_their_zone(client, user, job):
    await _log_in(client, "bob")

    page = await (await client.get("/ui/")).text()

    assert f'<a href="/ui/jobs/{job["id"]}">nightly-backup</a>' in page
    assert "2026-01-06 02:30:00 CET" in page


async def test_running_a_job_from_its_page_makes_a_manual_run(
    client, user, job, scheduler
):
    agent = await enroll(client, user, "web-1", ["linux"])
    await agent.heartbeat()
    await scheduler.tick()
    await _log_in(client, "bob")

    response = await client.post(f"/ui/jobs/{job['id']}/run", allow_redirects=False)
    page = await (await client.get(f"/ui/jobs/{job['id']}")).text()

    assert response.status == 303
    assert "<td>manual</td>" in page
    assert '<span class="status pending">pending</span>' in page


async def test_pausing_from_the_page_pauses_the_job(client, user, job):
    await _log_in(client, "bob")

    await client.post(f"/ui/jobs/{job['id']}/toggle")

    shown = await (await client.get(f"/jobs/{job['id']}", headers=user.headers)).json()
    assert shown["enabled"] is False


async def test_a_runs_output_is_shown_escaped(client, user, job, scheduler):
    agent = await enroll(client, user, "web-1", ["linux"])
    await agent.heartbeat()
    await scheduler.tick()
    await client.post(f"/jobs/{job['id']}/run", headers=user.headers)
    [run] = await agent.claim()
    await agent.run_to_end(run, output="<b>done</b>\n")
    await _log_in(client, "bob")

    page = await (await client.get(f"/ui/runs/{run['run_id']}")).text()

    assert '<pre class="output">&lt;b&gt;done&lt;/b&gt;\n</pre>' in page


async def test_another_users_job_page_is_not_found(client, admin, user):
    created = await client.post("/jobs", json=JOB, headers=admin.headers)
    job = await created.json()
    await register(client, "carol")
    await _log_in(client, "carol")

    response = await client.get(f"/ui/jobs/{job['id']}")

    assert response.status == 404
    assert f"No job {job['id']}" in await response.text()


async def test_a_form_posted_from_another_site_is_refused(client, user, job):
    await _log_in(client, "bob")

    response = await client.post(
        f"/ui/jobs/{job['id']}/toggle", headers={"Origin": "http://evil.example"}
    )

    assert response.status == 403
    shown = await (await client.get(f"/jobs/{job['id']}", headers=user.headers)).json()
    assert shown["enabled"] is True


async def test_the_agents_page_lists_agents_with_their_status(client, user):
    agent = await enroll(client, user, "web-1", ["linux"])
    await agent.heartbeat()
    await _log_in(client, "bob")

    page = await (await client.get("/ui/agents")).text()

    assert "<td>web-1</td>" in page
    assert '<span class="tag">linux</span>' in page


async def test_logging_out_ends_the_session(client, user):
    await _log_in(client, "bob")

    await client.post("/ui/logout")
    response = await client.get("/ui/", allow_redirects=False)

    assert response.status == 303
