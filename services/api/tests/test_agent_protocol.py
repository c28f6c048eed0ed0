"""The agent protocol, call by call, with a scripted agent."""

import asyncio
import time

import pytest
from api_support import enroll, make_settings, register

from relay.app import create_app
from relay.keys import SCHEDULER
from relay.store.output import CUT_MARK

JOB = {
    "name": "echo",
    "schedule": "0 10 * * *",
    "command": "echo hi",
    "target": {"labels": ["linux"]},
}


@pytest.fixture
async def agent(client, user):
    agent = await enroll(client, user, "web-1", ["linux"])
    await agent.heartbeat()
    return agent


@pytest.fixture
async def job(client, user):
    response = await client.post("/jobs", json=JOB, headers=user.headers)
    return await response.json()


@pytest.fixture
async def run(client, user, agent, job, scheduler):
    """A run claimed by the agent, not yet started."""
    await scheduler.tick()
    response = await client.post(f"/jobs/{job['id']}/run", headers=user.headers)
    assert (await response.json())["runs"][0]["status"] == "pending"
    [claimed] = await agent.claim()
    return claimed


async def _shown(client, user, run) -> dict:
    response = await client.get(f"/runs/{run['run_id']}", headers=user.headers)
    return await response.json()


async def test_heartbeat_answers_with_the_interval_and_marks_the_agent_online(
    client, user, agent, scheduler
):
    answer = await agent.heartbeat()
    await scheduler.tick()

    assert answer == {"heartbeat_seconds": 10, "cancel": []}
    listed = await (await client.get("/agents", headers=user.headers)).json()
    assert [a["status"] for a in listed] == ["online"]


async def test_a_claim_hands_out_the_run_with_a_lease(run, job):
    assert set(run) == {
        "run_id",
        "job_id",
        "job_name",
        "attempt",
        "scheduled_for",
        "command",
        "env",
        "timeout_seconds",
        "lease_token",
        "lease_seconds",
    }
    assert (run["job_id"], run["job_name"], run["command"]) == (
        job["id"],
        "echo",
        "echo hi",
    )
    assert (run["attempt"], run["lease_seconds"]) == (1, 60)
    assert run["lease_token"].startswith("lt_")


async def test_a_run_is_claimed_by_one_agent_only(client, user, run, agent):
    assert await agent.claim() == []


async def test_racing_claims_hand_each_run_out_once(
    client, user, agent, job, scheduler, clock
):
    await scheduler.tick()
    allow = {"concurrency": "allow"}
    await client.patch(f"/jobs/{job['id']}", json=allow, headers=user.headers)
    for _ in range(3):
        await client.post(f"/jobs/{job['id']}/run", headers=user.headers)
        await clock.advance(1)

    answers = await asyncio.gather(*(agent.claim(slots=3) for _ in range(4)))

    claimed = [run["run_id"] for answer in answers for run in answer]
    assert sorted(claimed) == sorted(set(claimed))
    assert len(claimed) == 3


async def test_a_waiting_claim_returns_as_soon_as_a_run_is_due(
    client, user, agent, job, scheduler
):
    await scheduler.tick()
    started = time.monotonic()
    waiting = asyncio.create_task(agent.claim(wait=10))
    await asyncio.sleep(0.2)

    await client.post(f"/jobs/{job['id']}/run", headers=user.headers)
    runs = await waiting

    assert [run["command"] for run in runs] == ["echo hi"]
    assert time.monotonic() - started < 5


async def test_a_claim_with_nothing_due_returns_empty_after_its_wait(agent):
    started = time.monotonic()

    runs = await agent.claim(wait=1)

    assert runs == []
    assert time.monotonic() - started >= 1


async def test_start_then_finish_records_times_status_and_exit_code(
    client, user, agent, run
):
    started = await agent.report(run, "start")
    finished = await agent.report(run, "finish", outcome="exited", exit_code=7)

    assert started["status"] == "running"
    assert finished == {"status": "failed"}
    shown = await _shown(client, user, run)
    assert (shown["status"], shown["exit_code"]) == ("failed", 7)
    assert shown["started_at"] == "2026-01-05T09:59:30+00:00"
    assert shown["finished_at"] == "2026-01-05T09:59:30+00:00"


async def test_every_report_is_idempotent_under_retry(client, user, agent, run):
    first = await agent.report(run, "start")
    again = await agent.report(run, "start")
    chunk = {"seq": 0, "stream": "stdout", "data": "once\n"}
    stored = await agent.report(run, "output", **chunk)
    duplicate = await agent.report(run, "output", **chunk)
    done = await agent.report(run, "finish", outcome="exited", exit_code=0)
    done_again = await agent.report(run, "finish", outcome="exited", exit_code=1)

    assert first == again
    assert (stored, duplicate) == ({"stored": True}, {"stored": False})
    assert done == done_again == {"status": "succeeded"}
    shown = await _shown(client, user, run)
    assert (shown["output"], shown["exit_code"]) == ("once\n", 0)


async def test_output_chunks_are_kept_in_order_per_stream(client, user, agent, run):
    await agent.report(run, "start")
    for seq, (stream, data) in enumerate(
        [("stdout", "a\n"), ("stderr", "oops\n"), ("stdout", "b\n")]
    ):
        await agent.report(run, "output", seq=seq, stream=stream, data=data)

    shown = await _shown(client, user, run)
    stdout = await client.get(
        f"/runs/{run['run_id']}/output?stream=stdout", headers=user.headers
    )
    stderr = await client.get(
        f"/runs/{run['run_id']}/output?stream=stderr", headers=user.headers
    )
    assert shown["output"] == "a\noops\nb\n"
    assert await stdout.text() == "a\nb\n"
    assert await stderr.text() == "oops\n"


async def test_long_output_keeps_its_head_and_tail_and_marks_the_cut(
    aiohttp_client, database_url, tmp_path, clock
):
    settings = make_settings(database_url, tmp_path, OUTPUT_LIMIT_BYTES="1024")
    client = await aiohttp_client(create_app(settings, clock))
    person = await register(client, "ada")
    agent = await enroll(client, person, "web-1", ["linux"])
    await agent.heartbeat()
    job = await (await client.post("/jobs", json=JOB, headers=person.headers)).json()
    await client.app[SCHEDULER].tick()
    await client.post(f"/jobs/{job['id']}/run", headers=person.headers)
    [run] = await agent.claim()

    lines = [f"line {n:04d}\n" for n in range(400)]
    for seq in range(0, 400, 10):
        data = "".join(lines[seq : seq + 10])
        await agent.report(run, "output", seq=seq, stream="stdout", data=data)

    shown = await (
        await client.get(f"/runs/{run['run_id']}", headers=person.headers)
    ).json()
    total = sum(len(line) for line in lines)
    head, tail = "".join(lines)[:512], "".join(lines)[-512:]
    assert shown["output_bytes"] == total
    assert shown["output_truncated"] is True
    assert shown["output"] == head + CUT_MARK.format(total - 1024) + tail


async def test_a_report_with_another_lease_token_is_refused_and_changes_nothing(
    client, user, agent, run
):
    forged = {**run, "lease_token": "lt_not-the-one"}

    answer = await agent.report(
        forged, "finish", status=409, outcome="exited", exit_code=0
    )

    assert answer == {
        "error": "stale_lease",
        "message": f"Run {run['run_id']} is no longer held with this lease",
    }
    assert (await _shown(client, user, run))["status"] == "claimed"


async def test_another_agents_run_is_unknown_to_an_agent(client, user, run):
    other = await enroll(client, user, "web-2", ["linux"])

    answer = await other.report(run, "start", status=404)

    assert answer["error"] == "unknown_run"


async def test_a_cancel_reaches_the_agent_in_heartbeat_and_lease_answers(
    client, user, agent, run
):
    await agent.report(run, "start")

    response = await client.post(f"/runs/{run['run_id']}/cancel", headers=user.headers)
    beat = await agent.heartbeat([run["run_id"]])
    lease = await agent.report(run, "lease")

    assert response.status == 202
    assert beat["cancel"] == [run["run_id"]]
    assert lease["cancel"] is True
    assert await agent.report(run, "finish", outcome="cancelled") == {
        "status": "cancelled"
    }


async def test_a_user_token_cannot_act_as_an_agent(client, user):
    response = await client.post("/agent/heartbeat", json={}, headers=user.headers)

    assert response.status == 401
    assert await response.json() == {
        "error": "unknown_agent",
        "message": "An agent token is required",
    }


async def test_a_replaced_agent_token_is_unknown(client, user):
    first = await enroll(client, user, "web-1")
    await enroll(client, user, "web-1")

    response = await client.post("/agent/heartbeat", json={}, headers=first.headers)

    assert response.status == 401
    assert (await response.json())["error"] == "unknown_agent"


@pytest.mark.parametrize(
    ("what", "body", "field"),
    [
        ("output", {"seq": -1, "stream": "stdout", "data": ""}, "seq"),
        ("output", {"seq": 0, "stream": "stdin", "data": ""}, "stream"),
        ("output", {"seq": 0, "stream": "stdout", "data": 5}, "data"),
        ("finish", {"outcome": "exploded"}, "outcome"),
        ("finish", {"outcome": "exited"}, "exit_code"),
        ("finish", {"outcome": "exited", "exit_code": "0"}, "exit_code"),
    ],
)
async def test_malformed_reports_are_refused_and_change_nothing(
    client, user, agent, run, what, body, field
):
    answer = await agent.report(run, what, status=400, **body)

    assert answer["field"] == field
    shown = await _shown(client, user, run)
    assert (shown["status"], shown["output_bytes"]) == ("claimed", 0)


async def test_a_report_without_a_lease_token_is_refused(client, agent, run):
    answer = await agent.call(f"/agent/runs/{run['run_id']}/start", {}, status=400)

    assert answer == {
        "error": "missing_field",
        "message": "lease_token is required",
        "field": "lease_token",
    }


async def test_claim_limits_are_checked(agent):
    answer = await agent.call("/agent/claim", {"slots": 0}, status=400)

    assert answer["message"] == "slots must be between 1 and 100"


async def test_an_interrupted_run_is_lost_and_retried(client, user, agent, scheduler):
    job = {**JOB, "name": "retried", "retries": 1, "retry_backoff_seconds": 0}
    created = await (await client.post("/jobs", json=job, headers=user.headers)).json()
    await scheduler.tick()
    await client.post(f"/jobs/{created['id']}/run", headers=user.headers)
    [run] = await agent.claim()

    answer = await agent.report(
        run, "finish", outcome="interrupted", error="the agent is shutting down"
    )
    await scheduler.tick()

    assert answer == {"status": "lost"}
    [retry] = await agent.claim()
    assert retry["attempt"] == 2


async def test_a_claim_may_wait_a_fractional_number_of_seconds(agent):
    answer = await agent.call("/agent/claim", {"wait": 0.5})

    assert answer["runs"] == []


async def test_chunks_of_several_runs_arriving_together_are_all_kept_in_order(
    client, user, agent, job, scheduler, clock
):
    await scheduler.tick()
    allow = {"concurrency": "allow"}
    await client.patch(f"/jobs/{job['id']}", json=allow, headers=user.headers)
    for _ in range(3):
        await client.post(f"/jobs/{job['id']}/run", headers=user.headers)
        await clock.advance(1)
    runs = await agent.claim(slots=3)

    async def stream(run):
        for seq in range(20):
            body = {"seq": seq, "stream": "stdout", "data": f"{run['run_id']}:{seq}\n"}
            await agent.report(run, "output", **body)

    await asyncio.gather(*(stream(run) for run in runs))

    for run in runs:
        shown = await _shown(client, user, run)
        assert shown["output"] == "".join(f"{run['run_id']}:{n}\n" for n in range(20))


async def test_an_agent_coming_online_is_written_at_once_not_at_the_next_batch(
    client, user
):
    newcomer = await enroll(client, user, "web-9", ["linux"])

    await newcomer.heartbeat()
    for _ in range(50):
        listed = await (await client.get("/agents", headers=user.headers)).json()
        if listed[0]["status"] == "online":
            break
        await asyncio.sleep(0.01)

    assert listed[0]["status"] == "online"
