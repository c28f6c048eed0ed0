"""Old runs go: beyond a count per job, and beyond an age."""

from api_support import enroll, make_settings, register

from relay.app import create_app
from relay.keys import SCHEDULER

JOB = {
    "name": "often",
    "schedule": "* * * * *",
    "command": "true",
    "target": {"labels": ["linux"]},
}


async def _app(aiohttp_client, database_url, tmp_path, clock, **settings):
    app = create_app(make_settings(database_url, tmp_path, **settings), clock)
    client = await aiohttp_client(app)
    person = await register(client, "ada")
    agent = await enroll(client, person, "web-1", ["linux"])
    return client, person, agent


async def _run_minutes(client, agent, clock, minutes: int) -> None:
    for _ in range(minutes):
        await clock.advance(60)
        await agent.heartbeat()
        await client.app[SCHEDULER].tick()
        for run in await agent.claim(slots=5):
            await agent.run_to_end(run)


async def _run_ids(client, person) -> list[int]:
    page = await (await client.get("/runs?limit=200", headers=person.headers)).json()
    return [run["id"] for run in page["items"]]


async def test_runs_beyond_the_count_per_job_are_pruned(
    aiohttp_client, database_url, tmp_path, clock
):
    client, person, agent = await _app(
        aiohttp_client, database_url, tmp_path, clock, RUN_RETENTION_PER_JOB="3"
    )
    await client.post("/jobs", json=JOB, headers=person.headers)

    await _run_minutes(client, agent, clock, 6)

    assert await _run_ids(client, person) == [6, 5, 4]


async def test_runs_older_than_the_retention_age_are_pruned(
    aiohttp_client, database_url, tmp_path, clock
):
    client, person, agent = await _app(
        aiohttp_client, database_url, tmp_path, clock, RUN_RETENTION_DAYS="1"
    )
    created = await client.post("/jobs", json=JOB, headers=person.headers)
    job = await created.json()
    await _run_minutes(client, agent, clock, 2)
    await client.patch(
        f"/jobs/{job['id']}", json={"enabled": False}, headers=person.headers
    )

    await clock.advance(86400 + 60)
    await client.app[SCHEDULER].tick()

    remaining = await _run_ids(client, person)
    assert (len(remaining), min(remaining)) == (100, 3)
