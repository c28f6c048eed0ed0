"""The scheduler as it runs in the relay: its own task, and beside another."""

import asyncio

from api_support import enroll, make_settings, register

from relay.app import create_app
from relay.keys import SCHEDULER, SEEN

MINUTELY = {
    "schedule": "* * * * *",
    "command": "true",
    "target": {"labels": ["linux"]},
    "concurrency": "allow",
}


async def _all_runs(client, person) -> list[dict]:
    runs, cursor = [], ""
    while True:
        page = await client.get(f"/runs?limit=200{cursor}", headers=person.headers)
        body = await page.json()
        runs += body["items"]
        if body["next_cursor"] is None:
            return runs
        cursor = f"&cursor={body['next_cursor']}"


async def _eventually(check, seconds: float = 5.0):
    for _ in range(int(seconds / 0.02)):
        result = await check()
        if result:
            return result
        await asyncio.sleep(0.02)
    raise AssertionError("condition not met in time")


async def test_the_running_scheduler_fires_when_the_clock_reaches_the_time(
    aiohttp_client, database_url, tmp_path, clock
):
    settings = make_settings(database_url, tmp_path, SCHEDULER="true")
    client = await aiohttp_client(create_app(settings, clock))
    person = await register(client, "ada")
    job = {**MINUTELY, "name": "tick", "schedule": "0 10 * * *"}
    await client.post("/jobs", json=job, headers=person.headers)
    await asyncio.sleep(0.1)
    assert await _all_runs(client, person) == []

    await clock.advance(30)

    runs = await _eventually(lambda: _all_runs(client, person))
    assert [(run["scheduled_for"], run["status"]) for run in runs] == [
        ("2026-01-05T10:00:00+00:00", "skipped")
    ]


async def test_two_schedulers_on_one_database_never_fire_twice(
    aiohttp_client, database_url, tmp_path, clock
):
    first = await aiohttp_client(
        create_app(make_settings(database_url, tmp_path), clock)
    )
    second = await aiohttp_client(
        create_app(make_settings(database_url, tmp_path), clock)
    )
    person = await register(first, "ada")
    agent = await enroll(first, person, "web-1", ["linux"])
    for number in range(20):
        job = {**MINUTELY, "name": f"job-{number}"}
        await first.post("/jobs", json=job, headers=person.headers)

    for _ in range(10):
        await clock.advance(60)
        await agent.heartbeat()
        await first.app[SEEN].flush()
        await asyncio.gather(first.app[SCHEDULER].tick(), second.app[SCHEDULER].tick())

    runs = await _all_runs(first, person)
    fires = [(run["job_id"], run["scheduled_for"]) for run in runs]
    assert len(fires) == 200
    assert len(set(fires)) == 200
    assert {run["status"] for run in runs} == {"pending"}
