"""Three relay processes on one PostgreSQL database, the leader killed midway.

The relays' clocks run sixty times faster than real time (one minute a
second), so a few dozen real seconds hold a few hundred real fires.
"""

import asyncio
import itertools
import signal
from collections import defaultdict
from datetime import UTC, datetime, timedelta

import aiohttp
import pytest
from api_support import PASSWORD, RelayProcess

from relay_migrator.revisions import upgrade_to_head

RATE = 60
JOBS = 10
AGENTS = 3
SECONDS_BEFORE_KILL = 10
SECONDS_AFTER_KILL = 14


@pytest.fixture
def shared_database(fresh_postgres_url):
    upgrade_to_head(fresh_postgres_url)
    return fresh_postgres_url


@pytest.fixture
def relays(shared_database, tmp_path):
    env = {
        "DATABASE_URL": shared_database,
        "CLOCK_RATE": str(RATE),
        "CLOCK_EPOCH": datetime.now(UTC).isoformat(),
        # In clock time: an hour of heartbeat is a minute of real time.
        "HEARTBEAT_SECONDS": "3600",
        "LEASE_SECONDS": "86400",
    }
    processes = []
    for number in range(3):
        folder = tmp_path / f"relay-{number}"
        folder.mkdir()
        processes.append(RelayProcess(folder, env).start())
    yield processes
    for process in processes:
        process.stop(signal.SIGKILL)


class Fleet:
    """Scripted agents that claim from whichever relay answers."""

    def __init__(self, http: aiohttp.ClientSession, relays, tokens) -> None:
        self.http = http
        self.urls = itertools.cycle([relay.url for relay in relays])
        self.tokens = tokens
        self.stopping = False

    async def call(self, token: str, path: str, body: dict):
        for _ in range(6):
            url = next(self.urls)
            headers = {"Authorization": f"Bearer {token}"}
            try:
                async with self.http.post(
                    url + path, json=body, headers=headers
                ) as answer:
                    assert answer.status == 200, await answer.text()
                    return await answer.json()
            except aiohttp.ClientConnectionError:
                continue
        raise AssertionError(f"no relay answered {path}")

    async def work(self, token: str) -> None:
        await self.call(token, "/agent/heartbeat", {})
        while not self.stopping:
            answer = await self.call(token, "/agent/claim", {"slots": 8, "wait": 1})
            for run in answer["runs"]:
                lease = {"lease_token": run["lease_token"]}
                await self.call(token, f"/agent/runs/{run['run_id']}/start", lease)
                finish = {**lease, "outcome": "exited", "exit_code": 0}
                await self.call(token, f"/agent/runs/{run['run_id']}/finish", finish)


async def _until_online(http, relay, headers) -> None:
    for _ in range(100):
        listed = await (await http.get(f"{relay.url}/agents", headers=headers)).json()
        if [agent["status"] for agent in listed] == ["online"] * AGENTS:
            return
        await asyncio.sleep(0.1)
    raise AssertionError("agents did not come online")


async def _enroll(http, relay) -> tuple[dict, list[str]]:
    account = {"username": "ops", "password": PASSWORD}
    await http.post(f"{relay.url}/users", json=account)
    login = await (await http.post(f"{relay.url}/login", json=account)).json()
    headers = {"Authorization": f"Bearer {login['token']}"}

    tokens = []
    for number in range(AGENTS):
        body = {"hostname": f"agent-{number}", "ip": "127.0.0.1", "labels": ["linux"]}
        agent = await (
            await http.post(f"{relay.url}/agents", json=body, headers=headers)
        ).json()
        tokens.append(agent["token"])
    return headers, tokens


async def _make_jobs(http, relay, headers) -> list[int]:
    job_ids = []
    for number in range(JOBS):
        job = {
            "name": f"every-minute-{number}",
            "schedule": "* * * * *",
            "command": "true",
            "target": {"labels": ["linux"]},
            "concurrency": "allow",
            "catchup": {"max_runs": 100, "max_age_seconds": 86400},
        }
        created = await http.post(f"{relay.url}/jobs", json=job, headers=headers)
        job_ids.append((await created.json())["id"])
    return job_ids


async def _leader(relays) -> RelayProcess:
    for _ in range(100):
        leaders = [r for r in relays if "scheduler leadership taken" in r.output()]
        if leaders:
            return leaders[0]
        await asyncio.sleep(0.1)
    raise AssertionError("no relay took the scheduler's leadership")


async def _all_runs(http, url: str, headers: dict) -> list[dict]:
    runs, cursor = [], ""
    while True:
        page = await http.get(f"{url}/runs?limit=200{cursor}", headers=headers)
        body = await page.json()
        runs += body["items"]
        if body["next_cursor"] is None:
            return runs
        cursor = f"&cursor={body['next_cursor']}"


async def _drain(http, url: str, headers: dict) -> list[dict]:
    """Wait until no run is waiting or held; return every run."""
    for _ in range(100):
        runs = await _all_runs(http, url, headers)
        if not any(run["status"] in ("pending", "claimed", "running") for run in runs):
            return runs
        await asyncio.sleep(0.2)
    raise AssertionError("runs left waiting or held")


async def test_every_fire_runs_exactly_once_when_the_leader_is_killed(relays):
    async with aiohttp.ClientSession() as http:
        headers, tokens = await _enroll(http, relays[0])
        fleet = Fleet(http, relays, tokens)
        workers = [asyncio.create_task(fleet.work(token)) for token in tokens]
        await _until_online(http, relays[0], headers)
        job_ids = await _make_jobs(http, relays[0], headers)

        await asyncio.sleep(SECONDS_BEFORE_KILL)
        leader = await _leader(relays)
        leader.stop(signal.SIGKILL)
        survivors = [relay for relay in relays if relay is not leader]
        await asyncio.sleep(SECONDS_AFTER_KILL)

        for job_id in job_ids:
            pause = {"enabled": False}
            url = f"{survivors[0].url}/jobs/{job_id}"
            assert (await http.patch(url, json=pause, headers=headers)).status == 200
        runs = await _drain(http, survivors[0].url, headers)
        fleet.stopping = True
        await asyncio.gather(*workers)

    fired = [run for run in runs if run["reason"] != "job paused at fire time"]
    by_job = defaultdict(list)
    for run in fired:
        by_job[run["job_id"]].append(datetime.fromisoformat(run["scheduled_for"]))

    assert len(fired) >= 200
    assert {(run["status"], run["reason"]) for run in fired} == {("succeeded", None)}
    assert sorted(by_job) == sorted(job_ids)
    for times in by_job.values():
        times.sort()
        assert len(times) == len(set(times)), "a fire ran twice"
        gaps = {later - earlier for earlier, later in itertools.pairwise(times)}
        assert gaps == {timedelta(minutes=1)}, "a fire was lost"
    taken_over = [r for r in survivors if "scheduler leadership taken" in r.output()]
    assert len(taken_over) == 1
    print(f"fires: {len(fired)} over {len(by_job)} jobs, each exactly once")
