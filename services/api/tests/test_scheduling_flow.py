"""One job's life, from curl-like calls to a scripted agent's report."""

from api_support import enroll

JOB = {
    "name": "backup",
    "schedule": "0 10 * * *",
    "command": "echo hello",
    "target": {"labels": ["linux"]},
}


async def test_a_job_fires_on_time_and_its_result_comes_back(
    client, user, clock, scheduler
):
    agent = await enroll(client, user, "web-1", ["linux"])
    await agent.heartbeat()
    created = await client.post("/jobs", json=JOB, headers=user.headers)
    job = await created.json()
    assert created.status == 201
    assert job["next_fire_at"] == "2026-01-05T10:00:00+00:00"

    await scheduler.tick()
    assert await agent.claim() == []

    await clock.advance(30)
    report = await scheduler.tick()
    runs = await agent.claim()
    assert report.runs_created == 1
    assert [run["command"] for run in runs] == ["echo hello"]
    assert runs[0]["scheduled_for"] == "2026-01-05T10:00:00+00:00"

    finished = await agent.run_to_end(runs[0], exit_code=0, output="hello\n")
    assert finished == {"status": "succeeded"}

    shown = await (
        await client.get(f"/runs/{runs[0]['run_id']}", headers=user.headers)
    ).json()
    assert shown["status"] == "succeeded"
    assert shown["exit_code"] == 0
    assert shown["output"] == "hello\n"
    assert shown["agent_id"] == agent.id
    job_after = await (
        await client.get(f"/jobs/{job['id']}", headers=user.headers)
    ).json()
    assert job_after["next_fire_at"] == "2026-01-06T10:00:00+00:00"
